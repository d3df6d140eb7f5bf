//! Markov chains for energy models and maximum-likelihood training with them ("How to Train
//! Your Energy-Based Models", Song and Kingma 2021, Sec. 3): Langevin dynamics with the step size
//! and the noise scale as separate settings (SGLD as the EBM practice runs it, Du and Mordatch
//! 2019), Hamiltonian Monte Carlo with a Metropolis correction (Neal 2011), a replay buffer of
//! persistent chains, and the MLE surrogate loss `E_data[E] - E_model[E]` (Eq. 4) with the
//! energy-magnitude regulariser.
//!
//! Every draw comes from a seeded [`NoiseSource`]; the samplers return detached tensors.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sm_objectives::autodiff::input_gradient;
use sm_objectives::{LogDensity, NoiseSource};

use crate::error::{Result, TrainError};
use crate::trainer::TrainState;

fn config_err(msg: String) -> TrainError {
    TrainError::Config(msg)
}

/// Langevin dynamics `x <- x + step_size * grad log p(x) + noise_scale * z`, `z ~ N(0, I)`.
///
/// With `noise_scale = sqrt(2 step_size)` it is the unadjusted Langevin algorithm (Eq. 6 of the
/// tutorial with `eps^2 / 2 = step_size`), whose stationary law approaches `p` as the step
/// shrinks; the EBM practice uses a smaller noise (a colder chain) with a large step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sgld {
    /// Steps per call.
    pub steps: usize,
    /// Multiplier of the score.
    pub step_size: f64,
    /// Standard deviation of the added Gaussian noise.
    pub noise_scale: f64,
    /// Each step's score is clipped elementwise to `+-clip` (`None`: no clipping).
    pub clip: Option<f64>,
    /// The chains are clamped to `[low, high]` after every step (`None`: unbounded).
    pub bounds: Option<(f64, f64)>,
}

impl Sgld {
    /// The unadjusted Langevin algorithm: noise `sqrt(2 step_size)`, no clipping or bounds.
    pub fn unadjusted(steps: usize, step_size: f64) -> Self {
        Self {
            steps,
            step_size,
            noise_scale: (2.0 * step_size).sqrt(),
            clip: None,
            bounds: None,
        }
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// A non-positive or non-finite step size, a negative noise scale, a non-positive clip or
    /// empty bounds.
    pub fn validate(&self) -> Result<()> {
        if !(self.step_size.is_finite() && self.step_size > 0.0) {
            return Err(config_err(format!(
                "SGLD step_size must be positive and finite, got {}",
                self.step_size
            )));
        }
        if !(self.noise_scale.is_finite() && self.noise_scale >= 0.0) {
            return Err(config_err(format!(
                "SGLD noise_scale must be >= 0, got {}",
                self.noise_scale
            )));
        }
        if self.clip.is_some_and(|c| !(c.is_finite() && c > 0.0)) {
            return Err(config_err(format!(
                "SGLD clip must be positive, got {:?}",
                self.clip
            )));
        }
        if let Some((lo, hi)) = self.bounds {
            if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                return Err(config_err(format!(
                    "SGLD bounds must satisfy low < high, got ({lo}, {hi})"
                )));
            }
        }
        Ok(())
    }

    /// Runs [`Sgld::steps`] steps from `x0`, `[B, ...]`.
    ///
    /// # Errors
    /// Bad settings, the model's errors, a chain that left the finite numbers.
    pub fn run<M: LogDensity + ?Sized>(
        &self,
        model: &M,
        x0: &Tensor,
        noise: &mut NoiseSource,
    ) -> Result<Tensor> {
        self.validate()?;
        let mut x = x0.detach();
        for _ in 0..self.steps {
            let mut score = input_gradient(model, &x)?.score.detach();
            if let Some(c) = self.clip {
                score = score.clamp(-c, c)?;
            }
            let z = noise.gaussian_like(&x)?;
            x = ((x + (score * self.step_size)?)? + (z * self.noise_scale)?)?;
            if let Some((lo, hi)) = self.bounds {
                x = x.clamp(lo, hi)?;
            }
            x = x.detach();
        }
        check_finite(&x, "SGLD")?;
        Ok(x)
    }
}

/// Hamiltonian Monte Carlo with unit mass: `leapfrog_steps` leapfrog steps of size `step_size`
/// per transition, then a Metropolis accept/reject per chain, which makes `p` exactly invariant
/// whatever the step size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Hmc {
    /// Transitions per call.
    pub transitions: usize,
    /// Leapfrog step size.
    pub step_size: f64,
    /// Leapfrog steps per transition.
    pub leapfrog_steps: usize,
}

