//! `codec::decode_response` (a request-response response body, from any peer asked for a
//! manifest or chunks). Properties: never panics; what decodes re-encodes to the same bytes
//! and decodes again to an equal message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use murmur_protocol::codec::{decode_response, encode_response};

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = decode_response(data) else {
        return;
    };
    let bytes = encode_response(&msg).unwrap();
    assert_eq!(bytes, data, "response re-encodes differently");
    assert_eq!(decode_response(&bytes).unwrap(), msg);
});
