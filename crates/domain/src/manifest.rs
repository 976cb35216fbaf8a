//! `ip.toml`: the manifest of an IP package.

use crate::limits::LimitsRequest;
use crate::money::Money;
use crate::{validate_slug, Params};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use utoipa::ToSchema;

/// `namespace/name`; the namespace is the publishing vendor's account name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpName {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for IpName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl FromStr for IpName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ns, name) = s
            .split_once('/')
            .ok_or_else(|| format!("'{s}' is not of the form namespace/name"))?;
        validate_slug("namespace", ns)?;
        validate_slug("name", name)?;
        Ok(IpName {
            namespace: ns.to_string(),
            name: name.to_string(),
        })
    }
}

impl Serialize for IpName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A manifest error names the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("ip.toml is not valid: {0}")]
    Syntax(String),
    #[error("ip.toml field `{field}`: {message}")]
    Field { field: String, message: String },
}

impl ManifestError {
    fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ManifestError::Field {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// One implementation of the IP on one device class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Implementation {
    pub device: String,
    /// Path of the artifact inside the package.
    pub artifact: String,
    /// For kernel device classes (`opencl`, `cuda`): the kernels, their
    /// arguments and work sizes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub kernel: Option<crate::kernel::KernelSpec>,
}

/// A test vector: the IP's output for `input` must equal `expect` byte for byte.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TestVector {
    pub name: String,
    pub input: String,
    pub expect: String,
    #[schema(value_type = Object)]
    pub params: Params,
    /// Object inputs: parameter name → package file standing for the
    /// caller's object.
    #[serde(default)]
    pub objects: std::collections::BTreeMap<String, String>,
    /// How the output is compared with `expect`.
    #[serde(default)]
    pub compare: crate::version::Compare,
}

/// An object input: a parameter whose value is the key of one of the
/// caller's objects (an index, a second reads file). The platform checks
/// that the caller owns it and hands it to the device, which may keep it
/// resident between calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ObjectParam {
    pub name: String,
    pub required: bool,
    pub summary: String,
}

/// A named output (`[[output]]` in `ip.toml`). The first declared names the
/// main output (a wasm module's stdout); the others are written beside it
/// (a wasm module writes `/outputs/NAME`). A job keeps each as an object
/// of its owner; `accelhub job output JOB --name NAME` fetches one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OutputParam {
    pub name: String,
    pub summary: String,
}

/// Most named outputs a version may declare.
pub const MAX_OUTPUTS: usize = 16;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Pricing {
    pub per_call: Money,
    /// Input by the gigabyte, the free trial, further plans.
    #[serde(default)]
    pub terms: crate::billing::PricingTerms,
}

