//! `GET /api/network`: the whole network as this node sees it, built from a status snapshot.
//! Each peer's CPU shares and bytes per merge come from its announcements (this node's from
//! its own counters).

use crate::status::NodeStatus;
use serde::{Deserialize, Serialize};

/// One peer of the network view (this node included, with `is_self`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetworkPeer {
    pub peer_id: String,
    pub is_self: bool,
    pub version: u64,
    pub accuracy: f32,
    pub loss: f32,
    pub samples: u64,
    /// Seconds since its latest announcement (0 for this node).
    pub last_seen_secs: f64,
    /// Peers it is connected to (as it announced them; this node's own connections).
    pub neighbours: Vec<String>,
    pub merges: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Resource utilization: share of its process CPU time spent on training steps (0..=1).
    pub train_share: f32,
    /// Communication overhead: share of its process CPU time spent on the network side and
    /// merging (0..=1).
    pub comm_share: f32,
    /// `bytes_received / merges`; `null` before its first merge.
    pub bytes_per_merge: Option<f64>,
    /// How the answering node is connected to this peer: `direct`, `punched` (hole punched)
    /// or `relayed`; `null` when not connected (and for the node itself).
    #[serde(default)]
    pub connection: Option<crate::network::reach::ConnectionKind>,
}

/// The body of `GET /api/network`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetworkView {
    /// The node answering.
    pub peer_id: String,
    pub network_id: String,
    /// Every peer heard from recently, this node first.
    pub peers: Vec<NetworkPeer>,
    /// Estimated mean squared distance of the models to their mean, from the announced
    /// projections; `null` with fewer than two models.
    pub consensus_distance: Option<f64>,
}

impl From<&NodeStatus> for NetworkView {
    fn from(s: &NodeStatus) -> Self {
        let me = NetworkPeer {
            peer_id: s.peer_id.clone(),
            is_self: true,
            version: s.version,
            accuracy: s.accuracy,
            loss: s.loss,
            samples: s.samples,
            last_seen_secs: 0.0,
            neighbours: s.connected.clone(),
            merges: s.counters.merges,
            bytes_sent: s.counters.bytes_sent,
            bytes_received: s.counters.bytes_received,
            train_share: s.counters.train_share,
            comm_share: s.counters.comm_share,
            bytes_per_merge: s.counters.bytes_per_merge,
            connection: None,
        };
        let others = s.peers.iter().map(|p| NetworkPeer {
            peer_id: p.peer_id.clone(),
            is_self: false,
            version: p.version,
            accuracy: p.accuracy,
            loss: p.loss,
            samples: p.samples,
            last_seen_secs: p.last_seen_secs,
            neighbours: p.neighbours.clone(),
            merges: p.merges,
            bytes_sent: p.bytes_sent,
            bytes_received: p.bytes_received,
            train_share: p.train_share,
            comm_share: p.comm_share,
            bytes_per_merge: crate::metrics::bytes_per_merge(p.bytes_received, p.merges),
            connection: s.reach.connections.get(&p.peer_id).copied(),
        });
        Self {
            peer_id: s.peer_id.clone(),
            network_id: s.network_id.clone(),
            peers: std::iter::once(me).chain(others).collect(),
            consensus_distance: s.consensus_distance,
        }
    }
}
