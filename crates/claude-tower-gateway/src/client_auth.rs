//! Inbound client keys: who may use the gateway.
//!
//! A gateway that listens beyond loopback must know its callers. Clients
//! present a key as `x-api-key: KEY` or `Authorization: Bearer KEY` (what the
//! Anthropic SDKs and Claude Code send); it is compared in constant time
//! against every configured key, and a miss is answered locally with 401 in
//! Anthropic's envelope. The key never travels upstream: the auth layer strips
//! every inbound credential header before injecting the route's own.

use std::fmt;
use std::sync::Arc;

use axum::body::Body;
use claude_tower_core::{ClaudeError, ErrorClass, error_response, headers};
use http::{Request, Response, StatusCode};
use subtle::ConstantTimeEq;
use tower_http::validate_request::{ValidateRequest, ValidateRequestHeaderLayer};

use crate::config::ClientKey;

/// Checks inbound client keys; use through [`ClientKeys::layer`].
#[derive(Clone)]
pub struct ClientKeys {
    keys: Arc<[ClientKey]>,
}

impl ClientKeys {
    /// Accepts any of `keys`.
    pub fn new(keys: impl IntoIterator<Item = ClientKey>) -> Self {
        Self {
            keys: keys.into_iter().collect(),
        }
    }

    /// The tower-http layer that enforces the keys.
    pub fn layer(self) -> ValidateRequestHeaderLayer<Self> {
        ValidateRequestHeaderLayer::custom(self)
    }

    /// Whether `presented` is one of the keys. Every key is compared, in
    /// constant time per key, so timing does not tell which one nearly matched.
    pub fn accepts(&self, presented: &[u8]) -> bool {
        let mut hit = subtle::Choice::from(0);
        for key in self.keys.iter() {
            hit |= key.expose().ct_eq(presented);
        }
        bool::from(hit)
    }
}

impl fmt::Debug for ClientKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientKeys")
            .field("count", &self.keys.len())
            .finish()
    }
}

/// The key a request presents: `x-api-key`, else a Bearer token.
fn presented<B>(req: &Request<B>) -> Option<&[u8]> {
    if let Some(key) = req.headers().get(headers::X_API_KEY) {
        return Some(key.as_bytes());
    }
    let auth = req.headers().get(headers::AUTHORIZATION)?.as_bytes();
    let scheme = auth.get(..7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| auth[7..].trim_ascii())
}

impl<B> ValidateRequest<B> for ClientKeys {
    type ResponseBody = Body;

    fn validate(&mut self, req: &mut Request<B>) -> Result<(), Response<Body>> {
        match presented(req) {
            Some(key) if !key.is_empty() && self.accepts(key) => Ok(()),
            Some(_) => Err(unauthorized("invalid gateway key")),
            None => Err(unauthorized(
                "missing gateway key: send it as x-api-key or Authorization: Bearer",
            )),
        }
    }
}

fn unauthorized(message: &str) -> Response<Body> {
    let err = ClaudeError::new(ErrorClass::Auth, message).with_status(StatusCode::UNAUTHORIZED);
    error_response(&err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> ClientKeys {
        ClientKeys::new([ClientKey::new("alpha"), ClientKey::new("beta-key")])
    }

    fn check(req: Request<()>) -> Result<(), StatusCode> {
        keys().validate(&mut { req }).map_err(|r| r.status())
    }

    #[test]
    fn accepts_x_api_key_and_bearer() {
        let req = Request::builder()
            .header("x-api-key", "alpha")
            .body(())
            .unwrap();
        assert_eq!(check(req), Ok(()));
        let req = Request::builder()
            .header("authorization", "bearer   beta-key ")
            .body(())
            .unwrap();
        assert_eq!(check(req), Ok(()));
    }

    #[test]
    fn refuses_wrong_missing_and_odd_credentials() {
        for (name, value) in [
            ("x-api-key", "alph"),
            ("x-api-key", "alphaa"),
            ("x-api-key", ""),
            ("authorization", "Basic YWxwaGE="),
            ("authorization", "Bearer"),
            ("authorization", "Bearer "),
            ("api-key", "alpha"),
        ] {
            let req = Request::builder().header(name, value).body(()).unwrap();
            assert_eq!(check(req), Err(StatusCode::UNAUTHORIZED), "{name}: {value}");
        }
        assert_eq!(
            check(Request::new(())),
            Err(StatusCode::UNAUTHORIZED),
            "no credential"
        );
    }

    #[test]
    fn debug_does_not_show_keys() {
        let shown = format!("{:?}", keys());
        assert!(!shown.contains("alpha"), "{shown}");
    }
}
