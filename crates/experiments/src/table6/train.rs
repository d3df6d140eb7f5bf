//! Training one run of Table 6 (the `train` phase), Song et al.'s schedule: every step binarises
//! a batch afresh, takes one RMSProp step of the score network by SSMVR or FD-SSMVR on
//! detached codes of that batch (timed on its own: the paper's time column), then returns the
//! autoencoder's loss on fresh codes, whose entropy term uses the updated, detached score; the
//! shared trainer takes the autoencoder's RMSProp step. The score network's optimiser, its
//! losses and the test evaluations along training travel in the checkpoint.

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{DType, Tensor};
use latent::implicit::{implicit_vae_loss, implicit_wae_loss, DecoderLikelihood};
use models::{
    AutoencoderKind, ImplicitAutoencoder, ImplicitAutoencoderConfig, ImplicitNetworks, LatentScore,
};
use serde::{Deserialize, Serialize};
use sm_objectives::{NoiseSource, Reduction};

use crate::error::{ExpError, Result};
use crate::keep_best::save_atomic;
use crate::optim::{Adam, LrSchedule};
use crate::report::{read_json, write_json};
use crate::runner::RowContext;
use crate::step_seed;
use crate::trainer::{train_with_state, StepRecord, TrainState};

use super::data::Images;
use super::objective::{exact_sm, score_loss};
use super::{Run, Table6Config, Table6Data};

/// Score-step times kept for the median (after warm-up): enough for a stable median without
/// growing the checkpoint over a 100K-step run.
const TIMED_SCORE_STEPS: usize = 2000;

/// One evaluation on test images along training.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TestPoint {
    /// Steps complete.
    pub step: u64,
    /// Training wall time so far, seconds.
    pub train_seconds: f64,
    /// Reconstruction term: `-log p(x | z)` (VAE) or `|x - E[x | z]|^2` (WAE), nats or squared
    /// pixels per image.
    pub recon: f64,
    /// The score network's exact SM loss on test codes (lower: closer to the codes' score).
    pub score_sm: f64,
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
    /// `(step, autoencoder loss)` of every step.
    pub losses: Vec<(u64, f64)>,
    /// `(step, score-network loss)` of every step (SSMVR's scale, summed over dimensions).
    pub score_losses: Vec<(u64, f64)>,
    /// Test evaluations along training.
    pub evals: Vec<TestPoint>,
    /// Median time of a whole step (score step, autoencoder loss, backward, update), ms.
    pub median_step_ms: Option<f64>,
    /// Median time of the score-estimation step alone (loss, backward, RMSProp), ms.
    pub median_score_ms: Option<f64>,
    /// Training wall time of the whole run, seconds.
    pub train_seconds: f64,
}

/// The model configuration of a run.
pub fn model_config(cfg: &Table6Config, run: Run) -> ImplicitAutoencoderConfig {
    match run.data {
        Table6Data::Mnist => ImplicitAutoencoderConfig {
            networks: ImplicitNetworks::Dense {
                data_dim: 784,
                hidden: cfg.hidden,
            },
            ..ImplicitAutoencoderConfig::mnist(run.model, run.z_dim)
        },
        Table6Data::Celeba => ImplicitAutoencoderConfig {
            networks: ImplicitNetworks::Conv {
                channels: 3,
                image_size: cfg.celeba.image_size,
                nef: cfg.celeba.nef,
                ndf: cfg.celeba.ndf,
            },
            ..ImplicitAutoencoderConfig::celeba(run.model, run.z_dim)
        },
    }
}

/// The RMSProp learning rate of a run: MNIST's or CelebA's.
pub fn learning_rate(cfg: &Table6Config, run: Run) -> f64 {
    match run.data {
        Table6Data::Mnist => cfg.lr,
        Table6Data::Celeba => cfg.celeba.lr,
    }
}

/// What a run records along training; it travels in the checkpoint.
#[derive(Default, Serialize, Deserialize)]
struct Record {
    losses: Vec<(u64, f64)>,
    score_losses: Vec<(u64, f64)>,
    score_ms: Vec<f64>,
    evals: Vec<TestPoint>,
}

/// What a run carries from step to step besides the autoencoder's parameters.
struct RowState {
    score_opt: Adam,
    record: Record,
}

impl TrainState for RowState {
    fn tensors(&self) -> train::Result<Vec<(String, Tensor)>> {
        self.score_opt.state_tensors("score/").map_err(Into::into)
    }

