//! Where a route's requests go, and how an inbound URI is moved there.
//!
//! # Path mapping
//!
//! The inbound request's path is taken relative to the *route prefix* and
//! appended to the endpoint's base path; the query string is kept as is:
//!
//! | inbound | Anthropic (`https://api.anthropic.com`) | Foundry (`https://r.services.ai.azure.com/anthropic`) |
//! |---|---|---|
//! | `/v1/messages?beta=true` | `/v1/messages?beta=true` | `/anthropic/v1/messages?beta=true` |
//! | `/anthropic/v1/messages?beta=true` | `/v1/messages?beta=true` | `/anthropic/v1/messages?beta=true` |
//!
//! An inbound `/anthropic` prefix is Foundry's route prefix: a gateway that
//! mimics Foundry (Claude Code with `ANTHROPIC_FOUNDRY_BASE_URL` pointed at
//! it) receives `/anthropic/v1/messages`. That prefix is dropped whatever the
//! destination, so one inbound request can fail over between both faces;
//! the destination's own base path is then put in front. Only a whole path
//! segment counts: `/anthropicx/...` is left alone.

use http::Uri;
use http::uri::{Authority, Parts, PathAndQuery, Scheme};

use claude_tower_core::Face;

use crate::ConfigError;

/// Anthropic's public API, the default Anthropic endpoint.
pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";

/// The route prefix a Foundry-shaped request may carry (see the module docs).
const ROUTE_PREFIX: &str = "/anthropic";

/// A route's endpoint: scheme, host and base path, and which face it speaks.
///
/// ```
/// use claude_tower_auth::Endpoint;
/// use claude_tower_core::Face;
///
/// let foundry = Endpoint::foundry_resource("my-res")?;
/// assert_eq!(foundry.base_url(), "https://my-res.services.ai.azure.com/anthropic");
/// assert_eq!(foundry.face(), Face::Foundry);
///
/// let uri = foundry.rewrite(&"/v1/messages?beta=true".parse()?)?;
/// assert_eq!(uri, "https://my-res.services.ai.azure.com/anthropic/v1/messages?beta=true");
///
/// // Saying both Foundry forms is a configuration error.
/// assert!(Endpoint::foundry(Some("my-res"), Some("https://gw.example/anthropic")).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Endpoint {
    face: Face,
    scheme: Scheme,
    authority: Authority,
    /// The base path without a trailing slash: `""` or `"/anthropic"`.
    prefix: Box<str>,
    base_url: Box<str>,
}

impl Endpoint {
    /// Anthropic direct at [`ANTHROPIC_BASE_URL`].
    pub fn anthropic() -> Self {
        Self {
            face: Face::Anthropic,
            scheme: Scheme::HTTPS,
            authority: Authority::from_static("api.anthropic.com"),
            prefix: "".into(),
            base_url: ANTHROPIC_BASE_URL.into(),
        }
    }

    /// Anthropic's API at another base URL (`ANTHROPIC_BASE_URL`): a proxy,
    /// a gateway or the simulator.
    pub fn anthropic_base_url(url: &str) -> Result<Self, ConfigError> {
        Self::parse(Face::Anthropic, url)
    }

    /// Foundry from a resource name: `https://{resource}.services.ai.azure.com/anthropic`.
    pub fn foundry_resource(resource: &str) -> Result<Self, ConfigError> {
        let valid = !resource.is_empty()
            && resource.len() <= 63
            && resource
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !resource.starts_with('-')
            && !resource.ends_with('-');
        if !valid {
            return Err(ConfigError::InvalidResourceName {
                name: resource.to_owned(),
            });
        }
        Self::parse(
            Face::Foundry,
            &format!("https://{resource}.services.ai.azure.com/anthropic"),
        )
    }

    /// Foundry from a full base URL, usually ending in `/anthropic`
    /// (`ANTHROPIC_FOUNDRY_BASE_URL`).
    pub fn foundry_base_url(url: &str) -> Result<Self, ConfigError> {
        Self::parse(Face::Foundry, url)
    }

