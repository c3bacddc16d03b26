//! The Entra ID token cache: refresh ahead, single flight, keep the old
//! token through a failed refresh, forget a token the server refused.
//!
//! # Shape
//!
//! The hot path ([`TokenCache::cached`]) is a read lock, a clock read and a
//! `HeaderValue` clone (a reference count): no allocation, no await. Only a
//! request that finds no valid token awaits ([`TokenCache::fetch`]).
//!
//! Every `get_token` call runs in a spawned task, never inside a request's
//! future, so a caller that gives up (a timeout above, a dropped
//! connection) cannot cancel the fetch that other requests are waiting on.
//! An `AtomicBool` makes it single flight: the request that flips it spawns
//! the fetch, every other request waits on a `Notify` for the fetch to end.
//!
//! # Failure
//!
//! A failed or timed-out fetch sets a backoff (doubling from
//! [`EntraConfig::retry_backoff`] up to its cap). While the old token is
//! valid requests keep using it and the next request after the backoff tries
//! again. When no valid token is left, a request fails with the last fetch's
//! [`ClaudeError`] (class [`Auth`](ErrorClass::Auth)) instead of waiting
//! out the backoff, so a broken identity fails fast rather than piling up
//! requests.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use azure_core::credentials::{AccessToken, TokenCredential};
use azure_core::time::OffsetDateTime;
use claude_tower_core::{ClaudeError, ErrorClass};
use http::HeaderValue;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Scope of Azure AI Foundry's data plane.
pub const DEFAULT_SCOPE: &str = "https://ai.azure.com/.default";
/// Older scope that some tenants still need.
pub const COGNITIVE_SERVICES_SCOPE: &str = "https://cognitiveservices.azure.com/.default";

/// How an Entra ID token is asked for and cached.
///
/// ```
/// use claude_tower_auth::{EntraConfig, COGNITIVE_SERVICES_SCOPE};
/// use std::time::Duration;
///
/// let config = EntraConfig::default()
///     .with_scope(COGNITIVE_SERVICES_SCOPE)
///     .with_refresh_ahead(Duration::from_secs(120));
/// assert_eq!(config.scope(), COGNITIVE_SERVICES_SCOPE);
/// ```
#[derive(Clone, Debug)]
pub struct EntraConfig {
    scope: Arc<str>,
    refresh_ahead: Duration,
    fetch_timeout: Duration,
    backoff_min: Duration,
    backoff_max: Duration,
}

impl Default for EntraConfig {
    fn default() -> Self {
        Self {
            scope: DEFAULT_SCOPE.into(),
            refresh_ahead: Duration::from_secs(5 * 60),
            fetch_timeout: Duration::from_secs(30),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        }
    }
}

impl EntraConfig {
    /// The scope to ask for (default [`DEFAULT_SCOPE`]).
    pub fn with_scope(mut self, scope: impl Into<Arc<str>>) -> Self {
        self.scope = scope.into();
        self
    }

    /// How long before `expires_on` a background refresh starts (default 5
    /// minutes). A token that lives shorter than this is refreshed at half
    /// its lifetime.
    pub fn with_refresh_ahead(mut self, ahead: Duration) -> Self {
        self.refresh_ahead = ahead;
        self
    }

    /// How long one `get_token` call may take before it counts as failed
    /// (default 30 seconds).
    pub fn with_fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    /// The wait after a failed fetch, doubling per consecutive failure from
    /// `min` up to `max` (default 1 s to 60 s).
    pub fn with_retry_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min;
        self.backoff_max = max.max(min);
        self
    }

    /// The scope asked for.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    fn backoff(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        self.backoff_min
            .saturating_mul(factor)
            .min(self.backoff_max)
    }
}

/// A cached token, shared by every clone of an [`Auth`](crate::Auth) service.
#[derive(Clone)]
pub(crate) struct TokenCache {
    shared: Arc<Shared>,
}

struct Shared {
    credential: Arc<dyn TokenCredential>,
    name: Arc<str>,
    config: EntraConfig,
    slot: RwLock<Slot>,
    fetching: AtomicBool,
    fetched: Notify,
}

#[derive(Default)]
struct Slot {
    token: Option<Cached>,
    /// Bumped whenever a fetch ends, successful or not.
    epoch: u64,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<ClaudeError>,
}

struct Cached {
    header: HeaderValue,
    expires_at: Instant,
    refresh_at: Instant,
    epoch: u64,
}

