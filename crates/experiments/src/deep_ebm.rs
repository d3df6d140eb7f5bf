//! Training the deep-EBM ResNet of FD-SM Sec. 6.1 (App. C.2) by one objective on a set of
//! images, shared by Table 2 (MNIST) and Table 4 (the out-of-distribution detectors): the
//! training settings with the reference code's learning rates and multiscale noise, snapshots
//! for the loss curves, step times and the training steps' memory, and exact resume.

use std::path::PathBuf;

use candle_core::Tensor;
use models::ResNetEbmConfig;
use serde::{Deserialize, Serialize};
use sm_objectives::noise::linear_sigmas;
use sm_objectives::NoiseSource;
use train::mcmc::{mle_loss, ChainsAndRecord, ReplayBuffer};

use crate::error::{ExpError, Result};
use crate::objective::{MleSettings, MultiscaleNoise, Objective, ObjectiveSettings};
use crate::optim::{AdamConfig, LrSchedule};
use crate::report::{read_json, write_json};
use crate::runner::RowContext;
use crate::trainer::{train_with_state, StepRecord};
use crate::{memory, step_seed};

/// How a deep EBM is trained (the reference code's settings in [`DeepEbmTraining::paper`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeepEbmTraining {
    /// The energy network.
    pub model: ResNetEbmConfig,
    /// Training steps.
    pub iters: u64,
    /// Minibatch size.
    pub batch: usize,
    /// Learning rate of the DSM family (paper 5e-5).
    pub lr_dsm: f64,
    /// Learning rate of the SSM family (paper 1e-5).
    pub lr_ssm: f64,
    /// Learning rate of maximum likelihood (not a row of the paper; 1e-4 as Du and Mordatch
    /// 2019 train theirs).
    pub lr_mle: f64,
    /// The Langevin negatives of maximum likelihood.
    pub mle: MleSettings,
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
    /// How many snapshots of the parameters are saved along training, evenly spaced and the
    /// last at the end (the points of the loss curves).
    pub eval_points: usize,
    /// Steps excluded from the timing median.
    pub timing_warmup: usize,
    /// Checkpoint every this many steps.
    pub checkpoint_every: u64,
    /// Seed of the initial weights, the batches and the noise.
    pub seed: u64,
}

impl DeepEbmTraining {
    /// The reference code's settings for MNIST (App. C.2): Res18 with n = 128 on 32 x 32
    /// images, batch 64, 300K iterations, Adam (0.9, 0.95), learning rates 5e-5 (DSM family)
    /// and 1e-5 (SSM family) with a cosine decay, clip 0.1, `eps` 0.05, noise levels linear in
    /// `[0.05, 1.2]` around `sigma0` 0.1.
    pub fn paper() -> Self {
        Self {
            model: ResNetEbmConfig::res18(128),
            iters: 300_000,
            batch: 64,
            lr_dsm: 5e-5,
            lr_ssm: 1e-5,
            lr_mle: 1e-4,
            mle: MleSettings::image_practice(60, 10_000),
            adam: AdamConfig::default(),
            clip: Some(0.1),
            eps: 0.05,
            sigma_min: 0.05,
            sigma_max: 1.2,
            sigma0: 0.1,
            eval_points: 30,
            timing_warmup: 10,
            checkpoint_every: 1000,
            seed: 0,
        }
    }

    /// The settings a checkpoint of `row` must match to be resumed (or reused): these with the
    /// ones that do not change its trained parameters set to fixed values: the timing warm-up,
    /// the checkpoint interval, the snapshot schedule, the learning rates of the other
    /// families and, except for maximum likelihood, the Langevin sampler of its negatives.
    pub fn identity(&self, row: Objective) -> Self {
        let lr = self.lr_of(row);
        let mine = |family: bool| if family { lr } else { 0.0 };
        let mle = row == Objective::MleLangevin;
        Self {
            eval_points: 0,
            timing_warmup: 0,
            checkpoint_every: 0,
            lr_dsm: mine(!mle && row.denoising()),
            lr_ssm: mine(!mle && !row.denoising()),
            lr_mle: mine(mle),
            mle: if mle { self.mle } else { Self::paper().mle },
            ..self.clone()
        }
    }

    /// The learning rate `row` trains with: its family's.
    pub fn lr_of(&self, row: Objective) -> f64 {
        match row {
            Objective::MleLangevin => self.lr_mle,
            r if r.denoising() => self.lr_dsm,
            _ => self.lr_ssm,
        }
    }

    /// Checks the values training depends on.
    ///
    /// # Errors
    /// [`ExpError::Config`] naming the bad value.
    pub fn validate(&self) -> Result<()> {
        if self.iters == 0 || self.batch == 0 || self.eval_points == 0 || self.checkpoint_every == 0
        {
            return Err(ExpError::Config(
                "iters, batch, eval_points and checkpoint_every must be >= 1".into(),
            ));
        }
        self.mle.validate()?;
        crate::require_positive(&[
            ("lr_dsm", self.lr_dsm),
            ("lr_ssm", self.lr_ssm),
            ("lr_mle", self.lr_mle),
            ("eps", self.eps),
            ("sigma_min", self.sigma_min),
            ("sigma0", self.sigma0),
        ])?;
        if self.sigma_max < self.sigma_min {
            return Err(ExpError::Config(format!(
                "sigma_max {} < sigma_min {}",
                self.sigma_max, self.sigma_min
            )));
        }
        crate::require_resnet_memory(&self.model)
    }
}

