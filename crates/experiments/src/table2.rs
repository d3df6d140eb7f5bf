//! Table 2 of FD-SM (Sec. 6.1, App. C.2): the deep-EBM ResNet trained on MNIST by DSM, FD-DSM*,
//! FD-DSM, SSM, SSMVR, FD-SSM*, FD-SSM, with the test SM loss, the time per iteration and the
//! memory of each row side by side with the paper's numbers.
//!
//! Each row trains in its own child process (`train-row`) so its peak memory is its own, with
//! Candle's higher-order mode on only for the gradient-based rows; a second child (`eval-row`)
//! computes the test SM loss of the snapshots taken along training (the loss-against-wall-time
//! curves of Fig. 4) and draws samples by annealed Langevin dynamics. `run` orchestrates them
//! and writes the report.

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{DType, Tensor};
use models::ResNetEbmConfig;
use serde::{Deserialize, Serialize};
use sm_objectives::autodiff::HIGHER_ORDER_ENV;
use sm_objectives::noise::linear_sigmas;
use sm_objectives::{
    fd_mdsm, fd_ssm, mdsm, ssm, ssmvr, BatchMode, Directions, NoiseSource, Reduction,
};

use crate::error::{io_err, ExpError, Result};
use crate::eval::{test_sm, SmEstimate, SmValue};
use crate::langevin::{annealed_langevin, LangevinSchedule};
use crate::optim::{AdamConfig, LrSchedule};
use crate::plot::{save_image_grid, save_line_plot, Axes, Panel, Series};
use crate::report::{
    environment, markdown_table, read_json, write_atomic, write_json, Environment,
};
use crate::trainer::{train_with_state, StepRecord, TrainOptions, TrainState};
use crate::{memory, step_seed, RunControl};

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
    /// images, a 300-step sampler. The whole table takes about 15 minutes on 2 cores.
    pub fn quick() -> Self {
        Self {
            profile: "quick".into(),
            model: ResNetEbmConfig::res18(4),
            iters: 150,
            batch: 16,
            lr_dsm: 1e-3,
            lr_ssm: 5e-4,
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

/// The evaluation snapshots written so far, `(step, training seconds, file)`; travels in the
/// checkpoint so that a resumed run still lists the snapshots taken before the interruption.
#[derive(Debug, Default)]
struct Snapshots(Vec<(u64, f64, PathBuf)>);

impl TrainState for Snapshots {
    fn tensors(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(Vec::new())
    }

    fn json(&self) -> Result<serde_json::Value> {
        serde_json::to_value(&self.0).map_err(|e| ExpError::Config(format!("snapshot list: {e}")))
    }

    fn restore(
        &mut self,
        _: &std::collections::HashMap<String, Tensor>,
        json: &serde_json::Value,
    ) -> Result<()> {
        self.0 = serde_json::from_value(json.clone())
            .map_err(|e| ExpError::Config(format!("snapshot list: {e}")))?;
        Ok(())
    }
}

/// What a training child reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainReport {
    /// The row.
    pub row: Row,
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
    /// Evaluation snapshots: `(step, training seconds, file)`.
    pub snapshots: Vec<(u64, f64, PathBuf)>,
    /// Whether Candle's higher-order mode was on.
    pub higher_order: bool,
}

/// What an evaluation child reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalReport {
    /// The row.
    pub row: Row,
    /// `(step, training seconds, test SM)` per snapshot.
    pub curve: Vec<(u64, f64, SmValue)>,
    /// The final model's test SM loss.
    pub final_sm: SmValue,
    /// The PNG grid of samples.
    pub samples_png: PathBuf,
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

/// Trains one row (the `train-row` child) and writes `train.json`.
///
/// # Errors
/// Data, configuration, divergence and I/O errors.
pub fn train_row(
    cfg: &Table2Config,
    row: Row,
    data_dir: &Path,
    out: &Path,
    control: RunControl,
) -> Result<TrainReport> {
    cfg.validate()?;
    let dir = row_dir(out, row);
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let higher_order = sm_objectives::autodiff::higher_order_enabled();
    if row.gradient_based() && !higher_order {
        return Err(ExpError::Config(format!(
            "{} needs {HIGHER_ORDER_ENV}=1 (the run command sets it for this row)",
            row.label()
        )));
    }
    let images = crate::setup::mnist32(data_dir, true)?;
    let mut batcher = datasets::Batcher::new(images.dim(0)?, cfg.batch, cfg.seed)?;
    let (vm, net) = crate::setup::seeded_resnet_ebm(&cfg.model, cfg.seed)?;
    let dim = 32 * 32;
    let sigmas = Tensor::new(
        linear_sigmas(cfg.sigma_min, cfg.sigma_max, cfg.batch)?
            .iter()
            .map(|&s| s as f32)
            .collect::<Vec<_>>()
            .as_slice(),
        images.device(),
    )?;
    let scale = row.reference_scale(dim);
    let opts = TrainOptions {
        iters: cfg.iters,
        lr: if row.dsm_family() {
            cfg.lr_dsm
        } else {
            cfg.lr_ssm
        },
        schedule: LrSchedule::Cosine,
        adam: cfg.adam,
        clip: cfg.clip,
        checkpoint: dir.join("checkpoint.safetensors"),
        checkpoint_every: cfg.checkpoint_every,
        resume: control.resume,
        stop_after: control.stop_after,
        explode_threshold: 1e12,
        progress: control.progress,
        label: row.label().to_string(),
        config_json: serde_json::to_string(&(cfg, row)).expect("config serialises"),
    };
    let mut loss_at = |step: u64| -> candle_core::Result<Tensor> {
        let x = batcher
            .batch(&images, step)
            .map_err(candle_core::Error::wrap)?;
        let mut noise = NoiseSource::new(step_seed(cfg.seed, step));
        let loss = match row {
            Row::Dsm | Row::FdDsm | Row::FdDsmSeq => {
                let z = noise.gaussian_like(&x)?;
                match row {
                    Row::Dsm => mdsm(&net, &x, &z, &sigmas, cfg.sigma0, Reduction::Mean)?,
                    _ => {
                        let proj = noise.projection(&x, Directions::Sphere { radius: cfg.eps })?;
                        let mode = if row == Row::FdDsm {
                            BatchMode::Concatenated
                        } else {
                            BatchMode::PerOffset
                        };
                        fd_mdsm(
                            &net,
                            &x,
                            &z,
                            &sigmas,
                            cfg.sigma0,
                            &proj,
                            mode,
                            Reduction::Mean,
                        )?
                    }
                }
            }
            Row::Ssm => ssm(
                &net,
                &x,
                &noise.projection(&x, Directions::Gaussian)?,
                Reduction::Mean,
            )?,
            Row::Ssmvr => ssmvr(
                &net,
                &x,
                &noise.projection(&x, Directions::Gaussian)?,
                Reduction::Mean,
            )?,
            Row::FdSsm | Row::FdSsmSeq => {
                let proj = noise.projection(&x, Directions::Sphere { radius: cfg.eps })?;
                let mode = if row == Row::FdSsm {
                    BatchMode::Concatenated
                } else {
                    BatchMode::PerOffset
                };
                fd_ssm(&net, &x, &proj, mode, Reduction::Mean)?
            }
        };
        loss * scale
    };
    let snapshot_steps = crate::eval_steps(cfg.iters, cfg.eval_points);
    let mut snapshots = Snapshots::default();
    let warmup = cfg.timing_warmup as u64;
    // The memory column is the training steps' own working set: what decoding the data set
    // freed goes back to the kernel first, and the peak counts from the first step on (the
    // warm-up steps allocate the buffers that later steps reuse).
    crate::allocator::release_free_memory();
    let base_rss = memory::rss_bytes();
    memory::reset_peak();
    let mut after = |r: &StepRecord, taken: &mut Snapshots| -> Result<()> {
        if snapshot_steps.contains(&(r.step + 1)) {
            let path = dir.join(format!("snapshot_{:08}.safetensors", r.step + 1));
            vm.save(&path)?;
            taken.0.push((r.step + 1, r.train_seconds, path));
        }
        Ok(())
    };
    let summary = train_with_state(
        &vm,
        &opts,
        &mut snapshots,
        &mut |step, _| loss_at(step),
        &mut after,
    )?;
    let snapshots = snapshots.0;
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
    };
    write_json(&dir.join("train.json"), &report)?;
    Ok(report)
}

