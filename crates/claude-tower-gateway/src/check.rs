//! `claude-tower-gateway check`: the configuration resolved exactly as a
//! start would resolve it, printed as TOML with every secret redacted.
//!
//! It starts nothing and sends nothing: no listener, no simulator, no token
//! request. The TLS files are loaded, so a bad certificate fails here too.

use claude_tower::stack::Route;
use claude_tower::transport::UpstreamHttp;
use claude_tower_identity::IdentityConfig;
use claude_tower_quota::{Limit, PolicyConfig, QuotaConfig};
use toml::{Table, Value};

use crate::config::{GatewayConfig, fmt_duration};
use crate::file::FileConfig;
use crate::gateway::{GatewayError, simulated_routes_at};
use crate::routes;
use crate::settings::Settings;
use crate::tls;
use crate::upstream::{self, SimulatorReason, Upstream};

/// Resolves `settings` (and the file they name) with `lookup` for the
/// variables, and renders the result; the error is what a start would fail on.
///
/// ```
/// use claude_tower_gateway::check::check;
/// use claude_tower_gateway::settings::Settings;
///
/// let lookup = |name: &str| match name {
///     "ANTHROPIC_API_KEY" => Some("sk-ant-secret".to_owned()),
///     "CLAUDE_TOWER_CLIENT_KEYS" => Some("team-secret".to_owned()),
///     _ => None,
/// };
/// let out = check(&Settings::from_lookup(lookup), &lookup).unwrap();
/// assert!(out.contains("mode = \"upstream\""));
/// assert!(!out.contains("sk-ant-secret") && !out.contains("team-secret"), "{out}");
///
/// let partial = |name: &str| (name == "ANTHROPIC_BASE_URL").then(|| "https://x.example".to_owned());
/// let err = check(&Settings::from_lookup(partial), &partial).unwrap_err();
/// assert!(err.to_string().contains("ANTHROPIC_API_KEY"), "{err}");
/// ```
pub fn check(
    settings: &Settings,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<String, GatewayError> {
    let file = match &settings.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let config = GatewayConfig::resolve(settings, &file, lookup)?;
    if let Some(files) = &config.tls {
        tls::server_config(files).map_err(GatewayError::Tls)?;
    }
    let (found, mode) = match upstream::resolve(&config, lookup)? {
        Upstream::Routes(routes) => (routes, None),
        Upstream::Simulator(_) if cfg!(not(feature = "simulator")) => {
            return Err(GatewayError::Config(crate::gateway::no_simulator()));
        }
        Upstream::Simulator(reason) => {
            let at = format!("http://{}", config.sim_listen);
            let routes = simulated_routes_at(&at, &format!("{at}/anthropic"))
                .map_err(GatewayError::Routes)?;
            (routes, Some(reason))
        }
    };
    let arranged = routes::arrange(found, &config).map_err(GatewayError::Routes)?;
    Ok(render(&config, mode, &arranged))
}

fn render(config: &GatewayConfig, simulator: Option<SimulatorReason>, routes: &[Route]) -> String {
    let mut top = Table::new();
    top.insert(
        "mode".into(),
        match simulator {
            None => "upstream",
            Some(_) => "simulator",
        }
        .into(),
    );
    if let Some(path) = &config.config_file {
        top.insert("config_file".into(), path.display().to_string().into());
    }
    top.extend(config.redacted());
    let mut listed = Vec::new();
    for r in routes {
        let mut t = Table::new();
        t.insert("name".into(), r.id().as_str().into());
        t.insert("face".into(), r.face().as_str().into());
        t.insert("base_url".into(), r.endpoint().base_url().into());
        t.insert("credential".into(), r.credential().kind().into());
        let rules: Table = config
            .model_map
            .iter()
            .filter(|rule| match &rule.route {
                Some(name) => r.id() == name.as_str(),
                None => r.face() == claude_tower_core::Face::Foundry,
            })
            .map(|rule| {
                let from = if rule.prefix {
                    format!("{}*", rule.from)
                } else {
                    rule.from.clone()
                };
                (from, Value::from(rule.to.clone()))
            })
            .collect();
        if !rules.is_empty() {
            t.insert("model_map".into(), rules.into());
        }
        listed.push(Value::Table(t));
    }
    top.insert("routes".into(), listed.into());
    if simulator.is_some() {
        let mut sim = Table::new();
        sim.insert("faults".into(), config.sim_faults.clone().into());
        sim.insert("listen".into(), config.sim_listen.to_string().into());
        top.insert("simulator".into(), sim.into());
    }
    let header = match simulator {
        None => "# claude-tower-gateway check: the configuration is valid (secrets redacted)\n"
            .to_owned(),
        Some(reason) => format!(
            "# claude-tower-gateway check: the configuration is valid (secrets redacted)\n\
             # !!! SIMULATOR MODE ({}): every answer would be fake\n",
            match reason {
                SimulatorReason::Asked => "--simulator",
                SimulatorReason::NothingConfigured => "nothing upstream is configured",
            }
        ),
    };
    header + &toml::to_string(&top).unwrap_or_else(|err| format!("# cannot render: {err}\n"))
}

/// The printed stand-in for a secret.
pub const REDACTED: &str = "<redacted>";

impl GatewayConfig {
    /// The settings as TOML sections, secrets replaced by [`REDACTED`].
    /// A new section of the config file adds its own entry here.
    pub fn redacted(&self) -> Table {
        let mut out = Table::new();
        if !self.models.is_empty() {
            out.insert("models".into(), self.models.clone().into());
        }
        let mut server = Table::new();
        server.insert("listen".into(), self.listen.to_string().into());
        if !self.admin_callers.is_empty() {
            server.insert("admin_callers".into(), self.admin_callers.clone().into());
        }
        server.insert("deadline".into(), fmt_duration(self.deadline).into());
        server.insert(
            "body_limit".into(),
            i64::try_from(self.body_limit).unwrap_or(i64::MAX).into(),
        );
        let c = &self.connections;
        server.insert(
            "header_read_timeout".into(),
            fmt_duration(c.header_read_timeout).into(),
        );
        server.insert("idle_timeout".into(), fmt_duration(c.idle_timeout).into());
        server.insert(
            "max_connections".into(),
            i64::try_from(c.max_connections).unwrap_or(i64::MAX).into(),
        );
        server.insert("h2_max_streams".into(), i64::from(c.h2_max_streams).into());
        if let Some(tls) = &self.tls {
            server.insert("tls_cert".into(), tls.cert.display().to_string().into());
            server.insert("tls_key".into(), tls.key.display().to_string().into());
        }
        out.insert("server".into(), server.into());
        let mut stack = Table::new();
        stack.insert(
            "toolpair".into(),
            format!("{:?}", self.toolpair).to_ascii_lowercase().into(),
        );
        stack.insert(
            "upstream_http2".into(),
            (self.upstream_http == UpstreamHttp::Http2).into(),
        );
        if let Some(order) = &self.route_order {
            stack.insert("route_order".into(), order.clone().into());
        }
        if !self.passthrough.is_empty() {
            stack.insert("passthrough".into(), self.passthrough.clone().into());
        }
        out.insert("stack".into(), stack.into());
        let mut retry = Table::new();
        retry.insert(
            "attempts".into(),
            i64::from(self.retry_attempts.unwrap_or(3)).into(),
        );
        let (base, cap) = self.retry_backoff.unwrap_or((
            std::time::Duration::from_millis(500),
            std::time::Duration::from_secs(8),
        ));
        retry.insert(
            "backoff".into(),
            format!("{},{}", fmt_duration(base), fmt_duration(cap)).into(),
        );
        out.insert("retry".into(), retry.into());
        out.insert("identity".into(), identity_table(&self.identity).into());
        out.insert("quota".into(), quota_table(&self.quota).into());
        let mut metrics = Table::new();
        metrics.insert("public".into(), self.metrics.public.into());
        metrics.insert("usage".into(), self.metrics.usage.into());
        metrics.insert(
            "caller_labels".into(),
            i64::try_from(self.metrics.caller_labels)
                .unwrap_or(i64::MAX)
                .into(),
        );
        out.insert("metrics".into(), metrics.into());
        out
    }
}

/// `[identity]`: issuers and policy as configured; client keys by name only.
fn identity_table(identity: &IdentityConfig) -> Table {
    let mut t = Table::new();
    let mut list = |key: &str, values: Vec<String>| {
        if !values.is_empty() {
            t.insert(key.into(), values.into());
        }
    };
    list("entra_tenant_ids", identity.entra_tenant_ids().to_vec());
    list("issuers", identity.issuers().to_vec());
    list("audiences", identity.audiences());
    list("allowed_tenants", identity.allowed_tenants().to_vec());
    list("required_roles", identity.required_roles().to_vec());
    list("required_groups", identity.required_groups().to_vec());
    let keys: Table = identity
        .client_key_names()
        .map(|name| (name.to_owned(), Value::from(REDACTED)))
        .collect();
    if !keys.is_empty() {
        t.insert("client_keys".into(), keys.into());
    }
    if !identity.is_configured() {
        t.insert(
            "note".into(),
            "no identity configured: every caller is anonymous (loopback only)".into(),
        );
    }
    t
}

/// `[quota]`: the Redis URL redacted (it may hold a password).
fn quota_table(quota: &QuotaConfig) -> Table {
    let mut t = Table::new();
    t.insert(
        "store".into(),
        if quota.redis_url.is_some() {
            "redis"
        } else {
            "memory"
        }
        .into(),
    );
    if quota.redis_url.is_some() {
        t.insert("redis_url".into(), REDACTED.into());
        t.insert(
            "redis_timeout_ms".into(),
            i64::try_from(quota.redis_timeout().as_millis())
                .unwrap_or(i64::MAX)
                .into(),
        );
        t.insert(
            "on_redis_error".into(),
            format!("{:?}", quota.on_redis_error)
                .to_ascii_lowercase()
                .into(),
        );
    }
    t.insert(
        "upstream_headers".into(),
        format!("{:?}", quota.upstream_headers)
            .to_ascii_lowercase()
            .into(),
    );
    let policy = |p: &PolicyConfig| {
        let mut t = Table::new();
        let limit = |l: &Limit| match l {
            Limit::Amount(n) => Value::from(i64::try_from(*n).unwrap_or(i64::MAX)),
            Limit::Word(_) => Value::from("unlimited"),
        };
        if let Some(l) = &p.tokens_per_minute {
            t.insert("tokens_per_minute".into(), limit(l));
        }
        if let Some(l) = &p.requests_per_minute {
            t.insert("requests_per_minute".into(), limit(l));
        }
        if let Some(q) = &p.token_quota {
            t.insert("token_quota".into(), q.0.clone().into());
        }
        t
    };
    let default = policy(&quota.default);
    if default.is_empty() && !quota.is_enabled() {
        t.insert("note".into(), "no limit configured: unlimited".into());
    }
    t.insert("default".into(), default.into());
    for (key, map) in [("callers", &quota.callers), ("groups", &quota.groups)] {
        let section: Table = map
            .iter()
            .map(|(name, p)| (name.clone(), Value::from(policy(p))))
            .collect();
        if !section.is_empty() {
            t.insert(key.into(), section.into());
        }
    }
    t
}
