//! The report of Table 6: `results.json`, the Markdown tables (MNIST: test NLL by AIS, the
//! score estimation's time per iteration, FID with LeNet features, the score network's test SM
//! loss; CelebA: FID with Inception features, the times, the test SM loss; mean ± standard
//! error over seeds) beside the paper's numbers, one sentence per SSMVR / FD-SSMVR pair computed
//! from the numbers, the loss curves, and the sample grids.

use models::AutoencoderKind;
use serde::{Deserialize, Serialize};

use crate::error::{ExpError, Result};
use crate::plot::{moving_average, save_panel_grid, Axes, Panel, Series};
use crate::report::{
    environment, markdown_table, read_train_eval, write_atomic, write_json, Environment, Estimate,
};
use crate::runner::{Context, RowStatus};

use super::{
    model_label, paper_celeba, paper_mnist, Estimator, EvalReport, Run, Table6Config, Table6Data,
    TrainReport,
};

/// One (data set, model, estimator, latent size) over its seeds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RowSummary {
    /// MNIST or CelebA.
    #[serde(default)]
    pub data: Table6Data,
    /// VAE or WAE.
    pub model: AutoencoderKind,
    /// The score estimator.
    pub estimator: Estimator,
    /// Latent size.
    pub z_dim: usize,
    /// Seeds evaluated.
    pub runs: usize,
    /// Test NLL by AIS over seeds (each seed's mean over its test images; MNIST).
    pub nll: Option<Estimate>,
    /// Median time of the score-estimation step over seeds, ms.
    pub score_ms: Estimate,
    /// Median time of a whole training step over seeds, ms.
    pub step_ms: Estimate,
    /// FID over seeds, with LeNet features (MNIST) or Inception features (CelebA); `None`
    /// without FID.
    pub fid: Option<Estimate>,
    /// The score network's exact SM loss on test codes at the end, over seeds.
    pub score_sm: Estimate,
    /// The reconstruction term on test images at the end, over seeds.
    pub recon: Estimate,
}

/// SSMVR against FD-SSMVR for one data set, model and latent size.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    /// MNIST or CelebA.
    #[serde(default)]
    pub data: Table6Data,
    /// VAE or WAE.
    pub model: AutoencoderKind,
    /// Latent size.
    pub z_dim: usize,
    /// SSMVR's score-step time over FD-SSMVR's.
    pub speedup: f64,
    /// The paper's ratio (`None` where our copy of the paper lost a time).
    pub paper_speedup: Option<f64>,
    /// What the quality is measured by: the test NLL (MNIST) or FID (CelebA; `None` without
    /// FID).
    pub measure: Option<String>,
    /// FD-SSMVR's value of the measure minus SSMVR's.
    pub difference: Option<f64>,
    /// Whether they agree: within two combined standard errors over seeds, or 1% (NLL) / 5%
    /// (FID).
    pub agree: Option<bool>,
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

/// The latent sizes of `data`'s rows.
fn z_dims(cfg: &Table6Config, data: Table6Data) -> Vec<usize> {
    match data {
        Table6Data::Mnist => cfg.z_dims.clone(),
        Table6Data::Celeba => vec![cfg.celeba.z_dim],
    }
}

fn summarise(cfg: &Table6Config, runs: &[(TrainReport, EvalReport)]) -> Result<Vec<RowSummary>> {
    let mut out = Vec::new();
    for &data in &cfg.data {
        for z_dim in z_dims(cfg, data) {
            for &model in &cfg.models {
                for &estimator in &cfg.estimators {
                    let mine: Vec<&(TrainReport, EvalReport)> = runs
                        .iter()
                        .filter(|(t, _)| {
                            let r = t.run;
                            (r.data, r.model, r.estimator, r.z_dim)
                                == (data, model, estimator, z_dim)
                        })
                        .collect();
                    if mine.is_empty() {
                        continue;
                    }
                    out.push(summarise_row(cfg, &mine)?);
                }
            }
        }
    }
    Ok(out)
}

