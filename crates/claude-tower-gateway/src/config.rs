//! The gateway's own settings: flags, `CLAUDE_TOWER_*` variables, the
//! config file, then defaults, in that order of precedence.
//!
//! | flag / variable | meaning | default |
//! |---|---|---|
//! | `--config` `CLAUDE_TOWER_CONFIG` | TOML file ([`file`](crate::file)) | none |
//! | `--listen` `CLAUDE_TOWER_LISTEN` | address to listen on | `127.0.0.1:8787` |
//! | `--client-keys` `CLAUDE_TOWER_CLIENT_KEYS` | client keys `name=key,...` (`x-api-key` or `Authorization: Bearer`); the name is the caller id, a bare key is `key-N` | none |
//! | `--entra-tenant-id` `CLAUDE_TOWER_ENTRA_TENANT_ID` | Entra tenant ids whose tokens are accepted | none |
//! | `--oidc-issuer` `CLAUDE_TOWER_OIDC_ISSUER` | OpenID Connect issuer URLs whose tokens are accepted | none |
//! | `--oidc-audience` `CLAUDE_TOWER_OIDC_AUDIENCE` | accepted token audiences | Entra's two with a tenant |
//! | `--required-roles` `CLAUDE_TOWER_REQUIRED_ROLES` | a token must carry one of these roles | none |
//! | `--admin-callers` `CLAUDE_TOWER_ADMIN_CALLERS` | caller ids that may read `GET /usage` (loopback always may) | none |
//! | `--metrics-public` `CLAUDE_TOWER_METRICS_PUBLIC` | `GET /metrics` without a credential | false: loopback or an identified caller |
//! | `--usage` `CLAUDE_TOWER_USAGE` | read token usage from every response: GenAI metrics, an INFO record per request, `/usage` consumption; `off` leaves the layer out | on |
//! | `--redis-url` `CLAUDE_TOWER_REDIS_URL` | Redis shared by replicas for quotas | none: in memory, per process |
//! | `--tpm` / `--rpm` `CLAUDE_TOWER_TPM` / `_RPM` | tokens / requests per minute per caller | unlimited |
//! | `--token-quota` `CLAUDE_TOWER_TOKEN_QUOTA` | tokens per caller and UTC period, `5000000/month` | unlimited |
//! | `--routes` `CLAUDE_TOWER_ROUTES` | route order, e.g. `foundry,anthropic` | `anthropic,foundry` (those configured) |
//! | `--passthrough` `CLAUDE_TOWER_PASSTHROUGH` | routes that forward each caller's own credential (`[[routes]]`: `auth = "passthrough"`) | none |
//! | `--toolpair` `CLAUDE_TOWER_TOOLPAIR` | `reject`, `repair` or `observe` | `reject` |
//! | `--upstream-http2` `CLAUDE_TOWER_UPSTREAM_HTTP2` | offer HTTP/2 to `https://` routes: one connection per host, but requests past the host's concurrent-stream limit wait for a stream to end | off: HTTP/1.1, a pooled connection per request in flight |
//! | `--model-map` `CLAUDE_TOWER_MODEL_MAP` | `[route:]from=to,...`; `from*` is a prefix rule; no route = every Foundry route | none |
//! | `--models` `CLAUDE_TOWER_MODELS` | ids `GET /v1/models` lists without an Anthropic route | the model map's exact names |
//! | `--deadline` `CLAUDE_TOWER_DEADLINE` | deadline for the response head, e.g. `600s`, `90s`, `1500ms` | `600s` |
//! | `--body-limit` `CLAUDE_TOWER_BODY_LIMIT` | request body limit in bytes | 32 MiB |
//! | `--retry-attempts` `CLAUDE_TOWER_RETRY_ATTEMPTS` | attempts per route, first send included | `3` |
//! | `--retry-backoff` `CLAUDE_TOWER_RETRY_BACKOFF` | full-jitter backoff `base,cap` when the server gave no Retry-After | `500ms,8s` |
//! | `--header-read-timeout` `CLAUDE_TOWER_HEADER_READ_TIMEOUT` | time to send a request's headers (HTTP/1: also the keep-alive wait) | `30s` |
//! | `--idle-timeout` `CLAUDE_TOWER_IDLE_TIMEOUT` | close a connection with no request in flight for this long | `90s` |
//! | `--max-connections` `CLAUDE_TOWER_MAX_CONNECTIONS` | connections served at once | `4096` |
//! | `--h2-max-streams` `CLAUDE_TOWER_H2_MAX_STREAMS` | concurrent HTTP/2 streams per connection | `100` |
//! | `--tls-cert` / `--tls-key` `CLAUDE_TOWER_TLS_CERT` / `_KEY` | PEM files: serve HTTPS, ALPN h2 + http/1.1 | plain HTTP |
//! | `--simulator` `CLAUDE_TOWER_SIMULATOR` | run on the built-in simulator, even off loopback | only when nothing upstream is set, on loopback |
//! | `--sim-faults` `CLAUDE_TOWER_SIM_FAULTS` | the simulator's fault script (`none`: no faults) | `anthropic=random(p=0.2,seed=42)` |
//! | `--sim-listen` `CLAUDE_TOWER_SIM_LISTEN` | the simulator's address | an ephemeral loopback port |
//!
//! Off loopback some identity is required (client keys, an Entra tenant or
//! an OIDC issuer): a start-up error otherwise. The `[identity]`, `[quota]`
//! and `[metrics]` sections of the file hold the rest (per-caller and
//! per-group limits, required groups, clock skew...).
//!
//! Why these connection defaults: 30 s for headers is hyper's own default
//! and nginx's order of magnitude, far above what a client on any network
//! needs for a few hundred bytes, and it is what frees a connection whose
//! client stalls. 90 s idle is above every SDK's own keep-alive (Node's 4 s,
//! httpx's 5 s), so the gateway never closes first under a well-behaved
//! client. 4096 connections is several per developer for a thousand Claude
//! Code users, within a typical `ulimit -n` of 8192 or more; 100 HTTP/2
//! streams is what most servers advertise.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use claude_tower::toolpair::ToolPairingMode;
use claude_tower::transport::UpstreamHttp;
use claude_tower_core::DEFAULT_REQUEST_BODY_LIMIT;
use claude_tower_identity::IdentityConfig;
use claude_tower_quota::QuotaConfig;

