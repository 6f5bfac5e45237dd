//! # murmur-tests
//!
//! Multi-node integration tests live in `tests/tests/*.rs`; shared helpers (starting a node
//! on port 0, waiting for a condition with a deadline) live here.
