//! What a route sends to prove who it is.

use std::fmt;
#[cfg(feature = "entra")]
use std::sync::Arc;

use claude_tower_core::headers::{API_KEY, X_API_KEY};
use http::HeaderValue;

#[cfg(feature = "entra")]
use crate::cache::{EntraConfig, TokenCache};
use crate::{ConfigError, Secret};

/// A route's credential.
///
/// | constructor | sends |
/// |---|---|
/// | [`anthropic_api_key`](Self::anthropic_api_key) | `x-api-key` |
/// | [`foundry_api_key`](Self::foundry_api_key) | `x-api-key` and `api-key` (what the official SDKs send) |
/// | `entra` (feature `entra`) | `Authorization: Bearer <token>`, cached and refreshed ahead |
/// | [`none`](Self::none) | nothing (a gateway further on authenticates) |
///
/// Cloning is cheap and clones share one token cache.
///
/// ```
/// use claude_tower_auth::{Credential, Secret};
///
/// let key = Credential::anthropic_api_key(Secret::new("sk-ant-xyz"))?;
/// assert_eq!(key.kind(), "anthropic-api-key");
/// assert!(!format!("{key:?}").contains("sk-ant-xyz"));
/// # Ok::<(), claude_tower_auth::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Credential {
    pub(crate) kind: Kind,
}

#[derive(Clone)]
pub(crate) enum Kind {
    None,
    ApiKey {
        value: HeaderValue,
        /// Also send `api-key` (Foundry).
        azure_header: bool,
    },
    #[cfg(feature = "entra")]
    Bearer(TokenCache),
}

impl Credential {
    /// An Anthropic API key, sent as `x-api-key`.
    pub fn anthropic_api_key(key: Secret) -> Result<Self, ConfigError> {
        Ok(Self {
            kind: Kind::ApiKey {
                value: header_value(&key, "Anthropic API key")?,
                azure_header: false,
            },
        })
    }

    /// A Foundry resource key, sent as both `x-api-key` and `api-key`.
    pub fn foundry_api_key(key: Secret) -> Result<Self, ConfigError> {
        Ok(Self {
            kind: Kind::ApiKey {
                value: header_value(&key, "Foundry API key")?,
                azure_header: true,
            },
        })
    }

    /// No credential: inbound credentials are still removed, none is added.
    /// For a route whose next hop authenticates on its own
    /// (`CLAUDE_CODE_SKIP_FOUNDRY_AUTH=1`).
    pub fn none() -> Self {
        Self { kind: Kind::None }
    }

    /// Entra ID bearer tokens from any `azure_identity` credential, with the
    /// default [`EntraConfig`] (scope `https://ai.azure.com/.default`,
    /// refresh 5 minutes ahead). Errors name the credential by its type.
    #[cfg(feature = "entra")]
    pub fn entra<T>(credential: Arc<T>) -> Self
    where
        T: azure_core::credentials::TokenCredential + 'static,
    {
        Self::entra_with(credential, EntraConfig::default())
    }

    /// Like [`entra`](Self::entra), with an explicit [`EntraConfig`].
    #[cfg(feature = "entra")]
    pub fn entra_with<T>(credential: Arc<T>, config: EntraConfig) -> Self
    where
        T: azure_core::credentials::TokenCredential + 'static,
    {
        let name = short_type_name(std::any::type_name::<T>());
        Self::entra_dyn(credential, name, config)
    }

    /// Like [`entra_with`](Self::entra_with) for a type-erased credential,
    /// named by `name` in errors and logs.
    #[cfg(feature = "entra")]
    pub fn entra_dyn(
        credential: Arc<dyn azure_core::credentials::TokenCredential>,
        name: &str,
        config: EntraConfig,
    ) -> Self {
        Self {
            kind: Kind::Bearer(TokenCache::new(credential, name.into(), config)),
        }
    }

    /// A short name for logs: `anthropic-api-key`, `foundry-api-key`,
    /// `entra-id`, `none`.
    pub fn kind(&self) -> &'static str {
        match &self.kind {
            Kind::None => "none",
            Kind::ApiKey {
                azure_header: false,
                ..
            } => "anthropic-api-key",
            Kind::ApiKey {
                azure_header: true, ..
            } => "foundry-api-key",
            #[cfg(feature = "entra")]
            Kind::Bearer(_) => "entra-id",
        }
    }

    /// Injects an API key; bearer tokens are handled by the service.
    #[inline]
    pub(crate) fn inject_key(
        value: &HeaderValue,
        azure_header: bool,
        headers: &mut http::HeaderMap,
    ) {
        if azure_header {
            headers.insert(API_KEY, value.clone());
        }
        headers.insert(X_API_KEY, value.clone());
    }
}

fn header_value(key: &Secret, what: &'static str) -> Result<HeaderValue, ConfigError> {
    let invalid = ConfigError::InvalidCredential { credential: what };
    if key.expose().trim().is_empty() {
        return Err(invalid);
    }
    let mut value = HeaderValue::from_str(key.expose()).map_err(|_| invalid)?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(feature = "entra")]
fn short_type_name(full: &str) -> &str {
    let head = full.split('<').next().unwrap_or(full);
    head.rsplit("::").next().unwrap_or(head)
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Credential");
        d.field("kind", &self.kind());
        #[cfg(feature = "entra")]
        if let Kind::Bearer(cache) = &self.kind {
            d.field("credential", &cache.name())
                .field("scope", &cache.config().scope());
        }
        d.finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_cannot_be_headers_are_refused_without_echo() {
        for bad in ["", "  ", "line\nbreak"] {
            let err = Credential::anthropic_api_key(Secret::new(bad)).expect_err("refused");
            assert_eq!(
                err,
                ConfigError::InvalidCredential {
                    credential: "Anthropic API key"
                }
            );
        }
    }

    #[test]
    fn debug_names_the_kind_not_the_key() {
        let c = Credential::foundry_api_key(Secret::new("fk-123")).expect("valid");
        let shown = format!("{c:?}");
        assert!(shown.contains("foundry-api-key"), "{shown}");
        assert!(!shown.contains("fk-123"), "{shown}");
    }

    #[cfg(feature = "entra")]
    #[test]
    fn short_type_names() {
        assert_eq!(
            short_type_name("azure_identity::ClientSecretCredential"),
            "ClientSecretCredential"
        );
        assert_eq!(short_type_name("a::b::Fake<c::D>"), "Fake");
    }
}
