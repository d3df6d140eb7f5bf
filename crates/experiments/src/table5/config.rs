//! The settings of Table 5 (FD-SM Sec. 6.4): NCSN's RefineNet trained by annealed SSMVR or
//! FD-SSMVR, sampled by annealed Langevin dynamics; the paper's numbers and the `quick` (MNIST)
//! and `paper` (CIFAR-10) profiles.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{ExpError, Result};

/// The training objective of a row: annealed SSMVR or annealed FD-SSMVR.
pub use crate::sliced_estimator::SlicedEstimator as Estimator;

/// The estimators in the table's order.
pub const ESTIMATORS: [Estimator; 2] = crate::sliced_estimator::SLICED_ESTIMATORS;

/// The paper's numbers of a row (FD-SM Table 5; CIFAR-10, 200K iterations at batch 128, GPU):
/// FID, time per iteration in ms, memory in GB.
pub fn paper_numbers(estimator: Estimator) -> (f64, f64, f64) {
    match estimator {
        Estimator::Ssmvr => (41.2, 865.0, 6.4),
        Estimator::FdSsmvr => (39.5, 575.0, 5.5),
    }
}

/// The image data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Table5Data {
    /// MNIST, 1 x 28 x 28.
    Mnist,
    /// Fashion-MNIST, 1 x 28 x 28.
    FashionMnist,
    /// CIFAR-10, 3 x 32 x 32 (the paper's).
    Cifar10,
}

impl Table5Data {
    /// Every choice.
    pub const ALL: [Table5Data; 3] = [Self::Mnist, Self::FashionMnist, Self::Cifar10];

    /// The command-line key (the data set's name).
    pub fn key(self) -> &'static str {
        self.dataset().name()
    }

    /// The data set to download.
    pub fn dataset(self) -> datasets::Dataset {
        match self {
            Self::Mnist => datasets::Dataset::Mnist,
            Self::FashionMnist => datasets::Dataset::FashionMnist,
            Self::Cifar10 => datasets::Dataset::Cifar10,
        }
    }

    /// Channels and side of its images.
    pub fn shape(self) -> (usize, usize) {
        match self {
            Self::Mnist | Self::FashionMnist => (1, 28),
            Self::Cifar10 => (3, 32),
        }
    }

    /// Parses a key.
    ///
    /// # Errors
    /// [`ExpError::Config`] listing the keys.
    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|d| d.key() == s).ok_or_else(|| {
            ExpError::Config(format!(
                "`{s}` is not a data set of Table 5; they are {}",
                Self::ALL.map(Table5Data::key).join(", ")
            ))
        })
    }
}

/// Everything that defines a Table 5 run; saved as `config.json` next to the results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table5Config {
    /// Profile name the run started from.
    pub profile: String,
    /// The images.
    pub data: Table5Data,
    /// Estimators to run.
    pub estimators: Vec<Estimator>,
    /// Runs per estimator.
    pub seeds: usize,
    /// Channels of the RefineNet's first stage (reference 64 on MNIST, 128 on CIFAR-10).
    pub ngf: usize,
    /// Training steps (paper 200K).
    pub iters: u64,
    /// Images per step (paper 128).
    pub batch: usize,
    /// Adam learning rate (reference 1e-3).
    pub lr: f64,
    /// Noise levels, geometric from `sigma_max` to `sigma_min` (paper 10, 1 to 0.01).
    pub levels: usize,
    /// The largest noise level.
    pub sigma_max: f64,
    /// The smallest noise level.
    pub sigma_min: f64,
    /// FD step: the radius of FD-SSMVR's directions (paper 0.1).
    pub eps: f64,
    /// Annealed Langevin steps per noise level (paper 100).
    pub langevin_steps: usize,
    /// Langevin step at the smallest level; at level `i` it is `step_lr (sigma_i / sigma_L)^2`
    /// (reference 2e-5).
    pub step_lr: f64,
    /// After the last level, one denoising step `x + sigma_L^2 s(x)` (Tweedie's formula).
    pub denoise: bool,
    /// Steps excluded from the timing median.
    pub timing_warmup: usize,
    /// Checkpoint every this many steps.
    pub checkpoint_every: u64,
    /// Test-set evaluations of the denoising loss along training.
    pub eval_points: usize,
    /// Test images of those evaluations (each at every level).
    pub eval_images: usize,
    /// Samples in the PNG grid.
    pub samples: usize,
    /// Samples for FID and KID (0: none): LeNet features on the MNIST family, Inception on
    /// CIFAR-10.
    pub fid_samples: usize,
    /// Where LeNet's weights and the reference features are cached (default:
    /// `<data>/feature-nets`).
    pub feature_cache: Option<PathBuf>,
    /// Master seed.
    pub seed: u64,
}

