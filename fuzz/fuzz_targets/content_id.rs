//! `ChunkId` / `ManifestId` `FromStr` (hex ids typed by users and read from API paths) and
//! `ChunkId::verify`. Properties: never panics; an id parses only from 64 hex characters and
//! prints back as their lowercase form; `verify` accepts exactly the bytes that hash to the id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use murmur_protocol::{ChunkId, ManifestId};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let chunk = text.parse::<ChunkId>();
        let manifest = text.parse::<ManifestId>();
        assert_eq!(chunk.is_ok(), manifest.is_ok());
        if let Ok(id) = chunk {
            assert_eq!(text.len(), 64);
            assert_eq!(id.to_hex(), text.to_ascii_lowercase());
            assert_eq!(id.to_hex().parse::<ChunkId>().unwrap(), id);
            assert_eq!(manifest.unwrap().as_bytes(), id.as_bytes());
            assert!(id.to_string().starts_with(&id.short()));
        }
    }
    let id = ChunkId::of(data);
    assert!(id.verify(data).is_ok());
    if let Some((last, rest)) = data.split_last() {
        // Dropping a byte changes the hash (no blake3 collision here), and verify names it.
        assert_eq!(id.verify(rest), Err(ChunkId::of(rest)));
        let mut flipped = data.to_vec();
        *flipped.last_mut().unwrap() = last ^ 0x80;
        assert!(id.verify(&flipped).is_err());
    }
});
