//! Cost of one full score-matching training step (noise, loss, backward, Adam) for every
//! objective of FD-SM Table 2 plus a plain forward/backward reference, on the ResNet EBM
//! configured like the PyTorch peer benchmark (`torch_sm_bench.py`: 28 x 28 inputs, width 32,
//! Res18, batch 64, a fixed uniform batch, `sigma = eps = 0.1`), so both can be run side by side.
//!
//! Each objective runs in its own child process (`measure`): the median step after warm-up and
//! the peak resident memory over the timed steps are its own.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use candle_core::{DType, Tensor};
use models::{Activation, ResNetEbmConfig};
use serde::{Deserialize, Serialize};
use sm_objectives::autodiff::HIGHER_ORDER_ENV;
use sm_objectives::{
    dsm, fd_dsm, fd_ssm, ssm, ssmvr, BatchMode, Directions, NoiseSource, Reduction,
};

use crate::child::{run_limited, Limits};
use crate::error::{io_err, ExpError, Result};
use crate::optim::{Adam, AdamConfig};
use crate::report::{
    environment, markdown_table, read_json, write_atomic, write_json, Environment,
};
use crate::{memory, setup, step_seed};

/// A timed training step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Objective {
    /// `mean(E(x))`, forward and backward only: the cost floor of any step.
    #[serde(rename = "mle-cost")]
    MleCost,
    /// DSM (FD-SM Eq. 2) by autodiff.
    #[serde(rename = "dsm")]
    Dsm,
    /// SSM (Eq. 3), Gaussian projections.
    #[serde(rename = "ssm")]
    Ssm,
    /// SSMVR, Gaussian projections.
    #[serde(rename = "ssmvr")]
    Ssmvr,
    /// FD-DSM (Eq. 10), one concatenated forward pass.
    #[serde(rename = "fd-dsm")]
    FdDsm,
    /// FD-DSM with separate forward passes.
    #[serde(rename = "fd-dsm*")]
    FdDsmSeq,
    /// FD-SSM (Eq. 9), one concatenated forward pass.
    #[serde(rename = "fd-ssm")]
    FdSsm,
    /// FD-SSM with separate forward passes.
    #[serde(rename = "fd-ssm*")]
    FdSsmSeq,
}

impl Objective {
    /// All objectives, in the peer script's order.
    pub const ALL: [Objective; 8] = [
        Objective::MleCost,
        Objective::Dsm,
        Objective::Ssm,
        Objective::Ssmvr,
        Objective::FdDsm,
        Objective::FdDsmSeq,
        Objective::FdSsm,
        Objective::FdSsmSeq,
    ];

    /// The name shared with the peer script.
    pub fn key(self) -> &'static str {
        match self {
            Objective::MleCost => "mle-cost",
            Objective::Dsm => "dsm",
            Objective::Ssm => "ssm",
            Objective::Ssmvr => "ssmvr",
            Objective::FdDsm => "fd-dsm",
            Objective::FdDsmSeq => "fd-dsm*",
            Objective::FdSsm => "fd-ssm",
            Objective::FdSsmSeq => "fd-ssm*",
        }
    }

    /// Parses [`Objective::key`] (`-seq` is accepted for `*`).
    ///
    /// # Errors
    /// An unknown name (the message lists the valid ones).
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim().replace("-seq", "*");
        Self::ALL.into_iter().find(|o| o.key() == s).ok_or_else(|| {
            ExpError::Config(format!(
                "unknown objective `{s}`; expected one of mle-cost, dsm, ssm, ssmvr, fd-dsm, \
                 fd-dsm*, fd-ssm, fd-ssm*"
            ))
        })
    }

    /// Whether the step needs second derivatives (Candle's higher-order mode).
    pub fn gradient_based(self) -> bool {
        matches!(self, Objective::Dsm | Objective::Ssm | Objective::Ssmvr)
    }

    /// Forward passes per data point of a step that is forward passes plus one ordinary
    /// backward pass (`x`; `x~ +- v`; `x, x +- v`); `None` for the gradient-based objectives,
    /// whose nested backward passes have no such count.
    pub fn forward_passes(self) -> Option<u64> {
        match self {
            Objective::MleCost => Some(1),
            Objective::FdDsm | Objective::FdDsmSeq => Some(2),
            Objective::FdSsm | Objective::FdSsmSeq => Some(3),
            Objective::Dsm | Objective::Ssm | Objective::Ssmvr => None,
        }
    }
}

