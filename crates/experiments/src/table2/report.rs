//! The report of Table 2: `results.json`, the Markdown table with our rows next to the paper's
//! and the speed-up ratios, and the loss-curve plots.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::eval::SmEstimate;
use crate::objective::Objective;
use crate::plot::{save_line_plot, Axes, Panel, Series};
use crate::report::{
    environment, markdown_table, read_train_eval, write_atomic, write_json, Environment,
};
use crate::runner::{Context, RowStatus};

use super::{paper_label, paper_row, EvalReport, Table2Config, TrainReport};

/// The full result file `results.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Table2Results {
    /// The configuration.
    pub config: Table2Config,
    /// Machine and versions.
    pub environment: Environment,
    /// Per row: training and evaluation reports.
    pub rows: Vec<(TrainReport, EvalReport)>,
    /// Speed-ups (ours, paper): FD-SSM vs SSM, FD-DSM vs DSM, and the starred forms.
    pub speedups: Vec<(String, Option<f64>, f64)>,
}

/// Reads every row's reports and writes `results.json`, `table2.md` and the loss-curve plots
/// into `ctx.out`; returns the Markdown.
///
/// # Errors
/// Unreadable row reports, I/O and plotting errors.
pub fn write(
    ctx: &Context,
    cfg: &Table2Config,
    statuses: &[(Objective, RowStatus)],
) -> Result<String> {
    let rows: Vec<(TrainReport, EvalReport)> = read_train_eval(ctx, statuses)?;
    let time = |r: Objective| {
        rows.iter()
            .find(|(t, _)| t.row == r)
            .and_then(|(t, _)| t.median_step_ms)
    };
    let paper_time = |r: Objective| paper_row(r).map_or(f64::NAN, |p| p.time_ms);
    let speedups = [
        (Objective::Ssm, Objective::FdSsm),
        (Objective::Mdsm, Objective::FdMdsm),
        (Objective::Ssm, Objective::FdSsmSeq),
        (Objective::Mdsm, Objective::FdMdsmSeq),
    ]
    .into_iter()
    .map(|(slow, fast)| {
        (
            format!("{} vs {}", paper_label(fast), paper_label(slow)),
            time(slow).zip(time(fast)).map(|(s, f)| s / f),
            paper_time(slow) / paper_time(fast),
        )
    })
    .collect();
    let results = Table2Results {
        config: cfg.clone(),
        environment: environment(),
        rows,
        speedups,
    };
    write_json(&ctx.out.join("results.json"), &results)?;
    let md = markdown(&results);
    write_atomic(&ctx.out.join("table2.md"), &md)?;
    for (family, file, title) in [
        (
            true,
            "loss_curves_dsm.png",
            "Test SM loss against training time (DSM family)",
        ),
        (
            false,
            "loss_curves_ssm.png",
            "Test SM loss against training time (SSM family)",
        ),
    ] {
        let series: Vec<Series> = results
            .rows
            .iter()
            .filter(|(t, _)| t.row.denoising() == family)
            .map(|(t, e)| Series {
                name: paper_label(t.row).into(),
                points: e.curve.iter().map(|(_, s, v)| (*s, v.mean)).collect(),
            })
            .collect();
        if !series.is_empty() {
            save_line_plot(
                &Panel {
                    title: title.into(),
                    x_label: "training wall time (s)".into(),
                    y_label: "test SM loss".into(),
                    axes: Axes::Linear,
                    series,
                },
                &ctx.out.join(file),
            )?;
        }
    }
    Ok(md)
}

/// Peak RSS of the training steps and its increase over the RSS before the first one (model,
/// data and optimiser state are resident already), e.g. `0.31 GB (+42 MB)`.
fn fmt_memory(peak: Option<u64>, base: Option<u64>) -> String {
    match (peak, base) {
        (Some(p), Some(b)) => format!(
            "{:.2} GB (+{:.0} MB)",
            p as f64 / 1e9,
            p.saturating_sub(b) as f64 / 1e6
        ),
        (Some(p), None) => format!("{:.2} GB", p as f64 / 1e9),
        _ => "n/a".into(),
    }
}

