//! Evaluating one run of Table 6 (the `eval` phase) with its final parameters: on MNIST the
//! test NLL by annealed importance sampling with HMC through the Bernoulli decoder (Song et
//! al.'s evaluation; `train::ais`) and FID / KID with LeNet features of decoder samples; on
//! CelebA FID / KID with Inception features of decoder means against the test faces (the
//! paper's column); on both a grid of decoder samples and of test reconstructions.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Tensor};
use latent::implicit::bernoulli_log_likelihood;
use serde::{Deserialize, Serialize};
use sm_objectives::NoiseSource;
use train::ais::ais_log_marginal;

use crate::error::{ExpError, Result};
use crate::inception_fid::{inception_quality, load_inception, InceptionQuality};
use crate::plot::save_image_grids_side_by_side;
use crate::report::{write_json, Estimate};
use crate::runner::RowContext;

use super::data::Images;
use super::train::{encoder_noise, model_config, weight_files};
use super::{Run, Table6Config, Table6Data};

/// Pixels per image pixel in the PNG grids.
pub const SAMPLE_SCALE: usize = 2;

/// What an evaluation child reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalReport {
    /// The run.
    pub run: Run,
    /// Test NLL `-log p(x)` by AIS, nats per image, over the evaluated test images (MNIST).
    #[serde(default)]
    pub nll: Option<Estimate>,
    /// Accepted HMC proposals over all, mean over the AIS batches (MNIST).
    #[serde(default)]
    pub ais_acceptance: Option<f64>,
    /// Wall time of the AIS evaluation, seconds (MNIST).
    #[serde(default)]
    pub ais_seconds: Option<f64>,
    /// FID and KID with LeNet features of decoder samples (MNIST; `None` when `fid_samples` is
    /// 0).
    pub fid: Option<sample_quality::lenet::LeNetQuality>,
    /// FID and KID with Inception features of decoder samples against the test faces (CelebA;
    /// `None` when `fid_samples` is 0).
    #[serde(default)]
    pub inception: Option<InceptionQuality>,
    /// Decoder samples, relative to the results directory (first seed).
    pub samples_png: Option<PathBuf>,
    /// Test images beside their reconstructions (first seed).
    pub reconstructions_png: Option<PathBuf>,
}

/// The test NLL by AIS of the first `cfg.nll_images` binarised MNIST test images, and the mean
/// acceptance rate.
fn mnist_nll(
    ctx: &RowContext,
    cfg: &Table6Config,
    run: Run,
    ae: &models::ImplicitAutoencoder,
    images: &Images,
) -> Result<(Vec<f64>, f64)> {
    let device = ctx.run.device;
    let test = images.test_images(cfg.nll_images, cfg.seed ^ 0xa15, device)?;
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
            |z: &Tensor| bernoulli_log_likelihood(&ae.decode(z)?, &x_rep),
            (n, run.z_dim),
            &cfg.ais,
            &mut NoiseSource::new(crate::step_seed(cfg.seed ^ 0xa150, b as u64)),
            (device, DType::F32),
            ctx.run.control.progress.then_some(label.as_str()),
        )?;
        nll.extend(est.log_marginal.iter().map(|v| -v));
        acceptance.push(est.acceptance);
    }
    let mean_acceptance = acceptance.iter().sum::<f64>() / acceptance.len().max(1) as f64;
    Ok((nll, mean_acceptance))
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
    let images = Images::load(
        cfg,
        run.data,
        ctx.run.data_dir,
        device,
        false,
        ctx.run.control.progress,
    )?;
    // NLL by AIS (MNIST), `nll_batch` images (times the chains) per pass.
    let t0 = Instant::now();
    let (nll, ais_acceptance) = match run.data {
        Table6Data::Mnist => {
            let (nll, acceptance) = mnist_nll(ctx, cfg, run, &ae, &images)?;
            (Some(Estimate::of(&nll)), Some(acceptance))
        }
        Table6Data::Celeba => (None, None),
    };
    let ais_seconds = nll.is_some().then(|| t0.elapsed().as_secs_f64());
    let mut noise = NoiseSource::new(cfg.seed ^ 0x5a3);
    let decode_pixels = |z: &Tensor| -> Result<Tensor> { images.to_pixels(&ae.decode(z)?) };
    let scale = match run.data {
        Table6Data::Mnist => SAMPLE_SCALE,
        Table6Data::Celeba => 1,
    };
    let (samples_png, reconstructions_png) = if run.seed == 0 {
        let z = noise.gaussian((cfg.samples, run.z_dim), DType::F32, device)?;
        let samples = decode_pixels(&z)?;
        let file = PathBuf::from(format!("samples_{}.png", run.key_text()));
        let cols = (cfg.samples as f64).sqrt().ceil() as usize;
        save_image_grids_side_by_side(&[&samples], cols, scale, &ctx.run.out.join(&file))?;
        let x = images.test_images(cfg.samples, cfg.seed ^ 0xa15, device)?;
        let shown = x.dim(0)?;
        let eps = encoder_noise(&model_cfg, shown, &mut noise, device)?;
        let recon = decode_pixels(&ae.encode(&x, eps.as_ref())?)?;
        let rfile = PathBuf::from(format!("reconstructions_{}.png", run.key_text()));
        let cols = (shown as f64).sqrt().ceil() as usize;
        save_image_grids_side_by_side(
            &[&images.data_to_pixels(&x)?, &recon],
            cols,
            scale,
            &ctx.run.out.join(&rfile),
        )?;
        (Some(file), Some(rfile))
    } else {
        (None, None)
    };
    let (mut fid, mut inception) = (None, None);
    if cfg.fid_samples > 0 {
        let mut all = Vec::new();
        for start in (0..cfg.fid_samples).step_by(500) {
            let n = 500.min(cfg.fid_samples - start);
            let z = noise.gaussian((n, run.z_dim), DType::F32, device)?;
            all.push(decode_pixels(&z)?.to_device(&candle_core::Device::Cpu)?);
        }
        let samples = Tensor::cat(&all, 0)?;
        let cache = cfg
            .feature_cache
            .clone()
            .unwrap_or_else(|| ctx.run.data_dir.join("feature-nets"));
        match run.data {
            Table6Data::Mnist => {
                fid = Some(crate::setup::mnist_lenet_quality(
                    &samples,
                    ctx.run.data_dir,
                    cfg.feature_cache.as_deref(),
                    device,
                    ctx.run.control.progress,
                )?)
            }
            Table6Data::Celeba => {
                let net = load_inception(ctx.run.data_dir, device)?;
                let c = &cfg.celeba;
                let name = format!(
                    "celeba-crop{}-{}px-test{}-seed{}",
                    c.crop, c.image_size, c.test_images, cfg.seed
                );
                let reference = || -> Result<Tensor> {
                    let x = images.test_images(c.test_images, cfg.seed ^ 0xf1d, device)?;
                    Ok(images
                        .data_to_pixels(&x)?
                        .to_device(&candle_core::Device::Cpu)?)
                };
                inception = Some(inception_quality(
                    &net,
                    &samples,
                    &name,
                    reference,
                    &cache,
                    ctx.run.control.progress,
                )?);
            }
        }
    }
    let report = EvalReport {
        run,
        nll,
        ais_acceptance,
        ais_seconds,
        fid,
        inception,
        samples_png,
        reconstructions_png,
    };
    write_json(&dir.join("eval.json"), &report)?;
    Ok(report)
}
