//! Kernel implementations: how an IP runs on an accelerator driven through
//! a kernel API (OpenCL for FPGA cards and GPUs, CUDA for NVIDIA GPUs).
//!
//! `ip.toml` declares the program (kernel source or a vendor binary), the
//! kernels run in sequence, and a typed argument signature that maps the
//! call's input bytes and parameters to device buffers and scalars. The
//! platform bundles that declaration with the program into the stored
//! artifact ([`KernelBundle`]); a backend decodes the bundle and, for each
//! call, asks [`KernelSpec::plan`] for the buffers, scalars and work sizes.
//! All of it is pure: no device, no IO.

use crate::Params;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

mod expr;
pub use expr::{Expr, Requirement};

/// Device classes whose implementations are kernels described in `ip.toml`.
pub const KERNEL_CLASSES: &[&str] = &[DEVICE_OPENCL, DEVICE_CUDA];
pub const DEVICE_OPENCL: &str = "opencl";
pub const DEVICE_CUDA: &str = "cuda";

/// What the program file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProgramFormat {
    /// Kernel source (OpenCL C, CUDA C), compiled when the device is programmed.
    Source,
    /// A device binary (an `.xclbin`, an `.aocx`, a PTX or cubin file, a
    /// binary a vendor compiled offline), loaded as is.
    Binary,
}

impl ProgramFormat {
    /// The format an artifact's file name suggests: `.cl`, `.cu` are source.
    pub fn from_path(path: &str) -> ProgramFormat {
        if path.ends_with(".cl") || path.ends_with(".cu") {
            ProgramFormat::Source
        } else {
            ProgramFormat::Binary
        }
    }
}

/// A scalar argument's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarType {
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
}

impl ScalarType {
    fn parse(s: &str) -> Option<ScalarType> {
        Some(match s {
            "i32" | "int" => ScalarType::I32,
            "u32" | "uint" => ScalarType::U32,
            "i64" | "long" => ScalarType::I64,
            "u64" | "ulong" => ScalarType::U64,
            "f32" | "float" => ScalarType::F32,
            "f64" | "double" => ScalarType::F64,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ScalarType::I32 => "i32",
            ScalarType::U32 => "u32",
            ScalarType::I64 => "i64",
            ScalarType::U64 => "u64",
            ScalarType::F32 => "f32",
            ScalarType::F64 => "f64",
        }
    }

    pub fn size(self) -> usize {
        match self {
            ScalarType::I32 | ScalarType::U32 | ScalarType::F32 => 4,
            _ => 8,
        }
    }

    /// The scalar's bytes (little-endian, as devices take them) for a JSON
    /// value, or why the value does not fit.
    fn encode(self, v: &serde_json::Value) -> Result<Vec<u8>, String> {
        let int = |lo: i128, hi: i128| -> Result<i128, String> {
            let i = v
                .as_i64()
                .map(i128::from)
                .or_else(|| v.as_u64().map(i128::from))
                .ok_or_else(|| format!("must be an integer, got {v}"))?;
            if i < lo || i > hi {
                return Err(format!("{i} is out of range for {}", self.name()));
            }
            Ok(i)
        };
        let float = || {
            v.as_f64()
                .ok_or_else(|| format!("must be a number, got {v}"))
        };
        Ok(match self {
            ScalarType::I32 => (int(i32::MIN.into(), i32::MAX.into())? as i32)
                .to_le_bytes()
                .to_vec(),
            ScalarType::U32 => (int(0, u32::MAX.into())? as u32).to_le_bytes().to_vec(),
            ScalarType::I64 => (int(i64::MIN.into(), i64::MAX.into())? as i64)
                .to_le_bytes()
                .to_vec(),
            ScalarType::U64 => (int(0, u64::MAX.into())? as u64).to_le_bytes().to_vec(),
            ScalarType::F32 => (float()? as f32).to_le_bytes().to_vec(),
            ScalarType::F64 => float()?.to_le_bytes().to_vec(),
        })
    }
}

/// One kernel argument, written in `ip.toml` as a string:
///
/// - `input`: a read-only buffer holding the call's input bytes;
/// - `output`: a buffer of the output size; its bytes are the call's output;
/// - `buffer NAME`: a scratch buffer declared in `buffers`, shared by the
///   kernels of the sequence;
/// - `object NAME`: a declared `[[object]]` input, kept resident in device
///   memory between calls;
/// - `local EXPR`: that many bytes of work-group local memory;
/// - `TYPE NAME` or `TYPE NAME = DEFAULT`: a scalar from the call's
///   parameter NAME (TYPE is i32, u32, i64, u64, f32 or f64);
/// - `TYPE (EXPR)`: a scalar computed from the input size and parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Input,
    Output,
    Buffer(String),
    Object(String),
    Local(Expr),
    Param {
        ty: ScalarType,
        name: String,
        default: Option<serde_json::Value>,
    },
    Computed {
        ty: ScalarType,
        expr: Expr,
    },
}

