//! The 2-D gallery end to end at a tiny size: every method trains a few steps on one density,
//! the report files exist, every density is normalised on its grid (mass 1 by construction of
//! the midpoint rule, checked from the saved values), its test log-likelihood finite and its
//! sample histogram a set of fractions; a PCD/NCE run paused by
//! `--stop-after` and resumed (the replay buffer and the learned log Z travel in the checkpoint)
//! equals the straight run exactly.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::Result;
use experiments::toy_gallery::{GalleryResults, LL_HALF_WIDTH};

fn run(out: &Path, extra: &[&str]) -> Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_experiments"))
        .args([
            "repro",
            "toy-gallery",
            "--densities",
            "two-moons",
            "--iters",
            "8",
            "--samples",
            "40",
            "--grid",
            "24",
            "--hidden",
            "16,16",
            "--no-progress",
            "--out",
        ])
        .arg(out)
        .args(extra)
        .env("RUST_BACKTRACE", "0")
        .output()?)
}

#[test]
fn tiny_gallery_writes_normalised_densities_and_every_output() -> Result<()> {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("toy-gallery-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let o = run(&out, &[])?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in [
        "results.json",
        "toy_gallery.md",
        "two-moons.png",
        "loss-curves.png",
        "config.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let r: GalleryResults = experiments::report::read_json(&out.join("results.json"))?;
    assert_eq!(r.results.len(), 11, "every method");
    let cell = (2.0 * LL_HALF_WIDTH / r.config.grid as f64).powi(2);
    for x in &r.results {
        let mass: f64 = x.density.iter().sum::<f64>() * cell;
        assert!((mass - 1.0).abs() < 1e-9, "{:?}: grid mass {mass}", x.cell);
        assert!(
            x.test_loglik.is_finite() && x.ms_per_step > 0.0,
            "{:?}",
            x.cell
        );
        let samples: f64 = x.sample_histogram.iter().sum();
        assert!(
            samples > 0.5 && samples <= 1.0 + 1e-9,
            "{:?}: {samples}",
            x.cell
        );
        assert!(!x.curve.is_empty());
    }
    let md = std::fs::read_to_string(out.join("toy_gallery.md"))?;
    assert!(
        md.contains("| FD-DSM |") && md.contains("| MLE (Langevin) |"),
        "{md}"
    );
    let bad = run(&out, &["--methods", "mle"])?;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("fd-dsm"));
    Ok(())
}

#[test]
fn a_paused_and_resumed_gallery_equals_the_straight_run() -> Result<()> {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("toy-gallery-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (straight, paused) = (root.join("straight"), root.join("paused"));
    let stateful = ["--methods", "pcd,nce", "--checkpoint-every", "3"];
    assert!(run(&straight, &stateful)?.status.success());
    let stop = run(&paused, &[&stateful[..], &["--stop-after", "5"]].concat())?;
    assert_eq!(stop.status.code(), Some(3), "a pause exits with status 3");
    let resumed = run(&paused, &[&stateful[..], &["--resume"]].concat())?;
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let a: GalleryResults = experiments::report::read_json(&straight.join("results.json"))?;
    let b: GalleryResults = experiments::report::read_json(&paused.join("results.json"))?;
    assert_eq!(a.results.len(), 2);
    for (x, y) in a.results.iter().zip(&b.results) {
        assert_eq!(x.curve, y.curve, "{:?}: loss curves differ", x.cell);
        assert_eq!(x.density, y.density, "{:?}: densities differ", x.cell);
        assert_eq!(x.test_loglik, y.test_loglik);
    }
    Ok(())
}
