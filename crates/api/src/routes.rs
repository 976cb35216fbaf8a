//! Handlers of `/v1`.

use crate::extract::{
    body_stream, octets, read_body, ApiJson, ApiPath, ApiQuery, IpPath, IpSegments,
};
use crate::{ApiError, Caller, Ctx, Problem};
use accelhub_domain::{
    Account, CatalogEntry, CreateAccount, CreatedAccount, DeployRequest, Deployment, FleetNode,
    IpDetails, IpVersion, Job, ObjectInfo, Params, Role, SubmitJob, UsageReport,
};
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use utoipa::IntoParams;

type ApiResult<T> = Result<T, ApiError>;

// ---- Accounts -----------------------------------------------------------

/// The calling account.
#[utoipa::path(get, path = "/v1/account", tag = "accounts",
    responses((status = 200, body = Account), (status = 401, body = Problem)))]
pub async fn whoami(Caller(me): Caller) -> Json<Account> {
    Json(me)
}

/// Create an account (operator only).
#[utoipa::path(post, path = "/v1/accounts", tag = "accounts", request_body = CreateAccount,
    responses((status = 201, body = CreatedAccount), (status = 400, body = Problem),
        (status = 403, body = Problem), (status = 409, body = Problem)))]
pub async fn create_account(
    c: Ctx,
    ApiJson(req): ApiJson<CreateAccount>,
) -> ApiResult<(StatusCode, Json<CreatedAccount>)> {
    let (account, token) = c
        .platform
        .create_account(&c.me, &req.name, req.role)
        .await?;
    Ok((StatusCode::CREATED, Json(CreatedAccount { account, token })))
}

/// List accounts (operator only), oldest first, a page at a time.
#[utoipa::path(get, path = "/v1/accounts", tag = "accounts", params(PageQuery),
    responses((status = 200, body = [Account],
        headers(("link" = String, description = "`<…>; rel=\"next\"` when there is a next page"))),
        (status = 400, body = Problem), (status = 403, body = Problem)))]
pub async fn list_accounts(c: Ctx, ApiQuery(q): ApiQuery<PageQuery>) -> ApiResult<Response> {
    let page = c
        .platform
        .list_accounts(&c.me, q.cursor()?.as_ref(), q.limit)
        .await?;
    Ok(paged("/v1/accounts", &q, page))
}

// ---- Catalog ------------------------------------------------------------

/// Publish a new IP version (vendor). The body is a tar archive of the
/// package: `ip.toml` and the files it names. The version starts `pending`
/// and is verified in the background.
#[utoipa::path(post, path = "/v1/ips", tag = "catalog",
    request_body(content = Vec<u8>, content_type = "application/x-tar"),
    responses((status = 202, body = IpVersion), (status = 400, body = Problem),
        (status = 403, body = Problem), (status = 409, body = Problem),
        (status = 413, body = Problem)))]
pub async fn publish(c: Ctx, body: Body) -> ApiResult<(StatusCode, Json<IpVersion>)> {
    if c.me.role == Role::User {
        return Err(accelhub_core::CoreError::Forbidden(
            "only vendor accounts publish IPs; this is a user account".into(),
        )
        .into());
    }
    let limit = c.platform.config().max_package_bytes;
    let archive = read_body(body, limit, "the package").await?;
    let v = c.platform.publish(&c.me, &archive).await?;
    Ok((StatusCode::ACCEPTED, Json(v)))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct CatalogQuery {
    /// Words to look for in names, summaries and tags (all must match).
    pub q: Option<String>,
    /// Only IPs with this tag.
    pub tag: Option<String>,
    /// Only IPs whose newest version targets this device class.
    pub device: Option<String>,
    /// Only this vendor's IPs.
    pub vendor: Option<String>,
    /// `newest` (default), `rating`, `usage` or `name`.
    pub sort: Option<String>,
}

/// The catalog: every IP with its newest version, a page at a time.
#[utoipa::path(get, path = "/v1/ips", tag = "catalog", params(CatalogQuery, PageQuery),
    responses((status = 200, body = [CatalogEntry],
        headers(("link" = String, description = "`<…>; rel=\"next\"` when there is a next page"))),
        (status = 400, body = Problem)))]
