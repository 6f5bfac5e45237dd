//! Every size limit of the protocol, in one place. Decoders compare a claimed size with these
//! before allocating, and errors name the limit that was hit. Changing one is a wire change:
//! record it in `docs/protocol.md`.

/// Default chunk size: 256 KiB. Large enough that a manifest stays small (a 100 MB model has
/// 382 chunks), small enough that a changed region re-sends little and that several chunks
/// of one model can be fetched from several peers at once.
pub const DEFAULT_CHUNK_SIZE: u32 = 256 * 1024;

/// Smallest chunk size a manifest may use. Below this the manifest (32 bytes per chunk)
/// grows faster than it saves; 64 bytes still allows tiny test models.
pub const MIN_CHUNK_SIZE: u32 = 64;

/// Largest chunk size: 4 MiB, so one chunk always fits a chunk response with room to spare.
pub const MAX_CHUNK_SIZE: u32 = 4 * 1024 * 1024;

/// Largest model a manifest may describe: 2 GiB of encoded parameters (512 M f32 values).
pub const MAX_MODEL_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// Smallest `Int8` block, in values. Each block carries a 4-byte scale: at 16 values that is
/// 1.25 bytes per value, still well under `f16`'s 2 (smaller blocks approach `f16`'s size
/// with less precision), and it keeps an int8 stream of any valid layout far below
/// `MAX_MODEL_BYTES` (at most 1.25 bytes per value plus one scale per tensor, against 4).
pub const MIN_INT8_BLOCK: u32 = 16;

/// Largest `Int8` block, in values: 65,536. One large value sets the scale of its whole
/// block, so longer blocks lose the small values around an outlier; beyond this the scales'
/// share of the stream (under 0.01 %) has nothing left to save.
pub const MAX_INT8_BLOCK: u32 = 65_536;

/// Default `Int8` block: 256 values, 1.016 bytes per value, the scale adapting to each
/// 256-value stretch of a tensor (a row of a typical layer or less).
pub const DEFAULT_INT8_BLOCK: u32 = 256;

/// Most chunks one manifest may list: 2 GiB at the default 256 KiB is 8,192 chunks; 65,536
/// leaves room for smaller chunk sizes and keeps the id list under 2 MiB.
pub const MAX_CHUNKS_PER_MANIFEST: usize = 65_536;

/// Most tensors in one model. Real models here have a handful; 4,096 covers deep networks.
pub const MAX_TENSORS: usize = 4_096;

/// Longest tensor name, in bytes of UTF-8.
pub const MAX_TENSOR_NAME_LEN: usize = 256;

/// Highest tensor rank (number of dimensions).
pub const MAX_TENSOR_RANK: usize = 8;

/// Largest encoded manifest: 65,536 chunk ids (2 MiB) plus 4,096 tensor specs of at most
/// 256 + 8 * 8 + 16 bytes each (about 1.4 MiB), rounded up to 4 MiB.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// Largest gossip announcement. Gossipsub's own cap is 64 KiB and bursts of near-cap
/// frames have been seen to close gossip streams; an announcement is hashes and a few
/// counters, a few hundred bytes in practice.
pub const MAX_ANNOUNCE_BYTES: usize = 4 * 1024;

/// Most floats in an announcement's weight projection (used to estimate consensus distance).
pub const MAX_PROJECTION_DIMS: usize = 64;

/// Most neighbours an announcement may list (for the dashboard's topology view).
pub const MAX_ANNOUNCED_NEIGHBOURS: usize = 32;

/// Longest peer id (a libp2p multihash: 38 bytes for ed25519) an announcement may carry.
pub const MAX_PEER_ID_BYTES: usize = 64;

/// Most chunk ids in one chunk request. Together with the response limit this bounds what one
/// request can make a peer send.
pub const MAX_CHUNKS_PER_REQUEST: usize = 64;

/// Largest encoded request: 64 ids of 32 bytes plus a few bytes of framing, rounded up.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024;

/// Largest encoded response: a manifest, or chunk data of at most this much. 16 MiB plus
/// framing moves in well under request-response's 10 s timeout even on a slow link.
pub const MAX_RESPONSE_BYTES: usize = MAX_CHUNK_RESPONSE_DATA + 64 * 1024;

/// Most chunk bytes one chunk response may carry. A responder fills a response up to this
/// much and answers the remaining ids of the request with `ChunkReply::OverBudget`, so the
/// requester asks for them again; requesters size their requests to fit.
pub const MAX_CHUNK_RESPONSE_DATA: usize = 16 * 1024 * 1024;

/// Length of the frame prefix used on request-response streams (u32, little-endian).
pub const FRAME_PREFIX_LEN: usize = 4;