/// Chains after [`Hmc::run`] and the fraction of proposals accepted.
#[derive(Debug, Clone)]
pub struct HmcOutput {
    /// The chains' states, detached.
    pub x: Tensor,
    /// Accepted proposals / all proposals, over chains and transitions.
    pub acceptance: f64,
}

impl Hmc {
    /// Checks the settings.
    ///
    /// # Errors
    /// A non-positive step size or zero leapfrog steps.
    pub fn validate(&self) -> Result<()> {
        if !(self.step_size.is_finite() && self.step_size > 0.0) || self.leapfrog_steps == 0 {
            return Err(config_err(format!(
                "HMC needs step_size > 0 and leapfrog_steps >= 1, got {} and {}",
                self.step_size, self.leapfrog_steps
            )));
        }
        Ok(())
    }

    /// Runs [`Hmc::transitions`] transitions from `x0`, `[B, ...]` (one chain per row).
    ///
    /// # Errors
    /// Bad settings, the model's errors.
    pub fn run<M: LogDensity + ?Sized>(
        &self,
        model: &M,
        x0: &Tensor,
        noise: &mut NoiseSource,
    ) -> Result<HmcOutput> {
        self.validate()?;
        let b = x0.dim(0)?;
        let mut x = x0.detach();
        let mut accepted = 0.0;
        for _ in 0..self.transitions {
            let start = input_gradient(model, &x)?;
            let (logp0, score0) = (start.log_density.detach(), start.score.detach());
            let p0 = noise.gaussian_like(&x)?;
            let eps = self.step_size;
            // Leapfrog on U = -log p: p <- p + eps/2 grad log p, x <- x + eps p, ...
            let mut p = (&p0 + (score0 * (0.5 * eps))?)?;
            let mut y = x.clone();
            let mut logp1 = logp0.clone();
            for l in 0..self.leapfrog_steps {
                y = (&y + (&p * eps)?)?.detach();
                let g = input_gradient(model, &y)?;
                logp1 = g.log_density.detach();
                let half = l + 1 == self.leapfrog_steps;
                p = (&p + (g.score.detach() * if half { 0.5 * eps } else { eps })?)?;
            }
            // log acceptance ratio: H0 - H1 with H = -log p + |p|^2 / 2, per chain.
            let kinetic = |m: &Tensor| -> candle_core::Result<Tensor> {
                (m.sqr()?.flatten_from(1)?.sum(1)? * 0.5)?.to_dtype(DType::F64)
            };
            let log_ratio = ((logp1.to_dtype(DType::F64)? - logp0.to_dtype(DType::F64)?)?
                + (kinetic(&p0)? - kinetic(&p)?)?)?;
            let u = noise
                .uniform_like(&Tensor::zeros(b, DType::F64, &Device::Cpu)?)?
                .to_device(log_ratio.device())?;
            // Accept where log u < log ratio (NaN ratios reject).
            let accept = u.log()?.lt(&log_ratio)?;
            accepted += accept.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
            let mut shape = vec![b];
            shape.extend(std::iter::repeat_n(1, x.rank() - 1));
            let mask = accept.reshape(shape)?.broadcast_as(x.shape())?;
            x = mask.where_cond(&y, &x)?.detach();
        }
        Ok(HmcOutput {
            x,
            acceptance: accepted / (b * self.transitions).max(1) as f64,
        })
    }
}

/// The distribution fresh chains start from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum ChainInit {
    /// Uniform on `[low, high]` in every coordinate.
    Uniform {
        /// Lower end.
        low: f64,
        /// Upper end.
        high: f64,
    },
    /// `N(0, std^2)` in every coordinate.
    Gaussian {
        /// Standard deviation.
        std: f64,
    },
}

impl ChainInit {
    /// `n` fresh starting points of per-sample shape `dims`.
    ///
    /// # Errors
    /// Tensor errors.
    pub fn draw(
        &self,
        n: usize,
        dims: &[usize],
        dtype: DType,
        device: &Device,
        noise: &mut NoiseSource,
    ) -> Result<Tensor> {
        let mut shape = vec![n];
        shape.extend_from_slice(dims);
        let zeros = Tensor::zeros(shape, dtype, device)?;
        Ok(match *self {
            ChainInit::Uniform { low, high } => {
                ((noise.uniform_like(&zeros)? * (high - low))? + low)?
            }
            ChainInit::Gaussian { std } => (noise.gaussian_like(&zeros)? * std)?,
        })
    }
}

/// Persistent chains kept between training steps (Du and Mordatch 2019): each step starts its
/// chains from states drawn from the buffer, except that each is a fresh draw of
/// [`ChainInit`] with probability `reinit`, and writes the chains' end states back in their
/// place. Stored on the host in f32; checkpointed as a [`TrainState`].
#[derive(Debug, Clone)]
pub struct ReplayBuffer {
    dims: Vec<usize>,
    samples: Vec<f32>,
    capacity: usize,
    reinit: f64,
    init: ChainInit,
}

