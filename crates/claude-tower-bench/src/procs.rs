//! The servers under test, each its own process: the simulator binary, the
//! gateway binary and the passthrough proxy (this binary, re-run as
//! `load passthrough`). Each one is killed (by its own pid) when its handle
//! drops.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use crate::client::BoxError;
use crate::variants::Variant;

/// Where the three server binaries are.
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    pub(crate) sim: PathBuf,
    pub(crate) gateway: PathBuf,
    pub(crate) this: PathBuf,
}

impl Binaries {
    /// Finds the simulator and gateway next to this binary (same target
    /// directory and profile), building them first with `cargo` when `build`.
    pub(crate) fn locate(build: bool) -> io::Result<Self> {
        let this = std::env::current_exe()?;
        let dir = this
            .parent()
            .ok_or_else(|| io::Error::other("this binary has no directory"))?
            .to_path_buf();
        if build {
            let release = dir.file_name().is_some_and(|n| n == "release");
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "--quiet"]);
            if release {
                cmd.arg("--release");
            }
            cmd.args([
                "-p",
                "claude-tower-sim",
                "--bin",
                "claude-tower-sim",
                "-p",
                "claude-tower-gateway",
                "--bin",
                "claude-tower-gateway",
            ]);
            eprintln!("building the simulator and the gateway: {cmd:?}");
            let status = cmd.status()?;
            if !status.success() {
                return Err(io::Error::other(format!("{cmd:?} failed: {status}")));
            }
        }
        let found = Self {
            sim: dir.join("claude-tower-sim"),
            gateway: dir.join("claude-tower-gateway"),
            this,
        };
        for path in [&found.sim, &found.gateway] {
            if !path.is_file() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{} is missing (run without --no-build)", path.display()),
                ));
            }
        }
        Ok(found)
    }
}

/// A loopback address nobody listens on right now.
pub(crate) fn free_addr() -> io::Result<SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// A server process, killed when dropped.
#[derive(Debug)]
pub(crate) struct Server {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn spawn(name: &'static str, mut cmd: Command, addr: SocketAddr) -> io::Result<Self> {
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        let child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start {name} ({cmd:?}): {e}")))?;
        let mut server = Self { name, child, addr };
        server.wait_listening()?;
        Ok(server)
    }

    fn wait_listening(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "{} exited before listening: {status}",
                    self.name
                )));
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{} is not listening on {}", self.name, self.addr),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the simulator binary with no faults.
pub(crate) fn simulator(bins: &Binaries) -> io::Result<Server> {
    let addr = free_addr()?;
    let mut cmd = Command::new(&bins.sim);
    cmd.env_clear()
        .args(["--listen", &addr.to_string()])
        // Enough for a fault run to be counted from the log; the throughput
        // runs overflow it, which costs the same for every target.
        .args(["--log-capacity", "50000"]);
    Server::spawn("simulator", cmd, addr)
}

/// Starts the gateway binary in front of the simulator: Anthropic direct,
/// then (when `foundry`) Azure AI Foundry, both on the simulator; every other
/// setting is the default.
pub(crate) fn gateway(bins: &Binaries, sim: SocketAddr, foundry: bool) -> io::Result<Server> {
    gateway_command(
        Command::new(&bins.gateway),
        &format!("http://{sim}"),
        foundry,
        Variant::Default,
        None,
        None,
    )
}

/// The default gateway, Anthropic direct only, in front of a TLS simulator
/// at `upstream` (`https://localhost:PORT`), trusting the CA certificates in
/// `ca_file` and no others: `SSL_CERT_FILE` is read by rustls-native-certs,
/// which the transport's rustls-platform-verifier loads its roots from on
/// Linux (and, when it is set, in place of the system's). It offers `h2`
/// and `http/1.1` (`CLAUDE_TOWER_UPSTREAM_HTTP2=on`): the simulator's offer
/// decides.
pub(crate) fn gateway_tls_upstream(
    bins: &Binaries,
    upstream: &str,
    ca_file: &Path,
) -> io::Result<Server> {
    gateway_command(
        Command::new(&bins.gateway),
        upstream,
        false,
        Variant::Default,
        None,
        Some(ca_file),
    )
}

/// [`gateway`] in one of the [`Variant`] configurations (`redis`: the URL
/// the `redis` one keeps its limits in).
pub(crate) fn gateway_variant(
    bins: &Binaries,
    sim: SocketAddr,
    variant: Variant,
    redis: Option<&str>,
) -> io::Result<Server> {
    gateway_command(
        Command::new(&bins.gateway),
        &format!("http://{sim}"),
        true,
        variant,
        redis,
        None,
    )
}

