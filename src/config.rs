//! The gateway's own settings, read from the environment.
//!
//! Upstream routes are read from the variables Claude Code itself reads
//! (`ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL`, `ANTHROPIC_FOUNDRY_RESOURCE`,
//! `ANTHROPIC_FOUNDRY_BASE_URL`, `ANTHROPIC_FOUNDRY_API_KEY`); the gateway's
//! own knobs are `CLAUDE_TOWER_*`:
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `CLAUDE_TOWER_LISTEN` | address to listen on | `127.0.0.1:8787` |
//! | `CLAUDE_TOWER_CLIENT_KEYS` | comma-separated keys clients must send (`x-api-key` or `Authorization: Bearer`) | none; required off loopback |
//! | `CLAUDE_TOWER_ROUTES` | route order, e.g. `foundry,anthropic` | `anthropic,foundry` (those configured) |
//! | `CLAUDE_TOWER_TOOLPAIR` | `reject`, `repair` or `observe` | `reject` |
//! | `CLAUDE_TOWER_MODEL_MAP` | `[route:]from=to,...`; `from*` is a prefix rule; no route = every Foundry route | none |
//! | `CLAUDE_TOWER_DEADLINE` | per-request deadline for the response head, e.g. `600s`, `90s`, `1500ms` | `600s` |
//! | `CLAUDE_TOWER_BODY_LIMIT` | request body limit in bytes | 32 MiB |
//! | `CLAUDE_TOWER_RETRY_ATTEMPTS` | attempts per route, first send included | `3` |
//! | `CLAUDE_TOWER_RETRY_BACKOFF` | full-jitter backoff `base,cap` when the server gave no Retry-After | `500ms,8s` |
//! | `CLAUDE_TOWER_SIM_FAULTS` | the demo simulator's fault script (simulator mode only) | `anthropic=random(p=0.2,seed=42)` |
//! | `CLAUDE_TOWER_SIM_LISTEN` | the demo simulator's address (simulator mode only) | an ephemeral loopback port |

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use claude_tower::toolpair::ToolPairingMode as Mode;
use claude_tower_core::DEFAULT_REQUEST_BODY_LIMIT;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8787";
/// Default per-request deadline for the response head.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(600);
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

/// The gateway's own settings (routes come from the upstream variables).
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Keys inbound clients must present; empty means none are required.
    pub client_keys: Vec<ClientKey>,
    /// Route order by name, when given.
    pub route_order: Option<Vec<String>>,
    /// Tool pairing mode.
    pub toolpair: Mode,
    /// Model-id rules.
    pub model_map: Vec<ModelRule>,
    /// Deadline for the response head of one request, retries included.
    pub deadline: Duration,
    /// Request body limit in bytes.
    pub body_limit: usize,
    /// The demo simulator's fault script.
    pub sim_faults: String,
    /// The demo simulator's address.
    pub sim_listen: SocketAddr,
    /// Attempts per route (`None`: the retry crate's default, 3).
    pub retry_attempts: Option<u32>,
    /// Backoff base and cap (`None`: the retry crate's defaults, 500 ms and 8 s).
    pub retry_backoff: Option<(Duration, Duration)>,
}

/// A key an inbound client presents. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientKey(String);

impl ClientKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key's bytes, for a constant-time comparison.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientKey(<redacted>)")
    }
}

/// A setting that could not be read. Names the variable and what it expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    variable: &'static str,
    problem: String,
}

impl ConfigError {
    fn new(variable: &'static str, problem: impl Into<String>) -> Self {
        Self {
            variable,
            problem: problem.into(),
        }
    }

    /// The variable at fault.
    pub fn variable(&self) -> &'static str {
        self.variable
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.variable, self.problem)
    }
}

impl std::error::Error for ConfigError {}

impl GatewayConfig {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

        let listen_raw = get("CLAUDE_TOWER_LISTEN").unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen: SocketAddr = listen_raw.trim().parse().map_err(|_| {
            ConfigError::new(
                "CLAUDE_TOWER_LISTEN",
                format!("`{listen_raw}` is not an address like 127.0.0.1:8787"),
            )
        })?;

