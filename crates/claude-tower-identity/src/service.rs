use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use claude_tower_core::{Caller, ResponseBody};
use http::{HeaderMap, Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::config::{IdentityConfig, InvalidIdentityConfig};
use crate::credential::{self, ClientKeys, Credential, sha256};
use crate::http::{DiscoveryFetcher, HttpClient};
use crate::jwks::{KeySet, KeySource, Timing};
use crate::rejection::{Rejection, RejectionKind};
use crate::token::{Issuer, PendingToken, Rules, Step, Verifier};

// === Authenticator ===

/// Everything one layer checks against; shared by its services.
pub(crate) struct Authenticator {
    keys: ClientKeys,
    verifier: Verifier,
}

/// A check that either finished at once or waits for an issuer's keys.
pub(crate) enum Outcome {
    Ready(Result<Caller, Rejection>),
    Pending(PendingToken),
}

impl Authenticator {
    pub(crate) fn new(config: &IdentityConfig) -> Result<Self, InvalidIdentityConfig> {
        install_jwt_crypto();
        if !config.is_configured() {
            return Err(InvalidIdentityConfig::new(
                "identity",
                "nothing to authenticate with: set CLAUDE_TOWER_ENTRA_TENANT_ID, \
                 CLAUDE_TOWER_OIDC_ISSUER or CLAUDE_TOWER_CLIENT_KEYS",
            ));
        }
        let mut keys = ClientKeys::default();
        for (name, key) in config.client_keys() {
            if key.0.is_empty() {
                return Err(InvalidIdentityConfig::new(
                    "CLAUDE_TOWER_CLIENT_KEYS",
                    format!("client key `{name}` is empty"),
                ));
            }
            keys.insert(name, &key.0);
        }

        let rules = Rules {
            algorithms: config.algorithms()?,
            audiences: config.audiences(),
            leeway: config.clock_skew(),
            max_lifetime: config.max_token_lifetime(),
            allowed_tenants: config.allowed_tenants().to_vec(),
            required_roles: config.required_roles().to_vec(),
            required_groups: config.required_groups().to_vec(),
            allowed_apps: config.allowed_client_apps().to_vec(),
        };
        let entra = config.entra_issuers()?;
        let generic = config.generic_issuers();
        let has_issuers = !entra.is_empty() || !generic.is_empty() || !config.fixed_keys.is_empty();
        if has_issuers && rules.audiences.is_empty() {
            return Err(InvalidIdentityConfig::new(
                "CLAUDE_TOWER_OIDC_AUDIENCE",
                "an issuer without an audience would accept its tokens for any application: \
                 set the audiences this gateway's tokens are issued for",
            ));
        }

        let timing = Timing {
            refresh: config.key_refresh(),
            refetch: config.key_refetch(),
        };
        let mut issuers = Vec::new();
        if !entra.is_empty() || !generic.is_empty() {
            let client = HttpClient::new(config.fetch_timeout()).map_err(|e| {
                InvalidIdentityConfig::new("identity", format!("cannot build a TLS client: {e}"))
            })?;
            let fetcher = |setting, issuer: &str| {
                DiscoveryFetcher::new(client.clone(), issuer)
                    .map(|f| KeySource::fetched(Arc::new(f), timing))
                    .map_err(|problem| InvalidIdentityConfig::new(setting, problem))
            };
            for (tid, v2, v1) in &entra {
                // One tenant, two issuer forms, one key set: Entra signs v1 and
                // v2 tokens with the keys its v2 metadata lists.
                let source = fetcher("CLAUDE_TOWER_ENTRA_TENANT_ID", v2)?;
                issuers.push(Issuer::new(v2, source.clone(), Some(tid), &rules));
                issuers.push(Issuer::new(v1, source, Some(tid), &rules));
            }
            for issuer in generic {
                let source = fetcher("CLAUDE_TOWER_OIDC_ISSUER", issuer)?;
                issuers.push(Issuer::new(issuer, source, None, &rules));
            }
        }
        for (issuer, jwks) in &config.fixed_keys {
            let set = KeySet::parse(jwks.as_bytes())
                .map_err(|e| InvalidIdentityConfig::new("issuer_keys", format!("{issuer}: {e}")))?;
            issuers.push(Issuer::new(issuer, KeySource::fixed(set), None, &rules));
        }
        let verifier = Verifier::new(issuers, rules, config.token_cache_size());
        Ok(Self { keys, verifier })
    }

    /// The part of a check that never waits.
    pub(crate) fn begin(&self, headers: &HeaderMap) -> Outcome {
        let credential = match credential::extract(headers) {
            Ok(credential) => credential,
            Err(kind) => return Outcome::Ready(Err(kind.into())),
        };
        let (Credential::Token(value) | Credential::Key(value)) = credential;
        let hash = sha256(value.as_bytes());
        // A client key may look like a JWT (an `apiKeyHelper` printing one):
        // keys are checked first, with the hash the token cache uses anyway.
        if let Some(caller) = self.keys.check_hash(&hash) {
            return Outcome::Ready(Ok(caller));
        }
        match credential {
            Credential::Token(token) if !self.verifier.is_empty() => {
                match self.verifier.check(token, hash) {
                    Step::Done(result) => Outcome::Ready(result),
                    Step::Fetch(pending) => Outcome::Pending(pending),
                }
            }
            _ => Outcome::Ready(Err(RejectionKind::UnknownClientKey.into())),
        }
    }

    pub(crate) async fn finish(&self, pending: PendingToken) -> Result<Caller, Rejection> {
        self.verifier.finish(pending).await
    }

    pub(crate) async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, Rejection> {
        match self.begin(headers) {
            Outcome::Ready(result) => result,
            Outcome::Pending(pending) => self.finish(pending).await,
        }
    }
}

/// jsonwebtoken picks its crypto from a process-wide default; with only its
/// `aws_lc_rs` feature on that is aws-lc-rs already. Installing it here keeps
/// the choice when another crate in the build turns on `rust_crypto` too.
fn install_jwt_crypto() {
    use jsonwebtoken::crypto::CryptoProvider;
    if CryptoProvider::try_get_default().is_none() {
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    }
}

fn log_rejection(rejection: &Rejection) {
    // The kind only: never the credential.
    if rejection.kind() == RejectionKind::IssuerUnavailable {
        tracing::warn!(
            kind = rejection.kind().as_str(),
            "identity: cannot verify tokens"
        );
    } else {
        tracing::debug!(
            kind = rejection.kind().as_str(),
            status = rejection.status().as_u16(),
            "identity: request refused"
        );
    }
}

// === IdentityLayer ===

/// Establishes who is calling before anything else runs: a [`Caller`] in the
/// request's extensions, or a local 401 / 403 / 503 in Anthropic's error
/// envelope. See the [crate docs](crate).
#[derive(Clone)]
pub struct IdentityLayer {
    auth: Arc<Authenticator>,
}

impl fmt::Debug for IdentityLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityLayer")
            .field("client_keys", &self.auth.keys)
            .field("verifier", &self.auth.verifier)
            .finish()
    }
}

