//! Where requests go: the upstream routes, or the simulator — decided so that
//! the gateway fails closed.
//!
//! A gateway that quietly answers from its demo simulator because one secret
//! was missing in a deployment hands Claude Code fake answers while every
//! health check says ok. So:
//!
//! - Any variable Claude Code reads about its upstream ([`UPSTREAM_VARIABLES`])
//!   means an upstream was meant. It must make a whole route, or start-up
//!   fails naming the variable that is missing or wrong:
//!   `ANTHROPIC_BASE_URL` without `ANTHROPIC_API_KEY`, `ANTHROPIC_AUTH_TOKEN`
//!   (the gateway signs with an API key, never a caller's token),
//!   `CLAUDE_CODE_USE_FOUNDRY=1` or a Foundry key without a Foundry endpoint,
//!   both Foundry endpoints, Bedrock or Vertex, a base URL pointing at the
//!   gateway itself.
//! - With `[[routes]]` in the config file the routes come from there; a
//!   Claude Code variable that no route names is then an error too.
//! - `CLAUDE_TOWER_PASSTHROUGH` names routes that forward each caller's own
//!   credential ([`Credential::passthrough`]). Naming a route that is not
//!   configured is an error; a passthrough route needs no key, and one set
//!   for it is an error (the gateway would not use it). Naming `anthropic`
//!   makes the Anthropic route by itself (`ANTHROPIC_BASE_URL`, else
//!   api.anthropic.com); `foundry` needs its endpoint.
//! - The simulator runs when asked (`--simulator`, refused if an upstream
//!   is configured as well), or when nothing upstream is set and the gateway
//!   listens on loopback. Off loopback it never starts by itself.

use std::net::SocketAddr;
use std::sync::Arc;

use claude_tower::auth::EnvCredentialChain;
use claude_tower::prelude::*;
use claude_tower::stack::Route;

use crate::config::{ConfigError, GatewayConfig};
use crate::file::RouteSection;
use crate::routes::{ANTHROPIC, FOUNDRY};
use crate::settings::switch;

/// Every variable Claude Code reads about where its requests go and how they
/// are signed. Any of them set means an upstream was meant.
pub const UPSTREAM_VARIABLES: [&str; 16] = [
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "CLAUDE_CODE_USE_FOUNDRY",
    "ANTHROPIC_FOUNDRY_RESOURCE",
    "ANTHROPIC_FOUNDRY_BASE_URL",
    "ANTHROPIC_FOUNDRY_API_KEY",
    "ANTHROPIC_FOUNDRY_AUTH_TOKEN",
    "CLAUDE_CODE_SKIP_FOUNDRY_AUTH",
    "CLAUDE_CODE_USE_BEDROCK",
    "ANTHROPIC_BEDROCK_BASE_URL",
    "CLAUDE_CODE_SKIP_BEDROCK_AUTH",
    "CLAUDE_CODE_USE_VERTEX",
    "ANTHROPIC_VERTEX_BASE_URL",
    "ANTHROPIC_VERTEX_PROJECT_ID",
    "CLAUDE_CODE_SKIP_VERTEX_AUTH",
];

/// The `CLAUDE_CODE_*` switches: `0`/`false` is as good as unset.
const SWITCHES: [&str; 6] = [
    "CLAUDE_CODE_USE_FOUNDRY",
    "CLAUDE_CODE_SKIP_FOUNDRY_AUTH",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_SKIP_BEDROCK_AUTH",
    "CLAUDE_CODE_USE_VERTEX",
    "CLAUDE_CODE_SKIP_VERTEX_AUTH",
];

/// What the gateway sends requests to.
#[derive(Debug)]
pub enum Upstream {
    /// Real routes, unordered (ordering and model maps are applied later).
    Routes(Vec<Route>),
    /// The built-in simulator.
    Simulator(SimulatorReason),
}

/// Why the simulator runs: the banner says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimulatorReason {
    /// `--simulator` / `CLAUDE_TOWER_SIMULATOR`.
    Asked,
    /// Nothing upstream is set and the listen address is loopback.
    NothingConfigured,
}

struct Vars<'a, F> {
    lookup: &'a F,
}

