//! The `[quota]` section of a configuration file, the environment variables,
//! and the per-caller / per-group resolution of policies.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use claude_tower_core::Caller;
use serde::Deserialize;

use crate::policy::{more_generous_quota, more_generous_rate};
use crate::{Estimate, InvalidQuotaConfig, Policy, Rate, TokenQuota, Weights};

/// The Redis URL (`redis://[:password@]host:port[/db]`); unset: the
/// in-memory store.
pub const ENV_REDIS_URL: &str = "CLAUDE_TOWER_REDIS_URL";
/// The default tokens per minute.
pub const ENV_TPM: &str = "CLAUDE_TOWER_TPM";
/// The default requests per minute.
pub const ENV_RPM: &str = "CLAUDE_TOWER_RPM";
/// The default token quota, `TOKENS/PERIOD` (`5000000/month`).
pub const ENV_TOKEN_QUOTA: &str = "CLAUDE_TOWER_TOKEN_QUOTA";

/// The quota configuration: a file's `[quota]` section (serde), optionally
/// overlaid by environment variables ([`apply_lookup`](Self::apply_lookup)).
///
/// ```toml
/// [quota]
/// redis_url = "redis://127.0.0.1:6379"   # absent: in-memory, per replica
/// redis_timeout_ms = 100                 # bounds every Redis call
/// on_redis_error = "open"                # or "closed" (503)
/// key_header = "x-team"                  # key for requests without a Caller
/// upstream_headers = "upstream"          # or "ours": who wins on anthropic-ratelimit-*
/// estimate = { bytes_per_token = 4, output_tokens = 0 }
/// weights = { cache_read = 0.1 }
///
/// [quota.default]
/// tokens_per_minute = 100000
/// burst_tokens = 100000                  # default: one minute's worth
/// requests_per_minute = 60
/// token_quota = "5000000/month"
///
/// [quota.groups.power-users]
/// tokens_per_minute = 400000
///
/// [quota.callers."ada@contoso.com"]
/// token_quota = "unlimited"
/// ```
///
/// Every field is optional; nothing configured means no limit.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaConfig {
    /// The Redis URL; `None`: the in-memory store.
    pub redis_url: Option<String>,
    /// Bound on every Redis call, in milliseconds (default 100).
    pub redis_timeout_ms: Option<u64>,
    /// What to do when Redis cannot be reached.
    pub on_redis_error: FailMode,
    /// The header whose value keys a request that carries no `Caller`.
    pub key_header: Option<String>,
    /// Whose `anthropic-ratelimit-*` headers a response carries.
    pub upstream_headers: HeaderPrecedence,
    /// What a request is charged at admission.
    pub estimate: Estimate,
    /// How much each kind of token counts.
    pub weights: Weights,
    /// The policy of every caller without an override.
    pub default: PolicyConfig,
    /// Overrides by caller id (or key header value).
    pub callers: BTreeMap<String, PolicyConfig>,
    /// Overrides by group (a `Caller`'s groups).
    pub groups: BTreeMap<String, PolicyConfig>,
}

impl fmt::Debug for QuotaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuotaConfig")
            // The URL may carry a password.
            .field("redis_url", &self.redis_url.as_ref().map(|_| "<redacted>"))
            .field("redis_timeout_ms", &self.redis_timeout_ms)
            .field("on_redis_error", &self.on_redis_error)
            .field("key_header", &self.key_header)
            .field("upstream_headers", &self.upstream_headers)
            .field("estimate", &self.estimate)
            .field("weights", &self.weights)
            .field("default", &self.default)
            .field("callers", &self.callers.len())
            .field("groups", &self.groups.len())
            .finish()
    }
}

/// One policy as written in the file. A field left out inherits (from the
/// default, for an override); `"unlimited"` lifts a limit.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Tokens per minute, or `"unlimited"`.
    pub tokens_per_minute: Option<Limit>,
    /// The token bucket's depth (default: one minute's worth).
    pub burst_tokens: Option<u64>,
    /// Requests per minute, or `"unlimited"`.
    pub requests_per_minute: Option<Limit>,
    /// The request bucket's depth (default: one minute's worth).
    pub burst_requests: Option<u64>,
    /// `TOKENS/PERIOD` (`5000000/month`), or `"unlimited"`.
    pub token_quota: Option<QuotaLimit>,
}

/// A number, or `"unlimited"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Limit {
    /// This many per minute.
    Amount(u64),
    /// The word `unlimited`.
    Word(Unlimited),
}