impl IdentityLayer {
    /// A layer checking credentials against `config`. Fails on a setting it
    /// cannot use (no issuer nor key, an issuer without an audience, an
    /// `http://` issuer off loopback, an HMAC algorithm...). Building it
    /// fetches nothing: keys are fetched when a token first needs them.
    pub fn new(config: IdentityConfig) -> Result<Self, InvalidIdentityConfig> {
        Ok(Self {
            auth: Arc::new(Authenticator::new(&config)?),
        })
    }

    /// Fetches every issuer's keys now instead of on the first token that
    /// needs them: a gateway calls it at start-up (and may from `/readyz`),
    /// so no developer waits for discovery and an unreachable issuer shows
    /// before traffic does. Fails with the issuers whose keys could not be
    /// fetched; the layer works either way and keeps trying as tokens come.
    pub async fn fetch_keys(&self) -> Result<(), Vec<String>> {
        let mut failed = Vec::new();
        for source in self.auth.verifier.sources() {
            if !source.clone().refresh().await {
                failed.push(source.describe().to_owned());
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed)
        }
    }

    /// Checks the credential in `headers` without a service around it (for a
    /// WebSocket upgrade, say). Waits only when a token's keys must be
    /// fetched.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, Rejection> {
        self.auth.authenticate(headers).await
    }
}

