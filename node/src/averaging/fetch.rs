//! Fetching a model by its manifest id from the peers that hold it: the manifest first
//! (verified against its id, validated, and refused unless its layout is our own model's, so
//! its length and chunk count are ours too), then only the chunks not already held, in
//! parallel batches spread over every holder, with a per-peer in-flight limit, a per-peer
//! error budget and an overall deadline. Every chunk is verified against its id before it is
//! stored; a bad chunk is charged to the peer that sent it and fetched again from another
//! holder. A request that fails or times out (the network's request timeout, shorter than the
//! deadline) is charged to its peer and its chunks are asked of another holder when one is
//! left.
//!
//! Each batch goes to the holder expected to deliver it first ([`Rates::pick`]: its
//! requests in flight over its measured delivery rate), so faster holders carry more of a
//! fetch; every answer updates the holder's rate in the node's [`Rates`].
//!
//! A `Busy` answer is honest (the holder is at its serving limits): it is never charged. The
//! peer is left alone for a backoff ([`crate::network::limits::busy_backoff`], 100 ms doubling
//! to 2 s while it stays busy) and its chunks go to another holder, or back to it once the
//! backoff ends. Requests are sized to the holders' response cap
//! ([`MAX_SERVED_CHUNK_DATA`]) and never name a chunk twice: replies match the request's ids
//! one to one, in order.

pub use super::budgets::ErrorBudgets;
use super::rates::Busy;
pub use super::rates::Rates;
use crate::network::limits::{MAX_SERVED_CHUNK_DATA, busy_backoff};
use crate::network::{Client, RequestError};
use crate::store::ChunkStore;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::PeerId;
use murmur_protocol::codec::decode_manifest;
use murmur_protocol::limits::MAX_CHUNKS_PER_REQUEST;
use murmur_protocol::tensor::Layout;
use murmur_protocol::{
    ChunkId, ChunkReply, DecodeError, FlatParams, Manifest, ManifestId, Request, Response,
};
use std::collections::{HashMap, HashSet, VecDeque};

use std::time::{Duration, Instant};

/// Limits of one fetch.
#[derive(Debug, Clone, Copy)]
pub struct FetchLimits {
    /// Requests in flight to one peer (below request-response's per-connection stream cap).
    pub per_peer_inflight: usize,
    /// The whole fetch must finish within this.
    pub deadline: Duration,
}

/// Charges for a request that timed out: a peer that takes requests and never answers holds
/// up every averaging that picks it for a whole request timeout, so it costs more than a
/// request that failed at once.
pub const TIMEOUT_CHARGES: u32 = 2;

/// Charges for a manifest whose layout is not ours (a model of another shape, or one that
/// repeats chunk ids): as many as a model the training thread refuses
/// (`node::REJECTED_MODEL_CHARGES`), since it is one. With a single charge, fading at one
/// per 10 s, a peer announcing such manifests was never blocked (the attack matrix's
/// `dup-chunks` kept all its links).
pub const LAYOUT_CHARGES: u32 = 4;

/// Charges `peer` for a failed request: [`TIMEOUT_CHARGES`] for a timeout, one otherwise.
fn charge_failure(budgets: &ErrorBudgets, peer: PeerId, error: &RequestError) {
    let n = match error {
        RequestError::Timeout { .. } => TIMEOUT_CHARGES,
        _ => 1,
    };
    for _ in 0..n {
        budgets.charge(peer);
    }
}

/// Peers that answered `Busy`, and when each may be asked again. Pure: the time is an
/// argument.
#[derive(Debug, Default)]
pub struct Backoff {
    peers: HashMap<PeerId, (u32, Instant)>,
}

