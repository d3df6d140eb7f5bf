//! The training-step benchmark end to end at a tiny size: every objective of Table 2 runs a
//! real step in its own child process (higher-order mode only where needed), the PyTorch peer's
//! JSON is read and put beside ours with the ratios, and bad names and files are reported.
//! Timings are produced, never asserted.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;
use experiments::objective::Objective;
use experiments::step_bench::{StepBenchConfig, StepBenchResults, PEER_OBJECTIVES};

fn out_dir(name: &str) -> PathBuf {
    let d =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn every_objective_steps_and_the_peer_is_reported_beside_ours() -> Result<()> {
    let out = out_dir("step-bench");
    let peer = out.join("torch.json");
    std::fs::write(
        &peer,
        r#"{"args": {"width": 2}, "results": [
            {"objective": "ssm", "median_ms": 1000.0, "step_peak_rss_mb": 900.0},
            {"objective": "dsm", "median_ms": 500.0, "step_peak_rss_mb": 800.0},
            {"objective": "fd-ssm", "median_ms": 400.0, "step_peak_rss_mb": 700.0, "extra": 1}
        ]}"#,
    )?;
    let status = Command::new(env!("CARGO_BIN_EXE_experiments"))
        .args([
            "bench", "steps", "--width", "2", "--blocks", "1", "--batch", "2",
        ])
        .args(["--steps", "2", "--warmup", "1", "--torch"])
        .arg(&peer)
        .arg("--out")
        .arg(&out)
        .env_remove(sm_objectives::autodiff::HIGHER_ORDER_ENV)
        .stdout(std::process::Stdio::null())
        .status()?;
    assert!(status.success());
    let r: StepBenchResults = experiments::report::read_json(&out.join("results.json"))?;
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    assert_eq!(r.results.len(), PEER_OBJECTIVES.len());
    for s in &r.results {
        assert!(s.median_ms > 0.0 && s.min_ms <= s.median_ms, "{s:?}");
        assert!(s.last_loss.is_finite(), "{s:?}");
        assert_eq!(s.params, r.results[0].params);
    }
    let md = std::fs::read_to_string(out.join("steps.md"))?;
    assert!(
        md.contains("| fd-ssm-seq |") && md.contains("1000.0"),
        "{md}"
    );
    assert!(md.contains("PyTorch SSM / our FD-SSM"), "{md}");
    let peak = r.matmul_gflops.expect("the matmul peak is measured");
    assert!(peak.is_finite() && peak > 0.0, "{peak}");
    assert!(
        md.contains("## Compute") && md.contains("at the peak"),
        "{md}"
    );
    Ok(())
}

/// FLOPs per step: the forward passes of the step times three (forward, then the backward
/// pass to inputs and weights at twice its cost), two per multiply-accumulate.
#[test]
fn step_flops_follow_the_forward_passes() {
    use experiments::step_bench::step_gflop;
    let cfg = StepBenchConfig::default();
    let per_image = 2.0 * 3.0 * cfg.model.forward_macs_per_image() as f64 / 1e9;
    let gflop = |o| step_gflop(&cfg, o).unwrap();
    let batch = cfg.batch as f64;
    assert!((gflop(Objective::MleCost) - per_image * batch).abs() < 1e-9);
    assert!((gflop(Objective::FdDsm) - 2.0 * per_image * batch).abs() < 1e-9);
    assert_eq!(gflop(Objective::FdDsm), gflop(Objective::FdDsmSeq));
    assert!((gflop(Objective::FdSsm) - 3.0 * per_image * batch).abs() < 1e-9);
    // The peer network at batch 64: 149,785,856 MACs per image and forward pass.
    assert!((gflop(Objective::FdSsm) - 6.0 * 149_785_856.0 * 64.0 * 3.0 / 1e9).abs() < 1e-9);
    for o in [Objective::Dsm, Objective::Ssm, Objective::Ssmvr] {
        assert_eq!(step_gflop(&cfg, o), None);
    }
}

#[test]
fn bad_names_settings_and_peer_files_are_named() -> Result<()> {
    assert_eq!(Objective::parse("fd-ssm-seq")?, Objective::FdSsmSeq);
    assert_eq!(Objective::parse("fd-dsm*")?, Objective::FdDsmSeq);
    let err = Objective::parse("nce").unwrap_err().to_string();
    assert!(err.contains("mle-cost"), "{err}");
    let cfg = StepBenchConfig {
        eps: f64::NAN,
        ..StepBenchConfig::default()
    };
    assert!(cfg.validate().unwrap_err().to_string().contains("eps"));
    let out = out_dir("step-bench-bad-peer");
    let peer = out.join("torch.json");
    std::fs::write(&peer, "{ not json")?;
    let output = Command::new(env!("CARGO_BIN_EXE_experiments"))
        .args([
            "bench", "steps", "--width", "2", "--blocks", "1", "--batch", "2", "--torch",
        ])
        .arg(&peer)
        .arg("--out")
        .arg(&out)
        .output()?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("torch.json"), "{stderr}");
    Ok(())
}

/// Runs every objective for two steps at batch 2 on the network `net_args` chooses; checks that
/// none failed and returns the output directory and the results.
fn small_net_bench(name: &str, net_args: &[&str]) -> Result<(PathBuf, StepBenchResults)> {
    let out = out_dir(name);
    let status = Command::new(env!("CARGO_BIN_EXE_experiments"))
        .args(["bench", "steps"])
        .args(net_args)
        .args(["--batch", "2", "--steps", "2", "--warmup", "1", "--out"])
        .arg(&out)
        .env_remove(sm_objectives::autodiff::HIGHER_ORDER_ENV)
        .stdout(std::process::Stdio::null())
        .status()?;
    assert!(status.success());
    let r: StepBenchResults = experiments::report::read_json(&out.join("results.json"))?;
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    assert_eq!(r.results.len(), PEER_OBJECTIVES.len());
    Ok((out, r))
}

/// `--net mlp` times every objective on a dense network (here a tiny one), with its parameter
/// count in closed form `sum (in + 1) out`, and names it in the report.
#[test]
fn every_objective_steps_on_the_mlp() -> Result<()> {
    let (out, r) = small_net_bench("step-bench-mlp", &["--net", "mlp", "--mlp-sizes", "8,4,1"])?;
    for s in &r.results {
        assert_eq!(s.params, (8 + 1) * 4 + (4 + 1), "{s:?}");
        assert!(s.last_loss.is_finite(), "{s:?}");
    }
    let md = std::fs::read_to_string(out.join("steps.md"))?;
    assert!(md.contains("MLP [8, 4, 1]"), "{md}");
    Ok(())
}

/// `--net nice` times every objective on Table 3's flow (here with 4-unit coupling networks),
/// with the parameter count of `NiceConfig::parameter_count`, and names it in the report.
#[test]
fn every_objective_steps_on_nice() -> Result<()> {
    let (out, r) = small_net_bench("step-bench-nice", &["--net", "nice", "--nice-hidden", "4"])?;
    // Four couplings of 392-4-4-4-4-392 plus 784 scales.
    let net = (392 + 1) * 4 + 3 * (4 + 1) * 4 + (4 + 1) * 392;
    for s in &r.results {
        assert_eq!(s.params, 4 * net + 784, "{s:?}");
        assert!(s.last_loss.is_finite(), "{s:?}");
    }
    let md = std::fs::read_to_string(out.join("steps.md"))?;
    assert!(md.contains("NICE, 4 couplings"), "{md}");
    Ok(())
}
