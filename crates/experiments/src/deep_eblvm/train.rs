//! One row of the deep-EBLVM experiment in its own process: BiMDSM or VaGES-MDSM training
//! (BiSM Algorithm 1 with the Fisher lower level and `N = 0`; VaGES Algorithm 1 with refined
//! particles) on the shared trainer, then the evaluation: samples by annealed Langevin
//! dynamics, the posterior's Fisher divergence on test digits, and the linear probe.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var, D};
use latent::bism::{bism_score_at, fisher_per_sample, mdsm_functional};
use latent::sampling::{Conditional, JointState};
use latent::vages::{sgld_refine, vaes_score, vages_score};
use models::{ConvGaussianPosterior, DeepEblvm};
use serde::{Deserialize, Serialize};
use sm_objectives::{NoiseSource, Reduction};
use train::langevin::annealed_langevin_with_last;
use train::linear_probe::LinearProbe;

use crate::error::{ExpError, Result};
use crate::optim::{clip_grad_norm, cosine_lr, Adam, AdamConfig, LrSchedule};
use crate::plot::{save_image_grid_scaled, save_image_grids_side_by_side};
use crate::runner::{ExperimentRow, RowContext};
use crate::trainer::{train_with_state, StepRecord, TrainState};
use crate::{memory, setup, step_seed};

use super::{DeepEblvmExpConfig, Method, Run};

/// Test digits whose posterior means condition the conditioned samples (the reference's).
pub const CONDITIONED_DIGITS: [u32; 4] = [0, 1, 4, 9];
/// Samples per conditioned digit.
pub const PER_DIGIT: usize = 5;

/// Training losses averaged over `log_every` steps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Steps completed.
    pub step: u64,
    /// The higher-level (MDSM) loss.
    pub loss: f64,
    /// The lower level's Fisher divergence `1/2 |grad_h log q - grad_h log p~|^2` at the last
    /// posterior update of the step (BiSM Eq. 11, Fig. 5 c-d).
    pub fisher: f64,
    /// Training wall time so far, seconds.
    pub seconds: f64,
}

/// One row's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RowResult {
    /// Row.
    pub run: Run,
    /// Losses along training.
    pub curve: Vec<CurvePoint>,
    /// Mean training step, ms.
    pub ms_per_step: f64,
    /// Resident memory before the first training step (data, networks, optimisers), bytes.
    #[serde(default)]
    pub base_rss_bytes: Option<u64>,
    /// Peak resident memory of the training steps, bytes (VaGES App. Table 2's memory column).
    #[serde(default)]
    pub step_peak_rss_bytes: Option<u64>,
    /// Linear-probe test accuracy of the trained posterior's means.
    pub probe_accuracy: f64,
    /// The same for the posterior at initialisation (the untrained network's features).
    pub probe_accuracy_init: f64,
    /// The probe objective's gradient norm after fitting (near zero: converged).
    pub probe_gradient_norm: f64,
    /// The posterior's Fisher divergence on clean test digits, mean per image.
    pub test_fisher: f64,
    /// Mean energy `E(v, h)` of the joint samples.
    pub sample_energy: f64,
    /// Mean energy `E(v, mu(v))` of test digits.
    pub test_energy: f64,
    /// Sample grids, relative to the row's directory.
    pub grids: Vec<String>,
}

/// What a row carries from step to step besides the energy's parameters; it travels in the
/// checkpoint so that a resumed run continues exactly.
struct RowState {
    /// Adam over the posterior's parameters (the lower level).
    q_adam: Adam,
    /// Curve points so far.
    curve: Vec<CurvePoint>,
    /// The current window's sums: loss, Fisher, steps.
    window: (f64, f64, u64),
    /// The Fisher divergence of the step in progress.
    last_fisher: f64,
    /// Resident memory `(before the first step, peak of the steps)` of the process segment
    /// (first run or a resumption) whose steps needed the most, bytes; saved with the checkpoint,
    /// so that resuming a finished run keeps it.
    memory: Option<(u64, u64)>,
}

impl RowState {
    /// Takes this process's peak over the steps so far, started at `base`, if it is the larger
    /// working set.
    fn note_memory(&mut self, base: Option<u64>) {
        let (Some(base), Some(peak)) = (base, memory::peak_rss_bytes()) else {
            return;
        };
        let larger = self
            .memory
            .is_none_or(|(b, p)| peak.saturating_sub(base) >= p.saturating_sub(b));
        if larger {
            self.memory = Some((base, peak));
        }
    }
}

