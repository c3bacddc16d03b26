//! Three in-process "gateway" stacks sharing one Redis, in front of the
//! simulator: the done-when of the quota issue.
//!
//! Each stack is `QuotaLayer` (its own `RedisStore`, as a replica has) over a
//! hyper client to `claude-tower-sim`. The usage layer is being written in
//! parallel, so the test plays its part: it reads `usage` from the streamed
//! response and calls the `UsageHook` at the end of the body, as the usage
//! layer does (re-point at `claude-tower-usage` when it lands).
//!
//! **Time scaling.** Redis decides with its own clock, so time cannot be
//! paused; "a minute" of the 100,000 TPM limit is compressed into
//! [`MINUTE`] of real time by building the rate as `Rate::new(100_000, MINUTE)`.
//! The burst is 0 (strict pacing), so over one compressed minute a caller is
//! admitted at most the limit plus one request (the debt model's last one).

mod support;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use claude_tower_core::{AuthMethod, Caller, ResponseBody, TokenUsage, UsageHook, UsageRecord};
use claude_tower_quota::{Estimate, Limits, Policy, QuotaLayer, Rate, RedisStore, TokenQuota};
use claude_tower_sim::{Sim, SimConfig};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use support::RedisServer;
use tower::{Layer, Service, ServiceExt};

/// One compressed minute.
const MINUTE: Duration = Duration::from_secs(4);
const TPM: u64 = 100_000;
const CLIENTS: usize = 64;

type Upstream = Client<HttpConnector, Full<Bytes>>;

/// The "route": forwards to the simulator's Anthropic face.
#[derive(Clone)]
struct SimRoute {
    client: Upstream,
    base: Arc<str>,
}

impl Service<Request<Full<Bytes>>> for SimRoute {
    type Response = Response<Incoming>;
    type Error = hyper_util::client::legacy::Error;
    type Future = hyper_util::client::legacy::ResponseFuture;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Full<Bytes>>) -> Self::Future {
        let uri: Uri = format!("{}{}", self.base, req.uri().path())
            .parse()
            .unwrap();
        *req.uri_mut() = uri;
        req.headers_mut().insert("x-api-key", "k".parse().unwrap());
        req.headers_mut()
            .insert("anthropic-version", "2023-06-01".parse().unwrap());
        self.client.request(req)
    }
}

type Stack = claude_tower_quota::Quota<SimRoute>;
type StackResponse = Response<ResponseBody<Incoming>>;

/// The callers of `leases_taken_by_busy_replicas_keep_the_limit`, one per
/// run of it.
const LEASE_CALLERS: [&str; 3] = ["fay", "fay-2", "fay-3"];

fn limits() -> Limits {
    let per_minute = |n| Rate::new(n, MINUTE).unwrap();
    let limits =
        Limits::new(Policy::unlimited().with_tokens(per_minute(TPM).with_burst(0).unwrap()));
    // The default burst (a minute's worth): busy replicas take leases from
    // the headroom.
    let limits = LEASE_CALLERS.iter().fold(limits, |limits, caller| {
        limits.with_caller(*caller, Policy::unlimited().with_tokens(per_minute(TPM)))
    });
    limits
        .with_caller(
            "carol",
            Policy::unlimited()
                .with_quota(TokenQuota::new(20_000, claude_tower_quota::Period::Day).unwrap()),
        )
        .with_caller(
            "dave",
            Policy::unlimited().with_requests(
                Rate::new(1, Duration::from_secs(600))
                    .unwrap()
                    .with_burst(2)
                    .unwrap(),
            ),
        )
}

fn stacks(redis_url: &str, sim: &Sim) -> Vec<(QuotaLayer, Stack)> {
    let route = SimRoute {
        client: Client::builder(TokioExecutor::new()).build_http(),
        base: Arc::from(sim.anthropic_base_url()),
    };
    (0..3)
        .map(|_| {
            let store = RedisStore::builder(redis_url)
                .with_timeout(Duration::from_millis(250))
                .with_retry_interval(Duration::from_millis(100))
                .build()
                .unwrap();
            // Exact input estimate (the sim counts body bytes / 4) plus an
            // output allowance above the sim's 10: settlement refunds 6.
            let layer = QuotaLayer::new(limits(), store).with_estimate(Estimate {
                bytes_per_token: 4.0,
                output_tokens: 16,
            });
            (layer.clone(), layer.layer(route.clone()))
        })
        .collect()
}

/// A streaming Messages request whose body is `4 * tokens` bytes, so the
/// sim bills `tokens` input tokens.
fn request(caller: &str, tokens: usize) -> Request<Full<Bytes>> {
    let head = r#"{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":""#;
    let tail = r#""}]}"#;
    let pad = (4 * tokens).saturating_sub(head.len() + tail.len());
    let body = format!("{head}{}{tail}", "a".repeat(pad));
    let mut req = Request::post("/v1/messages")
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    req.extensions_mut()
        .insert(Caller::new(caller, AuthMethod::Token));
    req
}

