//! What a running node says about itself: the status snapshot the node task publishes
//! ([`views`]: [`NodeStatus`], the peers it hears, its latest averagings) and the events it
//! broadcasts as they happen ([`events`]). Plain data: written only by the node task (and
//! by `murmur sim --serve`, which shows a simulation through the same dashboard), read by
//! the HTTP API, the history recorder and the tests. It must not hold any live state.

pub mod events;
pub mod views;

pub use events::{EVENT_BUFFER, NodeEvent};
pub use views::{AveragingEvent, ModelFetch, NodeStatus, PeerView, RECENT_AVERAGINGS, ReachView};
