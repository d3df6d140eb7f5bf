//! The report of Table 3: `results.json`, the Markdown table with each method's mean and
//! standard deviation over seeds next to the paper's, the time of every method relative to
//! MLE's, the training and validation loss curves, and the sample grids.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::plot::{moving_average, save_panels, Axes, Panel, Series};
use crate::report::{
    environment, markdown_table, read_train_eval, write_atomic, write_json, Environment,
};
use crate::runner::{Context, RowStatus};

use super::{EvalReport, Method, Run, Table3Config, TrainReport};

/// Mean and sample standard deviation over runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Mean over runs.
    pub mean: f64,
    /// Sample standard deviation over runs (0 for one run).
    pub std: f64,
}

impl Spread {
    fn of(values: &[f64]) -> Option<Self> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let std = if n > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Some(Self { mean, std })
    }
}

/// One method's results over its runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MethodSummary {
    /// The method.
    pub method: Method,
    /// Runs that finished training and evaluation.
    pub runs: usize,
    /// Runs whose training diverged (evaluated at their best parameters before it).
    pub diverged: usize,
    /// Exact test SM loss over runs.
    pub test_sm: Option<Spread>,
    /// Test NLL over runs.
    pub test_nll: Option<Spread>,
    /// Median step time over runs, ms.
    pub time_ms: Option<Spread>,
    /// Time relative to MLE's in this run (`None` without an MLE row).
    pub time_vs_mle: Option<f64>,
}

/// The full result file `results.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Table3Results {
    /// The configuration.
    pub config: Table3Config,
    /// Machine and versions.
    pub environment: Environment,
    /// Per method, over its runs.
    pub methods: Vec<MethodSummary>,
    /// Every run's reports.
    pub runs: Vec<(TrainReport, EvalReport)>,
}

/// Reads every run's reports and writes `results.json`, `table3.md`, `loss_curves.png`,
/// `validation_curves.png` into `ctx.out`; returns the Markdown.
///
/// # Errors
/// Unreadable run reports, I/O and plotting errors.
pub fn write(ctx: &Context, cfg: &Table3Config, statuses: &[(Run, RowStatus)]) -> Result<String> {
    let runs: Vec<(TrainReport, EvalReport)> = read_train_eval(ctx, statuses)?;
    let mut methods: Vec<MethodSummary> = cfg
        .methods
        .iter()
        .map(|&method| {
            let mine: Vec<&(TrainReport, EvalReport)> = runs
                .iter()
                .filter(|(t, _)| t.run.method == method)
                .collect();
            let pick = |f: &dyn Fn(&(TrainReport, EvalReport)) -> Option<f64>| {
                Spread::of(&mine.iter().filter_map(|r| f(r)).collect::<Vec<_>>())
            };
            MethodSummary {
                method,
                runs: mine.len(),
                diverged: mine.iter().filter(|(t, _)| t.diverged.is_some()).count(),
                test_sm: pick(&|(_, e)| Some(e.test_sm.mean)),
                test_nll: pick(&|(_, e)| Some(e.test_nll.mean)),
                time_ms: pick(&|(t, _)| t.median_step_ms),
                time_vs_mle: None,
            }
        })
        .collect();
    let mle = methods
        .iter()
        .find(|m| m.method == Method::Mle)
        .and_then(|m| m.time_ms)
        .map(|s| s.mean);
    for m in &mut methods {
        m.time_vs_mle = mle.zip(m.time_ms).map(|(base, t)| t.mean / base);
    }
    let results = Table3Results {
        config: cfg.clone(),
        environment: environment(),
        methods,
        runs,
    };
    write_json(&ctx.out.join("results.json"), &results)?;
    let md = markdown(&results);
    write_atomic(&ctx.out.join("table3.md"), &md)?;
    plot_curves(ctx, &results)?;
    Ok(md)
}

