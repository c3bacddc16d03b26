//! A diagnostic variant of target (c): the gateway's own router
//! (`claude_tower_gateway::Gateway::router`, configured from the same
//! environment as the `gateway` example), served with `TCP_NODELAY` on every
//! accepted connection. The example serves with `axum::serve(listener, app)`,
//! which leaves Nagle's algorithm on; comparing the two runs shows what that
//! costs a streaming answer. Run as `load gateway-nodelay`.

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
