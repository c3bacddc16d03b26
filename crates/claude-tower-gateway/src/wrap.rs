//! `claude-tower-gateway wrap [OPTIONS] -- COMMAND [ARGS...]`: Claude Code
//! (or any program that reads Claude Code's variables) through a gateway of
//! its own, for as long as it runs.
//!
//! ```sh
//! claude-tower-gateway wrap -- claude
//! ```
//!
//! The gateway starts in-process on `127.0.0.1:<a free port>`, reading its
//! routes from the same variables Claude Code would have used, so an existing
//! setup works unchanged; COMMAND then runs with its environment pointed at
//! the gateway:
//!
//! | the user's environment | COMMAND gets | COMMAND loses |
//! |---|---|---|
//! | `CLAUDE_CODE_USE_FOUNDRY=1` | `ANTHROPIC_FOUNDRY_BASE_URL=http://127.0.0.1:PORT/anthropic` (`CLAUDE_CODE_USE_FOUNDRY` kept) | `ANTHROPIC_FOUNDRY_RESOURCE` (Claude Code takes a resource xor a base URL) |
//! | … with `ANTHROPIC_FOUNDRY_API_KEY` (the gateway signs) | `CLAUDE_CODE_SKIP_FOUNDRY_AUTH=1`, `ANTHROPIC_FOUNDRY_API_KEY=claude-tower-wrap` (a placeholder the gateway drops; see below) | the key itself |
//! | … with no Foundry key (Claude Code gets its own Entra token) | — : the `foundry` route is passthrough, the gateway forwards the token | — |
//! | otherwise (Anthropic mode) | `ANTHROPIC_BASE_URL=http://127.0.0.1:PORT`, `ANTHROPIC_AUTH_TOKEN=claude-tower-wrap` (a placeholder, so Claude Code neither asks to log in nor to approve a key; the gateway drops it) | `ANTHROPIC_API_KEY` (the gateway signs) |
//!
//! In both modes an `ANTHROPIC_API_KEY` makes the Anthropic route as well; in
//! Foundry mode it comes after `foundry`, as its failover (unless `--routes`
//! says otherwise); every other upstream variable works as it does for
//! the gateway ([`upstream`](crate::upstream)). Whatever would send COMMAND
//! around the gateway (`ANTHROPIC_BASE_URL`, `ANTHROPIC_FOUNDRY_BASE_URL`,
//! `ANTHROPIC_FOUNDRY_RESOURCE`) is replaced or removed, and a key the
//! gateway holds is not handed to COMMAND. A route named in
//! `--passthrough` keeps its key with COMMAND instead, and the gateway does
//! not read it.
//!
//! Why a placeholder Foundry key beside `CLAUDE_CODE_SKIP_FOUNDRY_AUTH=1`:
//! Claude Code 2.1.197, given the switch and no key, hands the Foundry SDK a
//! token provider returning `""`, which the SDK refuses before sending
//! anything ("Expected azureADTokenProvider function argument to return a
//! string"). With a key set it sends the key and never asks for a token.
//!
//! Why passthrough by default for a keyless Foundry setup: the gateway
//! could fetch Entra tokens itself, but Claude Code already does, with the
//! user's own `az login`; forwarding its token means nothing changes about
//! who signs, and `wrap` adds retries and failover only. `--passthrough none`
//! makes the gateway sign with Entra ID itself (then COMMAND gets
//! `CLAUDE_CODE_SKIP_FOUNDRY_AUTH=1`).
//!
//! The gateway's log goes to a file in the temp directory, named once on
//! stderr, so a terminal UI stays clean. SIGINT, SIGTERM and SIGHUP go to
//! COMMAND; `wrap` exits with COMMAND's status (128 + N when it died by
//! signal N), 127 when COMMAND is not found, 126 when it cannot be run.
//! With nothing upstream configured it refuses to start rather than run
//! COMMAND on the simulator's fake answers (`--simulator` asks for them).

use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use claude_tower::prelude::Face;
use claude_tower::stack::Route;

