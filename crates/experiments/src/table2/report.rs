//! The report of Table 2: `results.json`, the Markdown table with our rows next to the paper's
//! and the speed-up ratios, and the loss-curve plots.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::eval::{SmEstimate, SmValue};
use crate::objective::Objective;
use crate::plot::{save_line_plot, Axes, Panel, Series};
use crate::report::{
    environment, markdown_table, read_train_eval, write_atomic, write_json, Environment, Estimate,
};
use crate::runner::{Context, RowStatus};

use super::{paper_label, paper_row, EvalReport, Run, Table2Config, TrainReport};

/// The full result file `results.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Table2Results {
    /// The configuration.
    pub config: Table2Config,
    /// Machine and versions.
    pub environment: Environment,
    /// Per run (row and seed): training and evaluation reports.
    pub rows: Vec<(TrainReport, EvalReport)>,
    /// Per row: its runs summarised.
    #[serde(default)]
    pub summary: Vec<RowSummary>,
    /// Speed-ups (ours, paper): FD-SSM vs SSM, FD-DSM vs DSM, the starred forms, and FD-DSM vs
    /// sliced DSM (no paper number).
    pub speedups: Vec<(String, Option<f64>, Option<f64>)>,
    /// What each pair of rows shows, one sentence each.
    #[serde(default)]
    pub comparisons: Vec<Comparison>,
}

/// One row of the table: its runs (seeds) summarised.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RowSummary {
    /// The row.
    pub row: Objective,
    /// Runs (seeds) summarised.
    pub seeds: usize,
    /// Final test SM loss: over seeds, their mean and its standard error; for one seed, that
    /// run's estimate and the estimate's standard error.
    pub sm: SmValue,
    /// Mean over seeds of the median step time, ms.
    pub time_ms: Option<f64>,
    /// The largest peak RSS of the training steps over seeds, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// The RSS before the first step in that run, bytes.
    pub base_rss_bytes: Option<u64>,
    /// FID with LeNet features of the first seed's samples.
    pub fid: Option<f64>,
    /// Why the first seed's sampler produced no samples, when it did not.
    #[serde(default)]
    pub sampler_failure: Option<String>,
    /// The loss curve averaged over seeds: `(training seconds, test SM)` per snapshot.
    pub curve: Vec<(f64, f64)>,
}

/// Two rows compared: what the comparison is about and what the numbers say.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    /// The rows, e.g. `SSM vs FD-SSM`.
    pub pair: String,
    /// The measured sentence.
    pub finding: String,
    /// Whether the two final SM losses agree (within two combined standard errors or 10% of
    /// the larger magnitude); `None` where agreement is not what the pair is about.
    pub agree: Option<bool>,
    /// Of the later row's curve points after time 0 that fall inside the earlier row's training
    /// time, how many lie below the earlier row's curve at the same time (linear
    /// interpolation; both curves start at the shared untrained model).
    pub below_at_equal_time: Option<(usize, usize)>,
}

/// Relative tolerance under which two final SM losses count as equal when their standard errors
/// are tighter.
pub const AGREE_RELATIVE: f64 = 0.10;

/// Summarises each row's runs.
///
/// # Errors
/// [`crate::error::ExpError::Config`] when a run's final SM loss, standard error or step time
/// is missing or not finite: a table must not show a row it has no number for.
pub fn summarise(runs: &[(TrainReport, EvalReport)]) -> Result<Vec<RowSummary>> {
    let mut order: Vec<Objective> = Vec::new();
    for (t, _) in runs {
        if !order.contains(&t.row) {
            order.push(t.row);
        }
    }
    order
        .into_iter()
        .map(|row| {
            let of_row: Vec<&(TrainReport, EvalReport)> =
                runs.iter().filter(|(t, _)| t.row == row).collect();
            for (t, e) in &of_row {
                let ok = e.final_sm.mean.is_finite()
                    && e.final_sm.std_err.is_finite()
                    && t.median_step_ms
                        .is_some_and(|ms| ms.is_finite() && ms > 0.0);
                if !ok {
                    return Err(crate::error::ExpError::Config(format!(
                        "{} (seed {}): no finite result (test SM {:?}, step time {:?})",
                        paper_label(row),
                        e.seed,
                        e.final_sm,
                        t.median_step_ms
                    )));
                }
            }
            let finals: Vec<f64> = of_row.iter().map(|(_, e)| e.final_sm.mean).collect();
            let sm = if of_row.len() == 1 {
                of_row[0].1.final_sm
            } else {
                let e = Estimate::of(&finals);
                SmValue {
                    mean: e.mean,
                    std_err: e.std_err,
                    images: of_row[0].1.final_sm.images,
                }
            };
            let times: Vec<f64> = of_row
                .iter()
                .filter_map(|(t, _)| t.median_step_ms)
                .collect();
            let peak_run = of_row
                .iter()
                .max_by_key(|(t, _)| t.step_peak_rss_bytes.unwrap_or(0));
            let points = of_row.iter().map(|(_, e)| e.curve.len()).min().unwrap_or(0);
            let n = of_row.len() as f64;
            let curve = (0..points)
                .map(|i| {
                    let (s, v) = of_row.iter().fold((0.0, 0.0), |(s, v), (_, e)| {
                        (s + e.curve[i].1, v + e.curve[i].2.mean)
                    });
                    (s / n, v / n)
                })
                .collect();
            Ok(RowSummary {
                row,
                seeds: of_row.len(),
                sm,
                time_ms: Some(times.iter().sum::<f64>() / times.len() as f64),
                peak_rss_bytes: peak_run.and_then(|(t, _)| t.step_peak_rss_bytes),
                base_rss_bytes: peak_run.and_then(|(t, _)| t.base_rss_bytes),
                fid: of_row
                    .iter()
                    .find_map(|(_, e)| e.fid.as_ref().map(|q| q.fid)),
                sampler_failure: of_row.iter().find_map(|(_, e)| e.sampler_failure.clone()),
                curve,
            })
        })
        .collect()
}

