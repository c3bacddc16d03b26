//! The routes in order, with their model maps and retry policies.
//!
//! Which routes exist is [`upstream`](crate::upstream)'s decision; this
//! module applies the gateway's settings to them: `CLAUDE_TOWER_ROUTES`
//! (order, and which to keep), `CLAUDE_TOWER_MODEL_MAP` and the per-route
//! `model_map` of the config file, and the retry settings.

use std::fmt;

use claude_tower::prelude::*;
use claude_tower::stack::Route;

use crate::config::{GatewayConfig, ModelRule};

/// The route names the gateway uses.
pub const ANTHROPIC: &str = "anthropic";
/// The Foundry route's name.
pub const FOUNDRY: &str = "foundry";

/// Why the routes could not be set up.
#[derive(Debug)]
pub enum RoutesError {
    /// A route's variables are wrong (names the variable).
    Auth(claude_tower::auth::ConfigError),
    /// `CLAUDE_TOWER_ROUTES` names a route that is not configured.
    UnknownRoute {
        /// The name given.
        name: String,
        /// The routes that are configured.
        configured: Vec<String>,
    },
    /// `CLAUDE_TOWER_MODEL_MAP` names a route that is not configured.
    UnknownModelMapRoute(String),
}

impl fmt::Display for RoutesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoutesError::Auth(err) => write!(f, "{err}"),
            RoutesError::UnknownRoute { name, configured } => write!(
                f,
                "CLAUDE_TOWER_ROUTES: `{name}` is not a configured route (configured: {})",
                configured.join(", ")
            ),
            RoutesError::UnknownModelMapRoute(name) => write!(
                f,
                "CLAUDE_TOWER_MODEL_MAP: route `{name}` is not a configured route"
            ),
        }
    }
}

impl std::error::Error for RoutesError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RoutesError::Auth(err) => Some(err),
            _ => None,
        }
    }
}

impl From<claude_tower::auth::ConfigError> for RoutesError {
    fn from(err: claude_tower::auth::ConfigError) -> Self {
        RoutesError::Auth(err)
    }
}

/// Puts `routes` in the configured order (default: as given, i.e. Anthropic
/// first), keeping only the named ones when an order is given, and applies
/// the model map.
pub fn arrange(mut routes: Vec<Route>, config: &GatewayConfig) -> Result<Vec<Route>, RoutesError> {
    for rule in &config.model_map {
        if let Some(name) = &rule.route
            && !routes.iter().any(|r| r.id() == name.as_str())
        {
            return Err(RoutesError::UnknownModelMapRoute(name.clone()));
        }
    }
    routes = routes
        .into_iter()
        .map(|route| {
            let mapping = mapping_for(&route, &config.model_map);
            let retry = retry_for(route.id(), config);
            route.with_model_map(mapping).with_retry(retry)
        })
        .collect();
    let Some(order) = &config.route_order else {
        return Ok(routes);
    };
    let configured: Vec<String> = routes.iter().map(|r| r.id().to_string()).collect();
    let mut ordered = Vec::with_capacity(order.len());
    for name in order {
        let Some(at) = routes.iter().position(|r| r.id() == name.as_str()) else {
            return Err(RoutesError::UnknownRoute {
                name: name.clone(),
                configured,
            });
        };
        ordered.push(routes.remove(at));
    }
    Ok(ordered)
}

/// The retry policy for one route, from the gateway's retry settings.
fn retry_for(id: &RouteId, config: &GatewayConfig) -> RetryAfterPolicy {
    let mut builder = RetryAfterPolicy::builder(id.clone());
    if let Some(attempts) = config.retry_attempts {
        builder = builder.with_max_attempts(attempts);
    }
    if let Some((base, cap)) = config.retry_backoff {
        builder = builder.with_backoff(base, cap);
    }
    // NOTE: both settings were validated when the configuration was read.
    builder
        .build()
        .unwrap_or_else(|_| RetryAfterPolicy::new(id.clone()))
}

/// The model mapping for one route: its own rules, plus route-less rules on
/// Foundry routes (deployment names are a Foundry matter).
fn mapping_for(route: &Route, rules: &[ModelRule]) -> ModelMapping {
    rules
        .iter()
        .filter(|rule| match &rule.route {
            Some(name) => route.id() == name.as_str(),
            None => route.face() == Face::Foundry,
        })
        .fold(ModelMapping::new(), |mapping, rule| {
            if rule.prefix {
                mapping.prefix(rule.from.clone(), rule.to.clone())
            } else {
                mapping.exact(rule.from.clone(), rule.to.clone())
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> GatewayConfig {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        GatewayConfig::from_lookup(|name| map.get(name).cloned()).unwrap()
    }

    fn two() -> Vec<Route> {
        vec![
            Route::new(
                ANTHROPIC,
                Endpoint::anthropic(),
                Credential::anthropic_api_key(Secret::new("sk-ant")).unwrap(),
            ),
            Route::new(
                FOUNDRY,
                Endpoint::foundry_resource("res").unwrap(),
                Credential::foundry_api_key(Secret::new("fk")).unwrap(),
            ),
        ]
    }

    #[test]
    fn as_given_unless_ordered() {
        let ids: Vec<_> = arrange(two(), &config(&[]))
            .unwrap()
            .iter()
            .map(|r| r.id().to_string())
            .collect();
        assert_eq!(ids, ["anthropic", "foundry"]);

        let ordered = arrange(two(), &config(&[("CLAUDE_TOWER_ROUTES", "foundry")])).unwrap();
        assert_eq!(ordered.len(), 1);
        assert_eq!(ordered[0].id(), "foundry");
        assert_eq!(
            ordered[0].endpoint().base_url(),
            "https://res.services.ai.azure.com/anthropic"
        );
    }

    #[test]
    fn unknown_names_are_clear_errors() {
        let one = || two().into_iter().take(1).collect::<Vec<_>>();
        let err = arrange(one(), &config(&[("CLAUDE_TOWER_ROUTES", "foundry")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "CLAUDE_TOWER_ROUTES: `foundry` is not a configured route (configured: anthropic)"
        );
        let err = arrange(one(), &config(&[("CLAUDE_TOWER_MODEL_MAP", "azure:a=b")])).unwrap_err();
        assert!(err.to_string().contains("`azure`"), "{err}");
    }
}
