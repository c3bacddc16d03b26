//! The `tls` workload: does HTTP/2 to an upstream help the real routes?
//!
//! The gateway's transport could offer `h2` and `http/1.1` by ALPN to every
//! `https://` upstream; which one is better was never measured, because the
//! simulator had no TLS. (Since then HTTP/1.1 is the default and HTTP/2 is
//! `--upstream-http2 on`, which the gateways here run with: see the
//! transport's docs for the stream-limit wait that decided it.) This run
//! generates a throwaway CA and a leaf for `localhost` / `127.0.0.1`
//! (rcgen, into a temp dir, removed afterwards),
//! starts two TLS simulators, one offering only `http/1.1` and one only `h2`,
//! and in front of each a default gateway whose upstream is
//! `https://localhost:PORT`. The gateways trust the CA through
//! `SSL_CERT_FILE`: the transport verifies with rustls-platform-verifier,
//! which on Linux takes its roots from rustls-native-certs, which reads that
//! file instead of the system store when it is set. The plain-HTTP default
//! gateway and the bare passthrough run as references.
//!
//! Measured, in rounds that visit every target in a rotated order: small
//! requests at saturation and at a fixed rate, streaming answers' TTFB at a
//! fixed rate, and the first request through a freshly started gateway (its
//! upstream connection and TLS handshake included), next to the second one.
//!
//! # Why count connections
//!
//! Loopback has no round-trip time, so a handshake costs only CPU here. On a
//! real route every new upstream connection costs a TCP and a TLS round trip
//! (two or three RTTs: tens of milliseconds to a far region) before its first
//! request. So next to the timings the run reports how many upstream
//! connections each gateway opened, from the simulators' own counts
//! (`GET /_sim/connections`: completed handshakes by negotiated protocol):
//! that, times the route's RTT, is what HTTP/1.1 pays and HTTP/2 does not.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::time::Instant;

use crate::Args;
use crate::client::{self, BoxError, Connection, Paced, RequestSpec, Saturation};
use crate::procs::{self, Binaries, Server};
use crate::report::{Table, micros, quantile};
use crate::workload::Workload;

/// A CA and a leaf for `localhost` and `127.0.0.1`, as PEM files in a
/// directory of their own, removed on drop.
#[derive(Debug)]
pub(crate) struct Pki {
    dir: PathBuf,
    ca: CertificateDer<'static>,
}

impl Pki {
    /// Generates the CA and the leaf it signs into a fresh temp directory.
    pub(crate) fn generate() -> Result<Self, BoxError> {
        let dir =
            std::env::temp_dir().join(format!("claude-tower-load-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let pki = Self::write_into(&dir);
        if pki.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        pki
    }

    fn write_into(dir: &Path) -> Result<Self, BoxError> {
        let ca_key = rcgen::KeyPair::generate()?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "claude-tower load harness CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = rcgen::Issuer::new(ca_params, ca_key);

        let leaf_key = rcgen::KeyPair::generate()?;
        let mut leaf_params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        leaf_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        leaf_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = leaf_params.signed_by(&leaf_key, &issuer)?;

        std::fs::write(dir.join("ca.pem"), ca_cert.pem())?;
        std::fs::write(dir.join("cert.pem"), leaf.pem())?;
        std::fs::write(dir.join("key.pem"), leaf_key.serialize_pem())?;
        Ok(Self {
            dir: dir.to_owned(),
            ca: ca_cert.der().clone(),
        })
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A client configuration that trusts this CA only and offers no ALPN
    /// (the simulators count such connections apart from the gateways').
    fn client_config(&self) -> Result<rustls::ClientConfig, BoxError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone())?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth())
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How a target reaches its simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upstream {
    /// The plain-HTTP simulator (shared by the references).
    Plain(SocketAddr),
    /// A TLS simulator offering one protocol: `h2`, or `http/1.1`.
    Tls { addr: SocketAddr, h2: bool },
}

/// A simulator's cumulative connection counts.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    accepted: u64,
    h2: u64,
    http11: u64,
}

/// Upstream connections opened between two snapshots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Opened {
    total: u64,
    h2: u64,
    http11: u64,
}

impl Opened {
    fn add(&mut self, other: Opened) {
        self.total += other.total;
        self.h2 += other.h2;
        self.http11 += other.http11;
    }

    /// `12`, or `12 (h2)` / `12 (http/1.1)` when TLS negotiated them.
    fn describe(self) -> String {
        match (self.h2, self.http11) {
            (0, 0) => self.total.to_string(),
            (h2, 0) => format!("{h2} (h2)"),
            (0, h1) => format!("{h1} (http/1.1)"),
            (h2, h1) => format!("{} ({h2} h2, {h1} http/1.1)", h2 + h1),
        }
    }
}