/// Images as the model takes them: `u8` pixels (data sets too large to hold as `f32`, such as
/// ImageNet 32 x 32) divided by 255 into `f32`, any float tensor unchanged.
///
/// # Errors
/// Tensor errors only.
pub fn unit_interval(images: &Tensor) -> candle_core::Result<Tensor> {
    match images.dtype() {
        candle_core::DType::U8 => images.to_dtype(candle_core::DType::F32)? / 255.0,
        _ => Ok(images.clone()),
    }
}

/// The factor that brings our per-dimension objective to the reference code's scale, so that
/// its learning rates and gradient clipping apply unchanged: the reference sums MDSM and
/// FD-MDSM over dimensions and does not divide SSM / SSMVR by `C_v = D`, while its FD-SSM is
/// per dimension (`docs/objectives.md`).
/// Maximum likelihood has no reference scale (its loss is a difference of mean energies) and
/// keeps 1.
pub fn reference_scale(row: Objective, dim: usize) -> f64 {
    match row {
        Objective::FdSsm | Objective::FdSsmSeq | Objective::MleLangevin => 1.0,
        _ => dim as f64,
    }
}

/// The evaluation snapshots written so far, `(step, training seconds, file)`, and the replay
/// buffer of maximum likelihood's persistent chains; both travel in the checkpoint, so that a
/// resumed run lists the snapshots taken before the interruption and continues the same chains.
type DeepEbmState = ChainsAndRecord<Vec<(u64, f64, PathBuf)>>;