use crate::config::{ConfigError, GatewayConfig};
use crate::file::FileConfig;
use crate::gateway::{Gateway, GatewayError, Mode};
use crate::routes::FOUNDRY;
use crate::settings::{Settings, switch};
use crate::upstream::SimulatorReason;

/// `wrap --help`'s closing text.
pub const WRAP_HELP: &str = "\
The gateway listens on 127.0.0.1 on a free port and reads its routes from the variables
Claude Code would have used (see `claude-tower-gateway --help`). COMMAND runs with:
  CLAUDE_CODE_USE_FOUNDRY=1 set:  ANTHROPIC_FOUNDRY_BASE_URL=http://127.0.0.1:PORT/anthropic,
      ANTHROPIC_FOUNDRY_RESOURCE removed; with ANTHROPIC_FOUNDRY_API_KEY the gateway signs
      (COMMAND gets CLAUDE_CODE_SKIP_FOUNDRY_AUTH=1 and a placeholder key, not the key);
      without one COMMAND
      signs with its own Entra ID token (az login) and the gateway forwards it
      (--passthrough none: the gateway signs with Entra ID itself)
  otherwise:  ANTHROPIC_BASE_URL=http://127.0.0.1:PORT, ANTHROPIC_AUTH_TOKEN=claude-tower-wrap
      (a placeholder), ANTHROPIC_API_KEY removed (the gateway signs with it)
ANTHROPIC_API_KEY also adds the Anthropic route, a failover for Foundry.
The gateway's log goes to a temp file named on stderr. Signals go to COMMAND; the exit
status is COMMAND's (128+N if killed by signal N; 127: not found; 126: cannot run).

Examples:
  claude-tower-gateway wrap -- claude
  claude-tower-gateway wrap --routes foundry -- claude -p \"hi\"";

/// The credential COMMAND gets when the gateway signs (`ANTHROPIC_AUTH_TOKEN`,
/// or `ANTHROPIC_FOUNDRY_API_KEY` in Foundry mode), so Claude Code neither
/// asks to log in nor fails for want of one; the gateway removes it.
pub const PLACEHOLDER_TOKEN: &str = "claude-tower-wrap";

/// The variables that would send COMMAND around the gateway.
const BYPASS: [&str; 4] = [
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_FOUNDRY_BASE_URL",
    "ANTHROPIC_FOUNDRY_RESOURCE",
    "CLAUDE_CODE_SKIP_FOUNDRY_AUTH",
];

/// Each face's credential variables, for the gateway or for COMMAND.
const ANTHROPIC_CREDENTIALS: [&str; 2] = ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"];
const FOUNDRY_CREDENTIALS: [&str; 2] =
    ["ANTHROPIC_FOUNDRY_API_KEY", "ANTHROPIC_FOUNDRY_AUTH_TOKEN"];

/// What `wrap` decided from the user's settings and environment, before
/// anything starts.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Claude Code would talk to Foundry (`CLAUDE_CODE_USE_FOUNDRY=1`).
    pub foundry_mode: bool,
    /// The gateway's settings: the user's, on `127.0.0.1:0`, with the
    /// passthrough default applied.
    pub settings: Settings,
    /// Credential variables the gateway must not read: COMMAND keeps them
    /// and sends them, the gateway forwards them.
    pub hidden: Vec<&'static str>,
}

/// The changes to COMMAND's environment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChildEnv {
    /// Variables removed.
    pub remove: Vec<&'static str>,
    /// Variables set.
    pub set: Vec<(&'static str, String)>,
}

