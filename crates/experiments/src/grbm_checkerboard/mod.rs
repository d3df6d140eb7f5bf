//! The checkerboard experiment of BiSM Sec. 5.1 (Figs. 2-3) and VaGES App. F/G (Figs. 3-4): a
//! GRBM with `H = 4` hidden units trained on 2-D checkerboard points by every method, with the
//! test log-likelihood (exact `log Z` by enumeration) along training and the learned densities.
//!
//! Methods: SSM and DSM on the exact marginal (the gold standard), CD-1, PCD, NCE, BiSSM and
//! BiDSM (K lower-level Adam steps on `q`, N unrolled steps), VaGES-DSM (the VaGES score from
//! `q`'s draws with `q` trained by the KL lower level), and KSD on the exact marginal score and
//! on the VaGES estimate (VaGES App. F.1).
//!
//! Each method is a row of the runner whose `train` phase trains and evaluates it in its own
//! process, checkpointed in `rows/<method>/`.

mod report;
mod train;

pub use report::{markdown, CheckerboardResults};
pub use train::{board_data, train_method, MethodResult};

use clap::Args;
use latent::bism::BismConfig;
use serde::{Deserialize, Serialize};

use crate::error::{ExpError, Result};
use crate::runner::{
    finish_training, Context, Experiment, ExperimentRow, Kind, Phase, PhaseOutcome, RowContext,
    RowStatus,
};

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

/// The plotted square: the unit square with a margin.
pub(crate) const LO: f64 = -0.25;
pub(crate) const HI: f64 = 1.25;

impl ExperimentRow for Method {
    fn key(&self) -> String {
        Method::key(*self).to_string()
    }

    fn label(&self) -> String {
        Method::label(*self).to_string()
    }

    fn parse(s: &str) -> Result<Self> {
        Method::parse(s)
    }
}

/// The checkerboard experiment for the runner.
#[derive(Debug, Clone, Copy)]
pub struct GrbmCheckerboard;

/// The command-line options of the checkerboard experiment.
#[derive(Debug, Clone, Args)]
pub struct CheckerboardOptions {
    /// Override the iterations per method.
    #[arg(long)]
    pub iters: Option<u64>,
    /// Methods, comma-separated: ssm, dsm, cd1, pcd, nce, bissm, bidsm, vages-dsm, ksd,
    /// vages-ksd.
    #[arg(long, value_delimiter = ',')]
    pub methods: Option<Vec<String>>,
    /// Override the number of unrolled BiSM steps N.
    #[arg(long)]
    pub unroll: Option<usize>,
    /// Checkpoint every this many steps (and at the end of each method).
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// Seed.
    #[arg(long)]
    pub seed: Option<u64>,
}

impl Experiment for GrbmCheckerboard {
    const NAME: &'static str = "grbm-checkerboard";
    const KIND: Kind = Kind::Repro;
    const ABOUT: &'static str = "BiSM Figs. 2-3 and VaGES Figs. 3-4: a Gaussian RBM (H = 4) \
        trained on the 2-D checkerboard by SSM, DSM, CD-1, PCD, NCE, BiSSM, BiDSM, VaGES-DSM, \
        KSD and VaGES-KSD, with the test log-likelihood curves (exact log Z) and the learned \
        densities. Profiles: quick (a few minutes on a laptop CPU) and paper (100000 \
        iterations at lr 1e-3). Writes grbm_checkerboard.md, results.json, densities.png and \
        loglik.png.";
    const PROFILES: &'static [&'static str] = &["quick", "paper"];
    const TRAINS: bool = true;
    type Config = CheckerboardConfig;
    type Row = Method;
    type Options = CheckerboardOptions;

    fn config(profile: &str, a: &CheckerboardOptions) -> Result<CheckerboardConfig> {
        let mut cfg = CheckerboardConfig::profile(profile)?;
        if let Some(i) = a.iters {
            cfg.iters = i;
            cfg.eval_points = cfg.eval_points.min(i as usize).max(1);
            cfg.checkpoint_every = cfg.checkpoint_every.min(i.max(1));
        }
        if let Some(every) = a.checkpoint_every {
            cfg.checkpoint_every = every;
        }
        if let Some(list) = &a.methods {
            cfg.methods = list
                .iter()
                .map(|m| Method::parse(m))
                .collect::<Result<_>>()?;
        }
        if let Some(n) = a.unroll {
            cfg.bism.unroll = n;
        }
        if let Some(s) = a.seed {
            cfg.seed = s;
        }
        Ok(cfg)
    }

    fn validate(cfg: &CheckerboardConfig) -> Result<()> {
        cfg.validate()
    }

    fn rows(cfg: &CheckerboardConfig) -> Vec<Method> {
        cfg.methods.clone()
    }

    fn phases(_: &CheckerboardConfig, _: Method) -> Vec<Phase> {
        // BiSM, VaGES and SSM differentiate scores; the others run in the same mode so that
        // every method's time per step is measured alike.
        vec![Phase {
            name: "train",
            higher_order: true,
        }]
    }

    fn run_phase(
        ctx: &RowContext,
        cfg: &CheckerboardConfig,
        method: Method,
        _phase: &str,
    ) -> Result<PhaseOutcome> {
        ctx.higher_order()?;
        let (train, test, _) = board_data(cfg)?;
        let result = train_method(cfg, method, (&train, &test), &ctx.dir, ctx.run.control)?;
        finish_training(ctx, result, cfg.iters)
    }

    fn report(
        ctx: &Context,
        cfg: &CheckerboardConfig,
        rows: &[(Method, RowStatus)],
    ) -> Result<String> {
        report::write(ctx, cfg, rows)
    }
}