use crate::file::{FileConfig, RouteSection};
use crate::settings::{Settings, switch};

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8787";
/// Default per-request deadline for the response head.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(600);
/// Default time a client has to send a request's headers.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default idle time after which a connection is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Default cap on connections served at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default cap on concurrent HTTP/2 streams per connection.
pub const DEFAULT_H2_MAX_STREAMS: u32 = 100;
/// Fault mix of the demo simulator: a fifth of direct-route requests fail
/// with a retryable fault, so retries and failover are visible at once.
pub const DEFAULT_SIM_FAULTS: &str = "anthropic=random(p=0.2,seed=42)";

/// One `CLAUDE_TOWER_MODEL_MAP` rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelRule {
    /// The route the rule is for; `None` means every Foundry route.
    pub route: Option<String>,
    /// The model the client asked for (without the trailing `*` of a prefix rule).
    pub from: String,
    /// Whether `from` is a prefix.
    pub prefix: bool,
    /// The route's deployment or model id.
    pub to: String,
}

/// How client connections are served.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionLimits {
    /// Time a client has to send a request's headers.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Concurrent HTTP/2 streams per connection.
    pub h2_max_streams: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            h2_max_streams: DEFAULT_H2_MAX_STREAMS,
        }
    }
}

/// The PEM files to terminate TLS with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// The gateway's settings in force (upstream routes are resolved from them
/// by [`upstream`](crate::upstream)).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct GatewayConfig {
    /// The config file read, if any.
    pub config_file: Option<PathBuf>,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Who may call: tokens and client keys (not configured: anyone, on
    /// loopback only).
    pub identity: IdentityConfig,
    /// Caller ids that may read `GET /usage` (loopback clients always may).
    pub admin_callers: Vec<String>,
    /// Per-caller limits (nothing configured: unlimited).
    pub quota: QuotaConfig,
    /// `GET /metrics`.
    pub metrics: MetricsConfig,
    /// Route order by name, when given.
    pub route_order: Option<Vec<String>>,
    /// Routes that forward the caller's own credential
    /// ([`Credential::passthrough`](claude_tower::prelude::Credential::passthrough)).
    pub passthrough: Vec<String>,
    /// Tool pairing mode.
    pub toolpair: ToolPairingMode,
    /// The HTTP versions offered to `https://` routes.
    pub upstream_http: UpstreamHttp,
    /// Model-id rules.
    pub model_map: Vec<ModelRule>,
    /// Model ids listed by `GET /v1/models` when no Anthropic route serves it.
    pub models: Vec<String>,
    /// Deadline for the response head of one request, retries included.
    pub deadline: Duration,
    /// Request body limit in bytes.
    pub body_limit: usize,
    /// Attempts per route (`None`: the retry crate's default, 3).
    pub retry_attempts: Option<u32>,
    /// Backoff base and cap (`None`: the retry crate's defaults, 500 ms and 8 s).
    pub retry_backoff: Option<(Duration, Duration)>,
    /// Client connection limits and timeouts.
    pub connections: ConnectionLimits,
    /// TLS termination, when configured.
    pub tls: Option<TlsFiles>,
    /// `--simulator` was given.
    pub simulator: bool,
    /// The demo simulator's fault script.
    pub sim_faults: String,
    /// The demo simulator's address.
    pub sim_listen: SocketAddr,
    /// `[[routes]]` from the config file (empty: routes come from Claude Code's variables).
    pub file_routes: Vec<RouteSection>,
}

