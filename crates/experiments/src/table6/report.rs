//! The report of Table 6: `results.json`, the Markdown table (test NLL by AIS, the score
//! estimation's time per iteration, FID with LeNet features, the score network's test SM loss;
//! mean ± standard error over seeds) beside the paper's numbers, one sentence per SSMVR /
//! FD-SSMVR pair computed from the numbers, the loss curves, and the sample grids.

use models::AutoencoderKind;
use serde::{Deserialize, Serialize};

use crate::error::{ExpError, Result};
use crate::plot::{moving_average, save_panel_grid, Axes, Panel, Series};
use crate::report::{
    environment, markdown_table, read_train_eval, write_atomic, write_json, Environment, Estimate,
};
use crate::runner::{Context, RowStatus};

use super::{model_label, paper_mnist, Estimator, EvalReport, Run, Table6Config, TrainReport};

/// One (model, estimator, latent size) over its seeds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RowSummary {
    /// VAE or WAE.
    pub model: AutoencoderKind,
    /// The score estimator.
    pub estimator: Estimator,
    /// Latent size.
    pub z_dim: usize,
    /// Seeds evaluated.
    pub runs: usize,
    /// Test NLL by AIS over seeds (each seed's mean over its test images).
    pub nll: Estimate,
    /// Median time of the score-estimation step over seeds, ms.
    pub score_ms: Estimate,
    /// Median time of a whole training step over seeds, ms.
    pub step_ms: Estimate,
    /// FID with LeNet features over seeds (`None` without FID).
    pub fid: Option<Estimate>,
    /// The score network's exact SM loss on test codes at the end, over seeds.
    pub score_sm: Estimate,
    /// The reconstruction term on test images at the end, over seeds.
    pub recon: Estimate,
}

/// SSMVR against FD-SSMVR for one model and latent size.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    /// VAE or WAE.
    pub model: AutoencoderKind,
    /// Latent size.
    pub z_dim: usize,
    /// SSMVR's score-step time over FD-SSMVR's.
    pub speedup: f64,
    /// The paper's ratio.
    pub paper_speedup: f64,
    /// FD-SSMVR's NLL minus SSMVR's, nats.
    pub nll_difference: f64,
    /// Whether the NLLs agree: within two combined standard errors over seeds, or 1%.
    pub nll_agree: bool,
    /// The finding in one sentence.
    pub sentence: String,
}

/// The full result file `results.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Table6Results {
    /// The configuration.
    pub config: Table6Config,
    /// Machine and versions.
    pub environment: Environment,
    /// Per (model, estimator, latent size).
    pub rows: Vec<RowSummary>,
    /// The SSMVR / FD-SSMVR pairs.
    pub comparisons: Vec<Comparison>,
    /// Every run's reports.
    pub runs: Vec<(TrainReport, EvalReport)>,
}

fn summarise(cfg: &Table6Config, runs: &[(TrainReport, EvalReport)]) -> Result<Vec<RowSummary>> {
    let mut out = Vec::new();
    for &z_dim in &cfg.z_dims {
        for &model in &cfg.models {
            for &estimator in &cfg.estimators {
                let mine: Vec<&(TrainReport, EvalReport)> = runs
                    .iter()
                    .filter(|(t, _)| {
                        t.run.model == model && t.run.estimator == estimator && t.run.z_dim == z_dim
                    })
                    .collect();
                if mine.is_empty() {
                    continue;
                }
                let label = format!("{}, {}, z {z_dim}", model_label(model), estimator.label());
                let pick = |what: &str, f: &dyn Fn(&(TrainReport, EvalReport)) -> Option<f64>| {
                    let v: Vec<f64> = mine.iter().filter_map(|r| f(r)).collect();
                    if v.len() != mine.len() || v.iter().any(|x| !x.is_finite()) {
                        return Err(ExpError::Config(format!(
                            "{label}: the {what} is missing or not finite in some run ({v:?})"
                        )));
                    }
                    Ok(Estimate::of(&v))
                };
                let last = |t: &TrainReport| t.evals.last().copied();
                out.push(RowSummary {
                    model,
                    estimator,
                    z_dim,
                    runs: mine.len(),
                    nll: pick("test NLL", &|(_, e)| Some(e.nll.mean))?,
                    score_ms: pick("score-step time", &|(t, _)| t.median_score_ms)?,
                    step_ms: pick("step time", &|(t, _)| t.median_step_ms)?,
                    fid: if cfg.fid_samples > 0 {
                        Some(pick("FID", &|(_, e)| e.fid.as_ref().map(|f| f.fid))?)
                    } else {
                        None
                    },
                    score_sm: pick("test score SM", &|(t, _)| last(t).map(|p| p.score_sm))?,
                    recon: pick("test reconstruction", &|(t, _)| last(t).map(|p| p.recon))?,
                });
            }
        }
    }
    Ok(out)
}

