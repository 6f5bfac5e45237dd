//! Running the `murmur` binary from tests.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::ffi::OsStr;
use std::process::Command;

/// The binary under test.
pub fn murmur() -> Command {
    Command::new(env!("CARGO_BIN_EXE_murmur"))
}

/// Runs `murmur <args>`, asserts it succeeded, and returns the JSON of its last stdout line
/// and its stderr.
pub fn run_json<I, S>(args: I) -> (serde_json::Value, String)
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = murmur().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    (
        serde_json::from_str(stdout.lines().last().unwrap()).unwrap(),
        stderr,
    )
}