impl TrainState for RowState {
    fn tensors(&self) -> train::Result<Vec<(String, Tensor)>> {
        Ok(self.q_adam.state_tensors("q/")?)
    }

    fn json(&self) -> train::Result<serde_json::Value> {
        Ok(serde_json::json!({
            "curve": self.curve,
            "window": self.window,
            "memory": self.memory,
        }))
    }

    fn restore(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        json: &serde_json::Value,
    ) -> train::Result<()> {
        #[derive(Deserialize)]
        struct Saved {
            curve: Vec<CurvePoint>,
            window: (f64, f64, u64),
            #[serde(default)]
            memory: Option<(u64, u64)>,
        }
        let saved: Saved = serde_json::from_value(json.clone())
            .map_err(|e| train::TrainError::Config(format!("bad saved curve: {e}")))?;
        self.q_adam.load_state("q/", tensors)?;
        self.curve = saved.curve;
        self.window = saved.window;
        self.memory = saved.memory;
        Ok(())
    }
}

/// MNIST padded to 32 x 32 with its labels.
struct Digits {
    train: Tensor,
    train_labels: Vec<u32>,
    test: Tensor,
    test_labels: Vec<u32>,
}

fn load_digits(data_dir: &std::path::Path, device: &Device) -> Result<Digits> {
    let d = datasets::load_idx_dataset(data_dir, datasets::IdxDataset::Mnist, &Device::Cpu)?;
    let pad = |t: &Tensor| -> Result<Tensor> {
        Ok(t.pad_with_zeros(2, 2, 2)?
            .pad_with_zeros(3, 2, 2)?
            .to_device(device)?)
    };
    let labels = |t: &Tensor| -> Result<Vec<u32>> { Ok(t.to_dtype(DType::U32)?.to_vec1::<u32>()?) };
    Ok(Digits {
        train: pad(&d.train.images)?,
        train_labels: labels(&d.train.labels)?,
        test: pad(&d.test.images)?,
        test_labels: labels(&d.test.labels)?,
    })
}

fn column(values: &[f64], device: &Device) -> Result<Tensor> {
    Ok(Tensor::from_vec(
        values.iter().map(|&v| v as f32).collect::<Vec<_>>(),
        (values.len(), 1, 1, 1),
        device,
    )?)
}

/// The higher-level loss of one batch `x` at noise levels `sigmas` (one per image), with the
/// posterior frozen.
fn higher_loss(
    cfg: &DeepEblvmExpConfig,
    method: Method,
    model: &DeepEblvm,
    q: &ConvGaussianPosterior,
    x: &Tensor,
    sigmas: &[f64],
    noise: &mut NoiseSource,
) -> candle_core::Result<Tensor> {
    let eps = noise.gaussian_like(x)?;
    let sig = column(sigmas, x.device()).map_err(candle_core::Error::wrap)?;
    let v = (x + eps.broadcast_mul(&sig)?)?.detach();
    let q = q.detached();
    let eps_flat = eps.flatten_from(1)?;
    let mdsm = |score: &Tensor| {
        mdsm_functional(
            &score.flatten_from(1)?,
            &eps_flat,
            sigmas,
            cfg.sigma0,
            Reduction::Mean,
        )
    };
    match method {
        Method::Bimdsm => {
            let h = q.sample(&v, noise)?.detach();
            mdsm(&bism_score_at(model, &q, &v, &h)?.score)
        }
        Method::VagesMdsm => {
            // As the reference: the loss's slope in the score, `z`, at the VaES value of one set
            // of particles, and the score's parameter gradient (VaGES: mean plus covariance
            // term) from an independent set, so that their product is unbiased.
            let g = model.visible_features(&v)?.detach();
            let particles = |noise: &mut NoiseSource| -> candle_core::Result<Vec<Tensor>> {
                let mut hs = Vec::with_capacity(cfg.particles);
                for _ in 0..cfg.particles {
                    let h0 = q.sample(&v, noise)?;
                    hs.push(sgld_refine(
                        |h| model.energy_from_features(&g, h)?.neg(),
                        &h0,
                        cfg.sgld_steps,
                        cfg.sgld_alpha,
                        cfg.sgld_sigma,
                        cfg.sgld_clip,
                        noise,
                    )?);
                }
                Ok(hs)
            };
            let for_value = particles(noise)?;
            let for_gradient = particles(noise)?;
            let value_score = Var::from_tensor(&vaes_score(model, &v, &for_value)?.score.detach())?;
            let value = mdsm(value_score.as_tensor())?;
            let z = match value.backward()?.remove(value_score.as_tensor()) {
                Some(z) => z.detach(),
                None => value_score.as_tensor().zeros_like()?,
            };
            let surrogate = (vages_score(model, &v, &for_gradient)?.score * z)?.sum_all()?;
            value.detach() + (&surrogate - surrogate.detach())?
        }
    }
}

