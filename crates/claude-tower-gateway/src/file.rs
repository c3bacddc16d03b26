//! The optional config file (`--config gateway.toml`): what does not fit in
//! variables — several routes of one face, per-route model maps — and the
//! sections later layers add.
//!
//! ```toml
//! models = ["claude-sonnet-4-5", "claude-opus-4-1"]   # GET /v1/models without an Anthropic route
//!
//! [server]
//! listen = "0.0.0.0:8787"
//! client_keys = ["ada=k-team-key-1"]                  # or client_keys_env = "GATEWAY_KEYS"
//! admin_callers = ["ada"]                             # may read GET /usage
//! deadline = "600s"
//! body_limit = 33554432
//! header_read_timeout = "30s"
//! idle_timeout = "90s"
//! max_connections = 4096
//! h2_max_streams = 100
//! tls_cert = "/etc/gateway/cert.pem"
//! tls_key = "/etc/gateway/key.pem"
//!
//! [stack]
//! toolpair = "reject"
//! route_order = ["foundry-east", "foundry-west"]
//! upstream_http2 = false                   # true: offer HTTP/2 to https:// routes (see --upstream-http2)
//!
//! [retry]
//! attempts = 3
//! backoff = "500ms,8s"
//!
//! [[routes]]
//! name = "foundry-east"
//! face = "foundry"
//! resource = "my-east-resource"            # or base_url = "https://…/anthropic"
//! api_key_env = "EAST_FOUNDRY_KEY"         # or api_key = "…"; neither: Entra ID; auth = "none": no credential
//! model_map = { "claude-sonnet-4-5-20250929" = "sonnet-east", "claude-opus-4-1*" = "opus" }
//!
//! [[routes]]
//! name = "anthropic"
//! face = "anthropic"
//! api_key_env = "ANTHROPIC_API_KEY"
//!
//! [identity]                               # claude_tower_identity::IdentityConfig
//! entra_tenant_ids = ["72f988bf-86f1-41af-91ab-2d7cd011db47"]
//! required_roles = ["Claude.Use"]
//!
//! [quota]                                  # claude_tower_quota::QuotaConfig
//! redis_url = "redis://127.0.0.1:6379"
//! [quota.default]
//! tokens_per_minute = 100000
//! token_quota = "5000000/month"
//!
//! [metrics]
//! public = false                           # true: /metrics without a credential
//! caller_labels = 1000
//! usage = true                             # false: no usage records, GenAI metrics or /usage consumption
//! ```
//!
//! Flags and `CLAUDE_TOWER_*` variables win over the file. With `[[routes]]`
//! in the file, the routes come from the file alone, and an upstream
//! variable of Claude Code's that no route names is an error (it would be
//! ignored, which is how a deployment ends up somewhere it did not mean to).
//!
//! Unknown keys are errors, so a typo is caught by `claude-tower-gateway
//! check` rather than ignored. A new section is one more
//! `#[serde(default)]` field on [`FileConfig`], a struct of its own that
//! derives `Deserialize`, and an entry in
//! [`GatewayConfig::redacted`](crate::config::GatewayConfig::redacted); no
//! other section changes. `[identity]` and `[quota]` are the layers' own
//! config types, so their documentation is the crates'.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::ConfigError;

/// The whole file. Every section is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct FileConfig {
    /// Model ids `GET /v1/models` lists when no Anthropic route serves it.
    #[serde(default)]
    pub models: Vec<String>,
    /// Listening, client keys and connection limits.
    #[serde(default)]
    pub server: ServerSection,
    /// The stack's options.
    #[serde(default)]
    pub stack: StackSection,
    /// Same-route retries.
    #[serde(default)]
    pub retry: RetrySection,
    /// The upstream routes, in default order.
    #[serde(default)]
    pub routes: Vec<RouteSection>,
    /// Simulator mode only.
    #[serde(default)]
    pub simulator: SimulatorSection,
    /// Who may call: Entra ID / OIDC tokens and named client keys (the
    /// identity crate's own section; `CLAUDE_TOWER_*` variables win).
    #[serde(default)]
    pub identity: claude_tower_identity::IdentityConfig,
    /// Per-caller limits (the quota crate's own section; variables win).
    #[serde(default)]
    pub quota: claude_tower_quota::QuotaConfig,
    /// `GET /metrics`.
    #[serde(default)]
    pub metrics: MetricsSection,
}

/// `[metrics]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MetricsSection {
    /// `CLAUDE_TOWER_METRICS_PUBLIC`.
    pub public: Option<bool>,
    /// How many distinct callers become label values (the rest: `_other`).
    pub caller_labels: Option<usize>,
    /// `CLAUDE_TOWER_USAGE`: read token usage from every response.
    pub usage: Option<bool>,
}

