//! Decoding that never allocates from a claimed length. serde's `Vec` preallocates up to
//! 1 MiB from an untrusted length hint, and bincode decodes a `String` or `Bytes` into a
//! zeroed buffer of the claimed length before it reads a byte of it; a body of a few bytes
//! could so make a decoder allocate up to its kind's whole limit (the fuzz targets found
//! a 16-byte response that allocated 13 MB, and a 57-byte manifest that allocated 1.7 MB).
//! These helpers refuse any count over the field's named limit, preallocate at most
//! [`PREALLOC_BYTES`] whatever the claim, and take byte strings and strings as slices of
//! the input (which bincode checks are present), so a decode allocates no more than its
//! input holds, plus [`PREALLOC_BYTES`] per sequence.

use bytes::Bytes;
use serde::Deserialize;
use serde::de::{Deserializer, Error, SeqAccess, Visitor};
use std::fmt;
use std::marker::PhantomData;

/// Most bytes a sequence preallocates from its claimed length; it grows past this only as
/// elements actually arrive.
pub const PREALLOC_BYTES: usize = 4096;

/// Deserializes a `Vec<T>` of at most `N` elements (use with `deserialize_with`).
pub fn vec<'de, const N: usize, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Bounded<const N: usize, T>(PhantomData<T>);

    impl<'de, const N: usize, T: Deserialize<'de>> Visitor<'de> for Bounded<N, T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a sequence of at most {N} elements")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let claimed = seq.size_hint().unwrap_or(0);
            if claimed > N {
                return Err(A::Error::invalid_length(claimed, &self));
            }
            let mut out = Vec::with_capacity(prealloc::<T>(claimed));
            while let Some(item) = seq.next_element()? {
                if out.len() == N {
                    return Err(A::Error::invalid_length(N + 1, &self));
                }
                out.push(item);
            }
            Ok(out)
        }
    }

    deserializer.deserialize_seq(Bounded::<N, T>(PhantomData))
}

/// How many of `claimed` elements of `T` to preallocate.
fn prealloc<T>(claimed: usize) -> usize {
    claimed.min(PREALLOC_BYTES / std::mem::size_of::<T>().max(1))
}

/// A byte string read as a slice of the input, then copied: never a buffer of the claimed
/// length before the bytes are there.
struct Buf(Bytes);

impl<'de> Deserialize<'de> for Buf {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BufVisitor;

        impl<'de> Visitor<'de> for BufVisitor {
            type Value = Buf;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }

            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Buf, E> {
                Ok(Buf(Bytes::copy_from_slice(v)))
            }

            fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Buf, E> {
                Ok(Buf(Bytes::from(v)))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Buf, A::Error> {
                let claimed = seq.size_hint().unwrap_or(0);
                let mut out = Vec::with_capacity(prealloc::<u8>(claimed));
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(Buf(Bytes::from(out)))
            }
        }

        deserializer.deserialize_bytes(BufVisitor)
    }
}

/// Deserializes `Bytes` without allocating from the claimed length (`deserialize_with`).
pub fn bytes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
    Buf::deserialize(deserializer).map(|b| b.0)
}

/// Deserializes `Option<Bytes>` like [`bytes`] (`deserialize_with`).
pub fn option_bytes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Bytes>, D::Error> {
    Option::<Buf>::deserialize(deserializer).map(|b| b.map(|b| b.0))
}

/// Deserializes a `Vec<Bytes>` of at most `N` byte strings like [`vec`] and [`bytes`].
pub fn bytes_vec<'de, const N: usize, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<Bytes>, D::Error> {
    vec::<N, D, Buf>(deserializer).map(|v| v.into_iter().map(|b| b.0).collect())
}

/// Deserializes a `String` as a slice of the input (checked to be there and to be UTF-8),
/// then copies it: never a buffer of the claimed length first (`deserialize_with`).
pub fn string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    struct StrVisitor;

    impl Visitor<'_> for StrVisitor {
        type Value = String;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }

        fn visit_str<E: Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }

        fn visit_string<E: Error>(self, v: String) -> Result<String, E> {
            Ok(v)
        }
    }

    deserializer.deserialize_str(StrVisitor)
}