impl Upstream {
    async fn counts(self, pki: &Pki) -> Result<Counts, BoxError> {
        let bytes = match self {
            Upstream::Plain(addr) => {
                procs::control(addr, Method::GET, "/_sim/connections", "").await?
            }
            Upstream::Tls { addr, .. } => tls_get(addr, pki, "/_sim/connections").await?,
        };
        let v: Value = serde_json::from_slice(&bytes)?;
        let field = |name: &str| {
            v[name]
                .as_u64()
                .ok_or_else(|| format!("/_sim/connections has no `{name}`: {v}"))
        };
        Ok(Counts {
            accepted: field("accepted")?,
            h2: field("tls_h2")?,
            http11: field("tls_http11")?,
        })
    }

    /// Runs `segment`; its result, and what this upstream opened while it
    /// ran (its counts read before and after).
    async fn opened_during<T, E: Into<BoxError>>(
        self,
        pki: &Pki,
        segment: impl Future<Output = Result<T, E>>,
    ) -> Result<(T, Opened), BoxError> {
        let before = self.counts(pki).await?;
        let out = segment.await.map_err(Into::into)?;
        let after = self.counts(pki).await?;
        Ok((out, self.opened(before, after)))
    }

    /// What was opened between `before` and `after`. A plain simulator
    /// counts every accepted connection, the `after` snapshot's own
    /// included; a TLS one, the completed handshakes by protocol (the
    /// snapshots offer no ALPN, so they are not among them).
    fn opened(self, before: Counts, after: Counts) -> Opened {
        match self {
            Upstream::Plain(_) => Opened {
                total: after
                    .accepted
                    .saturating_sub(before.accepted)
                    .saturating_sub(1),
                ..Opened::default()
            },
            Upstream::Tls { .. } => {
                let h2 = after.h2.saturating_sub(before.h2);
                let http11 = after.http11.saturating_sub(before.http11);
                Opened {
                    total: h2 + http11,
                    h2,
                    http11,
                }
            }
        }
    }
}

/// One `GET` over TLS (no ALPN, HTTP/1.1) to a TLS simulator's control endpoint.
async fn tls_get(addr: SocketAddr, pki: &Pki, path: &str) -> Result<Bytes, BoxError> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(pki.client_config()?));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let tls = connector
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::get(path)
        .header(http::header::HOST, "localhost")
        .body(Full::new(Bytes::new()))?;
    let res = sender.send_request(req).await?;
    let status = res.status();
    let body = res.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        return Err(format!("{path}: {status}: {}", String::from_utf8_lossy(&body)).into());
    }
    Ok(body)
}

/// One row of the tables: a server the client talks to, and its upstream.
#[derive(Debug)]
struct Target {
    name: &'static str,
    upstream: Upstream,
    /// `None` for the passthrough; for a gateway, the upstream base URL to
    /// start fresh ones with.
    gateway_upstream: Option<String>,
    server: Server,
}

/// Everything the run measured, per target in [`TlsRun::names`] order.
#[derive(Debug)]
pub(crate) struct TlsRun {
    names: Vec<&'static str>,
    saturation: Vec<Saturation>,
    per_round: Vec<Vec<f64>>,
    small: Vec<Paced>,
    stream: Vec<Paced>,
    /// Upstream connections opened by the check's first request, the closed
    /// loop, the small open loop and the streaming open loop.
    opened: Vec<[Opened; 4]>,
    /// Per gateway target (`None` for the passthrough): the first and the
    /// second request through each fresh gateway, and what it opened.
    fresh: Vec<Option<Fresh>>,
}

/// The first requests through freshly started gateways of one target.
#[derive(Debug, Default)]
struct Fresh {
    first: Vec<Duration>,
    second: Vec<Duration>,
    opened: Vec<Opened>,
}

