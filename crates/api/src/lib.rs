//! The Accelhub HTTP API: axum handlers under `/v1`, the OpenAPI document,
//! Prometheus metrics and health. Only this crate knows HTTP.

mod agent;
mod auth;
mod console;
mod error;
mod extract;
mod limits;
mod openapi;
mod routes;
mod server;

pub use auth::{Caller, Ctx};
pub use error::{ApiError, Problem};
pub use limits::{RateLimiter, TokenBucket};

use accelhub_core::Platform;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use openapi::ErrorResponses;
use std::sync::Arc;
use std::time::{Duration, Instant};
use utoipa::OpenApi;

#[derive(Clone)]
pub struct AppState {
    pub platform: Arc<Platform>,
}

/// The operator's bounds on what HTTP clients may hold and ask for (set by
/// `accelhub serve`'s flags). How each is enforced: `server.rs` and
/// `limits.rs`.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// Time to send a request's header, and the most a kept-alive
    /// connection stays idle.
    pub header_timeout: Duration,
    /// Time a request body may send nothing while it is read, and a
    /// client may read nothing of a response.
    pub body_idle_timeout: Duration,
    /// Requests per second per API token (per address without one) on
    /// `/v1`, the agent protocol excepted; 0: no limit.
    pub rate_limit: f64,
    /// Requests a token may send at once above its rate.
    pub rate_burst: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_connections: 512,
            header_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(30),
            // About half what one kept-alive client gets from a 2-core
            // server (BENCHMARKS.md): a bound on one token's share, not a
            // brake on ordinary use.
            rate_limit: 5000.0,
            rate_burst: 10_000,
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Accelhub API",
        description = "Accelerator-as-a-service: publish, verify, deploy and call accelerated IPs.",
        version = env!("CARGO_PKG_VERSION"),
    ),
    paths(
        routes::whoami,
        routes::create_account,
        routes::list_accounts,
        routes::publish,
        routes::catalog,
        routes::show_ip,
        routes::show_version,
        routes::put_review,
        routes::list_reviews,
        routes::reply_review,
        routes::deploy,
        routes::list_deployments,
        routes::undeploy,
        routes::show_deployment,
        routes::invoke,
        routes::put_object,
        routes::put_named_object,
        routes::list_objects,
        routes::get_object,
        routes::delete_object,
        routes::submit_job,
        routes::list_jobs,
        routes::get_job,
        routes::cancel_job,
        routes::job_output,
        routes::job_outputs,
        routes::job_named_output,
        routes::delete_job,
        routes::usage,
        routes::subscribe,
        routes::list_subscriptions,
        routes::put_spending_limit,
        routes::get_spending_limit,
        routes::invoice,
        routes::fleet,
        agent::create_agent,
        agent::list_agents,
        agent::revoke_agent,
        agent::register,
        agent::heartbeat,
        agent::claim,
        agent::renew,
        agent::input,
        agent::object,
        agent::artifact,
        agent::output,
        agent::named_output,
        agent::finish,
    ),
    components(schemas(Problem)),
    modifiers(&SecurityAddon, &ErrorResponses),
    // Every path takes an account token unless it says otherwise (the
    // agent protocol takes an agent token).
    security(("token" = [])),
    tags(
        (name = "accounts"), (name = "catalog"), (name = "deployments"),
        (name = "calls"), (name = "objects"), (name = "jobs"), (name = "usage"),
        (name = "fleet"), (name = "agent"),
    )
)]
pub struct ApiDoc;

struct SecurityAddon;

impl utoipa::Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An Accelhub API token (ahk_…)"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "agent_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An agent token the operator issued (aha_…)"))
                    .build(),
            ),
        );
    }
}