/// Chains drawn from a [`ReplayBuffer`]: their starting states and the buffer slots they
/// return to.
#[derive(Debug, Clone)]
pub struct BufferDraw {
    /// Starting states, `[B, ...]`.
    pub x: Tensor,
    /// The buffer slot of each chain.
    pub slots: Vec<usize>,
    /// How many chains started fresh.
    pub fresh: usize,
}

impl ReplayBuffer {
    /// A buffer of `capacity` chains of per-sample shape `dims`, filled with draws of `init`
    /// from a generator seeded with `seed`.
    ///
    /// # Errors
    /// A zero capacity or sample size, `reinit` outside `[0, 1]`.
    pub fn new(
        capacity: usize,
        dims: &[usize],
        reinit: f64,
        init: ChainInit,
        seed: u64,
    ) -> Result<Self> {
        let per: usize = dims.iter().product();
        if capacity == 0 || per == 0 {
            return Err(config_err(format!(
                "a replay buffer needs capacity >= 1 and a non-empty sample shape, got {capacity} and {dims:?}"
            )));
        }
        if !(0.0..=1.0).contains(&reinit) {
            return Err(config_err(format!(
                "the replay buffer's reinitialisation probability must be in [0, 1], got {reinit}"
            )));
        }
        let mut noise = NoiseSource::new(seed);
        let fill = init.draw(capacity, dims, DType::F32, &Device::Cpu, &mut noise)?;
        Ok(Self {
            dims: dims.to_vec(),
            samples: fill.flatten_all()?.to_vec1::<f32>()?,
            capacity,
            reinit,
            init,
        })
    }

    /// The number of chains kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// All chains, `[capacity, ...]`.
    ///
    /// # Errors
    /// Tensor errors.
    pub fn samples(&self, device: &Device) -> Result<Tensor> {
        let mut shape = vec![self.capacity];
        shape.extend_from_slice(&self.dims);
        Ok(Tensor::from_vec(self.samples.clone(), shape, device)?)
    }

    /// Draws `batch` chains (slots uniformly, with replacement), each replaced by a fresh start
    /// with probability `reinit`, as `dtype` on `device`.
    ///
    /// # Errors
    /// Tensor errors.
    pub fn draw(
        &self,
        batch: usize,
        dtype: DType,
        device: &Device,
        noise: &mut NoiseSource,
    ) -> Result<BufferDraw> {
        let per = self.samples.len() / self.capacity;
        let slots: Vec<usize> = (0..batch)
            .map(|_| noise.rng().random_range(0..self.capacity))
            .collect();
        let fresh_mask: Vec<bool> = (0..batch)
            .map(|_| noise.rng().random::<f64>() < self.reinit)
            .collect();
        let fresh_count = fresh_mask.iter().filter(|&&f| f).count();
        let fresh = self
            .init
            .draw(
                fresh_count.max(1),
                &self.dims,
                DType::F32,
                &Device::Cpu,
                noise,
            )?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let mut data = Vec::with_capacity(batch * per);
        let mut next_fresh = 0;
        for (slot, is_fresh) in slots.iter().zip(&fresh_mask) {
            if *is_fresh {
                data.extend_from_slice(&fresh[next_fresh * per..(next_fresh + 1) * per]);
                next_fresh += 1;
            } else {
                data.extend_from_slice(&self.samples[slot * per..(slot + 1) * per]);
            }
        }
        let mut shape = vec![batch];
        shape.extend_from_slice(&self.dims);
        let x = Tensor::from_vec(data, shape, &Device::Cpu)?
            .to_dtype(dtype)?
            .to_device(device)?;
        Ok(BufferDraw {
            x,
            slots,
            fresh: fresh_count,
        })
    }

    /// Writes chains `x`, `[B, ...]`, back into `slots` (a slot drawn twice keeps the last).
    ///
    /// # Errors
    /// A shape or slot that does not fit the buffer.
    pub fn store(&mut self, slots: &[usize], x: &Tensor) -> Result<()> {
        let per = self.samples.len() / self.capacity;
        if x.dim(0)? != slots.len() || x.elem_count() != slots.len() * per {
            return Err(config_err(format!(
                "replay buffer: {} slots for chains of shape {:?} (per-sample shape {:?})",
                slots.len(),
                x.dims(),
                self.dims
            )));
        }
        let values = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        for (i, &slot) in slots.iter().enumerate() {
            if slot >= self.capacity {
                return Err(config_err(format!(
                    "replay buffer slot {slot} is outside its {} chains",
                    self.capacity
                )));
            }
            self.samples[slot * per..(slot + 1) * per]
                .copy_from_slice(&values[i * per..(i + 1) * per]);
        }
        Ok(())
    }
}

