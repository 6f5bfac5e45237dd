//! The network: one [`EventLoop`] task owns the libp2p `Swarm`; everything else holds a
//! cheap [`Client`] that sends [`Command`]s carrying oneshot reply senders, and reads
//! [`Event`]s from a bounded channel (rust-libp2p's file-sharing pattern).
//!
//! The loop never waits on the application: inbound manifest and chunk requests are answered
//! at once from the [`ChunkStore`] handle, and gossip announcements are validated in place
//! (decoded within limits and sanity-checked, then accepted or rejected). It owns the swarm
//! and nothing else; it does not train, merge or touch the model.
//!
//! It also carries out what the node decides about hostile peers: [`Client::block`] closes
//! every connection to a peer and refuses new ones, both ways, until the block expires;
//! [`Client::penalize`] lowers the peer's gossipsub score (enough charges graylist it). Every
//! sync request is bounded by [`NetworkConfig::request_timeout`], so a peer that never answers
//! costs a timeout and a charge, never more.
//!
//! What it serves is bounded by [`limits`]: per-peer request rate and upload share, in-flight
//! caps, the node's upload limit and a response byte cap; a request past one is answered
//! `Busy`. Connections are capped in total and per peer.
//!
//! Across NATs ([`reach`], [`relay`]): AutoNAT v2 tells the node whether it is reachable; an
//! unreachable one reserves slots on relays and is dialled through their circuits; DCUtR
//! turns a relayed connection into a direct one where the NATs allow it, and the relayed one
//! is then closed. A reachable node serves as a relay within [`relay::RelayLimits`].

pub mod access;
mod behaviour;
pub mod codec;
mod event_loop;
pub mod limits;
pub mod link;
pub mod reach;
pub mod relay;
pub mod throttle;

pub use behaviour::{PENALTY_PER_CHARGE, announce_topic};
pub use codec::Traffic;
pub use event_loop::{EventLoop, distinct};
pub use limits::ServeLimits;

use crate::store::ChunkStore;
use libp2p::{Multiaddr, PeerId, identity};
use murmur_protocol::{Announce, Request, Response};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Commands waiting for the event loop. Senders wait when it is full: commands are never
/// dropped, and the loop drains them between swarm events.
const COMMAND_QUEUE: usize = 256;

/// Events waiting for the node. Announcements arrive at most a few per second per peer; if
/// the node falls this far behind, the oldest news is stale anyway and new events are dropped
/// (counted) rather than stalling the swarm.
const EVENT_QUEUE: usize = 1024;

/// How the network is set up.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Namespaces the gossip topic and the protocol ids.
    pub network_id: String,
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start, and every 10 s while not connected to them nor blocked. A
    /// trailing `/p2p/<peer id>` is optional: without it the peer's id is learned when a
    /// connection to the address is made. `/dns`, `/dns4` and `/dns6` names are resolved
    /// (through the system's resolver) when dialled; with a pre-shared key, no QUIC address.
    pub bootstrap: Vec<Multiaddr>,
    /// Relays to reserve a slot on while this node is not known to be reachable, each
    /// ending in `/p2p/<relay's peer id>`.
    pub relays: Vec<Multiaddr>,
    /// Addresses this node is known to be reachable at (a public host's), taken as
    /// confirmed external addresses without asking AutoNAT.
    pub external_addrs: Vec<Multiaddr>,
    /// When this node serves as a relay.
    pub relay_server: relay::RelayServer,
    /// What the relay it serves admits.
    pub relay_limits: relay::RelayLimits,
    pub mdns: bool,
    pub kademlia: bool,
    pub max_connections: u32,
    pub idle_timeout: Duration,
    /// Whole-exchange timeout of one sync request, ours and our peers' (request-response
    /// counts the answer's transfer in it). Keep it below a fetch's deadline, so that a peer
    /// that never answers is charged before the fetch gives up.
    pub request_timeout: Duration,
    /// Fault injection, for tests and chaos runs only: flip one byte of every chunk this node
    /// serves, to play a broken or malicious peer.
    pub corrupt_served_chunks: bool,
    /// Fault injection, for tests and chaos runs only: accept sync requests and never answer
    /// them (the streams stay open until the requester's timeout), to play a silent peer.
    pub never_answer: bool,
    /// Per-peer and node-wide serving limits (rates, upload, see [`limits`]).
    pub serving: ServeLimits,
    /// The private network's pre-shared key (`network.psk`): with one, every connection is
    /// TCP wrapped in libp2p pnet, and a peer without this key never completes one (QUIC,
    /// which pnet cannot wrap, is off). Its `Debug` shows only the key's fingerprint.
    pub psk: Option<libp2p::pnet::PreSharedKey>,
    /// Which peer ids may connect and be heard (`network.allow`, `network.deny`).
    pub access: access::Access,
    /// Test aid: the sync protocol's frames pass through this emulated link (rate and
    /// latency, see [`link`]); `None` = the real link only.
    pub emulate_link: Option<link::LinkSpec>,
}

/// Something the network heard.
#[derive(Debug, Clone)]
pub enum Event {
    /// A valid announcement, from its (signed) author.
    Announce {
        from: PeerId,
        announce: Box<Announce>,
    },
    /// An announcement that failed validation (already rejected in gossipsub).
    Rejected { from: PeerId, reason: String },
    /// Listening on a new address.
    Listening(Multiaddr),
}

