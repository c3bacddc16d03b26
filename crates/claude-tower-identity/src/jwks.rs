//! An issuer's signing keys: parsing a JWKS document, caching it, and
//! fetching it again — once per hour in the background, and on an unknown
//! `kid` at most once per cool-down, in a single flight.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde::Deserialize;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::rejection::{Rejection, RejectionKind};

/// The most keys kept from one document; real issuers publish a handful.
const MAX_KEYS: usize = 64;

// === KeySet ===

/// One verification key from a JWKS document.
pub(crate) struct VerifyKey {
    key: DecodingKey,
    family: AlgorithmFamily,
    /// `P-256` or `P-384` for EC keys.
    curve: Option<Curve>,
    /// The key's own `alg`, when the document names one.
    alg: Option<Algorithm>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Curve {
    P256,
    P384,
}

impl VerifyKey {
    /// Whether a token signed with `alg` may be checked with this key: same
    /// family, the right curve, and the key's own `alg` if it has one. An HMAC
    /// `alg` never matches, since no key here is a shared secret.
    pub(crate) fn accepts(&self, alg: Algorithm) -> bool {
        if self.alg.is_some_and(|a| a != alg) || alg.family() != self.family {
            return false;
        }
        match alg {
            Algorithm::ES256 => self.curve == Some(Curve::P256),
            Algorithm::ES384 => self.curve == Some(Curve::P384),
            _ => self.family == AlgorithmFamily::Rsa,
        }
    }

    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }
}

/// The usable signing keys of one issuer, by `kid`.
#[derive(Default)]
pub(crate) struct KeySet {
    keys: HashMap<Box<str>, Arc<VerifyKey>>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.keys.keys()).finish()
    }
}

/// Why a JWKS document (or the discovery before it) could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FetchError(pub(crate) String);

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawKey {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    alg: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

impl KeySet {
    /// Parses a JWKS document. Keys that cannot verify signatures here
    /// (encryption keys, shared secrets, unknown types, no `kid`) are
    /// skipped; a document with no usable key at all is an error, so a broken
    /// document never replaces good cached keys.
    pub(crate) fn parse(document: &[u8]) -> Result<KeySet, FetchError> {
        let raw: RawSet = serde_json::from_slice(document)
            .map_err(|e| FetchError(format!("JWKS is not a key set: {e}")))?;
        let mut keys = HashMap::new();
        for value in raw.keys {
            if keys.len() == MAX_KEYS {
                break;
            }
            let Ok(raw) = serde_json::from_value::<RawKey>(value) else {
                continue;
            };
            if let Some((kid, key)) = Self::usable(raw) {
                keys.insert(kid, Arc::new(key));
            }
        }
        if keys.is_empty() {
            return Err(FetchError("JWKS has no usable signing key".into()));
        }
        Ok(KeySet { keys })
    }

    fn usable(raw: RawKey) -> Option<(Box<str>, VerifyKey)> {
        let kid = raw.kid?;
        if raw.use_.as_deref().is_some_and(|u| u != "sig") {
            return None;
        }
        let alg = match raw.alg.as_deref() {
            None => None,
            Some(name) => Some(name.parse::<Algorithm>().ok()?),
        };
        let key = match raw.kty.as_str() {
            "RSA" => VerifyKey {
                key: DecodingKey::from_rsa_components(&raw.n?, &raw.e?).ok()?,
                family: AlgorithmFamily::Rsa,
                curve: None,
                alg,
            },
            "EC" => {
                let curve = match raw.crv.as_deref()? {
                    "P-256" => Curve::P256,
                    "P-384" => Curve::P384,
                    _ => return None,
                };
                let (x, y) = (raw.x?, raw.y?);
                let len = if curve == Curve::P256 { 43 } else { 64 };
                if x.len() != len || y.len() != len {
                    return None;
                }
                VerifyKey {
                    key: DecodingKey::from_ec_components(&x, &y).ok()?,
                    family: AlgorithmFamily::Ec,
                    curve: Some(curve),
                    alg,
                }
            }
            // "oct" (HMAC secrets) and "OKP" are never used to verify here.
            _ => return None,
        };
        if key.alg.is_some_and(|a| !key.accepts(a)) {
            return None;
        }
        Some((kid.into_boxed_str(), key))
    }

    pub(crate) fn get(&self, kid: &str) -> Option<&Arc<VerifyKey>> {
        self.keys.get(kid)
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }
}

// === KeySource ===

/// A boxed fetch of a key set; boxed once per fetch, never per request.
pub(crate) type FetchFuture = Pin<Box<dyn Future<Output = Result<KeySet, FetchError>> + Send>>;

/// Where an issuer's keys come from (HTTP discovery + JWKS in production).
pub(crate) trait FetchKeys: Send + Sync + 'static {
    fn fetch(self: Arc<Self>) -> FetchFuture;
    /// For log lines: the issuer or URL, never a secret.
    fn describe(&self) -> &str;
}

