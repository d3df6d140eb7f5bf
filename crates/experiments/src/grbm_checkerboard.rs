//! The checkerboard experiment of BiSM Sec. 5.1 (Figs. 2-3) and VaGES App. F/G (Figs. 3-4): a
//! GRBM with `H = 4` hidden units trained on 2-D checkerboard points by every method, with the
//! test log-likelihood (exact `log Z` by enumeration) along training and the learned densities.
//!
//! Methods: SSM and DSM on the exact marginal (the gold standard), CD-1, PCD, NCE, BiSSM and
//! BiDSM (K lower-level Adam steps on `q`, N unrolled steps), VaGES-DSM (the VaGES score from
//! `q`'s draws with `q` trained by the KL lower level), and KSD on the exact marginal score and
//! on the VaGES estimate (VaGES App. F.1).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::Init;
use latent::baselines::{cd_loss, nce_loss, pcd_loss};
use latent::bism::{
    bism_score, dsm_functional, lower_updates, sliced_functional, unroll, BismConfig,
};
use latent::ksd::{ksd, median_bandwidth};
use latent::vages::vages_score;
use models::{BernoulliPosterior, Grbm};
use serde::{Deserialize, Serialize};
use sm_objectives::{dsm, ssm, Directions, NoiseSource, Reduction};

use crate::error::{io_err, ExpError, Result};
use crate::optim::Adam;
use crate::plot::{save_heat_maps, save_line_plot, Axes, HeatMap, Panel, Series};
use crate::report::{environment, markdown_table, write_atomic, write_json, Environment};
use crate::trainer::{train_with_state, StepRecord, TrainState};
use crate::{setup, step_seed, RunControl};

/// A training method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// SSM on the exact marginal (Gaussian projections).
    Ssm,
    /// DSM on the exact marginal.
    Dsm,
    /// Contrastive divergence with one Gibbs sweep.
    Cd1,
    /// Persistent contrastive divergence (one sweep per step).
    Pcd,
    /// Noise-contrastive estimation with a learned log-normaliser.
    Nce,
    /// Bi-level SSM.
    Bissm,
    /// Bi-level DSM.
    Bidsm,
    /// DSM on the VaGES score estimate.
    VagesDsm,
    /// The kernelized Stein discrepancy on the exact marginal score.
    Ksd,
    /// KSD on the VaGES score estimate.
    VagesKsd,
}

impl Method {
    /// Every method, in the order of the figures.
    pub const ALL: [Method; 10] = [
        Method::Ssm,
        Method::Dsm,
        Method::Cd1,
        Method::Pcd,
        Method::Nce,
        Method::Bissm,
        Method::Bidsm,
        Method::VagesDsm,
        Method::Ksd,
        Method::VagesKsd,
    ];

    /// Printed name.
    pub fn label(self) -> &'static str {
        match self {
            Method::Ssm => "SSM",
            Method::Dsm => "DSM",
            Method::Cd1 => "CD-1",
            Method::Pcd => "PCD",
            Method::Nce => "NCE",
            Method::Bissm => "BiSSM",
            Method::Bidsm => "BiDSM",
            Method::VagesDsm => "VaGES-DSM",
            Method::Ksd => "KSD",
            Method::VagesKsd => "VaGES-KSD",
        }
    }

    /// Command-line name.
    pub fn key(self) -> &'static str {
        match self {
            Method::Ssm => "ssm",
            Method::Dsm => "dsm",
            Method::Cd1 => "cd1",
            Method::Pcd => "pcd",
            Method::Nce => "nce",
            Method::Bissm => "bissm",
            Method::Bidsm => "bidsm",
            Method::VagesDsm => "vages-dsm",
            Method::Ksd => "ksd",
            Method::VagesKsd => "vages-ksd",
        }
    }

    /// Parses [`Method::key`].
    ///
    /// # Errors
    /// An unknown name.
    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.key() == s.trim())
            .ok_or_else(|| {
                ExpError::Config(format!(
                    "unknown method `{s}`; expected one of ssm, dsm, cd1, pcd, nce, bissm, bidsm, vages-dsm, ksd, vages-ksd"
                ))
            })
    }

    fn uses_posterior(self) -> bool {
        matches!(
            self,
            Method::Bissm | Method::Bidsm | Method::VagesDsm | Method::VagesKsd
        )
    }
}