impl Arg {
    pub fn parse(text: &str) -> Result<Arg, String> {
        let t = text.trim();
        let (head, rest) = match t.split_once(char::is_whitespace) {
            Some((h, r)) => (h, r.trim()),
            None => (t, ""),
        };
        let ident = |s: &str| -> Result<String, String> {
            let ok = s.starts_with(|c: char| c.is_ascii_lowercase())
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if ok {
                Ok(s.to_string())
            } else {
                Err(format!(
                    "'{text}': '{s}' is not a name (lowercase letters, digits and '_')"
                ))
            }
        };
        match (head, rest) {
            ("input", "") => Ok(Arg::Input),
            ("output", "") => Ok(Arg::Output),
            ("buffer", n) => Ok(Arg::Buffer(ident(n)?)),
            ("object", n) => Ok(Arg::Object(ident(n)?)),
            ("local", e) => Ok(Arg::Local(Expr::parse(e)?)),
            (ty, rest) => {
                let ty = ScalarType::parse(ty).ok_or_else(|| {
                    format!(
                        "'{text}' is not an argument: use input, output, buffer NAME, object NAME, \
                         local BYTES, or a scalar such as 'u32 width', 'f32 sigma = 0.5' or 'u32 (input / 4)'"
                    )
                })?;
                if rest.starts_with('(') {
                    return Ok(Arg::Computed {
                        ty,
                        expr: Expr::parse(rest)?,
                    });
                }
                let (name, default) = match rest.split_once('=') {
                    Some((n, d)) => {
                        let v: serde_json::Value =
                            serde_json::from_str(d.trim()).map_err(|_| {
                                format!("'{text}': the default '{}' is not a number", d.trim())
                            })?;
                        ty.encode(&v)
                            .map_err(|e| format!("'{text}': the default {e}"))?;
                        (n.trim(), Some(v))
                    }
                    None => (rest, None),
                };
                Ok(Arg::Param {
                    ty,
                    name: ident(name)?,
                    default,
                })
            }
        }
    }
}

impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arg::Input => f.write_str("input"),
            Arg::Output => f.write_str("output"),
            Arg::Buffer(n) => write!(f, "buffer {n}"),
            Arg::Object(n) => write!(f, "object {n}"),
            Arg::Local(e) => write!(f, "local {e}"),
            Arg::Param {
                ty,
                name,
                default: None,
            } => write!(f, "{} {name}", ty.name()),
            Arg::Param {
                ty,
                name,
                default: Some(d),
            } => write!(f, "{} {name} = {d}", ty.name()),
            Arg::Computed { ty, expr } => {
                let e = expr.to_string();
                if e.starts_with('(') {
                    write!(f, "{} {e}", ty.name())
                } else {
                    write!(f, "{} ({e})", ty.name())
                }
            }
        }
    }
}

impl Serialize for Arg {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Arg {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Arg::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// One kernel launch of the sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelStep {
    /// The kernel function's name in the program.
    pub name: String,
    /// Work items per dimension (1 to 3 dimensions). Rounded up to a
    /// multiple of `local` when that is given, so kernels check bounds.
    pub global: Vec<Expr>,
    /// Work-group size per dimension; the runtime chooses when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<Vec<u64>>,
    pub args: Vec<Arg>,
}

/// Everything a kernel backend needs besides the program itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelSpec {
    pub format: ProgramFormat,
    /// Compiler options for source programs (e.g. `-cl-fast-relaxed-math`).
    #[serde(default)]
    pub build_options: String,
    /// The input must be a whole number of records of this many bytes.
    #[serde(default = "one")]
    pub input_multiple: u64,
    /// The input must be exactly this many bytes (e.g. `width * height`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_size: Option<Expr>,
    /// Conditions on the input size and parameters (e.g. `filter < 3`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub require: Vec<Requirement>,
    /// The output's size in bytes.
    pub output: Expr,
    /// Scratch buffers by name, with their sizes in bytes.
    #[serde(default)]
    pub buffers: BTreeMap<String, Expr>,
    /// Kernels, run in order on the same buffers.
    pub kernels: Vec<KernelStep>,
}

