//! The settings of Table 6 (FD-SM Sec. 6.3, App. C.4): the VAE and WAE with implicit encoders on
//! dynamically binarised MNIST and on CelebA (64 x 64), whose entropy gradient comes from a
//! score network trained by SSMVR or FD-SSMVR; the paper's numbers, and the `quick` and `paper`
//! profiles.

use std::path::PathBuf;

use models::AutoencoderKind;
use serde::{Deserialize, Serialize};
use train::ais::AisSettings;
use train::RmsPropConfig;

use crate::error::{ExpError, Result};

/// The score estimator trained beside the autoencoder (SSMVR as Song et al.'s code trains the
/// score network, or FD-SSMVR).
pub use crate::sliced_estimator::SlicedEstimator as Estimator;

/// The estimators in the table's order.
pub const ESTIMATORS: [Estimator; 2] = crate::sliced_estimator::SLICED_ESTIMATORS;

/// The models in the table's order.
pub const MODELS: [AutoencoderKind; 2] = [AutoencoderKind::Vae, AutoencoderKind::Wae];

/// The data set of a row: the table's two halves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Table6Data {
    /// Dynamically binarised MNIST, dense networks, Bernoulli decoder; test NLL by AIS.
    #[default]
    Mnist,
    /// CelebA's aligned faces (crop 140, 64 x 64, user-supplied), convolutional networks,
    /// Gaussian decoder; FID with Inception features.
    Celeba,
}

/// The data sets in the table's order.
pub const DATA: [Table6Data; 2] = [Table6Data::Mnist, Table6Data::Celeba];

impl Table6Data {
    /// The command-line key.
    pub fn key(self) -> &'static str {
        match self {
            Table6Data::Mnist => "mnist",
            Table6Data::Celeba => "celeba",
        }
    }

    /// The paper's name.
    pub fn label(self) -> &'static str {
        match self {
            Table6Data::Mnist => "MNIST",
            Table6Data::Celeba => "CelebA",
        }
    }

    /// Parses a key.
    ///
    /// # Errors
    /// [`ExpError::Config`] listing the keys.
    pub fn parse(s: &str) -> Result<Self> {
        DATA.into_iter().find(|d| d.key() == s).ok_or_else(|| {
            ExpError::Config(format!(
                "`{s}` is not a data set of Table 6; they are {}",
                DATA.map(Table6Data::key).join(", ")
            ))
        })
    }
}

/// The CelebA half's settings (the reference's `celeba_ssm.yml` and its runner).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CelebaSettings {
    /// Latent size (reference 32).
    pub z_dim: usize,
    /// Channels of the encoder's and score network's first convolution (reference 64).
    pub nef: usize,
    /// Channels of the decoder's last hidden layer (reference 64).
    pub ndf: usize,
    /// Side of the images after resizing (reference 64; a multiple of 16).
    pub image_size: usize,
    /// Side of the centred crop of the 178 x 218 faces (reference 140).
    pub crop: u32,
    /// RMSProp learning rate of both networks (reference 1e-4).
    pub lr: f64,
    /// The Gaussian decoder's fixed log standard deviation (reference -0.602).
    pub log_std: f64,
    /// Training images read (the first of the permuted training split; `None`: all 70%).
    pub max_train: Option<usize>,
    /// Test images read: the evaluations along training, the reconstructions and the FID
    /// reference statistics (the reference's FID statistics use 10000).
    pub test_images: usize,
    /// The folder of the JPEGs (default `<data dir>/celeba/img_align_celeba`).
    pub dir: Option<PathBuf>,
}