    fn json(&self) -> train::Result<serde_json::Value> {
        serde_json::to_value(&self.record).map_err(|e| {
            train::TrainError::Config(format!("the run's record does not serialise: {e}"))
        })
    }

    fn restore(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        json: &serde_json::Value,
    ) -> train::Result<()> {
        self.score_opt.load_state("score/", tensors)?;
        self.record = serde_json::from_value(json.clone())
            .map_err(|e| train::TrainError::Config(format!("bad saved record: {e}")))?;
        Ok(())
    }
}

/// The encoder's noise for a batch of `b` images (VAE), or none (WAE).
pub fn encoder_noise(
    cfg: &ImplicitAutoencoderConfig,
    b: usize,
    noise: &mut NoiseSource,
    device: &candle_core::Device,
) -> candle_core::Result<Option<Tensor>> {
    match cfg.kind {
        AutoencoderKind::Vae => Ok(Some(noise.gaussian(
            (b, cfg.noise_dim),
            DType::F32,
            device,
        )?)),
        AutoencoderKind::Wae => Ok(None),
    }
}

/// The autoencoder's loss on images `x` with fresh codes, the decoder's output read by
/// `likelihood`; the score is evaluated at the codes and detached.
pub fn autoencoder_loss(
    ae: &ImplicitAutoencoder,
    score: &LatentScore,
    likelihood: DecoderLikelihood,
    x: &Tensor,
    noise: &mut NoiseSource,
    wae_lambda: f64,
) -> candle_core::Result<Tensor> {
    let cfg = ae.config();
    let eps = encoder_noise(cfg, x.dim(0)?, noise, x.device())?;
    let z = ae.encode(x, eps.as_ref())?;
    let out = ae.decode(&z)?;
    match cfg.kind {
        AutoencoderKind::Vae => {
            let s = score.score(Some(x), &z.detach())?;
            implicit_vae_loss(likelihood, &out, x, &z, &s, Reduction::Mean)
        }
        AutoencoderKind::Wae => {
            let s = score.score(None, &z.detach())?;
            implicit_wae_loss(likelihood, &out, x, &z, &s, wae_lambda, Reduction::Mean)
        }
    }
}

/// The test evaluation of [`TestPoint`] on `x` (prepared test images) with the encoder noise
/// drawn from `seed`.
///
/// # Errors
/// Tensor errors.
pub fn test_point(
    ae: &ImplicitAutoencoder,
    score: &LatentScore,
    likelihood: DecoderLikelihood,
    x: &Tensor,
    seed: u64,
) -> Result<(f64, f64)> {
    let cfg = ae.config();
    let mut noise = NoiseSource::new(seed);
    let (mut recon, mut sm) = (0.0, 0.0);
    let n = x.dim(0)?;
    for start in (0..n).step_by(250) {
        let xb = x.narrow(0, start, 250.min(n - start))?;
        let eps = encoder_noise(cfg, xb.dim(0)?, &mut noise, x.device())?;
        let z = ae.encode(&xb, eps.as_ref())?.detach();
        let out = ae.decode(&z)?.detach();
        let r = match cfg.kind {
            AutoencoderKind::Vae => likelihood.log_likelihood(&out, &xb)?.neg()?,
            AutoencoderKind::Wae => (&xb - likelihood.mean(&out)?)?
                .sqr()?
                .flatten_from(1)?
                .sum(1)?,
        };
        recon += r.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
        let s = exact_sm(score, cfg.kind, &xb, &z)?;
        sm += s.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
    }
    Ok((recon / n as f64, sm / n as f64))
}

/// The files of a trained run's final parameters in its directory.
pub fn weight_files(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    (
        dir.join("autoencoder.safetensors"),
        dir.join("score.safetensors"),
    )
}

