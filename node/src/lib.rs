//! # murmur-node
//!
//! The murmur peer as a library; `src/main.rs` is a thin shell over it.
//!
//! ## Layout
//! - [`cli`]: the command line (clap) and dispatch to each command.
//! - [`logging`]: `tracing` setup: `RUST_LOG` filtering, text or JSON lines on stderr.
//! - [`bench`]: benchmarks that print ratios against a baseline run in the same process.
//!
//! The network, training, averaging, store and HTTP API modules arrive with the features
//! that need them; `docs/architecture.md` shows how data flows between them.

pub mod bench;
pub mod cli;
pub mod logging;
