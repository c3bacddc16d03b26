//! The gateway as a library: configured from a map instead of the process
//! environment, served on an ephemeral port, sent one request, shut down.
//!
//! ```sh
//! cargo run --example gateway_in_process
//! ```
//!
//! The `claude-tower-gateway` binary does the same with the process
//! environment, flags and `--config`, and `shutdown_signal()` (Ctrl-C or
//! SIGTERM) as its shutdown.

use std::collections::HashMap;

use bytes::Bytes;
use claude_tower_gateway::Gateway;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Nothing upstream and a loopback address: the built-in simulator, with
    // a retryable fault on the first direct-route request.
    let vars = HashMap::from([
        ("CLAUDE_TOWER_LISTEN", "127.0.0.1:0"),
        ("CLAUDE_TOWER_SIM_FAULTS", "anthropic=529,ok"),
        ("CLAUDE_TOWER_RETRY_BACKOFF", "10ms,50ms"),
    ]);
    let gateway = Gateway::from_lookup(|name| vars.get(name).map(|v| (*v).to_owned())).await?;
    let listener = tokio::net::TcpListener::bind(gateway.config().listen).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(gateway.serve(listener, async {
        let _ = stopped.await;
    }));

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = http::Request::post(format!("http://{addr}/v1/messages"))
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01")
        .body(Full::new(Bytes::from_static(
            br#"{"model":"claude-sonnet-4-5","max_tokens":32,"messages":[{"role":"user","content":"Hello"}]}"#,
        )))?;
    let res = client.request(req).await?;
    println!(
        "{} via {:?}, attempts {:?}",
        res.status(),
        res.headers().get("x-claude-tower-route"),
        res.headers().get("x-claude-tower-attempts")
    );
    let body = res.into_body().collect().await?.to_bytes();
    println!("{}", String::from_utf8_lossy(&body));

    drop(client);
    let _ = stop.send(());
    serving.await??;
    Ok(())
}