/// The value of a piecewise-linear curve at `t`, `None` outside its span.
fn at_time(curve: &[(f64, f64)], t: f64) -> Option<f64> {
    let first = curve.first()?;
    if t < first.0 {
        return None;
    }
    curve.windows(2).find_map(|w| {
        let ((t0, v0), (t1, v1)) = (w[0], w[1]);
        (t >= t0 && t <= t1).then(|| {
            if t1 > t0 {
                v0 + (v1 - v0) * (t - t0) / (t1 - t0)
            } else {
                v1
            }
        })
    })
}

/// How many of `fast`'s curve points inside `slow`'s span lie below `slow`'s curve.
fn below_at_equal_time(slow: &[(f64, f64)], fast: &[(f64, f64)]) -> (usize, usize) {
    let compared: Vec<bool> = fast
        .iter()
        .filter(|&&(t, _)| t > 0.0)
        .filter_map(|&(t, v)| at_time(slow, t).map(|s| v < s))
        .collect();
    (compared.iter().filter(|&&b| b).count(), compared.len())
}

/// Whether two SM values agree: within two combined standard errors, or within
/// [`AGREE_RELATIVE`] of the larger magnitude.
pub fn sm_agree(a: SmValue, b: SmValue) -> bool {
    let diff = (a.mean - b.mean).abs();
    diff <= 2.0 * a.std_err.hypot(b.std_err)
        || diff <= AGREE_RELATIVE * a.mean.abs().max(b.mean.abs())
}

fn fmt_sm(v: SmValue) -> String {
    format!("{:.3e} ± {:.1e}", v.mean, v.std_err)
}

