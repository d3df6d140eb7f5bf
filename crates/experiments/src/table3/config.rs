//! The settings of Table 3 (FD-SM Sec. 6.2, App. C.2): NICE on MNIST trained by each method,
//! the paper's numbers, and the `quick` and `paper` profiles.

use models::NiceConfig;
use serde::{Deserialize, Serialize};

use crate::error::{ExpError, Result};
use crate::optim::AdamConfig;

/// A method of Table 3 (plus exact SM, which the reference trains at batch 24 but the table
/// leaves out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Approximate back-propagation of the Hessian diagonal (Kingma and LeCun 2010).
    ApproxBp,
    /// Curvature propagation (Martens et al. 2012).
    Cp,
    /// DSM with `sigma = 0.1` (the sliced-score-matching paper's choice; DSM† of the table).
    #[serde(rename = "dsm-0.1")]
    DsmSmall,
    /// DSM with `sigma = 1.74` (Saremi et al.'s choice; DSM†† of the table).
    #[serde(rename = "dsm-1.74")]
    DsmLarge,
    /// Sliced score matching, Rademacher directions.
    Ssm,
    /// SSM with variance reduction.
    Ssmvr,
    /// Finite-difference SSM, directions on the sphere of radius `eps`.
    FdSsm,
    /// Maximum likelihood (the flow's exact log-likelihood).
    Mle,
    /// Exact score matching (one reverse pass per dimension).
    Sm,
}

/// The methods of Table 3 in the paper's order.
pub const METHODS: [Method; 8] = [
    Method::ApproxBp,
    Method::Cp,
    Method::DsmSmall,
    Method::DsmLarge,
    Method::Ssm,
    Method::Ssmvr,
    Method::FdSsm,
    Method::Mle,
];

/// Every method, the table's and exact SM.
pub const ALL_METHODS: [Method; 9] = [
    Method::ApproxBp,
    Method::Cp,
    Method::DsmSmall,
    Method::DsmLarge,
    Method::Ssm,
    Method::Ssmvr,
    Method::FdSsm,
    Method::Mle,
    Method::Sm,
];

impl Method {
    /// The command-line key.
    pub fn key(self) -> &'static str {
        match self {
            Method::ApproxBp => "approx-bp",
            Method::Cp => "cp",
            Method::DsmSmall => "dsm-0.1",
            Method::DsmLarge => "dsm-1.74",
            Method::Ssm => "ssm",
            Method::Ssmvr => "ssmvr",
            Method::FdSsm => "fd-ssm",
            Method::Mle => "mle",
            Method::Sm => "sm",
        }
    }

    /// The paper's name.
    pub fn label(self) -> &'static str {
        match self {
            Method::ApproxBp => "Approx BP",
            Method::Cp => "CP",
            Method::DsmSmall => "DSM† (σ = 0.1)",
            Method::DsmLarge => "DSM†† (σ = 1.74)",
            Method::Ssm => "SSM",
            Method::Ssmvr => "SSMVR",
            Method::FdSsm => "FD-SSM",
            Method::Mle => "MLE",
            Method::Sm => "exact SM",
        }
    }

    /// Parses a key.
    ///
    /// # Errors
    /// [`ExpError::Config`] listing the keys.
    pub fn parse(s: &str) -> Result<Self> {
        ALL_METHODS
            .into_iter()
            .find(|m| m.key() == s)
            .ok_or_else(|| {
                ExpError::Config(format!(
                    "`{s}` is not a method of Table 3; the methods are {}",
                    ALL_METHODS.map(Method::key).join(", ")
                ))
            })
    }

    /// Whether the loss differentiates through an input gradient by autodiff (Candle's
    /// higher-order mode): DSM, SSM, SSMVR and exact SM. Approx-BP and CP propagate their
    /// second-order quantities by hand, so first-order autodiff suffices, as for FD-SSM and MLE.
    pub fn higher_order(self) -> bool {
        matches!(
            self,
            Method::DsmSmall | Method::DsmLarge | Method::Ssm | Method::Ssmvr | Method::Sm
        )
    }

    /// Whether the paper averages it over the larger number of runs (the sliced SM rows).
    pub fn sliced(self) -> bool {
        matches!(self, Method::Ssm | Method::Ssmvr | Method::FdSsm)
    }

    /// The paper's numbers: (SM loss mean, std; NLL mean, std; time per iteration in ms).
    pub fn paper(self) -> Option<PaperRow> {
        let (sm, sm_std, nll, nll_std, time_ms) = match self {
            Method::ApproxBp => (-2530.0, 617.0, 1853.0, 819.0, 55.3),
            Method::Cp => (-2049.0, 630.0, 1626.0, 269.0, 73.6),
            Method::DsmSmall => (-2820.0, 825.0, 3398.0, 1343.0, 35.8),
            Method::DsmLarge => (-180.0, 50.0, 3764.0, 1583.0, 37.2),
            Method::Ssm => (-2182.0, 269.0, 2579.0, 945.0, 59.6),
            Method::Ssmvr => (-4943.0, 3191.0, 6234.0, 3782.0, 61.7),
            Method::FdSsm => (-2425.0, 100.0, 1647.0, 306.0, 26.4),
            Method::Mle => (-1236.0, 525.0, 791.0, 14.0, 24.3),
            Method::Sm => return None,
        };
        Some(PaperRow {
            sm,
            sm_std,
            nll,
            nll_std,
            time_ms,
        })
    }
}

