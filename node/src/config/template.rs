//! The commented `peer.toml` that `murmur init` writes: every key, a one-line reminder of what
//! it means, and its value. Owns only the layout of that text; what the keys mean and what they
//! may hold is [`super::NodeConfig`]'s (and `docs/config.md`'s). Rendering the defaults gives
//! `testnet/peer.example.toml`, and whatever it renders parses back to the same config.

use super::NodeConfig;
use std::fmt::Display;

/// The commented TOML text of `cfg`, which parses back to `cfg`.
pub fn render(cfg: &NodeConfig) -> String {
    let net = &cfg.network;
    let train = &cfg.training;
    let avg = &cfg.averaging;
    let training_data_dir = train
        .data_dir
        .as_ref()
        .map(|dir| dir.display().to_string())
        .unwrap_or_default();
    format!(
        r#"# murmur peer configuration, as written by `murmur init`.
# Every key is shown with its default; a key left out takes its default, an unknown key is an
# error. docs/config.md documents every key. Flags of `murmur run` (--listen, --bootstrap,
# --data-dir, --shard, --dashboard-listen, ...) override the keys of the same name.

# Namespaces the gossip topic and protocol ids: only peers with the same id talk to each other.
# 1 to 64 characters of a-z, 0-9 and -.
network_id = {network_id}
# This peer's state (identity key, checkpoint). A relative path is relative to this file.
data_dir = {data_dir}

[network]
# Multiaddrs to listen on; port 0 = any free port.
listen = {listen}
# Peers to dial at start (and again while not connected): /ip4, /ip6 or a host name
# (/dns, /dns4, /dns6), best ending in /p2p/<peer id>, e.g.
# "/dns4/boot.example.org/tcp/4001/p2p/12D3KooW...".
bootstrap = {bootstrap}
# Relays to reserve a slot on while this peer is not known to be reachable, each ending in
# /p2p/<relay's peer id>. Until found reachable a peer also reserves on connected peers that
# serve as relays (two reservations in all), so a bootstrap address is usually enough.
relays = {relays}
# Addresses this peer is reachable at from outside (a public host), taken as confirmed.
external_addrs = {external_addrs}
# Serve as a circuit relay for peers behind NATs: auto (once reachable), on or off.
relay_server = {relay_server}
# The relay's caps: reservations (all, per peer), circuits (all, per asking peer as either
# end), megabytes and seconds per circuit.
relay_max_reservations = {relay_max_reservations}
relay_max_reservations_per_peer = {relay_max_reservations_per_peer}
relay_max_circuits = {relay_max_circuits}
relay_max_circuits_per_peer = {relay_max_circuits_per_peer}
relay_max_circuit_mb = {relay_max_circuit_mb}
relay_max_circuit_secs = {relay_max_circuit_secs}
# Discover peers on the local network (mDNS).
mdns = {mdns}
# Kademlia DHT for peer discovery (server mode, periodic random walk).
kademlia = {kademlia}
# Most established connections, inbound and outbound together.
max_connections = {max_connections}
# Seconds a connection with no open stream is kept.
idle_timeout_secs = {idle_timeout_secs}
# Sync requests per second one peer may make of this peer (bursts of twice that); past it
# the peer is answered Busy and backs off.
peer_requests_per_sec = {peer_requests_per_sec}
# Megabits per second one peer may download from this peer; 0 = no per-peer limit.
peer_upload_mbps = {peer_upload_mbps}
# Megabits per second this peer uploads to all peers together, shared equally among the
# active ones; every byte it sends counts, circuits it relays included; 0 = unlimited.
# Caps what murmur takes of a home link's upstream.
max_upload_mbps = {max_upload_mbps}
# Private network: a pre-shared key of 64 hex digits (`murmur psk` makes one); "" = none.
# Every peer of the network needs the same key. TCP only: no QUIC address with a key.
psk = {psk}
# Peer ids allowed to connect (`murmur id` prints a data dir's); [] = everyone.
allow = {allow}
# Peer ids never allowed to connect (wins over allow).
deny = {deny}
# Test aid: pass manifest and chunk transfers through an emulated link of this rate and/or
# one-way latency, e.g. "20mbit,40ms" (the kernel's netem may be missing); "" = none.
emulate_link = {emulate_link}

[training]
# digits (built in) | fashion-mnist | mnist. The same on every peer.
dataset = {dataset}
# Directory holding the IDX files; "" = the dataset's default. Relative to this file.
data_dir = {training_data_dir}
# logreg | mlp | mlp:<h1>-<h2>-... | cnn. The same on every peer.
model = {model}
# How the training set is split among peers: iid | dirichlet:<alpha> | shards:<k>.
partition = {partition}
# This peer's part of the split: i/n = part i (0-based) of n.
shard = {shard}
# sgd | adamw
optimizer = {optimizer}
# Learning rate, > 0.
lr = {lr}
# SGD momentum, 0 <= momentum < 1 (0 = plain SGD); ignored by adamw.
momentum = {momentum}
# SGD momentum across merges: local (fed by this peer's gradients only) | reset (emptied at
# each merge) | quasi-global (fed by the model's whole displacement, merges included).
momentum_mode = {momentum_mode}
# Samples over which the learning rate rises linearly from 0 to lr; 0 = none.
warmup_samples = {warmup_samples}
# Weight decay, >= 0.
weight_decay = {weight_decay}
# Learning-rate decay: lr / (1 + samples trained / lr_decay_samples); 0 = constant.
lr_decay_samples = {lr_decay_samples}
# Cosine annealing to 0 over this many samples of this peer (a planned budget); 0 = none.
lr_cosine_samples = {lr_cosine_samples}
# Train with log p(class) of this peer's labels added to the logits, so a shard skewed toward
# a few classes does not teach the model to favour them (no effect on a balanced shard).
balance_classes = {balance_classes}
# Examples per minibatch.
batch_size = {batch_size}
# Examples of this peer's shard held back from training, on which partner models are checked
# before they are merged or adopted (at most a fifth of the shard); 0 = no check.
holdout_samples = {holdout_samples}
# Seeds the initial weights (the same on all peers of a network), the partition, batch order.
seed = {seed}
# Compute threads (0 = one per core); keep 1 when several peers share a machine.
threads = {threads}

[averaging]
# Local training steps per round.
round_steps = {round_steps}
# If > 0, a round also ends after this many seconds.
round_secs = {round_secs}
# Peers averaged with per round.
fanout = {fanout}
# Seconds a round may wait, idle, while its merge is gathered and fetched, so that it ends on
# the merged model (with same-round: up to half of it waiting for partners' models of the
# round); 0 = merge whenever the partners' models arrive.
merge_wait_secs = {merge_wait_secs}
# How averaged models are weighed: uniform | samples (by training samples, a partner's claim
# capped at this peer's own).
weighting = {weighting}
# Partners' model age: ignore (drawn at random) | prefer-fresh (drawn among those heard in
# this peer's last round, each weighed down by 1 + its lag in this peer's rounds) |
# same-round (announce the trained model before merging, wait up to half of merge_wait_secs
# for up to fanout partners' models of the same round, merge only those; not with overlap).
staleness = {staleness}
# How a merge combines the partner models that passed the checks: clip (each partner's
# difference cut to clip_factor x the usual distance) | mean | median | trimmed-mean.
aggregation = {aggregation}
clip_factor = {clip_factor}
# Refuse (and charge) a partner model farther from ours than this many times the usual
# distance (recent partners' and our own progress per round); 0 = no distance check.
max_distance = {max_distance}
# Refuse (and charge) a partner model whose loss on the held-back data is over this many
# times the usual loss there (ours, or recent partners' if higher) + 0.5; 0 = finite only.
accept_loss_ratio = {accept_loss_ratio}
# Outer step on each merge: learning rate (> 0) and Nesterov momentum (0 <= m < 1); 1 and 0
# = the plain merge.
outer_lr = {outer_lr}
outer_momentum = {outer_momentum}
# Seconds after which a peer's announcement is too old to be chosen.
freshness_secs = {freshness_secs}
# Bytes per chunk of a published model, 64 to 4194304.
chunk_size = {chunk_size}
# Chunk requests in flight to one peer, 1 to 16.
max_inflight_per_peer = {max_inflight_per_peer}
# Bad answers tolerated from a peer before it is avoided.
error_budget = {error_budget}
# Seconds one model's whole fetch may take.
fetch_timeout_secs = {fetch_timeout_secs}
# Seconds to wait for one request's answer before charging the peer (below the above).
request_timeout_secs = {request_timeout_secs}
# How this peer encodes the models it publishes: f32 | f16 | bf16 | int8 (a scale per 256
# values) | int8:<block>. Peers read every encoding, whatever their own.
encoding = {encoding}
# Start each round's averaging when the round before it ends, so that fetches overlap this
# round's steps (true), or when this round's steps end (false; the round then waits up to
# merge_wait_secs for its merge).
overlap = {overlap}

[store]
# Most memory the chunk store holds, in MiB.
memory_budget_mb = {memory_budget_mb}
# Least seconds between two checkpoints of the model (written atomically to data_dir).
checkpoint_every_secs = {checkpoint_every_secs}

[dashboard]
# HTTP dashboard and API, <ip>:<port>; port 0 = any free port, 0.0.0.0 = every interface.
listen = {dashboard_listen}
"#,
        network_id = string(&cfg.network_id),
        data_dir = string(cfg.data_dir.display()),
        listen = strings(&net.listen),
        bootstrap = strings(&net.bootstrap),
        relays = strings(&net.relays),
        external_addrs = strings(&net.external_addrs),
        relay_server = string(net.relay_server),
        relay_max_reservations = net.relay_max_reservations,
        relay_max_reservations_per_peer = net.relay_max_reservations_per_peer,
        relay_max_circuits = net.relay_max_circuits,
        relay_max_circuits_per_peer = net.relay_max_circuits_per_peer,
        relay_max_circuit_mb = net.relay_max_circuit_mb,
        relay_max_circuit_secs = net.relay_max_circuit_secs,
        mdns = net.mdns,
        kademlia = net.kademlia,
        max_connections = net.max_connections,
        idle_timeout_secs = net.idle_timeout_secs,
        peer_requests_per_sec = net.peer_requests_per_sec,
        peer_upload_mbps = float(net.peer_upload_mbps),
        max_upload_mbps = float(net.max_upload_mbps),
        psk = string(&net.psk),
        allow = strings(&net.allow),
        deny = strings(&net.deny),
        emulate_link = string(net.emulate_link.map(|l| l.to_string()).unwrap_or_default()),
        dataset = string(train.dataset),
        training_data_dir = string(training_data_dir),
        model = string(&train.model),
        partition = string(train.partition),
        shard = string(train.shard),
        optimizer = string(train.optimizer),
        lr = float(train.lr),
        momentum = float(train.momentum),
        momentum_mode = string(train.momentum_mode),
        warmup_samples = train.warmup_samples,
        weight_decay = float(train.weight_decay),
        lr_decay_samples = train.lr_decay_samples,
        lr_cosine_samples = train.lr_cosine_samples,
        balance_classes = train.balance_classes,
        batch_size = train.batch_size,
        holdout_samples = train.holdout_samples,
        seed = train.seed,
        threads = train.threads,
        round_steps = avg.round_steps,
        round_secs = float(avg.round_secs),
        fanout = avg.fanout,
        merge_wait_secs = float(avg.merge_wait_secs),
        weighting = string(avg.weighting),
        staleness = string(avg.staleness),
        aggregation = string(avg.aggregation),
        clip_factor = float(avg.clip_factor),
        max_distance = float(avg.max_distance),
        accept_loss_ratio = float(avg.accept_loss_ratio),
        outer_lr = float(avg.outer_lr),
        outer_momentum = float(avg.outer_momentum),
        freshness_secs = avg.freshness_secs,
        chunk_size = avg.chunk_size,
        max_inflight_per_peer = avg.max_inflight_per_peer,
        error_budget = avg.error_budget,
        fetch_timeout_secs = avg.fetch_timeout_secs,
        encoding = string(avg.encoding),
        overlap = avg.overlap,
        request_timeout_secs = avg.request_timeout_secs,
        memory_budget_mb = cfg.store.memory_budget_mb,
        checkpoint_every_secs = float(cfg.store.checkpoint_every_secs),
        dashboard_listen = string(cfg.dashboard.listen),
    )
}