/// `K` Adam steps of the posterior on the Fisher lower level (BiSM Eq. 11), each at fresh
/// noise, per image divided by its noise level as the reference; the energy is frozen, so its
/// trunk runs once per step without a graph. Returns the last step's mean Fisher divergence.
#[allow(clippy::too_many_arguments)]
fn lower_level(
    cfg: &DeepEblvmExpConfig,
    model: &DeepEblvm,
    q: &ConvGaussianPosterior,
    q_adam: &mut Adam,
    lr: f64,
    x: &Tensor,
    sigmas: &[f64],
    noise: &mut NoiseSource,
) -> candle_core::Result<f64> {
    let sig = column(sigmas, x.device()).map_err(candle_core::Error::wrap)?;
    let sig_flat = sig.flatten_all()?;
    let mut last = f64::NAN;
    for _ in 0..cfg.lower_steps {
        let v = (x + noise.gaussian_like(x)?.broadcast_mul(&sig)?)?.detach();
        let g = model.visible_features(&v)?.detach();
        let per = fisher_per_sample(|h| model.energy_from_features(&g, h)?.neg(), q, &v, noise)?;
        last = per.mean_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let weighted = (per / &sig_flat)?.mean_all()?;
        let mut grads = weighted.backward()?;
        if cfg.clip.is_some() {
            let vars = q_adam.vars().to_vec();
            clip_grad_norm(&mut grads, &vars, cfg.clip)?;
        }
        q_adam.step_with_lr(&grads, lr)?;
    }
    Ok(last)
}

/// Posterior means of `images`, in batches, as a detached `[N, latent]`.
fn posterior_means(q: &ConvGaussianPosterior, images: &Tensor) -> Result<Tensor> {
    let n = images.dim(0)?;
    let mut out = Vec::new();
    let mut start = 0;
    while start < n {
        let len = (n - start).min(500);
        out.push(q.moments(&images.narrow(0, start, len)?)?.0.detach());
        start += len;
    }
    Ok(Tensor::cat(&out, 0)?)
}

/// The posterior's mean Fisher divergence at clean images, in batches.
fn mean_fisher(
    model: &DeepEblvm,
    q: &ConvGaussianPosterior,
    images: &Tensor,
    noise: &mut NoiseSource,
) -> Result<f64> {
    let n = images.dim(0)?;
    let (mut sum, mut start) = (0.0, 0);
    while start < n {
        let len = (n - start).min(100);
        let v = images.narrow(0, start, len)?;
        let g = model.visible_features(&v)?.detach();
        let per = fisher_per_sample(
            |h| model.energy_from_features(&g, h)?.neg(),
            &q.detached(),
            &v,
            noise,
        )?;
        sum += per.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
        start += len;
    }
    Ok(sum / n as f64)
}

