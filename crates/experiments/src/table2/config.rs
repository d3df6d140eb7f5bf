//! The settings of Table 2 (FD-SM Sec. 6.1, App. C.2): its rows, the paper's numbers for them,
//! and the `quick` and `paper` profiles.

use models::ResNetEbmConfig;
use serde::{Deserialize, Serialize};

use crate::deep_ebm::DeepEbmTraining;
use crate::error::{ExpError, Result};
use crate::eval::SmEstimate;
use crate::langevin::LangevinSchedule;
use crate::objective::{MleSettings, Objective};

/// The rows of Table 2 in the paper's order: DSM, FD-DSM*, FD-DSM, SSM, SSMVR, FD-SSM*, FD-SSM,
/// where the paper's DSM rows are multiscale DSM as the deep-EBM code trains them; with two
/// rows the paper does not have: sliced DSM after DSM (FD-DSM's loss by autodiff, which
/// separates the effect of slicing from that of the finite difference) and maximum likelihood
/// with Langevin negatives last.
pub const ROWS: [Objective; 9] = [
    Objective::Mdsm,
    Objective::SlicedMdsm,
    Objective::FdMdsmSeq,
    Objective::FdMdsm,
    Objective::Ssm,
    Objective::Ssmvr,
    Objective::FdSsmSeq,
    Objective::FdSsm,
    Objective::MleLangevin,
];

/// The paper's seven rows, which its profile runs (the others with `--rows`: MLE's Langevin
/// chains multiply the cost of each of its 300K steps by about 60).
pub const PAPER_ROWS: [Objective; 7] = [
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
    /// How every row trains (the deep-EBM settings, flattened into this JSON object).
    #[serde(flatten)]
    pub training: DeepEbmTraining,
    /// Test images for the SM loss (paper 1500), drawn at random from the test set.
    pub eval_images: usize,
    /// Evaluation batch size.
    pub eval_batch: usize,
    /// Exact or Hutchinson test SM loss.
    pub estimate: SmEstimate,
    /// Samples drawn per row for the grid.
    pub samples: usize,
    /// Samples drawn per row for FID with LeNet features (0: none; more than 128 for a
    /// full-rank covariance of the 128 features).
    #[serde(default)]
    pub fid_samples: usize,
    /// Where the LeNet feature network and its reference statistics are cached (`None`:
    /// `<data dir>/feature-nets`).
    #[serde(default)]
    pub feature_cache: Option<std::path::PathBuf>,
    /// The Langevin schedule.
    pub langevin: LangevinSchedule,
    /// Rows to run (objectives among [`ROWS`]).
    pub rows: Vec<Objective>,
    /// Runs per row with seeds `seed, seed + 1, ...`: the table reports their mean and the
    /// standard error over seeds. Samples and FID come from the first seed's model.
    #[serde(default = "one")]
    pub seeds: usize,
}

fn one() -> usize {
    1
}

impl Table2Config {
    /// The paper's settings (App. C.2, reference code): its seven rows, Res18 with n = 128 on
    /// 32 x 32 MNIST, batch 64, 300K iterations, exact test SM on 1500 images, the 2700-step
    /// sampler. Meant for a GPU.
    pub fn paper() -> Self {
        Self {
            profile: "paper".into(),
            training: DeepEbmTraining::paper(),
            eval_images: 1500,
            eval_batch: 50,
            estimate: SmEstimate::Exact,
            samples: 64,
            fid_samples: 2000,
            feature_cache: None,
            langevin: LangevinSchedule::paper(),
            rows: PAPER_ROWS.to_vec(),
            seeds: 1,
        }
    }

