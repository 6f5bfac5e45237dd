//! # murmur-node
//!
//! The murmur peer as a library; `src/main.rs` is a thin shell over it.
//!
//! ## Layout
//! - [`cli`]: the command line (clap) and dispatch to each command.
//! - [`logging`]: `tracing` setup: `RUST_LOG` filtering, text or JSON lines on stderr.
//! - [`bench`]: benchmarks that print ratios against a baseline run in the same process.
//! - [`data`]: datasets (built-in digits, IDX files) and their partition among peers.
//! - [`model`]: the candle models and their parameters in canonical order.
//! - [`train`]: a [`train::Trainer`] (model + optimizer + this peer's data) and `murmur train`.
//! - [`averaging`]: the IO-less averaging core and the pure rules it uses.
//! - [`sim`]: `murmur sim`, many peers in one process in virtual time.
//!
//! The network, averaging, store and HTTP API modules arrive with the features that need
//! them; `docs/architecture.md` shows how data flows between them.

pub mod api;
pub mod averaging;
pub mod bench;
pub mod cli;
pub mod config;
pub mod cpu;
pub mod data;
pub mod history;
pub mod hostile;
pub mod identity;
pub mod init;
pub mod logging;
pub mod metrics;
pub mod model;
mod names;
pub mod network;
pub mod node;
pub mod run;
pub mod sim;
pub mod status;
pub mod store;
pub mod testnet;
pub mod train;
