//! The report of the deep-EBLVM experiment (BiSM Sec. 5.2, VaGES App. F.2.2): `results.json`,
//! `deep_eblvm.md` with the probe accuracies, the posterior's Fisher divergence, the time per
//! step and the sample grids, and `curves.png` (the higher-level loss and the lower level's
//! Fisher divergence along training, as BiSM Fig. 5).

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::plot::{save_panels, Axes, Panel, Series};
use crate::report::{
    environment, markdown_table, read_json, write_atomic, write_json, Environment, Estimate,
};
use crate::runner::{Context, ExperimentRow, RowStatus};

use super::{DeepEblvmExpConfig, Method, RowResult, Run};

/// Everything `results.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeepEblvmResults {
    /// Settings.
    pub config: DeepEblvmExpConfig,
    /// Versions and machine.
    pub environment: Environment,
    /// Every finished row.
    pub rows: Vec<RowResult>,
    /// Rows that did not finish, with their status.
    pub unfinished: Vec<(Run, RowStatus)>,
}

/// Reads every finished row's result and writes `results.json`, `deep_eblvm.md` and
/// `curves.png` into `ctx.out`; returns the Markdown.
///
/// # Errors
/// Unreadable results, I/O and plotting errors.
pub fn write(ctx: &Context, cfg: &DeepEblvmExpConfig, rows: &[(Run, RowStatus)]) -> Result<String> {
    let mut results = Vec::new();
    let mut unfinished = Vec::new();
    for (run, status) in rows {
        if *status == RowStatus::Done {
            results.push(read_json::<RowResult>(
                &ctx.row_dir(&run.key()).join("result.json"),
            )?);
        } else {
            unfinished.push((*run, status.clone()));
        }
    }
    let r = DeepEblvmResults {
        config: cfg.clone(),
        environment: environment(),
        rows: results,
        unfinished,
    };
    write_json(&ctx.out.join("results.json"), &r)?;
    let md = markdown(&r);
    write_atomic(&ctx.out.join("deep_eblvm.md"), &md)?;
    if !r.rows.is_empty() {
        let series = |f: fn(&super::train::CurvePoint) -> f64| -> Vec<Series> {
            r.rows
                .iter()
                .map(|x| Series {
                    name: x.run.label(),
                    points: x.curve.iter().map(|p| (p.step as f64, f(p))).collect(),
                })
                .collect()
        };
        save_panels(
            &[
                Panel {
                    title: "higher level: MDSM loss".into(),
                    x_label: "training step".into(),
                    y_label: "loss".into(),
                    axes: Axes::Linear,
                    series: series(|p| p.loss),
                },
                Panel {
                    title: "lower level: Fisher divergence of q".into(),
                    x_label: "training step".into(),
                    y_label: "Fisher divergence".into(),
                    axes: Axes::LogY,
                    series: series(|p| p.fisher),
                },
            ],
            &ctx.out.join("curves.png"),
        )?;
    }
    Ok(md)
}

fn per_method(r: &DeepEblvmResults, method: Method, f: fn(&RowResult) -> f64) -> Vec<f64> {
    r.rows
        .iter()
        .filter(|x| x.run.method == method)
        .map(f)
        .collect()
}