/// Runs the `tls` workload against the plain simulator at `sim` and the
/// TLS ones it starts.
pub(crate) async fn run(bins: &Binaries, sim: SocketAddr, args: &Args) -> Result<TlsRun, BoxError> {
    let pki = Pki::generate()?;
    let (cert, key, ca) = (
        pki.file("cert.pem"),
        pki.file("key.pem"),
        pki.file("ca.pem"),
    );
    let sim_h1 = procs::simulator_tls(bins, &cert, &key, "http/1.1")?;
    let sim_h2 = procs::simulator_tls(bins, &cert, &key, "h2")?;
    let url = |s: &Server| format!("https://localhost:{}", s.addr().port());
    let (url_h1, url_h2) = (url(&sim_h1), url(&sim_h2));
    let targets = vec![
        Target {
            name: "(b) passthrough, http upstream",
            upstream: Upstream::Plain(sim),
            gateway_upstream: None,
            server: procs::passthrough(bins, sim)?,
        },
        Target {
            name: "(c) gateway, http upstream",
            upstream: Upstream::Plain(sim),
            gateway_upstream: Some(format!("http://{sim}")),
            server: procs::gateway(bins, sim, false)?,
        },
        Target {
            name: "(t1) gateway, https upstream, HTTP/1.1",
            upstream: Upstream::Tls {
                addr: sim_h1.addr(),
                h2: false,
            },
            gateway_upstream: Some(url_h1.clone()),
            server: procs::gateway_tls_upstream(bins, &url_h1, &ca)?,
        },
        Target {
            name: "(t2) gateway, https upstream, HTTP/2",
            upstream: Upstream::Tls {
                addr: sim_h2.addr(),
                h2: true,
            },
            gateway_upstream: Some(url_h2.clone()),
            server: procs::gateway_tls_upstream(bins, &url_h2, &ca)?,
        },
    ];
    println!(
        "- TLS simulators: {url_h1} (offers http/1.1 only), {url_h2} (offers h2 only); \
         CA and leaf generated in {}; the gateways trust the CA by SSL_CERT_FILE",
        pki.dir.display()
    );
    println!();
    let first_opened = check(&targets, &pki).await?;

    let n = targets.len();
    let small: Vec<_> = targets
        .iter()
        .map(|t| RequestSpec::new(t.server.addr(), Workload::Small))
        .collect();
    let stream: Vec<_> = targets
        .iter()
        .map(|t| RequestSpec::new(t.server.addr(), Workload::Stream))
        .collect();
    let mut out = TlsRun {
        names: targets.iter().map(|t| t.name).collect(),
        saturation: (0..n).map(|_| Saturation::empty()).collect(),
        per_round: vec![Vec::new(); n],
        small: (0..n).map(|_| Paced::empty()).collect(),
        stream: (0..n).map(|_| Paced::empty()).collect(),
        opened: first_opened
            .into_iter()
            .map(|first| {
                [
                    first,
                    Opened::default(),
                    Opened::default(),
                    Opened::default(),
                ]
            })
            .collect(),
        fresh: targets
            .iter()
            .map(|t| t.gateway_upstream.as_ref().map(|_| Fresh::default()))
            .collect(),
    };
    for round in 0..args.rounds {
        let order: Vec<usize> = (0..n).map(|k| (k + round) % n).collect();
        for &t in &order {
            let closed = async {
                Ok::<_, BoxError>(
                    client::closed_loop(
                        small[t].clone(),
                        args.connections,
                        args.closed_warm_up,
                        args.closed_measure,
                    )
                    .await,
                )
            };
            let (s, opened) = targets[t].upstream.opened_during(&pki, closed).await?;
            out.opened[t][1].add(opened);
            out.per_round[t].push(s.per_second());
            out.saturation[t].merge(s);
        }
        for &t in &order {
            let open = client::open_loop(
                small[t].clone(),
                args.rate_small,
                args.open_connections,
                args.open_warm_up,
                args.open_measure,
            );
            let (p, opened) = targets[t].upstream.opened_during(&pki, open).await?;
            out.opened[t][2].add(opened);
            out.small[t].merge(&p);
        }
        for &t in &order {
            let open = client::open_loop(
                stream[t].clone(),
                args.rate_stream,
                args.open_connections,
                args.open_warm_up,
                args.open_measure,
            );
            let (p, opened) = targets[t].upstream.opened_during(&pki, open).await?;
            out.opened[t][3].add(opened);
            out.stream[t].merge(&p);
        }
        for &t in &order {
            let Some(base) = targets[t].gateway_upstream.clone() else {
                continue;
            };
            for _ in 0..args.tls_fresh_gateways {
                let sample = first_requests(bins, &targets[t], &base, &ca, &pki).await?;
                if let Some(fresh) = out.fresh[t].as_mut() {
                    fresh.first.push(sample.0);
                    fresh.second.push(sample.1);
                    fresh.opened.push(sample.2);
                }
            }
        }
    }
    Ok(out)
}

