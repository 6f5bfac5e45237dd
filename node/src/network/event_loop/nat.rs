//! The event loop's NAT traversal: feeds AutoNAT, relay and DCUtR events into the pure
//! [`reach`] decisions and carries out their plans (reserve on a relay, release one, switch
//! Kademlia's mode), tracks how each connection was made, and tells the swarm how to reach a
//! peer that is only reachable through a relay. It owns [`Traversal`]'s state; the swarm
//! stays the event loop's.

use super::super::behaviour::BehaviourEvent;
use super::super::reach::{self, ConnectionKind, Punches, Reach, Reachability, Reservations};
use super::EventLoop;
use libp2p::core::ConnectedPoint;
use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId, autonat, dcutr, identify, kad, relay};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Most peers remembered as having a direct address, and most (peer, relay) circuit routes
/// handed to the swarm; past either the set is cleared and rebuilt as peers are heard again.
const MAX_REMEMBERED: usize = 4096;

/// NAT traversal state of the event loop.
#[derive(Debug)]
pub(super) struct Traversal {
    started: Instant,
    reach: Reach,
    reservations: Reservations,
    /// Circuit listeners (reservations) and the relay each is on.
    listeners: HashMap<ListenerId, PeerId>,
    /// Relays from the config: peer id and address.
    configured: Vec<(PeerId, Multiaddr)>,
    /// Connected peers whose identify lists the relay (HOP) protocol, and an address to
    /// reach each.
    offered: HashMap<PeerId, Multiaddr>,
    /// Addresses we dialled peers at (not relayed), for reaching a relay again.
    dialled: HashMap<PeerId, Multiaddr>,
    /// Every open connection: its peer and kind.
    connections: HashMap<ConnectionId, (PeerId, ConnectionKind)>,
    /// (peer, relay) circuit routes already handed to the swarm.
    routed: HashSet<(PeerId, PeerId)>,
    /// Listen addresses made external for the relay's reservations (`relay_server = "on"`
    /// with no `external_addrs`): kept whatever their range, never counted as reachability.
    pinned: HashSet<Multiaddr>,
    /// Failed hole punches to retry.
    punches: Punches,
    /// Whether our relay server accepts reservations now.
    relay_serving: bool,
    /// Seconds from start to the first accepted reservation.
    first_reservation: Option<Duration>,
}

impl Traversal {
    pub(super) fn new(configured_relays: &[Multiaddr], relay_serving: bool) -> Self {
        let configured = configured_relays
            .iter()
            .filter_map(|addr| match addr.iter().last() {
                Some(Protocol::P2p(peer)) => Some((peer, addr.clone())),
                _ => None,
            })
            .collect();
        Self {
            started: Instant::now(),
            reach: Reach::default(),
            reservations: Reservations::default(),
            listeners: HashMap::new(),
            configured,
            offered: HashMap::new(),
            dialled: HashMap::new(),
            connections: HashMap::new(),
            routed: HashSet::new(),
            relay_serving,
            first_reservation: None,
            punches: Punches::default(),
            pinned: HashSet::new(),
        }
    }

    pub(super) fn reachability(&self) -> Reachability {
        self.reach.state()
    }

    pub(super) fn external_addrs(&self) -> Vec<Multiaddr> {
        self.reach.addresses().cloned().collect()
    }

    pub(super) fn reservations(&self) -> Vec<PeerId> {
        self.reservations.held().copied().collect()
    }

    pub(super) fn relay_serving(&self) -> bool {
        self.relay_serving
    }

    pub(super) fn first_reservation(&self) -> Option<Duration> {
        self.first_reservation
    }

    /// The best kind of connection to each connected peer.
    pub(super) fn connection_kinds(&self) -> Vec<(PeerId, ConnectionKind)> {
        let mut by_peer: HashMap<PeerId, Vec<ConnectionKind>> = HashMap::new();
        for (peer, kind) in self.connections.values() {
            by_peer.entry(*peer).or_default().push(*kind);
        }
        let mut kinds: Vec<(PeerId, ConnectionKind)> = by_peer
            .into_iter()
            .filter_map(|(p, k)| ConnectionKind::best(k).map(|k| (p, k)))
            .collect();
        kinds.sort();
        kinds
    }

