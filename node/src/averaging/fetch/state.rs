//! The decisions of one fetch, IO-less (in the manner of iroh-gossip's `proto`): whom to ask
//! for the manifest and in which order, how to cut the missing chunks into requests and
//! which holder gets each, what each answer costs its peer, when a `Busy` holder may be
//! asked again, and when the fetch is done or must give up. The caller passes the time (a
//! `Duration` since its own start) and the answers, and carries out the requests it is
//! given: the node's async driver ([`super::driver`]) over libp2p, the simulator over its
//! simulated links. It owns one fetch's queue, in-flight counts, refusals, backoffs and
//! [`Tally`]; it must not touch a socket, a clock, the chunk store or a model.
//!
//! Charges, recorded in the tally's ledger for the core: a manifest request that timed out
//! costs [`TIMEOUT_CHARGES`], one that failed otherwise or got an answer of the wrong kind
//! one, an invalid manifest one, a manifest of another layout [`LAYOUT_CHARGES`] (and ends
//! the fetch); a chunk answer with any corrupt chunk, with a reply count other than the
//! request's, or of the wrong kind costs one, a failed or timed-out chunk request as above.
//! `Busy` is honest and never charged. A good manifest forgives its peer once, and every
//! peer that served chunks is forgiven once when the model assembled.

use super::{FetchError, FetchLimits};
use crate::averaging::budgets::Tally;
use crate::averaging::rates::{Busy, Rates};
use crate::network::limits::{MAX_SERVED_CHUNK_DATA, busy_backoff};
use murmur_protocol::limits::MAX_CHUNKS_PER_REQUEST;
use murmur_protocol::{ChunkId, ManifestId};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// Charges for a request that timed out: a peer that takes requests and never answers holds
/// up every averaging that picks it for a whole request timeout, so it costs more than a
/// request that failed at once.
pub const TIMEOUT_CHARGES: u32 = 2;

/// Charges for a manifest whose layout is not ours (a model of another shape, or one that
/// repeats chunk ids): as many as a model the training thread refuses
/// ([`crate::averaging::core::REJECTED_MODEL_CHARGES`]), since it is one. With a single
/// charge, fading at one per 10 s, a peer announcing such manifests was never blocked (the
/// attack matrix's `dup-chunks` kept all its links).
pub const LAYOUT_CHARGES: u32 = 4;

/// Peers that answered `Busy`, and when each may be asked again.
#[derive(Debug)]
pub struct Backoff<P> {
    peers: BTreeMap<P, (u32, Duration)>,
}

impl<P> Default for Backoff<P> {
    fn default() -> Self {
        Self {
            peers: BTreeMap::new(),
        }
    }
}

impl<P: Copy + Ord> Backoff<P> {
    /// `peer` answered `Busy` at `now`: leave it alone for [`busy_backoff`] of its
    /// consecutive `Busy` answers. A `Busy` that arrives while a backoff is still running
    /// answers a request sent before it began and does not lengthen it: eight requests in
    /// flight, all answered `Busy`, are one refusal, not eight. Returns the wait.
    pub fn busy(&mut self, peer: P, now: Duration) -> Duration {
        let entry = self.peers.entry(peer).or_insert((0, now));
        if now < entry.1 {
            return entry.1 - now;
        }
        entry.0 = entry.0.saturating_add(1);
        let wait = busy_backoff(entry.0);
        entry.1 = now + wait;
        wait
    }

    /// `peer` served a request: its next `Busy` starts the backoff over.
    pub fn served(&mut self, peer: &P) {
        self.peers.remove(peer);
    }

    /// True when `peer` may be asked at `now`.
    pub fn ready(&self, peer: &P, now: Duration) -> bool {
        self.peers.get(peer).is_none_or(|(_, until)| *until <= now)
    }

    /// The earliest end of a backoff still running at `now`, among `peers`.
    pub fn next_ready<'a>(
        &self,
        peers: impl IntoIterator<Item = &'a P>,
        now: Duration,
    ) -> Option<Duration>
    where
        P: 'a,
    {
        peers
            .into_iter()
            .filter_map(|p| self.peers.get(p).map(|(_, until)| *until))
            .filter(|until| *until > now)
            .min()
    }
}

/// What to ask a holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    Manifest,
    /// These chunks, each named once.
    Chunks(Vec<ChunkId>),
}

/// What the driver does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<P> {
    /// Send `ask` to `peer`; report its answer with `token`.
    Send { token: u64, peer: P, ask: Ask },
    /// Nothing to send: wait for an answer, or until `until`, then poll again.
    Wait { until: Duration },
    /// The fetch is over: see [`Fetch::finish`].
    Done,
}

/// A holder's answer to a manifest request, as the driver read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestAnswer {
    /// A valid manifest of our layout; `missing` are the chunks not held yet.
    Valid {
        chunk_size: u32,
        chunks: usize,
        missing: Vec<ChunkId>,
    },
    /// Not the manifest asked for, or not a valid manifest.
    Invalid,
    /// A valid manifest of another layout: every holder serves the same bytes.
    Layout {
        /// Our model's size in the manifest's encoding.
        expected: u64,
        /// The manifest's encoded size.
        got: u64,
        /// The first difference found.
        detail: String,
    },
    /// The holder does not hold it.
    NotHeld,
    Busy,
    /// An answer of another kind.
    Unexpected,
    /// The request failed (`timeout`: it got no answer in time).
    Failed {
        timeout: bool,
    },
    /// The connection closed under the request (a relay cut the circuit): not charged.
    Lost,
    /// The network stopped.
    Stopped,
}

