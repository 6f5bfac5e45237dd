//! Reachability and relay reservations: what this node knows about being reachable, which
//! relays it holds a slot on, and which it should ask next. Pure decisions over scripted
//! inputs (AutoNAT results, relay events, the time); [`super::EventLoop`] feeds them and
//! carries out the plans (`listen_on` a circuit address, remove a listener, set Kademlia's
//! mode). It touches no swarm and no socket.

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// Reservations an unreachable node tries to hold at once: one to be reached through, one
/// to take over at once when a relay goes away.
pub const WANT_RESERVATIONS: usize = 2;

/// First wait before asking a relay again after it refused, failed or dropped a
/// reservation; doubled on each further failure up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(5);

/// Longest wait before asking a relay again.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Whether peers can dial this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Reachability {
    /// Nothing known (no AutoNAT server among the peers, no candidate address, or only
    /// loopback and site-local addresses confirmed: a LAN or loopback testnet stays here).
    #[default]
    Unknown,
    /// At least one of its public addresses was dialled back by another peer (AutoNAT v2),
    /// or `network.external_addrs` names one.
    Public,
    /// Its candidate addresses were tested and none was reachable: behind a NAT or a
    /// firewall; it is reached through relays.
    Private,
}

impl Reachability {
    /// As written in the API and the metrics' labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Public => "public",
            Self::Private => "private",
        }
    }
}

/// True for an address that is only meaningful on this host (`127.0.0.0/8`, `::1`): never
/// an external address.
pub fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}

/// True for an address only reachable inside a site: private IPv4 ranges (10/8,
/// 172.16/12, 192.168/16), shared address space (100.64/10), link-local, and IPv6
/// unique-local (fc00::/7) and link-local (fe80::/10). A dial-back to one proves only that a
/// neighbour on the same network can dial it.
pub fn is_site_local(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => {
            let [a, b, ..] = ip.octets();
            ip.is_private() || ip.is_link_local() || (a == 100 && (64..128).contains(&b))
        }
        Protocol::Ip6(ip) => {
            let first = ip.segments()[0];
            (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
        _ => false,
    })
}

/// True for an address AutoNAT's confirmation says nothing about for peers elsewhere:
/// loopback, site-local or a circuit. Such a confirmation is dropped.
pub fn is_unroutable(addr: &Multiaddr) -> bool {
    is_loopback(addr) || is_site_local(addr) || is_circuit(addr)
}

/// True for a relayed (circuit) address.
pub fn is_circuit(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| p == Protocol::P2pCircuit)
}

/// The address to reserve a slot on `relay` at `addr`: `<addr>/p2p/<relay>/p2p-circuit`.
pub fn circuit_listen_addr(addr: &Multiaddr, relay: PeerId) -> Multiaddr {
    let base: Multiaddr = addr
        .iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect();
    base.with(Protocol::P2p(relay)).with(Protocol::P2pCircuit)
}

/// The node's reachability, from AutoNAT's verdicts.
#[derive(Debug, Clone, Default)]
pub struct Reach {
    /// Confirmed external addresses: public ones AutoNAT confirmed, and configured ones.
    confirmed: BTreeSet<Multiaddr>,
    /// AutoNAT tests that failed since the last confirmation.
    failed: u32,
}

impl Reach {
    /// AutoNAT confirmed an address reachable. Loopback, site-local and circuit addresses
    /// say nothing about being dialable from elsewhere ([`is_unroutable`]) and are ignored
    /// (returns false for them): on a LAN or loopback testnet a node stays `Unknown`.
    pub fn confirmed(&mut self, addr: &Multiaddr) -> bool {
        if is_unroutable(addr) {
            return false;
        }
        self.configured(addr)
    }

    /// An address the operator says is reachable (`network.external_addrs`): taken whatever
    /// its range (a docker or campus network may route private addresses), circuits aside.
    pub fn configured(&mut self, addr: &Multiaddr) -> bool {
        if is_circuit(addr) {
            return false;
        }
        self.failed = 0;
        self.confirmed.insert(addr.clone());
        true
    }