fn one() -> u64 {
    1
}

/// A scalar or buffer, resolved for one call.
#[derive(Debug, Clone, PartialEq)]
pub enum PlannedArg {
    Input,
    Output,
    /// A scratch buffer: its index in [`CallPlan::buffers`].
    Buffer(usize),
    /// An object input by parameter name.
    Object(String),
    /// Local memory of this many bytes.
    Local(u64),
    /// A scalar's little-endian bytes.
    Scalar(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedLaunch {
    pub kernel: String,
    /// Global work size per dimension, already a multiple of `local`.
    pub global: Vec<u64>,
    pub local: Option<Vec<u64>>,
    pub args: Vec<PlannedArg>,
}

/// What one call needs from the device.
#[derive(Debug, Clone, PartialEq)]
pub struct CallPlan {
    pub output_bytes: u64,
    /// Scratch buffers: name and size in bytes.
    pub buffers: Vec<(String, u64)>,
    pub launches: Vec<PlannedLaunch>,
}

impl KernelSpec {
    /// Check names and shapes; `objects` are the manifest's object inputs.
    pub fn validate(&self, objects: &[String]) -> Result<(), (String, String)> {
        if self.input_multiple == 0 {
            return Err(("input_multiple".into(), "must be at least 1".into()));
        }
        if self.kernels.is_empty() {
            return Err((
                "kernel".into(),
                "at least one [[implementation.kernel]] is required".into(),
            ));
        }
        for (i, k) in self.kernels.iter().enumerate() {
            let field = |f: &str| format!("kernel[{i}].{f}");
            if k.name.is_empty()
                || !k
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err((field("name"), format!("'{}' is not a kernel name", k.name)));
            }
            if k.global.is_empty() || k.global.len() > 3 {
                return Err((field("global"), "must have 1 to 3 dimensions".into()));
            }
            if let Some(l) = &k.local {
                if l.len() != k.global.len() {
                    return Err((
                        field("local"),
                        format!(
                            "must have as many dimensions as global ({})",
                            k.global.len()
                        ),
                    ));
                }
                if l.contains(&0) {
                    return Err((field("local"), "sizes must be at least 1".into()));
                }
            }
            for a in &k.args {
                match a {
                    Arg::Buffer(n) if !self.buffers.contains_key(n) => {
                        return Err((
                            field("args"),
                            format!("'buffer {n}': no buffer '{n}' is declared in `buffers`"),
                        ))
                    }
                    Arg::Object(n) if !objects.iter().any(|o| o == n) => {
                        return Err((
                            field("args"),
                            format!("'object {n}': no [[object]] input '{n}' is declared"),
                        ))
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// The buffers, scalars and work sizes of a call on `input` bytes with
    /// these parameters, or a message for the caller.
    pub fn plan(&self, input: u64, given: &Params, max_output: u64) -> Result<CallPlan, String> {
        // Parameters with their declared defaults, so that expressions and
        // requirements see what the kernels get.
        let mut with_defaults = given.clone();
        for k in &self.kernels {
            for a in &k.args {
                if let Arg::Param {
                    name,
                    default: Some(d),
                    ..
                } = a
                {
                    with_defaults
                        .entry(name.clone())
                        .or_insert_with(|| d.clone());
                }
            }
        }
        let params = &with_defaults;
        if !input.is_multiple_of(self.input_multiple) {
            return Err(format!(
                "the input is {input} bytes; this IP takes whole records of {} bytes",
                self.input_multiple
            ));
        }
        for r in &self.require {
            r.check(input, params)?;
        }
        if let Some(e) = &self.input_size {
            let want = e
                .eval(input, params)
                .map_err(|e| format!("input size: {e}"))?;
            if want != input {
                return Err(format!(
                    "the input is {input} bytes; with these parameters this IP takes exactly \
                     {want} bytes ({e})"
                ));
            }
        }
        let output_bytes = self
            .output
            .eval(input, params)
            .map_err(|e| format!("output size: {e}"))?;
        if output_bytes > max_output {
            return Err(format!(
                "the output would be {output_bytes} bytes, over this call's limit of {max_output}"
            ));
        }
        let mut buffers = Vec::new();
        for (name, e) in &self.buffers {
            let size = e
                .eval(input, params)
                .map_err(|e| format!("buffer '{name}': {e}"))?;
            if size > max_output.max(input).saturating_mul(4).max(1 << 20) {
                return Err(format!("buffer '{name}' would be {size} bytes: too large"));
            }
            buffers.push((name.clone(), size));
        }
        let mut launches = Vec::new();
        for k in &self.kernels {
            let mut global = Vec::new();
            for (d, e) in k.global.iter().enumerate() {
                let g = e
                    .eval(input, params)
                    .map_err(|e| format!("kernel '{}' global size: {e}", k.name))?;
                // Rounded up to whole work-groups, checked: a size near
                // u64::MAX must not wrap to 0 and skip the kernel.
                let g = match k.local.as_ref().and_then(|l| l.get(d)) {
                    Some(&l) if l > 0 => g.div_ceil(l).checked_mul(l).ok_or_else(|| {
                        format!(
                            "kernel '{}' global size {g} rounded up to work-groups of {l} \
                             overflows",
                            k.name
                        )
                    })?,
                    _ => g,
                };
                global.push(g);
            }
            let mut args = Vec::new();
            for a in &k.args {
                args.push(match a {
                    Arg::Input => PlannedArg::Input,
                    Arg::Output => PlannedArg::Output,
                    Arg::Buffer(n) => {
                        PlannedArg::Buffer(buffers.iter().position(|(b, _)| b == n).unwrap_or(0))
                    }
                    Arg::Object(n) => PlannedArg::Object(n.clone()),
                    Arg::Local(e) => PlannedArg::Local(
                        e.eval(input, params)
                            .map_err(|e| format!("kernel '{}' local memory: {e}", k.name))?,
                    ),
                    Arg::Param { ty, name, default } => {
                        let v = match (params.get(name), default) {
                            (Some(v), _) => v,
                            (None, Some(d)) => d,
                            (None, None) => {
                                return Err(format!(
                                    "the parameter '{name}' ({}) is required",
                                    ty.name()
                                ))
                            }
                        };
                        PlannedArg::Scalar(
                            ty.encode(v)
                                .map_err(|e| format!("parameter '{name}' {e}"))?,
                        )
                    }
                    Arg::Computed { ty, expr } => {
                        let v = expr
                            .eval(input, params)
                            .map_err(|e| format!("kernel '{}': {e}", k.name))?;
                        PlannedArg::Scalar(
                            ty.encode(&serde_json::Value::from(v))
                                .map_err(|e| format!("'{expr}' = {v}: {e}"))?,
                        )
                    }
                });
            }
            launches.push(PlannedLaunch {
                kernel: k.name.clone(),
                global,
                local: k.local.clone(),
                args,
            });
        }
        Ok(CallPlan {
            output_bytes,
            buffers,
            launches,
        })
    }
}

/// The stored artifact of a kernel implementation: its spec and program.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelBundle {
    pub spec: KernelSpec,
    pub program: Vec<u8>,
}

const BUNDLE_MAGIC: &[u8; 16] = b"ACCELHUB-KERNEL1";

impl KernelBundle {
    pub fn encode(&self) -> Vec<u8> {
        let spec = serde_json::to_vec(&self.spec).unwrap_or_default();
        let mut out = Vec::with_capacity(20 + spec.len() + self.program.len());
        out.extend_from_slice(BUNDLE_MAGIC);
        out.extend_from_slice(&(spec.len() as u32).to_le_bytes());
        out.extend_from_slice(&spec);
        out.extend_from_slice(&self.program);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<KernelBundle, String> {
        let rest = bytes
            .strip_prefix(BUNDLE_MAGIC.as_slice())
            .ok_or("not a kernel bundle (the platform writes one when a version is published)")?;
        if rest.len() < 4 {
            return Err("the kernel bundle is truncated".into());
        }
        let n = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let body = &rest[4..];
        if body.len() < n {
            return Err("the kernel bundle is truncated".into());
        }
        let spec = serde_json::from_slice(&body[..n])
            .map_err(|e| format!("the kernel bundle's spec is not valid: {e}"))?;
        Ok(KernelBundle {
            spec,
            program: body[n..].to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(v: serde_json::Value) -> Params {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn expressions_evaluate_with_precedence_and_checks() {
        let e = Expr::parse("(input + 1023) / 1024 * 32").unwrap();
        assert_eq!(e.eval(0, &Params::new()), Ok(0));
        assert_eq!(e.eval(1, &Params::new()), Ok(32));
        assert_eq!(e.eval(2048, &Params::new()), Ok(64));
        let e = Expr::parse("width * height + 2 % 3").unwrap();
        assert_eq!(e.params(), vec!["width", "height"]);
        assert_eq!(
            e.eval(0, &params(serde_json::json!({"width": 4, "height": 5}))),
            Ok(22)
        );
        assert!(e
            .eval(0, &params(serde_json::json!({"width": 4})))
            .unwrap_err()
            .contains("'height' is required"));
        assert!(e
            .eval(0, &params(serde_json::json!({"width": -4, "height": 1})))
            .unwrap_err()
            .contains("non-negative"));
        assert!(Expr::parse("input / 0")
            .unwrap()
            .eval(1, &Params::new())
            .is_err());
        assert!(Expr::parse("1 - input")
            .unwrap()
            .eval(2, &Params::new())
            .is_err());
        for bad in ["", "input +", "(input", "input $ 2", "Input", "2 input"] {
            assert!(Expr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn arguments_parse_and_print_back() {
        for text in [
            "input",
            "output",
            "buffer tmp",
            "object table",
            "local 256",
            "u32 width",
            "f32 sigma = 0.5",
            "u32 (input / 20)",
        ] {
            let a = Arg::parse(text).unwrap();
            assert_eq!(a.to_string(), text);
            assert_eq!(Arg::parse(&a.to_string()).unwrap(), a);
        }
        assert!(Arg::parse("u32 Width").is_err());
        assert!(Arg::parse("u8 width").is_err());
        assert!(Arg::parse("u32 n = -1").is_err());
        assert!(Arg::parse("f32 x = abc").is_err());
    }

    // Found fuzzing (issue 14): serde_json's default float parsing is not
    // correctly rounded, so a default printed (as kernel bundles store
    // specs) parsed back to another float, 1 ulp away.
    #[test]
    fn a_float_default_prints_and_parses_back_to_the_same_float() {
        let text = format!("f32 s = 55555555{}", "2".repeat(47));
        let a = Arg::parse(&text).unwrap();
        assert_eq!(a.to_string(), "f32 s = 5.555555522222222e+54");
        assert_eq!(Arg::parse(&a.to_string()).unwrap(), a);
        let v: serde_json::Value = serde_json::from_str("5.555555522222222e+54").unwrap();
        assert_eq!(v.to_string(), "5.555555522222222e+54");
    }

    fn spec() -> KernelSpec {
        KernelSpec {
            format: ProgramFormat::Source,
            build_options: String::new(),
            input_multiple: 20,
            input_size: None,
            require: Vec::new(),
            output: Expr::parse("input / 20 * 8").unwrap(),
            buffers: [("tmp".to_string(), Expr::parse("input").unwrap())].into(),
            kernels: vec![KernelStep {
                name: "price".into(),
                global: vec![Expr::parse("input / 20").unwrap()],
                local: Some(vec![64]),
                args: [
                    "input",
                    "output",
                    "buffer tmp",
                    "u32 (input / 20)",
                    "f32 r = 0.05",
                ]
                .iter()
                .map(|a| Arg::parse(a).unwrap())
                .collect(),
            }],
        }
    }

    #[test]
    fn a_call_is_planned_from_input_size_and_parameters() {
        let p = spec().plan(200, &Params::new(), 1 << 20).unwrap();
        assert_eq!(p.output_bytes, 80);
        assert_eq!(p.buffers, vec![("tmp".to_string(), 200)]);
        let l = &p.launches[0];
        assert_eq!(l.global, vec![64], "10 items rounded up to the work-group");
        assert_eq!(l.args[3], PlannedArg::Scalar(10u32.to_le_bytes().to_vec()));
        assert_eq!(
            l.args[4],
            PlannedArg::Scalar(0.05f32.to_le_bytes().to_vec())
        );
        let p = spec()
            .plan(20, &params(serde_json::json!({"r": 0.1})), 1 << 20)
            .unwrap();
        assert_eq!(
            p.launches[0].args[4],
            PlannedArg::Scalar(0.1f32.to_le_bytes().to_vec())
        );
        assert!(spec()
            .plan(21, &Params::new(), 1 << 20)
            .unwrap_err()
            .contains("records of 20 bytes"));
        assert!(spec()
            .plan(200, &params(serde_json::json!({"r": "x"})), 1 << 20)
            .unwrap_err()
            .contains("'r'"));
        assert!(spec()
            .plan(2000, &Params::new(), 10)
            .unwrap_err()
            .contains("limit"));
    }

    /// A work size the caller controls, rounded up to whole work-groups,
    /// must not wrap: before this was checked, `u64::MAX - 10` rounded to
    /// 0 in release builds, the kernel was skipped and the call "succeeded".
    #[test]
    fn a_work_size_that_overflows_when_rounded_up_is_refused() {
        let mut s = spec();
        s.kernels[0].global = vec![Expr::parse("n").unwrap()];
        let huge = params(serde_json::json!({ "n": u64::MAX - 10 }));
        let e = s.plan(200, &huge, 1 << 20).unwrap_err();
        assert!(e.contains("'price'") && e.contains("overflows"), "{e}");
        // The largest size that still rounds up fits exactly.
        let edge = params(serde_json::json!({ "n": u64::MAX / 64 * 64 }));
        let p = s.plan(200, &edge, 1 << 20).unwrap();
        assert_eq!(p.launches[0].global, vec![u64::MAX / 64 * 64]);
    }

    #[test]
    fn requirements_are_checked_before_anything_runs() {
        let mut s = spec();
        s.require = vec![Requirement::parse("r_bp < 10000").unwrap()];
        assert!(s
            .plan(20, &Params::new(), 1 << 20)
            .unwrap_err()
            .contains("'r_bp' is required"));
        let ok = params(serde_json::json!({"r_bp": 500}));
        assert!(s.plan(20, &ok, 1 << 20).is_ok());
        let e = s
            .plan(20, &params(serde_json::json!({"r_bp": 10000})), 1 << 20)
            .unwrap_err();
        assert!(e.contains("`r_bp < 10000` (10000 < 10000 is false)"), "{e}");
        assert!(Requirement::parse("filter").is_err());
        assert!(Requirement::parse("filter < ").is_err());
        let r = Requirement::parse("input % 4 == 0").unwrap();
        assert!(r.check(8, &Params::new()).is_ok() && r.check(9, &Params::new()).is_err());
    }

    #[test]
    fn an_exact_input_size_is_checked() {
        let mut s = spec();
        s.input_multiple = 1;
        s.input_size = Some(Expr::parse("width * height").unwrap());
        let p = params(serde_json::json!({"width": 4, "height": 5}));
        assert!(s.plan(20, &p, 1 << 20).is_ok());
        let e = s.plan(19, &p, 1 << 20).unwrap_err();
        assert!(e.contains("exactly 20 bytes (width * height)"), "{e}");
        assert!(s.plan(20, &Params::new(), 1 << 20).is_err());
    }

    #[test]
    fn validation_names_the_field() {
        let mut s = spec();
        assert!(s.validate(&[]).is_ok());
        s.kernels[0].args.push(Arg::parse("object lut").unwrap());
        assert_eq!(s.validate(&[]).unwrap_err().0, "kernel[0].args");
        assert!(s.validate(&["lut".into()]).is_ok());
        s.kernels[0].local = Some(vec![8, 8]);
        assert_eq!(
            s.validate(&["lut".into()]).unwrap_err().0,
            "kernel[0].local"
        );
    }

    #[test]
    fn bundles_round_trip_and_reject_other_bytes() {
        let b = KernelBundle {
            spec: spec(),
            program: b"__kernel void price() {}".to_vec(),
        };
        assert_eq!(KernelBundle::decode(&b.encode()).unwrap(), b);
        assert!(KernelBundle::decode(b"\0asm").is_err());
        let enc = b.encode();
        assert!(KernelBundle::decode(&enc[..20]).is_err());
    }
}
