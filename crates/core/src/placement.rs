//! Which device class a call goes to.
//!
//! A version may ship several implementations (`wasm`, `opencl`, `cuda`);
//! only those whose verification passed take calls, in the deployment's
//! preference order (by default the order of `ip.toml`). A sync call goes
//! to the first preferred class that holds the image and has a free slot;
//! when the first choice still has to be programmed and a later class is
//! ready, the call runs there and the first choice is programmed in the
//! background, so the next call finds it warm.

use crate::{CoreError, Platform, Result};
use accelhub_device::DeviceStatus;
use accelhub_store::{DeploymentRow, StoredImplementation, VersionRow};
use std::sync::Arc;

/// The implementations a deployment's calls may use, best first: those
/// that passed verification, in the deployment's preference order.
pub(crate) fn call_order(dep: &DeploymentRow, v: &VersionRow) -> Vec<StoredImplementation> {
    let verified = |imp: &StoredImplementation| match &v.report {
        Some(r) => r
            .implementations
            .iter()
            .any(|x| x.device == imp.device && x.passed),
        None => false,
    };
    if dep.devices.is_empty() {
        return v
            .implementations
            .iter()
            .filter(|i| verified(i))
            .cloned()
            .collect();
    }
    dep.devices
        .iter()
        .filter_map(|d| v.implementations.iter().find(|i| &i.device == d))
        .filter(|i| verified(i))
        .cloned()
        .collect()
}

/// The device classes of `v` that passed verification.
pub(crate) fn verified_classes(v: &VersionRow) -> Vec<String> {
    v.report
        .iter()
        .flat_map(|r| r.implementations.iter())
        .filter(|r| r.passed)
        .map(|r| r.device.clone())
        .collect()
}

/// Check a requested preference against the version's verified classes.
pub(crate) fn check_preference(devices: &[String], v: &VersionRow) -> Result<()> {
    let verified = verified_classes(v);
    if devices.is_empty() {
        return Err(CoreError::BadRequest(format!(
            "name at least one device class (verified for {}@{}: {})",
            v.ip,
            v.version,
            verified.join(", ")
        )));
    }
    for (i, d) in devices.iter().enumerate() {
        if devices[..i].contains(d) {
            return Err(CoreError::BadRequest(format!(
                "device class '{d}' is listed twice"
            )));
        }
        if !verified.contains(d) {
            return Err(CoreError::Conflict(format!(
                "{}@{} has no verified '{d}' implementation (verified: {}): calls can only go \
                 to a class whose test vectors passed",
                v.ip,
                v.version,
                verified.join(", ")
            )));
        }
    }
    Ok(())
}

/// A sync call's choice: where it runs, and a preferred class to program
/// in the background meanwhile.
pub(crate) struct Choice {
    pub run: StoredImplementation,
    pub program: Option<StoredImplementation>,
}

/// Choose among `order` (best first) given each device's state.
pub(crate) fn choose(order: &[StoredImplementation], devices: &[DeviceStatus]) -> Option<Choice> {
    let state = |imp: &StoredImplementation| devices.iter().find(|d| d.class == imp.device);
    let image = |imp: &StoredImplementation| Platform::image_id(imp);
    let available: Vec<&StoredImplementation> =
        order.iter().filter(|i| state(i).is_some()).collect();
    let first = *available.first()?;
    let ready = |imp: &StoredImplementation| {
        state(imp).is_some_and(|d| d.images.contains(&image(imp)) && d.busy < d.slots)
    };
    if ready(first) {
        return Some(Choice {
            run: first.clone(),
            program: None,
        });
    }
    let first_loaded = state(first).is_some_and(|d| d.images.contains(&image(first)));
    match available.iter().find(|i| ready(i)) {
        // The first choice is only busy: wait for it rather than fall back.
        Some(_) if first_loaded => Some(Choice {
            run: first.clone(),
            program: None,
        }),
        Some(fallback) => Some(Choice {
            run: (*fallback).clone(),
            program: Some(first.clone()),
        }),
        None => Some(Choice {
            run: first.clone(),
            program: None,
        }),
    }
}