impl<F: Fn(&str) -> Option<String>> Vars<'_, F> {
    /// The value, unless blank.
    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    /// Whether a variable counts as set; a switch must be a yes or a no.
    fn set(&self, name: &str) -> Result<bool, ConfigError> {
        let Some(value) = self.get(name) else {
            return Ok(false);
        };
        if !SWITCHES.contains(&name) {
            return Ok(true);
        }
        switch(&value).ok_or_else(|| {
            ConfigError::new(
                name,
                format!("`{}` is neither 1/true nor 0/false", value.trim()),
            )
        })
    }
}

/// Decides the upstream from `config` and the variables behind `lookup`.
pub fn resolve(
    config: &GatewayConfig,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<Upstream, ConfigError> {
    let vars = Vars { lookup };
    let mut set = Vec::new();
    for name in UPSTREAM_VARIABLES {
        if vars.set(name)? {
            set.push(name);
        }
    }
    if !config.file_routes.is_empty() {
        if config.simulator {
            return Err(simulator_refused("[[routes]] in the config file"));
        }
        let named: Vec<&str> = config
            .file_routes
            .iter()
            .filter_map(|r| r.api_key_env.as_deref())
            .collect();
        if let Some(stray) = set.iter().find(|v| !named.contains(v)) {
            return Err(ConfigError::new(
                *stray,
                "is set, but the routes come from [[routes]] in the config file and none \
                 names it (api_key_env); unset it, or describe that route in the file",
            ));
        }
        let routes: Vec<Route> = config
            .file_routes
            .iter()
            .map(|r| file_route(r, config.listen, &config.passthrough, lookup))
            .collect::<Result<_, _>>()?;
        known_passthrough(&routes, &config.passthrough)?;
        return Ok(Upstream::Routes(routes));
    }
    if set.is_empty() && config.passthrough.is_empty() {
        if config.simulator {
            return Ok(Upstream::Simulator(SimulatorReason::Asked));
        }
        if config.listen.ip().is_loopback() {
            return Ok(Upstream::Simulator(SimulatorReason::NothingConfigured));
        }
        return Err(ConfigError::new(
            "ANTHROPIC_API_KEY",
            format!(
                "no upstream is configured (set ANTHROPIC_API_KEY and/or ANTHROPIC_FOUNDRY_RESOURCE \
                 or ANTHROPIC_FOUNDRY_BASE_URL, or [[routes]] in a config file); listening on \
                 {} the built-in simulator runs only with --simulator",
                config.listen
            ),
        ));
    }
    if config.simulator {
        return Err(simulator_refused(
            set.first().copied().unwrap_or("CLAUDE_TOWER_PASSTHROUGH"),
        ));
    }
    let routes = env_routes(&vars, config.listen, &config.passthrough)?;
    known_passthrough(&routes, &config.passthrough)?;
    Ok(Upstream::Routes(routes))
}

/// Every route `CLAUDE_TOWER_PASSTHROUGH` names exists.
fn known_passthrough(routes: &[Route], names: &[String]) -> Result<(), ConfigError> {
    match names
        .iter()
        .find(|name| !routes.iter().any(|r| r.id() == name.as_str()))
    {
        Some(name) => Err(ConfigError::new(
            "CLAUDE_TOWER_PASSTHROUGH",
            format!(
                "`{name}` is not a configured route (configured: {})",
                routes
                    .iter()
                    .map(|r| r.id().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// The error for a key set for a route that forwards callers' credentials.
fn key_with_passthrough(key: &str, route: &str) -> ConfigError {
    ConfigError::new(
        key,
        format!(
            "is set, but CLAUDE_TOWER_PASSTHROUGH makes route `{route}` forward each caller's \
             own credential, so the gateway would never use it: unset one"
        ),
    )
}

fn simulator_refused(what: &str) -> ConfigError {
    ConfigError::new(
        "CLAUDE_TOWER_SIMULATOR",
        format!(
            "--simulator asks for fake answers, but {what} configures a real upstream; \
             drop one of them"
        ),
    )
}

/// Routes from Claude Code's variables, each one whole or an error.
fn env_routes<F: Fn(&str) -> Option<String>>(
    vars: &Vars<'_, F>,
    listen: SocketAddr,
    passthrough: &[String],
) -> Result<Vec<Route>, ConfigError> {
    let forwards = |route: &str| passthrough.iter().any(|name| name == route);
    for (name, platform) in [
        ("CLAUDE_CODE_USE_BEDROCK", "Amazon Bedrock"),
        ("ANTHROPIC_BEDROCK_BASE_URL", "Amazon Bedrock"),
        ("CLAUDE_CODE_SKIP_BEDROCK_AUTH", "Amazon Bedrock"),
        ("CLAUDE_CODE_USE_VERTEX", "Google Vertex AI"),
        ("ANTHROPIC_VERTEX_BASE_URL", "Google Vertex AI"),
        ("ANTHROPIC_VERTEX_PROJECT_ID", "Google Vertex AI"),
        ("CLAUDE_CODE_SKIP_VERTEX_AUTH", "Google Vertex AI"),
    ] {
        if vars.set(name)? {
            return Err(ConfigError::new(
                name,
                format!(
                    "{platform} is not a route this gateway offers (Anthropic direct and Azure \
                     AI Foundry only); unset it"
                ),
            ));
        }
    }
    if vars.set("ANTHROPIC_AUTH_TOKEN")? {
        return Err(ConfigError::new(
            "ANTHROPIC_AUTH_TOKEN",
            "is what a client sends to a gateway; the gateway signs the Anthropic route with \
             ANTHROPIC_API_KEY. Unset ANTHROPIC_AUTH_TOKEN (and set ANTHROPIC_API_KEY)",
        ));
    }
    if vars.set("ANTHROPIC_FOUNDRY_AUTH_TOKEN")? {
        return Err(ConfigError::new(
            "ANTHROPIC_FOUNDRY_AUTH_TOKEN",
            "a fixed bearer token expires within the hour; the gateway signs the Foundry route \
             with ANTHROPIC_FOUNDRY_API_KEY or Entra ID (AZURE_* variables, workload or managed \
             identity, Azure CLI), refreshed as needed. Unset it",
        ));
    }

    let mut routes = Vec::new();
    let anthropic_key = vars.get("ANTHROPIC_API_KEY");
    let anthropic_url = vars.get("ANTHROPIC_BASE_URL");
    let anthropic_endpoint = |url: Option<String>| match url {
        Some(url) => {
            not_this_gateway("ANTHROPIC_BASE_URL", &url, listen)?;
            Endpoint::anthropic_base_url(&url).map_err(auth("ANTHROPIC_BASE_URL"))
        }
        None => Ok(Endpoint::anthropic()),
    };
    match (anthropic_key, anthropic_url) {
        (Some(_), _) if forwards(ANTHROPIC) => {
            return Err(key_with_passthrough("ANTHROPIC_API_KEY", ANTHROPIC));
        }
        (None, url) if forwards(ANTHROPIC) => {
            let endpoint = anthropic_endpoint(url)?;
            routes.push(Route::new(ANTHROPIC, endpoint, Credential::passthrough()));
        }
        (Some(key), url) => {
            let endpoint = anthropic_endpoint(url)?;
            let credential = Credential::anthropic_api_key(Secret::from(key))
                .map_err(auth("ANTHROPIC_API_KEY"))?;
            routes.push(Route::new(ANTHROPIC, endpoint, credential));
        }
        (None, Some(_)) => {
            return Err(ConfigError::new(
                "ANTHROPIC_API_KEY",
                "is not set, but ANTHROPIC_BASE_URL is: the Anthropic route needs both, or \
                 neither (unset ANTHROPIC_BASE_URL)",
            ));
        }
        (None, None) => {}
    }

    let resource = vars.get("ANTHROPIC_FOUNDRY_RESOURCE");
    let base_url = vars.get("ANTHROPIC_FOUNDRY_BASE_URL");
    let key = vars.get("ANTHROPIC_FOUNDRY_API_KEY");
    let skip_auth = vars.set("CLAUDE_CODE_SKIP_FOUNDRY_AUTH")?;
    let wanted = [
        (
            "CLAUDE_CODE_USE_FOUNDRY",
            vars.set("CLAUDE_CODE_USE_FOUNDRY")?,
        ),
        ("ANTHROPIC_FOUNDRY_API_KEY", key.is_some()),
        ("CLAUDE_CODE_SKIP_FOUNDRY_AUTH", skip_auth),
    ];
    let endpoint = match (resource, base_url) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                "ANTHROPIC_FOUNDRY_BASE_URL",
                "and ANTHROPIC_FOUNDRY_RESOURCE are both set; they are mutually exclusive, \
                 as they are for Claude Code: unset one",
            ));
        }
        (Some(resource), None) => Some(
            Endpoint::foundry_resource(&resource).map_err(auth("ANTHROPIC_FOUNDRY_RESOURCE"))?,
        ),
        (None, Some(url)) => {
            not_this_gateway("ANTHROPIC_FOUNDRY_BASE_URL", &url, listen)?;
            Some(Endpoint::foundry_base_url(&url).map_err(auth("ANTHROPIC_FOUNDRY_BASE_URL"))?)
        }
        (None, None) => {
            if let Some((why, _)) = wanted.iter().find(|(_, on)| *on) {
                return Err(ConfigError::new(
                    "ANTHROPIC_FOUNDRY_RESOURCE",
                    format!(
                        "is not set, nor ANTHROPIC_FOUNDRY_BASE_URL, but {why} is: the Foundry \
                         route needs its endpoint"
                    ),
                ));
            }
            None
        }
    };
    if let Some(endpoint) = endpoint {
        let credential = match (key, skip_auth) {
            (Some(_), _) if forwards(FOUNDRY) => {
                return Err(key_with_passthrough("ANTHROPIC_FOUNDRY_API_KEY", FOUNDRY));
            }
            (None, true) if forwards(FOUNDRY) => {
                return Err(ConfigError::new(
                    "CLAUDE_CODE_SKIP_FOUNDRY_AUTH",
                    "says to send no credential, but CLAUDE_TOWER_PASSTHROUGH makes the foundry \
                     route forward each caller's own: unset one",
                ));
            }
            (None, false) if forwards(FOUNDRY) => Credential::passthrough(),
            (Some(_), true) => {
                return Err(ConfigError::new(
                    "CLAUDE_CODE_SKIP_FOUNDRY_AUTH",
                    "says to send no credential, but ANTHROPIC_FOUNDRY_API_KEY is set: unset one",
                ));
            }
            (Some(key), false) => Credential::foundry_api_key(Secret::from(key))
                .map_err(auth("ANTHROPIC_FOUNDRY_API_KEY"))?,
            (None, true) => Credential::none(),
            (None, false) => {
                Credential::entra(Arc::new(EnvCredentialChain::from_env_with(vars.lookup)))
            }
        };
        routes.push(Route::new(FOUNDRY, endpoint, credential));
    }
    Ok(routes)
}

fn auth(setting: &'static str) -> impl Fn(claude_tower::auth::ConfigError) -> ConfigError {
    move |err| ConfigError::new(setting, err.to_string())
}

/// A base URL on this gateway's own port, on loopback or its own listen
/// address, would send every request back to the gateway. (Another host on
/// the same port is another gateway: chaining them is allowed.)
fn not_this_gateway(setting: &str, url: &str, listen: SocketAddr) -> Result<(), ConfigError> {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return Ok(());
    };
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
    let local = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip == listen.ip());
    if local && port == listen.port() {
        return Err(ConfigError::new(
            setting,
            format!(
                "`{url}` is this gateway ({listen}): requests would loop. It is the value for \
                 clients (Claude Code), not for the gateway"
            ),
        ));
    }
    Ok(())
}

/// One `[[routes]]` entry.
fn file_route(
    r: &RouteSection,
    listen: SocketAddr,
    passthrough: &[String],
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<Route, ConfigError> {
    let at = |key: &str| format!("routes.{}.{key} (config file)", r.name);
    if r.name.trim().is_empty() {
        return Err(ConfigError::new(
            "routes.name (config file)",
            "every route needs a name",
        ));
    }
    if let Some(url) = &r.base_url {
        not_this_gateway(&at("base_url"), url, listen)?;
    }
    let key = match (&r.api_key, &r.api_key_env) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                at("api_key"),
                "and api_key_env are both set: keep one",
            ));
        }
        (Some(key), None) => Some(key.clone()),
        (None, Some(name)) => Some(lookup(name).filter(|v| !v.trim().is_empty()).ok_or_else(
            || {
                ConfigError::new(
                    name.clone(),
                    format!(
                        "is not set, and route `{}` of the config file reads its key from it",
                        r.name
                    ),
                )
            },
        )?),
        (None, None) => None,
    };
    let mut auth_mode = r.auth.as_deref().map(str::to_ascii_lowercase);
    if passthrough.contains(&r.name) {
        if !matches!(auth_mode.as_deref(), None | Some("passthrough")) {
            return Err(ConfigError::new(
                "CLAUDE_TOWER_PASSTHROUGH",
                format!(
                    "names route `{}`, whose auth in the config file is not passthrough",
                    r.name
                ),
            ));
        }
        auth_mode = Some("passthrough".to_owned());
    }
    let bad = |key: &str, problem: &str| Err(ConfigError::new(at(key), problem.to_owned()));
    if auth_mode.as_deref() == Some("passthrough") {
        if key.is_some() {
            return bad(
                "auth",
                "is passthrough (each caller's own credential), but a key is set: drop the key",
            );
        }
        return Ok(Route::new(
            r.name.as_str(),
            file_endpoint(r)?,
            Credential::passthrough(),
        ));
    }
    match r.face.to_ascii_lowercase().as_str() {
        "anthropic" => {
            let endpoint = file_endpoint(r)?;
            let Some(key) = key else {
                return bad(
                    "api_key_env",
                    "an Anthropic route needs a key (api_key_env or api_key)",
                );
            };
            if !matches!(auth_mode.as_deref(), None | Some("key")) {
                return bad(
                    "auth",
                    "an Anthropic route signs with its key only (auth = \"key\")",
                );
            }
            let credential = Credential::anthropic_api_key(Secret::from(key))
                .map_err(|e| ConfigError::new(at("api_key"), e.to_string()))?;
            Ok(Route::new(r.name.as_str(), endpoint, credential))
        }
        "foundry" => {
            let endpoint = file_endpoint(r)?;
            let credential = match (auth_mode.as_deref(), key) {
                (None | Some("key"), Some(key)) => {
                    Credential::foundry_api_key(Secret::from(key))
                        .map_err(|e| ConfigError::new(at("api_key"), e.to_string()))?
                }
                (Some("key"), None) => {
                    return bad("api_key_env", "auth = \"key\" needs api_key_env or api_key");
                }
                (None | Some("entra"), None) => {
                    Credential::entra(Arc::new(EnvCredentialChain::from_env_with(lookup)))
                }
                (Some("none"), None) => Credential::none(),
                (Some("entra" | "none"), Some(_)) => {
                    return bad("auth", "says not to use a key, but one is set");
                }
                (Some(_), _) => {
                    return bad("auth", "is not one of key, entra, none, passthrough");
                }
            };
            Ok(Route::new(r.name.as_str(), endpoint, credential))
        }
        // NOTE: file_endpoint refuses any other face.
        _ => Err(file_endpoint(r)
            .err()
            .unwrap_or_else(|| ConfigError::new(at("face"), "is not anthropic or foundry"))),
    }
}

