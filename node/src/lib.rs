//! # murmur-node
//!
//! The murmur peer as a library; `src/main.rs` is a thin shell over it.
//!
//! ## Layout
//! - [`api`]: the read-only HTTP API and dashboard every node serves (axum), and `/metrics`.
//! - [`averaging`]: the IO-less averaging core, the pure rules it uses, and the chunk fetch.
//! - [`bench`]: benchmarks that print ratios against a baseline run in the same process.
//! - [`cli`]: the command line (clap) and dispatch to each command.
//! - [`config`]: the peer's configuration file (`peer.toml`): defaults, loading, checks.
//! - [`cpu`]: CPU time by activity, read from the kernel's CPU clocks.
//! - [`data`]: datasets (built-in digits, IDX files) and their partition among peers.
//! - [`history`]: the ring buffer of network snapshots behind `/api/history`, and its recorder.
//! - [`hostile`]: hostile behaviours for tests and attack runs (poisoned models and claims).
//! - [`identity`]: the node's ed25519 identity in `<data_dir>/identity.key`.
//! - [`init`]: `murmur init`, which writes a commented `peer.toml`.
//! - [`logging`]: `tracing` setup: `RUST_LOG` filtering, text or JSON lines on stderr.
//! - [`metrics`]: the node's counters, one atomic per thing counted.
//! - [`model`]: the candle models and their parameters in canonical order.
//! - `names` (private): fixed names for small setting enums (config values and flags).
//! - [`network`]: the libp2p swarm in one event-loop task, and its [`network::Client`] handle.
//! - [`node`]: a running node: the task that drives the averaging core.
//! - [`run`]: `murmur run`, one peer from a config file.
//! - [`sim`]: `murmur sim`, many peers in one process in virtual time.
//! - [`status`]: what a node says about itself: its status snapshot and its events.
//! - [`store`]: the content-addressed chunk and manifest store, and checkpoints on disk.
//! - [`testnet`]: `murmur testnet`, N peer processes on this machine with a live summary.
//! - [`train`]: a [`train::Trainer`], merging partner models into it, the round cycle, its
//!   thread, `murmur train`.
//!
//! `docs/architecture.md` shows how data flows between them.

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
