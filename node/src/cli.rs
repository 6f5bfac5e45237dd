//! The command line: one clap struct per command, and [`run`] to dispatch. Commands appear
//! here only once they work.

use crate::bench;
use crate::logging::LogFormat;
use anyhow::Context;
use clap::{Parser, Subcommand};

/// murmur: gossip-based decentralized learning over libp2p.
#[derive(Debug, Parser)]
#[command(name = "murmur", version, about, long_about = None)]
pub struct Cli {
    /// Log line format (filter with RUST_LOG, e.g. RUST_LOG=murmur_node=debug).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start N peers on this machine and watch them converge.
    Testnet(crate::testnet::TestnetArgs),
    /// Simulate N peers in one process, in virtual time (real averaging core, training
    /// and merges; simulated network, churn and hostile peers).
    Sim(crate::sim::SimArgs),
    /// Write a commented peer.toml with every key at its default.
    Init(crate::init::InitArgs),
    /// Run one peer of a network (config file + flag overrides).
    Run(crate::run::RunArgs),
    /// Train one model on one machine (centrally, or on one peer's shard).
    Train(crate::train::command::TrainArgs),
    /// Benchmarks that print ratios against a baseline measured in the same run.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Checkpoint files.
    #[command(subcommand)]
    Checkpoint(CheckpointCommand),
    /// Print the peer id of a data directory's identity (created if missing), for another
    /// peer's `network.allow` or `network.deny`.
    Id(IdArgs),
    /// Print a fresh random pre-shared key (64 hex digits) for `network.psk`.
    Psk,
}

/// Arguments of `murmur id`.
#[derive(Debug, Clone, clap::Args)]
pub struct IdArgs {
    /// The node's data directory (its `identity.key`).
    #[arg(long, default_value = "murmur-data")]
    pub data_dir: std::path::PathBuf,
}

/// Commands on a node's checkpoint file.
#[derive(Debug, Subcommand)]
pub enum CheckpointCommand {
    /// Read a checkpoint as a node does at start (sizes, trailing blake3, manifest id, every
    /// chunk hash) and print what it holds; exits non-zero if it is missing or not intact.
    Verify(VerifyArgs),
}

/// Arguments of `murmur checkpoint verify`.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// The checkpoint file, or a node's data dir (its `checkpoint.bin` is read).
    pub path: std::path::PathBuf,
    /// Print one JSON line instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `murmur checkpoint verify`: loads the checkpoint and prints what it holds.
fn verify_checkpoint(args: &VerifyArgs) -> anyhow::Result<()> {
    use crate::store::checkpoint;
    let path = if args.path.is_dir() {
        checkpoint::checkpoint_path(&args.path)
    } else {
        args.path.clone()
    };
    let ck = checkpoint::load(&path)?
        .ok_or_else(|| anyhow::anyhow!("no checkpoint at {}", path.display()))?;
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    if args.json {
        let line = serde_json::json!({
            "path": path.display().to_string(),
            "ok": true,
            "version": ck.version,
            "samples": ck.samples,
            "manifest": ck.manifest_id.to_hex(),
            "params": ck.params.values().len(),
            "bytes": bytes,
        });
        println!("{line}");
    } else {
        println!(
            "ok: {}: version {}, samples {}, manifest {}, {} parameters, {} bytes",
            path.display(),
            ck.version,
            ck.samples,
            ck.manifest_id.to_hex(),
            ck.params.values().len(),
            bytes
        );
    }
    Ok(())
}

impl Command {
    /// The compute threads the command asked for (0 = one per core).
    pub fn threads(&self) -> usize {
        match self {
            Command::Train(args) => args.threads,
            // One thread per candle op: the simulation runs peers in parallel on its own pool
            // (`--threads`), and the variable spares candle a read of /proc/cpuinfo per op.
            Command::Sim(_) => 1,
            Command::Run(args) => args.threads(),
            Command::Init(_)
            | Command::Testnet(_)
            | Command::Checkpoint(_)
            | Command::Id(_)
            | Command::Psk => 0,
            // The centralized baselines run on one thread, as each peer does.
            Command::Bench(BenchCommand::Converge(_)) => 1,
            Command::Bench(_) => 0,
        }
    }
}

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Chunk and hash a parameter buffer, against plain blake3 over the same bytes.
    Chunking(bench::chunking::ChunkingArgs),
    /// Time to a target accuracy: centralized training against an N-peer testnet.
    Converge(Box<bench::converge::ConvergeArgs>),
    /// The attack matrix: an all-honest testnet, then each hostile behaviour against the
    /// default defences and against the plain mean.
    Hostile(Box<bench::hostile::HostileArgs>),
    /// Pull a model from another node over loopback, against a plain TCP copy.
    Transfer(bench::transfer::TransferArgs),
}

/// Runs `future` to completion on a new multi-threaded tokio runtime (the commands that
/// need the network; the others stay synchronous). The runtime's threads register their CPU
/// clocks in [`crate::cpu::RUNTIME`] (a node's communication overhead); the calling thread,
/// which only sets up and waits, does not.
fn block_on<F: std::future::Future>(future: F) -> anyhow::Result<F::Output> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    let runtime = crate::cpu::count_runtime_threads(&mut builder)
        .build()
        .context("starting the async runtime")?;
    Ok(runtime.block_on(future))
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Init(args) => crate::init::run(&args),
        Command::Checkpoint(CheckpointCommand::Verify(args)) => verify_checkpoint(&args),
        Command::Id(args) => {
            let key = crate::identity::load_or_create(&args.data_dir)?;
            println!("{}", key.public().to_peer_id());
            Ok(())
        }
        Command::Psk => {
            println!("{}", crate::network::access::new_psk_hex(&mut rand::rng()));
            Ok(())
        }
        Command::Testnet(args) => {
            let summary = block_on(crate::testnet::run(&args))??;
            summary.print(args.json);
            Ok(())
        }
        Command::Run(args) => block_on(crate::run::run(&args))?,
        Command::Sim(args) => {
            let summary = crate::sim::run(&args)?;
            summary.print(args.json);
            if let Some(addr) = args.serve {
                block_on(crate::sim::serve(addr, &summary))??;
            }
            Ok(())
        }
        Command::Train(args) => {
            let report = crate::train::command::run(&args)?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "{} {} on {} examples: test accuracy {:.2}%, loss {:.4}, {:.1}s, {:.0} samples/s",
                    report.dataset,
                    report.model,
                    report.train_samples,
                    report.accuracy * 100.0,
                    report.loss,
                    report.seconds,
                    report.samples_per_sec
                );
            }
            Ok(())
        }
        Command::Bench(BenchCommand::Converge(args)) => {
            let report = block_on(bench::converge::run(&args))??;
            report.print(args.json);
            Ok(())
        }
        Command::Bench(BenchCommand::Hostile(args)) => {
            let report = block_on(bench::hostile::run(&args))??;
            report.print(args.json);
            Ok(())
        }
        Command::Bench(BenchCommand::Transfer(args)) => {
            let report = block_on(bench::transfer::run(&args))??;
            report.print(args.json);
            Ok(())
        }
        Command::Bench(BenchCommand::Chunking(args)) => {
            let report = bench::chunking::run(&args)?;
            report.print(args.json);
            Ok(())
        }
    }
}