    /// A 2-core-CPU profile of minutes with the same code path: width 4, batch 16, 600
    /// iterations per row and two seeds, raised learning rates (the run is 500 times shorter),
    /// a Hutchinson test SM estimate on 64 images, a 300-step sampler, 200 samples per row for
    /// FID with LeNet features. Chosen from measurements (`docs/table2.md`): the shortest run
    /// in which FD-DSM and sliced DSM leave the pure-noise loss, with the SSM family's rate low
    /// enough that SSM does not collapse.
    pub fn quick() -> Self {
        Self {
            profile: "quick".into(),
            training: DeepEbmTraining {
                model: ResNetEbmConfig::res18(4),
                iters: 600,
                batch: 16,
                lr_dsm: 3e-3,
                lr_ssm: 2e-4,
                lr_mle: 1e-3,
                mle: MleSettings::image_practice(20, 2000),
                eval_points: 8,
                timing_warmup: 5,
                checkpoint_every: 100,
                ..DeepEbmTraining::paper()
            },
            eval_images: 64,
            eval_batch: 16,
            estimate: SmEstimate::Hutchinson { projections: 2 },
            samples: 36,
            fid_samples: 200,
            langevin: LangevinSchedule {
                hold_steps: 50,
                anneal_steps: 220,
                cool_steps: 30,
                t_max: 100.0,
                step_size: 0.02,
                denoise: 0.1,
            },
            rows: ROWS.to_vec(),
            seeds: 2,
            ..Self::paper()
        }
    }

    /// A longer 2-core-CPU profile (about an hour): the quick profile's network at batch 32
    /// and 4000 iterations per row, one seed, the test loss on 128 images, the paper's
    /// 2700-step sampler with 64 samples, and the rows that carry the paper's claims (DSM,
    /// sliced DSM, FD-DSM, SSM, FD-SSM) with maximum likelihood.
    pub fn cpu() -> Self {
        let quick = Self::quick();
        Self {
            profile: "cpu".into(),
            training: DeepEbmTraining {
                iters: 4000,
                batch: 32,
                eval_points: 12,
                checkpoint_every: 250,
                ..quick.training
            },
            eval_images: 128,
            eval_batch: 32,
            samples: 64,
            langevin: LangevinSchedule::paper(),
            rows: vec![
                Objective::Mdsm,
                Objective::SlicedMdsm,
                Objective::FdMdsm,
                Objective::Ssm,
                Objective::FdSsm,
                Objective::MleLangevin,
            ],
            seeds: 1,
            ..quick
        }
    }

    /// A named profile.
    ///
    /// # Errors
    /// [`ExpError::Config`] for an unknown name.
    pub fn profile(name: &str) -> Result<Self> {
        match name {
            "cpu" => Ok(Self::cpu()),
            other => crate::pick_profile(other, Self::quick, Self::paper).map_err(|_| {
                ExpError::Config(format!(
                    "unknown profile `{other}`; expected quick, cpu or paper"
                ))
            }),
        }
    }

    /// Checks the values a run depends on.
    ///
    /// # Errors
    /// [`ExpError::Config`] naming the bad value.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ExpError::Config(m));
        self.training.validate()?;
        if self.eval_images == 0 || self.eval_batch == 0 || self.samples == 0 {
            return bad("eval_images, eval_batch and samples must be >= 1".into());
        }
        if self.rows.is_empty() {
            return bad("no rows selected".into());
        }
        if self.seeds == 0 {
            return bad("seeds must be >= 1".into());
        }
        if let Some(o) = self.rows.iter().find(|o| !ROWS.contains(o)) {
            return bad(format!(
                "`{}` is not a row of Table 2; its rows are {} (the paper's DSM rows are \
                 multiscale DSM)",
                o.key(),
                ROWS.map(|r| r.key()).join(", ")
            ));
        }
        if self.fid_samples > 0 && self.fid_samples <= 128 {
            return bad(format!(
                "fid_samples {} is too few for FID with LeNet's 128 features: at least 129 (or 0 \
                 for no FID)",
                self.fid_samples
            ));
        }
        if self.eval_images > 10_000 {
            return bad(format!(
                "eval_images {} exceeds the 10000 MNIST test images",
                self.eval_images
            ));
        }
        let model = &self.training.model;
        if model.image_size != 32 || model.in_channels != 1 {
            return bad("Table 2 uses 1 x 32 x 32 inputs (MNIST padded by 2)".into());
        }
        Ok(())
    }
}

impl Table2Config {
    /// The training settings of one run: the row's, with the run's seed.
    pub fn run_training(&self, run: super::Run) -> DeepEbmTraining {
        DeepEbmTraining {
            seed: self.training.seed + run.seed as u64,
            ..self.training.clone()
        }
    }
}

/// The paper's name of a row (its DSM rows are multiscale DSM).
pub fn paper_label(row: Objective) -> &'static str {
    match row {
        Objective::Mdsm => "DSM",
        Objective::SlicedMdsm => "sliced DSM",
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