/// Training and validation curves of the first seed, in three panels by what the loss measures:
/// the SM-loss estimators, the two DSM objectives, and the NLL.
fn plot_curves(ctx: &Context, r: &Table3Results) -> Result<()> {
    let groups: [(&str, &[Method]); 3] = [
        (
            "SM-loss objectives (total over dimensions)",
            &[
                Method::ApproxBp,
                Method::Cp,
                Method::Ssm,
                Method::Ssmvr,
                Method::FdSsm,
                Method::Sm,
            ],
        ),
        ("DSM objectives", &[Method::DsmSmall, Method::DsmLarge]),
        ("MLE: negative log-likelihood", &[Method::Mle]),
    ];
    for (file, validation) in [("loss_curves.png", false), ("validation_curves.png", true)] {
        let panels: Vec<Panel> = groups
            .iter()
            .filter_map(|(title, members)| {
                let series: Vec<Series> = r
                    .runs
                    .iter()
                    .filter(|(t, _)| t.run.seed == 0 && members.contains(&t.run.method))
                    .map(|(t, _)| Series {
                        name: t.run.method.label().into(),
                        points: if validation {
                            t.validation.iter().map(|&(s, v)| (s as f64, v)).collect()
                        } else {
                            moving_average(&t.losses, 10)
                        },
                    })
                    .collect();
                (!series.is_empty()).then(|| Panel {
                    title: (*title).into(),
                    x_label: "step".into(),
                    y_label: if validation {
                        "validation loss".into()
                    } else {
                        "training loss (moving average of 10)".into()
                    },
                    axes: Axes::Linear,
                    series,
                })
            })
            .collect();
        if !panels.is_empty() {
            save_panels(&panels, &ctx.out.join(file))?;
        }
    }
    Ok(())
}

fn fmt_spread(s: Option<Spread>, digits: usize) -> String {
    s.map_or("—".into(), |s| {
        format!("{:.*} ± {:.*}", digits, s.mean, digits, s.std)
    })
}

/// The Markdown report: our methods next to the paper's.
pub fn markdown(r: &Table3Results) -> String {
    let c = &r.config;
    let paper_mle = Method::Mle.paper().map(|p| p.time_ms);
    let rows: Vec<Vec<String>> = r
        .methods
        .iter()
        .map(|m| {
            let p = m.method.paper();
            let paper = |f: &dyn Fn(&super::PaperRow) -> String| p.as_ref().map_or("—".into(), f);
            vec![
                m.method.label().to_string(),
                format!("`{}`", m.method.key()),
                fmt_spread(m.test_sm, 0),
                fmt_spread(m.test_nll, 0),
                m.time_ms
                    .map_or("—".into(), |t| format!("{:.1} ms", t.mean)),
                m.time_vs_mle.map_or("—".into(), |x| format!("{x:.2}x")),
                format!(
                    "{}{}",
                    m.runs,
                    if m.diverged > 0 {
                        format!(" ({} diverged)", m.diverged)
                    } else {
                        String::new()
                    }
                ),
                paper(&|p| format!("{} ± {}", p.sm, p.sm_std)),
                paper(&|p| format!("{} ± {}", p.nll, p.nll_std)),
                paper(&|p| format!("{} ms", p.time_ms)),
                paper(&|p| paper_mle.map_or("—".into(), |b| format!("{:.2}x", p.time_ms / b))),
            ]
        })
        .collect();
    let env = &r.environment;
    format!(
        "# Table 3: NICE on MNIST ({} profile)\n\n\
         NICE with {} couplings of {}-unit softplus networks ({} hidden layers), {} steps at batch {} \
         (exact SM: {}), Adam ({}, {}), constant lr {} (FD-SSM, DSM, CP) / {} (others), eps {}, \
         parameters kept at the best validation loss ({} validation images, every {} steps). \
         Ours: {} on a CPU ({}, {} cores); time per iteration is the median step after {} warm-up \
         steps, mean over runs. Paper: 100 epochs at batch 128 on a GPU, 5 runs (10 for the SM \
         rows). Both in logit space (dequantised pixels clamped to [1e-3, 1 - 1e-3]; the logit's \
         log-determinant is not included, as in the reference), on dequantised test images: \
         exact SM loss on {} images, NLL on {} images; mean ± standard deviation over runs.\n\n{}\n\
         Samples: `samples_<method>.png` (first seed); training and validation curves: \
         `loss_curves.png`, `validation_curves.png`; every number: `results.json`.\n",
        c.profile,
        c.model.couplings,
        c.model.hidden,
        c.model.hidden_layers,
        c.iters,
        c.batch,
        c.sm_batch,
        c.adam.beta1,
        c.adam.beta2,
        c.lr_fast,
        c.lr_slow,
        c.eps,
        c.val_images,
        c.val_every,
        if env.release_build { "release build" } else { "debug build" },
        env.cpu,
        env.cores,
        c.timing_warmup,
        c.test_sm_images,
        c.test_nll_images,
        markdown_table(
            &[
                "Algorithm",
                "Method",
                "SM loss (ours)",
                "NLL (ours)",
                "Time (ours)",
                "× MLE (ours)",
                "Runs",
                "SM loss (paper)",
                "NLL (paper)",
                "Time (paper)",
                "× MLE (paper)",
            ],
            &rows
        ),
    )
}