/// `GET /metrics` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsConfig {
    /// Served without a credential to anyone.
    pub public: bool,
    /// How many distinct callers become label values.
    pub caller_labels: usize,
    /// Read token usage from every response (the usage layer is left out
    /// when false).
    pub usage: bool,
}

/// A setting that could not be read or a configuration that does not hold
/// together. Names the setting (a variable, or a key of the config file) and
/// what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    setting: String,
    problem: String,
}

impl ConfigError {
    /// An error about `setting`.
    pub fn new(setting: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            setting: setting.into(),
            problem: problem.into(),
        }
    }

    /// The variable or config-file key at fault.
    pub fn setting(&self) -> &str {
        &self.setting
    }

    /// What is wrong with it.
    pub fn problem(&self) -> &str {
        &self.problem
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.setting, self.problem)
    }
}

impl std::error::Error for ConfigError {}

/// One setting's value and where it came from (the variable's name, or the
/// file's key), so an error names what the operator has to change.
struct Raw {
    from: String,
    value: String,
}

/// The flag/variable value if set, else the file's. Blank is unset.
fn raw(flag: &Option<String>, variable: &str, file: Option<String>, key: &str) -> Option<Raw> {
    let blank = |v: &String| v.trim().is_empty();
    if let Some(value) = flag.clone().filter(|v| !blank(v)) {
        return Some(Raw {
            from: variable.to_owned(),
            value,
        });
    }
    file.filter(|v| !blank(v)).map(|value| Raw {
        from: format!("{key} (config file)"),
        value,
    })
}

fn parsed<T>(
    raw: Option<Raw>,
    parse: impl Fn(&str) -> Option<T>,
    expected: &str,
) -> Result<Option<T>, ConfigError> {
    raw.map(|r| {
        parse(r.value.trim()).ok_or_else(|| {
            ConfigError::new(r.from, format!("`{}` is not {expected}", r.value.trim()))
        })
    })
    .transpose()
}

/// The identity crate's error, naming its setting once.
pub(crate) fn identity_error(err: claude_tower_identity::InvalidIdentityConfig) -> ConfigError {
    let text = err.to_string();
    let problem = text
        .strip_prefix(&format!("{}: ", err.setting()))
        .unwrap_or(&text)
        .to_owned();
    ConfigError::new(err.setting(), problem)
}

fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

fn number<T: std::str::FromStr + PartialOrd>(lo: T, hi: T) -> impl Fn(&str) -> Option<T> {
    move |v| v.parse::<T>().ok().filter(|n| *n >= lo && *n <= hi)
}

