//! The command line: every setting as a flag beside its `CLAUDE_TOWER_*`
//! variable (clap reads both; a flag wins over its variable).
//!
//! Values stay strings here and are parsed once, in
//! [`GatewayConfig::resolve`](crate::config::GatewayConfig::resolve), where a
//! value from the config file can stand in for a missing one and every error
//! names the variable it came from. [`Settings::from_lookup`] reads the same
//! variables through a closure, through the same clap definitions, so tests
//! never touch the process environment.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

/// `claude-tower-gateway [check | wrap] [OPTIONS]`.
#[derive(Debug, Parser)]
#[command(
    name = "claude-tower-gateway",
    version,
    about = "A Claude gateway: Anthropic direct and Azure AI Foundry behind one endpoint, \
             with retries, failover, tool-pairing checks and one error surface.",
    long_about = None,
    after_help = UPSTREAM_HELP,
)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The gateway's settings.
    #[command(flatten)]
    pub settings: Settings,
}

/// The subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Validate the configuration (flags, variables, config file, upstream
    /// variables) and print it with secrets redacted; exit 1 on an error.
    /// Starts nothing and sends nothing.
    Check,
    /// Run COMMAND (e.g. `claude`) through a gateway of its own, started
    /// in-process on a free loopback port for as long as COMMAND runs.
    #[command(
        after_help = crate::wrap::WRAP_HELP,
        override_usage = "claude-tower-gateway wrap [OPTIONS] [--] <COMMAND> [ARGS]..."
    )]
    Wrap(WrapArgs),
}

/// `wrap [OPTIONS] -- COMMAND [ARGS...]`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct WrapArgs {
    /// The program to run and its arguments (after `--`).
    #[arg(
        required = true,
        trailing_var_arg = true,
        value_name = "COMMAND",
        num_args = 1..
    )]
    pub command: Vec<OsString>,
}

const UPSTREAM_HELP: &str = "\
Upstream routes come from the variables Claude Code itself reads:
  ANTHROPIC_API_KEY [+ ANTHROPIC_BASE_URL]        Anthropic direct
  ANTHROPIC_FOUNDRY_RESOURCE | _BASE_URL          Azure AI Foundry (not both)
    + ANTHROPIC_FOUNDRY_API_KEY                   with a key, else Entra ID (AZURE_* variables,
                                                  workload identity, managed identity, Azure CLI)
    or CLAUDE_CODE_SKIP_FOUNDRY_AUTH=1            with no credential (a gateway further on signs)
or from [[routes]] in the config file. A partial or contradictory upstream configuration
is an error naming the variable. With nothing configured the built-in simulator runs, on a
loopback listen address only (or with --simulator), and says `mode: simulator` loudly.";

/// Every setting, as a flag and a variable. Defaults are applied in
/// [`GatewayConfig::resolve`](crate::config::GatewayConfig::resolve), after
/// the config file.
#[derive(Debug, Clone, Default, Args)]
pub struct Settings {
    /// TOML file with routes, model maps and the other sections (see
    /// `claude-tower-gateway check`). Flags and variables win over it.
    #[arg(long, env = "CLAUDE_TOWER_CONFIG", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// Address to listen on [default: 127.0.0.1:8787]. Off loopback, an
    /// identity (client keys, Entra tenant or OIDC issuer) is required and
    /// the simulator never starts by itself.
    #[arg(long, env = "CLAUDE_TOWER_LISTEN", value_name = "ADDR", global = true)]
    pub listen: Option<String>,

