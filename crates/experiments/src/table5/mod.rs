//! Table 5 of FD-SM (Sec. 6.4): the noise-conditional score network of NCSN (Song and Ermon
//! 2019; `models::Ncsn`, the conditional RefineNet) trained by annealed SSMVR and FD-SSMVR, with
//! FID of samples drawn by annealed Langevin dynamics, time per iteration and memory, beside the
//! paper's.
//!
//! Every (estimator, seed) is a row of the runner with two phases in their own processes:
//! `train` (Candle's higher-order mode only for SSMVR, so each estimator's time and memory are
//! its own) and `eval` (sampling and FID; first order).

mod config;
mod eval;
mod report;
mod train;

pub use config::{paper_numbers, Estimator, Table5Config, Table5Data, ESTIMATORS};
pub use eval::{annealed_langevin_samples, eval_run, EvalReport};
pub use report::{markdown, Comparison, RowSummary, Table5Results};
pub use train::{model_config, row_loss, test_dsm, train_run, TestPoint, TrainReport};

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::error::{ExpError, Result};
use crate::runner::{
    Context, Experiment, ExperimentRow, Kind, Phase, PhaseOutcome, RowContext, RowStatus,
};

/// One training run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// The estimator.
    pub estimator: Estimator,
    /// The seed's index.
    pub seed: u32,
}

impl Run {
    /// The seed of the run's initialisation, batches and noise: the same for both estimators at
    /// the same index, so they start from the same network and see the same batches.
    pub fn seed_value(self, cfg: &Table5Config) -> u64 {
        crate::step_seed(cfg.seed, 5_000_000 + u64::from(self.seed))
    }

    /// `fd-ssmvr` (the row without its seed).
    pub fn key_text(self) -> String {
        self.estimator.key().to_string()
    }

    /// `FD-SSMVR, seed 0`.
    pub fn label_text(self) -> String {
        format!("{}, seed {}", self.estimator.label(), self.seed)
    }
}

impl ExperimentRow for Run {
    fn key(&self) -> String {
        format!("{}.seed{}", self.key_text(), self.seed)
    }

    fn label(&self) -> String {
        self.label_text()
    }

    fn parse(s: &str) -> Result<Self> {
        let bad = || {
            ExpError::Config(format!(
                "`{s}` is not a Table 5 run (estimator.seedN, e.g. fd-ssmvr.seed0)"
            ))
        };
        let (estimator, seed) = s.split_once('.').ok_or_else(bad)?;
        Ok(Run {
            estimator: Estimator::parse(estimator)?,
            seed: seed
                .strip_prefix("seed")
                .and_then(|v| v.parse().ok())
                .ok_or_else(bad)?,
        })
    }
}

/// Table 5 for the runner.
#[derive(Debug, Clone, Copy)]
pub struct Table5;

/// The command-line options of Table 5 (overrides of the profile).
#[derive(Debug, Clone, Args)]
pub struct Table5Options {
    /// Images: mnist, fashion-mnist, cifar-10.
    #[arg(long)]
    pub data: Option<String>,
    /// Estimators, comma-separated: ssmvr, fd-ssmvr.
    #[arg(long, value_delimiter = ',')]
    pub estimators: Option<Vec<String>>,
    /// Override the runs per estimator.
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Override the RefineNet's width (ngf).
    #[arg(long)]
    pub ngf: Option<usize>,
    /// Override the training steps.
    #[arg(long)]
    pub iters: Option<u64>,
    /// Override the batch size.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Override the Adam learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Override FD-SSMVR's step.
    #[arg(long)]
    pub eps: Option<f64>,
    /// Override the annealed Langevin steps per level.
    #[arg(long)]
    pub langevin_steps: Option<usize>,
    /// Override the Langevin step at the smallest level.
    #[arg(long)]
    pub step_lr: Option<f64>,
    /// End the sampling with one denoising step.
    #[arg(long)]
    pub denoise: bool,
    /// Override the samples in the grid.
    #[arg(long)]
    pub samples: Option<usize>,
    /// Override the samples of FID (0: no FID).
    #[arg(long)]
    pub fid_samples: Option<usize>,
    /// Override the test images of the evaluations along training.
    #[arg(long)]
    pub eval_images: Option<usize>,
    /// Override the evaluations along training.
    #[arg(long)]
    pub eval_points: Option<usize>,
    /// Where LeNet's weights and the reference features are cached (default:
    /// `<data>/feature-nets`).
    #[arg(long)]
    pub feature_cache: Option<std::path::PathBuf>,
    /// Master seed.
    #[arg(long)]
    pub seed: Option<u64>,
}

