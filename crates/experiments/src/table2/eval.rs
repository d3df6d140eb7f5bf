//! Evaluating one row of Table 2 (the `eval` phase): the test SM loss of every snapshot and of the
//! final model, and samples by annealed Langevin dynamics.

use std::path::PathBuf;

use candle_core::DType;
use serde::{Deserialize, Serialize};
use sm_objectives::NoiseSource;

use crate::error::{ExpError, Result};
use crate::eval::{test_sm, SmValue};
use crate::langevin::annealed_langevin;
use crate::plot::save_image_grid;
use crate::report::{read_json, write_json};

use super::{Table2Config, TrainReport};
use crate::objective::Objective;
use crate::runner::RowContext;

/// What an evaluation child reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalReport {
    /// The row.
    pub row: Objective,
    /// `(step, training seconds, test SM)` per snapshot.
    pub curve: Vec<(u64, f64, SmValue)>,
    /// The final model's test SM loss.
    pub final_sm: SmValue,
    /// The PNG grid of samples, relative to the results directory.
    pub samples_png: PathBuf,
    /// FID and KID with LeNet features of `fid_samples` samples (clipped to `[0, 1]`) against
    /// MNIST's test split; `None` when `fid_samples` is 0.
    #[serde(default)]
    pub fid: Option<sample_quality::lenet::LeNetQuality>,
}
/// Evaluates one row's snapshots and draws samples (the `eval` phase); needs higher-order mode
/// for the test SM loss.
///
/// # Errors
/// Data, checkpoint and I/O errors; higher-order mode off.
pub fn eval_row(ctx: &RowContext, cfg: &Table2Config, row: Objective) -> Result<EvalReport> {
    ctx.higher_order()?;
    let dir = &ctx.dir;
    let device = ctx.run.device;
    let train: TrainReport = read_json(&dir.join("train.json"))?;
    let test = crate::setup::mnist32(ctx.run.data_dir, false, device)?;
    let picked = datasets::Batcher::new(test.dim(0)?, cfg.eval_images, cfg.training.seed ^ 0x7e57)?
        .batch(&test, 0)?;
    let (vm, net) =
        crate::setup::seeded_resnet_ebm(&cfg.training.model, cfg.training.seed, device)?;
    let mut vm = vm;
    let mut curve = Vec::new();
    for (step, seconds, path) in &train.snapshots {
        let file = dir.join(path);
        vm.load(&file).map_err(|e| ExpError::Checkpoint {
            path: file.clone(),
            problem: format!("could not read this snapshot: {e}"),
        })?;
        let mut noise = NoiseSource::new(cfg.training.seed ^ 0xe7a1);
        let value = test_sm(&net, &picked, cfg.eval_batch, cfg.estimate, &mut noise)?;
        curve.push((*step, *seconds, value));
    }
    let final_sm = curve.last().map(|c| c.2).ok_or_else(|| {
        ExpError::Config("no snapshot to evaluate (eval_points must be >= 1)".into())
    })?;
    let mut noise = NoiseSource::new(cfg.training.seed ^ 0x5a3);
    let x0 = (noise.gaussian((cfg.samples, 1, 32, 32), DType::F32, device)? + 0.5)?;
    let samples = annealed_langevin(&net, &x0, &cfg.langevin, &mut noise)?;
    let samples_png = PathBuf::from(format!("samples_{}.png", row.key()));
    let cols = (cfg.samples as f64).sqrt().ceil() as usize;
    save_image_grid(&samples, cols, &ctx.run.out.join(&samples_png))?;
    let fid = if cfg.fid_samples > 0 {
        let mut drawn = Vec::new();
        for start in (0..cfg.fid_samples).step_by(100) {
            let n = 100.min(cfg.fid_samples - start);
            let x0 = (noise.gaussian((n, 1, 32, 32), DType::F32, device)? + 0.5)?;
            drawn.push(annealed_langevin(&net, &x0, &cfg.langevin, &mut noise)?.clamp(0f32, 1f32)?);
        }
        let drawn = candle_core::Tensor::cat(&drawn, 0)?;
        let data_dir = ctx.run.data_dir;
        let cache = cfg
            .feature_cache
            .clone()
            .unwrap_or_else(|| data_dir.join("feature-nets"));
        let lenet = sample_quality::lenet::load_or_train_lenet(
            data_dir,
            &cache,
            sample_quality::lenet::MnistFamily::Mnist,
            &sample_quality::lenet::LeNetTraining::default(),
            device,
            ctx.run.control.progress,
        )?;
        Some(lenet.evaluate(&drawn, data_dir, &cache)?)
    } else {
        None
    };
    let report = EvalReport {
        row,
        curve,
        final_sm,
        samples_png,
        fid,
    };
    write_json(&dir.join("eval.json"), &report)?;
    Ok(report)
}