/// Evaluates one row's snapshots and draws samples (the `eval-row` child); needs higher-order
/// mode for the test SM loss.
///
/// # Errors
/// Data, checkpoint and I/O errors; higher-order mode off.
pub fn eval_row(cfg: &Table2Config, row: Row, data_dir: &Path, out: &Path) -> Result<EvalReport> {
    sm_objectives::autodiff::ensure_higher_order()?;
    let dir = row_dir(out, row);
    let train: TrainReport = read_json(&dir.join("train.json"))?;
    let test = crate::setup::mnist32(data_dir, false)?;
    let picked = datasets::Batcher::new(test.dim(0)?, cfg.eval_images, cfg.seed ^ 0x7e57)?
        .batch(&test, 0)?;
    let (vm, net) = crate::setup::seeded_resnet_ebm(&cfg.model, cfg.seed)?;
    let mut vm = vm;
    let mut curve = Vec::new();
    for (step, seconds, path) in &train.snapshots {
        vm.load(path)?;
        let mut noise = NoiseSource::new(cfg.seed ^ 0xe7a1);
        let value = test_sm(&net, &picked, cfg.eval_batch, cfg.estimate, &mut noise)?;
        curve.push((*step, *seconds, value));
    }
    let final_sm = curve.last().map(|c| c.2).ok_or_else(|| {
        ExpError::Config("no snapshot to evaluate (eval_points must be >= 1)".into())
    })?;
    let mut noise = NoiseSource::new(cfg.seed ^ 0x5a3);
    let x0 = (noise.gaussian(
        (cfg.samples, 1, 32, 32),
        DType::F32,
        &crate::setup::device()?,
    )? + 0.5)?;
    let samples = annealed_langevin(&net, &x0, &cfg.langevin, &mut noise)?;
    let samples_png = out.join(format!("samples_{}.png", row.key()));
    let cols = (cfg.samples as f64).sqrt().ceil() as usize;
    save_image_grid(&samples, cols, &samples_png)?;
    let report = EvalReport {
        row,
        curve,
        final_sm,
        samples_png,
    };
    write_json(&dir.join("eval.json"), &report)?;
    Ok(report)
}