/// Floating-point operations of one step of `objective` in the network's convolutions and
/// head, in GFLOP: `forward_passes x batch` images, each a forward pass and a backward pass
/// to inputs and weights (twice the forward's work), two FLOPs per multiply-accumulate. The
/// count is the usual nominal one (zero-padding taps included) and the same for both
/// frameworks; `None` where [`Objective::forward_passes`] is.
pub fn step_gflop(cfg: &StepBenchConfig, objective: Objective) -> Option<f64> {
    let images = objective.forward_passes()? * cfg.batch as u64;
    Some(3.0 * 2.0 * (cfg.model.forward_macs_per_image() * images) as f64 / 1e9)
}

/// Side of the square matrices of [`matmul_peak_gflops`].
pub const PEAK_MATMUL_SIZE: usize = 2048;

/// The machine's f32 matrix-product rate as Candle reaches it on the CPU (the `gemm` crate,
/// all threads): the best of five `2048 x 2048` products after one warm-up, in GFLOP/s. A step
/// that computes its convolutions directly (as matrix products, all nominal multiplications)
/// cannot run faster than its [`step_gflop`] at this rate; fast algorithms do fewer
/// multiplications (Winograd's, which `safe_ops::conv2d` uses on most 3x3 layers, 2.25x fewer on
/// large maps), so for them the rate is a yardstick rather than a bound.
///
/// # Errors
/// Tensor errors.
pub fn matmul_peak_gflops() -> Result<f64> {
    let n = PEAK_MATMUL_SIZE;
    let dev = setup::device()?;
    let a = Tensor::ones((n, n), DType::F32, &dev)?;
    let b = (Tensor::ones((n, n), DType::F32, &dev)? * 0.5)?;
    a.matmul(&b)?;
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        let c = a.matmul(&b)?;
        best = best.min(t.elapsed().as_secs_f64());
        drop(c);
    }
    Ok(2.0 * (n * n * n) as f64 / best / 1e9)
}

/// Settings of the step benchmark; the defaults are the peer script's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepBenchConfig {
    /// The network (peer: 28 x 28 input, width 32, depth 18 = 3 blocks per stage, ELU).
    pub model: ResNetEbmConfig,
    /// Images per step.
    pub batch: usize,
    /// Untimed steps first.
    pub warmup: usize,
    /// Timed steps.
    pub steps: usize,
    /// DSM noise level.
    pub sigma: f64,
    /// Radius of the FD directions.
    pub eps: f64,
    /// Adam learning rate.
    pub lr: f64,
    /// Seed of the weights, the batch and the noise.
    pub seed: u64,
    /// Objectives to time.
    pub objectives: Vec<Objective>,
    /// Wall-clock limit per objective, seconds.
    pub time_limit_s: f64,
}

impl Default for StepBenchConfig {
    fn default() -> Self {
        Self {
            model: ResNetEbmConfig {
                image_size: 28,
                activation: Activation::Elu,
                ..ResNetEbmConfig::res18(32)
            },
            batch: 64,
            warmup: 3,
            steps: 20,
            sigma: 0.1,
            eps: 0.1,
            lr: 5e-5,
            seed: 0,
            objectives: Objective::ALL.to_vec(),
            time_limit_s: 900.0,
        }
    }
}

impl StepBenchConfig {
    /// Checks every field.
    ///
    /// # Errors
    /// [`ExpError::Config`] naming the bad field.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ExpError::Config(m));
        if self.batch == 0 || self.steps == 0 || self.model.width == 0 {
            return bad("batch, steps and width must be at least 1".into());
        }
        if self.model.image_size < 8 {
            return bad(format!(
                "image_size must be at least 8 (three 2x2 poolings), got {}",
                self.model.image_size
            ));
        }
        crate::require_positive(&[
            ("sigma", self.sigma),
            ("eps", self.eps),
            ("lr", self.lr),
            ("time_limit_s", self.time_limit_s),
        ])?;
        if self.objectives.is_empty() {
            return bad("no objective selected".into());
        }
        Ok(())
    }
}

/// One objective's measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    /// Objective.
    pub objective: Objective,
    /// Median wall time of a step, ms.
    pub median_ms: f64,
    /// Fastest step, ms.
    pub min_ms: f64,
    /// Trainable parameters.
    pub params: usize,
    /// RSS before the timed steps (after warm-up), bytes.
    pub base_rss_bytes: Option<u64>,
    /// Peak RSS over the timed steps, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Loss of the last step (a sanity value, not a result).
    pub last_loss: f64,
}