impl Platform {
    /// Where a sync call of `v` through `dep` runs now.
    pub(crate) fn choose_for_call(
        self: &Arc<Self>,
        dep: &DeploymentRow,
        v: &Arc<VersionRow>,
    ) -> Result<StoredImplementation> {
        let order = call_order(dep, v);
        // One class to choose from (the common case): no device states
        // to look at.
        if let [only] = order.as_slice() {
            if self.executor.device_classes().contains(&only.device) {
                return Ok(only.clone());
            }
        }
        let devices: Vec<DeviceStatus> = self
            .executor
            .devices()
            .into_iter()
            .map(|(_, d)| d)
            .collect();
        let choice = choose(&order, &devices).ok_or_else(|| {
            CoreError::Unavailable(format!(
                "no device can run {}@{} right now (its verified classes: {}; this node has: {})",
                v.ip,
                v.version,
                verified_classes(v).join(", "),
                self.executor.device_classes().join(", ")
            ))
        })?;
        if let Some(imp) = choice.program {
            self.program_in_background(v.clone(), imp);
        }
        Ok(choice.run)
    }

    /// Load an image without holding up the caller, once at a time.
    pub(crate) fn program_in_background(
        self: &Arc<Self>,
        v: Arc<VersionRow>,
        imp: StoredImplementation,
    ) {
        let key = Platform::image_id(&imp).0;
        {
            let mut busy = self.programming.lock().unwrap_or_else(|e| e.into_inner());
            if !busy.insert(key.clone()) {
                return;
            }
        }
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.load_image(&v, &imp).await {
                tracing::warn!(ip = %v.ip, device = %imp.device, "background programming failed: {e}");
            }
            me.programming
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use accelhub_device::ImageId;

    fn imp(device: &str) -> StoredImplementation {
        StoredImplementation {
            device: device.into(),
            artifact_key: format!("k/{device}"),
            artifact_sha256: format!("sha-{device}"),
        }
    }

    fn dev(class: &str, loaded: bool, busy: usize) -> DeviceStatus {
        DeviceStatus {
            class: class.into(),
            slots: 1,
            busy,
            images: if loaded {
                vec![ImageId(format!("{class}:sha-{class}"))]
            } else {
                vec![]
            },
            ..Default::default()
        }
    }

    #[test]
    fn the_preferred_class_runs_when_it_is_ready() {
        let order = [imp("opencl"), imp("wasm")];
        let c = choose(&order, &[dev("opencl", true, 0), dev("wasm", true, 0)]).unwrap();
        assert_eq!(c.run.device, "opencl");
        assert!(c.program.is_none());
    }

    #[test]
    fn a_ready_fallback_runs_while_the_preferred_device_is_programmed() {
        let order = [imp("opencl"), imp("wasm")];
        let c = choose(&order, &[dev("opencl", false, 0), dev("wasm", true, 0)]).unwrap();
        assert_eq!(c.run.device, "wasm");
        assert_eq!(c.program.unwrap().device, "opencl");
        // Nothing ready anywhere: the preferred class loads and runs.
        let c = choose(&order, &[dev("opencl", false, 0), dev("wasm", false, 0)]).unwrap();
        assert_eq!(c.run.device, "opencl");
        assert!(c.program.is_none());
        // The preferred class holds the image but is busy: wait for it.
        let c = choose(&order, &[dev("opencl", true, 1), dev("wasm", true, 0)]).unwrap();
        assert_eq!(c.run.device, "opencl");
    }

    #[test]
    fn classes_without_a_device_are_passed_over() {
        let order = [imp("cuda"), imp("wasm")];
        let c = choose(&order, &[dev("wasm", false, 0)]).unwrap();
        assert_eq!(c.run.device, "wasm");
        assert!(c.program.is_none());
        assert!(choose(&order, &[dev("opencl", true, 0)]).is_none());
    }
}