/// The paper's numbers for a method (Table 3: 100 epochs, batch 128, GPU).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PaperRow {
    /// Test SM loss, mean over runs.
    pub sm: f64,
    /// Its standard deviation over runs.
    pub sm_std: f64,
    /// Test NLL in logit space, mean over runs.
    pub nll: f64,
    /// Its standard deviation over runs.
    pub nll_std: f64,
    /// Time per iteration, ms.
    pub time_ms: f64,
}

/// Everything that defines a Table 3 run; saved as `config.json` next to the results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table3Config {
    /// Profile name the run started from.
    pub profile: String,
    /// The flow.
    pub model: NiceConfig,
    /// Training steps per run.
    pub iters: u64,
    /// Minibatch size (paper 128).
    pub batch: usize,
    /// Minibatch size of exact SM (reference 24).
    pub sm_batch: usize,
    /// Learning rate of FD-SSM, DSM and CP (reference 1e-3).
    pub lr_fast: f64,
    /// Learning rate of SSM, SSMVR, Approx-BP, MLE and exact SM (reference 1e-4).
    pub lr_slow: f64,
    /// Adam hyperparameters (reference: PyTorch's defaults 0.9, 0.999).
    pub adam: AdamConfig,
    /// FD step `eps`, the radius of FD-SSM's directions (paper 0.1).
    pub eps: f64,
    /// DSM† noise level (0.1).
    pub sigma_small: f64,
    /// DSM†† noise level (1.74).
    pub sigma_large: f64,
    /// Validation images (of the 10% held out of MNIST's training split, at most 6000).
    pub val_images: usize,
    /// Validate (and keep the best parameters) every this many steps, and at the end.
    pub val_every: u64,
    /// Test images of the exact SM loss (784 reverse passes per batch).
    pub test_sm_images: usize,
    /// Test images of the NLL (at most 10000).
    pub test_nll_images: usize,
    /// Evaluation batch size.
    pub eval_batch: usize,
    /// Steps excluded from the timing median.
    pub timing_warmup: usize,
    /// Samples drawn from the flow per run.
    pub samples: usize,
    /// Checkpoint every this many steps.
    pub checkpoint_every: u64,
    /// Runs (seeds) per method, except the sliced rows.
    pub seeds: usize,
    /// Runs (seeds) of SSM, SSMVR and FD-SSM (the paper averages those over 10 runs).
    pub sliced_seeds: usize,
    /// Master seed.
    pub seed: u64,
    /// Methods to run.
    pub methods: Vec<Method>,
}