/// `TOKENS/PERIOD` or `"unlimited"`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct QuotaLimit(pub String);

/// The word `unlimited`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unlimited {
    /// `"unlimited"`.
    Unlimited,
}

/// What happens to a request when the shared store cannot be reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// Admit against a local in-memory store (each replica enforces the
    /// limits alone), warn, count, and go back to Redis when it answers.
    #[default]
    Open,
    /// Answer 503 `api_error` with `x-should-retry: true`.
    Closed,
}

/// Whose `anthropic-ratelimit-*` headers a response carries when upstream
/// (Anthropic direct) already sent some.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeaderPrecedence {
    /// Upstream's stay; the caller's own standing is written only where
    /// upstream sent none (Foundry, local answers). Upstream's describe the
    /// organisation's real limit, which a client cannot otherwise see.
    #[default]
    Upstream,
    /// The caller's own standing replaces upstream's.
    Ours,
    /// No `anthropic-ratelimit-*` headers are written by the quota.
    None,
}

impl QuotaConfig {
    /// The configuration from environment variables alone (see
    /// [`apply_lookup`](Self::apply_lookup)).
    pub fn from_lookup<F>(lookup: F) -> Result<Self, InvalidQuotaConfig>
    where
        F: FnMut(&str) -> Option<String>,
    {
        Self::default().apply_lookup(lookup)
    }

    /// Overlays environment variables on this configuration: each one that
    /// is set (and not empty) replaces the file's value.
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `CLAUDE_TOWER_REDIS_URL` | the Redis URL |
    /// | `CLAUDE_TOWER_TPM` | default tokens per minute (`unlimited` allowed) |
    /// | `CLAUDE_TOWER_RPM` | default requests per minute (`unlimited` allowed) |
    /// | `CLAUDE_TOWER_TOKEN_QUOTA` | default quota, `5000000/month` (hour, day, week, month) |
    ///
    /// ```
    /// use claude_tower_quota::QuotaConfig;
    ///
    /// let env = |name: &str| match name {
    ///     "CLAUDE_TOWER_TPM" => Some("100000".to_owned()),
    ///     "CLAUDE_TOWER_TOKEN_QUOTA" => Some("5000000/month".to_owned()),
    ///     _ => None,
    /// };
    /// let config = QuotaConfig::from_lookup(env).unwrap();
    /// assert!(config.is_enabled());
    /// let bad = QuotaConfig::from_lookup(|n: &str| (n == "CLAUDE_TOWER_RPM").then(|| "0".into()));
    /// assert!(bad.unwrap_err().to_string().contains("CLAUDE_TOWER_RPM"));
    /// ```
    pub fn apply_lookup<F>(mut self, mut lookup: F) -> Result<Self, InvalidQuotaConfig>
    where
        F: FnMut(&str) -> Option<String>,
    {
        let mut get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        if let Some(url) = get(ENV_REDIS_URL) {
            self.redis_url = Some(url.trim().to_owned());
        }
        if let Some(v) = get(ENV_TPM) {
            self.default.tokens_per_minute = Some(parse_limit(&v).map_err(|e| e.context(ENV_TPM))?);
        }
        if let Some(v) = get(ENV_RPM) {
            self.default.requests_per_minute =
                Some(parse_limit(&v).map_err(|e| e.context(ENV_RPM))?);
        }
        if let Some(v) = get(ENV_TOKEN_QUOTA) {
            let q = QuotaLimit(v.trim().to_owned());
            resolve_quota(&q).map_err(|e| e.context(ENV_TOKEN_QUOTA))?;
            self.default.token_quota = Some(q);
        }
        self.validate()?;
        Ok(self)
    }

    /// Whether any limit is configured anywhere (default or override).
    pub fn is_enabled(&self) -> bool {
        let set = |p: &PolicyConfig| {
            p.tokens_per_minute.is_some()
                || p.requests_per_minute.is_some()
                || p.token_quota.is_some()
        };
        set(&self.default) || self.callers.values().any(set) || self.groups.values().any(set)
    }

    /// Checks every setting, naming the first bad one.
    pub fn validate(&self) -> Result<(), InvalidQuotaConfig> {
        self.limits().map(|_| ())
    }