/// A validated manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub name: IpName,
    pub version: semver::Version,
    pub summary: String,
    /// Path of a markdown file inside the package.
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub implementations: Vec<Implementation>,
    pub objects: Vec<ObjectParam>,
    /// Named outputs, the main one first; empty: one unnamed output.
    pub outputs: Vec<OutputParam>,
    pub tests: Vec<TestVector>,
    pub pricing: Pricing,
    pub limits: LimitsRequest,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: String,
    version: String,
    summary: String,
    description: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default, rename = "implementation")]
    implementations: Vec<RawImplementation>,
    #[serde(default, rename = "object")]
    objects: Vec<RawObject>,
    #[serde(default, rename = "output")]
    outputs: Vec<RawOutput>,
    #[serde(default, rename = "test")]
    tests: Vec<RawTest>,
    pricing: RawPricing,
    #[serde(default)]
    limits: LimitsRequest,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImplementation {
    device: String,
    artifact: String,
    /// `source` or `binary`; by default from the artifact's extension.
    format: Option<crate::kernel::ProgramFormat>,
    build_options: Option<String>,
    input_multiple: Option<u64>,
    input_size: Option<crate::kernel::Expr>,
    #[serde(default)]
    require: Vec<crate::kernel::Requirement>,
    output: Option<crate::kernel::Expr>,
    #[serde(default)]
    buffers: std::collections::BTreeMap<String, crate::kernel::Expr>,
    #[serde(default, rename = "kernel")]
    kernels: Vec<crate::kernel::KernelStep>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawObject {
    name: String,
    #[serde(default = "yes")]
    required: bool,
    #[serde(default)]
    summary: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    name: String,
    #[serde(default)]
    summary: String,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTest {
    name: Option<String>,
    input: String,
    expect: String,
    params: Option<toml::Value>,
    #[serde(default)]
    objects: std::collections::BTreeMap<String, String>,
    /// `bytes` (the default), `f32` or `f64`.
    compare: Option<String>,
    /// For `f32` and `f64`: the relative tolerance.
    tolerance: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPricing {
    per_call: toml::Value,
    per_gb: Option<toml::Value>,
    trial_calls: Option<u64>,
    #[serde(default, rename = "plan")]
    plans: Vec<RawPlan>,
}

/// `[[pricing.plan]]`: a monthly plan, or one by the device-hour.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    name: String,
    monthly: Option<toml::Value>,
    included_calls: Option<u64>,
    overage: Option<toml::Value>,
    per_device_hour: Option<toml::Value>,
}

/// An amount in ip.toml: a decimal number or string, never negative.
fn money(field: &str, v: &toml::Value) -> Result<Money, ManifestError> {
    match v {
        toml::Value::String(s) => s.parse::<Money>(),
        toml::Value::Integer(i) => i.to_string().parse::<Money>(),
        // Floats in TOML are decimal text; format with enough digits and
        // parse as a decimal so 0.002 is exactly 2000 micro-units.
        toml::Value::Float(f) if f.is_finite() && *f >= 0.0 => {
            let text = format!("{f:.7}");
            let trimmed = text.trim_end_matches('0');
            trimmed.parse::<Money>()
        }
        _ => Err("must be a non-negative number such as 0.002".to_string()),
    }
    .map_err(|e| ManifestError::field(field, e))
}

/// The kernel declaration of implementation `i`: required for kernel
/// device classes, refused for the others.
fn kernel_spec(
    i: usize,
    imp: &RawImplementation,
    objects: &[RawObject],
) -> Result<Option<crate::kernel::KernelSpec>, ManifestError> {
    use crate::kernel::{KernelSpec, ProgramFormat, KERNEL_CLASSES};
    let field = |f: &str| format!("implementation[{i}].{f}");
    let is_kernel = KERNEL_CLASSES.contains(&imp.device.as_str());
    let declared = imp.format.is_some()
        || imp.build_options.is_some()
        || imp.input_multiple.is_some()
        || imp.input_size.is_some()
        || !imp.require.is_empty()
        || imp.output.is_some()
        || !imp.buffers.is_empty()
        || !imp.kernels.is_empty();
    if !is_kernel {
        if declared {
            return Err(ManifestError::field(
                field("kernel"),
                format!(
                    "kernels, buffers and work sizes apply to kernel device classes ({}), not '{}'",
                    KERNEL_CLASSES.join(", "),
                    imp.device
                ),
            ));
        }
        return Ok(None);
    }
    let output = imp.output.clone().ok_or_else(|| {
        ManifestError::field(
            field("output"),
            "kernel implementations give their output size in bytes, e.g. output = \"input\"",
        )
    })?;
    let spec = KernelSpec {
        format: imp
            .format
            .unwrap_or_else(|| ProgramFormat::from_path(&imp.artifact)),
        build_options: imp.build_options.clone().unwrap_or_default(),
        input_multiple: imp.input_multiple.unwrap_or(1),
        input_size: imp.input_size.clone(),
        require: imp.require.clone(),
        output,
        buffers: imp.buffers.clone(),
        kernels: imp.kernels.clone(),
    };
    let names: Vec<String> = objects.iter().map(|o| o.name.clone()).collect();
    spec.validate(&names)
        .map_err(|(f, m)| ManifestError::field(field(&f), m))?;
    Ok(Some(spec))
}

/// A path inside a package: relative, no `..`, no empty components.
pub fn validate_package_path(field: &str, p: &str) -> Result<(), ManifestError> {
    if p.is_empty() {
        return Err(ManifestError::field(field, "must not be empty"));
    }
    if p.starts_with('/') || p.contains('\\') {
        return Err(ManifestError::field(
            field,
            format!("'{p}' must be a relative path inside the package, with '/' separators"),
        ));
    }
    if p.split('/').any(|c| c.is_empty() || c == "..") {
        return Err(ManifestError::field(
            field,
            format!("'{p}' must stay inside the package (no '..' or empty components)"),
        ));
    }
    Ok(())
}

/// Object input names: like parameter names, `[a-z][a-z0-9_]*`, at most
/// 64 characters.
fn validate_param_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{name}' must be lowercase letters, digits and '_', starting with a letter"
        ))
    }
}

impl Manifest {
    /// Parse and validate `ip.toml` text.
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        let raw: RawManifest =
            toml::from_str(text).map_err(|e| ManifestError::Syntax(e.to_string().trim().into()))?;