impl Table3Config {
    /// The paper's settings (App. C.2 and the reference code): the 784-1000x4 NICE, batch 128,
    /// 100 epochs of the 54000 training images (42200 steps), constant learning rates, best
    /// parameters by validation every epoch, exact test SM on 1000 test images, NLL on all 10000;
    /// 5 runs, 10 for the sliced rows. Meant for a GPU.
    pub fn paper() -> Self {
        Self {
            profile: "paper".into(),
            model: NiceConfig::mnist(),
            iters: 42_200,
            batch: 128,
            sm_batch: 24,
            lr_fast: 1e-3,
            lr_slow: 1e-4,
            adam: AdamConfig {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
            eps: 0.1,
            sigma_small: 0.1,
            sigma_large: 1.74,
            val_images: 6000,
            val_every: 422,
            test_sm_images: 1000,
            test_nll_images: 10_000,
            eval_batch: 100,
            timing_warmup: 10,
            samples: 64,
            checkpoint_every: 1000,
            seeds: 5,
            sliced_seeds: 10,
            seed: 0,
            methods: METHODS.to_vec(),
        }
    }

    /// A 2-core CPU profile with the same code path: the reference NICE with 200-unit coupling
    /// networks, 300 steps at batch 64, three runs per method, exact test SM on 64 images. Every
    /// method trains at 1e-3: in 300 steps the reference's 1e-4 rows barely leave their
    /// initialisation, which would compare learning rates rather than methods.
    pub fn quick() -> Self {
        Self {
            profile: "quick".into(),
            model: NiceConfig {
                hidden: 200,
                ..NiceConfig::mnist()
            },
            iters: 300,
            batch: 64,
            lr_slow: 1e-3,
            val_images: 512,
            val_every: 50,
            test_sm_images: 64,
            test_nll_images: 2000,
            eval_batch: 64,
            timing_warmup: 5,
            samples: 36,
            checkpoint_every: 100,
            seeds: 3,
            sliced_seeds: 3,
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

    /// Runs of `method`.
    pub fn seeds_of(&self, method: Method) -> usize {
        if method.sliced() {
            self.sliced_seeds
        } else {
            self.seeds
        }
    }

    /// The learning rate of `method` (the reference's).
    pub fn lr(&self, method: Method) -> f64 {
        match method {
            Method::FdSsm | Method::DsmSmall | Method::DsmLarge | Method::Cp => self.lr_fast,
            _ => self.lr_slow,
        }
    }

    /// The minibatch size of `method`.
    pub fn batch_of(&self, method: Method) -> usize {
        if method == Method::Sm {
            self.sm_batch
        } else {
            self.batch
        }
    }

    /// The settings a checkpoint must match to be resumed (the evaluation-only settings and the
    /// checkpoint interval set to fixed values).
    pub fn training_identity(&self) -> Self {
        Self {
            profile: String::new(),
            test_sm_images: 0,
            test_nll_images: 0,
            eval_batch: 0,
            samples: 0,
            timing_warmup: 0,
            checkpoint_every: 0,
            seeds: 0,
            sliced_seeds: 0,
            methods: Vec::new(),
            ..self.clone()
        }
    }

    /// Checks the values a run depends on.
    ///
    /// # Errors
    /// [`ExpError::Config`] naming the bad value.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ExpError::Config(m));
        self.model.check().map_err(ExpError::Config)?;
        if self.model.dim != 784 {
            return bad(format!(
                "Table 3 trains on 28 x 28 MNIST images: model.dim must be 784, got {}",
                self.model.dim
            ));
        }
        for (name, v) in [
            ("iters", self.iters),
            ("val_every", self.val_every),
            ("checkpoint_every", self.checkpoint_every),
        ] {
            if v == 0 {
                return bad(format!("{name} must be >= 1"));
            }
        }
        for (name, v) in [
            ("batch", self.batch),
            ("sm_batch", self.sm_batch),
            ("val_images", self.val_images),
            ("test_sm_images", self.test_sm_images),
            ("test_nll_images", self.test_nll_images),
            ("eval_batch", self.eval_batch),
            ("samples", self.samples),
            ("seeds", self.seeds),
            ("sliced_seeds", self.sliced_seeds),
        ] {
            if v == 0 {
                return bad(format!("{name} must be >= 1"));
            }
        }
        if self.val_images > 6000 {
            return bad(format!(
                "val_images {} exceeds the 6000 validation images (10% of the training split)",
                self.val_images
            ));
        }
        if self.test_sm_images.max(self.test_nll_images) > 10_000 {
            return bad(
                "test_sm_images and test_nll_images must be <= 10000 (MNIST's test split)".into(),
            );
        }
        if self.methods.is_empty() {
            return bad("no methods selected".into());
        }
        crate::require_positive(&[
            ("lr_fast", self.lr_fast),
            ("lr_slow", self.lr_slow),
            ("eps", self.eps),
            ("sigma_small", self.sigma_small),
            ("sigma_large", self.sigma_large),
        ])?;
        let params = self.model.parameter_count();
        // Parameters, gradients, two Adam moments and the checkpoint copy, in f32.
        crate::require_memory("the NICE parameters and optimiser state", params * 4 * 6)?;
        Ok(())
    }
}