    /// Foundry from exactly one of a resource name or a base URL, the way
    /// Claude Code reads `ANTHROPIC_FOUNDRY_RESOURCE` and
    /// `ANTHROPIC_FOUNDRY_BASE_URL`: both is
    /// [`ConflictingFoundryEndpoint`](ConfigError::ConflictingFoundryEndpoint),
    /// neither is [`MissingFoundryEndpoint`](ConfigError::MissingFoundryEndpoint).
    pub fn foundry(resource: Option<&str>, base_url: Option<&str>) -> Result<Self, ConfigError> {
        match (resource, base_url) {
            (Some(_), Some(_)) => Err(ConfigError::ConflictingFoundryEndpoint),
            (Some(resource), None) => Self::foundry_resource(resource),
            (None, Some(url)) => Self::foundry_base_url(url),
            (None, None) => Err(ConfigError::MissingFoundryEndpoint),
        }
    }

    fn parse(face: Face, url: &str) -> Result<Self, ConfigError> {
        let invalid = |reason| ConfigError::InvalidBaseUrl {
            url: url.to_owned(),
            reason,
        };
        let uri: Uri = url
            .parse()
            .map_err(|_| invalid("not a valid absolute URL"))?;
        let parts = uri.into_parts();
        let scheme = parts
            .scheme
            .ok_or_else(|| invalid("no scheme (expected https:// or http://)"))?;
        if scheme != Scheme::HTTPS && scheme != Scheme::HTTP {
            return Err(invalid("the scheme must be https or http"));
        }
        let authority = parts.authority.ok_or_else(|| invalid("no host"))?;
        if authority.as_str().contains('@') {
            return Err(invalid("credentials in the URL are not supported"));
        }
        let path = match &parts.path_and_query {
            Some(pq) if pq.query().is_some() => {
                return Err(invalid("a base URL cannot carry a query string"));
            }
            Some(pq) => pq.path(),
            None => "",
        };
        let prefix = path.trim_end_matches('/');
        let base_url = format!("{scheme}://{authority}{prefix}");
        Ok(Self {
            face,
            scheme,
            authority,
            prefix: prefix.into(),
            base_url: base_url.into(),
        })
    }

