//! Training one row of Table 5 (the `train` phase): NCSN's RefineNet by annealed SSMVR or
//! FD-SSMVR (FD-SM Sec. 6.4). Each step draws a batch, a noise level per image (uniform over the
//! levels), the Gaussian perturbation and the projection directions from generators seeded by
//! the step, so a resumed run sees the same draws. The step time and the peak resident memory
//! of the training steps are the paper's time and memory columns; the annealed DSM loss on test
//! images at every level (first order, the same measure for both estimators) is recorded along
//! training.

use candle_core::{DType, Device, Tensor};
use models::{Ncsn, NcsnConfig};
use serde::{Deserialize, Serialize};
use sm_objectives::{
    annealed_dsm, annealed_fd_ssmvr, annealed_ssmvr, BatchMode, Directions, NoiseLevels,
    NoiseSource, Reduction,
};

use crate::error::{ExpError, Result};
use crate::keep_best::save_atomic;
use crate::memory;
use crate::optim::LrSchedule;
use crate::report::{read_json, write_json};
use crate::runner::RowContext;
use crate::step_seed;
use crate::trainer::{train_with_state, StepRecord, TrainState};

use super::{Estimator, Run, Table5Config, Table5Data};

/// One evaluation on test images along training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestPoint {
    /// Steps complete.
    pub step: u64,
    /// Training wall time so far, seconds.
    pub train_seconds: f64,
    /// Annealed DSM loss on the test images at each level (largest sigma first), each weighted
    /// by `sigma^2` as in training.
    pub dsm_per_level: Vec<f64>,
    /// Their mean over the levels.
    pub dsm: f64,
}

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
    /// `(step, training loss)` of every step.
    pub losses: Vec<(u64, f64)>,
    /// Test evaluations along training.
    pub evals: Vec<TestPoint>,
    /// Median time of a training step after the warm-up, ms.
    pub median_step_ms: Option<f64>,
    /// Resident memory before the first step (data, model, optimiser), bytes.
    pub base_rss_bytes: Option<u64>,
    /// Peak resident memory of the training steps, bytes.
    pub step_peak_rss_bytes: Option<u64>,
    /// Training wall time of the whole run, seconds.
    pub train_seconds: f64,
}

/// The network's configuration.
pub fn model_config(cfg: &Table5Config) -> NcsnConfig {
    let (channels, image_size) = cfg.data.shape();
    NcsnConfig {
        channels,
        image_size,
        ngf: cfg.ngf,
        levels: cfg.levels,
    }
}

/// The training and test images in `[0, 1]`, `[N, C, S, S]` `f32` on the CPU.
///
/// # Errors
/// Missing or corrupt data files.
pub fn load_images(cfg: &Table5Config, data_dir: &std::path::Path) -> Result<(Tensor, Tensor)> {
    let splits = match cfg.data {
        Table5Data::Mnist => {
            datasets::load_idx_dataset(data_dir, datasets::IdxDataset::Mnist, &Device::Cpu)?
        }
        Table5Data::FashionMnist => {
            datasets::load_idx_dataset(data_dir, datasets::IdxDataset::FashionMnist, &Device::Cpu)?
        }
        Table5Data::Cifar10 => datasets::load_cifar10(data_dir, &Device::Cpu)?,
    };
    Ok((
        splits.train.images.to_dtype(DType::F32)?,
        splits.test.images.to_dtype(DType::F32)?,
    ))
}

/// The estimator's loss on images `x`, mean over the batch.
pub fn row_loss(
    net: &Ncsn,
    estimator: Estimator,
    x: &Tensor,
    sigmas: &[f64],
    eps: f64,
    noise: &mut NoiseSource,
) -> candle_core::Result<Tensor> {
    let index = noise.levels(x.dim(0)?, sigmas.len(), x.device())?;
    let levels = NoiseLevels {
        index: &index,
        sigmas,
    };
    let z = noise.gaussian_like(x)?;
    match estimator {
        Estimator::Ssmvr => {
            let proj = noise.projection(x, Directions::Gaussian)?;
            annealed_ssmvr(net, x, &z, &proj, levels, Reduction::Mean)
        }
        Estimator::FdSsmvr => {
            let proj = noise.projection(x, Directions::Sphere { radius: eps })?;
            annealed_fd_ssmvr(
                net,
                x,
                &z,
                &proj,
                levels,
                BatchMode::Concatenated,
                Reduction::Mean,
            )
        }
    }
}

/// The annealed DSM loss of the network on `x` at every level, with noise seeded by `seed`.
///
/// # Errors
/// Tensor errors.
pub fn test_dsm(net: &Ncsn, x: &Tensor, sigmas: &[f64], seed: u64) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(sigmas.len());
    for level in 0..sigmas.len() {
        let mut noise = NoiseSource::new(step_seed(seed, level as u64));
        let mut total = 0.0;
        let n = x.dim(0)?;
        for start in (0..n).step_by(100) {
            let xb = x.narrow(0, start, 100.min(n - start))?;
            let b = xb.dim(0)?;
            let index = Tensor::from_vec(vec![level as u32; b], b, x.device())?;
            let z = noise.gaussian_like(&xb)?;
            let levels = NoiseLevels {
                index: &index,
                sigmas,
            };
            let loss = annealed_dsm(net, &xb, &z, levels, Reduction::Sum)?.detach();
            total += loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        }
        out.push(total / n as f64);
    }
    Ok(out)
}

