//! The training-method gallery of "How to Train Your Energy-Based Models" (Song and Kingma
//! 2021) on 2-D densities: the same small MLP energy trained by every method of the project:
//! maximum likelihood with short-run Langevin chains (Sec. 3), contrastive divergence and
//! persistent chains with a replay buffer (Sec. 3), noise-contrastive estimation (Sec. 5), the
//! kernelized Stein discrepancy (Sec. 6.2), and score matching: exact SM, SSM, SSMVR, DSM
//! (Sec. 4) and the finite-difference FD-SSM and FD-DSM of FD-SM (Pang et al. 2020).
//!
//! Each (density, method) is a row trained in its own process; the report shows the learned
//! densities and Langevin samples side by side per density, the test log-likelihood with the
//! log-normaliser computed numerically on a grid (the densities are 2-D) and the time per step.

mod report;
mod train;

pub use report::{GalleryResults, RowResult};
pub use train::{train_row, LL_HALF_WIDTH};

use ::train::mcmc::Sgld;
use clap::Args;
use datasets::Toy2d;
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
    /// Maximum likelihood, negatives from short-run Langevin chains started from uniform noise.
    MleLangevin,
    /// Contrastive divergence: negatives from Langevin chains started at the data batch.
    Cd,
    /// Persistent chains: negatives from a replay buffer of past chains.
    Pcd,
    /// Noise-contrastive estimation against a Gaussian fitted to the data, learned log Z.
    Nce,
    /// The kernelized Stein discrepancy (RBF kernel, median bandwidth).
    Ksd,
    /// Exact score matching (the Hessian's trace by autodiff).
    Sm,
    /// Sliced score matching (Gaussian projections).
    Ssm,
    /// SSM with variance reduction.
    Ssmvr,
    /// Denoising score matching.
    Dsm,
    /// Finite-difference SSM.
    FdSsm,
    /// Finite-difference DSM.
    FdDsm,
}

impl Method {
    /// Every method, in the gallery's order.
    pub const ALL: [Method; 11] = [
        Method::MleLangevin,
        Method::Cd,
        Method::Pcd,
        Method::Nce,
        Method::Ksd,
        Method::Sm,
        Method::Ssm,
        Method::Ssmvr,
        Method::Dsm,
        Method::FdSsm,
        Method::FdDsm,
    ];

    /// Printed name.
    pub fn label(self) -> &'static str {
        match self {
            Method::MleLangevin => "MLE (Langevin)",
            Method::Cd => "CD",
            Method::Pcd => "PCD",
            Method::Nce => "NCE",
            Method::Ksd => "KSD",
            Method::Sm => "SM",
            Method::Ssm => "SSM",
            Method::Ssmvr => "SSMVR",
            Method::Dsm => "DSM",
            Method::FdSsm => "FD-SSM",
            Method::FdDsm => "FD-DSM",
        }
    }

    /// Command-line name.
    pub fn key(self) -> &'static str {
        match self {
            Method::MleLangevin => "mle-langevin",
            Method::Cd => "cd",
            Method::Pcd => "pcd",
            Method::Nce => "nce",
            Method::Ksd => "ksd",
            Method::Sm => "sm",
            Method::Ssm => "ssm",
            Method::Ssmvr => "ssmvr",
            Method::Dsm => "dsm",
            Method::FdSsm => "fd-ssm",
            Method::FdDsm => "fd-dsm",
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
                    "unknown method `{s}`; expected one of {}",
                    Self::ALL.map(Method::key).join(", ")
                ))
            })
    }

    /// Whether the loss differentiates through the model's input gradient.
    fn higher_order(self) -> bool {
        matches!(
            self,
            Method::Sm | Method::Ssm | Method::Ssmvr | Method::Dsm | Method::Ksd
        )
    }
}

/// One cell of the gallery: a density and a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    /// The data.
    pub density: Toy2d,
    /// The training method.
    pub method: Method,
}

impl ExperimentRow for Cell {
    fn key(&self) -> String {
        format!("{}.{}", self.density.key(), self.method.key())
    }

    fn label(&self) -> String {
        format!("{} / {}", self.density.key(), self.method.label())
    }

    fn parse(s: &str) -> Result<Self> {
        let (d, m) = s.split_once('.').ok_or_else(|| {
            ExpError::Config(format!("a gallery row is <density>.<method>, got `{s}`"))
        })?;
        Ok(Cell {
            density: Toy2d::parse(d).map_err(|e| ExpError::Config(e.to_string()))?,
            method: Method::parse(m)?,
        })
    }
}

