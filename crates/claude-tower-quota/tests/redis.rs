//! The Redis store against a real `redis-server` (started per test).

mod support;

use std::time::{Duration, Instant};

use claude_tower_quota::{
    FailMode, Period, Policy, QuotaKey, QuotaStore, Rate, RedisStore, Verdict,
};
use support::{RedisServer, command_calls};
use tokio::net::TcpListener;

fn store(server: &RedisServer) -> RedisStore {
    RedisStore::builder(server.url())
        .with_timeout(Duration::from_millis(200))
        .with_retry_interval(Duration::from_millis(100))
        .build()
        .unwrap()
}

fn admitted(v: &Verdict) -> bool {
    *v == Verdict::Admit
}

/// Loads both scripts through `store` (the first call of each is NOSCRIPT ->
/// SCRIPT LOAD -> EVALSHA; from then on each is one EVALSHA), then resets
/// the server's command counts: a connection to read them with.
async fn warmed_up(
    store: &RedisStore,
    server: &RedisServer,
    policy: &Policy,
) -> redis::aio::MultiplexedConnection {
    let warm = QuotaKey::caller("warm");
    let adm = store.check(&warm, policy, 0).await;
    store.settle(adm.reservation.as_ref().unwrap(), 5);
    store.flush().await;
    assert_eq!(store.standing(&warm).await.unwrap().quota.unwrap().used, 5);
    let mut conn = server.client().await;
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut conn)
        .await
        .unwrap();
    conn
}

