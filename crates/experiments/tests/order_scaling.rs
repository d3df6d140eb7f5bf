//! FD-SM Fig. 2 machinery: the three ways of computing `(v . grad)^T log p(x)` agree on the
//! ResNet EBM (f64, against nested autodiff, error shrinking with the stencil's accuracy), the
//! limited child runner stops a process that passes its memory or time limit, and the binary
//! writes its JSON, Markdown and PNG report (skipped, with the reason printed, without MNIST).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use experiments::order_scaling::{
    build, derivative, parameters, CellResult, Method, OrderScalingConfig, OrderScalingResults,
};
use experiments::runner::limits::{run_limited, Limits, Outcome};
use fd_core::{BatchMode, Stencil};
use sm_objectives::autodiff::{directional_derivative, enable_higher_order};
use sm_objectives::{fd_directional_derivative, NoiseSource};

fn tiny() -> OrderScalingConfig {
    let mut cfg = OrderScalingConfig::quick();
    cfg.model.width = 2;
    cfg.model.blocks_per_stage = [1, 1, 1];
    cfg.batch = 2;
    cfg.error_batch = 2;
    cfg
}

fn images(n: usize) -> Result<Tensor> {
    let shape = Tensor::zeros((n, 1, 32, 32), DType::F32, &Device::Cpu)?;
    Ok(NoiseSource::new(3).uniform_like(&shape)?)
}

fn rel(a: &Tensor, b: &Tensor) -> Result<f64> {
    let d = (a - b)?.sqr()?.sum_all()?.to_scalar::<f64>()?;
    let n = b.sqr()?.sum_all()?.to_scalar::<f64>()?;
    Ok((d / n).sqrt())
}

#[test]
fn fd_methods_match_nested_autodiff_in_f64() -> Result<()> {
    enable_higher_order().expect("Candle's higher-order mode");
    let cfg = tiny();
    let params = parameters(&cfg)?;
    let s = build(&cfg, &params, &images(2)?, 2, 0.3, DType::F64)?;
    for order in 1..=3u32 {
        let exact = derivative(&s, Method::Exact, order)?;
        let seq = derivative(&s, Method::FdSequential, order)?;
        let par = derivative(&s, Method::FdParallel, order)?;
        // Same stencil, same points: the two FD schedules differ by rounding only.
        assert!(rel(&seq, &par)? < 1e-10, "T = {order}");
        let e0 = rel(&seq, &exact)?;
        assert!(e0 < 2e-2, "T = {order}: central stencil error {e0}");
        // Theorem 1's generalisation: one extra pair removes the eps^2 term.
        let wider = fd_directional_derivative(
            &s.net,
            &s.x,
            &s.v,
            &Stencil::central(order, 1)?,
            BatchMode::Concatenated,
        )?;
        let e1 = rel(&wider, &exact)?;
        assert!(e1 < e0 / 4.0, "T = {order}: {e1} vs {e0}");
        // The exact path itself: at T = 1 it is v . grad log p.
        if order == 1 {
            let again = directional_derivative(&s.net, &s.x, &s.v, 1)?;
            assert!(rel(&again, &exact)? < 1e-14);
        }
    }
    Ok(())
}

#[test]
fn bad_configurations_are_named() {
    let mut cfg = tiny();
    cfg.max_order = 0;
    assert!(cfg
        .validate()
        .unwrap_err()
        .to_string()
        .contains("max_order"));
    let mut cfg = tiny();
    cfg.error_eps = vec![0.1, f64::NAN];
    assert!(cfg
        .validate()
        .unwrap_err()
        .to_string()
        .contains("error_eps"));
    let mut cfg = tiny();
    cfg.eps = -1.0;
    assert!(cfg.validate().unwrap_err().to_string().contains("eps"));
    assert!(Method::parse("autodiff")
        .unwrap_err()
        .to_string()
        .contains("fd-parallel"));
    assert!(OrderScalingConfig::profile("huge").is_err());
}

/// Not a test of its own: the body of the child process started by the limiter tests.
#[test]
fn limiter_child_body() {
    match std::env::var("FDSM_LIMITER_CHILD").as_deref() {
        Ok("memory") => {
            // Touch 1 GB page by page, slowly enough to be seen.
            let mut blocks = Vec::new();
            for _ in 0..100 {
                blocks.push(vec![1u8; 10_000_000]);
                std::thread::sleep(Duration::from_millis(20));
            }
            println!("{}", blocks.iter().map(|b| b[0] as usize).sum::<usize>());
        }
        Ok("sleep") => std::thread::sleep(Duration::from_secs(30)),
        _ => {}
    }
}

