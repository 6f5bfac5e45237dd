//! How fast each peer delivers: one table per node, fed by every fetch and read by the
//! fetch scheduler to prefer the holders that deliver faster. It owns the measured rates and
//! the choice of holder they imply; it does not fetch, charge or block (that is
//! [`super::fetch`] and [`super::budgets`]). Pure apart from its lock: the time and the
//! measurements are arguments.
//!
//! A rate is measured over the time a peer had at least one of our requests in flight: the
//! bytes it delivered in such a stretch over the stretch's length. Counting busy time, not
//! each request's own duration, keeps the figure right when several requests share the
//! peer's link. Older measurements fade (each new one keeps [`KEEP`] of the sums before it),
//! so a peer whose link changes is re-measured within a few requests.

use libp2p::PeerId;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Share of the earlier measurements a new one keeps.
pub const KEEP: f64 = 0.75;

/// A holder measured this many times slower than the fastest usable holder gets no request
/// while that one is usable (even when it is at its in-flight cap): its share of a fetch would
/// arrive last and hold the whole fetch up. The fetch counts a holder usable for a chunk while
/// it has not refused that chunk, is not backing off after `Busy` and has budget left, so the
/// slow holder is asked as soon as the faster one fails any of these.
pub const SLOW_FACTOR: f64 = 4.0;

/// Peers whose rates are kept; past it the slowest-measured are forgotten first (a
/// forgotten peer is measured again, as a new one).
pub const MAX_PEERS: usize = 4096;

/// Measured delivery rate of one peer: faded sums of bytes and busy seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rate {
    bytes: f64,
    secs: f64,
}

/// Delivery rates per peer, shared (behind a lock) by every fetch of a node.
#[derive(Debug, Clone)]
pub struct Rates<P = PeerId> {
    peers: Arc<Mutex<BTreeMap<P, Rate>>>,
}

impl<P> Default for Rates<P> {
    fn default() -> Self {
        Self {
            peers: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }
}

impl<P: Copy + Ord> Rates<P> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<P, Rate>) -> T) -> T {
        f(&mut self.peers.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// `peer` delivered `bytes` over `busy` of time with our requests in flight.
    pub fn record(&self, peer: P, bytes: u64, busy: Duration) {
        let secs = busy.as_secs_f64().max(1e-6);
        self.with(|peers| {
            let r = peers.entry(peer).or_insert(Rate {
                bytes: 0.0,
                secs: 0.0,
            });
            r.bytes = r.bytes * KEEP + bytes as f64;
            r.secs = r.secs * KEEP + secs;
            if peers.len() > MAX_PEERS
                && let Some(slowest) = peers
                    .iter()
                    .min_by(|a, b| per_sec(a.1).total_cmp(&per_sec(b.1)))
                    .map(|(p, _)| *p)
            {
                peers.remove(&slowest);
            }
        });
    }

    /// `peer`'s measured bytes per second, if it was ever measured.
    pub fn rate(&self, peer: &P) -> Option<f64> {
        self.with(|peers| peers.get(peer).map(per_sec))
    }

    /// Of `candidates` (each with its requests in flight, in preference order), the one
    /// expected to finish one more request first: least `(in flight + 1) / rate`. A peer not
    /// yet measured is taken to be as fast as the fastest measured one, so that it gets
    /// tried; among equals the earlier candidate wins. A candidate [`SLOW_FACTOR`] times
    /// slower than the fastest of `usable` (every holder that may still be asked, busy or
    /// not) is left out.
    pub fn pick(
        &self,
        candidates: impl IntoIterator<Item = (P, usize)>,
        usable: impl IntoIterator<Item = P>,
    ) -> Option<P> {
        type Measured<P> = (Vec<(P, Option<f64>, usize)>, Option<f64>);
        let (candidates, fastest): Measured<P> = self.with(|peers| {
            let fastest = usable
                .into_iter()
                .filter_map(|p| peers.get(&p).map(per_sec))
                .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))));
            let candidates = candidates
                .into_iter()
                .map(|(p, n)| (p, peers.get(&p).map(per_sec), n))
                .collect();
            (candidates, fastest)
        });
        let best = candidates
            .iter()
            .filter_map(|(_, r, _)| *r)
            .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))))
            .unwrap_or(1.0);
        let mut chosen: Option<(P, f64)> = None;
        for (p, rate, inflight) in candidates {
            if let (Some(r), Some(f)) = (rate, fastest)
                && r * SLOW_FACTOR < f
            {
                continue;
            }
            let cost = (inflight as f64 + 1.0) / rate.unwrap_or(best).max(f64::MIN_POSITIVE);
            if chosen.is_none_or(|(_, c)| cost < c) {
                chosen = Some((p, cost));
            }
        }
        chosen.map(|(p, _)| p)
    }
}

fn per_sec(r: &Rate) -> f64 {
    r.bytes / r.secs.max(1e-6)
}