impl Experiment for Table5 {
    const NAME: &'static str = "table5";
    const KIND: Kind = Kind::Repro;
    const ABOUT: &'static str = "Table 5 of FD-SM: NCSN's conditional RefineNet trained by \
        annealed SSMVR and FD-SSMVR, with FID of samples drawn by annealed Langevin dynamics, the \
        time per iteration and the memory of the training steps, beside the paper's. Profiles: \
        quick (2-core CPU, about 10 minutes: MNIST, ngf 8, 400 steps at batch 32, 20 Langevin \
        steps per level, FID with LeNet features of 256 samples) and paper (CIFAR-10, ngf 128, \
        200K steps at batch 128, 100 Langevin steps per level, FID of 50 000 samples with \
        Inception features; for a GPU). Writes table5.md, results.json, loss curves, sample \
        grids.";
    const PROFILES: &'static [&'static str] = &["quick", "paper"];
    const TRAINS: bool = true;
    type Config = Table5Config;
    type Row = Run;
    type Options = Table5Options;

    fn config(profile: &str, a: &Table5Options) -> Result<Table5Config> {
        let mut cfg = Table5Config::profile(profile)?;
        if let Some(d) = &a.data {
            cfg.data = Table5Data::parse(d)?;
        }
        if let Some(e) = &a.estimators {
            cfg.estimators = e
                .iter()
                .map(|k| Estimator::parse(k))
                .collect::<Result<_>>()?;
        }
        if let Some(s) = a.seeds {
            cfg.seeds = s;
        }
        if let Some(n) = a.ngf {
            cfg.ngf = n;
        }
        if let Some(i) = a.iters {
            cfg.iters = i;
            cfg.checkpoint_every = cfg.checkpoint_every.min(i.max(1));
            cfg.timing_warmup = cfg.timing_warmup.min(i.saturating_sub(1) as usize);
        }
        if let Some(b) = a.batch {
            cfg.batch = b;
        }
        if let Some(lr) = a.lr {
            cfg.lr = lr;
        }
        if let Some(e) = a.eps {
            cfg.eps = e;
        }
        if let Some(n) = a.langevin_steps {
            cfg.langevin_steps = n;
        }
        if let Some(s) = a.step_lr {
            cfg.step_lr = s;
        }
        if a.denoise {
            cfg.denoise = true;
        }
        if let Some(n) = a.samples {
            cfg.samples = n;
        }
        if let Some(n) = a.fid_samples {
            cfg.fid_samples = n;
        }
        if let Some(n) = a.eval_images {
            cfg.eval_images = n;
        }
        if let Some(n) = a.eval_points {
            cfg.eval_points = n;
        }
        if let Some(p) = &a.feature_cache {
            cfg.feature_cache = Some(p.clone());
        }
        if let Some(s) = a.seed {
            cfg.seed = s;
        }
        Ok(cfg)
    }

    fn validate(cfg: &Table5Config) -> Result<()> {
        cfg.validate()
    }

    fn datasets(cfg: &Table5Config) -> Vec<datasets::Dataset> {
        let mut sets = vec![cfg.data.dataset()];
        if cfg.data == Table5Data::Cifar10 && cfg.fid_samples > 0 {
            sets.push(datasets::Dataset::FidInception);
        }
        sets
    }

    fn rows(cfg: &Table5Config) -> Vec<Run> {
        let mut rows = Vec::new();
        for &estimator in &cfg.estimators {
            for seed in 0..cfg.seeds as u32 {
                rows.push(Run { estimator, seed });
            }
        }
        rows
    }

    fn phases(_: &Table5Config, run: Run) -> Vec<Phase> {
        vec![
            Phase {
                name: "train",
                higher_order: run.estimator.higher_order(),
            },
            Phase {
                name: "eval",
                higher_order: false,
            },
        ]
    }

    fn run_phase(
        ctx: &RowContext,
        cfg: &Table5Config,
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
            other => Err(ExpError::Config(format!("table5 has no phase `{other}`"))),
        }
    }

    fn report(ctx: &Context, cfg: &Table5Config, rows: &[(Run, RowStatus)]) -> Result<String> {
        report::write(ctx, cfg, rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_keys_round_trip_and_bad_settings_are_named() {
        for run in Table5::rows(&Table5Config {
            seeds: 2,
            ..Table5Config::quick()
        }) {
            assert_eq!(Run::parse(&run.key()).unwrap(), run);
        }
        assert!(Run::parse("dsm.seed0").is_err());
        assert!(Run::parse("ssmvr").is_err());
        let bad = |f: &dyn Fn(&mut Table5Config), word: &str| {
            let mut cfg = Table5Config::quick();
            f(&mut cfg);
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(word), "{word}: {err}");
        };
        bad(&|c| c.ngf = 1, "ngf");
        bad(&|c| c.sigma_min = 2.0, "sigma_min");
        bad(&|c| c.fid_samples = 100, "fid_samples");
        bad(&|c| c.step_lr = 0.0, "step_lr");
        assert!(Table5Config::quick().validate().is_ok());
        assert!(Table5Config::paper().validate().is_ok());
        assert_eq!(Table5Config::quick().sigmas().unwrap().len(), 10);
    }
}