/// One request through every target must succeed, and each TLS simulator
/// must have negotiated the protocol it offers, before anything is timed.
/// Returns what each target opened upstream for that first request.
async fn check(targets: &[Target], pki: &Pki) -> Result<Vec<Opened>, BoxError> {
    let mut out = Vec::with_capacity(targets.len());
    for t in targets {
        let spec = RequestSpec::new(t.server.addr(), Workload::Small);
        let exchange = async {
            Connection::new(t.server.addr())
                .exchange(&spec)
                .await
                .map_err(|e| BoxError::from(format!("{}: {e}", t.name)))
        };
        let (x, opened) = t.upstream.opened_during(pki, exchange).await?;
        if !x.status.is_success() {
            let hint = match t.upstream {
                Upstream::Tls { .. } => {
                    " (a 502 `connect failed` here usually means the gateway does not \
                     trust the test CA: it is given by SSL_CERT_FILE, which \
                     rustls-platform-verifier reads through rustls-native-certs on Linux; \
                     the verifier's own error is in the gateway's log on stderr above)"
                }
                Upstream::Plain(_) => "",
            };
            return Err(format!("{}: status {}{hint}", t.name, x.status).into());
        }
        let as_offered = match t.upstream {
            Upstream::Tls { h2: true, .. } => opened.h2 > 0 && opened.http11 == 0,
            Upstream::Tls { h2: false, .. } => opened.http11 > 0 && opened.h2 == 0,
            Upstream::Plain(_) => true,
        };
        if !as_offered {
            return Err(format!(
                "{}: the upstream connection negotiated {}, not what its simulator offers",
                t.name,
                opened.describe()
            )
            .into());
        }
        out.push(opened);
    }
    Ok(out)
}

/// Starts a gateway like `target`'s (a fresh process: no pooled upstream
/// connection, nothing warmed up) next to it, and times its first and second
/// request on one client connection; also what it opened upstream for them.
/// The fresh gateway is stopped afterwards; the target's own one stays.
async fn first_requests(
    bins: &Binaries,
    target: &Target,
    base: &str,
    ca: &Path,
    pki: &Pki,
) -> Result<(Duration, Duration, Opened), BoxError> {
    let requests = async {
        let fresh = match target.upstream {
            Upstream::Plain(sim) => procs::gateway(bins, sim, false)?,
            Upstream::Tls { .. } => procs::gateway_tls_upstream(bins, base, ca)?,
        };
        let spec = RequestSpec::new(fresh.addr(), Workload::Small);
        let mut conn = Connection::new(fresh.addr());
        let first = timed(&mut conn, &spec, target.name).await?;
        let second = timed(&mut conn, &spec, target.name).await?;
        // The fresh gateway lives until the counts after are read.
        Ok::<_, BoxError>((first, second, fresh))
    };
    let ((first, second, fresh), opened) = target.upstream.opened_during(pki, requests).await?;
    drop(fresh);
    Ok((first, second, opened))
}

/// One request on `conn`, timed from before its connect (if it has to
/// open one) to the end of the answer.
async fn timed(
    conn: &mut Connection,
    spec: &RequestSpec,
    name: &str,
) -> Result<Duration, BoxError> {
    let start = Instant::now();
    let x = conn.exchange(spec).await?;
    if !x.status.is_success() {
        return Err(io::Error::other(format!("{name}: status {}", x.status)).into());
    }
    Ok(x.done - start)
}

