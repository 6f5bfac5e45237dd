//! The node's table of the peers it hears: each peer's latest announcement and when it came,
//! the last model taken from each, and which peers are blocked until when. It throttles
//! announcers (a peer heard again sooner than the least interval is ignored, so announcing
//! in bursts does not make a peer look fresher than the others) and stays bounded (old
//! entries are pruned, and at most [`MAX_PEERS`] are kept). Owned by the averaging
//! [`core`](super::core); it does no I/O and reads no clock (the caller passes `now`, a time
//! since its own start). Generic over the peer's name and ordered by it, so that every
//! iteration comes out the same in every run (the simulator relies on it).

use murmur_protocol::{Announce, ManifestId};
use std::collections::BTreeMap;
use std::time::Duration;

/// Most peers remembered; past it, the one heard longest ago is forgotten.
pub const MAX_PEERS: usize = 4_096;

/// The latest announcement of one peer.
#[derive(Debug, Clone)]
pub struct Heard {
    pub announce: Announce,
    pub at: Duration,
    /// Time between its previous accepted announcement and this one (its round cadence).
    pub interval: Option<Duration>,
}

/// What became of an announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heed {
    /// Recorded as the peer's latest.
    Recorded,
    /// Ignored: the peer's previous one is more recent than the least interval.
    Throttled,
    /// Ignored: the peer is blocked.
    Blocked,
}

/// Peers heard from, with the last model taken from each and the blocked ones.
#[derive(Debug)]
pub struct PeerTable<P> {
    pub known: BTreeMap<P, Heard>,
    /// The last model taken from each peer: the same model is not merged twice.
    pub merged: BTreeMap<P, ManifestId>,
    /// Peers blocked, until when.
    pub blocked: BTreeMap<P, Duration>,
}

impl<P> Default for PeerTable<P> {
    fn default() -> Self {
        Self {
            known: BTreeMap::new(),
            merged: BTreeMap::new(),
            blocked: BTreeMap::new(),
        }
    }
}

impl<P: Copy + Ord> PeerTable<P> {
    /// Records `announce` from `from` at `now`, unless the peer is blocked or its previous
    /// recorded announcement is less than `min_interval` old.
    pub fn hear(
        &mut self,
        from: P,
        announce: Announce,
        now: Duration,
        min_interval: Duration,
    ) -> Heed {
        if self.blocked.get(&from).is_some_and(|&until| now < until) {
            return Heed::Blocked;
        }
        let previous = self.known.get(&from).map(|h| h.at);
        if previous.is_some_and(|at| now.saturating_sub(at) < min_interval) {
            return Heed::Throttled;
        }
        if previous.is_none() && self.known.len() >= MAX_PEERS {
            self.forget_oldest();
        }
        self.known.insert(
            from,
            Heard {
                announce,
                at: now,
                interval: previous.map(|at| now.saturating_sub(at)),
            },
        );
        Heed::Recorded
    }

    fn forget_oldest(&mut self) {
        if let Some(oldest) = self.known.iter().min_by_key(|(_, h)| h.at).map(|(p, _)| *p) {
            self.forget(&oldest);
        }
    }

    /// Forgets a peer's announcement and the model taken from it.
    pub fn forget(&mut self, peer: &P) {
        self.known.remove(peer);
        self.merged.remove(peer);
    }

    /// Blocks `peer` until `until`: its announcements are ignored and the one held is
    /// forgotten.
    pub fn block(&mut self, peer: P, until: Duration) {
        self.forget(&peer);
        self.blocked.insert(peer, until);
    }

    /// Forgets announcements older than `keep`, and blocks that ended by `now`; returns the
    /// peers whose block ended.
    pub fn prune(&mut self, now: Duration, keep: Duration) -> Vec<P> {
        let old: Vec<P> = self
            .known
            .iter()
            .filter(|(_, h)| now.saturating_sub(h.at) > keep)
            .map(|(p, _)| *p)
            .collect();
        for p in &old {
            self.forget(p);
        }
        let known = &self.known;
        self.merged.retain(|p, _| known.contains_key(p));
        let ended: Vec<P> = self
            .blocked
            .iter()
            .filter(|(_, until)| now >= **until)
            .map(|(p, _)| *p)
            .collect();
        for p in &ended {
            self.blocked.remove(p);
        }
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use murmur_protocol::MetricsSummary;

    fn announce(version: u64) -> Announce {
        Announce {
            manifest: ManifestId::of(&version.to_le_bytes()),
            version,
            samples: 0,
            metrics: MetricsSummary::default(),
            projection: Vec::new(),
            neighbours: Vec::new(),
        }
    }

    #[test]
    fn a_peer_announcing_in_bursts_is_heard_once_per_interval() {
        let mut t = PeerTable::default();
        let p = 7u32;
        let t0 = Duration::from_secs(1);
        let min = Duration::from_millis(500);
        assert_eq!(t.hear(p, announce(1), t0, min), Heed::Recorded);
        for i in 1..5u64 {
            let at = t0 + Duration::from_millis(100 * i);
            assert_eq!(t.hear(p, announce(1 + i), at, min), Heed::Throttled);
        }
        assert_eq!(t.known[&p].announce.version, 1);
        assert_eq!(t.known[&p].at, t0, "a burst does not make it look fresher");
        let later = t0 + min;
        assert_eq!(t.hear(p, announce(9), later, min), Heed::Recorded);
        assert_eq!(t.known[&p].interval, Some(min));
    }

    #[test]
    fn blocked_peers_are_ignored_until_the_block_ends() {
        let mut t = PeerTable::default();
        let p = 7u32;
        let t0 = Duration::from_secs(1);
        t.hear(p, announce(1), t0, Duration::ZERO);
        t.merged.insert(p, ManifestId::of(b"x"));
        t.block(p, t0 + Duration::from_secs(60));
        assert!(t.known.is_empty() && t.merged.is_empty());
        assert_eq!(
            t.hear(p, announce(2), t0 + Duration::from_secs(1), Duration::ZERO),
            Heed::Blocked
        );
        assert!(
            t.prune(t0 + Duration::from_secs(59), Duration::MAX)
                .is_empty()
        );
        assert_eq!(
            t.prune(t0 + Duration::from_secs(60), Duration::MAX),
            vec![p]
        );
        assert_eq!(
            t.hear(p, announce(3), t0 + Duration::from_secs(61), Duration::ZERO),
            Heed::Recorded
        );
    }

    #[test]
    fn the_table_is_pruned_and_bounded() {
        let mut t = PeerTable::default();
        let t0 = Duration::from_secs(1);
        let first = 0u32;
        t.hear(first, announce(0), t0, Duration::ZERO);
        for i in 1..=MAX_PEERS as u64 {
            let at = t0 + Duration::from_millis(i);
            t.hear(i as u32, announce(i), at, Duration::ZERO);
        }
        assert_eq!(t.known.len(), MAX_PEERS);
        assert!(!t.known.contains_key(&first), "the oldest is forgotten");
        t.prune(t0 + Duration::from_secs(100), Duration::from_secs(10));
        assert!(t.known.is_empty());
    }
}
