//! [`Encoding`]: how a model's `f32` values become the byte stream that is cut into chunks,
//! and back. Owns the value codecs (`f32`, IEEE half, bfloat16, block-quantized int8), their
//! names for configs, and [`quantize`], which gives the values a peer decodes.
//!
//! Every encoding walks the values in the layout's canonical order. `Int8` cuts each tensor
//! into blocks of `block` values (the last block of a tensor may be shorter; blocks never
//! span two tensors) and writes each block as its `f32` little-endian scale followed by one
//! `i8` per value.

use crate::error::{AssembleError, ManifestError};
use crate::limits::{DEFAULT_INT8_BLOCK, MAX_INT8_BLOCK, MIN_INT8_BLOCK};
use crate::params::FlatParams;
use crate::tensor::Layout;
use half::{bf16, f16};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How values are laid out in the chunked byte stream. Variants are numbered on the wire in
/// declaration order (see `docs/protocol.md`); new ones are appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Encoding {
    /// Every value as a 4-byte little-endian IEEE 754 float.
    F32Le,
    /// Every value as a 2-byte little-endian IEEE 754 half float, rounded to nearest even.
    F16Le,
    /// Every value as a 2-byte little-endian bfloat16, rounded to nearest even.
    Bf16Le,
    /// Per-block absmax quantization: each block of at most `block` values of one tensor is
    /// its scale (`f32` LE, `max|x| / 127`) then one `i8` per value, `round(x / scale)`.
    Int8 {
        /// Values per block, `MIN_INT8_BLOCK..=MAX_INT8_BLOCK`.
        block: u32,
    },
}

/// Bytes an `Int8` block's scale takes.
const SCALE_BYTES: usize = 4;

/// Largest quantized magnitude.
const QMAX: f32 = 127.0;

impl Encoding {
    /// `Int8` with [`DEFAULT_INT8_BLOCK`].
    pub const fn int8() -> Self {
        Encoding::Int8 {
            block: DEFAULT_INT8_BLOCK,
        }
    }

    /// The encoding's short name: `"f32"`, `"f16"`, `"bf16"` or `"int8"` (without the block
    /// size; [`Display`](fmt::Display) writes `int8:<block>`).
    pub const fn name(self) -> &'static str {
        match self {
            Encoding::F32Le => "f32",
            Encoding::F16Le => "f16",
            Encoding::Bf16Le => "bf16",
            Encoding::Int8 { .. } => "int8",
        }
    }

    /// Refuses an `Int8` block size outside `MIN_INT8_BLOCK..=MAX_INT8_BLOCK`.
    pub fn check(self) -> Result<(), ManifestError> {
        match self {
            Encoding::Int8 { block } if !(MIN_INT8_BLOCK..=MAX_INT8_BLOCK).contains(&block) => {
                Err(ManifestError::Int8Block {
                    got: block,
                    min: MIN_INT8_BLOCK,
                    max: MAX_INT8_BLOCK,
                })
            }
            _ => Ok(()),
        }
    }

    /// Encoded length of a tensor of `numel` values. An `Int8` block size of 0 is counted as
    /// 1 (such a manifest is refused by [`Encoding::check`]). Saturates instead of
    /// overflowing; a valid layout is far from `u64::MAX` in every encoding.
    pub(crate) fn tensor_len(self, numel: u64) -> u64 {
        match self {
            Encoding::F32Le => numel.saturating_mul(4),
            Encoding::F16Le | Encoding::Bf16Le => numel.saturating_mul(2),
            Encoding::Int8 { block } => {
                let blocks = numel.div_ceil(u64::from(block.max(1)));
                numel.saturating_add(blocks.saturating_mul(SCALE_BYTES as u64))
            }
        }
    }
}

impl fmt::Display for Encoding {
    /// `f32`, `f16`, `bf16` or `int8:<block>`: the form [`FromStr`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Encoding::Int8 { block } => write!(f, "int8:{block}"),
            other => f.write_str(other.name()),
        }
    }
}

