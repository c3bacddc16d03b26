//! A diagnostic variant of target (c): the gateway's own router
//! (`claude_tower_gateway::Gateway::router`, configured from the same
//! environment as the gateway binary), served with `TCP_NODELAY` on every
//! accepted connection. Run as `load gateway-nodelay`.
//!
//! It found that the old example, serving with a bare `axum::serve(listener,
//! app)`, left Nagle's algorithm on, which held streamed answers for the
//! client's delayed ACK (+40 ms on a 64 KiB stream at p50); `Gateway::serve`
//! sets the flag since. The variant stays to tell a regression in the
//! binary's serving setup from one in the stack.

use axum::serve::ListenerExt;
use claude_tower_gateway::Gateway;

/// Serves until the process is killed.
pub(crate) async fn serve() -> std::io::Result<()> {
    let gateway = Gateway::from_env()
        .await
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    let listener = tokio::net::TcpListener::bind(gateway.config().listen)
        .await?
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
    axum::serve(listener, gateway.router()).await
}