pub async fn catalog(
    c: Ctx,
    ApiQuery(q): ApiQuery<CatalogQuery>,
    ApiQuery(p): ApiQuery<PageQuery>,
) -> ApiResult<Response> {
    let sort = match q.sort.as_deref() {
        None | Some("") => accelhub_domain::CatalogSort::default(),
        Some(s) => s.parse().map_err(ApiError::bad_request)?,
    };
    let filter = accelhub_domain::CatalogFilter::new(
        q.q.as_deref(),
        q.tag.as_deref(),
        q.device.as_deref(),
        q.vendor.as_deref(),
    );
    let page = c
        .platform
        .catalog(&c.me, &filter, sort, p.cursor()?.as_ref(), p.limit)
        .await?;
    // The next page keeps the search and the order.
    let mut path = String::from("/v1/ips");
    for (k, v) in [
        ("q", &q.q),
        ("tag", &q.tag),
        ("device", &q.device),
        ("vendor", &q.vendor),
        ("sort", &q.sort),
    ] {
        if let Some(v) = v {
            path.push(if path.contains('?') { '&' } else { '?' });
            path.push_str(&format!("{k}={}", utf8_percent(v)));
        }
    }
    Ok(paged(&path, &p, page))
}

/// One IP: its versions, their status and verification reports, its
/// ratings, use and reviews.
#[utoipa::path(get, path = "/v1/ips/{namespace}/{name}", tag = "catalog",
    params(IpSegments),
    responses((status = 200, body = IpDetails), (status = 404, body = Problem)))]
pub async fn show_ip(c: Ctx, IpPath(ip): IpPath) -> ApiResult<Json<IpDetails>> {
    Ok(Json(c.platform.ip_details(&c.me, &ip).await?))
}