/// Which token a request was sent with, so a 401 can forget exactly that one.
#[derive(Clone)]
pub(crate) struct Ticket {
    cache: TokenCache,
    epoch: u64,
}

impl Ticket {
    /// The server refused the token: forget it, unless a newer one already
    /// replaced it.
    pub(crate) fn invalidate(&self) {
        let shared = &self.cache.shared;
        let mut slot = shared.slot.write().unwrap_or_else(PoisonError::into_inner);
        if slot.token.as_ref().is_some_and(|t| t.epoch == self.epoch) {
            slot.token = None;
            slot.retry_at = None;
            drop(slot);
            tracing::debug!(
                credential = %shared.name,
                scope = %shared.config.scope,
                "upstream answered 401 to a bearer token; token forgotten"
            );
        }
    }
}

impl TokenCache {
    pub(crate) fn new(
        credential: Arc<dyn TokenCredential>,
        name: Arc<str>,
        config: EntraConfig,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                credential,
                name,
                config,
                slot: RwLock::new(Slot::default()),
                fetching: AtomicBool::new(false),
                fetched: Notify::new(),
            }),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.shared.name
    }

    pub(crate) fn config(&self) -> &EntraConfig {
        &self.shared.config
    }

    /// The hot path: a valid cached token, if there is one. Starts a
    /// background refresh when the token is inside its refresh-ahead window.
    pub(crate) fn cached(&self) -> Option<(HeaderValue, Ticket)> {
        let now = Instant::now();
        let slot = self
            .shared
            .slot
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let token = slot.token.as_ref().filter(|t| now < t.expires_at)?;
        let header = token.header.clone();
        let epoch = token.epoch;
        let refresh =
            now >= token.refresh_at && slot.retry_at.is_none_or(|retry_at| now >= retry_at);
        drop(slot);
        if refresh {
            self.start_fetch();
        }
        Some((
            header,
            Ticket {
                cache: self.clone(),
                epoch,
            },
        ))
    }

    /// The cold path: waits for the single in-flight fetch (starting it if
    /// needed) and returns its token, or the error that left no valid token.
    pub(crate) async fn fetch(self) -> Result<(HeaderValue, Ticket), ClaudeError> {
        let shared = &self.shared;
        let mut seen_epoch = None;
        loop {
            // Register for the wake-up before looking, so a fetch that ends
            // between the look and the wait is not missed.
            let notified = shared.fetched.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let now = Instant::now();
                let slot = shared.slot.read().unwrap_or_else(PoisonError::into_inner);
                if let Some(token) = slot.token.as_ref().filter(|t| now < t.expires_at) {
                    let ticket = Ticket {
                        cache: self.clone(),
                        epoch: token.epoch,
                    };
                    return Ok((token.header.clone(), ticket));
                }
                match seen_epoch {
                    // A fetch ended since we started waiting, and left no
                    // valid token: that fetch's failure is our answer.
                    Some(epoch) if epoch != slot.epoch => return Err(self.failure(&slot)),
                    Some(_) => {}
                    None => {
                        let backing_off = slot.retry_at.is_some_and(|at| now < at);
                        if backing_off && slot.last_error.is_some() {
                            return Err(self.failure(&slot));
                        }
                        seen_epoch = Some(slot.epoch);
                    }
                }
            }
            if !self.start_fetch() && !shared.fetching.load(Ordering::Acquire) {
                return Err(ClaudeError::new(
                    ErrorClass::Auth,
                    format!(
                        "Entra ID credential {} could not get a token for scope {}: \
                         no tokio runtime to run the fetch on",
                        shared.name, shared.config.scope
                    ),
                ));
            }
            notified.await;
        }
    }

    fn failure(&self, slot: &Slot) -> ClaudeError {
        slot.last_error.clone().unwrap_or_else(|| {
            ClaudeError::new(
                ErrorClass::Auth,
                format!(
                    "Entra ID credential {} has no valid token for scope {}",
                    self.shared.name, self.shared.config.scope
                ),
            )
        })
    }

    /// Spawns the fetch unless one is in flight. Returns whether this call
    /// started it.
    fn start_fetch(&self) -> bool {
        let shared = &self.shared;
        if shared
            .fetching
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let guard = FetchGuard {
                    shared: Arc::clone(shared),
                    done: false,
                };
                handle.spawn(run_fetch(guard));
                true
            }
            Err(_) => {
                shared.fetching.store(false, Ordering::Release);
                false
            }
        }
    }
}

