//! Training one run of Table 3 (the `train` phase): the method's loss on dequantised logit-space
//! MNIST, validation every `val_every` steps with the best parameters kept (the reference keeps
//! the best model by validation), step times, and the training loss curve.

use candle_core::Tensor;
use models::Nice;
use serde::{Deserialize, Serialize};
use sm_objectives::NoiseSource;

use crate::error::Result;
use crate::keep_best::{best_file, train_keeping_best, KeepBest};
use crate::optim::LrSchedule;
use crate::report::{read_json, write_json};
use crate::runner::RowContext;
use crate::step_seed;

use super::{data, objective, Run, Table3Config};

/// What a training child reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainReport {
    /// The run.
    pub run: Run,
    /// Completed steps when `--stop-after` paused the run; `None` when it trained to the end.
    #[serde(default)]
    pub paused_at: Option<u64>,
    /// `(step, loss)` of every step (a resumed run's earlier steps come from the report of the
    /// run it resumed).
    pub losses: Vec<(u64, f64)>,
    /// `(step, validation loss)`.
    pub validation: Vec<(u64, f64)>,
    /// The step whose parameters are kept (best validation loss), and the loss.
    pub best: Option<(u64, f64)>,
    /// Median step time after warm-up, ms.
    pub median_step_ms: Option<f64>,
    /// Why training stopped early when its loss diverged (the best parameters so far are kept).
    #[serde(default)]
    pub diverged: Option<String>,
}

/// The method's loss on `images` (logit space) in batches, with noise from a fixed seed, so that
/// validations along training are comparable.
pub fn validation_loss(run: Run, nice: &Nice, images: &Tensor, cfg: &Table3Config) -> Result<f64> {
    let n = images.dim(0)?;
    let mut noise = NoiseSource::new(cfg.seed ^ 0x7a11d);
    let mut total = 0.0;
    for start in (0..n).step_by(cfg.eval_batch) {
        let len = cfg.eval_batch.min(n - start);
        let x = images.narrow(0, start, len)?;
        let value = objective::loss(run.method, nice, &x, &mut noise, cfg)?
            .to_dtype(candle_core::DType::F64)?
            .to_scalar::<f64>()?;
        total += value * len as f64;
    }
    Ok(total / n as f64)
}

/// Trains one run (the `train` phase) and writes `train.json` into the row's directory.
///
/// # Errors
/// Data, configuration and I/O errors; higher-order mode off for a method that needs it. A
/// diverged run is not an error: it is reported, and its best parameters so far are kept.
pub fn train_run(ctx: &RowContext, cfg: &Table3Config, run: Run) -> Result<TrainReport> {
    cfg.validate()?;
    if run.method.higher_order() {
        ctx.higher_order()?;
    }
    let dir = &ctx.dir;
    let device = ctx.run.device;
    let splits = data::load(ctx.run.data_dir, device)?;
    let val = data::to_logit(
        &splits.val.narrow(0, 0, cfg.val_images)?,
        &mut NoiseSource::new(cfg.seed ^ 0xda7a),
    )?;
    let seed = run.seed_value(cfg);
    let batch = cfg.batch_of(run.method);
    let mut batcher = datasets::Batcher::new(splits.train.dim(0)?, batch, seed)?;
    let (vm, nice) = crate::setup::seeded_nice(&cfg.model, seed, device)?;
    let mut opts = ctx
        .train_options(
            cfg.iters,
            cfg.lr(run.method),
            cfg.checkpoint_every,
            run.label_text(),
            &(cfg.training_identity(), run),
        )?
        .with_schedule(LrSchedule::Constant)
        .with_adam(cfg.adam);
    opts.explode_threshold = 1e12;
    let mut loss_at = |step: u64| -> candle_core::Result<Tensor> {
        let pixels = batcher
            .batch(&splits.train, step)
            .map_err(candle_core::Error::wrap)?;
        let mut noise = NoiseSource::new(step_seed(seed, step));
        let x = data::to_logit(&pixels, &mut noise).map_err(candle_core::Error::wrap)?;
        objective::loss(run.method, &nice, &x, &mut noise, cfg)
    };
    let mut keep = KeepBest::new(None);
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
            if done % cfg.val_every == 0 || done == cfg.iters {
                Ok(Some(validation_loss(run, &nice, &val, cfg)?))
            } else {
                Ok(None)
            }
        },
        earlier,
        cfg.timing_warmup as u64,
        &run.label_text(),
    )?;
    if trained.nothing_trained {
        // A finished run resumed: nothing was trained, the original report stands.
        if let Ok(previous) = read_json::<TrainReport>(&dir.join("train.json")) {
            return Ok(previous);
        }
    }
    let report = TrainReport {
        run,
        paused_at: trained.paused_at(cfg.iters),
        losses: trained.losses,
        validation: keep.curve,
        best: keep.best,
        median_step_ms: trained.median_step_ms,
        diverged: trained.diverged,
    };
    write_json(&dir.join("train.json"), &report)?;
    Ok(report)
}
