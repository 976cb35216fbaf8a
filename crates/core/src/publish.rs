//! Publishing and online verification of IP versions.
//!
//! `POST /v1/ips` takes a tar of the package. The manifest is parsed and
//! checked (errors name the field), every file is sealed with AES-256-GCM
//! under the master key and stored, and the version is recorded `pending`. A
//! background task then loads each implementation on its device class and
//! runs every test vector with production limits; the version becomes
//! `verified` only if every output is byte-exact, else `rejected` with a
//! report per test (sizes, first differing byte, exit code, stderr tail, trap
//! or deadline). Versions still pending at start-up are verified again.

use crate::{new_id, version_view, CoreError, Package, Platform, Result};
use accelhub_device::CallInput;
use accelhub_domain::kernel::{KernelBundle, DEVICE_CUDA, DEVICE_OPENCL};
use accelhub_domain::{
    Account, ImplementationReport, IpVersion, Role, TestOutcome, VerificationReport, VersionStatus,
    DEVICE_NATIVE,
};
use accelhub_store::{
    NewVersion, StoreError, StoredImplementation, StoredObject, StoredTest, VersionRow,
};
use bytes::Bytes;
use chrono::Utc;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Device classes a version may declare even when no device of the class
/// is up now (agents may bring one).
const KNOWN_CLASSES: &[&str] = &[accelhub_domain::DEVICE_WASM, DEVICE_OPENCL, DEVICE_CUDA];

/// Largest description kept in the catalog.
const MAX_DESCRIPTION: usize = 256 * 1024;

impl Platform {
    /// Publish a package (a tar archive) as a new version in state
    /// `pending`, and start verifying it.
    pub async fn publish(self: &Arc<Self>, account: &Account, archive: &[u8]) -> Result<IpVersion> {
        self.check_publisher(account)?;
        if archive.len() as u64 > self.config.max_package_bytes {
            return Err(CoreError::TooLarge(format!(
                "packages are at most {} bytes",
                self.config.max_package_bytes
            )));
        }
        let package = Package::from_tar(archive)?;
        self.publish_package(account, package).await
    }

