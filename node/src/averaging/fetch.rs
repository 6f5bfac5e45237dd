//! Fetching a model by its manifest id from the peers that hold it: the manifest first
//! (verified against its id), then only the chunks not already held, in parallel batches
//! spread over every holder, with a per-peer in-flight limit, a per-peer error budget and an
//! overall deadline. Every chunk is verified against its id before it is stored; a bad chunk
//! is charged to the peer that sent it and fetched again from another holder.

use crate::network::{Client, RequestError};
use crate::store::ChunkStore;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::PeerId;
use murmur_protocol::codec::decode_manifest;
use murmur_protocol::limits::{MAX_CHUNK_RESPONSE_DATA, MAX_CHUNKS_PER_REQUEST};
use murmur_protocol::{ChunkId, ChunkReply, FlatParams, Manifest, ManifestId, Request, Response};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Limits of one fetch.
#[derive(Debug, Clone, Copy)]
pub struct FetchLimits {
    /// Requests in flight to one peer (below request-response's per-connection stream cap).
    pub per_peer_inflight: usize,
    /// The whole fetch must finish within this.
    pub deadline: Duration,
}

/// Bad answers charged per peer, shared by every fetch of a node. A peer whose charges reach
/// the budget is avoided; each good answer forgives one charge, so a peer that was only slow
/// for a while comes back.
#[derive(Debug, Clone)]
pub struct ErrorBudgets {
    budget: u32,
    charges: Arc<Mutex<HashMap<PeerId, u32>>>,
}

impl ErrorBudgets {
    /// Budgets of `budget` bad answers per peer.
    pub fn new(budget: u32) -> Self {
        Self {
            budget: budget.max(1),
            charges: Arc::default(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<PeerId, u32>) -> T) -> T {
        f(&mut self.charges.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Records a bad answer from `peer`.
    pub fn charge(&self, peer: PeerId) {
        self.with(|c| *c.entry(peer).or_default() += 1);
    }

    /// Records a good answer from `peer`.
    pub fn forgive(&self, peer: PeerId) {
        self.with(|c| {
            if let Some(n) = c.get_mut(&peer) {
                *n = n.saturating_sub(1);
            }
        });
    }

    /// True when `peer` should be avoided.
    pub fn exhausted(&self, peer: &PeerId) -> bool {
        self.with(|c| c.get(peer).is_some_and(|&n| n >= self.budget))
    }

    /// Charges per peer, for status pages.
    pub fn snapshot(&self) -> Vec<(PeerId, u32)> {
        self.with(|c| c.iter().map(|(p, n)| (*p, *n)).collect())
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
}

/// Fetches `id` from `holders` (in preference order) into `store` and returns the weights.
pub async fn fetch(
    client: &Client,
    store: &ChunkStore,
    id: ManifestId,
    holders: &[PeerId],
    budgets: &ErrorBudgets,
    limits: FetchLimits,
) -> Result<Fetched, FetchError> {
    tokio::time::timeout(
        limits.deadline,
        fetch_inner(client, store, id, holders, budgets, limits),
    )
    .await
    .unwrap_or(Err(FetchError::Deadline(id)))
}

async fn fetch_manifest(
    client: &Client,
    store: &ChunkStore,
    id: ManifestId,
    holders: &[PeerId],
    budgets: &ErrorBudgets,
) -> Result<Manifest, FetchError> {
    if let Some((manifest, _)) = store.manifest(&id) {
        return Ok(manifest);
    }
    for &peer in holders.iter().filter(|p| !budgets.exhausted(p)) {
        match client.request(peer, Request::Manifest(id)).await {
            Ok(Response::Manifest(Some(bytes))) => match decode_manifest(&bytes, &id) {
                Ok(manifest) => {
                    budgets.forgive(peer);
                    store.insert_manifest(id, manifest.clone(), bytes);
                    return Ok(manifest);
                }
                Err(e) => {
                    tracing::warn!(%peer, "bad manifest {}: {e}", id.short());
                    budgets.charge(peer);
                }
            },
            Ok(Response::Manifest(None) | Response::Busy) => {}
            Ok(other) => {
                tracing::warn!(%peer, "answered a manifest request with {other:?}");
                budgets.charge(peer);
            }
            Err(RequestError::Stopped) => break,
            Err(e) => {
                tracing::debug!("{e}");
                budgets.charge(peer);
            }
        }
    }
    Err(FetchError::NoManifest(id))
}

async fn fetch_inner(
    client: &Client,
    store: &ChunkStore,
    id: ManifestId,
    holders: &[PeerId],
    budgets: &ErrorBudgets,
    limits: FetchLimits,
) -> Result<Fetched, FetchError> {
    let manifest = fetch_manifest(client, store, id, holders, budgets).await?;
    let missing = store.missing(&manifest);
    let reused = manifest.chunks.len() - missing.len();
    // Enough requests to keep every holder's in-flight slots busy, each within one response.
    let by_budget = (MAX_CHUNK_RESPONSE_DATA / manifest.chunk_size.max(1) as usize)
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

    loop {
        // Hand out batches while some holder has room.
        while !queue.is_empty() {
            let Some(peer) = holders
                .iter()
                .filter(|p| !budgets.exhausted(p))
                .filter(|p| inflight.get(*p).copied().unwrap_or(0) < limits.per_peer_inflight)
                .filter(|p| {
                    queue
                        .front()
                        .is_some_and(|c| !refused.get(c).is_some_and(|r| r.contains(*p)))
                })
                .min_by_key(|p| inflight.get(*p).copied().unwrap_or(0))
                .copied()
            else {
                break;
            };
            let (mut batch, mut skipped) = (Vec::new(), Vec::new());
            while batch.len() < per_request {
                match queue.pop_front() {
                    Some(c) if refused.get(&c).is_some_and(|r| r.contains(&peer)) => {
                        skipped.push(c)
                    }
                    Some(c) => batch.push(c),
                    None => break,
                }
            }
            queue.extend(skipped);
            *inflight.entry(peer).or_default() += 1;
            let client = client.clone();
            requests.push(async move {
                let result = client.request(peer, Request::Chunks(batch.clone())).await;
                (peer, batch, result)
            });
        }
        let Some((peer, batch, result)) = requests.next().await else {
            if queue.is_empty() {
                break;
            }
            return Err(FetchError::NoHolder {
                id,
                missing: queue.len(),
            });
        };
        if let Some(n) = inflight.get_mut(&peer) {
            *n = n.saturating_sub(1);
        }
        match result {
            Ok(Response::Chunks(replies)) if replies.len() == batch.len() => {
                let mut good = true;
                for (chunk, reply) in batch.into_iter().zip(replies) {
                    match reply {
                        ChunkReply::Data(data) => {
                            let len = data.len() as u64;
                            match store.insert_chunk(chunk, data) {
                                Ok(_) => {
                                    fetched += 1;
                                    bytes += len;
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
                if good {
                    budgets.forgive(peer);
                } else {
                    budgets.charge(peer);
                }
            }
            Ok(Response::Busy) => queue.extend(batch),
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
                tracing::debug!("{e}");
                budgets.charge(peer);
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
    let params = store
        .assemble(&id)
        .map_err(|e| FetchError::Assemble(e.to_string()))?;
    Ok(Fetched {
        params,
        chunks_fetched: fetched,
        chunks_reused: reused,
        bytes,
        sources,
    })
}