/// One row over its seeds' reports.
fn summarise_row(cfg: &Table6Config, mine: &[&(TrainReport, EvalReport)]) -> Result<RowSummary> {
    let run = mine[0].0.run;
    let label = run.key_text();
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
    let mnist = run.data == Table6Data::Mnist;
    Ok(RowSummary {
        data: run.data,
        model: run.model,
        estimator: run.estimator,
        z_dim: run.z_dim,
        runs: mine.len(),
        nll: if mnist {
            Some(pick("test NLL", &|(_, e)| e.nll.as_ref().map(|n| n.mean))?)
        } else {
            None
        },
        score_ms: pick("score-step time", &|(t, _)| t.median_score_ms)?,
        step_ms: pick("step time", &|(t, _)| t.median_step_ms)?,
        fid: match (cfg.fid_samples > 0, mnist) {
            (false, _) => None,
            (true, true) => Some(pick("FID", &|(_, e)| e.fid.as_ref().map(|f| f.fid))?),
            (true, false) => Some(pick("FID", &|(_, e)| e.inception.as_ref().map(|f| f.fid))?),
        },
        score_sm: pick("test score SM", &|(t, _)| last(t).map(|p| p.score_sm))?,
        recon: pick("test reconstruction", &|(t, _)| last(t).map(|p| p.recon))?,
    })
}

/// The paper's SSMVR-over-FD-SSMVR time ratio of a data set and model, where both times
/// survive in our copy.
fn paper_speedup(data: Table6Data, model: AutoencoderKind) -> Option<f64> {
    match data {
        Table6Data::Mnist => {
            Some(paper_mnist(model, Estimator::Ssmvr).1 / paper_mnist(model, Estimator::FdSsmvr).1)
        }
        Table6Data::Celeba => Some(
            paper_celeba(model, Estimator::Ssmvr).1? / paper_celeba(model, Estimator::FdSsmvr).1?,
        ),
    }
}

