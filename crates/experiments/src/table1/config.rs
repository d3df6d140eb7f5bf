//! The settings of Table 1 (FD-SM Sec. 6.1): DKEF on three UCI data sets (and a 2-D toy) trained
//! by SSM, SSMVR and FD-SSM, the paper's numbers, and the `quick` and `paper` profiles.

use serde::{Deserialize, Serialize};

use crate::error::{ExpError, Result};
use crate::optim::AdamConfig;

/// A data set of the table, or the 2-D checkerboard toy whose learned density is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataSet {
    /// Parkinsons telemonitoring (D = 15 after the reference's column removal).
    Parkinsons,
    /// Red wine quality (D = 11).
    RedWine,
    /// White wine quality (D = 11).
    WhiteWine,
    /// A 4 x 4 checkerboard on `[-2, 2]^2` (not in the paper; its density is plotted).
    Checkerboard,
}

/// The data sets, the table's first.
pub const DATA_SETS: [DataSet; 4] = [
    DataSet::Parkinsons,
    DataSet::RedWine,
    DataSet::WhiteWine,
    DataSet::Checkerboard,
];

impl DataSet {
    /// The command-line key.
    pub fn key(self) -> &'static str {
        match self {
            DataSet::Parkinsons => "parkinsons",
            DataSet::RedWine => "redwine",
            DataSet::WhiteWine => "whitewine",
            DataSet::Checkerboard => "checkerboard",
        }
    }

    /// The paper's name.
    pub fn label(self) -> &'static str {
        match self {
            DataSet::Parkinsons => "Parkinsons",
            DataSet::RedWine => "RedWine",
            DataSet::WhiteWine => "WhiteWine",
            DataSet::Checkerboard => "Checkerboard (2-D toy)",
        }
    }

    /// Parses a key.
    ///
    /// # Errors
    /// [`ExpError::Config`] listing the keys.
    pub fn parse(s: &str) -> Result<Self> {
        DATA_SETS.into_iter().find(|d| d.key() == s).ok_or_else(|| {
            ExpError::Config(format!(
                "`{s}` is not a data set of Table 1; they are {}",
                DATA_SETS.map(DataSet::key).join(", ")
            ))
        })
    }
}

/// A training objective of Table 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Sliced score matching, Rademacher directions, derivatives exact.
    Ssm,
    /// SSM with variance reduction (the full gradient norm).
    Ssmvr,
    /// SSM's quantities by central finite differences (step `eps`).
    FdSsm,
}

/// The methods in the paper's order.
pub const METHODS: [Method; 3] = [Method::Ssm, Method::Ssmvr, Method::FdSsm];

impl Method {
    /// The command-line key.
    pub fn key(self) -> &'static str {
        match self {
            Method::Ssm => "ssm",
            Method::Ssmvr => "ssmvr",
            Method::FdSsm => "fd-ssm",
        }
    }

    /// The paper's name.
    pub fn label(self) -> &'static str {
        match self {
            Method::Ssm => "SSM",
            Method::Ssmvr => "SSMVR",
            Method::FdSsm => "FD-SSM",
        }
    }

    /// Parses a key.
    ///
    /// # Errors
    /// [`ExpError::Config`] listing the keys.
    pub fn parse(s: &str) -> Result<Self> {
        METHODS.into_iter().find(|m| m.key() == s).ok_or_else(|| {
            ExpError::Config(format!(
                "`{s}` is not a method of Table 1; they are {}",
                METHODS.map(Method::key).join(", ")
            ))
        })
    }

    /// The paper's numbers on a data set: (test NLL, test SM loss, time per iteration in ms).
    pub fn paper(self, data: DataSet) -> Option<(f64, f64, f64)> {
        Some(match (self, data) {
            (Method::Ssm, DataSet::Parkinsons) => (14.52, -123.54, 110.0),
            (Method::Ssm, DataSet::RedWine) => (13.34, -33.28, 113.0),
            (Method::Ssm, DataSet::WhiteWine) => (14.13, -38.43, 105.0),
            (Method::Ssmvr, DataSet::Parkinsons) => (13.26, -193.97, 111.0),
            (Method::Ssmvr, DataSet::RedWine) => (13.13, -31.19, 106.0),
            (Method::Ssmvr, DataSet::WhiteWine) => (13.63, -39.42, 111.0),
            (Method::FdSsm, DataSet::Parkinsons) => (13.69, -138.72, 82.5),
            (Method::FdSsm, DataSet::RedWine) => (13.06, -30.34, 82.0),
            (Method::FdSsm, DataSet::WhiteWine) => (14.10, -32.84, 81.0),
            (_, DataSet::Checkerboard) => return None,
        })
    }
}

