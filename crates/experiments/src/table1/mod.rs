//! Table 1 of FD-SM (Sec. 6.1): the deep kernel exponential family (DKEF) trained on the UCI
//! data sets Parkinsons, RedWine and WhiteWine by SSM, SSMVR and FD-SSM, with the test NLL
//! (`log Z` by importance sampling), the test exact SM loss and the time per iteration beside
//! the paper's; and the same on a 2-D checkerboard whose learned density is drawn.
//!
//! Every (data set, method, seed) is a row of the runner with two phases in their own
//! processes: `train` (Candle's higher-order mode for SSM and SSMVR, which differentiate through
//! input gradients as the reference does; FD-SSM needs none) and `eval` (the final `lambda`
//! phase, then the test numbers, with DKEF's exact derivatives in `x` propagated by hand).

mod config;
mod data;
mod eval;
mod report;
mod train;

pub use config::{DataSet, Method, Table1Config, DATA_SETS, METHODS};
pub use data::{load as load_data, Splits};
pub use eval::{eval_run, EvalReport};
pub use report::{markdown, Table1Results};
pub use train::{step_loss, train_run, TrainReport};

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::error::{ExpError, Result};
use crate::runner::{
    Context, Experiment, ExperimentRow, Kind, Phase, PhaseOutcome, RowContext, RowStatus,
};

/// One training run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// The data set.
    pub data: DataSet,
    /// The objective.
    pub method: Method,
    /// The seed's index.
    pub seed: u32,
}

impl Run {
    /// The seed of the run's initialisation, batches and directions (the same for every method
    /// at the same index and data set).
    pub fn seed_value(self, cfg: &Table1Config) -> u64 {
        crate::step_seed(cfg.seed, 2_000_000 + u64::from(self.seed))
    }

    /// `RedWine, FD-SSM, seed 0`.
    pub fn label_text(self) -> String {
        format!(
            "{}, {}, seed {}",
            self.data.label(),
            self.method.label(),
            self.seed
        )
    }
}

impl ExperimentRow for Run {
    fn key(&self) -> String {
        format!(
            "{}.{}.seed{}",
            self.data.key(),
            self.method.key(),
            self.seed
        )
    }

    fn label(&self) -> String {
        self.label_text()
    }

    fn parse(s: &str) -> Result<Self> {
        let bad = || ExpError::Config(format!("`{s}` is not a Table 1 run (data.method.seedN)"));
        let mut parts = s.splitn(3, '.');
        let (d, m, seed) = (
            parts.next().ok_or_else(bad)?,
            parts.next().ok_or_else(bad)?,
            parts.next().ok_or_else(bad)?,
        );
        Ok(Run {
            data: DataSet::parse(d)?,
            method: Method::parse(m)?,
            seed: seed
                .strip_prefix("seed")
                .and_then(|v| v.parse().ok())
                .ok_or_else(bad)?,
        })
    }
}

/// Table 1 for the runner.
#[derive(Debug, Clone, Copy)]
pub struct Table1;

/// The command-line options of Table 1 (overrides of the profile).
#[derive(Debug, Clone, Args)]
pub struct Table1Options {
    /// Data sets, comma-separated: parkinsons, redwine, whitewine, checkerboard.
    #[arg(long, value_delimiter = ',')]
    pub data: Option<Vec<String>>,
    /// Methods, comma-separated: ssm, ssmvr, fd-ssm.
    #[arg(long, value_delimiter = ',')]
    pub methods: Option<Vec<String>>,
    /// Override the training epochs.
    #[arg(long)]
    pub epochs: Option<u64>,
    /// Override the inducing points.
    #[arg(long)]
    pub inducing: Option<usize>,
    /// Override the feature width.
    #[arg(long)]
    pub hidden: Option<usize>,
    /// Override the runs per (data set, method).
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Override the importance samples of `log Z`.
    #[arg(long)]
    pub is_samples: Option<usize>,
    /// Override the steps of the final lambda phase.
    #[arg(long)]
    pub lambda_steps: Option<u64>,
    /// Override the validation interval (steps).
    #[arg(long)]
    pub val_every: Option<u64>,
    /// Stop after this many validations without improvement (0: never).
    #[arg(long)]
    pub patience: Option<u64>,
    /// Override the training points the kernel weights of validation and test are solved on.
    #[arg(long)]
    pub alpha_points: Option<usize>,
    /// Override the checkerboard's training points.
    #[arg(long)]
    pub toy_points: Option<usize>,
    /// Override the FD step.
    #[arg(long)]
    pub eps: Option<f64>,
    /// Master seed.
    #[arg(long)]
    pub seed: Option<u64>,
}

