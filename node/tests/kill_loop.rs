//! The kill loop's short run (`testnet/kill-loop.sh` with 20 iterations): the `murmur` binary
//! under test is killed with SIGKILL at random instants and in the middle of checkpoint
//! writes, and every restart must load a complete, verified checkpoint. The long run (1,000
//! iterations) is documented in docs/security.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
#[cfg(unix)]
fn kill_9_while_checkpointing_never_leaves_a_torn_checkpoint() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../testnet/kill-loop.sh");
    let out = Command::new("bash")
        .arg(script)
        .env("ITERATIONS", "20")
        .env("MURMUR", env!("CARGO_BIN_EXE_murmur"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("KILL-LOOP-OK iterations=20 torn=0 failed_loads=0"),
        "kill loop failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}