impl GatewayConfig {
    /// Reads the settings from the process environment (no flags, no file
    /// unless `CLAUDE_TOWER_CONFIG` names one).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings' variables through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let settings = Settings::from_lookup(&lookup);
        let file = match &settings.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        Self::resolve(&settings, &file, &lookup)
    }

    /// Flags and variables first, then `file`, then defaults. `lookup` reads
    /// the variables the file names (`client_keys_env`).
    pub fn resolve(
        s: &Settings,
        file: &FileConfig,
        lookup: &impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let server = &file.server;
        let listen = parsed(
            raw(
                &s.listen,
                "CLAUDE_TOWER_LISTEN",
                server.listen.clone(),
                "server.listen",
            ),
            |v| v.parse::<SocketAddr>().ok(),
            "an address like 127.0.0.1:8787",
        )?
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8787)));

        let client_keys_env = server.client_keys_env.as_deref().and_then(lookup);
        let file_keys = server
            .client_keys
            .as_ref()
            .map(|keys| keys.join(","))
            .or(client_keys_env);
        let client_keys = raw(
            &s.client_keys,
            "CLAUDE_TOWER_CLIENT_KEYS",
            file_keys,
            "server.client_keys",
        )
        .map(|r| r.value);
        // The identity crate reads its own variables; flags and variables
        // (in `s`) and `[server] client_keys` stand in for them.
        let identity_vars = |name: &str| match name {
            "CLAUDE_TOWER_CLIENT_KEYS" => client_keys.clone(),
            "CLAUDE_TOWER_ENTRA_TENANT_ID" => s.entra_tenant_id.clone(),
            "CLAUDE_TOWER_OIDC_ISSUER" => s.oidc_issuer.clone(),
            "CLAUDE_TOWER_OIDC_AUDIENCE" => s.oidc_audience.clone(),
            "CLAUDE_TOWER_REQUIRED_ROLES" => s.required_roles.clone(),
            _ => None,
        };
        let identity = file
            .identity
            .clone()
            .merge_lookup(identity_vars)
            .map_err(identity_error)?;
        // Built once here so a bad issuer, audience or algorithm fails the
        // configuration (and `check`), not the first request.
        if identity.is_configured() {
            claude_tower_identity::IdentityLayer::new(identity.clone()).map_err(identity_error)?;
        }
        if !listen.ip().is_loopback() && !identity.is_configured() {
            return Err(ConfigError::new(
                "CLAUDE_TOWER_CLIENT_KEYS",
                format!(
                    "listening on the non-loopback address {listen} requires an identity: \
                     set CLAUDE_TOWER_CLIENT_KEYS=name=key,... (clients send one as x-api-key or Bearer), \
                     CLAUDE_TOWER_ENTRA_TENANT_ID or CLAUDE_TOWER_OIDC_ISSUER"
                ),
            ));
        }
        let admin_callers = raw(
            &s.admin_callers,
            "CLAUDE_TOWER_ADMIN_CALLERS",
            server.admin_callers.as_ref().map(|c| c.join(",")),
            "server.admin_callers",
        )
        .map(|r| list(&r.value))
        .unwrap_or_default();

        let quota_vars = |name: &str| match name {
            "CLAUDE_TOWER_REDIS_URL" => s.redis_url.clone(),
            "CLAUDE_TOWER_TPM" => s.tpm.clone(),
            "CLAUDE_TOWER_RPM" => s.rpm.clone(),
            "CLAUDE_TOWER_TOKEN_QUOTA" => s.token_quota.clone(),
            _ => None,
        };
        let quota = file
            .quota
            .clone()
            .apply_lookup(quota_vars)
            .map_err(|err| ConfigError::new("quota", err.to_string()))?;

        let metrics = MetricsConfig {
            public: parsed(
                raw(
                    &s.metrics_public,
                    "CLAUDE_TOWER_METRICS_PUBLIC",
                    file.metrics.public.map(|b| b.to_string()),
                    "metrics.public",
                ),
                switch,
                "a yes or no (true/false, 1/0)",
            )?
            .unwrap_or(false),
            caller_labels: file
                .metrics
                .caller_labels
                .unwrap_or(claude_tower_usage::metrics::DEFAULT_CALLER_LABELS),
            usage: parsed(
                raw(
                    &s.usage,
                    "CLAUDE_TOWER_USAGE",
                    file.metrics.usage.map(|b| b.to_string()),
                    "metrics.usage",
                ),
                switch,
                "on or off (true/false, 1/0)",
            )?
            .unwrap_or(true),
        };

        let route_order = raw(
            &s.routes,
            "CLAUDE_TOWER_ROUTES",
            file.stack.route_order.as_ref().map(|r| r.join(",")),
            "stack.route_order",
        )
        .map(|r| list(&r.value));

        let passthrough = s
            .passthrough
            .as_deref()
            .filter(|v| !v.trim().eq_ignore_ascii_case("none"))
            .map(list)
            .unwrap_or_default();

        let toolpair = parsed(
            raw(
                &s.toolpair,
                "CLAUDE_TOWER_TOOLPAIR",
                file.stack.toolpair.clone(),
                "stack.toolpair",
            ),
            |v| match v.to_ascii_lowercase().as_str() {
                "reject" => Some(ToolPairingMode::Reject),
                "repair" => Some(ToolPairingMode::Repair),
                "observe" => Some(ToolPairingMode::Observe),
                _ => None,
            },
            "one of reject, repair, observe",
        )?
        .unwrap_or(ToolPairingMode::Reject);

        let upstream_http = match parsed(
            raw(
                &s.upstream_http2,
                "CLAUDE_TOWER_UPSTREAM_HTTP2",
                file.stack.upstream_http2.map(|b| b.to_string()),
                "stack.upstream_http2",
            ),
            switch,
            "on or off (true/false, 1/0)",
        )? {
            Some(true) => UpstreamHttp::Http2,
            Some(false) | None => UpstreamHttp::Http1,
        };

        let mut model_map = match &s.model_map {
            Some(v) if !v.trim().is_empty() => parse_model_map(v)?,
            _ => Vec::new(),
        };
        for route in &file.routes {
            for (from, to) in &route.model_map {
                let (from, prefix) = match from.strip_suffix('*') {
                    Some(stem) => (stem, true),
                    None => (from.as_str(), false),
                };
                if from.is_empty() || to.trim().is_empty() {
                    return Err(ConfigError::new(
                        format!("routes.{}.model_map (config file)", route.name),
                        format!("`{from}` = `{to}`: both sides must be model names"),
                    ));
                }
                model_map.push(ModelRule {
                    route: Some(route.name.clone()),
                    from: from.to_owned(),
                    prefix,
                    to: to.trim().to_owned(),
                });
            }
        }

        let models = match raw(
            &s.models,
            "CLAUDE_TOWER_MODELS",
            Some(file.models.join(",")),
            "models",
        ) {
            Some(r) => {
                let models = list(&r.value);
                if let Some(bad) = models.iter().find(|m| !m.starts_with("claude")) {
                    return Err(ConfigError::new(
                        r.from,
                        format!(
                            "`{bad}` does not start with `claude` (Claude Code ignores such ids)"
                        ),
                    ));
                }
                models
            }
            None => {
                let mut names: Vec<String> = model_map
                    .iter()
                    .filter(|r| !r.prefix && r.from.starts_with("claude"))
                    .map(|r| r.from.clone())
                    .collect();
                names.sort();
                names.dedup();
                names
            }
        };

        let deadline = parsed(
            raw(
                &s.deadline,
                "CLAUDE_TOWER_DEADLINE",
                server.deadline.clone(),
                "server.deadline",
            ),
            parse_duration,
            "a duration like 600s or 1500ms",
        )?
        .unwrap_or(DEFAULT_DEADLINE);

        let body_limit = parsed(
            raw(
                &s.body_limit,
                "CLAUDE_TOWER_BODY_LIMIT",
                server.body_limit.map(|n| n.to_string()),
                "server.body_limit",
            ),
            number(1, usize::MAX),
            "a positive number of bytes",
        )?
        .unwrap_or(DEFAULT_REQUEST_BODY_LIMIT);

        let retry_attempts = parsed(
            raw(
                &s.retry_attempts,
                "CLAUDE_TOWER_RETRY_ATTEMPTS",
                file.retry.attempts.map(|n| n.to_string()),
                "retry.attempts",
            ),
            number(1, 10),
            "a number of attempts from 1 to 10",
        )?;
        let retry_backoff = parsed(
            raw(
                &s.retry_backoff,
                "CLAUDE_TOWER_RETRY_BACKOFF",
                file.retry.backoff.clone(),
                "retry.backoff",
            ),
            |v| {
                v.split_once(',')
                    .and_then(|(base, cap)| Some((parse_duration(base)?, parse_duration(cap)?)))
                    .filter(|(base, cap)| base <= cap)
            },
            "`base,cap` like 500ms,8s (base <= cap)",
        )?;

        let duration =
            |flag: &Option<String>, variable: &str, file: &Option<String>, key: &str, default| {
                parsed(
                    raw(flag, variable, file.clone(), key),
                    parse_duration,
                    "a duration like 30s or 500ms",
                )
                .map(|d| d.unwrap_or(default))
            };
        let connections = ConnectionLimits {
            header_read_timeout: duration(
                &s.header_read_timeout,
                "CLAUDE_TOWER_HEADER_READ_TIMEOUT",
                &server.header_read_timeout,
                "server.header_read_timeout",
                DEFAULT_HEADER_READ_TIMEOUT,
            )?,
            idle_timeout: duration(
                &s.idle_timeout,
                "CLAUDE_TOWER_IDLE_TIMEOUT",
                &server.idle_timeout,
                "server.idle_timeout",
                DEFAULT_IDLE_TIMEOUT,
            )?,
            max_connections: parsed(
                raw(
                    &s.max_connections,
                    "CLAUDE_TOWER_MAX_CONNECTIONS",
                    server.max_connections.map(|n| n.to_string()),
                    "server.max_connections",
                ),
                number(1, 1 << 20),
                "a number of connections from 1 to 1048576",
            )?
            .unwrap_or(DEFAULT_MAX_CONNECTIONS),
            h2_max_streams: parsed(
                raw(
                    &s.h2_max_streams,
                    "CLAUDE_TOWER_H2_MAX_STREAMS",
                    server.h2_max_streams.map(|n| n.to_string()),
                    "server.h2_max_streams",
                ),
                number(1, 10_000),
                "a number of streams from 1 to 10000",
            )?
            .unwrap_or(DEFAULT_H2_MAX_STREAMS),
        };

        let tls_cert = s.tls_cert.clone().or_else(|| server.tls_cert.clone());
        let tls_key = s.tls_key.clone().or_else(|| server.tls_key.clone());
        let tls = match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "CLAUDE_TOWER_TLS_KEY",
                    "a TLS certificate is set (--tls-cert) but no private key (--tls-key)",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "CLAUDE_TOWER_TLS_CERT",
                    "a TLS private key is set (--tls-key) but no certificate (--tls-cert)",
                ));
            }
        };

        let simulator = parsed(
            raw(&s.simulator, "CLAUDE_TOWER_SIMULATOR", None, ""),
            switch,
            "a yes or no (true/false, 1/0)",
        )?
        .unwrap_or(false);

        // An empty script is a script with no faults, not an unset one.
        let sim_faults = match s
            .sim_faults
            .clone()
            .or_else(|| file.simulator.faults.clone())
        {
            Some(v) if v.trim().eq_ignore_ascii_case("none") => String::new(),
            Some(v) => v,
            None => DEFAULT_SIM_FAULTS.to_owned(),
        };
        let sim_listen = parsed(
            raw(
                &s.sim_listen,
                "CLAUDE_TOWER_SIM_LISTEN",
                file.simulator.listen.clone(),
                "simulator.listen",
            ),
            |v| v.parse::<SocketAddr>().ok(),
            "an address like 127.0.0.1:9000",
        )?
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));

        Ok(Self {
            config_file: s.config.clone(),
            listen,
            identity,
            admin_callers,
            quota,
            metrics,
            route_order,
            passthrough,
            toolpair,
            upstream_http,
            model_map,
            models,
            deadline,
            body_limit,
            retry_attempts,
            retry_backoff,
            connections,
            tls,
            simulator,
            sim_faults,
            sim_listen,
            file_routes: file.routes.clone(),
        })
    }
}