/// A string that names no encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseEncodingError {
    #[error("unknown encoding {0:?}: expected f32, f16, bf16, int8 or int8:<block>")]
    Unknown(String),
    #[error("int8 block size {0:?} is not a whole number")]
    BlockNotANumber(String),
    #[error(transparent)]
    Block(#[from] ManifestError),
}

impl FromStr for Encoding {
    type Err = ParseEncodingError;

    /// Reads `f32`, `f16`, `bf16`, `int8` (with [`DEFAULT_INT8_BLOCK`]) or `int8:<block>`
    /// (block size within the limits).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let encoding = match s {
            "f32" => Encoding::F32Le,
            "f16" => Encoding::F16Le,
            "bf16" => Encoding::Bf16Le,
            "int8" => Encoding::int8(),
            _ => match s.strip_prefix("int8:") {
                Some(block) => Encoding::Int8 {
                    block: block
                        .parse()
                        .map_err(|_| ParseEncodingError::BlockNotANumber(block.to_string()))?,
                },
                None => return Err(ParseEncodingError::Unknown(s.to_string())),
            },
        };
        encoding.check()?;
        Ok(encoding)
    }
}

/// Encoding values failed: the encoding is invalid, or a value has no representation in it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuantizeError {
    #[error(transparent)]
    Encoding(#[from] ManifestError),
    #[error("value #{index} of tensor {tensor:?} ({value}) cannot be encoded as {encoding}")]
    Unrepresentable {
        encoding: &'static str,
        tensor: String,
        index: u64,
        value: f32,
    },
    /// The decoder refused what the encoder wrote: a bug in this crate, reported rather than
    /// served.
    #[error("encoded values do not decode: {0}")]
    Decode(#[from] AssembleError),
}

/// The values a peer gets by decoding `params` encoded with `encoding`: exactly what
/// [`assemble`](crate::assemble) returns for a snapshot built by
/// [`Snapshot::from_params_encoded`](crate::Snapshot::from_params_encoded) with the same
/// arguments (it runs the same encoder, then the same decoder). Fails where that build fails.
pub fn quantize(params: &FlatParams, encoding: Encoding) -> Result<FlatParams, QuantizeError> {
    if encoding == Encoding::F32Le {
        return Ok(params.clone());
    }
    let bytes = encode(params, encoding)?;
    let layout = params.layout().clone();
    let values = decode(&layout, encoding, &bytes)?;
    FlatParams::new(layout, values)
        .map_err(|e| QuantizeError::Decode(AssembleError::Manifest(e.into())))
}

/// The byte stream of `params` in `encoding` (`layout.encoded_len(encoding)` bytes). Finite
/// values that become infinite in `f16` or `bf16`, and non-finite values or blocks whose
/// scale overflows in `Int8`, are refused; `f16`/`bf16` keep NaN and infinities as such.
pub(crate) fn encode(params: &FlatParams, encoding: Encoding) -> Result<Vec<u8>, QuantizeError> {
    encoding.check()?;
    let layout = params.layout();
    // Bounded: a valid layout is at most MAX_MODEL_BYTES as f32, and every other encoding
    // takes at most 1.25 bytes per value plus a scale per tensor (MIN_INT8_BLOCK >= 16).
    let len = layout.encoded_len(encoding) as usize;
    let mut out = vec![0u8; len];
    let mut at = 0usize;
    for (spec, range) in layout.ranges() {
        let values = &params.values()[range];
        let n = encoding.tensor_len(values.len() as u64) as usize;
        let dst = &mut out[at..at + n];
        at += n;
        let bad = match encoding {
            Encoding::F32Le => {
                for (d, v) in dst.chunks_exact_mut(4).zip(values) {
                    d.copy_from_slice(&v.to_le_bytes());
                }
                None
            }
            Encoding::F16Le => encode_half(dst, values, |v| {
                let h = f16::from_f32(v);
                (h.to_le_bytes(), v.is_finite() && h.is_infinite())
            }),
            Encoding::Bf16Le => encode_half(dst, values, |v| {
                let h = bf16::from_f32(v);
                (h.to_le_bytes(), v.is_finite() && h.is_infinite())
            }),
            Encoding::Int8 { block } => encode_int8(dst, values, block as usize),
        };
        if let Some(index) = bad {
            return Err(QuantizeError::Unrepresentable {
                encoding: encoding.name(),
                tensor: spec.name.clone(),
                index: index as u64,
                value: values[index],
            });
        }
    }
    Ok(out)
}

/// Values per parallel work item of the 2-byte encoders and decoders.
const PAR_VALUES: usize = 64 * 1024;

/// Whether the codecs split their work across rayon's threads: only when the pool they run
/// in (or the global one) has more than one. With one, a parallel iterator would only hand
/// the work to that thread and wait, and the thread would spin idle after each piece (a
/// twentieth of a peer's CPU, measured with `perf` on the 8-peer testnet).
pub(crate) fn parallel() -> bool {
    rayon::current_num_threads() > 1
}

/// Runs `f` in a fresh rayon pool of `threads` threads (tests of both paths of [`parallel`]).
#[cfg(test)]
pub(crate) fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a test's thread pool starts")
        .install(f)
}

