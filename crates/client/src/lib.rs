//! A Rust client for the Accelhub HTTP API, used by the CLI, the tests and
//! the benchmarks.

mod package;

pub use package::pack_dir;

use accelhub_domain::{
    Account, AgentHello, AgentToken, CatalogEntry, ClaimRequest, CreateAccount, CreateAgentToken,
    CreatedAccount, CreatedAgentToken, DeployRequest, Deployment, IpDetails, IpVersion, Job,
    JobReport, LeaseState, NodeReport, ObjectInfo, Params, Recorded, Renewal, Role, SubmitJob,
    UsageReport, WorkItem,
};
use bytes::Bytes;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use std::path::Path;

/// An `application/problem+json` body (the type the server writes).
pub use accelhub_domain::Problem;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the Accelhub server at {url}: {source}")]
    Connect { url: String, source: reqwest::Error },
    #[error("{}", problem_message(.status, .problem))]
    Api {
        status: StatusCode,
        problem: Box<Problem>,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Invalid(String),
}

fn problem_message(status: &StatusCode, p: &Problem) -> String {
    let mut s = if p.detail.is_empty() {
        format!("the server answered {status}")
    } else {
        p.detail.clone()
    };
    if let Some(log) = p.log.as_deref().filter(|l| !l.trim().is_empty()) {
        s.push_str("\n--- IP log (stderr) ---\n");
        s.push_str(log.trim_end());
    }
    s
}

