//! The HTTP API against a live 3-node network: field names, the network view, the history,
//! the event stream and the Prometheus text.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use murmur_tests::{LiveNetwork, http_get, parse_response};
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

fn has_fields(v: &Value, fields: &[&str]) {
    let k = keys(v);
    for f in fields {
        assert!(k.contains(f), "field {f} missing from {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_shows_the_whole_network() {
    let net = LiveNetwork::start("api", 3).await;
    let addr = net.dashboard;
    let ids: Vec<String> = net.nodes.iter().map(|n| n.peer_id.to_string()).collect();

    // /api/status: this node.
    let r = http_get(addr, "/api/status").await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let status = r.json();
    has_fields(
        &status,
        &[
            "peer_id",
            "listen_addrs",
            "version",
            "manifest",
            "accuracy",
            "loss",
            "samples",
            "uptime_secs",
            "counters",
            "peers",
            "consensus_distance",
            "averagings",
        ],
    );
    has_fields(
        &status["counters"],
        &[
            "rounds",
            "merges",
            "merges_rejected",
            "bytes_sent",
            "bytes_received",
            "chunks_fetched",
            "chunks_reused",
            "fetch_failures",
            "train_cpu_micros",
            "merge_cpu_micros",
            "runtime_cpu_micros",
            "process_cpu_micros",
            "eval_cpu_micros",
            "train_share",
            "comm_share",
            "train_share_recent",
            "comm_share_recent",
            "bytes_per_merge",
        ],
    );
    // The node has trained: its training took CPU time, a share of the process's.
    let c = &status["counters"];
    assert!(c["train_cpu_micros"].as_u64().unwrap() > 0, "{c}");
    assert!(c["process_cpu_micros"].as_u64().unwrap() > 0, "{c}");
    for share in [
        "train_share",
        "comm_share",
        "train_share_recent",
        "comm_share_recent",
    ] {
        let v = c[share].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{share} {v}");
    }
    assert!(c["train_share"].as_f64().unwrap() > 0.0, "{c}");
    assert_eq!(status["peer_id"], ids[0].as_str());
    assert_eq!(status["manifest"].as_str().unwrap().len(), 64);

    // /api/network: all three peers, each with the documented fields.
    let view = http_get(addr, "/api/network").await.json();
    has_fields(
        &view,
        &["peer_id", "network_id", "peers", "consensus_distance"],
    );
    let peers = view["peers"].as_array().unwrap();
    let mut listed: Vec<&str> = peers
        .iter()
        .map(|p| p["peer_id"].as_str().unwrap())
        .collect();
    listed.sort_unstable();
    let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(listed, expected, "the network view lists all 3 peers");
    for p in peers {
        has_fields(
            p,
            &[
                "peer_id",
                "is_self",
                "version",
                "accuracy",
                "loss",
                "samples",
                "last_seen_secs",
                "neighbours",
                "bytes_sent",
                "bytes_received",
                "merges",
                "train_share",
                "comm_share",
                "bytes_per_merge",
            ],
        );
        for share in ["train_share", "comm_share"] {
            let v = p[share].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{share} {v} in {p}");
        }
    }
    assert_eq!(peers.iter().filter(|p| p["is_self"] == true).count(), 1);
    assert!(view["consensus_distance"].as_f64().unwrap() >= 0.0);

    // /api/history: points with every peer, and `since` returns only newer ones.
    let deadline = Instant::now() + Duration::from_secs(30);
    let history = loop {
        let h = http_get(addr, "/api/history").await.json();
        let full = h["points"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["peers"].as_object().unwrap().len() == 3)
            .count();
        if full >= 2 {
            break h;
        }
        assert!(
            Instant::now() < deadline,
            "history never held 2 points with 3 peers: {h}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    has_fields(
        &history,
        &["peer_id", "interval_secs", "capacity", "points"],
    );
    let points = history["points"].as_array().unwrap();
    has_fields(
        &points[0],
        &[
            "t",
            "peers",
            "consensus_distance",
            "bytes_in_rate",
            "bytes_out_rate",
            "merges",
        ],
    );
    let last_t = points.last().unwrap()["t"].as_f64().unwrap();
    let newer = http_get(addr, &format!("/api/history?since={last_t}"))
        .await
        .json();
    assert!(
        newer["points"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["t"].as_f64().unwrap() > last_t)
    );

    // /api/events: the stream delivers an announcement as server-sent events.
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"GET /api/events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n",
        )
        .await
        .unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(30);
    let announce = loop {
        let n = tokio::time::timeout_at(deadline.into(), stream.read(&mut buf))
            .await
            .expect("an announcement within 30 s")
            .unwrap();
        assert!(n > 0, "event stream closed");
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw);
        if let Some(at) = text.find("event: announce\ndata: ") {
            let rest = &text[at + "event: announce\ndata: ".len()..];
            if let Some(end) = rest.find('\n') {
                break serde_json::from_str::<Value>(&rest[..end]).unwrap();
            }
        }
    };
    let head = parse_response(&raw);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    has_fields(
        &announce,
        &[
            "type", "at_secs", "peer_id", "own", "version", "manifest", "samples", "accuracy",
            "loss",
        ],
    );
    assert_eq!(announce["type"], "announce");
    assert!(ids.iter().any(|id| announce["peer_id"] == id.as_str()));

    // /metrics: Prometheus text, every sample a known family with a numeric value.
    let r = http_get(addr, "/metrics").await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .contains("openmetrics-text")
    );
    let text = String::from_utf8(r.body).unwrap();
    let families = parse_prometheus(&text);
    for (family, kind) in [
        ("murmur_rounds", "counter"),
        ("murmur_merges", "counter"),
        ("murmur_sent_bytes", "counter"),
        ("murmur_received_bytes", "counter"),
        ("murmur_chunks_fetched", "counter"),
        ("murmur_accuracy", "gauge"),
        ("murmur_model_version", "gauge"),
        ("murmur_peers_known", "gauge"),
        ("murmur_consensus_distance", "gauge"),
        ("murmur_resource_utilization", "gauge"),
        ("murmur_communication_overhead", "gauge"),
        ("murmur_bytes_per_merge", "gauge"),
    ] {
        let (k, samples) = families
            .iter()
            .find(|(name, _)| name == family)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no family {family} in\n{text}"));
        assert_eq!(k, kind, "{family}");
        assert_eq!(samples.len(), 1, "{family}");
    }
    let version = families
        .iter()
        .find(|(n, _)| n == "murmur_model_version")
        .map(|(_, (_, s))| s[0])
        .unwrap();
    assert!(version >= 1.0);
    let known = families
        .iter()
        .find(|(n, _)| n == "murmur_peers_known")
        .map(|(_, (_, s))| s[0])
        .unwrap();
    assert_eq!(known, 2.0);
    // CPU seconds by activity: one labelled counter family, five samples.
    let (kind, cpu) = families
        .iter()
        .find(|(n, _)| n == "murmur_cpu_seconds")
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no murmur_cpu_seconds in\n{text}"));
    assert_eq!(kind, "counter");
    assert_eq!(cpu.len(), 5, "{text}");
    for activity in ["process", "train", "merge", "runtime", "eval"] {
        assert!(
            text.contains(&format!(
                "murmur_cpu_seconds_total{{activity=\"{activity}\"}} "
            )),
            "{text}"
        );
    }
    for gauge in [
        "murmur_resource_utilization",
        "murmur_communication_overhead",
    ] {
        let v = families
            .iter()
            .find(|(n, _)| n == gauge)
            .map(|(_, (_, s))| s[0])
            .unwrap();
        assert!((0.0..=1.0).contains(&v), "{gauge} {v}");
    }

    // Read-only: nothing but GET is routed.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /api/status HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    assert_eq!(parse_response(&raw).status, 405);
    net.shutdown().await;
}