/// Settings of the gallery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GalleryConfig {
    /// Profile name.
    pub profile: String,
    /// Densities.
    pub densities: Vec<Toy2d>,
    /// Methods.
    pub methods: Vec<Method>,
    /// Hidden widths of the MLP energy (softplus), input 2, output 1.
    pub hidden: Vec<usize>,
    /// Training points per density (fixed set) and test points.
    pub train_points: usize,
    /// Test points per density.
    pub test_points: usize,
    /// Training steps per row.
    pub iters: u64,
    /// Batch size.
    pub batch: usize,
    /// Adam learning rate (cosine schedule).
    pub lr: f64,
    /// DSM and FD-DSM noise level.
    pub sigma: f64,
    /// FD-SSM and FD-DSM projection radius.
    pub fd_eps: f64,
    /// The Langevin sampler of MLE (from uniform noise) and PCD (from the buffer).
    pub sgld: Sgld,
    /// Langevin steps of CD, from the data.
    pub cd_steps: usize,
    /// Replay buffer size and reinitialisation probability of PCD.
    pub buffer: usize,
    /// Probability that a PCD chain restarts from noise.
    pub reinit: f64,
    /// The energy-magnitude regulariser of MLE, CD and PCD.
    pub alpha: f64,
    /// NCE: the Gaussian noise's spread relative to the data's.
    pub nce_widen: f64,
    /// Grid points per side of `[-5, 5]^2` for the normaliser and the plots.
    pub grid: usize,
    /// Langevin samples drawn from each trained model for the picture.
    pub samples: usize,
    /// Their Langevin steps (unadjusted, from uniform noise on the plotted square).
    pub sample_steps: usize,
    /// Their step size.
    pub sample_step_size: f64,
    /// Checkpoint every this many steps.
    pub checkpoint_every: u64,
    /// Seed.
    pub seed: u64,
}

impl GalleryConfig {
    /// The default: every density and method, about 10 minutes on 2 cores.
    pub fn quick() -> Self {
        Self {
            profile: "quick".into(),
            densities: Toy2d::ALL.to_vec(),
            methods: Method::ALL.to_vec(),
            hidden: vec![128, 128],
            train_points: 20_000,
            test_points: 5_000,
            iters: 3000,
            batch: 128,
            lr: 2e-3,
            sigma: 0.1,
            fd_eps: 0.1,
            sgld: Sgld {
                steps: 20,
                step_size: 0.02,
                noise_scale: 0.2,
                clip: Some(10.0),
                bounds: Some((-LL_HALF_WIDTH, LL_HALF_WIDTH)),
            },
            cd_steps: 5,
            buffer: 10_000,
            reinit: 0.05,
            alpha: 0.1,
            nce_widen: 1.5,
            grid: 120,
            samples: 1000,
            sample_steps: 500,
            sample_step_size: 0.01,
            checkpoint_every: 500,
            seed: 0,
        }
    }

