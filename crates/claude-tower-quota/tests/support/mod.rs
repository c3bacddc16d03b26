//! A real `redis-server` per test (the crate's `test_util`), and command
//! counts.

#![allow(dead_code)]

pub(crate) use claude_tower_quota::test_util::RedisServer;

/// `INFO commandstats` as (command, calls) pairs.
pub(crate) async fn command_calls(
    conn: &mut redis::aio::MultiplexedConnection,
) -> Vec<(String, u64)> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    let mut out = Vec::new();
    for line in info.lines() {
        let Some(rest) = line.strip_prefix("cmdstat_") else {
            continue;
        };
        let Some((name, stats)) = rest.split_once(':') else {
            continue;
        };
        let calls = stats
            .split(',')
            .find_map(|kv| kv.strip_prefix("calls="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        out.push((name.to_owned(), calls));
    }
    out.sort();
    out
}