    /// The Redis call timeout.
    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms.unwrap_or(100))
    }

    /// The compiled policies.
    pub fn limits(&self) -> Result<Limits, InvalidQuotaConfig> {
        self.estimate.validate()?;
        self.weights.validate()?;
        if let Some(ms) = self.redis_timeout_ms
            && (ms == 0 || ms > 60_000)
        {
            return Err(InvalidQuotaConfig::new(format!(
                "redis_timeout_ms = {ms}: use 1 to 60000"
            )));
        }
        if let Some(h) = &self.key_header {
            http::HeaderName::try_from(h.as_str()).map_err(|_| {
                InvalidQuotaConfig::new(format!("key_header = {h:?} is not a header name"))
            })?;
        }
        #[cfg(not(feature = "redis"))]
        if self.redis_url.is_some() {
            return Err(InvalidQuotaConfig::new(
                "redis_url is set but claude-tower-quota was built without its `redis` feature",
            ));
        }
        #[cfg(feature = "redis")]
        if let Some(url) = &self.redis_url {
            redis::Client::open(url.as_str()).map_err(|e| {
                // The URL may hold a password: name the error, not the URL.
                InvalidQuotaConfig::new(format!("redis_url is not a Redis URL ({:?})", e.kind()))
            })?;
        }
        let base =
            PolicyOverride::compile(&self.default).map_err(|e| e.context("[quota.default]"))?;
        let default = base.apply(Policy::unlimited());
        let compile_all = |map: &BTreeMap<String, PolicyConfig>, section: &str| {
            map.iter()
                .map(|(name, p)| {
                    if name.is_empty() {
                        return Err(InvalidQuotaConfig::new(format!(
                            "[quota.{section}]: an empty name"
                        )));
                    }
                    PolicyOverride::compile(p)
                        .map(|o| (Box::from(name.as_str()), o))
                        .map_err(|e| e.context(&format!("[quota.{section}.{name:?}]")))
                })
                .collect::<Result<HashMap<_, _>, _>>()
        };
        Ok(Limits {
            default,
            callers: compile_all(&self.callers, "callers")?,
            groups: compile_all(&self.groups, "groups")?,
        })
    }
}

fn parse_limit(v: &str) -> Result<Limit, InvalidQuotaConfig> {
    let v = v.trim();
    if v.eq_ignore_ascii_case("unlimited") {
        return Ok(Limit::Word(Unlimited::Unlimited));
    }
    let n: u64 = v.replace('_', "").parse().map_err(|_| {
        InvalidQuotaConfig::new(format!("{v:?} is neither a number nor \"unlimited\""))
    })?;
    Rate::per_minute(n)?;
    Ok(Limit::Amount(n))
}

fn resolve_quota(q: &QuotaLimit) -> Result<Option<TokenQuota>, InvalidQuotaConfig> {
    if q.0.trim().eq_ignore_ascii_case("unlimited") {
        Ok(None)
    } else {
        q.0.parse().map(Some)
    }
}

fn resolve_rate(
    limit: Option<Limit>,
    burst: Option<u64>,
    what: &str,
) -> Result<Option<Option<Rate>>, InvalidQuotaConfig> {
    match (limit, burst) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(InvalidQuotaConfig::new(format!(
            "burst_{what} needs {what}_per_minute beside it"
        ))),
        (Some(Limit::Word(_)), _) => Ok(Some(None)),
        (Some(Limit::Amount(n)), burst) => {
            let rate = Rate::per_minute(n).map_err(|e| e.context(&format!("{what}_per_minute")))?;
            let rate = match burst {
                Some(b) => rate
                    .with_burst(b)
                    .map_err(|e| e.context(&format!("burst_{what}")))?,
                None => rate,
            };
            Ok(Some(Some(rate)))
        }
    }
}

/// A policy override: each part `None` = inherit, `Some(None)` = unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct PolicyOverride {
    tokens: Option<Option<Rate>>,
    requests: Option<Option<Rate>>,
    quota: Option<Option<TokenQuota>>,
}

impl PolicyOverride {
    fn compile(p: &PolicyConfig) -> Result<Self, InvalidQuotaConfig> {
        Ok(Self {
            tokens: resolve_rate(p.tokens_per_minute, p.burst_tokens, "tokens")?,
            requests: resolve_rate(p.requests_per_minute, p.burst_requests, "requests")?,
            quota: p
                .token_quota
                .as_ref()
                .map(resolve_quota)
                .transpose()
                .map_err(|e| e.context("token_quota"))?,
        })
    }

    fn all(p: Policy) -> Self {
        Self {
            tokens: Some(p.tokens),
            requests: Some(p.requests),
            quota: Some(p.quota),
        }
    }