    /// A confirmed address expired.
    pub fn expired(&mut self, addr: &Multiaddr) {
        self.confirmed.remove(addr);
    }

    /// An AutoNAT test of one of our candidates failed (the server could not dial it back).
    pub fn test_failed(&mut self, addr: &Multiaddr) {
        if !is_loopback(addr) && !is_circuit(addr) {
            self.failed = self.failed.saturating_add(1);
        }
    }

    pub fn state(&self) -> Reachability {
        if !self.confirmed.is_empty() {
            Reachability::Public
        } else if self.failed > 0 {
            Reachability::Private
        } else {
            Reachability::Unknown
        }
    }

    /// The confirmed external addresses (no circuits).
    pub fn addresses(&self) -> impl Iterator<Item = &Multiaddr> {
        self.confirmed.iter()
    }

    /// Whether Kademlia should answer queries: a server unless known to be unreachable (a
    /// server nobody can dial would poison the others' routing tables).
    pub fn kad_server(&self) -> bool {
        self.state() != Reachability::Private
    }
}

/// What to do about reservations now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Relays to ask for a slot, with the address to reach each.
    pub reserve: Vec<(PeerId, Multiaddr)>,
    /// Relays whose reservation (held or asked for) to drop.
    pub release: Vec<PeerId>,
}

#[derive(Debug, Clone, Copy)]
struct Backoff {
    until: Instant,
    next: Duration,
}

/// The relay slots this node holds and asks for.
#[derive(Debug, Clone, Default)]
pub struct Reservations {
    /// Accepted reservations and since when.
    held: HashMap<PeerId, Instant>,
    /// Asked for, not yet accepted.
    asked: HashMap<PeerId, Instant>,
    backoff: HashMap<PeerId, Backoff>,
}

impl Reservations {
    /// What to reserve or release at `now`. Not known to be reachable (unknown or private):
    /// hold [`WANT_RESERVATIONS`], on `configured` relays first, then on `offered` ones
    /// (connected peers that serve as relays; only public peers serve by default, so on a
    /// LAN there are none). A peer does not wait for AutoNAT's verdict, which takes a dial-back
    /// timeout per address behind a NAT: a slot that turns out not to be needed is released
    /// once the peer is found public. A relay in back-off, already held or asked for is
    /// skipped.
    pub fn plan(
        &self,
        now: Instant,
        state: Reachability,
        configured: &[(PeerId, Multiaddr)],
        offered: &[(PeerId, Multiaddr)],
    ) -> Plan {
        if state == Reachability::Public {
            return Plan {
                reserve: Vec::new(),
                release: self.held.keys().chain(self.asked.keys()).copied().collect(),
            };
        }
        let mut have = self.held.len() + self.asked.len();
        let mut reserve: Vec<(PeerId, Multiaddr)> = Vec::new();
        for (relay, addr) in configured.iter().chain(offered) {
            if have >= WANT_RESERVATIONS {
                break;
            }
            let busy = self.held.contains_key(relay)
                || self.asked.contains_key(relay)
                || reserve.iter().any(|(r, _)| r == relay)
                || self.backoff.get(relay).is_some_and(|b| now < b.until);
            if !busy {
                reserve.push((*relay, addr.clone()));
                have += 1;
            }
        }
        Plan {
            reserve,
            release: Vec::new(),
        }
    }

    /// A reservation was asked of `relay`.
    pub fn asked(&mut self, relay: PeerId, now: Instant) {
        self.asked.insert(relay, now);
    }

    /// `relay` accepted (or renewed) our reservation; returns how long it took since we
    /// asked, for a first acceptance.
    pub fn accepted(&mut self, relay: PeerId, now: Instant) -> Option<Duration> {
        self.backoff.remove(&relay);
        let waited = self.asked.remove(&relay).map(|at| now - at);
        self.held.entry(relay).or_insert(now);
        waited
    }

