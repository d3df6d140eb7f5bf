//! Annealed importance sampling (Neal 2001) of a latent-variable model's marginal likelihood
//! `log p(x) = log E_{p(z)} p(x | z)` with a standard-normal prior, HMC transitions with an
//! adaptive step size, as Wu et al. (2017) evaluate decoders and Song et al. (2019) evaluate the
//! implicit-encoder VAE / WAE of FD-SM Table 6: intermediate densities
//! `f_t(z) = p(z) p(x | z)^t` on a sigmoid schedule of `t` from 0 to 1, weights
//! `sum_t (t_{k+1} - t_k) log p(x | z_k)`, and `log p(x)` estimated by the log-mean-exp of the
//! weights over independent chains (a stochastic lower bound).

use candle_core::{DType, Device, Tensor, D};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sm_objectives::NoiseSource;

use crate::error::{Result, TrainError};
use crate::mcmc::Hmc;

/// AIS settings; [`AisSettings::reference`] holds Song et al.'s.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AisSettings {
    /// Intermediate distributions including both ends (reference 1000).
    pub temperatures: usize,
    /// Independent chains per data point (reference 16).
    pub chains: usize,
    /// Leapfrog steps per HMC transition (reference 10).
    pub leapfrog_steps: usize,
    /// Initial leapfrog step size (reference 0.01).
    pub initial_step: f64,
    /// The step grows by `step_increase` while the running acceptance exceeds this, else it
    /// shrinks by `step_decrease` (reference 0.65, 1.02, 0.98).
    pub target_acceptance: f64,
    /// Growth factor of the step size.
    pub step_increase: f64,
    /// Shrink factor of the step size.
    pub step_decrease: f64,
    /// Bounds of the step size (reference 1e-4 and 0.5).
    pub step_min: f64,
    /// Upper bound of the step size.
    pub step_max: f64,
    /// Decay of the running acceptance average (reference 0.9).
    pub acceptance_decay: f64,
    /// Half-width of the logistic schedule's argument (reference 4).
    pub schedule_radius: f64,
}

impl AisSettings {
    /// Song et al.'s settings: 1000 temperatures, 16 chains, 10 leapfrog steps.
    pub fn reference() -> Self {
        Self {
            temperatures: 1000,
            chains: 16,
            leapfrog_steps: 10,
            initial_step: 0.01,
            target_acceptance: 0.65,
            step_increase: 1.02,
            step_decrease: 0.98,
            step_min: 1e-4,
            step_max: 0.5,
            acceptance_decay: 0.9,
            schedule_radius: 4.0,
        }
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`TrainError::Config`] naming the bad value.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(TrainError::Config(format!("AIS: {m}")));
        if self.temperatures < 2 || self.chains == 0 || self.leapfrog_steps == 0 {
            return bad(format!(
                "needs temperatures >= 2, chains >= 1 and leapfrog_steps >= 1, got {}, {} and {}",
                self.temperatures, self.chains, self.leapfrog_steps
            ));
        }
        let positive = [
            ("initial_step", self.initial_step),
            ("step_min", self.step_min),
            ("step_max", self.step_max),
            ("step_increase", self.step_increase),
            ("step_decrease", self.step_decrease),
            ("schedule_radius", self.schedule_radius),
        ];
        for (name, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return bad(format!("{name} must be finite and > 0, got {v}"));
            }
        }
        if self.step_min > self.step_max {
            return bad(format!(
                "step_min {} exceeds step_max {}",
                self.step_min, self.step_max
            ));
        }
        for (name, v) in [
            ("target_acceptance", self.target_acceptance),
            ("acceptance_decay", self.acceptance_decay),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(format!("{name} must lie in [0, 1], got {v}"));
            }
        }
        Ok(())
    }
}

/// `n` temperatures from 0 to 1 on a logistic curve, `sigmoid(t)` for `t` evenly spaced on
/// `[-radius, radius]` and rescaled to start at 0 and end at 1: dense at both ends, where the
/// intermediate densities change fastest.
pub fn sigmoid_schedule(n: usize, radius: f64) -> Vec<f64> {
    if n < 2 {
        return vec![0.0, 1.0];
    }
    let s: Vec<f64> = (0..n)
        .map(|i| {
            let t = -radius + 2.0 * radius * i as f64 / (n - 1) as f64;
            1.0 / (1.0 + (-t).exp())
        })
        .collect();
    let (lo, hi) = (s[0], s[n - 1]);
    s.into_iter().map(|v| (v - lo) / (hi - lo)).collect()
}

