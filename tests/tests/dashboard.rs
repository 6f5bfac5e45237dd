//! The dashboard in a real headless Chromium (Debian's `chromium` + `chromium-driver`, driven
//! over WebDriver) against a live 3-node network: the page loads, each chart holds one line
//! per peer with points, the peer table shows the 3 peers with each one's CPU shares
//! (training and communication) as percentages, the summary shows this node's, the topology
//! draws them, and a screenshot is written. Then the node goes away and the page says it is
//! reconnecting.
//!
//! `MURMUR_SCREENSHOT=path` writes the screenshot there (that is how `docs/dashboard.png` is
//! made); otherwise it goes to the system temp dir.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use fantoccini::ClientBuilder;
use murmur_tests::LiveNetwork;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// What the page shows, read in the browser.
const PROBE: &str = r##"
const points = (sel) => [...document.querySelectorAll(sel)].map((p) => Number(p.dataset.points));
return {
  conn: document.getElementById("conn").textContent,
  rows: [...document.querySelectorAll("#peers tbody tr")].map((r) => r.dataset.peer),
  accuracy: points("#accuracy-chart path.series"),
  accuracy_mean: points("#accuracy-chart path.mean"),
  loss: points("#loss-chart path.series"),
  consensus: points("#consensus-chart path.series"),
  topology_nodes: document.querySelectorAll("#topology g.node").length,
  topology_edges: document.querySelectorAll("#topology line.edge").length,
  averagings: document.querySelectorAll("#averagings tbody tr").length,
  shares: [...document.querySelectorAll("#peers tbody tr")].map((r) => ({
    peer: r.dataset.peer,
    train: r.querySelector('td[data-col="train_share"]')?.textContent,
    comm: r.querySelector('td[data-col="comm_share"]')?.textContent,
    per_merge: r.querySelector('td[data-col="bytes_per_merge"]')?.textContent,
    link: r.querySelector('td[data-col="connection"]')?.textContent,
  })),
  own_train: document.getElementById("sum-train").textContent,
  own_comm: document.getElementById("sum-comm").textContent,
  own_train_recent: document.getElementById("sum-train-recent").textContent,
  own_per_merge: document.getElementById("sum-bpm").textContent,
  reach: document.getElementById("sum-reach").textContent,
};
"##;

/// A percentage as the page prints it (`"12.3%"`), if it is one in 0..=100.
fn percent(v: &Value) -> Option<f64> {
    let p: f64 = v.as_str()?.strip_suffix('%')?.parse().ok()?;
    (0.0..=100.0).contains(&p).then_some(p)
}

/// On a runtime whose threads count as this process's communication CPU, as `murmur run`'s
/// do (so the nodes' communication shares are measured, not zero).
#[test]
fn the_dashboard_shows_the_network_in_a_real_browser() {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    murmur_node::cpu::count_runtime_threads(&mut builder)
        .build()
        .unwrap()
        .block_on(dashboard());
}