/// Options of [`run`] beyond the configuration.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The output directory (`results/table2`).
    pub out: PathBuf,
    /// Resuming, pausing (`stop_after`) and progress bars of the training children.
    pub control: RunControl,
    /// The executable to run children with (this binary).
    pub exe: PathBuf,
}

/// What [`run`] did.
#[derive(Debug, Clone)]
pub enum Table2Run {
    /// Every row trained and was evaluated; the outputs are written.
    Finished(Box<Table2Results>),
    /// `stop_after` paused these rows (with their completed steps) before the end: they were
    /// checkpointed and not evaluated, and no table was written; run again with `resume`.
    Paused(Vec<(Row, u64)>),
}

/// Runs every selected row in child processes and writes `results.json`, `table2.md`,
/// `config.json`, `samples_<row>.png` and the loss-curve plots into `out`; with
/// `opts.control.stop_after`, trains every row up to that step, checkpoints it and stops.
///
/// # Errors
/// A child's failure (with its exit status), configuration and I/O errors.
pub fn run(cfg: &Table2Config, opts: &RunOptions) -> Result<Table2Run> {
    cfg.validate()?;
    std::fs::create_dir_all(&opts.out).map_err(io_err(&opts.out))?;
    let cfg_path = opts.out.join("config.json");
    write_json(&cfg_path, cfg)?;
    let mut rows = Vec::new();
    let mut paused = Vec::new();
    for &row in &cfg.rows {
        eprintln!("== {} ({} iterations)", row.label(), cfg.iters);
        let mut args = vec!["train-row".to_string()];
        args.extend(child_args(&cfg_path, row, opts));
        if opts.control.resume {
            args.push("--resume".into());
        }
        if let Some(n) = opts.control.stop_after {
            args.extend(["--stop-after".into(), n.to_string()]);
        }
        child(&opts.exe, &args, row.gradient_based())?;
        let dir = row_dir(&opts.out, row);
        let train = read_json::<TrainReport>(&dir.join("train.json"))?;
        if let Some(done) = train.paused_at {
            eprintln!("   paused after {done} of {} steps", cfg.iters);
            paused.push((row, done));
            continue;
        }
        let mut args = vec!["eval-row".to_string()];
        args.extend(child_args(&cfg_path, row, opts));
        child(&opts.exe, &args, true)?;
        rows.push((train, read_json::<EvalReport>(&dir.join("eval.json"))?));
    }
    if !paused.is_empty() {
        return Ok(Table2Run::Paused(paused));
    }
    let speed = |slow: Row, fast: Row| -> Option<f64> {
        let t = |r: Row| {
            rows.iter()
                .find(|(t, _)| t.row == r)
                .and_then(|(t, _)| t.median_step_ms)
        };
        Some(t(slow)? / t(fast)?)
    };
    let speedups = vec![
        (
            "FD-SSM vs SSM".to_string(),
            speed(Row::Ssm, Row::FdSsm),
            Row::Ssm.paper().time_ms / Row::FdSsm.paper().time_ms,
        ),
        (
            "FD-DSM vs DSM".to_string(),
            speed(Row::Dsm, Row::FdDsm),
            Row::Dsm.paper().time_ms / Row::FdDsm.paper().time_ms,
        ),
        (
            "FD-SSM* vs SSM".to_string(),
            speed(Row::Ssm, Row::FdSsmSeq),
            Row::Ssm.paper().time_ms / Row::FdSsmSeq.paper().time_ms,
        ),
        (
            "FD-DSM* vs DSM".to_string(),
            speed(Row::Dsm, Row::FdDsmSeq),
            Row::Dsm.paper().time_ms / Row::FdDsmSeq.paper().time_ms,
        ),
    ];
    let results = Table2Results {
        config: cfg.clone(),
        environment: environment(),
        rows,
        speedups,
    };
    write_json(&opts.out.join("results.json"), &results)?;
    write_atomic(&opts.out.join("table2.md"), &markdown(&results))?;
    for (family, file) in [
        (true, "loss_curves_dsm.png"),
        (false, "loss_curves_ssm.png"),
    ] {
        let series: Vec<Series> = results
            .rows
            .iter()
            .filter(|(t, _)| t.row.dsm_family() == family)
            .map(|(t, e)| Series {
                name: t.row.label().into(),
                points: e.curve.iter().map(|(_, s, v)| (*s, v.mean)).collect(),
            })
            .collect();
        if !series.is_empty() {
            let title = if family {
                "Test SM loss against training time (DSM family)"
            } else {
                "Test SM loss against training time (SSM family)"
            };
            save_line_plot(
                &Panel {
                    title: title.into(),
                    x_label: "training wall time (s)".into(),
                    y_label: "test SM loss".into(),
                    axes: Axes::Linear,
                    series,
                },
                &opts.out.join(file),
            )?;
        }
    }
    Ok(Table2Run::Finished(Box::new(results)))
}