fn compare(rows: &[RowSummary]) -> Vec<Comparison> {
    let mut out = Vec::new();
    for fd in rows.iter().filter(|r| r.estimator == Estimator::FdSsmvr) {
        let Some(grad) = rows.iter().find(|r| {
            r.estimator == Estimator::Ssmvr
                && (r.data, r.model, r.z_dim) == (fd.data, fd.model, fd.z_dim)
        }) else {
            continue;
        };
        let speedup = grad.score_ms.mean / fd.score_ms.mean;
        let paper = paper_speedup(fd.data, fd.model);
        let (measure, unit, tolerance, pair) = match fd.data {
            Table6Data::Mnist => ("test NLL", " nats", 0.01, fd.nll.zip(grad.nll)),
            Table6Data::Celeba => ("FID", "", 0.05, fd.fid.zip(grad.fid)),
        };
        let quality = pair.map(|(f, g)| {
            let diff = f.mean - g.mean;
            let combined = (f.std_err.powi(2) + g.std_err.powi(2)).sqrt();
            let agree = diff.abs() <= 2.0 * combined || diff.abs() <= tolerance * g.mean.abs();
            (f, g, diff, agree)
        });
        let paper_text = paper.map_or_else(
            || "the paper's SSMVR time is lost in our copy".to_string(),
            |p| format!("paper {p:.2}x"),
        );
        let quality_text = match quality {
            Some((f, g, diff, agree)) => format!(
                "; the {measure} is {:.2} against {:.2}{unit} ({diff:+.2}), {}",
                f.mean,
                g.mean,
                if agree {
                    format!(
                        "which agree (within two combined standard errors over seeds or {}%)",
                        tolerance * 100.0
                    )
                } else {
                    format!(
                        "which differ by more than two combined standard errors over seeds \
                         and {}%",
                        tolerance * 100.0
                    )
                }
            ),
            None => format!("; no {measure} was measured"),
        };
        let sentence = format!(
            "{}{} (z {}): FD-SSMVR's score step takes {:.2} ms against SSMVR's {:.2} ms, {:.2}x \
             faster ({paper_text}){quality_text} ({} seeds each).",
            match fd.data {
                Table6Data::Mnist => "",
                Table6Data::Celeba => "CelebA ",
            },
            model_label(fd.model),
            fd.z_dim,
            fd.score_ms.mean,
            grad.score_ms.mean,
            speedup,
            fd.runs.min(grad.runs),
        );
        out.push(Comparison {
            data: fd.data,
            model: fd.model,
            z_dim: fd.z_dim,
            speedup,
            paper_speedup: paper,
            measure: quality.map(|_| measure.to_string()),
            difference: quality.map(|q| q.2),
            agree: quality.map(|q| q.3),
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
    let groups = r.config.data.iter().flat_map(|&data| {
        z_dims(&r.config, data)
            .into_iter()
            .flat_map(move |z| r.config.models.iter().map(move |&model| (data, z, model)))
    });
    for (data, z_dim, model) in groups {
        {
            let mine: Vec<&TrainReport> = r
                .runs
                .iter()
                .map(|(t, _)| t)
                .filter(|t| {
                    t.run.seed == 0
                        && (t.run.data, t.run.model, t.run.z_dim) == (data, model, z_dim)
                })
                .collect();
            if mine.is_empty() {
                continue;
            }
            let name = format!("{} {} (z {z_dim})", data.label(), model_label(model));
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

/// The MNIST rows' table.
fn mnist_table(r: &Table6Results) -> String {
    let rows: Vec<Vec<String>> = r
        .rows
        .iter()
        .filter(|s| s.data == Table6Data::Mnist)
        .map(|s| {
            let (paper_nll, paper_ms) = paper_mnist(s.model, s.estimator);
            let paper_row = s.z_dim == 32;
            vec![
                model_label(s.model).to_string(),
                s.estimator.label().to_string(),
                s.z_dim.to_string(),
                s.nll.as_ref().map_or("—".into(), |n| n.display(2)),
                format!("{} ms", s.score_ms.display(2)),
                format!("{} ms", s.step_ms.display(2)),
                s.fid.as_ref().map_or("—".into(), |f| f.display(1)),
                s.score_sm.display(2),
                s.recon.display(2),
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
        &rows,
    )
}

/// The CelebA rows' table.
fn celeba_table(r: &Table6Results) -> String {
    let lost = || "(lost in our copy)".to_string();
    let rows: Vec<Vec<String>> = r
        .rows
        .iter()
        .filter(|s| s.data == Table6Data::Celeba)
        .map(|s| {
            let (paper_fid, paper_ms) = paper_celeba(s.model, s.estimator);
            vec![
                model_label(s.model).to_string(),
                s.estimator.label().to_string(),
                s.z_dim.to_string(),
                s.fid.as_ref().map_or("—".into(), |f| f.display(2)),
                format!("{} ms", s.score_ms.display(2)),
                format!("{} ms", s.step_ms.display(2)),
                s.score_sm.display(2),
                s.recon.display(1),
                s.runs.to_string(),
                paper_fid.map_or_else(lost, |v| format!("{v:.2}")),
                paper_ms.map_or_else(lost, |v| format!("{v:.2} ms")),
            ]
        })
        .collect();
    markdown_table(
        &[
            "Model",
            "Estimator",
            "z",
            "FID Inception (ours)",
            "Score time (ours)",
            "Step time (ours)",
            "Test score SM (ours)",
            "Recon. (ours)",
            "Runs",
            "FID (paper)",
            "Score time (paper)",
        ],
        &rows,
    )
}

/// The Markdown report: our rows next to the paper's, one table per data set.
pub fn markdown(r: &Table6Results) -> String {
    let c = &r.config;
    let env = &r.environment;
    let has = |d: Table6Data| r.rows.iter().any(|s| s.data == d);
    let sentences: String = r
        .comparisons
        .iter()
        .map(|c| format!("- {}\n", c.sentence))
        .collect();
    let mut md = format!(
        "# Table 6: VAE and WAE with implicit encoders ({} profile)\n\n\
         One RMSProp step (alpha {}) of the score network by the estimator on detached codes, \
         then one of the autoencoder, for {} steps at batch {}; WAE lambda {}; FD-SSMVR's \
         directions on the sphere of radius {}; the score network's exact SM loss and the \
         reconstruction term on {} test images at the end. Time: median per step after {} \
         warm-up steps, of the score estimation alone (the paper's column) and of the whole \
         step. Ours: {} on {} ({} cores); mean ± standard error over seeds. Paper: 100K steps \
         on a GPU, latent size 32.\n\n",
        c.profile,
        c.rmsprop.alpha,
        c.iters,
        c.batch,
        c.wae_lambda,
        c.eps,
        c.eval_images,
        c.timing_warmup,
        if env.release_build {
            "release build"
        } else {
            "debug build"
        },
        env.cpu,
        env.cores,
    );
    if has(Table6Data::Mnist) {
        md.push_str(&format!(
            "## MNIST\n\n\
             Dynamically binarised; encoder, decoder and score network with two `tanh` layers \
             of {} units; RMSProp lr {}. Test NLL by AIS with HMC ({} temperatures on a sigmoid \
             schedule, {} chains per image, {} leapfrog steps) on the first {} test images, \
             binarised once.\n\n{}\n",
            c.hidden,
            c.lr,
            c.ais.temperatures,
            c.ais.chains,
            c.ais.leapfrog_steps,
            c.nll_images,
            mnist_table(r),
        ));
    }
    if has(Table6Data::Celeba) {
        let k = &c.celeba;
        md.push_str(&format!(
            "## CelebA\n\n\
             Aligned faces cropped to {} and resized to {} x {}, in [-1, 1], dequantised; \
             convolutional encoder, decoder (Gaussian, log-std {}) and score network with \
             nef = {}, ndf = {}; RMSProp lr {}; {} training images. {} Recon.: \
             `-log p(x | z)` (VAE) or squared error (WAE) per image.\n\n{}\n",
            k.crop,
            k.image_size,
            k.image_size,
            k.log_std,
            k.nef,
            k.ndf,
            k.lr,
            k.max_train
                .map_or("all (70%) of the".into(), |n| n.to_string()),
            if c.fid_samples > 0 {
                format!(
                    "FID with the FID InceptionV3's features of {} decoder means against {} \
                     test faces (the paper: 10 000 samples).",
                    c.fid_samples, k.test_images
                )
            } else {
                "FID off (`--fid-samples 0`).".to_string()
            },
            celeba_table(r),
        ));
    }
    md.push_str(&format!(
        "{sentences}\nSamples: `samples_<row>.png` (decoder means of `z ~ N(0, I)`), \
         `reconstructions_<row>.png` (test images beside their reconstructions), first seed; \
         curves: `loss_curves.png`; every number: `results.json`.\n"
    ));
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(estimator: Estimator, nll: &[f64], ms: &[f64]) -> RowSummary {
        RowSummary {
            data: Table6Data::Mnist,
            model: AutoencoderKind::Vae,
            estimator,
            z_dim: 32,
            runs: nll.len(),
            nll: Some(Estimate::of(nll)),
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
        assert!((c[0].paper_speedup.unwrap() - 5.04 / 3.98).abs() < 1e-12);
        assert!((c[0].difference.unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(c[0].agree, Some(true), "{}", c[0].sentence);
        assert!(c[0].sentence.contains("1.50x faster"), "{}", c[0].sentence);
        // 100 against 110 with tight seeds: more than 2 SE and 1% apart.
        let rows = [
            row(Estimator::Ssmvr, &[99.9, 100.1], &[6.0, 6.0]),
            row(Estimator::FdSsmvr, &[109.9, 110.1], &[4.0, 4.0]),
        ];
        let c = compare(&rows);
        assert_eq!(c[0].agree, Some(false));
        assert!(c[0].sentence.contains("differ"), "{}", c[0].sentence);
        // Without its partner a row is not compared.
        assert!(compare(&rows[1..]).is_empty());
        // CelebA compares FIDs (5% apart or within 2 SE agree); the VAE's paper time is lost.
        let celeba = |estimator, fid: f64| RowSummary {
            data: Table6Data::Celeba,
            nll: None,
            fid: Some(Estimate::of(&[fid])),
            ..row(
                estimator,
                &[0.0],
                &[if estimator == Estimator::Ssmvr {
                    6.0
                } else {
                    3.0
                }],
            )
        };
        let c = compare(&[
            celeba(Estimator::Ssmvr, 60.0),
            celeba(Estimator::FdSsmvr, 62.0),
        ]);
        assert_eq!(c[0].measure.as_deref(), Some("FID"));
        assert_eq!(c[0].agree, Some(true));
        assert!((c[0].speedup - 2.0).abs() < 1e-12);
        assert_eq!(c[0].paper_speedup, None);
        assert!(c[0].sentence.starts_with("CelebA VAE"), "{}", c[0].sentence);
        assert!(
            (paper_speedup(Table6Data::Celeba, AutoencoderKind::Wae).unwrap() - 1.3 / 0.81).abs()
                < 1e-12
        );
    }
}
