//! The task that owns the `Swarm`. It `select!`s over swarm events, client commands and its
//! timers (Kademlia random walk, bootstrap redial); answers sync requests from
//! the chunk store at once; validates gossip; blocks, unblocks and penalizes peers as told (the averaging core decides); and settles
//! every pending request on success, failure, timeout or shutdown. NAT traversal (AutoNAT,
//! relay reservations, hole punching) is carried out in [`nat`].

mod nat;

use super::behaviour::{self, Behaviour, BehaviourEvent};
use super::limits::{Decision, MAX_SERVED_CHUNK_DATA, ServeState};
use super::throttle::{self, UploadGate};
use super::{Command, Event, NetStatus, NetworkConfig, RequestError, Traffic};
use crate::store::ChunkStore;
use futures::StreamExt;
use futures::future::Either;
use libp2p::core::{Transport, upgrade};
use libp2p::gossipsub::{self, MessageAcceptance};
use libp2p::multiaddr::Protocol;
use libp2p::pnet::PnetConfig;
use libp2p::request_response::{self, InboundRequestId, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, identify, identity, mdns, noise, ping, quic, tcp, yamux};
use murmur_protocol::codec::{decode_announce, encode_announce};
use murmur_protocol::{ChunkId, ChunkReply, Request, Response};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// How often Kademlia walks to a random key to find more peers.
const RANDOM_WALK_EVERY: Duration = Duration::from_secs(30);

/// How often bootstrap peers this node is not connected to are dialled again (after they
/// restarted, a link was cut or a partition healed).
const REDIAL_EVERY: Duration = Duration::from_secs(10);

/// Most peers blocked at once; blocking one more first lifts the oldest block.
const MAX_BLOCKED: usize = 1024;

/// Most unanswered inbound requests held open under `never_answer`; the oldest is dropped
/// (its stream closes) to make room.
const MAX_UNANSWERED: usize = 1024;

/// How often the serving state forgets idle peers.
const FORGET_IDLE_EVERY: Duration = Duration::from_secs(5);

/// How often relay reservations are reconsidered (a back-off may have run out).
const RESERVE_EVERY: Duration = Duration::from_secs(2);

/// The swarm's owner. Spawn [`EventLoop::run`].
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    cfg: NetworkConfig,
    store: ChunkStore,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    pending: HashMap<OutboundRequestId, (PeerId, oneshot::Sender<Result<Response, RequestError>>)>,
    topic: gossipsub::IdentTopic,
    /// The peer found at each bootstrap address given without `/p2p/<id>`.
    bootstrap_peers: HashMap<Multiaddr, PeerId>,
    /// Blocked peers and when each block began (at most [`MAX_BLOCKED`]).
    blocked: HashMap<PeerId, Instant>,
    /// Inbound requests held open unanswered (`never_answer` only).
    unanswered: VecDeque<ResponseChannel<Response>>,
    /// Per-peer and node-wide serving limits (buckets, in-flight counts).
    serving: ServeState,
    /// Responses handed to a connection and not yet written: their peer and size.
    answering: HashMap<InboundRequestId, (PeerId, u64)>,
    traffic: Arc<Traffic>,
    /// Reachability, reservations and connection kinds.
    nat: nat::Traversal,
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop")
            .field("peer_id", self.swarm.local_peer_id())
            .finish_non_exhaustive()
    }
}

