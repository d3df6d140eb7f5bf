//! Evaluating one run of Table 2 (the `eval` phase): the test SM loss of every snapshot and of the
//! final model, and (first seed only) samples by annealed Langevin dynamics, or by the row's own
//! Langevin sampler for maximum likelihood, with their FID.

use std::path::PathBuf;

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};
use sm_objectives::NoiseSource;

use crate::error::{ExpError, Result};
use crate::eval::{test_sm, SmValue};
use crate::langevin::annealed_langevin_with_last;
use crate::plot::save_image_grids_side_by_side;
use crate::report::{read_json, write_json};

use super::{Run, Table2Config, TrainReport};
use crate::objective::Objective;
use crate::runner::RowContext;

/// Pixel scale of the sample grids: 32 x 32 images drawn 64 x 64.
pub const SAMPLE_SCALE: usize = 2;

/// What an evaluation child reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalReport {
    /// The row.
    pub row: Objective,
    /// `(step, training seconds, test SM)` per snapshot.
    pub curve: Vec<(u64, f64, SmValue)>,
    /// The final model's test SM loss.
    pub final_sm: SmValue,
    /// The seed index of the run.
    #[serde(default)]
    pub seed: usize,
    /// The PNG of samples (the sampler's start, its last state and the denoised samples side
    /// by side), relative to the results directory; first seed only.
    pub samples_png: Option<PathBuf>,
    /// FID and KID with LeNet features of `fid_samples` samples (clipped to `[0, 1]`) against
    /// MNIST's test split; `None` when `fid_samples` is 0 or for a later seed.
    #[serde(default)]
    pub fid: Option<sample_quality::lenet::LeNetQuality>,
    /// Why the sampler produced no samples (its chains left the finite numbers), when it did
    /// not.
    #[serde(default)]
    pub sampler_failure: Option<String>,
}
/// Evaluates one run's snapshots and, for the first seed, draws samples (the `eval` phase);
/// needs higher-order mode for the test SM loss.
///
/// # Errors
/// Data, checkpoint and I/O errors; higher-order mode off.
pub fn eval_row(ctx: &RowContext, cfg: &Table2Config, run: Run) -> Result<EvalReport> {
    ctx.higher_order()?;
    let row = run.objective;
    let training = cfg.run_training(run);
    let dir = &ctx.dir;
    let device = ctx.run.device;
    let train: TrainReport = read_json(&dir.join("train.json"))?;
    let test = crate::setup::mnist32(ctx.run.data_dir, false, device)?;
    let picked = datasets::Batcher::new(test.dim(0)?, cfg.eval_images, training.seed ^ 0x7e57)?
        .batch(&test, 0)?;
    let (vm, net) = crate::setup::seeded_resnet_ebm(&training.model, training.seed, device)?;
    let mut vm = vm;
    let mut curve = Vec::new();
    for (step, seconds, path) in &train.snapshots {
        let file = dir.join(path);
        vm.load(&file).map_err(|e| ExpError::Checkpoint {
            path: file.clone(),
            problem: format!("could not read this snapshot: {e}"),
        })?;
        let mut noise = NoiseSource::new(training.seed ^ 0xe7a1);
        let value = test_sm(&net, &picked, cfg.eval_batch, cfg.estimate, &mut noise)?;
        curve.push((*step, *seconds, value));
    }
    let final_sm = curve.last().map(|c| c.2).ok_or_else(|| {
        ExpError::Config("no snapshot to evaluate (eval_points must be >= 1)".into())
    })?;
    // A sampler whose chains leave the finite numbers (a model with a badly scaled energy) is a
    // result of that row, not a failure of the run: it is recorded and the table still written.
    let mut sampler_failure = None;
    let (samples_png, fid) = if run.seed == 0 {
        let mut noise = NoiseSource::new(training.seed ^ 0x5a3);
        let samples_png = match draw(&net, cfg, row, cfg.samples, device, &mut noise) {
            Ok(drawn) => {
                let file = PathBuf::from(format!("samples_{}.png", row.key()));
                let cols = (cfg.samples as f64).sqrt().ceil() as usize;
                let start = drawn.start.clamp(0f32, 1f32)?;
                let panels: Vec<&Tensor> = match &drawn.last {
                    Some(last) => vec![&start, last, &drawn.samples],
                    None => vec![&start, &drawn.samples],
                };
                save_image_grids_side_by_side(
                    &panels,
                    cols,
                    SAMPLE_SCALE,
                    &ctx.run.out.join(&file),
                )?;
                Some(file)
            }
            Err(e) => {
                sampler_failure = Some(format!("sample grid: {e}"));
                None
            }
        };
        let fid = if cfg.fid_samples > 0 && sampler_failure.is_none() {
            let mut all = Vec::new();
            for begin in (0..cfg.fid_samples).step_by(100) {
                let n = 100.min(cfg.fid_samples - begin);
                match draw(&net, cfg, row, n, device, &mut noise) {
                    Ok(drawn) => all.push(drawn.samples.clamp(0f32, 1f32)?),
                    Err(e) => {
                        sampler_failure = Some(format!("FID samples: {e}"));
                        break;
                    }
                }
            }
            if sampler_failure.is_none() {
                Some(crate::setup::mnist_lenet_quality(
                    &Tensor::cat(&all, 0)?,
                    ctx.run.data_dir,
                    cfg.feature_cache.as_deref(),
                    device,
                    ctx.run.control.progress,
                )?)
            } else {
                None
            }
        } else {
            None
        };
        (samples_png, fid)
    } else {
        (None, None)
    };
    if let Some(why) = &sampler_failure {
        eprintln!(
            "{}: the sampler failed, no samples or FID: {why}",
            row.label()
        );
    }
    let report = EvalReport {
        row,
        curve,
        final_sm,
        seed: run.seed,
        samples_png,
        fid,
        sampler_failure,
    };
    write_json(&dir.join("eval.json"), &report)?;
    Ok(report)
}

/// Samples of one row's model: where the chains started, the last Langevin state before the
/// denoising step (score-matching rows), and the samples.
struct Drawn {
    start: Tensor,
    last: Option<Tensor>,
    samples: Tensor,
}

/// Draws `n` samples: annealed Langevin dynamics from `0.5 + N(0, 1)` for the score-matching
/// rows (App. C.2); for maximum likelihood, its training sampler (which the model was fitted
/// with) run for as many steps as the annealed schedule from uniform noise.
fn draw(
    net: &models::ResNetEbm,
    cfg: &Table2Config,
    row: Objective,
    n: usize,
    device: &candle_core::Device,
    noise: &mut NoiseSource,
) -> Result<Drawn> {
    if row == Objective::MleLangevin {
        let mle = &cfg.training.mle;
        let start = mle
            .init
            .draw(n, &[1, 32, 32], DType::F32, device, noise)
            .map_err(ExpError::Train)?;
        let sampler = train::mcmc::Sgld {
            steps: cfg.langevin.total(),
            ..mle.sampler
        };
        let samples = sampler.run(net, &start, noise).map_err(ExpError::Train)?;
        return Ok(Drawn {
            start,
            last: None,
            samples,
        });
    }
    let start = (noise.gaussian((n, 1, 32, 32), DType::F32, device)? + 0.5)?;
    let out = annealed_langevin_with_last(net, &start, &cfg.langevin, noise)?;
    Ok(Drawn {
        start,
        last: Some(out.last),
        samples: out.denoised,
    })
}
