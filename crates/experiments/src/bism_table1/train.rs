//! Training one row of BiSM Table 1 in its own process (the `train` phase): the GRBM by DSM or
//! BiDSM, model selection by the validation SM loss, and the selected parameters' test
//! log-likelihood (AIS) and test Fisher divergence.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Tensor};
use latent::bism::{bidsm, lower_updates, unroll, BismConfig};
use models::{BernoulliPosterior, Grbm};
use serde::{Deserialize, Serialize};
use sm_objectives::{dsm, NoiseSource, Reduction};

use crate::error::{ExpError, Result};
use crate::optim::Adam;
use crate::runner::ExperimentRow;
use crate::trainer::{named_vars, train_with_state, StepRecord, TrainState};
use crate::{setup, step_seed, RunControl};

use super::{Row, Table1Config};

/// One row's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RowResult {
    /// Row.
    pub row: Row,
    /// `(step, validation SM loss)` along training.
    pub validation: Vec<(u64, f64)>,
    /// The selected step.
    pub best_step: u64,
    /// Test log-likelihood (AIS log Z) of the selected parameters.
    pub test_loglik: f64,
    /// Standard error of the AIS log Z.
    pub log_z_se: f64,
    /// Test score-matching loss (total over the 560 pixels).
    pub test_fisher: f64,
    /// Mean training step, ms.
    pub ms_per_step: f64,
}

fn mean_sm(m: &Grbm, v: &Tensor) -> Result<f64> {
    Ok(m.score_matching_loss(v)?.mean_all()?.to_scalar::<f64>()?)
}

/// What a row carries from step to step besides the GRBM's parameters; it travels in the
/// checkpoint so that a resumed run continues exactly.
struct RowState {
    /// Adam over the posterior's `(weight, bias)` (BiSM's lower level).
    q_adam: Adam,
    /// `(step, validation SM loss)` so far.
    validation: Vec<(u64, f64)>,
    /// The best validation loss so far, its step, and the GRBM's parameters then (in
    /// [`named_vars`] order).
    best: Option<(f64, u64, Vec<Tensor>)>,
    /// The GRBM's variable names, naming the snapshot's tensors.
    names: Vec<String>,
}

impl TrainState for RowState {
    fn tensors(&self) -> train::Result<Vec<(String, Tensor)>> {
        let mut t = self.q_adam.state_tensors("q/")?;
        if let Some((_, _, snapshot)) = &self.best {
            t.extend(
                self.names
                    .iter()
                    .zip(snapshot)
                    .map(|(n, v)| (format!("best/{n}"), v.clone())),
            );
        }
        Ok(t)
    }

    fn json(&self) -> train::Result<serde_json::Value> {
        Ok(serde_json::json!({
            "validation": self.validation,
            "best": self.best.as_ref().map(|b| (b.0, b.1)),
        }))
    }

    fn restore(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        json: &serde_json::Value,
    ) -> train::Result<()> {
        #[derive(Deserialize)]
        struct Saved {
            validation: Vec<(u64, f64)>,
            best: Option<(f64, u64)>,
        }
        let saved: Saved = serde_json::from_value(json.clone())
            .map_err(|e| train::TrainError::Config(format!("bad saved validation curve: {e}")))?;
        self.q_adam.load_state("q/", tensors)?;
        self.best = match saved.best {
            Some((value, step)) => {
                let snapshot = self
                    .names
                    .iter()
                    .map(|n| {
                        tensors.get(&format!("best/{n}")).cloned().ok_or_else(|| {
                            train::TrainError::Config(format!(
                                "no snapshot of `{n}` at the best step"
                            ))
                        })
                    })
                    .collect::<train::Result<_>>()?;
                Some((value, step, snapshot))
            }
            None => None,
        };
        self.validation = saved.validation;
        Ok(())
    }
}

