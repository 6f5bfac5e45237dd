//! Fetching a model by its manifest id from the peers that hold it: the manifest first
//! (verified against its id, validated, and refused unless its layout is our own model's, so
//! its length and chunk count are ours too), then only the chunks not already held, in
//! parallel batches spread over every holder, with a per-peer in-flight limit, a per-peer
//! error budget and an overall deadline. Every chunk is verified against its id before it is
//! stored; a response with bad chunks is charged to the peer that sent it (once) and those
//! chunks are fetched again from another holder. A request that fails or times out (the
//! network's request timeout, shorter than the deadline) is charged to its peer and its
//! chunks are asked of another holder when one is left.
//!
//! Each batch goes to the holder expected to deliver it first ([`Rates::pick`]: its
//! requests in flight over its measured delivery rate), so faster holders carry more of a
//! fetch; every answer updates the holder's rate in the node's [`Rates`].
//!
//! A `Busy` answer is honest (the holder is at its serving limits): it is never charged. The
//! peer is left alone for a backoff ([`crate::network::limits::busy_backoff`], 100 ms doubling
//! to 2 s while it stays busy) and its chunks go to another holder, or back to it once the
//! backoff ends. Requests are sized to the holders' response cap
//! ([`crate::network::limits::MAX_SERVED_CHUNK_DATA`]) and never name a chunk twice: replies
//! match the request's ids one to one, in order.
//!
//! Every one of those decisions is made by the IO-less [`state::Fetch`], which the
//! simulator drives too; [`driver`] carries them out over libp2p and the chunk store. A
//! fetch charges on a copy of the core's error budgets and returns what it charged and
//! forgave as a [`Ledger`] for the core to apply.

pub mod driver;
pub mod state;

pub use super::budgets::{ErrorBudgets, Ledger};
pub use super::rates::Rates;
pub use driver::fetch;
use libp2p::PeerId;
use murmur_protocol::tensor::Layout;
use murmur_protocol::{FlatParams, Manifest, ManifestId};
pub use state::{LAYOUT_CHARGES, TIMEOUT_CHARGES};
use std::collections::BTreeMap;
use std::time::Duration;

/// Limits of one fetch.
#[derive(Debug, Clone, Copy)]
pub struct FetchLimits {
    /// Requests in flight to one peer (below request-response's per-connection stream cap).
    pub per_peer_inflight: usize,
    /// The whole fetch must finish within this.
    pub deadline: Duration,
}

/// A fetched, verified model.
#[derive(Debug)]
pub struct Fetched {
    pub params: FlatParams,
    pub chunks_fetched: usize,
    pub chunks_reused: usize,
    pub bytes: u64,
    /// Verified chunks received from each peer.
    pub sources: BTreeMap<PeerId, usize>,
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
