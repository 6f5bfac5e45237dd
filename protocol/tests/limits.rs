//! Limits: oversized frames and oversized length claims inside a body are refused before
//! anything is allocated for them, with an error that names the limit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use murmur_protocol::codec::{
    WIRE_VERSION, decode_announce, decode_frame_len, decode_request, decode_response,
};
use murmur_protocol::limits::{MAX_ANNOUNCE_BYTES, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES};
use murmur_protocol::{DecodeError, MessageKind};

#[test]
fn frame_prefix_over_the_kind_limit_is_refused() {
    let too_big = (MAX_RESPONSE_BYTES as u32 + 1).to_le_bytes();
    match decode_frame_len(MessageKind::Response, too_big) {
        Err(DecodeError::TooLarge {
            kind: MessageKind::Response,
            max,
            ..
        }) => {
            assert_eq!(max, MAX_RESPONSE_BYTES)
        }
        other => panic!("{other:?}"),
    }
    let req = (MAX_REQUEST_BYTES as u32 + 1).to_le_bytes();
    assert!(matches!(
        decode_frame_len(MessageKind::Request, req),
        Err(DecodeError::TooLarge { .. })
    ));
    assert!(matches!(
        decode_frame_len(MessageKind::Request, [0; 4]),
        Err(DecodeError::Empty { .. })
    ));
    assert_eq!(
        decode_frame_len(MessageKind::Request, 40u32.to_le_bytes()).unwrap(),
        40
    );
}

#[test]
fn oversized_bodies_are_refused_before_decoding() {
    let big = vec![WIRE_VERSION; MAX_ANNOUNCE_BYTES + 1];
    assert!(matches!(
        decode_announce(&big),
        Err(DecodeError::TooLarge { .. })
    ));
}

/// A chunk response claiming one chunk of 2^40 bytes, in a 20-byte body.
fn lying_response() -> Vec<u8> {
    let mut body = vec![WIRE_VERSION];
    body.extend_from_slice(&1u32.to_le_bytes()); // Response::Chunks
    body.extend_from_slice(&1u64.to_le_bytes()); // one reply
    body.extend_from_slice(&0u32.to_le_bytes()); // ChunkReply::Data
    body.extend_from_slice(&(1u64 << 40).to_le_bytes()); // claimed length
    body
}

#[test]
fn length_claims_inside_a_body_are_refused() {
    assert!(matches!(
        decode_response(&lying_response()),
        Err(DecodeError::Malformed { .. })
    ));
    // A chunk request claiming 2^60 ids.
    let mut body = vec![WIRE_VERSION];
    body.extend_from_slice(&1u32.to_le_bytes());
    body.extend_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(decode_request(&body).is_err());
}

#[test]
fn unknown_versions_are_named() {
    let mut body = lying_response();
    body[0] = 9;
    match decode_response(&body) {
        Err(DecodeError::UnsupportedVersion {
            got: 9, supported, ..
        }) => assert_eq!(supported, WIRE_VERSION),
        other => panic!("{other:?}"),
    }
}
