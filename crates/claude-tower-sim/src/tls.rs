//! TLS for the simulator: a PEM certificate chain and private key, and the
//! ALPN protocols the server offers.
//!
//! Why the simulator speaks TLS at all: HTTP/2 to an upstream is negotiated
//! by ALPN inside the TLS handshake, so without TLS there is no way to see
//! what h2 does for a route. Offering a single protocol lets a harness force
//! HTTP/1.1 or HTTP/2 from the server side whatever the client offers.
//!
//! The loader is the simulator's own (a few lines over `rustls-pki-types`'
//! PEM parser) rather than the gateway's, so the simulator does not depend
//! on the crate it is used to test.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustls::ServerConfig;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;

/// An application protocol the simulator can offer in the TLS handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alpn {
    /// `h2`: HTTP/2.
    H2,
    /// `http/1.1`: HTTP/1.1.
    Http11,
}

impl Alpn {
    /// What a TLS server offers unless told otherwise: `h2`, then `http/1.1`.
    pub const DEFAULT: [Alpn; 2] = [Alpn::H2, Alpn::Http11];

    /// The protocol's ALPN identifier (`h2`, `http/1.1`).
    pub fn id(self) -> &'static str {
        match self {
            Alpn::H2 => "h2",
            Alpn::Http11 => "http/1.1",
        }
    }

    /// The protocol for an ALPN identifier, `h2` or `http/1.1`.
    pub fn parse(id: &str) -> Option<Self> {
        match id {
            "h2" => Some(Alpn::H2),
            "http/1.1" => Some(Alpn::Http11),
            _ => None,
        }
    }
}

impl fmt::Display for Alpn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// Where a PEM document comes from: a file, or bytes already in memory.
#[derive(Clone)]
pub(crate) enum PemSource {
    File(PathBuf),
    Bytes(Vec<u8>),
}

impl PemSource {
    fn describe(&self) -> String {
        match self {
            PemSource::File(path) => path.display().to_string(),
            PemSource::Bytes(_) => "the PEM bytes given".to_owned(),
        }
    }
}

impl fmt::Debug for PemSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PemSource::File(path) => f.debug_tuple("File").field(path).finish(),
            // Key material stays out of logs.
            PemSource::Bytes(bytes) => write!(f, "Bytes(<{} bytes>)", bytes.len()),
        }
    }
}

/// The certificate chain, key and protocols a TLS simulator serves with.
#[derive(Clone, Debug)]
pub(crate) struct TlsSettings {
    pub(crate) cert: PemSource,
    pub(crate) key: PemSource,
    pub(crate) alpn: Vec<Alpn>,
}

impl TlsSettings {
    /// The rustls server configuration, or an `InvalidInput` error naming
    /// the file (or the bytes) that cannot be used and why.
    pub(crate) fn server_config(&self) -> io::Result<ServerConfig> {
        let certs = match &self.cert {
            PemSource::File(path) => CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>()),
            PemSource::Bytes(bytes) => {
                CertificateDer::pem_slice_iter(bytes).collect::<Result<Vec<_>, _>>()
            }
        }
        .map_err(|e| pem_error(&self.cert, "certificate", e))?;
        if certs.is_empty() {
            return Err(pem_error(
                &self.cert,
                "certificate",
                pem::Error::NoItemsFound,
            ));
        }
        let key = match &self.key {
            PemSource::File(path) => PrivateKeyDer::from_pem_file(path),
            PemSource::Bytes(bytes) => PrivateKeyDer::from_pem_slice(bytes),
        }
        .map_err(|e| pem_error(&self.key, "private key", e))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        // Seed aws-lc's random generator now (tens of milliseconds, once
        // per process) rather than in the first handshake, which a harness
        // would otherwise time as the first request's latency.
        let _ = provider.secure_random.fill(&mut [0; 32]);
        let invalid = |e: rustls::Error| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the TLS certificate and key do not work together: {e}"),
            )
        };
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(invalid)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(invalid)?;
        config.alpn_protocols = self
            .alpn
            .iter()
            .map(|p| p.id().as_bytes().to_vec())
            .collect();
        Ok(config)
    }
}

fn pem_error(source: &PemSource, what: &str, err: pem::Error) -> io::Error {
    let problem = match err {
        pem::Error::NoItemsFound => format!("no {what} in this PEM"),
        pem::Error::Io(e) => format!("cannot read the {what}: {e}"),
        other => format!("cannot read the {what}: {other}"),
    };
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{}: {problem}", source.describe()),
    )
}

