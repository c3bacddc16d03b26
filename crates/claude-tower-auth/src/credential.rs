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
/// | [`passthrough`](Self::passthrough) | the caller's own `x-api-key`, `api-key` or `Authorization: Bearer` |
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

/// The code of the error a passthrough route turns a caller of the other
/// face away with.
pub(crate) const PASSTHROUGH_FACE_CODE: &str = "passthrough_face_mismatch";

#[derive(Clone)]
pub(crate) enum Kind {
    None,
    Passthrough,
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

    /// The caller's own credential: whatever the request carries in
    /// `x-api-key`, `api-key` or `Authorization: Bearer` is forwarded to the
    /// route instead of a credential the gateway holds (a gateway that holds
    /// no secrets, in front of callers that each have their own key or
    /// Entra ID token).
    ///
    /// - A request with none of those headers is refused before anything is
    ///   sent: an error of class [`Auth`](claude_tower_core::ErrorClass::Auth)
    ///   (401 in Anthropic's envelope once rendered), which fails fast.
    /// - The route's rejection of the caller's credential (its 401 or 403)
    ///   is the caller's answer: class `Auth`, so it is neither retried nor
    ///   failed over, and a failover layer does not charge the route.
    /// - A caller's credential only goes to a route of the caller's face,
    ///   read from the inbound path: a request under `/anthropic/...` comes
    ///   from a Foundry-mode client (Claude Code with
    ///   `ANTHROPIC_FOUNDRY_BASE_URL`, the Foundry SDKs) and carries a
    ///   Foundry key or Entra token; any other path comes from an
    ///   Anthropic-mode client and carries an Anthropic key. A passthrough
    ///   route of the other face turns the request away unsent, with an
    ///   error of class
    ///   [`RouteUnavailable`](claude_tower_core::ErrorClass::RouteUnavailable)
    ///   and no status, which a failover layer treats as "not this route" (no
    ///   attempt, no breaker evidence). So a Foundry token may go to another
    ///   Foundry resource, never to Anthropic, and an Anthropic key never to
    ///   Foundry. Routes that hold their own credential take any caller: the
    ///   caller's credential is removed as usual.
    ///
    /// Forwarded values are marked sensitive (never HPACK-indexed); a
    /// non-Bearer `Authorization` is not a credential here and is removed.
    pub fn passthrough() -> Self {
        Self {
            kind: Kind::Passthrough,
        }
    }

    /// Whether this route forwards the caller's own credential.
    pub fn is_passthrough(&self) -> bool {
        matches!(self.kind, Kind::Passthrough)
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
    /// `entra-id`, `none`, `passthrough`.
    pub fn kind(&self) -> &'static str {
        match &self.kind {
            Kind::None => "none",
            Kind::Passthrough => "passthrough",
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