/// What a training child reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainReport {
    /// The row.
    pub row: Objective,
    /// The completed steps when `--stop-after` paused the row before `iters` (continue with
    /// `--resume`); `None` when it trained to the end.
    #[serde(default)]
    pub paused_at: Option<u64>,
    /// Per-step records of this run.
    pub records: Vec<StepRecord>,
    /// Median step time after warm-up, ms; `None` when no step was timed.
    pub median_step_ms: Option<f64>,
    /// RSS before the first training step (data set, model and optimiser state), bytes.
    pub base_rss_bytes: Option<u64>,
    /// Peak RSS over the training steps, bytes.
    pub step_peak_rss_bytes: Option<u64>,
    /// Evaluation snapshots: `(step, training seconds, file relative to the row directory)`, the
    /// untrained model first.
    pub snapshots: Vec<(u64, f64, PathBuf)>,
    /// Whether Candle's higher-order mode was on.
    pub higher_order: bool,
    /// Why training stopped early, when its loss diverged (the last good checkpoint is kept).
    #[serde(default)]
    pub diverged: Option<String>,
}
/// Trains the ResNet EBM of `cfg` on `images` (`[N, C, H, W]`, `f32` in `[0, 1]` or `u8`) by
/// `row`'s objective in the row's directory (checkpoint, snapshots) and writes `train.json`
/// there. `identity` is what a checkpoint must match to be resumed: at least
/// [`DeepEbmTraining::identity`] of the row, the objective and the data set.
///
/// # Errors
/// Data, configuration, divergence and I/O errors; higher-order mode off for a gradient-based
/// row.
pub fn train_deep_ebm(
    ctx: &RowContext,
    cfg: &DeepEbmTraining,
    row: Objective,
    images: &Tensor,
    identity: &impl Serialize,
) -> Result<TrainReport> {
    cfg.validate()?;
    if row.gradient_based() {
        ctx.higher_order()?;
    }
    let higher_order = sm_objectives::autodiff::higher_order_enabled();
    let dir = &ctx.dir;
    let device = ctx.run.device;
    let mut batcher = datasets::Batcher::new(images.dim(0)?, cfg.batch, cfg.seed)?;
    let (vm, net) = crate::setup::seeded_resnet_ebm(&cfg.model, cfg.seed, device)?;
    let dim = images.elem_count() / images.dim(0)?.max(1);
    let sigmas = Tensor::new(
        linear_sigmas(cfg.sigma_min, cfg.sigma_max, cfg.batch)?
            .iter()
            .map(|&s| s as f32)
            .collect::<Vec<_>>()
            .as_slice(),
        device,
    )?;
    let settings = ObjectiveSettings {
        sigma: cfg.sigma0,
        eps: cfg.eps,
        multiscale: Some(MultiscaleNoise {
            sigmas,
            sigma0: cfg.sigma0,
        }),
        mle: Some(cfg.mle),
    };
    let scale = reference_scale(row, dim);
    let lr = cfg.lr_of(row);
    let mut opts = ctx
        .train_options(
            cfg.iters,
            lr,
            cfg.checkpoint_every,
            row.label().to_string(),
            identity,
        )?
        .with_schedule(LrSchedule::Cosine)
        .with_adam(cfg.adam);
    opts.clip = cfg.clip;
    opts.explode_threshold = 1e12;
    let mut loss_at = |step: u64, st: &mut DeepEbmState| -> candle_core::Result<Tensor> {
        let x = unit_interval(
            &batcher
                .batch(images, step)
                .map_err(candle_core::Error::wrap)?,
        )?;
        let mut noise = NoiseSource::new(step_seed(cfg.seed, step));
        match &mut st.buffer {
            // Persistent chains: start from the buffer, write the end states back.
            Some(buffer) => {
                let wrap = candle_core::Error::wrap;
                let start = buffer
                    .draw(x.dim(0)?, x.dtype(), x.device(), &mut noise)
                    .map_err(wrap)?;
                let neg = cfg
                    .mle
                    .sampler
                    .run(&net, &start.x, &mut noise)
                    .map_err(wrap)?;
                buffer.store(&start.slots, &neg).map_err(wrap)?;
                mle_loss(&net, &x, &neg, cfg.mle.alpha).map_err(wrap)
            }
            None => row.loss(&net, &x, &mut noise, &settings)? * scale,
        }
    };
    let snapshot_steps = crate::eval_steps(cfg.iters, cfg.eval_points);
    let mut state = DeepEbmState {
        record: Vec::new(),
        buffer: match row {
            Objective::MleLangevin if cfg.mle.buffer > 0 => Some(ReplayBuffer::new(
                cfg.mle.buffer,
                &images.dims()[1..],
                cfg.mle.reinit,
                cfg.mle.init,
                cfg.seed ^ 0xbf,
            )?),
            _ => None,
        },
    };
    let warmup = cfg.timing_warmup as u64;
    // The memory column is the training steps' own working set: what decoding the data set
    // freed goes back to the kernel first, and the peak counts from the first step on (the
    // warm-up steps allocate the buffers that later steps reuse).
    crate::allocator::release_free_memory();
    let base_rss = memory::rss_bytes();
    memory::reset_peak();
    let mut seen: Vec<StepRecord> = Vec::new();
    let mut after = |r: &StepRecord, st: &mut DeepEbmState| -> Result<()> {
        seen.push(*r);
        if snapshot_steps.contains(&(r.step + 1)) {
            // Stored relative to the row directory, so that a moved results directory resumes.
            let file = PathBuf::from(format!("snapshot_{:08}.safetensors", r.step + 1));
            let path = dir.join(&file);
            vm.save(&path).map_err(|e| ExpError::Checkpoint {
                path: path.clone(),
                problem: format!("could not write this snapshot: {e}"),
            })?;
            st.record.push((r.step + 1, r.train_seconds, file));
        }
        Ok(())
    };
    // The untrained model is the loss curves' first point (time 0), shared by every row of a
    // seed. A resumed run restores the snapshot list from its checkpoint and rewrites this file
    // with the same seeded initial weights.
    let initial = PathBuf::from(format!("snapshot_{:08}.safetensors", 0));
    std::fs::create_dir_all(dir).map_err(|e| ExpError::Checkpoint {
        path: dir.clone(),
        problem: format!("could not create the row's directory: {e}"),
    })?;
    let path = dir.join(&initial);
    vm.save(&path).map_err(|e| ExpError::Checkpoint {
        path: path.clone(),
        problem: format!("could not write the initial snapshot: {e}"),
    })?;
    state.record.push((0, 0.0, initial));
    let summary = match train_with_state(&vm, &opts, &mut state, &mut loss_at, &mut after) {
        Ok(summary) => summary,
        Err(e) => {
            if matches!(e, ExpError::Train(train::TrainError::Diverged { .. })) {
                // The steps before the divergence, and why it stopped, for the record.
                let report = TrainReport {
                    row,
                    paused_at: None,
                    records: seen,
                    median_step_ms: None,
                    base_rss_bytes: base_rss,
                    step_peak_rss_bytes: memory::peak_rss_bytes(),
                    snapshots: state.record,
                    higher_order,
                    diverged: Some(e.to_string()),
                };
                write_json(&dir.join("train.json"), &report)?;
            }
            return Err(e);
        }
    };
    let snapshots = state.record;
    let step_peak = memory::peak_rss_bytes();
    if summary.records.is_empty() {
        // A finished row resumed: nothing was trained, so the original run's timings stand.
        if let Ok(previous) = read_json::<TrainReport>(&dir.join("train.json")) {
            return Ok(TrainReport {
                snapshots,
                ..previous
            });
        }
    }
    let mut times: Vec<f64> = summary
        .records
        .iter()
        .filter(|r| r.step >= warmup)
        .map(|r| r.seconds * 1e3)
        .collect();
    if times.is_empty() {
        times = summary.records.iter().map(|r| r.seconds * 1e3).collect();
    }
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied();
    let report = TrainReport {
        row,
        paused_at: (summary.completed < cfg.iters).then_some(summary.completed),
        records: summary.records,
        median_step_ms: median,
        base_rss_bytes: base_rss,
        step_peak_rss_bytes: step_peak,
        snapshots,
        higher_order,
        diverged: None,
    };
    write_json(&dir.join("train.json"), &report)?;
    Ok(report)
}
