//! Evaluating one run of Table 6 (the `eval` phase) with its final parameters: the test NLL by
//! annealed importance sampling with HMC through the Bernoulli decoder (Song et al.'s
//! evaluation; `train::ais`), a grid of decoder samples and of test reconstructions, and FID /
//! KID with LeNet features of decoder samples.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Tensor};
use latent::implicit::bernoulli_log_likelihood;
use serde::{Deserialize, Serialize};
use sm_objectives::NoiseSource;
use train::ais::ais_log_marginal;

use crate::error::{ExpError, Result};
use crate::plot::save_image_grids_side_by_side;
use crate::report::{write_json, Estimate};
use crate::runner::RowContext;

use super::train::{encoder_noise, model_config, weight_files};
use super::{data, Run, Table6Config};

/// Pixels per image pixel in the PNG grids.
pub const SAMPLE_SCALE: usize = 2;

/// What an evaluation child reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalReport {
    /// The run.
    pub run: Run,
    /// Test NLL `-log p(x)` by AIS, nats per image, over the evaluated test images.
    pub nll: Estimate,
    /// Accepted HMC proposals over all, mean over the AIS batches.
    pub ais_acceptance: f64,
    /// Wall time of the AIS evaluation, seconds.
    pub ais_seconds: f64,
    /// FID and KID with LeNet features of decoder samples (`None` when `fid_samples` is 0).
    pub fid: Option<sample_quality::lenet::LeNetQuality>,
    /// Decoder samples and test reconstructions, relative to the results directory (first seed).
    pub samples_png: Option<PathBuf>,
    /// Test images beside their reconstructions (first seed).
    pub reconstructions_png: Option<PathBuf>,
}

/// Evaluates one trained run.
///
/// # Errors
/// Data, parameter-file and I/O errors; a non-finite AIS weight.
pub fn eval_run(ctx: &RowContext, cfg: &Table6Config, run: Run) -> Result<EvalReport> {
    cfg.validate()?;
    let dir = &ctx.dir;
    let device = ctx.run.device;
    let model_cfg = model_config(cfg, run);
    let ((mut ae_vm, ae), _) =
        crate::setup::seeded_implicit_autoencoder(&model_cfg, run.seed_value(cfg), device)?;
    let (ae_file, _) = weight_files(dir);
    ae_vm.load(&ae_file).map_err(|e| ExpError::Checkpoint {
        path: ae_file.clone(),
        problem: format!("could not load the trained autoencoder ({model_cfg:?}): {e}"),
    })?;
    let mnist = data::load(ctx.run.data_dir, device)?;
    let test = data::binary_test_images(&mnist, cfg.nll_images, cfg.seed ^ 0xa15)?;
    // NLL by AIS, `nll_batch` images (times the chains) per pass.
    let t0 = Instant::now();
    let mut nll = Vec::with_capacity(cfg.nll_images);
    let mut acceptance = Vec::new();
    let batches = cfg.nll_images.div_ceil(cfg.nll_batch);
    for (b, start) in (0..cfg.nll_images).step_by(cfg.nll_batch).enumerate() {
        let x = test.narrow(0, start, cfg.nll_batch.min(cfg.nll_images - start))?;
        let n = x.dim(0)?;
        let copies: Vec<&Tensor> = std::iter::repeat_n(&x, cfg.ais.chains).collect();
        let x_rep = Tensor::cat(&copies, 0)?;
        let label = format!("{} AIS batch {}/{batches}", run.label_text(), b + 1);
        let est = ais_log_marginal(
            |z: &Tensor| bernoulli_log_likelihood(&ae.decode_logits(z)?, &x_rep),
            (n, run.z_dim),
            &cfg.ais,
            &mut NoiseSource::new(crate::step_seed(cfg.seed ^ 0xa150, b as u64)),
            (device, DType::F32),
            ctx.run.control.progress.then_some(label.as_str()),
        )?;
        nll.extend(est.log_marginal.iter().map(|v| -v));
        acceptance.push(est.acceptance);
    }
    let ais_seconds = t0.elapsed().as_secs_f64();
    let mut noise = NoiseSource::new(cfg.seed ^ 0x5a3);
    let decode_means = |z: &Tensor| -> Result<Tensor> {
        let n = z.dim(0)?;
        Ok(layers::sigmoid(&ae.decode_logits(z)?)?.reshape((n, 1, 28, 28))?)
    };
    let (samples_png, reconstructions_png) = if run.seed == 0 {
        let z = noise.gaussian((cfg.samples, run.z_dim), DType::F32, device)?;
        let samples = decode_means(&z)?;
        let file = PathBuf::from(format!("samples_{}.png", run.key_text()));
        let cols = (cfg.samples as f64).sqrt().ceil() as usize;
        save_image_grids_side_by_side(&[&samples], cols, SAMPLE_SCALE, &ctx.run.out.join(&file))?;
        let shown = cfg.samples.min(test.dim(0)?);
        let x = test.narrow(0, 0, shown)?;
        let eps = encoder_noise(&model_cfg, shown, &mut noise, device)?;
        let recon = decode_means(&ae.encode(&x, eps.as_ref())?)?;
        let rfile = PathBuf::from(format!("reconstructions_{}.png", run.key_text()));
        let cols = (shown as f64).sqrt().ceil() as usize;
        save_image_grids_side_by_side(
            &[&x.reshape((shown, 1, 28, 28))?, &recon],
            cols,
            SAMPLE_SCALE,
            &ctx.run.out.join(&rfile),
        )?;
        (Some(file), Some(rfile))
    } else {
        (None, None)
    };
    let fid = if cfg.fid_samples > 0 {
        let mut all = Vec::new();
        for start in (0..cfg.fid_samples).step_by(500) {
            let n = 500.min(cfg.fid_samples - start);
            let z = noise.gaussian((n, run.z_dim), DType::F32, device)?;
            all.push(decode_means(&z)?);
        }
        Some(crate::setup::mnist_lenet_quality(
            &Tensor::cat(&all, 0)?,
            ctx.run.data_dir,
            cfg.feature_cache.as_deref(),
            device,
            ctx.run.control.progress,
        )?)
    } else {
        None
    };
    let report = EvalReport {
        run,
        nll: Estimate::of(&nll),
        ais_acceptance: acceptance.iter().sum::<f64>() / acceptance.len().max(1) as f64,
        ais_seconds,
        fid,
        samples_png,
        reconstructions_png,
    };
    write_json(&dir.join("eval.json"), &report)?;
    Ok(report)
}
