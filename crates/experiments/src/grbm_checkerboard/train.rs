//! Training one method on the checkerboard in its own process (the `train` phase): the GRBM,
//! the method's loss, the test log-likelihood along training (exact `log Z`) and the learned
//! density on the plot grid.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::Init;
use latent::baselines::{cd_loss, nce_loss, pcd_loss};
use latent::bism::{bidsm, bism_score, lower_updates, sliced_functional, unroll};
use latent::ksd::{ksd, median_bandwidth};
use latent::vages::vages_score;
use models::{BernoulliPosterior, Grbm};
use serde::{Deserialize, Serialize};
use sm_objectives::{dsm, ssm, Directions, NoiseSource, Reduction};

use crate::error::{ExpError, Result};
use crate::optim::Adam;
use crate::trainer::{train_with_state, StepRecord, TrainState};
use crate::{setup, step_seed, RunControl};

use super::{CheckerboardConfig, Method, HI, LO};
use latent::bism::dsm_functional;

/// One method's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MethodResult {
    /// Method.
    pub method: Method,
    /// `(step, training seconds, test log-likelihood)` along training.
    pub curve: Vec<(u64, f64, f64)>,
    /// Final test log-likelihood.
    pub final_loglik: f64,
    /// Mean wall time of a training step, ms.
    pub ms_per_step: f64,
    /// The learned density on the plot grid (row 0 at the top), normalised.
    pub density: Vec<f64>,
}

/// The checkerboard's training and test points and the true density's mean test
/// log-likelihood, all from `cfg.seed`.
///
/// # Errors
/// Tensor errors only.
pub fn board_data(cfg: &CheckerboardConfig) -> Result<(Tensor, Tensor, f64)> {
    let board = datasets::Checkerboard::default();
    let train = board.sample(cfg.train_points, cfg.seed ^ 0x7a, &Device::Cpu)?;
    let test = board.sample(cfg.test_points, cfg.seed ^ 0x7e57, &Device::Cpu)?;
    let pts = test.to_vec2::<f64>()?;
    let true_loglik = pts
        .iter()
        .map(|p| board.log_density(p[0], p[1]))
        .sum::<f64>()
        / pts.len() as f64;
    Ok((train, test, true_loglik))
}

fn test_loglik(m: &Grbm, test: &Tensor) -> Result<f64> {
    let log_z = m.log_partition_exact()?;
    Ok(m.free_energy(test)?.neg()?.mean_all()?.to_scalar::<f64>()? - log_z)
}

pub(super) fn density_grid(m: &Grbm, n: usize) -> Result<Vec<f64>> {
    let log_z = m.log_partition_exact()?;
    let step = (HI - LO) / n as f64;
    let pts: Vec<f64> = (0..n)
        .flat_map(|r| {
            let y = HI - (r as f64 + 0.5) * step;
            (0..n).flat_map(move |c| [LO + (c as f64 + 0.5) * step, y])
        })
        .collect();
    let v = Tensor::from_vec(pts, (n * n, 2), &Device::Cpu)?;
    Ok(((m.free_energy(&v)?.neg()? - log_z)?.exp()?).to_vec1::<f64>()?)
}

/// What a checkerboard run carries from step to step besides the GRBM's parameters; it travels
/// in the checkpoint so that a resumed run continues exactly.
struct MethodState {
    /// Adam over the posterior's `(weight, bias)` (BiSM's lower level, VaGES's `q`).
    q_adam: Adam,
    /// PCD's persistent chains.
    chains: Tensor,
    /// `(step, training seconds, test log-likelihood)` so far.
    curve: Vec<(u64, f64, f64)>,
}

impl TrainState for MethodState {
    fn tensors(&self) -> train::Result<Vec<(String, Tensor)>> {
        let mut t = self.q_adam.state_tensors("q/")?;
        t.push(("pcd_chains".into(), self.chains.clone()));
        Ok(t)
    }

    fn json(&self) -> train::Result<serde_json::Value> {
        Ok(serde_json::json!(self.curve))
    }

    fn restore(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        json: &serde_json::Value,
    ) -> train::Result<()> {
        self.q_adam.load_state("q/", tensors)?;
        let chains = tensors
            .get("pcd_chains")
            .filter(|c| c.dims() == self.chains.dims())
            .ok_or_else(|| {
                train::TrainError::Config("no PCD chains of the batch's shape".into())
            })?;
        self.chains = chains.clone();
        self.curve = serde_json::from_value(json.clone())
            .map_err(|e| train::TrainError::Config(format!("bad saved curve: {e}")))?;
        Ok(())
    }
}

