//! The gateway: routes from the environment, the stack, the axum router.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post_service};
use axum::serve::ListenerExt;
use claude_tower::failover::{Breakers, CircuitState};
use claude_tower::prelude::*;
use claude_tower::stack::{ClaudeService, Route, StackError};
use claude_tower::transport::{HttpsClient, https_client};
use claude_tower_sim::{Sim, SimConfig};
use http::{Request, StatusCode};
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use crate::client_auth::ClientKeys;
use crate::config::{ConfigError, GatewayConfig};
use crate::routes::{self, RoutesError};

/// `x-claude-tower-route` / `x-claude-tower-attempts`: written by the stack
/// (`ClaudeStack::with_report_headers`).
pub use claude_tower::stack::{ATTEMPTS_HEADER, ROUTE_HEADER};

/// The API paths the gateway serves, under both prefixes Claude Code uses:
/// `ANTHROPIC_BASE_URL=http://gw` and, in Foundry mode,
/// `ANTHROPIC_FOUNDRY_BASE_URL=http://gw/anthropic`.
pub const API_PATHS: [&str; 4] = [
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/anthropic/v1/messages",
    "/anthropic/v1/messages/count_tokens",
];

/// Why the gateway could not start.
#[derive(Debug)]
pub enum GatewayError {
    /// A `CLAUDE_TOWER_*` setting is wrong.
    Config(ConfigError),
    /// An upstream route's settings are wrong.
    Routes(RoutesError),
    /// The routes do not make a stack (none left after `CLAUDE_TOWER_ROUTES`).
    Stack(StackError),
    /// The TLS client or the simulator could not start.
    Io(io::Error),
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GatewayError::Config(err) => write!(f, "configuration: {err}"),
            GatewayError::Routes(err) => write!(f, "routes: {err}"),
            GatewayError::Stack(err) => write!(f, "routes: {err}"),
            GatewayError::Io(err) => write!(f, "start-up: {err}"),
        }
    }
}

impl std::error::Error for GatewayError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GatewayError::Config(err) => Some(err),
            GatewayError::Routes(err) => Some(err),
            GatewayError::Stack(err) => Some(err),
            GatewayError::Io(err) => Some(err),
        }
    }
}

/// A configured gateway, ready to serve.
pub struct Gateway {
    config: GatewayConfig,
    service: ClaudeService<HttpsClient>,
    routes: Vec<Route>,
    sim: Option<Sim>,
}