    /// Client keys `name=key,...` clients send as x-api-key or Authorization:
    /// Bearer; the name is the caller id (a bare key is named key-N)
    /// [default: none]. Off loopback some identity (keys, Entra tenant or
    /// OIDC issuer) is required.
    #[arg(
        long,
        env = "CLAUDE_TOWER_CLIENT_KEYS",
        value_name = "KEYS",
        hide_env_values = true,
        global = true
    )]
    pub client_keys: Option<String>,

    /// Entra ID tenant ids (comma list) whose tokens are accepted, v1 and v2
    /// issuers, audiences `https://cognitiveservices.azure.com` and
    /// `https://ai.azure.com` unless --oidc-audience is set [default: none].
    #[arg(
        long,
        env = "CLAUDE_TOWER_ENTRA_TENANT_ID",
        value_name = "TENANTS",
        global = true
    )]
    pub entra_tenant_id: Option<String>,

    /// OpenID Connect issuer URLs (comma list) whose tokens are accepted,
    /// keys by discovery; needs --oidc-audience [default: none].
    #[arg(
        long,
        env = "CLAUDE_TOWER_OIDC_ISSUER",
        value_name = "URLS",
        global = true
    )]
    pub oidc_issuer: Option<String>,

    /// Accepted token audiences (comma list) [default: Entra's two, with a
    /// tenant; none otherwise].
    #[arg(
        long,
        env = "CLAUDE_TOWER_OIDC_AUDIENCE",
        value_name = "AUDIENCES",
        global = true
    )]
    pub oidc_audience: Option<String>,

    /// A token must carry one of these roles (comma list) [default: none].
    #[arg(
        long,
        env = "CLAUDE_TOWER_REQUIRED_ROLES",
        value_name = "ROLES",
        global = true
    )]
    pub required_roles: Option<String>,

    /// Caller ids (client key names, token oid/sub) that may read GET /usage
    /// besides loopback clients [default: none].
    #[arg(
        long,
        env = "CLAUDE_TOWER_ADMIN_CALLERS",
        value_name = "IDS",
        global = true
    )]
    pub admin_callers: Option<String>,

    /// Serve GET /metrics to anyone, without a credential; `--metrics-public`
    /// alone means true [default: false: loopback or an identified caller].
    #[arg(
        long,
        env = "CLAUDE_TOWER_METRICS_PUBLIC",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        global = true
    )]
    pub metrics_public: Option<String>,

    /// Read token usage from every response: the GenAI metrics on
    /// /metrics, one INFO record per request and the consumption on /usage;
    /// `off` leaves the usage layer out (route health and quotas stay)
    /// [default: on].
    #[arg(long, env = "CLAUDE_TOWER_USAGE", value_name = "on|off", global = true)]
    pub usage: Option<String>,

    /// Redis shared by gateway replicas for quotas, `redis://[:pw@]host:port[/db]`
    /// [default: none: limits per process, in memory].
    #[arg(
        long,
        env = "CLAUDE_TOWER_REDIS_URL",
        value_name = "URL",
        hide_env_values = true,
        global = true
    )]
    pub redis_url: Option<String>,

    /// Tokens per minute per caller (a number or `unlimited`) [default: unlimited].
    #[arg(long, env = "CLAUDE_TOWER_TPM", value_name = "N", global = true)]
    pub tpm: Option<String>,

    /// Requests per minute per caller (a number or `unlimited`) [default: unlimited].
    #[arg(long, env = "CLAUDE_TOWER_RPM", value_name = "N", global = true)]
    pub rpm: Option<String>,

    /// Token quota per caller and UTC period, e.g. 5000000/month (hour, day,
    /// week, month) [default: unlimited].
    #[arg(
        long,
        env = "CLAUDE_TOWER_TOKEN_QUOTA",
        value_name = "TOKENS/PERIOD",
        global = true
    )]
    pub token_quota: Option<String>,

    /// Route order by name, e.g. `foundry,anthropic`; routes not named are
    /// left out [default: anthropic, then foundry, then file routes in order].
    #[arg(long, env = "CLAUDE_TOWER_ROUTES", value_name = "NAMES", global = true)]
    pub routes: Option<String>,

    /// Routes by name, e.g. `foundry`, that forward each caller's own
    /// credential (x-api-key, api-key or Authorization: Bearer) instead of
    /// one the gateway holds; such a route needs no key. A caller's
    /// credential only goes to routes of its own face [default: none; under
    /// `wrap`: `foundry` when it has no key].
    #[arg(
        long,
        env = "CLAUDE_TOWER_PASSTHROUGH",
        value_name = "NAMES",
        global = true
    )]
    pub passthrough: Option<String>,

    /// Tool-pairing check before a request is sent: reject, repair or
    /// observe [default: reject].
    #[arg(
        long,
        env = "CLAUDE_TOWER_TOOLPAIR",
        value_name = "MODE",
        global = true
    )]
    pub toolpair: Option<String>,

    /// HTTP/2 to `https://` routes that offer it: `on` keeps one connection
    /// per upstream host, but a request past the host's limit of streams
    /// open at once waits, silently, for a stream to end; `off` opens a
    /// pooled HTTP/1.1 connection per request in flight [default: off].
    #[arg(
        long,
        env = "CLAUDE_TOWER_UPSTREAM_HTTP2",
        value_name = "on|off",
        global = true
    )]
    pub upstream_http2: Option<String>,

    /// Model-id rules `[route:]model=deployment,...`; `model*` is a prefix
    /// rule; a rule without a route applies to every Foundry route
    /// [default: none].
    #[arg(
        long,
        env = "CLAUDE_TOWER_MODEL_MAP",
        value_name = "RULES",
        global = true
    )]
    pub model_map: Option<String>,

    /// Model ids `GET /v1/models` lists when no Anthropic route serves it
    /// [default: the model map's exact model names]. Ids must start with `claude`.
    #[arg(long, env = "CLAUDE_TOWER_MODELS", value_name = "IDS", global = true)]
    pub models: Option<String>,

    /// Deadline for a response head, retries and failover included, e.g.
    /// 600s, 90s, 1500ms [default: 600s].
    #[arg(
        long,
        env = "CLAUDE_TOWER_DEADLINE",
        value_name = "DURATION",
        global = true
    )]
    pub deadline: Option<String>,

    /// Request body limit in bytes [default: 33554432 (32 MiB)].
    #[arg(
        long,
        env = "CLAUDE_TOWER_BODY_LIMIT",
        value_name = "BYTES",
        global = true
    )]
    pub body_limit: Option<String>,

    /// Attempts per route, first send included, 1 to 10 [default: 3].
    #[arg(
        long,
        env = "CLAUDE_TOWER_RETRY_ATTEMPTS",
        value_name = "N",
        global = true
    )]
    pub retry_attempts: Option<String>,

    /// Full-jitter backoff `base,cap` when the server gave no Retry-After
    /// [default: 500ms,8s].
    #[arg(
        long,
        env = "CLAUDE_TOWER_RETRY_BACKOFF",
        value_name = "BASE,CAP",
        global = true
    )]
    pub retry_backoff: Option<String>,

    /// Time a client has to send a request's headers; over HTTP/1 also how
    /// long a kept-alive connection may wait for its next request
    /// [default: 30s].
    #[arg(
        long,
        env = "CLAUDE_TOWER_HEADER_READ_TIMEOUT",
        value_name = "DURATION",
        global = true
    )]
    pub header_read_timeout: Option<String>,

    /// A connection with no request in flight for this long is closed
    /// (HTTP/2: GOAWAY) [default: 90s].
    #[arg(
        long,
        env = "CLAUDE_TOWER_IDLE_TIMEOUT",
        value_name = "DURATION",
        global = true
    )]
    pub idle_timeout: Option<String>,

    /// Most client connections served at once; more wait in the listen
    /// backlog [default: 4096; keep it under `ulimit -n`].
    #[arg(
        long,
        env = "CLAUDE_TOWER_MAX_CONNECTIONS",
        value_name = "N",
        global = true
    )]
    pub max_connections: Option<String>,

    /// Most concurrent HTTP/2 streams (requests) per client connection
    /// [default: 100].
    #[arg(
        long,
        env = "CLAUDE_TOWER_H2_MAX_STREAMS",
        value_name = "N",
        global = true
    )]
    pub h2_max_streams: Option<String>,

    /// PEM certificate chain: serve HTTPS (ALPN h2 and http/1.1) instead of
    /// plain HTTP. Needs --tls-key [default: plain HTTP].
    #[arg(long, env = "CLAUDE_TOWER_TLS_CERT", value_name = "PEM", global = true)]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1) for --tls-cert.
    #[arg(long, env = "CLAUDE_TOWER_TLS_KEY", value_name = "PEM", global = true)]
    pub tls_key: Option<PathBuf>,

    /// Run on the built-in simulator (fake answers, injected faults) even off
    /// loopback; `--simulator` alone means true. Refused when any upstream is
    /// configured [default: false].
    #[arg(
        long,
        env = "CLAUDE_TOWER_SIMULATOR",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        global = true
    )]
    pub simulator: Option<String>,

    /// Simulator mode only: the fault script; `none` for no faults
    /// [default: anthropic=random(p=0.2,seed=42)].
    #[arg(
        long,
        env = "CLAUDE_TOWER_SIM_FAULTS",
        value_name = "SCRIPT",
        global = true
    )]
    pub sim_faults: Option<String>,

    /// Simulator mode only: the simulator's address [default: an ephemeral
    /// loopback port].
    #[arg(
        long,
        env = "CLAUDE_TOWER_SIM_LISTEN",
        value_name = "ADDR",
        global = true
    )]
    pub sim_listen: Option<String>,
}

