//! The report of Table 4: `results.json`, the Markdown table (training set and method by test
//! set, AUC mean ± standard error over seeds, time per iteration) beside the paper's, the
//! FD-DSM-against-DSM comparison in a sentence per training set, ROC curves, histograms of the
//! typicality scores and training-loss curves.

use serde::{Deserialize, Serialize};

use crate::deep_ebm::TrainReport;
use crate::error::Result;
use crate::objective::Objective;
use crate::plot::{moving_average, save_panels, Axes, Panel, Series};
use crate::report::{
    environment, markdown_table, read_json, write_atomic, write_json, Environment, Estimate,
};
use crate::runner::{Context, ExperimentRow, RowStatus};
use train::ood::roc_curve;

use super::{EvalReport, ImageSet, Reused, Run, Table4Config, TestSet, PAPER, PAPER_COLUMNS};

/// The paper's name of a method (its DSM is multiscale DSM).
pub fn method_label(method: Objective) -> &'static str {
    match method {
        Objective::Mdsm => "DSM",
        Objective::FdMdsm => "FD-DSM",
        other => other.label(),
    }
}

/// One (training set, method) row over its seeds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RowSummary {
    /// The training set.
    pub train_set: ImageSet,
    /// The method.
    pub method: Objective,
    /// Runs that finished training and evaluation.
    pub runs: usize,
    /// Runs whose detector was reused from another results directory.
    pub reused: usize,
    /// Median step time, ms, over runs.
    pub time_ms: Option<Estimate>,
    /// AUC per column over runs, in the configuration's column order.
    pub aucs: Vec<(TestSet, Estimate)>,
}

/// The full result file `results.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Table4Results {
    /// The configuration.
    pub config: Table4Config,
    /// Machine and versions.
    pub environment: Environment,
    /// Per (training set, method).
    pub rows: Vec<RowSummary>,
    /// Every run's reports, and where a reused detector came from.
    pub runs: Vec<(TrainReport, EvalReport, Option<Reused>)>,
}

/// Reads every finished run's reports and writes `results.json`, `table4.md`, `roc_<set>.png`,
/// `scores_<set>.png` and `loss_curves.png` into `ctx.out`; returns the Markdown.
///
/// # Errors
/// Unreadable run reports, I/O and plotting errors.
pub fn write(ctx: &Context, cfg: &Table4Config, statuses: &[(Run, RowStatus)]) -> Result<String> {
    let mut runs = Vec::new();
    for (run, status) in statuses {
        if *status != RowStatus::Done {
            continue;
        }
        let dir = ctx.row_dir(&run.key());
        let reused = dir.join("reused.json");
        runs.push((
            read_json::<TrainReport>(&dir.join("train.json"))?,
            read_json::<EvalReport>(&dir.join("eval.json"))?,
            if reused.is_file() {
                Some(read_json::<Reused>(&reused)?)
            } else {
                None
            },
        ));
    }
    let mut rows = Vec::new();
    for &train_set in &cfg.train_sets {
        for &method in &cfg.methods {
            let mine: Vec<&(TrainReport, EvalReport, Option<Reused>)> = runs
                .iter()
                .filter(|(_, e, _)| e.run.train_set == train_set && e.run.method == method)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let times: Vec<f64> = mine
                .iter()
                .filter_map(|(t, _, _)| t.median_step_ms)
                .collect();
            let aucs = cfg
                .test_sets
                .iter()
                .map(|&col| {
                    let v: Vec<f64> = mine
                        .iter()
                        .filter_map(|(_, e, _)| {
                            e.columns.iter().find(|c| c.test_set == col).map(|c| c.auc)
                        })
                        .collect();
                    (col, Estimate::of(&v))
                })
                .collect();
            rows.push(RowSummary {
                train_set,
                method,
                runs: mine.len(),
                reused: mine.iter().filter(|r| r.2.is_some()).count(),
                time_ms: (!times.is_empty()).then(|| Estimate::of(&times)),
                aucs,
            });
        }
    }
    let results = Table4Results {
        config: cfg.clone(),
        environment: environment(),
        rows,
        runs,
    };
    write_json(&ctx.out.join("results.json"), &results)?;
    let md = markdown(&results);
    write_atomic(&ctx.out.join("table4.md"), &md)?;
    plot(ctx, &results)?;
    Ok(md)
}