#[tokio::test]
async fn replicas_share_buckets_at_one_round_trip_before_and_one_after() {
    let server = RedisServer::start();
    let (a, b) = (store(&server), store(&server));
    let policy = Policy::unlimited()
        .with_tokens(Rate::per_minute(6_000).unwrap().with_burst(1_000).unwrap())
        .with_requests(Rate::per_minute(600).unwrap())
        .with_quota("1000000/day".parse().unwrap());
    let key = QuotaKey::caller("ada");
    let mut conn = warmed_up(&a, &server, &policy).await;

    // Replica a charges 600 estimated tokens; replica b sees them.
    let first = a.check(&key, &policy, 600).await;
    assert!(admitted(&first.verdict));
    let seen = b.check(&key, &policy, 600).await;
    assert!(admitted(&seen.verdict), "not in deficit yet");
    assert_eq!(seen.standing.tokens.unwrap().remaining, 0);
    // 200 of debt, less what refilled (100 tokens/s) between the calls.
    assert!((190..=200).contains(&seen.standing.tokens.unwrap().debt));
    let refused = a.check(&key, &policy, 1).await;
    let Verdict::RateLimited { wait } = refused.verdict else {
        panic!("{:?}", refused.verdict)
    };
    // 200 tokens of debt at 100 tokens/s.
    assert!(
        wait > Duration::from_millis(1_800) && wait <= Duration::from_secs(2),
        "{wait:?}"
    );
    // Settle: the first used 100 (500 refunded), the second exactly its estimate.
    a.settle(first.reservation.as_ref().unwrap(), 100);
    b.settle(seen.reservation.as_ref().unwrap(), 600);
    // Settlements are spawned: wait until Redis shows the refund.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let st = b.standing(&key).await.unwrap();
        if st.quota.unwrap().used == 700 {
            let remaining = st.tokens.unwrap().remaining;
            assert!((300..=400).contains(&remaining), "{remaining}");
            break;
        }
        assert!(Instant::now() < deadline, "settlement never landed: {st:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // 3 checks + 1 settlement (the exact estimate needs none) = 4 EVALSHA;
    // the 1..n standing reads are one pipelined TIME + HMGET each.
    let calls = command_calls(&mut conn).await;
    let evalsha = calls
        .iter()
        .find(|(n, _)| n == "evalsha")
        .map_or(0, |c| c.1);
    assert_eq!(evalsha, 4, "{calls:?}");
    for (name, _) in &calls {
        assert!(
            [
                "evalsha",
                "time",
                "hmget",
                "hset",
                "pexpire",
                "pttl",
                "config|resetstat"
            ]
            .contains(&name.as_str()),
            "unexpected command {name}: {calls:?}"
        );
    }
    let ttl: i64 = redis::cmd("PTTL")
        .arg("ctq:{caller:ada}")
        .query_async(&mut conn)
        .await
        .unwrap();
    // The key lives until the day's quota period ends (plus a minute).
    assert!(ttl > 60_000 && ttl <= 86_460_000, "{ttl}");
    assert!(a.health().shared && a.health().errors == 0);
}

#[tokio::test]
async fn periods_follow_the_server_clock_and_the_lua_calendar_matches_rust() {
    let server = RedisServer::start();
    let s = store(&server);
    let mut conn = server.client().await;
    for period in [Period::Hour, Period::Day, Period::Week, Period::Month] {
        let policy = Policy::unlimited()
            .with_quota(claude_tower_quota::TokenQuota::new(10, period).unwrap());
        let key = QuotaKey::caller(period.as_str());
        assert!(admitted(&s.check(&key, &policy, 10).await.verdict));
        let res = s.check(&key, &policy, 1).await;
        let (secs, _): (i64, i64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
        let Verdict::QuotaExhausted { resets, .. } = res.verdict else {
            panic!("{:?}", res.verdict)
        };
        assert_eq!(
            resets.unix_micros() / 1_000_000,
            period.bounds(secs).1,
            "{period}"
        );
    }
    // The script's calendar against Rust's, over two centuries of month and
    // week edges (the functions above `-- end of calendar` in check.lua).
    let lua = include_str!("../src/store/check.lua");
    let calendar = &lua[..lua.find("-- end of calendar").expect("marker in check.lua")];
    let script = redis::Script::new(&format!(
        "{calendar}\nlocal out = {{}}\nfor i = 1, #ARGV do local s, e = bounds(tonumber(ARGV[i]), tonumber(KEYS[1])) out[#out + 1] = s out[#out + 1] = e end\nreturn out"
    ));
    let instants: Vec<i64> = (0..2_000)
        .map(|i| i * 3_155_760 + (i % 86_400) - 86_400 * 365)
        .collect();
    for period in [Period::Hour, Period::Day, Period::Week, Period::Month] {
        let mut inv = script.key(match period {
            Period::Hour => 1,
            Period::Day => 2,
            Period::Week => 3,
            Period::Month => 4,
        });
        for t in &instants {
            inv.arg(*t);
        }
        let got: Vec<i64> = inv.invoke_async(&mut conn).await.unwrap();
        for (i, t) in instants.iter().enumerate() {
            let (s, e) = period.bounds(*t);
            assert_eq!((got[2 * i], got[2 * i + 1]), (s, e), "{period} at {t}");
        }
    }
}

#[tokio::test]
async fn an_odd_10kb_caller_id_is_one_hash_tagged_key() {
    let server = RedisServer::start();
    let s = store(&server);
    let odd: String = "}{ä\u{0}\r\n*$".repeat(1_200);
    assert!(odd.len() >= 10_000);
    let policy = Policy::unlimited().with_requests(Rate::per_minute(1).unwrap());
    let key = QuotaKey::caller(&odd);
    assert!(admitted(&s.check(&key, &policy, 0).await.verdict));
    assert!(!admitted(&s.check(&key, &policy, 0).await.verdict));
    let mut conn = server.client().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1);
    assert!(
        keys[0].starts_with("ctq:{caller#") && keys[0].ends_with('}') && keys[0].len() < 64,
        "{keys:?}"
    );
    let snap = s.snapshot().await;
    assert_eq!(snap.len(), 1);
    assert_eq!(snap[0].key, key);
}

#[tokio::test]
async fn a_redis_that_never_answers_is_bounded_by_the_timeout() {
    // Accepts connections and never says a word.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let policy = Policy::unlimited().with_requests(Rate::per_minute(2).unwrap());
    let key = QuotaKey::caller("ada");
    for mode in [FailMode::Open, FailMode::Closed] {
        let s = RedisStore::builder(format!("redis://{addr}/"))
            .with_timeout(Duration::from_millis(150))
            .with_fail_mode(mode)
            .build()
            .unwrap();
        let started = Instant::now();
        let adm = s.check(&key, &policy, 0).await;
        let took = started.elapsed();
        assert!(took < Duration::from_millis(1_000), "{took:?}");
        assert!(took >= Duration::from_millis(140), "{took:?}");
        match mode {
            FailMode::Open => assert!(admitted(&adm.verdict)),
            FailMode::Closed => assert_eq!(adm.verdict, Verdict::Unavailable),
        }
        // Known down: the next checks do not wait for Redis at all.
        let started = Instant::now();
        let adm = s.check(&key, &policy, 0).await;
        assert!(started.elapsed() < Duration::from_millis(50));
        if mode == FailMode::Open {
            // Local limits hold: 2 per minute.
            assert!(admitted(&adm.verdict));
            assert!(!admitted(&s.check(&key, &policy, 0).await.verdict));
            assert!(s.health().local_checks >= 3);
        }
        assert!(!s.health().shared);
        assert!(s.health().errors >= 1);
    }
}

#[tokio::test]
async fn redis_killed_fails_open_to_local_limits_and_restarted_is_shared_again() {
    let mut server = RedisServer::start();
    let (a, b) = (store(&server), store(&server));
    let policy =
        Policy::unlimited().with_requests(Rate::per_minute(600).unwrap().with_burst(3).unwrap());
    let key = QuotaKey::caller("ada");
    for _ in 0..3 {
        assert!(admitted(&a.check(&key, &policy, 0).await.verdict));
    }
    assert!(
        !admitted(&b.check(&key, &policy, 0).await.verdict),
        "shared"
    );

    server.kill();
    // Still serving, against each replica's own bucket (3 each).
    let mut local = 0;
    for _ in 0..5 {
        if admitted(&a.check(&key, &policy, 0).await.verdict) {
            local += 1;
        }
    }
    assert_eq!(local, 3, "local limits enforced");
    assert!(!a.health().shared);
    assert!(a.health().local_checks >= 5);

    server.restart();
    // Back: within a few retry intervals both replicas use Redis again.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(a.health().shared && b.health().shared) {
        assert!(
            Instant::now() < deadline,
            "never went back to Redis: {:?}",
            a.health()
        );
        let _ = a.check(&QuotaKey::caller("probe"), &policy, 0).await;
        let _ = b.check(&QuotaKey::caller("probe"), &policy, 0).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The restarted Redis is empty: a fresh shared bucket of 3.
    let mut shared = 0;
    for s in [&a, &b, &a, &b] {
        if admitted(&s.check(&key, &policy, 0).await.verdict) {
            shared += 1;
        }
    }
    assert_eq!(shared, 3, "shared again");
}

#[tokio::test]
async fn failing_closed_answers_503_api_error_that_may_be_retried() {
    use bytes::Bytes;
    use claude_tower_quota::{Limits, QuotaLayer};
    use http_body_util::{BodyExt, Full};
    use tower::{Layer, Service, ServiceExt};

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener); // nothing listens: connection refused
    let store = RedisStore::builder(format!("redis://{addr}/"))
        .with_timeout(Duration::from_millis(100))
        .with_fail_mode(FailMode::Closed)
        .build()
        .unwrap();
    let policy = Policy::unlimited().with_requests(Rate::per_minute(60).unwrap());
    let mut svc = QuotaLayer::new(Limits::new(policy), store).layer(tower::service_fn(
        |_req: http::Request<Full<Bytes>>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
        },
    ));
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(http::Request::new(Full::new(Bytes::new())))
        .await
        .unwrap();
    assert_eq!(res.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["x-should-retry"], "true");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["type"], "api_error");
}

