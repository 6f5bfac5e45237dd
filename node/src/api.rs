//! The HTTP API every node serves (axum). Read-only: handlers read the latest
//! [`NodeStatus`] snapshot from a `watch` channel; nothing here reaches into the swarm, the
//! store or the model, and nothing on this port changes the node.

use crate::node::NodeStatus;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The routes, over a status receiver.
pub fn router(status: watch::Receiver<NodeStatus>) -> Router {
    Router::new()
        .route("/api/status", get(get_status))
        .with_state(status)
}

async fn get_status(State(status): State<watch::Receiver<NodeStatus>>) -> Json<NodeStatus> {
    Json(status.borrow().clone())
}

/// Binds `addr` and serves the API in a background task until `stop` flips to true.
/// Returns the bound address (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    status: watch::Receiver<NodeStatus>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind the dashboard on {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        let shutdown = async move {
            while stop.changed().await.is_ok() {
                if *stop.borrow() {
                    break;
                }
            }
        };
        if let Err(e) = axum::serve(listener, router(status))
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!("dashboard server: {e}");
        }
    });
    Ok(bound)
}