/// The sampling standard error of an AUC of 0.5 between two classes of `n` scores each
/// (Hanley and McNeil 1982): `sqrt((2n + 1) / (12 n^2))`.
fn chance_std_err(n: usize) -> f64 {
    let n = n.max(1) as f64;
    ((2.0 * n + 1.0) / (12.0 * n * n)).sqrt()
}

/// The time ratio DSM / FD-DSM of a training set, ours.
fn speedup(r: &Table4Results, set: ImageSet) -> Option<f64> {
    let time = |m: Objective| {
        r.rows
            .iter()
            .find(|s| s.train_set == set && s.method == m)
            .and_then(|s| s.time_ms)
            .map(|t| t.mean)
    };
    Some(time(Objective::Mdsm)? / time(Objective::FdMdsm)?)
}

/// One sentence per training set on FD-DSM against DSM: the largest AUC difference over the
/// columns, and the time ratio.
fn comparison(r: &Table4Results, set: ImageSet) -> Option<String> {
    let row = |m: Objective| r.rows.iter().find(|s| s.train_set == set && s.method == m);
    let (dsm, fd) = (row(Objective::Mdsm)?, row(Objective::FdMdsm)?);
    let (mut worst, mut col) = (0.0f64, None);
    for ((c, a), (_, b)) in dsm.aucs.iter().zip(&fd.aucs) {
        let d = b.mean - a.mean;
        if d.abs() >= worst.abs() {
            (worst, col) = (d, Some(*c));
        }
    }
    let col = col?;
    Some(format!(
        "- **{}**: FD-DSM's AUCs differ from DSM's by at most {:.3} over the columns ({:+.3} \
         against {}; mean over runs){}.",
        set.label(),
        worst.abs(),
        worst,
        col.label(),
        speedup(r, set).map_or(String::new(), |x| format!(
            ", at {x:.2}x less time per iteration"
        ))
    ))
}

