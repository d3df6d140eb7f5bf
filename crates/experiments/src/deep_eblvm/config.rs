//! Settings of the deep-EBLVM experiment (BiSM Sec. 5.2 / App. B.2, VaGES App. F.2.2) with its
//! named profiles, and its rows (method x seed).

use models::{ConvGaussianPosteriorConfig, DeepEblvmConfig};
use serde::{Deserialize, Serialize};
use train::langevin::LangevinSchedule;
use train::linear_probe::LinearProbeSettings;

use crate::error::{ExpError, Result};
use crate::runner::ExperimentRow;

/// How the energy is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// BiMDSM: one draw from the posterior, the score `grad_v log (p~(v, h) / q(h | v))`
    /// (BiSM Eq. 8) in the multiscale DSM functional.
    Bimdsm,
    /// VaGES-MDSM: `L` posterior draws refined by Langevin steps in `h`; the multiscale DSM
    /// functional's slope at the VaES score of one set of draws times the score of an
    /// independent set, whose parameter gradient carries VaGES's covariance term (as the
    /// reference, so that the product is unbiased).
    VagesMdsm,
}

impl Method {
    /// `bimdsm`, `vages-mdsm`.
    pub fn key(self) -> &'static str {
        match self {
            Method::Bimdsm => "bimdsm",
            Method::VagesMdsm => "vages-mdsm",
        }
    }

    /// `BiMDSM`, `VaGES-MDSM`.
    pub fn label(self) -> &'static str {
        match self {
            Method::Bimdsm => "BiMDSM",
            Method::VagesMdsm => "VaGES-MDSM",
        }
    }

    /// Parses a key.
    ///
    /// # Errors
    /// An unknown method.
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim() {
            "bimdsm" => Ok(Method::Bimdsm),
            "vages-mdsm" | "vagesmdsm" => Ok(Method::VagesMdsm),
            other => Err(ExpError::Config(format!(
                "unknown method `{other}`; expected bimdsm or vages-mdsm"
            ))),
        }
    }
}

/// One row: a method at one seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// The method.
    pub method: Method,
    /// The seed's index.
    pub seed: u32,
}

impl Run {
    /// The seed of the run's initialisation, batches and noise: the same for both methods at
    /// the same index, so that they start from the same networks.
    pub fn seed_value(self, cfg: &DeepEblvmExpConfig) -> u64 {
        crate::step_seed(cfg.seed, 8_000_000 + u64::from(self.seed))
    }
}

impl ExperimentRow for Run {
    /// `bimdsm.seed0`.
    fn key(&self) -> String {
        format!("{}.seed{}", self.method.key(), self.seed)
    }

    fn label(&self) -> String {
        format!("{} (seed {})", self.method.label(), self.seed)
    }

    /// `bimdsm.seed0`, or a method alone (seed 0).
    fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        let (method, seed) = match s.split_once(".seed") {
            Some((m, n)) => (
                m,
                n.parse()
                    .map_err(|_| ExpError::Config(format!("bad seed in row `{s}`")))?,
            ),
            None => (s, 0),
        };
        Ok(Run {
            method: Method::parse(method)?,
            seed,
        })
    }
}

/// Settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeepEblvmExpConfig {
    /// Profile name.
    pub profile: String,
    /// The energy (reference MNIST: Res12 features with `n = 64`, `h` of size 50).
    pub model: DeepEblvmConfig,
    /// The posterior network (reference: 64, 128, 256 channels).
    pub posterior: ConvGaussianPosteriorConfig,
    /// Training iterations (reference: 100K).
    pub iters: u64,
    /// Batch size (reference: 100).
    pub batch: usize,
    /// Adam learning rate of the energy, cosine to 0 (reference: 1e-4).
    pub lr: f64,
    /// Adam learning rate of the posterior, cosine to 0 (reference: the energy's).
    pub lower_lr: f64,
    /// The learning rate of the energy and the posterior in VaGES-MDSM rows (reference: 1e-4,
    /// as BiMDSM). The quick profile keeps it at the reference's value: at its ten-fold rate the
    /// VaGES rows diverged within 200 steps here (the posterior drifts along directions where
    /// the energy saturates, and the two-particle covariance term explodes with the energy).
    pub vages_lr: f64,
    /// Adam's `beta2` for both (reference: 0.95, `beta1` 0.9).
    pub beta2: f64,
    /// Global-norm gradient clipping of the energy and of the posterior (the reference's
    /// optional `gradient_clip`, norm 0.5; off in its MNIST configuration).
    pub clip: Option<f64>,
    /// Smallest noise level of the multiscale DSM (reference MNIST: 0.1).
    pub sigma_begin: f64,
    /// Largest noise level (reference MNIST: 3.0); the batch's levels are geometric between.
    pub sigma_end: f64,
    /// The MDSM target's `sigma_0` (reference: 0.1).
    pub sigma0: f64,
    /// Lower-level (posterior) updates per batch, `K` (reference: 5).
    pub lower_steps: usize,
    /// VaGES: posterior draws per image, `L` (reference: 2).
    pub particles: usize,
    /// VaGES: Langevin refinement steps of the draws (reference: 5).
    pub sgld_steps: usize,
    /// VaGES: their step size `alpha` (reference: 1e-2).
    pub sgld_alpha: f64,
    /// VaGES: their noise level (reference: 1e-4).
    pub sgld_sigma: f64,
    /// VaGES: element-wise clip of their `h`-gradient (the reference's `grad_max_norm`, off
    /// in its MNIST profile). The quick profile's ten-fold learning rate sharpens `p(h | v)`
    /// until `alpha = 1e-2` is an unstable step (the draws grow without bound); the clip
    /// bounds each move by `alpha/2 clip`.
    pub sgld_clip: Option<f64>,
    /// Samples drawn per sampler (joint, via the posterior); the conditioned grid has 4 test
    /// digits x 5.
    pub samples: usize,
    /// The annealed Langevin schedule (reference: the deep-EBM's 500 + 2000 + 200 steps).
    pub langevin: LangevinSchedule,
    /// Training images whose posterior means fit the linear probe (reference: all 60000).
    pub probe_train: usize,
    /// Test images it is scored on (reference: all 10000).
    pub probe_test: usize,
    /// The probe's fit.
    pub probe: LinearProbeSettings,
    /// Record the losses every this many steps.
    pub log_every: u64,
    /// Checkpoint every this many steps (and at the end).
    pub checkpoint_every: u64,
    /// Methods.
    pub methods: Vec<Method>,
    /// Seeds per method.
    pub seeds: u32,
    /// Base seed.
    pub seed: u64,
}

impl DeepEblvmExpConfig {
    /// The 2-core CPU profile (about 12 minutes): `n = 8`, `h = 20`, posterior channels 8, 16,
    /// 32, 1500 iterations at batch 32 with lr 1e-3 (BiMDSM; VaGES-MDSM at the reference's
    /// 1e-4), both methods, one seed, VaGES's refinement gradient clipped at 100; the Langevin schedule shortened to 60 + 240 + 40
    /// steps; the probe on 10000 / 2000 images.
    pub fn quick() -> Self {
        Self {
            profile: "quick".into(),
            model: DeepEblvmConfig::mnist(8, 20),
            posterior: ConvGaussianPosteriorConfig::mnist(8, 20),
            iters: 1500,
            batch: 32,
            lr: 1e-3,
            lower_lr: 1e-3,
            sgld_clip: Some(100.0),
            samples: 36,
            langevin: LangevinSchedule {
                hold_steps: 60,
                anneal_steps: 240,
                cool_steps: 40,
                ..LangevinSchedule::paper()
            },
            probe_train: 10_000,
            probe_test: 2_000,
            log_every: 10,
            checkpoint_every: 250,
            seeds: 1,
            ..Self::paper()
        }
    }

    /// The reference's MNIST settings.
    pub fn paper() -> Self {
        Self {
            profile: "paper".into(),
            model: DeepEblvmConfig::mnist(64, 50),
            posterior: ConvGaussianPosteriorConfig::mnist(64, 50),
            iters: 100_000,
            batch: 100,
            lr: 1e-4,
            lower_lr: 1e-4,
            vages_lr: 1e-4,
            beta2: 0.95,
            clip: None,
            sigma_begin: 0.1,
            sigma_end: 3.0,
            sigma0: 0.1,
            lower_steps: 5,
            particles: 2,
            sgld_steps: 5,
            sgld_alpha: 1e-2,
            sgld_sigma: 1e-4,
            sgld_clip: None,
            samples: 100,
            langevin: LangevinSchedule::paper(),
            probe_train: 60_000,
            probe_test: 10_000,
            probe: LinearProbeSettings::default(),
            log_every: 100,
            checkpoint_every: 5000,
            methods: vec![Method::Bimdsm, Method::VagesMdsm],
            seeds: 1,
            seed: 0,
        }
    }

    /// A named profile.
    ///
    /// # Errors
    /// An unknown name.
    pub fn profile(name: &str) -> Result<Self> {
        crate::pick_profile(name, Self::quick, Self::paper)
    }

    /// Sets the latent size of the energy and the posterior.
    pub fn set_latent(&mut self, latent: usize) {
        self.model.latent = latent;
        self.posterior.latent = latent;
    }

