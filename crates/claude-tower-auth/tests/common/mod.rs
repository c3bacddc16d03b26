//! A fake `TokenCredential` that counts calls and can answer, fail or hang.

#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::error::ErrorKind;
use azure_core::time::OffsetDateTime;

/// What the next `get_token` call does.
#[derive(Clone, Debug)]
pub enum Mode {
    /// Answer `token-N` (N = call number) valid for the lifetime.
    Tokens,
    /// Answer this exact token.
    Fixed(&'static str),
    /// Answer these tokens in order, then repeat the last one.
    Sequence(Vec<&'static str>),
    /// Fail with an error message.
    Fail,
    /// Never answer.
    Hang,
}

#[derive(Debug)]
pub struct FakeCredential {
    calls: AtomicUsize,
    mode: Mutex<Mode>,
    lifetime: Duration,
    /// Simulated latency of the identity provider (tokio time).
    latency: Duration,
    scopes: Mutex<Vec<String>>,
}

impl FakeCredential {
    pub fn new(mode: Mode, lifetime: Duration) -> Arc<Self> {
        Self::with_latency(mode, lifetime, Duration::ZERO)
    }

    pub fn with_latency(mode: Mode, lifetime: Duration, latency: Duration) -> Arc<Self> {
        Arc::new(Self {
            calls: AtomicUsize::new(0),
            mode: Mutex::new(mode),
            lifetime,
            latency,
            scopes: Mutex::new(Vec::new()),
        })
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().expect("mode") = mode;
    }

    pub fn scopes(&self) -> Vec<String> {
        self.scopes.lock().expect("scopes").clone()
    }
}

#[async_trait::async_trait]
impl TokenCredential for FakeCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.scopes
            .lock()
            .expect("scopes")
            .extend(scopes.iter().map(|s| s.to_string()));
        let mode = self.mode.lock().expect("mode").clone();
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let expires_on = OffsetDateTime::now_utc()
            + azure_core::time::Duration::seconds(self.lifetime.as_secs() as i64);
        match mode {
            Mode::Tokens => Ok(AccessToken::new(format!("token-{n}"), expires_on)),
            Mode::Fixed(token) => Ok(AccessToken::new(token, expires_on)),
            Mode::Sequence(tokens) => {
                let token = tokens[(n - 1).min(tokens.len() - 1)];
                Ok(AccessToken::new(token, expires_on))
            }
            Mode::Fail => Err(azure_core::Error::with_message(
                ErrorKind::Credential,
                "identity provider unreachable",
            )),
            Mode::Hang => std::future::pending().await,
        }
    }
}
