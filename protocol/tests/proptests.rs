//! Property tests: decode(encode(x)) == x for every message kind, and no input (random,
//! bit-flipped or truncated) makes any decoder panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use murmur_protocol::codec::*;
use murmur_protocol::{
    Announce, ChunkId, ChunkReply, FlatParams, ManifestId, MetricsSummary, Request, Response,
    Snapshot, TensorSpec, assemble,
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
        ),
        prop::collection::vec(-1e6f32..1e6, 0..=64),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 1..=64), 0..=32),
    )
        .prop_map(
            |(
                m,
                version,
                samples,
                (accuracy, loss, merges, bytes_sent, bytes_received),
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
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        decode_all(&bytes);
        let mut versioned = bytes.clone();
        versioned.insert(0, WIRE_VERSION);
        decode_all(&versioned);
    }

    #[test]
    fn perturbed_encodings_never_panic(
        a in announce(), r in request(), s in response(), (params, cs) in model(),
        pos in any::<usize>(), bit in any::<u8>(), cut in any::<bool>(),
    ) {
        let snap = Snapshot::build(&params, cs).unwrap();
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