/// One sentence per pair of rows present, from the numbers.
pub fn compare(rows: &[RowSummary]) -> Vec<Comparison> {
    let get = |o: Objective| rows.iter().find(|r| r.row == o);
    let mut out = Vec::new();
    let ratio = |a: &RowSummary, b: &RowSummary| -> String {
        match (a.time_ms, b.time_ms) {
            (Some(x), Some(y)) => format!("{:.2}x", x / y),
            _ => "n/a".into(),
        }
    };
    let mem = |a: &RowSummary, b: &RowSummary| -> String {
        let grow = |r: &RowSummary| {
            r.peak_rss_bytes
                .zip(r.base_rss_bytes)
                .map(|(p, b)| p.saturating_sub(b) as f64 / 1e6)
        };
        match (grow(a), grow(b)) {
            (Some(x), Some(y)) => format!("{x:.0} MB against {y:.0} MB"),
            _ => "n/a".into(),
        }
    };
    // The effect of slicing: same expectation, more variance.
    if let (Some(d), Some(s)) = (get(Objective::Mdsm), get(Objective::SlicedMdsm)) {
        let agree = sm_agree(d.sm, s.sm);
        out.push(Comparison {
            pair: "DSM vs sliced DSM (slicing)".into(),
            finding: format!(
                "Slicing keeps DSM's expectation but adds the variance of one random direction per image: sliced DSM reaches {} against DSM's {} ({}), at {} DSM's step time.",
                fmt_sm(s.sm),
                fmt_sm(d.sm),
                if agree { "in agreement" } else if s.sm.mean > d.sm.mean { "worse: the variance costs progress in this budget" } else { "better" },
                ratio(s, d),
            ),
            agree: Some(agree),
            below_at_equal_time: None,
        });
    }
    for (grad, fd, what) in [
        (
            Objective::SlicedMdsm,
            Objective::FdMdsm,
            "the same loss by a finite difference",
        ),
        (
            Objective::Ssm,
            Objective::FdSsm,
            "the same loss by finite differences",
        ),
        (
            Objective::SlicedMdsm,
            Objective::FdMdsmSeq,
            "one forward pass per offset",
        ),
        (
            Objective::Ssm,
            Objective::FdSsmSeq,
            "one forward pass per offset",
        ),
    ] {
        let (Some(g), Some(f)) = (get(grad), get(fd)) else {
            continue;
        };
        let agree = sm_agree(g.sm, f.sm);
        let below = below_at_equal_time(&g.curve, &f.curve);
        out.push(Comparison {
            pair: format!("{} vs {}", paper_label(grad), paper_label(fd)),
            finding: format!(
                "{} ({what}) reaches {} against {}'s {} ({}), is {} faster per step, its step's own memory is {}, and {} of its {} loss-curve points inside {}'s training time lie below {}'s curve at equal time.",
                paper_label(fd),
                fmt_sm(f.sm),
                paper_label(grad),
                fmt_sm(g.sm),
                if agree { "in agreement" } else { "not in agreement" },
                ratio(g, f),
                mem(f, g),
                below.0,
                below.1,
                paper_label(grad),
                paper_label(grad),
            ),
            agree: Some(agree),
            below_at_equal_time: Some(below),
        });
    }
    if let (Some(m), Some(d)) = (get(Objective::MleLangevin), get(Objective::Mdsm)) {
        out.push(Comparison {
            pair: "DSM vs MLE (Langevin)".into(),
            finding: format!(
                "Maximum likelihood with persistent Langevin chains costs {} DSM's step time (its sampler runs a forward and backward pass per Langevin step) and reaches a test SM loss of {} against DSM's {}: it fits the likelihood, not the score, so compare its samples and FID rather than its SM loss.",
                ratio(m, d),
                fmt_sm(m.sm),
                fmt_sm(d.sm),
            ),
            agree: None,
            below_at_equal_time: None,
        });
    }
    out
}