impl<S> Layer<S> for IdentityLayer {
    type Service = Identity<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Identity {
            inner,
            auth: self.auth.clone(),
        }
    }
}

// === Identity ===

/// The service [`IdentityLayer`] makes.
#[derive(Clone)]
pub struct Identity<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

impl<S: fmt::Debug> fmt::Debug for Identity<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for Identity<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqB: Send + 'static,
{
    type Response = Response<ResponseBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqB>) -> Self::Future {
        match self.auth.begin(request.headers()) {
            Outcome::Ready(Ok(caller)) => {
                tracing::trace!(caller = caller.id(), method = %caller.method(), "identity: caller");
                request.extensions_mut().insert(caller);
                ResponseFuture::called(self.inner.call(request))
            }
            Outcome::Ready(Err(rejection)) => {
                log_rejection(&rejection);
                ResponseFuture::local(rejection.to_response())
            }
            Outcome::Pending(pending) => {
                // The ready service goes with the request; a clone stays.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let auth = self.auth.clone();
                ResponseFuture::verifying(Box::pin(async move {
                    match auth.finish(pending).await {
                        Ok(caller) => {
                            request.extensions_mut().insert(caller);
                            Ok(inner.call(request).await)
                        }
                        Err(rejection) => {
                            log_rejection(&rejection);
                            Err(rejection.to_response())
                        }
                    }
                }))
            }
        }
    }
}

// === ResponseFuture ===

type Verifying<T> = Pin<Box<dyn Future<Output = Result<T, Response<Bytes>>> + Send>>;

pin_project! {
    /// The future of [`Identity`]: the inner service's, or a local answer.
    /// Boxed only while a first token waits for its issuer's keys.
    pub struct ResponseFuture<F>
    where
        F: Future,
    {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F>
    where
        F: Future,
    {
        Called { #[pin] future: F },
        Local { response: Option<Response<Bytes>> },
        Verifying { future: Verifying<F::Output> },
    }
}

impl<F: Future> ResponseFuture<F> {
    fn called(future: F) -> Self {
        Self {
            state: State::Called { future },
        }
    }

    fn local(response: Response<Bytes>) -> Self {
        Self {
            state: State::Local {
                response: Some(response),
            },
        }
    }

    fn verifying(future: Verifying<F::Output>) -> Self {
        Self {
            state: State::Verifying { future },
        }
    }
}

impl<F: Future> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Called { .. } => "called",
            State::Local { .. } => "local",
            State::Verifying { .. } => "verifying",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called { future } => {
                let response = ready!(future.poll(cx))?;
                Poll::Ready(Ok(response.map(ResponseBody::upstream)))
            }
            StateProj::Local { response } => {
                // NOTE: a future is not polled again after it is ready.
                let response = response
                    .take()
                    .expect("ResponseFuture polled after completion");
                Poll::Ready(Ok(response.map(ResponseBody::local)))
            }
            StateProj::Verifying { future } => match ready!(future.as_mut().poll(cx)) {
                Ok(inner) => Poll::Ready(inner.map(|r| r.map(ResponseBody::upstream))),
                Err(local) => Poll::Ready(Ok(local.map(ResponseBody::local))),
            },
        }
    }
}
