//! `[averaging]`: [`AveragingConfig`], its defaults, its values as durations, and its checks
//! (round, fanout, acceptance, chunking and timeouts).
//!
//! Owns the keys and their ranges; it runs no round and fetches nothing (`crate::averaging`
//! and `crate::node` do, with these values).

use super::check::{at_least, positive, unit_fraction};
use super::{Aggregation, ConfigError, Staleness, Weighting, text};
use murmur_protocol::limits::{DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[averaging]`: rounds of local training, and averaging with a few peers after each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AveragingConfig {
    /// Local training steps per round, >= 1. Omitted: 20.
    pub round_steps: usize,
    /// Seconds after which a round also ends, even short of `round_steps`; 0 = no time limit.
    /// Finite and >= 0. Omitted: 0.
    pub round_secs: f64,
    /// Peers averaged with per round, >= 1. Omitted: 7 (with `same-round`, a network of up
    /// to 8 peers then merges every peer's model of the round: exact averaging).
    pub fanout: usize,
    /// Seconds a round may wait, idle, after `round_steps` while its merge is gathered and
    /// fetched, so that the round ends on the merged model (evaluated; without `same-round`
    /// also announced and checkpointed); 0 = merge whenever the partners' models arrive.
    /// Finite, 0 to 60. Omitted: 1.
    pub merge_wait_secs: f64,
    /// How averaged models are weighed: `samples` (by training samples, a partner's claim
    /// capped at this peer's own) or `uniform`. Omitted: `uniform`.
    #[serde(with = "text")]
    pub weighting: Weighting,
    /// How partners' model age counts: `ignore` (drawn at random, weighed alike),
    /// `prefer-fresh` (drawn among those heard within this peer's last round, each weighed
    /// down by `1 + lag` in this peer's rounds) or `same-round` (each round announces its
    /// trained model before merging, then waits up to half of `merge_wait_secs` for up to
    /// `fanout` partners' models heard since its previous averaging, and merges only those,
    /// weighed alike; not with `overlap`). Omitted: `same-round`.
    #[serde(with = "text")]
    pub staleness: Staleness,
    /// How a merge combines the models that passed the acceptance check: `mean`, `clip`,
    /// `median` or `trimmed-mean`. Omitted: `clip`.
    #[serde(with = "text")]
    pub aggregation: Aggregation,
    /// With `clip`: a partner's difference from this peer's model is cut to this many times
    /// the distance scale (see `max_distance`), > 0. Omitted: 2.
    pub clip_factor: f64,
    /// A partner model farther from this peer's than this many times the distance scale
    /// (the lower median of recent partners' distances and this peer's own progress per
    /// round), and farther than this peer's model is from zero, is refused and its peer
    /// charged; >= 0, 0 = no distance check. Omitted: 6.
    pub max_distance: f64,
    /// A partner model whose loss on the held-back data exceeds this many times the
    /// reference loss (the larger of this peer's and the lower median of recent partners'),
    /// plus 0.5, is refused and its peer charged; >= 0, 0 = only non-finite losses are
    /// refused. Omitted: 2.
    pub accept_loss_ratio: f64,
    /// Outer learning rate applied to each merge's displacement, > 0 (1 with
    /// `outer_momentum` 0 = the plain merge). Omitted: 1.
    pub outer_lr: f64,
    /// Outer Nesterov momentum on merges, in `[0, 1)`. Omitted: 0.
    pub outer_momentum: f64,
    /// Seconds after which a peer's announcement is too old to pick it, >= 1. Omitted: 30.
    pub freshness_secs: u64,
    /// Bytes per chunk when this peer publishes its model, 64 to 4194304. Omitted: 262144.
    pub chunk_size: u32,
    /// Chunk requests in flight to one peer, 1 to 16 (a murmur node answers `Busy` past
    /// `network::limits::MAX_INFLIGHT_PER_PEER`, 16, requests in flight from one peer).
    /// Omitted: 8.
    pub max_inflight_per_peer: usize,
    /// Bad answers (wrong hash, malformed, timed out) tolerated from a peer before it is
    /// avoided. Omitted: 5.
    pub error_budget: u32,
    /// Seconds one model's whole fetch (manifest and chunks) may take, >= 1. Omitted: 10.
    pub fetch_timeout_secs: u64,
    /// Seconds to wait for the answer to one manifest or chunk request before the peer is
    /// charged and another asked, >= 1 and below `fetch_timeout_secs`. Omitted: 3.
    pub request_timeout_secs: u64,
    /// How this peer encodes the models it publishes: `f32`, `f16`, `bf16`, `int8` (per-block
    /// scale, 256 values a block) or `int8:<block>`; a peer reads every encoding whatever
    /// its own, and checkpoints keep `f32`. Omitted: `int8` (about a quarter of f32's bytes
    /// to the same accuracy, docs/benchmarks.md).
    #[serde(with = "text")]
    pub encoding: murmur_protocol::Encoding,
    /// Start each round's averaging when the round before it ends, so that fetching the
    /// partners' models overlaps this round's steps (which then end on that merge if it is
    /// in); off: the averaging starts when this round's steps end, and the round waits up
    /// to `merge_wait_secs` for it. Omitted: false.
    pub overlap: bool,
}

impl Default for AveragingConfig {
    fn default() -> Self {
        Self {
            round_steps: 20,
            round_secs: 0.0,
            fanout: 7,
            merge_wait_secs: 1.0,
            weighting: Weighting::Uniform,
            staleness: Staleness::SameRound,
            aggregation: Aggregation::Clip,
            clip_factor: 2.0,
            max_distance: 6.0,
            accept_loss_ratio: 2.0,
            outer_lr: 1.0,
            outer_momentum: 0.0,
            freshness_secs: 30,
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_inflight_per_peer: 8,
            error_budget: 5,
            fetch_timeout_secs: 10,
            request_timeout_secs: 3,
            encoding: murmur_protocol::Encoding::int8(),
            overlap: false,
        }
    }
}

impl AveragingConfig {
    /// The time limit of a round, `None` if [`Self::round_secs`] is 0 (or not a valid
    /// duration, which [`NodeConfig::validate`](super::NodeConfig::validate) rejects).
    pub fn round_time_limit(&self) -> Option<Duration> {
        Duration::try_from_secs_f64(self.round_secs)
            .ok()
            .filter(|limit| !limit.is_zero())
    }

    /// [`Self::merge_wait_secs`] as a duration (zero if out of range, which
    /// [`NodeConfig::validate`](super::NodeConfig::validate) rejects).
    pub fn merge_wait(&self) -> Duration {
        Duration::try_from_secs_f64(self.merge_wait_secs).unwrap_or_default()
    }

    /// With `staleness = "same-round"`, the longest a round waits for its partners' models
    /// of the same round: half of [`Self::merge_wait`] (the other half is for fetching them).
    pub fn gather(&self) -> Duration {
        self.merge_wait() / 2
    }

    /// [`Self::freshness_secs`] as a duration.
    pub fn freshness(&self) -> Duration {
        Duration::from_secs(self.freshness_secs)
    }

    /// [`Self::fetch_timeout_secs`] as a duration.
    pub fn fetch_timeout(&self) -> Duration {
        Duration::from_secs(self.fetch_timeout_secs)
    }

    /// [`Self::request_timeout_secs`] as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }
}

impl AveragingConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        at_least("averaging.round_steps", self.round_steps, 1)?;
        if !(self.round_secs.is_finite() && self.round_secs >= 0.0)
            || Duration::try_from_secs_f64(self.round_secs).is_err()
        {
            return Err(ConfigError::invalid(
                "averaging.round_secs",
                self.round_secs,
                "must be a finite number of seconds, at least 0 (0 = no time limit)",
            ));
        }
        at_least("averaging.fanout", self.fanout, 1)?;
        if !(self.merge_wait_secs.is_finite() && (0.0..=60.0).contains(&self.merge_wait_secs)) {
            return Err(ConfigError::invalid(
                "averaging.merge_wait_secs",
                self.merge_wait_secs,
                "must be a number of seconds from 0 to 60",
            ));
        }
        if self.overlap && self.staleness == Staleness::SameRound {
            return Err(ConfigError::invalid(
                "averaging.overlap",
                self.overlap,
                "cannot be used with staleness = \"same-round\" (a round merges the models \
                 its partners trained alongside it, which only exist once its steps are done)",
            ));
        }
        positive("averaging.outer_lr", self.outer_lr)?;
        unit_fraction("averaging.outer_momentum", self.outer_momentum)?;
        at_least("averaging.freshness_secs", self.freshness_secs, 1)?;
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&self.chunk_size) {
            return Err(ConfigError::invalid(
                "averaging.chunk_size",
                self.chunk_size,
                format!("must be between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE}"),
            ));
        }
        let most = crate::network::limits::MAX_INFLIGHT_PER_PEER as usize;
        if !(1..=most).contains(&self.max_inflight_per_peer) {
            return Err(ConfigError::invalid(
                "averaging.max_inflight_per_peer",
                self.max_inflight_per_peer,
                format!(
                    "must be between 1 and {most} (a murmur node answers Busy past {most} \
                     requests in flight from one peer)"
                ),
            ));
        }
        positive("averaging.clip_factor", self.clip_factor)?;
        if !(self.max_distance.is_finite() && self.max_distance >= 0.0) {
            return Err(ConfigError::invalid(
                "averaging.max_distance",
                self.max_distance,
                "must be a finite number, at least 0 (0 = no distance check)",
            ));
        }
        if !(self.accept_loss_ratio.is_finite() && self.accept_loss_ratio >= 0.0) {
            return Err(ConfigError::invalid(
                "averaging.accept_loss_ratio",
                self.accept_loss_ratio,
                "must be a finite number, at least 0 (0 = reject only non-finite losses)",
            ));
        }
        at_least("averaging.fetch_timeout_secs", self.fetch_timeout_secs, 1)?;
        at_least(
            "averaging.request_timeout_secs",
            self.request_timeout_secs,
            1,
        )?;
        if self.request_timeout_secs >= self.fetch_timeout_secs {
            return Err(ConfigError::invalid(
                "averaging.request_timeout_secs",
                self.request_timeout_secs,
                format!(
                    "must be below averaging.fetch_timeout_secs ({}): a silent peer must time out, \
                     and be charged, while the fetch can still ask another",
                    self.fetch_timeout_secs
                ),
            ));
        }
        Ok(())
    }
}
