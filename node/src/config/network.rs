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
    /// Multiaddrs of peers to dial at start (and again while not connected to them). Each
    /// must not be empty nor name a host: an address with a `/dns`, `/dns4`, `/dns6` or
    /// `/dnsaddr` part is refused (murmur resolves no host names), so write `/ip4/...` or
    /// `/ip6/...`. A trailing `/p2p/<peer id>` is optional: without it the peer's id is learned
    /// when the connection is made. Omitted: none (rely on mDNS, or on others dialling us).
    #[serde(with = "text::list")]
    pub bootstrap: Vec<Multiaddr>,
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
        Self {
            listen: vec![any.with(Protocol::Tcp(0))],
            bootstrap: Vec::new(),
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
            ("bootstrap", &self.bootstrap, true),
        ] {
            for (i, addr) in list.iter().enumerate() {
                let key = format!("network.{key}[{i}]");
                if addr.is_empty() {
                    return Err(ConfigError::invalid(key, quoted(addr), "must not be empty"));
                }
                if dialled
                    && addr.iter().any(|p| {
                        matches!(
                            p,
                            Protocol::Dns(_)
                                | Protocol::Dns4(_)
                                | Protocol::Dns6(_)
                                | Protocol::Dnsaddr(_)
                        )
                    })
                {
                    return Err(ConfigError::invalid(
                        key,
                        quoted(addr),
                        "must use an IP address (/ip4/... or /ip6/...): murmur does not resolve host names",
                    ));
                }
            }
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
            for (key, list) in [("listen", &self.listen), ("bootstrap", &self.bootstrap)] {
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
        let message = error("[network]\nbootstrap = [\"/dns4/peer0/tcp/4001\"]\n");
        assert!(
            message.starts_with(
                "peer.toml: network.bootstrap[0] = \"/dns4/peer0/tcp/4001\": must use an IP address"
            ),
            "{message}"
        );
    }
}