    /// Which error surface the endpoint speaks.
    pub fn face(&self) -> Face {
        self.face
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Moves `uri` onto this endpoint, keeping the path relative to the route
    /// prefix and the query string (see the [module docs](self)).
    pub fn rewrite(&self, uri: &Uri) -> Result<Uri, http::Error> {
        self.rewrite_owned(uri.clone())
    }

    /// [`rewrite`](Self::rewrite) taking the URI by value: when the resulting
    /// path equals the inbound one (the common case) the inbound
    /// path-and-query is moved over and nothing is allocated.
    pub fn rewrite_owned(&self, uri: Uri) -> Result<Uri, http::Error> {
        let prefix = &*self.prefix;
        let path = uri.path();
        let suffix = strip_route_prefix(path);
        let same = path.len() == prefix.len() + suffix.len()
            && path.starts_with(prefix)
            && path.ends_with(suffix)
            && !path.is_empty();
        let path_and_query = match uri.into_parts().path_and_query {
            Some(pq) if same => pq,
            pq => {
                let (path, query) = match &pq {
                    Some(pq) => (pq.path(), pq.query()),
                    None => ("/", None),
                };
                let suffix = strip_route_prefix(path);
                let mut s = String::with_capacity(
                    prefix.len() + suffix.len() + 1 + query.map_or(0, |q| q.len() + 1),
                );
                s.push_str(prefix);
                s.push_str(suffix);
                if s.is_empty() {
                    s.push('/');
                }
                if let Some(query) = query {
                    s.push('?');
                    s.push_str(query);
                }
                PathAndQuery::try_from(s)?
            }
        };
        let mut parts = Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(path_and_query);
        Ok(Uri::from_parts(parts)?)
    }
}

/// The face a caller speaks, read from the inbound path: under the
/// `/anthropic` route prefix, a Foundry-mode client (whose credential is a
/// Foundry key or an Entra ID token); anywhere else, an Anthropic-mode client.
///
/// This is how [`Credential::passthrough`](crate::Credential::passthrough)
/// keeps a caller's credential on routes of its own face.
///
/// ```
/// use claude_tower_auth::endpoint::caller_face;
/// use claude_tower_core::Face;
///
/// assert_eq!(caller_face("/anthropic/v1/messages"), Face::Foundry);
/// assert_eq!(caller_face("/v1/messages"), Face::Anthropic);
/// assert_eq!(caller_face("/anthropicx/v1/messages"), Face::Anthropic);
/// ```
pub fn caller_face(path: &str) -> Face {
    if strip_route_prefix(path).len() == path.len() {
        Face::Anthropic
    } else {
        Face::Foundry
    }
}

/// The path relative to the route prefix: `/anthropic/v1/x` -> `/v1/x`.
fn strip_route_prefix(path: &str) -> &str {
    match path.strip_prefix(ROUTE_PREFIX) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
        _ => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(endpoint: &Endpoint, uri: &str) -> String {
        endpoint
            .rewrite(&uri.parse().expect("uri"))
            .expect("rewrite")
            .to_string()
    }

    #[test]
    fn anthropic_keeps_path_and_query() {
        let e = Endpoint::anthropic();
        assert_eq!(
            rewrite(&e, "/v1/messages?beta=true"),
            "https://api.anthropic.com/v1/messages?beta=true"
        );
        assert_eq!(
            rewrite(&e, "/anthropic/v1/messages?beta=true"),
            "https://api.anthropic.com/v1/messages?beta=true"
        );
        assert_eq!(
            rewrite(&e, "http://gateway:8080/v1/messages"),
            "https://api.anthropic.com/v1/messages"
        );
        assert_eq!(rewrite(&e, "/anthropic"), "https://api.anthropic.com/");
        assert_eq!(
            rewrite(&e, "/anthropicx/v1"),
            "https://api.anthropic.com/anthropicx/v1"
        );
    }

    #[test]
    fn foundry_puts_its_prefix_in_front_once() {
        for e in [
            Endpoint::foundry_resource("res-1").expect("resource"),
            Endpoint::foundry_base_url("https://res-1.services.ai.azure.com/anthropic/")
                .expect("url"),
        ] {
            assert_eq!(e.face(), Face::Foundry);
            for inbound in ["/v1/messages?beta=true", "/anthropic/v1/messages?beta=true"] {
                assert_eq!(
                    rewrite(&e, inbound),
                    "https://res-1.services.ai.azure.com/anthropic/v1/messages?beta=true"
                );
            }
        }
    }

    #[test]
    fn overridden_anthropic_base_with_a_path() {
        let e = Endpoint::anthropic_base_url("http://127.0.0.1:9000/proxy/").expect("url");
        assert_eq!(e.base_url(), "http://127.0.0.1:9000/proxy");
        assert_eq!(
            rewrite(&e, "/anthropic/v1/messages?a=1&b=2"),
            "http://127.0.0.1:9000/proxy/v1/messages?a=1&b=2"
        );
    }

    #[test]
    fn foundry_forms_are_mutually_exclusive() {
        assert_eq!(
            Endpoint::foundry(Some("r"), Some("https://x/anthropic")).unwrap_err(),
            ConfigError::ConflictingFoundryEndpoint
        );
        assert_eq!(
            Endpoint::foundry(None, None).unwrap_err(),
            ConfigError::MissingFoundryEndpoint
        );
        assert!(Endpoint::foundry(Some("r"), None).is_ok());
    }

    #[test]
    fn bad_config_is_a_typed_error() {
        for bad in [
            "",
            "not a url",
            "/relative",
            "ftp://x",
            "https://x/anthropic?q=1",
            "https://user:pw@x",
        ] {
            assert!(
                matches!(
                    Endpoint::foundry_base_url(bad),
                    Err(ConfigError::InvalidBaseUrl { .. })
                ),
                "{bad}"
            );
        }
        for bad in ["", "a.b", "-x", "x/y", "has space"] {
            assert!(
                matches!(
                    Endpoint::foundry_resource(bad),
                    Err(ConfigError::InvalidResourceName { .. })
                ),
                "{bad}"
            );
        }
    }
}
