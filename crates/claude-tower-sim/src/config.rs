//! How a simulator is set up.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use claude_tower_core::DEFAULT_REQUEST_BODY_LIMIT;

use crate::log::DEFAULT_LOG_CAPACITY;
use crate::tls::{Alpn, PemSource, TlsSettings};

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
    pub(crate) tls: Option<(PemSource, PemSource)>,
    pub(crate) alpn: Vec<Alpn>,
    pub(crate) h2_max_concurrent_streams: Option<u32>,
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
            tls: None,
            alpn: Alpn::DEFAULT.to_vec(),
            h2_max_concurrent_streams: None,
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

    /// Serve HTTPS with this PEM certificate chain (leaf first) and PEM
    /// private key, read from files when the simulator starts. Every
    /// connection must then complete a TLS handshake; the protocol is the
    /// one ALPN settles on (see [`SimConfig::alpn`]).
    /// [`Sim::start`](crate::Sim::start) fails with `InvalidInput`, naming
    /// the file, if either cannot be read or used.
    ///
    /// ```no_run
    /// use claude_tower_sim::{Sim, SimConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let sim = Sim::start(SimConfig::default().tls_pem_files("cert.pem", "key.pem")).await?;
    /// assert!(sim.anthropic_base_url().starts_with("https://"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn tls_pem_files(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls = Some((PemSource::File(cert.into()), PemSource::File(key.into())));
        self
    }

    /// [`SimConfig::tls_pem_files`] with the PEM documents in memory (for
    /// tests that generate a certificate).
    pub fn tls_pem(mut self, cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.tls = Some((PemSource::Bytes(cert.into()), PemSource::Bytes(key.into())));
        self
    }

    /// The protocols offered in the TLS handshake, in order of preference
    /// (default `h2`, `http/1.1`: the client's first match wins). Offer only
    /// one to force HTTP/1.1 or HTTP/2 whatever the client offers; a client
    /// that offers only the other one fails the handshake. An empty list
    /// offers no ALPN, and connections are served as HTTP/1.1. Ignored
    /// without TLS: plain connections are always HTTP/1.1.
    pub fn alpn(mut self, protocols: impl IntoIterator<Item = Alpn>) -> Self {
        self.alpn = protocols.into_iter().collect();
        self
    }

    /// The `SETTINGS_MAX_CONCURRENT_STREAMS` each HTTP/2 connection
    /// advertises: how many requests a client may have open on one
    /// connection at once (default: hyper's, 200). A stream opened beyond it
    /// is refused with `REFUSED_STREAM`; a conforming client holds the
    /// request back until one of its streams ends, or opens another
    /// connection. `0` lets clients open no stream at all. Real upstreams
    /// advertise a limit too (often 100 to 250), which is what this
    /// reproduces. Ignored for HTTP/1.1 and without TLS.
    ///
    /// ```
    /// use claude_tower_sim::{Alpn, SimConfig};
    ///
    /// let config = SimConfig::default()
    ///     .alpn([Alpn::H2])
    ///     .h2_max_concurrent_streams(2);
    /// assert!(format!("{config:?}").contains("h2_max_concurrent_streams: Some(2)"));
    /// ```
    pub fn h2_max_concurrent_streams(mut self, max: u32) -> Self {
        self.h2_max_concurrent_streams = Some(max);
        self
    }

    /// The TLS settings, when TLS is on.
    pub(crate) fn tls_settings(&self) -> Option<TlsSettings> {
        self.tls.as_ref().map(|(cert, key)| TlsSettings {
            cert: cert.clone(),
            key: key.clone(),
            alpn: self.alpn.clone(),
        })
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
            .field("tls", &self.tls)
            .field("alpn", &self.alpn)
            .field("h2_max_concurrent_streams", &self.h2_max_concurrent_streams)
            .finish()
    }
}