/// Rate and review an IP (a user who has run it); writing again replaces
/// the caller's review.
#[utoipa::path(put, path = "/v1/ips/{namespace}/{name}/review", tag = "catalog",
    params(IpSegments),
    request_body = accelhub_domain::SubmitReview,
    responses((status = 200, body = accelhub_domain::Review), (status = 400, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn put_review(
    c: Ctx,
    IpPath(ip): IpPath,
    ApiJson(req): ApiJson<accelhub_domain::SubmitReview>,
) -> ApiResult<Json<accelhub_domain::Review>> {
    Ok(Json(c.platform.review(&c.me, &ip, &req).await?))
}

/// An IP's reviews, newest first, with its vendor's replies, a page at a
/// time.
#[utoipa::path(get, path = "/v1/ips/{namespace}/{name}/reviews", tag = "catalog",
    params(IpSegments, PageQuery),
    responses((status = 200, body = [accelhub_domain::Review],
        headers(("link" = String, description = "`<…>; rel=\"next\"` when there is a next page"))),
        (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn list_reviews(
    c: Ctx,
    IpPath(ip): IpPath,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Response> {
    let page = c
        .platform
        .reviews(&ip, q.cursor()?.as_ref(), q.limit)
        .await?;
    Ok(paged(&format!("/v1/ips/{ip}/reviews"), &q, page))
}

/// The `{id}` of a review's route.
#[derive(Deserialize)]
pub struct ReviewId {
    id: i64,
}

/// The IP's vendor answers a review (writing again replaces the reply).
#[utoipa::path(post, path = "/v1/ips/{namespace}/{name}/reviews/{id}/reply", tag = "catalog",
    params(IpSegments, ("id" = i64, Path)),
    request_body = accelhub_domain::SubmitReply,
    responses((status = 200, body = accelhub_domain::Review), (status = 400, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn reply_review(
    c: Ctx,
    IpPath(ip): IpPath,
    ApiPath(ReviewId { id }): ApiPath<ReviewId>,
    ApiJson(req): ApiJson<accelhub_domain::SubmitReply>,
) -> ApiResult<Json<accelhub_domain::Review>> {
    Ok(Json(
        c.platform.reply_to_review(&c.me, &ip, id, &req).await?,
    ))
}

/// The `{version}` of a version's route.
#[derive(Deserialize)]
pub struct VersionSegment {
    version: String,
}

/// One version of an IP.
#[utoipa::path(get, path = "/v1/ips/{namespace}/{name}/versions/{version}", tag = "catalog",
    params(IpSegments, ("version" = String, Path)),
    responses((status = 200, body = IpVersion), (status = 404, body = Problem)))]
pub async fn show_version(
    c: Ctx,
    IpPath(ip): IpPath,
    ApiPath(VersionSegment { version }): ApiPath<VersionSegment>,
) -> ApiResult<Json<IpVersion>> {
    c.platform
        .ip_versions(&c.me, &ip)
        .await?
        .into_iter()
        .find(|v| v.version == version)
        .map(Json)
        .ok_or_else(|| {
            accelhub_core::CoreError::NotFound(format!("'{ip}' has no version {version}")).into()
        })
}

// ---- Deployments --------------------------------------------------------

/// Deploy an IP for the caller (user).
#[utoipa::path(post, path = "/v1/deployments", tag = "deployments", request_body = DeployRequest,
    responses((status = 201, body = Deployment),
        (status = 403, description = "Only user accounts deploy", body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn deploy(
    c: Ctx,
    ApiJson(req): ApiJson<DeployRequest>,
) -> ApiResult<(StatusCode, Json<Deployment>)> {
    let d = c
        .platform
        .deploy(
            &c.me,
            &req.ip,
            req.version.as_deref(),
            req.scaling,
            req.devices,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(d)))
}

/// One of the caller's deployments: its scaling, replicas and the
/// autoscaler's latest decisions.
#[utoipa::path(get, path = "/v1/deployments/{namespace}/{name}", tag = "deployments",
    params(IpSegments),
    responses((status = 200, body = Deployment),
        (status = 403, description = "Only user accounts have deployments", body = Problem),
        (status = 404, body = Problem)))]
pub async fn show_deployment(c: Ctx, IpPath(ip): IpPath) -> ApiResult<Json<Deployment>> {
    Ok(Json(c.platform.deployment(&c.me, &ip).await?))
}

/// The caller's deployments, by IP name, a page at a time.
#[utoipa::path(get, path = "/v1/deployments", tag = "deployments", params(PageQuery),
    responses((status = 200, body = [Deployment],
        headers(("link" = String, description = "`<…>; rel=\"next\"` when there is a next page"))),
        (status = 400, body = Problem)))]
pub async fn list_deployments(c: Ctx, ApiQuery(q): ApiQuery<PageQuery>) -> ApiResult<Response> {
    let page = c
        .platform
        .deployments(&c.me, q.cursor()?.as_ref(), q.limit)
        .await?;
    Ok(paged("/v1/deployments", &q, page))
}

/// Remove the caller's deployment of an IP.
#[utoipa::path(delete, path = "/v1/deployments/{namespace}/{name}", tag = "deployments",
    params(IpSegments),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn undeploy(c: Ctx, IpPath(ip): IpPath) -> ApiResult<StatusCode> {
    c.platform.undeploy(&c.me, &ip).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- Calls --------------------------------------------------------------

#[derive(Debug, Deserialize, IntoParams)]
pub struct InvokeQuery {
    /// The call's parameters: one JSON object.
    pub params: Option<String>,
}

fn parse_params(text: Option<&str>) -> ApiResult<Params> {
    match text {
        None => Ok(Params::new()),
        Some(t) => accelhub_domain::parse_params(t).map_err(ApiError::bad_request),
    }
}

/// Call the caller's deployment of an IP synchronously. The request body is
/// the input; the response body is the output. Headers report the call id,
/// version, device, price and device time.
#[utoipa::path(post, path = "/v1/invoke/{namespace}/{name}", tag = "calls",
    params(IpSegments, InvokeQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "The IP's output", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 402, description = "Over the caller's monthly spending limit", body = Problem),
        (status = 403, description = "Only user accounts call IPs", body = Problem),
        (status = 404, body = Problem), (status = 413, body = Problem),
        (status = 422, description = "The IP failed the call", body = Problem),
        (status = 429, description = "Over the request rate or the plan's monthly quota", body = Problem),
        (status = 503, description = "No device of the IP's classes is available", body = Problem)))]