/// Times one objective in this process (the `measure` child).
///
/// # Errors
/// Configuration and tensor errors; higher-order mode off for a gradient-based objective.
pub fn measure(cfg: &StepBenchConfig, objective: Objective) -> Result<StepResult> {
    cfg.validate()?;
    if objective.gradient_based() {
        sm_objectives::autodiff::ensure_higher_order()?;
    }
    let (vm, net) = setup::seeded_resnet_ebm(&cfg.model, cfg.seed)?;
    let (_, vars) = crate::trainer::named_vars(&vm);
    let params: usize = vars.iter().map(|v| v.elem_count()).sum();
    let mut adam = Adam::new(vars, AdamConfig::default())?;
    let size = cfg.model.image_size;
    let shape = Tensor::zeros(
        (cfg.batch, cfg.model.in_channels, size, size),
        DType::F32,
        &setup::device()?,
    )?;
    let x = NoiseSource::new(cfg.seed ^ 0xba7c).uniform_like(&shape)?;
    let mut step = |i: u64| -> Result<(f64, f64)> {
        let t = Instant::now();
        let mut noise = NoiseSource::new(step_seed(cfg.seed, i));
        let sphere = Directions::Sphere { radius: cfg.eps };
        let loss = match objective {
            Objective::MleCost => net.energy(&x)?.mean_all()?,
            Objective::Dsm => dsm(
                &net,
                &x,
                &noise.gaussian_like(&x)?,
                cfg.sigma,
                Reduction::Mean,
            )?,
            Objective::Ssm => ssm(
                &net,
                &x,
                &noise.projection(&x, Directions::Gaussian)?,
                Reduction::Mean,
            )?,
            Objective::Ssmvr => ssmvr(
                &net,
                &x,
                &noise.projection(&x, Directions::Gaussian)?,
                Reduction::Mean,
            )?,
            Objective::FdDsm | Objective::FdDsmSeq => {
                let z = noise.gaussian_like(&x)?;
                let proj = noise.projection(&x, sphere)?;
                let mode = if objective == Objective::FdDsm {
                    BatchMode::Concatenated
                } else {
                    BatchMode::PerOffset
                };
                fd_dsm(&net, &x, &z, cfg.sigma, &proj, mode, Reduction::Mean)?
            }
            Objective::FdSsm | Objective::FdSsmSeq => {
                let proj = noise.projection(&x, sphere)?;
                let mode = if objective == Objective::FdSsm {
                    BatchMode::Concatenated
                } else {
                    BatchMode::PerOffset
                };
                fd_ssm(&net, &x, &proj, mode, Reduction::Mean)?
            }
        };
        let grads = loss.backward()?;
        adam.step_with_lr(&grads, cfg.lr)?;
        let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        Ok((t.elapsed().as_secs_f64() * 1e3, value))
    };
    for i in 0..cfg.warmup {
        step(i as u64)?;
    }
    let base = memory::rss_bytes();
    memory::reset_peak();
    let mut times = Vec::with_capacity(cfg.steps);
    let mut last = f64::NAN;
    for i in 0..cfg.steps {
        let (ms, loss) = step((cfg.warmup + i) as u64)?;
        if !loss.is_finite() {
            return Err(ExpError::Config(format!(
                "{} produced a non-finite loss at step {i}",
                objective.key()
            )));
        }
        times.push(ms);
        last = loss;
    }
    let peak = memory::peak_rss_bytes();
    times.sort_by(f64::total_cmp);
    Ok(StepResult {
        objective,
        median_ms: times[times.len() / 2],
        min_ms: times[0],
        params,
        base_rss_bytes: base,
        peak_rss_bytes: peak,
        last_loss: last,
    })
}

/// One objective of the peer's JSON file (`--json` of `torch_sm_bench.py`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerResult {
    /// Objective name.
    pub objective: String,
    /// Median step, ms.
    pub median_ms: f64,
    /// Peak RSS over the timed steps, MB.
    #[serde(default)]
    pub step_peak_rss_mb: Option<f64>,
}

/// The peer's JSON file: its arguments and per-objective results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerFile {
    /// The peer's command-line arguments.
    pub args: serde_json::Value,
    /// Per objective.
    pub results: Vec<PeerResult>,
}

/// Everything `results.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepBenchResults {
    /// Settings.
    pub config: StepBenchConfig,
    /// Versions and machine.
    pub environment: Environment,
    /// Measured objectives.
    pub results: Vec<StepResult>,
    /// Objectives that failed or passed the time limit, and why.
    pub failed: Vec<(Objective, String)>,
    /// The PyTorch peer's results, when given.
    pub peer: Option<PeerFile>,
    /// [`matmul_peak_gflops`] of this machine, measured after the objectives.
    #[serde(default)]
    pub matmul_gflops: Option<f64>,
}

