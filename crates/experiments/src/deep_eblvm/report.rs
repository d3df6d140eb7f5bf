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

/// VaGES App. Table 2 (deep EBLVMs on CIFAR-10, `L = 2`, `K = 5`, 2K iterations on an RTX
/// 2080 Ti): `(setting, VaGES minutes, VaGES GB, BiSM (N = 0) minutes, BiSM (N = 0) GB)`.
pub const PAPER_TIME_MEMORY: [(&str, f64, f64, f64, f64); 2] = [
    ("1 GPU, batch 64", 24.0, 5.8, 19.0, 6.8),
    ("2 GPUs, batch 100", 35.0, 8.2, 28.0, 11.1),
];

/// A row's training working set: peak resident memory of the steps minus that before them.
fn working_set(x: &RowResult) -> Option<f64> {
    Some(x.step_peak_rss_bytes?.saturating_sub(x.base_rss_bytes?) as f64)
}

/// Time and memory of VaGES-MDSM against BiMDSM beside VaGES App. Table 2's ratios: a sentence,
/// or `None` without both methods.
pub fn time_memory_comparison(r: &DeepEblvmResults) -> Option<String> {
    let mean = |m: Method, f: &dyn Fn(&RowResult) -> Option<f64>| -> Option<f64> {
        let v: Vec<f64> = r
            .rows
            .iter()
            .filter(|x| x.run.method == m)
            .filter_map(f)
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let time = |m| mean(m, &|x: &RowResult| Some(x.ms_per_step));
    let (tv, tb) = (time(Method::VagesMdsm)?, time(Method::Bimdsm)?);
    let paper = PAPER_TIME_MEMORY
        .iter()
        .map(|(setting, vt, vm, bt, bm)| format!("{:.2}x and {:.2}x ({setting})", vt / bt, vm / bm))
        .collect::<Vec<_>>()
        .join(", ");
    let memory = match (
        mean(Method::VagesMdsm, &working_set),
        mean(Method::Bimdsm, &working_set),
    ) {
        (Some(mv), Some(mb)) if mb > 0.0 => format!(
            "its training steps' working set {:.0} MB against {:.0} MB, {:.2}x",
            mv / 1e6,
            mb / 1e6,
            mv / mb
        ),
        _ => "memory was not measured on this platform".to_string(),
    };
    Some(format!(
        "VaGES-MDSM against BiMDSM (N = 0): a step takes {tv:.0} against {tb:.0} ms, {:.2}x; \
         {memory}. VaGES App. Table 2 (CIFAR-10 on GPUs, the same L = 2 and K = 5) has time and \
         memory ratios of {paper}.",
        tv / tb
    ))
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
                est(|x| working_set(x).map_or(f64::NAN, |b| b / 1e6), 0),
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
         and the mean `E(v, mu(v))` of test digits at their posterior means. Time: mean \
         training step; memory: peak resident memory of the training steps in the row's own \
         process minus that before the first step.\n\n{}{}\n\n\
         The paper reports samples (BiSM Fig. 4, VaGES Fig. 5), the Fisher curves and, in an \
         appendix our copy lacks, the classification numbers; there is no table of these to compare \
         with (the time and memory ratios above are the only numbers beside the papers'). \
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
                "MB (training steps)",
            ],
            &summary
        ),
        time_memory_comparison(r).map_or(String::new(), |s| format!("\n\n{s}")),
        c.langevin.hold_steps,
        c.langevin.anneal_steps,
        c.langevin.cool_steps,
        super::train::PER_DIGIT,
        grids.join("\n"),
        unfinished,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(method: Method, ms: f64, base: u64, peak: u64) -> RowResult {
        RowResult {
            run: Run { method, seed: 0 },
            curve: Vec::new(),
            ms_per_step: ms,
            base_rss_bytes: Some(base),
            step_peak_rss_bytes: Some(peak),
            probe_accuracy: 0.5,
            probe_accuracy_init: 0.5,
            probe_gradient_norm: 0.0,
            test_fisher: 1.0,
            sample_energy: 1.0,
            test_energy: 1.0,
            grids: Vec::new(),
        }
    }

    /// The ratios are VaGES's over BiMDSM's, memory as the increase over the start, beside the
    /// paper's 24/19 min and 5.8/6.8 GB.
    #[test]
    fn the_comparison_divides_vages_by_bimdsm() {
        let mut r = DeepEblvmResults {
            config: DeepEblvmExpConfig::quick(),
            environment: environment(),
            rows: vec![
                row(Method::Bimdsm, 100.0, 1_000_000_000, 1_400_000_000),
                row(Method::VagesMdsm, 150.0, 1_000_000_000, 1_100_000_000),
            ],
            unfinished: Vec::new(),
        };
        let s = time_memory_comparison(&r).unwrap();
        assert!(s.contains("150 against 100 ms, 1.50x"), "{s}");
        assert!(!s.contains("  "), "{s}");
        assert!(s.contains("100 MB against 400 MB, 0.25x"), "{s}");
        assert!(s.contains("1.26x and 0.85x (1 GPU, batch 64)"), "{s}");
        assert!(markdown(&r).contains(&s));
        r.rows.pop();
        assert!(time_memory_comparison(&r).is_none());
    }
}
