//! Content ids: [`ChunkId`] names a chunk by the blake3 hash of its bytes, [`ManifestId`] names
//! a model by the blake3 hash of its manifest's canonical encoding. Both are exactly 32 bytes
//! on the wire (no length prefix) and lowercase hex in text.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Length of every content id, in bytes.
pub const ID_LEN: usize = 32;

/// A string that is not a 64-character hex id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a content id: expected 64 hex characters, got {got:?}")]
pub struct ParseIdError {
    /// What was given (cut to 80 characters).
    pub got: String,
}

macro_rules! content_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name([u8; ID_LEN]);

        impl $name {
            /// The id of `bytes`: their blake3 hash.
            pub fn of(bytes: &[u8]) -> Self {
                Self(*blake3::hash(bytes).as_bytes())
            }

            /// An id from its raw 32 bytes (as read from the wire).
            pub const fn from_bytes(bytes: [u8; ID_LEN]) -> Self {
                Self(bytes)
            }

            /// The raw 32 bytes.
            pub const fn as_bytes(&self) -> &[u8; ID_LEN] {
                &self.0
            }

            /// Lowercase hex, 64 characters.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The first 8 hex characters, for logs and tables.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }
        }

        impl From<blake3::Hash> for $name {
            fn from(hash: blake3::Hash) -> Self {
                Self(*hash.as_bytes())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.short())
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let mut out = [0u8; ID_LEN];
                hex::decode_to_slice(s, &mut out).map_err(|_| ParseIdError {
                    got: s.chars().take(80).collect(),
                })?;
                Ok(Self(out))
            }
        }
    };
}

content_id!(
    /// The blake3 hash of one chunk's bytes. A chunk is fetched by this id from any peer that
    /// holds it and checked against it on arrival ([`ChunkId::verify`]).
    ChunkId
);

content_id!(
    /// The blake3 hash of a [`Manifest`](crate::Manifest)'s canonical encoding: the name of one
    /// exact set of model weights, the same on every machine.
    ManifestId
);

impl ChunkId {
    /// Checks that `bytes` hash to this id; on mismatch returns the id they do hash to.
    pub fn verify(&self, bytes: &[u8]) -> Result<(), ChunkId> {
        let actual = ChunkId::of(bytes);
        if actual == *self { Ok(()) } else { Err(actual) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_display() {
        let id = ChunkId::of(b"murmur");
        let text = id.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<ChunkId>().unwrap(), id);
        assert_eq!(format!("{id:?}"), format!("ChunkId({})", &text[..8]));
    }

    #[test]
    fn bad_hex_is_an_error_not_a_panic() {
        assert!("xyz".parse::<ManifestId>().is_err());
        assert!("ab".repeat(31).parse::<ManifestId>().is_err());
        assert!("é".repeat(64).parse::<ManifestId>().is_err());
    }

    #[test]
    fn verify_names_the_actual_hash() {
        let id = ChunkId::of(b"abc");
        assert!(id.verify(b"abc").is_ok());
        assert_eq!(id.verify(b"abd"), Err(ChunkId::of(b"abd")));
    }
}