/// Where `run` writes and how it starts its children.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Output directory.
    pub out: PathBuf,
    /// The executable with the `measure` subcommand.
    pub exe: PathBuf,
    /// The peer's JSON file to put beside ours.
    pub peer: Option<PathBuf>,
}

/// Times every selected objective in its own child process and writes `results.json`,
/// `steps.md` and `config.json` into `opts.out`.
///
/// # Errors
/// Configuration and I/O errors, an unreadable peer file, a child that cannot be started.
pub fn run(cfg: &StepBenchConfig, opts: &RunOptions) -> Result<StepBenchResults> {
    cfg.validate()?;
    let peer = match &opts.peer {
        Some(p) => Some(read_json::<PeerFile>(p)?),
        None => None,
    };
    std::fs::create_dir_all(&opts.out).map_err(io_err(&opts.out))?;
    let cfg_path = opts.out.join("config.json");
    write_json(&cfg_path, cfg)?;
    let limits = Limits {
        memory_bytes: memory::available_bytes().map_or(16_000_000_000, |a| a * 9 / 10),
        time: Duration::from_secs_f64(cfg.time_limit_s),
    };
    let (mut results, mut failed) = (Vec::new(), Vec::new());
    for &objective in &cfg.objectives {
        eprintln!("== {}", objective.key());
        let file = opts
            .out
            .join(format!("{}.json", objective.key().replace('*', "-seq")));
        let _ = std::fs::remove_file(&file);
        let mut cmd = Command::new(&opts.exe);
        cmd.args(["measure", "--objective", objective.key(), "--config"])
            .arg(&cfg_path)
            .arg("--out")
            .arg(&file);
        if objective.gradient_based() {
            cmd.env(HIGHER_ORDER_ENV, "1");
        } else {
            cmd.env_remove(HIGHER_ORDER_ENV);
        }
        match run_limited(&mut cmd, limits)?.failure(limits) {
            None => results.push(read_json::<StepResult>(&file)?),
            Some(why) => {
                eprintln!("{} not measured: {why}", objective.key());
                failed.push((objective, why));
            }
        }
    }
    eprintln!("== f32 matmul peak ({PEAK_MATMUL_SIZE}^3)");
    let matmul_gflops = Some(matmul_peak_gflops()?);
    let r = StepBenchResults {
        config: cfg.clone(),
        environment: environment(),
        results,
        failed,
        peer,
        matmul_gflops,
    };
    write_json(&opts.out.join("results.json"), &r)?;
    write_atomic(&opts.out.join("steps.md"), &markdown(&r))?;
    Ok(r)
}

fn mb(b: Option<u64>) -> String {
    b.map_or("n/a".into(), |b| format!("{:.0}", b as f64 / 1e6))
}

