//! BiSM Table 1 (Sec. 5.1): a GRBM with 400 hidden units on Frey face trained by DSM on the
//! exact marginal and by BiDSM with N = 0, 1, 5, 10 unrolled steps, each selected by its best
//! validation score-matching loss, reporting the test log-likelihood (log Z by AIS) and the
//! test Fisher divergence (the exact score-matching loss, up to a data constant).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use latent::bism::{bism_score, dsm_functional, lower_updates, unroll, BismConfig};
use models::{BernoulliPosterior, Grbm};
use serde::{Deserialize, Serialize};
use sm_objectives::{dsm, NoiseSource, Reduction};

use crate::error::{io_err, ExpError, Result};
use crate::optim::Adam;
use crate::plot::{save_line_plot, Axes, Panel, Series};
use crate::report::{environment, markdown_table, write_atomic, write_json, Environment};
use crate::trainer::{named_vars, train_with_state, StepRecord, TrainState};
use crate::{setup, step_seed, RunControl};

/// A row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Row {
    /// DSM on the exact marginal.
    Dsm,
    /// BiDSM with this many unrolled steps.
    Bidsm(usize),
}

impl Row {
    /// File-name key: `dsm`, `bidsm-n<N>`.
    pub fn key(self) -> String {
        match self {
            Row::Dsm => "dsm".into(),
            Row::Bidsm(n) => format!("bidsm-n{n}"),
        }
    }

    /// Printed name.
    pub fn label(self) -> String {
        match self {
            Row::Dsm => "DSM".into(),
            Row::Bidsm(n) => format!("BiDSM (N={n})"),
        }
    }

    /// The paper's `(LL, Fisher)`, where it reports the row.
    pub fn paper(self) -> Option<(f64, f64)> {
        match self {
            Row::Dsm => Some((129.23, -5885.09)),
            Row::Bidsm(0) => Some((107.59, -5474.52)),
            Row::Bidsm(1) => Some((110.65, -5516.07)),
            Row::Bidsm(5) => Some((124.00, -5780.18)),
            Row::Bidsm(10) => Some((125.72, -5800.17)),
            Row::Bidsm(_) => None,
        }
    }
}

/// Settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table1Config {
    /// Profile name.
    pub profile: String,
    /// Hidden units (paper: 400).
    pub hidden: usize,
    /// Iterations per row (paper: 20000).
    pub iters: u64,
    /// Batch size (paper: 100).
    pub batch: usize,
    /// Adam learning rate (paper: 2e-4).
    pub lr: f64,
    /// DSM noise level (reference: 0.3).
    pub sigma: f64,
    /// BiSM lower level (paper: K = 5; N per row).
    pub bism: BismConfig,
    /// Adam learning rate of the K lower-level updates.
    pub lower_adam_lr: f64,
    /// Validation evaluations (model selection) along training.
    pub eval_points: usize,
    /// Checkpoint every this many steps (and at the end of each row).
    pub checkpoint_every: u64,
    /// AIS chains for the test log-likelihood (paper: 2000).
    pub ais_chains: usize,
    /// AIS intermediate distributions (paper: 2000).
    pub ais_steps: usize,
    /// Rows.
    pub rows: Vec<Row>,
    /// Seed.
    pub seed: u64,
}

impl Table1Config {
    /// A laptop-CPU profile: every row, 100 hidden units, few iterations, a smaller AIS (about
    /// 8 minutes on 2 cores; BiDSM with N = 10 dominates).
    pub fn quick() -> Self {
        Self {
            profile: "quick".into(),
            hidden: 100,
            iters: 200,
            batch: 100,
            lr: 2e-3,
            sigma: 0.3,
            bism: BismConfig {
                lower_steps: 5,
                unroll: 0,
                lower_lr: 1e-2,
                tau: 0.1,
            },
            lower_adam_lr: 1e-3,
            eval_points: 5,
            checkpoint_every: 100,
            ais_chains: 100,
            ais_steps: 500,
            rows: vec![
                Row::Dsm,
                Row::Bidsm(0),
                Row::Bidsm(1),
                Row::Bidsm(5),
                Row::Bidsm(10),
            ],
            seed: 0,
        }
    }

