//! Tests through the whole file: parsing, defaults, loading, and the message of every key's
//! check (the tables below cover every section). Also the helpers the other files' tests use.
//! The sections' own behaviour (`network.rs`, `training.rs`) and the wording of TOML errors
//! (`error.rs`) are tested next to them.

use super::*;
use crate::data::{Partition, ShardSpec};
use crate::model::ModelKind;
use crate::train::TrainConfig;
use crate::train::optim::OptimizerKind;
use std::time::Duration;

pub(super) fn parse(text: &str) -> Result<NodeConfig, ConfigError> {
    NodeConfig::from_toml_str(text, "peer.toml")
}

/// The error message for `text`, which must not parse.
pub(super) fn error(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

pub(super) const PEER_ID: &str = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";

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
            "ignore, prefer-fresh or same-round",
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
fn overlap_is_refused_with_the_same_round_exchange_only() {
    let message = error("[averaging]\noverlap = true");
    assert!(
        message.starts_with("peer.toml: averaging.overlap = true")
            && message.contains("same-round"),
        "{message}"
    );
    let cfg = parse("[averaging]\noverlap = true\nstaleness = 'prefer-fresh'").unwrap();
    assert!(cfg.averaging.overlap);
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