/// Prints the run's tables.
pub(crate) fn print(r: &TlsRun, args: &Args) {
    println!("## Workload: tls (upstream HTTP/1.1 vs HTTP/2 over TLS)");
    println!();
    println!(
        "Upstream connections each target opened (completed TLS handshakes by protocol, \
         or accepted plain connections), in the order the run went; pooled connections \
         carry over from one segment and round to the next:"
    );
    println!();
    let mut t = Table::new(&[
        "target",
        "first request",
        "small, closed loop",
        "small, open loop",
        "stream, open loop",
        "whole run",
    ]);
    for (i, opened) in r.opened.iter().enumerate() {
        let mut total = Opened::default();
        for o in opened {
            total.add(*o);
        }
        let mut row = vec![r.names[i].to_owned()];
        row.extend(opened.iter().map(|o| o.describe()));
        row.push(total.describe());
        t.row(row);
    }
    t.print();

    println!(
        "Small requests at saturation (closed loop, {} connections, {} x {:?}):",
        args.connections, args.rounds, args.closed_measure
    );
    println!();
    let c = 1;
    let mut t = Table::new(&["target", "req/s", "errors", "vs (c), median of rounds"]);
    for (i, s) in r.saturation.iter().enumerate() {
        t.row(vec![
            r.names[i].to_owned(),
            format!("{:.0}", s.per_second()),
            s.errors.to_string(),
            format!(
                "{:.2}",
                crate::report::median_of_ratios(&r.per_round[i], &r.per_round[c])
            ),
        ]);
    }
    t.print();

    println!(
        "Latency at {:.0} req/s offered, small (open loop, {} connections, {} x {:?}; \
         microseconds from due time):",
        args.rate_small, args.open_connections, args.rounds, args.open_measure
    );
    println!();
    let mut t = Table::new(&["target", "p50", "p99", "p99.9", "max", "errors"]);
    for (i, p) in r.small.iter().enumerate() {
        t.row(vec![
            r.names[i].to_owned(),
            micros(quantile(&p.latency, 0.5)),
            micros(quantile(&p.latency, 0.99)),
            micros(quantile(&p.latency, 0.999)),
            micros(p.latency.max()),
            p.errors.to_string(),
        ]);
    }
    t.print();

    println!(
        "Streaming answers of {} KiB at {:.0} req/s offered (open loop, {} connections, {} x {:?}):",
        crate::workload::STREAM_BYTES >> 10,
        args.rate_stream,
        args.open_connections,
        args.rounds,
        args.open_measure
    );
    println!();
    let mut t = Table::new(&[
        "target",
        "TTFB p50",
        "TTFB p99",
        "total p50",
        "total p99",
        "errors",
    ]);
    for (i, p) in r.stream.iter().enumerate() {
        t.row(vec![
            r.names[i].to_owned(),
            micros(quantile(&p.ttfb, 0.5)),
            micros(quantile(&p.ttfb, 0.99)),
            micros(quantile(&p.latency, 0.5)),
            micros(quantile(&p.latency, 0.99)),
            p.errors.to_string(),
        ]);
    }
    t.print();

    println!(
        "First request through a freshly started gateway ({} starts per target per round; \
         client connect to the gateway, the gateway's upstream connect and TLS handshake, \
         the answer), and the second request on the same connections:",
        args.tls_fresh_gateways
    );
    println!();
    let mut t = Table::new(&[
        "target",
        "first p50",
        "first max",
        "second p50",
        "first - second, p50",
        "upstream connections per fresh gateway",
    ]);
    for (i, fresh) in r.fresh.iter().enumerate() {
        let Some(f) = fresh else { continue };
        let (first, second) = (median(&f.first), median(&f.second));
        let max = f.first.iter().max().copied().unwrap_or_default();
        let mut per: Vec<String> = f.opened.iter().map(|o| o.describe()).collect();
        per.sort();
        per.dedup();
        t.row(vec![
            r.names[i].to_owned(),
            micros(as_micros(first)),
            micros(as_micros(max)),
            micros(as_micros(second)),
            crate::report::delta(as_micros(first) as i64 - as_micros(second) as i64),
            per.join(" / "),
        ]);
    }
    t.print();
}

fn as_micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    match sorted.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use rustls::client::danger::ServerCertVerifier;
    use rustls_pki_types::pem::PemObject;

    #[test]
    fn the_generated_leaf_verifies_against_the_ca_for_localhost_and_the_ip() {
        let pki = Pki::generate().expect("generates");
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(pki.file("cert.pem"))
                .expect("reads")
                .collect::<Result<_, _>>()
                .expect("parses");
        let roots = {
            let mut r = rustls::RootCertStore::empty();
            r.add(pki.ca.clone()).expect("adds");
            Arc::new(r)
        };
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots,
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .build()
        .expect("a verifier");
        for name in ["localhost", "127.0.0.1"] {
            let name = ServerName::try_from(name).expect("a name");
            webpki
                .verify_server_cert(
                    &chain[0],
                    &[],
                    &name,
                    &[],
                    rustls_pki_types::UnixTime::now(),
                )
                .expect("the leaf verifies");
        }
        let dir = pki.dir.clone();
        drop(pki);
        assert!(!dir.exists(), "the temp dir goes with the Pki");
    }

    #[test]
    fn opened_connections_are_told_apart_by_protocol() {
        let plain = Upstream::Plain(([127, 0, 0, 1], 1).into());
        let before = Counts {
            accepted: 10,
            ..Counts::default()
        };
        let after = Counts {
            accepted: 14,
            ..Counts::default()
        };
        assert_eq!(
            plain.opened(before, after).total,
            3,
            "minus the snapshot's own"
        );

        let tls = Upstream::Tls {
            addr: ([127, 0, 0, 1], 1).into(),
            h2: true,
        };
        let after = Counts {
            accepted: 40,
            h2: 1,
            http11: 0,
        };
        let opened = tls.opened(Counts::default(), after);
        assert_eq!(opened.describe(), "1 (h2)");
    }
}