/// What became of one chunk of an answer, as the driver read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// Verified against its id and stored; its size.
    Stored(u64),
    /// Its bytes do not hash to its id.
    Corrupt,
    NotHeld,
    /// The holder's response was full; ask again.
    OverBudget,
}

/// A holder's answer to a chunk request, as the driver read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunksAnswer {
    /// One outcome per reply, in order (the state checks the count against the request).
    Replies(Vec<ChunkOutcome>),
    Busy,
    Unexpected,
    Failed {
        timeout: bool,
    },
    /// The connection closed under the request: the chunks are asked of another holder,
    /// and the peer is not charged.
    Lost,
    Stopped,
}

/// What a fetch that got every chunk did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Got<P> {
    pub chunks_fetched: usize,
    pub chunks_reused: usize,
    pub bytes: u64,
    /// Verified chunks received from each peer.
    pub sources: BTreeMap<P, usize>,
}

#[derive(Debug)]
enum Stage<P> {
    Manifest {
        /// Holders still to ask, in order.
        ask: VecDeque<P>,
        /// Holders that answered `Busy`: asked again after their backoff.
        again: Vec<P>,
        /// The request in flight.
        asking: Option<(u64, P)>,
    },
    Chunks {
        per_request: usize,
    },
    Done,
}

/// One fetch's state.
#[derive(Debug)]
pub struct Fetch<P> {
    id: ManifestId,
    holders: Vec<P>,
    limits: FetchLimits,
    deadline: Duration,
    tally: Tally<P>,
    backoff: Backoff<P>,
    stage: Stage<P>,
    queue: VecDeque<ChunkId>,
    /// Peers that answered `NotHeld` for a chunk or sent a bad copy: not asked for it again.
    refused: BTreeMap<ChunkId, BTreeSet<P>>,
    inflight: BTreeMap<P, usize>,
    /// Holders reached only through a relay: asked only while no other holder may be.
    relayed: BTreeSet<P>,
    /// Chunk requests in flight: token → (peer, chunks).
    requests: BTreeMap<u64, (P, Vec<ChunkId>)>,
    next_token: u64,
    busy: Busy<P>,
    got: Got<P>,
    result: Option<Result<(), FetchError>>,
}

impl<P: Copy + Ord + std::fmt::Debug> Fetch<P> {
    /// A fetch of `id` from `holders` (in preference order) starting at `now`, charging on
    /// `tally`.
    pub fn new(
        id: ManifestId,
        holders: Vec<P>,
        limits: FetchLimits,
        tally: Tally<P>,
        now: Duration,
    ) -> Self {
        Self {
            id,
            stage: Stage::Manifest {
                ask: holders.iter().copied().collect(),
                again: Vec::new(),
                asking: None,
            },
            holders,
            limits,
            deadline: now.saturating_add(limits.deadline),
            tally,
            backoff: Backoff::default(),
            queue: VecDeque::new(),
            refused: BTreeMap::new(),
            inflight: BTreeMap::new(),
            relayed: BTreeSet::new(),
            requests: BTreeMap::new(),
            next_token: 0,
            busy: Busy::default(),
            got: Got {
                chunks_fetched: 0,
                chunks_reused: 0,
                bytes: 0,
                sources: BTreeMap::new(),
            },
            result: None,
        }
    }

    /// Of the holders, `peers` are reached only through a relay (their circuits cost the
    /// relay's bandwidth and are slower): they are asked for the manifest after the others,
    /// and for chunks only while no other holder may be asked (every other one is over its
    /// error budget, backing off after `Busy`, or refused the chunk). A holder with a direct
    /// connection, or none yet, counts as direct.
    pub fn relayed(mut self, peers: impl IntoIterator<Item = P>) -> Self {
        self.relayed = peers.into_iter().collect();
        if let Stage::Manifest { ask, .. } = &mut self.stage {
            let (direct, relayed): (Vec<P>, Vec<P>) =
                ask.iter().copied().partition(|p| !self.relayed.contains(p));
            *ask = direct.into_iter().chain(relayed).collect();
        }
        self
    }

    /// The manifest was held already (and is of our layout): go straight to its chunks.
    /// Nobody is charged or forgiven for it.
    pub fn manifest_held(&mut self, chunk_size: u32, chunks: usize, missing: Vec<ChunkId>) {
        self.start_chunks(chunk_size, chunks, missing);
    }

    fn start_chunks(&mut self, chunk_size: u32, chunks: usize, missing: Vec<ChunkId>) {
        // Enough requests to keep every holder's in-flight slots busy, each within one
        // response.
        let by_budget =
            (MAX_SERVED_CHUNK_DATA / chunk_size.max(1) as usize).clamp(1, MAX_CHUNKS_PER_REQUEST);
        let slots = (self.limits.per_peer_inflight * self.holders.len()).max(1);
        let per_request = missing.len().div_ceil(slots).clamp(1, by_budget);
        self.got.chunks_reused = chunks.saturating_sub(missing.len());
        self.queue = missing.into_iter().collect();
        // A `Busy` answer to the manifest request does not hold back a holder's chunks.
        self.backoff = Backoff::default();
        self.stage = Stage::Chunks { per_request };
    }

