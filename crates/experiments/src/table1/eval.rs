//! Evaluating one run of Table 1 (the `eval` phase) with its best parameters: the reference's
//! final phase that trains only `lambda` on the validation loss (kernel weights solved on
//! training points), then the test exact SM loss and the test NLL with `log Z` by importance
//! sampling from the base density, each with its standard error; for the 2-D toy, the learned
//! density on a grid.

use candle_core::{DType, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use models::{DkefConfig, DkefObjective, LOG10_LAMBDA};
use serde::{Deserialize, Serialize};
use sm_objectives::NoiseSource;

use crate::error::{ExpError, Result};
use crate::optim::Adam;
use crate::report::{write_json, Estimate};
use crate::runner::RowContext;

use super::train::{head, model_config};
use super::{data, DataSet, Run, Table1Config};
use crate::keep_best::best_file;
use crate::keep_best::save_atomic;

/// What an evaluation child reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalReport {
    /// The run.
    pub run: Run,
    /// `lambda` after the final phase.
    pub lambda: f64,
    /// Validation exact SM loss before and after the `lambda` phase.
    pub val_sm: (f64, f64),
    /// Test exact SM loss per point.
    pub test_sm: Estimate,
    /// `log Z` and its Monte-Carlo standard error.
    pub log_z: (f64, f64),
    /// Test NLL per point (its standard error over points; add `log_z.1` for the estimate's).
    pub test_nll: Estimate,
    /// The 2-D toy's learned density on the grid (row 0 at the top), empty otherwise.
    #[serde(default)]
    pub density: Vec<f64>,
}

/// Half-width of the toy's density raster.
pub const TOY_LIMIT: f64 = 2.5;

/// Evaluates one run (the `eval` phase).
///
/// # Errors
/// Data, checkpoint and I/O errors.
pub fn eval_run(ctx: &RowContext, cfg: &Table1Config, run: Run) -> Result<EvalReport> {
    let dir = &ctx.dir;
    let device = ctx.run.device;
    let splits = data::load(ctx.run.data_dir, run.data, cfg.toy_points, device)?;
    let dim = splits.train.dim(1)?;
    let mcfg: DkefConfig = model_config(cfg, dim);
    let (mut vm, model) =
        crate::setup::seeded_dkef(&mcfg, &splits.train, run.seed_value(cfg), device)?;
    let best = best_file(dir);
    vm.load(&best).map_err(|e| ExpError::Checkpoint {
        path: best.clone(),
        problem: format!("could not load these parameters into the configured DKEF: {e}"),
    })?;
    let fit_points = head(&splits.train, cfg.alpha_points)?;
    let val = head(&splits.val, cfg.val_points)?;
    let scalar = |t: Tensor| -> Result<f64> { Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?) };
    // G, b and the validation terms do not depend on lambda: computed once.
    let fit_terms = model
        .objective_terms(&fit_points, DkefObjective::Exact)?
        .detach();
    let val_terms = model.objective_terms(&val, DkefObjective::Exact)?.detach();
    let val_loss = || -> Result<Tensor> {
        Ok(val_terms
            .loss(&model.alpha_from_terms(&fit_terms)?)?
            .mean_all()?)
    };
    let val_before = scalar(val_loss()?)?;
    // The final phase: only lambda, on the validation loss (reference: Adam 1e-3).
    let lambda_var = vm
        .data()
        .lock()
        .expect("VarMap lock")
        .get(LOG10_LAMBDA)
        .cloned()
        .ok_or_else(|| ExpError::Config(format!("the DKEF has no {LOG10_LAMBDA} variable")))?;
    let mut adam = Adam::new(vec![lambda_var], cfg.adam)?;
    let bar = if ctx.run.control.progress {
        ProgressBar::new(cfg.lambda_steps)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{prefix} lambda phase {bar:30} {pos}/{len} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(run.label_text());
    for _ in 0..cfg.lambda_steps {
        let grads = val_loss()?.backward()?;
        adam.step_with_lr(&grads, 1e-3)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let val_after = scalar(val_loss()?)?;
    if !val_after.is_finite() {
        return Err(ExpError::Config(format!(
            "{}: the validation loss is not finite after the lambda phase",
            run.label_text()
        )));
    }
    save_atomic(&vm, &dir.join("final.safetensors"))?;
    let alpha = model.alpha_from_terms(&fit_terms)?.detach();
    let lambda = scalar(model.lambda()?)?;
    // Test SM loss, per point, in batches.
    let test = &splits.test;
    let n = test.dim(0)?;
    let mut sm = Vec::with_capacity(n);
    let mut lp = Vec::with_capacity(n);
    for start in (0..n).step_by(500) {
        let x = test.narrow(0, start, 500.min(n - start))?;
        sm.extend(
            model
                .sm_loss(&x, &alpha, DkefObjective::Exact)?
                .detach()
                .to_dtype(DType::F64)?
                .to_vec1::<f64>()?,
        );
        lp.extend(
            model
                .log_density(&x, &alpha)?
                .detach()
                .to_dtype(DType::F64)?
                .to_vec1::<f64>()?,
        );
    }
    let draws =
        NoiseSource::new(cfg.seed ^ 0x15).gaussian((cfg.is_samples, dim), DType::F32, device)?;
    let (log_z, log_z_se) = model.log_z(&alpha, &draws, 20_000)?;
    let nll: Vec<f64> = lp.iter().map(|v| log_z - v).collect();
    let density = if run.data == DataSet::Checkerboard {
        let grid = data::toy_grid(cfg.grid, TOY_LIMIT, device)?;
        model
            .log_density(&grid, &alpha)?
            .detach()
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?
            .into_iter()
            .map(|v| (v - log_z).exp())
            .collect()
    } else {
        Vec::new()
    };
    let report = EvalReport {
        run,
        lambda,
        val_sm: (val_before, val_after),
        test_sm: Estimate::of(&sm),
        log_z: (log_z, log_z_se),
        test_nll: Estimate::of(&nll),
        density,
    };
    write_json(&dir.join("eval.json"), &report)?;
    Ok(report)
}