impl Backoff {
    /// `peer` answered `Busy` at `now`: leave it alone for [`busy_backoff`] of its
    /// consecutive `Busy` answers. A `Busy` that arrives while a backoff is still running
    /// answers a request sent before it began and does not lengthen it: eight requests in
    /// flight, all answered `Busy`, are one refusal, not eight. Returns the wait.
    pub fn busy(&mut self, peer: PeerId, now: Instant) -> Duration {
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
    pub fn served(&mut self, peer: &PeerId) {
        self.peers.remove(peer);
    }

    /// True when `peer` may be asked at `now`.
    pub fn ready(&self, peer: &PeerId, now: Instant) -> bool {
        self.peers.get(peer).is_none_or(|(_, until)| *until <= now)
    }

    /// The earliest end of a backoff still running at `now`, among `peers`.
    pub fn next_ready<'a>(
        &self,
        peers: impl IntoIterator<Item = &'a PeerId>,
        now: Instant,
    ) -> Option<Instant> {
        peers
            .into_iter()
            .filter_map(|p| self.peers.get(p).map(|(_, until)| *until))
            .filter(|until| *until > now)
            .min()
    }
}

/// A fetched, verified model.
#[derive(Debug)]
pub struct Fetched {
    pub params: FlatParams,
    pub chunks_fetched: usize,
    pub chunks_reused: usize,
    pub bytes: u64,
    /// Verified chunks received from each peer.
    pub sources: HashMap<PeerId, usize>,
}

/// Why a fetch gave up.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no holder of manifest {0} answered with a valid manifest")]
    NoManifest(ManifestId),
    #[error("no usable holder left for {missing} chunks of {id}")]
    NoHolder { id: ManifestId, missing: usize },
    #[error("fetch of {0} ran past its deadline")]
    Deadline(ManifestId),
    #[error("fetched model does not assemble: {0}")]
    Assemble(String),
    /// The manifest is valid but describes another model than ours; nothing was requested
    /// for it.
    #[error("manifest {id} describes {got} bytes of weights, our model has {expected}: {detail}")]
    Layout {
        id: ManifestId,
        /// Our model's size in the manifest's encoding.
        expected: u64,
        /// The manifest's encoded size (`total_len`).
        got: u64,
        /// The first difference found.
        detail: String,
    },
}

/// Refuses a manifest unless it is valid and its layout is `expected` (same tensors, names
/// and shapes in the same order). Its `total_len` and chunk count then follow from the
/// layout, so a fetch for it can never ask for more than our own model's chunks.
pub fn check_layout(
    id: ManifestId,
    manifest: &Manifest,
    expected: &Layout,
) -> Result<(), FetchError> {
    let refuse = |detail: String| FetchError::Layout {
        id,
        expected: expected.encoded_len(manifest.encoding),
        got: manifest.total_len,
        detail,
    };
    let layout = manifest
        .validate()
        .map_err(|e| refuse(format!("invalid manifest: {e}")))?;
    if layout == *expected {
        return Ok(());
    }
    let (ours, theirs) = (expected.tensors(), layout.tensors());
    let detail = match ours.iter().zip(theirs).find(|(a, b)| a != b) {
        Some((a, b)) => format!(
            "tensor {:?} {:?} where ours is {:?} {:?}",
            b.name, b.shape, a.name, a.shape
        ),
        None => format!("{} tensors where ours has {}", theirs.len(), ours.len()),
    };
    Err(refuse(detail))
}

/// Why a manifest served by a holder was refused.
#[derive(Debug)]
enum Refusal {
    /// Not the manifest asked for, or not a valid manifest: another holder may do better.
    Invalid(DecodeError),
    /// A valid manifest of another model: every holder serves the same bytes.
    Layout(FetchError),
}

/// Decodes (size, id, validity) and checks the layout of manifest bytes from a holder.
fn accept_manifest(bytes: &[u8], id: ManifestId, expected: &Layout) -> Result<Manifest, Refusal> {
    let manifest = decode_manifest(bytes, &id).map_err(Refusal::Invalid)?;
    check_layout(id, &manifest, expected).map_err(Refusal::Layout)?;
    Ok(manifest)
}

