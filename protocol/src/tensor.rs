//! The shape of a model: [`TensorSpec`] (name, shape, dtype) and [`Layout`], the list of a
//! model's tensors in canonical order (sorted by name, names unique). A `Layout` can only be
//! built through [`Layout::new`], which checks every limit, so holding one means it is valid.

use crate::encoding::Encoding;
use crate::error::LayoutError;
use crate::limits::{MAX_MODEL_BYTES, MAX_TENSOR_NAME_LEN, MAX_TENSOR_RANK, MAX_TENSORS};
use serde::{Deserialize, Serialize};

/// The logical element type of a tensor. Only `F32` exists today; new variants are appended
/// (their wire numbers are reserved in `docs/protocol.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DType {
    /// 32-bit IEEE 754 float.
    F32,
}

impl DType {
    /// Bytes per element.
    pub const fn size(self) -> u64 {
        match self {
            DType::F32 => 4,
        }
    }
}

/// One named parameter tensor.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TensorSpec {
    /// Stable parameter name, e.g. `fc1.weight`.
    #[serde(deserialize_with = "crate::bounded::string")]
    pub name: String,
    /// Dimensions, outermost first; every dimension is at least 1.
    #[serde(deserialize_with = "crate::bounded::vec::<MAX_TENSOR_RANK, _, _>")]
    pub shape: Vec<u64>,
    /// Element type.
    pub dtype: DType,
}

impl TensorSpec {
    /// An `F32` tensor.
    pub fn f32(name: impl Into<String>, shape: &[u64]) -> Self {
        Self {
            name: name.into(),
            shape: shape.to_vec(),
            dtype: DType::F32,
        }
    }

    /// Number of elements, or `None` on overflow.
    pub fn numel(&self) -> Option<u64> {
        self.shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
    }
}

/// A model's tensors in canonical order. Invariants (checked by [`Layout::new`]): 1 to
/// `MAX_TENSORS` tensors, names non-empty, at most `MAX_TENSOR_NAME_LEN` bytes, unique and
/// sorted; ranks at most `MAX_TENSOR_RANK`; no zero dimension; total size at most
/// `MAX_MODEL_BYTES`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Layout {
    tensors: Vec<TensorSpec>,
    numel: u64,
}

impl Layout {
    /// Sorts `tensors` by name and checks every limit.
    pub fn new(mut tensors: Vec<TensorSpec>) -> Result<Self, LayoutError> {
        tensors.sort_by(|a, b| a.name.cmp(&b.name));
        Self::from_sorted(tensors)
    }

    /// Checks that `tensors` are already in canonical order (as a manifest must carry them)
    /// and within every limit.
    pub fn from_sorted(tensors: Vec<TensorSpec>) -> Result<Self, LayoutError> {
        if tensors.is_empty() {
            return Err(LayoutError::Empty);
        }
        if tensors.len() > MAX_TENSORS {
            return Err(LayoutError::TooManyTensors {
                count: tensors.len(),
                max: MAX_TENSORS,
            });
        }
        let mut numel = 0u64;
        for (i, t) in tensors.iter().enumerate() {
            if t.name.is_empty() {
                return Err(LayoutError::EmptyName { index: i });
            }
            if t.name.len() > MAX_TENSOR_NAME_LEN {
                return Err(LayoutError::NameTooLong {
                    name: t.name.chars().take(40).collect(),
                    len: t.name.len(),
                    max: MAX_TENSOR_NAME_LEN,
                });
            }
            if i > 0 && tensors[i - 1].name >= t.name {
                return Err(if tensors[i - 1].name == t.name {
                    LayoutError::DuplicateName {
                        name: t.name.clone(),
                    }
                } else {
                    LayoutError::NotSorted {
                        before: tensors[i - 1].name.clone(),
                        after: t.name.clone(),
                    }
                });
            }
            if t.shape.len() > MAX_TENSOR_RANK {
                return Err(LayoutError::RankTooHigh {
                    name: t.name.clone(),
                    rank: t.shape.len(),
                    max: MAX_TENSOR_RANK,
                });
            }
            if t.shape.contains(&0) {
                return Err(LayoutError::ZeroDim {
                    name: t.name.clone(),
                });
            }
            numel = t
                .numel()
                .and_then(|n| numel.checked_add(n))
                .filter(|n| {
                    n.checked_mul(DType::F32.size())
                        .is_some_and(|b| b <= MAX_MODEL_BYTES)
                })
                .ok_or(LayoutError::TooLarge {
                    max_bytes: MAX_MODEL_BYTES,
                })?;
        }
        Ok(Self { tensors, numel })
    }

