//! The command line: one clap struct per command, and [`run`] to dispatch. Commands appear
//! here only once they work.

use crate::bench;
use crate::logging::LogFormat;
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
    /// Benchmarks that print ratios against a baseline measured in the same run.
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Chunk and hash a parameter buffer, against plain blake3 over the same bytes.
    Chunking(bench::chunking::ChunkingArgs),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Bench(BenchCommand::Chunking(args)) => {
            let report = bench::chunking::run(&args)?;
            report.print(args.json);
            Ok(())
        }
    }
}
