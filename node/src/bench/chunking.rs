//! `murmur bench chunking`: how fast a model snapshot is made, against the fastest thing it
//! could possibly be. Each round times, over the same bytes:
//! - baseline: `blake3::hash` of the whole byte stream (one thread, SIMD);
//! - murmur: [`Snapshot::from_params`] from the flat `f32` parameters, as the node does it
//!   after every round: the value buffer becomes the byte stream (no copy on little-endian
//!   machines), is cut into chunks, every chunk is hashed (in parallel) and the manifest is
//!   encoded and hashed. The buffer handed over is a fresh copy made outside the timing, as
//!   the node's export from the model is;
//! - murmur, borrowing: [`Snapshot::build`] from `&FlatParams`, which copies the buffer first;
//! - for reference, blake3's own multi-threaded `update_rayon` over the whole stream.
//!
//! The best round of each is reported (the least disturbed by other load), with the ratio.

use murmur_protocol::limits::DEFAULT_CHUNK_SIZE;
use murmur_protocol::{FlatParams, Snapshot, TensorSpec};
use serde::Serialize;
use std::time::{Duration, Instant};

/// Arguments of `murmur bench chunking`.
#[derive(Debug, Clone, clap::Args)]
pub struct ChunkingArgs {
    /// Size of the parameter buffer, in MB (10^6 bytes).
    #[arg(long, default_value_t = 100)]
    pub size_mb: u64,
    /// Chunk size in bytes.
    #[arg(long, default_value_t = DEFAULT_CHUNK_SIZE)]
    pub chunk_size: u32,
    /// Timed rounds (each runs baseline and murmur once); the best round of each counts.
    #[arg(long, default_value_t = 7)]
    pub rounds: u32,
    /// Print the report as one JSON line on stdout.
    #[arg(long)]
    pub json: bool,
}

/// What the benchmark measured. Throughputs are in GB/s (10^9 bytes per second).
#[derive(Debug, Clone, Serialize)]
pub struct ChunkingReport {
    pub bytes: u64,
    pub chunk_size: u32,
    pub chunks: usize,
    pub rounds: u32,
    pub threads: usize,
    pub blake3_gbps: f64,
    pub blake3_rayon_gbps: f64,
    pub chunking_gbps: f64,
    pub chunking_borrowed_gbps: f64,
    /// murmur chunking throughput / plain single-call blake3 throughput.
    pub ratio: f64,
    /// murmur chunking throughput / blake3 multi-threaded throughput.
    pub ratio_vs_rayon: f64,
}

impl ChunkingReport {
    /// Prints the report: a table, or one JSON line.
    pub fn print(&self, json: bool) {
        if json {
            println!("{}", serde_json::to_string(self).unwrap_or_default());
            return;
        }
        println!(
            "chunking {:.1} MB into {} chunks of {} bytes, best of {} rounds, {} threads",
            self.bytes as f64 / 1e6,
            self.chunks,
            self.chunk_size,
            self.rounds,
            self.threads
        );
        println!(
            "  plain blake3::hash (1 thread)     {:>7.2} GB/s",
            self.blake3_gbps
        );
        println!(
            "  blake3 update_rayon (all threads) {:>7.2} GB/s",
            self.blake3_rayon_gbps
        );
        println!(
            "  murmur Snapshot::from_params      {:>7.2} GB/s",
            self.chunking_gbps
        );
        println!(
            "  murmur Snapshot::build (copies)   {:>7.2} GB/s",
            self.chunking_borrowed_gbps
        );
        println!("  ratio murmur / plain blake3       {:>7.2}x", self.ratio);
        println!(
            "  ratio murmur / blake3 rayon       {:>7.2}x",
            self.ratio_vs_rayon
        );
    }
}

/// Deterministic pseudo-random parameters of about `bytes` bytes, in three tensors.
pub fn synthetic_params(bytes: u64) -> anyhow::Result<FlatParams> {
    let n = (bytes / 4).max(3);
    let (a, b) = (n / 2, n / 4);
    let c = n - a - b;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        // xorshift64*: fast, deterministic, good enough for filler values.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let x = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let tensors = [
        ("layer0.weight", a),
        ("layer1.weight", b),
        ("layer2.weight", c),
    ]
    .into_iter()
    .map(|(name, len)| {
        (
            TensorSpec::f32(name, &[len]),
            (0..len).map(|_| next()).collect(),
        )
    })
    .collect();
    Ok(FlatParams::from_named(tensors)?)
}

/// Runs the benchmark.
pub fn run(args: &ChunkingArgs) -> anyhow::Result<ChunkingReport> {
    anyhow::ensure!(args.rounds > 0, "--rounds must be at least 1");
    anyhow::ensure!(args.size_mb > 0, "--size-mb must be at least 1");
    let params = synthetic_params(args.size_mb * 1_000_000)?;
    let stream = params.to_le_bytes();
    let bytes = stream.len() as u64;

    let mut best = [Duration::MAX; 4];
    let mut chunks = 0;
    let bar = super::progress(u64::from(args.rounds), "chunking");
    for _ in 0..args.rounds {
        let t = Instant::now();
        let plain = blake3::hash(&stream);
        best[0] = best[0].min(t.elapsed());

        let t = Instant::now();
        let mut hasher = blake3::Hasher::new();
        hasher.update_rayon(&stream);
        let parallel = hasher.finalize();
        best[1] = best[1].min(t.elapsed());
        anyhow::ensure!(plain == parallel, "blake3 hashes disagree");

        let owned = params.clone();
        let t = Instant::now();
        let snapshot = Snapshot::from_params(owned, args.chunk_size)?;
        best[2] = best[2].min(t.elapsed());
        chunks = snapshot.chunks.len();
        drop(snapshot);

        let t = Instant::now();
        let snapshot = Snapshot::build(&params, args.chunk_size)?;
        best[3] = best[3].min(t.elapsed());
        drop(snapshot);
        bar.inc(1);
    }
    bar.finish_and_clear();

    let gbps = |d: Duration| bytes as f64 / d.as_secs_f64().max(1e-9) / 1e9;
    let (plain, rayon, ours) = (gbps(best[0]), gbps(best[1]), gbps(best[2]));
    Ok(ChunkingReport {
        bytes,
        chunk_size: args.chunk_size,
        chunks,
        rounds: args.rounds,
        threads: rayon::current_num_threads(),
        blake3_gbps: plain,
        blake3_rayon_gbps: rayon,
        chunking_gbps: ours,
        chunking_borrowed_gbps: gbps(best[3]),
        ratio: ours / plain,
        ratio_vs_rayon: ours / rayon,
    })
}
