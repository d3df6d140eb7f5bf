//! Training one row of Table 2 in its own process (the `train` phase): the objective, snapshots for
//! the loss curves, step times and the training steps' memory.

use std::path::PathBuf;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use sm_objectives::noise::linear_sigmas;
use sm_objectives::NoiseSource;

use crate::error::{ExpError, Result};
use crate::objective::{MultiscaleNoise, Objective, ObjectiveSettings};
use crate::optim::LrSchedule;
use crate::report::{read_json, write_json};
use crate::runner::RowContext;
use crate::trainer::{train_with_state, StepRecord, TrainState};
use crate::{memory, step_seed};

use super::{reference_scale, Table2Config};

/// The evaluation snapshots written so far, `(step, training seconds, file)`; travels in the
/// checkpoint so that a resumed run still lists the snapshots taken before the interruption.
#[derive(Debug, Default)]
struct Snapshots(Vec<(u64, f64, PathBuf)>);

impl TrainState for Snapshots {
    fn tensors(&self) -> train::Result<Vec<(String, Tensor)>> {
        Ok(Vec::new())
    }

    fn json(&self) -> train::Result<serde_json::Value> {
        serde_json::to_value(&self.0)
            .map_err(|e| train::TrainError::Config(format!("snapshot list: {e}")))
    }

