//! One objective's training steps timed in this process (the step benchmark's `measure`
//! phase): the median step after warm-up and the peak resident memory over the timed steps,
//! and the machine's matrix-product rate the report compares them with.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};
use sm_objectives::noise::linear_sigmas;
use sm_objectives::{LogDensity, NoiseSource};

use crate::error::{ExpError, Result};
use crate::objective::{MleSettings, MultiscaleNoise, Objective, ObjectiveSettings};
use crate::optim::{Adam, AdamConfig};
use crate::{memory, setup, step_seed};

use super::{BenchNet, StepBenchConfig};

/// Langevin steps per training step when `mle-langevin` is timed (each costs about one
/// forward and backward pass).
pub const MLE_BENCH_STEPS: usize = 20;

/// One objective's measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    /// Objective.
    pub objective: Objective,
    /// Median wall time of a step, ms.
    pub median_ms: f64,
    /// Fastest step, ms.
    pub min_ms: f64,
    /// Trainable parameters.
    pub params: usize,
    /// RSS before the timed steps (after warm-up), bytes.
    pub base_rss_bytes: Option<u64>,
    /// Peak RSS over the timed steps, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Loss of the last step (a sanity value, not a result).
    pub last_loss: f64,
}

/// Times one objective in this process (the `measure` phase).
///
/// # Errors
/// Configuration and tensor errors; higher-order mode off for a gradient-based objective.
pub fn measure(cfg: &StepBenchConfig, objective: Objective, dev: &Device) -> Result<StepResult> {
    cfg.validate()?;
    if objective.gradient_based() {
        sm_objectives::autodiff::ensure_higher_order()?;
    }
    match cfg.net {
        BenchNet::Resnet => {
            let (vm, net) = setup::seeded_resnet_ebm(&cfg.model, cfg.seed, dev)?;
            let size = cfg.model.image_size;
            let shape = (cfg.batch, cfg.model.in_channels, size, size);
            time_steps(
                cfg,
                objective,
                &vm,
                &net,
                &Tensor::zeros(shape, DType::F32, dev)?,
            )
        }
        BenchNet::Nice => {
            let (vm, net) = setup::seeded_nice(&cfg.nice, cfg.seed, dev)?;
            time_steps(
                cfg,
                objective,
                &vm,
                &net,
                &Tensor::zeros((cfg.batch, cfg.nice.dim), DType::F32, dev)?,
            )
        }
        BenchNet::Mlp => {
            let (vm, net) = setup::seeded_mlp(&cfg.mlp, cfg.seed, dev)?;
            let shape = (cfg.batch, cfg.mlp.sizes[0]);
            time_steps(
                cfg,
                objective,
                &vm,
                &net,
                &Tensor::zeros(shape, DType::F32, dev)?,
            )
        }
    }
}

/// The timed steps of [`measure`] on the network `net` (variables `vm`), with a fixed uniform
/// batch of the shape of `zeros`.
fn time_steps<M: LogDensity>(
    cfg: &StepBenchConfig,
    objective: Objective,
    vm: &VarMap,
    net: &M,
    zeros: &Tensor,
) -> Result<StepResult> {
    let dev = zeros.device();
    let (_, vars) = crate::trainer::named_vars(vm);
    let params: usize = vars.iter().map(|v| v.elem_count()).sum();
    let mut adam = Adam::new(vars, AdamConfig::default())?;
    let x = NoiseSource::new(cfg.seed ^ 0xba7c).uniform_like(zeros)?;
    let sigmas = linear_sigmas(cfg.sigma_min, cfg.sigma_max, cfg.batch)?;
    let settings = ObjectiveSettings {
        sigma: cfg.sigma,
        eps: cfg.eps,
        multiscale: Some(MultiscaleNoise {
            sigmas: Tensor::new(sigmas.as_slice(), dev)?.to_dtype(DType::F32)?,
            sigma0: cfg.sigma,
        }),
        // Short-run chains (no buffer): the cost of a step does not depend on where the chains
        // start.
        mle: Some(MleSettings::image_practice(MLE_BENCH_STEPS, 0)),
    };
    let mut step = |i: u64| -> Result<(f64, f64)> {
        let t = Instant::now();
        let mut noise = NoiseSource::new(step_seed(cfg.seed, i));
        let loss = objective.loss(net, &x, &mut noise, &settings)?;
        let grads = loss.backward()?;
        adam.step_with_lr(&grads, cfg.lr)?;
        let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        Ok((t.elapsed().as_secs_f64() * 1e3, value))
    };
    for i in 0..cfg.warmup {
        step(i as u64)?;
    }
    let base = memory::rss_bytes();
    memory::reset_peak();
    let mut times = Vec::with_capacity(cfg.steps);
    let mut last = f64::NAN;
    for i in 0..cfg.steps {
        let (ms, loss) = step((cfg.warmup + i) as u64)?;
        if !loss.is_finite() {
            return Err(ExpError::Config(format!(
                "{} produced a non-finite loss at step {i}",
                objective.key()
            )));
        }
        times.push(ms);
        last = loss;
    }
    let peak = memory::peak_rss_bytes();
    times.sort_by(f64::total_cmp);
    Ok(StepResult {
        objective,
        median_ms: times[times.len() / 2],
        min_ms: times[0],
        params,
        base_rss_bytes: base,
        peak_rss_bytes: peak,
        last_loss: last,
    })
}

/// Floating-point operations of one step of `objective` in the network's convolutions and
/// head, in GFLOP: `forward_passes x batch` images, each a forward pass and a backward pass
/// to inputs and weights (twice the forward's work), two FLOPs per multiply-accumulate. The
/// count is the usual nominal one (zero-padding taps included) and the same for both
/// frameworks; `None` where [`Objective::forward_passes`] is.
pub fn step_gflop(cfg: &StepBenchConfig, objective: Objective) -> Option<f64> {
    let images = objective.forward_passes()? * cfg.batch as u64;
    let macs = match cfg.net {
        BenchNet::Resnet => cfg.model.forward_macs_per_image(),
        BenchNet::Mlp => cfg.mlp.forward_macs_per_sample(),
        BenchNet::Nice => cfg.nice.forward_macs_per_sample(),
    };
    Some(3.0 * 2.0 * (macs * images) as f64 / 1e9)
}

/// Side of the square matrices of [`matmul_peak_gflops`].
pub const PEAK_MATMUL_SIZE: usize = 2048;

/// The machine's f32 matrix-product rate as Candle reaches it on the CPU (the `gemm` crate,
/// all threads): the best of five `2048 x 2048` products after one warm-up, in GFLOP/s. A step
/// that computes its convolutions directly (as matrix products, all nominal multiplications)
/// cannot run faster than its [`step_gflop`] at this rate; fast algorithms do fewer
/// multiplications (Winograd's, which `layers::conv2d` uses on most 3x3 layers, 2.25x fewer on
/// large maps), so for them the rate is a yardstick rather than a bound.
///
/// # Errors
/// Tensor errors.
pub fn matmul_peak_gflops(dev: &Device) -> Result<f64> {
    let n = PEAK_MATMUL_SIZE;
    let a = Tensor::ones((n, n), DType::F32, dev)?;
    let b = (Tensor::ones((n, n), DType::F32, dev)? * 0.5)?;
    a.matmul(&b)?;
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        let c = a.matmul(&b)?;
        best = best.min(t.elapsed().as_secs_f64());
        drop(c);
    }
    Ok(2.0 * (n * n * n) as f64 / best / 1e9)
}
