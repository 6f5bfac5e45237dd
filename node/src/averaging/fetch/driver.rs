//! The async driver of a fetch on a running node: carries out what the IO-less
//! [`Fetch`](super::state::Fetch) decides, over the network [`Client`] and into the
//! [`ChunkStore`], on the node's monotonic clock. It reads each answer into what the state
//! takes ([`read_manifest`], [`read_chunks`]: decoding, verifying and storing, pure apart
//! from the store) and decides nothing itself. It must not charge, block or choose a holder.

use super::state::{Action, Ask, ChunkOutcome, ChunksAnswer, Fetch, ManifestAnswer};
use super::{ErrorBudgets, FetchError, FetchLimits, Fetched, Ledger, Rates, check_layout};
use crate::averaging::budgets::Tally;
use crate::network::reach::ConnectionKind;
use crate::network::{Client, RequestError};
use crate::store::ChunkStore;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::PeerId;
use murmur_protocol::codec::decode_manifest;
use murmur_protocol::tensor::Layout;
use murmur_protocol::{ChunkId, ChunkReply, Manifest, ManifestId, Request, Response};
use std::time::{Duration, Instant};

/// Reads a holder's answer to a request for manifest `id`: decoded (size, id, validity) and
/// checked against our layout; with the manifest and its bytes when it is one of ours.
/// `missing` lists the chunks of an accepted manifest not held yet.
pub fn read_manifest(
    result: Result<Response, RequestError>,
    id: ManifestId,
    expected: &Layout,
    missing: impl FnOnce(&Manifest, Bytes) -> Vec<ChunkId>,
) -> ManifestAnswer {
    let bytes = match result {
        Ok(Response::Manifest(Some(bytes))) => bytes,
        Ok(Response::Manifest(None)) => return ManifestAnswer::NotHeld,
        Ok(Response::Busy) => return ManifestAnswer::Busy,
        Ok(other) => {
            tracing::warn!("answered a manifest request with {other:?}");
            return ManifestAnswer::Unexpected;
        }
        Err(e) => {
            tracing::debug!("{e}");
            return match failure(&e) {
                Failure::Stopped => ManifestAnswer::Stopped,
                Failure::Lost => ManifestAnswer::Lost,
                Failure::Failed { timeout } => ManifestAnswer::Failed { timeout },
            };
        }
    };
    let manifest = match decode_manifest(&bytes, &id) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!("bad manifest {}: {e}", id.short());
            return ManifestAnswer::Invalid;
        }
    };
    match check_layout(id, &manifest, expected) {
        Ok(()) => ManifestAnswer::Valid {
            chunk_size: manifest.chunk_size,
            chunks: manifest.chunks.len(),
            missing: missing(&manifest, bytes),
        },
        Err(FetchError::Layout {
            expected,
            got,
            detail,
            ..
        }) => {
            tracing::warn!("manifest {} is not a model like ours: {detail}", id.short());
            ManifestAnswer::Layout {
                expected,
                got,
                detail,
            }
        }
        Err(_) => ManifestAnswer::Invalid,
    }
}

/// Reads a holder's answer to a request for `batch`: each chunk verified and stored by
/// `put` (true: it hashed to its id) when the answer has one reply per chunk asked for.
pub fn read_chunks(
    result: Result<Response, RequestError>,
    batch: &[ChunkId],
    mut put: impl FnMut(ChunkId, Bytes) -> bool,
) -> ChunksAnswer {
    match result {
        Ok(Response::Chunks(replies)) if replies.len() == batch.len() => ChunksAnswer::Replies(
            batch
                .iter()
                .zip(replies)
                .map(|(chunk, reply)| match reply {
                    ChunkReply::Data(data) => {
                        let len = data.len() as u64;
                        if put(*chunk, data) {
                            ChunkOutcome::Stored(len)
                        } else {
                            tracing::warn!("corrupt chunk {}", chunk.short());
                            ChunkOutcome::Corrupt
                        }
                    }
                    ChunkReply::NotHeld => ChunkOutcome::NotHeld,
                    ChunkReply::OverBudget => ChunkOutcome::OverBudget,
                })
                .collect(),
        ),
        Ok(Response::Busy) => ChunksAnswer::Busy,
        Ok(other) => {
            let n = match &other {
                Response::Chunks(r) => r.len(),
                _ => 0,
            };
            tracing::warn!(
                "answered a chunk request with {n} replies for {} ids or {other:?}",
                batch.len()
            );
            ChunksAnswer::Unexpected
        }
        Err(e) => {
            tracing::debug!("{e}");
            match failure(&e) {
                Failure::Stopped => ChunksAnswer::Stopped,
                Failure::Lost => ChunksAnswer::Lost,
                Failure::Failed { timeout } => ChunksAnswer::Failed { timeout },
            }
        }
    }
}