/// A TOML string.
fn string(value: impl Display) -> String {
    toml::Value::String(value.to_string()).to_string()
}

/// A one-line TOML array of strings.
fn strings<T: Display>(values: &[T]) -> String {
    let items: Vec<String> = values.iter().map(string).collect();
    format!("[{}]", items.join(", "))
}

/// A TOML float (always with a decimal point or exponent, so it reads as a float).
fn float(value: f64) -> String {
    toml::Value::Float(value).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Weighting;
    use crate::data::{DatasetName, Partition, ShardSpec};
    use crate::model::ModelKind;
    use crate::train::optim::OptimizerKind;
    use std::path::PathBuf;

    const DOCS: &str = include_str!("../../../docs/config.md");
    const EXAMPLE: &str = include_str!("../../../testnet/peer.example.toml");

    /// Every full key of a TOML table: `network_id`, `network.listen`, ...
    fn keys(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
        for (key, value) in table {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match value {
                toml::Value::Table(inner) => keys(inner, &path, out),
                _ => out.push(path),
            }
        }
    }

    fn template_keys() -> Vec<String> {
        let table: toml::Table = toml::from_str(&render(&NodeConfig::default())).unwrap();
        let mut out = Vec::new();
        keys(&table, "", &mut out);
        out
    }

    #[test]
    fn config_template_parses_back_to_the_defaults() {
        let text = render(&NodeConfig::default());
        let cfg = NodeConfig::from_toml_str(&text, "template").unwrap();
        assert_eq!(cfg, NodeConfig::default());
    }

    #[test]
    fn config_template_round_trips_other_values() {
        let mut cfg = NodeConfig {
            network_id: "lab-7".to_string(),
            data_dir: PathBuf::from("/var/lib/murmur \"a\""),
            ..NodeConfig::default()
        };
        cfg.network.listen = vec!["/ip6/::/tcp/4001".parse().unwrap()];
        cfg.network.bootstrap = vec![
            "/ip4/192.0.2.7/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
                .parse()
                .unwrap(),
        ];
        cfg.network.relays = vec![
            "/dns4/relay.example.org/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
                .parse()
                .unwrap(),
        ];
        cfg.network.external_addrs = vec!["/ip4/198.51.100.7/tcp/4001".parse().unwrap()];
        cfg.network.relay_server = crate::network::relay::RelayServer::Off;
        cfg.network.relay_max_reservations = 3;
        cfg.network.relay_max_reservations_per_peer = 4;
        cfg.network.relay_max_circuits = 5;
        cfg.network.relay_max_circuits_per_peer = 6;
        cfg.network.relay_max_circuit_mb = 7;
        cfg.network.relay_max_circuit_secs = 8;
        cfg.network.mdns = false;
        cfg.network.kademlia = false;
        cfg.network.max_connections = 7;
        cfg.network.peer_requests_per_sec = 9;
        cfg.network.peer_upload_mbps = 0.0;
        cfg.network.max_upload_mbps = 2.5;
        cfg.network.psk = "ab".repeat(32);
        cfg.network.allow = vec![
            "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
                .parse()
                .unwrap(),
        ];
        cfg.network.deny = cfg.network.allow.clone();
        cfg.training.dataset = DatasetName::FashionMnist;
        cfg.training.data_dir = Some(PathBuf::from("idx"));
        cfg.training.model = ModelKind::Mlp {
            hidden: vec![64, 32],
        };
        cfg.training.partition = Partition::Dirichlet { alpha: 0.3 };
        cfg.training.shard = ShardSpec { index: 2, count: 5 };
        cfg.training.optimizer = OptimizerKind::AdamW;
        cfg.training.lr = 1e-3;
        cfg.training.momentum = 0.0;
        cfg.training.weight_decay = 5e-4;
        cfg.training.seed = u64::from(u32::MAX) + 1;
        cfg.training.threads = 0;
        cfg.averaging.round_secs = 2.5;
        cfg.averaging.weighting = Weighting::Samples;
        cfg.averaging.aggregation = crate::config::Aggregation::TrimmedMean;
        cfg.averaging.clip_factor = 3.5;
        cfg.averaging.accept_loss_ratio = 0.0;
        cfg.averaging.max_distance = 0.0;
        cfg.averaging.request_timeout_secs = 2;
        cfg.training.holdout_samples = 0;
        cfg.averaging.chunk_size = 64;
        cfg.averaging.encoding = "int8:64".parse().unwrap();
        cfg.network.emulate_link = Some("20mbit,40ms".parse().unwrap());
        cfg.dashboard.listen = "[::1]:0".parse().unwrap();
        let text = render(&cfg);
        assert_eq!(
            NodeConfig::from_toml_str(&text, "t").unwrap(),
            cfg,
            "{text}"
        );
    }

    #[test]
    fn config_template_lines_fit_in_100_columns() {
        for line in render(&NodeConfig::default()).lines() {
            assert!(line.chars().count() <= 100, "{line}");
        }
    }

    #[test]
    fn config_every_template_key_is_in_the_docs() {
        let keys = template_keys();
        assert_eq!(keys.len(), 65, "{keys:?}");
        for key in keys {
            assert!(
                DOCS.contains(&format!("| `{key}` |")),
                "docs/config.md has no row for `{key}`"
            );
        }
    }

    #[test]
    fn config_docs_example_is_valid() {
        let (_, rest) = DOCS.split_once("```toml\n").unwrap();
        let (example, _) = rest.split_once("```").unwrap();
        let cfg = NodeConfig::from_toml_str(example, "docs/config.md").unwrap();
        assert_eq!(cfg.training.shard, ShardSpec { index: 3, count: 8 });
    }

    #[test]
    fn config_example_file_is_the_template() {
        assert_eq!(
            EXAMPLE,
            render(&NodeConfig::default()),
            "testnet/peer.example.toml is stale: regenerate it with \
             `murmur init --out testnet/peer.example.toml --force`"
        );
    }
}