pub async fn invoke(
    c: Ctx,
    IpPath(ip): IpPath,
    ApiQuery(q): ApiQuery<InvokeQuery>,
    body: Body,
) -> ApiResult<Response> {
    let params = parse_params(q.params.as_deref())?;
    let limit = c.platform.config().max_sync_bytes;
    let input = read_body(body, limit, "a sync call's input")
        .await
        .map_err(|mut e| {
            if e.status == StatusCode::PAYLOAD_TOO_LARGE {
                e.problem.detail = format!(
                    "sync calls take at most {limit} bytes; upload larger data with \
                     `accelhub object put` and run it with `accelhub job submit`"
                );
            }
            e
        })?;
    let r = c.platform.invoke(&c.me, &ip, params, input).await?;
    let mut headers = HeaderMap::new();
    let mut set = |k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            headers.insert(k, v);
        }
    };
    set("accelhub-call-id", r.call_id);
    set("accelhub-ip", r.ip);
    set("accelhub-version", r.version);
    set("accelhub-device", r.device);
    set("accelhub-price", r.price.to_string());
    set(
        "accelhub-device-time-us",
        r.device_time.as_micros().to_string(),
    );
    set("accelhub-cold-start", r.cold_start.to_string());
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    let body = match r.output {
        accelhub_core::CallBody::Bytes(b) => Body::from(b),
        accelhub_core::CallBody::Stream { size, stream } => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
            Body::from_stream(stream)
        }
    };
    Ok((headers, body).into_response())
}

// ---- Objects ------------------------------------------------------------

fn sha_header(h: &HeaderMap) -> Option<String> {
    h.get("accelhub-sha256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Upload an object into the caller's private space, streamed, under a new
/// key. Send `accelhub-sha256` to have the content checked.
#[utoipa::path(post, path = "/v1/objects", tag = "objects",
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    params(("accelhub-sha256" = Option<String>, Header, description = "Expected SHA-256 (hex)")),
    responses((status = 201, body = ObjectInfo), (status = 400, body = Problem),
        (status = 413, body = Problem)))]
pub async fn put_object(
    c: Ctx,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<ObjectInfo>)> {
    let info = c
        .platform
        .put_object(
            &c.me,
            None,
            sha_header(&headers).as_deref(),
            body_stream(body),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// Upload an object under a key of the caller's choice (replacing it).
#[utoipa::path(put, path = "/v1/objects/{key}", tag = "objects",
    params(("key" = String, Path), ("accelhub-sha256" = Option<String>, Header)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = ObjectInfo), (status = 400, body = Problem)))]
