//! The embedded agent's job source: the control plane of this process,
//! called directly (a remote agent's source is `accelhub_worker::HttpJobs`).

use crate::{CoreError, Platform};
use accelhub_device::Output;
use accelhub_domain::{ClaimRequest, JobReport, Renewal, WorkItem};
use accelhub_objects::ByteStream;
use accelhub_worker::{file_stream, JobSource, SourceError};
use async_trait::async_trait;
use bytes::Bytes;
use std::sync::Arc;

type Result<T> = std::result::Result<T, SourceError>;

impl From<CoreError> for SourceError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Internal(m) | CoreError::Unavailable(m) => SourceError::Unavailable(m),
            other => SourceError::Refused(other.to_string()),
        }
    }
}

/// The control plane of this process.
pub struct LocalJobs {
    platform: Arc<Platform>,
    node: String,
}

impl LocalJobs {
    pub fn new(platform: Arc<Platform>) -> Self {
        let node = platform.config.node.clone();
        LocalJobs { platform, node }
    }
}

#[async_trait]
impl JobSource for LocalJobs {
    fn node(&self) -> &str {
        &self.node
    }
    async fn claim(&self, req: &ClaimRequest) -> Result<Option<WorkItem>> {
        Ok(self.platform.claim_work(&self.node, req).await?)
    }
    async fn renew(&self, job: &str, r: Renewal) -> Result<bool> {
        Ok(self.platform.renew_work(&self.node, job, &r).await?)
    }
    async fn input(&self, job: &str) -> Result<ByteStream> {
        Ok(self.platform.work_input(&self.node, job).await?.1)
    }
    async fn object(&self, job: &str, name: &str) -> Result<ByteStream> {
        Ok(self.platform.work_object(&self.node, job, name).await?)
    }
    async fn artifact(&self, job: &str) -> Result<Bytes> {
        Ok(self.platform.work_artifact(&self.node, job).await?)
    }
    async fn put_output(&self, job: &str, name: Option<&str>, output: Output) -> Result<u64> {
        let body: ByteStream = match output {
            Output::Bytes(b) => Box::pin(futures::stream::once(async move { Ok(b) })),
            Output::File { path, .. } => file_stream(&path)
                .await
                .map_err(|e| SourceError::Local(format!("cannot read the output: {e}")))?,
        };
        Ok(self
            .platform
            .put_work_output(&self.node, job, name, body)
            .await?)
    }
    async fn finish(&self, job: &str, report: JobReport) -> Result<bool> {
        Ok(self.platform.finish_work(&self.node, job, report).await?)
    }
}