/// Trains one run and writes `train.json` and the final parameters into its directory.
///
/// # Errors
/// Data, configuration, checkpoint and I/O errors; a diverged loss; higher-order mode off for
/// SSMVR.
pub fn train_run(ctx: &RowContext, cfg: &Table6Config, run: Run) -> Result<TrainReport> {
    cfg.validate()?;
    if run.estimator.higher_order() {
        ctx.higher_order()?;
    }
    let dir = &ctx.dir;
    let device = ctx.run.device;
    let images = Images::load(
        cfg,
        run.data,
        ctx.run.data_dir,
        device,
        true,
        ctx.run.control.progress,
    )?;
    let likelihood = images.likelihood();
    let train_pixels = images.train();
    let test = images.test_images(cfg.eval_images, cfg.seed ^ 0x7e57, device)?;
    let lr = learning_rate(cfg, run);
    let seed = run.seed_value(cfg);
    let model_cfg = model_config(cfg, run);
    let ((ae_vm, ae), (score_vm, score)) =
        crate::setup::seeded_implicit_autoencoder(&model_cfg, seed, device)?;
    let (_, score_vars) = crate::trainer::named_vars(&score_vm);
    let mut state = RowState {
        score_opt: Adam::rmsprop(score_vars, cfg.rmsprop)?,
        record: Record::default(),
    };
    let mut batcher = datasets::Batcher::new(train_pixels.dim(0)?, cfg.batch, seed)?;
    let opts = ctx
        .train_options(
            cfg.iters,
            lr,
            cfg.checkpoint_every,
            run.label_text(),
            &(cfg.training_identity(), run),
        )?
        .with_schedule(LrSchedule::Constant)
        .with_rmsprop(cfg.rmsprop);
    let evals = crate::eval_steps(cfg.iters, cfg.eval_points);
    let warmup = cfg.timing_warmup as u64;
    let mut loss_at = |step: u64, st: &mut RowState| -> candle_core::Result<Tensor> {
        let pixels = batcher
            .batch(train_pixels, step)
            .map_err(candle_core::Error::wrap)?;
        let mut noise = NoiseSource::new(step_seed(seed, step));
        let x = images
            .prepare(&pixels, &mut noise, device)
            .map_err(candle_core::Error::wrap)?;
        // The score network's step on detached codes of this batch, timed alone.
        let t0 = Instant::now();
        let eps = encoder_noise(&model_cfg, x.dim(0)?, &mut noise, x.device())?;
        let z = ae.encode(&x, eps.as_ref())?.detach();
        let loss = score_loss(
            &score,
            run.model,
            run.estimator,
            &x,
            &z,
            &mut noise,
            cfg.eps,
        )?;
        let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if !value.is_finite() {
            candle_core::bail!("the score network's loss is {value} at step {step}")
        }
        let grads = loss.backward()?;
        st.score_opt.step_with_lr(&grads, lr)?;
        drop(grads);
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        let record = &mut st.record;
        record.score_losses.push((step, value));
        if step >= warmup && record.score_ms.len() < TIMED_SCORE_STEPS {
            record.score_ms.push(ms);
        }
        autoencoder_loss(&ae, &score, likelihood, &x, &mut noise, cfg.wae_lambda)
    };
    let mut after = |r: &StepRecord, st: &mut RowState| -> Result<()> {
        st.record.losses.push((r.step, r.loss));
        if evals.contains(&(r.step + 1)) {
            let (recon, score_sm) = test_point(&ae, &score, likelihood, &test, cfg.seed ^ 0xe7a1)?;
            st.record.evals.push(TestPoint {
                step: r.step + 1,
                train_seconds: r.train_seconds,
                recon,
                score_sm,
            });
        }
        Ok(())
    };
    let summary =
        train_with_state::<_, ExpError>(&ae_vm, &opts, &mut state, &mut loss_at, &mut after)?;
    if summary.records.is_empty() {
        // A finished run resumed: nothing was trained, the original report stands.
        if let Ok(previous) = read_json::<TrainReport>(&dir.join("train.json")) {
            return Ok(previous);
        }
    }
    let paused_at = (summary.completed < cfg.iters).then_some(summary.completed);
    if paused_at.is_none() {
        let (ae_file, score_file) = weight_files(dir);
        save_atomic(&ae_vm, &ae_file)?;
        save_atomic(&score_vm, &score_file)?;
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    };
    let step_ms = summary
        .records
        .iter()
        .filter(|r| r.step >= warmup)
        .map(|r| r.seconds * 1e3)
        .collect();
    let Record {
        losses,
        score_losses,
        score_ms,
        evals,
    } = state.record;
    let report = TrainReport {
        run,
        paused_at,
        steps: cfg.iters,
        losses,
        score_losses,
        evals,
        median_step_ms: median(step_ms),
        median_score_ms: median(score_ms),
        train_seconds: summary.train_seconds,
    };
    write_json(&dir.join("train.json"), &report)?;
    Ok(report)
}
