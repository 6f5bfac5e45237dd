//! `codec::decode_announce` (gossip announcements, any bytes a peer publishes).
//! Properties: never panics; what decodes re-encodes to exactly the same bytes (the
//! encoding is canonical) and decodes again to an equal message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use murmur_protocol::codec::{decode_announce, encode_announce};

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = decode_announce(data) else {
        return;
    };
    let bytes = encode_announce(&msg).unwrap();
    assert_eq!(bytes, data, "announce re-encodes differently");
    assert_eq!(decode_announce(&bytes).unwrap(), msg);
});