pub async fn put_named_object(
    c: Ctx,
    ApiPath(key): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<ObjectInfo>)> {
    let info = c
        .platform
        .put_object(
            &c.me,
            Some(&key),
            sha_header(&headers).as_deref(),
            body_stream(body),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// Which page of a list: where it starts and how long it is.
#[derive(Debug, Deserialize, IntoParams)]
pub struct PageQuery {
    /// Where the page starts: the cursor of the `Link: <…>; rel="next"`
    /// header of the page before.
    pub cursor: Option<String>,
    /// Most items on the page: 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

impl PageQuery {
    pub(crate) fn cursor(&self) -> ApiResult<Option<accelhub_domain::Cursor>> {
        self.cursor
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(ApiError::bad_request)
    }
}

/// A page of a list as JSON, with a `Link: <path?cursor=…>; rel="next"`
/// header (RFC 8288) when there is a next page (`path` may carry a query
/// of its own, which the link keeps).
pub(crate) fn paged<T: serde::Serialize>(
    path: &str,
    q: &PageQuery,
    page: accelhub_domain::Page<T>,
) -> Response {
    let mut resp = Json(page.items).into_response();
    if let Some(next) = page.next {
        let limit = q.limit.unwrap_or(accelhub_domain::PAGE_DEFAULT);
        let sep = if path.contains('?') { '&' } else { '?' };
        let link = format!(
            "<{path}{sep}cursor={}&limit={limit}>; rel=\"next\"",
            utf8_percent(&next.to_string())
        );
        if let Ok(v) = axum::http::HeaderValue::from_str(&link) {
            resp.headers_mut().insert(axum::http::header::LINK, v);
        }
    }
    resp
}

/// Percent-encode what a query value cannot hold as it is.
fn utf8_percent(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The caller's objects, newest first, a page at a time.
#[utoipa::path(get, path = "/v1/objects", tag = "objects", params(PageQuery),
    responses((status = 200, body = [ObjectInfo],
        headers(("link" = String, description = "`<…>; rel=\"next\"` when there is a next page"))),
        (status = 400, body = Problem)))]
pub async fn list_objects(c: Ctx, ApiQuery(q): ApiQuery<PageQuery>) -> ApiResult<Response> {
    let page = c
        .platform
        .list_objects(&c.me, q.cursor()?.as_ref(), q.limit)
        .await?;
    Ok(paged("/v1/objects", &q, page))
}

/// Download one of the caller's objects.
#[utoipa::path(get, path = "/v1/objects/{key}", tag = "objects",
    params(("key" = String, Path)),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, body = Problem)))]
pub async fn get_object(c: Ctx, ApiPath(key): ApiPath<String>) -> ApiResult<Response> {
    let (info, stream) = c.platform.get_object(&c.me, &key).await?;
    Ok(octets(stream, Some(info.size), Some(&info.sha256)))
}

/// Delete one of the caller's objects.
#[utoipa::path(delete, path = "/v1/objects/{key}", tag = "objects",
    params(("key" = String, Path)),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn delete_object(c: Ctx, ApiPath(key): ApiPath<String>) -> ApiResult<StatusCode> {
    c.platform.delete_object(&c.me, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- Jobs ---------------------------------------------------------------

/// Queue a job on one of the caller's objects.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", request_body = SubmitJob,
    responses((status = 202, body = Job),
        (status = 402, description = "Over the caller's monthly spending limit", body = Problem),
        (status = 403, description = "Only user accounts submit jobs", body = Problem),
        (status = 404, body = Problem), (status = 413, body = Problem),
        (status = 429, description = "Over the request rate or the plan's monthly quota", body = Problem),
        (status = 503, description = "No device of the IP's classes is available", body = Problem)))]
pub async fn submit_job(
    c: Ctx,
    ApiJson(req): ApiJson<SubmitJob>,
) -> ApiResult<(StatusCode, Json<Job>)> {
    let job = c
        .platform
        .submit_job(&c.me, &req.ip, &req.input, req.params)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(job)))
}

/// The caller's jobs, newest first, a page at a time.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(PageQuery),
    responses((status = 200, body = [Job],
        headers(("link" = String, description = "`<…>; rel=\"next\"` when there is a next page"))),
        (status = 400, body = Problem)))]
pub async fn list_jobs(c: Ctx, ApiQuery(q): ApiQuery<PageQuery>) -> ApiResult<Response> {
    let page = c
        .platform
        .jobs(&c.me, q.cursor()?.as_ref(), q.limit)
        .await?;
    Ok(paged("/v1/jobs", &q, page))
}

