//! Property tests: decode(encode(x)) == x for every message kind; every model encoding
//! decodes to exactly `quantize` and within its error bound; and no input (random,
//! bit-flipped or truncated) makes any decoder panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use murmur_protocol::codec::*;
use murmur_protocol::{
    Announce, ChunkId, ChunkReply, Encoding, FlatParams, ManifestId, MetricsSummary, Request,
    Response, Snapshot, TensorSpec, assemble, quantize,
};
use proptest::prelude::*;

fn id() -> impl Strategy<Value = [u8; 32]> {
    proptest::array::uniform32(any::<u8>())
}

fn announce() -> impl Strategy<Value = Announce> {
    (
        id(),
        any::<u64>(),
        any::<u64>(),
        (
            0.0f32..=1.0,
            0.0f32..1e6,
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            0.0f32..=1.0,
            0.0f32..=1.0,
        ),
        prop::collection::vec(-1e6f32..1e6, 0..=64),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 1..=64), 0..=32),
    )
        .prop_map(
            |(
                m,
                version,
                samples,
                (accuracy, loss, merges, bytes_sent, bytes_received, train_share, comm_share),
                projection,
                n,
            )| {
                Announce {
                    manifest: ManifestId::from_bytes(m),
                    version,
                    samples,
                    metrics: MetricsSummary {
                        accuracy,
                        loss,
                        merges,
                        bytes_sent,
                        bytes_received,
                        train_share,
                        comm_share,
                    },
                    projection,
                    neighbours: n.into_iter().map(Bytes::from).collect(),
                }
            },
        )
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        id().prop_map(|b| Request::Manifest(ManifestId::from_bytes(b))),
        prop::collection::vec(id().prop_map(ChunkId::from_bytes), 1..=64).prop_map(Request::Chunks),
    ]
}

fn response() -> impl Strategy<Value = Response> {
    let reply = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300).prop_map(|d| ChunkReply::Data(Bytes::from(d))),
        Just(ChunkReply::NotHeld),
        Just(ChunkReply::OverBudget),
    ];
    prop_oneof![
        prop::option::of(prop::collection::vec(any::<u8>(), 0..300))
            .prop_map(|m| Response::Manifest(m.map(Bytes::from))),
        prop::collection::vec(reply, 0..=64).prop_map(Response::Chunks),
        Just(Response::Busy),
    ]
}

fn model() -> impl Strategy<Value = (FlatParams, u32)> {
    (
        prop::collection::btree_map("[a-z.]{1,12}", prop::collection::vec(1u64..6, 1..=3), 1..6),
        64u32..400,
    )
        .prop_map(|(tensors, chunk_size)| {
            let named = tensors
                .into_iter()
                .map(|(name, shape)| {
                    let n: u64 = shape.iter().product();
                    let values = (0..n).map(|i| i as f32 * 0.37 - 1.0).collect();
                    (TensorSpec::f32(name, &shape), values)
                })
                .collect();
            (FlatParams::from_named(named).unwrap(), chunk_size)
        })
}

/// A finite value: mostly moderate, some tiny (but normal in `f32`, `bf16` and as an int8
/// scale), some zero.
fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        6 => -1e3f32..1e3,
        2 => -1e-3f32..1e-3,
        1 => (1e-30f32..1e-20, any::<bool>()).prop_map(|(v, neg)| if neg { -v } else { v }),
        1 => Just(0.0f32),
    ]
}

fn encoding() -> impl Strategy<Value = Encoding> {
    prop_oneof![
        Just(Encoding::F32Le),
        Just(Encoding::F16Le),
        Just(Encoding::Bf16Le),
        (16u32..=40).prop_map(|block| Encoding::Int8 { block }),
    ]
}

/// A model of random finite values (tensors of up to 200 values, so int8 blocks are both
/// cut short and whole), a chunk size, and an encoding.
fn encoded_model() -> impl Strategy<Value = (FlatParams, u32, Encoding)> {
    (
        prop::collection::btree_map("[a-z.]{1,12}", prop::collection::vec(1u64..15, 1..=2), 1..5),
        64u32..400,
        encoding(),
    )
        .prop_flat_map(|(tensors, chunk_size, encoding)| {
            let specs: Vec<(String, Vec<u64>)> = tensors.into_iter().collect();
            let counts: Vec<usize> = specs
                .iter()
                .map(|(_, s)| s.iter().product::<u64>() as usize)
                .collect();
            let values: Vec<_> = counts
                .iter()
                .map(|&n| prop::collection::vec(value(), n))
                .collect();
            (Just(specs), values, Just(chunk_size), Just(encoding))
        })
        .prop_map(|(specs, values, chunk_size, encoding)| {
            let named = specs
                .into_iter()
                .zip(values)
                .map(|((name, shape), v)| (TensorSpec::f32(name, &shape), v))
                .collect();
            (FlatParams::from_named(named).unwrap(), chunk_size, encoding)
        })
}

