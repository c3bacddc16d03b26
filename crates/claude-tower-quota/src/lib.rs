//! Per-caller token and request limits for Claude, in memory or shared by
//! gateway replicas through Redis.
//!
//! A team that hands Claude Code to 500 developers needs one of them not to
//! burn the whole Foundry TPM quota or the month's budget. [`QuotaLayer`]
//! keeps, per key (the [`Caller`](claude_tower_core::Caller) id by default):
//!
//! - **tokens per minute**, a rate with a burst ([`Rate`]);
//! - **a token quota per UTC calendar period**: hour, day, ISO week, month
//!   ([`TokenQuota`], `5000000/month`);
//! - **requests per minute** ([`Rate`]).
//!
//! Over a rate, a request is answered `429 rate_limit_error` with
//! `retry-after` (whole seconds, rounded up) and `retry-after-ms`, so Claude
//! Code and the SDKs back off for exactly as long as needed; over the quota,
//! `403 permission_error` naming when the period resets. Every response
//! carries the caller's standing: `anthropic-ratelimit-tokens-{limit,remaining,reset}`
//! and `anthropic-ratelimit-requests-*` (RFC 3339 resets), plus
//! `x-quota-tokens-*` for the period quota.
//!
//! ```
//! use claude_tower_core::{AuthMethod, Caller, ResponseBody, TokenUsage, UsageHook, UsageRecord};
//! use claude_tower_quota::{Limits, MemoryStore, Policy, QuotaLayer, Rate};
//! use http::{Request, Response, StatusCode};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let policy = Policy::unlimited()
//!     .with_tokens(Rate::per_minute(1_000).unwrap())
//!     .with_quota("5000000/month".parse().unwrap());
//! let mut svc = ServiceBuilder::new()
//!     .layer(QuotaLayer::new(Limits::new(policy), MemoryStore::new()))
//!     .service_fn(|_req: Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::from("{}")))
//!     });
//!
//! let ada = Caller::new("ada", AuthMethod::Token);
//! let mut req = Request::new(String::new());
//! req.extensions_mut().insert(ada.clone());
//! let mut res = svc.ready().await.unwrap().call(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.headers()["anthropic-ratelimit-tokens-limit"], "1000");
//!
//! // The usage layer (claude-tower-usage) calls the hook when the body ends;
//! // here by hand: 1500 tokens put the caller 500 into debt.
//! let hook = res.extensions_mut().remove::<UsageHook>().unwrap();
//! let mut record = UsageRecord::new(StatusCode::OK);
//! record.usage = Some(TokenUsage { input: 1_200, output: 300, ..TokenUsage::default() });
//! hook.call(&record);
//!
//! let mut req = Request::new(String::new());
//! req.extensions_mut().insert(ada);
//! let res = svc.ready().await.unwrap().call(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(res.headers()["retry-after"], "30"); // 500 tokens at 1000/min
//! # }
//! ```
//!
//! # Why charge at the end: the debt model
//!
//! A request's tokens are known only when its response ends (a stream's
//! `message_delta` carries the output count). So, as Envoy AI Gateway does,
//! admission looks only at what was already charged: a request is admitted
//! while the caller's token bucket is **not in deficit**, and its actual
//! tokens are charged when the usage layer hands over the [`UsageRecord`]
//! (through the [`UsageHook`] this layer puts in the response). An admitted
//! stream is **never cut off**; the bucket may go **into debt**, and later
//! requests wait the debt out (the 429's `retry-after` says how long). Over a
//! window `T` a caller is admitted at most `burst + rate x T` plus one
//! request's tokens.
//!
//! To make concurrent requests of one caller see each other, admission also
//! charges an **estimate** ([`Estimate`], default: body bytes / 4, the
//! `content-length` or the body's exact size), corrected at settlement.
//! Without it, 64 requests arriving together would all be admitted against
//! the same untouched bucket (LiteLLM's 4x overshoot, in one process).
//!
//! Settlement, exactly once per admitted request:
//!
//! | what happened | settled at |
//! |---|---|
//! | the usage record has usage | `input + cache_creation + cache_read + output`, each times its [`Weights`] (cache reads can count less) |
//! | an error status with no usage (a failed upstream request) | 0: the estimate is refunded, nothing billed, nothing charged |
//! | the inner service returned an error (no response) | 0 |
//! | the hook was dropped uncalled (no usage layer), or usage unreadable | the estimate stands; counted in [`QuotaHealth::unknown_usage`] |
//!
//! A refused request (429/403) is not charged at all, so clients that retry
//! do not dig themselves deeper.
//!
//! [`UsageRecord`]: claude_tower_core::UsageRecord
//! [`UsageHook`]: claude_tower_core::UsageHook
//!
//! # Why GCRA
//!
//! Each rate is a GCRA bucket (the generic cell rate algorithm, as in
//! `governor`): one number per bucket, the *theoretical arrival time* (TAT),
//! from which "tokens left", "debt" and "full again at" all follow. It is
//! a token bucket without a refill timer, exact at any rate, and its state is
//! a single field that a Redis script can update atomically. A fixed window
//! would allow twice the limit across a window edge; a sliding log would
//! store every request. The TAT is also exactly what
//! `anthropic-ratelimit-tokens-reset` announces.
//!
//! The default burst is one minute's worth (a full bucket replenished
//! continuously, as Anthropic's own limits), so an idle developer can start a
//! few parallel requests at once. `burst_tokens = 0` paces strictly.
//!
//! Requests are strict (no debt: a request's cost of 1 is known up front);
//! the period quota admits while `used < quota` (the last request may go
//! over) and resets at the period's start in UTC.
//!
//! # Keys and policies
//!
//! The key is the `Caller` id, else the value of a configured header, else
//! one global key ([`KeySource`]); odd or long ids are hashed
//! ([`QuotaKey`]). Policies: a default, overrides per group (a caller in
//! several groups gets, per limit, the most generous of its groups' values),
//! then per caller; see [`Limits`].
//!
//! # Stores
//!
//! [`MemoryStore`] (the default; sharded, no global lock; limits per
//! process) or `RedisStore` (feature `redis`, on by default; shared by
//! replicas; at most one `EVALSHA` before a request, group-committed with
//! the others in flight, settlements batched after, using the server's
//! `TIME`; a key busy on one replica is served from a **lease**, an
//! allowance taken from its headroom ahead of time and given back when it
//! ends, so a hot caller costs no round trip per request; fails open to a
//! local `MemoryStore` by default). See each for details.
//!
//! # Whose rate-limit headers win
//!
//! On the Anthropic route, upstream sends its own `anthropic-ratelimit-*`
//! headers. By default ([`HeaderPrecedence::Upstream`]) they are kept and the
//! caller's are not written over them: upstream's describe the
//! organisation's real limit, which a client has no other way to see, and
//! mixing two sources under one header family would be read as one limit.
//! The caller's own limit is still enforced (its 429 carries its own
//! headers) and the period quota travels in `x-quota-tokens-*`. Where
//! upstream sends none (Foundry, local answers), the caller's are written.
//! [`HeaderPrecedence::Ours`] always writes the caller's.
//!
//! # In a gateway
//!
//! The layer sits inside the usage layer (so its hook is called) and
//! outside the routes. [`QuotaConfig`] reads the `[quota]` section of a file
//! and the `CLAUDE_TOWER_*` variables; [`QuotaLayer::from_config`] builds the
//! layer; [`QuotaLayer::snapshot`] serves `GET /usage`.

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

