//! Building an [`AuthLayer`] from the variables Claude Code reads.
//!
//! | variable | meaning |
//! |---|---|
//! | `CLAUDE_CODE_USE_FOUNDRY` | `1`/`true`: the Foundry route (also implied by either Foundry endpoint variable) |
//! | `ANTHROPIC_API_KEY` | Anthropic direct: the key |
//! | `ANTHROPIC_BASE_URL` | Anthropic direct: another base URL (ignored in Foundry mode, as Claude Code does) |
//! | `ANTHROPIC_FOUNDRY_RESOURCE` | Foundry: `https://{resource}.services.ai.azure.com/anthropic` |
//! | `ANTHROPIC_FOUNDRY_BASE_URL` | Foundry: a full base URL (exclusive with the resource) |
//! | `ANTHROPIC_FOUNDRY_API_KEY` | Foundry: the key; without it, Entra ID through [`EnvCredentialChain`](crate::EnvCredentialChain) |
//! | `CLAUDE_CODE_SKIP_FOUNDRY_AUTH` | `1`/`true`: Foundry without a credential (a gateway further on authenticates) |
//!
//! Every constructor has a `_with` twin taking the lookup as a closure, so
//! tests (which run in parallel) never touch the process environment.

use crate::{AuthLayer, ConfigError, Credential, Endpoint, Secret};

fn truthy(value: Option<String>) -> bool {
    value.is_some_and(|v| matches!(v.trim(), "1" | "true" | "TRUE" | "True" | "yes"))
}

struct Vars<F>(F);

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }
}

impl AuthLayer {
    /// [`from_env_with`](Self::from_env_with) on the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_with(|name| std::env::var(name).ok())
    }

    /// The Foundry route when `CLAUDE_CODE_USE_FOUNDRY` is set or either
    /// Foundry endpoint variable is, else Anthropic direct.
    ///
    /// ```
    /// use claude_tower_auth::{AuthLayer, ConfigError};
    /// use claude_tower_core::Face;
    ///
    /// let env = |name: &str| match name {
    ///     "ANTHROPIC_FOUNDRY_RESOURCE" => Some("my-res".to_owned()),
    ///     "ANTHROPIC_FOUNDRY_API_KEY" => Some("fk".to_owned()),
    ///     _ => None,
    /// };
    /// let layer = AuthLayer::from_env_with(env)?;
    /// assert_eq!(layer.endpoint().face(), Face::Foundry);
    /// assert_eq!(layer.credential().kind(), "foundry-api-key");
    /// # Ok::<(), ConfigError>(())
    /// ```
    pub fn from_env_with(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars(&lookup);
        let foundry = truthy(vars.get("CLAUDE_CODE_USE_FOUNDRY"))
            || vars.get("ANTHROPIC_FOUNDRY_RESOURCE").is_some()
            || vars.get("ANTHROPIC_FOUNDRY_BASE_URL").is_some();
        if foundry {
            Self::foundry_from_env_with(lookup)
        } else {
            Self::anthropic_from_env_with(lookup)
        }
    }

    /// Anthropic direct: `ANTHROPIC_API_KEY` (required) and `ANTHROPIC_BASE_URL`.
    pub fn anthropic_from_env_with(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let vars = Vars(lookup);
        let endpoint = match vars.get("ANTHROPIC_BASE_URL") {
            Some(url) => Endpoint::anthropic_base_url(&url)?,
            None => Endpoint::anthropic(),
        };
        let key = vars
            .get("ANTHROPIC_API_KEY")
            .ok_or(ConfigError::MissingVariable {
                variable: "ANTHROPIC_API_KEY",
            })?;
        Ok(Self::new(
            endpoint,
            Credential::anthropic_api_key(Secret::from(key))?,
        ))
    }

    /// Azure AI Foundry: the endpoint from `ANTHROPIC_FOUNDRY_RESOURCE` xor
    /// `ANTHROPIC_FOUNDRY_BASE_URL`; the key from `ANTHROPIC_FOUNDRY_API_KEY`,
    /// else no credential if `CLAUDE_CODE_SKIP_FOUNDRY_AUTH` is set, else
    /// Entra ID through `EnvCredentialChain`
    /// (feature `entra`) with the default scope.
    pub fn foundry_from_env_with(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let vars = Vars(&lookup);
        let endpoint = Endpoint::foundry(
            vars.get("ANTHROPIC_FOUNDRY_RESOURCE").as_deref(),
            vars.get("ANTHROPIC_FOUNDRY_BASE_URL").as_deref(),
        )?;
        let credential = if let Some(key) = vars.get("ANTHROPIC_FOUNDRY_API_KEY") {
            Credential::foundry_api_key(Secret::from(key))?
        } else if truthy(vars.get("CLAUDE_CODE_SKIP_FOUNDRY_AUTH")) {
            Credential::none()
        } else {
            entra_from_env(&lookup)?
        };
        Ok(Self::new(endpoint, credential))
    }
}