    fn end(&mut self, result: Result<(), FetchError>) -> Action<P> {
        self.stage = Stage::Done;
        self.result.get_or_insert(result);
        Action::Done
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    /// The next thing to do at `now`; call again after a `Send` until `Wait` or `Done`.
    /// `rates` are the node's measured delivery rates (read to choose a holder).
    pub fn poll(&mut self, now: Duration, rates: &Rates<P>) -> Action<P> {
        if matches!(self.stage, Stage::Done) {
            return Action::Done;
        }
        if now >= self.deadline {
            return self.end(Err(FetchError::Deadline(self.id)));
        }
        let deadline = self.deadline;
        match &mut self.stage {
            Stage::Manifest { ask, again, asking } => {
                if asking.is_some() {
                    return Action::Wait { until: deadline };
                }
                ask.retain(|p| !self.tally.exhausted(p));
                if ask.is_empty() {
                    again.retain(|p| !self.tally.exhausted(p));
                    if again.is_empty() {
                        let id = self.id;
                        return self.end(Err(FetchError::NoManifest(id)));
                    }
                    ask.extend(again.drain(..));
                }
                // The first holder in order that may be asked now; else wait for the first
                // backoff to end.
                let Some(i) = ask.iter().position(|p| self.backoff.ready(p, now)) else {
                    let wake = self.backoff.next_ready(ask.iter(), now).unwrap_or(now);
                    return Action::Wait {
                        until: wake.min(deadline),
                    };
                };
                let Some(peer) = ask.remove(i) else {
                    return Action::Wait { until: deadline };
                };
                self.next_token += 1;
                let token = self.next_token;
                *asking = Some((token, peer));
                Action::Send {
                    token,
                    peer,
                    ask: Ask::Manifest,
                }
            }
            Stage::Chunks { per_request, .. } => {
                let per_request = *per_request;
                if let Some((peer, batch)) = self.next_batch(now, rates, per_request) {
                    let n = self.inflight.entry(peer).or_default();
                    self.busy.sent(peer, *n, now);
                    *n += 1;
                    let token = self.token();
                    self.requests.insert(token, (peer, batch.clone()));
                    return Action::Send {
                        token,
                        peer,
                        ask: Ask::Chunks(batch),
                    };
                }
                let wake = if self.queue.is_empty() {
                    None
                } else {
                    let usable: Vec<&P> = self
                        .holders
                        .iter()
                        .filter(|p| !self.tally.exhausted(p))
                        .collect();
                    self.backoff.next_ready(usable, now)
                };
                if self.requests.is_empty() {
                    if self.queue.is_empty() {
                        return self.end(Ok(()));
                    }
                    if wake.is_none() {
                        let missing = self.queue.len();
                        let id = self.id;
                        return self.end(Err(FetchError::NoHolder { id, missing }));
                    }
                }
                Action::Wait {
                    until: wake.map_or(deadline, |w| w.min(deadline)),
                }
            }
            Stage::Done => Action::Done,
        }
    }

    /// True if `peer` has refused chunk `c`.
    fn refused(&self, c: &ChunkId, peer: &P) -> bool {
        self.refused.get(c).is_some_and(|r| r.contains(peer))
    }

    /// The next request to send, if some holder has room: to the holder expected to deliver
    /// first ([`Rates::pick`]), at most `per_request` chunks it has not refused.
    fn next_batch(
        &mut self,
        now: Duration,
        rates: &Rates<P>,
        per_request: usize,
    ) -> Option<(P, Vec<ChunkId>)> {
        let front = *self.queue.front()?;
        let usable: Vec<P> = self
            .holders
            .iter()
            .copied()
            .filter(|p| {
                !self.tally.exhausted(p) && self.backoff.ready(p, now) && !self.refused(&front, p)
            })
            .collect();
        // Relayed holders only when no direct one may take the front chunk, even a busy one.
        let usable: Vec<P> = if usable.iter().any(|p| !self.relayed.contains(p)) {
            usable
                .into_iter()
                .filter(|p| !self.relayed.contains(p))
                .collect()
        } else {
            usable
        };
        // The holders that could take the front chunk now, busy with requests or not: a
        // slow holder is skipped only while a faster one of these is left.
        let candidates: Vec<(P, usize)> = usable
            .iter()
            .map(|p| (*p, self.inflight.get(p).copied().unwrap_or(0)))
            .filter(|(_, n)| *n < self.limits.per_peer_inflight)
            .collect();
        let peer = rates.pick(candidates, usable)?;
        let (mut batch, mut skipped) = (Vec::new(), Vec::new());
        while batch.len() < per_request {
            match self.queue.pop_front() {
                Some(c) if self.refused(&c, &peer) => skipped.push(c),
                // Already in this batch: a request names each chunk once.
                Some(c) if batch.contains(&c) => {}
                Some(c) => batch.push(c),
                None => break,
            }
        }
        self.queue.extend(skipped);
        Some((peer, batch))
    }

    /// The answer to manifest request `token`, at `now`.
    pub fn manifest_answered(&mut self, token: u64, answer: ManifestAnswer, now: Duration) {
        let Stage::Manifest { again, asking, .. } = &mut self.stage else {
            return;
        };
        let Some((_, peer)) = asking.take_if(|(t, _)| *t == token) else {
            return;
        };
        match answer {
            ManifestAnswer::Valid {
                chunk_size,
                chunks,
                missing,
            } => {
                self.tally.forgive(peer);
                self.start_chunks(chunk_size, chunks, missing);
            }
            ManifestAnswer::Busy => {
                self.backoff.busy(peer, now);
                again.push(peer);
            }
            ManifestAnswer::NotHeld => {}
            ManifestAnswer::Invalid | ManifestAnswer::Unexpected => self.tally.charge(peer, 1),
            ManifestAnswer::Layout {
                expected,
                got,
                detail,
            } => {
                self.tally.charge(peer, LAYOUT_CHARGES);
                let id = self.id;
                self.end(Err(FetchError::Layout {
                    id,
                    expected,
                    got,
                    detail,
                }));
            }
            ManifestAnswer::Failed { timeout } => self.tally.charge(peer, failure_charges(timeout)),
            ManifestAnswer::Lost => {}
            ManifestAnswer::Stopped => {
                let id = self.id;
                self.end(Err(FetchError::NoManifest(id)));
            }
        }
    }

    /// The answer to chunk request `token`, at `now`; `rates` learn how fast its peer
    /// delivered.
    pub fn chunks_answered(
        &mut self,
        token: u64,
        answer: ChunksAnswer,
        now: Duration,
        rates: &Rates<P>,
    ) {
        if !matches!(self.stage, Stage::Chunks { .. }) {
            return;
        }
        let Some((peer, batch)) = self.requests.remove(&token) else {
            return;
        };
        let left = self.inflight.get_mut(&peer).map_or(0, |n| {
            *n = n.saturating_sub(1);
            *n
        });
        let busy_for = self.busy.ended(peer, left, now);
        match answer {
            ChunksAnswer::Replies(replies) if replies.len() == batch.len() => {
                self.backoff.served(&peer);
                let mut good = true;
                // Only verified chunks count toward the peer's rate: garbage sent fast must
                // not make a holder look fast.
                let mut delivered = 0u64;
                for (chunk, reply) in batch.into_iter().zip(replies) {
                    match reply {
                        ChunkOutcome::Stored(len) => {
                            self.got.chunks_fetched += 1;
                            self.got.bytes += len;
                            delivered += len;
                            *self.got.sources.entry(peer).or_default() += 1;
                        }
                        ChunkOutcome::Corrupt => {
                            good = false;
                            self.refused.entry(chunk).or_default().insert(peer);
                            self.queue.push_back(chunk);
                        }
                        ChunkOutcome::NotHeld => {
                            self.refused.entry(chunk).or_default().insert(peer);
                            self.queue.push_back(chunk);
                        }
                        ChunkOutcome::OverBudget => self.queue.push_back(chunk),
                    }
                }
                if let Some(t) = busy_for {
                    rates.record(peer, delivered, t);
                }
                // Good answers are forgiven once per fetch (when it completes), not once
                // each: a peer serving a many-chunk model it knows will be refused must not
                // earn back more than the refusal costs it. A response with corrupt chunks
                // costs one charge, however many there were.
                if !good {
                    self.tally.charge(peer, 1);
                }
            }
            ChunksAnswer::Busy => {
                // Honest: not charged. Another holder takes these chunks, or this one after
                // its backoff.
                self.backoff.busy(peer, now);
                for chunk in batch.into_iter().rev() {
                    self.queue.push_front(chunk);
                }
            }
            // A reply count other than the request's, or an answer of another kind.
            ChunksAnswer::Replies(_) | ChunksAnswer::Unexpected => {
                self.tally.charge(peer, 1);
                self.queue.extend(batch);
            }
            ChunksAnswer::Stopped => {
                let in_flight: usize = self.requests.values().map(|(_, b)| b.len()).sum();
                let missing = self.queue.len() + batch.len() + in_flight;
                let id = self.id;
                self.end(Err(FetchError::NoHolder { id, missing }));
                return;
            }
            ChunksAnswer::Failed { .. } | ChunksAnswer::Lost => {
                // Ask another usable holder for these chunks, or this one again if no other
                // is left. A lost connection is not charged.
                if let ChunksAnswer::Failed { timeout } = answer {
                    self.tally.charge(peer, failure_charges(timeout));
                }
                for chunk in &batch {
                    let elsewhere = self
                        .holders
                        .iter()
                        .any(|p| *p != peer && !self.tally.exhausted(p) && !self.refused(chunk, p));
                    if elsewhere {
                        self.refused.entry(*chunk).or_default().insert(peer);
                    }
                }
                self.queue.extend(batch);
            }
        }
        // A chunk every usable holder refused can never arrive.
        let stuck = self.queue.iter().any(|c| {
            self.holders
                .iter()
                .filter(|p| !self.tally.exhausted(p))
                .all(|p| self.refused(c, p))
        });
        if stuck {
            let missing = self.queue.len();
            let id = self.id;
            self.end(Err(FetchError::NoHolder { id, missing }));
        }
    }

    /// The charges and pardons so far (the driver reports them even for a fetch cut short).
    pub fn tally(&self) -> &Tally<P> {
        &self.tally
    }

    /// The fetch's result once [`Action::Done`] was returned (`None` before), and its
    /// ledger. `assembled`: the driver put the chunks together into our model; only then
    /// is every peer that served chunks forgiven once. A fetch that got every chunk but did
    /// not assemble is [`FetchError::Assemble`].
    pub fn finish(
        mut self,
        assembled: Result<(), String>,
    ) -> (Option<Result<Got<P>, FetchError>>, Tally<P>) {
        let result = match self.result.take() {
            None => None,
            Some(Err(e)) => Some(Err(e)),
            Some(Ok(())) => match assembled {
                Ok(()) => {
                    let sources: Vec<P> = self.got.sources.keys().copied().collect();
                    for peer in sources {
                        self.tally.forgive(peer);
                    }
                    Some(Ok(self.got))
                }
                Err(e) => Some(Err(FetchError::Assemble(e))),
            },
        };
        (result, self.tally)
    }

    /// True once the fetch got every chunk (before assembling).
    pub fn complete(&self) -> bool {
        matches!(self.result, Some(Ok(())))
    }
}

/// Charges for a failed request.
fn failure_charges(timeout: bool) -> u32 {
    if timeout { TIMEOUT_CHARGES } else { 1 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::averaging::budgets::{Entry, ErrorBudgets};

    const MS: Duration = Duration::from_millis(1);

    fn chunk(i: u32) -> ChunkId {
        ChunkId::of(&i.to_le_bytes())
    }

    fn limits() -> FetchLimits {
        FetchLimits {
            per_peer_inflight: 2,
            deadline: Duration::from_secs(10),
        }
    }

    fn fetch(holders: &[u32]) -> Fetch<u32> {
        Fetch::new(
            ManifestId::of(b"m"),
            holders.to_vec(),
            limits(),
            Tally::new(ErrorBudgets::new(8)),
            Duration::ZERO,
        )
    }

    /// A fetch past its manifest, with `n` chunks missing, all of 100 bytes.
    fn chunks_fetch(holders: &[u32], n: u32) -> Fetch<u32> {
        chunks_fetch_with(holders, n, 2)
    }

    /// The same with `inflight` requests in flight per holder.
    fn chunks_fetch_with(holders: &[u32], n: u32, inflight: usize) -> Fetch<u32> {
        let mut f = fetch(holders);
        f.limits.per_peer_inflight = inflight;
        f.manifest_held(100, n as usize, (0..n).map(chunk).collect());
        f
    }

    /// Polls until `Wait` or `Done`, returning the requests sent.
    fn sends(f: &mut Fetch<u32>, now: Duration, rates: &Rates<u32>) -> Vec<(u64, u32, Ask)> {
        let mut out = Vec::new();
        loop {
            match f.poll(now, rates) {
                Action::Send { token, peer, ask } => out.push((token, peer, ask)),
                Action::Wait { .. } | Action::Done => return out,
            }
        }
    }

    fn charges(f: &Fetch<u32>) -> Vec<Entry<u32>> {
        f.tally().ledger().entries().to_vec()
    }

    fn stored(n: usize) -> ChunksAnswer {
        ChunksAnswer::Replies(vec![ChunkOutcome::Stored(100); n])
    }

    #[test]
    fn a_busy_peer_is_left_alone_for_a_growing_backoff_until_it_serves() {
        let t0 = Duration::from_secs(1);
        let (a, b) = (1u32, 2u32);
        let mut backoff = Backoff::default();
        assert!(backoff.ready(&a, t0));
        assert_eq!(backoff.next_ready([&a, &b], t0), None);
        assert_eq!(backoff.busy(a, t0), Duration::from_millis(100));
        assert!(!backoff.ready(&a, t0) && backoff.ready(&b, t0));
        assert_eq!(
            backoff.next_ready([&a, &b], t0),
            Some(t0 + Duration::from_millis(100))
        );
        // Not among the peers asked about: no wake-up for it.
        assert_eq!(backoff.next_ready([&b], t0), None);
        let t1 = t0 + Duration::from_millis(100);
        assert!(backoff.ready(&a, t1));
        assert_eq!(backoff.next_ready([&a], t1), None);
        assert_eq!(backoff.busy(a, t1), Duration::from_millis(200));
        // Answers to requests sent before the backoff began do not lengthen it.
        assert_eq!(backoff.busy(a, t1), Duration::from_millis(200));
        let t2 = t1 + Duration::from_millis(150);
        assert_eq!(backoff.busy(a, t2), Duration::from_millis(50));
        // Refused again once the backoff ended: it doubles.
        let t3 = t1 + Duration::from_millis(200);
        assert_eq!(backoff.busy(a, t3), Duration::from_millis(400));
        assert!(!backoff.ready(&a, t3 + Duration::from_millis(399)));
        backoff.served(&a);
        assert!(backoff.ready(&a, t1));
        assert_eq!(backoff.busy(a, t1), Duration::from_millis(100));
    }

    /// Holders are asked for the manifest one at a time, in order; each kind of bad answer
    /// costs what the module says and the next holder is asked; a good one is forgiven.
    #[test]
    fn manifest_answers_are_charged_and_the_next_holder_asked() {
        let rates = Rates::new();
        let mut f = fetch(&[1, 2, 3, 4, 5, 6]);
        let answers = [
            ManifestAnswer::NotHeld,
            ManifestAnswer::Invalid,
            ManifestAnswer::Unexpected,
            ManifestAnswer::Failed { timeout: true },
            ManifestAnswer::Failed { timeout: false },
        ];
        for (i, answer) in answers.into_iter().enumerate() {
            let sent = sends(&mut f, MS, &rates);
            assert_eq!(sent.len(), 1, "one manifest request at a time");
            let (token, peer, ask) = sent[0].clone();
            assert_eq!((peer, ask), (i as u32 + 1, Ask::Manifest));
            f.manifest_answered(token, answer, MS);
        }
        let (token, peer, _) = sends(&mut f, MS, &rates)[0].clone();
        assert_eq!(peer, 6);
        f.manifest_answered(
            token,
            ManifestAnswer::Valid {
                chunk_size: 100,
                chunks: 3,
                missing: vec![chunk(0)],
            },
            MS,
        );
        assert_eq!(
            charges(&f),
            vec![
                Entry::Charge(2, 1),
                Entry::Charge(3, 1),
                Entry::Charge(4, TIMEOUT_CHARGES),
                Entry::Charge(5, 1),
                Entry::Forgive(6),
            ]
        );
        assert!(matches!(f.stage, Stage::Chunks { .. }));
        assert_eq!(f.got.chunks_reused, 2, "3 chunks, 1 missing");
        // An answer to a request not in flight changes nothing.
        f.manifest_answered(99, ManifestAnswer::Invalid, MS);
        assert_eq!(charges(&f).len(), 5);
    }

    #[test]
    fn no_manifest_from_any_holder_ends_the_fetch() {
        let rates = Rates::new();
        let mut f = fetch(&[1, 2]);
        for _ in 0..2 {
            let (token, _, _) = sends(&mut f, MS, &rates)[0].clone();
            f.manifest_answered(token, ManifestAnswer::NotHeld, MS);
        }
        assert_eq!(f.poll(MS, &rates), Action::Done);
        let (result, tally) = f.finish(Ok(()));
        assert!(matches!(result, Some(Err(FetchError::NoManifest(_)))));
        assert!(
            tally.ledger().entries().is_empty(),
            "not holding is no fault"
        );
    }

    #[test]
    fn a_manifest_of_another_layout_ends_the_fetch_and_costs_its_peer() {
        let rates = Rates::new();
        let mut f = fetch(&[1, 2]);
        let (token, _, _) = sends(&mut f, MS, &rates)[0].clone();
        f.manifest_answered(
            token,
            ManifestAnswer::Layout {
                expected: 10,
                got: 20,
                detail: "other".into(),
            },
            MS,
        );
        assert_eq!(f.poll(MS, &rates), Action::Done);
        assert_eq!(charges(&f), vec![Entry::Charge(1, LAYOUT_CHARGES)]);
        let (result, _) = f.finish(Ok(()));
        assert!(matches!(
            result,
            Some(Err(FetchError::Layout {
                expected: 10,
                got: 20,
                ..
            }))
        ));
    }

    #[test]
    fn a_stopped_network_or_the_deadline_ends_the_fetch() {
        let rates = Rates::new();
        let mut f = fetch(&[1, 2]);
        let (token, _, _) = sends(&mut f, MS, &rates)[0].clone();
        f.manifest_answered(token, ManifestAnswer::Stopped, MS);
        assert!(matches!(
            f.finish(Ok(())).0,
            Some(Err(FetchError::NoManifest(_)))
        ));

        let mut f = chunks_fetch(&[1], 4);
        assert_eq!(sends(&mut f, MS, &rates).len(), 2);
        assert_eq!(
            f.poll(MS, &rates),
            Action::Wait {
                until: limits().deadline
            }
        );
        assert_eq!(f.poll(limits().deadline, &rates), Action::Done);
        assert!(matches!(
            f.finish(Ok(())).0,
            Some(Err(FetchError::Deadline(_)))
        ));

        let mut f = chunks_fetch(&[1], 2);
        let sent = sends(&mut f, MS, &rates);
        assert_eq!(sent.len(), 2, "{sent:?}");
        f.chunks_answered(sent[0].0, ChunksAnswer::Stopped, MS, &rates);
        assert!(matches!(
            f.finish(Ok(())).0,
            Some(Err(FetchError::NoHolder { missing: 2, .. }))
        ));
    }

    /// While the first holder backs off after `Busy`, the next one in order is asked; a
    /// manifest `Busy` does not hold back that holder's chunks.
    #[test]
    fn a_busy_first_holder_does_not_hold_up_the_next() {
        let rates = Rates::new();
        let mut f = fetch(&[1, 2]);
        let (t1, p1, _) = sends(&mut f, MS, &rates)[0].clone();
        assert_eq!(p1, 1);
        f.manifest_answered(t1, ManifestAnswer::Busy, MS);
        let (t2, p2, _) = sends(&mut f, MS, &rates)[0].clone();
        assert_eq!(p2, 2, "asked while holder 1 backs off");
        f.manifest_answered(
            t2,
            ManifestAnswer::Valid {
                chunk_size: 100,
                chunks: 4,
                missing: (0..4).map(chunk).collect(),
            },
            MS,
        );
        let mut peers: Vec<u32> = sends(&mut f, MS * 2, &rates)
            .iter()
            .map(|(_, p, _)| *p)
            .collect();
        peers.sort();
        assert_eq!(peers, vec![1, 1, 2, 2], "holder 1 gets chunks at once");
    }

    /// A busy holder is not charged, is left alone for its backoff, and is asked again
    /// after it, for the manifest and for chunks.
    #[test]
    fn busy_holders_are_asked_again_after_their_backoff() {
        let rates = Rates::new();
        let mut f = fetch(&[1]);
        let (token, _, _) = sends(&mut f, MS, &rates)[0].clone();
        f.manifest_answered(token, ManifestAnswer::Busy, MS);
        assert_eq!(f.poll(MS, &rates), Action::Wait { until: MS * 101 });
        let sent = sends(&mut f, MS * 101, &rates);
        assert_eq!(sent.len(), 1);
        assert!(charges(&f).is_empty());

        let mut f = chunks_fetch(&[1, 2], 2);
        let sent = sends(&mut f, MS, &rates);
        assert_eq!(sent.len(), 2, "{sent:?}");
        let (t1, p1, _) = sent[0].clone();
        f.chunks_answered(t1, ChunksAnswer::Busy, MS, &rates);
        // Its chunk goes to the other holder, not back to the busy one.
        let again = sends(&mut f, MS * 2, &rates);
        assert_eq!(again.len(), 1);
        assert_ne!(again[0].1, p1);
        assert!(charges(&f).is_empty());
    }

    /// A response with corrupt chunks costs its peer one charge however many were corrupt;
    /// those chunks are asked of another holder, never of it again.
    #[test]
    fn corrupt_chunks_are_charged_once_per_response_and_fetched_elsewhere() {
        let rates = Rates::new();
        let mut f = chunks_fetch_with(&[1, 2], 3, 1);
        let mut sent = sends(&mut f, MS, &rates);
        sent.retain(|(_, p, _)| *p == 1);
        let (token, _, ask) = sent[0].clone();
        let Ask::Chunks(batch) = ask else {
            panic!("{ask:?}")
        };
        let replies = vec![ChunkOutcome::Corrupt; batch.len()];
        f.chunks_answered(token, ChunksAnswer::Replies(replies), MS, &rates);
        assert_eq!(charges(&f), vec![Entry::Charge(1, 1)]);
        for c in &batch {
            assert!(f.refused(c, &1));
        }
    }

    #[test]
    fn a_wrong_reply_count_or_kind_is_charged_and_the_chunks_asked_again() {
        let rates = Rates::new();
        let mut f = chunks_fetch_with(&[1], 2, 1);
        let (token, _, _) = sends(&mut f, MS, &rates)[0].clone();
        let n = f.requests[&token].1.len();
        assert_eq!(n, 2, "one request for both chunks");
        f.chunks_answered(token, stored(n + 1), MS, &rates);
        assert_eq!(charges(&f), vec![Entry::Charge(1, 1)]);
        let (token, _, _) = sends(&mut f, MS, &rates)[0].clone();
        f.chunks_answered(token, ChunksAnswer::Unexpected, MS, &rates);
        assert_eq!(charges(&f).len(), 2);
        let (token, _, _) = sends(&mut f, MS, &rates)[0].clone();
        f.chunks_answered(token, stored(2), MS, &rates);
        assert_eq!(f.poll(MS, &rates), Action::Done);
        assert_eq!(f.finish(Ok(())).0.unwrap().unwrap().chunks_fetched, 2);
    }

    /// A chunk every usable holder refused can never arrive: the fetch gives up at once.
    #[test]
    fn a_chunk_no_holder_has_ends_the_fetch() {
        let rates = Rates::new();
        let mut f = chunks_fetch(&[1, 2], 1);
        let (t1, p1, _) = sends(&mut f, MS, &rates)[0].clone();
        f.chunks_answered(
            t1,
            ChunksAnswer::Replies(vec![ChunkOutcome::NotHeld]),
            MS,
            &rates,
        );
        let (t2, p2, _) = sends(&mut f, MS, &rates)[0].clone();
        assert_ne!(p1, p2);
        f.chunks_answered(
            t2,
            ChunksAnswer::Replies(vec![ChunkOutcome::NotHeld]),
            MS,
            &rates,
        );
        assert_eq!(f.poll(MS, &rates), Action::Done);
        assert!(charges(&f).is_empty(), "not holding a chunk is no fault");
        assert!(matches!(
            f.finish(Ok(())).0,
            Some(Err(FetchError::NoHolder { missing: 1, .. }))
        ));
    }

    /// A connection lost under a request (a relay cut the circuit) charges no one: the
    /// chunks go to another holder, and the manifest is asked of the next one.
    #[test]
    fn lost_connections_are_not_charged_and_the_fetch_goes_on_elsewhere() {
        let rates = Rates::new();
        let mut f = chunks_fetch(&[1, 2], 1);
        let (t1, p1, _) = sends(&mut f, MS, &rates)[0].clone();
        f.chunks_answered(t1, ChunksAnswer::Lost, MS, &rates);
        assert!(charges(&f).is_empty(), "{:?}", charges(&f));
        let (t2, p2, _) = sends(&mut f, MS, &rates)[0].clone();
        assert_ne!(p1, p2, "asked of the other holder");
        f.chunks_answered(t2, stored(1), MS, &rates);
        assert!(charges(&f).is_empty());

        let mut f = fetch(&[1, 2]);
        let (token, p1, _) = sends(&mut f, MS, &rates)[0].clone();
        f.manifest_answered(token, ManifestAnswer::Lost, MS);
        assert!(charges(&f).is_empty());
        let (_, p2, _) = sends(&mut f, MS, &rates)[0].clone();
        assert_ne!(p1, p2, "the next holder is asked for the manifest");
    }

    /// A holder reached only through a relay is asked for the manifest last and for chunks
    /// only while no direct holder may be: not while the direct one is merely busy with our
    /// requests, but once it refused the chunk or backs off after `Busy`.
    #[test]
    fn relayed_holders_are_asked_only_when_no_direct_one_may_be() {
        let rates = Rates::new();
        let (relayed, direct) = (1u32, 2u32);
        let mut f = fetch(&[relayed, direct]).relayed([relayed]);
        let asked: Vec<u32> = sends(&mut f, MS, &rates).iter().map(|s| s.1).collect();
        assert_eq!(
            asked,
            vec![direct],
            "the manifest is asked of the direct holder first"
        );

        // Eight chunks, two requests in flight per holder: only the direct one is asked,
        // and once its slots are full the rest wait for it.
        let mut f = fetch(&[relayed, direct]).relayed([relayed]);
        f.manifest_held(100, 8, (0..8).map(chunk).collect());
        let first = sends(&mut f, MS, &rates);
        assert_eq!(first.len(), 2, "{first:?}");
        assert!(first.iter().all(|(_, p, _)| *p == direct), "{first:?}");
        // The direct holder answers `Busy`: while it backs off the relayed one is asked.
        f.chunks_answered(first[0].0, ChunksAnswer::Busy, MS, &rates);
        let next = sends(&mut f, MS, &rates);
        assert!(
            !next.is_empty() && next.iter().all(|(_, p, _)| *p == relayed),
            "{next:?}"
        );

        // Without the relayed set both are asked, in preference order.
        let mut f = chunks_fetch(&[relayed, direct], 8);
        let peers: BTreeSet<u32> = sends(&mut f, MS, &rates).iter().map(|s| s.1).collect();
        assert_eq!(peers, BTreeSet::from([relayed, direct]));
    }

    /// A failed request is charged and its chunks go to another holder; the holder is
    /// asked again only when no other is left.
    #[test]
    fn failed_requests_are_charged_and_their_chunks_asked_elsewhere() {
        let rates = Rates::new();
        let mut f = chunks_fetch(&[1, 2], 1);
        let (t1, p1, _) = sends(&mut f, MS, &rates)[0].clone();
        f.chunks_answered(t1, ChunksAnswer::Failed { timeout: true }, MS, &rates);
        assert_eq!(charges(&f), vec![Entry::Charge(p1, TIMEOUT_CHARGES)]);
        let (t2, p2, _) = sends(&mut f, MS, &rates)[0].clone();
        assert_ne!(p1, p2);
        f.chunks_answered(t2, ChunksAnswer::Failed { timeout: false }, MS, &rates);
        assert_eq!(
            charges(&f),
            vec![Entry::Charge(p1, TIMEOUT_CHARGES), Entry::Charge(p2, 1)]
        );
        // The first refused it for failing; no other holder is left: the second is asked
        // again.
        let (t3, p3, _) = sends(&mut f, MS, &rates)[0].clone();
        assert_eq!(p3, p2);
        f.chunks_answered(t3, stored(1), MS, &rates);
        assert_eq!(f.poll(MS, &rates), Action::Done);
    }

    /// Chunks are spread over the holders within the in-flight limit; the peers that served
    /// them are forgiven once each, and only if the model assembled.
    #[test]
    fn a_complete_fetch_forgives_its_sources_once_if_it_assembled() {
        let rates = Rates::new();
        let run = |assembled: Result<(), String>| {
            let mut f = chunks_fetch(&[1, 2], 8);
            let sent = sends(&mut f, MS, &rates);
            assert_eq!(sent.len(), 4, "two requests in flight per holder");
            let mut peers: Vec<u32> = sent.iter().map(|(_, p, _)| *p).collect();
            peers.sort();
            assert_eq!(peers, vec![1, 1, 2, 2]);
            for (token, _, ask) in sent {
                let Ask::Chunks(batch) = ask else {
                    panic!("{ask:?}")
                };
                f.chunks_answered(token, stored(batch.len()), MS * 5, &rates);
            }
            assert_eq!(f.poll(MS * 5, &rates), Action::Done);
            f.finish(assembled)
        };
        let (got, tally) = run(Ok(()));
        let got = got.unwrap().unwrap();
        assert_eq!((got.chunks_fetched, got.bytes), (8, 800));
        assert_eq!(got.sources.values().sum::<usize>(), 8);
        assert_eq!(
            tally.ledger().entries(),
            &[Entry::Forgive(1), Entry::Forgive(2)]
        );
        assert!(rates.rate(&1).is_some(), "answers measure the holder");
        let (got, tally) = run(Err("bad".into()));
        assert!(matches!(got, Some(Err(FetchError::Assemble(_)))));
        assert!(tally.ledger().entries().is_empty());
    }

    #[test]
    fn holders_over_budget_are_not_asked() {
        let rates = Rates::new();
        let mut budgets = ErrorBudgets::new(2);
        budgets.charge(1u32, 2);
        let mut f = Fetch::new(
            ManifestId::of(b"m"),
            vec![1, 2],
            limits(),
            Tally::new(budgets),
            Duration::ZERO,
        );
        let sent = sends(&mut f, MS, &rates);
        assert_eq!(sent[0].1, 2);
    }
}
