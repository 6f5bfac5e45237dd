//! What a running node tells listeners as it happens: each announcement heard (or made), each
//! averaging and each rejected announcement. Sent on a `broadcast` channel by the node task
//! only; a listener that falls behind misses events (it is told how many), never slows the
//! node down.

use super::views::AveragingEvent;
use serde::{Deserialize, Serialize};

/// Events kept for slow listeners before the oldest are dropped.
pub const EVENT_BUFFER: usize = 256;

/// One thing that happened at a node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NodeEvent {
    /// A model announced, by a peer or by this node (`own`).
    Announce {
        at_secs: f64,
        peer_id: String,
        own: bool,
        version: u64,
        manifest: String,
        samples: u64,
        accuracy: f32,
        loss: f32,
    },
    /// An averaging finished (merged, adopted, rejected or failed).
    Averaging(AveragingEvent),
    /// An announcement refused by validation.
    Rejected {
        at_secs: f64,
        peer_id: String,
        reason: String,
    },
}

impl NodeEvent {
    /// The SSE event name of this event.
    pub fn name(&self) -> &'static str {
        match self {
            NodeEvent::Announce { .. } => "announce",
            NodeEvent::Averaging(_) => "averaging",
            NodeEvent::Rejected { .. } => "rejected",
        }
    }
}
