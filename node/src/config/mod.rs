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

pub mod template;

use crate::data::{DatasetName, Partition, ShardSpec};
use crate::model::{ConvImpl, DEFAULT_MLP_HIDDEN, ModelKind};
use crate::train::TrainConfig;
use crate::train::optim::{OptimConfig, OptimizerKind};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use murmur_protocol::limits::{DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest `network_id`, in characters.
pub const MAX_NETWORK_ID_LEN: usize = 64;

/// Where the documentation of every key lives, quoted in error messages.
pub const DOCS: &str = "docs/config.md";

/// A configuration that cannot be read, parsed or accepted.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: line {line}, column {column}: invalid TOML: {message}")]
    Syntax {
        origin: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// `section` is `[network]` (etc.) or `the top level`.
    #[error("{origin}: unknown key `{key}` in {section}; see {DOCS} (allowed here: {allowed})")]
    UnknownKey {
        origin: String,
        key: String,
        section: String,
        allowed: String,
    },
    /// A value of the wrong type, that does not parse, or out of range. `key` is the full key
    /// (`averaging.fanout`, `network.bootstrap[1]`), `value` the value as written in TOML.
    #[error("{}{key} = {value}: {reason}", origin_prefix(.origin))]
    Invalid {
        origin: Option<String>,
        key: String,
        value: String,
        reason: String,
    },
}

fn origin_prefix(origin: &Option<String>) -> String {
    origin
        .as_ref()
        .map(|o| format!("{o}: "))
        .unwrap_or_default()
}

impl ConfigError {
    /// An out-of-range or malformed value, with no file named yet.
    fn invalid(
        key: impl Into<String>,
        value: impl fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid {
            origin: None,
            key: key.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// Names the file (or other origin) in an error that does not name one yet.
    fn in_origin(mut self, name: &str) -> Self {
        if let ConfigError::Invalid { origin, .. } = &mut self
            && origin.is_none()
        {
            *origin = Some(name.to_string());
        }
        self
    }
}

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

/// `[network]`: libp2p transports and peer discovery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Multiaddrs to listen on (port 0 = any free port); QUIC (`/udp/<port>/quic-v1`) only
    /// when listed. Omitted: TCP on every interface, `/ip4/0.0.0.0/tcp/0`.
    #[serde(with = "text::list")]
    pub listen: Vec<Multiaddr>,
    /// Multiaddrs of peers to dial at start, each ending in `/p2p/<peer id>`. Omitted: none
    /// (rely on mDNS, or on others dialling us).
    #[serde(with = "text::list")]
    pub bootstrap: Vec<Multiaddr>,
    /// Discover peers on the local network with mDNS. Omitted: on.
    pub mdns: bool,
    /// Run a Kademlia DHT (server mode, periodic random walk) to discover peers beyond the
    /// bootstrap list. Omitted: on.
    pub kademlia: bool,
    /// Most established connections, inbound and outbound together. Omitted: 64.
    pub max_connections: u32,
    /// Seconds a connection with no open stream is kept before it is closed. Omitted: 60.
    pub idle_timeout_secs: u64,
    /// Most sync requests per second one peer may make of this node (bursts of twice that);
    /// past it the peer is answered `Busy`. Omitted: 50.
    pub peer_requests_per_sec: u32,
    /// Most megabits per second one peer may download from this node, 0 = no per-peer limit;
    /// past it the peer is answered `Busy`. Omitted: 400.
    pub peer_upload_mbps: f64,
    /// Most megabits per second this node uploads to all peers together, 0 = unlimited; each
    /// active peer gets an equal share of it. Omitted: 0.
    pub max_upload_mbps: f64,
    /// The private network's pre-shared key, 64 hex digits (`murmur psk` makes one): every
    /// connection is wrapped in libp2p pnet, and a peer without the key never completes one.
    /// TCP only: a config with a key and a QUIC address is refused. Omitted: `""` (none).
    pub psk: String,
    /// Peer ids allowed to connect; empty = everyone. Omitted: `[]`.
    #[serde(with = "text::list")]
    pub allow: Vec<PeerId>,
    /// Peer ids never allowed to connect (wins over `allow`). Omitted: `[]`.
    #[serde(with = "text::list")]
    pub deny: Vec<PeerId>,
    /// A test and benchmark aid: pass the sync protocol's frames (manifests and chunks)
    /// through an emulated link of this rate and/or one-way latency, e.g. `20mbit,40ms`
    /// (see `network::link`); `""` = none. Omitted: `""`.
    #[serde(with = "text")]
    pub emulate_link: Option<crate::network::link::LinkSpec>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        let any = Multiaddr::empty().with(Protocol::Ip4(Ipv4Addr::UNSPECIFIED));
        Self {
            listen: vec![any.with(Protocol::Tcp(0))],
            bootstrap: Vec::new(),
            mdns: true,
            kademlia: true,
            max_connections: 64,
            idle_timeout_secs: 60,
            peer_requests_per_sec: 50,
            peer_upload_mbps: 400.0,
            max_upload_mbps: 0.0,
            psk: String::new(),
            allow: Vec::new(),
            deny: Vec::new(),
            emulate_link: None,
        }
    }
}

impl NetworkConfig {
    /// [`Self::idle_timeout_secs`] as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    /// The serving limits these keys describe.
    pub fn serving(&self) -> crate::network::ServeLimits {
        use crate::network::limits::rate_limit;
        crate::network::ServeLimits {
            peer_requests_per_sec: f64::from(self.peer_requests_per_sec),
            peer_upload_bytes_per_sec: rate_limit(self.peer_upload_mbps),
            max_upload_bytes_per_sec: rate_limit(self.max_upload_mbps),
        }
    }
}

/// `[training]`: this peer's data and how it trains locally. The defaults are those of
/// `murmur train`, except `threads` (1: several peers often share a machine) and
/// `balance_classes` (on: peers' shards are often skewed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingConfig {
    /// Dataset: `digits` (built in), `fashion-mnist` or `mnist`. Every peer of a network must
    /// use the same one. Omitted: `digits`.
    #[serde(with = "text")]
    pub dataset: DatasetName,
    /// Directory holding the dataset's IDX files; `None` (written `""`) = the dataset's default
    /// (`/usr/share/datasets/fashion-mnist` for fashion-mnist; mnist has none). A relative path
    /// is relative to the config file's directory. Omitted: `""`.
    #[serde(with = "text::optional_path")]
    pub data_dir: Option<PathBuf>,
    /// Model: `logreg`, `mlp` (hidden 200-200), `mlp:<h1>-<h2>-...` or `cnn`. Same on every
    /// peer. Omitted: `mlp`.
    #[serde(with = "text")]
    pub model: ModelKind,
    /// How the training set is split among the peers: `iid`, `dirichlet:<alpha>` or
    /// `shards:<k>`. Same on every peer. Omitted: `iid`.
    #[serde(with = "text")]
    pub partition: Partition,
    /// This peer's part of the split: `i/n` keeps part `i` (0-based) of `n`. Omitted: `0/1`
    /// (all of the data).
    #[serde(with = "text")]
    pub shard: ShardSpec,
    /// Optimizer: `sgd` or `adamw`. Omitted: `sgd`.
    #[serde(with = "text")]
    pub optimizer: OptimizerKind,
    /// Learning rate, finite and > 0. Omitted: 0.05.
    pub lr: f64,
    /// SGD momentum, in `[0, 1)` (0 = plain SGD); ignored by AdamW. Omitted: 0.9.
    pub momentum: f64,
    /// What SGD's momentum does across merges: `local` (kept, fed only by this peer's
    /// gradients), `reset` (emptied at each merge) or `quasi-global` (fed by the model's
    /// whole displacement, merges included). Omitted: `local`.
    #[serde(with = "text")]
    pub momentum_mode: MomentumMode,
    /// Samples over which the learning rate rises linearly from 0 to `lr` (0 = none).
    /// Omitted: 0.
    pub warmup_samples: u64,
    /// Weight decay, >= 0 (L2 for SGD, decoupled for AdamW). Omitted: 0.
    pub weight_decay: f64,
    /// Inverse-time learning-rate decay: the rate is `lr / (1 + samples / lr_decay_samples)`,
    /// `samples` being those this peer has trained on (it continues after a restart); 0 =
    /// constant. Omitted: 0.
    pub lr_decay_samples: u64,
    /// Logit adjustment for label skew: train with `log p(class)` of this peer's own labels
    /// added to the logits (balanced softmax), so a peer holding mostly a few classes does not
    /// learn to predict mostly those. No effect on a balanced shard. Omitted: true.
    pub balance_classes: bool,
    /// Examples per minibatch, >= 1. Omitted: 50.
    pub batch_size: usize,
    /// Examples of this peer's shard held back from training, on which partner models are
    /// checked before they are merged or adopted (at most a fifth of the shard); 0 = no check.
    /// Omitted: 200.
    pub holdout_samples: usize,
    /// Seeds the initial weights (so it must be the same on every peer of a network), the
    /// partition and the batch order. Omitted: 1.
    pub seed: u64,
    /// Compute threads (0 = one per core). Omitted: 1, right when several peers share a
    /// machine.
    pub threads: usize,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        let optim = OptimConfig::default();
        Self {
            dataset: DatasetName::Digits,
            data_dir: None,
            model: ModelKind::Mlp {
                hidden: DEFAULT_MLP_HIDDEN.to_vec(),
            },
            partition: Partition::Iid,
            shard: ShardSpec { index: 0, count: 1 },
            optimizer: optim.kind,
            lr: optim.lr,
            momentum: optim.momentum,
            momentum_mode: optim.momentum_mode,
            warmup_samples: 0,
            weight_decay: optim.weight_decay,
            lr_decay_samples: 0,
            balance_classes: true,
            batch_size: 50,
            holdout_samples: 200,
            seed: 1,
            threads: 1,
        }
    }
}

