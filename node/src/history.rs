//! A bounded time series of what this node sees of the network, for `/api/history` and the
//! dashboard's charts: one point per tick with every fresh peer's accuracy and loss, the
//! consensus distance, traffic rates and merges. Owns only its ring buffer; the recorder task
//! is its one writer (fed from status snapshots), the HTTP API only reads.

use crate::status::NodeStatus;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Points kept: half an hour at one point per second.
pub const HISTORY_POINTS: usize = 1800;

/// Time between two points.
pub const HISTORY_EVERY: Duration = Duration::from_secs(1);

/// One peer at one point in time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerPoint {
    pub accuracy: f32,
    pub loss: f32,
    pub version: u64,
}

/// The network as this node saw it at one moment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HistoryPoint {
    /// Node uptime in seconds.
    pub t: f64,
    /// Every peer heard from recently, this node included, by peer id.
    pub peers: BTreeMap<String, PeerPoint>,
    pub consensus_distance: Option<f64>,
    /// Bytes per second received and sent by this node since the previous point.
    pub bytes_in_rate: f64,
    pub bytes_out_rate: f64,
    /// Merges applied by this node so far.
    pub merges: u64,
}

/// The ring buffer; cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct History {
    points: Arc<RwLock<VecDeque<HistoryPoint>>>,
    capacity: usize,
}

impl History {
    /// An empty history keeping at most `capacity` points (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            points: Arc::default(),
            capacity: capacity.max(1),
        }
    }

    /// Most points kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Appends a point, dropping the oldest when full.
    pub fn record(&self, point: HistoryPoint) {
        let mut points = self.points.write().unwrap_or_else(|e| e.into_inner());
        while points.len() >= self.capacity {
            points.pop_front();
        }
        points.push_back(point);
    }

    /// Points taken strictly after `t` (all of them for `None`), oldest first.
    pub fn since(&self, t: Option<f64>) -> Vec<HistoryPoint> {
        let points = self.points.read().unwrap_or_else(|e| e.into_inner());
        let start = t.map_or(0, |t| points.partition_point(|p| p.t <= t));
        points.range(start..).cloned().collect()
    }
}

/// The point for `status`, with rates over `elapsed` since `previous`.
pub fn point(
    status: &NodeStatus,
    previous: Option<&NodeStatus>,
    elapsed: Duration,
) -> HistoryPoint {
    let mut peers: BTreeMap<String, PeerPoint> = status
        .peers
        .iter()
        .map(|p| {
            (
                p.peer_id.clone(),
                PeerPoint {
                    accuracy: p.accuracy,
                    loss: p.loss,
                    version: p.version,
                },
            )
        })
        .collect();
    if status.version > 0 {
        peers.insert(
            status.peer_id.clone(),
            PeerPoint {
                accuracy: status.accuracy,
                loss: status.loss,
                version: status.version,
            },
        );
    }
    let secs = elapsed.as_secs_f64().max(1e-3);
    let rate =
        |now: u64, before: Option<u64>| before.map_or(0.0, |b| now.saturating_sub(b) as f64 / secs);
    HistoryPoint {
        t: status.uptime_secs,
        peers,
        consensus_distance: status.consensus_distance,
        bytes_in_rate: rate(
            status.counters.bytes_received,
            previous.map(|p| p.counters.bytes_received),
        ),
        bytes_out_rate: rate(
            status.counters.bytes_sent,
            previous.map(|p| p.counters.bytes_sent),
        ),
        merges: status.counters.merges,
    }
}

/// Records a point from `status` every `every` until `stop` turns true.
pub fn spawn_recorder(
    history: History,
    status: watch::Receiver<NodeStatus>,
    mut stop: watch::Receiver<bool>,
    every: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut previous: Option<(NodeStatus, tokio::time::Instant)> = None;
        loop {
            tokio::select! {
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break;
                    }
                }
                _ = tick.tick() => {
                    let now = status.borrow().clone();
                    let at = tokio::time::Instant::now();
                    let elapsed = previous.as_ref().map_or(every, |(_, t)| at - *t);
                    history.record(point(&now, previous.as_ref().map(|(s, _)| s), elapsed));
                    previous = Some((now, at));
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: f64) -> HistoryPoint {
        HistoryPoint {
            t,
            peers: BTreeMap::new(),
            consensus_distance: None,
            bytes_in_rate: 0.0,
            bytes_out_rate: 0.0,
            merges: 0,
        }
    }

    #[test]
    fn keeps_the_newest_points_up_to_capacity() {
        let h = History::new(3);
        for t in 0..5 {
            h.record(at(f64::from(t)));
        }
        let ts: Vec<f64> = h.since(None).iter().map(|p| p.t).collect();
        assert_eq!(ts, vec![2.0, 3.0, 4.0]);
        let ts: Vec<f64> = h.since(Some(3.0)).iter().map(|p| p.t).collect();
        assert_eq!(ts, vec![4.0]);
        assert!(h.since(Some(9.0)).is_empty());
    }

    #[test]
    fn a_point_holds_every_peer_and_the_traffic_rates() {
        let mut before = NodeStatus {
            peer_id: "me".into(),
            version: 3,
            accuracy: 0.5,
            ..NodeStatus::default()
        };
        before.counters.bytes_received = 1000;
        let mut now = before.clone();
        now.counters.bytes_received = 3000;
        now.counters.bytes_sent = 500;
        now.peers.push(crate::status::PeerView {
            peer_id: "other".into(),
            manifest: String::new(),
            version: 7,
            samples: 1,
            accuracy: 0.9,
            loss: 0.1,
            merges: 0,
            bytes_sent: 0,
            bytes_received: 0,
            last_seen_secs: 0.0,
            neighbours: vec![],
            train_share: 0.0,
            comm_share: 0.0,
        });
        let p = point(&now, Some(&before), Duration::from_secs(2));
        assert_eq!(p.peers.len(), 2);
        assert_eq!(p.peers["other"].version, 7);
        assert_eq!(p.peers["me"].accuracy, 0.5);
        assert_eq!(p.bytes_in_rate, 1000.0);
        assert_eq!(p.bytes_out_rate, 250.0);
    }
}