/// Trains one row (resuming from the checkpoint in the row's directory when the run asks) and
/// evaluates it; `None` when the run paused it.
///
/// # Errors
/// Missing data, tensor and checkpoint errors, a diverging loss, plotting errors.
pub fn run_row(ctx: &RowContext, cfg: &DeepEblvmExpConfig, run: Run) -> Result<Option<RowResult>> {
    let device = ctx.run.device;
    let digits = load_digits(ctx.run.data_dir, device)?;
    let seed = run.seed_value(cfg);
    let setup::SeededDeepEblvm {
        varmap: vm,
        model,
        q_vars,
        posterior: q,
    } = setup::seeded_deep_eblvm(&cfg.model, &cfg.posterior, seed, device)?;
    let adam = AdamConfig {
        beta1: 0.9,
        beta2: cfg.beta2,
        eps: 1e-8,
    };
    let mut state = RowState {
        q_adam: Adam::new(q_vars.clone(), adam)?,
        curve: Vec::new(),
        window: (0.0, 0.0, 0),
        last_fisher: f64::NAN,
        memory: None,
    };
    // The memory column is the training steps' own working set, counted from the first step of
    // this process.
    crate::allocator::release_free_memory();
    let base_rss_bytes = memory::rss_bytes();
    memory::reset_peak();
    let sigmas = cfg.sigmas()?;
    let mut batcher = datasets::Batcher::new(digits.train.dim(0)?, cfg.batch, seed)?;
    let method = run.method;
    let (lr, lower_lr) = cfg.learning_rates(method);
    let mut loss_at = |step: u64, st: &mut RowState| -> candle_core::Result<Tensor> {
        let x = batcher
            .batch(&digits.train, step)
            .map_err(candle_core::Error::wrap)?;
        let mut noise = NoiseSource::new(step_seed(seed, step));
        let lr = cosine_lr(lower_lr, step, cfg.iters);
        st.last_fisher = lower_level(cfg, &model, &q, &mut st.q_adam, lr, &x, &sigmas, &mut noise)?;
        higher_loss(cfg, method, &model, &q, &x, &sigmas, &mut noise)
    };
    let mut after = |r: &StepRecord, st: &mut RowState| -> Result<()> {
        st.window.0 += r.loss;
        st.window.1 += st.last_fisher;
        st.window.2 += 1;
        let done = r.step + 1;
        if done % cfg.log_every == 0 || done == cfg.iters {
            let k = st.window.2.max(1) as f64;
            st.curve.push(CurvePoint {
                step: done,
                loss: st.window.0 / k,
                fisher: st.window.1 / k,
                seconds: r.train_seconds,
            });
            st.window = (0.0, 0.0, 0);
            st.note_memory(base_rss_bytes);
        }
        Ok(())
    };
    // What a checkpoint must match: the training settings, not the evaluation's.
    let identity = DeepEblvmExpConfig {
        profile: String::new(),
        methods: vec![run.method],
        seeds: run.seed + 1,
        samples: 0,
        probe_train: 0,
        probe_test: 0,
        checkpoint_every: 0,
        langevin: train::langevin::LangevinSchedule::paper(),
        probe: train::linear_probe::LinearProbeSettings::default(),
        ..cfg.clone()
    };
    let mut opts = ctx
        .train_options(cfg.iters, lr, cfg.checkpoint_every, run.label(), &identity)?
        .with_schedule(LrSchedule::Cosine)
        .with_adam(adam);
    if let Some(c) = cfg.clip {
        opts = opts.with_clip(c);
    }
    opts.explode_threshold = 1e12;
    let summary = train_with_state(&vm, &opts, &mut state, &mut loss_at, &mut after)?;
    if summary.completed < cfg.iters {
        return Ok(None);
    }
    let trained = Trained {
        state,
        train_seconds: summary.train_seconds,
    };
    evaluate(ctx, cfg, run, &model, &q, &digits, trained).map(Some)
}

/// What training hands to the evaluation besides the networks.
struct Trained {
    state: RowState,
    train_seconds: f64,
}