/// Fetches `id` from `holders` (in preference order) into `store` and returns the weights.
/// `expected` is our own model's layout: a manifest of any other layout is refused before a
/// chunk is requested, and charged to the holder that served it.
#[allow(clippy::too_many_arguments)]
pub async fn fetch(
    client: &Client,
    store: &ChunkStore,
    id: ManifestId,
    holders: &[PeerId],
    budgets: &ErrorBudgets,
    rates: &Rates,
    limits: FetchLimits,
    expected: &Layout,
) -> Result<Fetched, FetchError> {
    tokio::time::timeout(
        limits.deadline,
        fetch_inner(client, store, id, holders, expected, budgets, rates, limits),
    )
    .await
    .unwrap_or(Err(FetchError::Deadline(id)))
}

async fn fetch_manifest(
    client: &Client,
    store: &ChunkStore,
    id: ManifestId,
    holders: &[PeerId],
    expected: &Layout,
    budgets: &ErrorBudgets,
) -> Result<Manifest, FetchError> {
    if let Some((manifest, _)) = store.manifest(&id) {
        // Validated when it was stored; whether it is a model like ours is checked here, and
        // nobody is charged for it.
        check_layout(id, &manifest, expected)?;
        return Ok(manifest);
    }
    // Holders that answered `Busy` are asked again after their backoff (the fetch's
    // deadline bounds the waiting); nobody else is asked twice.
    let mut backoff = Backoff::default();
    let mut ask: Vec<PeerId> = holders.to_vec();
    while !ask.is_empty() {
        if let Some(wake) = backoff.next_ready(&ask, Instant::now()) {
            tokio::time::sleep_until(tokio::time::Instant::from_std(wake)).await;
        }
        let mut busy = Vec::new();
        for peer in std::mem::take(&mut ask) {
            if budgets.exhausted(&peer) {
                continue;
            }
            match client.request(peer, Request::Manifest(id)).await {
                Ok(Response::Busy) => {
                    backoff.busy(peer, Instant::now());
                    busy.push(peer);
                }
                Ok(Response::Manifest(Some(bytes))) => {
                    match accept_manifest(&bytes, id, expected) {
                        Ok(manifest) => {
                            budgets.forgive(peer);
                            store.insert_manifest(id, manifest.clone(), bytes);
                            return Ok(manifest);
                        }
                        Err(Refusal::Invalid(e)) => {
                            tracing::warn!(%peer, "bad manifest {}: {e}", id.short());
                            budgets.charge(peer);
                        }
                        Err(Refusal::Layout(e)) => {
                            // Every holder would serve these same bytes: stop here.
                            tracing::warn!(%peer, "{e}");
                            for _ in 0..LAYOUT_CHARGES {
                                budgets.charge(peer);
                            }
                            return Err(e);
                        }
                    }
                }
                Ok(Response::Manifest(None)) => {}
                Ok(other) => {
                    tracing::warn!(%peer, "answered a manifest request with {other:?}");
                    budgets.charge(peer);
                }
                Err(RequestError::Stopped) => return Err(FetchError::NoManifest(id)),
                Err(e) => {
                    tracing::debug!("{e}");
                    charge_failure(budgets, peer, &e);
                }
            }
        }
        ask = busy;
    }
    Err(FetchError::NoManifest(id))
}

