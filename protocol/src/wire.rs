//! The messages peers exchange. Gossip carries [`Announce`] (hashes and counters, never
//! weights); request-response carries [`Request`] and [`Response`] (manifests and chunks).
//! Encoding, versioning and limits live in [`crate::codec`]; [`Announce::check`] and friends
//! hold the sanity rules a decoded message must also pass.

use crate::id::{ChunkId, ManifestId};
use crate::limits::{
    MAX_ANNOUNCED_NEIGHBOURS, MAX_CHUNK_RESPONSE_DATA, MAX_CHUNK_SIZE, MAX_CHUNKS_PER_REQUEST,
    MAX_MANIFEST_BYTES, MAX_PEER_ID_BYTES, MAX_PROJECTION_DIMS,
};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A few numbers about the sender's current model, for the network view of every dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct MetricsSummary {
    /// Test accuracy of the announced model, in `0.0..=1.0`.
    pub accuracy: f32,
    /// Mean test loss of the announced model (finite, non-negative).
    pub loss: f32,
    /// Merges the sender has done so far.
    pub merges: u64,
    /// Bytes the sender has served so far.
    pub bytes_sent: u64,
    /// Bytes the sender has fetched so far.
    pub bytes_received: u64,
    /// The sender's share of its process CPU time spent on training steps, in `0.0..=1.0`.
    pub train_share: f32,
    /// The sender's share of its process CPU time spent on communication (fetching,
    /// verifying, merging, serving, encrypting), in `0.0..=1.0`.
    pub comm_share: f32,
}

/// "I hold this model": published over gossipsub whenever a peer's model changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Announce {
    /// Id of the announced model; fetch its manifest and chunks from the sender.
    pub manifest: ManifestId,
    /// The sender's model version counter (grows by one per round, survives restarts).
    pub version: u64,
    /// Training samples folded into this model so far (the default averaging weight).
    pub samples: u64,
    /// How good the model is, and the sender's traffic counters.
    pub metrics: MetricsSummary,
    /// A fixed random projection of the weights (seeded by the network id): distances
    /// between projections estimate distances between models without fetching them.
    #[serde(deserialize_with = "crate::bounded::vec::<MAX_PROJECTION_DIMS, _, _>")]
    pub projection: Vec<f32>,
    /// Peer ids (libp2p multihash bytes) the sender is connected to, for the topology view.
    #[serde(deserialize_with = "crate::bounded::bytes_vec::<MAX_ANNOUNCED_NEIGHBOURS, _>")]
    pub neighbours: Vec<Bytes>,
}

impl Announce {
    /// The sanity rules beyond decoding: numbers finite and in range, lists within limits.
    pub fn check(&self) -> Result<(), String> {
        let m = &self.metrics;
        if !(m.accuracy.is_finite() && (0.0..=1.0).contains(&m.accuracy)) {
            return Err(format!("accuracy {} outside 0..=1", m.accuracy));
        }
        for (name, share) in [("train_share", m.train_share), ("comm_share", m.comm_share)] {
            if !(share.is_finite() && (0.0..=1.0).contains(&share)) {
                return Err(format!("{name} {share} outside 0..=1"));
            }
        }
        if !(m.loss.is_finite() && m.loss >= 0.0) {
            return Err(format!(
                "loss {} is not a finite non-negative number",
                m.loss
            ));
        }
        if self.projection.len() > MAX_PROJECTION_DIMS {
            return Err(format!(
                "projection has {} dims, limit {MAX_PROJECTION_DIMS}",
                self.projection.len()
            ));
        }
        if !self.projection.iter().all(|v| v.is_finite()) {
            return Err("projection holds a non-finite value".into());
        }
        if self.neighbours.len() > MAX_ANNOUNCED_NEIGHBOURS {
            return Err(format!(
                "{} neighbours listed, limit {MAX_ANNOUNCED_NEIGHBOURS}",
                self.neighbours.len()
            ));
        }
        if let Some(n) = self
            .neighbours
            .iter()
            .find(|n| n.is_empty() || n.len() > MAX_PEER_ID_BYTES)
        {
            return Err(format!(
                "neighbour id of {} bytes, allowed 1..={MAX_PEER_ID_BYTES}",
                n.len()
            ));
        }
        Ok(())
    }
}

/// A request over the murmur request-response protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// "Send me the manifest with this id."
    Manifest(ManifestId),
    /// "Send me these chunks" (1 to `MAX_CHUNKS_PER_REQUEST` ids).
    Chunks(
        #[serde(deserialize_with = "crate::bounded::vec::<MAX_CHUNKS_PER_REQUEST, _, _>")]
        Vec<ChunkId>,
    ),
}

impl Request {
    /// Sanity rules beyond decoding.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Request::Manifest(_) => Ok(()),
            Request::Chunks(ids) if ids.is_empty() => Err("chunk request names no chunk".into()),
            Request::Chunks(ids) if ids.len() > MAX_CHUNKS_PER_REQUEST => Err(format!(
                "chunk request names {} chunks, limit {MAX_CHUNKS_PER_REQUEST}",
                ids.len()
            )),
            Request::Chunks(_) => Ok(()),
        }
    }
}

/// The answer for one requested chunk (one per distinct id, in order of first occurrence).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChunkReply {
    /// The chunk's bytes (the requester verifies them against the id it asked for).
    Data(#[serde(deserialize_with = "crate::bounded::bytes")] Bytes),
    /// This peer does not hold the chunk.
    NotHeld,
    /// The response was full (at most `MAX_CHUNK_RESPONSE_DATA` by the protocol; a murmur
    /// node fills 4 MiB); ask again for this one.
    OverBudget,
}

/// A response over the murmur request-response protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The manifest's canonical bytes, or `None` if this peer does not hold it.
    Manifest(#[serde(deserialize_with = "crate::bounded::option_bytes")] Option<Bytes>),
    /// One reply per distinct requested chunk id, in order of first occurrence.
    Chunks(
        #[serde(deserialize_with = "crate::bounded::vec::<MAX_CHUNKS_PER_REQUEST, _, _>")]
        Vec<ChunkReply>,
    ),
    /// The responder is over a serving limit (the requester's rate or upload share, or its
    /// own in-flight or upload limit); not a fault: try another holder, or back off.
    Busy,
}

impl Response {
    /// Sanity rules beyond decoding.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Response::Manifest(Some(b)) if b.len() > MAX_MANIFEST_BYTES => Err(format!(
                "manifest of {} bytes, limit {MAX_MANIFEST_BYTES}",
                b.len()
            )),
            Response::Chunks(replies) => {
                if replies.len() > MAX_CHUNKS_PER_REQUEST {
                    return Err(format!(
                        "{} chunk replies, limit {MAX_CHUNKS_PER_REQUEST}",
                        replies.len()
                    ));
                }
                let mut total = 0usize;
                for r in replies {
                    if let ChunkReply::Data(d) = r {
                        if d.len() > MAX_CHUNK_SIZE as usize {
                            return Err(format!(
                                "chunk of {} bytes, limit {MAX_CHUNK_SIZE}",
                                d.len()
                            ));
                        }
                        total += d.len();
                    }
                }
                if total > MAX_CHUNK_RESPONSE_DATA {
                    return Err(format!(
                        "{total} bytes of chunk data, limit {MAX_CHUNK_RESPONSE_DATA}"
                    ));
                }
                Ok(())
            }
            Response::Manifest(_) | Response::Busy => Ok(()),
        }
    }
}