/// Parses the Prometheus / OpenMetrics text format strictly enough to catch a malformed
/// exposition: `# HELP` and `# TYPE` before their samples, metric names of the allowed
/// characters, sample names of their family (plus `_total` for counters) with optional
/// `{name="value",...}` labels, float values, a final `# EOF`. Returns (family, (type,
/// values)).
fn parse_prometheus(text: &str) -> Vec<(String, (String, Vec<f64>))> {
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut families: Vec<(String, (String, Vec<f64>))> = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "ends with # EOF");
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name type");
            assert!(valid_name(name), "bad name {name}");
            assert!(
                [
                    "counter",
                    "gauge",
                    "histogram",
                    "summary",
                    "unknown",
                    "info",
                    "stateset"
                ]
                .contains(&kind)
            );
            families.push((name.to_string(), (kind.to_string(), Vec::new())));
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _) = rest.split_once(' ').expect("# HELP name text");
            assert!(valid_name(name), "bad name {name}");
        } else {
            assert!(!line.starts_with('#'), "unknown comment {line}");
            let (name, value) = line.rsplit_once(' ').expect("sample: name value");
            let name = match name.split_once('{') {
                Some((name, labels)) => {
                    let labels = labels.strip_suffix('}').expect("labels end with }");
                    for label in labels.split(',') {
                        let (k, v) = label.split_once('=').expect("label name=value");
                        assert!(valid_name(k), "bad label name {k}");
                        assert!(v.len() >= 2 && v.starts_with('"') && v.ends_with('"'));
                    }
                    name
                }
                None => name,
            };
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("sample value of {line} is not a number"));
            let (family, (kind, values)) = families.last_mut().expect("sample after # TYPE");
            let expected = if kind == "counter" {
                format!("{family}_total")
            } else {
                family.clone()
            };
            assert_eq!(name, expected, "sample of the family just declared");
            values.push(value);
        }
    }
    families
}
