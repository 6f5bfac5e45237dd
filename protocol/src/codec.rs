//! The one place where messages become bytes and bytes become messages.
//!
//! Every gossip and request-response body is `[wire version: u8][bincode payload]`; the
//! payload uses bincode 2 with little-endian fixed-width integers. A manifest has no extra
//! version byte: its first field, `format_version: u16`, is its version. Request-response
//! streams carry each body behind a `u32` little-endian length ([`decode_frame_len`]).
//!
//! Decoding never trusts a length: the body is checked against its kind's limit first, and
//! bincode runs with that same limit, so no length claimed inside the body can make it
//! allocate more than the limit (`tests/alloc_limits.rs` measures this). Then the decoded
//! message must pass its sanity check. Errors say which kind, which limit, what was found.

use crate::error::{DecodeError, EncodeError};
use crate::id::ManifestId;
use crate::limits::{
    FRAME_PREFIX_LEN, MAX_ANNOUNCE_BYTES, MAX_MANIFEST_BYTES, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES,
};
use crate::manifest::{MANIFEST_FORMAT_VERSION, Manifest};
use crate::wire::{Announce, Request, Response};
use bincode::config::{Configuration, Fixint, Limit, LittleEndian};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;

/// The wire version this build writes and the only one it reads.
pub const WIRE_VERSION: u8 = 2;

/// What a byte string is meant to be; each kind has its own size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// A gossip announcement.
    Announce,
    /// A request-response request.
    Request,
    /// A request-response response.
    Response,
    /// A manifest's canonical encoding.
    Manifest,
}

impl MessageKind {
    /// The largest encoding of this kind that is accepted.
    pub const fn max_len(self) -> usize {
        match self {
            MessageKind::Announce => MAX_ANNOUNCE_BYTES,
            MessageKind::Request => MAX_REQUEST_BYTES,
            MessageKind::Response => MAX_RESPONSE_BYTES,
            MessageKind::Manifest => MAX_MANIFEST_BYTES,
        }
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MessageKind::Announce => "announce",
            MessageKind::Request => "request",
            MessageKind::Response => "response",
            MessageKind::Manifest => "manifest",
        })
    }
}

const fn config<const LIMIT: usize>() -> Configuration<LittleEndian, Fixint, Limit<LIMIT>> {
    bincode::config::standard()
        .with_little_endian()
        .with_fixed_int_encoding()
        .with_limit::<LIMIT>()
}

/// A message with a kind, a limit and a sanity check.
trait Wire: Serialize + DeserializeOwned {
    const KIND: MessageKind;
    fn check(&self) -> Result<(), String>;
    /// bincode-decodes with this kind's limit as bincode's own allocation limit.
    fn decode_payload(bytes: &[u8]) -> Result<(Self, usize), bincode::error::DecodeError>;
    fn encode_payload(&self) -> Result<Vec<u8>, bincode::error::EncodeError>;
}

macro_rules! wire {
    ($ty:ty, $kind:expr, $limit:expr, $check:expr) => {
        impl Wire for $ty {
            const KIND: MessageKind = $kind;
            fn check(&self) -> Result<(), String> {
                $check(self)
            }
            fn decode_payload(bytes: &[u8]) -> Result<(Self, usize), bincode::error::DecodeError> {
                bincode::serde::decode_from_slice(bytes, config::<{ $limit }>())
            }
            fn encode_payload(&self) -> Result<Vec<u8>, bincode::error::EncodeError> {
                bincode::serde::encode_to_vec(self, config::<{ $limit }>())
            }
        }
    };
}

wire!(
    Announce,
    MessageKind::Announce,
    MAX_ANNOUNCE_BYTES,
    Announce::check
);
wire!(
    Request,
    MessageKind::Request,
    MAX_REQUEST_BYTES,
    Request::check
);
wire!(
    Response,
    MessageKind::Response,
    MAX_RESPONSE_BYTES,
    Response::check
);
wire!(
    Manifest,
    MessageKind::Manifest,
    MAX_MANIFEST_BYTES,
    |m: &Manifest| m.validate().map(|_| ()).map_err(|e| e.to_string())
);

