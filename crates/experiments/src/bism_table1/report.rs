//! The report of BiSM Table 1: `results.json`, the Markdown table beside the paper's and the
//! validation curves.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::plot::{save_line_plot, Axes, Panel, Series};
use crate::report::{
    environment, markdown_table, read_json, write_atomic, write_json, Environment,
};
use crate::runner::{Context, ExperimentRow, RowStatus};

use super::{Row, RowResult, Table1Config};

/// Everything `results.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Table1Results {
    /// Settings.
    pub config: Table1Config,
    /// Versions and machine.
    pub environment: Environment,
    /// Per row.
    pub rows: Vec<RowResult>,
}

/// Reads every row's result and writes `results.json`, `bism_table1.md` and `validation.png`
/// into `ctx.out`; returns the Markdown.
///
/// # Errors
/// Unreadable results, I/O and plotting errors.
pub fn write(ctx: &Context, cfg: &Table1Config, rows: &[(Row, RowStatus)]) -> Result<String> {
    let mut results = Vec::new();
    for (row, _) in rows {
        results.push(read_json::<RowResult>(
            &ctx.row_dir(&row.key()).join("result.json"),
        )?);
    }
    let r = Table1Results {
        config: cfg.clone(),
        environment: environment(),
        rows: results,
    };
    write_json(&ctx.out.join("results.json"), &r)?;
    let md = markdown(&r);
    write_atomic(&ctx.out.join("bism_table1.md"), &md)?;
    save_line_plot(
        &Panel {
            title: "GRBM on Frey face: validation SM loss".into(),
            x_label: "training step".into(),
            y_label: "validation SM loss".into(),
            axes: Axes::Linear,
            series: r
                .rows
                .iter()
                .map(|x| Series {
                    name: x.row.label(),
                    points: x.validation.iter().map(|(s, v)| (*s as f64, *v)).collect(),
                })
                .collect(),
        },
        &ctx.out.join("validation.png"),
    )?;
    Ok(md)
}

/// The Markdown report: our rows next to the paper's.
pub fn markdown(r: &Table1Results) -> String {
    let c = &r.config;
    let rows: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|x| {
            let p = x.row.paper();
            vec![
                ExperimentRow::label(&x.row),
                format!("{:.2} ± {:.2}", x.test_loglik, x.log_z_se),
                format!("{:.2}", x.test_fisher),
                x.best_step.to_string(),
                format!("{:.1}", x.ms_per_step),
                p.map_or("—".into(), |p| format!("{:.2}", p.0)),
                p.map_or("—".into(), |p| format!("{:.2}", p.1)),
            ]
        })
        .collect();
    format!(
        "# BiSM Table 1: GRBM on Frey face ({} profile)\n\nH = {}, {} iterations at batch {}, \
         Adam lr {}, DSM sigma {}, BiSM K = {}, tau = {}. Each row keeps the parameters with the \
         best validation SM loss ({} evaluations). LL: mean test log-likelihood with log Z by AIS \
         ({} chains, {} distributions; ± its standard error). Fisher: the exact test \
         score-matching loss (closed form, total over 560 pixels). Machine: {}. Paper: 20000 \
         iterations, lr 2e-4, AIS 2000 x 2000.\n\n{}",
        c.profile,
        c.hidden,
        c.iters,
        c.batch,
        c.lr,
        c.sigma,
        c.bism.lower_steps,
        c.bism.tau,
        c.eval_points,
        c.ais_chains,
        c.ais_steps,
        r.environment.cpu,
        markdown_table(
            &[
                "Method",
                "LL (ours)",
                "Fisher (ours)",
                "best step",
                "ms / step",
                "LL (paper)",
                "Fisher (paper)"
            ],
            &rows
        )
    )
}