/// A sync request that got no usable answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RequestError {
    #[error("request to {peer} failed: {reason}")]
    Failed { peer: PeerId, reason: String },
    #[error("request to {peer} got no answer within the request timeout")]
    Timeout { peer: PeerId },
    /// No connection to the peer could be made, or it closed while the request was in
    /// flight (a relay cut the circuit, the link went down, a peer behind a NAT has no
    /// relay reservation yet): not the peer's doing, so never charged to it.
    #[error("request to {peer} lost: no connection, or it closed")]
    Lost { peer: PeerId },
    #[error("the network event loop has stopped")]
    Stopped,
}

/// What the network looks like right now.
#[derive(Debug, Clone, Default)]
pub struct NetStatus {
    pub peer_id: Option<PeerId>,
    pub listen_addrs: Vec<Multiaddr>,
    pub connected: Vec<PeerId>,
    /// Peers blocked right now (see [`Client::block`]).
    pub blocked: Vec<PeerId>,
    /// Whether peers can dial this node (AutoNAT).
    pub reachability: reach::Reachability,
    /// External addresses confirmed by AutoNAT or configured (no circuits).
    pub external_addrs: Vec<Multiaddr>,
    /// Relays holding a reservation for this node.
    pub reservations: Vec<PeerId>,
    /// How this node is connected to each connected peer.
    pub connections: Vec<(PeerId, reach::ConnectionKind)>,
    /// Whether this node serves as a relay right now.
    pub relay_serving: bool,
    /// Seconds from the start to the first relay reservation accepted, if any.
    pub first_reservation_secs: Option<f64>,
}

#[derive(Debug)]
pub(crate) enum Command {
    Publish {
        announce: Box<Announce>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Request {
        peer: PeerId,
        request: Request,
        reply: oneshot::Sender<Result<Response, RequestError>>,
    },
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Status {
        reply: oneshot::Sender<NetStatus>,
    },
    /// Close every connection to a peer (a fresh one is made when needed).
    Disconnect {
        peer: PeerId,
    },
    /// Block a peer until told to unblock it.
    Block {
        peer: PeerId,
    },
    /// Lift a peer's block.
    Unblock {
        peer: PeerId,
    },
    /// Set a peer's application score from its charges.
    Penalize {
        peer: PeerId,
        charges: u32,
    },
}

/// A handle to the event loop; clone it freely. The loop ends when every client is dropped.
#[derive(Debug, Clone)]
pub struct Client {
    commands: mpsc::Sender<Command>,
    local_peer_id: PeerId,
}

impl Client {
    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Publishes an announcement on the network's topic.
    pub async fn publish(&self, announce: Announce) -> Result<(), String> {
        self.call(|reply| Command::Publish {
            announce: Box::new(announce),
            reply,
        })
        .await
        .unwrap_or_else(|| Err("network stopped".into()))
    }

    /// Sends a sync request to `peer` (dialing it if needed) and waits for the answer.
    pub async fn request(&self, peer: PeerId, request: Request) -> Result<Response, RequestError> {
        self.call(|reply| Command::Request {
            peer,
            request,
            reply,
        })
        .await
        .unwrap_or(Err(RequestError::Stopped))
    }

    /// Dials an address.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), String> {
        self.call(|reply| Command::Dial { addr, reply })
            .await
            .unwrap_or_else(|| Err("network stopped".into()))
    }

    /// Closes every connection to `peer`; a later request or redial makes a fresh one.
    pub async fn disconnect(&self, peer: PeerId) {
        let _ = self.commands.send(Command::Disconnect { peer }).await;
    }

    /// Closes every connection to `peer` and refuses new ones, inbound and outbound, until
    /// [`Client::unblock`]: the averaging core decides how long a block lasts, the event
    /// loop only carries it out. A bootstrap peer may be blocked too: it is redialled once
    /// unblocked. Blocking this node itself is ignored.
    pub async fn block(&self, peer: PeerId) {
        let _ = self.commands.send(Command::Block { peer }).await;
    }

    /// Lifts `peer`'s block.
    pub async fn unblock(&self, peer: PeerId) {
        let _ = self.commands.send(Command::Unblock { peer }).await;
    }

    /// Sets `peer`'s gossipsub application score to `-charges` times [`PENALTY_PER_CHARGE`]
    /// (0 restores a neutral score). Enough charges take the peer below gossipsub's gossip,
    /// publish and finally graylist thresholds. Ignored for a peer gossipsub has no score for
    /// (never connected, or forgotten since).
    pub async fn penalize(&self, peer: PeerId, charges: u32) {
        let _ = self
            .commands
            .send(Command::Penalize { peer, charges })
            .await;
    }

    /// Listen addresses, connected and blocked peers.
    pub async fn status(&self) -> NetStatus {
        self.call(|reply| Command::Status { reply })
            .await
            .unwrap_or_default()
    }
}

/// Builds the swarm for `key` and returns the client, the event stream and the loop to spawn.
pub fn new(
    key: identity::Keypair,
    cfg: NetworkConfig,
    store: ChunkStore,
    traffic: Arc<Traffic>,
) -> anyhow::Result<(Client, mpsc::Receiver<Event>, EventLoop)> {
    let local_peer_id = key.public().to_peer_id();
    let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
    let (event_tx, events) = mpsc::channel(EVENT_QUEUE);
    let event_loop = EventLoop::new(key, cfg, store, traffic, command_rx, event_tx)?;
    Ok((
        Client {
            commands,
            local_peer_id,
        },
        events,
        event_loop,
    ))
}