impl EventLoop {
    pub(super) fn new(
        key: identity::Keypair,
        cfg: NetworkConfig,
        store: ChunkStore,
        traffic: Arc<Traffic>,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<Event>,
    ) -> anyhow::Result<Self> {
        let behaviour_cfg = cfg.clone();
        let build_behaviour = |key: &identity::Keypair, relay_client| {
            behaviour::build(key, &behaviour_cfg, traffic.clone(), relay_client)
                .map_err(Box::<dyn std::error::Error + Send + Sync>::from)
        };
        let idle = cfg.idle_timeout;
        // `max_upload_mbps` holds back every byte written on a direct connection, relayed
        // circuits included ([`super::throttle`]).
        let gate = cfg
            .serving
            .max_upload_bytes_per_sec
            .map(|rate| Arc::new(UploadGate::new(rate, std::time::Instant::now())));
        let tcp_config = tcp::Config::default().nodelay(true);
        let uploaded = traffic.clone();
        let mut swarm = match cfg.psk {
            // A private network: TCP only, each connection wrapped in pnet (XSalsa20 under
            // the key) before noise; without the key the multistream negotiation that follows
            // is noise and the connection fails. pnet cannot wrap QUIC. A relay circuit runs
            // inside the pnet connections of both ends to the relay (so only holders of the
            // key reach one), with noise end to end inside it.
            Some(psk) => libp2p::SwarmBuilder::with_existing_identity(key)
                .with_tokio()
                .with_other_transport(|key| {
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                        tcp::tokio::Transport::new(tcp_config)
                            .and_then(move |socket, _| PnetConfig::new(psk).handshake(socket))
                            .upgrade(upgrade::Version::V1Lazy)
                            .authenticate(noise::Config::new(key)?)
                            .multiplex(yamux::Config::default())
                            .map(move |(peer, muxer), _| {
                                (peer, throttle::wrap(muxer, gate.clone(), uploaded.clone()))
                            }),
                    )
                })?
                .with_dns()
                .map_err(|e| anyhow::anyhow!("reading the system's DNS configuration: {e}"))?
                .with_relay_client(noise::Config::new, yamux::Config::default)?
                .with_behaviour(build_behaviour)?
                .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
                .build(),
            // TCP (noise, yamux) and QUIC, as `SwarmBuilder::with_tcp` and `with_quic` build
            // them, each connection's muxer behind the upload gate.
            None => libp2p::SwarmBuilder::with_existing_identity(key)
                .with_tokio()
                .with_other_transport(|key| {
                    let tcp = tcp::tokio::Transport::new(tcp_config)
                        .upgrade(upgrade::Version::V1Lazy)
                        .authenticate(noise::Config::new(key)?)
                        .multiplex(yamux::Config::default());
                    let quic = quic::tokio::Transport::new(quic::Config::new(key));
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(tcp.or_transport(quic).map(
                        move |either, _| match either {
                            Either::Left((peer, muxer)) => {
                                (peer, throttle::wrap(muxer, gate.clone(), uploaded.clone()))
                            }
                            Either::Right((peer, muxer)) => {
                                (peer, throttle::wrap(muxer, gate.clone(), uploaded.clone()))
                            }
                        },
                    ))
                })?
                .with_dns()
                .map_err(|e| anyhow::anyhow!("reading the system's DNS configuration: {e}"))?
                .with_relay_client(noise::Config::new, yamux::Config::default)?
                .with_behaviour(build_behaviour)?
                .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
                .build(),
        };
        if let Some(psk) = &cfg.psk {
            tracing::info!(fingerprint = %psk.fingerprint(), "private network (pre-shared key)");
        }
        for addr in &cfg.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        }
        let topic = behaviour::announce_topic(&cfg.network_id);
        let nat = nat::Traversal::new(
            &cfg.relays,
            cfg.relay_server == super::relay::RelayServer::On,
        );
        Ok(Self {
            nat,
            swarm,
            store,
            commands,
            events,
            pending: HashMap::new(),
            topic,
            bootstrap_peers: HashMap::new(),
            blocked: HashMap::new(),
            unanswered: VecDeque::new(),
            serving: ServeState::new(cfg.serving, std::time::Instant::now()),
            answering: HashMap::new(),
            traffic,
            cfg,
        })
    }

    /// Runs until every [`super::Client`] is dropped.
    pub async fn run(mut self) {
        self.start_traversal();
        self.bootstrap();
        let mut reserve = tokio::time::interval(RESERVE_EVERY);
        reserve.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut walk = tokio::time::interval(RANDOM_WALK_EVERY);
        let mut redial = tokio::time::interval(REDIAL_EVERY);
        redial.tick().await;
        let mut forget = tokio::time::interval(FORGET_IDLE_EVERY);
        forget.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.handle_event(event),
                command = self.commands.recv() => match command {
                    Some(c) => self.handle_command(c),
                    None => break,
                },
                _ = redial.tick() => self.redial(),
                _ = forget.tick() => self.serving.forget_idle(std::time::Instant::now()),
                _ = reserve.tick() => {
                    self.plan_reservations();
                    self.retry_punches();
                }
                _ = walk.tick() => {
                    if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
                        kad.get_closest_peers(PeerId::random());
                    }
                }
            }
        }
        for (_, (peer, reply)) in self.pending.drain() {
            let _ = reply.send(Err(RequestError::Failed {
                peer,
                reason: "shutting down".into(),
            }));
        }
    }

    fn bootstrap(&mut self) {
        for addr in self.cfg.bootstrap.clone() {
            if let Some(Protocol::P2p(peer)) = addr.iter().last() {
                let base: Multiaddr = addr
                    .iter()
                    .filter(|p| !matches!(p, Protocol::P2p(_)))
                    .collect();
                self.swarm.add_peer_address(peer, base.clone());
                if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
                    kad.add_address(&peer, base);
                }
            }
            if let Err(e) = self.swarm.dial(addr.clone()) {
                tracing::warn!(%addr, "cannot dial bootstrap peer: {e}");
            }
        }
        if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
            let _ = kad.bootstrap();
        }
    }

    /// Dials every bootstrap address whose peer is not connected.
    fn redial(&mut self) {
        for addr in self.cfg.bootstrap.clone() {
            let peer = match addr.iter().last() {
                Some(Protocol::P2p(peer)) => Some(peer),
                _ => self.bootstrap_peers.get(&addr).copied(),
            };
            if peer.is_some_and(|p| self.swarm.is_connected(&p) || self.blocked.contains_key(&p)) {
                continue;
            }
            tracing::debug!(%addr, "dialling bootstrap peer again");
            if let Err(e) = self.swarm.dial(addr.clone()) {
                tracing::debug!(%addr, "cannot dial bootstrap peer: {e}");
            }
        }
    }

    /// Blocks `peer` until it is unblocked (at most [`MAX_BLOCKED`] peers at once; blocking
    /// one more first lifts the oldest block).
    fn block(&mut self, peer: PeerId) {
        if peer == *self.swarm.local_peer_id() {
            return;
        }
        if !self.blocked.contains_key(&peer)
            && self.blocked.len() >= MAX_BLOCKED
            && let Some(oldest) = self
                .blocked
                .iter()
                .min_by_key(|(_, since)| **since)
                .map(|(p, _)| *p)
        {
            self.unblock(oldest);
        }
        self.blocked.entry(peer).or_insert_with(Instant::now);
        // Closes every connection to the peer and refuses new ones, both ways.
        self.swarm.behaviour_mut().blocked.block_peer(peer);
        tracing::info!(%peer, "blocked");
    }

    fn unblock(&mut self, peer: PeerId) {
        self.blocked.remove(&peer);
        if self.swarm.behaviour_mut().blocked.unblock_peer(peer) {
            tracing::info!(%peer, "unblocked");
        }
    }

    fn emit(&mut self, event: Event) {
        if self.events.try_send(event).is_err() {
            self.traffic.events_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("event queue full or closed; dropping an event");
        }
    }

    fn learn_address(&mut self, peer: PeerId, addr: Multiaddr) {
        self.swarm.add_peer_address(peer, addr.clone());
        if super::reach::is_circuit(&addr) {
            // A relayed route: the swarm may dial it; the DHT holds direct addresses only.
            return;
        }
        if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
            kad.add_address(&peer, addr);
        }
    }

    fn handle_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, peer_id = %self.swarm.local_peer_id(), "listening");
                self.on_new_listen_addr(&address);
                self.emit(Event::Listening(address));
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => self.handle_gossip(propagation_source, message_id, message),
            SwarmEvent::Behaviour(BehaviourEvent::Sync(event)) => self.handle_sync(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                self.on_identified(peer_id, &info);
                for addr in info.listen_addrs {
                    self.learn_address(peer_id, addr);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                connection,
                result: Err(e),
            })) => {
                // A connection that does not answer pings is dead even if TCP has not noticed
                // yet; closing it lets gossip and requests use a fresh one (bootstrap peers are
                // dialled again, others on demand).
                tracing::debug!(%peer, "ping failed ({e}); closing the connection");
                self.swarm.close_connection(connection);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, addr) in found {
                    self.learn_address(peer, addr.clone());
                    if !self.swarm.is_connected(&peer) {
                        let _ = self.swarm.dial(addr);
                    }
                }
            }
            SwarmEvent::Behaviour(
                event @ (BehaviourEvent::Autonat(_)
                | BehaviourEvent::RelayClient(_)
                | BehaviourEvent::Relay(_)
                | BehaviourEvent::Dcutr(_)),
            ) => self.handle_nat_event(event),
            SwarmEvent::ExternalAddrConfirmed { address } => self.on_external_confirmed(address),
            SwarmEvent::ExternalAddrExpired { address } => self.on_external_expired(address),
            SwarmEvent::ListenerClosed { listener_id, .. } => self.on_listener_closed(listener_id),
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                self.on_connection_established(peer_id, connection_id, &endpoint);
                if let libp2p::core::ConnectedPoint::Dialer { address, .. } = &endpoint
                    && self.cfg.bootstrap.contains(address)
                {
                    self.bootstrap_peers.insert(address.clone(), peer_id);
                }
                tracing::debug!(%peer_id, "connected")
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                cause,
                ..
            } => {
                self.on_connection_closed(peer_id, connection_id, num_established);
                tracing::debug!(%peer_id, ?cause, "disconnected")
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                self.traffic
                    .connections_failed
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(?peer_id, "dial failed: {error}");
            }
            SwarmEvent::IncomingConnectionError {
                error,
                send_back_addr,
                ..
            } => {
                self.traffic
                    .connections_failed
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%send_back_addr, "inbound connection failed: {error}");
            }
            _ => {}
        }
    }

    fn handle_gossip(
        &mut self,
        source: PeerId,
        id: gossipsub::MessageId,
        message: gossipsub::Message,
    ) {
        let author = message.source.unwrap_or(source);
        if !self.cfg.access.admits(&author) {
            // Relayed by an admitted peer, written by one the operator keeps out: neither
            // heard nor passed on.
            self.swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(&id, &source, MessageAcceptance::Ignore);
            return;
        }
        let (acceptance, event) = match decode_announce(&message.data) {
            Ok(announce) => {
                self.route_through_relays(author);
                (
                    MessageAcceptance::Accept,
                    Event::Announce {
                        from: author,
                        announce: Box::new(announce),
                    },
                )
            }
            Err(e) => {
                tracing::warn!(%author, %source, "rejected announcement: {e}");
                (
                    MessageAcceptance::Reject,
                    Event::Rejected {
                        from: author,
                        reason: e.to_string(),
                    },
                )
            }
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&id, &source, acceptance);
        self.emit(event);
    }

    /// Answers from the store without waiting: a missing chunk is `NotHeld`, chunks past
    /// [`MAX_SERVED_CHUNK_DATA`] are `OverBudget`, and an id asked for twice in one request is
    /// answered once (see [`distinct`]). Returns the response and the payload bytes it carries.
    fn serve(&self, request: Request) -> (Response, u64) {
        match request {
            Request::Manifest(id) => {
                let bytes = self.store.manifest_bytes(&id);
                let len = bytes.as_ref().map_or(0, |b| b.len() as u64);
                (Response::Manifest(bytes), len)
            }
            Request::Chunks(ids) => {
                let ids = distinct(&ids);
                let mut budget = MAX_SERVED_CHUNK_DATA;
                let replies: Vec<ChunkReply> = self
                    .store
                    .chunks(&ids)
                    .into_iter()
                    .map(|found| match found {
                        None => ChunkReply::NotHeld,
                        Some(data) if data.len() <= budget => {
                            budget -= data.len();
                            if self.cfg.corrupt_served_chunks {
                                let mut bad = data.to_vec();
                                if let Some(b) = bad.first_mut() {
                                    *b ^= 0xFF;
                                }
                                return ChunkReply::Data(bad.into());
                            }
                            ChunkReply::Data(data)
                        }
                        Some(_) => ChunkReply::OverBudget,
                    })
                    .collect();
                let len = (MAX_SERVED_CHUNK_DATA - budget) as u64;
                (Response::Chunks(replies), len)
            }
        }
    }

    /// Answers one inbound request, or `Busy` when the peer or the node is over a limit.
    fn answer(
        &mut self,
        peer: PeerId,
        request_id: InboundRequestId,
        request: Request,
        channel: ResponseChannel<Response>,
    ) {
        let (response, bytes) = match self.serving.admit(peer, std::time::Instant::now()) {
            Decision::Serve => self.serve(request),
            Decision::Busy(reason) => {
                tracing::debug!(%peer, ?reason, "busy");
                self.traffic.busy_sent.fetch_add(1, Ordering::Relaxed);
                (Response::Busy, 0)
            }
        };
        let busy = matches!(response, Response::Busy);
        if self
            .swarm
            .behaviour_mut()
            .sync
            .send_response(channel, response)
            .is_err()
        {
            tracing::debug!(%peer, "could not answer: connection closed");
        } else if !busy {
            self.serving.sent(peer, bytes);
            self.answering.insert(request_id, (peer, bytes));
        }
    }

    /// A response was written, or failed: it is no longer in flight.
    fn answered(&mut self, request_id: InboundRequestId) {
        if let Some((peer, bytes)) = self.answering.remove(&request_id) {
            self.serving.done(peer, bytes);
        }
    }

    fn handle_sync(&mut self, event: request_response::Event<Request, Response>) {
        match event {
            request_response::Event::Message {
                peer,
                message,
                connection_id,
            } => match message {
                request_response::Message::Request {
                    request_id,
                    request,
                    channel,
                } => {
                    if self.cfg.never_answer {
                        // Fault injection: hold the stream open, unanswered, until the
                        // requester gives up (or the oldest is dropped to make room).
                        if self.unanswered.len() >= MAX_UNANSWERED {
                            self.unanswered.pop_front();
                        }
                        self.unanswered.push_back(channel);
                        return;
                    }
                    self.answer(peer, request_id, request, channel);
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if matches!(response, Response::Busy) {
                        self.traffic.busy_received.fetch_add(1, Ordering::Relaxed);
                    }
                    let counter = match self.nat.kind(&connection_id) {
                        Some(super::reach::ConnectionKind::Relayed) => {
                            &self.traffic.fetched_relayed
                        }
                        _ => &self.traffic.fetched_direct,
                    };
                    counter.fetch_add(payload_bytes(&response), Ordering::Relaxed);
                    if let Some((_, reply)) = self.pending.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some((_, reply)) = self.pending.remove(&request_id) {
                    let _ = reply.send(Err(match error {
                        request_response::OutboundFailure::Timeout => {
                            RequestError::Timeout { peer }
                        }
                        // The connection closed under the request (a relay cut the
                        // circuit), or no connection could be made (a peer behind a NAT
                        // before its relay reservation is up): nothing the peer did.
                        request_response::OutboundFailure::ConnectionClosed
                        | request_response::OutboundFailure::DialFailure => {
                            self.traffic.requests_lost.fetch_add(1, Ordering::Relaxed);
                            RequestError::Lost { peer }
                        }
                        error => RequestError::Failed {
                            peer,
                            reason: error.to_string(),
                        },
                    }));
                }
            }
            request_response::Event::InboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                tracing::debug!(%peer, "inbound sync request failed: {error}");
                self.answered(request_id);
            }
            request_response::Event::ResponseSent { request_id, .. } => self.answered(request_id),
        }
    }

    fn handle_command(&mut self, command: Command) {
        match command {
            Command::Publish { announce, reply } => {
                let result = encode_announce(&announce)
                    .map_err(|e| e.to_string())
                    .and_then(|bytes| {
                        let topic = self.topic.clone();
                        self.swarm
                            .behaviour_mut()
                            .gossipsub
                            .publish(topic, bytes)
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    });
                let _ = reply.send(result);
            }
            Command::Request {
                peer,
                request,
                reply,
            } => {
                let id = self.swarm.behaviour_mut().sync.send_request(&peer, request);
                self.pending.insert(id, (peer, reply));
            }
            Command::Dial { addr, reply } => {
                let _ = reply.send(self.swarm.dial(addr).map_err(|e| match e {
                    // Its `Display` leaves the cause out.
                    libp2p::swarm::DialError::Denied { cause } => format!("dial denied: {cause}"),
                    e => e.to_string(),
                }));
            }
            Command::Disconnect { peer } => {
                let _ = self.swarm.disconnect_peer_id(peer);
            }
            Command::Block { peer } => self.block(peer),
            Command::Unblock { peer } => self.unblock(peer),
            Command::Penalize { peer, charges } => {
                let score = -f64::from(charges) * behaviour::PENALTY_PER_CHARGE;
                // False when gossipsub keeps no score for the peer: nothing to lower.
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .set_application_score(&peer, score);
            }
            Command::Status { reply } => {
                let _ = reply.send(NetStatus {
                    peer_id: Some(*self.swarm.local_peer_id()),
                    listen_addrs: self.swarm.listeners().cloned().collect(),
                    connected: self.swarm.connected_peers().copied().collect(),
                    blocked: self.blocked.keys().copied().collect(),
                    reachability: self.nat.reachability(),
                    external_addrs: self.nat.external_addrs(),
                    reservations: self.nat.reservations(),
                    connections: self.nat.connection_kinds(),
                    relay_serving: self.nat.relay_serving(),
                    first_reservation_secs: self.nat.first_reservation().map(|d| d.as_secs_f64()),
                });
            }
        }
    }
}

/// The model bytes an answer carries (manifest and chunk data).
fn payload_bytes(response: &Response) -> u64 {
    match response {
        Response::Manifest(bytes) => bytes.as_ref().map_or(0, |b| b.len() as u64),
        Response::Chunks(replies) => replies
            .iter()
            .map(|r| match r {
                ChunkReply::Data(d) => d.len() as u64,
                _ => 0,
            })
            .sum(),
        _ => 0,
    }
}

/// The ids of a chunk request, each once, in the order of their first occurrence: a request
/// naming one id many times gets one reply for it (the requester matches replies to the
/// distinct ids of its request, in that order).
pub fn distinct(ids: &[ChunkId]) -> Vec<ChunkId> {
    let mut seen = HashSet::with_capacity(ids.len());
    ids.iter().copied().filter(|id| seen.insert(*id)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_ids_are_answered_once_in_first_occurrence_order() {
        let (a, b, c) = (ChunkId::of(b"a"), ChunkId::of(b"b"), ChunkId::of(b"c"));
        assert_eq!(distinct(&[a, b, a, a, c, b]), vec![a, b, c]);
        assert_eq!(distinct(&[a; 64]), vec![a]);
        assert!(distinct(&[]).is_empty());
    }
}