/// Reads the stream to its end, then hands the usage record to the hook:
/// what the usage layer does. Returns the tokens billed.
async fn finish_like_the_usage_layer(mut res: StackResponse) -> u64 {
    let hook = res.extensions_mut().remove::<UsageHook>();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let mut usage = TokenUsage::default();
    for line in std::str::from_utf8(&body).unwrap().lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(data).unwrap();
        let u = match v["type"].as_str() {
            Some("message_start") => &v["message"]["usage"],
            Some("message_delta") => &v["usage"],
            _ => continue,
        };
        if let Some(n) = u["input_tokens"].as_u64() {
            usage.input = n;
        }
        if let Some(n) = u["output_tokens"].as_u64() {
            usage.output = n;
        }
    }
    let mut record = UsageRecord::new(status);
    record.usage = Some(usage);
    record.streamed = true;
    if let Some(hook) = hook {
        hook.call(&record);
    }
    usage.total()
}

async fn send(stack: &Stack, req: Request<Full<Bytes>>) -> StackResponse {
    stack
        .clone()
        .ready()
        .await
        .unwrap()
        .call(req)
        .await
        .unwrap()
}

fn retry_after_ms(res: &StackResponse) -> u64 {
    let ms: u64 = res.headers()["retry-after-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let secs: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        secs,
        ms.div_ceil(1_000),
        "retry-after is whole seconds rounded up"
    );
    ms
}

#[derive(Default)]
struct Ledger {
    /// (when the head arrived, tokens billed)
    admitted: Vec<(Instant, u64)>,
    refused: usize,
}