impl TrainingConfig {
    /// What the trainer needs: model, optimizer, batch size, seed (default convolutions).
    pub fn train_config(&self) -> TrainConfig {
        TrainConfig {
            model: self.model.clone(),
            optimizer: OptimConfig {
                kind: self.optimizer,
                lr: self.lr,
                momentum: self.momentum,
                weight_decay: self.weight_decay,
                momentum_mode: self.momentum_mode,
            },
            batch_size: self.batch_size,
            seed: self.seed,
            conv: ConvImpl::default(),
            balance_classes: self.balance_classes,
            holdout: self.holdout_samples,
        }
    }

    /// The IDX directory, or `None` for the dataset's default.
    pub fn data_dir(&self) -> Option<&Path> {
        self.data_dir.as_deref()
    }
}

pub use crate::averaging::policy::{Staleness, Weighting};
pub use crate::averaging::robust::Aggregation;
pub use crate::train::optim::MomentumMode;

/// `[averaging]`: rounds of local training, and averaging with a few peers after each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AveragingConfig {
    /// Local training steps per round, >= 1. Omitted: 20.
    pub round_steps: usize,
    /// Seconds after which a round also ends, even short of `round_steps`; 0 = no time limit.
    /// Finite and >= 0. Omitted: 0.
    pub round_secs: f64,
    /// Peers averaged with per round, >= 1. Omitted: 2.
    pub fanout: usize,
    /// Seconds a round may wait, idle, after `round_steps` while its merge is fetched, so
    /// that the round ends on (and announces, checkpoints and evaluates) the merged model; 0 =
    /// announce the trained model and merge whenever the partners' models arrive. Finite,
    /// 0 to 60. Omitted: 1.
    pub merge_wait_secs: f64,
    /// How averaged models are weighed: `samples` (by training samples, a partner's claim
    /// capped at this peer's own) or `uniform`. Omitted: `uniform`.
    #[serde(with = "text")]
    pub weighting: Weighting,
    /// How partners' model age counts: `ignore` (drawn at random, weighed alike) or
    /// `prefer-fresh` (drawn among those heard within this peer's last round, each weighed
    /// down by `1 + lag` in this peer's rounds). Omitted: `prefer-fresh`.
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
    /// Chunk requests in flight to one peer, 1 to 99. Omitted: 8.
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
            fanout: 2,
            merge_wait_secs: 1.0,
            weighting: Weighting::Uniform,
            staleness: Staleness::PreferFresh,
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
    /// duration, which [`NodeConfig::validate`] rejects).
    pub fn round_time_limit(&self) -> Option<Duration> {
        Duration::try_from_secs_f64(self.round_secs)
            .ok()
            .filter(|limit| !limit.is_zero())
    }

    /// [`Self::merge_wait_secs`] as a duration (zero if out of range, which
    /// [`NodeConfig::validate`] rejects).
    pub fn merge_wait(&self) -> Duration {
        Duration::try_from_secs_f64(self.merge_wait_secs).unwrap_or_default()
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

/// `[store]`: the content-addressed chunk store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Most memory the chunk store holds, in MiB, >= 1. Omitted: 256.
    pub memory_budget_mb: u64,
    /// Least seconds between two checkpoints of the model, > 0 (fractions allowed; a round
    /// takes at least 0.25 s). Omitted: 2.
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
}

