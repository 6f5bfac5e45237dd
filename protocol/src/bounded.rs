//! Sequence decoding that checks the claimed length before allocating. serde's `Vec`
//! preallocates up to 1 MiB from an untrusted length hint; these helpers refuse any claim
//! over the field's named limit first, so a decode allocates at most `N` elements.

use serde::Deserialize;
use serde::de::{Deserializer, Error, SeqAccess, Visitor};
use std::fmt;
use std::marker::PhantomData;

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
            let mut out = Vec::with_capacity(claimed);
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
