//! Training one run of Table 1 (the `train` phase), the reference's schedule: every step takes
//! a batch of 200 points, solves the kernel weights on its first half and takes the objective's
//! loss on its second half (fresh Rademacher directions for each), then Adam with gradient
//! clipping. The exact SM loss on validation points (kernel weights from training points) is
//! computed every `val_every` steps and the best parameters are kept.

use candle_core::{DType, Tensor};
use models::{Dkef, DkefConfig, DkefDensity, DkefObjective};
use serde::{Deserialize, Serialize};
use sm_objectives::{
    fd_ssm, ssm, ssmvr, BatchMode, Directions, NoiseSource, Projection, Reduction,
};

use crate::error::{ExpError, Result};
use crate::keep_best::{best_file, train_keeping_best, KeepBest};
use crate::optim::LrSchedule;
use crate::report::{read_json, write_json};
use crate::runner::RowContext;
use crate::step_seed;

use super::{data, Method, Run, Table1Config};

/// What a training child reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainReport {
    /// The run.
    pub run: Run,
    /// Completed steps when `--stop-after` paused the run.
    #[serde(default)]
    pub paused_at: Option<u64>,
    /// Steps of the whole run.
    pub steps: u64,
    /// `(step, loss)` of every step.
    pub losses: Vec<(u64, f64)>,
    /// `(step, validation exact SM loss)`.
    pub validation: Vec<(u64, f64)>,
    /// The kept parameters' step and validation loss.
    pub best: Option<(u64, f64)>,
    /// Median step time after warm-up, ms.
    pub median_step_ms: Option<f64>,
    /// Why training stopped early when it diverged (the best parameters so far are kept).
    #[serde(default)]
    pub diverged: Option<String>,
    /// The step at which early stopping ended training (`patience` validations without
    /// improvement), if it did.
    #[serde(default)]
    pub stopped_early_at: Option<u64>,
}

/// The model configuration of a run on data of dimension `dim`.
pub fn model_config(cfg: &Table1Config, dim: usize) -> DkefConfig {
    DkefConfig {
        dim,
        hidden: cfg.hidden,
        inducing: cfg.inducing,
        log10_bandwidths: cfg.log10_bandwidths.clone(),
        q0_std: cfg.q0_std,
        log10_lambda: cfg.log10_lambda,
    }
}

/// The first `n` rows of `t` (all of them when it has fewer).
pub(crate) fn head(t: &Tensor, n: usize) -> Result<Tensor> {
    Ok(t.narrow(0, 0, n.min(t.dim(0)?))?)
}

/// The exact SM loss on `points` with kernel weights solved (exact form) on `fit_points`.
pub fn exact_sm(model: &Dkef, fit_points: &Tensor, points: &Tensor) -> Result<Tensor> {
    let alpha = model.fit_alpha(fit_points, DkefObjective::Exact)?;
    Ok(model
        .sm_loss(points, &alpha, DkefObjective::Exact)?
        .mean_all()?)
}

/// The step loss of `method` on a batch, on the scale of the exact SM loss (the total over
/// dimensions): kernel weights from the first half, the loss on the second, Rademacher
/// directions for each. SSM and SSMVR take their derivatives by nested autodiff as the reference
/// does (kernel weights by the double-backward trick, loss by `sm_objectives::ssm` / `ssmvr`);
/// FD-SSM takes every derivative by finite differences (`fd_ssm`, the Rademacher direction
/// scaled to length `eps`).
pub fn step_loss(
    model: &Dkef,
    method: Method,
    x: &Tensor,
    noise: &mut NoiseSource,
    eps: f64,
) -> candle_core::Result<Tensor> {
    let half = x.dim(0)? / 2;
    let d = x.dim(1)? as f64;
    let (x1, x2) = (x.narrow(0, 0, half)?, x.narrow(0, half, half)?);
    let v1 = noise.projection(&x1, Directions::Rademacher)?.v;
    let v2 = noise.projection(&x2, Directions::Rademacher)?;
    let alpha = match method {
        Method::Ssm | Method::Ssmvr => model.fit_alpha(&x1, DkefObjective::SlicedAutodiff(&v1))?,
        Method::FdSsm => model.fit_alpha(&x1, DkefObjective::FiniteDifference { v: &v1, eps })?,
    };
    let density = DkefDensity { model, alpha };
    let r = Reduction::Mean;
    match method {
        Method::Ssm => ssm(&density, &x2, &v2, r)? * d,
        Method::Ssmvr => ssmvr(&density, &x2, &v2, r)? * d,
        Method::FdSsm => {
            let proj = Projection {
                v: (v2.v * (eps / d.sqrt()))?,
                c_v: eps * eps,
            };
            fd_ssm(&density, &x2, &proj, BatchMode::Concatenated, r)? * d
        }
    }
}

