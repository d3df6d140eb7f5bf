//! The checkerboard report: `results.json`, the Markdown table of test log-likelihoods, the
//! density maps and the log-likelihood curves.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::plot::{save_heat_maps, save_line_plot, Axes, HeatMap, Panel, Series};
use crate::report::{
    environment, markdown_table, read_json, write_atomic, write_json, Environment,
};
use crate::runner::{Context, RowStatus};

use super::{board_data, CheckerboardConfig, Method, MethodResult, HI, LO};

/// Everything `results.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckerboardResults {
    /// Settings.
    pub config: CheckerboardConfig,
    /// Versions and machine.
    pub environment: Environment,
    /// Per method.
    pub results: Vec<MethodResult>,
    /// Mean log-density of the test points under the true checkerboard density.
    pub true_loglik: f64,
}

/// Reads every method's result and writes `results.json`, `grbm_checkerboard.md`,
/// `densities.png` and `loglik.png` into `ctx.out`; returns the Markdown.
///
/// # Errors
/// Unreadable results, I/O and plotting errors.
pub fn write(
    ctx: &Context,
    cfg: &CheckerboardConfig,
    rows: &[(Method, RowStatus)],
) -> Result<String> {
    let mut results = Vec::new();
    for (method, _) in rows {
        results.push(read_json::<MethodResult>(
            &ctx.row_dir(method.key()).join("result.json"),
        )?);
    }
    let board = datasets::Checkerboard::default();
    let (_, _, true_loglik) = board_data(cfg)?;
    let r = CheckerboardResults {
        config: cfg.clone(),
        environment: environment(),
        results,
        true_loglik,
    };
    let out = ctx.out;
    write_json(&out.join("results.json"), &r)?;
    let md = markdown(&r);
    write_atomic(&out.join("grbm_checkerboard.md"), &md)?;
    let mut maps = vec![HeatMap {
        title: "data (true density)".into(),
        values: {
            let n = cfg.grid;
            let step = (HI - LO) / n as f64;
            (0..n * n)
                .map(|i| {
                    let (row, col) = (i / n, i % n);
                    let (x, y) = (
                        LO + (col as f64 + 0.5) * step,
                        HI - (row as f64 + 0.5) * step,
                    );
                    board.log_density(x, y).exp()
                })
                .collect()
        },
        rows: cfg.grid,
        cols: cfg.grid,
    }];
    maps.extend(r.results.iter().map(|m| HeatMap {
        title: format!("{} ({:.3})", m.method.label(), m.final_loglik),
        values: m.density.clone(),
        rows: cfg.grid,
        cols: cfg.grid,
    }));
    save_heat_maps(&maps, 4, &out.join("densities.png"))?;
    save_line_plot(
        &Panel {
            title: "GRBM on checkerboard: test log-likelihood".into(),
            x_label: "training step".into(),
            y_label: "test log-likelihood (exact log Z)".into(),
            axes: Axes::Linear,
            series: r
                .results
                .iter()
                .map(|m| Series {
                    name: m.method.label().into(),
                    points: m.curve.iter().map(|c| (c.0 as f64, c.2)).collect(),
                })
                .collect(),
        },
        &out.join("loglik.png"),
    )?;
    Ok(md)
}

/// The Markdown report.
pub fn markdown(r: &CheckerboardResults) -> String {
    let c = &r.config;
    let rows: Vec<Vec<String>> = r
        .results
        .iter()
        .map(|m| {
            vec![
                m.method.label().to_string(),
                format!("{:.4}", m.final_loglik),
                format!("{:.2}", m.ms_per_step),
            ]
        })
        .collect();
    format!(
        "# GRBM on the checkerboard ({} profile)\n\nH = {}, {} training and {} test points, {} \
         iterations at batch {}, Adam lr {}; BiSM K = {}, N = {}, tau = {}; DSM sigma {}; VaGES \
         {} draws. Test log-likelihood with the exact log Z (enumerating 2^H states); the true \
         density scores {:.4}. Machine: {}.\n\n{}\nDensities: `densities.png`; curves: \
         `loglik.png`; every number: `results.json`.\n",
        c.profile,
        c.hidden,
        c.train_points,
        c.test_points,
        c.iters,
        c.batch,
        c.lr,
        c.bism.lower_steps,
        c.bism.unroll,
        c.bism.tau,
        c.sigma,
        c.vages_draws,
        r.true_loglik,
        r.environment.cpu,
        markdown_table(&["method", "test log-likelihood", "ms / step"], &rows)
    )
}