fn compare(rows: &[RowSummary]) -> Vec<Comparison> {
    let mut out = Vec::new();
    for fd in rows.iter().filter(|r| r.estimator == Estimator::FdSsmvr) {
        let Some(grad) = rows.iter().find(|r| {
            r.estimator == Estimator::Ssmvr && r.model == fd.model && r.z_dim == fd.z_dim
        }) else {
            continue;
        };
        let speedup = grad.score_ms.mean / fd.score_ms.mean;
        let paper_speedup =
            paper_mnist(fd.model, Estimator::Ssmvr).1 / paper_mnist(fd.model, Estimator::FdSsmvr).1;
        let diff = fd.nll.mean - grad.nll.mean;
        let combined = (fd.nll.std_err.powi(2) + grad.nll.std_err.powi(2)).sqrt();
        let agree = diff.abs() <= 2.0 * combined || diff.abs() <= 0.01 * grad.nll.mean.abs();
        let sentence = format!(
            "{} (z {}): FD-SSMVR's score step takes {:.2} ms against SSMVR's {:.2} ms, {:.2}x \
             faster (paper {:.2}x); the test NLL is {:.2} against {:.2} nats ({:+.2}), {} ({} \
             seeds each).",
            model_label(fd.model),
            fd.z_dim,
            fd.score_ms.mean,
            grad.score_ms.mean,
            speedup,
            paper_speedup,
            fd.nll.mean,
            grad.nll.mean,
            diff,
            if agree {
                "which agree (within two combined standard errors over seeds or 1%)"
            } else {
                "which differ by more than two combined standard errors over seeds and 1%"
            },
            fd.runs.min(grad.runs),
        );
        out.push(Comparison {
            model: fd.model,
            z_dim: fd.z_dim,
            speedup,
            paper_speedup,
            nll_difference: diff,
            nll_agree: agree,
            sentence,
        });
    }
    out
}

/// Reads every run's reports and writes `results.json`, `table6.md` and `loss_curves.png` into
/// `ctx.out`; returns the Markdown.
///
/// # Errors
/// Unreadable run reports, a missing or non-finite number, I/O and plotting errors.
pub fn write(ctx: &Context, cfg: &Table6Config, statuses: &[(Run, RowStatus)]) -> Result<String> {
    let runs: Vec<(TrainReport, EvalReport)> = read_train_eval(ctx, statuses)?;
    let rows = summarise(cfg, &runs)?;
    let comparisons = compare(&rows);
    let results = Table6Results {
        config: cfg.clone(),
        environment: environment(),
        rows,
        comparisons,
        runs,
    };
    write_json(&ctx.out.join("results.json"), &results)?;
    let md = markdown(&results);
    write_atomic(&ctx.out.join("table6.md"), &md)?;
    plot_curves(ctx, &results)?;
    Ok(md)
}

/// One row of charts per model and latent size: the autoencoder's training loss, the score
/// network's training loss, and its exact SM loss on test codes along training (first seed).
fn plot_curves(ctx: &Context, r: &Table6Results) -> Result<()> {
    let mut panels = Vec::new();
    for &z_dim in &r.config.z_dims {
        for &model in &r.config.models {
            let mine: Vec<&TrainReport> = r
                .runs
                .iter()
                .map(|(t, _)| t)
                .filter(|t| t.run.seed == 0 && t.run.model == model && t.run.z_dim == z_dim)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let name = format!("{} (z {z_dim})", model_label(model));
            let series = |f: &dyn Fn(&TrainReport) -> Vec<(f64, f64)>| -> Vec<Series> {
                mine.iter()
                    .map(|t| Series {
                        name: t.run.estimator.label().into(),
                        points: f(t),
                    })
                    .collect()
            };
            panels.push(Panel {
                title: format!("{name}: autoencoder loss"),
                x_label: "step".into(),
                y_label: "training loss (moving average of 50)".into(),
                axes: Axes::Linear,
                series: series(&|t| moving_average(&t.losses, 50)),
            });
            panels.push(Panel {
                title: format!("{name}: score-network loss"),
                x_label: "step".into(),
                y_label: "SSMVR-scale loss (moving average of 50)".into(),
                axes: Axes::Linear,
                series: series(&|t| moving_average(&t.score_losses, 50)),
            });
            panels.push(Panel {
                title: format!("{name}: exact SM of the score network on test codes"),
                x_label: "step".into(),
                y_label: "test SM loss".into(),
                axes: Axes::Linear,
                series: series(&|t| {
                    t.evals
                        .iter()
                        .map(|p| (p.step as f64, p.score_sm))
                        .collect()
                }),
            });
        }
    }
    if !panels.is_empty() {
        save_panel_grid(&panels, 3, &ctx.out.join("loss_curves.png"))?;
    }
    Ok(())
}

fn fmt(e: &Estimate, digits: usize) -> String {
    if e.count > 1 {
        format!("{:.*} ± {:.*}", digits, e.mean, digits, e.std_err)
    } else {
        format!("{:.*}", digits, e.mean)
    }
}