async fn dashboard() {
    assert!(
        std::path::Path::new(CHROMEDRIVER).exists(),
        "{CHROMEDRIVER} is missing: install Debian's chromium and chromium-driver \
         (apt-get install chromium chromium-driver; .ci/run does)"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut driver = tokio::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let net = LiveNetwork::start("dashboard", 3).await;
    let ids: Vec<String> = net.nodes.iter().map(|n| n.peer_id.to_string()).collect();

    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-quic", "--no-first-run", "--window-size=1400,1450",
            ],
        }),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let browser = loop {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("chromedriver did not start a session: {e}"),
        }
    };
    browser
        .goto(&format!("http://{}/", net.dashboard))
        .await
        .unwrap();
    assert_eq!(browser.title().await.unwrap(), "murmur dashboard");

    // Poll what the page shows until the whole network is on it (the charts need a few
    // history points; for the committed screenshot, a minute of them).
    let screenshot = std::env::var_os("MURMUR_SCREENSHOT").map(std::path::PathBuf::from);
    let min_points = if screenshot.is_some() { 60 } else { 3 };
    let deadline = Instant::now() + Duration::from_secs(60 + min_points);
    let seen = loop {
        let v: Value = browser.execute(PROBE, vec![]).await.unwrap();
        let lines_ok = |k: &str| {
            v[k].as_array()
                .is_some_and(|a| a.len() == 3 && a.iter().all(|n| n.as_u64() >= Some(min_points)))
        };
        if v["conn"] == "live"
            && v["rows"].as_array().is_some_and(|r| r.len() == 3)
            && lines_ok("accuracy")
            && lines_ok("loss")
            && v["consensus"][0].as_u64() >= Some(3)
            && v["topology_nodes"] == 3
            && v["averagings"].as_u64() >= Some(1)
            && v["shares"].as_array().is_some_and(|rows| {
                rows.len() == 3
                    && rows
                        .iter()
                        .all(|r| percent(&r["train"]).is_some() && percent(&r["comm"]).is_some())
            })
            && percent(&v["own_train"]).is_some_and(|p| p > 0.0)
            && percent(&v["own_comm"]).is_some_and(|p| p > 0.0)
            // Known once this node has merged: bytes, printed with a unit.
            && v["own_per_merge"].as_str().is_some_and(|s| s.ends_with('B'))
            // Loopback addresses are never confirmed: reachability stays unknown.
            && v["reach"] == "unknown"
            // Every other peer is shown as connected directly or not connected (no relay
            // on loopback); this node's own row has no link.
            && v["shares"].as_array().is_some_and(|rows| {
                rows.iter().all(|r| {
                    ["direct", "not connected", "–"].contains(&r["link"].as_str().unwrap_or(""))
                }) && rows.iter().filter(|r| r["link"] == "direct").count() >= 1
            })
        {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed the network: {v}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let mut rows: Vec<String> = seen["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    rows.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(rows, expected, "one table row per peer");
    assert_eq!(seen["accuracy_mean"].as_array().map(Vec::len), Some(1));
    assert!(seen["topology_edges"].as_u64() >= Some(2), "{seen}");
    // Every peer's CPU shares are shown as percentages in 0..100 (checked above, for every
    // row); a peer's two shares cannot add up to more than its whole process time.
    for row in seen["shares"].as_array().unwrap() {
        let (train, comm) = (
            percent(&row["train"]).unwrap(),
            percent(&row["comm"]).unwrap(),
        );
        assert!(train + comm <= 100.2, "{row}");
        assert!(row["per_merge"].is_string(), "{row}");
    }
    // This node's own: since start, and over the recent window.
    assert!(
        seen["own_train_recent"]
            .as_str()
            .and_then(|s| s.strip_prefix("last 30 s: "))
            .is_some_and(|p| percent(&Value::from(p)).is_some()),
        "{seen}"
    );

    // Sorting by a column reorders the table and marks the column.
    browser
        .find(fantoccini::Locator::Css("#peers th[data-key='peer_id']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let sorted: Value = browser
        .execute(
            "return [...document.querySelectorAll('#peers tbody tr')].map((r) => r.dataset.peer)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(sorted, json!(expected), "sorted by peer id, ascending");

    let png = browser.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let path = screenshot.unwrap_or_else(|| std::env::temp_dir().join("murmur-dashboard.png"));
    std::fs::write(&path, &png).unwrap();
    eprintln!("screenshot: {} ({} bytes)", path.display(), png.len());

    // The node goes away: the page says so.
    net.shutdown().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v: Value = browser.execute(PROBE, vec![]).await.unwrap();
        if v["conn"]
            .as_str()
            .is_some_and(|c| c.starts_with("reconnecting"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no 'reconnecting' after the node stopped: {v}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    browser.close().await.unwrap();
    let _ = driver.kill().await;
}