fn encode<M: Wire>(msg: &M, version_byte: bool) -> Result<Vec<u8>, EncodeError> {
    let kind = M::KIND;
    msg.check()
        .map_err(|reason| EncodeError::Invalid { kind, reason })?;
    let payload = msg
        .encode_payload()
        .map_err(|source| EncodeError::Bincode { kind, source })?;
    let out = if version_byte {
        let mut out = Vec::with_capacity(payload.len() + 1);
        out.push(WIRE_VERSION);
        out.extend_from_slice(&payload);
        out
    } else {
        payload
    };
    if out.len() > kind.max_len() {
        return Err(EncodeError::TooLarge {
            kind,
            len: out.len(),
            max: kind.max_len(),
        });
    }
    Ok(out)
}

fn decode<M: Wire>(bytes: &[u8], version_byte: bool) -> Result<M, DecodeError> {
    let kind = M::KIND;
    check_len(kind, bytes.len() as u64)?;
    let payload = if version_byte {
        let (&version, rest) = bytes.split_first().ok_or(DecodeError::Empty { kind })?;
        if version != WIRE_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                kind,
                got: version,
                supported: WIRE_VERSION,
            });
        }
        rest
    } else {
        bytes
    };
    let (msg, used) =
        M::decode_payload(payload).map_err(|source| DecodeError::Malformed { kind, source })?;
    if used != payload.len() {
        return Err(DecodeError::TrailingBytes {
            kind,
            extra: payload.len() - used,
        });
    }
    msg.check()
        .map_err(|reason| DecodeError::Invalid { kind, reason })?;
    Ok(msg)
}

fn check_len(kind: MessageKind, len: u64) -> Result<(), DecodeError> {
    if len > kind.max_len() as u64 {
        return Err(DecodeError::TooLarge {
            kind,
            len,
            max: kind.max_len(),
        });
    }
    Ok(())
}

/// Encodes a gossip announcement.
pub fn encode_announce(msg: &Announce) -> Result<Vec<u8>, EncodeError> {
    encode(msg, true)
}

/// Decodes and sanity-checks a gossip announcement.
pub fn decode_announce(bytes: &[u8]) -> Result<Announce, DecodeError> {
    decode(bytes, true)
}

/// Encodes a request-response request (the body; see [`frame_prefix`]).
pub fn encode_request(msg: &Request) -> Result<Vec<u8>, EncodeError> {
    encode(msg, true)
}

/// Decodes and sanity-checks a request body.
pub fn decode_request(bytes: &[u8]) -> Result<Request, DecodeError> {
    decode(bytes, true)
}

/// Encodes a request-response response (the body; see [`frame_prefix`]).
pub fn encode_response(msg: &Response) -> Result<Vec<u8>, EncodeError> {
    encode(msg, true)
}

/// Decodes and sanity-checks a response body.
pub fn decode_response(bytes: &[u8]) -> Result<Response, DecodeError> {
    decode(bytes, true)
}

/// The canonical encoding of a manifest: what its [`ManifestId`] hashes.
pub fn encode_manifest(manifest: &Manifest) -> Result<Vec<u8>, EncodeError> {
    encode(manifest, false)
}

/// Decodes manifest bytes that were asked for by id: checks the size, then that the bytes
/// hash to `expected`, then decodes and validates.
pub fn decode_manifest(bytes: &[u8], expected: &ManifestId) -> Result<Manifest, DecodeError> {
    let kind = MessageKind::Manifest;
    check_len(kind, bytes.len() as u64)?;
    let actual = ManifestId::of(bytes);
    if actual != *expected {
        return Err(DecodeError::ManifestId {
            expected: *expected,
            actual,
        });
    }
    if let [a, b, ..] = bytes {
        let got = u16::from_le_bytes([*a, *b]);
        if got != MANIFEST_FORMAT_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                kind,
                got: u8::try_from(got).unwrap_or(u8::MAX),
                supported: MANIFEST_FORMAT_VERSION as u8,
            });
        }
    }
    decode(bytes, false)
}

/// The 4-byte length prefix for a request-response body.
pub fn frame_prefix(body_len: usize) -> [u8; FRAME_PREFIX_LEN] {
    (body_len as u32).to_le_bytes()
}

/// Reads a frame's length prefix and checks it against `kind`'s limit, before the reader
/// allocates anything for the body.
pub fn decode_frame_len(
    kind: MessageKind,
    prefix: [u8; FRAME_PREFIX_LEN],
) -> Result<usize, DecodeError> {
    let len = u32::from_le_bytes(prefix);
    check_len(kind, u64::from(len))?;
    if len == 0 {
        return Err(DecodeError::Empty { kind });
    }
    Ok(len as usize)
}