/// Reads every run's reports and writes `results.json`, `table2.md` and the loss-curve plots
/// into `ctx.out`; returns the Markdown.
///
/// # Errors
/// Unreadable run reports, a run without a finite result, I/O and plotting errors.
pub fn write(ctx: &Context, cfg: &Table2Config, statuses: &[(Run, RowStatus)]) -> Result<String> {
    let runs: Vec<(TrainReport, EvalReport)> = read_train_eval(ctx, statuses)?;
    let summary = summarise(&runs)?;
    let time = |r: Objective| summary.iter().find(|s| s.row == r).and_then(|s| s.time_ms);
    let paper_time = |r: Objective| paper_row(r).map(|p| p.time_ms);
    let speedups = [
        (Objective::Ssm, Objective::FdSsm),
        (Objective::Mdsm, Objective::FdMdsm),
        (Objective::Ssm, Objective::FdSsmSeq),
        (Objective::Mdsm, Objective::FdMdsmSeq),
        (Objective::SlicedMdsm, Objective::FdMdsm),
    ]
    .into_iter()
    .map(|(slow, fast)| {
        (
            format!("{} vs {}", paper_label(fast), paper_label(slow)),
            time(slow).zip(time(fast)).map(|(s, f)| s / f),
            paper_time(slow).zip(paper_time(fast)).map(|(s, f)| s / f),
        )
    })
    .collect();
    let comparisons = compare(&summary);
    let results = Table2Results {
        config: cfg.clone(),
        environment: environment(),
        rows: runs,
        summary,
        speedups,
        comparisons,
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
            .summary
            .iter()
            .filter(|s| s.row != Objective::MleLangevin && s.row.denoising() == family)
            .map(|s| Series {
                name: paper_label(s.row).into(),
                points: s.curve.clone(),
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

/// The Markdown report: our rows next to the paper's, the speed-up ratios and one sentence per
/// compared pair.
pub fn markdown(r: &Table2Results) -> String {
    let c = &r.config;
    let estimate = match c.estimate {
        SmEstimate::Exact => format!("exact SM on {} random test images", c.eval_images),
        SmEstimate::Hutchinson { projections } => format!(
            "Hutchinson estimate of SM ({projections} Rademacher projections per image, {} random test images)",
            c.eval_images
        ),
    };
    let spread = if c.seeds > 1 {
        format!(
            "mean over {} seeds ± the standard error over seeds (each seed's test images and projections are shared by every row)",
            c.seeds
        )
    } else {
        "mean ± its standard error over images".into()
    };
    let rows: Vec<Vec<String>> = r
        .summary
        .iter()
        .map(|s| {
            let p = paper_row(s.row);
            let paper = |f: &dyn Fn(&super::PaperRow) -> String| p.as_ref().map_or("—".into(), f);
            vec![
                paper_label(s.row).to_string(),
                format!("`{}`", s.row.key()),
                fmt_sm(s.sm),
                s.time_ms.map_or("—".into(), |ms| format!("{ms:.1} ms")),
                fmt_memory(s.peak_rss_bytes, s.base_rss_bytes),
                match (&s.sampler_failure, s.fid) {
                    (Some(_), _) => "sampler diverged".into(),
                    (None, Some(f)) => format!("{f:.1}"),
                    (None, None) => "—".into(),
                },
                paper(&|p| format!("{:.2e}", p.sm_loss)),
                paper(&|p| format!("{} ms", p.time_ms)),
                paper(&|p| format!("{} G", p.mem_gb)),
            ]
        })
        .collect();
    let speed: Vec<Vec<String>> = r
        .speedups
        .iter()
        .filter(|(_, ours, _)| ours.is_some())
        .map(|(name, ours, paper)| {
            vec![
                name.clone(),
                ours.map_or("n/a".into(), |o| format!("{o:.2}x")),
                paper.map_or("—".into(), |p| format!("{p:.2}x")),
            ]
        })
        .collect();
    let findings: String = r
        .comparisons
        .iter()
        .map(|c| format!("- **{}.** {}\n", c.pair, c.finding))
        .collect();
    let fid = if c.fid_samples > 0 {
        format!(
            "FID (LeNet features; not comparable with Inception FID, which the paper does not \
             report for this table): {} samples of the first seed's model per row, clipped to \
             [0, 1], against MNIST's test split (`cargo xtask eval fid`; KID in `results.json`).\n\n",
            c.fid_samples
        )
    } else {
        String::new()
    };
    let env = &r.environment;
    let t = &c.training;
    format!(
        "# Table 2: deep EBMs on MNIST ({} profile)\n\n\
         ResNet EBM width {} blocks {:?}, {} iterations, batch {}, lr {} (DSM family) / {} (SSM family) / {} (MLE), eps {}, \
         sigma {}..{}, sigma_0 {}; MLE: {} Langevin steps per iteration from a buffer of {} persistent chains. Ours: {} on a CPU ({}, {} cores), time per iteration is the median step after {} warm-up steps, \
         memory is the peak resident memory of the training steps in the row's own process (in brackets: the increase over the resident memory before the first step, which holds the data set, model and optimiser state). Paper: 300K iterations, batch 64, GPU. The paper's DSM rows are multiscale DSM (`mdsm`, `fd-mdsm`); sliced DSM and MLE are not rows of the paper.\n\n\
         SM loss: {estimate}, {spread}.\n\n{fid}{}\n## Speed-ups\n\n{}\n## What each comparison shows\n\n{findings}\n\
         Agreement: within two combined standard errors or {:.0}% of the larger magnitude. Samples: `samples_<objective>.png` (left to right: the sampler's starting noise, its last Langevin state, the denoised samples; MLE: start and samples); loss curves: `loss_curves_dsm.png`, `loss_curves_ssm.png`; every number: `results.json`.\n",
        c.profile,
        t.model.width,
        t.model.blocks_per_stage,
        t.iters,
        t.batch,
        t.lr_dsm,
        t.lr_ssm,
        t.lr_mle,
        t.eps,
        t.sigma_min,
        t.sigma_max,
        t.sigma0,
        t.mle.sampler.steps,
        t.mle.buffer,
        if env.release_build { "release build" } else { "debug build" },
        env.cpu,
        env.cores,
        t.timing_warmup,
        markdown_table(&["Algorithm", "Objective", "SM loss (ours)", "Time (ours)", "Mem. (ours)", "FID, LeNet (ours)", "SM loss (paper)", "Time (paper)", "Mem. (paper)"], &rows),
        markdown_table(&["Ratio", "Ours", "Paper"], &speed),
        AGREE_RELATIVE * 100.0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sm(mean: f64, std_err: f64) -> SmValue {
        SmValue {
            mean,
            std_err,
            images: 8,
        }
    }

    /// A run of `row` whose curve is `(seconds, SM)` per snapshot (the last is the final SM).
    fn run(
        row: Objective,
        seed: usize,
        ms: f64,
        curve: &[(f64, f64)],
    ) -> (TrainReport, EvalReport) {
        let curve: Vec<(u64, f64, SmValue)> = curve
            .iter()
            .enumerate()
            .map(|(i, &(t, v))| (i as u64 * 10, t, sm(v, 0.5)))
            .collect();
        (
            TrainReport {
                row,
                paused_at: None,
                records: Vec::new(),
                median_step_ms: Some(ms),
                base_rss_bytes: Some(100),
                step_peak_rss_bytes: Some(100 + 10 * seed as u64),
                snapshots: Vec::new(),
                higher_order: row.gradient_based(),
                diverged: None,
            },
            EvalReport {
                row,
                final_sm: curve.last().unwrap().2,
                curve,
                seed,
                samples_png: None,
                fid: None,
                sampler_failure: None,
            },
        )
    }

    #[test]
    fn seeds_are_averaged_with_their_standard_error() {
        let runs = vec![
            run(
                Objective::Ssm,
                0,
                10.0,
                &[(0.0, 0.0), (1.0, -2.0), (2.0, -4.0)],
            ),
            run(
                Objective::Ssm,
                1,
                12.0,
                &[(0.0, 0.0), (1.2, -3.0), (2.2, -6.0)],
            ),
        ];
        let s = summarise(&runs).unwrap();
        assert_eq!(s.len(), 1);
        let s = &s[0];
        assert_eq!((s.seeds, s.sm.mean, s.time_ms), (2, -5.0, Some(11.0)));
        // Two values 4 and 6: sample standard deviation sqrt(2), standard error 1.
        assert!((s.sm.std_err - 1.0).abs() < 1e-12);
        assert_eq!(s.curve, vec![(0.0, 0.0), (1.1, -2.5), (2.1, -5.0)]);
        assert_eq!(s.peak_rss_bytes, Some(110), "the larger peak");
        // One seed: the run's own estimate and its standard error.
        let one = summarise(&runs[..1]).unwrap();
        assert_eq!((one[0].sm.mean, one[0].sm.std_err), (-4.0, 0.5));
    }

    #[test]
    fn a_row_without_a_finite_result_is_an_error() {
        let mut nan = run(Objective::FdSsm, 0, 5.0, &[(0.0, 0.0), (1.0, f64::NAN)]);
        nan.1.final_sm = sm(f64::NAN, 0.5);
        let err = summarise(&[nan]).unwrap_err().to_string();
        assert!(err.contains("FD-SSM (seed 0): no finite result"), "{err}");
        let mut untimed = run(Objective::Mdsm, 0, 5.0, &[(0.0, 0.0), (1.0, -1.0)]);
        untimed.0.median_step_ms = None;
        let err = summarise(&[untimed]).unwrap_err().to_string();
        assert!(err.contains("DSM (seed 0)"), "{err}");
    }

    #[test]
    fn comparisons_read_agreement_and_equal_time_from_the_curves() {
        // FD-SSM is 4x faster and lower at every time inside SSM's span; its final loss is 5%
        // from SSM's (agreement by the relative tolerance).
        let runs = vec![
            run(
                Objective::Ssm,
                0,
                40.0,
                &[(0.0, 0.0), (4.0, -50.0), (8.0, -100.0)],
            ),
            run(
                Objective::FdSsm,
                0,
                10.0,
                &[(0.0, 0.0), (1.0, -40.0), (2.0, -95.0)],
            ),
        ];
        let c = compare(&summarise(&runs).unwrap());
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].pair, "SSM vs FD-SSM");
        assert_eq!(c[0].agree, Some(true));
        // At t = 1 SSM is at -12.5, at t = 2 at -25: both FD points are below.
        assert_eq!(c[0].below_at_equal_time, Some((2, 2)));
        assert!(c[0].finding.contains("4.00x faster"), "{}", c[0].finding);
        // Far apart with tight errors: no agreement.
        assert!(!sm_agree(sm(-100.0, 1.0), sm(-50.0, 1.0)));
        assert!(sm_agree(sm(-100.0, 30.0), sm(-50.0, 1.0)));
        assert_eq!(at_time(&[(1.0, 2.0), (3.0, 6.0)], 0.5), None);
        assert_eq!(at_time(&[(1.0, 2.0), (3.0, 6.0)], 2.5), Some(5.0));
        assert_eq!(at_time(&[(1.0, 2.0), (3.0, 6.0)], 3.5), None);
    }
}