    fn restore(
        &mut self,
        _: &std::collections::HashMap<String, Tensor>,
        json: &serde_json::Value,
    ) -> train::Result<()> {
        self.0 = serde_json::from_value(json.clone())
            .map_err(|e| train::TrainError::Config(format!("snapshot list: {e}")))?;
        Ok(())
    }
}
/// What a training child reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainReport {
    /// The row.
    pub row: Objective,
    /// The completed steps when `--stop-after` paused the row before `iters` (continue with
    /// `--resume`); `None` when it trained to the end.
    #[serde(default)]
    pub paused_at: Option<u64>,
    /// Per-step records of this run.
    pub records: Vec<StepRecord>,
    /// Median step time after warm-up, ms; `None` when no step was timed.
    pub median_step_ms: Option<f64>,
    /// RSS before the first training step (data set, model and optimiser state), bytes.
    pub base_rss_bytes: Option<u64>,
    /// Peak RSS over the training steps, bytes.
    pub step_peak_rss_bytes: Option<u64>,
    /// Evaluation snapshots: `(step, training seconds, file relative to the row directory)`.
    pub snapshots: Vec<(u64, f64, PathBuf)>,
    /// Whether Candle's higher-order mode was on.
    pub higher_order: bool,
    /// Why training stopped early, when its loss diverged (the last good checkpoint is kept).
    #[serde(default)]
    pub diverged: Option<String>,
}
/// Trains one row (the `train` phase) and writes `train.json` into the row's directory.
///
/// # Errors
/// Data, configuration, divergence and I/O errors; higher-order mode off for a gradient-based
/// row.
pub fn train_row(ctx: &RowContext, cfg: &Table2Config, row: Objective) -> Result<TrainReport> {
    cfg.validate()?;
    if row.gradient_based() {
        ctx.higher_order()?;
    }
    let higher_order = sm_objectives::autodiff::higher_order_enabled();
    let dir = &ctx.dir;
    let device = ctx.run.device;
    let images = crate::setup::mnist32(ctx.run.data_dir, true, device)?;
    let mut batcher = datasets::Batcher::new(images.dim(0)?, cfg.batch, cfg.seed)?;
    let (vm, net) = crate::setup::seeded_resnet_ebm(&cfg.model, cfg.seed, device)?;
    let dim = 32 * 32;
    let sigmas = Tensor::new(
        linear_sigmas(cfg.sigma_min, cfg.sigma_max, cfg.batch)?
            .iter()
            .map(|&s| s as f32)
            .collect::<Vec<_>>()
            .as_slice(),
        device,
    )?;
    let settings = ObjectiveSettings {
        sigma: cfg.sigma0,
        eps: cfg.eps,
        multiscale: Some(MultiscaleNoise {
            sigmas,
            sigma0: cfg.sigma0,
        }),
    };
    let scale = reference_scale(row, dim);
    let lr = if row.denoising() {
        cfg.lr_dsm
    } else {
        cfg.lr_ssm
    };
    let mut opts = ctx
        .train_options(
            cfg.iters,
            lr,
            cfg.checkpoint_every,
            row.label().to_string(),
            &(cfg.training_identity(), row),
        )?
        .with_schedule(LrSchedule::Cosine)
        .with_adam(cfg.adam);
    opts.clip = cfg.clip;
    opts.explode_threshold = 1e12;
    let mut loss_at = |step: u64| -> candle_core::Result<Tensor> {
        let x = batcher
            .batch(&images, step)
            .map_err(candle_core::Error::wrap)?;
        let mut noise = NoiseSource::new(step_seed(cfg.seed, step));
        row.loss(&net, &x, &mut noise, &settings)? * scale
    };
    let snapshot_steps = crate::eval_steps(cfg.iters, cfg.eval_points);
    let mut snapshots = Snapshots::default();
    let warmup = cfg.timing_warmup as u64;
    // The memory column is the training steps' own working set: what decoding the data set
    // freed goes back to the kernel first, and the peak counts from the first step on (the
    // warm-up steps allocate the buffers that later steps reuse).
    crate::allocator::release_free_memory();
    let base_rss = memory::rss_bytes();
    memory::reset_peak();
    let mut seen: Vec<StepRecord> = Vec::new();
    let mut after = |r: &StepRecord, taken: &mut Snapshots| -> Result<()> {
        seen.push(*r);
        if snapshot_steps.contains(&(r.step + 1)) {
            // Stored relative to the row directory, so that a moved results directory resumes.
            let file = PathBuf::from(format!("snapshot_{:08}.safetensors", r.step + 1));
            let path = dir.join(&file);
            vm.save(&path).map_err(|e| ExpError::Checkpoint {
                path: path.clone(),
                problem: format!("could not write this snapshot: {e}"),
            })?;
            taken.0.push((r.step + 1, r.train_seconds, file));
        }
        Ok(())
    };
    let summary = match train_with_state(
        &vm,
        &opts,
        &mut snapshots,
        &mut |step, _| loss_at(step),
        &mut after,
    ) {
        Ok(summary) => summary,
        Err(e) => {
            if matches!(e, ExpError::Train(train::TrainError::Diverged { .. })) {
                // The steps before the divergence, and why it stopped, for the record.
                let report = TrainReport {
                    row,
                    paused_at: None,
                    records: seen,
                    median_step_ms: None,
                    base_rss_bytes: base_rss,
                    step_peak_rss_bytes: memory::peak_rss_bytes(),
                    snapshots: snapshots.0,
                    higher_order,
                    diverged: Some(e.to_string()),
                };
                write_json(&dir.join("train.json"), &report)?;
            }
            return Err(e);
        }
    };
    let snapshots = snapshots.0;
    let step_peak = memory::peak_rss_bytes();
    if summary.records.is_empty() {
        // A finished row resumed: nothing was trained, so the original run's timings stand.
        if let Ok(previous) = read_json::<TrainReport>(&dir.join("train.json")) {
            return Ok(TrainReport {
                snapshots,
                ..previous
            });
        }
    }
    let mut times: Vec<f64> = summary
        .records
        .iter()
        .filter(|r| r.step >= warmup)
        .map(|r| r.seconds * 1e3)
        .collect();
    if times.is_empty() {
        times = summary.records.iter().map(|r| r.seconds * 1e3).collect();
    }
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied();
    let report = TrainReport {
        row,
        paused_at: (summary.completed < cfg.iters).then_some(summary.completed),
        records: summary.records,
        median_step_ms: median,
        base_rss_bytes: base_rss,
        step_peak_rss_bytes: step_peak,
        snapshots,
        higher_order,
        diverged: None,
    };
    write_json(&dir.join("train.json"), &report)?;
    Ok(report)
}
