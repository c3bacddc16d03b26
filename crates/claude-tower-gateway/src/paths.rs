//! The gateway's own answers: the start-up probe, health and readiness, the
//! model list, and the APIs Foundry does not offer.
//!
//! Claude Code probes `HEAD /` at start-up and, with gateway model discovery
//! on, asks `GET /v1/models?limit=1000` (3 s timeout; it keeps ids that start
//! with `claude`). Message Batches, Files and Models are Anthropic-only APIs:
//! they go to Anthropic-face routes and never fail over to Foundry, which
//! would answer 404 for a reason the client cannot see. Without an
//! Anthropic-face route the gateway says so itself, in Anthropic's envelope.
//!
//! `/healthz` is for load balancers: unauthenticated, so it tells nothing an
//! outsider could use (no endpoints, no credential kinds), only whether some
//! route is usable and whether the answers are the simulator's. `/readyz`
//! has the detail, for loopback clients and identified callers
//! ([`access`](crate::access)).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{any, get};
use claude_tower::failover::{Breakers, CircuitState};
use claude_tower::prelude::*;
use claude_tower::stack::Route;
use http::{Request, StatusCode};

use crate::gateway::Mode;

/// The Anthropic-only API paths (without a prefix): they go to Anthropic-face
/// routes only.
pub(crate) const ANTHROPIC_ONLY: [&str; 6] = [
    "/v1/models",
    "/v1/models/{*rest}",
    "/v1/messages/batches",
    "/v1/messages/batches/{*rest}",
    "/v1/files",
    "/v1/files/{*rest}",
];

pub(crate) fn local(class: ErrorClass, status: StatusCode, message: String) -> Response {
    error_response::<Body>(&ClaudeError::new(class, message).with_status(status))
}

pub(crate) async fn root() -> &'static str {
    "claude-tower gateway\n"
}

pub(crate) async fn not_found(req: Request<Body>) -> Response {
    local(
        ErrorClass::InvalidRequest,
        StatusCode::NOT_FOUND,
        format!("Not found: {} {}", req.method(), req.uri().path()),
    )
}

pub(crate) async fn method_not_allowed(req: Request<Body>) -> Response {
    local(
        ErrorClass::InvalidRequest,
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "Method {} not allowed on {}",
            req.method(),
            req.uri().path()
        ),
    )
}

/// The Anthropic-only APIs when no Anthropic-face route is configured: the
/// model list from the configuration, and 404 for the rest.
pub(crate) fn local_anthropic_only(router: Router, prefix: &str, models: ModelList) -> Router {
    router
        .route(
            &format!("{prefix}/v1/models"),
            get(list_models).with_state(models.clone()),
        )
        .route(
            &format!("{prefix}/v1/models/{{id}}"),
            get(get_model).with_state(models),
        )
        .route(&format!("{prefix}/v1/messages/batches"), any(no_batches))
        .route(
            &format!("{prefix}/v1/messages/batches/{{*rest}}"),
            any(no_batches),
        )
        .route(&format!("{prefix}/v1/files"), any(no_files))
        .route(&format!("{prefix}/v1/files/{{*rest}}"), any(no_files))
}

fn foundry_lacks(api: &str) -> Response {
    local(
        ErrorClass::InvalidRequest,
        StatusCode::NOT_FOUND,
        format!(
            "The {api} API is not offered by Azure AI Foundry, and this gateway has no \
             Anthropic route to send it to"
        ),
    )
}

async fn no_batches() -> Response {
    foundry_lacks("Message Batches")
}

async fn no_files() -> Response {
    foundry_lacks("Files")
}

/// The configured model ids, as Anthropic's model objects.
#[derive(Clone, Debug)]
pub(crate) struct ModelList(Arc<[serde_json::Value]>);

impl ModelList {
    pub(crate) fn new(ids: &[String]) -> Self {
        Self(
            ids.iter()
                .filter(|id| id.starts_with("claude"))
                .map(|id| {
                    serde_json::json!({
                        "type": "model",
                        "id": id,
                        "display_name": id,
                        // NOTE: required by the SDKs' ModelInfo; the gateway
                        // does not know a release date.
                        "created_at": "1970-01-01T00:00:00Z",
                    })
                })
                .collect(),
        )
    }
}

async fn list_models(State(models): State<ModelList>) -> Json<serde_json::Value> {
    let id = |m: Option<&serde_json::Value>| m.map(|m| m["id"].clone());
    Json(serde_json::json!({
        "data": &*models.0,
        "has_more": false,
        "first_id": id(models.0.first()),
        "last_id": id(models.0.last()),
    }))
}

async fn get_model(State(models): State<ModelList>, Path(id): Path<String>) -> Response {
    match models.0.iter().find(|m| m["id"] == id.as_str()) {
        Some(model) => Json(model.clone()).into_response(),
        None => local(
            ErrorClass::InvalidRequest,
            StatusCode::NOT_FOUND,
            format!("model: {id}"),
        ),
    }
}

/// What `/healthz` and `/readyz` read.
#[derive(Clone)]
pub(crate) struct Health {
    routes: Vec<Route>,
    breakers: Breakers,
    mode: Mode,
    simulator: Option<SocketAddr>,
}

impl Health {
    pub(crate) fn new(
        routes: Vec<Route>,
        breakers: Breakers,
        mode: Mode,
        simulator: Option<SocketAddr>,
    ) -> Self {
        Self {
            routes,
            breakers,
            mode,
            simulator,
        }
    }

    fn usable(&self) -> bool {
        self.breakers
            .snapshot()
            .iter()
            .any(|b| b.state() != CircuitState::Open)
    }

    fn mode(&self) -> &'static str {
        match self.mode {
            Mode::Upstream => "upstream",
            Mode::Simulator(_) => "simulator",
        }
    }
}

const SIMULATOR_WARNING: &str =
    "SIMULATOR MODE: every answer is fake; configure an upstream before real use";

pub(crate) async fn healthz(State(health): State<Health>) -> Json<serde_json::Value> {
    let mut body = serde_json::json!({
        "status": if health.usable() { "ok" } else { "degraded" },
        "mode": health.mode(),
    });
    if matches!(health.mode, Mode::Simulator(_)) {
        body["warning"] = SIMULATOR_WARNING.into();
    }
    Json(body)
}

pub(crate) async fn readyz(State(health): State<Health>) -> Response {
    let breakers = health.breakers.snapshot();
    let routes: Vec<serde_json::Value> = health
        .routes
        .iter()
        .map(|r| {
            let breaker = breakers.iter().find(|b| b.route() == r.id());
            serde_json::json!({
                "id": r.id().as_str(),
                "face": r.face().as_str(),
                "endpoint": r.endpoint().base_url(),
                "credential": r.credential().kind(),
                "breaker": breaker.map(|b| b.state().as_str()),
                "consecutive_failures": breaker.map(|b| b.consecutive_failures()),
                "reopens_in_ms": breaker
                    .and_then(|b| b.reopens_in())
                    .map(|d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            })
        })
        .collect();
    let usable = health.usable();
    let mut body = serde_json::json!({
        "status": if usable { "ok" } else { "degraded" },
        "mode": health.mode(),
        "routes": routes,
    });
    if matches!(health.mode, Mode::Simulator(_)) {
        body["warning"] = SIMULATOR_WARNING.into();
        body["simulator"] = health.simulator.map(|a| format!("http://{a}")).into();
    }
    let status = if usable {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}