impl Settings {
    /// Reads every setting's variable through `lookup`, as clap would read
    /// the process environment, with no flags. (Every setting takes a value,
    /// so each variable becomes `--flag=value`.)
    ///
    /// ```
    /// use claude_tower_gateway::settings::Settings;
    ///
    /// let s = Settings::from_lookup(|name| {
    ///     (name == "CLAUDE_TOWER_LISTEN").then(|| "127.0.0.1:9000".to_owned())
    /// });
    /// assert_eq!(s.listen.as_deref(), Some("127.0.0.1:9000"));
    /// assert_eq!(s.deadline, None);
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let command = Settings::augment_args(clap::Command::new("claude-tower-gateway"));
        let mut argv: Vec<OsString> = vec!["claude-tower-gateway".into()];
        for arg in command.get_arguments() {
            let (Some(variable), Some(long)) = (arg.get_env(), arg.get_long()) else {
                continue;
            };
            let Some(value) = variable.to_str().and_then(&lookup) else {
                continue;
            };
            argv.push(format!("--{long}={value}").into());
        }
        // The variables were read above; clap must not read the real ones.
        let command = command.mut_args(|arg| arg.env(None));
        command
            .try_get_matches_from(argv)
            .and_then(|matches| Settings::from_arg_matches(&matches))
            // NOTE: every argument is an optional string or a flag, so any
            // argv built above parses.
            .unwrap_or_default()
    }
}

