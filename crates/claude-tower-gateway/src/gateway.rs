//! The gateway: the upstream decided, the stack built, the axum router.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::routing::{any_service, get, post_service};
use claude_tower::prelude::*;
use claude_tower::stack::{ClaudeService, Route, StackError};
use claude_tower::transport::{HttpsClient, https_client_with};
use claude_tower_identity::IdentityLayer;
use claude_tower_quota::QuotaLayer;
use claude_tower_usage::UsageLayer;
use http::{Request, Uri};
use tokio::net::TcpListener;
use tower::layer::util::{Identity as NoLayer, Stack};
use tower::{Layer, ServiceBuilder};
use tower_http::trace::TraceLayer;

use crate::access::{Access, OptionalIdentityLayer, require_caller};
use crate::config::{ConfigError, GatewayConfig};
use crate::dispatch::Dispatch;
use crate::paths::{self, Health};
use crate::routes::{self, RoutesError};
use crate::server;
use crate::telemetry::{Endpoints, Telemetry};
use crate::tls::{self, TlsError};
use crate::upstream::{self, SimulatorReason, Upstream};

/// `x-claude-tower-route` / `x-claude-tower-attempts`: written by the stack
/// (`ClaudeStack::with_report_headers`).
pub use claude_tower::stack::{ATTEMPTS_HEADER, ROUTE_HEADER};

/// The Messages API paths, without a prefix. Each is served under both
/// prefixes Claude Code uses (`ANTHROPIC_BASE_URL=http://gw` and, in Foundry
/// mode, `ANTHROPIC_FOUNDRY_BASE_URL=http://gw/anthropic`), with and without
/// a trailing slash, through every route.
pub const MESSAGES_PATHS: [&str; 2] = ["/v1/messages", "/v1/messages/count_tokens"];

/// The prefixes every API path is served under.
pub const PREFIXES: [&str; 2] = ["", "/anthropic"];

/// Why the gateway could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum GatewayError {
    /// A setting, or the upstream configuration, is wrong (names the variable).
    Config(ConfigError),
    /// The routes do not arrange (`CLAUDE_TOWER_ROUTES`, model-map route names).
    Routes(RoutesError),
    /// The routes do not make a stack (for example two routes of one name).
    Stack(StackError),
    /// The TLS certificate or key cannot be used.
    Tls(TlsError),
    /// The TLS client or the simulator could not start.
    Io(io::Error),
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GatewayError::Config(err) => write!(f, "configuration: {err}"),
            GatewayError::Routes(err) => write!(f, "routes: {err}"),
            GatewayError::Stack(err) => write!(f, "routes: {err}"),
            GatewayError::Tls(err) => write!(f, "TLS: {err}"),
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
            GatewayError::Tls(err) => Some(err),
            GatewayError::Io(err) => Some(err),
        }
    }
}

impl From<ConfigError> for GatewayError {
    fn from(err: ConfigError) -> Self {
        GatewayError::Config(err)
    }
}

/// The layers the gateway adds around the stack, outermost first:
/// identity (when configured) -> usage -> quota.
pub type GatewayLayers =
    Stack<QuotaLayer, Stack<UsageLayer, Stack<OptionalIdentityLayer, NoLayer>>>;

/// The gateway's stack: [`GatewayLayers`] around the routes.
pub type GatewayService = ClaudeService<HttpsClient, GatewayLayers>;

/// What answers: real routes, or the simulator (and why).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Real upstream routes.
    Upstream,
    /// The built-in simulator: fake answers.
    Simulator(SimulatorReason),
}

/// A configured gateway, ready to serve.
pub struct Gateway {
    config: GatewayConfig,
    mode: Mode,
    service: GatewayService,
    /// The Anthropic-face routes alone, for the APIs Foundry does not offer.
    anthropic_only: Option<GatewayService>,
    routes: Vec<Route>,
    identity: Option<IdentityLayer>,
    quota: QuotaLayer,
    telemetry: Telemetry,
    tls: Option<tokio_rustls::TlsAcceptor>,
    #[cfg(feature = "simulator")]
    sim: Option<claude_tower_sim::Sim>,
}

