//! The attack matrix in CI: `murmur bench hostile` (8 peer processes on the digits, Dirichlet
//! 0.5, 2 of them hostile, 45 s a run) for the two most damaging behaviours, each against the default
//! defences and against the plain mean, after an all-honest run of the same length. The full
//! matrix is in docs/security.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::run_json;
use serde_json::Value;

fn row<'a>(report: &'a Value, behaviour: &str, rule: &str) -> &'a Value {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["behaviour"] == behaviour && r["rule"] == rule)
        .unwrap_or_else(|| panic!("no row {behaviour}/{rule}: {report}"))
}

fn f(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("no {key} in {v}"))
}

#[test]
fn the_default_defences_hold_against_the_most_damaging_behaviours() {
    let dir = tempfile::tempdir().unwrap();
    let (report, err) = run_json([
        "bench",
        "hostile",
        "--behaviours",
        "samples-max,scale:100",
        "--duration",
        "45",
        "--json",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    eprintln!("{err}");
    eprintln!("{report}");
    let honest = row(&report, "none", "default");
    for behaviour in ["samples-max", "scale:100"] {
        let defended = row(&report, behaviour, "default");
        let plain = row(&report, behaviour, "mean");
        println!(
            "{behaviour}: honest peers' mean accuracy {:.4} (default) / {:.4} (plain mean) / \
             {:.4} (all honest); worst loss {:.3e} / {:.3e} / {:.3e}",
            f(defended, "mean_accuracy"),
            f(plain, "mean_accuracy"),
            f(honest, "mean_accuracy"),
            f(defended, "max_loss"),
            f(plain, "max_loss"),
            f(honest, "max_loss"),
        );
        // The aim is 1 point (docs/security.md has the measured gaps, release build). Here
        // the peers are a debug build of murmur on two shared cores and still learning at
        // the end, so the bound is 2 points.
        assert!(
            f(defended, "mean_accuracy") >= f(honest, "mean_accuracy") - 0.02,
            "{behaviour}: {defended} vs {honest}"
        );
        assert!(
            f(defended, "min_accuracy") >= f(honest, "min_accuracy") - 0.03,
            "{behaviour}: {defended} vs {honest}"
        );
        assert!(
            f(defended, "max_loss") <= (3.0 * f(honest, "max_loss")).max(0.5),
            "{behaviour}: {defended} vs {honest}"
        );
        // A checkpoint is written every few seconds and lags the live model (in one run the
        // all-honest peers' checkpoints were 4.2 points under their live models), so it is
        // compared with the all-honest run's checkpoints; a poisoned one is far lower.
        let honest_checkpoint = f(honest, "min_checkpoint_accuracy").min(f(honest, "min_accuracy"));
        assert!(
            f(defended, "min_checkpoint_accuracy") >= honest_checkpoint - 0.03,
            "{behaviour}: a poisoned checkpoint: {defended} vs {honest}"
        );
        assert_eq!(defended["stopped"], 0, "{defended}");
        assert!(f(defended, "pace") >= 0.7, "{behaviour}: {defended}");
        let links = defended["hostile_links"].as_array().unwrap();
        let (linked, pairs) = (links[0].as_u64().unwrap(), links[1].as_u64().unwrap());
        assert!(
            linked * 4 <= pairs,
            "{behaviour}: {linked} of {pairs} honest-hostile links left: {defended}"
        );
        // The plain mean shows the damage the defences prevent.
        assert!(
            f(plain, "mean_accuracy") < f(honest, "mean_accuracy") - 0.05
                || f(plain, "max_loss") > 10.0 * f(honest, "max_loss"),
            "{behaviour}: the plain mean was not hurt: {plain}"
        );
    }
}