mod config;
mod key;
mod layer;
mod policy;
mod store;
mod time;

#[cfg(feature = "test-util")]
pub mod test_util;

pub use config::{
    ENV_REDIS_URL, ENV_RPM, ENV_TOKEN_QUOTA, ENV_TPM, FailMode, HeaderPrecedence, Limit, Limits,
    PolicyConfig, QuotaConfig, QuotaLimit, Unlimited,
};
pub use key::{KeySource, QuotaKey};
pub use layer::{
    QUOTA_LIMIT, QUOTA_REMAINING, QUOTA_RESET, Quota, QuotaHealth, QuotaLayer, REQUESTS_LIMIT,
    REQUESTS_REMAINING, REQUESTS_RESET, ResponseFuture, TOKENS_LIMIT, TOKENS_REMAINING,
    TOKENS_RESET,
};
pub use policy::{Estimate, InvalidQuotaConfig, MAX_LIMIT, Policy, Rate, TokenQuota, Weights};
pub use store::memory::MemoryStore;
#[cfg(feature = "redis")]
pub use store::redis::{RedisStore, RedisStoreBuilder, SETTLE_WINDOW};
pub use store::{
    Admission, QuotaStanding, QuotaStore, RateStanding, Reservation, Standing, StoreFuture,
    StoreHealth, Verdict,
};
pub use time::{Period, Timestamp};