impl Default for CelebaSettings {
    fn default() -> Self {
        Self {
            z_dim: 32,
            nef: 64,
            ndf: 64,
            image_size: 64,
            crop: 140,
            lr: 1e-4,
            log_std: -0.602,
            max_train: None,
            test_images: 10_000,
            dir: None,
        }
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

/// The paper's CelebA numbers of a row (FD-SM Table 6, latent size 32): FID (Inception) and the
/// time per iteration of the score estimation alone in ms, on a GPU. Our copy of the paper has
/// lost the SSMVR rows' FID cells and the VAE SSMVR row's time; those are `None`.
pub fn paper_celeba(model: AutoencoderKind, estimator: Estimator) -> (Option<f64>, Option<f64>) {
    match (model, estimator) {
        (AutoencoderKind::Vae, Estimator::Ssmvr) => (None, None),
        (AutoencoderKind::Vae, Estimator::FdSsmvr) => (Some(64.85), Some(9.38)),
        (AutoencoderKind::Wae, Estimator::Ssmvr) => (None, Some(1.30)),
        (AutoencoderKind::Wae, Estimator::FdSsmvr) => (Some(54.67), Some(0.81)),
    }
}

/// Everything that defines a Table 6 run; saved as `config.json` next to the results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table6Config {
    /// Profile name the run started from.
    pub profile: String,
    /// Data sets to run (the table's halves).
    #[serde(default = "mnist_only")]
    pub data: Vec<Table6Data>,
    /// The CelebA half's settings.
    #[serde(default)]
    pub celeba: CelebaSettings,
    /// Models to run.
    pub models: Vec<AutoencoderKind>,
    /// Score estimators to run.
    pub estimators: Vec<Estimator>,
    /// Latent sizes of the MNIST rows (the reference: 32, and 8).
    pub z_dims: Vec<usize>,
    /// Runs per (model, estimator, latent size).
    pub seeds: usize,
    /// Hidden width of every MNIST network (reference 256).
    pub hidden: usize,
    /// Autoencoder steps, each after one score-network step (paper 100K).
    pub iters: u64,
    /// Images per step (reference 128).
    pub batch: usize,
    /// RMSProp learning rate of both MNIST networks (reference 1e-3; CelebA's is
    /// [`CelebaSettings::lr`]).
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
    /// Decoder samples for FID and KID (0: none), with LeNet features on MNIST and Inception
    /// features on CelebA.
    pub fid_samples: usize,
    /// Samples in the PNG grid.
    pub samples: usize,
    /// Where LeNet's weights and the reference features (LeNet's of MNIST, Inception's of
    /// CelebA) are cached (default: `<data>/feature-nets`).
    pub feature_cache: Option<PathBuf>,
    /// Master seed.
    pub seed: u64,
}

fn mnist_only() -> Vec<Table6Data> {
    vec![Table6Data::Mnist]
}

impl Table6Config {
    /// The paper's settings: MNIST at latent sizes 32 and 8 (RMSProp 1e-3, AIS with 1000
    /// temperatures and 16 chains on the whole test set) and CelebA at 32 (RMSProp 1e-4, FID
    /// of 10000 samples with Inception features), 100K steps at batch 128. Meant for a GPU;
    /// CelebA must be supplied (see [`datasets::load_celeba`]).
    pub fn paper() -> Self {
        Self {
            profile: "paper".into(),
            data: DATA.to_vec(),
            celeba: CelebaSettings::default(),
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
            data: mnist_only(),
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
            data: Vec::new(),
            celeba: CelebaSettings {
                test_images: 0,
                dir: None,
                ..self.celeba.clone()
            },
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
        if self.data.is_empty() || self.models.is_empty() || self.estimators.is_empty() {
            return bad("no data sets, models or estimators selected".into());
        }
        if self.data.contains(&Table6Data::Mnist) && self.z_dims.is_empty() {
            return bad("no latent sizes selected for MNIST".into());
        }
        if self.data.contains(&Table6Data::Celeba) {
            let c = &self.celeba;
            if c.z_dim == 0 || c.nef == 0 || c.ndf == 0 || c.test_images == 0 || c.crop == 0 {
                return bad(format!(
                    "celeba: z_dim, nef, ndf, crop and test_images must be >= 1, got {c:?}"
                ));
            }
            if c.image_size == 0 || c.image_size % 16 != 0 {
                return bad(format!(
                    "celeba.image_size must be a positive multiple of 16 (the networks halve it \
                     four times), got {}",
                    c.image_size
                ));
            }
            if c.max_train.is_some_and(|n| n < self.batch) {
                return bad(format!(
                    "celeba.max_train {:?} is below the batch size {}",
                    c.max_train, self.batch
                ));
            }
            crate::require_positive(&[("celeba.lr", c.lr)])?;
            if !c.log_std.is_finite() {
                return bad(format!("celeba.log_std must be finite, got {}", c.log_std));
            }
            let inception = sample_quality::inception::INCEPTION_FEATURES;
            if self.fid_samples > 0 && self.fid_samples <= inception {
                return bad(format!(
                    "FID with Inception features (CelebA) needs more samples than its \
                     {inception} features, got fid_samples {} (0 turns it off)",
                    self.fid_samples
                ));
            }
        }
        if self.z_dims.contains(&0) {
            return bad(format!("latent sizes must be >= 1, got {:?}", self.z_dims));
        }
        let mnist = self.data.contains(&Table6Data::Mnist);
        if mnist && (self.eval_images > 10_000 || self.nll_images > 10_000) {
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