/// A request error as the state takes it.
enum Failure {
    /// The network stopped.
    Stopped,
    /// The connection closed under the request: no one's fault.
    Lost,
    /// The request failed (`timeout`: it got no answer in time).
    Failed { timeout: bool },
}

fn failure(e: &RequestError) -> Failure {
    match e {
        RequestError::Stopped => Failure::Stopped,
        RequestError::Lost { .. } => Failure::Lost,
        RequestError::Timeout { .. } => Failure::Failed { timeout: true },
        RequestError::Failed { .. } => Failure::Failed { timeout: false },
    }
}

/// Fetches `id` from `holders` (in preference order; those reached only through a relay are
/// asked last) into `store` and returns the weights, with the ledger of what the fetch
/// charged and forgave (starting from `budgets`, the core's table when the fetch began). `expected` is our own model's layout: a manifest of
/// any other layout is refused before a chunk is requested, and charged to the holder that
/// served it.
#[allow(clippy::too_many_arguments)]
pub async fn fetch(
    client: &Client,
    store: &ChunkStore,
    id: ManifestId,
    holders: &[PeerId],
    budgets: ErrorBudgets,
    rates: &Rates,
    limits: FetchLimits,
    expected: &Layout,
) -> (Result<Fetched, FetchError>, Ledger) {
    // Holders we reach only through a relay are asked last (see `Fetch::relayed`).
    let relayed: Vec<PeerId> = client
        .status()
        .await
        .connections
        .into_iter()
        .filter(|(_, kind)| *kind == ConnectionKind::Relayed)
        .map(|(peer, _)| peer)
        .collect();
    let origin = Instant::now();
    let mut state = Fetch::new(
        id,
        holders.to_vec(),
        limits,
        Tally::new(budgets),
        origin.elapsed(),
    )
    .relayed(relayed);
    if let Some((manifest, _)) = store.manifest(&id) {
        // Validated when it was stored; whether it is a model like ours is checked here, and
        // nobody is charged for it.
        if let Err(e) = check_layout(id, &manifest, expected) {
            return (Err(e), Ledger::default());
        }
        let missing = store
            .missing(&manifest)
            .into_iter()
            .map(|(_, c)| c)
            .collect();
        state.manifest_held(manifest.chunk_size, manifest.chunks.len(), missing);
    }
    let mut requests = FuturesUnordered::new();
    loop {
        match state.poll(origin.elapsed(), rates) {
            Action::Send { token, peer, ask } => {
                let request = match &ask {
                    Ask::Manifest => Request::Manifest(id),
                    Ask::Chunks(batch) => Request::Chunks(batch.clone()),
                };
                let client = client.clone();
                requests.push(async move { (token, ask, client.request(peer, request).await) });
            }
            Action::Wait { until } => {
                // A deadline past what the clock can hold (a huge fetch timeout) is a year.
                let wake = origin
                    .checked_add(until)
                    .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 24 * 3600));
                let wake = tokio::time::Instant::from_std(wake);
                let answer = tokio::select! {
                    answer = requests.next(), if !requests.is_empty() => answer,
                    _ = tokio::time::sleep_until(wake) => None,
                };
                let Some((token, ask, result)) = answer else {
                    continue;
                };
                let now = origin.elapsed();
                match ask {
                    Ask::Manifest => {
                        let answer = read_manifest(result, id, expected, |manifest, bytes| {
                            store.insert_manifest(id, manifest.clone(), bytes);
                            store
                                .missing(manifest)
                                .into_iter()
                                .map(|(_, c)| c)
                                .collect()
                        });
                        state.manifest_answered(token, answer, now);
                    }
                    Ask::Chunks(batch) => {
                        let answer = read_chunks(result, &batch, |chunk, data| {
                            store.insert_chunk(chunk, data).is_ok()
                        });
                        state.chunks_answered(token, answer, now, rates);
                    }
                }
            }
            Action::Done => break,
        }
    }
    let assembled = if state.complete() {
        crate::cpu::on_comm_pool(|| store.assemble(&id)).map_err(|e| e.to_string())
    } else {
        Err(String::new())
    };
    let (params, assembled) = match assembled {
        Ok(params) => (Some(params), Ok(())),
        Err(e) => (None, Err(e)),
    };
    let (result, tally) = state.finish(assembled);
    let result = match (result, params) {
        (Some(Ok(got)), Some(params)) => Ok(Fetched {
            params,
            chunks_fetched: got.chunks_fetched,
            chunks_reused: got.chunks_reused,
            bytes: got.bytes,
            sources: got.sources,
        }),
        (Some(Err(e)), _) => Err(e),
        // Cannot happen: a finished fetch has a result, a complete one assembled or failed.
        _ => Err(FetchError::Deadline(id)),
    };
    (result, tally.into_ledger())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::averaging::fetch::FetchError;
    use murmur_protocol::FlatParams;
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
    fn a_manifest_of_our_layout_is_accepted() {
        let s = snapshot(64);
        check_layout(s.id, &s.manifest, &layout(&s)).unwrap();
        let answer = read_manifest(
            Ok(Response::Manifest(Some(s.manifest_bytes.clone()))),
            s.id,
            &layout(&s),
            |m, _| {
                assert_eq!(*m, s.manifest);
                vec![s.manifest.chunks[0]]
            },
        );
        assert_eq!(
            answer,
            ManifestAnswer::Valid {
                chunk_size: 64,
                chunks: s.manifest.chunks.len(),
                missing: vec![s.manifest.chunks[0]],
            }
        );
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
            accept(theirs.manifest_bytes.clone(), theirs.id, &layout(&ours)),
            ManifestAnswer::Layout { .. }
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
            accept(bytes.into(), id, &layout(&ours)),
            ManifestAnswer::Layout { got: 640_000, .. }
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
            accept(bytes.into(), id, &layout(&ours)),
            ManifestAnswer::Layout { got: 640_000, .. }
        ));
    }

    fn accept(bytes: Bytes, id: ManifestId, expected: &Layout) -> ManifestAnswer {
        read_manifest(Ok(Response::Manifest(Some(bytes))), id, expected, |_, _| {
            Vec::new()
        })
    }

    #[test]
    fn manifest_answers_are_read_as_the_state_takes_them() {
        let s = snapshot(64);
        let peer = PeerId::random();
        let read = |r| read_manifest(r, s.id, &layout(&s), |_, _| Vec::new());
        assert_eq!(read(Ok(Response::Manifest(None))), ManifestAnswer::NotHeld);
        assert_eq!(read(Ok(Response::Busy)), ManifestAnswer::Busy);
        assert_eq!(
            read(Ok(Response::Chunks(Vec::new()))),
            ManifestAnswer::Unexpected
        );
        assert_eq!(
            read(Err(RequestError::Timeout { peer })),
            ManifestAnswer::Failed { timeout: true }
        );
        assert_eq!(
            read(Err(RequestError::Failed {
                peer,
                reason: "reset".into()
            })),
            ManifestAnswer::Failed { timeout: false }
        );
        assert_eq!(read(Err(RequestError::Lost { peer })), ManifestAnswer::Lost);
        assert_eq!(read(Err(RequestError::Stopped)), ManifestAnswer::Stopped);
        // Bytes of another manifest than the one asked for.
        let other = snapshot(65);
        assert_eq!(
            accept(other.manifest_bytes.clone(), s.id, &layout(&s)),
            ManifestAnswer::Invalid
        );
        assert_eq!(
            accept(Bytes::from_static(b"garbage"), s.id, &layout(&s)),
            ManifestAnswer::Invalid
        );
    }

    /// Each chunk is verified (here: `put` says whether it hashed to its id) only when the
    /// answer has one reply per chunk asked for; another count is an unexpected answer and
    /// nothing of it is stored.
    #[test]
    fn chunk_answers_are_verified_only_when_the_count_matches() {
        let batch = vec![ChunkId::of(b"a"), ChunkId::of(b"b"), ChunkId::of(b"c")];
        let replies = vec![
            ChunkReply::Data(Bytes::from_static(b"a")),
            ChunkReply::Data(Bytes::from_static(b"not b")),
            ChunkReply::NotHeld,
        ];
        let put = |c: ChunkId, d: Bytes| c == ChunkId::of(&d);
        assert_eq!(
            read_chunks(Ok(Response::Chunks(replies.clone())), &batch, put),
            ChunksAnswer::Replies(vec![
                ChunkOutcome::Stored(1),
                ChunkOutcome::Corrupt,
                ChunkOutcome::NotHeld
            ])
        );
        let mut stored = 0;
        let short = read_chunks(
            Ok(Response::Chunks(replies[..2].to_vec())),
            &batch,
            |_, _| {
                stored += 1;
                true
            },
        );
        assert_eq!((short, stored), (ChunksAnswer::Unexpected, 0));
        assert_eq!(
            read_chunks(
                Ok(Response::Chunks(vec![ChunkReply::OverBudget])),
                &batch[..1],
                put
            ),
            ChunksAnswer::Replies(vec![ChunkOutcome::OverBudget])
        );
        assert_eq!(
            read_chunks(Ok(Response::Busy), &batch, put),
            ChunksAnswer::Busy
        );
        assert_eq!(
            read_chunks(Ok(Response::Manifest(None)), &batch, put),
            ChunksAnswer::Unexpected
        );
        assert_eq!(
            read_chunks(Err(RequestError::Stopped), &batch, put),
            ChunksAnswer::Stopped
        );
    }
}