/// Parses `[route:]from=to,...`; `from*` is a prefix rule.
pub fn parse_model_map(spec: &str) -> Result<Vec<ModelRule>, ConfigError> {
    let mut rules = Vec::new();
    for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = || {
            ConfigError::new(
                "CLAUDE_TOWER_MODEL_MAP",
                format!(
                    "`{entry}` is not `[route:]model=deployment` (e.g. foundry:claude-sonnet-4-5-20250929=claude-sonnet-4-5)"
                ),
            )
        };
        let (lhs, to) = entry.split_once('=').ok_or_else(bad)?;
        let (route, from) = match lhs.split_once(':') {
            Some((route, from)) => (Some(route.trim().to_owned()), from.trim()),
            None => (None, lhs.trim()),
        };
        let to = to.trim();
        let (from, prefix) = match from.strip_suffix('*') {
            Some(stem) => (stem, true),
            None => (from, false),
        };
        if from.is_empty() || to.is_empty() || route.as_deref() == Some("") {
            return Err(bad());
        }
        rules.push(ModelRule {
            route,
            from: from.to_owned(),
            prefix,
            to: to.to_owned(),
        });
    }
    Ok(rules)
}

/// `600s`, `1500ms`: the form [`parse_duration`] reads.
pub fn fmt_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Parses `600s`, `1.5s`, `1500ms`, `2m` or a bare number of seconds.
pub fn parse_duration(value: &str) -> Option<Duration> {
    let v = value.trim();
    let (number, unit) = match v.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => v.split_at(i),
        None => (v, "s"),
    };
    let n: f64 = number.trim().parse().ok()?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return None,
    };
    if !secs.is_finite() || secs <= 0.0 || secs > 86_400.0 {
        return None;
    }
    Some(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<GatewayConfig, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        GatewayConfig::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn upstream_http2_is_off_unless_asked_for() {
        let file = FileConfig::parse("[stack]\nupstream_http2 = true\n").unwrap();
        let resolve = |flag: Option<&str>, file: &FileConfig| {
            let flags = Settings {
                upstream_http2: flag.map(str::to_owned),
                ..Settings::default()
            };
            GatewayConfig::resolve(&flags, file, &|_: &str| None).map(|c| c.upstream_http)
        };
        assert_eq!(
            resolve(None, &FileConfig::default()),
            Ok(UpstreamHttp::Http1)
        );
        assert_eq!(
            resolve(None, &file),
            Ok(UpstreamHttp::Http2),
            "from the file"
        );
        assert_eq!(
            resolve(Some("off"), &file),
            Ok(UpstreamHttp::Http1),
            "the flag wins"
        );
        assert_eq!(
            resolve(Some("on"), &FileConfig::default()),
            Ok(UpstreamHttp::Http2)
        );
        let err = resolve(Some("h2"), &FileConfig::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("CLAUDE_TOWER_UPSTREAM_HTTP2"), "{err}");
        assert!(err.contains("on or off"), "{err}");
    }

    #[test]
    fn defaults() {
        let c = config(&[]).unwrap();
        assert_eq!(c.listen, DEFAULT_LISTEN.parse().unwrap());
        assert!(!c.identity.is_configured());
        assert!(!c.quota.is_enabled());
        assert!(!c.metrics.public);
        assert!(c.metrics.usage, "usage is read by default");
        assert_eq!(c.toolpair, ToolPairingMode::Reject);
        assert_eq!(
            c.upstream_http,
            UpstreamHttp::Http1,
            "HTTP/2 only on request"
        );
        assert_eq!(c.deadline, DEFAULT_DEADLINE);
        assert_eq!(c.body_limit, DEFAULT_REQUEST_BODY_LIMIT);
        assert_eq!(c.sim_faults, DEFAULT_SIM_FAULTS);
        assert!(c.route_order.is_none());
    }

    #[test]
    fn a_public_listener_needs_client_keys() {
        let err = config(&[("CLAUDE_TOWER_LISTEN", "0.0.0.0:8787")]).unwrap_err();
        assert_eq!(err.setting(), "CLAUDE_TOWER_CLIENT_KEYS");
        let ok = config(&[
            ("CLAUDE_TOWER_LISTEN", "0.0.0.0:8787"),
            ("CLAUDE_TOWER_CLIENT_KEYS", "k1, k2,,"),
        ])
        .unwrap();
        assert_eq!(
            ok.identity.client_key_names().collect::<Vec<_>>(),
            ["key-1", "key-2"]
        );
        assert!(!format!("{:?}", ok.identity).contains("k1"));
        for (var, value) in [
            (
                "CLAUDE_TOWER_ENTRA_TENANT_ID",
                "72f988bf-86f1-41af-91ab-2d7cd011db47",
            ),
            ("CLAUDE_TOWER_CLIENT_KEYS", "ada=k-ada"),
        ] {
            let c = config(&[("CLAUDE_TOWER_LISTEN", "0.0.0.0:8787"), (var, value)]).unwrap();
            assert!(c.identity.is_configured(), "{var}");
        }
    }

    #[test]
    fn identity_quota_and_metrics_settings() {
        let c = config(&[
            ("CLAUDE_TOWER_CLIENT_KEYS", "ada=k-ada,bob=k-bob"),
            ("CLAUDE_TOWER_ADMIN_CALLERS", "ada"),
            ("CLAUDE_TOWER_TPM", "1000"),
            ("CLAUDE_TOWER_TOKEN_QUOTA", "5000000/month"),
            ("CLAUDE_TOWER_METRICS_PUBLIC", "yes"),
        ])
        .unwrap();
        assert_eq!(c.admin_callers, ["ada"]);
        assert!(c.quota.is_enabled());
        assert!(c.metrics.public);
        let file = FileConfig::parse(
            "[identity]\nissuers = [\"http://127.0.0.1:9/realm\"]\naudiences = [\"gw\"]\n\
             [quota.default]\nrequests_per_minute = 60\n[quota.callers.ada]\ntoken_quota = \"unlimited\"\n\
             [metrics]\ncaller_labels = 10\nusage = false\n",
        )
        .unwrap();
        let c = GatewayConfig::resolve(&Settings::default(), &file, &|_: &str| None).unwrap();
        assert_eq!(c.identity.issuers(), ["http://127.0.0.1:9/realm"]);
        assert!(c.quota.is_enabled());
        assert_eq!(c.metrics.caller_labels, 10);
        assert!(!c.metrics.usage);
        let on = |v: &str| {
            let flags = Settings {
                usage: Some(v.to_owned()),
                ..Settings::default()
            };
            GatewayConfig::resolve(&flags, &file, &|_: &str| None).map(|c| c.metrics.usage)
        };
        assert_eq!(
            on("on"),
            Ok(true),
            "the flag or variable wins over the file"
        );
        assert_eq!(on("off"), Ok(false));
        let err = on("sometimes").unwrap_err().to_string();
        assert!(err.contains("CLAUDE_TOWER_USAGE"), "{err}");
    }

    #[test]
    fn bad_identity_and_quota_settings_stop_start_up() {
        for (var, value, named) in [
            (
                "CLAUDE_TOWER_ENTRA_TENANT_ID",
                "contoso.com",
                "CLAUDE_TOWER_ENTRA_TENANT_ID",
            ),
            (
                "CLAUDE_TOWER_OIDC_ISSUER",
                "https://idp.example.com",
                "CLAUDE_TOWER_OIDC_AUDIENCE",
            ),
            ("CLAUDE_TOWER_TPM", "lots", "CLAUDE_TOWER_TPM"),
            ("CLAUDE_TOWER_RPM", "0", "CLAUDE_TOWER_RPM"),
            (
                "CLAUDE_TOWER_TOKEN_QUOTA",
                "5/fortnight",
                "CLAUDE_TOWER_TOKEN_QUOTA",
            ),
            ("CLAUDE_TOWER_REDIS_URL", "mysql://x", "redis_url"),
            (
                "CLAUDE_TOWER_METRICS_PUBLIC",
                "maybe",
                "CLAUDE_TOWER_METRICS_PUBLIC",
            ),
        ] {
            let err = config(&[(var, value)]).unwrap_err();
            assert!(err.to_string().contains(named), "{var}: {err}");
        }
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("CLAUDE_TOWER_LISTEN", "localhost"),
            ("CLAUDE_TOWER_SIM_LISTEN", "nowhere"),
            ("CLAUDE_TOWER_TOOLPAIR", "fix"),
            ("CLAUDE_TOWER_MODEL_MAP", "no-equals-sign"),
            ("CLAUDE_TOWER_DEADLINE", "soon"),
            ("CLAUDE_TOWER_BODY_LIMIT", "-1"),
            ("CLAUDE_TOWER_RETRY_ATTEMPTS", "0"),
            ("CLAUDE_TOWER_RETRY_BACKOFF", "8s,500ms"),
            ("CLAUDE_TOWER_RETRY_BACKOFF", "500ms"),
        ] {
            let err = config(&[(var, value)]).unwrap_err();
            assert_eq!(err.setting(), var);
            assert!(err.to_string().contains(value), "{err}");
        }
    }

    #[test]
    fn retry_settings() {
        let c = config(&[
            ("CLAUDE_TOWER_RETRY_ATTEMPTS", "5"),
            ("CLAUDE_TOWER_RETRY_BACKOFF", "10ms, 40ms"),
        ])
        .unwrap();
        assert_eq!(c.retry_attempts, Some(5));
        assert_eq!(
            c.retry_backoff,
            Some((Duration::from_millis(10), Duration::from_millis(40)))
        );
    }

    #[test]
    fn model_map_rules() {
        let rules = parse_model_map(
            "foundry:claude-sonnet-4-5-20250929=claude-sonnet-4-5, claude-opus-4-1*=opus",
        )
        .unwrap();
        assert_eq!(
            rules,
            vec![
                ModelRule {
                    route: Some("foundry".into()),
                    from: "claude-sonnet-4-5-20250929".into(),
                    prefix: false,
                    to: "claude-sonnet-4-5".into()
                },
                ModelRule {
                    route: None,
                    from: "claude-opus-4-1".into(),
                    prefix: true,
                    to: "opus".into()
                },
            ]
        );
        assert!(parse_model_map(":a=b").is_err());
        assert!(parse_model_map("a=").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("600s"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("1500ms"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        for bad in ["", "0s", "-1s", "NaNs", "inf", "5h", "1e9s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
