//! The checkerboard GRBM experiment end to end at a tiny size: every method trains a few steps
//! and the binary writes its JSON, Markdown and PNG outputs with finite test log-likelihoods
//! (exact log Z) below the true density's `log 2`, and normalised densities on the plot grid;
//! a run paused by `--stop-after` and continued by `--resume` equals the straight run exactly.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;
use experiments::grbm_checkerboard::{CheckerboardResults, Method};

#[test]
fn tiny_run_of_every_method_writes_every_output() -> Result<()> {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("grbm-checkerboard-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let status = Command::new(env!("CARGO_BIN_EXE_experiments"))
        .args([
            "repro",
            "grbm-checkerboard",
            "--iters",
            "6",
            "--no-progress",
            "--out",
        ])
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
    let bad = Command::new(env!("CARGO_BIN_EXE_experiments"))
        .args(["repro", "grbm-checkerboard", "--methods", "ml", "--out"])
        .arg(&out)
        .output()?;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("bidsm"));
    Ok(())
}

/// Runs the binary on the stateful methods (PCD's chains, NCE's log-normaliser, BiDSM's and
/// VaGES's posterior optimiser) for 6 steps, checkpointing every 2, with extra arguments.
fn stateful_run(out: &std::path::Path, extra: &[&str]) -> Result<std::process::Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_experiments"))
        .args([
            "repro",
            "grbm-checkerboard",
            "--iters",
            "6",
            "--checkpoint-every",
            "2",
            "--no-progress",
        ])
        .args(["--methods", "pcd,nce,bidsm,vages-ksd", "--out"])
        .arg(out)
        .args(extra)
        .env("RUST_BACKTRACE", "0")
        .output()?)
}

#[test]
fn a_paused_and_resumed_run_equals_the_straight_run_bit_for_bit() -> Result<()> {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("grbm-checkerboard-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (straight, paused) = (root.join("straight"), root.join("paused"));
    assert!(stateful_run(&straight, &[])?.status.success());
    // Paused after step 3, between two checkpoints: the pause writes its own.
    let stop = stateful_run(&paused, &["--stop-after", "3"])?;
    assert_eq!(stop.status.code(), Some(3), "a pause exits with status 3");
    let msg = String::from_utf8_lossy(&stop.stderr);
    assert!(
        msg.contains("paused after step 3") && msg.contains("--resume"),
        "{msg}"
    );
    assert!(!paused.join("results.json").exists());
    for m in ["pcd", "nce", "bidsm", "vages-ksd"] {
        let ckpt = paused.join("rows").join(m).join("checkpoint.safetensors");
        let meta = experiments::checkpoint::load(&ckpt, &candle_core::Device::Cpu)?.meta;
        assert_eq!(meta.step, 3, "{m}");
    }
    // Other settings refuse the checkpoints rather than mixing two runs.
    let other = stateful_run(&paused, &["--resume", "--seed", "1"])?;
    assert!(!other.status.success());
    let msg = String::from_utf8_lossy(&other.stderr);
    assert!(
        msg.contains("different configuration") && msg.contains("seed: 0 in the checkpoint, 1 now"),
        "{msg}"
    );
    let kept: experiments::grbm_checkerboard::CheckerboardConfig =
        experiments::report::read_json(&paused.join("config.json"))?;
    assert_eq!(kept.seed, 0, "a refused resume replaced config.json");
    assert!(!paused.join("config.run.json").exists());
    assert!(stateful_run(&paused, &["--resume"])?.status.success());
    let a: CheckerboardResults = experiments::report::read_json(&straight.join("results.json"))?;
    let b: CheckerboardResults = experiments::report::read_json(&paused.join("results.json"))?;
    assert_eq!(a.results.len(), 4);
    for (x, y) in a.results.iter().zip(&b.results) {
        let lls = |r: &experiments::grbm_checkerboard::MethodResult| {
            r.curve.iter().map(|c| (c.0, c.2)).collect::<Vec<_>>()
        };
        assert_eq!(lls(x), lls(y), "{}: curves differ", x.method.label());
        assert_eq!(
            x.density,
            y.density,
            "{}: densities differ",
            x.method.label()
        );
    }
    // A finished run resumed again trains nothing and reports the same numbers.
    assert!(stateful_run(&paused, &["--resume"])?.status.success());
    let c: CheckerboardResults = experiments::report::read_json(&paused.join("results.json"))?;
    for (y, z) in b.results.iter().zip(&c.results) {
        assert_eq!(y.curve, z.curve);
        assert_eq!(y.density, z.density);
        assert_eq!(y.ms_per_step, z.ms_per_step);
    }
    Ok(())
}
