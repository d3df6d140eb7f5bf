//! The settings of Table 6 (FD-SM Sec. 6.3, App. C.4): the VAE and WAE with implicit encoders on
//! dynamically binarised MNIST, whose entropy gradient comes from a score network trained by
//! SSMVR or FD-SSMVR; the paper's numbers, and the `quick` and `paper` profiles.

use std::path::PathBuf;

use models::AutoencoderKind;
use serde::{Deserialize, Serialize};
use train::ais::AisSettings;
use train::RmsPropConfig;

use crate::error::{ExpError, Result};

/// The score estimator trained beside the autoencoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Estimator {
    /// Sliced score estimation with variance reduction (Gaussian directions, the Jacobian-vector
    /// product by a reverse pass), as Song et al.'s code trains the score network.
    Ssmvr,
    /// Its finite-difference form (FD-SM Sec. 4): two score evaluations at `z +- v`, `v` on the
    /// sphere of radius `eps`.
    FdSsmvr,
}

/// The estimators in the table's order.
pub const ESTIMATORS: [Estimator; 2] = [Estimator::Ssmvr, Estimator::FdSsmvr];

/// The models in the table's order.
pub const MODELS: [AutoencoderKind; 2] = [AutoencoderKind::Vae, AutoencoderKind::Wae];

impl Estimator {
    /// The command-line key.
    pub fn key(self) -> &'static str {
        match self {
            Estimator::Ssmvr => "ssmvr",
            Estimator::FdSsmvr => "fd-ssmvr",
        }
    }

    /// The paper's name.
    pub fn label(self) -> &'static str {
        match self {
            Estimator::Ssmvr => "SSMVR",
            Estimator::FdSsmvr => "FD-SSMVR",
        }
    }

    /// Whether its step differentiates through a gradient (Candle's higher-order mode).
    pub fn higher_order(self) -> bool {
        self == Estimator::Ssmvr
    }

    /// Parses a key.
    ///
    /// # Errors
    /// [`ExpError::Config`] listing the keys.
    pub fn parse(s: &str) -> Result<Self> {
        ESTIMATORS
            .into_iter()
            .find(|e| e.key() == s)
            .ok_or_else(|| {
                ExpError::Config(format!(
                    "`{s}` is not a score estimator of Table 6; they are {}",
                    ESTIMATORS.map(Estimator::key).join(", ")
                ))
            })
    }
}

/// The command-line key of a model.
pub fn model_key(kind: AutoencoderKind) -> &'static str {
    match kind {
        AutoencoderKind::Vae => "vae",
        AutoencoderKind::Wae => "wae",
    }
}

/// The paper's name of a model.
pub fn model_label(kind: AutoencoderKind) -> &'static str {
    match kind {
        AutoencoderKind::Vae => "VAE",
        AutoencoderKind::Wae => "WAE",
    }
}

/// Parses a model key.
///
/// # Errors
/// [`ExpError::Config`] listing the keys.
pub fn parse_model(s: &str) -> Result<AutoencoderKind> {
    MODELS
        .into_iter()
        .find(|m| model_key(*m) == s)
        .ok_or_else(|| {
            ExpError::Config(format!(
                "`{s}` is not a model of Table 6; they are {}",
                MODELS.map(model_key).join(", ")
            ))
        })
}

/// The paper's MNIST numbers of a row (FD-SM Table 6, latent size 32): test NLL in nats and the
/// time per iteration of the score estimation alone in ms, on a GPU. Our copy of the paper has
/// lost the SSMVR rows' NLL cells; those are `None`.
pub fn paper_mnist(model: AutoencoderKind, estimator: Estimator) -> (Option<f64>, f64) {
    match (model, estimator) {
        (AutoencoderKind::Vae, Estimator::Ssmvr) => (None, 5.04),
        (AutoencoderKind::Vae, Estimator::FdSsmvr) => (Some(88.96), 3.98),
        (AutoencoderKind::Wae, Estimator::Ssmvr) => (None, 0.55),
        (AutoencoderKind::Wae, Estimator::FdSsmvr) => (Some(90.66), 0.39),
    }
}

