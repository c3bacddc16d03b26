//! How a simulator is set up.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};

use claude_tower_core::DEFAULT_REQUEST_BODY_LIMIT;

use crate::log::DEFAULT_LOG_CAPACITY;

/// Settings for [`Sim::start`](crate::Sim::start), built with consuming `with`-style methods.
///
/// The default listens on `127.0.0.1:0` (an ephemeral port), accepts any
/// non-empty credential on both faces and has no faults. It does not read the
/// environment; [`SimConfig::from_env`] does.
///
/// ```
/// use claude_tower_sim::SimConfig;
///
/// let config = SimConfig::default()
///     .anthropic_key("sk-ant-test")
///     .foundry_key("foundry-key")
///     .foundry_token("entra-token")
///     .faults("anthropic=429:2s,ok;foundry=503*2");
/// assert!(format!("{config:?}").contains("<redacted>"));
/// assert!(!format!("{config:?}").contains("sk-ant-test"));
/// ```
#[derive(Clone)]
pub struct SimConfig {
    pub(crate) listen: SocketAddr,
    pub(crate) anthropic_key: Option<String>,
    pub(crate) foundry_key: Option<String>,
    pub(crate) foundry_token: Option<String>,
    pub(crate) faults: Option<String>,
    pub(crate) log_capacity: usize,
    pub(crate) body_limit: usize,
    pub(crate) title_case_headers: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            anthropic_key: None,
            foundry_key: None,
            foundry_token: None,
            faults: None,
            log_capacity: DEFAULT_LOG_CAPACITY,
            body_limit: DEFAULT_REQUEST_BODY_LIMIT,
            title_case_headers: false,
        }
    }
}

impl SimConfig {
    /// The default, overridden by `CLAUDE_TOWER_SIM_ANTHROPIC_KEY`,
    /// `CLAUDE_TOWER_SIM_FOUNDRY_KEY`, `CLAUDE_TOWER_SIM_FOUNDRY_TOKEN` and
    /// `CLAUDE_TOWER_SIM_FAULTS` where set and non-empty.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self {
            anthropic_key: var("CLAUDE_TOWER_SIM_ANTHROPIC_KEY"),
            foundry_key: var("CLAUDE_TOWER_SIM_FOUNDRY_KEY"),
            foundry_token: var("CLAUDE_TOWER_SIM_FOUNDRY_TOKEN"),
            faults: var("CLAUDE_TOWER_SIM_FAULTS"),
            ..Self::default()
        }
    }

    /// The address to listen on (default `127.0.0.1:0`).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// The only `x-api-key` the Anthropic face accepts (unset: any non-empty one).
    pub fn anthropic_key(mut self, key: impl Into<String>) -> Self {
        self.anthropic_key = Some(key.into());
        self
    }

    /// The only `x-api-key` / `api-key` the Foundry face accepts (unset: any non-empty one).
    pub fn foundry_key(mut self, key: impl Into<String>) -> Self {
        self.foundry_key = Some(key.into());
        self
    }

    /// The only `Authorization: Bearer` token the Foundry face accepts (unset: any non-empty one).
    pub fn foundry_token(mut self, token: impl Into<String>) -> Self {
        self.foundry_token = Some(token.into());
        self
    }

    /// The fault script in force at start (see the crate docs for the grammar).
    /// [`Sim::start`](crate::Sim::start) fails with `InvalidInput` if it does not parse.
    pub fn faults(mut self, script: impl Into<String>) -> Self {
        self.faults = Some(script.into());
        self
    }

    /// How many requests the log keeps (default 100 000); older records are dropped and counted.
    pub fn log_capacity(mut self, records: usize) -> Self {
        self.log_capacity = records;
        self
    }

    /// The largest request body accepted (default 32 MiB, as the Messages API);
    /// larger ones get the face's 413.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Send header names in Title-Case (`Retry-After`, `Apim-Request-Id`) on
    /// HTTP/1, to exercise case-insensitive clients. Default: lowercase.
    pub fn title_case_headers(mut self, enabled: bool) -> Self {
        self.title_case_headers = enabled;
        self
    }
}

impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = |s: &Option<String>| if s.is_some() { "<redacted>" } else { "<any>" };
        f.debug_struct("SimConfig")
            .field("listen", &self.listen)
            .field("anthropic_key", &secret(&self.anthropic_key))
            .field("foundry_key", &secret(&self.foundry_key))
            .field("foundry_token", &secret(&self.foundry_token))
            .field("faults", &self.faults)
            .field("log_capacity", &self.log_capacity)
            .field("body_limit", &self.body_limit)
            .field("title_case_headers", &self.title_case_headers)
            .finish()
    }
}
