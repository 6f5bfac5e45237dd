//! `[network]`: [`NetworkConfig`], its defaults, the serving limits and access rules it
//! describes, and its checks (addresses, rates, the pre-shared key).
//!
//! Owns the keys and their ranges; it dials and listens on nothing (`crate::network` does, with
//! these values).

use super::ConfigError;
use super::check::{at_least, quoted};
use super::text;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::time::Duration;

/// `[network]`: libp2p transports and peer discovery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Multiaddrs to listen on (port 0 = any free port); QUIC (`/udp/<port>/quic-v1`) only
    /// when listed. Omitted: TCP on every interface, `/ip4/0.0.0.0/tcp/0`.
    #[serde(with = "text::list")]
    pub listen: Vec<Multiaddr>,
    /// Multiaddrs of peers to dial at start (and again while not connected to them): `/ip4`,
    /// `/ip6`, or a host name as `/dns`, `/dns4` or `/dns6` (resolved by the system's
    /// resolver when dialled; `/dnsaddr` is refused). A trailing `/p2p/<peer id>` is
    /// optional: without it the peer's id is learned when the connection is made. Omitted:
    /// none (rely on mDNS, or on others dialling us).
    #[serde(with = "text::list")]
    pub bootstrap: Vec<Multiaddr>,
    /// Relays to reserve a slot on while this peer is not known to be reachable (addresses
    /// as in `bootstrap`, each ending in `/p2p/<relay's peer id>`). It also reserves on
    /// connected peers that serve as relays (public peers, by default), up to two
    /// reservations in all. Omitted: `[]`.
    #[serde(with = "text::list")]
    pub relays: Vec<Multiaddr>,
    /// Addresses this peer is reachable at from outside (a public host's `/ip4/<public
    /// ip>/tcp/<port>`), taken as confirmed without asking AutoNAT. Omitted: `[]`.
    #[serde(with = "text::list")]
    pub external_addrs: Vec<Multiaddr>,
    /// Serve as a circuit relay for unreachable peers: `auto` once another peer confirms
    /// one of our addresses reachable (or `external_addrs` names one), `on` always, `off`
    /// never. Omitted: `auto`.
    #[serde(with = "text")]
    pub relay_server: crate::network::relay::RelayServer,
    /// The relay's caps: reservations in all and per peer, circuits in all and per peer
    /// (as either end), and megabytes and seconds one circuit may carry and last.
    /// Omitted: 64, 2, 64, 16, 256, 1800.
    pub relay_max_reservations: u32,
    pub relay_max_reservations_per_peer: u32,
    pub relay_max_circuits: u32,
    pub relay_max_circuits_per_peer: u32,
    pub relay_max_circuit_mb: u32,
    pub relay_max_circuit_secs: u32,
    /// Discover peers on the local network with mDNS. Omitted: on.
    pub mdns: bool,
    /// Run a Kademlia DHT (server mode, periodic random walk) to discover peers beyond the
    /// bootstrap list. Omitted: on.
    pub kademlia: bool,
    /// Most established connections, inbound and outbound together. Omitted: 64.
    pub max_connections: u32,
    /// Seconds a connection with no open stream is kept before it is closed. Omitted: 60.
    pub idle_timeout_secs: u64,
    /// Most sync requests per second one peer may make of this node (bursts of twice that);
    /// past it the peer is answered `Busy`. Omitted: 50.
    pub peer_requests_per_sec: u32,
    /// Most megabits per second one peer may download from this node, 0 = no per-peer limit;
    /// past it the peer is answered `Busy`. Omitted: 400.
    pub peer_upload_mbps: f64,
    /// Most megabits per second this node uploads to all peers together, 0 = unlimited; each
    /// active peer gets an equal share of it. Omitted: 0.
    pub max_upload_mbps: f64,
    /// The private network's pre-shared key, 64 hex digits (`murmur psk` makes one): every
    /// connection is wrapped in libp2p pnet, and a peer without the key never completes one.
    /// TCP only: a config with a key and a QUIC address is refused. Omitted: `""` (none).
    pub psk: String,
    /// Peer ids allowed to connect; empty = everyone. Omitted: `[]`.
    #[serde(with = "text::list")]
    pub allow: Vec<PeerId>,
    /// Peer ids never allowed to connect (wins over `allow`). Omitted: `[]`.
    #[serde(with = "text::list")]
    pub deny: Vec<PeerId>,
    /// A test and benchmark aid: pass the sync protocol's frames (manifests and chunks)
    /// through an emulated link of this rate and/or one-way latency, e.g. `20mbit,40ms`
    /// (see `network::link`); `""` = none. Omitted: `""`.
    #[serde(with = "text")]
    pub emulate_link: Option<crate::network::link::LinkSpec>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        let any = Multiaddr::empty().with(Protocol::Ip4(Ipv4Addr::UNSPECIFIED));
        let relay = crate::network::relay::RelayLimits::default();
        Self {
            listen: vec![any.with(Protocol::Tcp(0))],
            bootstrap: Vec::new(),
            relays: Vec::new(),
            external_addrs: Vec::new(),
            relay_server: Default::default(),
            relay_max_reservations: relay.max_reservations as u32,
            relay_max_reservations_per_peer: relay.max_reservations_per_peer as u32,
            relay_max_circuits: relay.max_circuits as u32,
            relay_max_circuits_per_peer: relay.max_circuits_per_peer as u32,
            relay_max_circuit_mb: (relay.max_circuit_bytes >> 20) as u32,
            relay_max_circuit_secs: relay.max_circuit_duration.as_secs() as u32,
            mdns: true,
            kademlia: true,
            max_connections: 64,
            idle_timeout_secs: 60,
            peer_requests_per_sec: 50,
            peer_upload_mbps: 400.0,
            max_upload_mbps: 0.0,
            psk: String::new(),
            allow: Vec::new(),
            deny: Vec::new(),
            emulate_link: None,
        }
    }
}

