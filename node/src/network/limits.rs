//! Serving limits: what this node answers, to whom, and how much. Token buckets for each
//! peer's request rate and upload bandwidth and for the node's whole upload, in-flight caps
//! per peer and per node, and the decision that turns them into "serve" or `Response::Busy`.
//! Pure: no I/O and no clock; every function takes the time as an argument. The event loop
//! owns one [`ServeState`] and asks it about each inbound request.

use libp2p::PeerId;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Most chunk bytes this node puts in one response (the protocol allows 16 MiB): one
/// largest chunk (4 MiB) always fits, and a flood of requests cannot make the node encode
/// more than this per stream. The ids past it are answered `OverBudget`.
pub const MAX_SERVED_CHUNK_DATA: usize = 4 * 1024 * 1024;

/// Most response bytes in flight (handed to the connections, not yet written) for the whole
/// node; past it every request is answered `Busy`. Bounds the memory serving can take.
pub const MAX_INFLIGHT_BYTES: u64 = 64 * 1024 * 1024;

/// With a node upload limit, the response bytes in flight are capped at this many seconds of
/// it (between one full response and [`MAX_INFLIGHT_BYTES`]), so that a new response waits
/// behind about this long of others, not behind 64 MiB on a slow link.
pub const INFLIGHT_SECS: f64 = 0.5;

/// The node's cap on response bytes in flight, given its upload limit in bytes per second.
pub fn inflight_cap(max_upload: Option<f64>) -> u64 {
    match max_upload {
        None => MAX_INFLIGHT_BYTES,
        Some(rate) => {
            let floor = MAX_SERVED_CHUNK_DATA as u64;
            ((rate * INFLIGHT_SECS) as u64).clamp(floor, MAX_INFLIGHT_BYTES)
        }
    }
}

/// Most responses in flight to one peer; past it that peer is answered `Busy`. Above the
/// fetcher's own per-peer limit (`averaging.max_inflight_per_peer`, 8 by default).
pub const MAX_INFLIGHT_PER_PEER: u32 = 16;

/// Most established connections with one peer (two allow a simultaneous dial both ways).
pub const MAX_CONNECTIONS_PER_PEER: u32 = 2;

/// Most incoming connections still in their handshake; garbage before the handshake costs a
/// slot until the handshake fails or times out.
pub const MAX_PENDING_INCOMING: u32 = 128;

/// A request bucket holds this many seconds of its rate: a fetch's burst passes at once.
pub const REQUEST_BURST_SECS: f64 = 2.0;

/// An upload bucket holds this many seconds of its rate, and at least two full responses.
pub const UPLOAD_BURST_SECS: f64 = 1.0;

/// Peers tracked at once; past it the idle ones are forgotten first (a forgotten peer starts
/// again with full buckets, so only idle ones are dropped).
pub const MAX_TRACKED_PEERS: usize = 4096;

/// A peer counts as active (sharing the global upload) for this long after its last request.
pub const ACTIVE_FOR: Duration = Duration::from_secs(5);

/// A token bucket: `level` tokens (requests or bytes) at `last`, refilled at a rate given at
/// each call, up to a burst given at each call. The level may go below zero (a debt): a
/// response larger than the bucket is sent whole and paid for by the time that follows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    level: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn full(burst: f64, now: Instant) -> Self {
        Self {
            level: burst,
            last: now,
        }
    }

    /// Refills for the time since the last call, at `rate` per second, up to `burst`.
    pub fn refill(&mut self, now: Instant, rate: f64, burst: f64) {
        let secs = now.saturating_duration_since(self.last).as_secs_f64();
        self.level = (self.level + secs * rate).min(burst);
        self.last = self.last.max(now);
    }

    /// Takes `n` tokens if that many are there.
    pub fn try_take(&mut self, n: f64) -> bool {
        if self.level >= n {
            self.level -= n;
            true
        } else {
            false
        }
    }

    /// True when the bucket is not in debt (a response may start).
    pub fn open(&self) -> bool {
        self.level > 0.0
    }

    /// Takes `n` tokens, going into debt if needed.
    pub fn charge(&mut self, n: f64) {
        self.level -= n;
    }

    /// The current level (tokens; negative is a debt).
    pub fn level(&self) -> f64 {
        self.level
    }
}