fn child_args(cfg_path: &Path, row: Row, opts: &RunOptions) -> Vec<String> {
    let mut a = vec![
        "--config".into(),
        cfg_path.display().to_string(),
        "--row".into(),
        row.key().into(),
        "--data-dir".into(),
        opts.data_dir.display().to_string(),
        "--out".into(),
        opts.out.display().to_string(),
    ];
    if !opts.control.progress {
        a.push("--no-progress".into());
    }
    a
}

fn child(exe: &Path, args: &[String], higher_order: bool) -> Result<()> {
    let mut cmd = Command::new(exe);
    cmd.args(args);
    if higher_order {
        cmd.env(HIGHER_ORDER_ENV, "1");
    } else {
        cmd.env_remove(HIGHER_ORDER_ENV);
    }
    let status = cmd
        .status()
        .map_err(|e| ExpError::Child(format!("could not start {}: {e}", exe.display())))?;
    if !status.success() {
        return Err(ExpError::Child(format!(
            "`{} {}` failed with {status}",
            exe.display(),
            args.join(" ")
        )));
    }
    Ok(())
}

/// Peak RSS of the training steps and its increase over the RSS before the first one (model,
/// data and optimiser state are resident already), e.g. `0.31 GB (+42 MB)`.
fn fmt_memory(peak: Option<u64>, base: Option<u64>) -> String {
    match (peak, base) {
        (Some(p), Some(b)) => format!(
            "{:.2} GB (+{:.0} MB)",
            p as f64 / 1e9,
            p.saturating_sub(b) as f64 / 1e6
        ),
        (Some(p), None) => format!("{:.2} GB", p as f64 / 1e9),
        _ => "n/a".into(),
    }
}