#[allow(clippy::too_many_arguments)]
async fn fetch_inner(
    client: &Client,
    store: &ChunkStore,
    id: ManifestId,
    holders: &[PeerId],
    expected: &Layout,
    budgets: &ErrorBudgets,
    rates: &Rates,
    limits: FetchLimits,
) -> Result<Fetched, FetchError> {
    let manifest = fetch_manifest(client, store, id, holders, expected, budgets).await?;
    let missing = store.missing(&manifest);
    let reused = manifest.chunks.len() - missing.len();
    // Enough requests to keep every holder's in-flight slots busy, each within one response.
    let by_budget = (MAX_SERVED_CHUNK_DATA / manifest.chunk_size.max(1) as usize)
        .clamp(1, MAX_CHUNKS_PER_REQUEST);
    let slots = (limits.per_peer_inflight * holders.len()).max(1);
    let per_request = missing.len().div_ceil(slots).clamp(1, by_budget);
    let mut queue: VecDeque<ChunkId> = missing.iter().map(|(_, c)| *c).collect();
    // Peers that answered `NotHeld` or sent a bad copy of a chunk are not asked for it again.
    let mut refused: HashMap<ChunkId, HashSet<PeerId>> = HashMap::new();
    let mut inflight: HashMap<PeerId, usize> = HashMap::new();
    let mut requests = FuturesUnordered::new();
    let (mut fetched, mut bytes) = (0usize, 0u64);
    let mut sources: HashMap<PeerId, usize> = HashMap::new();
    let mut backoff = Backoff::default();
    let mut busy = Busy::default();

    loop {
        let now = Instant::now();
        // Hand out batches while some holder has room.
        while !queue.is_empty() {
            let candidates = holders
                .iter()
                .filter(|p| !budgets.exhausted(p) && backoff.ready(p, now))
                .filter(|p| inflight.get(*p).copied().unwrap_or(0) < limits.per_peer_inflight)
                .filter(|p| {
                    queue
                        .front()
                        .is_some_and(|c| !refused.get(c).is_some_and(|r| r.contains(*p)))
                })
                .map(|p| (*p, inflight.get(p).copied().unwrap_or(0)));
            // The holders that could take the front chunk now, busy with requests or not: a
            // slow holder is skipped only while a faster one of these is left.
            let usable = holders.iter().copied().filter(|p| {
                !budgets.exhausted(p)
                    && backoff.ready(p, now)
                    && queue
                        .front()
                        .is_some_and(|c| !refused.get(c).is_some_and(|r| r.contains(p)))
            });
            let Some(peer) = rates.pick(candidates, usable) else {
                break;
            };
            let (mut batch, mut skipped) = (Vec::new(), Vec::new());
            while batch.len() < per_request {
                match queue.pop_front() {
                    Some(c) if refused.get(&c).is_some_and(|r| r.contains(&peer)) => {
                        skipped.push(c)
                    }
                    // Already in this batch: a request names each chunk once.
                    Some(c) if batch.contains(&c) => {}
                    Some(c) => batch.push(c),
                    None => break,
                }
            }
            queue.extend(skipped);
            let n = inflight.entry(peer).or_default();
            busy.sent(peer, *n, now);
            *n += 1;
            let client = client.clone();
            requests.push(async move {
                let result = client.request(peer, Request::Chunks(batch.clone())).await;
                (peer, batch, result)
            });
        }
        // Wait for an answer, or for a busy holder's backoff to end if that comes first.
        let usable: Vec<&PeerId> = holders.iter().filter(|p| !budgets.exhausted(p)).collect();
        let wake = (!queue.is_empty())
            .then(|| backoff.next_ready(usable, now))
            .flatten()
            .map(tokio::time::Instant::from_std);
        let next = match (requests.is_empty(), wake) {
            (true, None) => None,
            (true, Some(wake)) => {
                tokio::time::sleep_until(wake).await;
                continue;
            }
            (false, None) => requests.next().await,
            (false, Some(wake)) => tokio::select! {
                next = requests.next() => next,
                _ = tokio::time::sleep_until(wake) => continue,
            },
        };
        let Some((peer, batch, result)) = next else {
            if queue.is_empty() {
                break;
            }
            return Err(FetchError::NoHolder {
                id,
                missing: queue.len(),
            });
        };
        let left = inflight.get_mut(&peer).map_or(0, |n| {
            *n = n.saturating_sub(1);
            *n
        });
        let busy_for = busy.ended(peer, left, Instant::now());
        match result {
            Ok(Response::Chunks(replies)) if replies.len() == batch.len() => {
                backoff.served(&peer);
                let mut good = true;
                // Only verified chunks count toward the peer's rate: garbage sent fast must
                // not make a holder look fast.
                let mut delivered = 0u64;
                for (chunk, reply) in batch.into_iter().zip(replies) {
                    match reply {
                        ChunkReply::Data(data) => {
                            let len = data.len() as u64;
                            match store.insert_chunk(chunk, data) {
                                Ok(_) => {
                                    fetched += 1;
                                    bytes += len;
                                    delivered += len;
                                    *sources.entry(peer).or_default() += 1;
                                }
                                Err(e) => {
                                    tracing::warn!(%peer, "corrupt chunk {}: {e}", chunk.short());
                                    good = false;
                                    refused.entry(chunk).or_default().insert(peer);
                                    queue.push_back(chunk);
                                }
                            }
                        }
                        ChunkReply::NotHeld => {
                            refused.entry(chunk).or_default().insert(peer);
                            queue.push_back(chunk);
                        }
                        ChunkReply::OverBudget => queue.push_back(chunk),
                    }
                }
                if let Some(t) = busy_for {
                    rates.record(peer, delivered, t);
                }
                // Good answers are forgiven once per fetch (below), not once each: a peer
                // serving a many-chunk model it knows will be refused must not earn back
                // more than the refusal costs it.
                if !good {
                    budgets.charge(peer);
                }
            }
            Ok(Response::Busy) => {
                // Honest: not charged. Another holder takes these chunks, or this one after
                // its backoff.
                let wait = backoff.busy(peer, Instant::now());
                tracing::debug!(%peer, ?wait, "busy; backing off");
                for chunk in batch.into_iter().rev() {
                    queue.push_front(chunk);
                }
            }
            Ok(other) => {
                tracing::warn!(%peer, "answered a chunk request with {} replies for {} ids or {other:?}", match &other { Response::Chunks(r) => r.len(), _ => 0 }, batch.len());
                budgets.charge(peer);
                queue.extend(batch);
            }
            Err(RequestError::Stopped) => {
                return Err(FetchError::NoHolder {
                    id,
                    missing: queue.len() + batch.len(),
                });
            }
            Err(e) => {
                // A failure or a timeout: ask another usable holder for these chunks, or this
                // one again if no other is left.
                tracing::debug!("{e}");
                charge_failure(budgets, peer, &e);
                for chunk in &batch {
                    let elsewhere = holders.iter().any(|p| {
                        *p != peer
                            && !budgets.exhausted(p)
                            && !refused.get(chunk).is_some_and(|r| r.contains(p))
                    });
                    if elsewhere {
                        refused.entry(*chunk).or_default().insert(peer);
                    }
                }
                queue.extend(batch);
            }
        }
        // A chunk every usable holder refused can never arrive.
        if let Some(stuck) = queue.iter().find(|c| {
            holders
                .iter()
                .filter(|p| !budgets.exhausted(p))
                .all(|p| refused.get(*c).is_some_and(|r| r.contains(p)))
        }) {
            tracing::debug!("no holder left for chunk {}", stuck.short());
            return Err(FetchError::NoHolder {
                id,
                missing: queue.len(),
            });
        }
    }
    let params = crate::cpu::on_comm_pool(|| store.assemble(&id))
        .map_err(|e| FetchError::Assemble(e.to_string()))?;
    for peer in sources.keys() {
        budgets.forgive(*peer);
    }
    Ok(Fetched {
        params,
        chunks_fetched: fetched,
        chunks_reused: reused,
        bytes,
        sources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use murmur_protocol::codec::encode_manifest;
    use murmur_protocol::{Snapshot, TensorSpec};

    /// Our model: `w` of `n` values and `b` of 4, cut into 64-byte chunks.
    fn snapshot(n: u64) -> Snapshot {
        let params = FlatParams::from_named(vec![
            (
                TensorSpec::f32("w", &[n]),
                (0..n).map(|i| i as f32).collect(),
            ),
            (TensorSpec::f32("b", &[4]), vec![-1.0, -2.0, -3.0, -4.0]),
        ])
        .unwrap();
        Snapshot::build(&params, 64).unwrap()
    }

    fn layout(s: &Snapshot) -> Layout {
        s.manifest.validate().unwrap()
    }

    #[test]
    fn a_busy_peer_is_left_alone_for_a_growing_backoff_until_it_serves() {
        let t0 = Instant::now();
        let (a, b) = (PeerId::random(), PeerId::random());
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

    #[test]
    fn a_manifest_of_our_layout_is_accepted() {
        let s = snapshot(64);
        check_layout(s.id, &s.manifest, &layout(&s)).unwrap();
        let m = accept_manifest(&s.manifest_bytes, s.id, &layout(&s)).unwrap();
        assert_eq!(m, s.manifest);
    }

    #[test]
    fn a_manifest_of_another_size_is_refused_naming_both_sizes() {
        let (ours, theirs) = (snapshot(64), snapshot(640));
        match check_layout(theirs.id, &theirs.manifest, &layout(&ours)) {
            Err(FetchError::Layout {
                id,
                expected,
                got,
                detail,
            }) => {
                assert_eq!((id, expected, got), (theirs.id, 272, 2576));
                assert!(detail.contains("[640]"), "{detail}");
            }
            other => panic!("expected a layout refusal, got {other:?}"),
        }
        let message = check_layout(theirs.id, &theirs.manifest, &layout(&ours))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("2576") && message.contains("272"),
            "{message}"
        );
        assert!(matches!(
            accept_manifest(&theirs.manifest_bytes, theirs.id, &layout(&ours)),
            Err(Refusal::Layout(FetchError::Layout { .. }))
        ));
    }

    #[test]
    fn a_manifest_of_our_size_but_other_tensors_is_refused() {
        let ours = snapshot(64);
        let mut other = ours.manifest.clone();
        other.tensors[1].name = "v".into();
        match check_layout(ours.id, &other, &layout(&ours)) {
            Err(FetchError::Layout {
                expected,
                got,
                detail,
                ..
            }) => {
                assert_eq!(expected, got);
                assert!(detail.contains("\"v\""), "{detail}");
            }
            other => panic!("expected a layout refusal, got {other:?}"),
        }
    }

    #[test]
    fn an_invalid_stored_manifest_is_refused() {
        let ours = snapshot(64);
        let mut other = ours.manifest.clone();
        other.total_len += 4;
        assert!(matches!(
            check_layout(ours.id, &other, &layout(&ours)),
            Err(FetchError::Layout { detail, .. }) if detail.starts_with("invalid manifest")
        ));
    }

    #[test]
    fn ten_thousand_chunks_for_a_small_model_are_refused() {
        let ours = snapshot(64);
        // A big model whose manifest is valid on its own: 10,000 distinct chunks.
        let mut big = ours.manifest.clone();
        big.tensors[1].shape = vec![10_000 * 16 - 4];
        big.total_len = 10_000 * 64;
        big.chunks = (0..10_000u32)
            .map(|i| ChunkId::of(&i.to_le_bytes()))
            .collect();
        let bytes = encode_manifest(&big).unwrap();
        let id = ManifestId::of(&bytes);
        assert!(matches!(
            accept_manifest(&bytes, id, &layout(&ours)),
            Err(Refusal::Layout(FetchError::Layout { got: 640_000, .. }))
        ));
    }

    /// A hostile `dup-chunks` manifest: one chunk id 10,000 times, a layout to match. It is
    /// valid as a manifest, and refused by the layout check before any chunk is fetched.
    #[test]
    fn ten_thousand_copies_of_one_chunk_are_refused_by_layout() {
        let ours = snapshot(64);
        let mut dup = ours.manifest.clone();
        dup.tensors[1].shape = vec![10_000 * 16 - 4];
        dup.total_len = 10_000 * 64;
        dup.chunks = vec![ours.manifest.chunks[0]; 10_000];
        let bytes = encode_manifest(&dup).unwrap();
        let id = ManifestId::of(&bytes);
        assert!(matches!(
            accept_manifest(&bytes, id, &layout(&ours)),
            Err(Refusal::Layout(FetchError::Layout { got: 640_000, .. }))
        ));
    }
}