/// Everything that defines a Table 6 run; saved as `config.json` next to the results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table6Config {
    /// Profile name the run started from.
    pub profile: String,
    /// Models to run.
    pub models: Vec<AutoencoderKind>,
    /// Score estimators to run.
    pub estimators: Vec<Estimator>,
    /// Latent sizes to run (the reference: 32, and 8).
    pub z_dims: Vec<usize>,
    /// Runs per (model, estimator, latent size).
    pub seeds: usize,
    /// Hidden width of every network (reference 256).
    pub hidden: usize,
    /// Autoencoder steps, each after one score-network step (paper 100K).
    pub iters: u64,
    /// Images per step (reference 128).
    pub batch: usize,
    /// RMSProp learning rate of both networks (reference 1e-3 on MNIST).
    pub lr: f64,
    /// RMSProp's other settings (reference: PyTorch's defaults).
    pub rmsprop: RmsPropConfig,
    /// The WAE's regularisation weight (reference 10).
    pub wae_lambda: f64,
    /// FD step: the radius of FD-SSMVR's directions (paper 0.1).
    pub eps: f64,
    /// Steps excluded from the timing medians.
    pub timing_warmup: usize,
    /// Checkpoint every this many steps.
    pub checkpoint_every: u64,
    /// Test-set evaluations along training (of the autoencoder loss and the score loss).
    pub eval_points: usize,
    /// Test images of the evaluations along training.
    pub eval_images: usize,
    /// AIS settings of the test NLL.
    pub ais: AisSettings,
    /// Test images of the NLL.
    pub nll_images: usize,
    /// Images per AIS batch (times the chains: the rows of one HMC pass).
    pub nll_batch: usize,
    /// Decoder samples for FID and KID with LeNet features (0: none).
    pub fid_samples: usize,
    /// Samples in the PNG grid.
    pub samples: usize,
    /// Where LeNet's weights and reference features are cached (default: `<data>/feature-nets`).
    pub feature_cache: Option<PathBuf>,
    /// Master seed.
    pub seed: u64,
}

impl Table6Config {
    /// The paper's settings: latent sizes 32 and 8, 100K steps at batch 128, RMSProp 1e-3, AIS
    /// with 1000 temperatures and 16 chains on the whole test set. Meant for a GPU.
    pub fn paper() -> Self {
        Self {
            profile: "paper".into(),
            models: MODELS.to_vec(),
            estimators: ESTIMATORS.to_vec(),
            z_dims: vec![32, 8],
            seeds: 1,
            hidden: 256,
            iters: 100_000,
            batch: 128,
            lr: 1e-3,
            rmsprop: RmsPropConfig::default(),
            wae_lambda: 10.0,
            eps: 0.1,
            timing_warmup: 20,
            checkpoint_every: 2000,
            eval_points: 50,
            eval_images: 1000,
            ais: AisSettings::reference(),
            nll_images: 10_000,
            nll_batch: 100,
            fid_samples: 10_000,
            samples: 100,
            feature_cache: None,
            seed: 0,
        }
    }

    /// A 2-core CPU profile: latent size 32, 2500 steps, three seeds, AIS with 200 temperatures
    /// and 8 chains on 64 test images.
    pub fn quick() -> Self {
        Self {
            profile: "quick".into(),
            z_dims: vec![32],
            seeds: 3,
            iters: 2500,
            timing_warmup: 10,
            checkpoint_every: 500,
            eval_points: 10,
            eval_images: 300,
            ais: AisSettings {
                temperatures: 200,
                chains: 8,
                ..AisSettings::reference()
            },
            nll_images: 64,
            nll_batch: 64,
            fid_samples: 1000,
            samples: 100,
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

    /// The settings a training checkpoint must match (evaluation-only settings cleared).
    pub fn training_identity(&self) -> Self {
        Self {
            profile: String::new(),
            models: Vec::new(),
            estimators: Vec::new(),
            z_dims: Vec::new(),
            seeds: 0,
            timing_warmup: 0,
            checkpoint_every: 0,
            ais: AisSettings {
                temperatures: 0,
                chains: 0,
                ..AisSettings::reference()
            },
            nll_images: 0,
            nll_batch: 0,
            fid_samples: 0,
            samples: 0,
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
            ("hidden", self.hidden),
            ("batch", self.batch),
            ("eval_points", self.eval_points),
            ("eval_images", self.eval_images),
            ("nll_images", self.nll_images),
            ("nll_batch", self.nll_batch),
            ("samples", self.samples),
        ] {
            if v == 0 {
                return bad(format!("{name} must be >= 1"));
            }
        }
        if self.iters == 0 || self.checkpoint_every == 0 {
            return bad("iters and checkpoint_every must be >= 1".into());
        }
        if self.models.is_empty() || self.estimators.is_empty() || self.z_dims.is_empty() {
            return bad("no models, estimators or latent sizes selected".into());
        }
        if self.z_dims.contains(&0) {
            return bad(format!("latent sizes must be >= 1, got {:?}", self.z_dims));
        }
        if self.eval_images > 10_000 || self.nll_images > 10_000 {
            return bad(format!(
                "MNIST has 10000 test images; eval_images {} and nll_images {} must not exceed it",
                self.eval_images, self.nll_images
            ));
        }
        if self.fid_samples > 0 && self.fid_samples <= 128 {
            return bad(format!(
                "FID with LeNet features needs more samples than its 128 features, got \
                 fid_samples {} (0 turns it off)",
                self.fid_samples
            ));
        }
        crate::require_positive(&[
            ("lr", self.lr),
            ("eps", self.eps),
            ("wae_lambda", self.wae_lambda),
        ])?;
        if !(0.0..1.0).contains(&self.rmsprop.alpha) {
            return bad(format!(
                "rmsprop.alpha must lie in [0, 1), got {}",
                self.rmsprop.alpha
            ));
        }
        self.ais
            .validate()
            .map_err(|e| ExpError::Config(e.to_string()))?;
        Ok(())
    }
}