    /// Sets the energy's ResNet width `n` (and its head, `16 x 4n` units as the reference).
    pub fn set_width(&mut self, width: usize) {
        self.model = DeepEblvmConfig::mnist(width, self.model.latent);
    }

    /// The learning rates `(energy, posterior)` of a method.
    pub fn learning_rates(&self, method: Method) -> (f64, f64) {
        match method {
            Method::Bimdsm => (self.lr, self.lower_lr),
            Method::VagesMdsm => (self.vages_lr, self.vages_lr),
        }
    }

    /// The rows.
    pub fn runs(&self) -> Vec<Run> {
        self.methods
            .iter()
            .flat_map(|&method| (0..self.seeds).map(move |seed| Run { method, seed }))
            .collect()
    }

    /// The batch's noise levels: geometric from `sigma_begin` up to `sigma_end` over the batch
    /// (the reference's `torch.logspace`).
    ///
    /// # Errors
    /// Non-positive levels or `sigma_begin > sigma_end`.
    pub fn sigmas(&self) -> Result<Vec<f64>> {
        let mut s =
            sm_objectives::noise::geometric_sigmas(self.sigma_end, self.sigma_begin, self.batch)
                .map_err(|e| ExpError::Config(e.to_string()))?;
        s.reverse();
        Ok(s)
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`ExpError::Config`] naming the bad field.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ExpError::Config(m));
        self.model
            .validate()
            .map_err(|e| ExpError::Config(e.to_string()))?;
        self.posterior
            .validate()
            .map_err(|e| ExpError::Config(e.to_string()))?;
        if self.model.latent != self.posterior.latent {
            return bad(format!(
                "the energy's latent size {} differs from the posterior's {}",
                self.model.latent, self.posterior.latent
            ));
        }
        let f = &self.model.features;
        if f.image_size != 32 || f.in_channels != 1 || self.posterior.image_size != 32 {
            return bad("MNIST padded to 32 x 32 grey images is what this experiment reads".into());
        }
        if self.iters == 0 || self.batch == 0 || self.log_every == 0 || self.checkpoint_every == 0 {
            return bad("iters, batch, log_every and checkpoint_every must be >= 1".into());
        }
        if self.batch > 60_000 || self.probe_train > 60_000 || self.probe_test > 10_000 {
            return bad(format!(
                "batch ({}) and probe_train ({}) must fit MNIST's 60000 training images, \
                 probe_test ({}) its 10000 test images",
                self.batch, self.probe_train, self.probe_test
            ));
        }
        if self.probe_train < 20 || self.probe_test < 10 {
            return bad("the probe needs at least 20 training and 10 test images".into());
        }
        if self.methods.contains(&Method::VagesMdsm) && self.particles < 2 {
            return bad("VaGES needs at least two particles for its covariance term".into());
        }
        if self.seeds == 0 || self.methods.is_empty() {
            return bad("at least one method and one seed".into());
        }
        if self.samples == 0 || self.langevin.total() == 0 {
            return bad("samples and Langevin steps must be >= 1".into());
        }
        if !(0.0..1.0).contains(&self.beta2) {
            return bad(format!("beta2 must be in [0, 1), got {}", self.beta2));
        }
        self.sigmas()?;
        crate::require_positive(&[
            ("lr", self.lr),
            ("lower_lr", self.lower_lr),
            ("vages_lr", self.vages_lr),
            ("sigma_begin", self.sigma_begin),
            ("sigma_end", self.sigma_end),
            ("sigma0", self.sigma0),
            ("sgld_alpha", self.sgld_alpha),
            ("langevin.step_size", self.langevin.step_size),
        ])?;
        if let Some(c) = self.clip {
            crate::require_positive(&[("clip", c)])?;
        }
        if let Some(c) = self.sgld_clip {
            crate::require_positive(&[("sgld_clip", c)])?;
        }
        if !(self.sgld_sigma.is_finite() && self.sgld_sigma >= 0.0) {
            return bad(format!("sgld_sigma must be >= 0, got {}", self.sgld_sigma));
        }
        // Activations kept for the second-order backward dominate: about 1.2 MB per image and
        // unit of `n` (measured: 0.3 GB at n = 8, batch 32), plus MNIST itself (0.3 GB).
        let per_image = 1_200_000u64.saturating_mul(f.width as u64);
        crate::require_memory(
            &format!("the deep EBLVM (n = {}) at batch {}", f.width, self.batch),
            per_image
                .saturating_mul(self.batch as u64)
                .saturating_add(300_000_000),
        )?;
        Ok(())
    }
}