impl Plan {
    /// Decides from the user's `settings`, config `file` and environment.
    pub fn new(
        settings: &Settings,
        file: &FileConfig,
        lookup: &impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let value = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let yes = |name: &str| -> Result<bool, ConfigError> {
            value(name).map_or(Ok(false), |v| {
                switch(&v).ok_or_else(|| {
                    ConfigError::new(
                        name,
                        format!("`{}` is neither 1/true nor 0/false", v.trim()),
                    )
                })
            })
        };
        let foundry_mode = yes("CLAUDE_CODE_USE_FOUNDRY")?;
        let mut settings = settings.clone();
        // NOTE: COMMAND reaches the gateway over loopback plain HTTP, with no
        // gateway key (Claude Code sends its own credential, or none).
        settings.listen = Some("127.0.0.1:0".to_owned());
        if settings.tls_cert.is_some()
            || settings.tls_key.is_some()
            || file.server.tls_cert.is_some()
        {
            return Err(ConfigError::new(
                "CLAUDE_TOWER_TLS_CERT",
                "wrap serves COMMAND over loopback HTTP; drop --tls-cert/--tls-key",
            ));
        }
        let keyless_entra = foundry_mode
            && value("ANTHROPIC_FOUNDRY_API_KEY").is_none()
            && !yes("CLAUDE_CODE_SKIP_FOUNDRY_AUTH")?;
        let simulator = settings.simulator.as_deref().and_then(switch) == Some(true);
        settings.passthrough = match settings.passthrough.take() {
            Some(names) => Some(names),
            None if keyless_entra && file.routes.is_empty() && !simulator => {
                Some(FOUNDRY.to_owned())
            }
            None => None,
        };
        let names: Vec<&str> = settings
            .passthrough
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .collect();
        let mut hidden = Vec::new();
        if names.contains(&"anthropic") {
            hidden.extend(ANTHROPIC_CREDENTIALS);
        }
        if names.contains(&FOUNDRY) {
            hidden.extend(FOUNDRY_CREDENTIALS);
        }
        if simulator {
            // Foundry mode on the simulator: COMMAND's switch is not an
            // upstream for the gateway (any other upstream variable still is).
            hidden.push("CLAUDE_CODE_USE_FOUNDRY");
        }
        Ok(Self {
            foundry_mode,
            settings,
            hidden,
        })
    }

    /// The environment as the gateway sees it: the user's, without the
    /// credentials COMMAND keeps for itself.
    pub fn gateway_lookup<'a>(
        &'a self,
        lookup: &'a impl Fn(&str) -> Option<String>,
    ) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            if self.hidden.contains(&name) {
                None
            } else {
                lookup(name)
            }
        }
    }

    /// COMMAND's environment changes, for a gateway at `addr` with `routes`.
    pub fn child_env(&self, addr: SocketAddr, routes: &[Route]) -> ChildEnv {
        let forwards = |face: Face| {
            routes
                .iter()
                .any(|r| r.face() == face && r.credential().is_passthrough())
        };
        let mut env = ChildEnv::default();
        env.remove.extend(BYPASS);
        for name in ANTHROPIC_CREDENTIALS.into_iter().chain(FOUNDRY_CREDENTIALS) {
            if !self.hidden.contains(&name) {
                env.remove.push(name);
            }
        }
        if self.foundry_mode {
            env.set.push((
                "ANTHROPIC_FOUNDRY_BASE_URL",
                format!("http://{addr}/anthropic"),
            ));
            if !forwards(Face::Foundry) {
                env.set
                    .push(("CLAUDE_CODE_SKIP_FOUNDRY_AUTH", "1".to_owned()));
                env.set
                    .push(("ANTHROPIC_FOUNDRY_API_KEY", PLACEHOLDER_TOKEN.to_owned()));
            }
        } else {
            env.set
                .push(("ANTHROPIC_BASE_URL", format!("http://{addr}")));
            if !forwards(Face::Anthropic) {
                env.set
                    .push(("ANTHROPIC_AUTH_TOKEN", PLACEHOLDER_TOKEN.to_owned()));
            }
        }
        env.remove
            .retain(|name| env.set.iter().all(|(set, _)| set != name));
        env
    }
}

/// Why `wrap` could not run COMMAND.
#[derive(Debug)]
#[non_exhaustive]
pub enum WrapError {
    /// The gateway would not start (names the setting).
    Gateway(GatewayError),
    /// Nothing upstream is configured: COMMAND would get fake answers.
    NoUpstream,
    /// The log file or the listener could not be made.
    Io(String, io::Error),
    /// COMMAND could not be started.
    Spawn(OsString, io::Error),
}