/// The serving limits a node is configured with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServeLimits {
    /// Requests per second one peer may make (sustained; bursts of [`REQUEST_BURST_SECS`]).
    pub peer_requests_per_sec: f64,
    /// Bytes per second one peer may download from this node; `None` = unlimited.
    pub peer_upload_bytes_per_sec: Option<f64>,
    /// Bytes per second this node uploads to all peers together; `None` = unlimited.
    pub max_upload_bytes_per_sec: Option<f64>,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            peer_requests_per_sec: 50.0,
            peer_upload_bytes_per_sec: Some(mbps_to_bytes(400.0)),
            max_upload_bytes_per_sec: None,
        }
    }
}

/// Megabits per second as bytes per second (`mbps * 1_000_000 / 8`), unchecked: 0 gives 0.0
/// and a negative or non-finite input comes back scaled as it is; [`rate_limit`] turns
/// those into `None` (unlimited).
pub fn mbps_to_bytes(mbps: f64) -> f64 {
    mbps * 1_000_000.0 / 8.0
}

/// `mbps` as a byte rate, `None` (unlimited) for 0, a negative or a non-finite value.
pub fn rate_limit(mbps: f64) -> Option<f64> {
    (mbps.is_finite() && mbps > 0.0).then(|| mbps_to_bytes(mbps))
}

/// The burst of an upload bucket of `rate` bytes per second.
pub fn upload_burst(rate: f64) -> f64 {
    (rate * UPLOAD_BURST_SECS).max(2.0 * MAX_SERVED_CHUNK_DATA as f64)
}

/// One peer's upload rate: its own limit, and no more than an equal share of the node's
/// upload among the `active` peers (this one included) when the node's upload is limited.
pub fn peer_share(limits: &ServeLimits, active: usize) -> Option<f64> {
    let share = limits
        .max_upload_bytes_per_sec
        .map(|g| g / active.max(1) as f64);
    match (limits.peer_upload_bytes_per_sec, share) {
        (Some(p), Some(s)) => Some(p.min(s)),
        (p, s) => p.or(s),
    }
}

/// Why a request was answered `Busy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusyReason {
    /// The peer is over its request rate.
    Rate,
    /// The peer has [`MAX_INFLIGHT_PER_PEER`] responses in flight.
    PeerInflight,
    /// The node has [`MAX_INFLIGHT_BYTES`] in flight.
    NodeInflight,
    /// The peer is over its upload share.
    PeerUpload,
    /// The node is over its upload limit.
    NodeUpload,
}

/// What to do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Serve,
    Busy(BusyReason),
}

/// What the node tracks about one peer it serves.
#[derive(Debug, Clone, Copy)]
struct PeerState {
    requests: Bucket,
    upload: Bucket,
    inflight: u32,
    last_request: Instant,
}

/// The serving state of a node: per-peer buckets and in-flight counts, the node's upload
/// bucket and in-flight bytes. Bounded: at most [`MAX_TRACKED_PEERS`] peers.
#[derive(Debug)]
pub struct ServeState {
    limits: ServeLimits,
    peers: HashMap<PeerId, PeerState>,
    upload: Bucket,
    inflight_bytes: u64,
}

impl ServeState {
    /// A fresh state, every bucket full.
    pub fn new(limits: ServeLimits, now: Instant) -> Self {
        let burst = limits.max_upload_bytes_per_sec.map_or(0.0, upload_burst);
        Self {
            limits,
            peers: HashMap::new(),
            upload: Bucket::full(burst, now),
            inflight_bytes: 0,
        }
    }

    /// Peers that asked for something in the last [`ACTIVE_FOR`].
    fn active(&self, now: Instant) -> usize {
        self.peers
            .values()
            .filter(|p| now.saturating_duration_since(p.last_request) < ACTIVE_FOR)
            .count()
    }

