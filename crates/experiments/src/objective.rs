//! The energy-model training objectives the experiments compare (FD-SM Table 2 and the step
//! benchmark), one enum with one key per loss: DSM (Eq. 2) and its multiscale form MDSM with its
//! sliced form, SSM and SSMVR (Eq. 3), and their FD forms (Eqs. 9-10), each FD form with one
//! concatenated forward pass or one pass per offset (the paper's starred rows); maximum
//! likelihood with Langevin negatives ("How to Train Your EBMs", Sec. 3); and the cost of a
//! plain forward/backward pass.

use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};
use sm_objectives::{
    dsm, fd_dsm, fd_mdsm, fd_ssm, mdsm, sliced_mdsm, ssm, ssmvr, BatchMode, Directions, LogDensity,
    NoiseSource, Reduction,
};
use train::mcmc::{mle_loss, ChainInit, Sgld};

use crate::error::ExpError;

/// A training objective of an energy (log-density) model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Objective {
    /// `mean(-log p~(x))`, forward and backward only: the cost floor of any step, not a loss
    /// that learns anything.
    #[serde(rename = "mle-cost")]
    MleCost,
    /// DSM at one noise level (FD-SM Eq. 2) by autodiff.
    #[serde(rename = "dsm")]
    Dsm,
    /// Multiscale DSM (one noise level per example, reweighted to `sigma0`) by autodiff: the
    /// "DSM" row of Table 2, as the deep-EBM code trains it.
    #[serde(rename = "mdsm")]
    Mdsm,
    /// FD-DSM (Eq. 10), one concatenated forward pass.
    #[serde(rename = "fd-dsm")]
    FdDsm,
    /// FD-DSM with one forward pass per offset.
    #[serde(rename = "fd-dsm-seq", alias = "fd-dsm*")]
    FdDsmSeq,
    /// Sliced MDSM by autodiff, directions uniform on the sphere as FD-DSM draws them: FD-DSM's
    /// loss without the finite difference.
    #[serde(rename = "sliced-mdsm")]
    SlicedMdsm,
    /// The FD form of MDSM, one concatenated forward pass: Table 2's "FD-DSM".
    #[serde(rename = "fd-mdsm")]
    FdMdsm,
    /// The FD form of MDSM with one forward pass per offset: Table 2's "FD-DSM*".
    #[serde(rename = "fd-mdsm-seq", alias = "fd-mdsm*")]
    FdMdsmSeq,
    /// SSM (Eq. 3) by autodiff, Gaussian projections.
    #[serde(rename = "ssm")]
    Ssm,
    /// SSM with variance reduction by autodiff, Gaussian projections.
    #[serde(rename = "ssmvr")]
    Ssmvr,
    /// FD-SSM (Eq. 9), one concatenated forward pass.
    #[serde(rename = "fd-ssm")]
    FdSsm,
    /// FD-SSM with one forward pass per offset.
    #[serde(rename = "fd-ssm-seq", alias = "fd-ssm*")]
    FdSsmSeq,
    /// Maximum likelihood with negatives from Langevin dynamics (the tutorial's Eq. 4 with the
    /// energy regulariser): short-run chains from noise here, persistent chains from a replay
    /// buffer where the trainer keeps one (Table 2).
    #[serde(rename = "mle-langevin")]
    MleLangevin,
}

/// How [`Objective::MleLangevin`] draws its negatives and regularises the energy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MleSettings {
    /// The Langevin sampler of the negatives (its `steps` per training step).
    pub sampler: Sgld,
    /// Where fresh chains start.
    pub init: ChainInit,
    /// The energy-magnitude regulariser's weight (`alpha`).
    pub alpha: f64,
    /// Persistent chains kept in the replay buffer (0: short-run chains from `init` at every
    /// step).
    pub buffer: usize,
    /// The probability that a chain drawn from the buffer restarts from `init`.
    pub reinit: f64,
}

/// The noise levels of the multiscale objectives.
#[derive(Debug, Clone)]
pub struct MultiscaleNoise {
    /// One noise level per example, `[B]`.
    pub sigmas: Tensor,
    /// The target noise level the loss is reweighted to.
    pub sigma0: f64,
}