/// The file of a trained row's final parameters.
pub fn weight_file(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join("ncsn.safetensors")
}

#[derive(Default, Serialize, Deserialize)]
struct Record {
    losses: Vec<(u64, f64)>,
    evals: Vec<TestPoint>,
}

impl TrainState for Record {
    fn tensors(&self) -> train::Result<Vec<(String, Tensor)>> {
        Ok(Vec::new())
    }

    fn json(&self) -> train::Result<serde_json::Value> {
        serde_json::to_value(self).map_err(|e| {
            train::TrainError::Config(format!("the run's record does not serialise: {e}"))
        })
    }

    fn restore(
        &mut self,
        _: &std::collections::HashMap<String, Tensor>,
        json: &serde_json::Value,
    ) -> train::Result<()> {
        *self = serde_json::from_value(json.clone())
            .map_err(|e| train::TrainError::Config(format!("bad saved record: {e}")))?;
        Ok(())
    }
}

/// Trains one row and writes `train.json` and the final parameters into its directory.
///
/// # Errors
/// Data, configuration, checkpoint and I/O errors; a diverged loss; higher-order mode off for
/// SSMVR.
pub fn train_run(ctx: &RowContext, cfg: &Table5Config, run: Run) -> Result<TrainReport> {
    cfg.validate()?;
    if run.estimator.higher_order() {
        ctx.higher_order()?;
    }
    let dir = &ctx.dir;
    let device = ctx.run.device;
    let (train_images, test_images) = load_images(cfg, ctx.run.data_dir)?;
    let train_images = train_images.to_device(device)?;
    let test = test_images
        .narrow(0, 0, cfg.eval_images)?
        .to_device(device)?;
    let sigmas = cfg.sigmas()?;
    let seed = run.seed_value(cfg);
    let (vm, net) = crate::setup::seeded_ncsn(&model_config(cfg), seed, device)?;
    let mut batcher = datasets::Batcher::new(train_images.dim(0)?, cfg.batch, seed)?;
    let opts = ctx
        .train_options(
            cfg.iters,
            cfg.lr,
            cfg.checkpoint_every,
            run.label_text(),
            &(cfg.training_identity(), run),
        )?
        .with_schedule(LrSchedule::Constant);
    let evals = crate::eval_steps(cfg.iters, cfg.eval_points);
    let mut loss_at = |step: u64, _: &mut Record| -> candle_core::Result<Tensor> {
        let x = batcher
            .batch(&train_images, step)
            .map_err(candle_core::Error::wrap)?;
        let mut noise = NoiseSource::new(step_seed(seed, step));
        row_loss(&net, run.estimator, &x, &sigmas, cfg.eps, &mut noise)
    };
    let mut after = |r: &StepRecord, st: &mut Record| -> Result<()> {
        st.losses.push((r.step, r.loss));
        if evals.contains(&(r.step + 1)) {
            let per = test_dsm(&net, &test, &sigmas, cfg.seed ^ 0x7e57)?;
            let dsm = per.iter().sum::<f64>() / per.len() as f64;
            st.evals.push(TestPoint {
                step: r.step + 1,
                train_seconds: r.train_seconds,
                dsm_per_level: per,
                dsm,
            });
        }
        Ok(())
    };
    // The memory column is the training steps' own working set, counted from the first step.
    crate::allocator::release_free_memory();
    let base_rss = memory::rss_bytes();
    memory::reset_peak();
    let mut record = Record::default();
    let summary =
        train_with_state::<_, ExpError>(&vm, &opts, &mut record, &mut loss_at, &mut after)?;
    let step_peak = memory::peak_rss_bytes();
    if summary.records.is_empty() {
        // A finished run resumed: nothing was trained, the original report stands.
        if let Ok(previous) = read_json::<TrainReport>(&dir.join("train.json")) {
            return Ok(previous);
        }
    }
    let paused_at = (summary.completed < cfg.iters).then_some(summary.completed);
    if paused_at.is_none() {
        save_atomic(&vm, &weight_file(dir))?;
    }
    let warmup = cfg.timing_warmup as u64;
    let mut ms: Vec<f64> = summary
        .records
        .iter()
        .filter(|r| r.step >= warmup)
        .map(|r| r.seconds * 1e3)
        .collect();
    ms.sort_by(f64::total_cmp);
    let report = TrainReport {
        run,
        paused_at,
        steps: cfg.iters,
        losses: record.losses,
        evals: record.evals,
        median_step_ms: ms.get(ms.len() / 2).copied(),
        base_rss_bytes: base_rss,
        step_peak_rss_bytes: step_peak,
        train_seconds: summary.train_seconds,
    };
    write_json(&dir.join("train.json"), &report)?;
    Ok(report)
}