/// Checks every decoded value against its encoding's error bound.
fn check_error_bound(
    original: &FlatParams,
    decoded: &FlatParams,
    encoding: Encoding,
) -> Result<(), TestCaseError> {
    for ((spec, xs), (_, ds)) in original.tensors().zip(decoded.tensors()) {
        match encoding {
            Encoding::F32Le => {
                for (x, d) in xs.iter().zip(ds) {
                    prop_assert_eq!(x.to_bits(), d.to_bits());
                }
            }
            Encoding::F16Le => {
                for (x, d) in xs.iter().zip(ds) {
                    let err = (x - d).abs();
                    // Normal half floats keep 11 significant bits; below 2^-14 the spacing
                    // is 2^-24, so half of it is the bound.
                    let bound = if x.abs() >= 2f32.powi(-14) {
                        x.abs() * 2f32.powi(-11)
                    } else {
                        2f32.powi(-25)
                    };
                    prop_assert!(
                        err <= bound,
                        "{}: {} -> {} (err {}, bound {})",
                        spec.name,
                        x,
                        d,
                        err,
                        bound
                    );
                }
            }
            Encoding::Bf16Le => {
                for (x, d) in xs.iter().zip(ds) {
                    let err = (x - d).abs();
                    prop_assert!(
                        err <= x.abs() * 2f32.powi(-8),
                        "{}: {} -> {}",
                        spec.name,
                        x,
                        d
                    );
                }
            }
            Encoding::Int8 { block } => {
                for (xb, db) in xs.chunks(block as usize).zip(ds.chunks(block as usize)) {
                    let max = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                    // Half a quantization step (max/127/2), plus f32 rounding of the scale,
                    // the quotient and the product.
                    let bound = max / 254.0 * (1.0 + 1e-4);
                    for (x, d) in xb.iter().zip(db) {
                        prop_assert!(d.is_finite());
                        prop_assert!(
                            (x - d).abs() <= bound,
                            "{}: {} -> {} (block max {})",
                            spec.name,
                            x,
                            d,
                            max
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

/// Every decoder on the same bytes; none may panic.
fn decode_all(bytes: &[u8]) {
    let _ = decode_announce(bytes);
    let _ = decode_request(bytes);
    let _ = decode_response(bytes);
    let _ = decode_manifest(bytes, &ManifestId::of(bytes));
    if let Ok(prefix) = <[u8; 4]>::try_from(bytes.get(..4).unwrap_or_default()) {
        let _ = decode_frame_len(murmur_protocol::MessageKind::Response, prefix);
    }
}

/// The encoding with one bit flipped, or cut short.
fn perturb(bytes: &[u8], pos: usize, bit: u8, cut: bool) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if out.is_empty() {
        return out;
    }
    let pos = pos % out.len();
    if cut {
        out.truncate(pos);
    } else {
        out[pos] ^= 1 << (bit % 8);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn announce_round_trips(a in announce()) {
        let bytes = encode_announce(&a).unwrap();
        prop_assert!(bytes.len() <= murmur_protocol::limits::MAX_ANNOUNCE_BYTES);
        prop_assert_eq!(decode_announce(&bytes).unwrap(), a);
    }

    #[test]
    fn request_round_trips(r in request()) {
        prop_assert_eq!(decode_request(&encode_request(&r).unwrap()).unwrap(), r);
    }

    #[test]
    fn response_round_trips(r in response()) {
        prop_assert_eq!(decode_response(&encode_response(&r).unwrap()).unwrap(), r);
    }

    #[test]
    fn manifest_and_chunks_round_trip((params, chunk_size) in model()) {
        let snap = Snapshot::build(&params, chunk_size).unwrap();
        let decoded = decode_manifest(&snap.manifest_bytes, &snap.id).unwrap();
        prop_assert_eq!(&decoded, &snap.manifest);
        prop_assert_eq!(encode_manifest(&decoded).unwrap(), snap.manifest_bytes.to_vec());
        let data: Vec<Bytes> = snap.chunks.iter().map(|c| c.data.clone()).collect();
        prop_assert_eq!(assemble(&decoded, &data).unwrap(), params);
    }

    #[test]
    fn encodings_decode_to_quantize_within_bounds((params, chunk_size, encoding) in encoded_model()) {
        let snap = Snapshot::from_params_encoded(params.clone(), encoding, chunk_size).unwrap();
        let layout = snap.manifest.validate().unwrap();
        prop_assert_eq!(snap.manifest.total_len, layout.encoded_len(encoding));
        let decoded_manifest = decode_manifest(&snap.manifest_bytes, &snap.id).unwrap();
        prop_assert_eq!(&decoded_manifest, &snap.manifest);
        let data: Vec<Bytes> = snap.chunks.iter().map(|c| c.data.clone()).collect();
        let decoded = assemble(&decoded_manifest, &data).unwrap();
        let expected = quantize(&params, encoding).unwrap();
        prop_assert_eq!(decoded.layout(), expected.layout());
        for (d, e) in decoded.values().iter().zip(expected.values()) {
            prop_assert_eq!(d.to_bits(), e.to_bits());
        }
        check_error_bound(&params, &decoded, encoding)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        decode_all(&bytes);
        let mut versioned = bytes.clone();
        versioned.insert(0, WIRE_VERSION);
        decode_all(&versioned);
    }

    #[test]
    fn perturbed_encodings_never_panic(
        a in announce(), r in request(), s in response(), (params, cs, encoding) in encoded_model(),
        pos in any::<usize>(), bit in any::<u8>(), cut in any::<bool>(),
    ) {
        let snap = Snapshot::from_params_encoded(params, encoding, cs).unwrap();
        for bytes in [
            encode_announce(&a).unwrap(),
            encode_request(&r).unwrap(),
            encode_response(&s).unwrap(),
            snap.manifest_bytes.to_vec(),
        ] {
            decode_all(&perturb(&bytes, pos, bit, cut));
        }
    }
}