/// Trains one run and writes `train.json` into its directory.
///
/// # Errors
/// Data, configuration and I/O errors. A diverged run is reported, not an error, when it was
/// validated at least once.
pub fn train_run(ctx: &RowContext, cfg: &Table1Config, run: Run) -> Result<TrainReport> {
    cfg.validate()?;
    if run.method != Method::FdSsm {
        ctx.higher_order()?;
    }
    let dir = &ctx.dir;
    let device = ctx.run.device;
    let splits = data::load(ctx.run.data_dir, run.data, cfg.toy_points, device)?;
    let (n, dim) = splits.train.dims2()?;
    if n < cfg.batch {
        return Err(ExpError::Config(format!(
            "{} has {n} training points, fewer than the batch {}",
            run.data.label(),
            cfg.batch
        )));
    }
    let steps = cfg.epochs * (n / cfg.batch) as u64;
    let seed = run.seed_value(cfg);
    let (vm, model) =
        crate::setup::seeded_dkef(&model_config(cfg, dim), &splits.train, seed, device)?;
    let fit_points = head(&splits.train, cfg.alpha_points)?;
    let val = head(&splits.val, cfg.val_points)?;
    let mut batcher = datasets::Batcher::new(n, cfg.batch, seed)?;
    let clip = match run.method {
        Method::FdSsm => cfg.clip_fd,
        _ => cfg.clip_sliced,
    };
    let mut opts = ctx
        .train_options(
            steps,
            cfg.lr,
            cfg.checkpoint_every,
            run.label_text(),
            &(cfg.training_identity(), run),
        )?
        .with_schedule(LrSchedule::Constant)
        .with_adam(cfg.adam)
        .with_clip(clip);
    opts.explode_threshold = 1e10;
    let mut loss_at = |step: u64| -> candle_core::Result<Tensor> {
        let x = batcher
            .batch(&splits.train, step)
            .map_err(candle_core::Error::wrap)?;
        let mut noise = NoiseSource::new(step_seed(seed, step));
        step_loss(&model, run.method, &x, &mut noise, cfg.eps)
    };
    let mut keep = KeepBest::new(cfg.patience);
    let earlier = read_json::<TrainReport>(&dir.join("train.json"))
        .map(|r| r.losses)
        .unwrap_or_default();
    let trained = train_keeping_best(
        &vm,
        &opts,
        &mut keep,
        &best_file(dir),
        &mut loss_at,
        &mut |done| {
            if done % cfg.val_every == 0 || done == steps {
                let value = exact_sm(&model, &fit_points, &val)?
                    .to_dtype(DType::F64)?
                    .to_scalar::<f64>()?;
                Ok(Some(value))
            } else {
                Ok(None)
            }
        },
        earlier,
        cfg.timing_warmup as u64,
        &run.label_text(),
    )?;
    if trained.nothing_trained {
        if let Ok(previous) = read_json::<TrainReport>(&dir.join("train.json")) {
            return Ok(previous);
        }
    }
    let report = TrainReport {
        run,
        paused_at: trained.paused_at(steps),
        steps,
        losses: trained.losses.clone(),
        validation: keep.curve,
        best: keep.best,
        median_step_ms: trained.median_step_ms,
        stopped_early_at: trained.stopped_early_at(),
        diverged: trained.diverged,
    };
    write_json(&dir.join("train.json"), &report)?;
    Ok(report)
}