/// [`gateway`], but the diagnostic `load gateway-nodelay` (see `nodelay.rs`).
pub(crate) fn gateway_nodelay(bins: &Binaries, sim: SocketAddr) -> io::Result<Server> {
    let mut cmd = Command::new(&bins.this);
    cmd.arg("gateway-nodelay");
    gateway_command(
        cmd,
        &format!("http://{sim}"),
        true,
        Variant::Default,
        None,
        None,
    )
}

/// Runs `cmd` as a gateway on a free port in front of the simulator at
/// `upstream` (a base URL): a cleared environment, the routes' variables,
/// `SSL_CERT_FILE` when `ca_file` is given, then `variant`'s.
fn gateway_command(
    mut cmd: Command,
    upstream: &str,
    foundry: bool,
    variant: Variant,
    redis: Option<&str>,
    ca_file: Option<&Path>,
) -> io::Result<Server> {
    let addr = free_addr()?;
    cmd.env_clear()
        .env("RUST_LOG", "warn")
        .env("CLAUDE_TOWER_LISTEN", addr.to_string())
        .env("ANTHROPIC_API_KEY", "sim-anthropic-key")
        .env("ANTHROPIC_BASE_URL", upstream);
    if foundry {
        cmd.env(
            "ANTHROPIC_FOUNDRY_BASE_URL",
            format!("{upstream}/anthropic"),
        )
        .env("ANTHROPIC_FOUNDRY_API_KEY", "sim-foundry-key");
    }
    if let Some(ca_file) = ca_file {
        // Both protocols offered; the simulator in front picks by offering one.
        cmd.env("SSL_CERT_FILE", ca_file)
            .env("CLAUDE_TOWER_UPSTREAM_HTTP2", "on");
    }
    variant.configure(&mut cmd, redis);
    Server::spawn("gateway", cmd, addr)
}

/// Starts the simulator binary serving HTTPS with `cert` and `key` (PEM
/// files), offering only the ALPN protocol `alpn` (`h2` or `http/1.1`).
pub(crate) fn simulator_tls(
    bins: &Binaries,
    cert: &Path,
    key: &Path,
    alpn: &str,
) -> io::Result<Server> {
    let addr = free_addr()?;
    let mut cmd = Command::new(&bins.sim);
    cmd.env_clear()
        .args(["--listen", &addr.to_string()])
        .args(["--log-capacity", "50000"])
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .args(["--alpn", alpn]);
    // NOTE: the readiness probe is a bare TCP connect, which the simulator
    // counts as a failed handshake; upstream connections are counted from
    // completed handshakes only.
    Server::spawn("TLS simulator", cmd, addr)
}

/// Starts this binary as the passthrough proxy in front of `upstream`.
pub(crate) fn passthrough(bins: &Binaries, upstream: SocketAddr) -> io::Result<Server> {
    let addr = free_addr()?;
    let mut cmd = Command::new(&bins.this);
    cmd.env_clear().args([
        "passthrough",
        "--listen",
        &addr.to_string(),
        "--upstream",
        &upstream.to_string(),
    ]);
    Server::spawn("passthrough", cmd, addr)
}

/// `VmRSS` and `VmHWM` (peak RSS) of a process, in KiB.
pub(crate) fn memory_kib(pid: u32) -> io::Result<(u64, u64)> {
    let status = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .ok_or_else(|| io::Error::other(format!("no {name} in /proc/{pid}/status")))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// One small request to a control endpoint (the simulator's `/_sim/...`,
/// the gateway's `/healthz`); the body of a 2xx answer.
pub(crate) async fn control(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: &str,
) -> Result<Bytes, BoxError> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, addr.to_string())
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))?;
    let res = sender.send_request(req).await?;
    let status = res.status();
    let bytes = res.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        return Err(format!("{path}: {status}: {}", String::from_utf8_lossy(&bytes)).into());
    }
    Ok(bytes)
}

/// How many requests each face of the simulator logged since the last reset.
pub(crate) async fn logged_per_route(sim: SocketAddr) -> Result<(u64, u64), BoxError> {
    let bytes = control(sim, Method::GET, "/_sim/requests", "").await?;
    let records: Vec<serde_json::Value> = serde_json::from_slice(&bytes)?;
    let count = |route: &str| records.iter().filter(|r| r["route"] == route).count() as u64;
    Ok((count("anthropic"), count("foundry")))
}
