//! The libp2p behaviour of a murmur node: a block list (the node's temporary blocks), the
//! operator's deny- and allowlists, connection limits, gossipsub (with
//! peer scoring) for announcements, request-response for manifests and chunks, identify,
//! ping, optional mDNS, Kademlia under the network's own protocol name, and NAT traversal:
//! the circuit relay client (reservations, relayed dials), a relay server unless
//! `relay_server = "off"`, DCUtR hole punching and AutoNAT v2 (client and server). Built once
//! by [`build`]; owned by the event loop.

use super::NetworkConfig;
use super::codec::{SyncCodec, Traffic};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    StreamProtocol, allow_block_list, autonat, connection_limits, dcutr, gossipsub, identify,
    identity, kad, mdns, ping, relay, request_response,
};
use murmur_protocol::codec::WIRE_VERSION;
use murmur_protocol::limits::MAX_ANNOUNCE_BYTES;
use std::sync::Arc;
use std::time::Duration;

/// Gossipsub application score per charge (the fetcher's bad answers), at weight 1. With
/// [`score_thresholds`]: 2 charges stop gossip (IHAVE/IWANT) with the peer, 3 stop
/// publishing to it, 5 (the default error budget) graylist it: its messages are ignored.
pub const PENALTY_PER_CHARGE: f64 = 10.0;

/// How often AutoNAT v2 tests one of our candidate addresses.
pub const AUTONAT_PROBE_EVERY: Duration = Duration::from_secs(2);

/// Streams per connection, in and out together. request-response refuses outbound requests
/// over this at once, so the fetcher keeps its per-peer in-flight limit well below it.
pub const MAX_STREAMS_PER_CONNECTION: usize = 100;

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// First, so that a blocked peer's connection is refused before anything else sees it.
    pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    /// The operator's denylist (`network.deny`): refused for good.
    pub denied: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    /// The operator's allowlist (`network.allow`), when there is one: no one else connects.
    pub allowed: Toggle<allow_block_list::Behaviour<allow_block_list::AllowedPeers>>,
    pub limits: connection_limits::Behaviour,
    pub gossipsub: gossipsub::Behaviour,
    pub sync: request_response::Behaviour<SyncCodec>,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    pub kad: Toggle<kad::Behaviour<kad::store::MemoryStore>>,
    /// Reserves slots on relays and dials through them (every node).
    pub relay_client: relay::client::Behaviour,
    /// Serves as a relay (see [`super::relay::RelayServer`]); off: absent.
    pub relay: Toggle<relay::Behaviour>,
    /// Upgrades a relayed connection to a direct one by hole punching.
    pub dcutr: dcutr::Behaviour,
    /// Asks peers to dial our candidate addresses back (AutoNAT v2).
    pub autonat: autonat::v2::client::Behaviour,
    /// Dials other peers' candidate addresses back for them.
    pub autonat_server: autonat::v2::server::Behaviour,
}

/// The gossip topic of a network.
pub fn announce_topic(network_id: &str) -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new(format!("murmur/{network_id}/announce/{WIRE_VERSION}"))
}

/// The sync protocol id of a network.
pub fn sync_protocol(network_id: &str) -> Result<StreamProtocol, String> {
    StreamProtocol::try_from_owned(format!("/murmur/{network_id}/sync/{WIRE_VERSION}"))
        .map_err(|e| e.to_string())
}

/// Gossipsub's peer-score parameters: libp2p's defaults (behaviour penalties for broken
/// gossip promises and early re-grafts), no per-topic scores, the application score (our
/// charges, see [`PENALTY_PER_CHARGE`]) at weight 1, and no IP-colocation penalty.
pub fn score_params() -> gossipsub::PeerScoreParams {
    gossipsub::PeerScoreParams {
        app_specific_weight: 1.0,
        // Off: every peer of a local test shares 127.0.0.1, and the peers of a Docker testnet
        // share one subnet; the default would punish honest peers for that alone.
        ip_colocation_factor_weight: 0.0,
        ..Default::default()
    }
}

/// The score thresholds; see [`PENALTY_PER_CHARGE`] for what they mean in charges.
/// Gossipsub acts on a score strictly below a threshold, so each threshold sits half a
/// charge short of the charge count meant to cross it.
pub fn score_thresholds() -> gossipsub::PeerScoreThresholds {
    gossipsub::PeerScoreThresholds {
        gossip_threshold: -1.5 * PENALTY_PER_CHARGE,
        publish_threshold: -2.5 * PENALTY_PER_CHARGE,
        graylist_threshold: -4.5 * PENALTY_PER_CHARGE,
        ..Default::default()
    }
}