    /// The reservation on `relay` ended (its listener closed: the relay refused, went away,
    /// or the connection to it dropped); ask it again only after a back-off.
    pub fn lost(&mut self, relay: PeerId, now: Instant) {
        self.held.remove(&relay);
        self.asked.remove(&relay);
        let next = self
            .backoff
            .get(&relay)
            .map_or(FIRST_BACKOFF, |b| (b.next * 2).min(MAX_BACKOFF));
        self.backoff.insert(
            relay,
            Backoff {
                until: now + next,
                next,
            },
        );
    }

    /// We dropped the reservation on `relay` ourselves (no back-off).
    pub fn released(&mut self, relay: PeerId) {
        self.held.remove(&relay);
        self.asked.remove(&relay);
    }

    /// Relays holding a slot for us.
    pub fn held(&self) -> impl Iterator<Item = &PeerId> {
        self.held.keys()
    }
}

/// Hole punches retried after a failure: the relayed connection is closed after a pause,
/// so that the next request makes a new one and DCUtR punches again (DCUtR itself tries once
/// per relayed connection). At most [`MAX_PUNCH_RETRIES`] per peer, after
/// [`PUNCH_RETRY_AFTER`] times the retry's number: behind a NAT that cannot be punched the
/// peer then stays relayed.
pub const MAX_PUNCH_RETRIES: u32 = 2;

/// See [`MAX_PUNCH_RETRIES`].
pub const PUNCH_RETRY_AFTER: Duration = Duration::from_secs(10);

/// Most peers whose punch retries are remembered; past it the oldest entries are dropped.
const MAX_PUNCH_PEERS: usize = 4096;

/// Failed hole punches and when to try each peer again.
#[derive(Debug, Clone, Default)]
pub struct Punches {
    /// Per peer: retries scheduled so far, and when the next one is due (if any).
    peers: HashMap<PeerId, (u32, Option<Instant>)>,
}

impl Punches {
    /// A punch to `peer` failed at `now`: schedules a retry unless it had its share.
    pub fn failed(&mut self, peer: PeerId, now: Instant) {
        if self.peers.len() >= MAX_PUNCH_PEERS && !self.peers.contains_key(&peer) {
            self.peers.clear();
        }
        let (tries, next) = self.peers.entry(peer).or_insert((0, None));
        if *tries < MAX_PUNCH_RETRIES {
            *tries += 1;
            *next = Some(now + PUNCH_RETRY_AFTER * *tries);
        }
    }

    /// A punch to `peer` worked: nothing more to retry.
    pub fn succeeded(&mut self, peer: PeerId) {
        self.peers.remove(&peer);
    }

    /// The peers whose retry is due at `now` (each returned once per scheduled retry).
    pub fn due(&mut self, now: Instant) -> Vec<PeerId> {
        let mut due = Vec::new();
        for (peer, (_, next)) in self.peers.iter_mut() {
            if next.is_some_and(|at| at <= now) {
                *next = None;
                due.push(*peer);
            }
        }
        due.sort();
        due
    }
}

/// How this node is connected to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionKind {
    /// Through a relay's circuit.
    Relayed,
    /// A direct connection made by hole punching (DCUtR) from a relayed one.
    Punched,
    /// A plain direct connection.
    Direct,
}