/// The Markdown report: our rows next to the paper's, and the speed-up ratios.
pub fn markdown(r: &Table2Results) -> String {
    let c = &r.config;
    let estimate = match c.estimate {
        SmEstimate::Exact => format!("exact SM on {} random test images", c.eval_images),
        SmEstimate::Hutchinson { projections } => {
            format!("Hutchinson estimate of SM ({projections} Rademacher projections per image, {} random test images), mean ± standard error", c.eval_images)
        }
    };
    let rows: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|(t, e)| {
            let p = paper_row(t.row);
            let paper = |f: &dyn Fn(&super::PaperRow) -> String| p.as_ref().map_or("—".into(), f);
            vec![
                paper_label(t.row).to_string(),
                format!("`{}`", t.row.key()),
                format!("{:.4e} ± {:.1e}", e.final_sm.mean, e.final_sm.std_err),
                t.median_step_ms
                    .map_or("—".into(), |ms| format!("{ms:.1} ms")),
                fmt_memory(t.step_peak_rss_bytes, t.base_rss_bytes),
                e.fid
                    .as_ref()
                    .map_or("—".into(), |q| format!("{:.1}", q.fid)),
                paper(&|p| format!("{:.2e}", p.sm_loss)),
                paper(&|p| format!("{} ms", p.time_ms)),
                paper(&|p| format!("{} G", p.mem_gb)),
            ]
        })
        .collect();
    let speed: Vec<Vec<String>> = r
        .speedups
        .iter()
        .map(|(name, ours, paper)| {
            vec![
                name.clone(),
                ours.map_or("n/a".into(), |o| format!("{o:.2}x")),
                format!("{paper:.2}x"),
            ]
        })
        .collect();
    let fid = if c.fid_samples > 0 {
        format!(
            "FID (LeNet features; not comparable with Inception FID, which the paper does not \
             report for this table): {} samples per row by the same sampler, clipped to [0, 1], \
             against MNIST's test split (`cargo xtask eval fid`; KID in `results.json`).\n\n",
            c.fid_samples
        )
    } else {
        String::new()
    };
    let env = &r.environment;
    format!(
        "# Table 2: deep EBMs on MNIST ({} profile)\n\n\
         ResNet EBM width {} blocks {:?}, {} iterations, batch {}, lr {} (DSM family) / {} (SSM family), eps {}, \
         sigma {}..{}, sigma_0 {}. Ours: {} on a CPU ({}, {} cores), time per iteration is the median step after {} warm-up steps, \
         memory is the peak resident memory of the training steps in the row's own process (in brackets: the increase over the resident memory before the first step, which holds the data set, model and optimiser state). Paper: 300K iterations, batch 64, GPU. The paper's DSM rows are multiscale DSM (`mdsm`, `fd-mdsm`).\n\n\
         SM loss: {estimate}.\n\n{fid}{}\n## Speed-ups\n\n{}\n\
         Samples: `samples_<objective>.png`; loss curves: `loss_curves_dsm.png`, `loss_curves_ssm.png`; every number: `results.json`.\n",
        c.profile,
        c.training.model.width,
        c.training.model.blocks_per_stage,
        c.training.iters,
        c.training.batch,
        c.training.lr_dsm,
        c.training.lr_ssm,
        c.training.eps,
        c.training.sigma_min,
        c.training.sigma_max,
        c.training.sigma0,
        if env.release_build { "release build" } else { "debug build" },
        env.cpu,
        env.cores,
        c.training.timing_warmup,
        markdown_table(&["Algorithm", "Objective", "SM loss (ours)", "Time (ours)", "Mem. (ours)", "FID, LeNet (ours)", "SM loss (paper)", "Time (paper)", "Mem. (paper)"], &rows),
        markdown_table(&["Ratio", "Ours", "Paper"], &speed),
    )
}
