//! The report of Table 5: `results.json`, the Markdown table (FID, time per iteration, memory of
//! the training steps, the test denoising loss; mean ± standard error over seeds) beside the
//! paper's, one sentence comparing SSMVR and FD-SSMVR from the numbers, the loss curves and the
//! sample grids.

use serde::{Deserialize, Serialize};

use crate::error::{ExpError, Result};
use crate::plot::{moving_average, save_panel_grid, Axes, Panel, Series};
use crate::report::{
    environment, markdown_table, read_train_eval, write_atomic, write_json, Environment, Estimate,
};
use crate::runner::{Context, RowStatus};

use super::{paper_numbers, Estimator, EvalReport, Run, Table5Config, TrainReport};

/// One estimator over its seeds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RowSummary {
    /// The estimator.
    pub estimator: Estimator,
    /// Seeds evaluated.
    pub runs: usize,
    /// FID over seeds (LeNet or Inception features; `None` without FID).
    pub fid: Option<Estimate>,
    /// Median step time over seeds, ms.
    pub step_ms: Estimate,
    /// The largest peak resident memory of the training steps over seeds, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// That run's resident memory before its first step, bytes.
    pub base_rss_bytes: Option<u64>,
    /// The test denoising loss (mean over levels) at the end, over seeds.
    pub test_dsm: Estimate,
}

/// SSMVR against FD-SSMVR.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    /// SSMVR's step time over FD-SSMVR's.
    pub speedup: f64,
    /// The paper's (865 / 575 ms).
    pub paper_speedup: f64,
    /// SSMVR's working set (peak minus base) over FD-SSMVR's, where measured.
    pub memory_ratio: Option<f64>,
    /// The finding in one sentence.
    pub sentence: String,
}

/// The full result file `results.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Table5Results {
    /// The configuration.
    pub config: Table5Config,
    /// Machine and versions.
    pub environment: Environment,
    /// Per estimator.
    pub rows: Vec<RowSummary>,
    /// SSMVR against FD-SSMVR, when both ran.
    pub comparison: Option<Comparison>,
    /// Every run's reports.
    pub runs: Vec<(TrainReport, EvalReport)>,
}

fn summarise(cfg: &Table5Config, runs: &[(TrainReport, EvalReport)]) -> Result<Vec<RowSummary>> {
    let mut out = Vec::new();
    for &estimator in &cfg.estimators {
        let mine: Vec<&(TrainReport, EvalReport)> = runs
            .iter()
            .filter(|(t, _)| t.run.estimator == estimator)
            .collect();
        if mine.is_empty() {
            continue;
        }
        let pick = |what: &str, f: &dyn Fn(&(TrainReport, EvalReport)) -> Option<f64>| {
            let v: Vec<f64> = mine.iter().filter_map(|r| f(r)).collect();
            if v.len() != mine.len() || v.iter().any(|x| !x.is_finite()) {
                return Err(ExpError::Config(format!(
                    "{}: the {what} is missing or not finite in some run ({v:?})",
                    estimator.label()
                )));
            }
            Ok(Estimate::of(&v))
        };
        let fid_of = |e: &EvalReport| {
            e.lenet
                .as_ref()
                .map(|q| q.fid)
                .or(e.inception.as_ref().map(|q| q.fid))
        };
        let peak = mine
            .iter()
            .max_by_key(|(t, _)| t.step_peak_rss_bytes.unwrap_or(0));
        out.push(RowSummary {
            estimator,
            runs: mine.len(),
            fid: if cfg.fid_samples > 0 {
                Some(pick("FID", &|(_, e)| fid_of(e))?)
            } else {
                None
            },
            step_ms: pick("step time", &|(t, _)| t.median_step_ms)?,
            peak_rss_bytes: peak.and_then(|(t, _)| t.step_peak_rss_bytes),
            base_rss_bytes: peak.and_then(|(t, _)| t.base_rss_bytes),
            test_dsm: pick("test denoising loss", &|(t, _)| {
                t.evals.last().map(|p| p.dsm)
            })?,
        });
    }
    Ok(out)
}

/// The working set of a row's training steps: peak minus base, bytes.
fn working_set(r: &RowSummary) -> Option<u64> {
    Some(r.peak_rss_bytes?.saturating_sub(r.base_rss_bytes?))
}