    fn apply(&self, mut policy: Policy) -> Policy {
        if let Some(t) = self.tokens {
            policy.tokens = t;
        }
        if let Some(r) = self.requests {
            policy.requests = r;
        }
        if let Some(q) = self.quota {
            policy.quota = q;
        }
        policy
    }
}

/// The compiled policies: a default plus overrides per caller and per group.
///
/// **Resolution** (per limit: tokens per minute, requests per minute, token
/// quota, each on its own):
///
/// 1. start from the default;
/// 2. if any of the caller's groups sets the limit, the **most generous** of
///    those groups' values replaces the default's (unlimited beats any
///    number; rates compare per second, then by burst; quotas compare by
///    average tokens per second, so `1000000/day` beats `20000000/month`).
///    A group may thus also *lower* a limit below the default;
/// 3. a per-caller override (by caller id, or key header value) replaces
///    whatever it sets.
///
/// A caller in groups `a` (400k TPM) and `b` (50k TPM, `unlimited` quota)
/// gets 400k TPM and no quota.
#[derive(Clone, Debug, Default)]
pub struct Limits {
    default: Policy,
    callers: HashMap<Box<str>, PolicyOverride>,
    groups: HashMap<Box<str>, PolicyOverride>,
}

impl Limits {
    /// One policy for every key.
    pub fn new(default: Policy) -> Self {
        Self {
            default,
            ..Self::default()
        }
    }

    /// Sets caller (or key header value) `id`'s policy, replacing every
    /// limit the default or its groups would give.
    pub fn with_caller(mut self, id: impl Into<Box<str>>, policy: Policy) -> Self {
        self.callers.insert(id.into(), PolicyOverride::all(policy));
        self
    }

    /// Sets group `name`'s policy (every limit; see the resolution rule).
    pub fn with_group(mut self, name: impl Into<Box<str>>, policy: Policy) -> Self {
        self.groups.insert(name.into(), PolicyOverride::all(policy));
        self
    }

    /// The default policy.
    pub fn default_policy(&self) -> Policy {
        self.default
    }

    /// The policy of a request keyed `id`, by `caller` when one is known.
    pub fn resolve(&self, id: &str, caller: Option<&Caller>) -> Policy {
        let mut policy = self.default;
        if let Some(caller) = caller.filter(|_| !self.groups.is_empty()) {
            let mut merged: Option<PolicyOverride> = None;
            for o in caller.groups().filter_map(|g| self.groups.get(g)) {
                merged = Some(match merged {
                    None => *o,
                    Some(m) => PolicyOverride {
                        tokens: merge(m.tokens, o.tokens, more_generous_rate),
                        requests: merge(m.requests, o.requests, more_generous_rate),
                        quota: merge(m.quota, o.quota, more_generous_quota),
                    },
                });
            }
            if let Some(m) = merged {
                policy = m.apply(policy);
            }
        }
        if let Some(o) = self.callers.get(id) {
            policy = o.apply(policy);
        }
        policy
    }

    /// Whether every key is unlimited (the layer then passes requests
    /// through untouched).
    pub fn is_unlimited(&self) -> bool {
        let none = |o: &PolicyOverride| {
            matches!(o.tokens, None | Some(None))
                && matches!(o.requests, None | Some(None))
                && matches!(o.quota, None | Some(None))
        };
        self.default.is_unlimited()
            && self.callers.values().all(none)
            && self.groups.values().all(none)
    }
}

