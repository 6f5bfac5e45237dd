//! What a running node publishes about itself and about the peers it hears from: plain data,
//! written only by the node task and read (as a snapshot) by the HTTP API and the tests.

use crate::metrics::CounterSnapshot;
use serde::{Deserialize, Serialize};

/// One peer as seen through its latest announcement.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerView {
    pub peer_id: String,
    pub manifest: String,
    pub version: u64,
    pub samples: u64,
    pub accuracy: f32,
    pub loss: f32,
    pub merges: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Seconds since the announcement arrived.
    pub last_seen_secs: f64,
    pub neighbours: Vec<String>,
    /// Its resource utilization as announced: the share of its process CPU time spent on
    /// training steps (0..=1; see `CounterSnapshot::train_share`).
    #[serde(default)]
    pub train_share: f32,
    /// Its communication overhead as announced: the share of its process CPU time spent on
    /// the network side and merging (0..=1; see `CounterSnapshot::comm_share`).
    #[serde(default)]
    pub comm_share: f32,
}

/// The node's own state.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct NodeStatus {
    pub peer_id: String,
    pub network_id: String,
    pub listen_addrs: Vec<String>,
    pub connected: Vec<String>,
    /// Model version counter (rounds, continued across restarts).
    pub version: u64,
    /// Id of the current announced model (hex), empty before the first round.
    pub manifest: String,
    pub accuracy: f32,
    pub loss: f32,
    pub samples: u64,
    /// Training samples this node had folded in when `accuracy` and `loss` were measured
    /// (evaluations are spaced out, so this trails `samples`).
    #[serde(default)]
    pub eval_samples: u64,
    pub uptime_secs: f64,
    /// True once the node resumed from a checkpoint at start.
    pub resumed: bool,
    /// The model version in the latest checkpoint written or loaded, if any.
    #[serde(default)]
    pub checkpoint_version: Option<u64>,
    /// Why the latest checkpoint write failed (path and cause), until one succeeds again.
    #[serde(default)]
    pub checkpoint_error: Option<String>,
    pub counters: CounterSnapshot,
    /// Peers heard from recently (not this node).
    pub peers: Vec<PeerView>,
    /// Mean squared distance of every known model to their mean, estimated from the
    /// announced projections (this node included); `None` with fewer than two models.
    pub consensus_distance: Option<f64>,
    /// Bad answers currently charged to each peer (failed or corrupt fetches, rejected
    /// announcements); a peer at its error budget is avoided.
    pub error_charges: std::collections::BTreeMap<String, u32>,
    /// Peers blocked for having spent their error budget (disconnected, connections
    /// refused, announcements ignored until the block ends).
    #[serde(default)]
    pub blocked: Vec<String>,
    /// The latest averagings, oldest first (at most [`RECENT_AVERAGINGS`]).
    #[serde(default)]
    pub averagings: Vec<AveragingEvent>,
    /// How this node joined: the adoption of the network's model, if it adopted one.
    #[serde(default)]
    pub adoption: Option<AveragingEvent>,
    /// How this node is reached: reachability, relays, connection kinds.
    #[serde(default)]
    pub reach: ReachView,
}

/// How a node is reached across NATs (from the network's status).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ReachView {
    /// `public` (another peer dialled one of its addresses back), `private` (tested, none
    /// reachable: reached through relays) or `unknown`.
    pub reachability: crate::network::reach::Reachability,
    /// External addresses confirmed by AutoNAT or configured (`network.external_addrs`).
    pub external_addrs: Vec<String>,
    /// Relays holding a reservation for this node (peer ids).
    pub reservations: Vec<String>,
    /// Seconds from the start to the first reservation accepted, if any.
    pub first_reservation_secs: Option<f64>,
    /// Whether this node serves as a relay now.
    pub relay_serving: bool,
    /// How it is connected to each connected peer: `direct`, `punched` or `relayed`.
    pub connections: std::collections::BTreeMap<String, crate::network::reach::ConnectionKind>,
}

/// Averagings kept in [`NodeStatus::averagings`].
pub const RECENT_AVERAGINGS: usize = 16;

/// One finished averaging: the models fetched and what became of them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AveragingEvent {
    /// Node uptime when it finished, in seconds.
    pub at_secs: f64,
    /// `adopt` (a fresh node took the network's model) or `merge`.
    pub kind: String,
    /// What happened: `merged`, `adopted`, `rejected` (no model usable) or `failed` (none
    /// fetched).
    pub outcome: String,
    /// Wall time of the fetches, in milliseconds.
    pub millis: u64,
    pub models: Vec<ModelFetch>,
}

/// One model fetched (or not) during an averaging.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelFetch {
    /// The peer whose announcement named the model.
    pub peer_id: String,
    pub manifest: String,
    pub chunks_fetched: u64,
    pub chunks_reused: u64,
    /// Chunks received from each peer (the announcer and other holders).
    pub sources: std::collections::BTreeMap<String, u64>,
    /// How old the model was when it was chosen, in this node's rounds: the time since its
    /// announcement arrived over this node's recent round time.
    #[serde(default)]
    pub lag_rounds: f64,
    /// Why the model was not used, if it was not.
    pub error: Option<String>,
}
