//! Who may call: the identity layer when one is configured, and the rule for
//! the gateway's own endpoints.
//!
//! The Messages API goes through [`OptionalIdentityLayer`], the outermost
//! layer of the stack: with an identity configured (client keys, an Entra
//! tenant, an OIDC issuer) every request needs a credential and carries a
//! [`Caller`] below; without one (only allowed on a loopback listener) the
//! layer passes requests through and callers are anonymous.
//!
//! The gateway's own endpoints are checked by [`Access`]:
//!
//! | endpoint | who |
//! |---|---|
//! | `/healthz`, `HEAD /` | anyone |
//! | `/readyz`, `/metrics`, the local `/v1/models` | a loopback client, or any identified caller (`/metrics`: anyone with `--metrics-public`) |
//! | `/usage` | a loopback client, or a caller listed in `--admin-callers` |
//!
//! Loopback clients always pass: whoever can open a socket on the gateway's
//! host can read its process anyway. (Behind a reverse proxy on the same
//! host every client looks like loopback: bind the proxy to the gateway
//! through a non-loopback address, or do not publish these paths.)

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use claude_tower_core::{Caller, ClaudeError, ErrorClass, ResponseBody, error_response};
use claude_tower_identity::{Identity, IdentityLayer};
use http::StatusCode;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

/// The identity layer when one is configured, else a pass-through; both
/// answer with the same response type, so the stack has one type either way.
#[derive(Clone, Debug)]
pub struct OptionalIdentityLayer(Option<IdentityLayer>);

impl OptionalIdentityLayer {
    /// `Some`: every request must authenticate; `None`: anonymous callers.
    pub fn new(identity: Option<IdentityLayer>) -> Self {
        Self(identity)
    }
}

impl<S> Layer<S> for OptionalIdentityLayer {
    type Service = OptionalIdentity<S>;

    fn layer(&self, inner: S) -> Self::Service {
        match &self.0 {
            Some(identity) => OptionalIdentity::On {
                inner: identity.layer(inner),
            },
            None => OptionalIdentity::Off { inner },
        }
    }
}

/// The service of [`OptionalIdentityLayer`].
#[derive(Clone, Debug)]
pub enum OptionalIdentity<S> {
    /// Checking credentials.
    On {
        /// The identity service.
        inner: Identity<S>,
    },
    /// Passing requests through.
    Off {
        /// The inner service.
        inner: S,
    },
}

impl<S, ReqB, ResB> Service<http::Request<ReqB>> for OptionalIdentity<S>
where
    S: Service<http::Request<ReqB>, Response = http::Response<ResB>>,
    Identity<S>: Service<
            http::Request<ReqB>,
            Response = http::Response<ResponseBody<ResB>>,
            Error = S::Error,
        >,
{
    type Response = http::Response<ResponseBody<ResB>>;
    type Error = S::Error;
    type Future = OptionalFuture<<Identity<S> as Service<http::Request<ReqB>>>::Future, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            OptionalIdentity::On { inner } => inner.poll_ready(cx),
            OptionalIdentity::Off { inner } => inner.poll_ready(cx),
        }
    }

    fn call(&mut self, req: http::Request<ReqB>) -> Self::Future {
        match self {
            OptionalIdentity::On { inner } => OptionalFuture::On {
                future: inner.call(req),
            },
            OptionalIdentity::Off { inner } => OptionalFuture::Off {
                future: inner.call(req),
            },
        }
    }
}

pin_project! {
    /// The future of [`OptionalIdentity`].
    #[project = OptionalProj]
    #[allow(missing_docs)]
    pub enum OptionalFuture<A, B> {
        On { #[pin] future: A },
        Off { #[pin] future: B },
    }
}

impl<A, B, ResB, E> Future for OptionalFuture<A, B>
where
    A: Future<Output = Result<http::Response<ResponseBody<ResB>>, E>>,
    B: Future<Output = Result<http::Response<ResB>, E>>,
{
    type Output = Result<http::Response<ResponseBody<ResB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            OptionalProj::On { future } => future.poll(cx),
            OptionalProj::Off { future } => {
                Poll::Ready(ready!(future.poll(cx)).map(|r| r.map(ResponseBody::upstream)))
            }
        }
    }
}

/// The rule for the gateway's own endpoints (see the [module docs](self)).
#[derive(Clone, Debug)]
pub struct Access {
    identity: Option<IdentityLayer>,
    admins: Arc<[String]>,
}

/// Who passed a check.
#[derive(Clone, Debug)]
pub enum Allowed {
    /// A client on the loopback interface.
    Loopback,
    /// No identity is configured (the gateway listens on loopback only).
    Open,
    /// An identified caller.
    Caller(Caller),
}

impl Access {
    /// `identity` checks credentials; `admins` are the caller ids that may
    /// read `/usage`.
    pub fn new(identity: Option<IdentityLayer>, admins: &[String]) -> Self {
        Self {
            identity,
            admins: admins.iter().cloned().collect(),
        }
    }

