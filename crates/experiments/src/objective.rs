//! The energy-model training objectives the experiments compare (FD-SM Table 2 and the step
//! benchmark), one enum with one key per loss: DSM (Eq. 2) and its multiscale form MDSM, SSM and
//! SSMVR (Eq. 3), and their FD forms (Eqs. 9-10), each FD form with one concatenated forward
//! pass or one pass per offset (the paper's starred rows), plus the cost of a plain
//! forward/backward pass.

use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};
use sm_objectives::{
    dsm, fd_dsm, fd_mdsm, fd_ssm, mdsm, ssm, ssmvr, BatchMode, Directions, LogDensity, NoiseSource,
    Reduction,
};

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
}

/// The noise levels of the multiscale objectives.
#[derive(Debug, Clone)]
pub struct MultiscaleNoise {
    /// One noise level per example, `[B]`.
    pub sigmas: Tensor,
    /// The target noise level the loss is reweighted to.
    pub sigma0: f64,
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
}

impl Objective {
    /// Every objective.
    pub const ALL: [Objective; 11] = [
        Objective::MleCost,
        Objective::Dsm,
        Objective::Mdsm,
        Objective::FdDsm,
        Objective::FdDsmSeq,
        Objective::FdMdsm,
        Objective::FdMdsmSeq,
        Objective::Ssm,
        Objective::Ssmvr,
        Objective::FdSsm,
        Objective::FdSsmSeq,
    ];

    /// The command-line and file-name key (`fd-ssm-seq` for the form with one pass per offset).
    pub fn key(self) -> &'static str {
        match self {
            Objective::MleCost => "mle-cost",
            Objective::Dsm => "dsm",
            Objective::Mdsm => "mdsm",
            Objective::FdDsm => "fd-dsm",
            Objective::FdDsmSeq => "fd-dsm-seq",
            Objective::FdMdsm => "fd-mdsm",
            Objective::FdMdsmSeq => "fd-mdsm-seq",
            Objective::Ssm => "ssm",
            Objective::Ssmvr => "ssmvr",
            Objective::FdSsm => "fd-ssm",
            Objective::FdSsmSeq => "fd-ssm-seq",
        }
    }

    /// The printed name; the forms with one pass per offset carry the paper's star.
    pub fn label(self) -> &'static str {
        match self {
            Objective::MleCost => "MLE cost",
            Objective::Dsm => "DSM",
            Objective::Mdsm => "MDSM",
            Objective::FdDsm => "FD-DSM",
            Objective::FdDsmSeq => "FD-DSM*",
            Objective::FdMdsm => "FD-MDSM",
            Objective::FdMdsmSeq => "FD-MDSM*",
            Objective::Ssm => "SSM",
            Objective::Ssmvr => "SSMVR",
            Objective::FdSsm => "FD-SSM",
            Objective::FdSsmSeq => "FD-SSM*",
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
            Objective::Dsm | Objective::Mdsm | Objective::Ssm | Objective::Ssmvr
        )
    }

    /// Whether the objective is a denoising one (DSM, MDSM and their FD forms).
    pub fn denoising(self) -> bool {
        matches!(
            self,
            Objective::Dsm
                | Objective::Mdsm
                | Objective::FdDsm
                | Objective::FdDsmSeq
                | Objective::FdMdsm
                | Objective::FdMdsmSeq
        )
    }

    /// Forward passes per data point of a step that is forward passes plus one ordinary
    /// backward pass (`x`; `x~ +- v`; `x, x +- v`); `None` for the gradient-based objectives,
    /// whose nested backward passes have no such count.
    pub fn forward_passes(self) -> Option<u64> {
        match self {
            Objective::MleCost => Some(1),
            Objective::FdDsm | Objective::FdDsmSeq | Objective::FdMdsm | Objective::FdMdsmSeq => {
                Some(2)
            }
            Objective::FdSsm | Objective::FdSsmSeq => Some(3),
            Objective::Dsm | Objective::Mdsm | Objective::Ssm | Objective::Ssmvr => None,
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
    /// (uniform on the sphere of radius `eps` for the FD forms, Gaussian for SSM and SSMVR).
    ///
    /// # Errors
    /// A multiscale objective without [`ObjectiveSettings::multiscale`], and the objectives'
    /// own errors (shapes, higher-order mode off for a gradient-based one).
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
        }
    }
}