/// Writes each value's two bytes; returns the index of the first value `conv` flags.
fn encode_half(
    dst: &mut [u8],
    values: &[f32],
    conv: impl Fn(f32) -> ([u8; 2], bool) + Sync,
) -> Option<usize> {
    let piece = |(piece, (d, v)): (usize, (&mut [u8], &[f32]))| {
        let mut bad = None;
        for (i, (d, &v)) in d.chunks_exact_mut(2).zip(v).enumerate() {
            let (bytes, flagged) = conv(v);
            d.copy_from_slice(&bytes);
            if flagged && bad.is_none() {
                bad = Some(piece * PAR_VALUES + i);
            }
        }
        bad
    };
    if parallel() {
        dst.par_chunks_mut(2 * PAR_VALUES)
            .zip(values.par_chunks(PAR_VALUES))
            .enumerate()
            .filter_map(piece)
            .min()
    } else {
        dst.chunks_mut(2 * PAR_VALUES)
            .zip(values.chunks(PAR_VALUES))
            .enumerate()
            .filter_map(piece)
            .min()
    }
}

/// The scale of a block: `max|x| / 127`, `0.0` for an all-zero block. Fails with the index
/// of a value that is not finite, or of the largest one when 127 times the scale overflows
/// (the decoded values would not be finite).
fn int8_scale(values: &[f32]) -> Result<f32, usize> {
    let mut max = 0.0f32;
    for (i, v) in values.iter().enumerate() {
        if !v.is_finite() {
            return Err(i);
        }
        max = max.max(v.abs());
    }
    let scale = max / QMAX;
    if !(scale * QMAX).is_finite() {
        let at = values
            .iter()
            .position(|v| v.abs() == max)
            .unwrap_or_default();
        return Err(at);
    }
    Ok(scale)
}

/// Writes a tensor's int8 blocks; returns the index of the first value that cannot be encoded.
fn encode_int8(dst: &mut [u8], values: &[f32], block: usize) -> Option<usize> {
    let one = |(b, (d, v)): (usize, (&mut [u8], &[f32]))| {
        let scale = match int8_scale(v) {
            Ok(s) => s,
            Err(i) => return Some(b * block + i),
        };
        let (head, qs) = d.split_at_mut(SCALE_BYTES);
        head.copy_from_slice(&scale.to_le_bytes());
        for (q, &x) in qs.iter_mut().zip(v) {
            // A zero scale (an all-zero block, or one so small that max/127 underflows)
            // encodes every value as 0.
            let r = if scale > 0.0 {
                (x / scale).round().clamp(-QMAX, QMAX)
            } else {
                0.0
            };
            *q = (r as i8).to_le_bytes()[0];
        }
        None
    };
    if parallel() {
        dst.par_chunks_mut(block + SCALE_BYTES)
            .zip(values.par_chunks(block))
            .enumerate()
            .filter_map(one)
            .min()
    } else {
        dst.chunks_mut(block + SCALE_BYTES)
            .zip(values.chunks(block))
            .enumerate()
            .filter_map(one)
            .min()
    }
}

