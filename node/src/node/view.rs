//! The node's status snapshot ([`NodeStatus`]), built from the core's peer table, the
//! node's own model and counters, and the network's status, for the HTTP API.

use super::*;

impl NodeTask {
    /// Refreshes the status snapshot; `net` is a fresh network status.
    pub(super) fn publish_status(&self, net: &network::NetStatus) {
        let counters = self.counters.snapshot(&self.traffic);
        let fresh = self.opts.policy.freshness * 4;
        let now = self.started.elapsed();
        let peers: Vec<PeerView> = self
            .core
            .peers()
            .filter(|(_, h)| now.saturating_sub(h.at) <= fresh)
            .map(|(p, h)| PeerView {
                peer_id: p.to_string(),
                manifest: h.announce.manifest.to_hex(),
                version: h.announce.version,
                samples: h.announce.samples,
                accuracy: h.announce.metrics.accuracy,
                loss: h.announce.metrics.loss,
                merges: h.announce.metrics.merges,
                bytes_sent: h.announce.metrics.bytes_sent,
                bytes_received: h.announce.metrics.bytes_received,
                train_share: h.announce.metrics.train_share,
                comm_share: h.announce.metrics.comm_share,
                last_seen_secs: now.saturating_sub(h.at).as_secs_f64(),
                neighbours: h
                    .announce
                    .neighbours
                    .iter()
                    .filter_map(|b| PeerId::from_bytes(b).ok())
                    .map(|p| p.to_string())
                    .collect(),
            })
            .collect();
        let own = self.own.as_ref();
        let mut projections: Vec<&[f32]> = self
            .core
            .peers()
            .filter(|(_, h)| now.saturating_sub(h.at) <= fresh)
            .map(|(_, h)| h.announce.projection.as_slice())
            .collect();
        if let Some(o) = own {
            projections.push(&o.projection);
        }
        let status = NodeStatus {
            peer_id: self.peer_id.to_string(),
            network_id: self.opts.network.network_id.clone(),
            listen_addrs: net.listen_addrs.iter().map(|a| a.to_string()).collect(),
            connected: net.connected.iter().map(|p| p.to_string()).collect(),
            version: self.core.version(),
            manifest: own.map(|o| o.manifest.to_hex()).unwrap_or_default(),
            accuracy: own.map_or(0.0, |o| o.accuracy),
            loss: own.map_or(0.0, |o| o.loss),
            samples: own.map_or(0, |o| o.samples),
            eval_samples: own.map_or(0, |o| o.eval_samples),
            uptime_secs: self.started.elapsed().as_secs_f64(),
            resumed: self.status.borrow().resumed,
            checkpoint_version: self.checkpoint_version,
            checkpoint_error: self.checkpoint_error.clone(),
            counters,
            peers,
            consensus_distance: murmur_protocol::projection::consensus_distance(projections),
            error_charges: self
                .core
                .budgets()
                .snapshot()
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(p, n)| (p.to_string(), n))
                .collect(),
            blocked: self.core.blocked().map(|(p, _)| p.to_string()).collect(),
            averagings: self.averagings.iter().cloned().collect(),
            adoption: self.adoption.clone(),
            reach: crate::status::ReachView {
                reachability: net.reachability,
                external_addrs: net.external_addrs.iter().map(|a| a.to_string()).collect(),
                reservations: net.reservations.iter().map(|p| p.to_string()).collect(),
                first_reservation_secs: net.first_reservation_secs,
                relay_serving: net.relay_serving,
                connections: net
                    .connections
                    .iter()
                    .map(|(p, k)| (p.to_string(), *k))
                    .collect(),
            },
        };
        self.status.send_replace(status);
    }
}