/// Settings of the experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckerboardConfig {
    /// Profile name.
    pub profile: String,
    /// Hidden units (paper: 4).
    pub hidden: usize,
    /// Training and test points (paper: 60000, 10000).
    pub train_points: usize,
    /// Test points.
    pub test_points: usize,
    /// Iterations per method (paper: 100000).
    pub iters: u64,
    /// Batch size (paper: 100).
    pub batch: usize,
    /// Adam learning rate (paper: 1e-3).
    pub lr: f64,
    /// DSM noise level.
    pub sigma: f64,
    /// BiSM lower level (paper: K = N = 5).
    pub bism: BismConfig,
    /// Adam learning rate of the lower level.
    pub lower_adam_lr: f64,
    /// Posterior draws of VaGES.
    pub vages_draws: usize,
    /// Test log-likelihood evaluations along training.
    pub eval_points: usize,
    /// Density grid resolution per side.
    pub grid: usize,
    /// Checkpoint every this many steps (and at the end).
    pub checkpoint_every: u64,
    /// Methods to run.
    pub methods: Vec<Method>,
    /// Seed.
    pub seed: u64,
}

impl CheckerboardConfig {
    /// A laptop-CPU profile (a few minutes for all methods).
    pub fn quick() -> Self {
        Self {
            profile: "quick".into(),
            hidden: 4,
            train_points: 60000,
            test_points: 10000,
            iters: 3000,
            batch: 100,
            lr: 1e-2,
            sigma: 0.1,
            bism: BismConfig {
                lower_steps: 5,
                unroll: 5,
                lower_lr: 0.1,
                tau: 0.1,
            },
            lower_adam_lr: 1e-2,
            vages_draws: 8,
            eval_points: 10,
            grid: 60,
            checkpoint_every: 500,
            methods: Method::ALL.to_vec(),
            seed: 0,
        }
    }

    /// The papers' settings (100000 iterations at lr 1e-3).
    pub fn paper() -> Self {
        Self {
            profile: "paper".into(),
            iters: 100_000,
            lr: 1e-3,
            lower_adam_lr: 1e-3,
            eval_points: 50,
            grid: 100,
            checkpoint_every: 5000,
            ..Self::quick()
        }
    }

    /// A named profile.
    ///
    /// # Errors
    /// An unknown name.
    pub fn profile(name: &str) -> Result<Self> {
        crate::pick_profile(name, Self::quick, Self::paper)
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`ExpError::Config`] naming the bad field.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ExpError::Config(m));
        if self.hidden == 0 || self.hidden > models::MAX_EXACT_HIDDEN {
            return bad(format!(
                "hidden must be in 1..={} (exact log Z), got {}",
                models::MAX_EXACT_HIDDEN,
                self.hidden
            ));
        }
        if self.batch == 0 || self.batch > self.train_points || self.test_points == 0 {
            return bad("batch must be in 1..=train_points and test_points >= 1".into());
        }
        if self.iters == 0
            || self.eval_points == 0
            || self.checkpoint_every == 0
            || self.grid < 2
            || self.vages_draws < 2
        {
            return bad(
                "iters, eval_points, checkpoint_every >= 1, grid >= 2, vages_draws >= 2 needed"
                    .into(),
            );
        }
        crate::require_positive(&[
            ("lr", self.lr),
            ("sigma", self.sigma),
            ("lower_adam_lr", self.lower_adam_lr),
        ])?;
        self.bism
            .validate()
            .map_err(|e| ExpError::Config(e.to_string()))?;
        if self.methods.is_empty() {
            return bad("no method selected".into());
        }
        Ok(())
    }
}

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

/// Everything `results.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckerboardResults {
    /// Settings.
    pub config: CheckerboardConfig,
    /// Versions and machine.
    pub environment: Environment,
    /// Per method.
    pub results: Vec<MethodResult>,
    /// Mean log-density of the test points under the true checkerboard density.
    pub true_loglik: f64,
}

/// The plotted square: the unit square with a margin.
const LO: f64 = -0.25;
const HI: f64 = 1.25;

fn test_loglik(m: &Grbm, test: &Tensor) -> Result<f64> {
    let log_z = m.log_partition_exact()?;
    Ok(m.free_energy(test)?.neg()?.mean_all()?.to_scalar::<f64>()? - log_z)
}