/// 64 concurrent streaming clients of `caller`, spread over the replicas,
/// for one compressed minute; `during` runs meanwhile.
async fn saturate(
    stacks: &Arc<Vec<(QuotaLayer, Stack)>>,
    caller: &'static str,
    during: impl Future<Output = ()>,
) -> (Ledger, Instant) {
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let start = Instant::now();
    let deadline = start + MINUTE;
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let (stacks, ledger) = (stacks.clone(), ledger.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = i;
            while Instant::now() < deadline {
                n += CLIENTS;
                let tokens = 2_000 + (n * 7_919) % 4_000;
                let res = send(&stacks[n % 3].1, request(caller, tokens)).await;
                let at = Instant::now();
                match res.status() {
                    StatusCode::OK => {
                        let billed = finish_like_the_usage_layer(res).await;
                        ledger.lock().unwrap().admitted.push((at, billed));
                    }
                    StatusCode::TOO_MANY_REQUESTS => {
                        let wait = retry_after_ms(&res);
                        ledger.lock().unwrap().refused += 1;
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                    }
                    s => panic!("unexpected {s}"),
                }
            }
        }));
    }
    during.await;
    for t in tasks {
        t.await.unwrap();
    }
    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    (ledger, start)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_64_streaming_clients_one_redis() {
    let mut redis = RedisServer::start();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let stacks = Arc::new(stacks(&redis.url(), &sim));

    // --- 64 concurrent streaming clients of one caller, one compressed
    // minute; meanwhile another caller is unaffected.
    let bob = async {
        for _ in 0..10 {
            let res = send(&stacks[0].1, request("bob", 1_000)).await;
            assert_eq!(res.status(), StatusCode::OK, "bob is isolated from ada");
            finish_like_the_usage_layer(res).await;
            tokio::time::sleep(MINUTE / 20).await;
        }
    };
    let (ledger, start) = saturate(&stacks, "ada", bob).await;
    let admitted: u64 = ledger.admitted.iter().map(|a| a.1).sum();
    let largest = ledger.admitted.iter().map(|a| a.1).max().unwrap();
    let last = ledger.admitted.iter().map(|a| a.0).max().unwrap();
    let elapsed = last.duration_since(start).max(MINUTE);
    let allowed = (TPM as f64 * elapsed.as_secs_f64() / MINUTE.as_secs_f64()) as u64;
    eprintln!(
        "ada: {} admitted ({admitted} tokens, largest {largest}), {} refused; \
         limit over {elapsed:?} = {allowed} tokens ({:.1} % used)",
        ledger.admitted.len(),
        ledger.refused,
        100.0 * admitted as f64 / TPM as f64
    );
    assert!(
        admitted <= allowed + largest,
        "{admitted} > {allowed} + {largest}"
    );
    assert!(
        admitted as f64 >= 0.95 * TPM as f64,
        "only {admitted} of {TPM} used"
    );
    assert!(ledger.refused > 0);

    // --- A 429's retry-after, when honoured, is admitted (one client alone).
    let res = send(&stacks[1].1, request("erin", 30_000)).await;
    assert_eq!(res.status(), StatusCode::OK);
    finish_like_the_usage_layer(res).await;
    let res = send(&stacks[2].1, request("erin", 100)).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait = retry_after_ms(&res);
    assert!(wait > 500, "{wait}");
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let res = send(&stacks[0].1, request("erin", 100)).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "honouring retry-after-ms is enough"
    );
    finish_like_the_usage_layer(res).await;

    // --- The period quota: 403 once 20,000 tokens of the day are used.
    let mut used = 0;
    let forbidden = loop {
        let res = send(&stacks[used as usize % 3].1, request("carol", 3_000)).await;
        if res.status() != StatusCode::OK {
            break res;
        }
        used += finish_like_the_usage_layer(res).await;
        assert!(used < 40_000, "the quota never answered");
    };
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    assert!((20_000..20_000 + 3_100).contains(&used), "{used}");
    let reset = forbidden.headers()["x-quota-tokens-reset"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(reset.ends_with("T00:00:00Z"), "{reset}");
    let body = forbidden.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["type"], "permission_error");
    assert!(v["error"]["message"].as_str().unwrap().contains(&reset));

    // --- Redis killed mid-run: still serving, limits enforced per replica
    // (dave: 2 requests per 10 min, so 2 on each of the 3 replicas).
    redis.kill();
    let mut ok = 0;
    for i in 0..12 {
        let res = send(&stacks[i % 3].1, request("dave", 10)).await;
        match res.status() {
            StatusCode::OK => {
                ok += 1;
                finish_like_the_usage_layer(res).await;
            }
            StatusCode::TOO_MANY_REQUESTS => {}
            s => panic!("fail-open answered {s}"),
        }
    }
    assert_eq!(ok, 6, "local limits: 2 per replica");
    assert!(stacks.iter().all(|(l, _)| !l.health().store.shared));

    // --- Redis back: shared again (the restarted Redis is empty: 2 in all).
    redis.restart();
    let until = Instant::now() + Duration::from_secs(15);
    while !stacks.iter().all(|(l, _)| l.health().store.shared) {
        assert!(Instant::now() < until, "never shared again");
        for (_, s) in stacks.iter() {
            let _ = finish_like_the_usage_layer(send(s, request("probe", 10)).await).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut ok = 0;
    for i in 0..9 {
        let res = send(&stacks[i % 3].1, request("dave", 10)).await;
        if res.status() == StatusCode::OK {
            ok += 1;
            finish_like_the_usage_layer(res).await;
        }
    }
    assert_eq!(ok, 2, "one shared bucket again");
}

/// The same 64 clients against a caller with the default burst (a minute's
/// worth): the busy replicas take leases from the headroom, and the limit
/// holds as tightly as request by request.
///
/// Whether a lease is granted depends on timing: a replica asks when it sees
/// the key again within a second, and Redis grants one only while a quarter
/// of the headroom is at least an eighth of what was asked, which under 64
/// clients lasts for the first few admissions. A run on a loaded machine can
/// drain the bucket before any replica asks, so the run is repeated with a
/// fresh caller (up to three times) until a lease was taken; the limit must
/// hold in every run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_taken_by_busy_replicas_keep_the_limit() {
    let redis = RedisServer::start();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let stacks = Arc::new(stacks(&redis.url(), &sim));
    let leased_so_far = |stacks: &[(QuotaLayer, Stack)]| -> u64 {
        stacks
            .iter()
            .map(|(l, _)| l.health().store.leased_checks)
            .sum()
    };
    let mut leased = 0;
    for caller in LEASE_CALLERS {
        let before = leased_so_far(&stacks);
        let (ledger, start) = saturate(&stacks, caller, async {}).await;
        let admitted: u64 = ledger.admitted.iter().map(|a| a.1).sum();
        let largest = ledger.admitted.iter().map(|a| a.1).max().unwrap();
        let last = ledger.admitted.iter().map(|a| a.0).max().unwrap();
        let elapsed = last.duration_since(start).max(MINUTE);
        // The full bucket (the burst) plus the rate over the run.
        let allowed = TPM + (TPM as f64 * elapsed.as_secs_f64() / MINUTE.as_secs_f64()) as u64;
        leased = leased_so_far(&stacks) - before;
        eprintln!(
            "{caller}: {} admitted ({admitted} tokens, largest {largest}), {} refused, {leased} from leases; \
             allowed over {elapsed:?} = {allowed} tokens",
            ledger.admitted.len(),
            ledger.refused,
        );
        assert!(
            admitted <= allowed + largest,
            "{admitted} > {allowed} + {largest}"
        );
        assert!(
            admitted as f64 >= 0.95 * (2 * TPM) as f64,
            "only {admitted} of {} used",
            2 * TPM
        );
        assert!(ledger.refused > 0);
        if leased > 0 {
            break;
        }
    }
    assert!(leased > 0, "no lease was taken in three runs");
}