#[tokio::test]
async fn a_windows_settlements_of_one_key_are_one_script_call() {
    let server = RedisServer::start();
    let a = store(&server);
    let policy = Policy::unlimited()
        .with_tokens(Rate::per_minute(6_000_000).unwrap())
        .with_quota("1000000000/day".parse().unwrap());
    let (ada, bob) = (QuotaKey::caller("ada"), QuotaKey::caller("bob"));
    let mut conn = warmed_up(&a, &server, &policy).await;

    // Twenty requests of two callers, each estimated at 100, settled at
    // 1..=10 tokens apiece, all within one window.
    let mut reservations = Vec::new();
    for key in [&ada, &bob] {
        for _ in 0..10 {
            let adm = a.check(key, &policy, 100).await;
            assert!(admitted(&adm.verdict));
            reservations.push(adm.reservation.unwrap());
        }
    }
    for (i, r) in reservations.iter().enumerate() {
        a.settle(r, (i % 10 + 1) as u64);
    }
    // A stopping service flushes what the window still holds: it is in
    // Redis when `flush` returns.
    a.flush().await;
    for key in [&ada, &bob] {
        assert_eq!(a.standing(key).await.unwrap().quota.unwrap().used, 55);
    }
    // Each caller's first two checks went to Redis (the second took a
    // lease), the other eight were spent from the lease, whose settlements
    // it absorbed; what was left of it went back at the flush. So: 4 check
    // calls, and one settlement call per key (two if a window closed while
    // the loop above ran on a loaded machine), not one per request.
    assert_eq!(a.health().leased_checks, 16);
    let evalsha = command_calls(&mut conn)
        .await
        .iter()
        .find(|(n, _)| n == "evalsha")
        .map_or(0, |c| c.1);
    let settles = evalsha - 4;
    assert!((2..=4).contains(&settles), "{settles} settlement calls");
    assert_eq!(a.health().lost_settlements, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checks_share_script_calls_and_stay_exact() {
    let server = RedisServer::start();
    let a = store(&server);
    // 20 requests at once, then one per 6 s: of 50 checks sent together,
    // exactly 20 are admitted, however they were batched.
    let policy =
        Policy::unlimited().with_requests(Rate::per_minute(10).unwrap().with_burst(20).unwrap());
    let warm = Policy::unlimited().with_quota("1000/day".parse().unwrap());
    let mut conn = warmed_up(&a, &server, &warm).await;
    let key = QuotaKey::caller("ada");
    let mut checks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        checks.spawn(a.check(&key, &policy, 0));
    }
    let mut admitted_n = 0;
    while let Some(adm) = checks.join_next().await {
        if admitted(&adm.unwrap().verdict) {
            admitted_n += 1;
        }
    }
    assert_eq!(admitted_n, 20);
    let st = a.standing(&key).await.unwrap();
    assert_eq!(st.requests.unwrap().remaining, 0);
    // Checks queued while a call is on its way go together in the next one.
    let evalsha = command_calls(&mut conn)
        .await
        .iter()
        .find(|(n, _)| n == "evalsha")
        .map_or(0, |c| c.1);
    assert!(
        (1..50).contains(&evalsha),
        "{evalsha} script calls for 50 checks"
    );
    assert!(a.health().shared && a.health().errors == 0);
}

#[tokio::test]
async fn a_busy_key_spends_a_lease_and_what_is_left_goes_back() {
    let server = RedisServer::start();
    let (a, b) = (store(&server), store(&server));
    // A slow refill (1 request a minute) so the standing reads exactly.
    let policy = Policy::unlimited()
        .with_requests(Rate::per_minute(1).unwrap().with_burst(400).unwrap())
        .with_tokens(Rate::per_minute(1).unwrap().with_burst(100_000).unwrap());
    let key = QuotaKey::caller("ada");
    let mut reservations = Vec::new();
    for _ in 0..10 {
        let adm = a.check(&key, &policy, 100).await;
        assert!(admitted(&adm.verdict));
        reservations.push(adm.reservation.unwrap());
    }
    // The first check went to Redis alone, the second took a lease (32
    // requests: a quarter of the headroom allows it), the rest spent it.
    assert_eq!(a.health().leased_checks, 8);
    // While the lease runs, the other replica sees it held.
    let held = b.standing(&key).await.unwrap();
    assert_eq!(held.requests.unwrap().remaining, 400 - 2 - 32);
    // Each request used 150 tokens, 50 more than estimated.
    for r in &reservations {
        a.settle(r, 150);
    }
    // The lease ends (expiry or a stopping service) and gives back what is
    // left: Redis holds exactly 10 requests and 1500 tokens.
    a.flush().await;
    let st = b.standing(&key).await.unwrap();
    assert_eq!(st.requests.unwrap().remaining, 400 - 10);
    assert_eq!(st.tokens.unwrap().remaining, 100_000 - 1_500);
    assert_eq!(a.health().lost_settlements, 0);
}