/// How often keys are fetched.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    /// Keys older than this are fetched again in the background (1 hour).
    pub(crate) refresh: Duration,
    /// An unknown `kid` fetches again at most this often (5 minutes).
    pub(crate) refetch: Duration,
}

impl Timing {
    /// After a failed fetch with nothing cached, callers get 503 for this
    /// long before the next attempt, so a down issuer is not hammered.
    fn retry_after_failure(&self) -> Duration {
        self.refetch.min(Duration::from_secs(10))
    }
}

/// What the cache says about a `kid`, without waiting.
pub(crate) enum Lookup {
    Found(Arc<VerifyKey>),
    /// Not there, and no fetch is allowed yet.
    Unknown,
    /// A fetch is running or may start: wait with [`KeySource::wait_for`].
    Wait,
    /// Nothing cached and the last fetch failed moments ago.
    Unavailable(Duration),
}

#[derive(Default)]
struct State {
    keys: Option<Arc<KeySet>>,
    /// When the keys in hand were fetched.
    fetched_at: Option<Instant>,
    /// When the last fetch started, whatever its outcome.
    attempted_at: Option<Instant>,
    last_failed: bool,
    in_flight: bool,
}

/// One issuer's keys (Entra's v1 and v2 issuers of a tenant share one).
pub(crate) struct KeySource {
    fetcher: Option<Arc<dyn FetchKeys>>,
    timing: Timing,
    state: RwLock<State>,
    /// Bumped when a fetch ends; waiters subscribe before they look.
    done: watch::Sender<u64>,
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.read();
        f.debug_struct("KeySource")
            .field("from", &self.fetcher.as_ref().map(|f| f.describe()))
            .field("keys", &st.keys)
            .field("in_flight", &st.in_flight)
            .finish()
    }
}

impl KeySource {
    /// Keys fetched with `fetcher`, first when a token needs them.
    pub(crate) fn fetched(fetcher: Arc<dyn FetchKeys>, timing: Timing) -> Arc<Self> {
        Arc::new(Self {
            fetcher: Some(fetcher),
            timing,
            state: RwLock::new(State::default()),
            done: watch::Sender::new(0),
        })
    }

