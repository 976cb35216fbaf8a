//! A remote agent's job source: the control plane over the `/v1/agent`
//! HTTP protocol.

use crate::{file_stream, JobSource, Result, SourceError};
use accelhub_client::{AgentClient, ClientError};
use accelhub_device::Output;
use accelhub_domain::{ClaimRequest, JobReport, Renewal, WorkItem};
use accelhub_objects::ByteStream;
use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;

/// The control plane, over `/v1/agent`.
pub struct HttpJobs {
    client: AgentClient,
}

impl HttpJobs {
    pub fn new(client: AgentClient) -> Self {
        HttpJobs { client }
    }
}

/// A client error as a worker acts on it: the control plane's 4xx answers
/// are refusals; anything else (no connection, 5xx) may pass.
fn source_error(e: ClientError) -> SourceError {
    match e.status() {
        Some(s) if s.is_client_error() => SourceError::Refused(e.to_string()),
        _ => SourceError::Unavailable(e.to_string()),
    }
}

fn stream_of(resp: reqwest::Response) -> ByteStream {
    Box::pin(resp.bytes_stream().map_err(std::io::Error::other))
}

#[async_trait]
impl JobSource for HttpJobs {
    fn node(&self) -> &str {
        self.client.node()
    }
    async fn claim(&self, req: &ClaimRequest) -> Result<Option<WorkItem>> {
        self.client.claim(req).await.map_err(source_error)
    }
    async fn renew(&self, job: &str, r: Renewal) -> Result<bool> {
        self.client.renew(job, &r).await.map_err(source_error)
    }
    async fn input(&self, job: &str) -> Result<ByteStream> {
        Ok(stream_of(
            self.client.input(job).await.map_err(source_error)?,
        ))
    }
    async fn object(&self, job: &str, name: &str) -> Result<ByteStream> {
        Ok(stream_of(
            self.client.object(job, name).await.map_err(source_error)?,
        ))
    }
    async fn artifact(&self, job: &str) -> Result<Bytes> {
        self.client.artifact(job).await.map_err(source_error)
    }
    async fn put_output(&self, job: &str, name: Option<&str>, output: Output) -> Result<u64> {
        let size = output.len();
        let body = match output {
            Output::Bytes(b) => reqwest::Body::from(b),
            Output::File { path, .. } => reqwest::Body::wrap_stream(
                file_stream(&path)
                    .await
                    .map_err(|e| SourceError::Local(format!("cannot read the output: {e}")))?,
            ),
        };
        self.client
            .put_output(job, name, body)
            .await
            .map_err(source_error)?;
        Ok(size)
    }
    async fn finish(&self, job: &str, report: JobReport) -> Result<bool> {
        self.client.finish(job, &report).await.map_err(source_error)
    }
}