/// The Markdown report: our table, the comparison, and the paper's table.
pub fn markdown(r: &Table4Results) -> String {
    let c = &r.config;
    let t = &c.training;
    let mut header: Vec<String> = vec![
        "Training set".into(),
        "Algorithm".into(),
        "Time (ours)".into(),
    ];
    header.extend(c.test_sets.iter().map(|s| s.label()));
    header.push("Runs".into());
    let rows: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|s| {
            let mut row = vec![
                s.train_set.label().to_string(),
                method_label(s.method).to_string(),
                s.time_ms
                    .as_ref()
                    .map_or("—".into(), |t| format!("{:.1} ms", t.mean)),
            ];
            row.extend(s.aucs.iter().map(|(col, e)| {
                let cell = e.display(3);
                if *col == TestSet::Data(s.train_set) {
                    format!("*{cell}*")
                } else {
                    cell
                }
            }));
            row.push(if s.reused > 0 {
                format!("{} ({} reused)", s.runs, s.reused)
            } else {
                s.runs.to_string()
            });
            row
        })
        .collect();
    let header_refs: Vec<&str> = header.iter().map(String::as_str).collect();
    let sentences: Vec<String> = c
        .train_sets
        .iter()
        .filter_map(|&set| comparison(r, set))
        .collect();
    let paper_rows: Vec<Vec<String>> = PAPER
        .iter()
        .map(|(set, m, time, aucs)| {
            let mut row = vec![
                set.label().to_string(),
                method_label(*m).to_string(),
                format!("{time} ms"),
            ];
            row.extend(aucs.iter().map(|a| format!("{a:.2}")));
            row
        })
        .collect();
    let mut paper_header = vec!["Training set", "Algorithm", "Time"];
    paper_header.extend(PAPER_COLUMNS.map(ImageSet::label));
    let speed_rows: Vec<Vec<String>> = c
        .train_sets
        .iter()
        .map(|&set| {
            let paper = PAPER
                .iter()
                .filter(|p| p.0 == set)
                .map(|p| p.2)
                .collect::<Vec<_>>();
            vec![
                set.label().to_string(),
                speedup(r, set).map_or("—".into(), |x| format!("{x:.2}x")),
                match paper.as_slice() {
                    [dsm, fd] => format!("{:.2}x", dsm / fd),
                    _ => "— (not in the paper)".into(),
                },
            ]
        })
        .collect();
    let env = &r.environment;
    format!(
        "# Table 4: out-of-distribution detection with deep EBMs ({} profile)\n\n\
         Deep-EBM ResNet (width {}, blocks {:?}) trained by DSM and FD-DSM (multiscale, sigma in \
         [{}, {}], sigma0 {}, eps {}) for {} steps at batch {}, Adam ({}, {}), lr {} with a cosine \
         decay, gradient clip {}; {} run(s) per row. Typicality test (App. C.3, Eq. 58): the reference is \
         the mean of -log p~ over {} training images; a batch of M = {} test images scores \
         |mean -log p~ - reference|; each column has {} scores, and its AUC is against {} scores \
         of in-distribution test batches (out of distribution positive). Ours: {} on a CPU ({}, {} \
         cores); time per iteration is the median training step after {} warm-up steps, mean \
         over runs. AUC cells are mean ± standard error over runs; an AUC near 0.5 from {} \
         against {} scores has a sampling standard error of about {:.3} by itself \
         (Hanley-McNeil).\n\n\
         The training set's own column (in italics) compares two independent draws of its test \
         images, so 0.5 is the ideal value there; elsewhere 1.0 is perfect detection and 0.5 \
         chance.\n\n{}\n\
         ## FD-DSM against DSM\n\n{}\n\n\
         ## Speed-up of FD-DSM over DSM\n\n{}\n\
         ## The paper's Table 4 (GPU, 300K iterations)\n\n{}\n\
         ROC curves: `roc_<training set>.png`; typicality-score histograms: \
         `scores_<training set>.png` (first seed); training loss: `loss_curves.png`; every \
         score: `results.json`.\n",
        c.profile,
        t.model.width,
        t.model.blocks_per_stage,
        t.sigma_min,
        t.sigma_max,
        t.sigma0,
        t.eps,
        t.iters,
        t.batch,
        t.adam.beta1,
        t.adam.beta2,
        t.lr_dsm,
        t.clip.map_or("none".to_string(), |c| c.to_string()),
        c.seeds,
        c.reference_images,
        c.m,
        c.test_batches,
        c.test_batches,
        if env.release_build { "release build" } else { "debug build" },
        env.cpu,
        env.cores,
        t.timing_warmup,
        c.test_batches,
        c.test_batches,
        chance_std_err(c.test_batches),
        markdown_table(&header_refs, &rows),
        if sentences.is_empty() {
            "(needs both methods on a training set)".to_string()
        } else {
            sentences.join("\n")
        },
        markdown_table(&["Training set", "Ours", "Paper"], &speed_rows),
        markdown_table(&paper_header, &paper_rows),
    )
}

/// A histogram outline of `log10` scores over `bins` bins spanning `[lo, hi]`: the fraction of
/// scores per bin, as a step line.
fn histogram(scores: &[f64], lo: f64, hi: f64, bins: usize) -> Vec<(f64, f64)> {
    let mut counts = vec![0usize; bins];
    let width = (hi - lo) / bins as f64;
    for &s in scores {
        let x = s.max(1e-12).log10();
        let b = (((x - lo) / width) as usize).min(bins - 1);
        counts[b] += 1;
    }
    let n = scores.len().max(1) as f64;
    let mut points = Vec::with_capacity(2 * bins + 2);
    points.push((lo, 0.0));
    for (b, &k) in counts.iter().enumerate() {
        let (x0, x1) = (lo + b as f64 * width, lo + (b + 1) as f64 * width);
        points.push((x0, k as f64 / n));
        points.push((x1, k as f64 / n));
    }
    points.push((hi, 0.0));
    points
}