impl MleSettings {
    /// The image practice of Du and Mordatch (2019) for data in `[0, 1]`: `steps` Langevin
    /// steps of size 10 on the score clipped to `+-0.01` with noise 0.005, chains kept in
    /// `[0, 1]` and started uniform there, a buffer of `buffer` chains each restarted with
    /// probability 0.05, and the energy regulariser's weight 1.
    pub fn image_practice(steps: usize, buffer: usize) -> Self {
        Self {
            sampler: Sgld {
                steps,
                step_size: 10.0,
                noise_scale: 0.005,
                clip: Some(0.01),
                bounds: Some((0.0, 1.0)),
            },
            init: ChainInit::Uniform {
                low: 0.0,
                high: 1.0,
            },
            alpha: 1.0,
            buffer,
            reinit: 0.05,
        }
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`ExpError::Config`] naming the bad value.
    pub fn validate(&self) -> std::result::Result<(), ExpError> {
        self.sampler
            .validate()
            .map_err(|e| ExpError::Config(format!("MLE sampler: {e}")))?;
        if self.sampler.steps == 0 {
            return Err(ExpError::Config(
                "MLE needs at least one Langevin step per training step".into(),
            ));
        }
        if !(self.alpha.is_finite() && self.alpha >= 0.0) {
            return Err(ExpError::Config(format!(
                "MLE's energy regulariser alpha must be >= 0, got {}",
                self.alpha
            )));
        }
        if !(0.0..=1.0).contains(&self.reinit) {
            return Err(ExpError::Config(format!(
                "MLE's buffer reinitialisation probability must be in [0, 1], got {}",
                self.reinit
            )));
        }
        Ok(())
    }
}

/// What the objectives need besides the model and the batch.
#[derive(Debug, Clone)]
pub struct ObjectiveSettings {
    /// The noise level of [`Objective::Dsm`] and [`Objective::FdDsm`].
    pub sigma: f64,
    /// The radius of the FD directions (`eps`, the FD step).
    pub eps: f64,
    /// The levels of [`Objective::Mdsm`] and its FD forms; `None` when no multiscale objective
    /// is used.
    pub multiscale: Option<MultiscaleNoise>,
    /// The sampler of [`Objective::MleLangevin`]; `None` when it is not used.
    pub mle: Option<MleSettings>,
}

impl Objective {
    /// Every objective.
    pub const ALL: [Objective; 13] = [
        Objective::MleCost,
        Objective::Dsm,
        Objective::Mdsm,
        Objective::SlicedMdsm,
        Objective::FdDsm,
        Objective::FdDsmSeq,
        Objective::FdMdsm,
        Objective::FdMdsmSeq,
        Objective::Ssm,
        Objective::Ssmvr,
        Objective::FdSsm,
        Objective::FdSsmSeq,
        Objective::MleLangevin,
    ];

