//! Nothing lost: a node whose checkpoints cannot be written (here: the data dir made
//! unwritable) says so clearly, in its log and in `/api/status`, keeps training and serving
//! its model to a peer, keeps the previous checkpoint intact, and writes checkpoints again
//! once the directory is writable. A full disk and a read-only file system, which need root
//! to set up (a tmpfs mount), are covered by `testnet/disk-faults.sh`; crashes in the middle
//! of a write by `testnet/kill-loop.sh` (`kill_loop.rs` runs a short one in the node's tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use murmur_node::store::checkpoint;
use murmur_tests::{dial_addr, http_get, options, start, wait_for};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// How the data dir was made unwritable.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Blocked {
    /// Mode 0555: works for an ordinary user.
    Chmod,
    /// A directory where the checkpoint's temporary file goes: root ignores file modes, but
    /// cannot create a file where a directory is.
    TmpIsDir,
}

/// Makes checkpoint writes into `dir` fail, the ordinary way if it works for this user.
fn block(dir: &Path) -> Blocked {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    let probe = dir.join("probe");
    if std::fs::write(&probe, b"x").is_err() {
        return Blocked::Chmod;
    }
    // Running as root (CAP_DAC_OVERRIDE): modes do not stop writes.
    std::fs::remove_file(&probe).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let tmp = dir.join("checkpoint.bin.tmp");
    // A save in progress may have the file there right now, and may create it again between
    // our remove and create: replace it until the directory is in place, with a deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let _ = std::fs::remove_file(&tmp);
        match std::fs::create_dir(&tmp) {
            Ok(()) => return Blocked::TmpIsDir,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("{} in the way ({e}); again", tmp.display());
            }
            Err(e) => panic!("cannot put a directory at {}: {e}", tmp.display()),
        }
    }
}

fn unblock(dir: &Path, how: Blocked) {
    match how {
        Blocked::Chmod => {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Blocked::TmpIsDir => std::fs::remove_dir(dir.join("checkpoint.bin.tmp")).unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_data_dir_is_reported_retried_and_the_node_trains_and_serves_on() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let data = dirs[0].path();
    let ck_path = checkpoint::checkpoint_path(data);
    let mut opts = options(data, "unwritable", 0, 2, vec![]);
    opts.checkpoint_every = Duration::from_millis(100);
    let node = start(opts).await;
    let s0 = wait_for(&node, "a first checkpoint", Duration::from_secs(30), |s| {
        !s.listen_addrs.is_empty() && s.checkpoint_version.is_some()
    })
    .await;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let api = murmur_node::api::serve("127.0.0.1:0".parse().unwrap(), (&node).into(), stop_rx)
        .await
        .unwrap();
    let peer = start(options(
        dirs[1].path(),
        "unwritable",
        1,
        2,
        vec![dial_addr(&s0)],
    ))
    .await;
    let node_id = node.peer_id.to_string();
    // Models of the node the peer fetched and merged (its latest averagings).
    let merged_from_node = |s: &murmur_node::status::NodeStatus| {
        s.averagings
            .iter()
            .flat_map(|a| a.models.iter())
            .filter(|m| m.peer_id == node_id && m.error.is_none())
            .map(|m| m.manifest.clone())
            .collect::<std::collections::HashSet<_>>()
    };
    wait_for(&peer, "the peer merging", Duration::from_secs(60), |s| {
        !merged_from_node(s).is_empty()
    })
    .await;

    let how = block(data);
    let failing = wait_for(
        &node,
        "checkpoint failures reported",
        Duration::from_secs(30),
        |s| s.counters.checkpoint_failures >= 3 && s.checkpoint_error.is_some(),
    )
    .await;
    let error = failing.checkpoint_error.clone().unwrap();
    let cause = match how {
        Blocked::Chmod => "Permission denied",
        Blocked::TmpIsDir => "Is a directory",
    };
    assert!(
        error.contains("checkpoint.bin.tmp") && error.contains(cause),
        "the error names the file and the cause ({how:?}): {error}"
    );
    // Visible in /api/status.
    let status = http_get(api, "/api/status").await.json();
    assert!(
        status["counters"]["checkpoint_failures"].as_u64().unwrap() >= 3,
        "{status}"
    );
    assert!(
        status["checkpoint_error"]
            .as_str()
            .unwrap()
            .contains("checkpoint.bin.tmp"),
        "{status}"
    );
    // The previous checkpoint is intact, and the node keeps training.
    let last_good = failing.checkpoint_version.unwrap();
    assert_eq!(
        checkpoint::load(&ck_path).unwrap().unwrap().version,
        last_good
    );
    let v = failing.version;
    // ... and serving: the peer fetches and merges its new models (announced while failing).
    let seen = merged_from_node(&peer.snapshot());
    wait_for(
        &node,
        "the node training on while failing",
        Duration::from_secs(30),
        |s| s.version >= v + 5 && s.checkpoint_error.is_some(),
    )
    .await;
    wait_for(
        &peer,
        "the peer merging new models of the failing node",
        Duration::from_secs(60),
        |s| merged_from_node(s).difference(&seen).count() >= 2,
    )
    .await;
    let still = node.snapshot();
    assert!(
        still.checkpoint_error.is_some(),
        "still failing while the peer merged: {still:#?}"
    );
    assert_eq!(
        checkpoint::load(&ck_path).unwrap().unwrap().version,
        last_good
    );

    // Writable again: the next attempt (after the backoff) succeeds.
    let written = node.snapshot().counters.checkpoints;
    unblock(data, how);
    let healed = wait_for(
        &node,
        "checkpoints written again",
        Duration::from_secs(90),
        |s| {
            s.checkpoint_error.is_none()
                && s.counters.checkpoints > written
                && s.checkpoint_version.is_some_and(|c| c > last_good)
        },
    )
    .await;
    let on_disk = checkpoint::load(&ck_path).unwrap().unwrap();
    assert!(on_disk.version >= healed.checkpoint_version.unwrap());
    let _ = stop.send(true);
    peer.shutdown().await;
    node.shutdown().await;
}