/// One fetch's view of when each peer became busy: turns request starts and ends into the
/// busy stretches [`Rates::record`] wants. Pure: the time (since the caller's start) is an
/// argument.
#[derive(Debug)]
pub struct Busy<P = PeerId> {
    since: BTreeMap<P, Duration>,
}

impl<P> Default for Busy<P> {
    fn default() -> Self {
        Self {
            since: BTreeMap::new(),
        }
    }
}

impl<P: Copy + Ord> Busy<P> {
    /// A request to `peer` was sent at `now`, with `inflight` of ours already in flight to it.
    pub fn sent(&mut self, peer: P, inflight: usize, now: Duration) {
        if inflight == 0 {
            self.since.insert(peer, now);
        }
    }

    /// A request to `peer` ended at `now`, leaving `inflight` in flight; returns the busy
    /// time to charge the bytes it delivered to (since it became busy, or since its last
    /// answer).
    pub fn ended(&mut self, peer: P, inflight: usize, now: Duration) -> Option<Duration> {
        let since = if inflight == 0 {
            self.since.remove(&peer)
        } else {
            self.since.insert(peer, now)
        };
        since.map(|s| now.saturating_sub(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn rates_are_bytes_over_busy_time_and_fade() {
        let rates = Rates::<u32>::new();
        assert_eq!(rates.rate(&1), None);
        rates.record(1, 1_000_000, 1000 * MS);
        assert!((rates.rate(&1).unwrap() - 1e6).abs() < 1.0);
        // The link got ten times slower: after a few measurements the rate follows.
        for _ in 0..10 {
            rates.record(1, 100_000, 1000 * MS);
        }
        let r = rates.rate(&1).unwrap();
        assert!(r < 1.3e5, "{r}");
    }

    #[test]
    fn the_faster_holder_is_preferred_until_it_is_loaded() {
        let rates = Rates::<u32>::new();
        rates.record(1, 250_000, 100 * MS); // 2.5 MB/s
        rates.record(2, 25_000, 100 * MS); // 0.25 MB/s
        rates.record(3, 120_000, 100 * MS); // 1.2 MB/s
        let all = [1, 2, 3, 4];
        // Slow peer first in preference order: the fast one still wins.
        assert_eq!(rates.pick([(3, 0), (1, 0)], all), Some(1));
        // With three requests in flight to the fast one, one more there ends after
        // 4 / 2.5e6 s per byte, later than one to the idle 1.2 MB/s peer (1 / 1.2e6): that
        // one takes a share; with one in flight (2 / 2.5e6) the fast one still wins.
        assert_eq!(rates.pick([(3, 0), (1, 3)], all), Some(3));
        assert_eq!(rates.pick([(3, 0), (1, 1)], all), Some(1));
        // Ten times slower than the fastest usable holder: never asked while that one is
        // usable, even when it is the only candidate (the fast one at its in-flight cap).
        assert_eq!(rates.pick([(2, 0), (1, 20)], all), Some(1));
        assert_eq!(rates.pick([(2, 0)], all), None);
        // Once the faster ones are no longer usable, the slow one is asked.
        assert_eq!(rates.pick([(2, 0)], [2]), Some(2));
        // An unmeasured peer counts as fast as the fastest, so it gets tried.
        assert_eq!(rates.pick([(1, 1), (4, 0)], all), Some(4));
        // Nothing measured: fewest in flight, earlier first.
        let fresh = Rates::<u32>::new();
        assert_eq!(fresh.pick([(5, 1), (6, 0), (7, 0)], [5, 6, 7]), Some(6));
        assert_eq!(fresh.pick(Vec::<(u32, usize)>::new(), [5]), None);
    }

    #[test]
    fn busy_time_runs_from_the_first_request_to_each_answer() {
        let t0 = Duration::from_secs(1);
        let mut busy = Busy::<u32>::default();
        busy.sent(1, 0, t0);
        busy.sent(1, 1, t0 + 10 * MS); // already busy: the stretch still starts at t0
        assert_eq!(busy.ended(1, 1, t0 + 100 * MS), Some(100 * MS));
        assert_eq!(busy.ended(1, 0, t0 + 150 * MS), Some(50 * MS));
        // Idle from then on: the idle time before the next request is not counted.
        busy.sent(1, 0, t0 + 1000 * MS);
        assert_eq!(busy.ended(1, 0, t0 + 1020 * MS), Some(20 * MS));
        assert_eq!(busy.ended(2, 0, t0), None);
    }

    #[test]
    fn the_table_is_bounded() {
        let rates = Rates::<u32>::new();
        for p in 0..(MAX_PEERS as u32 + 10) {
            rates.record(p, 1000 + u64::from(p), 1000 * MS);
        }
        let kept = rates.with(|p| p.len());
        assert_eq!(kept, MAX_PEERS);
        // The slowest were forgotten.
        assert_eq!(rates.rate(&0), None);
    }
}