    /// Decides about one request of `peer` at `now`. A request that is served must be
    /// followed by [`Self::sent`] with its size; each served request takes one request token.
    pub fn admit(&mut self, peer: PeerId, now: Instant) -> Decision {
        if !self.peers.contains_key(&peer) && self.peers.len() >= MAX_TRACKED_PEERS {
            self.forget_idle(now);
            if self.peers.len() >= MAX_TRACKED_PEERS {
                // Every tracked peer has something in flight: no room for another.
                return Decision::Busy(BusyReason::NodeInflight);
            }
        }
        let active = self.active(now) + usize::from(!self.peers.contains_key(&peer));
        let share = peer_share(&self.limits, active);
        let req_rate = self.limits.peer_requests_per_sec;
        let req_burst = (req_rate * REQUEST_BURST_SECS).max(1.0);
        let state = self.peers.entry(peer).or_insert_with(|| PeerState {
            requests: Bucket::full(req_burst, now),
            upload: Bucket::full(share.map_or(0.0, upload_burst), now),
            inflight: 0,
            last_request: now,
        });
        state.last_request = now;
        state.requests.refill(now, req_rate, req_burst);
        if let Some(rate) = share {
            state.upload.refill(now, rate, upload_burst(rate));
        }
        if let Some(rate) = self.limits.max_upload_bytes_per_sec {
            self.upload.refill(now, rate, upload_burst(rate));
        }
        if !state.requests.try_take(1.0) {
            return Decision::Busy(BusyReason::Rate);
        }
        if state.inflight >= MAX_INFLIGHT_PER_PEER {
            return Decision::Busy(BusyReason::PeerInflight);
        }
        // The node's limits turn away peers that have used some of their share; one with its
        // whole share unused (a full bucket, or no per-peer limit) and nothing in flight is
        // served anyway, so a flood of others cannot starve it. Once served, its bucket is no
        // longer full: each peer passes this way once per refill. Peer ids cost nothing, so
        // this exception never takes the bytes in flight past twice the cap.
        let unused = state.inflight == 0
            && share.is_none_or(|rate| state.upload.level() >= upload_burst(rate));
        let max_upload = self.limits.max_upload_bytes_per_sec;
        let cap = inflight_cap(max_upload);
        let excepted = unused && self.inflight_bytes < cap.saturating_mul(2);
        if self.inflight_bytes >= cap && !excepted {
            return Decision::Busy(BusyReason::NodeInflight);
        }
        if share.is_some() && !state.upload.open() {
            return Decision::Busy(BusyReason::PeerUpload);
        }
        if max_upload.is_some() && !self.upload.open() && !unused {
            return Decision::Busy(BusyReason::NodeUpload);
        }
        Decision::Serve
    }

    /// Records a served response of `bytes` to `peer`, now in flight until [`Self::done`].
    pub fn sent(&mut self, peer: PeerId, bytes: u64) {
        if let Some(state) = self.peers.get_mut(&peer) {
            state.inflight = state.inflight.saturating_add(1);
            state.upload.charge(bytes as f64);
        }
        self.upload.charge(bytes as f64);
        self.inflight_bytes = self.inflight_bytes.saturating_add(bytes);
    }

    /// Records that a response of `bytes` to `peer` was written or failed.
    pub fn done(&mut self, peer: PeerId, bytes: u64) {
        if let Some(state) = self.peers.get_mut(&peer) {
            state.inflight = state.inflight.saturating_sub(1);
        }
        self.inflight_bytes = self.inflight_bytes.saturating_sub(bytes);
    }

    /// Forgets peers with nothing in flight that have not asked for anything for
    /// [`ACTIVE_FOR`]: their buckets would be full again by now anyway (or nearly so).
    pub fn forget_idle(&mut self, now: Instant) {
        self.peers.retain(|_, p| {
            p.inflight > 0 || now.saturating_duration_since(p.last_request) < ACTIVE_FOR
        });
    }