/// Ends the fetch even if `get_token` panics: clears the flag and wakes the
/// waiters, who then see an error rather than wait forever.
struct FetchGuard {
    shared: Arc<Shared>,
    done: bool,
}

impl Drop for FetchGuard {
    fn drop(&mut self) {
        if !self.done {
            let reason = "the fetch task ended without an answer".to_owned();
            record_failure(&self.shared, reason, None);
        }
        self.shared.fetching.store(false, Ordering::Release);
        self.shared.fetched.notify_waiters();
    }
}

async fn run_fetch(mut guard: FetchGuard) {
    let shared = Arc::clone(&guard.shared);
    let scope: &str = &shared.config.scope;
    tracing::debug!(credential = %shared.name, scope, "fetching an Entra ID token");
    let result = tokio::time::timeout(
        shared.config.fetch_timeout,
        shared.credential.get_token(&[scope], None),
    )
    .await;
    match result {
        Ok(Ok(token)) => match cache_entry(&token) {
            Ok((header, lifetime)) => {
                let now = Instant::now();
                let ahead = shared.config.refresh_ahead;
                let refresh_in = if lifetime > ahead {
                    lifetime - ahead
                } else {
                    lifetime / 2
                };
                let mut slot = shared.slot.write().unwrap_or_else(PoisonError::into_inner);
                slot.epoch += 1;
                slot.token = Some(Cached {
                    header,
                    expires_at: now + lifetime,
                    refresh_at: now + refresh_in,
                    epoch: slot.epoch,
                });
                slot.failures = 0;
                slot.retry_at = None;
                slot.last_error = None;
                drop(slot);
                tracing::debug!(
                    credential = %shared.name,
                    scope,
                    expires_in = ?lifetime,
                    "Entra ID token cached"
                );
            }
            Err(reason) => record_failure(&shared, reason.to_owned(), None),
        },
        Ok(Err(err)) => {
            let reason = err.to_string();
            record_failure(&shared, reason, Some(err));
        }
        Err(_elapsed) => {
            let reason = format!(
                "get_token timed out after {:?}",
                shared.config.fetch_timeout
            );
            record_failure(&shared, reason, None);
        }
    }
    guard.done = true;
}

/// The header to send and how long the token lives from now.
fn cache_entry(token: &AccessToken) -> Result<(HeaderValue, Duration), &'static str> {
    let lifetime =
        Duration::try_from(token.expires_on - OffsetDateTime::now_utc()).unwrap_or(Duration::ZERO);
    if lifetime.is_zero() {
        return Err("the credential returned a token that has already expired");
    }
    let secret = token.token.secret();
    if secret.is_empty() {
        return Err("the credential returned an empty token");
    }
    let mut header = HeaderValue::try_from(format!("Bearer {secret}"))
        .map_err(|_| "the credential returned a token that is not a valid header value")?;
    header.set_sensitive(true);
    Ok((header, lifetime))
}

fn record_failure(shared: &Shared, reason: String, source: Option<azure_core::Error>) {
    let now = Instant::now();
    let mut slot = shared.slot.write().unwrap_or_else(PoisonError::into_inner);
    slot.epoch += 1;
    slot.failures = slot.failures.saturating_add(1);
    let wait = shared.config.backoff(slot.failures);
    slot.retry_at = Some(now + wait);
    let still_valid = slot.token.as_ref().is_some_and(|t| now < t.expires_at);
    let mut error = ClaudeError::new(
        ErrorClass::Auth,
        format!(
            "Entra ID credential {} could not get a token for scope {}: {reason}",
            shared.name, shared.config.scope
        ),
    );
    if let Some(source) = source {
        error = error.with_source(source);
    }
    slot.last_error = Some(error);
    let failures = slot.failures;
    drop(slot);
    if still_valid {
        tracing::warn!(
            credential = %shared.name,
            scope = %shared.config.scope,
            failures,
            retry_in = ?wait,
            %reason,
            "Entra ID token refresh failed; the current token is still valid"
        );
    } else {
        tracing::error!(
            credential = %shared.name,
            scope = %shared.config.scope,
            failures,
            retry_in = ?wait,
            %reason,
            "Entra ID token fetch failed and no valid token is left"
        );
    }
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("credential", &self.shared.name)
            .field("scope", &self.shared.config.scope)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("epoch", &self.epoch)
            .finish()
    }
}
