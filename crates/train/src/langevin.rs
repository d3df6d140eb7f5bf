//! Annealed Langevin dynamics for deep EBMs (FD-SM App. C.2, after Li et al. 2019):
//! `x <- x + eta^2/2 grad log p(x) + sqrt(T) eta z` with the temperature `T` held at `t_max`,
//! lowered linearly to 1, then to 0, followed by one denoising step `x <- x + d^2 grad log p(x)`.

use candle_core::{Result, Tensor};
use sm_objectives::autodiff::input_gradient;
use sm_objectives::{LogDensity, NoiseSource};

/// The temperature schedule and step sizes.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LangevinSchedule {
    /// Steps at the initial temperature (paper: 500).
    pub hold_steps: usize,
    /// Steps lowering the temperature from `t_max` to 1 (paper: 2000).
    pub anneal_steps: usize,
    /// Steps lowering it from 1 to 0 (paper: 200).
    pub cool_steps: usize,
    /// Initial temperature (paper: 100).
    pub t_max: f64,
    /// Step size `eta` (paper: 0.02).
    pub step_size: f64,
    /// Final denoising step `d` (paper: 0.1).
    pub denoise: f64,
}

impl LangevinSchedule {
    /// The paper's 2700-step schedule.
    pub fn paper() -> Self {
        Self {
            hold_steps: 500,
            anneal_steps: 2000,
            cool_steps: 200,
            t_max: 100.0,
            step_size: 0.02,
            denoise: 0.1,
        }
    }

    /// The temperature at step `k`.
    pub fn temperature(&self, k: usize) -> f64 {
        let lerp = |a: f64, b: f64, i: usize, n: usize| {
            if n <= 1 {
                b
            } else {
                a + (b - a) * i as f64 / (n - 1) as f64
            }
        };
        if k < self.hold_steps {
            self.t_max
        } else if k < self.hold_steps + self.anneal_steps {
            lerp(self.t_max, 1.0, k - self.hold_steps, self.anneal_steps)
        } else {
            lerp(
                1.0,
                0.0,
                k - self.hold_steps - self.anneal_steps,
                self.cool_steps,
            )
        }
    }

    /// Total Langevin steps.
    pub fn total(&self) -> usize {
        self.hold_steps + self.anneal_steps + self.cool_steps
    }
}

/// What the sampler produced: the chains' state after the last Langevin step and the samples
/// after the denoising step.
#[derive(Debug, Clone)]
pub struct LangevinOutput {
    /// The state after the last Langevin step, before denoising.
    pub last: Tensor,
    /// `last + d^2 grad log p(last)`: the samples.
    pub denoised: Tensor,
}

/// Runs the sampler from `x0` and returns the final (denoised) samples.
pub fn annealed_langevin<M: LogDensity + ?Sized>(
    model: &M,
    x0: &Tensor,
    schedule: &LangevinSchedule,
    noise: &mut NoiseSource,
) -> Result<Tensor> {
    Ok(annealed_langevin_with_last(model, x0, schedule, noise)?.denoised)
}

/// Runs the sampler from `x0` and returns its last Langevin state beside the denoised samples
/// (to show what the denoising step does).
pub fn annealed_langevin_with_last<M: LogDensity + ?Sized>(
    model: &M,
    x0: &Tensor,
    schedule: &LangevinSchedule,
    noise: &mut NoiseSource,
) -> Result<LangevinOutput> {
    let eta = schedule.step_size;
    let mut x = x0.detach();
    for k in 0..schedule.total() {
        let score = input_gradient(model, &x)?.score.detach();
        let temp = schedule.temperature(k);
        let z = noise.gaussian_like(&x)?;
        x = ((x + (score * (0.5 * eta * eta))?)? + (z * (temp.sqrt() * eta))?)?.detach();
    }
    let score = input_gradient(model, &x)?.score.detach();
    let denoised = (&x + (score * (schedule.denoise * schedule.denoise))?)?
        .detach()
        .contiguous()?;
    Ok(LangevinOutput {
        last: x.contiguous()?,
        denoised,
    })
}
