//! The gateway configurations a run compares, each its own gateway process
//! in front of the same simulator.
//!
//! | name | what runs | what it isolates |
//! |---|---|---|
//! | `default` | the gateway as a newcomer starts it: usage read from every response (metrics, records), no limits | the full default stack, (c) |
//! | `plain` | `CLAUDE_TOWER_USAGE=off`, no limits | the stack without the wave-2 layers |
//! | `wave2` | client keys (identity: the caller looked up per request), usage, tokens- and requests-per-minute limits in the memory store, set far above the load | identity + usage + memory quota |
//! | `redis` | `wave2` with the limits in Redis (a `redis-server` the harness starts) | the Redis store's round trips |
//! | `quota` | `default` plus the same limits in the memory store, no identity (one global key) | the memory quota alone |
//!
//! The limits are 10^11 tokens and 10^10 requests a minute: every request
//! is checked, charged and settled, none is refused.

use std::fmt;
use std::process::Command;

/// One gateway configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Variant {
    Default,
    Plain,
    Wave2,
    Redis,
    Quota,
}

impl Variant {
    pub(crate) const ALL: [Variant; 5] = [
        Variant::Default,
        Variant::Plain,
        Variant::Wave2,
        Variant::Redis,
        Variant::Quota,
    ];

    pub(crate) fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.name() == name)
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Variant::Default => "default",
            Variant::Plain => "plain",
            Variant::Wave2 => "wave2",
            Variant::Redis => "redis",
            Variant::Quota => "quota",
        }
    }

    /// The row label in the tables.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Variant::Default => "(c) gateway",
            Variant::Plain => "(d) gateway, no wave-2 layers",
            Variant::Wave2 => "(e) gateway + identity, usage, memory quota",
            Variant::Redis => "(f) gateway + identity, usage, Redis quota",
            Variant::Quota => "(g) gateway + memory quota (no identity)",
        }
    }

    /// Sets this configuration's variables on a gateway command; `redis` is
    /// the Redis URL for `Redis`.
    pub(crate) fn configure(self, cmd: &mut Command, redis: Option<&str>) {
        match self {
            Variant::Default => {}
            Variant::Plain => {
                cmd.env("CLAUDE_TOWER_USAGE", "off");
            }
            Variant::Quota => {
                cmd.env("CLAUDE_TOWER_TPM", "100000000000")
                    .env("CLAUDE_TOWER_RPM", "10000000000");
            }
            Variant::Wave2 | Variant::Redis => {
                cmd.env(
                    "CLAUDE_TOWER_CLIENT_KEYS",
                    format!("bench={}", crate::client::CLIENT_KEY),
                )
                .env("CLAUDE_TOWER_TPM", "100000000000")
                .env("CLAUDE_TOWER_RPM", "10000000000");
                if let (Variant::Redis, Some(url)) = (self, redis) {
                    cmd.env("CLAUDE_TOWER_REDIS_URL", url);
                }
            }
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether `redis-server` is on `PATH` (the `redis` configuration needs it).
pub(crate) fn redis_server_found() -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|p| p.join("redis-server").is_file())
    })
}