fn limiter_child(kind: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "limiter_child_body",
        "--nocapture",
        "--test-threads",
        "1",
    ])
    .env("FDSM_LIMITER_CHILD", kind)
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    cmd
}

#[test]
fn limiter_stops_a_child_over_its_memory() -> Result<()> {
    let limits = Limits {
        memory_bytes: 200_000_000,
        time: Duration::from_secs(60),
    };
    match run_limited(&mut limiter_child("memory"), limits)? {
        Outcome::OverMemory { rss_bytes } => assert!(rss_bytes >= 200_000_000),
        other => panic!("expected OverMemory, got {other:?}"),
    }
    Ok(())
}

#[test]
fn limiter_stops_a_child_over_its_time_and_lets_others_finish() -> Result<()> {
    let limits = Limits {
        memory_bytes: 4_000_000_000,
        time: Duration::from_millis(500),
    };
    let t = std::time::Instant::now();
    assert_eq!(
        run_limited(&mut limiter_child("sleep"), limits)?,
        Outcome::OverTime
    );
    assert!(t.elapsed() < Duration::from_secs(20));
    let generous = Limits {
        memory_bytes: 4_000_000_000,
        time: Duration::from_secs(60),
    };
    match run_limited(&mut limiter_child("none"), generous)? {
        Outcome::Exited(s) => assert!(s.success()),
        other => panic!("expected a normal exit, got {other:?}"),
    }
    Ok(())
}

#[test]
fn tiny_run_writes_every_output_and_reports_stopped_cells() -> Result<()> {
    let Some(data) = common::data_dir_with("mnist/t10k-images-idx3-ubyte.gz") else {
        return Ok(());
    };
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("order-scaling-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let status = Command::new(env!("CARGO_BIN_EXE_experiments"))
        .args(["bench", "order-scaling", "--width", "2", "--batch", "2"])
        .args(["--max-order", "3"])
        .args(["--repeats", "1", "--no-progress", "--time-limit-s", "60"])
        .arg("--data-dir")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .env_remove(sm_objectives::autodiff::HIGHER_ORDER_ENV)
        .stdout(std::process::Stdio::null())
        .status()?;
    assert!(status.success());
    for f in [
        "results.json",
        "order_scaling.md",
        "order_scaling.png",
        "config.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let r: OrderScalingResults = experiments::report::read_json(&out.join("results.json"))?;
    assert_eq!(r.cells.len(), 9);
    for c in &r.cells {
        match c {
            CellResult::Measured(c) => {
                assert!(c.median_ms > 0.0 && c.calls >= 1);
                let points = if c.method == Method::Exact {
                    1
                } else {
                    c.order as usize + 1
                };
                assert_eq!(c.evaluations, points);
            }
            CellResult::Skipped { reason, .. } => panic!("a tiny cell was skipped: {reason}"),
        }
    }
    // 3 orders x 3 radii x 3 stencils, each error finite.
    assert_eq!(r.errors.rows.len(), 27);
    assert!(r.errors.rows.iter().all(|e| e.rel_error_f64.is_finite()));
    let md = std::fs::read_to_string(out.join("order_scaling.md"))?;
    assert!(md.contains("| exact (nested autodiff) |") && md.contains("Relative error"));

    // A memory limit no process can meet: every cell is reported as stopped, with the reason,
    // and the higher orders as not attempted; the report is still written.
    let status = Command::new(env!("CARGO_BIN_EXE_experiments"))
        .args(["bench", "order-scaling", "--width", "2", "--batch", "2"])
        .args(["--max-order", "2"])
        .args([
            "--repeats",
            "1",
            "--no-progress",
            "--memory-limit-gb",
            "0.000001",
        ])
        .arg("--data-dir")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()?;
    assert!(status.success());
    let r: OrderScalingResults = experiments::report::read_json(&out.join("results.json"))?;
    for c in &r.cells {
        let CellResult::Skipped { order, reason, .. } = c else {
            panic!("measured under a 1 kB limit: {c:?}")
        };
        if *order == 1 {
            assert!(reason.contains("memory limit"), "{reason}");
        } else {
            assert!(reason.contains("not attempted"), "{reason}");
        }
    }
    assert!(r.errors.missing.is_some());
    Ok(())
}