/// One job: state, progress, attempts.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = Job), (status = 404, body = Problem)))]
pub async fn get_job(c: Ctx, ApiPath(id): ApiPath<String>) -> ApiResult<Json<Job>> {
    Ok(Json(c.platform.job(&c.me, &id).await?))
}

/// Cancel a queued or running job.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = Job), (status = 404, body = Problem),
        (status = 409, body = Problem)))]
pub async fn cancel_job(c: Ctx, ApiPath(id): ApiPath<String>) -> ApiResult<Json<Job>> {
    Ok(Json(c.platform.cancel_job(&c.me, &id).await?))
}

/// Download a succeeded job's output.
#[utoipa::path(get, path = "/v1/jobs/{id}/output", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn job_output(c: Ctx, ApiPath(id): ApiPath<String>) -> ApiResult<Response> {
    let (info, stream) = c.platform.job_output(&c.me, &id, None).await?;
    Ok(octets(stream, Some(info.size), Some(&info.sha256)))
}

/// A succeeded job's outputs, the main one first (an IP declares named
/// outputs in `ip.toml`; one that declares none has one, `output`).
#[utoipa::path(get, path = "/v1/jobs/{id}/outputs", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = Vec<accelhub_domain::JobOutput>),
        (status = 404, body = Problem)))]
pub async fn job_outputs(
    c: Ctx,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Vec<accelhub_domain::JobOutput>>> {
    Ok(Json(c.platform.job(&c.me, &id).await?.outputs))
}

/// Download one of a succeeded job's outputs by name.
#[utoipa::path(get, path = "/v1/jobs/{id}/outputs/{name}", tag = "jobs",
    params(("id" = String, Path), ("name" = String, Path)),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn job_named_output(
    c: Ctx,
    ApiPath((id, name)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    let (info, stream) = c.platform.job_output(&c.me, &id, Some(&name)).await?;
    Ok(octets(stream, Some(info.size), Some(&info.sha256)))
}

/// Delete a finished job and its output.
#[utoipa::path(delete, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn delete_job(c: Ctx, ApiPath(id): ApiPath<String>) -> ApiResult<StatusCode> {
    c.platform.delete_job(&c.me, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- Usage --------------------------------------------------------------

#[derive(Debug, Deserialize, IntoParams)]
pub struct UsageQuery {
    /// `YYYY-MM-DD` or an RFC 3339 time.
    pub since: Option<String>,
    /// Where the page starts: the `next` of the page before.
    pub cursor: Option<String>,
    /// Most records on the page: 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

fn parse_since(s: &str) -> ApiResult<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "since='{s}' is not a date: use YYYY-MM-DD or an RFC 3339 time"
            ))
        })
}

/// Usage records and totals: the caller's consumption (user), use of the
/// caller's IPs (vendor), or all (operator). Records come a page at a
/// time, oldest first; `next` is the cursor of the next page, and the
/// totals cover every page.
#[utoipa::path(get, path = "/v1/usage", tag = "usage", params(UsageQuery),
    responses((status = 200, body = UsageReport), (status = 400, body = Problem)))]
pub async fn usage(c: Ctx, ApiQuery(q): ApiQuery<UsageQuery>) -> ApiResult<Json<UsageReport>> {
    let since = q.since.as_deref().map(parse_since).transpose()?;
    let cursor = q
        .cursor
        .as_deref()
        .map(str::parse::<accelhub_domain::Cursor>)
        .transpose()
        .map_err(ApiError::bad_request)?;
    Ok(Json(
        c.platform
            .usage(&c.me, since, cursor.as_ref(), q.limit)
            .await?,
    ))
}

/// Nodes, devices and slots: what each slot holds, utilisation, resident
/// data (operator only). Nodes by name, a page at a time.
#[utoipa::path(get, path = "/v1/fleet", tag = "fleet", params(PageQuery),
    responses((status = 200, body = [FleetNode],
        headers(("link" = String, description = "`<…>; rel=\"next\"` when there is a next page"))),
        (status = 400, body = Problem), (status = 403, body = Problem)))]