impl NetworkConfig {
    /// [`Self::idle_timeout_secs`] as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    /// The relay caps these keys describe.
    pub fn relay_limits(&self) -> crate::network::relay::RelayLimits {
        crate::network::relay::RelayLimits {
            max_reservations: self.relay_max_reservations as usize,
            max_reservations_per_peer: self.relay_max_reservations_per_peer as usize,
            max_circuits: self.relay_max_circuits as usize,
            max_circuits_per_peer: self.relay_max_circuits_per_peer as usize,
            max_circuit_bytes: u64::from(self.relay_max_circuit_mb) << 20,
            max_circuit_duration: Duration::from_secs(u64::from(self.relay_max_circuit_secs)),
        }
    }

    /// The serving limits these keys describe.
    pub fn serving(&self) -> crate::network::ServeLimits {
        use crate::network::limits::rate_limit;
        crate::network::ServeLimits {
            peer_requests_per_sec: f64::from(self.peer_requests_per_sec),
            peer_upload_bytes_per_sec: rate_limit(self.peer_upload_mbps),
            max_upload_bytes_per_sec: rate_limit(self.max_upload_mbps),
        }
    }
}

impl NetworkConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (key, list, dialled) in [
            ("listen", &self.listen, false),
            ("external_addrs", &self.external_addrs, false),
            ("bootstrap", &self.bootstrap, true),
            ("relays", &self.relays, true),
        ] {
            for (i, addr) in list.iter().enumerate() {
                let key = format!("network.{key}[{i}]");
                if addr.is_empty() {
                    return Err(ConfigError::invalid(key, quoted(addr), "must not be empty"));
                }
                let named = addr
                    .iter()
                    .any(|p| matches!(p, Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_)));
                if addr.iter().any(|p| matches!(p, Protocol::Dnsaddr(_))) || (!dialled && named) {
                    return Err(ConfigError::invalid(
                        key,
                        quoted(addr),
                        if dialled {
                            "must use /ip4, /ip6, /dns, /dns4 or /dns6 (/dnsaddr is not supported)"
                        } else {
                            "must use an IP address (/ip4/... or /ip6/...)"
                        },
                    ));
                }
            }
        }
        for (i, addr) in self.relays.iter().enumerate() {
            if !matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
                return Err(ConfigError::invalid(
                    format!("network.relays[{i}]"),
                    quoted(addr),
                    "must end in /p2p/<the relay's peer id> (a reservation names its relay)",
                ));
            }
            if addr.iter().any(|p| p == Protocol::P2pCircuit) {
                return Err(ConfigError::invalid(
                    format!("network.relays[{i}]"),
                    quoted(addr),
                    "must be the relay's own address, not a /p2p-circuit one",
                ));
            }
        }
        for (key, value) in [
            (
                "network.relay_max_reservations",
                self.relay_max_reservations,
            ),
            (
                "network.relay_max_reservations_per_peer",
                self.relay_max_reservations_per_peer,
            ),
            ("network.relay_max_circuits", self.relay_max_circuits),
            (
                "network.relay_max_circuits_per_peer",
                self.relay_max_circuits_per_peer,
            ),
            ("network.relay_max_circuit_mb", self.relay_max_circuit_mb),
            (
                "network.relay_max_circuit_secs",
                self.relay_max_circuit_secs,
            ),
        ] {
            at_least(key, value, 1)?;
        }
        at_least("network.max_connections", self.max_connections, 1)?;
        at_least(
            "network.peer_requests_per_sec",
            self.peer_requests_per_sec,
            1,
        )?;
        for (key, mbps) in [
            ("network.peer_upload_mbps", self.peer_upload_mbps),
            ("network.max_upload_mbps", self.max_upload_mbps),
        ] {
            if !(mbps.is_finite() && mbps >= 0.0) {
                return Err(ConfigError::invalid(
                    key,
                    mbps,
                    "must be a number of megabits per second, at least 0 (0 = unlimited)",
                ));
            }
        }
        if !self.psk.is_empty() {
            crate::network::access::parse_psk(&self.psk)
                .map_err(|e| ConfigError::invalid("network.psk", "(hidden)", e.to_string()))?;
            for (key, list) in [
                ("listen", &self.listen),
                ("bootstrap", &self.bootstrap),
                ("relays", &self.relays),
            ] {
                if let Some((i, addr)) = list.iter().enumerate().find(|(_, a)| {
                    a.iter()
                        .any(|p| matches!(p, Protocol::QuicV1 | Protocol::Quic))
                }) {
                    return Err(ConfigError::invalid(
                        format!("network.{key}[{i}]"),
                        quoted(addr),
                        "is a QUIC address, and network.psk is set: libp2p's private networks \
                         (pnet) wrap TCP only, so a QUIC connection would bypass the key; \
                         use a /tcp/ address or remove network.psk",
                    ));
                }
            }
        }
        at_least("network.idle_timeout_secs", self.idle_timeout_secs, 1)
    }

    /// The pre-shared key, if any (checked by validation).
    pub fn psk(&self) -> Option<libp2p::pnet::PreSharedKey> {
        crate::network::access::parse_psk(&self.psk).ok()
    }

    /// Who may connect.
    pub fn access(&self) -> crate::network::access::Access {
        crate::network::access::Access::new(self.allow.iter().copied(), self.deny.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{PEER_ID, error, parse};

    #[test]
    fn config_private_network_keys_are_checked() {
        let key = "ab".repeat(32);
        let cfg = parse(&format!(
            "[network]\npsk = \"{key}\"\nallow = [\"{PEER_ID}\"]\ndeny = [\"{PEER_ID}\"]\n"
        ))
        .unwrap();
        assert!(cfg.network.psk().is_some());
        assert!(!cfg.network.access().admits(&PEER_ID.parse().unwrap()));
        let message = error("[network]\npsk = \"abc\"\n");
        assert!(
            message.contains("network.psk") && message.contains("64 hex digits"),
            "{message}"
        );
        assert!(
            !message.contains("abc"),
            "the key is never echoed: {message}"
        );
        // A key with a QUIC address, listened on or dialled, is refused with the reason.
        for key_line in [
            "listen = [\"/ip4/0.0.0.0/udp/0/quic-v1\"]",
            "bootstrap = [\"/ip4/192.0.2.7/udp/4001/quic-v1\"]",
        ] {
            let message = error(&format!("[network]\npsk = \"{key}\"\n{key_line}\n"));
            assert!(
                message.contains("[0]") && message.contains("pnet") && message.contains("TCP only"),
                "{message}"
            );
        }
        // Without a key, QUIC is fine.
        assert!(parse("[network]\nlisten = [\"/ip4/0.0.0.0/udp/0/quic-v1\"]\n").is_ok());
        let message = error("[network]\ndeny = [\"nope\"]\n");
        assert!(
            message.contains("network.deny[0]") && message.contains("not a peer id"),
            "{message}"
        );
    }

    #[test]
    fn config_bootstrap_takes_ip_addresses_with_or_without_a_peer_id() {
        let with_id = format!("/ip4/192.0.2.7/tcp/4001/p2p/{PEER_ID}");
        let cfg = parse(&format!(
            "[network]\nbootstrap = [\"{with_id}\", \"/ip4/192.0.2.8/tcp/4001\"]\n"
        ))
        .unwrap();
        assert_eq!(cfg.network.bootstrap[0].to_string(), with_id);
        assert_eq!(
            cfg.network.bootstrap[1].to_string(),
            "/ip4/192.0.2.8/tcp/4001"
        );
        // Host names are resolved when dialled; /dnsaddr is not supported.
        let cfg = parse("[network]\nbootstrap = [\"/dns4/peer0/tcp/4001\"]\n").unwrap();
        assert_eq!(cfg.network.bootstrap[0].to_string(), "/dns4/peer0/tcp/4001");
        let message = error("[network]\nbootstrap = [\"/dnsaddr/example.org\"]\n");
        assert!(
            message.starts_with(
                "peer.toml: network.bootstrap[0] = \"/dnsaddr/example.org\": must use /ip4, /ip6, /dns"
            ),
            "{message}"
        );
    }

    #[test]
    fn config_relay_keys_are_checked() {
        let relay = format!("/dns4/relay.example.org/tcp/4001/p2p/{PEER_ID}");
        let cfg = parse(&format!(
            "[network]\nrelays = [\"{relay}\"]\nexternal_addrs = [\"/ip4/198.51.100.7/tcp/4001\"]\n\
             relay_server = \"on\"\nrelay_max_circuit_mb = 3\n"
        ))
        .unwrap();
        assert_eq!(cfg.network.relays[0].to_string(), relay);
        assert_eq!(
            cfg.network.relay_server,
            crate::network::relay::RelayServer::On
        );
        assert_eq!(cfg.network.relay_limits().max_circuit_bytes, 3 << 20);
        // A relay address must name its relay.
        let message = error("[network]\nrelays = [\"/ip4/192.0.2.7/tcp/4001\"]\n");
        assert!(
            message.contains("network.relays[0]") && message.contains("must end in /p2p/"),
            "{message}"
        );
        let message = error(&format!(
            "[network]\nrelays = [\"/ip4/192.0.2.7/tcp/4001/p2p/{PEER_ID}/p2p-circuit/p2p/{PEER_ID}\"]\n"
        ));
        assert!(message.contains("not a /p2p-circuit"), "{message}");
        // An external address is what others dial: an IP address.
        let message = error("[network]\nexternal_addrs = [\"/dns4/me.example.org/tcp/1\"]\n");
        assert!(
            message.contains("network.external_addrs[0]") && message.contains("IP address"),
            "{message}"
        );
        let message = error("[network]\nrelay_server = \"maybe\"\n");
        assert!(
            message.contains("network.relay_server") && message.contains("auto, on or off"),
            "{message}"
        );
        let message = error("[network]\nrelay_max_circuits = 0\n");
        assert!(message.contains("network.relay_max_circuits"), "{message}");
        // With a pre-shared key, a QUIC relay address is refused like any other.
        let key = "ab".repeat(32);
        let message = error(&format!(
            "[network]\npsk = \"{key}\"\nrelays = [\"/ip4/192.0.2.7/udp/4001/quic-v1/p2p/{PEER_ID}\"]\n"
        ));
        assert!(
            message.contains("network.relays[0]") && message.contains("pnet"),
            "{message}"
        );
    }
}
