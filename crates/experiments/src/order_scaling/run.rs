//! Running the order-scaling study: every (method, T) cell in a child process under memory and
//! time limits, then the results file, the report and the plot.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use sm_objectives::autodiff::HIGHER_ORDER_ENV;

use crate::child::{run_limited, Limits};
use crate::error::{io_err, Result};
use crate::report::{environment, read_json, write_atomic, write_json};

use super::{
    markdown, plot, CellResult, ErrorStudy, Method, OrderScalingConfig, OrderScalingResults,
};

/// Where `run` writes and how it starts its children.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Data directory holding MNIST.
    pub data_dir: PathBuf,
    /// Output directory.
    pub out: PathBuf,
    /// The executable with the `measure` and `errors` subcommands.
    pub exe: PathBuf,
    /// Draw a progress bar.
    pub progress: bool,
}

/// Measures every cell and the error study in child processes and writes `results.json`,
/// `order_scaling.md`, `order_scaling.png` and `config.json` into `opts.out`.
///
/// # Errors
/// Configuration and I/O errors, a child that cannot be started. A cell that fails or passes a
/// limit is recorded as skipped, not an error.
pub fn run(cfg: &OrderScalingConfig, opts: &RunOptions) -> Result<OrderScalingResults> {
    cfg.validate()?;
    let cells_dir = opts.out.join("cells");
    std::fs::create_dir_all(&cells_dir).map_err(io_err(&cells_dir))?;
    let cfg_path = opts.out.join("config.json");
    write_json(&cfg_path, cfg)?;
    let limits = Limits {
        memory_bytes: cfg.memory_limit_bytes(),
        time: Duration::from_secs_f64(cfg.time_limit_s),
    };
    let total = Method::ALL.len() as u64 * u64::from(cfg.max_order) + 1;
    let bar = if opts.progress {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} cells, {elapsed} {msg}")
            .expect("valid template"),
    );
    let common = |cmd: &mut Command| {
        cmd.arg("--config")
            .arg(&cfg_path)
            .arg("--data-dir")
            .arg(&opts.data_dir);
    };
    let mut cells = Vec::new();
    for method in Method::ALL {
        let mut stopped: Option<u32> = None;
        for order in 1..=cfg.max_order {
            bar.set_message(format!("{} T={order}", method.key()));
            if let Some(t) = stopped {
                cells.push(CellResult::Skipped {
                    method,
                    order,
                    reason: format!("not attempted: order {t} was already stopped"),
                });
                bar.inc(1);
                continue;
            }
            let file = cells_dir.join(format!("{}_T{order}.json", method.key()));
            let _ = std::fs::remove_file(&file);
            let mut cmd = Command::new(&opts.exe);
            cmd.arg("measure");
            common(&mut cmd);
            cmd.arg("--method")
                .arg(method.key())
                .arg("--order")
                .arg(order.to_string())
                .arg("--out")
                .arg(&file);
            if method == Method::Exact && order >= 2 {
                cmd.env(HIGHER_ORDER_ENV, "1");
            } else {
                cmd.env_remove(HIGHER_ORDER_ENV);
            }
            let outcome = run_limited(&mut cmd, limits)?;
            match outcome.failure(limits) {
                None => cells.push(CellResult::Measured(read_json(&file)?)),
                Some(reason) => {
                    bar.println(format!("{} at T = {order}: {reason}", method.label()));
                    stopped = Some(order);
                    cells.push(CellResult::Skipped {
                        method,
                        order,
                        reason,
                    });
                }
            }
            bar.inc(1);
        }
    }
    bar.set_message("error study");
    let errors_file = opts.out.join("errors.json");
    let _ = std::fs::remove_file(&errors_file);
    let mut cmd = Command::new(&opts.exe);
    cmd.arg("errors");
    common(&mut cmd);
    cmd.arg("--out")
        .arg(&errors_file)
        .env(HIGHER_ORDER_ENV, "1");
    let outcome = run_limited(&mut cmd, limits)?;
    let mut errors: ErrorStudy = if errors_file.exists() {
        read_json(&errors_file)?
    } else {
        ErrorStudy::default()
    };
    if let Some(reason) = outcome.failure(limits) {
        let done = errors.rows.iter().map(|r| r.order).max().unwrap_or(0);
        errors.missing = Some(format!(
            "orders above {done}: the exact f64 reference was {reason}"
        ));
    }
    bar.inc(1);
    bar.finish_and_clear();
    let results = OrderScalingResults {
        config: cfg.clone(),
        environment: environment(),
        memory_limit_bytes: limits.memory_bytes,
        cells,
        errors,
    };
    write_json(&opts.out.join("results.json"), &results)?;
    write_atomic(&opts.out.join("order_scaling.md"), &markdown(&results))?;
    let png = opts.out.join("order_scaling.png");
    if results
        .cells
        .iter()
        .any(|c| matches!(c, CellResult::Measured(_)))
    {
        plot(&results, &png)?;
    } else {
        let _ = std::fs::remove_file(&png);
        eprintln!("no cell was measured, so no plot was drawn; see order_scaling.md for why");
    }
    Ok(results)
}
