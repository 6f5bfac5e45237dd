//! `codec::decode_request` (a request-response request body, from any peer that opens a
//! stream). Properties: never panics; what decodes re-encodes to the same bytes and decodes
//! again to an equal message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use murmur_protocol::codec::{decode_request, encode_request};

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = decode_request(data) else {
        return;
    };
    let bytes = encode_request(&msg).unwrap();
    assert_eq!(bytes, data, "request re-encodes differently");
    assert_eq!(decode_request(&bytes).unwrap(), msg);
});