    /// The command-line and file-name key (`fd-ssm-seq` for the form with one pass per offset).
    pub fn key(self) -> &'static str {
        match self {
            Objective::MleCost => "mle-cost",
            Objective::Dsm => "dsm",
            Objective::Mdsm => "mdsm",
            Objective::SlicedMdsm => "sliced-mdsm",
            Objective::FdDsm => "fd-dsm",
            Objective::FdDsmSeq => "fd-dsm-seq",
            Objective::FdMdsm => "fd-mdsm",
            Objective::FdMdsmSeq => "fd-mdsm-seq",
            Objective::Ssm => "ssm",
            Objective::Ssmvr => "ssmvr",
            Objective::FdSsm => "fd-ssm",
            Objective::FdSsmSeq => "fd-ssm-seq",
            Objective::MleLangevin => "mle-langevin",
        }
    }

    /// The printed name; the forms with one pass per offset carry the paper's star.
    pub fn label(self) -> &'static str {
        match self {
            Objective::MleCost => "MLE cost",
            Objective::Dsm => "DSM",
            Objective::Mdsm => "MDSM",
            Objective::SlicedMdsm => "sliced MDSM",
            Objective::FdDsm => "FD-DSM",
            Objective::FdDsmSeq => "FD-DSM*",
            Objective::FdMdsm => "FD-MDSM",
            Objective::FdMdsmSeq => "FD-MDSM*",
            Objective::Ssm => "SSM",
            Objective::Ssmvr => "SSMVR",
            Objective::FdSsm => "FD-SSM",
            Objective::FdSsmSeq => "FD-SSM*",
            Objective::MleLangevin => "MLE (Langevin)",
        }
    }

    /// Parses a key; a trailing `*` stands for `-seq` (`fd-ssm*`), case is ignored.
    ///
    /// # Errors
    /// [`ExpError::Config`] listing the keys.
    pub fn parse(s: &str) -> std::result::Result<Self, ExpError> {
        let k = s.trim().to_ascii_lowercase().replace('*', "-seq");
        Self::ALL.into_iter().find(|o| o.key() == k).ok_or_else(|| {
            ExpError::Config(format!(
                "unknown objective {s:?}; objectives: {}",
                Self::ALL.map(|o| o.key()).join(", ")
            ))
        })
    }

    /// Whether the loss differentiates through a gradient (needs Candle's higher-order mode).
    pub fn gradient_based(self) -> bool {
        matches!(
            self,
            Objective::Dsm
                | Objective::Mdsm
                | Objective::SlicedMdsm
                | Objective::Ssm
                | Objective::Ssmvr
        )
    }

    /// Whether the objective is a denoising one (DSM, MDSM and their FD forms).
    pub fn denoising(self) -> bool {
        matches!(
            self,
            Objective::Dsm
                | Objective::Mdsm
                | Objective::SlicedMdsm
                | Objective::FdDsm
                | Objective::FdDsmSeq
                | Objective::FdMdsm
                | Objective::FdMdsmSeq
        )
    }

    /// Forward passes per data point of a step that is forward passes plus one ordinary
    /// backward pass (`x`; `x~ +- v`; `x, x +- v`); `None` for the gradient-based objectives,
    /// whose nested backward passes have no such count, and for MLE, whose sampler's passes
    /// depend on its settings.
    pub fn forward_passes(self) -> Option<u64> {
        match self {
            Objective::MleCost => Some(1),
            Objective::FdDsm | Objective::FdDsmSeq | Objective::FdMdsm | Objective::FdMdsmSeq => {
                Some(2)
            }
            Objective::FdSsm | Objective::FdSsmSeq => Some(3),
            Objective::Dsm
            | Objective::Mdsm
            | Objective::SlicedMdsm
            | Objective::Ssm
            | Objective::Ssmvr
            | Objective::MleLangevin => None,
        }
    }

    fn batch_mode(self) -> BatchMode {
        match self {
            Objective::FdDsmSeq | Objective::FdMdsmSeq | Objective::FdSsmSeq => {
                BatchMode::PerOffset
            }
            _ => BatchMode::Concatenated,
        }
    }

    /// The loss of `model` on the batch `x`, averaged over the batch, drawing its noise from
    /// `noise`: first the Gaussian perturbation of the denoising objectives, then the direction
    /// (uniform on the sphere of radius `eps` for the FD forms and sliced MDSM, Gaussian for SSM
    /// and SSMVR); MLE draws its chains' starts and the Langevin noise from it.
    ///
    /// # Errors
    /// A multiscale objective without [`ObjectiveSettings::multiscale`], MLE without
    /// [`ObjectiveSettings::mle`], and the objectives' own errors (shapes, higher-order mode
    /// off for a gradient-based one, a chain that left the finite numbers).
    pub fn loss<M: LogDensity + ?Sized>(
        self,
        model: &M,
        x: &Tensor,
        noise: &mut NoiseSource,
        s: &ObjectiveSettings,
    ) -> Result<Tensor> {
        let sphere = Directions::Sphere { radius: s.eps };
        let mode = self.batch_mode();
        let levels = || {
            s.multiscale.as_ref().ok_or_else(|| {
                candle_core::Error::Msg(format!(
                    "{} needs multiscale noise levels (sigmas and sigma0)",
                    self.label()
                ))
            })
        };
        let r = Reduction::Mean;
        match self {
            Objective::MleCost => model.log_density(x)?.neg()?.mean_all(),
            Objective::Dsm => dsm(model, x, &noise.gaussian_like(x)?, s.sigma, r),
            Objective::Mdsm => {
                let l = levels()?;
                mdsm(model, x, &noise.gaussian_like(x)?, &l.sigmas, l.sigma0, r)
            }
            Objective::FdDsm | Objective::FdDsmSeq => {
                let z = noise.gaussian_like(x)?;
                let proj = noise.projection(x, sphere)?;
                fd_dsm(model, x, &z, s.sigma, &proj, mode, r)
            }
            Objective::SlicedMdsm => {
                let l = levels()?;
                let z = noise.gaussian_like(x)?;
                let proj = noise.projection(x, sphere)?;
                sliced_mdsm(model, x, &z, &l.sigmas, l.sigma0, &proj, r)
            }
            Objective::FdMdsm | Objective::FdMdsmSeq => {
                let l = levels()?;
                let z = noise.gaussian_like(x)?;
                let proj = noise.projection(x, sphere)?;
                fd_mdsm(model, x, &z, &l.sigmas, l.sigma0, &proj, mode, r)
            }
            Objective::Ssm => ssm(model, x, &noise.projection(x, Directions::Gaussian)?, r),
            Objective::Ssmvr => ssmvr(model, x, &noise.projection(x, Directions::Gaussian)?, r),
            Objective::FdSsm | Objective::FdSsmSeq => {
                fd_ssm(model, x, &noise.projection(x, sphere)?, mode, r)
            }
            Objective::MleLangevin => {
                let m = s.mle.as_ref().ok_or_else(|| {
                    candle_core::Error::Msg("MLE needs its Langevin sampler's settings".into())
                })?;
                let x0 = m
                    .init
                    .draw(x.dim(0)?, &x.dims()[1..], x.dtype(), x.device(), noise)
                    .map_err(candle_core::Error::wrap)?;
                let negatives = m
                    .sampler
                    .run(model, &x0, noise)
                    .map_err(candle_core::Error::wrap)?;
                mle_loss(model, x, &negatives, m.alpha).map_err(candle_core::Error::wrap)
            }
        }
    }
}

impl crate::runner::ExperimentRow for Objective {
    fn key(&self) -> String {
        Objective::key(*self).to_string()
    }

    fn label(&self) -> String {
        Objective::label(*self).to_string()
    }

    fn parse(s: &str) -> std::result::Result<Self, ExpError> {
        Objective::parse(s)
    }
}
