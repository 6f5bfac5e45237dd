//! Benchmarks. Each one measures murmur's code and a baseline in the same process, interleaved
//! round by round, and reports the ratio: these machines are noisy, so only ratios measured
//! side by side mean anything. Results and commands are kept in `docs/benchmarks.md`.

pub mod chunking;
pub mod converge;
pub mod hostile;
pub mod one_machine;
pub mod transfer;

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar on stderr for `len` steps of a benchmark.
pub(crate) fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}