fn compare(rows: &[RowSummary]) -> Option<Comparison> {
    let grad = rows.iter().find(|r| r.estimator == Estimator::Ssmvr)?;
    let fd = rows.iter().find(|r| r.estimator == Estimator::FdSsmvr)?;
    let speedup = grad.step_ms.mean / fd.step_ms.mean;
    let paper_speedup = paper_numbers(Estimator::Ssmvr).1 / paper_numbers(Estimator::FdSsmvr).1;
    let memory_ratio = working_set(grad)
        .zip(working_set(fd))
        .filter(|(_, f)| *f > 0)
        .map(|(g, f)| g as f64 / f as f64);
    let memory = match (working_set(grad), working_set(fd), memory_ratio) {
        (Some(g), Some(f), Some(ratio)) => format!(
            "its training steps use {:.0} MB against SSMVR's {:.0} MB, {:.2}x less (paper 6.4 \
             against 5.5 GB, 1.16x)",
            f as f64 / 1e6,
            g as f64 / 1e6,
            ratio
        ),
        _ => "memory was not measured on this platform".into(),
    };
    let quality = match (fd.fid, grad.fid) {
        (Some(f), Some(g)) => format!(
            "; FID {:.1} against {:.1} (paper 39.5 against 41.2)",
            f.mean, g.mean
        ),
        _ => String::new(),
    };
    let sentence = format!(
        "FD-SSMVR's step takes {:.0} ms against SSMVR's {:.0} ms, {:.2}x faster (paper {:.2}x); \
         {memory}; the test denoising loss is {:.4} against {:.4}{quality}.",
        fd.step_ms.mean,
        grad.step_ms.mean,
        speedup,
        paper_speedup,
        fd.test_dsm.mean,
        grad.test_dsm.mean,
    );
    Some(Comparison {
        speedup,
        paper_speedup,
        memory_ratio,
        sentence,
    })
}

/// Reads every run's reports and writes `results.json`, `table5.md` and `loss_curves.png` into
/// `ctx.out`; returns the Markdown.
///
/// # Errors
/// Unreadable run reports, a missing or non-finite number, I/O and plotting errors.
pub fn write(ctx: &Context, cfg: &Table5Config, statuses: &[(Run, RowStatus)]) -> Result<String> {
    let runs: Vec<(TrainReport, EvalReport)> = read_train_eval(ctx, statuses)?;
    let rows = summarise(cfg, &runs)?;
    let comparison = compare(&rows);
    let results = Table5Results {
        config: cfg.clone(),
        environment: environment(),
        rows,
        comparison,
        runs,
    };
    write_json(&ctx.out.join("results.json"), &results)?;
    let md = markdown(&results);
    write_atomic(&ctx.out.join("table5.md"), &md)?;
    plot_curves(ctx, &results)?;
    Ok(md)
}

/// The training loss and the test denoising loss along training (first seed).
fn plot_curves(ctx: &Context, r: &Table5Results) -> Result<()> {
    let first: Vec<&TrainReport> = r
        .runs
        .iter()
        .map(|(t, _)| t)
        .filter(|t| t.run.seed == 0)
        .collect();
    if first.is_empty() {
        return Ok(());
    }
    let series = |f: &dyn Fn(&TrainReport) -> Vec<(f64, f64)>| -> Vec<Series> {
        first
            .iter()
            .map(|t| Series {
                name: t.run.estimator.label().into(),
                points: f(t),
            })
            .collect()
    };
    let panels = [
        Panel {
            title: "training loss".into(),
            x_label: "step".into(),
            y_label: "estimator's loss (moving average of 20)".into(),
            axes: Axes::Linear,
            series: series(&|t| moving_average(&t.losses, 20)),
        },
        Panel {
            title: "test denoising loss (mean over levels)".into(),
            x_label: "training seconds".into(),
            y_label: "annealed DSM on test images".into(),
            axes: Axes::Linear,
            series: series(&|t| t.evals.iter().map(|p| (p.train_seconds, p.dsm)).collect()),
        },
    ];
    save_panel_grid(&panels, 2, &ctx.out.join("loss_curves.png"))
}