/// Decodes a byte stream of exactly `layout.encoded_len(encoding)` bytes into
/// `layout.numel()` values; refuses an invalid encoding and a stream of another length.
pub(crate) fn decode(
    layout: &Layout,
    encoding: Encoding,
    bytes: &[u8],
) -> Result<Vec<f32>, AssembleError> {
    encoding.check()?;
    let expected = layout.encoded_len(encoding);
    if bytes.len() as u64 != expected {
        return Err(AssembleError::StreamLength {
            expected,
            got: bytes.len() as u64,
        });
    }
    let mut values = vec![0.0f32; layout.numel() as usize];
    let mut at = 0usize;
    for (spec, range) in layout.ranges() {
        let n = encoding.tensor_len(range.len() as u64) as usize;
        // In bounds: the tensors' lengths sum to `expected`, the stream's length.
        let src = &bytes[at..at + n];
        at += n;
        let dst = &mut values[range];
        match encoding {
            Encoding::F32Le => {
                for (v, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
                    *v = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
                }
            }
            Encoding::F16Le => decode_half(dst, src, |b| f16::from_le_bytes(b).to_f32()),
            Encoding::Bf16Le => decode_half(dst, src, |b| bf16::from_le_bytes(b).to_f32()),
            Encoding::Int8 { block } => {
                let block = block as usize;
                let one = |(b, (v, s)): (usize, (&mut [f32], &[u8]))| {
                    decode_int8_block(v, s, &spec.name, b, block)
                };
                if parallel() {
                    dst.par_chunks_mut(block)
                        .zip(src.par_chunks(block + SCALE_BYTES))
                        .enumerate()
                        .try_for_each(one)?;
                } else {
                    dst.chunks_mut(block)
                        .zip(src.chunks(block + SCALE_BYTES))
                        .enumerate()
                        .try_for_each(one)?;
                }
            }
        }
    }
    Ok(values)
}

fn decode_half(dst: &mut [f32], src: &[u8], conv: impl Fn([u8; 2]) -> f32 + Sync) {
    let piece = |(v, s): (&mut [f32], &[u8])| {
        for (v, s) in v.iter_mut().zip(s.chunks_exact(2)) {
            *v = conv([s[0], s[1]]);
        }
    };
    if parallel() {
        dst.par_chunks_mut(PAR_VALUES)
            .zip(src.par_chunks(2 * PAR_VALUES))
            .for_each(piece);
    } else {
        dst.chunks_mut(PAR_VALUES)
            .zip(src.chunks(2 * PAR_VALUES))
            .for_each(piece);
    }
}

