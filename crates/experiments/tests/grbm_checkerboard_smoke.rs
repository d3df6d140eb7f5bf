//! The checkerboard GRBM experiment end to end at a tiny size: every method trains a few steps
//! and the binary writes its JSON, Markdown and PNG outputs with finite test log-likelihoods
//! (exact log Z) below the true density's `log 2`, and normalised densities on the plot grid.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;
use experiments::grbm_checkerboard::{CheckerboardResults, Method};

#[test]
fn tiny_run_of_every_method_writes_every_output() -> Result<()> {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("grbm-checkerboard-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let status = Command::new(env!("CARGO_BIN_EXE_grbm_checkerboard"))
        .args(["run", "--iters", "6", "--no-progress", "--out"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()?;
    assert!(status.success());
    for f in [
        "results.json",
        "grbm_checkerboard.md",
        "densities.png",
        "loglik.png",
        "config.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let r: CheckerboardResults = experiments::report::read_json(&out.join("results.json"))?;
    assert_eq!(r.results.len(), Method::ALL.len());
    assert!(
        (r.true_loglik - 2f64.ln()).abs() < 1e-12,
        "two of four cells: log 2"
    );
    for m in &r.results {
        assert!(
            m.final_loglik.is_finite() && m.final_loglik < r.true_loglik,
            "{m:?}"
        );
        // A normalised density: its mass on the plotted square is positive and at most 1.
        let cell = (1.5 / r.config.grid as f64).powi(2);
        let mass: f64 = m.density.iter().sum::<f64>() * cell;
        assert!(
            mass > 0.05 && mass < 1.01,
            "{}: grid mass {mass}",
            m.method.label()
        );
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_grbm_checkerboard"))
        .args(["run", "--methods", "ml", "--out"])
        .arg(&out)
        .output()?;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("bidsm"));
    Ok(())
}