/// The Markdown report: our rows next to the paper's.
pub fn markdown(r: &Table5Results) -> String {
    let c = &r.config;
    let rows: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|s| {
            let (fid, ms, gb) = paper_numbers(s.estimator);
            vec![
                s.estimator.label().to_string(),
                s.fid.as_ref().map_or("—".into(), |f| f.display(1)),
                format!("{} ms", s.step_ms.display(0)),
                match (s.peak_rss_bytes, working_set(s)) {
                    (Some(p), Some(w)) => {
                        format!("{:.0} MB (+{:.0} MB)", p as f64 / 1e6, w as f64 / 1e6)
                    }
                    _ => "—".into(),
                },
                s.test_dsm.display(4),
                s.runs.to_string(),
                format!("{fid:.1}"),
                format!("{ms:.0} ms"),
                format!("{gb:.1} GB"),
            ]
        })
        .collect();
    let env = &r.environment;
    let features = match c.data {
        super::Table5Data::Cifar10 => "Inception",
        _ => "LeNet",
    };
    format!(
        "# Table 5: NCSN trained by annealed SSMVR and FD-SSMVR ({} profile)\n\n\
         {} images; NCSN's conditional RefineNet with ngf {}; {} noise levels geometric from {} \
         to {}, each image drawing its level; Adam (lr {}), {} steps at batch {}; FD-SSMVR's \
         directions on the sphere of radius {}. Samples by annealed Langevin dynamics from U[0, \
         1], {} steps per level, step {} (sigma_i / sigma_L)^2{}. FID with {features} features \
         of {} samples. Time: median per step after {} warm-up steps; memory: peak resident \
         memory of the training steps in the row's own process (in brackets the increase over \
         the memory before the first step). Test denoising: annealed DSM (per dimension, \
         weighted by sigma^2) on {} test images at every level, mean over levels. Ours: {} on \
         {} ({} cores); mean ± standard error over seeds. Paper: CIFAR-10, ngf 128, 200K steps \
         at batch 128 on a GPU, FID on 50 000 samples.\n\n{}\n{}\n\
         Samples: `samples_<row>.png` (first seed); curves: `loss_curves.png`; every number: \
         `results.json`.\n",
        c.profile,
        c.data.key(),
        c.ngf,
        c.levels,
        c.sigma_max,
        c.sigma_min,
        c.lr,
        c.iters,
        c.batch,
        c.eps,
        c.langevin_steps,
        c.step_lr,
        if c.denoise {
            ", then one denoising step"
        } else {
            ""
        },
        c.fid_samples,
        c.timing_warmup,
        c.eval_images,
        if env.release_build {
            "release build"
        } else {
            "debug build"
        },
        env.cpu,
        env.cores,
        markdown_table(
            &[
                "Estimator",
                "FID (ours)",
                "Time (ours)",
                "Memory (ours)",
                "Test denoising (ours)",
                "Runs",
                "FID (paper)",
                "Time (paper)",
                "Memory (paper)",
            ],
            &rows
        ),
        r.comparison
            .as_ref()
            .map_or(String::new(), |c| format!("- {}\n", c.sentence)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(estimator: Estimator, ms: f64, peak: u64) -> RowSummary {
        RowSummary {
            estimator,
            runs: 1,
            fid: None,
            step_ms: Estimate::of(&[ms]),
            peak_rss_bytes: Some(peak),
            base_rss_bytes: Some(100),
            test_dsm: Estimate::of(&[0.5]),
        }
    }

    #[test]
    fn the_pair_is_compared_from_its_numbers() {
        let c = compare(&[
            row(Estimator::Ssmvr, 900.0, 400),
            row(Estimator::FdSsmvr, 600.0, 250),
        ])
        .unwrap();
        assert!((c.speedup - 1.5).abs() < 1e-12);
        assert!((c.paper_speedup - 865.0 / 575.0).abs() < 1e-12);
        // Working sets 300 and 150.
        assert!((c.memory_ratio.unwrap() - 2.0).abs() < 1e-12);
        assert!(c.sentence.contains("1.50x faster"), "{}", c.sentence);
        assert!(compare(&[row(Estimator::Ssmvr, 900.0, 400)]).is_none());
    }
}