fn plot(ctx: &Context, r: &Table4Results) -> Result<()> {
    let first: Vec<&(TrainReport, EvalReport, Option<Reused>)> =
        r.runs.iter().filter(|(_, e, _)| e.run.seed == 0).collect();
    for &set in &r.config.train_sets {
        let mine: Vec<&&(TrainReport, EvalReport, Option<Reused>)> = first
            .iter()
            .filter(|(_, e, _)| e.run.train_set == set)
            .collect();
        if mine.is_empty() {
            continue;
        }
        let mut roc_panels = Vec::new();
        let mut hist_panels = Vec::new();
        for (_, e, _) in &mine {
            let name = method_label(e.run.method);
            let series = e
                .columns
                .iter()
                .map(|col| {
                    Ok(Series {
                        name: format!("{} (AUC {:.3})", col.test_set.label(), col.auc),
                        points: roc_curve(&e.in_distribution, &col.scores)?,
                    })
                })
                .collect::<Result<Vec<Series>>>()?;
            roc_panels.push(Panel {
                title: format!("{}, {name}: ROC, out of distribution positive", set.label()),
                x_label: "false-positive rate".into(),
                y_label: "true-positive rate".into(),
                axes: Axes::Linear,
                series,
            });
            let all = e
                .columns
                .iter()
                .flat_map(|c| c.scores.iter())
                .chain(&e.in_distribution)
                .map(|s| s.max(1e-12).log10());
            let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
                (a.min(x), b.max(x))
            });
            let hi = if hi > lo { hi } else { lo + 1.0 };
            let mut series = vec![Series {
                name: format!("{} test (in distribution)", set.label()),
                points: histogram(&e.in_distribution, lo, hi, 40),
            }];
            series.extend(
                e.columns
                    .iter()
                    .filter(|c| c.test_set != TestSet::Data(set))
                    .map(|c| Series {
                        name: c.test_set.label(),
                        points: histogram(&c.scores, lo, hi, 40),
                    }),
            );
            hist_panels.push(Panel {
                title: format!(
                    "{}, {name}: typicality scores (M = {})",
                    set.label(),
                    r.config.m
                ),
                x_label: "log10 |mean -log p~ - reference|".into(),
                y_label: "fraction of batches".into(),
                axes: Axes::Linear,
                series,
            });
        }
        save_panels(&roc_panels, &ctx.out.join(format!("roc_{}.png", set.key())))?;
        save_panels(
            &hist_panels,
            &ctx.out.join(format!("scores_{}.png", set.key())),
        )?;
    }
    let loss_panels: Vec<Panel> = r
        .config
        .train_sets
        .iter()
        .filter_map(|&set| {
            let series: Vec<Series> = first
                .iter()
                .filter(|(_, e, _)| e.run.train_set == set)
                .map(|(t, e, _)| Series {
                    name: method_label(e.run.method).into(),
                    points: moving_average(
                        &t.records
                            .iter()
                            .map(|s| (s.step, s.loss))
                            .collect::<Vec<_>>(),
                        20,
                    ),
                })
                .collect();
            (!series.is_empty()).then(|| Panel {
                title: format!("{}: training loss (first seed)", set.label()),
                x_label: "step".into(),
                y_label: "loss on the reference scale (moving average of 20)".into(),
                axes: Axes::Linear,
                series,
            })
        })
        .collect();
    if !loss_panels.is_empty() {
        save_panels(&loss_panels, &ctx.out.join("loss_curves.png"))?;
    }
    Ok(())
}