    /// Keys given once, never fetched.
    pub(crate) fn fixed(keys: KeySet) -> Arc<Self> {
        Arc::new(Self {
            fetcher: None,
            timing: Timing {
                refresh: Duration::MAX,
                refetch: Duration::MAX,
            },
            state: RwLock::new(State {
                keys: Some(Arc::new(keys)),
                ..State::default()
            }),
            done: watch::Sender::new(0),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The key for `kid` if cached; otherwise what to do. Starts a
    /// background refresh when the keys in hand are older than an hour.
    pub(crate) fn lookup(self: &Arc<Self>, kid: &str) -> Lookup {
        let now = Instant::now();
        let (lookup, stale) = {
            let st = self.read();
            let found = st.keys.as_ref().and_then(|k| k.get(kid)).cloned();
            // A refresh that failed is tried again after the re-fetch
            // interval, not on every lookup.
            let since = |at: Option<Instant>| at.map(|at| now.saturating_duration_since(at));
            let stale = !st.in_flight
                && since(st.fetched_at).is_some_and(|d| d >= self.timing.refresh)
                && since(st.attempted_at).is_none_or(|d| d >= self.timing.refetch);
            match found {
                Some(key) => (Lookup::Found(key), stale),
                None => (self.decide(&st, now), false),
            }
        };
        if stale {
            self.start(now);
        }
        lookup
    }

    /// Whether a caller whose `kid` is not cached may (wait for a) fetch.
    fn decide(&self, st: &State, now: Instant) -> Lookup {
        if self.fetcher.is_none() {
            return Lookup::Unknown;
        }
        if st.in_flight {
            return Lookup::Wait;
        }
        let interval = if st.keys.is_none() && st.last_failed {
            self.timing.retry_after_failure()
        } else {
            self.timing.refetch
        };
        match st.attempted_at {
            Some(at) if now.saturating_duration_since(at) < interval => match st.keys {
                Some(_) => Lookup::Unknown,
                None => Lookup::Unavailable(interval - now.saturating_duration_since(at)),
            },
            _ => Lookup::Wait,
        }
    }

    /// Waits for the key `kid`: joins the fetch in flight or starts one (if
    /// still allowed), then looks again. Any number of callers waiting at
    /// once share one fetch.
    pub(crate) async fn wait_for(self: Arc<Self>, kid: &str) -> Result<Arc<VerifyKey>, Rejection> {
        let mut done = self.done.subscribe();
        let now = Instant::now();
        {
            let mut st = self.write();
            if let Some(key) = st.keys.as_ref().and_then(|k| k.get(kid)) {
                return Ok(key.clone());
            }
            match self.decide(&st, now) {
                Lookup::Found(key) => return Ok(key),
                Lookup::Unknown => return Err(RejectionKind::UnknownKey.into()),
                Lookup::Unavailable(wait) => return Err(Rejection::unavailable(wait)),
                Lookup::Wait if st.in_flight => {}
                Lookup::Wait => self.start_locked(&mut st, now),
            }
        }
        loop {
            if !self.read().in_flight {
                break;
            }
            if done.changed().await.is_err() {
                break;
            }
        }
        let st = self.read();
        match &st.keys {
            Some(keys) => keys
                .get(kid)
                .cloned()
                .ok_or_else(|| RejectionKind::UnknownKey.into()),
            None => Err(Rejection::unavailable(self.timing.retry_after_failure())),
        }
    }

    /// Fetches now, whatever the intervals say (joining a fetch in flight),
    /// and tells whether the source has keys from a fetch that succeeded.
    pub(crate) async fn refresh(self: Arc<Self>) -> bool {
        if self.fetcher.is_none() {
            return true;
        }
        let mut done = self.done.subscribe();
        self.start(Instant::now());
        while self.read().in_flight {
            if done.changed().await.is_err() {
                break;
            }
        }
        let st = self.read();
        st.keys.is_some() && !st.last_failed
    }

    pub(crate) fn describe(&self) -> &str {
        self.fetcher.as_ref().map_or("", |f| f.describe())
    }

    fn start(self: &Arc<Self>, now: Instant) {
        let mut st = self.write();
        if !st.in_flight {
            self.start_locked(&mut st, now);
        }
    }

    /// Starts the one fetch; the caller holds the write lock and has checked
    /// that none is in flight. The fetch runs as its own task, so a caller
    /// that gives up does not cancel it for the others.
    fn start_locked(self: &Arc<Self>, st: &mut State, now: Instant) {
        let Some(fetcher) = self.fetcher.clone() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        st.in_flight = true;
        st.attempted_at = Some(now);
        let guard = FetchGuard {
            source: self.clone(),
            result: None,
        };
        runtime.spawn(async move {
            let mut guard = guard;
            guard.result = Some(fetcher.fetch().await);
        });
    }

    fn finish(&self, result: Option<Result<KeySet, FetchError>>) {
        let describe = self.describe();
        {
            let mut st = self.write();
            st.in_flight = false;
            match result {
                Some(Ok(keys)) => {
                    tracing::debug!(issuer = describe, keys = keys.len(), "signing keys fetched");
                    st.keys = Some(Arc::new(keys));
                    st.fetched_at = Some(Instant::now());
                    st.last_failed = false;
                }
                Some(Err(err)) => {
                    tracing::warn!(
                        issuer = describe,
                        error = %err,
                        cached = st.keys.is_some(),
                        "could not fetch signing keys"
                    );
                    st.last_failed = true;
                }
                None => {
                    tracing::warn!(issuer = describe, "signing key fetch abandoned");
                    st.last_failed = true;
                }
            }
        }
        self.done.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Ends the fetch when its task does — normally, by panic or by runtime
/// shutdown — so waiters are never left waiting on a fetch that is gone.
struct FetchGuard {
    source: Arc<KeySource>,
    result: Option<Result<KeySet, FetchError>>,
}

impl Drop for FetchGuard {
    fn drop(&mut self) {
        self.source.finish(self.result.take());
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fetcher serving whatever document the test sets, counting fetches.
    pub(crate) struct FakeFetcher {
        pub(crate) document: Mutex<Result<String, FetchError>>,
        pub(crate) fetches: AtomicUsize,
        pub(crate) delay: Duration,
    }

    impl FetchKeys for FakeFetcher {
        fn fetch(self: Arc<Self>) -> FetchFuture {
            let this = self;
            Box::pin(async move {
                this.fetches.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(this.delay).await;
                let doc = this.document.lock().unwrap().clone()?;
                KeySet::parse(doc.as_bytes())
            })
        }
        fn describe(&self) -> &str {
            "fake"
        }
    }

    pub(crate) fn rsa_jwks(kids: &[&str]) -> String {
        // A syntactically valid 2048-bit modulus is enough to build a key.
        let n = format!("{}Q", "w".repeat(341));
        let keys: Vec<_> = kids
            .iter()
            .map(|kid| serde_json::json!({"kty":"RSA","kid":kid,"use":"sig","n":n,"e":"AQAB"}))
            .collect();
        serde_json::json!({ "keys": keys }).to_string()
    }

    fn source(doc: Result<String, FetchError>) -> (Arc<FakeFetcher>, Arc<KeySource>) {
        let fake = Arc::new(FakeFetcher {
            document: Mutex::new(doc),
            fetches: AtomicUsize::new(0),
            delay: Duration::from_millis(50),
        });
        let timing = Timing {
            refresh: Duration::from_secs(3600),
            refetch: Duration::from_secs(300),
        };
        let src = KeySource::fetched(fake.clone(), timing);
        (fake, src)
    }

    #[test]
    fn parse_keeps_only_signing_keys() {
        let doc = serde_json::json!({"keys": [
            {"kty":"RSA","kid":"r","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"},
            {"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"},
            {"kty":"oct","kid":"hmac","k":"c2VjcmV0"},
            {"kty":"EC","kid":"bad-curve","crv":"P-521","x":"AA","y":"AA"},
            {"kty":"RSA"},
            "not an object",
        ]});
        let set = KeySet::parse(doc.to_string().as_bytes()).unwrap();
        assert_eq!(set.len(), 1);
        let key = set.get("r").unwrap();
        assert!(key.accepts(Algorithm::RS256));
        assert!(key.accepts(Algorithm::PS256));
        assert!(!key.accepts(Algorithm::HS256));
        assert!(!key.accepts(Algorithm::ES256));
        for bad in [&b"{"[..], b"{}", b"{\"keys\":[]}", b"[]", b"null"] {
            assert!(KeySet::parse(bad).is_err());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_kid_fetches_once_per_cooldown_in_one_flight() {
        let (fake, src) = source(Ok(rsa_jwks(&["a"])));
        assert!(matches!(src.lookup("a"), Lookup::Wait));
        // 10,000 callers with a kid nobody has seen yet: one fetch.
        let waits = (0..10_000).map(|_| src.clone().wait_for("a"));
        let results = futures_util::future::join_all(waits).await;
        assert!(results.iter().all(|r| r.is_ok()));
        assert_eq!(fake.fetches.load(Ordering::SeqCst), 1);

        // The issuer rotates in "b": within five minutes "b" is unknown.
        *fake.document.lock().unwrap() = Ok(rsa_jwks(&["a", "b"]));
        tokio::time::advance(Duration::from_secs(299)).await;
        assert!(matches!(src.lookup("b"), Lookup::Unknown));
        let err = src.clone().wait_for("b").await.err().unwrap();
        assert_eq!(err.kind(), RejectionKind::UnknownKey);
        assert_eq!(fake.fetches.load(Ordering::SeqCst), 1);

        // After it, 10,000 callers with "b" cause exactly one more fetch.
        tokio::time::advance(Duration::from_secs(1)).await;
        let waits = (0..10_000).map(|_| src.clone().wait_for("b"));
        let results = futures_util::future::join_all(waits).await;
        assert!(results.iter().all(|r| r.is_ok()));
        assert_eq!(fake.fetches.load(Ordering::SeqCst), 2);
        // Still-unknown kids stay unknown without fetching.
        assert!(matches!(src.lookup("c"), Lookup::Unknown));
    }

    #[tokio::test(start_paused = true)]
    async fn keys_refresh_in_the_background_after_an_hour() {
        let (fake, src) = source(Ok(rsa_jwks(&["a"])));
        src.clone().wait_for("a").await.unwrap();
        tokio::time::advance(Duration::from_secs(3599)).await;
        assert!(matches!(src.lookup("a"), Lookup::Found(_)));
        assert_eq!(fake.fetches.load(Ordering::SeqCst), 1);

        // An hour on, a lookup still answers at once and starts a refresh.
        *fake.document.lock().unwrap() = Ok(rsa_jwks(&["b"]));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(matches!(src.lookup("a"), Lookup::Found(_)));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(fake.fetches.load(Ordering::SeqCst), 2);
        assert!(matches!(src.lookup("b"), Lookup::Found(_)));
        // "a" left the document, and the refresh just happened.
        assert!(matches!(src.lookup("a"), Lookup::Unknown));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_fetch_keeps_cached_keys_and_a_cold_start_is_unavailable() {
        let (fake, src) = source(Err(FetchError("connection refused".into())));
        let err = src.clone().wait_for("a").await.err().unwrap();
        assert_eq!(err.kind(), RejectionKind::IssuerUnavailable);
        // Within ten seconds no new attempt: 503 at once.
        assert!(matches!(src.lookup("a"), Lookup::Unavailable(_)));
        tokio::time::advance(Duration::from_secs(10)).await;
        *fake.document.lock().unwrap() = Ok(rsa_jwks(&["a"]));
        src.clone().wait_for("a").await.unwrap();
        assert_eq!(fake.fetches.load(Ordering::SeqCst), 2);

        // The issuer goes down; an hour later the refresh fails, keys stay.
        *fake.document.lock().unwrap() = Err(FetchError("down".into()));
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(matches!(src.lookup("a"), Lookup::Found(_)));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(fake.fetches.load(Ordering::SeqCst), 3);
        assert!(matches!(src.lookup("a"), Lookup::Found(_)));
        // A malformed document does not replace them either.
        *fake.document.lock().unwrap() = Ok("{\"keys\":7}".into());
        tokio::time::advance(Duration::from_secs(3600)).await;
        let _ = src.lookup("a");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(matches!(src.lookup("a"), Lookup::Found(_)));
    }
}