    /// The kind of one connection, if open.
    pub(super) fn kind(&self, connection: &ConnectionId) -> Option<ConnectionKind> {
        self.connections.get(connection).map(|(_, k)| *k)
    }
}

impl EventLoop {
    /// Start-up: the configured external addresses and relays.
    pub(super) fn start_traversal(&mut self) {
        for addr in self.cfg.external_addrs.clone() {
            self.nat.reach.configured(&addr);
            self.swarm.add_external_address(addr);
        }
        for (relay, addr) in self.nat.configured.clone() {
            self.learn_address(relay, strip_p2p(&addr));
        }
        self.apply_reach();
        self.plan_reservations();
    }

    /// Asks for or releases reservations as [`Reservations::plan`] says.
    pub(super) fn plan_reservations(&mut self) {
        let now = Instant::now();
        let offered: Vec<(PeerId, Multiaddr)> = self
            .nat
            .offered
            .iter()
            .map(|(p, a)| (*p, a.clone()))
            .collect();
        let plan =
            self.nat
                .reservations
                .plan(now, self.nat.reach.state(), &self.nat.configured, &offered);
        for relay in plan.release {
            let ids: Vec<ListenerId> = self
                .nat
                .listeners
                .iter()
                .filter(|(_, r)| **r == relay)
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                self.nat.listeners.remove(&id);
                self.swarm.remove_listener(id);
            }
            self.nat.reservations.released(relay);
            tracing::info!(%relay, "reachable: reservation released");
        }
        for (relay, addr) in plan.reserve {
            let circuit = reach::circuit_listen_addr(&addr, relay);
            match self.swarm.listen_on(circuit.clone()) {
                Ok(id) => {
                    self.nat.listeners.insert(id, relay);
                    self.nat.reservations.asked(relay, now);
                    tracing::debug!(%circuit, "asking for a relay reservation");
                }
                Err(e) => {
                    tracing::debug!(%circuit, "cannot reserve: {e}");
                    self.nat.reservations.lost(relay, now);
                }
            }
        }
    }

    /// Retries due hole punches: closes the relayed connections to a peer that still has no
    /// direct one, so that the next request makes a new circuit and DCUtR punches again.
    pub(super) fn retry_punches(&mut self) {
        for peer in self.nat.punches.due(Instant::now()) {
            let conns: Vec<(ConnectionId, ConnectionKind)> = self
                .nat
                .connections
                .iter()
                .filter(|(_, (p, _))| *p == peer)
                .map(|(id, (_, k))| (*id, *k))
                .collect();
            if conns.iter().any(|(_, k)| *k != ConnectionKind::Relayed) {
                continue;
            }
            tracing::debug!(%peer, "closing the relayed connection to punch again");
            for (id, _) in conns {
                self.swarm.close_connection(id);
            }
        }
    }

    /// Kademlia's mode and, with `relay_server = "auto"`, the relay server follow
    /// reachability. (libp2p's own automatic relay status would also count the circuit
    /// address a reservation confirms: a peer behind a NAT would offer to relay.)
    fn apply_reach(&mut self) {
        if self.cfg.relay_server == super::super::relay::RelayServer::Auto
            && let Some(server) = self.swarm.behaviour_mut().relay.as_mut()
        {
            let serve = self.nat.reach.state() == Reachability::Public;
            if serve != self.nat.relay_serving {
                server.set_status(Some(if serve {
                    relay::Status::Enable
                } else {
                    relay::Status::Disable
                }));
                self.nat.relay_serving = serve;
                tracing::info!(serve, "relay server");
            }
        }
        let server = self.nat.reach.kad_server();
        if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
            let mode = if server {
                kad::Mode::Server
            } else {
                kad::Mode::Client
            };
            if kad.mode() != mode {
                tracing::info!(?mode, "kademlia mode");
                kad.set_mode(Some(mode));
            }
        }
    }

    fn reach_changed(&mut self, before: Reachability) {
        let now = self.nat.reach.state();
        if now != before {
            tracing::info!(reachability = ?now, addrs = ?self.nat.external_addrs(), "reachability");
            self.apply_reach();
            self.plan_reservations();
        }
    }

    /// A new listen address. A relay told to serve (`on`) with no configured external
    /// address hands out its listen addresses in reservations (a reservation without any is
    /// useless to the peer holding it), as libp2p's relay-server example does.
    pub(super) fn on_new_listen_addr(&mut self, address: &Multiaddr) {
        if self.cfg.relay_server == super::super::relay::RelayServer::On
            && self.cfg.external_addrs.is_empty()
            && !reach::is_circuit(address)
            && self.nat.pinned.len() < MAX_REMEMBERED
        {
            self.nat.pinned.insert(address.clone());
            self.swarm.add_external_address(address.clone());
        }
    }

    /// An external address was confirmed (by AutoNAT, a reservation or the config).
    pub(super) fn on_external_confirmed(&mut self, address: Multiaddr) {
        if self.nat.pinned.contains(&address) {
            return;
        }
        if reach::is_unroutable(&address) && !self.cfg.external_addrs.contains(&address) {
            // Only this host or a neighbour on the same network can dial it: not an external
            // address (kept, it would switch the relay server on and be advertised). A
            // circuit address (a reservation) stays: it is how others reach us.
            if !reach::is_circuit(&address) {
                self.swarm.remove_external_address(&address);
            }
            return;
        }
        let before = self.nat.reach.state();
        self.nat.reach.confirmed(&address);
        self.reach_changed(before);
    }

    pub(super) fn on_external_expired(&mut self, address: Multiaddr) {
        let before = self.nat.reach.state();
        self.nat.reach.expired(&address);
        self.reach_changed(before);
    }

    pub(super) fn on_connection_established(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        endpoint: &ConnectedPoint,
    ) {
        let kind = if endpoint.is_relayed() {
            ConnectionKind::Relayed
        } else {
            ConnectionKind::Direct
        };
        if let ConnectedPoint::Dialer { address, .. } = endpoint
            && kind == ConnectionKind::Direct
        {
            if self.nat.dialled.len() >= MAX_REMEMBERED {
                self.nat.dialled.clear();
            }
            self.nat.dialled.insert(peer, strip_p2p(address));
        }
        self.nat.connections.insert(connection, (peer, kind));
    }

    pub(super) fn on_connection_closed(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        remaining: u32,
    ) {
        self.nat.connections.remove(&connection);
        if remaining == 0 && self.nat.offered.remove(&peer).is_some() {
            self.plan_reservations();
        }
    }

    pub(super) fn on_listener_closed(&mut self, listener: ListenerId) {
        if let Some(relay) = self.nat.listeners.remove(&listener) {
            tracing::info!(%relay, "relay reservation ended");
            self.nat.reservations.lost(relay, Instant::now());
            self.plan_reservations();
        }
    }

    /// Identify told us `peer`'s protocols: note whether it serves as a relay.
    pub(super) fn on_identified(&mut self, peer: PeerId, info: &identify::Info) {
        let serves = info.protocols.contains(&relay::HOP_PROTOCOL_NAME);
        if !serves {
            if self.nat.offered.remove(&peer).is_some() {
                self.plan_reservations();
            }
            return;
        }
        let addr = self.nat.dialled.get(&peer).cloned().or_else(|| {
            info.listen_addrs
                .iter()
                .find(|a| !reach::is_circuit(a) && !reach::is_loopback(a))
                .or_else(|| info.listen_addrs.iter().find(|a| !reach::is_circuit(a)))
                .map(strip_p2p)
        });
        if let Some(addr) = addr
            && self.nat.offered.insert(peer, addr).is_none()
        {
            tracing::debug!(%peer, "peer serves as a relay");
            self.plan_reservations();
        }
    }

    /// `peer` announced and we are not connected to it: let the swarm also try it through
    /// every relay we are connected to (a relay holding no reservation for it refuses the
    /// circuit at once; a direct address, where one works, is dialled at the same time).
    /// A direct address learned from the DHT or identify may be a LAN address behind the
    /// peer's NAT, so knowing one is no reason to skip the relays.
    pub(super) fn route_through_relays(&mut self, peer: PeerId) {
        if peer == *self.swarm.local_peer_id() || self.swarm.is_connected(&peer) {
            return;
        }
        let relays: Vec<(PeerId, Multiaddr)> = self
            .nat
            .configured
            .iter()
            .cloned()
            .chain(self.nat.offered.iter().map(|(p, a)| (*p, a.clone())))
            .filter(|(r, _)| *r != peer && self.swarm.is_connected(r))
            .collect();
        for (relay, addr) in relays {
            if self.nat.routed.len() >= MAX_REMEMBERED {
                self.nat.routed.clear();
            }
            if self.nat.routed.insert((peer, relay)) {
                self.swarm
                    .add_peer_address(peer, reach::circuit_listen_addr(&addr, relay));
            }
        }
    }

    pub(super) fn handle_nat_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Autonat(autonat::v2::client::Event {
                tested_addr,
                result: Err(e),
                server,
                ..
            }) => {
                tracing::debug!(%tested_addr, %server, "not reachable at this address: {e}");
                let before = self.nat.reach.state();
                self.nat.reach.test_failed(&tested_addr);
                self.reach_changed(before);
            }
            BehaviourEvent::RelayClient(relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal,
                ..
            }) => {
                let waited = self
                    .nat
                    .reservations
                    .accepted(relay_peer_id, Instant::now());
                if !renewal {
                    if self.nat.first_reservation.is_none() {
                        self.nat.first_reservation = Some(self.nat.started.elapsed());
                    }
                    tracing::info!(relay = %relay_peer_id, ?waited, "relay reservation accepted");
                }
            }
            BehaviourEvent::RelayClient(event) => tracing::debug!(?event, "relay client"),
            BehaviourEvent::Relay(event) => self.on_relay_server_event(event),
            BehaviourEvent::Dcutr(dcutr::Event {
                remote_peer_id,
                result,
            }) => {
                self.traffic.punch_attempts.fetch_add(1, Ordering::Relaxed);
                match result {
                    Ok(direct) => {
                        self.traffic.punch_successes.fetch_add(1, Ordering::Relaxed);
                        self.nat.punches.succeeded(remote_peer_id);
                        tracing::info!(peer = %remote_peer_id, "hole punched: direct connection");
                        if let Some((_, kind)) = self.nat.connections.get_mut(&direct) {
                            *kind = ConnectionKind::Punched;
                        }
                        // Fetches and gossip move to the direct connection.
                        let relayed: Vec<ConnectionId> = self
                            .nat
                            .connections
                            .iter()
                            .filter(|(_, (p, k))| {
                                *p == remote_peer_id && *k == ConnectionKind::Relayed
                            })
                            .map(|(id, _)| *id)
                            .collect();
                        for id in relayed {
                            self.swarm.close_connection(id);
                        }
                    }
                    Err(e) => {
                        tracing::info!(peer = %remote_peer_id, "hole punch failed: {e}");
                        self.nat.punches.failed(remote_peer_id, Instant::now());
                    }
                }
            }
            _ => {}
        }
    }

    fn on_relay_server_event(&mut self, event: relay::Event) {
        match event {
            relay::Event::ReservationReqAccepted {
                src_peer_id,
                renewed: false,
            } => {
                self.traffic
                    .relay_reservations_served
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer = %src_peer_id, "relay: reservation accepted");
            }
            relay::Event::ReservationReqDenied {
                src_peer_id,
                status,
            } => {
                self.traffic.relay_refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer = %src_peer_id, ?status, "relay: reservation refused");
            }
            relay::Event::CircuitReqAccepted {
                src_peer_id,
                dst_peer_id,
            } => {
                self.traffic
                    .relay_circuits_served
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(src = %src_peer_id, dst = %dst_peer_id, "relay: circuit");
            }
            relay::Event::CircuitReqDenied {
                src_peer_id,
                dst_peer_id,
                status,
            } => {
                self.traffic.relay_refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(src = %src_peer_id, dst = %dst_peer_id, ?status, "relay: circuit refused");
            }
            _ => {}
        }
    }
}

/// `addr` without its `/p2p/<id>` parts.
fn strip_p2p(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect()
}