fn merge<T: Copy>(
    a: Option<Option<T>>,
    b: Option<Option<T>>,
    pick: fn(Option<T>, Option<T>) -> Option<T>,
) -> Option<Option<T>> {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(a), Some(b)) => Some(pick(a, b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use claude_tower_core::AuthMethod;

    fn config(json: serde_json::Value) -> Result<QuotaConfig, String> {
        serde_json::from_value::<QuotaConfig>(json).map_err(|e| e.to_string())
    }

    #[test]
    fn file_section_with_overrides() {
        let c = config(serde_json::json!({
            "redis_url": if cfg!(feature = "redis") { Some("redis://:secret@127.0.0.1:6379/0") } else { None },
            "on_redis_error": "closed",
            "upstream_headers": "ours",
            "weights": {"cache_read": 0.1},
            "default": {"tokens_per_minute": 100000, "requests_per_minute": 60, "token_quota": "5000000/month"},
            "groups": {
                "power": {"tokens_per_minute": 400000},
                "small": {"tokens_per_minute": 50000, "token_quota": "unlimited"},
                "daily": {"token_quota": "1000000/day"},
            },
            "callers": {"ada": {"requests_per_minute": "unlimited"}},
        }))
        .unwrap();
        assert!(!format!("{c:?}").contains("secret"));
        assert_eq!(c.on_redis_error, FailMode::Closed);
        assert_eq!(c.weights.cache_read, 0.1);
        let limits = c.limits().unwrap();
        let d = limits.default_policy();
        assert_eq!(d.tokens().unwrap().amount(), 100_000);
        assert_eq!(d.quota().unwrap().to_string(), "5000000/month");

        let both = Caller::new("bob", AuthMethod::Token).with_groups(["power", "small", "other"]);
        let p = limits.resolve("bob", Some(&both));
        assert_eq!(p.tokens().unwrap().amount(), 400_000);
        assert_eq!(p.quota(), None, "unlimited is the most generous quota");
        assert_eq!(p.requests().unwrap().amount(), 60, "inherited");

        let small = Caller::new("eve", AuthMethod::Token).with_groups(["small"]);
        let p = limits.resolve("eve", Some(&small));
        assert_eq!(p.tokens().unwrap().amount(), 50_000, "a group may lower");

        let daily = Caller::new("dan", AuthMethod::Token).with_groups(["daily"]);
        assert_eq!(
            limits
                .resolve("dan", Some(&daily))
                .quota()
                .unwrap()
                .to_string(),
            "1000000/day"
        );

        let ada = Caller::new("ada", AuthMethod::Token).with_groups(["power"]);
        let p = limits.resolve("ada", Some(&ada));
        assert_eq!(p.requests(), None);
        assert_eq!(p.tokens().unwrap().amount(), 400_000);
        assert_eq!(limits.resolve("nobody", None), d);
    }

    #[test]
    fn bad_settings_are_named() {
        let cases = [
            (
                serde_json::json!({"default": {"tokens_per_minute": 0}}),
                "tokens_per_minute",
            ),
            (
                serde_json::json!({"default": {"requests_per_minute": 10_000_000_000_000u64}}),
                "largest",
            ),
            (
                serde_json::json!({"default": {"token_quota": "0/month"}}),
                "token_quota",
            ),
            (
                serde_json::json!({"groups": {"g": {"token_quota": "5/fortnight"}}}),
                "[quota.groups.\"g\"]",
            ),
            (
                serde_json::json!({"default": {"burst_tokens": 5}}),
                "burst_tokens",
            ),
            #[cfg(feature = "redis")]
            (serde_json::json!({"redis_url": "http://nope"}), "redis_url"),
            (
                serde_json::json!({"redis_timeout_ms": 0}),
                "redis_timeout_ms",
            ),
            (
                serde_json::json!({"key_header": "bad header"}),
                "key_header",
            ),
            (
                serde_json::json!({"weights": {"output": -1.0}}),
                "weights.output",
            ),
        ];
        for (json, needle) in cases {
            let err = config(json.clone())
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
        // Unknown keys and wrong types are serde errors.
        assert!(config(serde_json::json!({"tpm": 5})).is_err());
        assert!(config(serde_json::json!({"default": {"tokens_per_minute": "lots"}})).is_err());
    }

    #[test]
    fn environment_overlays_the_file() {
        let file = config(serde_json::json!({"default": {"tokens_per_minute": 5}})).unwrap();
        let env = |name: &str| match name {
            ENV_TPM => Some("100_000".to_owned()),
            ENV_RPM => Some("unlimited".to_owned()),
            ENV_TOKEN_QUOTA => Some("5000000/week".to_owned()),
            ENV_REDIS_URL => Some(" ".to_owned()),
            _ => None,
        };
        let c = file.apply_lookup(env).unwrap();
        assert_eq!(c.redis_url, None, "blank is unset");
        let p = c.limits().unwrap().default_policy();
        assert_eq!(p.tokens().unwrap().amount(), 100_000);
        assert_eq!(p.requests(), None);
        assert_eq!(p.quota().unwrap().to_string(), "5000000/week");
        let err = QuotaConfig::from_lookup(|n: &str| (n == ENV_TOKEN_QUOTA).then(|| "lots".into()))
            .unwrap_err();
        assert!(err.to_string().contains(ENV_TOKEN_QUOTA), "{err}");
        assert!(
            !QuotaConfig::from_lookup(|_: &str| None)
                .unwrap()
                .is_enabled()
        );
    }
}