/// `1`, `true`, `yes`, `on` (any case) -> true; `0`, `false`, `no`, `off`
/// -> false; anything else is not a yes-or-no.
pub(crate) fn switch(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// The command line as clap sees it, for `--help` tests and the binary.
pub fn command() -> clap::Command {
    Cli::command()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_setting_has_a_variable_and_a_flag() {
        let command = Settings::augment_args(clap::Command::new("t"));
        for arg in command.get_arguments() {
            let long = arg.get_long().expect("a flag");
            let variable = arg.get_env().and_then(|v| v.to_str()).expect("a variable");
            assert_eq!(
                variable,
                format!(
                    "CLAUDE_TOWER_{}",
                    long.replace('-', "_").to_ascii_uppercase()
                ),
            );
        }
    }

    #[test]
    fn lookup_reads_values_and_flags_and_nothing_else() {
        let s = Settings::from_lookup(|name| match name {
            "CLAUDE_TOWER_DEADLINE" => Some("-1s".to_owned()),
            "CLAUDE_TOWER_SIMULATOR" => Some("1".to_owned()),
            "CLAUDE_TOWER_SIM_FAULTS" => Some(String::new()),
            _ => None,
        });
        assert_eq!(s.deadline.as_deref(), Some("-1s"));
        assert_eq!(s.simulator.as_deref(), Some("1"));
        assert_eq!(s.sim_faults.as_deref(), Some(""));
        assert_eq!(s.listen, None);
    }

    #[test]
    fn flags_parse_with_a_subcommand_anywhere() {
        let cli = Cli::try_parse_from([
            "claude-tower-gateway",
            "check",
            "--listen",
            "127.0.0.1:1",
            "--simulator",
        ])
        .unwrap();
        assert_eq!(cli.command, Some(Command::Check));
        assert_eq!(cli.settings.listen.as_deref(), Some("127.0.0.1:1"));
        assert_eq!(cli.settings.simulator.as_deref(), Some("true"));
    }

    #[test]
    fn wrap_takes_flags_then_the_command_with_its_own_flags() {
        for argv in [
            &[
                "g",
                "wrap",
                "--passthrough",
                "foundry",
                "--",
                "claude",
                "-p",
                "hi",
            ][..],
            &["g", "wrap", "--passthrough=foundry", "claude", "-p", "hi"],
        ] {
            let cli = Cli::try_parse_from(argv).unwrap();
            let Some(Command::Wrap(wrap)) = cli.command else {
                panic!("{argv:?}: wrap")
            };
            assert_eq!(wrap.command, ["claude", "-p", "hi"], "{argv:?}");
            assert_eq!(cli.settings.passthrough.as_deref(), Some("foundry"));
        }
        let err = Cli::try_parse_from(["g", "wrap"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("<COMMAND>"), "{err}");
    }
}
