//! A simulation's scenario: peers, data, rounds and seed, the simulated network (latency,
//! bandwidth, loss, partitions), churn, hostile peers, and the peers' own config keys. Read
//! from a TOML file (`murmur sim --scenario FILE`, examples in `testnet/scenarios/`); the
//! command line's flags override the file. It owns parsing and checking; it must not run
//! anything.

use crate::config::NodeConfig;
use crate::data::{DatasetName, Partition};
use crate::hostile::Hostile;
use crate::model::ModelKind;
use anyhow::Context;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Most simulated peers (each holds a trainer, its shard and its last models).
pub const MAX_PEERS: usize = 100_000;

/// The whole scenario, as written in TOML (every key optional).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    pub peers: usize,
    pub dataset: String,
    /// IDX directory (fashion-mnist's default is the Debian package's).
    pub data_dir: Option<PathBuf>,
    pub model: String,
    pub partition: String,
    /// Rounds every peer runs; the simulation ends when every live honest peer has run them.
    pub rounds: u64,
    pub seed: u64,
    /// Record when each peer first reports this test accuracy (0 = none).
    pub target_accuracy: f32,
    /// The reference instead of gossip: at the end of every round's steps, every peer's
    /// model is replaced by the exact mean of all peers' models (their optimizers' state is
    /// kept), with the same trainers, steps, round cycle and evaluation. The ceiling any
    /// gossip rule approaches. Runs without churn, splits or hostile peers.
    pub exact_averaging: bool,
    pub network: NetworkModel,
    pub compute: Compute,
    pub eval: Eval,
    pub churn: Churn,
    pub partitions: Vec<Split>,
    pub hostile: HostileModel,
    /// Peer config keys, as in `peer.toml` (e.g. `[config.averaging] fanout = 3`): applied
    /// to every peer over the testnet's defaults, and checked the same way.
    pub config: toml::Table,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            peers: 8,
            dataset: "digits".into(),
            data_dir: None,
            model: "logreg".into(),
            partition: "iid".into(),
            rounds: 50,
            seed: 1,
            target_accuracy: 0.0,
            exact_averaging: false,
            network: NetworkModel::default(),
            compute: Compute::default(),
            eval: Eval::default(),
            churn: Churn::default(),
            partitions: Vec::new(),
            hostile: HostileModel::default(),
            config: toml::Table::new(),
        }
    }
}

/// The simulated links. Every pair of peers is connected directly (gossip reaches every
/// peer in one hop); a link's one-way latency is `latency_ms` plus a fixed extra drawn once
/// per pair in `0..jitter_ms`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkModel {
    pub latency_ms: f64,
    pub jitter_ms: f64,
    /// One rate for every link, both ways. A fetching peer's chunk answers arrive one after
    /// the other at this rate (its downlink is shared by its fetch's transfers); what a
    /// holder serves to several peers at once is not shared.
    pub bandwidth_mbps: f64,
    /// Probability that any one message (an announcement to one peer, a request) is lost.
    pub loss: f64,
}

impl Default for NetworkModel {
    fn default() -> Self {
        Self {
            latency_ms: 5.0,
            jitter_ms: 5.0,
            bandwidth_mbps: 1_000.0,
            loss: 0.0,
        }
    }
}

/// Virtual time the training takes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Compute {
    /// Virtual milliseconds per local step; 0 = the model's default (logreg 1, mlp 10, cnn
    /// 200: about a quarter of a core of this machine, as 8 local peers on 2 cores get).
    pub step_ms: f64,
}

/// How often peers are evaluated, and on what.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Eval {
    /// Each peer evaluates every this many of its rounds (and after its last).
    pub every_rounds: u64,
    /// If above 0, each peer instead evaluates at the end of its first round and then of
    /// the first round ending at least this many virtual seconds after its last evaluation
    /// (what a real node does, every 2 s), and after its last round.
    pub every_secs: f64,
    /// Test examples evaluated on: 0 (the default) evaluates on the whole test split, as a
    /// real node does; N evaluates on a stratified random subset of about N (each class in
    /// its share of the split, drawn by the scenario's seed): faster for large runs, and
    /// biased by the draw (docs/simulation.md measures it).
    pub test_samples: usize,
    /// Virtual seconds between two network-wide lines of the trace.
    pub trace_every_secs: f64,
}

impl Default for Eval {
    fn default() -> Self {
        Self {
            every_rounds: 5,
            every_secs: 0.0,
            test_samples: 0,
            trace_every_secs: 5.0,
        }
    }
}

/// Peers crashing, leaving and joining.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Churn {
    /// Probability that a peer crashes at the end of any one of its rounds.
    pub crash_per_round: f64,
    /// Virtual seconds a crashed peer stays down before it restarts from its checkpoint
    /// (its last announced model).
    pub down_secs: f64,
    /// Share of crashes after which the peer never comes back (it left).
    pub leave_share: f64,
    /// Share of the peers that join late, at a time drawn in `0..join_within_secs`, with a
    /// fresh model (they try to adopt one).
    pub late_join_share: f64,
    pub join_within_secs: f64,
}

