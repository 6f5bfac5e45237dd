//! The `murmur` binary: parse the command line, set up logging, run the command. Everything
//! else is library code in `murmur_node`, which the tests call directly.

use clap::Parser;
use murmur_node::cli::Cli;

/// Training allocates and frees tensors of tens of MB every step. With glibc's malloc every
/// one of them came from a fresh mmap, so each step paid for zeroing new pages (a third of
/// CNN training time, measured with perf); mimalloc reuses more of them. It is built without
/// transparent huge pages (`no_thp`): with them, the kernel zeroing 2 MiB pages made a peer's
/// start-up (loading its data) take 0.27 to 0.87 s of CPU instead of 0.33 to 0.36 s, and CNN
/// training 5-15% slower. See docs/benchmarks.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // candle sizes both of its thread pools from RAYON_NUM_THREADS when they are first
    // used, so the variable is set before anything else runs. Without it candle works out
    // its default (the physical cores) again on every op, reading /proc/cpuinfo each time
    // (15% of a simulation's time, measured with perf): the default is asked once here.
    let threads = match cli.command.threads() {
        0 => candle_core::utils::get_num_threads(),
        n => n,
    };
    // SAFETY: only the main thread exists at this point; nothing reads the environment
    // concurrently.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
    if let Err(err) = murmur_node::logging::init(cli.log_format) {
        eprintln!("murmur: cannot set up logging: {err:#}");
        return std::process::ExitCode::FAILURE;
    }
    match murmur_node::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("murmur: error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