/// `[dashboard]`: the HTTP dashboard and API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    /// Address to serve on, `<ip>:<port>`; port 0 = any free port. Omitted: `127.0.0.1:8080`
    /// (this machine only).
    #[serde(with = "text")]
    pub listen: SocketAddr,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
        }
    }
}

/// Largest config file read: a full config is about 4 KiB; anything near this is not one
/// (a wrong path such as a dataset or a device), and is refused before it is read whole.
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
        if self.store.memory_budget_mb == 0 {
            return Err(ConfigError::invalid(
                "store.memory_budget_mb",
                0,
                "must be at least 1",
            ));
        }
        positive(
            "store.checkpoint_every_secs",
            self.store.checkpoint_every_secs,
        )?;
        if self.store.checkpoint_every_secs > 86_400.0 {
            return Err(ConfigError::invalid(
                "store.checkpoint_every_secs",
                self.store.checkpoint_every_secs,
                "must be at most 86400 (a day)",
            ));
        }
        Ok(())
    }
}

/// `value` as a TOML string.
fn quoted(value: impl fmt::Display) -> String {
    toml::Value::String(value.to_string()).to_string()
}

/// `Err(invalid)` unless `min <= value`.
fn at_least<T: PartialOrd + fmt::Display>(key: &str, value: T, min: T) -> Result<(), ConfigError> {
    if value < min {
        return Err(ConfigError::invalid(
            key,
            &value,
            format!("must be at least {min}"),
        ));
    }
    Ok(())
}

/// A finite number greater than 0 (a rate).
fn positive(key: &str, value: f64) -> Result<(), ConfigError> {
    if !(value.is_finite() && value > 0.0) {
        return Err(ConfigError::invalid(
            key,
            value,
            "must be a finite number greater than 0",
        ));
    }
    Ok(())
}

/// A number in `[0, 1)` (a momentum).
fn unit_fraction(key: &str, value: f64) -> Result<(), ConfigError> {
    if !(value.is_finite() && (0.0..1.0).contains(&value)) {
        return Err(ConfigError::invalid(
            key,
            value,
            "must be at least 0 and below 1",
        ));
    }
    Ok(())
}

impl NetworkConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for (key, list, dialled) in [
            ("listen", &self.listen, false),
            ("bootstrap", &self.bootstrap, true),
        ] {
            for (i, addr) in list.iter().enumerate() {
                let key = format!("network.{key}[{i}]");
                if addr.is_empty() {
                    return Err(ConfigError::invalid(key, quoted(addr), "must not be empty"));
                }
                if dialled
                    && addr.iter().any(|p| {
                        matches!(
                            p,
                            Protocol::Dns(_)
                                | Protocol::Dns4(_)
                                | Protocol::Dns6(_)
                                | Protocol::Dnsaddr(_)
                        )
                    })
                {
                    return Err(ConfigError::invalid(
                        key,
                        quoted(addr),
                        "must use an IP address (/ip4/... or /ip6/...): murmur does not resolve host names",
                    ));
                }
            }
        }
        at_least("network.max_connections", self.max_connections, 1)?;
        at_least(
            "network.peer_requests_per_sec",
            self.peer_requests_per_sec,
            1,
        )?;
        for (key, mbps) in [
            ("network.peer_upload_mbps", self.peer_upload_mbps),
            ("network.max_upload_mbps", self.max_upload_mbps),
        ] {
            if !(mbps.is_finite() && mbps >= 0.0) {
                return Err(ConfigError::invalid(
                    key,
                    mbps,
                    "must be a number of megabits per second, at least 0 (0 = unlimited)",
                ));
            }
        }
        if !self.psk.is_empty() {
            crate::network::access::parse_psk(&self.psk)
                .map_err(|e| ConfigError::invalid("network.psk", "(hidden)", e.to_string()))?;
            for (key, list) in [("listen", &self.listen), ("bootstrap", &self.bootstrap)] {
                if let Some((i, addr)) = list.iter().enumerate().find(|(_, a)| {
                    a.iter()
                        .any(|p| matches!(p, Protocol::QuicV1 | Protocol::Quic))
                }) {
                    return Err(ConfigError::invalid(
                        format!("network.{key}[{i}]"),
                        quoted(addr),
                        "is a QUIC address, and network.psk is set: libp2p's private networks \
                         (pnet) wrap TCP only, so a QUIC connection would bypass the key; \
                         use a /tcp/ address or remove network.psk",
                    ));
                }
            }
        }
        at_least("network.idle_timeout_secs", self.idle_timeout_secs, 1)
    }

    /// The pre-shared key, if any (checked by validation).
    pub fn psk(&self) -> Option<libp2p::pnet::PreSharedKey> {
        crate::network::access::parse_psk(&self.psk).ok()
    }

    /// Who may connect.
    pub fn access(&self) -> crate::network::access::Access {
        crate::network::access::Access::new(self.allow.iter().copied(), self.deny.iter().copied())
    }
}

