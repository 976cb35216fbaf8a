//! Where calls run. [`Executor`] is the seam between the control plane and
//! devices: [`LocalExecutor`] drives the backends of this process (the
//! embedded agent); a remote executor dispatches to agents on other nodes.

use accelhub_device::{
    Backend, CallError, CallInput, CallOutput, DeviceStatus, ImageId, LoadError, LoadReport,
};
use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Fetches an image's artifact bytes, only when the image must be loaded.
pub type ArtifactFetch<'a> = Box<dyn FnOnce() -> BoxFuture<'a, Result<Bytes, String>> + Send + 'a>;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("no device of class '{0}' is available")]
    NoDevice(String),
    #[error("cannot fetch the artifact: {0}")]
    Fetch(String),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Call(#[from] CallError),
}

#[async_trait]
pub trait Executor: Send + Sync + 'static {
    /// Device classes that can run calls, in no particular order.
    fn device_classes(&self) -> Vec<String>;

    /// Calls each device class runs at once (its slots).
    fn device_slots(&self) -> Vec<(String, usize)>;

    /// Every device's state, by node.
    fn devices(&self) -> Vec<(String, DeviceStatus)>;

    /// Make sure an image is loaded on some device of its class.
    async fn ensure_loaded(
        &self,
        device: &str,
        image: &ImageId,
        fetch: ArtifactFetch<'_>,
    ) -> Result<LoadReport, ExecError>;

    /// Run a call, loading the image first if needed.
    async fn execute(
        &self,
        device: &str,
        image: &ImageId,
        fetch: ArtifactFetch<'_>,
        input: CallInput,
    ) -> Result<(LoadReport, CallOutput), ExecError>;
}

/// Runs calls on the backends of this process.
#[derive(Clone)]
pub struct LocalExecutor {
    node: String,
    backends: BTreeMap<String, Arc<dyn Backend>>,
}

impl Default for LocalExecutor {
    fn default() -> Self {
        LocalExecutor {
            node: "local".into(),
            backends: BTreeMap::new(),
        }
    }
}

impl LocalExecutor {
    pub fn new() -> Self {
        Self::default()
    }

    /// The node these devices are on (for the fleet view).
    pub fn on_node(mut self, node: &str) -> Self {
        self.node = node.into();
        self
    }

    pub fn with_backend(mut self, backend: Arc<dyn Backend>) -> Self {
        self.backends.insert(backend.class().to_string(), backend);
        self
    }

    pub fn backend(&self, class: &str) -> Option<&Arc<dyn Backend>> {
        self.backends.get(class)
    }

    /// Total concurrent calls over all devices.
    pub fn total_slots(&self) -> usize {
        self.backends.values().map(|b| b.slots()).sum()
    }
}

#[async_trait]
impl Executor for LocalExecutor {
    fn device_classes(&self) -> Vec<String> {
        self.backends.keys().cloned().collect()
    }

    fn device_slots(&self) -> Vec<(String, usize)> {
        self.backends
            .iter()
            .map(|(k, b)| (k.clone(), b.slots()))
            .collect()
    }

    fn devices(&self) -> Vec<(String, DeviceStatus)> {
        self.backends
            .values()
            .map(|b| (self.node.clone(), b.status()))
            .collect()
    }

    async fn ensure_loaded(
        &self,
        device: &str,
        image: &ImageId,
        fetch: ArtifactFetch<'_>,
    ) -> Result<LoadReport, ExecError> {
        let backend = self
            .backends
            .get(device)
            .ok_or_else(|| ExecError::NoDevice(device.to_string()))?;
        if backend.is_loaded(image) {
            return Ok(LoadReport {
                cached: true,
                duration: std::time::Duration::ZERO,
            });
        }
        let artifact = fetch().await.map_err(ExecError::Fetch)?;
        Ok(backend.load(image, artifact).await?)
    }

    async fn execute(
        &self,
        device: &str,
        image: &ImageId,
        fetch: ArtifactFetch<'_>,
        input: CallInput,
    ) -> Result<(LoadReport, CallOutput), ExecError> {
        let load = self.ensure_loaded(device, image, fetch).await?;
        let backend = self
            .backends
            .get(device)
            .ok_or_else(|| ExecError::NoDevice(device.to_string()))?;
        let out = backend.call(image, input).await?;
        Ok((load, out))
    }
}