impl fmt::Display for WrapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WrapError::Gateway(err) => write!(f, "{err}"),
            WrapError::NoUpstream => f.write_str(
                "no upstream is configured: set what Claude Code reads (CLAUDE_CODE_USE_FOUNDRY=1 \
                 with ANTHROPIC_FOUNDRY_RESOURCE or ANTHROPIC_FOUNDRY_BASE_URL, and/or \
                 ANTHROPIC_API_KEY), or pass --simulator for fake answers",
            ),
            WrapError::Io(what, err) => write!(f, "{what}: {err}"),
            WrapError::Spawn(command, err) if err.kind() == io::ErrorKind::NotFound => {
                write!(f, "{}: command not found", command.to_string_lossy())
            }
            WrapError::Spawn(command, err) => {
                write!(f, "{}: cannot run it: {err}", command.to_string_lossy())
            }
        }
    }
}

impl std::error::Error for WrapError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WrapError::Gateway(err) => Some(err),
            WrapError::NoUpstream => None,
            WrapError::Io(_, err) | WrapError::Spawn(_, err) => Some(err),
        }
    }
}

impl From<GatewayError> for WrapError {
    fn from(err: GatewayError) -> Self {
        WrapError::Gateway(err)
    }
}

impl From<ConfigError> for WrapError {
    fn from(err: ConfigError) -> Self {
        WrapError::Gateway(GatewayError::Config(err))
    }
}

impl WrapError {
    /// The exit status for this error: 127 not found, 126 cannot run, else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            WrapError::Spawn(_, err) if err.kind() == io::ErrorKind::NotFound => 127,
            WrapError::Spawn(..) => 126,
            _ => 1,
        }
    }
}