impl TrainingConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let ShardSpec { index, count } = self.shard;
        if count == 0 || index >= count {
            return Err(ConfigError::invalid(
                "training.shard",
                quoted(self.shard),
                "index must be below count, e.g. 0/4 (indices are 0-based)",
            ));
        }
        match self.partition {
            Partition::Dirichlet { alpha } if !(alpha.is_finite() && alpha > 0.0) => {
                return Err(ConfigError::invalid(
                    "training.partition",
                    quoted(self.partition),
                    "alpha must be a finite number greater than 0",
                ));
            }
            Partition::Shards { per_peer: 0 } => {
                return Err(ConfigError::invalid(
                    "training.partition",
                    quoted(self.partition),
                    "shards per peer must be at least 1",
                ));
            }
            _ => {}
        }
        positive("training.lr", self.lr)?;
        unit_fraction("training.momentum", self.momentum)?;
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(ConfigError::invalid(
                "training.weight_decay",
                self.weight_decay,
                "must be a finite number, at least 0",
            ));
        }
        at_least("training.batch_size", self.batch_size, 1)
    }
}

impl AveragingConfig {
    fn validate(&self) -> Result<(), ConfigError> {
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

/// A key or value of the parsed document, with where it is in the text.
#[derive(Debug)]
struct Place {
    /// Full key: `training.model`, `network.listen[1]`.
    path: String,
    span: std::ops::Range<usize>,
}

/// Every key and value of `table` (under `prefix`), depth first, parents before children.
fn locate(table: &toml::de::DeTable<'_>, prefix: &str, out: &mut Vec<Place>) {
    for (key, value) in table.iter() {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        out.push(Place {
            path: path.clone(),
            span: key.span(),
        });
        locate_value(value, path, out);
    }
}

fn locate_value(value: &toml::Spanned<toml::de::DeValue<'_>>, path: String, out: &mut Vec<Place>) {
    out.push(Place {
        path: path.clone(),
        span: value.span(),
    });
    match value.get_ref() {
        toml::de::DeValue::Table(table) => locate(table, &path, out),
        toml::de::DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                locate_value(item, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Turns a serde error from `toml::from_str` into a [`ConfigError`] naming the full key.
fn describe(err: &toml::de::Error, text: &str, places: &[Place], origin: &str) -> ConfigError {
    let message = err.message();
    let span = err.span().unwrap_or(0..0);
    // The innermost key or value around the error (parents come first, so ties keep them).
    let place = places
        .iter()
        .filter(|p| p.span.start <= span.start && span.end <= p.span.end)
        .min_by_key(|p| p.span.len());
    let Some(place) = place else {
        let (line, column) = line_column(text, span.start);
        return ConfigError::Syntax {
            origin: origin.to_string(),
            line,
            column,
            message: message.to_string(),
        };
    };
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (key, allowed) = rest.split_once('`').unwrap_or((rest, ""));
        let section = match place.path.rsplit_once('.') {
            Some((parent, _)) => format!("[{parent}]"),
            None => "the top level".to_string(),
        };
        let allowed = allowed
            .trim_start_matches(", expected ")
            .trim_start_matches("one of ")
            .replace('`', "");
        return ConfigError::UnknownKey {
            origin: origin.to_string(),
            key: key.to_string(),
            section,
            allowed,
        };
    }
    // A list item that did not parse (see `text::list`): name the item, not the list.
    let (place, span, message) = match item_error(message) {
        Some((index, reason)) => {
            let item_path = format!("{}[{index}]", place.path);
            match places.iter().find(|p| p.path == item_path) {
                Some(item) => (item, item.span.clone(), reason),
                None => (place, span, reason),
            }
        }
        None => (place, span, message),
    };
    let written = text.get(span).unwrap_or_default();
    let mut value: String = written.split_whitespace().collect::<Vec<_>>().join(" ");
    if value.chars().count() > 80 {
        value = value.chars().take(77).collect::<String>() + "...";
    }
    ConfigError::Invalid {
        origin: Some(origin.to_string()),
        key: place.path.clone(),
        value,
        reason: plain_types(message),
    }
}

/// How `text::list` starts the message of an item that does not parse: `item [<index>] `.
const LIST_ITEM: &str = "item [";

/// The index and reason of a list item's error, if `message` is one.
fn item_error(message: &str) -> Option<(usize, &str)> {
    let (index, reason) = message.strip_prefix(LIST_ITEM)?.split_once("] ")?;
    Some((index.parse().ok()?, reason))
}

/// Serde's Rust type names in `message`, in words.
fn plain_types(message: &str) -> String {
    let mut message = message
        .replace("expected usize", "expected a whole number, at least 0")
        .replace("expected u64", "expected a whole number, at least 0")
        .replace(
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        )
        .replace("expected f64", "expected a number");
    if let Some(at) = message.find("expected struct ") {
        message.truncate(at);
        message.push_str("expected a table");
    }
    message
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

/// Serde for the typed values written as strings in the file: each parses with the same
/// `FromStr` as on the command line, so the error says what is allowed.
mod text {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    /// A value written as a string in the config file.
    pub(super) trait ConfigText: Sized {
        fn from_text(text: &str) -> Result<Self, String>;
        fn to_text(&self) -> String;
    }

    macro_rules! via_from_str {
        ($($ty:ty),*) => {$(
            impl ConfigText for $ty {
                fn from_text(text: &str) -> Result<Self, String> {
                    text.parse().map_err(|e| format!("{e}"))
                }
                fn to_text(&self) -> String {
                    self.to_string()
                }
            }
        )*};
    }

    via_from_str!(
        crate::data::DatasetName,
        crate::model::ModelKind,
        crate::data::Partition,
        crate::data::ShardSpec,
        crate::train::optim::OptimizerKind,
        crate::train::optim::MomentumMode,
        super::Weighting,
        super::Staleness,
        super::Aggregation,
        murmur_protocol::Encoding
    );

    impl ConfigText for libp2p::Multiaddr {
        fn from_text(text: &str) -> Result<Self, String> {
            text.parse().map_err(|e| {
                format!(
                    "not a multiaddr ({e}): expected e.g. /ip4/0.0.0.0/tcp/0, \
                     /ip4/192.0.2.7/udp/4001/quic-v1 or /dns4/host/tcp/4001/p2p/<peer id>"
                )
            })
        }
        fn to_text(&self) -> String {
            self.to_string()
        }
    }

    /// `""` = no emulated link.
    impl ConfigText for Option<crate::network::link::LinkSpec> {
        fn from_text(text: &str) -> Result<Self, String> {
            if text.trim().is_empty() {
                return Ok(None);
            }
            text.parse().map(Some).map_err(|e| format!("{e}"))
        }
        fn to_text(&self) -> String {
            self.map(|s| s.to_string()).unwrap_or_default()
        }
    }

    impl ConfigText for libp2p::PeerId {
        fn from_text(text: &str) -> Result<Self, String> {
            text.parse().map_err(|e| {
                format!("not a peer id ({e}): expected e.g. 12D3KooW... (`murmur id` prints one)")
            })
        }
        fn to_text(&self) -> String {
            self.to_string()
        }
    }

    impl ConfigText for std::net::SocketAddr {
        fn from_text(text: &str) -> Result<Self, String> {
            text.parse().map_err(|_| {
                format!(
                    "not an address {text:?}: expected <ip>:<port>, e.g. 127.0.0.1:8080, \
                     0.0.0.0:8080 or [::1]:8080 (no host names)"
                )
            })
        }
        fn to_text(&self) -> String {
            self.to_string()
        }
    }

    pub(super) fn serialize<T: ConfigText, S: Serializer>(
        value: &T,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&value.to_text())
    }

    pub(super) fn deserialize<'de, T: ConfigText, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<T, D::Error> {
        let text = String::deserialize(deserializer)?;
        T::from_text(&text).map_err(D::Error::custom)
    }

    /// A list of strings.
    pub(super) mod list {
        use super::super::LIST_ITEM;
        use super::ConfigText;
        use serde::de::Error as _;
        use serde::{Deserialize, Deserializer, Serializer};

        pub(in crate::config) fn serialize<T: ConfigText, S: Serializer>(
            values: &[T],
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            serializer.collect_seq(values.iter().map(ConfigText::to_text))
        }

        /// An item that does not parse fails the whole list (toml gives the error the list's
        /// span), so the message starts with [`LIST_ITEM`] and the index, for
        /// [`super::super::describe`] to name the item.
        pub(in crate::config) fn deserialize<'de, T: ConfigText, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Vec<T>, D::Error> {
            let items: Vec<String> = Vec::deserialize(deserializer)?;
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    T::from_text(item).map_err(|e| D::Error::custom(format!("{LIST_ITEM}{i}] {e}")))
                })
                .collect()
        }
    }