impl ClientError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn problem(&self) -> Option<&Problem> {
        match self {
            ClientError::Api { problem, .. } => Some(problem),
            _ => None,
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Metadata of a sync call, from the response headers.
#[derive(Debug, Clone, Default)]
pub struct CallInfo {
    pub call_id: String,
    pub ip: String,
    pub version: String,
    pub device: String,
    pub price: String,
    pub device_time_us: u64,
    pub cold_start: bool,
}

impl CallInfo {
    fn from_response(r: &Response) -> Self {
        let h = |k: &str| {
            r.headers()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        CallInfo {
            call_id: h("accelhub-call-id"),
            ip: h("accelhub-ip"),
            version: h("accelhub-version"),
            device: h("accelhub-device"),
            price: h("accelhub-price"),
            device_time_us: h("accelhub-device-time-us").parse().unwrap_or(0),
            cold_start: h("accelhub-cold-start") == "true",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Result<Self> {
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::Invalid(format!(
                "'{base}' is not a server URL: expected http://HOST:PORT or https://…"
            )));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("accelhub-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Invalid(format!("cannot build an HTTP client: {e}")))?;
        Ok(Client { http, base, token })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn with_token(&self, token: impl Into<String>) -> Client {
        Client {
            http: self.http.clone(),
            base: self.base.clone(),
            token: Some(token.into()),
        }
    }

    fn req(&self, method: Method, path: &str) -> RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// Send, and turn a non-2xx answer into [`ClientError::Api`].
    pub async fn send(&self, r: RequestBuilder) -> Result<Response> {
        let resp = r.send().await.map_err(|e| ClientError::Connect {
            url: self.base.clone(),
            source: e,
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body = resp.bytes().await.unwrap_or_default();
        let problem = serde_json::from_slice::<Problem>(&body).unwrap_or_else(|_| Problem {
            status: status.as_u16(),
            detail: String::from_utf8_lossy(&body).trim().to_string(),
            ..Problem::default()
        });
        Err(ClientError::Api {
            status,
            problem: Box::new(problem),
        })
    }

    async fn json<T: DeserializeOwned>(&self, r: RequestBuilder) -> Result<T> {
        let resp = self.send(r).await?;
        let bytes = resp.bytes().await.map_err(|e| ClientError::Connect {
            url: self.base.clone(),
            source: e,
        })?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Invalid(format!("unexpected answer from the server: {e}")))
    }

    // ---- Accounts ----

    pub async fn whoami(&self) -> Result<Account> {
        self.json(self.req(Method::GET, "/v1/account")).await
    }

    pub async fn create_account(&self, name: &str, role: Role) -> Result<CreatedAccount> {
        let body = CreateAccount {
            name: name.into(),
            role,
        };
        self.json(self.req(Method::POST, "/v1/accounts").json(&body))
            .await
    }

    /// Every account (operator), page after page.
    pub async fn accounts(&self) -> Result<Vec<Account>> {
        self.all_pages("/v1/accounts?limit=1000").await
    }

    // ---- Catalog ----

    /// Publish a package archive (see [`pack_dir`]).
    pub async fn publish(&self, archive: Vec<u8>) -> Result<IpVersion> {
        self.json(
            self.req(Method::POST, "/v1/ips")
                .header("content-type", "application/x-tar")
                .body(archive),
        )
        .await
    }

    pub async fn publish_dir(&self, dir: &Path) -> Result<IpVersion> {
        let archive = pack_dir(dir)?;
        self.publish(archive).await
    }

    /// The whole catalog (or what matches `query`), page after page.
    pub async fn catalog(&self, query: Option<&str>) -> Result<Vec<CatalogEntry>> {
        self.search(query, None, None, None, None).await
    }

    /// Search the catalog: words, tag, device class, vendor, and the
    /// order (`newest`, `rating`, `usage`, `name`); every page.
    pub async fn search(
        &self,
        query: Option<&str>,
        tag: Option<&str>,
        device: Option<&str>,
        vendor: Option<&str>,
        sort: Option<&str>,
    ) -> Result<Vec<CatalogEntry>> {
        let mut url = reqwest::Url::parse("http://server/v1/ips")
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in [
                ("q", query),
                ("tag", tag),
                ("device", device),
                ("vendor", vendor),
                ("sort", sort),
            ] {
                if let Some(v) = v {
                    q.append_pair(k, v);
                }
            }
            q.append_pair("limit", &accelhub_domain::PAGE_MAX.to_string());
        }
        let first = format!("{}?{}", url.path(), url.query().unwrap_or_default());
        self.all_pages(&first).await
    }

    pub async fn subscribe(
        &self,
        ip: &str,
        plan: &str,
    ) -> Result<accelhub_domain::billing::Subscription> {
        let body = accelhub_domain::billing::Subscribe {
            ip: ip.into(),
            plan: plan.into(),
        };
        self.json(self.req(Method::POST, "/v1/subscriptions").json(&body))
            .await
    }

    /// Every subscription of the caller, oldest first, page after page.
    pub async fn subscriptions(&self) -> Result<Vec<accelhub_domain::billing::Subscription>> {
        self.all_pages("/v1/subscriptions?limit=1000").await
    }

    /// Set (or with `None` remove) the monthly spending limit.
    pub async fn set_spending_limit(
        &self,
        monthly: Option<accelhub_domain::Money>,
    ) -> Result<accelhub_domain::billing::SpendingLimit> {
        let body = accelhub_domain::billing::SpendingLimit { monthly };
        self.json(
            self.req(Method::PUT, "/v1/account/spending-limit")
                .json(&body),
        )
        .await
    }

    /// The month's invoice, statement or totals (`YYYY-MM`; default now).
    pub async fn invoice(&self, month: Option<&str>) -> Result<accelhub_domain::billing::Invoice> {
        let mut r = self.req(Method::GET, "/v1/invoices");
        if let Some(m) = month {
            r = r.query(&[("month", m)]);
        }
        self.json(r).await
    }

    /// Rate (1-5) and review an IP the caller has used.
    pub async fn review(&self, ip: &str, stars: u8, text: &str) -> Result<accelhub_domain::Review> {
        let body = accelhub_domain::SubmitReview {
            stars,
            text: text.into(),
        };
        self.json(
            self.req(Method::PUT, &format!("/v1/ips/{}/review", check_ip(ip)?))
                .json(&body),
        )
        .await
    }

    /// Every review of an IP, newest first, page after page.
    pub async fn reviews(&self, ip: &str) -> Result<Vec<accelhub_domain::Review>> {
        self.all_pages(&format!("/v1/ips/{}/reviews?limit=1000", check_ip(ip)?))
            .await
    }

    /// The vendor's reply to review `id`.
    pub async fn reply(&self, ip: &str, id: i64, text: &str) -> Result<accelhub_domain::Review> {
        let body = accelhub_domain::SubmitReply { text: text.into() };
        self.json(
            self.req(
                Method::POST,
                &format!("/v1/ips/{}/reviews/{id}/reply", check_ip(ip)?),
            )
            .json(&body),
        )
        .await
    }

    pub async fn ip(&self, name: &str) -> Result<IpDetails> {
        self.json(self.req(Method::GET, &format!("/v1/ips/{}", check_ip(name)?)))
            .await
    }

    // ---- Deployments ----

    pub async fn deploy(&self, ip: &str, version: Option<&str>) -> Result<Deployment> {
        self.deploy_with(ip, version, None).await
    }

    /// Deploy with a scaling spec (`None`: keep the current one).
    pub async fn deploy_with(
        &self,
        ip: &str,
        version: Option<&str>,
        scaling: Option<accelhub_domain::Scaling>,
    ) -> Result<Deployment> {
        self.deploy_request(&DeployRequest {
            ip: ip.into(),
            version: version.map(str::to_string),
            scaling,
            devices: None,
        })
        .await
    }

    /// Deploy as the request says (scaling, device preference).
    pub async fn deploy_request(&self, body: &DeployRequest) -> Result<Deployment> {
        self.json(self.req(Method::POST, "/v1/deployments").json(body))
            .await
    }

    /// One deployment, with the autoscaler's latest decisions.
    pub async fn deployment(&self, ip: &str) -> Result<Deployment> {
        self.json(self.req(Method::GET, &format!("/v1/deployments/{}", check_ip(ip)?)))
            .await
    }

    /// Every deployment of the caller, by IP name, page after page.
    pub async fn deployments(&self) -> Result<Vec<Deployment>> {
        self.all_pages("/v1/deployments?limit=1000").await
    }

    pub async fn undeploy(&self, ip: &str) -> Result<()> {
        self.send(self.req(
            Method::DELETE,
            &format!("/v1/deployments/{}", check_ip(ip)?),
        ))
        .await?;
        Ok(())
    }

    // ---- Calls ----

    /// Start a sync call; the response body streams the output.
    pub async fn invoke_response(
        &self,
        ip: &str,
        params: &Params,
        input: impl Into<reqwest::Body>,
    ) -> Result<(CallInfo, Response)> {
        let mut r = self
            .req(Method::POST, &format!("/v1/invoke/{}", check_ip(ip)?))
            .header("content-type", "application/octet-stream")
            .body(input);
        if !params.is_empty() {
            r = r.query(&[(
                "params",
                serde_json::Value::Object(params.clone()).to_string(),
            )]);
        }
        let resp = self.send(r).await?;
        Ok((CallInfo::from_response(&resp), resp))
    }

    /// A sync call with the output in memory.
    pub async fn invoke(
        &self,
        ip: &str,
        params: &Params,
        input: Bytes,
    ) -> Result<(CallInfo, Bytes)> {
        let (info, resp) = self.invoke_response(ip, params, input).await?;
        let out = resp.bytes().await.map_err(|e| ClientError::Connect {
            url: self.base.clone(),
            source: e,
        })?;
        Ok((info, out))
    }

    // ---- Objects ----

    /// Upload bytes as an object; `key` None lets the server name it.
    pub async fn put_object(
        &self,
        key: Option<&str>,
        data: impl Into<reqwest::Body>,
        sha256: Option<&str>,
    ) -> Result<ObjectInfo> {
        let mut r = match key {
            Some(k) => self.req(Method::PUT, &format!("/v1/objects/{k}")),
            None => self.req(Method::POST, "/v1/objects"),
        }
        .header("content-type", "application/octet-stream")
        .body(data);
        if let Some(s) = sha256 {
            r = r.header("accelhub-sha256", s);
        }
        self.json(r).await
    }

    /// Every one of the caller's objects, newest first, page after page.
    pub async fn objects(&self) -> Result<Vec<ObjectInfo>> {
        self.all_pages("/v1/objects?limit=1000").await
    }

    /// A list the server pages: follow its `Link: <…>; rel="next"` headers
    /// from `first` to the last page.
    pub async fn all_pages<T: DeserializeOwned>(&self, first: &str) -> Result<Vec<T>> {
        let mut out = Vec::new();
        let mut next = Some(first.to_string());
        while let Some(path) = next.take() {
            let resp = self.send(self.req(Method::GET, &path)).await?;
            next = resp
                .headers()
                .get(reqwest::header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            let bytes = resp.bytes().await.map_err(|e| ClientError::Connect {
                url: self.base.clone(),
                source: e,
            })?;
            let page: Vec<T> = serde_json::from_slice(&bytes).map_err(|e| {
                ClientError::Invalid(format!("unexpected answer from the server: {e}"))
            })?;
            out.extend(page);
        }
        Ok(out)
    }

    pub async fn get_object(&self, key: &str) -> Result<Response> {
        self.send(self.req(Method::GET, &format!("/v1/objects/{key}")))
            .await
    }

    pub async fn delete_object(&self, key: &str) -> Result<()> {
        self.send(self.req(Method::DELETE, &format!("/v1/objects/{key}")))
            .await?;
        Ok(())
    }

    // ---- Jobs ----

    pub async fn submit_job(&self, ip: &str, input: &str, params: Params) -> Result<Job> {
        let body = SubmitJob {
            ip: ip.into(),
            input: input.into(),
            params,
        };
        self.json(self.req(Method::POST, "/v1/jobs").json(&body))
            .await
    }

    pub async fn job(&self, id: &str) -> Result<Job> {
        self.json(self.req(Method::GET, &format!("/v1/jobs/{id}")))
            .await
    }

    pub async fn jobs(&self, limit: Option<u32>) -> Result<Vec<Job>> {
        let mut r = self.req(Method::GET, "/v1/jobs");
        if let Some(l) = limit {
            r = r.query(&[("limit", l)]);
        }
        self.json(r).await
    }

    pub async fn cancel_job(&self, id: &str) -> Result<Job> {
        self.json(self.req(Method::POST, &format!("/v1/jobs/{id}/cancel")))
            .await
    }

    /// A succeeded job's main output, or the one called `name`.
    pub async fn job_output(&self, id: &str, name: Option<&str>) -> Result<Response> {
        let path = match name {
            None => format!("/v1/jobs/{id}/output"),
            Some(n) => format!("/v1/jobs/{id}/outputs/{n}"),
        };
        self.send(self.req(Method::GET, &path)).await
    }

    pub async fn delete_job(&self, id: &str) -> Result<()> {
        self.send(self.req(Method::DELETE, &format!("/v1/jobs/{id}")))
            .await?;
        Ok(())
    }

    /// Poll a job until it finishes, calling `progress` on each change.
    pub async fn wait_job(&self, id: &str, mut progress: impl FnMut(&Job)) -> Result<Job> {
        let mut delay = std::time::Duration::from_millis(50);
        loop {
            let job = self.job(id).await?;
            progress(&job);
            if job.state.is_terminal() {
                return Ok(job);
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(std::time::Duration::from_millis(500));
        }
    }

    // ---- Usage ----

    /// Nodes, devices and slots (operator only): every node, page after
    /// page.
    pub async fn fleet(&self) -> Result<accelhub_domain::Fleet> {
        Ok(accelhub_domain::Fleet {
            nodes: self.all_pages("/v1/fleet?limit=1000").await?,
        })
    }

    /// One page of usage records (at most `limit`, after `cursor`), with
    /// the totals of all of them.
    pub async fn usage_page(
        &self,
        since: Option<&str>,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<UsageReport> {
        let mut r = self.req(Method::GET, "/v1/usage");
        if let Some(s) = since {
            r = r.query(&[("since", s)]);
        }
        if let Some(c) = cursor {
            r = r.query(&[("cursor", c)]);
        }
        if let Some(l) = limit {
            r = r.query(&[("limit", l)]);
        }
        self.json(r).await
    }

    /// Every usage record since `since`, page after page.
    pub async fn usage(&self, since: Option<&str>) -> Result<UsageReport> {
        let mut report = self
            .usage_page(since, None, Some(accelhub_domain::PAGE_MAX))
            .await?;
        while let Some(cursor) = report.next.take() {
            let page = self
                .usage_page(since, Some(&cursor), Some(accelhub_domain::PAGE_MAX))
                .await?;
            report.records.extend(page.records);
            report.next = page.next;
        }
        Ok(report)
    }

    // ---- Agent tokens (operator) ----

    pub async fn create_agent(&self, name: &str) -> Result<CreatedAgentToken> {
        let body = CreateAgentToken { name: name.into() };
        self.json(self.req(Method::POST, "/v1/agents").json(&body))
            .await
    }

    /// Every agent token (operator), page after page.
    pub async fn agents(&self) -> Result<Vec<AgentToken>> {
        self.all_pages("/v1/agents?limit=1000").await
    }

    pub async fn revoke_agent(&self, name: &str) -> Result<()> {
        self.send(self.req(Method::DELETE, &format!("/v1/agents/{name}")))
            .await?;
        Ok(())
    }

    // ---- Raw ----

    /// A request to any path, with the client's token.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.req(method, path)
    }
}

fn check_ip(name: &str) -> Result<&str> {
    name.parse::<accelhub_domain::IpName>()
        .map_err(ClientError::Invalid)?;
    Ok(name)
}

/// The agent side of the `/v1/agent` protocol: a node's agent speaking to
/// the control plane with an agent token.
#[derive(Debug, Clone)]
pub struct AgentClient {
    api: Client,
    node: String,
}

impl AgentClient {
    pub fn new(base: &str, token: &str, node: &str) -> Result<Self> {
        Ok(AgentClient {
            api: Client::new(base, Some(token.to_string()))?,
            node: node.to_string(),
        })
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.api
            .req(method, path)
            .header("accelhub-node", &self.node)
    }

    pub async fn register(&self, report: &NodeReport) -> Result<AgentHello> {
        self.api
            .json(self.req(Method::POST, "/v1/agent/register").json(report))
            .await
    }

    pub async fn heartbeat(&self, report: &NodeReport) -> Result<()> {
        self.api
            .send(self.req(Method::POST, "/v1/agent/heartbeat").json(report))
            .await?;
        Ok(())
    }

    /// A job of one of `req.devices`, waiting up to `req.wait_ms` for one.
    pub async fn claim(&self, req: &ClaimRequest) -> Result<Option<WorkItem>> {
        let resp = self
            .api
            .send(self.req(Method::POST, "/v1/agent/claim").json(req).timeout(
                std::time::Duration::from_millis(req.wait_ms) + std::time::Duration::from_secs(30),
            ))
            .await?;
        if resp.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let bytes = resp.bytes().await.map_err(|e| ClientError::Connect {
            url: self.api.base.clone(),
            source: e,
        })?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ClientError::Invalid(format!("unexpected answer from the server: {e}")))
    }

    pub async fn renew(&self, job: &str, r: &Renewal) -> Result<bool> {
        let s: LeaseState = self
            .api
            .json(
                self.req(Method::POST, &format!("/v1/agent/jobs/{job}/renew"))
                    .json(r),
            )
            .await?;
        Ok(s.running)
    }

    /// The job's input, as a response to stream.
    pub async fn input(&self, job: &str) -> Result<Response> {
        self.api
            .send(self.req(Method::GET, &format!("/v1/agent/jobs/{job}/input")))
            .await
    }

    pub async fn object(&self, job: &str, name: &str) -> Result<Response> {
        self.api
            .send(self.req(Method::GET, &format!("/v1/agent/jobs/{job}/objects/{name}")))
            .await
    }

    pub async fn artifact(&self, job: &str) -> Result<Bytes> {
        let resp = self
            .api
            .send(self.req(Method::GET, &format!("/v1/agent/jobs/{job}/artifact")))
            .await?;
        resp.bytes().await.map_err(|e| ClientError::Connect {
            url: self.api.base.clone(),
            source: e,
        })
    }

    /// Upload a leased job's main output (`name` None) or a named one.
    pub async fn put_output(
        &self,
        job: &str,
        name: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Result<()> {
        let path = match name {
            None => format!("/v1/agent/jobs/{job}/output"),
            Some(n) => format!("/v1/agent/jobs/{job}/outputs/{n}"),
        };
        self.api
            .send(
                self.req(Method::PUT, &path)
                    .header("content-type", "application/octet-stream")
                    .body(body),
            )
            .await?;
        Ok(())
    }

    pub async fn finish(&self, job: &str, report: &JobReport) -> Result<bool> {
        let r: Recorded = self
            .api
            .json(
                self.req(Method::POST, &format!("/v1/agent/jobs/{job}/finish"))
                    .json(report),
            )
            .await?;
        Ok(r.recorded)
    }
}

/// The target of a `Link` header's `rel="next"` (RFC 8288), if any.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.trim().split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"))
            .then(|| target.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::next_link;

    #[test]
    fn the_next_page_is_read_off_the_link_header() {
        assert_eq!(
            next_link(r#"</v1/objects?cursor=1.a&limit=2>; rel="next""#).as_deref(),
            Some("/v1/objects?cursor=1.a&limit=2")
        );
        assert_eq!(
            next_link(r#"</a>; rel="prev", </b>; rel="next""#).as_deref(),
            Some("/b")
        );
        assert_eq!(next_link(r#"</a>; rel="prev""#), None);
        assert_eq!(next_link("garbage"), None);
    }
}
