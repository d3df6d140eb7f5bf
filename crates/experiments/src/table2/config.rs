//! The settings of Table 2 (FD-SM Sec. 6.1, App. C.2): its rows, the paper's numbers for them,
//! and the `quick` and `paper` profiles.

use models::ResNetEbmConfig;
use serde::{Deserialize, Serialize};

use crate::error::{ExpError, Result};
use crate::eval::SmEstimate;
use crate::langevin::LangevinSchedule;
use crate::objective::Objective;
use crate::optim::AdamConfig;

/// The rows of Table 2 in the paper's order: DSM, FD-DSM*, FD-DSM, SSM, SSMVR, FD-SSM*, FD-SSM,
/// where the paper's DSM rows are multiscale DSM as the deep-EBM code trains them.
pub const ROWS: [Objective; 7] = [
    Objective::Mdsm,
    Objective::FdMdsmSeq,
    Objective::FdMdsm,
    Objective::Ssm,
    Objective::Ssmvr,
    Objective::FdSsmSeq,
    Objective::FdSsm,
];

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
    /// Rows to run (objectives among [`ROWS`]).
    pub rows: Vec<Objective>,
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
            rows: ROWS.to_vec(),
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

    /// The settings a checkpoint must match to be resumed: these settings with the ones that
    /// only evaluation reads (test images, the SM estimate, samples and the sampler, the timing
    /// warm-up) and the checkpoint interval set to fixed values, so that those can change when a
    /// run is resumed. The snapshot schedule (`eval_points`) shapes training's outputs and stays.
    pub fn training_identity(&self) -> Self {
        Self {
            profile: String::new(),
            eval_images: 0,
            eval_batch: 0,
            estimate: SmEstimate::Exact,
            samples: 0,
            langevin: LangevinSchedule::paper(),
            timing_warmup: 0,
            checkpoint_every: 0,
            rows: Vec::new(),
            ..self.clone()
        }
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
            || self.eval_points == 0
            || self.samples == 0
            || self.checkpoint_every == 0
        {
            return bad(
                "iters, batch, eval_images, eval_batch, eval_points, samples and \
                 checkpoint_every must be >= 1"
                    .into(),
            );
        }
        if self.rows.is_empty() {
            return bad("no rows selected".into());
        }
        if let Some(o) = self.rows.iter().find(|o| !ROWS.contains(o)) {
            return bad(format!(
                "`{}` is not a row of Table 2; its rows are {} (the paper's DSM rows are \
                 multiscale DSM)",
                o.key(),
                ROWS.map(|r| r.key()).join(", ")
            ));
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
        crate::require_resnet_memory(&self.model)?;
        if self.model.image_size != 32 || self.model.in_channels != 1 {
            return bad("Table 2 uses 1 x 32 x 32 inputs (MNIST padded by 2)".into());
        }
        Ok(())
    }
}

/// The paper's name of a row (its DSM rows are multiscale DSM).
pub fn paper_label(row: Objective) -> &'static str {
    match row {
        Objective::Mdsm => "DSM",
        Objective::FdMdsmSeq => "FD-DSM*",
        Objective::FdMdsm => "FD-DSM",
        other => other.label(),
    }
}

/// The paper's numbers for a row, `None` for an objective that is not one.
pub fn paper_row(row: Objective) -> Option<PaperRow> {
    let (sm_loss, time_ms, mem_gb) = match row {
        Objective::Mdsm => (-9.47e4, 282.0, 3.0),
        Objective::FdMdsmSeq => (-9.24e4, 191.0, 3.2),
        Objective::FdMdsm => (-9.27e4, 162.0, 2.7),
        Objective::Ssm => (-2.97e7, 673.0, 5.1),
        Objective::Ssmvr => (-3.09e7, 670.0, 5.0),
        Objective::FdSsmSeq => (-3.36e7, 276.0, 3.7),
        Objective::FdSsm => (-3.33e7, 230.0, 3.4),
        _ => return None,
    };
    Some(PaperRow {
        sm_loss,
        time_ms,
        mem_gb,
    })
}

/// The factor that brings our per-dimension objective to the reference code's scale, so that
/// its learning rates and gradient clipping apply unchanged: the reference sums MDSM and
/// FD-MDSM over dimensions and does not divide SSM / SSMVR by `C_v = D`, while its FD-SSM is
/// per dimension (`docs/objectives.md`).
pub fn reference_scale(row: Objective, dim: usize) -> f64 {
    match row {
        Objective::FdSsm | Objective::FdSsmSeq => 1.0,
        _ => dim as f64,
    }
}