/// How many connections a simulator has accepted since it started, and how
/// its TLS handshakes went: what a harness reads to see how many upstream
/// connections a client opened (each costs handshake round trips on a real
/// route). [`Sim::reset`](crate::Sim::reset) leaves these alone; take
/// differences.
///
/// Also served as JSON by `GET /_sim/connections`; that request's own
/// connection is counted before it is answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ConnectionStats {
    /// TCP connections accepted (plain or TLS, handshake done or not).
    pub accepted: u64,
    /// TLS handshakes that negotiated `h2`.
    pub tls_h2: u64,
    /// TLS handshakes that negotiated `http/1.1`.
    pub tls_http11: u64,
    /// TLS handshakes where the client offered no ALPN (served as HTTP/1.1).
    pub tls_no_alpn: u64,
    /// TLS handshakes that failed or timed out (the connection was closed).
    pub tls_failed: u64,
    /// HTTP/2 streams the server took up as requests, on all connections:
    /// counted when a stream's headers arrive, so this includes requests
    /// the client reset before their body arrived, which the request log
    /// leaves out (nobody is left to answer).
    pub h2_streams: u64,
}

/// The live counters behind [`ConnectionStats`].
#[derive(Debug, Default)]
pub(crate) struct ConnectionCounters {
    accepted: AtomicU64,
    tls_h2: AtomicU64,
    tls_http11: AtomicU64,
    tls_no_alpn: AtomicU64,
    tls_failed: AtomicU64,
    h2_streams: AtomicU64,
}

/// How a TLS handshake ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Handshake {
    Negotiated(Option<Alpn>),
    Failed,
}

impl ConnectionCounters {
    pub(crate) fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn h2_stream(&self) {
        self.h2_streams.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn handshake(&self, outcome: Handshake) {
        let counter = match outcome {
            Handshake::Negotiated(Some(Alpn::H2)) => &self.tls_h2,
            Handshake::Negotiated(Some(Alpn::Http11)) => &self.tls_http11,
            Handshake::Negotiated(None) => &self.tls_no_alpn,
            Handshake::Failed => &self.tls_failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> ConnectionStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ConnectionStats {
            accepted: get(&self.accepted),
            tls_h2: get(&self.tls_h2),
            tls_http11: get(&self.tls_http11),
            tls_no_alpn: get(&self.tls_no_alpn),
            tls_failed: get(&self.tls_failed),
            h2_streams: get(&self.h2_streams),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_ids_round_trip() {
        for p in Alpn::DEFAULT {
            assert_eq!(Alpn::parse(p.id()), Some(p));
        }
        assert_eq!(Alpn::parse("h3"), None);
        assert_eq!(Alpn::H2.to_string(), "h2");
    }

    #[test]
    fn unusable_pem_names_its_source() {
        let missing = TlsSettings {
            cert: PemSource::File("/nonexistent/cert.pem".into()),
            key: PemSource::Bytes(Vec::new()),
            alpn: Alpn::DEFAULT.to_vec(),
        };
        let err = missing.server_config().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let text = err.to_string();
        assert!(
            text.contains("/nonexistent/cert.pem") && text.contains("cannot read the certificate"),
            "{text}"
        );

        let not_pem = TlsSettings {
            cert: PemSource::Bytes(b"not a certificate\n".to_vec()),
            ..missing
        };
        let text = not_pem.server_config().unwrap_err().to_string();
        assert!(text.contains("no certificate in this PEM"), "{text}");
    }

    #[test]
    fn key_bytes_never_reach_debug() {
        let source = PemSource::Bytes(b"-----BEGIN PRIVATE KEY-----secret".to_vec());
        let shown = format!("{source:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn counters_sort_handshakes_by_protocol() {
        let c = ConnectionCounters::default();
        c.accepted();
        c.accepted();
        c.handshake(Handshake::Negotiated(Some(Alpn::H2)));
        c.handshake(Handshake::Failed);
        c.h2_stream();
        let s = c.snapshot();
        assert_eq!(
            (
                s.accepted,
                s.tls_h2,
                s.tls_http11,
                s.tls_failed,
                s.h2_streams
            ),
            (2, 1, 0, 1, 1)
        );
    }
}