/// `[server]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ServerSection {
    /// `CLAUDE_TOWER_LISTEN`.
    pub listen: Option<String>,
    /// `CLAUDE_TOWER_CLIENT_KEYS`, as a list.
    pub client_keys: Option<Vec<String>>,
    /// A variable holding comma-separated client keys.
    pub client_keys_env: Option<String>,
    /// `CLAUDE_TOWER_ADMIN_CALLERS`, as a list.
    pub admin_callers: Option<Vec<String>>,
    /// `CLAUDE_TOWER_DEADLINE`.
    pub deadline: Option<String>,
    /// `CLAUDE_TOWER_BODY_LIMIT`.
    pub body_limit: Option<u64>,
    /// `CLAUDE_TOWER_HEADER_READ_TIMEOUT`.
    pub header_read_timeout: Option<String>,
    /// `CLAUDE_TOWER_IDLE_TIMEOUT`.
    pub idle_timeout: Option<String>,
    /// `CLAUDE_TOWER_MAX_CONNECTIONS`.
    pub max_connections: Option<u64>,
    /// `CLAUDE_TOWER_H2_MAX_STREAMS`.
    pub h2_max_streams: Option<u64>,
    /// `CLAUDE_TOWER_TLS_CERT`.
    pub tls_cert: Option<PathBuf>,
    /// `CLAUDE_TOWER_TLS_KEY`.
    pub tls_key: Option<PathBuf>,
}

/// `[stack]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StackSection {
    /// `CLAUDE_TOWER_TOOLPAIR`.
    pub toolpair: Option<String>,
    /// `CLAUDE_TOWER_ROUTES`, as a list.
    pub route_order: Option<Vec<String>>,
    /// `CLAUDE_TOWER_UPSTREAM_HTTP2`.
    pub upstream_http2: Option<bool>,
}

/// `[retry]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RetrySection {
    /// `CLAUDE_TOWER_RETRY_ATTEMPTS`.
    pub attempts: Option<u64>,
    /// `CLAUDE_TOWER_RETRY_BACKOFF`.
    pub backoff: Option<String>,
}

/// `[simulator]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SimulatorSection {
    /// `CLAUDE_TOWER_SIM_FAULTS`.
    pub faults: Option<String>,
    /// `CLAUDE_TOWER_SIM_LISTEN`.
    pub listen: Option<String>,
}

/// One `[[routes]]` entry.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RouteSection {
    /// The route's name (`x-claude-tower-route`, `route_order`, model-map rules).
    pub name: String,
    /// `anthropic` or `foundry`.
    pub face: String,
    /// A full base URL (Anthropic: default `https://api.anthropic.com`).
    pub base_url: Option<String>,
    /// Foundry: the resource name (exclusive with `base_url`).
    pub resource: Option<String>,
    /// The key itself (prefer `api_key_env`).
    pub api_key: Option<String>,
    /// A variable holding the key.
    pub api_key_env: Option<String>,
    /// `key` (default with a key), `entra` (Foundry default without one) or
    /// `none` (Foundry behind another gateway that signs) or `passthrough`
    /// (each caller's own credential is forwarded; no key).
    pub auth: Option<String>,
    /// Model rules for this route: `from = to`, `from*` a prefix rule.
    #[serde(default)]
    pub model_map: BTreeMap<String, String>,
}

impl std::fmt::Debug for RouteSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteSection")
            .field("name", &self.name)
            .field("face", &self.face)
            .field("base_url", &self.base_url)
            .field("resource", &self.resource)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("api_key_env", &self.api_key_env)
            .field("auth", &self.auth)
            .field("model_map", &self.model_map)
            .finish()
    }
}

impl FileConfig {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| {
            ConfigError::new(
                "CLAUDE_TOWER_CONFIG",
                format!("cannot read {}: {err}", path.display()),
            )
        })?;
        Self::parse(&text).map_err(|err| {
            ConfigError::new(
                "CLAUDE_TOWER_CONFIG",
                format!("{}: {}", path.display(), err.problem()),
            )
        })
    }

    /// Parses the file's text.
    ///
    /// ```
    /// use claude_tower_gateway::file::FileConfig;
    ///
    /// let file = FileConfig::parse("[server]\nlisten = \"127.0.0.1:9000\"\n")?;
    /// assert_eq!(file.server.listen.as_deref(), Some("127.0.0.1:9000"));
    /// assert!(FileConfig::parse("[server]\nlisen = \"typo\"\n").is_err());
    /// # Ok::<(), claude_tower_gateway::config::ConfigError>(())
    /// ```
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text)
            .map_err(|err| ConfigError::new("CLAUDE_TOWER_CONFIG", err.to_string().trim_end()))
    }
}