/// The result of [`ais_log_marginal`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AisEstimate {
    /// `log p(x_i)` estimated for every data point (log-mean-exp over its chains).
    pub log_marginal: Vec<f64>,
    /// The log importance weight of every chain, `[chains][data points]`.
    pub log_weights: Vec<Vec<f64>>,
    /// Accepted HMC proposals over all proposals.
    pub acceptance: f64,
    /// The step size at the end.
    pub final_step: f64,
}

/// Runs AIS for `n_data` data points with `settings.chains` chains each, the codes in `dtype`
/// on `device`. `log_likelihood(z)`
/// must return `log p(x_r | z_r)`, `[R]`, for codes `z` `[R, z_dim]` with
/// `R = chains * n_data` rows, row `r` belonging to data point `r % n_data` (the data repeated
/// `chains` times, chain-major). Its gradient in `z` drives the HMC transitions.
///
/// # Errors
/// Bad settings, `n_data == 0` or `z_dim == 0`, a likelihood of the wrong shape or a non-finite
/// weight.
pub fn ais_log_marginal<F>(
    log_likelihood: F,
    (n_data, z_dim): (usize, usize),
    settings: &AisSettings,
    noise: &mut NoiseSource,
    (device, dtype): (&Device, DType),
    progress: Option<&str>,
) -> Result<AisEstimate>
where
    F: Fn(&Tensor) -> candle_core::Result<Tensor>,
{
    settings.validate()?;
    if n_data == 0 || z_dim == 0 {
        return Err(TrainError::Config(format!(
            "AIS needs data points and a latent size >= 1, got {n_data} and {z_dim}"
        )));
    }
    let rows = settings.chains * n_data;
    let schedule = sigmoid_schedule(settings.temperatures, settings.schedule_radius);
    let mut z = noise.gaussian((rows, z_dim), dtype, device)?;
    let loglik = |z: &Tensor| -> Result<Tensor> {
        let l = log_likelihood(&z.detach())?;
        if l.dims() != [rows] {
            return Err(TrainError::Config(format!(
                "AIS: the log-likelihood must be [{rows}] (one value per chain and data point), \
                 got {:?}",
                l.dims()
            )));
        }
        Ok(l.detach().to_dtype(DType::F64)?)
    };
    let mut log_w = Tensor::zeros(rows, DType::F64, device)?;
    let (mut step, mut running) = (settings.initial_step, settings.target_acceptance);
    let (mut accepted, mut proposals) = (0.0, 0usize);
    let bar = match progress {
        Some(label) => ProgressBar::new(schedule.len() as u64 - 1)
            .with_style(
                ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} eta {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            )
            .with_prefix(label.to_string()),
        None => ProgressBar::hidden(),
    };
    for pair in schedule.windows(2) {
        let (t0, t1) = (pair[0], pair[1]);
        log_w = (log_w + (loglik(&z)? * (t1 - t0))?)?;
        let target = |z: &Tensor| -> candle_core::Result<Tensor> {
            let prior = (z.sqr()?.sum(D::Minus1)? * -0.5)?;
            prior + (log_likelihood(z)? * t1)?
        };
        let hmc = Hmc {
            transitions: 1,
            step_size: step,
            leapfrog_steps: settings.leapfrog_steps,
        };
        let out = hmc.run(&target, &z, noise)?;
        z = out.x;
        accepted += out.acceptance * rows as f64;
        proposals += rows;
        // Song et al.'s adaptation: the step moves on the running average before it is updated.
        step = if running > settings.target_acceptance {
            step * settings.step_increase
        } else {
            step * settings.step_decrease
        }
        .clamp(settings.step_min, settings.step_max);
        running = settings.acceptance_decay * running
            + (1.0 - settings.acceptance_decay) * out.acceptance;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let w = log_w.reshape((settings.chains, n_data))?.to_vec2::<f64>()?;
    if let Some((c, i)) = (0..settings.chains)
        .flat_map(|c| (0..n_data).map(move |i| (c, i)))
        .find(|&(c, i)| !w[c][i].is_finite())
    {
        return Err(TrainError::Config(format!(
            "AIS: the weight of chain {c} for data point {i} is {} (the likelihood is not \
             finite along the chain)",
            w[c][i]
        )));
    }
    let log_marginal = (0..n_data)
        .map(|i| {
            let m = (0..settings.chains)
                .map(|c| w[c][i])
                .fold(f64::MIN, f64::max);
            let s: f64 = (0..settings.chains).map(|c| (w[c][i] - m).exp()).sum();
            m + (s / settings.chains as f64).ln()
        })
        .collect();
    Ok(AisEstimate {
        log_marginal,
        log_weights: w,
        acceptance: accepted / proposals.max(1) as f64,
        final_step: step,
    })
}