    /// The tensors, in canonical order.
    pub fn tensors(&self) -> &[TensorSpec] {
        &self.tensors
    }

    /// Total number of elements over all tensors.
    pub fn numel(&self) -> u64 {
        self.numel
    }

    /// Size of the values as `f32` in bytes (every dtype is `F32` today): the byte stream's
    /// length in [`Encoding::F32Le`], and what `MAX_MODEL_BYTES` bounds.
    pub fn byte_len(&self) -> u64 {
        self.numel * DType::F32.size()
    }

    /// Length of the byte stream of these values in `encoding`: 4 bytes per value for
    /// `F32Le`, 2 for `F16Le` and `Bf16Le`, and for `Int8` one byte per value plus a 4-byte
    /// scale per block, blocks counted per tensor. At most `byte_len()` plus 4 bytes per
    /// tensor for any block size of at least 2 (an `Int8` block size of 0 counts as 1).
    pub fn encoded_len(&self, encoding: Encoding) -> u64 {
        self.tensors
            .iter()
            .map(|t| encoding.tensor_len(t.numel().unwrap_or(0)))
            .fold(0u64, u64::saturating_add)
    }

    /// Element range of each tensor inside the flat value vector, in canonical order.
    pub fn ranges(&self) -> impl Iterator<Item = (&TensorSpec, std::ops::Range<usize>)> {
        let mut start = 0usize;
        self.tensors.iter().map(move |t| {
            // numel fits: the whole layout's numel was checked to fit MAX_MODEL_BYTES.
            let n = t.numel().unwrap_or(0) as usize;
            let range = start..start + n;
            start += n;
            (t, range)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_by_name_and_counts() {
        let l = Layout::new(vec![
            TensorSpec::f32("b", &[2, 3]),
            TensorSpec::f32("a", &[4]),
        ])
        .unwrap();
        let names: Vec<_> = l.tensors().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(l.numel(), 10);
        assert_eq!(l.byte_len(), 40);
        let ranges: Vec<_> = l.ranges().map(|(t, r)| (t.name.clone(), r)).collect();
        assert_eq!(ranges, [("a".to_string(), 0..4), ("b".to_string(), 4..10)]);
    }

    #[test]
    fn rejects_what_it_must() {
        assert_eq!(Layout::new(vec![]), Err(LayoutError::Empty));
        let dup = Layout::new(vec![TensorSpec::f32("a", &[1]), TensorSpec::f32("a", &[2])]);
        assert_eq!(dup, Err(LayoutError::DuplicateName { name: "a".into() }));
        let unsorted =
            Layout::from_sorted(vec![TensorSpec::f32("b", &[1]), TensorSpec::f32("a", &[1])]);
        assert!(matches!(unsorted, Err(LayoutError::NotSorted { .. })));
        assert!(matches!(
            Layout::new(vec![TensorSpec::f32("z", &[0])]),
            Err(LayoutError::ZeroDim { .. })
        ));
        let huge = Layout::new(vec![TensorSpec::f32("h", &[u64::MAX, 2])]);
        assert!(matches!(huge, Err(LayoutError::TooLarge { .. })));
        let deep = Layout::new(vec![TensorSpec::f32("d", &[1; 9])]);
        assert!(matches!(
            deep,
            Err(LayoutError::RankTooHigh { rank: 9, .. })
        ));
    }
}