/// The Markdown report.
pub fn markdown(r: &DeepEblvmResults) -> String {
    let c = &r.config;
    let methods: Vec<Method> = c
        .methods
        .iter()
        .copied()
        .filter(|m| r.rows.iter().any(|x| x.run.method == *m))
        .collect();
    let summary: Vec<Vec<String>> = methods
        .iter()
        .map(|&m| {
            let est = |f: fn(&RowResult) -> f64, digits: usize| {
                Estimate::of(&per_method(r, m, f)).display(digits)
            };
            let first_fisher = |x: &RowResult| x.curve.first().map_or(f64::NAN, |p| p.fisher);
            let last_fisher = |x: &RowResult| x.curve.last().map_or(f64::NAN, |p| p.fisher);
            vec![
                m.label().to_string(),
                est(|x| 100.0 * x.probe_accuracy, 1),
                est(|x| 100.0 * x.probe_accuracy_init, 1),
                est(first_fisher, 1),
                est(last_fisher, 2),
                est(|x| x.test_fisher, 2),
                format!(
                    "{} / {}",
                    est(|x| x.sample_energy, 0),
                    est(|x| x.test_energy, 0)
                ),
                est(|x| x.ms_per_step, 0),
            ]
        })
        .collect();
    let grids: Vec<String> = r
        .rows
        .iter()
        .flat_map(|x| {
            x.grids.iter().map(move |g| {
                format!(
                    "- {}: [`rows/{}/{g}`](rows/{}/{g})",
                    x.run.label(),
                    x.run.key(),
                    x.run.key()
                )
            })
        })
        .collect();
    let unfinished = if r.unfinished.is_empty() {
        String::new()
    } else {
        format!(
            "\n\nNot finished: {}.",
            r.unfinished
                .iter()
                .map(|(run, s)| format!("{} ({s:?})", run.label()))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    format!(
        "# Deep EBLVM on MNIST ({} profile)\n\n\
         BiSM Sec. 5.2 / VaGES App. F.2.2. Energy: Res12 features with n = {}, h of size {}, a \
         squared ELU layer of {} units; posterior: convolutions with {:?} channels. {} \
         iterations at batch {}, Adam (0.9, {}) lr {} (posterior {}; VaGES-MDSM both {}), cosine \
         to 0; multiscale \
         DSM with sigma geometric {}..{} over the batch, sigma_0 {}; K = {} Fisher lower-level \
         steps, no unrolling; VaGES: {} particles refined by {} Langevin steps (alpha {}, noise \
         {}, gradient clip {}). Gradient clip of the energy and the posterior: {}. Seeds per method: {} (mean ± standard error where there are several). Machine: \
         {}.\n\n\
         Probe: multinomial logistic regression on the posterior means of {} training digits, \
         accuracy on {} test digits; `at init` is the same probe on the untrained posterior. \
         Fisher: the lower level's `1/2 |grad_h log q - grad_h log p~|^2` on noisy training \
         batches at the first and last logged window (BiSM Fig. 5 c-d: from about 1e5 to 1e2 \
         over 100K iterations), and on clean test digits after training. Energy: the mean `E(v, h)` of the joint samples \
         and the mean `E(v, mu(v))` of test digits at their posterior means.\n\n{}\n\n\
         The paper reports samples (BiSM Fig. 4, VaGES Fig. 5), the Fisher curves and, in an \
         appendix our copy lacks, the classification numbers; there is no table to compare with. \
         Samples (annealed Langevin, {} + {} + {} steps): joint `(v, h)`, `v` given the \
         posterior mean of a training digit (shown left of the samples), and `v` given the \
         posterior means of test digits 0, 1, 4, 9 (first column, then {} samples each):\n\n{}\n\n\
         Curves: `curves.png`.{}\n",
        c.profile,
        c.model.features.width,
        c.model.latent,
        c.model.head_units,
        c.posterior.channels,
        c.iters,
        c.batch,
        c.beta2,
        c.lr,
        c.lower_lr,
        c.vages_lr,
        c.sigma_begin,
        c.sigma_end,
        c.sigma0,
        c.lower_steps,
        c.particles,
        c.sgld_steps,
        c.sgld_alpha,
        c.sgld_sigma,
        c.sgld_clip.map_or("none".to_string(), |v| v.to_string()),
        c.clip.map_or("none".to_string(), |v| v.to_string()),
        c.seeds,
        r.environment.cpu,
        c.probe_train,
        c.probe_test,
        markdown_table(
            &[
                "Method",
                "probe acc. % (trained)",
                "probe acc. % (at init)",
                "Fisher, first window",
                "Fisher, last window",
                "Fisher, test digits",
                "energy: joint samples / test digits",
                "ms / step",
            ],
            &summary
        ),
        c.langevin.hold_steps,
        c.langevin.anneal_steps,
        c.langevin.cool_steps,
        super::train::PER_DIGIT,
        grids.join("\n"),
        unfinished,
    )
}