impl ConnectionKind {
    /// As written in the API and the metrics' labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Relayed => "relayed",
            Self::Punched => "punched",
            Self::Direct => "direct",
        }
    }

    /// The kind that best describes several connections to one peer: any direct
    /// connection wins over a relayed one.
    pub fn best(kinds: impl IntoIterator<Item = ConnectionKind>) -> Option<ConnectionKind> {
        kinds.into_iter().max_by_key(|k| match k {
            ConnectionKind::Relayed => 0,
            ConnectionKind::Punched => 1,
            ConnectionKind::Direct => 2,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn reachability_follows_autonat_and_ignores_loopback_and_circuits() {
        let mut r = Reach::default();
        assert_eq!(r.state(), Reachability::Unknown);
        assert!(r.kad_server());
        r.test_failed(&addr("/ip4/127.0.0.1/tcp/1"));
        assert_eq!(r.state(), Reachability::Unknown, "loopback says nothing");
        assert!(!r.confirmed(&addr("/ip4/127.0.0.1/tcp/1")));
        assert!(!r.confirmed(&addr(
            "/ip4/192.0.2.1/tcp/1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit"
        )));
        assert_eq!(r.state(), Reachability::Unknown);
        assert!(
            !r.confirmed(&addr("/ip4/192.168.1.20/tcp/1")),
            "a LAN neighbour's word"
        );
        assert!(!r.confirmed(&addr("/ip4/10.1.2.3/tcp/1")));
        assert!(!r.confirmed(&addr("/ip4/100.64.0.1/tcp/1")));
        assert!(!r.confirmed(&addr("/ip6/fd00::1/tcp/1")));
        assert!(!r.confirmed(&addr("/ip6/fe80::1/tcp/1")));
        assert_eq!(r.state(), Reachability::Unknown);
        r.test_failed(&addr("/ip4/198.51.100.7/tcp/4001"));
        assert_eq!(r.state(), Reachability::Private);
        assert!(!r.kad_server());
        assert!(r.confirmed(&addr("/ip4/198.51.100.7/tcp/4002")));
        assert_eq!(r.state(), Reachability::Public);
        assert_eq!(r.addresses().count(), 1);
        r.expired(&addr("/ip4/198.51.100.7/tcp/4002"));
        assert_eq!(
            r.state(),
            Reachability::Unknown,
            "a confirmation resets the failures"
        );
        // The operator's word holds for a private range too.
        assert!(r.configured(&addr("/ip4/172.31.90.10/tcp/4001")));
        assert_eq!(r.state(), Reachability::Public);
        assert!(is_site_local(&addr("/ip4/172.31.90.10/tcp/4001")));
        assert!(!is_site_local(&addr("/ip4/172.32.0.1/tcp/4001")));
        assert!(!is_unroutable(&addr("/ip6/2001:db8::1/tcp/4001")));
    }

    #[test]
    fn circuit_listen_address_names_the_relay_once() {
        let relay = PeerId::random();
        let with_id = addr("/ip4/192.0.2.1/tcp/4001").with(Protocol::P2p(relay));
        let want = format!("/ip4/192.0.2.1/tcp/4001/p2p/{relay}/p2p-circuit");
        assert_eq!(circuit_listen_addr(&with_id, relay).to_string(), want);
        assert_eq!(
            circuit_listen_addr(&addr("/ip4/192.0.2.1/tcp/4001"), relay).to_string(),
            want
        );
    }

    #[test]
    fn reservations_prefer_configured_relays_and_back_off_after_a_loss() {
        let t0 = Instant::now();
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let at = addr("/ip4/192.0.2.1/tcp/4001");
        let configured = vec![(a, at.clone())];
        let offered = vec![(b, at.clone()), (c, at.clone())];
        let mut r = Reservations::default();

        // Unknown or private: the configured one, then offered ones, up to two.
        let p = r.plan(t0, Reachability::Unknown, &configured, &offered);
        assert_eq!(p.reserve, vec![(a, at.clone()), (b, at.clone())]);
        let p = r.plan(t0, Reachability::Private, &configured, &offered);
        assert_eq!(p.reserve, vec![(a, at.clone()), (b, at.clone())]);
        r.asked(a, t0);
        r.asked(b, t0);
        assert_eq!(
            r.plan(t0, Reachability::Private, &configured, &offered),
            Plan::default()
        );
        assert_eq!(
            r.accepted(a, t0 + Duration::from_secs(2)),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            r.accepted(a, t0 + Duration::from_secs(900)),
            None,
            "a renewal"
        );

        // a goes away: c takes its place at once, a is asked again after 5 s, then 10 s.
        let t1 = t0 + Duration::from_secs(1000);
        r.lost(a, t1);
        let p = r.plan(t1, Reachability::Private, &configured, &offered);
        assert_eq!(p.reserve, vec![(c, at.clone())]);
        r.asked(c, t1);
        r.lost(c, t1);
        let p = r.plan(
            t1 + Duration::from_secs(4),
            Reachability::Private,
            &configured,
            &offered,
        );
        assert!(p.reserve.is_empty());
        let p = r.plan(
            t1 + FIRST_BACKOFF,
            Reachability::Private,
            &configured,
            &offered,
        );
        assert_eq!(p.reserve, vec![(a, at.clone())]);
        r.asked(a, t1 + FIRST_BACKOFF);
        r.lost(a, t1 + FIRST_BACKOFF);
        let t2 = t1 + FIRST_BACKOFF;
        assert!(
            r.plan(t2 + FIRST_BACKOFF, Reachability::Private, &configured, &[])
                .reserve
                .is_empty()
        );
        assert_eq!(
            r.plan(
                t2 + FIRST_BACKOFF * 2,
                Reachability::Private,
                &configured,
                &[]
            )
            .reserve,
            vec![(a, at.clone())]
        );

        // Public: everything held or asked for is released.
        let p = r.plan(t2, Reachability::Public, &configured, &offered);
        assert_eq!(p.release, vec![b]);
        assert!(p.reserve.is_empty());
        r.released(b);
        assert_eq!(r.held().count(), 0);
    }

    #[test]
    fn backoff_stops_growing_at_its_cap() {
        let t0 = Instant::now();
        let a = PeerId::random();
        let mut r = Reservations::default();
        for _ in 0..20 {
            r.lost(a, t0);
        }
        let configured = vec![(a, addr("/ip4/192.0.2.1/tcp/4001"))];
        assert!(
            r.plan(
                t0 + MAX_BACKOFF - Duration::from_secs(1),
                Reachability::Private,
                &configured,
                &[]
            )
            .reserve
            .is_empty()
        );
        assert_eq!(
            r.plan(t0 + MAX_BACKOFF, Reachability::Private, &configured, &[])
                .reserve
                .len(),
            1
        );
    }

    #[test]
    fn failed_punches_are_retried_twice_with_growing_pauses() {
        let t0 = Instant::now();
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut p = Punches::default();
        p.failed(a, t0);
        assert!(p.due(t0 + Duration::from_secs(9)).is_empty());
        assert_eq!(p.due(t0 + PUNCH_RETRY_AFTER), vec![a]);
        assert!(p.due(t0 + PUNCH_RETRY_AFTER).is_empty(), "returned once");
        let t1 = t0 + Duration::from_secs(30);
        p.failed(a, t1);
        assert!(p.due(t1 + Duration::from_secs(19)).is_empty());
        assert_eq!(p.due(t1 + PUNCH_RETRY_AFTER * 2), vec![a]);
        // A third failure: no more retries.
        p.failed(a, t1 + Duration::from_secs(60));
        assert!(p.due(t1 + Duration::from_secs(3600)).is_empty());
        // A success forgets the peer; another peer has its own count.
        p.failed(b, t0);
        p.succeeded(b);
        assert!(p.due(t0 + Duration::from_secs(3600)).is_empty());
    }

    #[test]
    fn a_direct_connection_describes_a_peer_best() {
        use ConnectionKind::*;
        assert_eq!(ConnectionKind::best([Relayed, Direct]), Some(Direct));
        assert_eq!(ConnectionKind::best([Relayed, Punched]), Some(Punched));
        assert_eq!(ConnectionKind::best([Relayed]), Some(Relayed));
        assert_eq!(ConnectionKind::best([]), None);
    }
}