        let client_keys: Vec<ClientKey> = get("CLAUDE_TOWER_CLIENT_KEYS")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(ClientKey::new)
                    .collect()
            })
            .unwrap_or_default();
        if !listen.ip().is_loopback() && client_keys.is_empty() {
            return Err(ConfigError::new(
                "CLAUDE_TOWER_CLIENT_KEYS",
                format!(
                    "listening on the non-loopback address {listen} requires client keys; \
                     set CLAUDE_TOWER_CLIENT_KEYS=key1,key2 (clients send one as x-api-key or Bearer)"
                ),
            ));
        }

        let route_order = get("CLAUDE_TOWER_ROUTES").map(|v| {
            v.split(',')
                .map(|r| r.trim().to_owned())
                .filter(|r| !r.is_empty())
                .collect::<Vec<_>>()
        });

        let toolpair = match get("CLAUDE_TOWER_TOOLPAIR")
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("reject") => Mode::Reject,
            Some("repair") => Mode::Repair,
            Some("observe") => Mode::Observe,
            Some(other) => {
                return Err(ConfigError::new(
                    "CLAUDE_TOWER_TOOLPAIR",
                    format!("`{other}` is not one of reject, repair, observe"),
                ));
            }
        };

        let model_map = match get("CLAUDE_TOWER_MODEL_MAP") {
            Some(v) => parse_model_map(&v)?,
            None => Vec::new(),
        };

        let deadline = match get("CLAUDE_TOWER_DEADLINE") {
            Some(v) => parse_duration(&v).ok_or_else(|| {
                ConfigError::new(
                    "CLAUDE_TOWER_DEADLINE",
                    format!("`{v}` is not a duration like 600s or 1500ms"),
                )
            })?,
            None => DEFAULT_DEADLINE,
        };

        let body_limit = match get("CLAUDE_TOWER_BODY_LIMIT") {
            Some(v) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    ConfigError::new(
                        "CLAUDE_TOWER_BODY_LIMIT",
                        format!("`{v}` is not a positive number of bytes"),
                    )
                })?,
            None => DEFAULT_REQUEST_BODY_LIMIT,
        };

        let sim_faults =
            lookup("CLAUDE_TOWER_SIM_FAULTS").unwrap_or_else(|| DEFAULT_SIM_FAULTS.to_owned());

        let sim_listen = match get("CLAUDE_TOWER_SIM_LISTEN") {
            Some(v) => v.trim().parse::<SocketAddr>().map_err(|_| {
                ConfigError::new(
                    "CLAUDE_TOWER_SIM_LISTEN",
                    format!("`{v}` is not an address like 127.0.0.1:9000"),
                )
            })?,
            None => SocketAddr::from(([127, 0, 0, 1], 0)),
        };

        let retry_attempts = match get("CLAUDE_TOWER_RETRY_ATTEMPTS") {
            Some(v) => Some(
                v.trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=10).contains(n))
                    .ok_or_else(|| {
                        ConfigError::new(
                            "CLAUDE_TOWER_RETRY_ATTEMPTS",
                            format!("`{v}` is not a number of attempts from 1 to 10"),
                        )
                    })?,
            ),
            None => None,
        };
        let retry_backoff = match get("CLAUDE_TOWER_RETRY_BACKOFF") {
            Some(v) => {
                let parsed = v
                    .split_once(',')
                    .and_then(|(base, cap)| Some((parse_duration(base)?, parse_duration(cap)?)))
                    .filter(|(base, cap)| base <= cap);
                Some(parsed.ok_or_else(|| {
                    ConfigError::new(
                        "CLAUDE_TOWER_RETRY_BACKOFF",
                        format!("`{v}` is not `base,cap` like 500ms,8s (base <= cap)"),
                    )
                })?)
            }
            None => None,
        };

        Ok(Self {
            listen,
            client_keys,
            route_order,
            toolpair,
            model_map,
            deadline,
            body_limit,
            sim_faults,
            sim_listen,
            retry_attempts,
            retry_backoff,
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
    fn defaults() {
        let c = config(&[]).unwrap();
        assert_eq!(c.listen, DEFAULT_LISTEN.parse().unwrap());
        assert!(c.client_keys.is_empty());
        assert_eq!(c.toolpair, Mode::Reject);
        assert_eq!(c.deadline, DEFAULT_DEADLINE);
        assert_eq!(c.body_limit, DEFAULT_REQUEST_BODY_LIMIT);
        assert_eq!(c.sim_faults, DEFAULT_SIM_FAULTS);
        assert!(c.route_order.is_none());
    }

    #[test]
    fn a_public_listener_needs_client_keys() {
        let err = config(&[("CLAUDE_TOWER_LISTEN", "0.0.0.0:8787")]).unwrap_err();
        assert_eq!(err.variable(), "CLAUDE_TOWER_CLIENT_KEYS");
        let ok = config(&[
            ("CLAUDE_TOWER_LISTEN", "0.0.0.0:8787"),
            ("CLAUDE_TOWER_CLIENT_KEYS", "k1, k2,,"),
        ])
        .unwrap();
        assert_eq!(ok.client_keys.len(), 2);
        assert_eq!(format!("{:?}", ok.client_keys[0]), "ClientKey(<redacted>)");
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
            assert_eq!(err.variable(), var);
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