/// The Markdown report: our rows next to the paper's, and the speed-up ratios.
pub fn markdown(r: &Table2Results) -> String {
    let c = &r.config;
    let estimate = match c.estimate {
        SmEstimate::Exact => format!("exact SM on {} random test images", c.eval_images),
        SmEstimate::Hutchinson { projections } => {
            format!("Hutchinson estimate of SM ({projections} Rademacher projections per image, {} random test images), mean ± standard error", c.eval_images)
        }
    };
    let rows: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|(t, e)| {
            let p = t.row.paper();
            vec![
                t.row.label().to_string(),
                format!("{:.4e} ± {:.1e}", e.final_sm.mean, e.final_sm.std_err),
                t.median_step_ms
                    .map_or("—".into(), |ms| format!("{ms:.1} ms")),
                fmt_memory(t.step_peak_rss_bytes, t.base_rss_bytes),
                format!("{:.2e}", p.sm_loss),
                format!("{} ms", p.time_ms),
                format!("{} G", p.mem_gb),
            ]
        })
        .collect();
    let speed: Vec<Vec<String>> = r
        .speedups
        .iter()
        .map(|(name, ours, paper)| {
            vec![
                name.clone(),
                ours.map_or("n/a".into(), |o| format!("{o:.2}x")),
                format!("{paper:.2}x"),
            ]
        })
        .collect();
    let env = &r.environment;
    format!(
        "# Table 2: deep EBMs on MNIST ({} profile)\n\n\
         ResNet EBM width {} blocks {:?}, {} iterations, batch {}, lr {} (DSM family) / {} (SSM family), eps {}, \
         sigma {}..{}, sigma_0 {}. Ours: {} on a CPU ({}, {} cores), time per iteration is the median step after {} warm-up steps, \
         memory is the peak resident memory of the training steps in the row's own process (in brackets: the increase over the resident memory before the first step, which holds the data set, model and optimiser state). Paper: 300K iterations, batch 64, GPU.\n\n\
         SM loss: {estimate}.\n\n{}\n## Speed-ups\n\n{}\n\
         Samples: `samples_<row>.png`; loss curves: `loss_curves_dsm.png`, `loss_curves_ssm.png`; every number: `results.json`.\n",
        c.profile,
        c.model.width,
        c.model.blocks_per_stage,
        c.iters,
        c.batch,
        c.lr_dsm,
        c.lr_ssm,
        c.eps,
        c.sigma_min,
        c.sigma_max,
        c.sigma0,
        if env.release_build { "release build" } else { "debug build" },
        env.cpu,
        env.cores,
        c.timing_warmup,
        markdown_table(&["Algorithm", "SM loss (ours)", "Time (ours)", "Mem. (ours)", "SM loss (paper)", "Time (paper)", "Mem. (paper)"], &rows),
        markdown_table(&["Ratio", "Ours", "Paper"], &speed),
    )
}