    /// A loopback client, else an identified caller, else the identity
    /// layer's own 401/403/503. (The future owns what it reads: a request
    /// body is not `Sync`, so it must not be borrowed across an await.)
    pub fn check(
        &self,
        req: &Request,
    ) -> impl Future<Output = Result<Allowed, Response>> + Send + 'static {
        let loopback = is_loopback(req);
        let identity = self.identity.clone();
        let headers = if loopback || identity.is_none() {
            http::HeaderMap::new()
        } else {
            req.headers().clone()
        };
        async move {
            if loopback {
                return Ok(Allowed::Loopback);
            }
            let Some(identity) = identity else {
                return Ok(Allowed::Open);
            };
            match identity.authenticate(&headers).await {
                Ok(caller) => Ok(Allowed::Caller(caller)),
                Err(rejection) => Err(rejection.to_response().map(Body::from)),
            }
        }
    }

    /// [`check`](Self::check), and then an identified caller must be an
    /// admin; with no identity configured only loopback clients pass.
    pub fn check_admin(
        &self,
        req: &Request,
    ) -> impl Future<Output = Result<Allowed, Response>> + Send + 'static {
        let checked = self.check(req);
        let admins = Arc::clone(&self.admins);
        async move {
            let allowed = checked.await?;
            match admin_refusal(&allowed, &admins) {
                Some(why) => Err(forbidden(&why)),
                None => Ok(allowed),
            }
        }
    }
}

/// Why `allowed` may not read admin endpoints, if it may not.
fn admin_refusal(allowed: &Allowed, admins: &[String]) -> Option<String> {
    match allowed {
        Allowed::Caller(caller) if !admins.iter().any(|a| a == caller.id()) => Some(format!(
            "caller `{}` is not an admin caller (CLAUDE_TOWER_ADMIN_CALLERS)",
            caller.id()
        )),
        Allowed::Open => {
            Some("only loopback clients may read this without an identity configured".to_owned())
        }
        _ => None,
    }
}

fn is_loopback(req: &Request) -> bool {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(peer)| peer.ip().to_canonical().is_loopback())
}

fn forbidden(message: &str) -> Response {
    error_response::<Body>(
        &ClaudeError::new(ErrorClass::Auth, message).with_status(StatusCode::FORBIDDEN),
    )
}

/// Middleware: [`Access::check`] before the handler.
pub(crate) async fn require_caller(
    State(access): State<Access>,
    req: Request,
    next: Next,
) -> Response {
    let checked = access.check(&req);
    match checked.await {
        Ok(_) => next.run(req).await,
        Err(refused) => refused.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use claude_tower_identity::IdentityConfig;

    fn access() -> Access {
        let identity =
            IdentityLayer::new(IdentityConfig::default().with_client_key("ada", "k-ada")).unwrap();
        Access::new(Some(identity), &["ada".to_owned()])
    }

    fn request(peer: &str, key: Option<&str>) -> Request {
        let mut req = http::Request::builder().uri("/usage");
        if let Some(key) = key {
            req = req.header("x-api-key", key);
        }
        let mut req = req.body(Body::empty()).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        req
    }

    #[tokio::test]
    async fn loopback_passes_and_others_need_a_credential() {
        let a = access();
        assert!(matches!(
            a.check(&request("127.0.0.1:1", None)).await,
            Ok(Allowed::Loopback)
        ));
        assert!(matches!(
            a.check(&request("[::1]:1", None)).await,
            Ok(Allowed::Loopback)
        ));
        let refused = a.check(&request("10.0.0.1:1", None)).await.unwrap_err();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        let refused = a
            .check(&request("10.0.0.1:1", Some("k-guess")))
            .await
            .unwrap_err();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert!(matches!(
            a.check(&request("10.0.0.1:1", Some("k-ada"))).await,
            Ok(Allowed::Caller(_))
        ));
    }

    #[tokio::test]
    async fn usage_needs_an_admin_caller_off_loopback() {
        let identity = IdentityLayer::new(
            IdentityConfig::default()
                .with_client_key("ada", "k-ada")
                .with_client_key("bob", "k-bob"),
        )
        .unwrap();
        let a = Access::new(Some(identity), &["ada".to_owned()]);
        assert!(
            a.check_admin(&request("10.0.0.1:1", Some("k-ada")))
                .await
                .is_ok()
        );
        let refused = a
            .check_admin(&request("10.0.0.1:1", Some("k-bob")))
            .await
            .unwrap_err();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        let open = Access::new(None, &[]);
        assert!(
            open.check_admin(&request("127.0.0.1:1", None))
                .await
                .is_ok()
        );
        let refused = open
            .check_admin(&request("10.0.0.1:1", None))
            .await
            .unwrap_err();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    }
}