/// Trains one row (the `train` phase; resuming from the checkpoint in the row's directory when
/// `control.resume` is set) and evaluates it; `None` when `control.stop_after` paused it.
///
/// # Errors
/// Tensor and checkpoint errors and a diverging loss.
pub fn run_row(
    cfg: &Table1Config,
    row: Row,
    data: &datasets::FreyFace,
    dir: &Path,
    control: RunControl,
) -> Result<Option<RowResult>> {
    let (train, valid, test) = (
        data.train.to_dtype(DType::F64)?,
        data.validation.to_dtype(DType::F64)?,
        data.test.to_dtype(DType::F64)?,
    );
    let d = train.dim(1)?;
    let seed = cfg.seed ^ 0x7ab1e1;
    let (vm, m) = setup::seeded_grbm(d, cfg.hidden, 0.01, seed)?;
    let (names, vars) = named_vars(&vm);
    let (qw, qb) = setup::seeded_bernoulli_posterior(d, cfg.hidden, seed ^ 0x9)?;
    let mut state = RowState {
        q_adam: Adam::new(vec![qw.clone(), qb.clone()], setup::GRBM_ADAM)?,
        validation: Vec::new(),
        best: None,
        names,
    };
    let mut batcher = datasets::Batcher::new(train.dim(0)?, cfg.batch, seed)?;
    let evals = crate::eval_steps(cfg.iters, cfg.eval_points);
    let mut loss_at = |step: u64, st: &mut RowState| -> candle_core::Result<Tensor> {
        let x = batcher
            .batch(&train, step)
            .map_err(candle_core::Error::wrap)?;
        let mut noise = NoiseSource::new(step_seed(seed, step));
        let z = noise.gaussian_like(&x)?;
        match row {
            Row::Dsm => dsm(&m, &x, &z, cfg.sigma, Reduction::Mean),
            Row::Bidsm(n) => {
                lower_updates(&m, &qw, &qb, &x, &cfg.bism, &mut noise, |g| {
                    st.q_adam.step_with_lr(g, cfg.lower_adam_lr)
                })?;
                let q0 = BernoulliPosterior::from_tensors(
                    qw.as_tensor().clone(),
                    qb.as_tensor().clone(),
                )?;
                let bism = BismConfig {
                    unroll: n,
                    ..cfg.bism
                };
                let q_n = unroll(&m, &q0, &x, &bism, &mut noise)?;
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
            }
        }
    };
    let mut after = |r: &StepRecord, st: &mut RowState| -> Result<()> {
        if evals.contains(&(r.step + 1)) {
            let v = mean_sm(&m, &valid)?;
            st.validation.push((r.step + 1, v));
            if st.best.as_ref().is_none_or(|b| v < b.0) {
                let snapshot = vars
                    .iter()
                    .map(|v| v.as_tensor().copy())
                    .collect::<candle_core::Result<_>>()?;
                st.best = Some((v, r.step + 1, snapshot));
            }
        }
        Ok(())
    };
    // The AIS settings, the profile name and the checkpoint interval may change on resume.
    let config_json = serde_json::to_string(&Table1Config {
        rows: vec![row],
        profile: String::new(),
        ais_chains: 0,
        ais_steps: 0,
        checkpoint_every: 0,
        ..cfg.clone()
    })
    .map_err(|e| ExpError::Config(format!("the settings do not serialise: {e}")))?;
    let opts = setup::grbm_train_options(
        row.label(),
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
    let (_, best_step, snapshot) = state.best.ok_or_else(|| {
        ExpError::Config("no validation ran, so no step can be selected (eval_points >= 1)".into())
    })?;
    for (var, value) in vars.iter().zip(&snapshot) {
        var.set(value)?;
    }
    let (log_z, log_z_se) = m.log_partition_ais(
        cfg.ais_chains,
        cfg.ais_steps,
        &mut NoiseSource::new(seed ^ 0xa15),
    )?;
    let test_loglik = m
        .free_energy(&test)?
        .neg()?
        .mean_all()?
        .to_scalar::<f64>()?
        - log_z;
    Ok(Some(RowResult {
        row,
        validation: state.validation,
        best_step,
        test_loglik,
        log_z_se,
        test_fisher: mean_sm(&m, &test)?,
        ms_per_step: summary.train_seconds * 1e3 / cfg.iters as f64,
    }))
}