impl fmt::Debug for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gateway")
            .field("listen", &self.config.listen)
            .field("routes", &self.routes)
            .field("simulator", &self.sim.as_ref().map(Sim::addr))
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Configures the gateway from the process environment.
    pub async fn from_env() -> Result<Self, GatewayError> {
        Self::from_lookup(|name| std::env::var(name).ok()).await
    }

    /// Configures the gateway through `lookup`. With no upstream credentials
    /// it starts the simulator in-process (on `CLAUDE_TOWER_SIM_LISTEN`, else
    /// an ephemeral loopback port) behind both routes.
    pub async fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, GatewayError> {
        let config = GatewayConfig::from_lookup(&lookup).map_err(GatewayError::Config)?;
        let (found, sim) = if routes::any_configured(&lookup) {
            (
                routes::from_env_with(&lookup).map_err(GatewayError::Routes)?,
                None,
            )
        } else {
            let sim = Sim::start(
                SimConfig::default()
                    .listen(config.sim_listen)
                    .faults(config.sim_faults.clone()),
            )
            .await
            .map_err(GatewayError::Io)?;
            let simulated = simulated_routes(&sim).map_err(GatewayError::Routes)?;
            (simulated, Some(sim))
        };
        let arranged = routes::arrange(found, &config).map_err(GatewayError::Routes)?;
        let mut stack = ClaudeStack::new()
            .with_tool_pairing(config.toolpair)
            .with_body_limit(config.body_limit)
            .with_deadline(config.deadline)
            .with_report_headers(true);
        for route in arranged {
            stack = stack.route(route);
        }
        // Kept for /healthz and the banner; clones share credentials.
        let routes = stack.routes().to_vec();
        let client = https_client().map_err(GatewayError::Io)?;
        let service = stack.build(client).map_err(GatewayError::Stack)?;
        Ok(Self {
            config,
            service,
            routes,
            sim,
        })
    }

    /// The settings in force.
    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// The in-process simulator, when the gateway runs on it.
    pub fn simulator(&self) -> Option<&Sim> {
        self.sim.as_ref()
    }

    /// The composed stack (for tests and embedding).
    pub fn service(&self) -> &ClaudeService<HttpsClient> {
        &self.service
    }

    /// The axum router: the API paths under both prefixes, `GET /healthz`,
    /// and a 404 in Anthropic's envelope for everything else.
    pub fn router(&self) -> Router {
        // The deadline and the route headers are stack options.
        let stack = self.service.clone();
        let mut api = Router::new();
        for path in API_PATHS {
            api = api.route(
                path,
                post_service(stack.clone()).fallback(method_not_allowed),
            );
        }
        let api = if self.config.client_keys.is_empty() {
            api
        } else {
            api.layer(ClientKeys::new(self.config.client_keys.iter().cloned()).layer())
        };
        let health = Health {
            routes: self.routes.clone(),
            breakers: self.service.breakers().clone(),
            simulator: self.sim.as_ref().map(Sim::addr),
        };
        Router::new()
            .route("/healthz", get(healthz).with_state(health))
            .merge(api)
            .fallback(not_found)
            .layer(TraceLayer::new_for_http())
    }

    /// What to print at start-up: where it listens, the routes, and in
    /// simulator mode how to try it.
    pub fn banner(&self, listening: SocketAddr) -> String {
        let base = format!("http://{listening}");
        let mut out = format!("claude-tower gateway listening on {base}\n");
        if let Some(sim) = &self.sim {
            out += &format!(
                "  mode: SIMULATOR — no ANTHROPIC_API_KEY or ANTHROPIC_FOUNDRY_* set, so both routes are\n        \
                 the built-in simulator at http://{} with faults `{}`\n",
                sim.addr(),
                self.config.sim_faults
            );
        }
        out += "  routes, in order:\n";
        for r in &self.routes {
            out += &format!(
                "    {:<10} {} face, {} ({})\n",
                r.id().as_str(),
                r.face(),
                r.endpoint().base_url(),
                r.credential().kind()
            );
        }
        out += &format!(
            "  try it:\n    curl -si {base}/v1/messages -H 'content-type: application/json' -H 'anthropic-version: 2023-06-01' \\\n      \
             -d '{{\"model\":\"claude-sonnet-4-6\",\"max_tokens\":64,\"messages\":[{{\"role\":\"user\",\"content\":\"Hello\"}}]}}'\n    \
             curl -s {base}/healthz\n  \
             Claude Code through the gateway:\n    \
             ANTHROPIC_BASE_URL={base} ANTHROPIC_API_KEY=gateway-key claude\n    \
             CLAUDE_CODE_USE_FOUNDRY=1 ANTHROPIC_FOUNDRY_BASE_URL={base}/anthropic CLAUDE_CODE_SKIP_FOUNDRY_AUTH=1 claude\n"
        );
        out
    }

    /// Serves on `listener` until `shutdown` resolves, then stops accepting
    /// and lets in-flight requests, streams included, finish.
    ///
    /// Accepted sockets get `TCP_NODELAY`: SSE events are small writes, and
    /// with Nagle's algorithm each one after the first can wait for the
    /// client's delayed ACK (tens of milliseconds) before it leaves.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        let app = self.router();
        let listener = listener.tap_io(|tcp| {
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::debug!(%err, "cannot set TCP_NODELAY on an accepted socket");
            }
        });
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

fn simulated_routes(sim: &Sim) -> Result<Vec<Route>, RoutesError> {
    Ok(vec![
        Route::new(
            routes::ANTHROPIC,
            Endpoint::anthropic_base_url(&sim.anthropic_base_url())?,
            Credential::anthropic_api_key(Secret::new("sim-anthropic-key"))?,
        ),
        Route::new(
            routes::FOUNDRY,
            Endpoint::foundry_base_url(&sim.foundry_base_url())?,
            Credential::foundry_api_key(Secret::new("sim-foundry-key"))?,
        ),
    ])
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: no new connections; in-flight requests finish");
}

// === handlers ===

fn local(class: ErrorClass, status: StatusCode, message: String) -> Response {
    error_response::<Body>(&ClaudeError::new(class, message).with_status(status))
}

async fn not_found(req: Request<Body>) -> Response {
    local(
        ErrorClass::InvalidRequest,
        StatusCode::NOT_FOUND,
        format!("Not found: {} {}", req.method(), req.uri().path()),
    )
}

async fn method_not_allowed(req: Request<Body>) -> Response {
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

#[derive(Clone)]
struct Health {
    routes: Vec<Route>,
    breakers: Breakers,
    simulator: Option<SocketAddr>,
}

async fn healthz(State(health): State<Health>) -> Result<impl IntoResponse, Infallible> {
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
                "reopens_in_ms": breaker.and_then(|b| b.reopens_in()).map(|d: Duration| d.as_millis() as u64),
            })
        })
        .collect();
    let any_closed = breakers.iter().any(|b| b.state() != CircuitState::Open);
    Ok(Json(serde_json::json!({
        "status": if any_closed { "ok" } else { "degraded" },
        "mode": if health.simulator.is_some() { "simulator" } else { "upstream" },
        "simulator": health.simulator.map(|a| format!("http://{a}")),
        "routes": routes,
    })))
}
