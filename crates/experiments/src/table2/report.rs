//! The Markdown report of Table 2: our rows next to the paper's, and the speed-up ratios.

use crate::eval::SmEstimate;
use crate::report::markdown_table;

use super::Table2Results;

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
            let p = t.row.paper();
            vec![
                t.row.label().to_string(),
                format!("{:.4e} ± {:.1e}", e.final_sm.mean, e.final_sm.std_err),
                t.median_step_ms
                    .map_or("—".into(), |ms| format!("{ms:.1} ms")),
                fmt_memory(t.step_peak_rss_bytes, t.base_rss_bytes),
                format!("{:.2e}", p.sm_loss),
                format!("{} ms", p.time_ms),
                format!("{} G", p.mem_gb),
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
    let env = &r.environment;
    format!(
        "# Table 2: deep EBMs on MNIST ({} profile)\n\n\
         ResNet EBM width {} blocks {:?}, {} iterations, batch {}, lr {} (DSM family) / {} (SSM family), eps {}, \
         sigma {}..{}, sigma_0 {}. Ours: {} on a CPU ({}, {} cores), time per iteration is the median step after {} warm-up steps, \
         memory is the peak resident memory of the training steps in the row's own process (in brackets: the increase over the resident memory before the first step, which holds the data set, model and optimiser state). Paper: 300K iterations, batch 64, GPU.\n\n\
         SM loss: {estimate}.\n\n{}\n## Speed-ups\n\n{}\n\
         Samples: `samples_<row>.png`; loss curves: `loss_curves_dsm.png`, `loss_curves_ssm.png`; every number: `results.json`.\n",
        c.profile,
        c.model.width,
        c.model.blocks_per_stage,
        c.iters,
        c.batch,
        c.lr_dsm,
        c.lr_ssm,
        c.eps,
        c.sigma_min,
        c.sigma_max,
        c.sigma0,
        if env.release_build { "release build" } else { "debug build" },
        env.cpu,
        env.cores,
        c.timing_warmup,
        markdown_table(&["Algorithm", "SM loss (ours)", "Time (ours)", "Mem. (ours)", "SM loss (paper)", "Time (paper)", "Mem. (paper)"], &rows),
        markdown_table(&["Ratio", "Ours", "Paper"], &speed),
    )
}