impl Experiment for Table1 {
    const NAME: &'static str = "table1";
    const KIND: Kind = Kind::Repro;
    const ABOUT: &'static str = "Table 1 of FD-SM: the deep kernel exponential family (DKEF) on \
        Parkinsons, RedWine and WhiteWine trained by SSM, SSMVR and FD-SSM, with the test NLL \
        (log Z by importance sampling), the test exact SM loss and the time per iteration \
        beside the paper's, plus a 2-D checkerboard whose learned density is drawn. Profiles: \
        quick (2-core CPU, 3 epochs) and paper (500 epochs, batch 200). Writes table1.md, \
        results.json, loss curves and densities.png.";
    const PROFILES: &'static [&'static str] = &["quick", "paper"];
    const TRAINS: bool = true;
    type Config = Table1Config;
    type Row = Run;
    type Options = Table1Options;

    fn config(profile: &str, a: &Table1Options) -> Result<Table1Config> {
        let mut cfg = Table1Config::profile(profile)?;
        if let Some(d) = &a.data {
            cfg.data_sets = d.iter().map(|k| DataSet::parse(k)).collect::<Result<_>>()?;
        }
        if let Some(m) = &a.methods {
            cfg.methods = m.iter().map(|k| Method::parse(k)).collect::<Result<_>>()?;
        }
        if let Some(e) = a.epochs {
            cfg.epochs = e;
        }
        if let Some(m) = a.inducing {
            cfg.inducing = m;
        }
        if let Some(h) = a.hidden {
            cfg.hidden = h;
        }
        if let Some(s) = a.seeds {
            cfg.seeds = s;
        }
        if let Some(s) = a.is_samples {
            cfg.is_samples = s;
        }
        if let Some(s) = a.lambda_steps {
            cfg.lambda_steps = s;
        }
        if let Some(v) = a.val_every {
            cfg.val_every = v;
        }
        if let Some(p) = a.patience {
            cfg.patience = (p > 0).then_some(p);
        }
        if let Some(n) = a.alpha_points {
            cfg.alpha_points = n;
        }
        if let Some(n) = a.toy_points {
            cfg.toy_points = n;
        }
        if let Some(e) = a.eps {
            cfg.eps = e;
        }
        if let Some(s) = a.seed {
            cfg.seed = s;
        }
        Ok(cfg)
    }

    fn validate(cfg: &Table1Config) -> Result<()> {
        cfg.validate()
    }

    fn datasets(cfg: &Table1Config) -> Vec<datasets::Dataset> {
        let mut out = Vec::new();
        for d in &cfg.data_sets {
            let ds = match d {
                DataSet::Parkinsons => datasets::Dataset::Parkinsons,
                DataSet::RedWine | DataSet::WhiteWine => datasets::Dataset::WineQuality,
                DataSet::Checkerboard => continue,
            };
            if !out.contains(&ds) {
                out.push(ds);
            }
        }
        out
    }

    fn rows(cfg: &Table1Config) -> Vec<Run> {
        let mut rows = Vec::new();
        for &data in &cfg.data_sets {
            for &method in &cfg.methods {
                for seed in 0..cfg.seeds as u32 {
                    rows.push(Run { data, method, seed });
                }
            }
        }
        rows
    }

    fn phases(_: &Table1Config, run: Run) -> Vec<Phase> {
        vec![
            Phase {
                name: "train",
                higher_order: run.method != Method::FdSsm,
            },
            Phase {
                name: "eval",
                higher_order: false,
            },
        ]
    }

    fn run_phase(
        ctx: &RowContext,
        cfg: &Table1Config,
        run: Run,
        phase: &str,
    ) -> Result<PhaseOutcome> {
        match phase {
            "train" => Ok(match train_run(ctx, cfg, run)?.paused_at {
                Some(step) => PhaseOutcome::Paused { step },
                None => PhaseOutcome::Done,
            }),
            "eval" => {
                eval_run(ctx, cfg, run)?;
                Ok(PhaseOutcome::Done)
            }
            other => Err(ExpError::Config(format!("table1 has no phase `{other}`"))),
        }
    }

    fn report(ctx: &Context, cfg: &Table1Config, rows: &[(Run, RowStatus)]) -> Result<String> {
        report::write(ctx, cfg, rows)
    }
}