        let name: IpName = raw
            .name
            .parse()
            .map_err(|e: String| ManifestError::field("name", e))?;
        let version = semver::Version::parse(&raw.version).map_err(|e| {
            ManifestError::field(
                "version",
                format!(
                    "'{}' is not a semantic version (e.g. 1.0.0): {e}",
                    raw.version
                ),
            )
        })?;
        let summary = raw.summary.trim().to_string();
        if summary.is_empty() {
            return Err(ManifestError::field("summary", "must not be empty"));
        }
        if summary.len() > 200 {
            return Err(ManifestError::field(
                "summary",
                "must be at most 200 characters",
            ));
        }
        if let Some(d) = &raw.description {
            validate_package_path("description", d)?;
        }
        for (i, t) in raw.tags.iter().enumerate() {
            validate_slug("tag", t).map_err(|e| ManifestError::field(format!("tags[{i}]"), e))?;
        }

        if raw.implementations.is_empty() {
            return Err(ManifestError::field(
                "implementation",
                "at least one [[implementation]] is required",
            ));
        }
        let mut implementations = Vec::new();
        for (i, imp) in raw.implementations.into_iter().enumerate() {
            validate_slug("device class", &imp.device)
                .map_err(|e| ManifestError::field(format!("implementation[{i}].device"), e))?;
            if implementations
                .iter()
                .any(|x: &Implementation| x.device == imp.device)
            {
                return Err(ManifestError::field(
                    format!("implementation[{i}].device"),
                    format!("device class '{}' is declared twice", imp.device),
                ));
            }
            validate_package_path(&format!("implementation[{i}].artifact"), &imp.artifact)?;
            let kernel = kernel_spec(i, &imp, &raw.objects)?;
            implementations.push(Implementation {
                device: imp.device,
                artifact: imp.artifact,
                kernel,
            });
        }

        let mut objects: Vec<ObjectParam> = Vec::new();
        for (i, o) in raw.objects.into_iter().enumerate() {
            let field = format!("object[{i}].name");
            validate_param_name(&o.name).map_err(|e| ManifestError::field(&field, e))?;
            if objects.iter().any(|x| x.name == o.name) {
                return Err(ManifestError::field(
                    field,
                    format!("object input '{}' is declared twice", o.name),
                ));
            }
            objects.push(ObjectParam {
                name: o.name,
                required: o.required,
                summary: o.summary.trim().to_string(),
            });
        }

        if raw.outputs.len() > MAX_OUTPUTS {
            return Err(ManifestError::field(
                "output",
                format!("at most {MAX_OUTPUTS} outputs may be declared"),
            ));
        }
        let mut outputs: Vec<OutputParam> = Vec::new();
        for (i, o) in raw.outputs.into_iter().enumerate() {
            let field = format!("output[{i}].name");
            validate_param_name(&o.name).map_err(|e| ManifestError::field(&field, e))?;
            if outputs.iter().any(|x| x.name == o.name) {
                return Err(ManifestError::field(
                    field,
                    format!("output '{}' is declared twice", o.name),
                ));
            }
            outputs.push(OutputParam {
                name: o.name,
                summary: o.summary.trim().to_string(),
            });
        }
        if let Some(k) = implementations
            .iter()
            .find(|i| crate::kernel::KERNEL_CLASSES.contains(&i.device.as_str()))
        {
            if outputs.len() > 1 {
                return Err(ManifestError::field(
                    "output",
                    format!(
                        "a '{}' kernel writes one output buffer: declare at most one [[output]]",
                        k.device
                    ),
                ));
            }
        }

