//! Table 2 of FD-SM (Sec. 6.1, App. C.2): the deep-EBM ResNet trained on MNIST by DSM, FD-DSM*,
//! FD-DSM, SSM, SSMVR, FD-SSM*, FD-SSM, with the test SM loss, the time per iteration and the
//! memory of each row side by side with the paper's numbers.
//!
//! Each row trains in its own child process (`train-row`) so its peak memory is its own, with
//! Candle's higher-order mode on only for the gradient-based rows; a second child (`eval-row`)
//! computes the test SM loss of the snapshots taken along training (the loss-against-wall-time
//! curves of Fig. 4) and draws samples by annealed Langevin dynamics. `run` orchestrates them
//! and writes the report.

mod eval;
mod report;
mod run;
mod train;

pub use eval::{eval_row, EvalReport};
pub use report::markdown;
pub use run::{run, RunOptions, Table2Run};
pub use train::{train_row, TrainReport};

use std::path::{Path, PathBuf};

use models::ResNetEbmConfig;
use serde::{Deserialize, Serialize};

use crate::error::{ExpError, Result};
use crate::eval::SmEstimate;
use crate::langevin::LangevinSchedule;
use crate::optim::AdamConfig;
use crate::report::Environment;

/// A row of Table 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Row {
    /// Multiscale DSM by autodiff.
    Dsm,
    /// FD-DSM with one forward pass per offset (the starred row).
    FdDsmSeq,
    /// FD-DSM with one concatenated forward pass.
    FdDsm,
    /// SSM by autodiff (Gaussian projections, as the deep-EBM code).
    Ssm,
    /// SSM with variance reduction by autodiff.
    Ssmvr,
    /// FD-SSM with one forward pass per offset (the starred row).
    FdSsmSeq,
    /// FD-SSM with one concatenated forward pass.
    FdSsm,
}

/// The paper's numbers for a row (Table 2; 300K iterations, batch 64, GPU).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PaperRow {
    /// Test SM loss.
    pub sm_loss: f64,
    /// Time per iteration, ms.
    pub time_ms: f64,
    /// GPU memory, GB.
    pub mem_gb: f64,
}

impl Row {
    /// All rows in the paper's order.
    pub const ALL: [Row; 7] = [
        Row::Dsm,
        Row::FdDsmSeq,
        Row::FdDsm,
        Row::Ssm,
        Row::Ssmvr,
        Row::FdSsmSeq,
        Row::FdSsm,
    ];

    /// The name printed in tables.
    pub fn label(self) -> &'static str {
        match self {
            Row::Dsm => "DSM",
            Row::FdDsmSeq => "FD-DSM*",
            Row::FdDsm => "FD-DSM",
            Row::Ssm => "SSM",
            Row::Ssmvr => "SSMVR",
            Row::FdSsmSeq => "FD-SSM*",
            Row::FdSsm => "FD-SSM",
        }
    }

    /// The command-line key (`fd-dsm-seq` for the starred rows; `fd-dsm*` is accepted too).
    pub fn key(self) -> &'static str {
        match self {
            Row::Dsm => "dsm",
            Row::FdDsmSeq => "fd-dsm-seq",
            Row::FdDsm => "fd-dsm",
            Row::Ssm => "ssm",
            Row::Ssmvr => "ssmvr",
            Row::FdSsmSeq => "fd-ssm-seq",
            Row::FdSsm => "fd-ssm",
        }
    }

    /// Parses a key or label.
    ///
    /// # Errors
    /// [`ExpError::Config`] listing the keys.
    pub fn parse(s: &str) -> Result<Self> {
        let k = s.trim().to_ascii_lowercase().replace('*', "-seq");
        Row::ALL.into_iter().find(|r| r.key() == k).ok_or_else(|| {
            ExpError::Config(format!(
                "unknown row {s:?}; rows: {}",
                Row::ALL.map(|r| r.key()).join(", ")
            ))
        })
    }

    /// Whether the objective differentiates through a gradient (needs higher-order mode).
    pub fn gradient_based(self) -> bool {
        matches!(self, Row::Dsm | Row::Ssm | Row::Ssmvr)
    }

    /// Whether the row belongs to the DSM family (learning rate, loss-curve panel).
    pub fn dsm_family(self) -> bool {
        matches!(self, Row::Dsm | Row::FdDsmSeq | Row::FdDsm)
    }

    /// The paper's numbers.
    pub fn paper(self) -> PaperRow {
        let (sm_loss, time_ms, mem_gb) = match self {
            Row::Dsm => (-9.47e4, 282.0, 3.0),
            Row::FdDsmSeq => (-9.24e4, 191.0, 3.2),
            Row::FdDsm => (-9.27e4, 162.0, 2.7),
            Row::Ssm => (-2.97e7, 673.0, 5.1),
            Row::Ssmvr => (-3.09e7, 670.0, 5.0),
            Row::FdSsmSeq => (-3.36e7, 276.0, 3.7),
            Row::FdSsm => (-3.33e7, 230.0, 3.4),
        };
        PaperRow {
            sm_loss,
            time_ms,
            mem_gb,
        }
    }

    /// The factor that brings our per-dimension objective to the reference code's scale, so that
    /// its learning rates and gradient clipping apply unchanged: the reference sums MDSM and
    /// FD-MDSM over dimensions and does not divide SSM / SSMVR by `C_v = D`, while its FD-SSM is
    /// per dimension (`docs/objectives.md`).
    pub fn reference_scale(self, dim: usize) -> f64 {
        match self {
            Row::FdSsm | Row::FdSsmSeq => 1.0,
            _ => dim as f64,
        }
    }
}