/// The name of the buffer's tensor in a checkpoint.
pub const REPLAY_BUFFER: &str = "replay_buffer";

impl TrainState for ReplayBuffer {
    fn tensors(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(vec![(REPLAY_BUFFER.into(), self.samples(&Device::Cpu)?)])
    }

    fn json(&self) -> Result<serde_json::Value> {
        Ok(serde_json::json!({ "reinit": self.reinit, "init": self.init }))
    }

    fn restore(&mut self, tensors: &HashMap<String, Tensor>, _: &serde_json::Value) -> Result<()> {
        let t = tensors
            .get(REPLAY_BUFFER)
            .ok_or_else(|| config_err(format!("the checkpoint has no `{REPLAY_BUFFER}` tensor")))?;
        let mut shape = vec![self.capacity];
        shape.extend_from_slice(&self.dims);
        if t.dims() != shape.as_slice() {
            return Err(config_err(format!(
                "the checkpoint's replay buffer is {:?}, this run's is {shape:?}",
                t.dims()
            )));
        }
        self.samples = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(())
    }
}

/// The training state of a run that may keep persistent chains: the replay buffer (`None` for
/// a method without one) and a record that travels in the checkpoint's JSON, such as a loss
/// curve or a list of snapshots, so that a resumed run continues both.
#[derive(Debug, Clone, Default)]
pub struct ChainsAndRecord<T> {
    /// The persistent chains, when the method keeps them.
    pub buffer: Option<ReplayBuffer>,
    /// What the run records along training.
    pub record: T,
}

impl<T: Serialize + serde::de::DeserializeOwned> TrainState for ChainsAndRecord<T> {
    fn tensors(&self) -> Result<Vec<(String, Tensor)>> {
        match &self.buffer {
            Some(b) => b.tensors(),
            None => Ok(Vec::new()),
        }
    }

    fn json(&self) -> Result<serde_json::Value> {
        serde_json::to_value(&self.record)
            .map_err(|e| config_err(format!("the run's record does not serialise: {e}")))
    }

    fn restore(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        json: &serde_json::Value,
    ) -> Result<()> {
        if let Some(b) = &mut self.buffer {
            b.restore(tensors, json)?;
        }
        self.record = serde_json::from_value(json.clone())
            .map_err(|e| config_err(format!("the checkpoint's record does not read back: {e}")))?;
        Ok(())
    }
}

/// The maximum-likelihood surrogate loss of an energy model (`log p~ = -E`): its gradient is
/// `E_data[grad E] - E_neg[grad E]` (the tutorial's Eq. 4 with the model's samples `negatives`,
/// which must be detached), plus `alpha (E_data[E^2] + E_neg[E^2])`, the energy-magnitude
/// regulariser that keeps the energies near 0 (Du and Mordatch 2019; `alpha = 0` turns it off).
/// Its value is not a likelihood.
///
/// # Shapes
/// * `data`: `[B, ...]`, `negatives`: `[M, ...]`
/// * returns a scalar
///
/// # Errors
/// A negative `alpha`, the model's errors.
pub fn mle_loss<M: LogDensity + ?Sized>(
    model: &M,
    data: &Tensor,
    negatives: &Tensor,
    alpha: f64,
) -> Result<Tensor> {
    if !(alpha.is_finite() && alpha >= 0.0) {
        return Err(config_err(format!(
            "the energy regulariser alpha must be >= 0, got {alpha}"
        )));
    }
    let logp_data = model.log_density(data)?;
    let logp_neg = model.log_density(&negatives.detach())?;
    let mut loss = (logp_neg.mean_all()? - logp_data.mean_all()?)?;
    if alpha > 0.0 {
        let reg = (logp_data.sqr()?.mean_all()? + logp_neg.sqr()?.mean_all()?)?;
        loss = (loss + (reg * alpha)?)?;
    }
    Ok(loss)
}

/// Contrastive divergence CD-k (Hinton 2002; the tutorial's Sec. 3, where CD and persistent chains are discussed): [`mle_loss`] with negatives
/// from `sampler` (its `steps` = k) started at the data batch itself.
///
/// # Errors
/// As [`Sgld::run`] and [`mle_loss`].
pub fn cd_loss<M: LogDensity + ?Sized>(
    model: &M,
    data: &Tensor,
    sampler: &Sgld,
    alpha: f64,
    noise: &mut NoiseSource,
) -> Result<Tensor> {
    let negatives = sampler.run(model, data, noise)?;
    mle_loss(model, data, &negatives, alpha)
}

fn check_finite(x: &Tensor, what: &str) -> Result<()> {
    let s = x
        .abs()?
        .max_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?;
    if !s.is_finite() {
        return Err(config_err(format!(
            "{what} chains left the finite numbers; lower the step size or clip the score"
        )));
    }
    Ok(())
}