    /// The paper's settings.
    pub fn paper() -> Self {
        Self {
            profile: "paper".into(),
            hidden: 400,
            iters: 20_000,
            lr: 2e-4,
            lower_adam_lr: 2e-4,
            eval_points: 40,
            checkpoint_every: 1000,
            ais_chains: 2000,
            ais_steps: 2000,
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
        if self.hidden == 0 || self.batch == 0 || self.batch > 1400 {
            return bad("hidden >= 1 and batch in 1..=1400 needed".into());
        }
        if self.iters == 0
            || self.eval_points == 0
            || self.checkpoint_every == 0
            || self.ais_chains < 2
            || self.ais_steps == 0
        {
            return bad(
                "iters, eval_points, checkpoint_every, ais_steps >= 1 and ais_chains >= 2 needed"
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
        if self.rows.is_empty() {
            return bad("no row selected".into());
        }
        Ok(())
    }
}

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

/// Everything `results.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Table1Results {
    /// Settings.
    pub config: Table1Config,
    /// Versions and machine.
    pub environment: Environment,
    /// Per row.
    pub rows: Vec<RowResult>,
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

/// Trains one row (resuming from its checkpoint `<out>/checkpoints/<row>.safetensors` when
/// `control.resume` is set) and evaluates it; `None` when `control.stop_after` paused it.
///
/// # Errors
/// Tensor and checkpoint errors and a diverging loss.
pub fn run_row(
    cfg: &Table1Config,
    row: Row,
    data: &datasets::FreyFace,
    out: &Path,
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
                let v_tilde = (&x + (&z * cfg.sigma)?)?;
                let est = bism_score(&m, &q_n, &v_tilde, cfg.bism.tau, &mut noise)?;
                dsm_functional(&est.score, &z, cfg.sigma, Reduction::Mean)
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
    let config_json = serde_json::to_string(&Table1Config {
        rows: vec![row],
        ..cfg.clone()
    })
    .expect("the settings serialise");
    let opts = setup::grbm_train_options(
        row.label(),
        cfg.iters,
        cfg.lr,
        setup::grbm_checkpoint(out, &row.key()),
        cfg.checkpoint_every,
        control,
        config_json,
    );
    let summary = train_with_state(&vm, &opts, &mut state, &mut loss_at, &mut after)?;
    if summary.completed < cfg.iters {
        return Ok(None);
    }
    let (_, best_step, snapshot) = state.best.expect("at least one evaluation");
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

/// Runs every row and writes `results.json`, `bism_table1.md`, `validation.png` and
/// `config.json` into `out`.
///
/// # Errors
/// Configuration, data, tensor, checkpoint and I/O errors; [`ExpError::Paused`] once every row has
/// reached `control.stop_after`.
pub fn run(
    cfg: &Table1Config,
    data_dir: &Path,
    out: &Path,
    control: RunControl,
) -> Result<Table1Results> {
    cfg.validate()?;
    sm_objectives::autodiff::ensure_higher_order()?;
    let data = datasets::load_frey_face(data_dir, &Device::Cpu)?;
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    write_json(&out.join("config.json"), cfg)?;
    let mut rows = Vec::new();
    for &row in &cfg.rows {
        rows.extend(run_row(cfg, row, &data, out, control)?);
    }
    if rows.len() < cfg.rows.len() {
        return Err(ExpError::Paused {
            step: control.stop_after.unwrap_or(0),
            checkpoints: setup::grbm_checkpoint_dir(out),
        });
    }
    let r = Table1Results {
        config: cfg.clone(),
        environment: environment(),
        rows,
    };
    write_json(&out.join("results.json"), &r)?;
    write_atomic(&out.join("bism_table1.md"), &markdown(&r))?;
    save_line_plot(
        &Panel {
            title: "GRBM on Frey face: validation SM loss".into(),
            x_label: "training step".into(),
            y_label: "validation SM loss".into(),
            axes: Axes::Linear,
            series: r
                .rows
                .iter()
                .map(|x| Series {
                    name: x.row.label(),
                    points: x.validation.iter().map(|(s, v)| (*s as f64, *v)).collect(),
                })
                .collect(),
        },
        &out.join("validation.png"),
    )?;
    Ok(r)
}

/// The Markdown report: our rows next to the paper's.
pub fn markdown(r: &Table1Results) -> String {
    let c = &r.config;
    let rows: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|x| {
            let p = x.row.paper();
            vec![
                x.row.label(),
                format!("{:.2} ± {:.2}", x.test_loglik, x.log_z_se),
                format!("{:.2}", x.test_fisher),
                x.best_step.to_string(),
                format!("{:.1}", x.ms_per_step),
                p.map_or("—".into(), |p| format!("{:.2}", p.0)),
                p.map_or("—".into(), |p| format!("{:.2}", p.1)),
            ]
        })
        .collect();
    format!(
        "# BiSM Table 1: GRBM on Frey face ({} profile)\n\nH = {}, {} iterations at batch {}, \
         Adam lr {}, DSM sigma {}, BiSM K = {}, tau = {}. Each row keeps the parameters with the \
         best validation SM loss ({} evaluations). LL: mean test log-likelihood with log Z by AIS \
         ({} chains, {} distributions; ± its standard error). Fisher: the exact test \
         score-matching loss (closed form, total over 560 pixels). Machine: {}. Paper: 20000 \
         iterations, lr 2e-4, AIS 2000 x 2000.\n\n{}",
        c.profile,
        c.hidden,
        c.iters,
        c.batch,
        c.lr,
        c.sigma,
        c.bism.lower_steps,
        c.bism.tau,
        c.eval_points,
        c.ais_chains,
        c.ais_steps,
        r.environment.cpu,
        markdown_table(
            &[
                "Method",
                "LL (ours)",
                "Fisher (ours)",
                "best step",
                "ms / step",
                "LL (paper)",
                "Fisher (paper)"
            ],
            &rows
        )
    )
}
