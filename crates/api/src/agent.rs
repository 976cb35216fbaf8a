//! `/v1/agents` (the operator's agent tokens) and `/v1/agent/…`, the
//! protocol remote agents speak: register, heartbeat, claim, then for a
//! leased job its input, object inputs, artifact, lease renewals, output
//! and end. Agent requests carry an agent token and their node's name in
//! the `accelhub-node` header.

use crate::extract::{body_stream, octets, ApiJson, ApiPath, ApiQuery};
use crate::routes::{paged, PageQuery};
use crate::{ApiError, AppState, Ctx, Problem};
use accelhub_core::AgentTokenRow;
use accelhub_domain::{
    AgentHello, AgentToken, ClaimRequest, CreateAgentToken, CreatedAgentToken, JobReport,
    LeaseState, NodeReport, Recorded, Renewal, WorkItem,
};
use axum::body::Body;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

type ApiResult<T> = Result<T, ApiError>;

/// The header naming the agent's node.
pub const NODE_HEADER: &str = "accelhub-node";

/// An authenticated agent and the node it speaks for (not yet checked to
/// be registered by it).
pub struct AgentCaller {
    pub agent: AgentTokenRow,
    pub node: String,
}

impl FromRequestParts<AppState> for AgentCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = crate::auth::bearer(parts)?;
        let agent = state.platform.authenticate_agent(token).await?;
        let node = parts
            .headers
            .get(NODE_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ApiError::bad_request(format!("agent requests name their node in '{NODE_HEADER}'"))
            })?
            .to_string();
        Ok(AgentCaller { agent, node })
    }
}

/// An agent speaking for a node it registered.
pub struct AgentNode(pub String);

impl FromRequestParts<AppState> for AgentNode {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let c = AgentCaller::from_request_parts(parts, state).await?;
        state.platform.check_node(&c.agent, &c.node).await?;
        Ok(AgentNode(c.node))
    }
}

// ---- The operator's agent tokens ---------------------------------------------

/// Issue an agent token (operator only); it is shown once.
#[utoipa::path(post, path = "/v1/agents", tag = "fleet", request_body = CreateAgentToken,
    responses((status = 201, body = CreatedAgentToken), (status = 403, body = Problem),
        (status = 409, body = Problem)))]
pub async fn create_agent(
    c: Ctx,
    ApiJson(req): ApiJson<CreateAgentToken>,
) -> ApiResult<(StatusCode, Json<CreatedAgentToken>)> {
    let (agent, token) = c.platform.create_agent(&c.me, &req.name).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedAgentToken { agent, token }),
    ))
}

/// Agent tokens (operator only), oldest first, a page at a time.
#[utoipa::path(get, path = "/v1/agents", tag = "fleet", params(PageQuery),
    responses((status = 200, body = [AgentToken],
        headers(("link" = String, description = "`<…>; rel=\"next\"` when there is a next page"))),
        (status = 400, body = Problem), (status = 403, body = Problem)))]
pub async fn list_agents(c: Ctx, ApiQuery(q): ApiQuery<PageQuery>) -> ApiResult<Response> {
    let page = c
        .platform
        .list_agents(&c.me, q.cursor()?.as_ref(), q.limit)
        .await?;
    Ok(paged("/v1/agents", &q, page))
}

/// Revoke an agent token (operator only).
#[utoipa::path(delete, path = "/v1/agents/{name}", tag = "fleet",
    params(("name" = String, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn revoke_agent(c: Ctx, ApiPath(name): ApiPath<String>) -> ApiResult<StatusCode> {
    c.platform.revoke_agent(&c.me, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- The agent protocol ------------------------------------------------------

/// Register a node and its devices (agents only). Jobs the node held
/// before are queued again: its agent restarted.
#[utoipa::path(post, path = "/v1/agent/register", tag = "agent", request_body = NodeReport,
    params(("accelhub-node" = String, Header)),
    responses((status = 200, body = AgentHello), (status = 401, body = Problem),
        (status = 409, body = Problem)),
    security(("agent_token" = [])))]
pub async fn register(
    State(s): State<AppState>,
    c: AgentCaller,
    ApiJson(report): ApiJson<NodeReport>,
) -> ApiResult<Json<AgentHello>> {
    Ok(Json(
        s.platform.register_node(&c.agent, &c.node, &report).await?,
    ))
}

/// The node is alive; its devices now.
#[utoipa::path(post, path = "/v1/agent/heartbeat", tag = "agent", request_body = NodeReport,
    params(("accelhub-node" = String, Header)),
    responses((status = 204), (status = 401, body = Problem), (status = 404, body = Problem)),
    security(("agent_token" = [])))]
pub async fn heartbeat(
    State(s): State<AppState>,
    c: AgentCaller,
    ApiJson(report): ApiJson<NodeReport>,
) -> ApiResult<StatusCode> {
    s.platform
        .node_heartbeat(&c.agent, &c.node, &report)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lease a queued job of one of the given device classes, waiting up to
/// `wait_ms` (at most 30 s) for one. 204: none came.
#[utoipa::path(post, path = "/v1/agent/claim", tag = "agent", request_body = ClaimRequest,
    params(("accelhub-node" = String, Header)),
    responses((status = 200, body = WorkItem), (status = 204), (status = 401, body = Problem)),
    security(("agent_token" = [])))]