impl fmt::Debug for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gateway")
            .field("listen", &self.config.listen)
            .field("mode", &self.mode)
            .field("routes", &self.routes)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Configures the gateway from the process environment alone (no flags).
    pub async fn from_env() -> Result<Self, GatewayError> {
        Self::from_lookup(|name| std::env::var(name).ok()).await
    }

    /// Configures the gateway with every variable read through `lookup`.
    pub async fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, GatewayError> {
        let config = GatewayConfig::from_lookup(&lookup)?;
        Self::new(config, &lookup).await
    }

    /// Builds the gateway from resolved settings; `lookup` reads the upstream
    /// variables (Claude Code's, and those the config file names). In
    /// simulator mode it starts the simulator in-process (on
    /// `CLAUDE_TOWER_SIM_LISTEN`, else an ephemeral loopback port).
    pub async fn new(
        config: GatewayConfig,
        lookup: &impl Fn(&str) -> Option<String>,
    ) -> Result<Self, GatewayError> {
        let tls = config
            .tls
            .as_ref()
            .map(tls::acceptor)
            .transpose()
            .map_err(GatewayError::Tls)?;
        let (found, mode) = match upstream::resolve(&config, lookup)? {
            Upstream::Routes(routes) => (routes, Mode::Upstream),
            Upstream::Simulator(reason) => (Vec::new(), Mode::Simulator(reason)),
        };
        #[cfg(feature = "simulator")]
        let (found, sim) = match mode {
            Mode::Upstream => (found, None),
            Mode::Simulator(_) => {
                let sim = claude_tower_sim::Sim::start(
                    claude_tower_sim::SimConfig::default()
                        .listen(config.sim_listen)
                        .faults(config.sim_faults.clone()),
                )
                .await
                .map_err(GatewayError::Io)?;
                let routes =
                    simulated_routes_at(&sim.anthropic_base_url(), &sim.foundry_base_url())
                        .map_err(GatewayError::Routes)?;
                (routes, Some(sim))
            }
        };
        #[cfg(not(feature = "simulator"))]
        if let Mode::Simulator(_) = mode {
            return Err(GatewayError::Config(no_simulator()));
        }
        let arranged = routes::arrange(found, &config).map_err(GatewayError::Routes)?;
        let client = https_client_with(config.upstream_http).map_err(GatewayError::Io)?;
        let anthropic: Vec<Route> = arranged
            .iter()
            .filter(|r| r.face() == Face::Anthropic)
            .cloned()
            .collect();
        // The simulator offers only the Messages API: in simulator mode the
        // gateway answers the Anthropic-only APIs itself.
        let identity = if config.identity.is_configured() {
            let layer = IdentityLayer::new(config.identity.clone())
                .map_err(crate::config::identity_error)?;
            // Keys now, so the first developer does not wait for discovery
            // and an unreachable issuer shows before traffic does; the layer
            // keeps trying as tokens come (503 until it can verify them).
            if let Err(issuers) = layer.fetch_keys().await {
                tracing::warn!(
                    issuers = ?issuers,
                    "identity: cannot fetch signing keys yet; tokens of these issuers get 503 until they can be fetched"
                );
            }
            Some(layer)
        } else {
            None
        };
        let quota = QuotaLayer::from_config(&config.quota)
            .map_err(|err| ConfigError::new("quota", err.to_string()))?;
        let telemetry = Telemetry::new(&quota, lookup)?;
        let layers = Layers {
            identity: OptionalIdentityLayer::new(identity.clone()),
            usage: if config.metrics.usage {
                telemetry.usage_layer(&arranged, config.metrics.caller_labels)
            } else {
                // No sinks: the layer only hands quota settlements their usage.
                UsageLayer::new()
            },
            quota: quota.clone(),
        };
        let anthropic_only = if anthropic.is_empty() || mode != Mode::Upstream {
            None
        } else {
            Some(build_stack(&config, anthropic, client.clone(), &layers)?)
        };
        let routes = arranged.clone();
        let service = build_stack(&config, arranged, client, &layers)?;
        telemetry.observe_breakers(service.breakers());
        Ok(Self {
            config,
            mode,
            service,
            anthropic_only,
            routes,
            identity,
            quota,
            telemetry,
            tls,
            #[cfg(feature = "simulator")]
            sim,
        })
    }

    /// The settings in force.
    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// Real routes or the simulator.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The routes, in order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The in-process simulator, when the gateway runs on it.
    #[cfg(feature = "simulator")]
    pub fn simulator(&self) -> Option<&claude_tower_sim::Sim> {
        self.sim.as_ref()
    }

    fn simulator_addr(&self) -> Option<SocketAddr> {
        #[cfg(feature = "simulator")]
        return self.sim.as_ref().map(claude_tower_sim::Sim::addr);
        #[cfg(not(feature = "simulator"))]
        return None;
    }

    /// The composed stack (for tests and embedding).
    pub fn service(&self) -> &GatewayService {
        &self.service
    }

    /// The quota layer (its store's standings and health).
    pub fn quota(&self) -> &QuotaLayer {
        &self.quota
    }

    /// The meter provider behind `/metrics` (and OTLP).
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// The axum router.
    ///
    /// | path (the API paths also under `/anthropic`) | answers |
    /// |---|---|
    /// | `HEAD /`, `GET /` (and `/anthropic[/]`) | 200, no authentication (Claude Code's start-up probe of its base URL) |
    /// | `GET /healthz` | 200 `{"status","mode"}`, no authentication, no upstream detail |
    /// | `GET /readyz` | routes, breakers, mode; 503 when every breaker is open. Loopback or an identified caller |
    /// | `GET /metrics` | Prometheus text ([`telemetry`](crate::telemetry)). Loopback or an identified caller, anyone with `--metrics-public` |
    /// | `GET /usage` | JSON: consumption per caller, quota standings. Loopback or an admin caller |
    /// | `POST /v1/messages[/]`, `/v1/messages/count_tokens[/]` | the stack, every route |
    /// | `/v1/models[/…]` | Anthropic-face routes only; without one (or on the simulator), a list of the configured model names |
    /// | `/v1/messages/batches[/…]`, `/v1/files[/…]` | Anthropic-face routes only; without one (or on the simulator), 404 |
    /// | anything else | 404 (405 for another method on a Messages path), Anthropic's envelope |
    ///
    /// [`Gateway::serve`] sends `POST` on the Messages paths to the stack
    /// without the router ([`dispatch`](crate::dispatch)); this router
    /// answers them alike, for embedding.
    pub fn router(&self) -> Router {
        self.untraced_router().layer(TraceLayer::new_for_http())
    }

    /// [`router`](Self::router) without its trace layer: the one the server
    /// wraps around the dispatch serves both ways.
    fn untraced_router(&self) -> Router {
        let api = self.service.clone();
        let access = Access::new(self.identity.clone(), &self.config.admin_callers);
        let mut guarded = Router::new();
        for prefix in PREFIXES {
            for path in MESSAGES_PATHS {
                guarded = guarded
                    .route(
                        &format!("{prefix}{path}"),
                        post_service(api.clone()).fallback(paths::method_not_allowed),
                    )
                    .route(
                        &format!("{prefix}{path}/"),
                        post_service(
                            ServiceBuilder::new()
                                .map_request(without_trailing_slash)
                                .service(api.clone()),
                        )
                        .fallback(paths::method_not_allowed),
                    );
            }
            guarded = match &self.anthropic_only {
                Some(stack) => {
                    let anthropic = stack.clone();
                    paths::ANTHROPIC_ONLY.iter().fold(guarded, |router, path| {
                        router.route(&format!("{prefix}{path}"), any_service(anthropic.clone()))
                    })
                }
                None => {
                    let models = paths::ModelList::new(&self.config.models);
                    let local = paths::local_anthropic_only(Router::new(), prefix, models).layer(
                        axum::middleware::from_fn_with_state(access.clone(), require_caller),
                    );
                    guarded.merge(local)
                }
            };
        }
        let health = Health::new(
            self.routes.clone(),
            self.service.breakers().clone(),
            self.mode,
            self.simulator_addr(),
        );
        let readyz = Router::new()
            .route("/readyz", get(paths::readyz).with_state(health.clone()))
            .layer(axum::middleware::from_fn_with_state(
                access.clone(),
                require_caller,
            ));
        let endpoints = Endpoints {
            telemetry: self.telemetry.clone(),
            access,
            metrics_public: self.config.metrics.public,
        };
        Router::new()
            .route(
                "/metrics",
                get(crate::telemetry::metrics).with_state(endpoints.clone()),
            )
            .route("/usage", get(crate::telemetry::usage).with_state(endpoints))
            .merge(readyz)
            .route("/", get(paths::root))
            .route("/anthropic", get(paths::root))
            .route("/anthropic/", get(paths::root))
            .route("/healthz", get(paths::healthz).with_state(health))
            .merge(guarded)
            .fallback(paths::not_found)
    }

    /// What to print at start-up: where it listens, the mode, the routes, and
    /// how to try it.
    pub fn banner(&self, listening: SocketAddr) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let base = format!("{scheme}://{listening}");
        let mut out = format!("claude-tower gateway listening on {base}\n");
        if let Mode::Simulator(reason) = self.mode {
            let why = match reason {
                SimulatorReason::Asked => "--simulator was given",
                SimulatorReason::NothingConfigured => {
                    "no upstream variable (ANTHROPIC_API_KEY, ANTHROPIC_FOUNDRY_*, …) and no config file routes are set"
                }
            };
            out += &format!(
                "  !!! mode: SIMULATOR — answers are FAKE ({why}).\n  \
                 !!! Both routes are the built-in simulator at http://{} with faults `{}`.\n",
                self.simulator_addr()
                    .map_or_else(|| "?".to_owned(), |a| a.to_string()),
                self.config.sim_faults
            );
        } else {
            out += "  mode: upstream\n";
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
        let key = if self.identity.is_none() {
            String::new()
        } else {
            " -H 'x-api-key: <a client key>'".to_owned()
        };
        out += &format!(
            "  try it:\n    curl -si {base}/v1/messages{key} -H 'content-type: application/json' -H 'anthropic-version: 2023-06-01' \\\n      \
             -d '{{\"model\":\"claude-sonnet-4-6\",\"max_tokens\":64,\"messages\":[{{\"role\":\"user\",\"content\":\"Hello\"}}]}}'\n    \
             curl -s {base}/healthz; curl -s {base}/readyz{key}; curl -s {base}/metrics{key}\n  \
             Claude Code through the gateway:\n    \
             ANTHROPIC_BASE_URL={base} ANTHROPIC_API_KEY=gateway-key claude\n    \
             CLAUDE_CODE_USE_FOUNDRY=1 ANTHROPIC_FOUNDRY_BASE_URL={base}/anthropic ANTHROPIC_FOUNDRY_API_KEY=gateway-key claude\n"
        );
        out
    }

    /// Serves on `listener` until `shutdown` resolves, then stops accepting
    /// and lets in-flight requests, streams included, finish. TLS, timeouts
    /// and the connection cap are [`server`]'s. The future owns what it
    /// needs, so the gateway can stay with the caller (tests read its
    /// simulator while it serves).
    pub fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = io::Result<()>> + Send + 'static {
        let dispatch = Dispatch::new(self.service.clone(), self.untraced_router());
        let serving = server::serve(
            listener,
            move |peer| TraceLayer::new_for_http().layer(dispatch.for_peer(peer)),
            self.config.connections.clone(),
            self.tls.clone(),
            shutdown,
        );
        let telemetry = self.telemetry.clone();
        let quota = self.quota.clone();
        async move {
            let served = serving.await;
            // The last requests' settlements, still gathered for a batch.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), quota.flush()).await;
            // The provider's last OTLP push may block on HTTP.
            let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
            served
        }
    }
}