/// Samples, the posterior's test Fisher divergence and the probes.
fn evaluate(
    ctx: &RowContext,
    cfg: &DeepEblvmExpConfig,
    run: Run,
    model: &DeepEblvm,
    q: &ConvGaussianPosterior,
    digits: &Digits,
    trained: Trained,
) -> Result<RowResult> {
    let device = ctx.run.device;
    let seed = run.seed_value(cfg);
    let mut noise = NoiseSource::new(seed ^ 0xe7a1);
    let progress = ctx.run.control.progress;
    let latent = cfg.model.latent;
    let say = |what: &str| {
        if progress {
            eprintln!("{}: {what}", run.label());
        }
    };

    // The linear probe on posterior means, trained and at initialisation.
    say("linear probe on the posterior means");
    let probe_train = digits.train.narrow(0, 0, cfg.probe_train)?;
    let probe_test = digits.test.narrow(0, 0, cfg.probe_test)?;
    let train_labels = &digits.train_labels[..cfg.probe_train];
    let test_labels = &digits.test_labels[..cfg.probe_test];
    let fit = |q: &ConvGaussianPosterior| -> Result<(f64, f64)> {
        let probe = LinearProbe::fit(
            &posterior_means(q, &probe_train)?,
            train_labels,
            10,
            &cfg.probe,
        )?;
        let acc = probe.accuracy(&posterior_means(q, &probe_test)?, test_labels)?;
        Ok((acc, probe.final_gradient_norm))
    };
    let (probe_accuracy, probe_gradient_norm) = fit(q)?;
    let q_init = setup::seeded_deep_eblvm(&cfg.model, &cfg.posterior, seed, device)?.posterior;
    let (probe_accuracy_init, _) = fit(&q_init)?;

    say("the posterior's Fisher divergence on test digits");
    let fisher_images = digits.test.narrow(0, 0, cfg.probe_test.min(500))?;
    let test_fisher = mean_fisher(model, q, &fisher_images, &mut noise)?;
    let test_mu = posterior_means(q, &fisher_images)?;
    let test_energy = mean_of(&model.energy(&fisher_images, &test_mu)?)?;

    let n = cfg.samples;
    let mut grids = Vec::new();
    let start_v = |noise: &mut NoiseSource, count: usize| -> Result<Tensor> {
        Ok((noise.gaussian((count, 1, 32, 32), DType::F32, device)? + 0.5)?)
    };

    // Joint samples of (v, h).
    say("joint samples");
    let joint = JointState::new(model, &[1, 32, 32], latent)?;
    let x0 = joint.join(
        &start_v(&mut noise, n)?,
        &(noise.gaussian((n, latent), DType::F32, device)? + 0.5)?,
    )?;
    let out = annealed_langevin_with_last(&joint, &x0, &cfg.langevin, &mut noise)?;
    let (v_joint, h_joint) = joint.split(&out.denoised)?;
    let sample_energy = mean_of(&model.energy(&v_joint, &h_joint)?)?;
    let cols = (n as f64).sqrt().ceil() as usize;
    save_image_grid_scaled(
        &v_joint.clamp(0.0, 1.0)?,
        cols,
        3,
        &ctx.dir.join("joint.png"),
    )?;
    grids.push("joint.png".to_string());

    // Samples of v given the posterior mean of random training images (`via_q`).
    say("samples via the posterior");
    let total = digits.train.dim(0)?;
    let picks: Vec<u32> = noise
        .uniform_like(&Tensor::zeros(n, DType::F64, &Device::Cpu)?)?
        .to_vec1::<f64>()?
        .into_iter()
        .map(|u| ((u * total as f64) as usize).min(total - 1) as u32)
        .collect();
    let picked = digits
        .train
        .index_select(&Tensor::new(picks.as_slice(), device)?, 0)?;
    let mu = q.moments(&picked)?.0.detach();
    let out = annealed_langevin_with_last(
        &Conditional::new(model, &mu),
        &start_v(&mut noise, n)?,
        &cfg.langevin,
        &mut noise,
    )?;
    save_image_grids_side_by_side(
        &[&picked, &out.denoised.clamp(0.0, 1.0)?],
        cols,
        3,
        &ctx.dir.join("via_posterior.png"),
    )?;
    grids.push("via_posterior.png".to_string());

    // Samples conditioned on the posterior means of test digits.
    say("samples conditioned on test digits");
    let mut sources = Vec::new();
    for digit in CONDITIONED_DIGITS {
        let i = digits
            .test_labels
            .iter()
            .position(|&l| l == digit)
            .ok_or_else(|| ExpError::Config(format!("MNIST's test split has no digit {digit}")))?;
        sources.push(digits.test.narrow(0, i, 1)?);
    }
    let sources = Tensor::cat(&sources, 0)?;
    let mu = q.moments(&sources)?.0.detach();
    let h = mu
        .unsqueeze(1)?
        .repeat((1, PER_DIGIT, 1))?
        .reshape((CONDITIONED_DIGITS.len() * PER_DIGIT, latent))?;
    let out = annealed_langevin_with_last(
        &Conditional::new(model, &h),
        &start_v(&mut noise, h.dim(0)?)?,
        &cfg.langevin,
        &mut noise,
    )?;
    // One row per digit: the test digit, then its samples.
    let samples =
        out.denoised
            .clamp(0.0, 1.0)?
            .reshape((CONDITIONED_DIGITS.len(), PER_DIGIT, 1, 32, 32))?;
    let rows = Tensor::cat(&[sources.unsqueeze(1)?, samples], 1)?.reshape((
        CONDITIONED_DIGITS.len() * (PER_DIGIT + 1),
        1,
        32,
        32,
    ))?;
    save_image_grid_scaled(&rows, PER_DIGIT + 1, 3, &ctx.dir.join("conditioned.png"))?;
    grids.push("conditioned.png".to_string());

    Ok(RowResult {
        run,
        curve: trained.state.curve,
        ms_per_step: trained.train_seconds * 1e3 / cfg.iters as f64,
        base_rss_bytes: trained.state.memory.map(|m| m.0),
        step_peak_rss_bytes: trained.state.memory.map(|m| m.1),
        probe_accuracy,
        probe_accuracy_init,
        probe_gradient_norm,
        test_fisher,
        sample_energy,
        test_energy,
        grids,
    })
}

fn mean_of(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?
        .mean(D::Minus1)?
        .to_scalar::<f64>()?)
}