    /// Publish a first-party package as the operator, unless that version
    /// is already published. Returns the new version, if any.
    pub async fn publish_builtin(self: &Arc<Self>, package: Package) -> Result<Option<IpVersion>> {
        let m = &package.manifest;
        if self
            .store
            .get_version(&m.name.to_string(), &m.version.to_string())
            .await?
            .is_some()
        {
            return Ok(None);
        }
        let operator = self
            .store
            .list_accounts()
            .await?
            .into_iter()
            .find(|a| a.role == Role::Operator)
            .ok_or_else(|| {
                CoreError::Internal("no operator account to publish built-in IPs".into())
            })?;
        match self.publish_package(&operator, package).await {
            Ok(v) => Ok(Some(v)),
            // Another process published it meanwhile.
            Err(CoreError::Conflict(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn check_publisher(&self, account: &Account) -> Result<()> {
        if !matches!(account.role, Role::Vendor | Role::Operator) {
            return Err(CoreError::Forbidden(format!(
                "only vendor accounts publish IPs; this is a {} account",
                account.role
            )));
        }
        Ok(())
    }

    /// Publish a checked package as `account`.
    pub async fn publish_package(
        self: &Arc<Self>,
        account: &Account,
        package: Package,
    ) -> Result<IpVersion> {
        self.check_publisher(account)?;
        let m = &package.manifest;
        if account.role == Role::Vendor && m.name.namespace != account.name {
            return Err(CoreError::Forbidden(format!(
                "vendor '{}' may only publish into its own namespace '{}/…', not '{}'",
                account.name, account.name, m.name
            )));
        }
        let ip = m.name.to_string();
        if let Some(owner) = self.store.ip_vendor(&ip).await? {
            if owner != account.id && account.role != Role::Operator {
                return Err(CoreError::Forbidden(format!(
                    "'{ip}' belongs to another account"
                )));
            }
        }
        let classes = self.executor.device_classes();
        for (i, imp) in m.implementations.iter().enumerate() {
            if imp.device == DEVICE_NATIVE && account.role != Role::Operator {
                return Err(CoreError::Forbidden(format!(
                    "ip.toml field `implementation[{i}].device`: device class '{DEVICE_NATIVE}' \
                     runs first-party native code outside the sandbox; only the operator \
                     publishes it (vendors ship 'wasm' implementations)"
                )));
            }
            if !classes.contains(&imp.device) && !KNOWN_CLASSES.contains(&imp.device.as_str()) {
                let mut known: Vec<String> = classes.clone();
                known.extend(KNOWN_CLASSES.iter().map(|c| c.to_string()));
                known.sort();
                known.dedup();
                return Err(CoreError::BadRequest(format!(
                    "ip.toml field `implementation[{i}].device`: device class '{}' is not \
                     a device class of this platform (known: {})",
                    imp.device,
                    known.join(", ")
                )));
            }
        }
        let limits = m
            .limits
            .resolve(&self.config.default_limits, &self.config.max_limits)
            .map_err(|(field, msg)| {
                CoreError::BadRequest(format!("ip.toml field `{field}`: {msg}"))
            })?;
        let description = match &m.description {
            None => None,
            Some(path) => {
                let bytes = &package.files[path];
                if bytes.len() > MAX_DESCRIPTION {
                    return Err(CoreError::BadRequest(format!(
                        "ip.toml field `description`: '{path}' is larger than {MAX_DESCRIPTION} bytes"
                    )));
                }
                Some(String::from_utf8(bytes.to_vec()).map_err(|_| {
                    CoreError::BadRequest(format!(
                        "ip.toml field `description`: '{path}' is not UTF-8 text"
                    ))
                })?)
            }
        };
        if self
            .store
            .get_version(&ip, &m.version.to_string())
            .await?
            .is_some()
        {
            return Err(version_exists(&ip, &m.version.to_string()));
        }

        // Seal every file the version needs; nothing is stored in clear.
        // What this publish stored is removed again if it fails at any
        // point (a store error, a full disk, a concurrent duplicate that
        // won the version row): no blob outlives a failed publish.
        let prefix = format!("packages/{}", new_id("pkg"));
        let mut stored = Vec::new();
        let row = match self
            .store_package(account, &package, &prefix, limits, description, &mut stored)
            .await
        {
            Ok(row) => row,
            Err(e) => {
                for key in &stored {
                    if let Err(cleanup) = self.objects.delete(key).await {
                        tracing::warn!(%key, error = %cleanup, "cannot remove a failed publish's blob");
                    }
                }
                return Err(e);
            }
        };
        let view = version_view(&row);
        let me = self.clone();
        tokio::spawn(async move { me.verify(row).await });
        Ok(view)
    }

    /// Seal and store every file of a checked package under `prefix`, then
    /// record the version; each key stored is pushed on `stored` first.
    async fn store_package(
        &self,
        account: &Account,
        package: &Package,
        prefix: &str,
        limits: accelhub_domain::Limits,
        description: Option<String>,
        stored: &mut Vec<String>,
    ) -> Result<VersionRow> {
        let m = &package.manifest;
        let ip = m.name.to_string();
        let mut implementations = Vec::new();
        for imp in &m.implementations {
            let file = &package.files[&imp.artifact];
            // A kernel implementation's artifact carries its declaration
            // (kernels, arguments, work sizes) with the program, so that
            // any agent can run it from the artifact alone.
            let bundled;
            let bytes: &[u8] = match &imp.kernel {
                Some(spec) => {
                    bundled = KernelBundle {
                        spec: spec.clone(),
                        program: file.to_vec(),
                    }
                    .encode();
                    &bundled
                }
                None => file,
            };
            let key = format!("{prefix}/{}", imp.artifact);
            self.put_sealed(&key, bytes, stored).await?;
            implementations.push(StoredImplementation {
                device: imp.device.clone(),
                artifact_key: key,
                artifact_sha256: hex::encode(Sha256::digest(bytes)),
            });
        }
        let mut tests = Vec::new();
        for t in &m.tests {
            let mut keys = Vec::new();
            for path in [&t.input, &t.expect] {
                let key = format!("{prefix}/{path}");
                self.put_sealed(&key, &package.files[path], stored).await?;
                keys.push(key);
            }
            let mut objects = std::collections::BTreeMap::new();
            for (name, path) in &t.objects {
                let bytes = &package.files[path];
                let key = format!("{prefix}/{path}");
                self.put_sealed(&key, bytes, stored).await?;
                objects.insert(
                    name.clone(),
                    StoredObject {
                        key,
                        sha256: hex::encode(Sha256::digest(bytes)),
                        size: bytes.len() as u64,
                    },
                );
            }
            tests.push(StoredTest {
                name: t.name.clone(),
                input_key: keys[0].clone(),
                expect_key: keys[1].clone(),
                params: t.params.clone(),
                objects,
                compare: t.compare,
            });
        }
        self.store
            .create_version(NewVersion {
                ip: ip.clone(),
                vendor_id: account.id,
                version: m.version.clone(),
                summary: m.summary.clone(),
                description,
                tags: m.tags.clone(),
                price: m.pricing.per_call,
                limits,
                implementations,
                objects: m.objects.clone(),
                outputs: m.outputs.clone(),
                tests,
                pricing: m.pricing.terms.clone(),
            })
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => version_exists(&ip, &m.version.to_string()),
                other => other.into(),
            })
    }

    async fn put_sealed(&self, key: &str, clear: &[u8], stored: &mut Vec<String>) -> Result<()> {
        stored.push(key.to_string());
        self.objects
            .put(key, Bytes::from(self.sealer.seal(clear)))
            .await?;
        Ok(())
    }

    /// Verify every version left pending (by a restart mid-verification).
    pub async fn verify_pending(self: &Arc<Self>) -> Result<usize> {
        let pending = self.store.pending_versions().await?;
        let n = pending.len();
        for v in pending {
            let me = self.clone();
            tokio::spawn(async move { me.verify(v).await });
        }
        Ok(n)
    }

    /// Run every test vector on every implementation whose device class
    /// this platform has, with production limits. The version becomes
    /// `verified` when at least one implementation passes and none fails;
    /// calls then go only to the classes that passed. An implementation
    /// for a class no device here offers is recorded as not verified.
    pub async fn verify(self: &Arc<Self>, version: VersionRow) {
        let classes = self.executor.device_classes();
        let mut implementations = Vec::new();
        for imp in &version.implementations {
            if !classes.contains(&imp.device) {
                implementations.push(ImplementationReport {
                    device: imp.device.clone(),
                    passed: false,
                    skipped: Some(format!(
                        "no '{}' device on this platform's verification node: not verified, \
                         so calls do not go to it",
                        imp.device
                    )),
                    load_error: None,
                    load_ms: 0.0,
                    tests: Vec::new(),
                });
                continue;
            }
            implementations.push(self.verify_implementation(&version, imp).await);
        }
        let passed = implementations.iter().any(|r| r.passed)
            && implementations
                .iter()
                .all(|r| r.passed || r.skipped.is_some());
        let report = VerificationReport {
            passed,
            implementations,
            finished_at: Utc::now(),
        };
        let status = if passed {
            VersionStatus::Verified
        } else {
            VersionStatus::Rejected
        };
        self.metrics.verification(status.as_str());
        tracing::info!(ip = %version.ip, version = %version.version, %status, "verification finished");
        if let Err(e) = self
            .store
            .set_version_status(version.id, status, &report)
            .await
        {
            tracing::error!(ip = %version.ip, version = %version.version, "cannot record verification: {e}");
        }
    }

    async fn verify_implementation(
        &self,
        version: &VersionRow,
        imp: &StoredImplementation,
    ) -> ImplementationReport {
        let mut report = ImplementationReport {
            device: imp.device.clone(),
            passed: false,
            skipped: None,
            load_error: None,
            load_ms: 0.0,
            tests: Vec::new(),
        };
        match self.load_image(version, imp).await {
            Ok(l) => report.load_ms = l.duration.as_secs_f64() * 1e3,
            Err(e) => {
                report.load_error = Some(e.to_string());
                return report;
            }
        }
        let image = Self::image_id(imp);
        for t in &version.tests {
            let outcome = self.run_test(version, imp, &image, t).await;
            report.tests.push(outcome);
        }
        report.passed = report.tests.iter().all(|t| t.passed);
        report
    }

    async fn run_test(
        &self,
        version: &VersionRow,
        imp: &StoredImplementation,
        image: &accelhub_device::ImageId,
        t: &StoredTest,
    ) -> TestOutcome {
        let mut outcome = TestOutcome {
            name: t.name.clone(),
            passed: false,
            expected_size: 0,
            actual_size: None,
            first_difference: None,
            exit_code: None,
            error: None,
            stderr_tail: String::new(),
            device_time_ms: 0.0,
        };
        let (input, expect) = match (
            self.unseal(&t.input_key).await,
            self.unseal(&t.expect_key).await,
        ) {
            (Ok(i), Ok(e)) => (i, e),
            (Err(e), _) | (_, Err(e)) => {
                outcome.error = Some(format!("cannot read the test vector: {e}"));
                return outcome;
            }
        };
        outcome.expected_size = expect.len() as u64;
        let mut call = CallInput::in_memory(input, t.params.clone(), version.limits);
        call.objects = self.test_objects(t);
        let key = imp.artifact_key.clone();
        let result = self
            .executor
            .execute(
                &imp.device,
                image,
                Box::new(move || Box::pin(async move { self.unseal(&key).await })),
                call,
            )
            .await;
        match result {
            Ok((_, out)) => {
                outcome.device_time_ms = out.device_time.as_secs_f64() * 1e3;
                let output = out.output.bytes();
                outcome.actual_size = Some(output.len() as u64);
                outcome.stderr_tail = accelhub_domain::version::tail(&out.log, 2048);
                let (passed, first) = TestOutcome::compare_as(t.compare, &expect, &output);
                outcome.passed = passed;
                outcome.first_difference = first;
                if !passed {
                    outcome.error = Some("output differs from the expected bytes".into());
                }
            }
            Err(crate::ExecError::Call(e)) => {
                outcome.exit_code = e.exit_code();
                outcome.stderr_tail = accelhub_domain::version::tail(e.log(), 2048);
                outcome.error = Some(e.to_string());
            }
            Err(e) => outcome.error = Some(e.to_string()),
        }
        outcome
    }
}

fn version_exists(ip: &str, version: &str) -> CoreError {
    CoreError::Conflict(format!(
        "{ip}@{version} is already published and published versions are immutable: \
         bump `version` in ip.toml"
    ))
}