/// A network split: from `at_secs` to `heal_secs` peer `i` reaches only the peers in its
/// group (`i % groups`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Split {
    pub at_secs: f64,
    pub heal_secs: f64,
    #[serde(default = "two")]
    pub groups: usize,
}

fn two() -> usize {
    2
}

/// Hostile peers: the last `share` of the peers (rounded to the nearest count) play
/// `behaviour` (as `murmur run --hostile`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostileModel {
    pub share: f64,
    pub behaviour: String,
}

impl HostileModel {
    /// How many of `peers` are hostile.
    pub fn count(&self, peers: usize) -> usize {
        (self.share * peers as f64).round() as usize
    }
}

/// A scenario with every name parsed and every value checked.
#[derive(Debug, Clone)]
pub struct Checked {
    pub scenario: Scenario,
    pub dataset: DatasetName,
    pub model: ModelKind,
    pub partition: Partition,
    pub hostile: Option<Hostile>,
    /// The config every peer runs.
    pub node: NodeConfig,
    /// Virtual time per local step.
    pub step: std::time::Duration,
}

impl Scenario {
    /// Reads a scenario file (at most [`crate::config::MAX_CONFIG_BYTES`]).
    pub fn load(path: &Path) -> anyhow::Result<Scenario> {
        let text = crate::config::read_bounded(path)
            .with_context(|| format!("reading scenario {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("scenario {}", path.display()))
    }

    /// Parses the names and checks every value.
    pub fn check(self) -> anyhow::Result<Checked> {
        anyhow::ensure!(
            (1..=MAX_PEERS).contains(&self.peers),
            "peers must be 1..={MAX_PEERS}, not {}",
            self.peers
        );
        anyhow::ensure!(self.rounds >= 1, "rounds must be at least 1");
        let dataset: DatasetName = self.dataset.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
        let model: ModelKind = self.model.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
        let partition: Partition = self.partition.parse()?;
        let n = &self.network;
        for (name, v) in [
            ("network.latency_ms", n.latency_ms),
            ("network.jitter_ms", n.jitter_ms),
            ("compute.step_ms", self.compute.step_ms),
            ("churn.down_secs", self.churn.down_secs),
            ("eval.every_secs", self.eval.every_secs),
            ("churn.join_within_secs", self.churn.join_within_secs),
        ] {
            anyhow::ensure!(
                v.is_finite() && (0.0..=86_400_000.0).contains(&v),
                "{name} must be a finite non-negative number, not {v}"
            );
        }
        anyhow::ensure!(
            n.bandwidth_mbps.is_finite() && n.bandwidth_mbps > 0.0,
            "network.bandwidth_mbps must be positive, not {}",
            n.bandwidth_mbps
        );
        for (name, v) in [
            ("network.loss", n.loss),
            ("churn.crash_per_round", self.churn.crash_per_round),
            ("churn.leave_share", self.churn.leave_share),
            ("churn.late_join_share", self.churn.late_join_share),
        ] {
            anyhow::ensure!(
                (0.0..=1.0).contains(&v),
                "{name} must be within 0..=1, not {v}"
            );
        }
        anyhow::ensure!(n.loss < 1.0, "network.loss must be below 1");
        anyhow::ensure!(
            self.eval.every_rounds >= 1,
            "eval.every_rounds must be at least 1"
        );
        anyhow::ensure!(
            self.eval.trace_every_secs.is_finite() && self.eval.trace_every_secs >= 0.01,
            "eval.trace_every_secs must be at least 0.01"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.target_accuracy),
            "target_accuracy must be within 0..=1"
        );
        for (i, s) in self.partitions.iter().enumerate() {
            anyhow::ensure!(
                s.at_secs.is_finite() && s.heal_secs.is_finite() && s.at_secs < s.heal_secs,
                "partitions[{i}]: at_secs must come before heal_secs"
            );
            anyhow::ensure!(
                (2..=self.peers).contains(&s.groups),
                "partitions[{i}]: groups must be 2..=peers"
            );
        }
        anyhow::ensure!(
            (0.0..1.0).contains(&self.hostile.share) && self.hostile.count(self.peers) < self.peers,
            "hostile.share must be within 0..1 and leave at least one honest peer"
        );
        anyhow::ensure!(
            !self.exact_averaging
                || (self.hostile.count(self.peers) == 0
                    && self.partitions.is_empty()
                    && self.churn.crash_per_round == 0.0
                    && self.churn.late_join_share == 0.0),
            "exact_averaging runs without hostile peers, partitions or churn (it is the \
             reference an honest, stable network is measured against)"
        );
        let hostile = if self.hostile.count(self.peers) == 0 {
            None
        } else {
            Some(
                self.hostile
                    .behaviour
                    .parse::<Hostile>()
                    .map_err(|e| anyhow::anyhow!("hostile.behaviour: {e}"))?,
            )
        };
        let node = self.node_config(dataset, &model, partition)?;
        let step_ms = if self.compute.step_ms > 0.0 {
            self.compute.step_ms
        } else {
            match model {
                ModelKind::LogReg => 1.0,
                ModelKind::Mlp { .. } => 10.0,
                ModelKind::Cnn => 200.0,
            }
        };
        Ok(Checked {
            step: std::time::Duration::from_secs_f64(step_ms / 1_000.0),
            dataset,
            model,
            partition,
            hostile,
            node,
            scenario: self,
        })
    }

    /// The peers' config: the testnet's (`NodeConfig` defaults with this data and model),
    /// then the scenario's `[config]` keys, checked as a `peer.toml` is.
    fn node_config(
        &self,
        dataset: DatasetName,
        model: &ModelKind,
        partition: Partition,
    ) -> anyhow::Result<NodeConfig> {
        let mut cfg = NodeConfig::default();
        cfg.training.dataset = dataset;
        cfg.training.data_dir = self.data_dir.clone();
        cfg.training.model = model.clone();
        cfg.training.partition = partition;
        let mut table = toml::Table::try_from(&cfg).context("rendering the base config")?;
        merge(&mut table, &self.config);
        let text = toml::to_string(&table).context("rendering the scenario's config")?;
        Ok(NodeConfig::from_toml_str(&text, "the scenario's [config]")?)
    }
}

/// Merges `over` into `base`, table by table; `over`'s values win.
fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (key, value) in over {
        match (base.get_mut(key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Checked> {
        toml::from_str::<Scenario>(text)?.check()
    }

    #[test]
    fn a_scenario_with_config_keys_parses() {
        let c = parse(
            "peers = 20\nmodel = \"mlp\"\npartition = \"dirichlet:0.1\"\n\
             [network]\nlatency_ms = 30\n[churn]\ncrash_per_round = 0.01\ndown_secs = 5\n\
             [[partitions]]\nat_secs = 10\nheal_secs = 20\n\
             [hostile]\nshare = 0.1\nbehaviour = \"scale:100\"\n\
             [config.averaging]\nfanout = 3\n",
        )
        .unwrap();
        assert_eq!(c.node.averaging.fanout, 3);
        assert_eq!(c.scenario.partitions[0].groups, 2);
        assert_eq!(c.hostile, Some(Hostile::Scale(100.0)));
        assert_eq!(c.step, std::time::Duration::from_millis(10));
    }

    #[test]
    fn bad_scenarios_are_refused_with_the_key() {
        for (text, needle) in [
            ("peers = 0", "peers"),
            ("rounds = 0", "rounds"),
            ("model = \"rnn\"", "rnn"),
            ("[network]\nloss = 1.5", "network.loss"),
            ("[network]\nbandwidth_mbps = 0", "bandwidth"),
            ("[network]\nlatency_ms = -1", "latency_ms"),
            (
                "[[partitions]]\nat_secs = 5\nheal_secs = 1",
                "partitions[0]",
            ),
            (
                "peers = 4\n[hostile]\nshare = 0.9\nbehaviour = \"random\"",
                "hostile.share",
            ),
            (
                "[hostile]\nshare = 0.2\nbehaviour = \"nice\"",
                "hostile.behaviour",
            ),
            ("[config.averaging]\nfanout = 0", "fanout"),
            ("[config.averaging]\nfanout_typo = 1", "fanout_typo"),
            ("[config.averaging]\nencoding = \"int3\"", "int3"),
            ("[eval]\nevery_rounds = 0", "every_rounds"),
            ("[eval]\nevery_secs = -1", "eval.every_secs"),
            ("[eval]\ntrace_every_secs = 0", "trace_every_secs"),
            ("[compute]\nstep_ms = -1", "compute.step_ms"),
            ("[network]\njitter_ms = nan", "network.jitter_ms"),
            ("[churn]\ncrash_per_round = 2", "churn.crash_per_round"),
            ("[churn]\ndown_secs = -5", "churn.down_secs"),
            ("target_accuracy = 2", "target_accuracy"),
            (
                "exact_averaging = true\n[churn]\ncrash_per_round = 0.1",
                "exact_averaging",
            ),
            (
                "exact_averaging = true\n[hostile]\nshare = 0.2\nbehaviour = \"random\"",
                "exact_averaging",
            ),
            (
                "[[partitions]]\nat_secs = 1\nheal_secs = 2\ngroups = 1",
                "groups",
            ),
            ("dataset = \"cifar\"", "cifar"),
            ("partition = \"dirichlet:-1\"", "dirichlet"),
        ] {
            let err = format!("{:#}", parse(text).unwrap_err());
            assert!(err.contains(needle), "{text}: {err}");
        }
        let err = toml::from_str::<Scenario>("peerz = 3").unwrap_err();
        assert!(err.to_string().contains("peerz"), "{err}");
    }

    #[test]
    fn an_oversized_scenario_file_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.toml");
        let big = crate::config::MAX_CONFIG_BYTES as usize + 10;
        std::fs::write(&path, vec![b'#'; big]).unwrap();
        let err = format!("{:#}", Scenario::load(&path).unwrap_err());
        assert!(err.contains("larger than"), "{err}");
    }
}
