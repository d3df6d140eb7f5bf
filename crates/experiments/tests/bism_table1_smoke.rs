//! BiSM Table 1 end to end at a tiny size on the real Frey face file: DSM and BiDSM rows train,
//! select by validation, estimate log Z by AIS and write JSON, Markdown and PNG. Skipped, with
//! the reason printed, when Frey face is absent from the data directory. A run paused by
//! `--stop-after` and continued by `--resume` reports exactly the straight run's numbers.

mod common;

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;
use experiments::bism_table1::{Row, Table1Results};
use experiments::runner::ExperimentRow;

#[test]
fn tiny_table1_run_writes_every_output() -> Result<()> {
    let Some(dir) = common::data_dir_with("frey-face/frey_rawface.mat") else {
        return Ok(());
    };
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bism-table1-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let status = Command::new(env!("CARGO_BIN_EXE_experiments"))
        .args([
            "repro",
            "bism-table1",
            "--iters",
            "3",
            "--hidden",
            "6",
            "--rows",
            "dsm,0,2",
        ])
        .args(["--ais", "20,50", "--no-progress", "--data-dir"])
        .arg(&dir)
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()?;
    assert!(status.success());
    for f in [
        "results.json",
        "bism_table1.md",
        "validation.png",
        "config.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let r: Table1Results = experiments::report::read_json(&out.join("results.json"))?;
    let rows: Vec<Row> = r.rows.iter().map(|x| x.row).collect();
    assert_eq!(rows, [Row::Dsm, Row::Bidsm(0), Row::Bidsm(2)]);
    for x in &r.rows {
        assert!(
            x.test_loglik.is_finite() && x.test_fisher.is_finite(),
            "{x:?}"
        );
        assert!(x.log_z_se.is_finite() && x.log_z_se >= 0.0);
        // The selected step is the one with the lowest validation loss.
        let best = x
            .validation
            .iter()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap();
        assert_eq!(best.0, x.best_step);
    }
    let md = std::fs::read_to_string(out.join("bism_table1.md"))?;
    assert!(md.contains("| BiDSM (N=2) |") && md.contains("129.23"));
    Ok(())
}

#[test]
fn a_paused_and_resumed_table1_run_equals_the_straight_run() -> Result<()> {
    let Some(dir) = common::data_dir_with("frey-face/frey_rawface.mat") else {
        return Ok(());
    };
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bism-table1-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    // 6 steps, validation at steps 2..=6, checkpoints every 4: the pause at 3 falls between
    // checkpoints and after a best-so-far snapshot, and the posterior's optimiser has state.
    let run = |out: &std::path::Path, extra: &[&str]| -> Result<std::process::Output> {
        Ok(Command::new(env!("CARGO_BIN_EXE_experiments"))
            .args([
                "repro",
                "bism-table1",
                "--iters",
                "6",
                "--hidden",
                "6",
                "--rows",
                "dsm,2",
            ])
            .args(["--checkpoint-every", "4", "--ais", "20,50", "--no-progress"])
            .arg("--data-dir")
            .arg(&dir)
            .arg("--out")
            .arg(out)
            .args(extra)
            .env("RUST_BACKTRACE", "0")
            .output()?)
    };
    let (straight, paused) = (root.join("straight"), root.join("paused"));
    assert!(run(&straight, &[])?.status.success());
    let stop = run(&paused, &["--stop-after", "3"])?;
    assert_eq!(stop.status.code(), Some(3), "a pause exits with status 3");
    assert!(String::from_utf8_lossy(&stop.stderr).contains("paused after step 3"));
    assert!(run(&paused, &["--resume"])?.status.success());
    let a: Table1Results = experiments::report::read_json(&straight.join("results.json"))?;
    let b: Table1Results = experiments::report::read_json(&paused.join("results.json"))?;
    assert_eq!(a.rows.len(), 2);
    for (x, y) in a.rows.iter().zip(&b.rows) {
        assert_eq!(x.validation, y.validation, "{}", x.row.label());
        assert_eq!(x.best_step, y.best_step);
        assert_eq!(
            (x.test_loglik, x.log_z_se, x.test_fisher),
            (y.test_loglik, y.log_z_se, y.test_fisher),
            "{}",
            x.row.label()
        );
    }
    Ok(())
}
