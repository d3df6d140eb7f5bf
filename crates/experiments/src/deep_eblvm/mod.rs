//! The deep EBLVM of BiSM Sec. 5.2 and the VaGES paper (App. F.2.2) on MNIST: an energy-based
//! latent-variable model whose energy is a deep network ([`models::DeepEblvm`]), with a
//! convolutional Gaussian posterior ([`models::ConvGaussianPosterior`]), trained by BiMDSM
//! (Fisher lower level, `K` steps, no unrolling) and by VaGES-MDSM (the same lower level, `L`
//! posterior particles refined by a few Langevin steps). Evaluated by samples (annealed
//! Langevin dynamics on `(v, h)` jointly, and on `v` given the posterior mean of a training
//! image, as the reference's `via_q` sampler), samples conditioned on the posterior means of
//! test digits, and the test accuracy of a linear probe on the posterior means.
//!
//! Every (method, seed) is a row with one `train` phase in its own process (training with
//! checkpoints and exact resume, then the evaluation).

mod config;
mod report;
mod train;

pub use config::{DeepEblvmExpConfig, Method, Run};
pub use report::{markdown, DeepEblvmResults};
pub use train::{run_row, RowResult};

use clap::Args;

use crate::error::{ExpError, Result};
use crate::runner::{
    finish_training, Context, Experiment, Kind, Phase, PhaseOutcome, RowContext, RowStatus,
};

/// The deep EBLVM for the runner.
#[derive(Debug, Clone, Copy)]
pub struct DeepEblvmExperiment;

/// The command-line options of the deep-EBLVM experiment.
#[derive(Debug, Clone, Args)]
pub struct DeepEblvmOptions {
    /// Override the training iterations per row.
    #[arg(long)]
    pub iters: Option<u64>,
    /// Methods: `bimdsm`, `vages-mdsm` (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub methods: Option<Vec<String>>,
    /// Override the number of seeds per method.
    #[arg(long)]
    pub seeds: Option<u32>,
    /// Override the latent size (BiSM: 20, 50, 100).
    #[arg(long)]
    pub latent: Option<usize>,
    /// Override the width `n` of the energy's ResNet (reference: 64).
    #[arg(long)]
    pub width: Option<usize>,
    /// Override the number of samples drawn per sampler.
    #[arg(long)]
    pub samples: Option<usize>,
    /// Override the Langevin schedule's step counts: hold, anneal, cool (e.g. `50,200,30`).
    #[arg(long, value_delimiter = ',')]
    pub langevin: Option<Vec<usize>>,
    /// Override the training and test images of the linear probe (e.g. `10000,2000`).
    #[arg(long, value_delimiter = ',')]
    pub probe: Option<Vec<usize>>,
    /// Override the learning rate of the energy and of the posterior, both methods
    /// (reference: 1e-4).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Clip the energy's and the posterior's gradients to this global norm (`none`: off).
    #[arg(long)]
    pub clip: Option<String>,
    /// Checkpoint every this many steps (and at the end of each row).
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// Seed.
    #[arg(long)]
    pub seed: Option<u64>,
}

impl Experiment for DeepEblvmExperiment {
    const NAME: &'static str = "deep-eblvm";
    const KIND: Kind = Kind::Repro;
    const ABOUT: &'static str = "The deep energy-based latent-variable model of Bi-level Score \
        Matching (Sec. 5.2) and VaGES on MNIST: a ResNet energy coupled to a continuous latent \
        variable, a convolutional Gaussian posterior, trained by BiMDSM and VaGES-MDSM; samples \
        by annealed Langevin dynamics (joint, via the posterior, conditioned on test digits), the \
        posterior's Fisher divergence along training and the linear-probe accuracy of the \
        posterior means. Profiles: quick (about 12 minutes on 2 cores) and paper (100K \
        iterations at batch 100, n = 64, h = 50). Writes deep_eblvm.md, results.json, \
        curves.png and sample grids.";
    const PROFILES: &'static [&'static str] = &["quick", "paper"];
    const TRAINS: bool = true;
    type Config = DeepEblvmExpConfig;
    type Row = Run;
    type Options = DeepEblvmOptions;

    fn config(profile: &str, a: &DeepEblvmOptions) -> Result<DeepEblvmExpConfig> {
        let mut cfg = DeepEblvmExpConfig::profile(profile)?;
        if let Some(i) = a.iters {
            cfg.iters = i;
            cfg.checkpoint_every = cfg.checkpoint_every.min(i.max(1));
            cfg.log_every = cfg.log_every.min(i.max(1));
        }
        if let Some(every) = a.checkpoint_every {
            cfg.checkpoint_every = every;
        }
        if let Some(methods) = &a.methods {
            cfg.methods = methods
                .iter()
                .map(|m| Method::parse(m))
                .collect::<Result<_>>()?;
        }
        if let Some(s) = a.seeds {
            cfg.seeds = s;
        }
        if let Some(h) = a.latent {
            cfg.set_latent(h);
        }
        if let Some(w) = a.width {
            cfg.set_width(w);
        }
        if let Some(n) = a.samples {
            cfg.samples = n;
        }
        if let Some(l) = &a.langevin {
            let [hold, anneal, cool] = l.as_slice() else {
                return Err(ExpError::Config(
                    "--langevin takes three step counts, hold, anneal and cool, e.g. 50,200,30"
                        .into(),
                ));
            };
            cfg.langevin.hold_steps = *hold;
            cfg.langevin.anneal_steps = *anneal;
            cfg.langevin.cool_steps = *cool;
        }
        if let Some(p) = &a.probe {
            let [train, test] = p.as_slice() else {
                return Err(ExpError::Config(
                    "--probe takes two image counts, training and test, e.g. 10000,2000".into(),
                ));
            };
            cfg.probe_train = *train;
            cfg.probe_test = *test;
        }
        if let Some(lr) = a.lr {
            cfg.lr = lr;
            cfg.lower_lr = lr;
            cfg.vages_lr = lr;
        }
        if let Some(c) = &a.clip {
            cfg.clip = match c.as_str() {
                "none" => None,
                v => Some(v.parse().map_err(|_| {
                    ExpError::Config(format!("--clip takes a norm or `none`, got `{v}`"))
                })?),
            };
        }
        if let Some(s) = a.seed {
            cfg.seed = s;
        }
        Ok(cfg)
    }

    fn validate(cfg: &DeepEblvmExpConfig) -> Result<()> {
        cfg.validate()
    }

    fn datasets(_: &DeepEblvmExpConfig) -> Vec<datasets::Dataset> {
        vec![datasets::Dataset::Mnist]
    }

    fn rows(cfg: &DeepEblvmExpConfig) -> Vec<Run> {
        cfg.runs()
    }

    fn phases(_: &DeepEblvmExpConfig, _: Run) -> Vec<Phase> {
        vec![Phase {
            name: "train",
            higher_order: true,
        }]
    }

    fn run_phase(
        ctx: &RowContext,
        cfg: &DeepEblvmExpConfig,
        run: Run,
        _phase: &str,
    ) -> Result<PhaseOutcome> {
        ctx.higher_order()?;
        let result = run_row(ctx, cfg, run)?;
        finish_training(ctx, result, cfg.iters)
    }

    fn report(
        ctx: &Context,
        cfg: &DeepEblvmExpConfig,
        rows: &[(Run, RowStatus)],
    ) -> Result<String> {
        report::write(ctx, cfg, rows)
    }
}