    /// Peers tracked.
    pub fn tracked(&self) -> usize {
        self.peers.len()
    }

    /// Response bytes in flight.
    pub fn inflight_bytes(&self) -> u64 {
        self.inflight_bytes
    }
}

/// How long a requester waits before asking a peer that answered `Busy` `consecutive` times
/// in a row (1 for the first) again: 100 ms doubling, at most 2 s.
pub fn busy_backoff(consecutive: u32) -> Duration {
    let exp = consecutive.saturating_sub(1).min(5);
    Duration::from_millis(100 << exp).min(Duration::from_secs(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: f64 = 1_000_000.0;

    fn limits(rps: f64, peer_mbps: f64, node_mbps: f64) -> ServeLimits {
        ServeLimits {
            peer_requests_per_sec: rps,
            peer_upload_bytes_per_sec: rate_limit(peer_mbps),
            max_upload_bytes_per_sec: rate_limit(node_mbps),
        }
    }

    #[test]
    fn a_bucket_refills_at_its_rate_up_to_its_burst_and_may_go_into_debt() {
        let t0 = Instant::now();
        let mut b = Bucket::full(10.0, t0);
        assert!(b.try_take(10.0));
        assert!(!b.try_take(1.0));
        b.refill(t0 + Duration::from_millis(500), 4.0, 10.0);
        assert!((b.level() - 2.0).abs() < 1e-9);
        b.refill(t0 + Duration::from_secs(100), 4.0, 10.0);
        assert_eq!(b.level(), 10.0);
        // Time going backwards adds nothing.
        b.refill(t0, 4.0, 10.0);
        assert_eq!(b.level(), 10.0);
        b.charge(25.0);
        assert!(!b.open());
        b.refill(t0 + Duration::from_secs(103), 4.0, 10.0);
        assert!(!b.open());
        b.refill(t0 + Duration::from_secs(104), 4.0, 10.0);
        assert!(b.open());
    }

    #[test]
    fn rates_in_mbps_zero_is_unlimited() {
        assert_eq!(rate_limit(0.0), None);
        assert_eq!(rate_limit(-1.0), None);
        assert_eq!(rate_limit(f64::NAN), None);
        assert_eq!(rate_limit(8.0), Some(MB));
        assert_eq!(upload_burst(1.0), 2.0 * MAX_SERVED_CHUNK_DATA as f64);
        assert_eq!(upload_burst(100.0 * MB), 100.0 * MB);
    }

    #[test]
    fn a_peer_share_is_its_limit_or_an_equal_part_of_the_node_limit() {
        assert_eq!(peer_share(&limits(1.0, 0.0, 0.0), 3), None);
        assert_eq!(peer_share(&limits(1.0, 8.0, 0.0), 3), Some(MB));
        assert_eq!(peer_share(&limits(1.0, 0.0, 24.0), 3), Some(MB));
        assert_eq!(peer_share(&limits(1.0, 0.0, 24.0), 0), Some(3.0 * MB));
        assert_eq!(peer_share(&limits(1.0, 80.0, 24.0), 3), Some(MB));
        assert_eq!(peer_share(&limits(1.0, 4.0, 24.0), 3), Some(MB / 2.0));
    }

    #[test]
    fn a_peer_over_its_request_rate_is_busy_until_its_bucket_refills() {
        let t0 = Instant::now();
        let mut s = ServeState::new(limits(10.0, 0.0, 0.0), t0);
        let (flooder, honest) = (PeerId::random(), PeerId::random());
        // A burst of 2 s worth, then Busy.
        for _ in 0..20 {
            assert_eq!(s.admit(flooder, t0), Decision::Serve);
        }
        assert_eq!(s.admit(flooder, t0), Decision::Busy(BusyReason::Rate));
        // Another peer is not affected.
        assert_eq!(s.admit(honest, t0), Decision::Serve);
        // 100 ms later, one more token.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(s.admit(flooder, t1), Decision::Serve);
        assert_eq!(s.admit(flooder, t1), Decision::Busy(BusyReason::Rate));
    }

    #[test]
    fn a_peer_with_too_many_responses_in_flight_is_busy_until_one_is_done() {
        let t0 = Instant::now();
        let mut s = ServeState::new(limits(1000.0, 0.0, 0.0), t0);
        let p = PeerId::random();
        for _ in 0..MAX_INFLIGHT_PER_PEER {
            assert_eq!(s.admit(p, t0), Decision::Serve);
            s.sent(p, 10);
        }
        assert_eq!(s.admit(p, t0), Decision::Busy(BusyReason::PeerInflight));
        s.done(p, 10);
        assert_eq!(s.admit(p, t0), Decision::Serve);
    }

    #[test]
    fn the_node_at_its_inflight_bytes_is_busy_for_everyone() {
        let t0 = Instant::now();
        let mut s = ServeState::new(limits(1000.0, 0.0, 0.0), t0);
        let (a, b) = (PeerId::random(), PeerId::random());
        let c = PeerId::random();
        assert_eq!(s.admit(a, t0), Decision::Serve);
        s.sent(a, MAX_INFLIGHT_BYTES);
        assert_eq!(s.inflight_bytes(), MAX_INFLIGHT_BYTES);
        assert_eq!(s.admit(a, t0), Decision::Busy(BusyReason::NodeInflight));
        // A peer with nothing in flight is served once past the cap (with no per-peer
        // limit too), so that a flood cannot starve it...
        assert_eq!(s.admit(b, t0), Decision::Serve);
        s.sent(b, MAX_INFLIGHT_BYTES);
        assert_eq!(s.admit(b, t0), Decision::Busy(BusyReason::NodeInflight));
        // ...but never past twice the cap, however many fresh peer ids ask.
        assert_eq!(s.admit(c, t0), Decision::Busy(BusyReason::NodeInflight));
        s.done(a, MAX_INFLIGHT_BYTES);
        s.done(b, MAX_INFLIGHT_BYTES);
        assert_eq!(s.admit(c, t0), Decision::Serve);
    }

    #[test]
    fn a_node_tracking_all_it_may_is_busy_for_a_new_peer() {
        let t0 = Instant::now();
        let mut s = ServeState::new(limits(10.0, 0.0, 0.0), t0);
        for _ in 0..MAX_TRACKED_PEERS {
            let p = PeerId::random();
            assert_eq!(s.admit(p, t0), Decision::Serve);
            s.sent(p, 1);
        }
        let late = t0 + ACTIVE_FOR;
        assert_eq!(
            s.admit(PeerId::random(), late),
            Decision::Busy(BusyReason::NodeInflight)
        );
        assert_eq!(s.tracked(), MAX_TRACKED_PEERS);
    }

    #[test]
    fn a_peer_over_its_upload_share_is_busy_while_others_are_served() {
        let t0 = Instant::now();
        // 80 Mbit/s = 10 MB/s per peer: the burst is 10 MB.
        let mut s = ServeState::new(limits(1000.0, 80.0, 0.0), t0);
        let (a, b) = (PeerId::random(), PeerId::random());
        assert_eq!(s.admit(a, t0), Decision::Serve);
        s.sent(a, 12_000_000);
        s.done(a, 12_000_000);
        assert_eq!(s.admit(a, t0), Decision::Busy(BusyReason::PeerUpload));
        assert_eq!(s.admit(b, t0), Decision::Serve);
        // 2 MB of debt at 10 MB/s: open again after 0.2 s.
        let t1 = t0 + Duration::from_millis(150);
        assert_eq!(s.admit(a, t1), Decision::Busy(BusyReason::PeerUpload));
        let t2 = t0 + Duration::from_millis(250);
        assert_eq!(s.admit(a, t2), Decision::Serve);
    }

    #[test]
    fn the_node_over_its_upload_limit_is_busy_for_all_but_peers_with_an_unused_share() {
        let t0 = Instant::now();
        // 8 Mbit/s = 1 MB/s for the node; the burst is two full responses (8 MiB).
        let mut s = ServeState::new(limits(1000.0, 0.0, 8.0), t0);
        let (a, b) = (PeerId::random(), PeerId::random());
        assert_eq!(s.admit(a, t0), Decision::Serve);
        s.sent(a, 9 * 1024 * 1024);
        s.done(a, 9 * 1024 * 1024);
        // `a` is over its share too (the node's limit split between active peers).
        assert_eq!(s.admit(a, t0), Decision::Busy(BusyReason::PeerUpload));
        // `b` has used none of its share: served even now, once.
        assert_eq!(s.admit(b, t0), Decision::Serve);
        s.sent(b, 1000);
        s.done(b, 1000);
        assert_eq!(s.admit(b, t0), Decision::Busy(BusyReason::NodeUpload));
        let later = t0 + Duration::from_secs(2);
        assert_eq!(s.admit(b, later), Decision::Serve);
    }

    #[test]
    fn with_an_upload_limit_the_bytes_in_flight_are_half_a_second_of_it() {
        assert_eq!(inflight_cap(None), MAX_INFLIGHT_BYTES);
        assert_eq!(inflight_cap(Some(20.0 * MB)), 10_000_000);
        assert_eq!(inflight_cap(Some(1.0)), MAX_SERVED_CHUNK_DATA as u64);
        assert_eq!(inflight_cap(Some(1e12)), MAX_INFLIGHT_BYTES);
        let t0 = Instant::now();
        // 160 Mbit/s: 10 MB in flight at most.
        let mut s = ServeState::new(limits(1000.0, 0.0, 160.0), t0);
        let (a, b) = (PeerId::random(), PeerId::random());
        assert_eq!(s.admit(a, t0), Decision::Serve);
        s.sent(a, 10_000_000);
        assert_eq!(s.admit(a, t0), Decision::Busy(BusyReason::NodeInflight));
        // `b` has nothing in flight and its share unused: served once, then Busy.
        assert_eq!(s.admit(b, t0), Decision::Serve);
        s.sent(b, 1_000);
        assert_eq!(s.admit(b, t0), Decision::Busy(BusyReason::NodeInflight));
        // Once `a`'s response is written, `b` is served again: the node's upload bucket
        // (20 MB, a second of its limit) is not spent yet.
        s.done(a, 10_000_000);
        assert_eq!(s.admit(b, t0), Decision::Serve);
    }

    #[test]
    fn idle_peers_are_forgotten_busy_ones_kept() {
        let t0 = Instant::now();
        let mut s = ServeState::new(limits(10.0, 0.0, 0.0), t0);
        let (idle, busy) = (PeerId::random(), PeerId::random());
        assert_eq!(s.admit(idle, t0), Decision::Serve);
        assert_eq!(s.admit(busy, t0), Decision::Serve);
        s.sent(busy, 1);
        s.forget_idle(t0 + ACTIVE_FOR);
        assert_eq!(s.tracked(), 1);
        s.done(busy, 1);
        s.forget_idle(t0 + ACTIVE_FOR);
        assert_eq!(s.tracked(), 0);
        // Bookkeeping for a forgotten peer is harmless.
        s.done(idle, 5);
        assert_eq!(s.inflight_bytes(), 0);
    }

    #[test]
    fn busy_backoff_doubles_from_100_ms_up_to_2_s() {
        assert_eq!(busy_backoff(0), Duration::from_millis(100));
        assert_eq!(busy_backoff(1), Duration::from_millis(100));
        assert_eq!(busy_backoff(2), Duration::from_millis(200));
        assert_eq!(busy_backoff(4), Duration::from_millis(800));
        assert_eq!(busy_backoff(5), Duration::from_millis(1600));
        assert_eq!(busy_backoff(6), Duration::from_secs(2));
        assert_eq!(busy_backoff(u32::MAX), Duration::from_secs(2));
    }
}
