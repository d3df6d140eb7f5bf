//! BiSM Table 1 end to end at a tiny size on the real Frey face file: DSM and BiDSM rows train,
//! select by validation, estimate log Z by AIS and write JSON, Markdown and PNG. Skipped, with
//! the reason printed, when Frey face is absent from the data directory.

mod common;

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;
use experiments::bism_table1::{Row, Table1Results};

#[test]
fn tiny_table1_run_writes_every_output() -> Result<()> {
    let Some(dir) = common::data_dir_with("frey-face/frey_rawface.mat") else {
        return Ok(());
    };
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bism-table1-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let status = Command::new(env!("CARGO_BIN_EXE_bism_table1"))
        .args(["run", "--iters", "3", "--hidden", "6", "--rows", "dsm,0,2"])
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
