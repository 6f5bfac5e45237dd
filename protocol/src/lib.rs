//! # murmur-protocol
//!
//! Everything two murmur peers must agree on, and nothing else: no sockets, no clock, no
//! async runtime, no global randomness. The same weights give the same bytes and the same
//! [`ManifestId`] on every machine (pinned by `tests/golden.rs`).
//!
//! ## Layout
//! - [`limits`]: every size limit, as a named constant with the reason for its number.
//! - [`id`]: [`ChunkId`] and [`ManifestId`], 32-byte blake3 hashes.
//! - [`tensor`]: [`TensorSpec`] and [`Layout`], the canonical (sorted by name) list of a
//!   model's parameters.
//! - [`params`]: [`FlatParams`], a layout plus its values in canonical order, flat.
//! - [`encoding`]: [`Encoding`], how values become the byte stream (`f32`, `f16`, `bf16` or
//!   block-quantized `int8`), and [`quantize`], the values a peer decodes from it.
//! - [`manifest`]: [`Manifest`], which names a model: layout, encoding, chunk size and the
//!   ordered chunk ids. Its id is the hash of its canonical encoding.
//! - [`chunking`]: [`Snapshot::build`] (`f32`) and [`Snapshot::from_params_encoded`] (any
//!   encoding) turn [`FlatParams`] into a manifest and chunks;
//!   [`assemble`] turns a manifest and chunks back into [`FlatParams`], verifying everything.
//! - [`wire`]: the messages peers exchange: [`Announce`] over gossip, [`Request`] and
//!   [`Response`] over request-response.
//! - [`codec`]: the one place that turns messages into bytes and back, with a limit per kind.
//! - [`projection`]: the fixed random projection of weights carried in announcements, and the
//!   consensus distance estimated from projections.
//!
//! ## Data flow
//! ```text
//! FlatParams --Snapshot::build--> Manifest + [Chunk] --(announce id, serve bytes)--> peer
//! peer: manifest bytes --codec::decode_manifest(expected id)--> Manifest
//!       chunk bytes ----ChunkId::verify------------------------> assemble --> FlatParams
//! ```
//! The byte-level format is written down in `docs/protocol.md`.

mod bounded;
pub mod chunking;
pub mod codec;
pub mod encoding;
pub mod error;
pub mod id;
pub mod limits;
pub mod manifest;
pub mod params;
pub mod projection;
pub mod tensor;
pub mod wire;

pub use chunking::{Chunk, Snapshot, SnapshotError, assemble};
pub use codec::MessageKind;
pub use encoding::{Encoding, ParseEncodingError, QuantizeError, quantize};
pub use error::{AssembleError, DecodeError, EncodeError, LayoutError, ManifestError};
pub use id::{ChunkId, ManifestId};
pub use manifest::Manifest;
pub use params::FlatParams;
pub use tensor::{DType, Layout, TensorSpec};
pub use wire::{Announce, ChunkReply, MetricsSummary, Request, Response};