/// The whole HTTP surface.
pub fn router(platform: Arc<Platform>, config: &HttpConfig) -> Router {
    let state = AppState { platform };
    let mut api = Router::new()
        .route("/account", get(routes::whoami))
        .route(
            "/accounts",
            post(routes::create_account).get(routes::list_accounts),
        )
        .route("/ips", post(routes::publish).get(routes::catalog))
        .route("/ips/{namespace}/{name}", get(routes::show_ip))
        .route(
            "/ips/{namespace}/{name}/versions/{version}",
            get(routes::show_version),
        )
        .route(
            "/ips/{namespace}/{name}/review",
            axum::routing::put(routes::put_review),
        )
        .route("/ips/{namespace}/{name}/reviews", get(routes::list_reviews))
        .route(
            "/ips/{namespace}/{name}/reviews/{id}/reply",
            post(routes::reply_review),
        )
        .route(
            "/deployments",
            post(routes::deploy).get(routes::list_deployments),
        )
        .route(
            "/deployments/{namespace}/{name}",
            get(routes::show_deployment).delete(routes::undeploy),
        )
        .route("/invoke/{namespace}/{name}", post(routes::invoke))
        .route(
            "/objects",
            post(routes::put_object).get(routes::list_objects),
        )
        .route(
            "/objects/{*key}",
            get(routes::get_object)
                .put(routes::put_named_object)
                .delete(routes::delete_object),
        )
        .route("/jobs", post(routes::submit_job).get(routes::list_jobs))
        .route(
            "/jobs/{id}",
            get(routes::get_job).delete(routes::delete_job),
        )
        .route("/jobs/{id}/cancel", post(routes::cancel_job))
        .route("/jobs/{id}/output", get(routes::job_output))
        .route("/jobs/{id}/outputs", get(routes::job_outputs))
        .route("/jobs/{id}/outputs/{name}", get(routes::job_named_output))
        .route("/usage", get(routes::usage))
        .route(
            "/subscriptions",
            post(routes::subscribe).get(routes::list_subscriptions),
        )
        .route(
            "/account/spending-limit",
            axum::routing::put(routes::put_spending_limit).get(routes::get_spending_limit),
        )
        .route("/invoices", get(routes::invoice))
        .route("/fleet", get(routes::fleet))
        .route("/agents", post(agent::create_agent).get(agent::list_agents))
        .route("/agents/{name}", axum::routing::delete(agent::revoke_agent))
        .route("/openapi.json", get(openapi_json));
    if let Some(limiter) = RateLimiter::new(config.rate_limit, config.rate_burst) {
        // On the routes above only: the agent protocol below is paced by
        // the agents themselves (see `limits.rs`).
        api = api.layer(axum::middleware::from_fn_with_state(
            Arc::new(limiter),
            limits::rate_limit,
        ));
    }
    let api = api
        .route("/agent/register", post(agent::register))
        .route("/agent/heartbeat", post(agent::heartbeat))
        .route("/agent/claim", post(agent::claim))
        .route("/agent/jobs/{id}/renew", post(agent::renew))
        .route("/agent/jobs/{id}/input", get(agent::input))
        .route("/agent/jobs/{id}/objects/{name}", get(agent::object))
        .route("/agent/jobs/{id}/artifact", get(agent::artifact))
        .route("/agent/jobs/{id}/output", axum::routing::put(agent::output))
        .route(
            "/agent/jobs/{id}/outputs/{name}",
            axum::routing::put(agent::named_output),
        )
        .route("/agent/jobs/{id}/finish", post(agent::finish))
        // Bodies are read by the handlers, each with its own limit.
        .layer(axum::extract::DefaultBodyLimit::disable());

    Router::new()
        .nest("/v1", api)
        .merge(
            utoipa_swagger_ui::SwaggerUi::new("/v1/docs")
                .url("/v1/docs/openapi.json", ApiDoc::openapi()),
        )
        .route("/", get(console::index))
        .route("/console/app.js", get(console::app_js))
        .route("/console/app.css", get(console::app_css))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn openapi_json() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        ApiDoc::openapi().to_pretty_json().unwrap_or_default(),
    )
}

/// Up (the first line), and the state of the data's disk: `ok`, `low` or
/// `full` (writes then fail with 507; deletes still work). Always 200
/// while the process serves: a full disk is not cured by a restart.
async fn healthz(State(state): State<AppState>) -> String {
    let mib = |b: u64| b >> 20;
    match state.platform.disk() {
        Ok(d) => format!(
            "ok\ndisk: {} ({} MiB free of {} MiB)\n",
            d.state(),
            mib(d.free_bytes),
            mib(d.total_bytes)
        ),
        Err(e) => format!("ok\ndisk: unknown ({e})\n"),
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.platform.metrics().render(),
    )
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not-found",
        format!(
            "no such endpoint: {} {} (the API is under /v1; see /v1/openapi.json)",
            req.method(),
            req.uri().path()
        ),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        format!(
            "{} is not served on {}; /v1/openapi.json lists each path's methods",
            req.method(),
            req.uri().path()
        ),
    )
}

/// Count and time every request by its route template.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // `MatchedPath` and `Method` clone without copying their text.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", |m| m.as_str());
    let method = req.method().clone();
    let start = Instant::now();
    let resp = next.run(req).await;
    let m = state.platform.metrics();
    m.http_requests
        .with_label_values(&[method.as_str(), route, resp.status().as_str()])
        .inc();
    m.http_seconds
        .with_label_values(&[route])
        .observe(start.elapsed().as_secs_f64());
    resp
}

/// Serve until `shutdown` resolves, then finish in-flight requests; within
/// `config`'s bounds on connections, timeouts and rates.
pub async fn serve(
    listener: tokio::net::TcpListener,
    platform: Arc<Platform>,
    config: HttpConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve(listener, router(platform, &config), &config, shutdown).await
}
