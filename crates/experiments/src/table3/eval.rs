//! Evaluating one run of Table 3 (the `eval` phase) with its best parameters: the exact test SM
//! loss (one reverse pass per dimension, a progress bar over the batches, bounded by
//! `test_sm_images`) and the test NLL, both in logit space on dequantised test images, and a
//! grid of samples drawn through the inverse flow.

use std::path::PathBuf;

use candle_core::{DType, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sm_objectives::{sm_exact, Graph, NoiseSource, Reduction};

use crate::error::{ExpError, Result};
use crate::plot::save_image_grid_scaled;
use crate::report::{write_json, Estimate};
use crate::runner::RowContext;

use super::{data, Run, Table3Config};
use crate::keep_best::best_file;

/// What an evaluation child reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalReport {
    /// The run.
    pub run: Run,
    /// Exact test SM loss (logit space, total over dimensions).
    pub test_sm: Estimate,
    /// Test NLL `-log p` in logit space, nats per image.
    pub test_nll: Estimate,
    /// The sample grid, relative to the results directory (drawn for the first seed only).
    pub samples_png: Option<PathBuf>,
}

/// Evaluates one run's best parameters (the `eval` phase; needs higher-order mode).
///
/// # Errors
/// Data, checkpoint and I/O errors; higher-order mode off.
pub fn eval_run(ctx: &RowContext, cfg: &Table3Config, run: Run) -> Result<EvalReport> {
    ctx.higher_order()?;
    let dir = &ctx.dir;
    let device = ctx.run.device;
    let (mut vm, nice) = crate::setup::seeded_nice(&cfg.model, run.seed_value(cfg), device)?;
    let best = best_file(dir);
    vm.load(&best).map_err(|e| ExpError::Checkpoint {
        path: best.clone(),
        problem: format!(
            "could not load these parameters into the configured NICE ({:?}): {e}",
            cfg.model
        ),
    })?;
    let splits = data::load(ctx.run.data_dir, device)?;
    let n_test = cfg.test_sm_images.max(cfg.test_nll_images);
    let test = data::to_logit(
        &splits.test.narrow(0, 0, n_test)?,
        &mut NoiseSource::new(cfg.seed ^ 0x7e57),
    )?;
    // NLL: cheap forward passes.
    let mut nll = Vec::with_capacity(cfg.test_nll_images);
    for start in (0..cfg.test_nll_images).step_by(cfg.eval_batch) {
        let x = test.narrow(0, start, cfg.eval_batch.min(cfg.test_nll_images - start))?;
        let lp = nice.log_prob(&x)?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        nll.extend(lp.into_iter().map(|v| -v));
    }
    // Exact SM: D + 1 reverse passes per batch.
    let batches = cfg.test_sm_images.div_ceil(cfg.eval_batch);
    let bar = if ctx.run.control.progress {
        ProgressBar::new(batches as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} exact test SM {bar:30} {pos}/{len} batches eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(run.label_text());
    let mut sm = Vec::with_capacity(cfg.test_sm_images);
    for start in (0..cfg.test_sm_images).step_by(cfg.eval_batch) {
        let x = test.narrow(0, start, cfg.eval_batch.min(cfg.test_sm_images - start))?;
        let v = sm_exact(&nice, &x, Graph::Detach, Reduction::PerSample)?;
        sm.extend(v.to_dtype(DType::F64)?.to_vec1::<f64>()?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let samples_png = if run.seed == 0 {
        let mut noise = NoiseSource::new(cfg.seed ^ 0x5a3);
        let y = noise.gaussian((cfg.samples, cfg.model.dim), DType::F32, device)?;
        let x: Tensor = nice.inverse(&y)?;
        let file = PathBuf::from(format!("samples_{}.png", run.method.key()));
        let cols = (cfg.samples as f64).sqrt().ceil() as usize;
        save_image_grid_scaled(&data::to_pixels(&x)?, cols, 3, &ctx.run.out.join(&file))?;
        Some(file)
    } else {
        None
    };
    let report = EvalReport {
        run,
        test_sm: Estimate::of(&sm),
        test_nll: Estimate::of(&nll),
        samples_png,
    };
    write_json(&dir.join("eval.json"), &report)?;
    Ok(report)
}