/// The error for simulator mode in a build without the simulator.
#[cfg_attr(feature = "simulator", allow(dead_code))]
pub(crate) fn no_simulator() -> ConfigError {
    ConfigError::new(
        "CLAUDE_TOWER_SIMULATOR",
        "no upstream is configured and this build has no simulator \
         (built without the `simulator` feature)",
    )
}

/// The gateway's layers, shared by its stacks (one quota store, one meter).
struct Layers {
    identity: OptionalIdentityLayer,
    usage: UsageLayer,
    quota: QuotaLayer,
}

/// One stack over `routes` with the gateway's stack options, inside
/// identity -> usage -> quota.
fn build_stack(
    config: &GatewayConfig,
    routes: Vec<Route>,
    client: HttpsClient,
    layers: &Layers,
) -> Result<GatewayService, GatewayError> {
    let stack = routes.into_iter().fold(
        ClaudeStack::new()
            .with_tool_pairing(config.toolpair)
            .with_body_limit(config.body_limit)
            .with_deadline(config.deadline)
            .with_report_headers(true)
            .layer(layers.identity.clone())
            .layer(layers.usage.clone())
            .layer(layers.quota.clone()),
        ClaudeStack::route,
    );
    stack.build(client).map_err(GatewayError::Stack)
}

/// `/v1/messages/` -> `/v1/messages`: upstreams are sent the canonical path.
fn without_trailing_slash(mut req: Request<Body>) -> Request<Body> {
    let uri = req.uri();
    let path = uri.path();
    if let Some(trimmed) = path.strip_suffix('/').filter(|p| !p.is_empty()) {
        let rebuilt = match uri.query() {
            Some(query) => format!("{trimmed}?{query}"),
            None => trimmed.to_owned(),
        };
        let mut parts = uri.clone().into_parts();
        if let Ok(pq) = rebuilt.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(uri) = Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    req
}

/// Both routes, on a simulator at these base URLs.
pub(crate) fn simulated_routes_at(
    anthropic: &str,
    foundry: &str,
) -> Result<Vec<Route>, RoutesError> {
    Ok(vec![
        Route::new(
            routes::ANTHROPIC,
            Endpoint::anthropic_base_url(anthropic)?,
            Credential::anthropic_api_key(Secret::new("sim-anthropic-key"))?,
        ),
        Route::new(
            routes::FOUNDRY,
            Endpoint::foundry_base_url(foundry)?,
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
