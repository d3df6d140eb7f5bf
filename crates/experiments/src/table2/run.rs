//! Running Table 2: every row's training and evaluation children in turn, then the results
//! file, the Markdown report and the loss-curve plots.

use std::path::{Path, PathBuf};
use std::process::Command;

use sm_objectives::autodiff::HIGHER_ORDER_ENV;

use crate::error::{io_err, ExpError, Result};
use crate::plot::{save_line_plot, Axes, Panel, Series};
use crate::report::{environment, read_json, write_atomic, write_json};
use crate::RunControl;

use super::{markdown, row_dir, EvalReport, Row, Table2Config, Table2Results, TrainReport};

/// Options of [`run`] beyond the configuration.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The output directory (`results/table2`).
    pub out: PathBuf,
    /// Resuming, pausing (`stop_after`) and progress bars of the training children.
    pub control: RunControl,
    /// The executable to run children with (this binary).
    pub exe: PathBuf,
}

/// What [`run`] did.
#[derive(Debug, Clone)]
pub enum Table2Run {
    /// Every row trained and was evaluated; the outputs are written.
    Finished(Box<Table2Results>),
    /// `stop_after` paused these rows (with their completed steps) before the end: they were
    /// checkpointed and not evaluated, and no table was written; run again with `resume`.
    Paused(Vec<(Row, u64)>),
}

/// Runs every selected row in child processes and writes `results.json`, `table2.md`,
/// `config.json`, `samples_<row>.png` and the loss-curve plots into `out`; with
/// `opts.control.stop_after`, trains every row up to that step, checkpoints it and stops.
///
/// # Errors
/// A child's failure (with its exit status), configuration and I/O errors.
pub fn run(cfg: &Table2Config, opts: &RunOptions) -> Result<Table2Run> {
    cfg.validate()?;
    std::fs::create_dir_all(&opts.out).map_err(io_err(&opts.out))?;
    let cfg_path = opts.out.join("config.json");
    write_json(&cfg_path, cfg)?;
    let mut rows = Vec::new();
    let mut paused = Vec::new();
    for &row in &cfg.rows {
        eprintln!("== {} ({} iterations)", row.label(), cfg.iters);
        let mut args = vec!["train-row".to_string()];
        args.extend(child_args(&cfg_path, row, opts));
        if opts.control.resume {
            args.push("--resume".into());
        }
        if let Some(n) = opts.control.stop_after {
            args.extend(["--stop-after".into(), n.to_string()]);
        }
        child(&opts.exe, &args, row.gradient_based())?;
        let dir = row_dir(&opts.out, row);
        let train = read_json::<TrainReport>(&dir.join("train.json"))?;
        if let Some(done) = train.paused_at {
            eprintln!("   paused after {done} of {} steps", cfg.iters);
            paused.push((row, done));
            continue;
        }
        let mut args = vec!["eval-row".to_string()];
        args.extend(child_args(&cfg_path, row, opts));
        child(&opts.exe, &args, true)?;
        rows.push((train, read_json::<EvalReport>(&dir.join("eval.json"))?));
    }
    if !paused.is_empty() {
        return Ok(Table2Run::Paused(paused));
    }
    let speed = |slow: Row, fast: Row| -> Option<f64> {
        let t = |r: Row| {
            rows.iter()
                .find(|(t, _)| t.row == r)
                .and_then(|(t, _)| t.median_step_ms)
        };
        Some(t(slow)? / t(fast)?)
    };
    let speedups = vec![
        (
            "FD-SSM vs SSM".to_string(),
            speed(Row::Ssm, Row::FdSsm),
            Row::Ssm.paper().time_ms / Row::FdSsm.paper().time_ms,
        ),
        (
            "FD-DSM vs DSM".to_string(),
            speed(Row::Dsm, Row::FdDsm),
            Row::Dsm.paper().time_ms / Row::FdDsm.paper().time_ms,
        ),
        (
            "FD-SSM* vs SSM".to_string(),
            speed(Row::Ssm, Row::FdSsmSeq),
            Row::Ssm.paper().time_ms / Row::FdSsmSeq.paper().time_ms,
        ),
        (
            "FD-DSM* vs DSM".to_string(),
            speed(Row::Dsm, Row::FdDsmSeq),
            Row::Dsm.paper().time_ms / Row::FdDsmSeq.paper().time_ms,
        ),
    ];
    let results = Table2Results {
        config: cfg.clone(),
        environment: environment(),
        rows,
        speedups,
    };
    write_json(&opts.out.join("results.json"), &results)?;
    write_atomic(&opts.out.join("table2.md"), &markdown(&results))?;
    for (family, file) in [
        (true, "loss_curves_dsm.png"),
        (false, "loss_curves_ssm.png"),
    ] {
        let series: Vec<Series> = results
            .rows
            .iter()
            .filter(|(t, _)| t.row.dsm_family() == family)
            .map(|(t, e)| Series {
                name: t.row.label().into(),
                points: e.curve.iter().map(|(_, s, v)| (*s, v.mean)).collect(),
            })
            .collect();
        if !series.is_empty() {
            let title = if family {
                "Test SM loss against training time (DSM family)"
            } else {
                "Test SM loss against training time (SSM family)"
            };
            save_line_plot(
                &Panel {
                    title: title.into(),
                    x_label: "training wall time (s)".into(),
                    y_label: "test SM loss".into(),
                    axes: Axes::Linear,
                    series,
                },
                &opts.out.join(file),
            )?;
        }
    }
    Ok(Table2Run::Finished(Box::new(results)))
}

fn child_args(cfg_path: &Path, row: Row, opts: &RunOptions) -> Vec<String> {
    let mut a = vec![
        "--config".into(),
        cfg_path.display().to_string(),
        "--row".into(),
        row.key().into(),
        "--data-dir".into(),
        opts.data_dir.display().to_string(),
        "--out".into(),
        opts.out.display().to_string(),
    ];
    if !opts.control.progress {
        a.push("--no-progress".into());
    }
    a
}

fn child(exe: &Path, args: &[String], higher_order: bool) -> Result<()> {
    let mut cmd = Command::new(exe);
    cmd.args(args);
    if higher_order {
        cmd.env(HIGHER_ORDER_ENV, "1");
    } else {
        cmd.env_remove(HIGHER_ORDER_ENV);
    }
    let status = cmd
        .status()
        .map_err(|e| ExpError::Child(format!("could not start {}: {e}", exe.display())))?;
    if !status.success() {
        return Err(ExpError::Child(format!(
            "`{} {}` failed with {status}",
            exe.display(),
            args.join(" ")
        )));
    }
    Ok(())
}
