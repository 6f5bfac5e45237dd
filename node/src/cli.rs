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
    /// Write a commented peer.toml with every key at its default.
    Init(crate::init::InitArgs),
    /// Run one peer of a network (config file + flag overrides).
    Run(crate::run::RunArgs),
    /// Train one model on one machine (centrally, or on one peer's shard).
    Train(crate::train::command::TrainArgs),
    /// Benchmarks that print ratios against a baseline measured in the same run.
    #[command(subcommand)]
    Bench(BenchCommand),
}

impl Command {
    /// The compute threads the command asked for (0 = one per core).
    pub fn threads(&self) -> usize {
        match self {
            Command::Train(args) => args.threads,
            Command::Run(args) => args.threads(),
            Command::Init(_) | Command::Testnet(_) => 0,
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
/// need the network; the others stay synchronous).
fn block_on<F: std::future::Future>(future: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    Ok(runtime.block_on(future))
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Init(args) => crate::init::run(&args),
        Command::Testnet(args) => {
            let summary = block_on(crate::testnet::run(&args))??;
            summary.print(args.json);
            Ok(())
        }
        Command::Run(args) => block_on(crate::run::run(&args))?,
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
