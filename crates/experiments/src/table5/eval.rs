//! Evaluating one row of Table 5 (the `eval` phase) with its final parameters: samples by
//! annealed Langevin dynamics (Song and Ermon 2019, Alg. 1: from `U[0, 1]`, at each level `i`
//! with step `alpha_i = step_lr (sigma_i / sigma_L)^2`, `x <- x + alpha_i s(x, i) +
//! sqrt(2 alpha_i) z`; optionally one denoising step `x + sigma_L^2 s(x, L)` at the end), a
//! PNG grid, and FID / KID (LeNet features on the MNIST family, Inception on CIFAR-10).

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use models::Ncsn;
use serde::{Deserialize, Serialize};
use sm_objectives::NoiseSource;

use crate::error::{ExpError, Result};
use crate::inception_fid::{inception_quality, load_inception, InceptionQuality};
use crate::plot::save_image_grids_side_by_side;
use crate::report::write_json;
use crate::runner::RowContext;

use super::train::{load_images, model_config, weight_file};
use super::{Run, Table5Config, Table5Data};

/// What an evaluation child reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalReport {
    /// The run.
    pub run: Run,
    /// FID and KID with LeNet features (MNIST family; `None` without FID).
    pub lenet: Option<sample_quality::lenet::LeNetQuality>,
    /// FID and KID with Inception features (CIFAR-10; `None` without FID).
    pub inception: Option<InceptionQuality>,
    /// Wall time of the sampling, seconds.
    pub sampling_seconds: f64,
    /// The sample grid, relative to the results directory (first seed).
    pub samples_png: Option<PathBuf>,
}

/// Draws `n` samples `[n, C, S, S]` by annealed Langevin dynamics (module documentation),
/// `batch` at a time, on `device`; the values are not clamped.
///
/// # Errors
/// Tensor errors; non-finite samples.
pub fn annealed_langevin_samples(
    net: &Ncsn,
    cfg: &Table5Config,
    n: usize,
    noise: &mut NoiseSource,
    device: &Device,
    progress: Option<&str>,
) -> Result<Tensor> {
    let sigmas = cfg.sigmas()?;
    let last = sigmas[sigmas.len() - 1];
    let shape = model_config(cfg);
    let bar = match progress {
        Some(label) => {
            let bar = ProgressBar::new((n * sigmas.len() * cfg.langevin_steps) as u64);
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{bar:30}] {percent}% of the Langevin steps, {eta} left",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(label.to_string());
            bar
        }
        None => ProgressBar::hidden(),
    };
    let mut parts = Vec::new();
    for start in (0..n).step_by(250) {
        let b = 250.min(n - start);
        let dims = (b, shape.channels, shape.image_size, shape.image_size);
        let mut x = noise.uniform_like(&Tensor::zeros(dims, DType::F32, device)?)?;
        for (i, sigma) in sigmas.iter().enumerate() {
            let alpha = cfg.step_lr * (sigma / last).powi(2);
            let level = Tensor::from_vec(vec![i as u32; b], b, device)?;
            for _ in 0..cfg.langevin_steps {
                let s = net.forward(&x, &level)?.detach();
                let z = noise.gaussian_like(&x)?;
                x = ((x + (s * alpha)?)? + (z * (2.0 * alpha).sqrt())?)?;
                bar.inc(b as u64);
            }
        }
        if cfg.denoise {
            let level = Tensor::from_vec(vec![(sigmas.len() - 1) as u32; b], b, device)?;
            x = (&x + (net.forward(&x, &level)?.detach() * (last * last))?)?;
        }
        let sum = x.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if !sum.is_finite() {
            return Err(ExpError::Config(format!(
                "annealed Langevin dynamics diverged (sum of the samples {sum}); a smaller \
                 step_lr or a longer-trained network is needed"
            )));
        }
        parts.push(x.to_device(&Device::Cpu)?);
    }
    bar.finish_and_clear();
    Ok(Tensor::cat(&parts, 0)?)
}

/// Evaluates one trained row.
///
/// # Errors
/// Data, parameter-file and I/O errors; diverged samples.
pub fn eval_run(ctx: &RowContext, cfg: &Table5Config, run: Run) -> Result<EvalReport> {
    cfg.validate()?;
    let dir = &ctx.dir;
    let device = ctx.run.device;
    let (mut vm, net) = crate::setup::seeded_ncsn(&model_config(cfg), run.seed_value(cfg), device)?;
    let file = weight_file(dir);
    vm.load(&file).map_err(|e| ExpError::Checkpoint {
        path: file.clone(),
        problem: format!("could not load the trained network: {e}"),
    })?;
    let n = cfg
        .fid_samples
        .max(if run.seed == 0 { cfg.samples } else { 0 });
    let t0 = Instant::now();
    let mut noise = NoiseSource::new(cfg.seed ^ 0x5a3 ^ u64::from(run.seed));
    let label = format!("{} sampling", run.label_text());
    let samples = if n > 0 {
        Some(annealed_langevin_samples(
            &net,
            cfg,
            n,
            &mut noise,
            device,
            ctx.run.control.progress.then_some(label.as_str()),
        )?)
    } else {
        None
    };
    let sampling_seconds = t0.elapsed().as_secs_f64();
    let pixels = samples.map(|s| s.clamp(0f32, 1f32)).transpose()?;
    let samples_png = match (&pixels, run.seed) {
        (Some(p), 0) => {
            let shown = p.narrow(0, 0, cfg.samples)?;
            let file = PathBuf::from(format!("samples_{}.png", run.key_text()));
            let cols = (cfg.samples as f64).sqrt().ceil() as usize;
            let scale = if cfg.data == Table5Data::Cifar10 {
                2
            } else {
                3
            };
            save_image_grids_side_by_side(&[&shown], cols, scale, &ctx.run.out.join(&file))?;
            Some(file)
        }
        _ => None,
    };
    let (mut lenet, mut inception) = (None, None);
    if let (Some(p), true) = (&pixels, cfg.fid_samples > 0) {
        let p = p.narrow(0, 0, cfg.fid_samples)?;
        let cache = cfg
            .feature_cache
            .clone()
            .unwrap_or_else(|| ctx.run.data_dir.join("feature-nets"));
        match cfg.data {
            Table5Data::Mnist | Table5Data::FashionMnist => {
                let family = match cfg.data {
                    Table5Data::Mnist => sample_quality::lenet::MnistFamily::Mnist,
                    _ => sample_quality::lenet::MnistFamily::FashionMnist,
                };
                let net = sample_quality::lenet::load_or_train_lenet(
                    ctx.run.data_dir,
                    &cache,
                    family,
                    &sample_quality::lenet::LeNetTraining::default(),
                    device,
                    ctx.run.control.progress,
                )?;
                lenet = Some(net.evaluate(&p, ctx.run.data_dir, &cache)?);
            }
            Table5Data::Cifar10 => {
                let net = load_inception(ctx.run.data_dir, device)?;
                let reference = || -> Result<Tensor> { Ok(load_images(cfg, ctx.run.data_dir)?.1) };
                inception = Some(inception_quality(
                    &net,
                    &p,
                    "cifar-10-test",
                    reference,
                    &cache,
                    ctx.run.control.progress,
                )?);
            }
        }
    }
    let report = EvalReport {
        run,
        lenet,
        inception,
        sampling_seconds,
        samples_png,
    };
    write_json(&dir.join("eval.json"), &report)?;
    Ok(report)
}
