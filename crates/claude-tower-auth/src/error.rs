//! Configuration errors: what is wrong with an endpoint or a credential
//! before any request is sent.

use std::fmt;

/// A configuration mistake found while building an [`Endpoint`](crate::Endpoint),
/// a [`Credential`](crate::Credential) or an [`AuthLayer`](crate::AuthLayer).
///
/// Messages name the setting (and the environment variable, where there is
/// one) and never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// Both a Foundry resource name and a Foundry base URL were given. They
    /// are mutually exclusive, as they are for Claude Code.
    ConflictingFoundryEndpoint,
    /// Foundry was asked for but neither a resource name nor a base URL was given.
    MissingFoundryEndpoint,
    /// A base URL is not an absolute `http(s)` URL without query or fragment.
    InvalidBaseUrl {
        /// The URL as given (URLs are not secrets).
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A Foundry resource name is empty or holds characters a host label cannot.
    InvalidResourceName {
        /// The name as given.
        name: String,
    },
    /// A credential is empty or cannot be sent in an HTTP header.
    InvalidCredential {
        /// Which credential (never its value).
        credential: &'static str,
    },
    /// A required environment variable is not set.
    MissingVariable {
        /// The variable's name.
        variable: &'static str,
    },
    /// The Foundry route has no API key and this build has no Entra ID
    /// support (the `entra` feature is off).
    EntraUnavailable,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ConflictingFoundryEndpoint => f.write_str(
                "a Foundry resource (ANTHROPIC_FOUNDRY_RESOURCE) and a Foundry base URL \
                 (ANTHROPIC_FOUNDRY_BASE_URL) are mutually exclusive: set one of them",
            ),
            Self::MissingFoundryEndpoint => f.write_str(
                "Foundry needs a resource (ANTHROPIC_FOUNDRY_RESOURCE) or a base URL \
                 (ANTHROPIC_FOUNDRY_BASE_URL)",
            ),
            Self::InvalidBaseUrl { url, reason } => write!(f, "invalid base URL {url:?}: {reason}"),
            Self::InvalidResourceName { name } => write!(
                f,
                "invalid Foundry resource name {name:?}: expected letters, digits and '-'"
            ),
            Self::InvalidCredential { credential } => write!(
                f,
                "invalid {credential}: it is empty or not a valid HTTP header value"
            ),
            Self::MissingVariable { variable } => write!(f, "{variable} is not set"),
            Self::EntraUnavailable => f.write_str(
                "no ANTHROPIC_FOUNDRY_API_KEY is set and this build has no Entra ID support \
                 (enable the `entra` feature of claude-tower-auth)",
            ),
        }
    }
}

impl std::error::Error for ConfigError {}