fn density_grid(m: &Grbm, n: usize) -> Result<Vec<f64>> {
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

/// Trains one method (resuming from its checkpoint `<out>/checkpoints/<method>.safetensors`
/// when `control.resume` is set) and evaluates it; `None` when `control.stop_after` paused it.
///
/// # Errors
/// Tensor, configuration and checkpoint errors; a non-finite loss.
pub fn train_method(
    cfg: &CheckerboardConfig,
    method: Method,
    data: (&Tensor, &Tensor),
    out: &Path,
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
                    let v_tilde = (&x + (&z * cfg.sigma)?)?;
                    let est = bism_score(&m, &q_n, &v_tilde, cfg.bism.tau, &mut noise)?;
                    dsm_functional(&est.score, &z, cfg.sigma, Reduction::Mean)
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
    let config_json = serde_json::to_string(&CheckerboardConfig {
        methods: vec![method],
        ..cfg.clone()
    })
    .expect("the settings serialise");
    let opts = setup::grbm_train_options(
        method.label().into(),
        cfg.iters,
        cfg.lr,
        setup::grbm_checkpoint(out, method.key()),
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

/// Runs every selected method and writes `results.json`, `grbm_checkerboard.md`,
/// `densities.png`, `loglik.png` and `config.json` into `out`.
///
/// # Errors
/// Configuration, tensor, checkpoint and I/O errors; [`ExpError::Paused`] once every method
/// has reached `control.stop_after`.
pub fn run(
    cfg: &CheckerboardConfig,
    out: &Path,
    control: RunControl,
) -> Result<CheckerboardResults> {
    cfg.validate()?;
    sm_objectives::autodiff::ensure_higher_order()?;
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    write_json(&out.join("config.json"), cfg)?;
    let board = datasets::Checkerboard::default();
    let train = board.sample(cfg.train_points, cfg.seed ^ 0x7a, &Device::Cpu)?;
    let test = board.sample(cfg.test_points, cfg.seed ^ 0x7e57, &Device::Cpu)?;
    let true_loglik = {
        let pts = test.to_vec2::<f64>()?;
        pts.iter()
            .map(|p| board.log_density(p[0], p[1]))
            .sum::<f64>()
            / pts.len() as f64
    };
    let mut results = Vec::new();
    for &method in &cfg.methods {
        results.extend(train_method(cfg, method, (&train, &test), out, control)?);
    }
    if results.len() < cfg.methods.len() {
        return Err(ExpError::Paused {
            step: control.stop_after.unwrap_or(0),
            checkpoints: setup::grbm_checkpoint_dir(out),
        });
    }
    let r = CheckerboardResults {
        config: cfg.clone(),
        environment: environment(),
        results,
        true_loglik,
    };
    write_json(&out.join("results.json"), &r)?;
    write_atomic(&out.join("grbm_checkerboard.md"), &markdown(&r))?;
    let mut maps = vec![HeatMap {
        title: "data (true density)".into(),
        values: {
            let n = cfg.grid;
            let step = (HI - LO) / n as f64;
            (0..n * n)
                .map(|i| {
                    let (row, col) = (i / n, i % n);
                    let (x, y) = (
                        LO + (col as f64 + 0.5) * step,
                        HI - (row as f64 + 0.5) * step,
                    );
                    board.log_density(x, y).exp()
                })
                .collect()
        },
        rows: cfg.grid,
        cols: cfg.grid,
    }];
    maps.extend(r.results.iter().map(|m| HeatMap {
        title: format!("{} ({:.3})", m.method.label(), m.final_loglik),
        values: m.density.clone(),
        rows: cfg.grid,
        cols: cfg.grid,
    }));
    save_heat_maps(&maps, 4, &out.join("densities.png"))?;
    save_line_plot(
        &Panel {
            title: "GRBM on checkerboard: test log-likelihood".into(),
            x_label: "training step".into(),
            y_label: "test log-likelihood (exact log Z)".into(),
            axes: Axes::Linear,
            series: r
                .results
                .iter()
                .map(|m| Series {
                    name: m.method.label().into(),
                    points: m.curve.iter().map(|c| (c.0 as f64, c.2)).collect(),
                })
                .collect(),
        },
        &out.join("loglik.png"),
    )?;
    Ok(r)
}

/// The Markdown report.
pub fn markdown(r: &CheckerboardResults) -> String {
    let c = &r.config;
    let rows: Vec<Vec<String>> = r
        .results
        .iter()
        .map(|m| {
            vec![
                m.method.label().to_string(),
                format!("{:.4}", m.final_loglik),
                format!("{:.2}", m.ms_per_step),
            ]
        })
        .collect();
    format!(
        "# GRBM on the checkerboard ({} profile)\n\nH = {}, {} training and {} test points, {} \
         iterations at batch {}, Adam lr {}; BiSM K = {}, N = {}, tau = {}; DSM sigma {}; VaGES \
         {} draws. Test log-likelihood with the exact log Z (enumerating 2^H states); the true \
         density scores {:.4}. Machine: {}.\n\n{}\nDensities: `densities.png`; curves: \
         `loglik.png`; every number: `results.json`.\n",
        c.profile,
        c.hidden,
        c.train_points,
        c.test_points,
        c.iters,
        c.batch,
        c.lr,
        c.bism.lower_steps,
        c.bism.unroll,
        c.bism.tau,
        c.sigma,
        c.vages_draws,
        r.true_loglik,
        r.environment.cpu,
        markdown_table(&["method", "test log-likelihood", "ms / step"], &rows)
    )
}
