//! Table 3 of FD-SM (Sec. 6.2, App. C.2): the NICE flow trained on MNIST by Approx-BP, CP, DSM
//! (two noise levels), SSM, SSMVR, FD-SSM and MLE, with the exact test SM loss, the test NLL
//! (logit space) and the time per iteration, averaged over seeds, beside the paper's numbers.
//!
//! Every (method, seed) is a row of the runner with two phases in their own processes: `train`
//! (Candle's higher-order mode only for the autodiff-through-gradient methods, so that the
//! timings are the method's own) and `eval` (exact SM needs the mode).

mod config;
mod data;
mod eval;
mod objective;
mod report;
mod train;

pub use config::{Method, PaperRow, Table3Config, ALL_METHODS, METHODS};
pub use data::{load as load_mnist, to_logit, to_pixels, MnistSplits, SPLIT_SEED};
pub use eval::{eval_run, EvalReport};
pub use objective::loss;
pub use report::{markdown, MethodSummary, Table3Results};
pub use train::{train_run, validation_loss, TrainReport};

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::error::{ExpError, Result};
use crate::runner::{
    Context, Experiment, ExperimentRow, Kind, Phase, PhaseOutcome, RowContext, RowStatus,
};

/// One training run: a method and the index of its seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// The method.
    pub method: Method,
    /// The seed's index, `0..seeds`.
    pub seed: u32,
}

impl Run {
    /// The seed of the run's initialisation, batches and noise: the same for every method at
    /// the same index, so that methods are compared from the same initial flows.
    pub fn seed_value(self, cfg: &Table3Config) -> u64 {
        crate::step_seed(cfg.seed, 1_000_000 + u64::from(self.seed))
    }

    /// `FD-SSM, seed 1`.
    pub fn label_text(self) -> String {
        format!("{}, seed {}", self.method.label(), self.seed)
    }
}

impl ExperimentRow for Run {
    fn key(&self) -> String {
        format!("{}.seed{}", self.method.key(), self.seed)
    }

    fn label(&self) -> String {
        self.label_text()
    }

    fn parse(s: &str) -> Result<Self> {
        let (method, seed) = s.rsplit_once(".seed").ok_or_else(|| {
            ExpError::Config(format!("`{s}` is not a Table 3 run (method.seedN)"))
        })?;
        Ok(Run {
            method: Method::parse(method)?,
            seed: seed
                .parse()
                .map_err(|_| ExpError::Config(format!("`{s}`: the seed index must be a number")))?,
        })
    }
}

/// Table 3 for the runner.
#[derive(Debug, Clone, Copy)]
pub struct Table3;

/// The command-line options of Table 3 (overrides of the profile).
#[derive(Debug, Clone, Args)]
pub struct Table3Options {
    /// Methods to run, comma-separated: approx-bp, cp, dsm-0.1, dsm-1.74, ssm, ssmvr, fd-ssm,
    /// mle, and sm (exact score matching at batch 24, not a row of the paper's table).
    #[arg(long, value_delimiter = ',')]
    pub methods: Option<Vec<String>>,
    /// Override the training steps per run.
    #[arg(long)]
    pub iters: Option<u64>,
    /// Override the batch size.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Override the coupling networks' hidden width (reference 1000).
    #[arg(long)]
    pub hidden: Option<usize>,
    /// Override the learning rate of FD-SSM, DSM and CP (reference 1e-3).
    #[arg(long)]
    pub lr_fast: Option<f64>,
    /// Override the learning rate of SSM, SSMVR, Approx-BP, MLE and exact SM (reference 1e-4).
    #[arg(long)]
    pub lr_slow: Option<f64>,
    /// Override the runs per method (all methods).
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Override the test images of the exact SM loss (784 reverse passes per batch: the
    /// evaluation's cost).
    #[arg(long)]
    pub test_sm_images: Option<usize>,
    /// Override the test images of the NLL.
    #[arg(long)]
    pub test_nll_images: Option<usize>,
    /// Override the validation images.
    #[arg(long)]
    pub val_images: Option<usize>,
    /// Override the validation interval (steps).
    #[arg(long)]
    pub val_every: Option<u64>,
    /// Master seed.
    #[arg(long)]
    pub seed: Option<u64>,
}

impl Experiment for Table3 {
    const NAME: &'static str = "table3";
    const KIND: Kind = Kind::Repro;
    const ABOUT: &'static str = "Table 3 of FD-SM: NICE on MNIST trained by Approx BP, CP, DSM \
        (sigma 0.1 and 1.74), SSM, SSMVR, FD-SSM and MLE, with the exact test SM loss, the test \
        NLL (logit space) and the time per iteration, mean and std over seeds, beside the \
        paper's. Profiles: quick (2-core CPU, about 10 minutes after the build: 200-unit \
        couplings, 300 steps, 3 seeds) and paper (1000-unit couplings, 100 epochs, 5 seeds, 10 \
        for the sliced rows; meant for a GPU). Writes table3.md, results.json, loss curves and \
        sample grids.";
    const PROFILES: &'static [&'static str] = &["quick", "paper"];
    const TRAINS: bool = true;
    type Config = Table3Config;
    type Row = Run;
    type Options = Table3Options;

