//! The node's checkpoints: when the next one is due, writing one off the async runtime, and
//! what a failed write does (logged, counted, retried with a doubling backoff; training and
//! serving go on). The checkpoint file itself is [`crate::store::checkpoint`]'s.

use super::*;

/// Longest wait between two checkpoint attempts after failures in a row (a full disk or a
/// read-only data dir): the wait doubles from `checkpoint_every` after each failure, up to
/// this (or `checkpoint_every`, if longer).
pub const CHECKPOINT_MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The wait before the next checkpoint attempt after `failing` failures in a row: `every`,
/// doubled per failure, at most [`CHECKPOINT_MAX_BACKOFF`] (or `every`, if longer).
fn checkpoint_backoff(every: Duration, failing: u32) -> Duration {
    let backoff = every.saturating_mul(1 << failing.min(16));
    backoff.min(CHECKPOINT_MAX_BACKOFF.max(every))
}

impl NodeTask {
    /// How long after the last checkpoint attempt the next one is due: `checkpoint_every`,
    /// doubled for each failure in a row, up to [`CHECKPOINT_MAX_BACKOFF`].
    pub(super) fn checkpoint_wait(&self) -> Duration {
        checkpoint_backoff(self.opts.checkpoint_every, self.checkpoint_failing)
    }

    /// Writes a checkpoint; on failure logs the path and the cause, counts it, keeps the
    /// model to write at shutdown and backs off. Never fails the caller: a full disk or a
    /// read-only data dir must not stop training or serving.
    pub(super) async fn checkpoint(&mut self, params: FlatParams, version: u64, samples: u64) {
        match self.save_checkpoint(params.clone(), version, samples).await {
            Ok(()) => {
                Counters::inc(&self.counters.checkpoints);
                if self.checkpoint_failing > 0 {
                    tracing::info!(
                        version,
                        failed = self.checkpoint_failing,
                        "checkpoint written again after failures"
                    );
                }
                self.checkpoint_failing = 0;
                self.checkpoint_error = None;
                self.checkpoint_version = Some(version);
                tracing::debug!(version, "checkpoint written");
            }
            Err(e) => {
                Counters::inc(&self.counters.checkpoint_failures);
                self.checkpoint_failing = self.checkpoint_failing.saturating_add(1);
                // The error's own text names the file and the cause (its source chain would
                // repeat the cause).
                let error = e.to_string();
                tracing::error!(
                    version,
                    failed_in_a_row = self.checkpoint_failing,
                    retry_in_secs = self.checkpoint_wait().as_secs_f64(),
                    "checkpoint not written (training and serving go on; the previous checkpoint stays): {error}"
                );
                self.checkpoint_error = Some(error);
                self.unsaved = Some((params, version, samples));
            }
        }
    }

    /// Writes a checkpoint off the async runtime.
    pub(super) async fn save_checkpoint(
        &self,
        params: FlatParams,
        version: u64,
        samples: u64,
    ) -> anyhow::Result<()> {
        let path = checkpoint::checkpoint_path(&self.opts.data_dir);
        let chunk_size = self.opts.chunk_size;
        tokio::task::spawn_blocking(move || {
            crate::cpu::on_comm_pool(|| {
                let snapshot = Snapshot::from_params(params, chunk_size)?;
                anyhow::Ok(checkpoint::save(&path, version, samples, &snapshot)?)
            })
        })
        .await??;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn checkpoint_retries_back_off_to_a_ceiling() {
        let every = Duration::from_secs(2);
        let waits: Vec<u64> = (0..8)
            .map(|n| checkpoint_backoff(every, n).as_secs())
            .collect();
        assert_eq!(waits, [2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(checkpoint_backoff(every, u32::MAX), CHECKPOINT_MAX_BACKOFF);
        // An interval longer than the ceiling is kept as it is.
        let hour = Duration::from_secs(3600);
        assert_eq!(checkpoint_backoff(hour, 5), hour);
        let fast = Duration::from_millis(10);
        assert_eq!(checkpoint_backoff(fast, 0), fast);
        assert_eq!(checkpoint_backoff(fast, 3), Duration::from_millis(80));
    }
}
