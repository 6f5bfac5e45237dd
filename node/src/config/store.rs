//! `[store]`: [`StoreConfig`], its defaults, its values in bytes and as a duration, and its
//! checks.
//!
//! Owns the keys and their ranges; it stores nothing (`crate::store` does, with these values).

use super::ConfigError;
use super::check::positive;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[store]`: the content-addressed chunk store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Most memory the chunk store holds, in MiB, >= 1. Omitted: 256.
    pub memory_budget_mb: u64,
    /// Least seconds between two checkpoints of the model, > 0 and at most 86400 (a day);
    /// fractions allowed (a round takes at least 0.25 s). Omitted: 2.
    pub checkpoint_every_secs: f64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            memory_budget_mb: 256,
            checkpoint_every_secs: 2.0,
        }
    }
}

impl StoreConfig {
    /// [`Self::memory_budget_mb`] in bytes (saturating).
    pub fn memory_budget_bytes(&self) -> u64 {
        self.memory_budget_mb.saturating_mul(1024 * 1024)
    }

    /// [`Self::checkpoint_every_secs`] as a duration (2 s if out of range; `validate` refuses
    /// such a value).
    pub fn checkpoint_every(&self) -> Duration {
        Duration::try_from_secs_f64(self.checkpoint_every_secs).unwrap_or(Duration::from_secs(2))
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.memory_budget_mb == 0 {
            return Err(ConfigError::invalid(
                "store.memory_budget_mb",
                0,
                "must be at least 1",
            ));
        }
        positive("store.checkpoint_every_secs", self.checkpoint_every_secs)?;
        if self.checkpoint_every_secs > 86_400.0 {
            return Err(ConfigError::invalid(
                "store.checkpoint_every_secs",
                self.checkpoint_every_secs,
                "must be at most 86400 (a day)",
            ));
        }
        Ok(())
    }
}