/// Trains one method (the `train` phase; resuming from the checkpoint in the row's directory
/// when `control.resume` is set) and evaluates it; `None` when `control.stop_after` paused it.
///
/// # Errors
/// Tensor, configuration and checkpoint errors; a non-finite loss.
pub fn train_method(
    cfg: &CheckerboardConfig,
    method: Method,
    data: (&Tensor, &Tensor),
    dir: &Path,
    control: RunControl,
) -> Result<Option<MethodResult>> {
    let (train, test) = data;
    let seed = cfg.seed ^ (method as u64 + 1).wrapping_mul(0x9e37);
    let (vm, m) = setup::seeded_grbm(2, cfg.hidden, 0.1, seed ^ 0x62b3)?;
    // NCE learns the log-normaliser beside the GRBM's parameters.
    let log_z = match method {
        Method::Nce => Some(vm.get((), "nce.log_z", Init::Const(0.0), DType::F64, &Device::Cpu)?),
        _ => None,
    };
    let (qw, qb) = setup::seeded_bernoulli_posterior(2, cfg.hidden, seed ^ 0x9051)?;
    let mut state = MethodState {
        q_adam: Adam::new(vec![qw.clone(), qb.clone()], setup::GRBM_ADAM)?,
        chains: NoiseSource::new(seed ^ 0xc4a1).uniform_like(&train.narrow(0, 0, cfg.batch)?)?,
        curve: Vec::new(),
    };
    // NCE noise: a Gaussian with the data's mean and twice its spread.
    let mean = train.mean(0)?;
    let sd = (train.var(0)?.sqrt()? * 2.0)?;
    let log_noise = |v: &Tensor| -> candle_core::Result<Tensor> {
        let z = v.broadcast_sub(&mean)?.broadcast_div(&sd)?;
        let c = -(2.0 * std::f64::consts::PI).ln() - sd.log()?.sum_all()?.to_scalar::<f64>()?;
        (z.sqr()?.sum(1)? * -0.5)? + c
    };
    let mut batcher = datasets::Batcher::new(train.dim(0)?, cfg.batch, seed)?;
    let evals = crate::eval_steps(cfg.iters, cfg.eval_points);
    let mut loss_at = |step: u64, st: &mut MethodState| -> candle_core::Result<Tensor> {
        let x = batcher
            .batch(train, step)
            .map_err(candle_core::Error::wrap)?;
        let mut noise = NoiseSource::new(step_seed(seed, step));
        if method.uses_posterior() {
            // Lower level: K Adam steps on q with the model fixed.
            lower_updates(&m, &qw, &qb, &x, &cfg.bism, &mut noise, |g| {
                st.q_adam.step_with_lr(g, cfg.lower_adam_lr)
            })?;
        }
        let q_now =
            BernoulliPosterior::from_tensors(qw.as_tensor().clone(), qb.as_tensor().clone())?;
        match method {
            Method::Ssm => ssm(
                &m,
                &x,
                &noise.projection(&x, Directions::Gaussian)?,
                Reduction::Mean,
            ),
            Method::Dsm => dsm(
                &m,
                &x,
                &noise.gaussian_like(&x)?,
                cfg.sigma,
                Reduction::Mean,
            ),
            Method::Cd1 => cd_loss(&m, &x, 1, &mut noise),
            Method::Pcd => pcd_loss(&m, &x, &mut st.chains, 1, &mut noise),
            Method::Nce => {
                let log_z = log_z.as_ref().expect("NCE has a log-normaliser");
                let nv = (noise.gaussian_like(&x)?.broadcast_mul(&sd)?).broadcast_add(&mean)?;
                nce_loss(&m, log_z, &x, &log_noise(&x)?, &nv, &log_noise(&nv)?)
            }
            Method::Bidsm | Method::Bissm => {
                let q_n = unroll(&m, &q_now, &x, &cfg.bism, &mut noise)?;
                if method == Method::Bidsm {
                    let z = noise.gaussian_like(&x)?;
                    bidsm(
                        &m,
                        &q_n,
                        &x,
                        &z,
                        cfg.sigma,
                        cfg.bism.tau,
                        Reduction::Mean,
                        &mut noise,
                    )
                } else {
                    let est = bism_score(&m, &q_n, &x, cfg.bism.tau, &mut noise)?;
                    let u = noise.gaussian_like(&x)?;
                    sliced_functional(&est, &u, Reduction::Mean)
                }
            }
            Method::VagesDsm => {
                let z = noise.gaussian_like(&x)?;
                let v_tilde = (&x + (&z * cfg.sigma)?)?;
                let draws: Vec<Tensor> = (0..cfg.vages_draws)
                    .map(|_| q_now.sample(&v_tilde, &mut noise))
                    .collect::<candle_core::Result<_>>()?;
                let est = vages_score(&m, &v_tilde, &draws)?;
                dsm_functional(&est.score, &z, cfg.sigma, Reduction::Mean)
            }
            Method::Ksd => ksd(&x, &m.marginal_score(&x)?, median_bandwidth(&x)?),
            Method::VagesKsd => {
                let draws: Vec<Tensor> = (0..cfg.vages_draws)
                    .map(|_| q_now.sample(&x, &mut noise))
                    .collect::<candle_core::Result<_>>()?;
                let est = vages_score(&m, &x, &draws)?;
                ksd(&x, &est.score, median_bandwidth(&x)?)
            }
        }
    };
    let mut after = |r: &StepRecord, st: &mut MethodState| -> Result<()> {
        if evals.contains(&(r.step + 1)) {
            st.curve
                .push((r.step + 1, r.train_seconds, test_loglik(&m, test)?));
        }
        Ok(())
    };
    // The density grid, the profile name and the checkpoint interval may change on resume.
    let config_json = serde_json::to_string(&CheckerboardConfig {
        methods: vec![method],
        profile: String::new(),
        grid: 0,
        checkpoint_every: 0,
        ..cfg.clone()
    })
    .map_err(|e| ExpError::Config(format!("the settings do not serialise: {e}")))?;
    let opts = setup::grbm_train_options(
        method.label().into(),
        cfg.iters,
        cfg.lr,
        dir.join("checkpoint.safetensors"),
        cfg.checkpoint_every,
        control,
        config_json,
    );
    let summary = train_with_state(&vm, &opts, &mut state, &mut loss_at, &mut after)?;
    if summary.completed < cfg.iters {
        return Ok(None);
    }
    Ok(Some(MethodResult {
        method,
        final_loglik: state.curve.last().map_or(f64::NAN, |c| c.2),
        curve: state.curve,
        ms_per_step: summary.train_seconds * 1e3 / cfg.iters as f64,
        density: density_grid(&m, cfg.grid)?,
    }))
}