    /// A longer run: 20000 steps of a deeper network (128-128-128), a finer grid.
    pub fn paper() -> Self {
        Self {
            profile: "paper".into(),
            hidden: vec![128, 128, 128],
            iters: 20_000,
            lr: 1e-3,
            grid: 200,
            checkpoint_every: 2000,
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
        let bad = |m: &str| Err(ExpError::Config(m.into()));
        if self.densities.is_empty() || self.methods.is_empty() {
            return bad("no density or no method selected");
        }
        if self.hidden.is_empty() || self.hidden.contains(&0) {
            return bad("hidden must list at least one non-zero width");
        }
        if self.batch < 2 || self.batch > self.train_points || self.test_points == 0 {
            return bad("batch must be in 2..=train_points and test_points >= 1");
        }
        if self.iters == 0 || self.checkpoint_every == 0 || self.grid < 10 || self.samples == 0 {
            return bad("iters, checkpoint_every, samples >= 1 and grid >= 10 needed");
        }
        if self.cd_steps == 0 || self.buffer == 0 || !(0.0..=1.0).contains(&self.reinit) {
            return bad("cd_steps, buffer >= 1 and reinit in [0, 1] needed");
        }
        crate::require_positive(&[
            ("lr", self.lr),
            ("sigma", self.sigma),
            ("fd_eps", self.fd_eps),
            ("nce_widen", self.nce_widen),
            ("sample_step_size", self.sample_step_size),
        ])?;
        if !(self.alpha.is_finite() && self.alpha >= 0.0) {
            return bad("alpha must be >= 0");
        }
        self.sgld
            .validate()
            .map_err(|e| ExpError::Config(e.to_string()))
    }
}

/// The gallery for the runner.
#[derive(Debug, Clone, Copy)]
pub struct ToyGallery;

/// The command-line options of the gallery.
#[derive(Debug, Clone, Args)]
pub struct GalleryOptions {
    /// Densities, comma-separated: checkerboard, rings, two-moons, 8-gaussians, spiral.
    #[arg(long, value_delimiter = ',')]
    pub densities: Option<Vec<String>>,
    /// Methods, comma-separated: mle-langevin, cd, pcd, nce, ksd, sm, ssm, ssmvr, dsm, fd-ssm,
    /// fd-dsm.
    #[arg(long, value_delimiter = ',')]
    pub methods: Option<Vec<String>>,
    /// Override the training steps per row.
    #[arg(long)]
    pub iters: Option<u64>,
    /// Override the Langevin samples per model (the picture).
    #[arg(long)]
    pub samples: Option<usize>,
    /// Override the hidden widths, comma-separated (e.g. 128,128,128).
    #[arg(long, value_delimiter = ',')]
    pub hidden: Option<Vec<usize>>,
    /// Override the learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Override the grid points per side.
    #[arg(long)]
    pub grid: Option<usize>,
    /// Checkpoint every this many steps (and at the end of each cell).
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// Seed.
    #[arg(long)]
    pub seed: Option<u64>,
}

impl Experiment for ToyGallery {
    const NAME: &'static str = "toy-gallery";
    const KIND: Kind = Kind::Repro;
    const ABOUT: &'static str = "The training methods of \"How to Train Your EBMs\" side by side: \
        one MLP energy trained on five 2-D densities (checkerboard, rings, two moons, 8 \
        Gaussians, spiral) by MLE with Langevin chains, CD, PCD, NCE, KSD, SM, SSM, SSMVR, DSM, \
        FD-SSM and FD-DSM, with the learned densities and Langevin samples per density, the \
        test log-likelihood (log Z on a grid) and the time per step. Profiles: quick (about 10 \
        minutes on 2 cores) and paper (longer, wider). Writes toy_gallery.md, results.json, \
        <density>.png.";
    const PROFILES: &'static [&'static str] = &["quick", "paper"];
    const TRAINS: bool = true;
    type Config = GalleryConfig;
    type Row = Cell;
    type Options = GalleryOptions;

    fn config(profile: &str, a: &GalleryOptions) -> Result<GalleryConfig> {
        let mut cfg = GalleryConfig::profile(profile)?;
        if let Some(list) = &a.densities {
            cfg.densities = list
                .iter()
                .map(|d| Toy2d::parse(d).map_err(|e| ExpError::Config(e.to_string())))
                .collect::<Result<_>>()?;
        }
        if let Some(list) = &a.methods {
            cfg.methods = list
                .iter()
                .map(|m| Method::parse(m))
                .collect::<Result<_>>()?;
        }
        if let Some(i) = a.iters {
            cfg.iters = i;
            cfg.checkpoint_every = cfg.checkpoint_every.min(i.max(1));
        }
        if let Some(s) = a.samples {
            cfg.samples = s;
        }
        if let Some(h) = &a.hidden {
            cfg.hidden = h.clone();
        }
        if let Some(lr) = a.lr {
            cfg.lr = lr;
        }
        if let Some(g) = a.grid {
            cfg.grid = g;
        }
        if let Some(every) = a.checkpoint_every {
            cfg.checkpoint_every = every;
        }
        if let Some(s) = a.seed {
            cfg.seed = s;
        }
        Ok(cfg)
    }

    fn validate(cfg: &GalleryConfig) -> Result<()> {
        cfg.validate()
    }

    fn rows(cfg: &GalleryConfig) -> Vec<Cell> {
        cfg.densities
            .iter()
            .flat_map(|&density| {
                cfg.methods
                    .iter()
                    .map(move |&method| Cell { density, method })
            })
            .collect()
    }

    fn phases(_: &GalleryConfig, cell: Cell) -> Vec<Phase> {
        vec![Phase {
            name: "train",
            higher_order: cell.method.higher_order(),
        }]
    }

    fn run_phase(
        ctx: &RowContext,
        cfg: &GalleryConfig,
        cell: Cell,
        _phase: &str,
    ) -> Result<PhaseOutcome> {
        let result = train_row(ctx, cfg, cell)?;
        finish_training(ctx, result, cfg.iters)
    }

    fn report(ctx: &Context, cfg: &GalleryConfig, rows: &[(Cell, RowStatus)]) -> Result<String> {
        report::write(ctx, cfg, rows)
    }
}