    fn config(profile: &str, a: &Table3Options) -> Result<Table3Config> {
        let mut cfg = Table3Config::profile(profile)?;
        if let Some(m) = &a.methods {
            cfg.methods = m.iter().map(|k| Method::parse(k)).collect::<Result<_>>()?;
        }
        if let Some(i) = a.iters {
            cfg.iters = i;
            cfg.checkpoint_every = cfg.checkpoint_every.min(i.max(1));
            cfg.val_every = cfg.val_every.min(i.max(1));
        }
        if let Some(b) = a.batch {
            cfg.batch = b;
            cfg.sm_batch = cfg.sm_batch.min(b);
        }
        if let Some(h) = a.hidden {
            cfg.model.hidden = h;
        }
        if let Some(lr) = a.lr_fast {
            cfg.lr_fast = lr;
        }
        if let Some(lr) = a.lr_slow {
            cfg.lr_slow = lr;
        }
        if let Some(s) = a.seeds {
            cfg.seeds = s;
            cfg.sliced_seeds = s;
        }
        if let Some(n) = a.test_sm_images {
            cfg.test_sm_images = n;
        }
        if let Some(n) = a.test_nll_images {
            cfg.test_nll_images = n;
        }
        if let Some(n) = a.val_images {
            cfg.val_images = n;
        }
        if let Some(n) = a.val_every {
            cfg.val_every = n;
        }
        if let Some(s) = a.seed {
            cfg.seed = s;
        }
        cfg.eval_batch = cfg
            .eval_batch
            .min(cfg.test_sm_images.max(1))
            .min(cfg.val_images.max(1));
        cfg.timing_warmup = cfg.timing_warmup.min(cfg.iters.saturating_sub(1) as usize);
        Ok(cfg)
    }

    fn validate(cfg: &Table3Config) -> Result<()> {
        cfg.validate()
    }

    fn datasets(_: &Table3Config) -> Vec<datasets::Dataset> {
        vec![datasets::Dataset::Mnist]
    }

    fn rows(cfg: &Table3Config) -> Vec<Run> {
        cfg.methods
            .iter()
            .flat_map(|&method| {
                (0..cfg.seeds_of(method) as u32).map(move |seed| Run { method, seed })
            })
            .collect()
    }

    fn phases(_: &Table3Config, run: Run) -> Vec<Phase> {
        vec![
            Phase {
                name: "train",
                higher_order: run.method.higher_order(),
            },
            Phase {
                name: "eval",
                higher_order: true,
            },
        ]
    }

    fn run_phase(
        ctx: &RowContext,
        cfg: &Table3Config,
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
            other => Err(ExpError::Config(format!("table3 has no phase `{other}`"))),
        }
    }

    fn report(ctx: &Context, cfg: &Table3Config, rows: &[(Run, RowStatus)]) -> Result<String> {
        report::write(ctx, cfg, rows)
    }
}
