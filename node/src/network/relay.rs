//! The circuit relay (v2) this node serves to unreachable peers: when it serves one
//! ([`RelayServer`]) and within which limits ([`RelayLimits`], turned into libp2p's relay
//! config by [`RelayLimits::server_config`]). It only describes; the behaviour is built in
//! `behaviour` and driven by the event loop.

use std::num::NonZeroU32;
use std::time::Duration;

/// When this node serves as a relay (`network.relay_server`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RelayServer {
    /// Serve once another peer has confirmed one of our *public* addresses reachable
    /// (AutoNAT; loopback and LAN addresses are ignored), or one is configured in
    /// `network.external_addrs`; a node nobody can dial from the internet serves nothing.
    #[default]
    Auto,
    /// Serve from the start, whatever AutoNAT says.
    On,
    /// Never serve.
    Off,
}

impl std::fmt::Display for RelayServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::On => "on",
            Self::Off => "off",
        })
    }
}

impl std::str::FromStr for RelayServer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "on" => Ok(Self::On),
            "off" => Ok(Self::Off),
            other => Err(format!("`{other}` is not auto, on or off")),
        }
    }
}

/// What a relay admits: reservations and circuits, in total and per peer, and how long and
/// how much one circuit may carry. A relay is not an open proxy: past a cap, a reservation
/// or circuit is refused (`RESOURCE_LIMIT_EXCEEDED`), and a peer (or an address) asking too
/// often is refused by libp2p's rate limiters (per peer: a burst of 30, then one every 2
/// minutes; per IP address: 60, then one a minute; for reservations and circuits each).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RelayLimits {
    pub max_reservations: usize,
    pub max_reservations_per_peer: usize,
    pub max_circuits: usize,
    /// Circuits one peer may be an end of (as source or destination) and still ask for
    /// another; libp2p checks the asking peer only, so a peer others dial may be the
    /// destination of more (up to `max_circuits`).
    pub max_circuits_per_peer: usize,
    /// Bytes one circuit may carry, both directions; then the relay closes it and the peers
    /// open another.
    pub max_circuit_bytes: u64,
    pub max_circuit_duration: Duration,
}

impl Default for RelayLimits {
    /// Sized for model traffic: a peer behind a NAT pulled by seven partners and pulling
    /// seven needs 14 circuits; a ~200 KB int8 model moves many times within a circuit's
    /// 256 MiB and 30 minutes.
    fn default() -> Self {
        Self {
            max_reservations: 64,
            max_reservations_per_peer: 2,
            max_circuits: 64,
            max_circuits_per_peer: 16,
            max_circuit_bytes: 256 << 20,
            max_circuit_duration: Duration::from_secs(30 * 60),
        }
    }
}

impl RelayLimits {
    /// libp2p's relay config with these limits and the rate limiters above.
    pub fn server_config(&self) -> libp2p::relay::Config {
        let mut cfg = libp2p::relay::Config {
            max_reservations: self.max_reservations,
            max_reservations_per_peer: per_peer(self.max_reservations_per_peer),
            reservation_rate_limiters: Vec::new(),
            max_circuits: self.max_circuits,
            max_circuits_per_peer: per_peer(self.max_circuits_per_peer),
            max_circuit_duration: self.max_circuit_duration,
            max_circuit_bytes: self.max_circuit_bytes,
            circuit_src_rate_limiters: Vec::new(),
            ..Default::default()
        };
        let (burst, per_ip) = (NonZeroU32::new(30), NonZeroU32::new(60));
        if let (Some(burst), Some(per_ip)) = (burst, per_ip) {
            cfg = cfg
                .reservation_rate_per_peer(burst, Duration::from_secs(120))
                .reservation_rate_per_ip(per_ip, Duration::from_secs(60))
                .circuit_src_per_peer(burst, Duration::from_secs(120))
                .circuit_src_per_ip(per_ip, Duration::from_secs(60));
        }
        cfg
    }
}

/// libp2p's relay refuses a peer only once its count is *over* a per-peer setting (`count >
/// max`), so it admits one more than the setting: it is given ours minus one, and a peer gets
/// at most what our setting says.
fn per_peer(max: usize) -> usize {
    max.saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_config_carries_the_limits_and_the_rate_limiters() {
        let limits = RelayLimits {
            max_reservations: 3,
            max_reservations_per_peer: 1,
            max_circuits: 5,
            max_circuits_per_peer: 2,
            max_circuit_bytes: 1234,
            max_circuit_duration: Duration::from_secs(7),
        };
        let cfg = limits.server_config();
        assert_eq!(cfg.max_reservations, 3);
        // libp2p admits one past its per-peer settings: they are ours minus one.
        assert_eq!(cfg.max_reservations_per_peer, 0);
        assert_eq!(cfg.max_circuits, 5);
        assert_eq!(cfg.max_circuits_per_peer, 1);
        assert_eq!(cfg.max_circuit_bytes, 1234);
        assert_eq!(cfg.max_circuit_duration, Duration::from_secs(7));
        assert_eq!(cfg.reservation_rate_limiters.len(), 2);
        assert_eq!(cfg.circuit_src_rate_limiters.len(), 2);
    }

    #[test]
    fn relay_server_modes_parse() {
        assert_eq!("auto".parse::<RelayServer>(), Ok(RelayServer::Auto));
        assert_eq!("on".parse::<RelayServer>(), Ok(RelayServer::On));
        assert_eq!("off".parse::<RelayServer>(), Ok(RelayServer::Off));
        assert!("yes".parse::<RelayServer>().is_err());
    }
}