/// The Markdown report: our rows next to the paper's.
pub fn markdown(r: &Table6Results) -> String {
    let c = &r.config;
    let rows: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|s| {
            let (paper_nll, paper_ms) = paper_mnist(s.model, s.estimator);
            let paper_row = s.z_dim == 32;
            vec![
                model_label(s.model).to_string(),
                s.estimator.label().to_string(),
                s.z_dim.to_string(),
                fmt(&s.nll, 2),
                format!("{} ms", fmt(&s.score_ms, 2)),
                format!("{} ms", fmt(&s.step_ms, 2)),
                s.fid.as_ref().map_or("—".into(), |f| fmt(f, 1)),
                fmt(&s.score_sm, 2),
                fmt(&s.recon, 2),
                s.runs.to_string(),
                match (paper_row, paper_nll) {
                    (true, Some(v)) => format!("{v:.2}"),
                    (true, None) => "(lost in our copy)".into(),
                    (false, _) => "—".into(),
                },
                if paper_row {
                    format!("{paper_ms:.2} ms")
                } else {
                    "—".into()
                },
            ]
        })
        .collect();
    let sentences: String = r
        .comparisons
        .iter()
        .map(|c| format!("- {}\n", c.sentence))
        .collect();
    let env = &r.environment;
    format!(
        "# Table 6: VAE and WAE with implicit encoders on MNIST ({} profile)\n\n\
         Dynamically binarised MNIST; encoder, decoder and score network with two `tanh` layers \
         of {} units; one RMSProp step (lr {}, alpha {}) of the score network by the estimator \
         on detached codes, then one of the autoencoder, for {} steps at batch {}; WAE lambda \
         {}; FD-SSMVR's directions on the sphere of radius {}. Test NLL by AIS with HMC ({} \
         temperatures on a sigmoid schedule, {} chains per image, {} leapfrog steps) on the \
         first {} test images, binarised once; the score network's exact SM loss and the \
         reconstruction term on {} test images at the end. Time: median per step after {} \
         warm-up steps, of the score estimation alone (the paper's column) and of the whole \
         step. Ours: {} on a CPU ({}, {} cores); mean ± standard error over seeds. Paper: 100K \
         steps on a GPU, latent size 32.\n\n{}\n{}\n\
         Samples: `samples_<row>.png` (decoder means of `z ~ N(0, I)`), \
         `reconstructions_<row>.png` (test images beside their reconstructions), first seed; \
         curves: `loss_curves.png`; every number: `results.json`.\n",
        c.profile,
        c.hidden,
        c.lr,
        c.rmsprop.alpha,
        c.iters,
        c.batch,
        c.wae_lambda,
        c.eps,
        c.ais.temperatures,
        c.ais.chains,
        c.ais.leapfrog_steps,
        c.nll_images,
        c.eval_images,
        c.timing_warmup,
        if env.release_build {
            "release build"
        } else {
            "debug build"
        },
        env.cpu,
        env.cores,
        markdown_table(
            &[
                "Model",
                "Estimator",
                "z",
                "NLL (ours)",
                "Score time (ours)",
                "Step time (ours)",
                "FID LeNet (ours)",
                "Test score SM (ours)",
                "Recon. (ours)",
                "Runs",
                "NLL (paper)",
                "Score time (paper)",
            ],
            &rows
        ),
        sentences,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(estimator: Estimator, nll: &[f64], ms: &[f64]) -> RowSummary {
        RowSummary {
            model: AutoencoderKind::Vae,
            estimator,
            z_dim: 32,
            runs: nll.len(),
            nll: Estimate::of(nll),
            score_ms: Estimate::of(ms),
            step_ms: Estimate::of(ms),
            fid: None,
            score_sm: Estimate::of(nll),
            recon: Estimate::of(nll),
        }
    }

    #[test]
    fn pairs_are_compared_from_their_numbers() {
        // Speed-up 6 / 4 = 1.5x; NLLs 100 +- 1 and 101 +- 1 agree (within two combined SE).
        let rows = [
            row(Estimator::Ssmvr, &[99.0, 101.0], &[6.0, 6.0]),
            row(Estimator::FdSsmvr, &[100.0, 102.0], &[4.0, 4.0]),
        ];
        let c = compare(&rows);
        assert_eq!(c.len(), 1);
        assert!((c[0].speedup - 1.5).abs() < 1e-12);
        assert!((c[0].paper_speedup - 5.04 / 3.98).abs() < 1e-12);
        assert!((c[0].nll_difference - 1.0).abs() < 1e-12);
        assert!(c[0].nll_agree, "{}", c[0].sentence);
        assert!(c[0].sentence.contains("1.50x faster"), "{}", c[0].sentence);
        // 100 against 110 with tight seeds: more than 2 SE and 1% apart.
        let rows = [
            row(Estimator::Ssmvr, &[99.9, 100.1], &[6.0, 6.0]),
            row(Estimator::FdSsmvr, &[109.9, 110.1], &[4.0, 4.0]),
        ];
        let c = compare(&rows);
        assert!(!c[0].nll_agree);
        assert!(c[0].sentence.contains("differ"), "{}", c[0].sentence);
        // Without its partner a row is not compared.
        assert!(compare(&rows[1..]).is_empty());
    }
}