/// Everything that defines a Table 1 run; saved as `config.json` next to the results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table1Config {
    /// Profile name the run started from.
    pub profile: String,
    /// Feature width (reference 30).
    pub hidden: usize,
    /// Inducing points (reference 200).
    pub inducing: usize,
    /// Initial `log10 sigma_j^2` of the kernels (reference 0, 0.5185, 1).
    pub log10_bandwidths: Vec<f64>,
    /// Base density standard deviation (reference 2).
    pub q0_std: f64,
    /// Initial `log10 lambda` (reference -2).
    pub log10_lambda: f64,
    /// Training epochs (paper 500); the steps per run are `epochs * (training points / batch)`.
    pub epochs: u64,
    /// Points per step (reference 200), half for the kernel weights and half for the loss.
    pub batch: usize,
    /// Adam learning rate (reference 0.01).
    pub lr: f64,
    /// Adam hyperparameters (reference: PyTorch's defaults).
    pub adam: AdamConfig,
    /// Gradient-norm clip of SSM and SSMVR (reference 100).
    pub clip_sliced: f64,
    /// Gradient-norm clip of FD-SSM (reference 1).
    pub clip_fd: f64,
    /// FD step (paper 0.1).
    pub eps: f64,
    /// Training points the evaluation's kernel weights are solved from (exact form).
    pub alpha_points: usize,
    /// Validation points of the exact SM loss that selects the kept parameters.
    pub val_points: usize,
    /// Validate every this many steps (and at the end).
    pub val_every: u64,
    /// Stop after this many validations without improvement (reference 200); `None` trains
    /// every epoch.
    pub patience: Option<u64>,
    /// Steps of the final phase that trains only `lambda` on the validation loss (reference
    /// 1000, Adam 1e-3); 0 to skip it.
    pub lambda_steps: u64,
    /// Importance samples for `log Z` (reference 1e6).
    pub is_samples: usize,
    /// Checkerboard points (training; validation and test are a quarter each).
    pub toy_points: usize,
    /// Side of the density grid drawn for the checkerboard.
    pub grid: usize,
    /// Steps excluded from the timing median.
    pub timing_warmup: usize,
    /// Checkpoint every this many steps.
    pub checkpoint_every: u64,
    /// Runs per (data set, method).
    pub seeds: usize,
    /// Master seed.
    pub seed: u64,
    /// Data sets to run.
    pub data_sets: Vec<DataSet>,
    /// Methods to run.
    pub methods: Vec<Method>,
}

impl Table1Config {
    /// The paper's settings: 500 epochs at batch 200, Adam 0.01, the reference's DKEF, `log Z`
    /// from 1e6 importance samples. Meant for a GPU (it also runs on a CPU, slowly).
    pub fn paper() -> Self {
        Self {
            profile: "paper".into(),
            hidden: 30,
            inducing: 200,
            log10_bandwidths: vec![0.0, 0.5185, 1.0],
            q0_std: 2.0,
            log10_lambda: -2.0,
            epochs: 500,
            batch: 200,
            lr: 0.01,
            adam: AdamConfig {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
            clip_sliced: 100.0,
            clip_fd: 1.0,
            eps: 0.1,
            alpha_points: 2000,
            val_points: 1000,
            val_every: 100,
            patience: Some(200),
            lambda_steps: 1000,
            is_samples: 1_000_000,
            toy_points: 4000,
            grid: 80,
            timing_warmup: 10,
            checkpoint_every: 1000,
            seeds: 1,
            seed: 0,
            data_sets: DATA_SETS.to_vec(),
            methods: METHODS.to_vec(),
        }
    }

    /// A 2-core CPU profile with the same code path: the reference model, 3 epochs, `log Z`
    /// from 1e5 samples, a 200-step `lambda` phase.
    pub fn quick() -> Self {
        Self {
            profile: "quick".into(),
            epochs: 3,
            alpha_points: 1000,
            val_points: 500,
            val_every: 25,
            lambda_steps: 200,
            is_samples: 100_000,
            toy_points: 4000,
            grid: 60,
            timing_warmup: 5,
            checkpoint_every: 100,
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

    /// The settings a checkpoint must match (evaluation-only settings fixed).
    pub fn training_identity(&self) -> Self {
        Self {
            profile: String::new(),
            lambda_steps: 0,
            is_samples: 0,
            grid: 0,
            timing_warmup: 0,
            checkpoint_every: 0,
            seeds: 0,
            data_sets: Vec::new(),
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
        for (name, v) in [
            ("hidden", self.hidden),
            ("inducing", self.inducing),
            ("alpha_points", self.alpha_points),
            ("val_points", self.val_points),
            ("is_samples", self.is_samples),
            ("toy_points", self.toy_points),
            ("grid", self.grid),
            ("seeds", self.seeds),
        ] {
            if v == 0 {
                return bad(format!("{name} must be >= 1"));
            }
        }
        if self.batch < 2 || self.batch % 2 != 0 {
            return bad(format!(
                "batch must be even and >= 2 (half for the kernel weights, half for the loss), \
                 got {}",
                self.batch
            ));
        }
        if self.epochs == 0 || self.val_every == 0 || self.checkpoint_every == 0 {
            return bad("epochs, val_every and checkpoint_every must be >= 1".into());
        }
        if self.log10_bandwidths.is_empty() {
            return bad("log10_bandwidths needs at least one kernel".into());
        }
        if self.data_sets.is_empty() || self.methods.is_empty() {
            return bad("no data sets or no methods selected".into());
        }
        crate::require_positive(&[
            ("lr", self.lr),
            ("clip_sliced", self.clip_sliced),
            ("clip_fd", self.clip_fd),
            ("eps", self.eps),
            ("q0_std", self.q0_std),
        ])?;
        Ok(())
    }
}