/// Everything that defines a Table 2 run; saved as `config.json` next to the results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table2Config {
    /// Profile name the run started from ("quick" or "paper").
    pub profile: String,
    /// The energy network.
    pub model: ResNetEbmConfig,
    /// Training steps per row.
    pub iters: u64,
    /// Minibatch size.
    pub batch: usize,
    /// Learning rate of the DSM family (paper 5e-5).
    pub lr_dsm: f64,
    /// Learning rate of the SSM family (paper 1e-5).
    pub lr_ssm: f64,
    /// Adam hyperparameters (paper 0.9, 0.95).
    pub adam: AdamConfig,
    /// Gradient-norm clip on the reference scale (paper 0.1).
    pub clip: Option<f64>,
    /// FD step `eps`: radius of the projection sphere (paper 0.05).
    pub eps: f64,
    /// Smallest MDSM noise level (paper 0.05).
    pub sigma_min: f64,
    /// Largest MDSM noise level (paper 1.2).
    pub sigma_max: f64,
    /// Target noise level of MDSM (paper 0.1).
    pub sigma0: f64,
    /// Test images for the SM loss (paper 1500), drawn at random from the test set.
    pub eval_images: usize,
    /// Evaluation batch size.
    pub eval_batch: usize,
    /// How many snapshots along training are evaluated (the loss curves).
    pub eval_points: usize,
    /// Exact or Hutchinson test SM loss.
    pub estimate: SmEstimate,
    /// Steps excluded from the timing median.
    pub timing_warmup: usize,
    /// Samples drawn per row.
    pub samples: usize,
    /// The Langevin schedule.
    pub langevin: LangevinSchedule,
    /// Checkpoint every this many steps.
    pub checkpoint_every: u64,
    /// Master seed.
    pub seed: u64,
    /// Rows to run.
    pub rows: Vec<Row>,
}

impl Table2Config {
    /// The paper's settings (App. C.2, reference code): Res18 with n = 128 on 32 x 32 MNIST,
    /// batch 64, 300K iterations, exact test SM on 1500 images, the 2700-step sampler. Meant for
    /// a GPU.
    pub fn paper() -> Self {
        Self {
            profile: "paper".into(),
            model: ResNetEbmConfig::res18(128),
            iters: 300_000,
            batch: 64,
            lr_dsm: 5e-5,
            lr_ssm: 1e-5,
            adam: AdamConfig::default(),
            clip: Some(0.1),
            eps: 0.05,
            sigma_min: 0.05,
            sigma_max: 1.2,
            sigma0: 0.1,
            eval_images: 1500,
            eval_batch: 50,
            eval_points: 30,
            estimate: SmEstimate::Exact,
            timing_warmup: 10,
            samples: 64,
            langevin: LangevinSchedule::paper(),
            checkpoint_every: 1000,
            seed: 0,
            rows: Row::ALL.to_vec(),
        }
    }

    /// A laptop-CPU profile with the same code path: width 4, batch 16, 150 iterations per row,
    /// raised learning rates (the run is 2000 times shorter), a Hutchinson test SM estimate on 64
    /// images, a 300-step sampler. The whole table takes about 3 minutes on 2 cores.
    pub fn quick() -> Self {
        Self {
            profile: "quick".into(),
            model: ResNetEbmConfig::res18(4),
            iters: 150,
            batch: 16,
            lr_dsm: 1e-3,
            lr_ssm: 2e-4,
            eval_images: 64,
            eval_batch: 16,
            eval_points: 5,
            estimate: SmEstimate::Hutchinson { projections: 2 },
            timing_warmup: 5,
            samples: 16,
            langevin: LangevinSchedule {
                hold_steps: 50,
                anneal_steps: 220,
                cool_steps: 30,
                t_max: 100.0,
                step_size: 0.02,
                denoise: 0.1,
            },
            checkpoint_every: 50,
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

    /// Checks the values a run depends on.
    ///
    /// # Errors
    /// [`ExpError::Config`] naming the bad value.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ExpError::Config(m));
        if self.iters == 0
            || self.batch == 0
            || self.eval_images == 0
            || self.eval_batch == 0
            || self.samples == 0
        {
            return bad("iters, batch, eval_images, eval_batch and samples must be >= 1".into());
        }
        if self.rows.is_empty() {
            return bad("no rows selected".into());
        }
        crate::require_positive(&[
            ("lr_dsm", self.lr_dsm),
            ("lr_ssm", self.lr_ssm),
            ("eps", self.eps),
            ("sigma_min", self.sigma_min),
            ("sigma0", self.sigma0),
        ])?;
        if self.sigma_max < self.sigma_min {
            return bad(format!(
                "sigma_max {} < sigma_min {}",
                self.sigma_max, self.sigma_min
            ));
        }
        if self.eval_images > 10_000 {
            return bad(format!(
                "eval_images {} exceeds the 10000 MNIST test images",
                self.eval_images
            ));
        }
        if self.model.image_size != 32 || self.model.in_channels != 1 {
            return bad("Table 2 uses 1 x 32 x 32 inputs (MNIST padded by 2)".into());
        }
        Ok(())
    }
}

/// The full result file `results.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Table2Results {
    /// The configuration.
    pub config: Table2Config,
    /// Machine and versions.
    pub environment: Environment,
    /// Per row: training and evaluation reports.
    pub rows: Vec<(TrainReport, EvalReport)>,
    /// Speed-ups (ours, paper): FD-SSM vs SSM, FD-DSM vs DSM, and the starred forms.
    pub speedups: Vec<(String, Option<f64>, f64)>,
}
fn row_dir(out: &Path, row: Row) -> PathBuf {
    out.join("rows").join(row.key())
}