        if raw.tests.is_empty() {
            return Err(ManifestError::field(
                "test",
                "at least one [[test]] vector is required: versions are verified before they deploy",
            ));
        }
        let mut tests = Vec::new();
        for (i, t) in raw.tests.into_iter().enumerate() {
            validate_package_path(&format!("test[{i}].input"), &t.input)?;
            validate_package_path(&format!("test[{i}].expect"), &t.expect)?;
            let params = match t.params {
                None => Params::new(),
                Some(v) => match serde_json::to_value(&v) {
                    Ok(serde_json::Value::Object(m)) => m,
                    _ => {
                        return Err(ManifestError::field(
                            format!("test[{i}].params"),
                            "must be a table (a JSON object), e.g. params = { k = 3 }",
                        ))
                    }
                },
            };
            for (name, path) in &t.objects {
                let field = format!("test[{i}].objects.{name}");
                if !objects.iter().any(|o| &o.name == name) {
                    return Err(ManifestError::field(
                        field,
                        format!("'{name}' is not a declared [[object]] input"),
                    ));
                }
                if params.contains_key(name) {
                    return Err(ManifestError::field(
                        field,
                        format!("'{name}' is given both as a parameter and as an object"),
                    ));
                }
                validate_package_path(&field, path)?;
            }
            if let Some(o) = objects
                .iter()
                .find(|o| o.required && !t.objects.contains_key(&o.name))
            {
                return Err(ManifestError::field(
                    format!("test[{i}].objects"),
                    format!("the required object input '{}' is missing", o.name),
                ));
            }
            let compare = match (t.compare.as_deref(), t.tolerance) {
                (None | Some("bytes"), None) => crate::version::Compare::Bytes,
                (None | Some("bytes"), Some(_)) => {
                    return Err(ManifestError::field(
                        format!("test[{i}].tolerance"),
                        "applies to compare = \"f32\" or \"f64\"",
                    ))
                }
                (Some(kind @ ("f32" | "f64")), tol) => {
                    let tolerance = tol.unwrap_or(if kind == "f32" { 1e-5 } else { 1e-12 });
                    if !(tolerance.is_finite() && (0.0..1.0).contains(&tolerance)) {
                        return Err(ManifestError::field(
                            format!("test[{i}].tolerance"),
                            "must be a relative tolerance in [0, 1), e.g. 1e-5",
                        ));
                    }
                    if kind == "f32" {
                        crate::version::Compare::F32 { tolerance }
                    } else {
                        crate::version::Compare::F64 { tolerance }
                    }
                }
                (Some(other), _) => {
                    return Err(ManifestError::field(
                        format!("test[{i}].compare"),
                        format!("'{other}' is not a comparison: use bytes, f32 or f64"),
                    ))
                }
            };
            tests.push(TestVector {
                compare,
                name: t.name.unwrap_or_else(|| t.input.clone()),
                input: t.input,
                expect: t.expect,
                params,
                objects: t.objects,
            });
        }

        let per_call = money("pricing.per_call", &raw.pricing.per_call)?;
        let per_gb = match &raw.pricing.per_gb {
            Some(v) => money("pricing.per_gb", v)?,
            None => Money::ZERO,
        };
        let mut plans: Vec<crate::billing::Plan> = Vec::new();
        for (i, p) in raw.pricing.plans.iter().enumerate() {
            let field = |f: &str| format!("pricing.plan[{i}].{f}");
            validate_slug("plan name", &p.name)
                .map_err(|e| ManifestError::field(field("name"), e))?;
            if p.name == crate::billing::DEFAULT_PLAN || plans.iter().any(|x| x.name == p.name) {
                return Err(ManifestError::field(
                    field("name"),
                    format!(
                        "plan '{}' is declared twice ('{}' is the per-call plan)",
                        p.name,
                        crate::billing::DEFAULT_PLAN
                    ),
                ));
            }
            let kind = match (&p.monthly, &p.per_device_hour) {
                (Some(fee), None) => crate::billing::PlanKind::Monthly {
                    fee: money(&field("monthly"), fee)?,
                    included_calls: p.included_calls.ok_or_else(|| {
                        ManifestError::field(
                            field("included_calls"),
                            "a monthly plan says how many calls its fee includes",
                        )
                    })?,
                    overage: match &p.overage {
                        Some(v) => Some(money(&field("overage"), v)?),
                        None => None,
                    },
                },
                (None, Some(hour)) if p.included_calls.is_none() && p.overage.is_none() => {
                    crate::billing::PlanKind::DeviceHour {
                        per_hour: money(&field("per_device_hour"), hour)?,
                    }
                }
                _ => {
                    return Err(ManifestError::field(
                        field("monthly"),
                        "a plan is either monthly (monthly, included_calls, optional overage) \
                         or by the device-hour (per_device_hour alone)",
                    ))
                }
            };
            plans.push(crate::billing::Plan {
                name: p.name.clone(),
                kind,
            });
        }

        Ok(Manifest {
            name,
            version,
            summary,
            description: raw.description,
            tags: raw.tags,
            implementations,
            objects,
            outputs,
            tests,
            pricing: Pricing {
                per_call,
                terms: crate::billing::PricingTerms {
                    per_gb,
                    trial_calls: raw.pricing.trial_calls.unwrap_or(0),
                    plans,
                },
            },
            limits: raw.limits,
        })
    }

    /// Every file the package must contain, in manifest order.
    pub fn referenced_files(&self) -> Vec<&str> {
        let mut v: Vec<&str> = Vec::new();
        if let Some(d) = &self.description {
            v.push(d);
        }
        for i in &self.implementations {
            v.push(&i.artifact);
        }
        for t in &self.tests {
            v.push(&t.input);
            v.push(&t.expect);
            v.extend(t.objects.values().map(String::as_str));
        }
        v.sort_unstable();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests;
