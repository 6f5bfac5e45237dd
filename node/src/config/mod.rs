//! The peer's configuration file (`peer.toml`): [`NodeConfig`], its defaults, loading it with
//! errors that name the file and the full key (`training.model`), and checking every value.
//!
//! Owns the file format, the defaults and the ranges. It does not read command-line flags (the
//! `run` command applies flag overrides to a loaded [`NodeConfig`] and calls
//! [`NodeConfig::validate`] again) and starts nothing: it only turns text into typed values.
//! Every key is documented in `docs/config.md`; [`template`] renders the commented file that
//! `murmur init` writes (`testnet/peer.example.toml` is its output for the defaults).
//!
//! Every table has `#[serde(deny_unknown_fields, default)]`: an omitted key takes its default, a
//! misspelt key is an error rather than a silently ignored setting.
//!
//! ## Layout
//! - this file: [`NodeConfig`] (the top-level keys `network_id` and `data_dir`, and one table
//!   per section), reading and parsing a file, the checks of the whole config, and the
//!   re-exports that keep every public type at `crate::config::X`;
//! - `network.rs`, `training.rs`, `averaging.rs`, `store.rs`, `dashboard.rs`: one section each,
//!   its struct, defaults, typed accessors and checks;
//! - `check.rs`: the range checks the sections share;
//! - `error.rs`: [`ConfigError`], and turning a TOML or serde error into one that names the
//!   full key (or the line and column);
//! - `text.rs`: the serde adapters for the values written as strings;
//! - [`template`]: the commented file `murmur init` writes;
//! - `tests.rs`: tests through the whole file (loading, defaults, every key's check); the
//!   sections and `error.rs` keep their own next to them.

pub mod template;

mod averaging;
mod check;
mod dashboard;
mod error;
mod network;
mod store;
mod text;
mod training;

#[cfg(test)]
mod tests;

pub use averaging::AveragingConfig;
pub use dashboard::DashboardConfig;
pub use error::{ConfigError, DOCS};
pub use network::NetworkConfig;
pub use store::StoreConfig;
pub use training::{NETWORK_LR, NETWORK_LR_DECAY_SAMPLES, TrainingConfig};

pub use crate::averaging::policy::{Staleness, Weighting};
pub use crate::averaging::robust::Aggregation;
pub use crate::train::optim::MomentumMode;

use check::quoted;
use error::{describe, line_column, locate};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Longest `network_id`, in characters.
pub const MAX_NETWORK_ID_LEN: usize = 64;

/// A whole peer configuration: one `peer.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Namespaces the gossip topic and the protocol ids: peers only talk to peers of the same
    /// network. 1 to 64 characters of `a-z`, `0-9` and `-`. Omitted: `murmur-local`.
    pub network_id: String,
    /// Directory for this peer's state (identity key, checkpoint), created if missing. A
    /// relative path is relative to the config file's directory ([`NodeConfig::load`]).
    /// Omitted: `murmur-data`.
    pub data_dir: PathBuf,
    pub network: NetworkConfig,
    pub training: TrainingConfig,
    pub averaging: AveragingConfig,
    pub store: StoreConfig,
    pub dashboard: DashboardConfig,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            network_id: "murmur-local".to_string(),
            data_dir: PathBuf::from("murmur-data"),
            network: NetworkConfig::default(),
            training: TrainingConfig::default(),
            averaging: AveragingConfig::default(),
            store: StoreConfig::default(),
            dashboard: DashboardConfig::default(),
        }
    }
}

/// Largest config file read: a full config is under 7 KiB (`testnet/peer.example.toml`,
/// comments included); anything near this is not one (a wrong path such as a dataset or a
/// device), and is refused before it is read whole.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Reads at most [`MAX_CONFIG_BYTES`] of UTF-8 text.
pub(crate) fn read_bounded(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_CONFIG_BYTES} bytes; not a murmur config"),
        ));
    }
    Ok(text)
}

impl NodeConfig {
    /// Reads, parses and validates the file at `path`, then resolves relative `data_dir` and
    /// `training.data_dir` against the file's directory. Every error names the file.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = read_bounded(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg = Self::from_toml_str(&text, &path.display().to_string())?;
        if let Some(dir) = path.parent() {
            cfg.resolve_relative_paths(dir);
        }
        Ok(cfg)
    }

    /// Parses and validates TOML `text`; errors start with `origin` (a file name, or e.g.
    /// `--config-text`). Paths are left as written.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<NodeConfig, ConfigError> {
        let tree = match toml::de::DeTable::parse(text) {
            Ok(tree) => tree,
            Err(err) => {
                let (line, column) = line_column(text, err.span().map_or(0, |s| s.start));
                return Err(ConfigError::Syntax {
                    origin: origin.to_string(),
                    line,
                    column,
                    message: err.message().to_string(),
                });
            }
        };
        let cfg: NodeConfig = toml::from_str(text).map_err(|err| {
            let mut places = Vec::new();
            locate(tree.get_ref(), "", &mut places);
            describe(&err, text, &places, origin)
        })?;
        cfg.validate().map_err(|e| e.in_origin(origin))?;
        Ok(cfg)
    }

    /// Makes relative `data_dir` and `training.data_dir` relative to `base` instead (the
    /// config file's directory).
    pub fn resolve_relative_paths(&mut self, base: &Path) {
        if self.data_dir.is_relative() {
            self.data_dir = base.join(&self.data_dir);
        }
        if let Some(dir) = &mut self.training.data_dir
            && dir.is_relative()
        {
            *dir = base.join(&*dir);
        }
    }

    /// Checks every value's range and the values serde cannot check (a config built in code or
    /// changed by flags must pass this before use). The first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let id = &self.network_id;
        if id.is_empty()
            || id.chars().count() > MAX_NETWORK_ID_LEN
            || !id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(ConfigError::invalid(
                "network_id",
                quoted(id),
                format!("must be 1 to {MAX_NETWORK_ID_LEN} characters of a-z, 0-9 and -"),
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                "data_dir",
                "\"\"",
                "must not be empty",
            ));
        }
        self.network.validate()?;
        self.training.validate()?;
        self.averaging.validate()?;
        self.store.validate()
    }
}