/// The binary's `wrap`: runs `command` through its own gateway and returns
/// its exit status. Errors are printed on stderr.
pub fn run(
    runtime: &tokio::runtime::Runtime,
    settings: Settings,
    command: Vec<OsString>,
    lookup: impl Fn(&str) -> Option<String>,
) -> ExitCode {
    const NAME: &str = "claude-tower-gateway wrap";
    match runtime.block_on(wrap(settings, command, &lookup)) {
        Ok(status) => ExitCode::from(status),
        Err(err) => {
            eprintln!("{NAME}: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}

async fn wrap(
    settings: Settings,
    command: Vec<OsString>,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<u8, WrapError> {
    let Some((program, args)) = command.split_first() else {
        return Err(WrapError::Spawn(
            OsString::new(),
            io::Error::new(io::ErrorKind::NotFound, "no COMMAND"),
        ));
    };
    let file = match &settings.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let plan = Plan::new(&settings, &file, lookup)?;
    let gateway_env = plan.gateway_lookup(lookup);
    let mut config = GatewayConfig::resolve(&plan.settings, &file, &gateway_env)?;
    // One developer's gateway on loopback: a shared gateway's identity
    // settings (client keys, token issuers) are not this one's, and a client
    // key beside a passthrough credential would be forwarded with it.
    config.identity = claude_tower_identity::IdentityConfig::default();
    if plan.foundry_mode && config.route_order.is_none() {
        config.route_order = foundry_first(&config, &gateway_env);
    }
    let gateway = Gateway::new(config, &gateway_env).await?;
    if gateway.mode() == Mode::Simulator(SimulatorReason::NothingConfigured) {
        return Err(WrapError::NoUpstream);
    }
    let log = log_to_file()?;
    let listen = gateway.config().listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|err| WrapError::Io(format!("cannot listen on {listen}"), err))?;
    let addr = listener
        .local_addr()
        .map_err(|err| WrapError::Io("cannot read the listening address".to_owned(), err))?;
    tracing::info!("{}", gateway.banner(addr));
    let env = plan.child_env(addr, gateway.routes());
    eprintln!(
        "claude-tower-gateway wrap: gateway on http://{addr} ({}); its log: {}",
        gateway
            .routes()
            .iter()
            .map(|r| format!("{} {}", r.id().as_str(), r.credential().kind()))
            .collect::<Vec<_>>()
            .join(", "),
        log.display()
    );

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(gateway.serve(listener, async {
        let _ = stopped.await;
    }));
    let mut child = tokio::process::Command::new(program);
    child.args(args);
    for name in &env.remove {
        child.env_remove(name);
    }
    child.envs(env.set.iter().map(|(k, v)| (k, v)));
    let status = match child.spawn() {
        Ok(child) => signals::wait_forwarding(child).await,
        Err(err) => Err(WrapError::Spawn(program.clone(), err)),
    };
    let _ = stop.send(());
    // COMMAND is gone: its requests with it. Give the rest a moment.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), serving).await;
    drop(gateway);
    status
}

/// In Foundry mode, Foundry is what the user chose: the `foundry` route
/// first, the others (Anthropic direct) behind it as failovers.
fn foundry_first(
    config: &GatewayConfig,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Option<Vec<String>> {
    let mut names: Vec<String> = match crate::upstream::resolve(config, lookup) {
        Ok(crate::upstream::Upstream::Routes(routes)) => {
            routes.iter().map(|r| r.id().to_string()).collect()
        }
        Ok(crate::upstream::Upstream::Simulator(_)) => {
            vec![crate::routes::ANTHROPIC.to_owned(), FOUNDRY.to_owned()]
        }
        // The gateway reports it, naming the variable.
        Err(_) => return None,
    };
    names.sort_by_key(|name| name != FOUNDRY);
    Some(names)
}

/// Sends the gateway's log to a new file in the temp directory.
fn log_to_file() -> Result<PathBuf, WrapError> {
    let dir = std::env::temp_dir();
    let (path, file) = create_log(&dir).map_err(|err| {
        WrapError::Io(
            format!("cannot create a log file in {}", dir.display()),
            err,
        )
    })?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=warn"));
    // A subscriber set earlier (a test, an embedding program) stays.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
    Ok(path)
}

/// `claude-tower-wrap-<pid>[-n].log`, created new (never an existing file
/// or a link someone left there).
fn create_log(dir: &std::path::Path) -> io::Result<(PathBuf, File)> {
    let pid = std::process::id();
    let mut last = None;
    for n in 0..100u32 {
        let name = if n == 0 {
            format!("claude-tower-wrap-{pid}.log")
        } else {
            format!("claude-tower-wrap-{pid}-{n}.log")
        };
        let path = dir.join(name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => return Ok((path, file)),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => last = Some(err),
            Err(err) => return Err(err),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free log file name")))
}

mod signals {
    //! Waiting for COMMAND while passing it the signals `wrap` receives.

    use super::WrapError;

    /// Waits for `child`, forwarding SIGINT, SIGTERM and SIGHUP; its exit
    /// status, or 128 + N when signal N ended it.
    #[cfg(unix)]
    pub(super) async fn wait_forwarding(mut child: tokio::process::Child) -> Result<u8, WrapError> {
        use std::os::unix::process::ExitStatusExt;
        use tokio::signal::unix::{SignalKind, signal};

        let listen = |kind: SignalKind| {
            signal(kind).map_err(|err| WrapError::Io("cannot listen for signals".to_owned(), err))
        };
        let mut int = listen(SignalKind::interrupt())?;
        let mut term = listen(SignalKind::terminate())?;
        let mut hup = listen(SignalKind::hangup())?;
        let pid = child
            .id()
            .and_then(|id| rustix::process::Pid::from_raw(i32::try_from(id).ok()?));
        loop {
            // NOTE: Ctrl-C in a terminal signals the whole foreground process
            // group, COMMAND included, so it may get SIGINT twice; a program
            // in raw mode (Claude Code's UI) reads Ctrl-C as a key instead.
            let forward = tokio::select! {
                status = child.wait() => {
                    let status = status.map_err(|err| {
                        WrapError::Io("cannot wait for COMMAND".to_owned(), err)
                    })?;
                    return Ok(match (status.code(), status.signal()) {
                        (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(1),
                        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(255),
                        (None, None) => 1,
                    });
                }
                _ = int.recv() => rustix::process::Signal::INT,
                _ = term.recv() => rustix::process::Signal::TERM,
                _ = hup.recv() => rustix::process::Signal::HUP,
            };
            if let Some(pid) = pid {
                // The child may have just exited: its wait() reports that.
                let _ = rustix::process::kill_process(pid, forward);
            }
        }
    }

    /// Waits for `child` (no signals to forward off Unix).
    #[cfg(not(unix))]
    pub(super) async fn wait_forwarding(mut child: tokio::process::Child) -> Result<u8, WrapError> {
        let status = child
            .wait()
            .await
            .map_err(|err| WrapError::Io("cannot wait for COMMAND".to_owned(), err))?;
        Ok(status
            .code()
            .and_then(|c| u8::try_from(c).ok())
            .unwrap_or(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::tests::env;

    fn plan(vars: &[(&str, &str)]) -> Plan {
        let lookup = env(vars);
        Plan::new(
            &Settings::from_lookup(&lookup),
            &FileConfig::default(),
            &lookup,
        )
        .unwrap()
    }

    fn routes(plan: &Plan, vars: &[(&str, &str)]) -> Vec<Route> {
        let lookup = env(vars);
        let gateway_env = plan.gateway_lookup(&lookup);
        let config =
            GatewayConfig::resolve(&plan.settings, &FileConfig::default(), &gateway_env).unwrap();
        match crate::upstream::resolve(&config, &gateway_env).unwrap() {
            crate::upstream::Upstream::Routes(routes) => routes,
            other => panic!("{other:?}"),
        }
    }

    fn child(vars: &[(&str, &str)]) -> (ChildEnv, Vec<String>) {
        let plan = plan(vars);
        let routes = routes(&plan, vars);
        let kinds = routes
            .iter()
            .map(|r| format!("{} {}", r.id().as_str(), r.credential().kind()))
            .collect();
        (
            plan.child_env("127.0.0.1:4000".parse().unwrap(), &routes),
            kinds,
        )
    }

    fn set(env: &ChildEnv) -> Vec<(&str, &str)> {
        env.set.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    #[test]
    fn foundry_with_a_key_the_gateway_signs() {
        let (env, kinds) = child(&[
            ("CLAUDE_CODE_USE_FOUNDRY", "1"),
            ("ANTHROPIC_FOUNDRY_RESOURCE", "res"),
            ("ANTHROPIC_FOUNDRY_API_KEY", "fk"),
            ("ANTHROPIC_API_KEY", "ak"),
        ]);
        assert_eq!(
            kinds,
            ["anthropic anthropic-api-key", "foundry foundry-api-key"]
        );
        assert_eq!(
            set(&env),
            [
                (
                    "ANTHROPIC_FOUNDRY_BASE_URL",
                    "http://127.0.0.1:4000/anthropic"
                ),
                ("CLAUDE_CODE_SKIP_FOUNDRY_AUTH", "1"),
                ("ANTHROPIC_FOUNDRY_API_KEY", PLACEHOLDER_TOKEN),
            ]
        );
        for gone in [
            "ANTHROPIC_FOUNDRY_RESOURCE",
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_BASE_URL",
        ] {
            assert!(env.remove.contains(&gone), "{gone}: {env:?}");
        }
        assert!(!env.remove.contains(&"CLAUDE_CODE_SKIP_FOUNDRY_AUTH"));
    }

    #[test]
    fn foundry_without_a_key_forwards_claude_codes_own_token() {
        let vars = [
            ("CLAUDE_CODE_USE_FOUNDRY", "1"),
            (
                "ANTHROPIC_FOUNDRY_BASE_URL",
                "https://res.example/anthropic",
            ),
            ("ANTHROPIC_FOUNDRY_AUTH_TOKEN", "tok"),
        ];
        let (env, kinds) = child(&vars);
        assert_eq!(kinds, ["foundry passthrough"]);
        assert_eq!(
            set(&env),
            [(
                "ANTHROPIC_FOUNDRY_BASE_URL",
                "http://127.0.0.1:4000/anthropic"
            )]
        );
        assert!(env.remove.contains(&"CLAUDE_CODE_SKIP_FOUNDRY_AUTH"));
        assert!(!env.remove.contains(&"ANTHROPIC_FOUNDRY_AUTH_TOKEN"));
        // `--passthrough none`: the gateway signs with Entra ID itself.
        let mut none = vars[..2].to_vec();
        none.push(("CLAUDE_TOWER_PASSTHROUGH", "none"));
        let (env, kinds) = child(&none);
        assert_eq!(kinds, ["foundry entra-id"]);
        assert!(set(&env).contains(&("CLAUDE_CODE_SKIP_FOUNDRY_AUTH", "1")));
    }

    #[test]
    fn anthropic_mode_points_the_base_url_and_keeps_the_key_away() {
        let (env, kinds) = child(&[("ANTHROPIC_API_KEY", "ak")]);
        assert_eq!(kinds, ["anthropic anthropic-api-key"]);
        assert_eq!(
            set(&env),
            [
                ("ANTHROPIC_BASE_URL", "http://127.0.0.1:4000"),
                ("ANTHROPIC_AUTH_TOKEN", PLACEHOLDER_TOKEN),
            ]
        );
        assert!(env.remove.contains(&"ANTHROPIC_API_KEY"));
        // The user's own key, forwarded: COMMAND keeps it, no placeholder.
        let (env, kinds) = child(&[
            ("ANTHROPIC_API_KEY", "ak"),
            ("CLAUDE_TOWER_PASSTHROUGH", "anthropic"),
        ]);
        assert_eq!(kinds, ["anthropic passthrough"]);
        assert_eq!(set(&env), [("ANTHROPIC_BASE_URL", "http://127.0.0.1:4000")]);
        assert!(!env.remove.contains(&"ANTHROPIC_API_KEY"));
    }

    #[test]
    fn foundry_mode_on_the_simulator() {
        let vars = [
            ("CLAUDE_CODE_USE_FOUNDRY", "1"),
            ("CLAUDE_TOWER_SIMULATOR", "1"),
        ];
        let p = plan(&vars);
        let lookup = env(&vars);
        assert_eq!(p.gateway_lookup(&lookup)("CLAUDE_CODE_USE_FOUNDRY"), None);
        let env = p.child_env("127.0.0.1:4000".parse().unwrap(), &[]);
        assert!(set(&env).contains(&("CLAUDE_CODE_SKIP_FOUNDRY_AUTH", "1")));
    }

    #[test]
    fn wrap_listens_on_a_free_loopback_port_only() {
        let p = plan(&[("CLAUDE_TOWER_LISTEN", "0.0.0.0:8787")]);
        assert_eq!(p.settings.listen.as_deref(), Some("127.0.0.1:0"));
        let lookup = env(&[("CLAUDE_TOWER_TLS_CERT", "c.pem")]);
        let err = Plan::new(
            &Settings::from_lookup(&lookup),
            &FileConfig::default(),
            &lookup,
        )
        .unwrap_err();
        assert_eq!(err.setting(), "CLAUDE_TOWER_TLS_CERT");
    }

    #[test]
    fn exit_codes_follow_the_shell() {
        let missing = WrapError::Spawn("nope".into(), io::ErrorKind::NotFound.into());
        assert_eq!(missing.exit_code(), 127);
        assert_eq!(missing.to_string(), "nope: command not found");
        let denied = WrapError::Spawn("x".into(), io::ErrorKind::PermissionDenied.into());
        assert_eq!(denied.exit_code(), 126);
        assert_eq!(WrapError::NoUpstream.exit_code(), 1);
    }
}