/// Decodes block `b` of a tensor: its scale must have its sign bit clear and 127 times it
/// must be finite, and no value may be -128, so every decoded value is finite.
fn decode_int8_block(
    dst: &mut [f32],
    src: &[u8],
    tensor: &str,
    b: usize,
    block: usize,
) -> Result<(), AssembleError> {
    let (head, qs) = src.split_at(SCALE_BYTES.min(src.len()));
    let scale = match head {
        [a, b0, c, d] => f32::from_le_bytes([*a, *b0, *c, *d]),
        _ => f32::NAN,
    };
    if scale.is_sign_negative() || !(scale * QMAX).is_finite() {
        return Err(AssembleError::BadScale {
            tensor: tensor.to_string(),
            block: b as u64,
            scale_bits: scale.to_bits(),
        });
    }
    for (i, (v, &q)) in dst.iter_mut().zip(qs).enumerate() {
        let q = i8::from_le_bytes([q]);
        if q == i8::MIN {
            return Err(AssembleError::Int8Value {
                tensor: tensor.to_string(),
                index: (b * block + i) as u64,
            });
        }
        *v = f32::from(q) * scale;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::TensorSpec;

    #[test]
    fn names_parse_and_print() {
        for (s, e) in [
            ("f32", Encoding::F32Le),
            ("f16", Encoding::F16Le),
            ("bf16", Encoding::Bf16Le),
            ("int8", Encoding::int8()),
            ("int8:16", Encoding::Int8 { block: 16 }),
        ] {
            assert_eq!(s.parse::<Encoding>().unwrap(), e);
            assert_eq!(e.to_string().parse::<Encoding>().unwrap(), e);
            assert!(s.starts_with(e.name()));
        }
        assert_eq!(
            Encoding::int8().to_string(),
            format!("int8:{DEFAULT_INT8_BLOCK}")
        );
        assert!(matches!(
            "f64".parse::<Encoding>(),
            Err(ParseEncodingError::Unknown(_))
        ));
        assert!(matches!(
            "int8:".parse::<Encoding>(),
            Err(ParseEncodingError::BlockNotANumber(_))
        ));
        assert!(matches!(
            "int8:-3".parse::<Encoding>(),
            Err(ParseEncodingError::BlockNotANumber(_))
        ));
        assert_eq!(
            "int8:8".parse::<Encoding>(),
            Err(ParseEncodingError::Block(ManifestError::Int8Block {
                got: 8,
                min: MIN_INT8_BLOCK,
                max: MAX_INT8_BLOCK
            }))
        );
        assert!(matches!(
            format!("int8:{}", MAX_INT8_BLOCK + 1).parse::<Encoding>(),
            Err(ParseEncodingError::Block(_))
        ));
    }

    fn one(values: Vec<f32>) -> FlatParams {
        let n = values.len() as u64;
        FlatParams::from_named(vec![(TensorSpec::f32("t", &[n]), values)]).unwrap()
    }

    #[test]
    fn int8_blocks_are_scale_then_values() {
        // 20 values, block 16: a full block and a block of 4.
        let mut v = vec![0.0f32; 20];
        v[0] = 127.0;
        v[1] = -63.5;
        v[16] = -2.54;
        v[17] = 1.0;
        let bytes = encode(&one(v), Encoding::Int8 { block: 16 }).unwrap();
        assert_eq!(bytes.len(), 4 + 16 + 4 + 4);
        assert_eq!(bytes[..4], 1.0f32.to_le_bytes());
        assert_eq!(bytes[4] as i8, 127);
        // -63.5 is a tie: rounds away from zero.
        assert_eq!(bytes[5] as i8, -64);
        assert_eq!(bytes[20..24], (2.54f32 / 127.0).to_le_bytes());
        assert_eq!(bytes[24] as i8, -127);
        assert_eq!(bytes[25] as i8, 50);
    }

    #[test]
    fn all_zero_and_underflowing_blocks_have_scale_zero() {
        let p = one(vec![0.0, -0.0, 1e-44, 0.0]);
        let bytes = encode(&p, Encoding::Int8 { block: 16 }).unwrap();
        assert_eq!(bytes[..4], 0.0f32.to_le_bytes());
        assert_eq!(
            quantize(&p, Encoding::Int8 { block: 16 }).unwrap().values(),
            &[0.0; 4]
        );
    }

    #[test]
    fn unrepresentable_values_are_refused() {
        // 65,519 rounds down to f16's largest value, 65,504; 65,520 rounds up to infinity.
        let edge = quantize(&one(vec![65_519.0, -65_519.0]), Encoding::F16Le).unwrap();
        assert_eq!(edge.values(), &[65_504.0, -65_504.0]);
        let f16_over = one(vec![1.0, -65_520.0]);
        assert_eq!(
            quantize(&f16_over, Encoding::F16Le),
            Err(QuantizeError::Unrepresentable {
                encoding: "f16",
                tensor: "t".into(),
                index: 1,
                value: -65_520.0
            })
        );
        assert!(quantize(&f16_over, Encoding::Bf16Le).is_ok());
        let bf16_over = one(vec![f32::MAX]);
        assert!(matches!(
            quantize(&bf16_over, Encoding::Bf16Le),
            Err(QuantizeError::Unrepresentable {
                encoding: "bf16",
                index: 0,
                ..
            })
        ));
        // f32::MAX / 127 * 127 overflows, so int8 refuses it too.
        assert!(matches!(
            quantize(&bf16_over, Encoding::int8()),
            Err(QuantizeError::Unrepresentable {
                encoding: "int8",
                index: 0,
                ..
            })
        ));
        let mut v = vec![0.5f32; 40];
        v[37] = f32::NAN;
        assert!(matches!(
            quantize(&one(v), Encoding::Int8 { block: 16 }),
            Err(QuantizeError::Unrepresentable { index: 37, .. })
        ));
        // Non-finite values stay what they are in f16 and bf16.
        let inf = one(vec![f32::INFINITY, f32::NEG_INFINITY]);
        assert_eq!(quantize(&inf, Encoding::F16Le).unwrap(), inf);
        assert!(matches!(
            quantize(&inf, Encoding::Int8 { block: 3 }),
            Err(QuantizeError::Encoding(ManifestError::Int8Block {
                got: 3,
                ..
            }))
        ));
    }

    /// The codecs run sequentially in a one-thread pool and in parallel in a larger one:
    /// both give the same bytes, the same decoded values and the same first bad index.
    #[test]
    fn one_thread_and_several_encode_and_decode_alike() {
        let run = |threads: usize| {
            in_pool(threads, || {
                assert_eq!(parallel(), threads > 1);
                // Three pieces of PAR_VALUES and a short one; a bad value in the third.
                let n = 3 * PAR_VALUES + 100;
                let good = one((0..n).map(|i| (i as f32 * 0.37).sin() * 3.0).collect());
                let mut bad = good.values().to_vec();
                bad[2 * PAR_VALUES + 5] = f32::NAN;
                bad[2 * PAR_VALUES + 9] = f32::INFINITY;
                let bad = one(bad);
                let mut out = Vec::new();
                for e in [Encoding::F16Le, Encoding::Bf16Le, Encoding::int8()] {
                    let bytes = encode(&good, e).unwrap();
                    let values = decode(good.layout(), e, &bytes).unwrap();
                    let refused = match e {
                        // Non-finite values pass through the half floats; int8 refuses them.
                        Encoding::Int8 { .. } => format!("{:?}", encode(&bad, e).err()),
                        _ => String::new(),
                    };
                    out.push((bytes, values, refused));
                }
                out
            })
        };
        let (alone, together) = (run(1), run(3));
        assert!(
            alone[2]
                .2
                .contains(&format!("index: {}", 2 * PAR_VALUES + 5))
        );
        assert_eq!(alone, together);
    }

    #[test]
    fn decode_refuses_a_stream_of_the_wrong_length() {
        let p = one(vec![1.0; 20]);
        let encoding = Encoding::Int8 { block: 16 };
        let bytes = encode(&p, encoding).unwrap();
        assert_eq!(bytes.len(), 28);
        for len in [0, 27] {
            assert_eq!(
                decode(p.layout(), encoding, &bytes[..len]),
                Err(AssembleError::StreamLength {
                    expected: 28,
                    got: len as u64
                })
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(decode(p.layout(), encoding, &long).is_err());
        assert!(matches!(
            decode(p.layout(), Encoding::Int8 { block: 0 }, &bytes),
            Err(AssembleError::Manifest(ManifestError::Int8Block {
                got: 0,
                ..
            }))
        ));
        assert_eq!(decode(p.layout(), encoding, &bytes).unwrap(), vec![1.0; 20]);
    }

    #[test]
    fn encoded_lengths() {
        let layout = Layout::new(vec![
            TensorSpec::f32("a", &[1]),
            TensorSpec::f32("b", &[16]),
            TensorSpec::f32("c", &[33]),
        ])
        .unwrap();
        assert_eq!(layout.encoded_len(Encoding::F32Le), layout.byte_len());
        assert_eq!(layout.encoded_len(Encoding::F32Le), 200);
        assert_eq!(layout.encoded_len(Encoding::F16Le), 100);
        assert_eq!(layout.encoded_len(Encoding::Bf16Le), 100);
        // Blocks per tensor: 1 + 1 + 3, each with a 4-byte scale.
        assert_eq!(layout.encoded_len(Encoding::Int8 { block: 16 }), 50 + 5 * 4);
        assert_eq!(layout.encoded_len(Encoding::Int8 { block: 0 }), 50 + 50 * 4);
    }
}