pub async fn fleet(c: Ctx, ApiQuery(q): ApiQuery<PageQuery>) -> ApiResult<Response> {
    let page = c
        .platform
        .fleet(&c.me, q.cursor()?.as_ref(), q.limit)
        .await?;
    Ok(paged("/v1/fleet", &q, page))
}

// ---- Billing ------------------------------------------------------------

/// Subscribe to a plan of an IP (user), from now on.
#[utoipa::path(post, path = "/v1/subscriptions", tag = "billing",
    request_body = accelhub_domain::billing::Subscribe,
    responses((status = 201, body = accelhub_domain::billing::Subscription),
        (status = 400, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem)))]
pub async fn subscribe(
    c: Ctx,
    ApiJson(req): ApiJson<accelhub_domain::billing::Subscribe>,
) -> ApiResult<(StatusCode, Json<accelhub_domain::billing::Subscription>)> {
    Ok((
        StatusCode::CREATED,
        Json(c.platform.subscribe(&c.me, &req).await?),
    ))
}

/// The caller's subscriptions, oldest first (a plan is in force from its
/// `since` until the next), a page at a time.
#[utoipa::path(get, path = "/v1/subscriptions", tag = "billing", params(PageQuery),
    responses((status = 200, body = [accelhub_domain::billing::Subscription],
        headers(("link" = String, description = "`<…>; rel=\"next\"` when there is a next page"))),
        (status = 400, body = Problem)))]
pub async fn list_subscriptions(c: Ctx, ApiQuery(q): ApiQuery<PageQuery>) -> ApiResult<Response> {
    let page = c
        .platform
        .subscriptions(&c.me, q.cursor()?.as_ref(), q.limit)
        .await?;
    Ok(paged("/v1/subscriptions", &q, page))
}

/// Set or remove (`{"monthly": null}`) the caller's monthly spending limit.
#[utoipa::path(put, path = "/v1/account/spending-limit", tag = "billing",
    request_body = accelhub_domain::billing::SpendingLimit,
    responses((status = 200, body = accelhub_domain::billing::SpendingLimit),
        (status = 403, body = Problem)))]
pub async fn put_spending_limit(
    c: Ctx,
    ApiJson(req): ApiJson<accelhub_domain::billing::SpendingLimit>,
) -> ApiResult<Json<accelhub_domain::billing::SpendingLimit>> {
    c.platform.set_spending_limit(&c.me, &req).await?;
    Ok(Json(req))
}

/// The caller's monthly spending limit.
#[utoipa::path(get, path = "/v1/account/spending-limit", tag = "billing",
    responses((status = 200, body = accelhub_domain::billing::SpendingLimit)))]
pub async fn get_spending_limit(
    c: Ctx,
) -> ApiResult<Json<accelhub_domain::billing::SpendingLimit>> {
    Ok(Json(accelhub_domain::billing::SpendingLimit {
        monthly: c.platform.spending_limit(&c.me).await?,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct InvoiceQuery {
    /// `YYYY-MM` (UTC); default: this month to date.
    pub month: Option<String>,
}

/// A month's invoice (user), statement of the caller's IPs after the
/// platform's share (vendor), or the platform's totals (operator), rated
/// from the usage records.
#[utoipa::path(get, path = "/v1/invoices", tag = "billing", params(InvoiceQuery),
    responses((status = 200, body = accelhub_domain::billing::Invoice),
        (status = 400, body = Problem)))]
pub async fn invoice(
    c: Ctx,
    ApiQuery(q): ApiQuery<InvoiceQuery>,
) -> ApiResult<Json<accelhub_domain::billing::Invoice>> {
    Ok(Json(c.platform.invoice(&c.me, q.month.as_deref()).await?))
}
