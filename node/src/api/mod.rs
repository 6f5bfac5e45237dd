//! The HTTP API and dashboard every node serves (axum). Read-only: handlers read the latest
//! [`NodeStatus`] snapshot, the [`History`] ring buffer and the node's event stream; nothing
//! here reaches into the swarm, the store or the model, and nothing on this port changes the
//! node. Field names are documented in `docs/api.md`.

mod assets;
mod metrics;
mod views;

pub use views::{NetworkPeer, NetworkView};

use crate::history::{History, HistoryPoint};
use crate::node::RunningNode;
use crate::status::{NodeEvent, NodeStatus};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::Stream;
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};

/// What the API reads from a node.
#[derive(Debug, Clone)]
pub struct Sources {
    pub status: watch::Receiver<NodeStatus>,
    pub history: History,
    pub events: broadcast::Sender<NodeEvent>,
}

impl From<&RunningNode> for Sources {
    fn from(node: &RunningNode) -> Self {
        Self {
            status: node.status.clone(),
            history: node.history.clone(),
            events: node.events.clone(),
        }
    }
}

/// The routes.
pub fn router(sources: Sources) -> Router {
    Router::new()
        .route("/", get(assets::index))
        .route("/assets/{file}", get(assets::file))
        .route("/api/status", get(get_status))
        .route("/api/network", get(get_network))
        .route("/api/history", get(get_history))
        .route("/api/events", get(get_events))
        .route("/metrics", get(get_metrics))
        .with_state(sources)
}

async fn get_status(State(s): State<Sources>) -> Json<NodeStatus> {
    Json(s.status.borrow().clone())
}

async fn get_network(State(s): State<Sources>) -> Json<NetworkView> {
    Json(NetworkView::from(&*s.status.borrow()))
}

/// `GET /api/history?since=T`.
#[derive(Debug, Deserialize)]
struct HistoryQuery {
    /// Only points taken after this node uptime (seconds).
    since: Option<f64>,
}

/// The body of `GET /api/history`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryView {
    /// This node, whose uptime the points' `t` counts.
    pub peer_id: String,
    /// Seconds between points.
    pub interval_secs: f64,
    /// Most points kept.
    pub capacity: usize,
    pub points: Vec<HistoryPoint>,
}

async fn get_history(State(s): State<Sources>, Query(q): Query<HistoryQuery>) -> Json<HistoryView> {
    Json(HistoryView {
        peer_id: s.status.borrow().peer_id.clone(),
        interval_secs: crate::history::HISTORY_EVERY.as_secs_f64(),
        capacity: s.history.capacity(),
        points: s.history.since(q.since.filter(|t| t.is_finite())),
    })
}

/// `GET /api/events`: one server-sent event per [`NodeEvent`] (its `event:` is the type, its
/// `data:` the JSON); a listener that fell behind gets a `lagged` event saying how many it
/// missed.
async fn get_events(
    State(s): State<Sources>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = s.events.subscribe();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await {
            Ok(e) => Event::default()
                .event(e.name())
                .data(serde_json::to_string(&e).unwrap_or_default()),
            Err(broadcast::error::RecvError::Lagged(n)) => Event::default()
                .event("lagged")
                .data(format!("{{\"missed\":{n}}}")),
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(event), rx))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
}

async fn get_metrics(State(s): State<Sources>) -> Response {
    let status = s.status.borrow().clone();
    match metrics::encode(&status) {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(_) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "metrics could not be encoded",
        )
            .into_response(),
    }
}

/// Binds `addr` and serves the API in a background task until `stop` flips to true.
/// Returns the bound address (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    sources: Sources,
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
        if let Err(e) = axum::serve(listener, router(sources))
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!("dashboard server: {e}");
        }
    });
    Ok(bound)
}