/// Builds the behaviour for `key` on the network of `cfg`.
pub fn build(
    key: &identity::Keypair,
    cfg: &NetworkConfig,
    traffic: Arc<Traffic>,
    relay_client: relay::client::Behaviour,
) -> Result<Behaviour, String> {
    let peer_id = key.public().to_peer_id();
    let gossip_config = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        // Content-addressed message ids: the same announcement is the same message.
        .message_id_fn(|m: &gossipsub::Message| {
            gossipsub::MessageId::from(blake3::hash(&m.data).as_bytes().to_vec())
        })
        // Room for an announcement plus gossipsub's own framing and signature.
        .max_transmit_size(MAX_ANNOUNCE_BYTES + 1024)
        .heartbeat_interval(Duration::from_millis(500))
        .build()
        .map_err(|e| format!("gossipsub config: {e}"))?;
    let mut gossipsub = gossipsub::Behaviour::new(
        gossipsub::MessageAuthenticity::Signed(key.clone()),
        gossip_config,
    )?;
    gossipsub
        .with_peer_score(score_params(), score_thresholds())
        .map_err(|e| format!("gossipsub peer score: {e}"))?;
    gossipsub
        .subscribe(&announce_topic(&cfg.network_id))
        .map_err(|e| format!("subscribe: {e}"))?;

    let sync = request_response::Behaviour::with_codec(
        SyncCodec::new(traffic).with_link(cfg.emulate_link),
        [(
            sync_protocol(&cfg.network_id)?,
            request_response::ProtocolSupport::Full,
        )],
        request_response::Config::default()
            .with_request_timeout(cfg.request_timeout)
            .with_max_concurrent_streams(MAX_STREAMS_PER_CONNECTION),
    );
    // Pushing listen address changes spreads a new circuit address (a reservation) at once.
    let identify = identify::Behaviour::new(
        identify::Config::new(format!("/murmur/{}/id/1", cfg.network_id), key.public())
            .with_push_listen_addr_updates(true),
    );
    let mdns = if cfg.mdns {
        Some(
            mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)
                .map_err(|e| format!("mdns: {e}"))?,
        )
    } else {
        None
    };
    let kad = if cfg.kademlia {
        let protocol = StreamProtocol::try_from_owned(format!("/murmur/{}/kad/1", cfg.network_id))
            .map_err(|e| e.to_string())?;
        let mut kad = kad::Behaviour::with_config(
            peer_id,
            kad::store::MemoryStore::new(peer_id),
            kad::Config::new(protocol),
        );
        // A server until AutoNAT finds this node unreachable (the event loop then makes it a
        // client): a LAN or a loopback testnet confirms no external address, and must still
        // serve the DHT.
        kad.set_mode(Some(kad::Mode::Server));
        Some(kad)
    } else {
        None
    };
    let limits = connection_limits::Behaviour::new(
        connection_limits::ConnectionLimits::default()
            .with_max_established(Some(cfg.max_connections))
            .with_max_established_per_peer(Some(super::limits::MAX_CONNECTIONS_PER_PEER))
            .with_max_pending_incoming(Some(super::limits::MAX_PENDING_INCOMING)),
    );
    let mut denied = allow_block_list::Behaviour::<allow_block_list::BlockedPeers>::default();
    for peer in cfg.access.denylist() {
        denied.block_peer(*peer);
    }
    let allowed = cfg.access.allowlist().map(|list| {
        let mut allowed = allow_block_list::Behaviour::<allow_block_list::AllowedPeers>::default();
        for peer in list {
            allowed.allow_peer(*peer);
        }
        allowed
    });
    Ok(Behaviour {
        blocked: allow_block_list::Behaviour::default(),
        denied,
        allowed: allowed.into(),
        limits,
        gossipsub,
        sync,
        identify,
        // A link that silently stopped (a cut cable, a container disconnected from its
        // network) is noticed within about 15 s; the event loop then closes the connection.
        ping: ping::Behaviour::new(
            ping::Config::new()
                .with_interval(std::time::Duration::from_secs(5))
                .with_timeout(std::time::Duration::from_secs(10)),
        ),
        mdns: mdns.into(),
        kad: kad.into(),
        relay_client,
        relay: relay_server(peer_id, cfg).into(),
        dcutr: dcutr::Behaviour::new(peer_id),
        // Probes every 2 s instead of 5: a peer behind a NAT learns it is private sooner
        // (each failed test waits out a dial-back timeout).
        autonat: autonat::v2::client::Behaviour::new(
            rand_autonat::make_rng::<rand_autonat::rngs::StdRng>(),
            autonat::v2::client::Config::default().with_probe_interval(AUTONAT_PROBE_EVERY),
        ),
        autonat_server: autonat::v2::server::Behaviour::default(),
    })
}

/// The relay server `cfg` asks for, if any: `on` serves at once, `auto` starts disabled
/// (refusing reservations) until the event loop enables it.
fn relay_server(peer_id: libp2p::PeerId, cfg: &NetworkConfig) -> Option<relay::Behaviour> {
    use super::relay::RelayServer;
    let mut server = match cfg.relay_server {
        RelayServer::Off => return None,
        RelayServer::Auto | RelayServer::On => {
            relay::Behaviour::new(peer_id, cfg.relay_limits.server_config())
        }
    };
    // Fixed from the start; with `auto` the event loop enables it when AutoNAT (or the
    // config) finds this node publicly reachable.
    server.set_status(Some(if cfg.relay_server == RelayServer::On {
        relay::Status::Enable
    } else {
        relay::Status::Disable
    }));
    Some(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The score of a peer with `charges` and nothing else against it.
    fn score(charges: u32) -> f64 {
        -f64::from(charges) * PENALTY_PER_CHARGE * score_params().app_specific_weight
    }

    #[test]
    fn scoring_is_valid_and_graylists_a_spent_budget_only() {
        score_params().validate().unwrap();
        score_thresholds().validate().unwrap();
        assert_eq!(score_params().ip_colocation_factor_weight, 0.0);
        let t = score_thresholds();
        assert!(score(0) >= t.gossip_threshold);
        assert!(score(1) >= t.gossip_threshold);
        assert!(score(2) < t.gossip_threshold && score(2) >= t.publish_threshold);
        assert!(score(3) < t.publish_threshold);
        assert!(score(4) >= t.graylist_threshold);
        assert!(score(5) < t.graylist_threshold);
    }
}