pub async fn claim(
    State(s): State<AppState>,
    AgentNode(node): AgentNode,
    ApiJson(req): ApiJson<ClaimRequest>,
) -> ApiResult<Response> {
    let item = s.platform.claim_work(&node, &req).await?;
    Ok(match item {
        Some(item) => Json(item).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

/// Renew a leased job's lease and record its progress.
#[utoipa::path(post, path = "/v1/agent/jobs/{id}/renew", tag = "agent", request_body = Renewal,
    params(("id" = String, Path), ("accelhub-node" = String, Header)),
    responses((status = 200, body = LeaseState), (status = 401, body = Problem)),
    security(("agent_token" = [])))]
pub async fn renew(
    State(s): State<AppState>,
    AgentNode(node): AgentNode,
    ApiPath(id): ApiPath<String>,
    ApiJson(r): ApiJson<Renewal>,
) -> ApiResult<Json<LeaseState>> {
    Ok(Json(LeaseState {
        running: s.platform.renew_work(&node, &id, &r).await?,
    }))
}

/// The input object of a job leased to this node.
#[utoipa::path(get, path = "/v1/agent/jobs/{id}/input", tag = "agent",
    params(("id" = String, Path), ("accelhub-node" = String, Header)),
    responses((status = 200, content_type = "application/octet-stream"),
        (status = 409, body = Problem)),
    security(("agent_token" = [])))]
pub async fn input(
    State(s): State<AppState>,
    AgentNode(node): AgentNode,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    let (size, stream) = s.platform.work_input(&node, &id).await?;
    Ok(octets(stream, Some(size), None))
}

/// An object input of a job leased to this node, by parameter name.
#[utoipa::path(get, path = "/v1/agent/jobs/{id}/objects/{name}", tag = "agent",
    params(("id" = String, Path), ("name" = String, Path), ("accelhub-node" = String, Header)),
    responses((status = 200, content_type = "application/octet-stream"),
        (status = 409, body = Problem)),
    security(("agent_token" = [])))]
pub async fn object(
    State(s): State<AppState>,
    AgentNode(node): AgentNode,
    ApiPath((id, name)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    let stream = s.platform.work_object(&node, &id, &name).await?;
    Ok(octets(stream, None, None))
}

/// The artifact of a job leased to this node, for its device to load.
#[utoipa::path(get, path = "/v1/agent/jobs/{id}/artifact", tag = "agent",
    params(("id" = String, Path), ("accelhub-node" = String, Header)),
    responses((status = 200, content_type = "application/octet-stream"),
        (status = 409, body = Problem)),
    security(("agent_token" = [])))]
pub async fn artifact(
    State(s): State<AppState>,
    AgentNode(node): AgentNode,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    let bytes = s.platform.work_artifact(&node, &id).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

/// Upload the output of a job leased to this node (before reporting its
/// success).
#[utoipa::path(put, path = "/v1/agent/jobs/{id}/output", tag = "agent",
    params(("id" = String, Path), ("accelhub-node" = String, Header)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 204), (status = 409, body = Problem), (status = 413, body = Problem)),
    security(("agent_token" = [])))]
pub async fn output(
    State(s): State<AppState>,
    AgentNode(node): AgentNode,
    ApiPath(id): ApiPath<String>,
    body: Body,
) -> ApiResult<StatusCode> {
    s.platform
        .put_work_output(&node, &id, None, body_stream(body))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Upload one of the named outputs (`[[output]]` in `ip.toml`) of a job
/// leased to this node, before reporting its success.
#[utoipa::path(put, path = "/v1/agent/jobs/{id}/outputs/{name}", tag = "agent",
    params(("id" = String, Path), ("name" = String, Path), ("accelhub-node" = String, Header)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 204), (status = 400, body = Problem), (status = 409, body = Problem),
        (status = 413, body = Problem)),
    security(("agent_token" = [])))]
pub async fn named_output(
    State(s): State<AppState>,
    AgentNode(node): AgentNode,
    ApiPath((id, name)): ApiPath<(String, String)>,
    body: Body,
) -> ApiResult<StatusCode> {
    s.platform
        .put_work_output(&node, &id, Some(&name), body_stream(body))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Report how the attempt this node holds ended; the job is billed once,
/// on success.
#[utoipa::path(post, path = "/v1/agent/jobs/{id}/finish", tag = "agent", request_body = JobReport,
    params(("id" = String, Path), ("accelhub-node" = String, Header)),
    responses((status = 200, body = Recorded), (status = 401, body = Problem)),
    security(("agent_token" = [])))]
pub async fn finish(
    State(s): State<AppState>,
    AgentNode(node): AgentNode,
    ApiPath(id): ApiPath<String>,
    ApiJson(report): ApiJson<JobReport>,
) -> ApiResult<Json<Recorded>> {
    Ok(Json(Recorded {
        recorded: s.platform.finish_work(&node, &id, report).await?,
    }))
}