/// The Markdown report: ours (and the peer's) ms per step and memory, and the ratios the paper
/// and the performance targets are stated in.
pub fn markdown(r: &StepBenchResults) -> String {
    let c = &r.config;
    let params = r.results.first().map_or(0, |s| s.params);
    let mut md = format!(
        "# Training-step cost\n\nResNet EBM {}x{} input, width {}, blocks {:?}, {:?}, {} \
         parameters; batch {}, a fixed uniform batch; sigma {}, eps {}; Adam; `{}` convolution \
         kernels. Median of {} steps after {} warm-up steps, each objective in its own process; memory is the peak resident \
         memory over the timed steps. Machine: {} ({} cores), candle {}.\n\n",
        c.model.image_size,
        c.model.image_size,
        c.model.width,
        c.model.blocks_per_stage,
        c.model.activation,
        params,
        c.batch,
        c.sigma,
        c.eps,
        c.model.conv_algorithm.name(),
        c.steps,
        c.warmup,
        r.environment.cpu,
        r.environment.cores,
        r.environment.candle_version,
    );
    let peer = |o: Objective| -> Option<&PeerResult> {
        r.peer
            .as_ref()?
            .results
            .iter()
            .find(|p| p.objective == o.key())
    };
    let ours = |o: Objective| r.results.iter().find(|s| s.objective == o);
    let rows: Vec<Vec<String>> = r
        .results
        .iter()
        .map(|s| {
            let p = peer(s.objective);
            vec![
                s.objective.key().to_string(),
                format!("{:.1}", s.median_ms),
                mb(s.peak_rss_bytes),
                p.map_or("—".into(), |p| format!("{:.1}", p.median_ms)),
                p.and_then(|p| p.step_peak_rss_mb)
                    .map_or("—".into(), |m| format!("{m:.0}")),
                p.map_or("—".into(), |p| {
                    format!("{:.2}x", s.median_ms / p.median_ms)
                }),
            ]
        })
        .collect();
    md += &markdown_table(
        &[
            "objective",
            "ours, ms",
            "ours, peak MB",
            "PyTorch, ms",
            "PyTorch, peak MB",
            "ours / PyTorch",
        ],
        &rows,
    );
    let ms = |o: Objective| ours(o).map(|s| s.median_ms);
    let pms = |o: Objective| peer(o).map(|p| p.median_ms);
    // The fastest a direct-convolution step could be here: its FLOPs at the matrix-product peak.
    let floor_ms = |o: Objective| Some(step_gflop(c, o)? / r.matmul_gflops? * 1e3);
    let mut ratios = Vec::new();
    let mut ratio =
        |name: &str, a: Option<f64>, b: Option<f64>, bound: Option<f64>, target: &str| {
            if let (Some(a), Some(b)) = (a, b) {
                ratios.push(vec![
                    name.to_string(),
                    format!("{:.2}x", a / b),
                    bound.map_or("—".into(), |f| format!("{:.2}x", a / f)),
                    target.to_string(),
                ]);
            }
        };
    ratio(
        "SSM / FD-SSM (ours)",
        ms(Objective::Ssm),
        ms(Objective::FdSsm),
        None,
        "paper 2.93x",
    );
    ratio(
        "DSM / FD-DSM (ours)",
        ms(Objective::Dsm),
        ms(Objective::FdDsm),
        None,
        "paper 1.74x",
    );
    ratio(
        "PyTorch FD-SSM / our FD-SSM",
        pms(Objective::FdSsm),
        ms(Objective::FdSsm),
        floor_ms(Objective::FdSsm),
        ">= 1",
    );
    ratio(
        "PyTorch SSM / our FD-SSM",
        pms(Objective::Ssm),
        ms(Objective::FdSsm),
        floor_ms(Objective::FdSsm),
        ">= 2.9",
    );
    ratio(
        "PyTorch DSM / our FD-DSM",
        pms(Objective::Dsm),
        ms(Objective::FdDsm),
        floor_ms(Objective::FdDsm),
        ">= 1.7",
    );
    let mem = |o: Objective| ours(o).and_then(|s| s.peak_rss_bytes).map(|b| b as f64);
    ratio(
        "SSM / FD-SSM peak memory (ours)",
        mem(Objective::Ssm),
        mem(Objective::FdSsm),
        None,
        ">= 4",
    );
    md += &format!(
        "\n## Ratios\n\n\"At the peak\": the ratio if our step ran all its nominal FLOPs at the \
         f32 matrix-product peak (see below), the most a direct convolution could reach here; \
         Winograd's algorithm (ours, on the 3x3 layers of 16 or more channels and maps of 6 x 6 \
         or more) needs fewer multiplications and can pass it.\n\n{}",
        markdown_table(&["ratio", "value", "at the peak", "target"], &ratios)
    );
    if let Some(peak) = r.matmul_gflops {
        let rows: Vec<Vec<String>> = r
            .results
            .iter()
            .filter_map(|s| {
                let gflop = step_gflop(c, s.objective)?;
                let rate = |t: f64| format!("{:.0}", gflop / t * 1e3);
                Some(vec![
                    s.objective.key().to_string(),
                    format!("{gflop:.1}"),
                    rate(s.median_ms),
                    peer(s.objective).map_or("—".into(), |p| rate(p.median_ms)),
                    format!("{:.0}", gflop / peak * 1e3),
                ])
            })
            .collect();
        md += &format!(
            "\n## Compute\n\nf32 matrix-product peak of this machine: {peak:.0} GFLOP/s \
             (Candle, {n} x {n}, all threads). FLOPs per step: the network's convolutions and head, \
             forward and backward, nominal count (zero-padding taps included, direct convolution), \
             the same for both frameworks, so the rates compare times; an implementation that \
             multiplies less (Winograd) can exceed the peak in these units. The gradient-based \
             objectives have no such count.\n\n{}",
            markdown_table(
                &[
                    "objective",
                    "GFLOP per step",
                    "ours, GFLOP/s",
                    "PyTorch, GFLOP/s",
                    "at the peak, ms",
                ],
                &rows,
            ),
            n = PEAK_MATMUL_SIZE,
        );
    }
    if !r.failed.is_empty() {
        md += "\nNot measured:\n\n";
        for (o, why) in &r.failed {
            md += &format!("- {}: {why}\n", o.key());
        }
    }
    md
}