/// A `[[routes]]` entry's endpoint, by its face.
fn file_endpoint(r: &RouteSection) -> Result<Endpoint, ConfigError> {
    let at = |key: &str| format!("routes.{}.{key} (config file)", r.name);
    match r.face.to_ascii_lowercase().as_str() {
        "anthropic" if r.resource.is_some() => Err(ConfigError::new(
            at("resource"),
            "is a Foundry setting; use base_url",
        )),
        "anthropic" => match &r.base_url {
            Some(url) => Endpoint::anthropic_base_url(url)
                .map_err(|e| ConfigError::new(at("base_url"), e.to_string())),
            None => Ok(Endpoint::anthropic()),
        },
        "foundry" => Endpoint::foundry(r.resource.as_deref(), r.base_url.as_deref())
            .map_err(|e| ConfigError::new(at("resource"), e.to_string())),
        other => Err(ConfigError::new(
            at("face"),
            format!("`{other}` is not anthropic or foundry"),
        )),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A lookup over `vars` alone.
    pub(crate) fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn decide(vars: &[(&str, &str)]) -> Result<Upstream, ConfigError> {
        let lookup = env(vars);
        let config = GatewayConfig::from_lookup(&lookup)?;
        resolve(&config, &lookup)
    }

    fn fails_on(vars: &[(&str, &str)]) -> String {
        match decide(vars) {
            Err(err) => err.setting().to_owned(),
            Ok(up) => panic!("{vars:?} should fail, got {up:?}"),
        }
    }

    #[test]
    fn nothing_set_on_loopback_is_the_simulator() {
        assert!(matches!(
            decide(&[]),
            Ok(Upstream::Simulator(SimulatorReason::NothingConfigured))
        ));
        assert!(matches!(
            decide(&[("CLAUDE_CODE_USE_FOUNDRY", "0"), ("ANTHROPIC_API_KEY", " ")]),
            Ok(Upstream::Simulator(_))
        ));
    }

    #[test]
    fn partial_upstreams_fail_naming_the_variable() {
        for (vars, named) in [
            (
                &[("ANTHROPIC_BASE_URL", "https://x.example")][..],
                "ANTHROPIC_API_KEY",
            ),
            (&[("ANTHROPIC_AUTH_TOKEN", "t")], "ANTHROPIC_AUTH_TOKEN"),
            (
                &[("ANTHROPIC_AUTH_TOKEN", "t"), ("ANTHROPIC_API_KEY", "k")],
                "ANTHROPIC_AUTH_TOKEN",
            ),
            (
                &[("CLAUDE_CODE_USE_FOUNDRY", "1")],
                "ANTHROPIC_FOUNDRY_RESOURCE",
            ),
            (
                &[("ANTHROPIC_FOUNDRY_API_KEY", "fk")],
                "ANTHROPIC_FOUNDRY_RESOURCE",
            ),
            (
                &[("CLAUDE_CODE_SKIP_FOUNDRY_AUTH", "1")],
                "ANTHROPIC_FOUNDRY_RESOURCE",
            ),
            (
                &[("CLAUDE_CODE_USE_FOUNDRY", "maybe")],
                "CLAUDE_CODE_USE_FOUNDRY",
            ),
            (
                &[
                    ("ANTHROPIC_FOUNDRY_RESOURCE", "r"),
                    ("ANTHROPIC_FOUNDRY_BASE_URL", "https://r.example/anthropic"),
                ],
                "ANTHROPIC_FOUNDRY_BASE_URL",
            ),
            (
                &[
                    ("ANTHROPIC_FOUNDRY_RESOURCE", "r"),
                    ("ANTHROPIC_FOUNDRY_AUTH_TOKEN", "t"),
                ],
                "ANTHROPIC_FOUNDRY_AUTH_TOKEN",
            ),
            (
                &[
                    ("ANTHROPIC_FOUNDRY_RESOURCE", "r"),
                    ("ANTHROPIC_FOUNDRY_API_KEY", "k"),
                    ("CLAUDE_CODE_SKIP_FOUNDRY_AUTH", "true"),
                ],
                "CLAUDE_CODE_SKIP_FOUNDRY_AUTH",
            ),
            (
                &[("CLAUDE_CODE_USE_BEDROCK", "1")],
                "CLAUDE_CODE_USE_BEDROCK",
            ),
            (
                &[("ANTHROPIC_VERTEX_PROJECT_ID", "p")],
                "ANTHROPIC_VERTEX_PROJECT_ID",
            ),
            (
                &[
                    ("ANTHROPIC_API_KEY", "k"),
                    ("ANTHROPIC_BASE_URL", "http://127.0.0.1:8787"),
                ],
                "ANTHROPIC_BASE_URL",
            ),
            (
                &[
                    ("ANTHROPIC_API_KEY", "k"),
                    ("ANTHROPIC_BASE_URL", "not a url"),
                ],
                "ANTHROPIC_BASE_URL",
            ),
            (
                &[("ANTHROPIC_FOUNDRY_RESOURCE", "bad name!")],
                "ANTHROPIC_FOUNDRY_RESOURCE",
            ),
        ] {
            assert_eq!(fails_on(vars), named, "{vars:?}");
        }
    }

    #[test]
    fn off_loopback_the_simulator_needs_asking() {
        let public = [
            ("CLAUDE_TOWER_LISTEN", "0.0.0.0:8787"),
            ("CLAUDE_TOWER_CLIENT_KEYS", "k"),
        ];
        let err = decide(&public).unwrap_err();
        assert!(err.problem().contains("--simulator"), "{err}");
        let mut asked = public.to_vec();
        asked.push(("CLAUDE_TOWER_SIMULATOR", "1"));
        assert!(matches!(
            decide(&asked),
            Ok(Upstream::Simulator(SimulatorReason::Asked))
        ));
        asked.push(("ANTHROPIC_API_KEY", "k"));
        assert_eq!(fails_on(&asked), "CLAUDE_TOWER_SIMULATOR");
    }

    #[test]
    fn whole_routes_from_variables() {
        let Ok(Upstream::Routes(routes)) = decide(&[
            ("ANTHROPIC_API_KEY", "k"),
            ("CLAUDE_CODE_USE_FOUNDRY", "1"),
            ("ANTHROPIC_FOUNDRY_RESOURCE", "res"),
            ("CLAUDE_CODE_SKIP_FOUNDRY_AUTH", "1"),
        ]) else {
            panic!("two routes")
        };
        let kinds: Vec<_> = routes
            .iter()
            .map(|r| (r.id().to_string(), r.credential().kind()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("anthropic".into(), "anthropic-api-key"),
                ("foundry".into(), "none")
            ]
        );
        let Ok(Upstream::Routes(routes)) =
            decide(&[("ANTHROPIC_FOUNDRY_BASE_URL", "https://f.example/anthropic")])
        else {
            panic!("one route")
        };
        assert_eq!(routes[0].credential().kind(), "entra-id");
        // Another gateway on the same port elsewhere is not this one.
        assert!(matches!(
            decide(&[
                ("CLAUDE_TOWER_LISTEN", "0.0.0.0:8787"),
                ("CLAUDE_TOWER_CLIENT_KEYS", "k"),
                ("ANTHROPIC_API_KEY", "k"),
                ("ANTHROPIC_BASE_URL", "http://10.0.0.5:8787"),
            ]),
            Ok(Upstream::Routes(_))
        ));
        assert_eq!(
            fails_on(&[
                ("CLAUDE_TOWER_LISTEN", "0.0.0.0:8787"),
                ("CLAUDE_TOWER_CLIENT_KEYS", "k"),
                (
                    "ANTHROPIC_FOUNDRY_BASE_URL",
                    "http://localhost:8787/anthropic"
                ),
            ]),
            "ANTHROPIC_FOUNDRY_BASE_URL"
        );
    }

    #[test]
    fn passthrough_routes_need_no_key_and_must_exist() {
        let kinds = |vars: &[(&str, &str)]| match decide(vars) {
            Ok(Upstream::Routes(routes)) => routes
                .iter()
                .map(|r| (r.id().to_string(), r.credential().kind()))
                .collect::<Vec<_>>(),
            other => panic!("{vars:?}: {other:?}"),
        };
        assert_eq!(
            kinds(&[
                ("CLAUDE_TOWER_PASSTHROUGH", "foundry"),
                ("ANTHROPIC_FOUNDRY_RESOURCE", "res"),
                ("ANTHROPIC_API_KEY", "k"),
            ]),
            [
                ("anthropic".into(), "anthropic-api-key"),
                ("foundry".into(), "passthrough")
            ]
        );
        assert_eq!(
            kinds(&[("CLAUDE_TOWER_PASSTHROUGH", "anthropic")]),
            [("anthropic".into(), "passthrough")]
        );
        for (vars, named) in [
            (
                &[("CLAUDE_TOWER_PASSTHROUGH", "foundry")][..],
                "CLAUDE_TOWER_PASSTHROUGH",
            ),
            (
                &[
                    ("CLAUDE_TOWER_PASSTHROUGH", "foundry,east"),
                    ("ANTHROPIC_FOUNDRY_RESOURCE", "res"),
                ],
                "CLAUDE_TOWER_PASSTHROUGH",
            ),
            (
                &[
                    ("CLAUDE_TOWER_PASSTHROUGH", "foundry"),
                    ("ANTHROPIC_FOUNDRY_RESOURCE", "res"),
                    ("ANTHROPIC_FOUNDRY_API_KEY", "fk"),
                ],
                "ANTHROPIC_FOUNDRY_API_KEY",
            ),
            (
                &[
                    ("CLAUDE_TOWER_PASSTHROUGH", "foundry"),
                    ("ANTHROPIC_FOUNDRY_RESOURCE", "res"),
                    ("CLAUDE_CODE_SKIP_FOUNDRY_AUTH", "1"),
                ],
                "CLAUDE_CODE_SKIP_FOUNDRY_AUTH",
            ),
            (
                &[
                    ("CLAUDE_TOWER_PASSTHROUGH", "anthropic"),
                    ("ANTHROPIC_API_KEY", "k"),
                ],
                "ANTHROPIC_API_KEY",
            ),
            (
                &[
                    ("CLAUDE_TOWER_PASSTHROUGH", "anthropic"),
                    ("CLAUDE_TOWER_SIMULATOR", "1"),
                ],
                "CLAUDE_TOWER_SIMULATOR",
            ),
        ] {
            let err = decide(vars).expect_err("fails");
            assert_eq!(err.setting(), named, "{vars:?}: {err}");
        }
    }

    #[test]
    fn file_routes_may_forward_callers_credentials() {
        let text = "[[routes]]\nname = \"east\"\nface = \"foundry\"\nresource = \"east\"\n\
                    [[routes]]\nname = \"direct\"\nface = \"anthropic\"\nauth = \"passthrough\"\n";
        let Ok(Upstream::Routes(routes)) = from_file(text, &[("CLAUDE_TOWER_PASSTHROUGH", "east")])
        else {
            panic!("routes")
        };
        let kinds: Vec<_> = routes.iter().map(|r| r.credential().kind()).collect();
        assert_eq!(kinds, ["passthrough", "passthrough"]);
        let err = from_file(text, &[("CLAUDE_TOWER_PASSTHROUGH", "west")]).unwrap_err();
        assert_eq!(err.setting(), "CLAUDE_TOWER_PASSTHROUGH");
        let keyed = "[[routes]]\nname = \"d\"\nface = \"anthropic\"\napi_key = \"k\"\nauth = \"passthrough\"\n";
        assert_eq!(
            from_file(keyed, &[]).unwrap_err().setting(),
            "routes.d.auth (config file)"
        );
    }

    fn from_file(text: &str, vars: &[(&str, &str)]) -> Result<Upstream, ConfigError> {
        let lookup = env(vars);
        let file = crate::file::FileConfig::parse(text)?;
        let settings = crate::settings::Settings::from_lookup(&lookup);
        let config = GatewayConfig::resolve(&settings, &file, &lookup)?;
        resolve(&config, &lookup)
    }

    #[test]
    fn file_routes_sign_as_told_or_fail_naming_the_key() {
        let routes = |text: &str, vars: &[(&str, &str)]| match from_file(text, vars) {
            Ok(Upstream::Routes(routes)) => routes
                .iter()
                .map(|r| (r.id().to_string(), r.credential().kind()))
                .collect::<Vec<_>>(),
            other => panic!("{text}: {other:?}"),
        };
        let text = r#"
            [[routes]]
            name = "east"
            face = "foundry"
            resource = "east"
            [[routes]]
            name = "relay"
            face = "foundry"
            base_url = "https://relay.example/anthropic"
            auth = "none"
            [[routes]]
            name = "direct"
            face = "anthropic"
            api_key_env = "ANTHROPIC_API_KEY"
        "#;
        assert_eq!(
            routes(text, &[("ANTHROPIC_API_KEY", "k")]),
            [
                ("east".into(), "entra-id"),
                ("relay".into(), "none"),
                ("direct".into(), "anthropic-api-key")
            ]
        );
        for (text, vars, named) in [
            (
                "[[routes]]\nname = \"a\"\nface = \"anthropic\"\n",
                &[][..],
                "routes.a.api_key_env (config file)",
            ),
            (
                "[[routes]]\nname = \"a\"\nface = \"anthropic\"\napi_key_env = \"K\"\n",
                &[],
                "K",
            ),
            (
                "[[routes]]\nname = \"f\"\nface = \"foundry\"\nresource = \"r\"\napi_key = \"k\"\nauth = \"none\"\n",
                &[],
                "routes.f.auth (config file)",
            ),
            (
                "[[routes]]\nname = \"f\"\nface = \"bedrock\"\n",
                &[],
                "routes.f.face (config file)",
            ),
            (
                "[[routes]]\nname = \"f\"\nface = \"foundry\"\nresource = \"r\"\n",
                &[("ANTHROPIC_FOUNDRY_API_KEY", "stray")],
                "ANTHROPIC_FOUNDRY_API_KEY",
            ),
        ] {
            let err = from_file(text, vars).expect_err(text);
            assert_eq!(err.setting(), named, "{text}: {err}");
        }
        let lookup = env(&[("CLAUDE_TOWER_SIMULATOR", "1")]);
        let file = crate::file::FileConfig::parse(text).unwrap();
        let settings = crate::settings::Settings::from_lookup(&lookup);
        let config = GatewayConfig::resolve(&settings, &file, &lookup).unwrap();
        assert_eq!(
            resolve(&config, &lookup).unwrap_err().setting(),
            "CLAUDE_TOWER_SIMULATOR"
        );
    }
}