    /// A path where `""` means none.
    pub(super) mod optional_path {
        use serde::{Deserialize, Deserializer, Serializer};
        use std::path::PathBuf;

        pub(in crate::config) fn serialize<S: Serializer>(
            path: &Option<PathBuf>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match path {
                None => serializer.serialize_str(""),
                Some(path) => serializer.collect_str(&path.display()),
            }
        }

        pub(in crate::config) fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<PathBuf>, D::Error> {
            let path = PathBuf::deserialize(deserializer)?;
            Ok((!path.as_os_str().is_empty()).then_some(path))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NodeConfig, ConfigError> {
        NodeConfig::from_toml_str(text, "peer.toml")
    }

    /// The error message for `text`, which must not parse.
    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    const PEER_ID: &str = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";

    #[test]
    fn config_empty_file_is_the_defaults() {
        assert_eq!(parse("").unwrap(), NodeConfig::default());
        NodeConfig::default().validate().unwrap();
    }

    #[test]
    fn config_omitted_keys_take_their_defaults() {
        let cfg = parse("[averaging]\nfanout = 3\n[training]\nmodel = \"cnn\"\n").unwrap();
        let mut expected = NodeConfig::default();
        expected.averaging.fanout = 3;
        expected.training.model = ModelKind::Cnn;
        assert_eq!(cfg, expected);
    }

    #[test]
    fn config_dotted_and_inline_tables_work_too() {
        let cfg = parse("training.shard = \"1/4\"\nstore = { memory_budget_mb = 9 }\n").unwrap();
        assert_eq!(cfg.training.shard, ShardSpec { index: 1, count: 4 });
        assert_eq!(cfg.store.memory_budget_mb, 9);
        assert_eq!(cfg.store.memory_budget_bytes(), 9 * 1024 * 1024);
    }

    #[test]
    fn config_serializes_to_toml_that_parses_back() {
        let mut cfg = NodeConfig::default();
        cfg.training.data_dir = Some(PathBuf::from("/data/idx"));
        cfg.training.partition = Partition::Shards { per_peer: 2 };
        let text = toml::to_string(&cfg).unwrap();
        assert_eq!(parse(&text).unwrap(), cfg, "{text}");
    }

    #[test]
    fn config_typed_accessors() {
        let cfg = parse(
            "[training]\noptimizer = \"adamw\"\nlr = 1\nbatch_size = 8\nseed = 9\n\
             [averaging]\nround_secs = 1.5\nfreshness_secs = 7\nfetch_timeout_secs = 3\n\
             request_timeout_secs = 2\n\
             [network]\nidle_timeout_secs = 5\n",
        )
        .unwrap();
        let train = cfg.training.train_config();
        assert_eq!(train.optimizer.kind, OptimizerKind::AdamW);
        assert_eq!(train.optimizer.lr, 1.0);
        assert_eq!((train.batch_size, train.seed), (8, 9));
        assert_eq!(train.model, TrainConfig::default().model);
        assert_eq!(
            cfg.averaging.round_time_limit(),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(cfg.averaging.freshness(), Duration::from_secs(7));
        assert_eq!(cfg.averaging.fetch_timeout(), Duration::from_secs(3));
        assert_eq!(cfg.averaging.request_timeout(), Duration::from_secs(2));
        assert_eq!(cfg.network.idle_timeout(), Duration::from_secs(5));
        assert_eq!(NodeConfig::default().averaging.round_time_limit(), None);
        assert_eq!(NodeConfig::default().training.data_dir(), None);
    }

    #[test]
    fn config_defaults_match_murmur_train() {
        // Except for the logit adjustment (peers' shards are often skewed, one machine's
        // whole dataset is not) and the held-back examples (one machine checks no partner).
        let ours = NodeConfig::default().training.train_config();
        assert!(ours.balance_classes);
        assert_eq!(
            ours,
            TrainConfig {
                balance_classes: true,
                holdout: 200,
                ..TrainConfig::default()
            }
        );
    }

    #[test]
    fn config_unknown_top_level_key_names_it() {
        assert_eq!(
            error("netwrk_id = \"x\"\n"),
            "peer.toml: unknown key `netwrk_id` in the top level; see docs/config.md \
             (allowed here: network_id, data_dir, network, training, averaging, store, dashboard)"
        );
        let message = error("[trainig]\nlr = 0.1\n");
        assert!(
            message.starts_with("peer.toml: unknown key `trainig` in the top level; see docs"),
            "{message}"
        );
    }

    #[test]
    fn config_unknown_key_in_a_section_names_it() {
        let message = error("[averaging]\nfanout = 2\nfanuot = 3\n");
        assert!(
            message.starts_with(
                "peer.toml: unknown key `fanuot` in [averaging]; see docs/config.md (allowed \
                 here: round_steps, round_secs, fanout,"
            ),
            "{message}"
        );
        let message = error("[network.extra]\nx = 1\n");
        assert!(
            message.starts_with("peer.toml: unknown key `extra` in [network]; see"),
            "{message}"
        );
        let message = error("training.colour = \"red\"\n");
        assert!(
            message.starts_with("peer.toml: unknown key `colour` in [training]; see"),
            "{message}"
        );
    }

    #[test]
    fn config_bad_enum_values_name_the_key_and_the_choices() {
        assert_eq!(
            error("[training]\nmodel = \"resnet\"\n"),
            "peer.toml: training.model = \"resnet\": unknown model \"resnet\": expected `logreg`, \
             `mlp`, `mlp:<h1>-<h2>-...` (e.g. mlp:200-200) or `cnn`"
        );
        for (text, key, allowed) in [
            (
                "[training]\ndataset = 'cifar'",
                "training.dataset = 'cifar'",
                "mnist",
            ),
            (
                "[training]\npartition = 'x'",
                "training.partition = 'x'",
                "dirichlet:<alpha>",
            ),
            (
                "[training]\npartition = 'dirichlet:0'",
                "training.partition",
                "greater than 0",
            ),
            (
                "[training]\nshard = '3/2'",
                "training.shard = '3/2'",
                "expected i/n",
            ),
            (
                "[training]\noptimizer = 'adam'",
                "training.optimizer",
                "`sgd` or `adamw`",
            ),
            (
                "[averaging]\nweighting = 'x'",
                "averaging.weighting",
                "samples or uniform",
            ),
            (
                "[averaging]\nstaleness = 'x'",
                "averaging.staleness",
                "ignore or prefer-fresh",
            ),
            (
                "[training]\nmomentum_mode = 'global'",
                "training.momentum_mode",
                "local, reset or quasi-global",
            ),
            (
                "[averaging]\nmerge_wait_secs = 61.0",
                "averaging.merge_wait_secs",
                "from 0 to 60",
            ),
            (
                "[averaging]\nmerge_wait_secs = -1.0",
                "averaging.merge_wait_secs",
                "from 0 to 60",
            ),
            (
                "[averaging]\nencoding = 'int4'",
                "averaging.encoding = 'int4'",
                "f32",
            ),
            (
                "[averaging]\nencoding = 'int8:8'",
                "averaging.encoding",
                "16",
            ),
            (
                "[network]\nemulate_link = '20mbit,40ms,1ms'",
                "network.emulate_link",
                "two latencies",
            ),
            (
                "[averaging]\naggregation = 'krum'",
                "averaging.aggregation",
                "mean, clip, median or trimmed-mean",
            ),
            (
                "[averaging]\nclip_factor = 0.0",
                "averaging.clip_factor",
                "greater than 0",
            ),
            (
                "[averaging]\nmax_distance = -1.0",
                "averaging.max_distance",
                "at least 0",
            ),
            (
                "[averaging]\naccept_loss_ratio = -1.0",
                "averaging.accept_loss_ratio",
                "at least 0",
            ),
            (
                "[averaging]\nrequest_timeout_secs = 0",
                "averaging.request_timeout_secs",
                "at least 1",
            ),
            (
                "[averaging]\nfetch_timeout_secs = 5\nrequest_timeout_secs = 5",
                "averaging.request_timeout_secs",
                "below averaging.fetch_timeout_secs (5)",
            ),
            (
                "[averaging]\nouter_lr = 0.0",
                "averaging.outer_lr",
                "greater than 0",
            ),
            (
                "[averaging]\nouter_momentum = 1.0",
                "averaging.outer_momentum",
                "below 1",
            ),
            (
                "[dashboard]\nlisten = 'localhost:80'",
                "dashboard.listen",
                "<ip>:<port>",
            ),
        ] {
            let message = error(text);
            assert!(
                message.starts_with(&format!("peer.toml: {key}")),
                "{message}"
            );
            assert!(message.contains(allowed), "{message}");
        }
    }

    #[test]
    fn config_wrong_types_name_the_key() {
        assert_eq!(
            error("[averaging]\nfanout = \"two\"\n"),
            "peer.toml: averaging.fanout = \"two\": invalid type: string \"two\", expected a \
             whole number, at least 0"
        );
        let message = error("[averaging]\nchunk_size = -1\n");
        assert!(
            message.starts_with("peer.toml: averaging.chunk_size = -1: invalid value"),
            "{message}"
        );
        let message = error("[network]\nmdns = 1\n");
        assert!(
            message.starts_with("peer.toml: network.mdns = 1:"),
            "{message}"
        );
        let message = error("network = 5\n");
        assert!(message.ends_with("expected a table"), "{message}");
        let message = error("[network]\nlisten = \"/ip4/0.0.0.0/tcp/0\"\n");
        assert!(
            message.starts_with("peer.toml: network.listen = "),
            "{message}"
        );
    }

    #[test]
    fn config_out_of_range_numbers_name_the_key() {
        for (text, expected) in [
            (
                "[averaging]\nfanout = 0",
                "peer.toml: averaging.fanout = 0: must be at least 1",
            ),
            (
                "[averaging]\nchunk_size = 10",
                "peer.toml: averaging.chunk_size = 10: must be between 64 and 4194304",
            ),
            (
                "[averaging]\nchunk_size = 4194305",
                "peer.toml: averaging.chunk_size = 4194305: must be between 64 and 4194304",
            ),
            (
                "[training]\nlr = 0.0",
                "peer.toml: training.lr = 0: must be a finite number greater than 0",
            ),
            (
                "[training]\nlr = nan",
                "peer.toml: training.lr = NaN: must be a finite number greater than 0",
            ),
            (
                "[training]\nbatch_size = 0",
                "peer.toml: training.batch_size = 0: must be at least 1",
            ),
            (
                "[training]\nmomentum = 1.0",
                "peer.toml: training.momentum = 1: must be at least 0 and below 1",
            ),
            (
                "[averaging]\nround_secs = -1.0",
                "peer.toml: averaging.round_secs = -1: must be a finite number of seconds, at \
                 least 0 (0 = no time limit)",
            ),
            (
                "[averaging]\nmax_inflight_per_peer = 17",
                "peer.toml: averaging.max_inflight_per_peer = 17: must be between 1 and 16 (a \
                 murmur node answers Busy past 16 requests in flight from one peer)",
            ),
            (
                "[store]\nmemory_budget_mb = 0",
                "peer.toml: store.memory_budget_mb = 0: must be at least 1",
            ),
            (
                "[store]\ncheckpoint_every_secs = 0.0",
                "peer.toml: store.checkpoint_every_secs = 0: must be a finite number greater than 0",
            ),
            (
                "[store]\ncheckpoint_every_secs = 1e9",
                "peer.toml: store.checkpoint_every_secs = 1000000000: must be at most 86400 (a day)",
            ),
            (
                "[network]\nmax_connections = 0",
                "peer.toml: network.max_connections = 0: must be at least 1",
            ),
            (
                "[network]\npeer_requests_per_sec = 0",
                "peer.toml: network.peer_requests_per_sec = 0: must be at least 1",
            ),
            (
                "[network]\nmax_upload_mbps = -1.0",
                "peer.toml: network.max_upload_mbps = -1: must be a number of megabits per \
                 second, at least 0 (0 = unlimited)",
            ),
            (
                "[network]\npeer_upload_mbps = inf",
                "peer.toml: network.peer_upload_mbps = inf: must be a number of megabits per \
                 second, at least 0 (0 = unlimited)",
            ),
        ] {
            assert_eq!(error(text), expected, "{text}");
        }
    }

    #[test]
    fn config_private_network_keys_are_checked() {
        let key = "ab".repeat(32);
        let cfg = parse(&format!(
            "[network]\npsk = \"{key}\"\nallow = [\"{PEER_ID}\"]\ndeny = [\"{PEER_ID}\"]\n"
        ))
        .unwrap();
        assert!(cfg.network.psk().is_some());
        assert!(!cfg.network.access().admits(&PEER_ID.parse().unwrap()));
        let message = error("[network]\npsk = \"abc\"\n");
        assert!(
            message.contains("network.psk") && message.contains("64 hex digits"),
            "{message}"
        );
        assert!(
            !message.contains("abc"),
            "the key is never echoed: {message}"
        );
        // A key with a QUIC address, listened on or dialled, is refused with the reason.
        for key_line in [
            "listen = [\"/ip4/0.0.0.0/udp/0/quic-v1\"]",
            "bootstrap = [\"/ip4/192.0.2.7/udp/4001/quic-v1\"]",
        ] {
            let message = error(&format!("[network]\npsk = \"{key}\"\n{key_line}\n"));
            assert!(
                message.contains("[0]") && message.contains("pnet") && message.contains("TCP only"),
                "{message}"
            );
        }
        // Without a key, QUIC is fine.
        assert!(parse("[network]\nlisten = [\"/ip4/0.0.0.0/udp/0/quic-v1\"]\n").is_ok());
        let message = error("[network]\ndeny = [\"nope\"]\n");
        assert!(
            message.contains("network.deny[0]") && message.contains("not a peer id"),
            "{message}"
        );
    }

    #[test]
    fn config_bad_multiaddr_names_the_item() {
        let message = error("[network]\nlisten = [\"/ip4/0.0.0.0/tcp/0\", \"/ip4/nope/tcp/1\"]\n");
        assert!(
            message.starts_with(
                "peer.toml: network.listen[1] = \"/ip4/nope/tcp/1\": not a multiaddr ("
            ),
            "{message}"
        );
        let message = error("[network]\nbootstrap = [\"tcp://1.2.3.4:5\"]\n");
        assert!(
            message.starts_with("peer.toml: network.bootstrap[0] = \"tcp://1.2.3.4:5\": not a"),
            "{message}"
        );
    }

    #[test]
    fn config_bootstrap_takes_ip_addresses_with_or_without_a_peer_id() {
        let with_id = format!("/ip4/192.0.2.7/tcp/4001/p2p/{PEER_ID}");
        let cfg = parse(&format!(
            "[network]\nbootstrap = [\"{with_id}\", \"/ip4/192.0.2.8/tcp/4001\"]\n"
        ))
        .unwrap();
        assert_eq!(cfg.network.bootstrap[0].to_string(), with_id);
        assert_eq!(
            cfg.network.bootstrap[1].to_string(),
            "/ip4/192.0.2.8/tcp/4001"
        );
        let message = error("[network]\nbootstrap = [\"/dns4/peer0/tcp/4001\"]\n");
        assert!(
            message.starts_with(
                "peer.toml: network.bootstrap[0] = \"/dns4/peer0/tcp/4001\": must use an IP address"
            ),
            "{message}"
        );
    }

    #[test]
    fn config_bad_network_id_names_the_key() {
        for id in ["", "Murmur", "my net", "a_b", &"a".repeat(65)] {
            let message = error(&format!("network_id = \"{id}\"\n"));
            assert_eq!(
                message,
                format!(
                    "peer.toml: network_id = \"{id}\": must be 1 to 64 characters of a-z, 0-9 \
                     and -"
                )
            );
        }
        parse(&format!("network_id = \"{}\"\n", "a-1".repeat(21))).unwrap();
    }

    #[test]
    fn config_syntax_errors_give_line_and_column() {
        let message = error("[averaging]\nfanout = \n");
        assert!(
            message.starts_with("peer.toml: line 2, column 10: invalid TOML: "),
            "{message}"
        );
    }

    #[test]
    fn config_validate_without_a_file_names_only_the_key() {
        let mut cfg = NodeConfig::default();
        cfg.training.shard = ShardSpec { index: 4, count: 4 };
        assert_eq!(
            cfg.validate().unwrap_err().to_string(),
            "training.shard = \"4/4\": index must be below count, e.g. 0/4 (indices are 0-based)"
        );
        let mut cfg = NodeConfig::default();
        cfg.training.partition = Partition::Shards { per_peer: 0 };
        assert!(cfg.validate().is_err());
        let cfg = NodeConfig {
            data_dir: PathBuf::new(),
            ..NodeConfig::default()
        };
        assert_eq!(
            cfg.validate().unwrap_err().to_string(),
            "data_dir = \"\": must not be empty"
        );
    }

    #[test]
    fn config_an_oversized_file_is_refused_without_reading_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.toml");
        std::fs::write(&path, vec![b'#'; (MAX_CONFIG_BYTES + 10) as usize]).unwrap();
        let err = NodeConfig::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("huge.toml") && err.contains("not a murmur config"),
            "{err}"
        );
    }

    #[test]
    fn config_load_names_the_file_and_resolves_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peer.toml");
        let err = NodeConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");

        std::fs::write(
            &path,
            "data_dir = \"state\"\n[training]\ndata_dir = \"idx\"\n",
        )
        .unwrap();
        let cfg = NodeConfig::load(&path).unwrap();
        assert_eq!(cfg.data_dir, dir.path().join("state"));
        assert_eq!(
            cfg.training.data_dir(),
            Some(dir.path().join("idx").as_path())
        );

        std::fs::write(&path, "data_dir = \"/abs\"\n").unwrap();
        let cfg = NodeConfig::load(&path).unwrap();
        assert_eq!(cfg.data_dir, PathBuf::from("/abs"));
        assert_eq!(cfg.training.data_dir, None);

        std::fs::write(&path, "[averaging]\nfanout = 0\n").unwrap();
        let err = NodeConfig::load(&path).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}: averaging.fanout = 0: must be at least 1",
                path.display()
            )
        );
    }
}