impl Table5Config {
    /// The paper's settings: CIFAR-10, ngf 128, 200K steps at batch 128, Adam 1e-3, 10 levels,
    /// 100 Langevin steps per level, FID on 50 000 samples with Inception features. For a GPU.
    pub fn paper() -> Self {
        Self {
            profile: "paper".into(),
            data: Table5Data::Cifar10,
            estimators: ESTIMATORS.to_vec(),
            seeds: 1,
            ngf: 128,
            iters: 200_000,
            batch: 128,
            lr: 1e-3,
            levels: 10,
            sigma_max: 1.0,
            sigma_min: 0.01,
            eps: 0.1,
            langevin_steps: 100,
            step_lr: 2e-5,
            denoise: false,
            timing_warmup: 20,
            checkpoint_every: 5000,
            eval_points: 40,
            eval_images: 500,
            samples: 100,
            fid_samples: 50_000,
            feature_cache: None,
            seed: 0,
        }
    }

    /// A 2-core CPU profile: MNIST, ngf 8, 400 steps at batch 32, 20 Langevin steps per level,
    /// FID (LeNet) on 256 samples.
    pub fn quick() -> Self {
        Self {
            profile: "quick".into(),
            data: Table5Data::Mnist,
            ngf: 8,
            iters: 400,
            batch: 32,
            langevin_steps: 20,
            timing_warmup: 10,
            checkpoint_every: 100,
            eval_points: 8,
            eval_images: 50,
            samples: 64,
            fid_samples: 256,
            ..Self::paper()
        }
    }

    /// A named profile.
    ///
    /// # Errors
    /// [`ExpError::Config`] for an unknown name.
    pub fn profile(name: &str) -> Result<Self> {
        crate::pick_profile(name, Self::quick, Self::paper)
    }

    /// The noise levels, largest first.
    ///
    /// # Errors
    /// A schedule that is not positive and decreasing.
    pub fn sigmas(&self) -> Result<Vec<f64>> {
        sm_objectives::noise::geometric_sigmas(self.sigma_max, self.sigma_min, self.levels)
            .map_err(|e| ExpError::Config(format!("the noise levels: {e}")))
    }

    /// The settings a training checkpoint must match (evaluation-only settings cleared).
    pub fn training_identity(&self) -> Self {
        Self {
            profile: String::new(),
            estimators: Vec::new(),
            seeds: 0,
            timing_warmup: 0,
            checkpoint_every: 0,
            langevin_steps: 0,
            step_lr: 0.0,
            denoise: false,
            samples: 0,
            fid_samples: 0,
            feature_cache: None,
            ..self.clone()
        }
    }

    /// Checks the values a run depends on.
    ///
    /// # Errors
    /// [`ExpError::Config`] naming the bad value.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ExpError::Config(m));
        for (name, v) in [
            ("seeds", self.seeds),
            ("batch", self.batch),
            ("levels", self.levels),
            ("eval_points", self.eval_points),
            ("eval_images", self.eval_images),
            ("samples", self.samples),
            ("langevin_steps", self.langevin_steps),
        ] {
            if v == 0 {
                return bad(format!("{name} must be >= 1"));
            }
        }
        if self.ngf < 2 {
            return bad(format!("ngf must be >= 2, got {}", self.ngf));
        }
        if self.iters == 0 || self.checkpoint_every == 0 {
            return bad("iters and checkpoint_every must be >= 1".into());
        }
        if self.estimators.is_empty() {
            return bad("no estimators selected".into());
        }
        crate::require_positive(&[
            ("lr", self.lr),
            ("eps", self.eps),
            ("sigma_max", self.sigma_max),
            ("sigma_min", self.sigma_min),
            ("step_lr", self.step_lr),
        ])?;
        if self.sigma_min > self.sigma_max {
            return bad(format!(
                "sigma_min {} is above sigma_max {}",
                self.sigma_min, self.sigma_max
            ));
        }
        let needed = match self.data {
            Table5Data::Cifar10 => sample_quality::inception::INCEPTION_FEATURES,
            _ => 128,
        };
        if self.fid_samples > 0 && self.fid_samples <= needed {
            return bad(format!(
                "FID on {} needs more samples than its {needed} features, got fid_samples {} \
                 (0 turns it off)",
                self.data.key(),
                self.fid_samples
            ));
        }
        if self.eval_images > 10_000 {
            return bad(format!(
                "the test split has 10000 images; eval_images {} exceeds it",
                self.eval_images
            ));
        }
        Ok(())
    }
}