#[cfg(feature = "entra")]
fn entra_from_env(lookup: &impl Fn(&str) -> Option<String>) -> Result<Credential, ConfigError> {
    let chain = crate::EnvCredentialChain::from_env_with(lookup);
    Ok(Credential::entra_dyn(
        std::sync::Arc::new(chain),
        "EnvCredentialChain",
        crate::EntraConfig::default(),
    ))
}

#[cfg(not(feature = "entra"))]
fn entra_from_env(_lookup: &impl Fn(&str) -> Option<String>) -> Result<Credential, ConfigError> {
    Err(ConfigError::EntraUnavailable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use claude_tower_core::Face;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn anthropic_needs_a_key() {
        assert_eq!(
            AuthLayer::from_env_with(env(&[])).unwrap_err(),
            ConfigError::MissingVariable {
                variable: "ANTHROPIC_API_KEY"
            }
        );
        let layer = AuthLayer::from_env_with(env(&[
            ("ANTHROPIC_API_KEY", "sk"),
            ("ANTHROPIC_BASE_URL", "http://127.0.0.1:1234"),
        ]))
        .expect("anthropic");
        assert_eq!(layer.endpoint().face(), Face::Anthropic);
        assert_eq!(layer.endpoint().base_url(), "http://127.0.0.1:1234");
        assert_eq!(layer.credential().kind(), "anthropic-api-key");
    }

    #[test]
    fn foundry_endpoint_forms_are_exclusive() {
        let err = AuthLayer::from_env_with(env(&[
            ("ANTHROPIC_FOUNDRY_RESOURCE", "r"),
            ("ANTHROPIC_FOUNDRY_BASE_URL", "https://gw/anthropic"),
            ("ANTHROPIC_FOUNDRY_API_KEY", "fk"),
        ]))
        .unwrap_err();
        assert_eq!(err, ConfigError::ConflictingFoundryEndpoint);
        assert!(err.to_string().contains("mutually exclusive"));

        let err = AuthLayer::from_env_with(env(&[("CLAUDE_CODE_USE_FOUNDRY", "1")])).unwrap_err();
        assert_eq!(err, ConfigError::MissingFoundryEndpoint);
    }

    #[test]
    fn foundry_mode_ignores_anthropic_base_url() {
        let layer = AuthLayer::from_env_with(env(&[
            ("ANTHROPIC_BASE_URL", "http://ignored"),
            ("ANTHROPIC_FOUNDRY_BASE_URL", "https://gw.example/anthropic"),
            ("ANTHROPIC_FOUNDRY_API_KEY", "fk"),
        ]))
        .expect("foundry");
        assert_eq!(layer.endpoint().base_url(), "https://gw.example/anthropic");
        assert_eq!(layer.credential().kind(), "foundry-api-key");
    }

    #[test]
    fn foundry_skip_auth_sends_no_credential() {
        let layer = AuthLayer::from_env_with(env(&[
            ("ANTHROPIC_FOUNDRY_RESOURCE", "r"),
            ("CLAUDE_CODE_SKIP_FOUNDRY_AUTH", "1"),
        ]))
        .expect("foundry");
        assert_eq!(layer.credential().kind(), "none");
    }

    #[test]
    fn foundry_without_a_key_uses_entra_or_says_why_not() {
        let result = AuthLayer::from_env_with(env(&[("ANTHROPIC_FOUNDRY_RESOURCE", "r")]));
        #[cfg(feature = "entra")]
        assert_eq!(result.expect("entra").credential().kind(), "entra-id");
        #[cfg(not(feature = "entra"))]
        assert_eq!(result.unwrap_err(), ConfigError::EntraUnavailable);
    }
}
