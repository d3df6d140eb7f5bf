//! Cost of one full score-matching training step (noise, loss, backward, Adam) for every
//! objective of FD-SM Table 2 plus a plain forward/backward reference, on the ResNet EBM
//! configured like the PyTorch peer benchmark (`torch_sm_bench.py`: 28 x 28 inputs, width 32,
//! Res18, batch 64, a fixed uniform batch, `sigma = eps = 0.1`), so both can be run side by side.
//!
//! Each objective runs its `measure` phase in its own child process under memory and time
//! limits: the median step after warm-up and the peak resident memory over the timed steps are
//! its own, and an objective that passes a limit is reported as not measured.

mod measure;
mod report;

pub use measure::{matmul_peak_gflops, measure, step_gflop, StepResult, PEAK_MATMUL_SIZE};
pub use report::{markdown, PeerFile, PeerResult, StepBenchResults};

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use models::{Activation, MlpConfig, NiceConfig, ResNetEbmConfig};
use serde::{Deserialize, Serialize};

use crate::error::{ExpError, Result};
use crate::memory;
use crate::objective::Objective;
use crate::report::write_json;
use crate::runner::limits::Limits;
use crate::runner::{Context, Experiment, Kind, Phase, PhaseOutcome, RowContext, RowStatus};
use crate::setup::ConvKernels;

/// The objectives of the peer script, in its order.
pub const PEER_OBJECTIVES: [Objective; 8] = [
    Objective::MleCost,
    Objective::Dsm,
    Objective::Ssm,
    Objective::Ssmvr,
    Objective::FdDsm,
    Objective::FdDsmSeq,
    Objective::FdSsm,
    Objective::FdSsmSeq,
];

/// The network of the step benchmark (the peer script's `--net`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum BenchNet {
    /// The deep-EBM ResNet ([`StepBenchConfig::model`]).
    #[default]
    Resnet,
    /// A dense energy network ([`StepBenchConfig::mlp`], the peer's 784-512-512-1 softplus).
    Mlp,
    /// The NICE flow of Table 3 ([`StepBenchConfig::nice`]) on flattened 28 x 28 inputs.
    Nice,
}

/// Settings of the step benchmark; the defaults are the peer script's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepBenchConfig {
    /// Which network is timed.
    #[serde(default)]
    pub net: BenchNet,
    /// The ResNet (peer: 28 x 28 input, width 32, depth 18 = 3 blocks per stage, ELU).
    pub model: ResNetEbmConfig,
    /// The MLP (peer: 784-512-512-1, softplus), on flattened 28 x 28 inputs.
    #[serde(default = "MlpConfig::peer")]
    pub mlp: MlpConfig,
    /// The NICE flow (Table 3's: four couplings of 392-1000x4-392 softplus networks).
    #[serde(default = "NiceConfig::mnist")]
    pub nice: NiceConfig,
    /// Images per step.
    pub batch: usize,
    /// Untimed steps first.
    pub warmup: usize,
    /// Timed steps.
    pub steps: usize,
    /// DSM noise level (and MDSM's target level).
    pub sigma: f64,
    /// The range of MDSM's per-example noise levels (Table 2's 0.05..1.2).
    #[serde(default = "default_sigma_min")]
    pub sigma_min: f64,
    /// See `sigma_min`.
    #[serde(default = "default_sigma_max")]
    pub sigma_max: f64,
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
    /// The PyTorch peer's `--json` output to show beside ours.
    #[serde(default)]
    pub peer: Option<PathBuf>,
}

fn default_sigma_min() -> f64 {
    0.05
}

fn default_sigma_max() -> f64 {
    1.2
}

impl Default for StepBenchConfig {
    fn default() -> Self {
        Self {
            model: ResNetEbmConfig {
                image_size: 28,
                activation: Activation::Elu,
                ..ResNetEbmConfig::res18(32)
            },
            net: BenchNet::Resnet,
            mlp: MlpConfig::peer(),
            nice: NiceConfig::mnist(),
            batch: 64,
            warmup: 3,
            steps: 20,
            sigma: 0.1,
            sigma_min: default_sigma_min(),
            sigma_max: default_sigma_max(),
            eps: 0.1,
            lr: 5e-5,
            seed: 0,
            objectives: PEER_OBJECTIVES.to_vec(),
            time_limit_s: 900.0,
            peer: None,
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
        match self.net {
            BenchNet::Mlp => {
                self.mlp.check().map_err(ExpError::Config)?;
                crate::require_memory(
                    &format!("an MLP of {} parameters", self.mlp.parameter_count()),
                    self.mlp.parameter_count().saturating_mul(16),
                )?;
            }
            BenchNet::Nice => {
                self.nice.check().map_err(ExpError::Config)?;
                crate::require_memory(
                    &format!("a NICE of {} parameters", self.nice.parameter_count()),
                    self.nice.parameter_count().saturating_mul(16),
                )?;
            }
            BenchNet::Resnet => crate::require_resnet_memory(&self.model)?,
        }
        if self.model.blocks_per_stage.contains(&0) {
            return bad(format!(
                "every stage needs at least one residual block, got blocks {:?}",
                self.model.blocks_per_stage
            ));
        }
        if self.model.image_size < 8 {
            return bad(format!(
                "image_size must be at least 8 (three 2x2 poolings), got {}",
                self.model.image_size
            ));
        }
        crate::require_positive(&[
            ("sigma", self.sigma),
            ("sigma_min", self.sigma_min),
            ("eps", self.eps),
            ("lr", self.lr),
            ("time_limit_s", self.time_limit_s),
        ])?;
        if self.sigma_max < self.sigma_min {
            return bad(format!(
                "sigma_max {} < sigma_min {}",
                self.sigma_max, self.sigma_min
            ));
        }
        if self.objectives.is_empty() {
            return bad("no objective selected".into());
        }
        Ok(())
    }
}

/// The step benchmark for the runner.
#[derive(Debug, Clone, Copy)]
pub struct StepBench;

/// The command-line options of the step benchmark.
#[derive(Debug, Clone, Args)]
pub struct StepBenchOptions {
    /// The network: resnet (the deep-EBM ResNet) or mlp (784-512-512-1 softplus), as the
    /// peer's --net; or nice (Table 3's flow, no peer).
    #[arg(long, value_enum, default_value_t = BenchNet::Resnet)]
    pub net: BenchNet,
    /// Layer sizes of the MLP, comma-separated, ending in 1 (default 784,512,512,1); e.g.
    /// 16,16,1 with a small --batch measures the cost per op rather than per FLOP.
    #[arg(long, value_delimiter = ',')]
    pub mlp_sizes: Option<Vec<usize>>,
    /// Hidden width of NICE's coupling networks (default 1000, Table 3's quick profile 200).
    #[arg(long)]
    pub nice_hidden: Option<usize>,
    /// ResNet width (peer --width).
    #[arg(long, default_value_t = 32)]
    pub width: usize,
    /// Residual blocks per stage (peer --depth 18 = 3).
    #[arg(long, default_value_t = 3)]
    pub blocks: usize,
    /// Images per step.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Warm-up steps.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Objectives, comma-separated (default: the peer's mle-cost, dsm, ssm, ssmvr, fd-dsm,
    /// fd-dsm-seq, fd-ssm, fd-ssm-seq; also mdsm, fd-mdsm, fd-mdsm-seq; `*` stands for `-seq`).
    #[arg(long, value_delimiter = ',')]
    pub objectives: Option<Vec<String>>,
    /// The PyTorch peer's --json output, shown beside ours.
    #[arg(long)]
    pub torch: Option<PathBuf>,
    /// Time limit per objective, seconds.
    #[arg(long, default_value_t = 900.0)]
    pub time_limit_s: f64,
    /// Convolution algorithms: fastest (Winograd F(4x4, 3x3) where it pays off), accurate
    /// (F(2x2, 3x3) only, rounding like the direct convolution) or direct.
    #[arg(long, value_enum, default_value_t = ConvKernels::Fastest)]
    pub conv: ConvKernels,
}

impl Experiment for StepBench {
    const NAME: &'static str = "steps";
    const KIND: Kind = Kind::Bench;
    const ABOUT: &'static str = "Time one score-matching training step (noise, loss, backward, \
        Adam) per objective plus an MLE-cost reference, each in its own process, on the ResNet \
        EBM configured like the PyTorch peer's torch_sm_bench.py (28 x 28, width 32, Res18, \
        batch 64). Profile: peer (the peer script's settings). Writes steps.md and \
        results.json.";
    const PROFILES: &'static [&'static str] = &["peer"];
    const TRAINS: bool = false;
    type Config = StepBenchConfig;
    type Row = Objective;
    type Options = StepBenchOptions;

    fn config(profile: &str, a: &StepBenchOptions) -> Result<StepBenchConfig> {
        if profile != "peer" {
            return Err(ExpError::Config(format!(
                "unknown profile `{profile}`; expected peer"
            )));
        }
        let mut cfg = StepBenchConfig {
            net: a.net,
            ..StepBenchConfig::default()
        };
        if let Some(sizes) = &a.mlp_sizes {
            cfg.mlp.sizes.clone_from(sizes);
        }
        if let Some(h) = a.nice_hidden {
            cfg.nice.hidden = h;
        }
        cfg.model.width = a.width;
        cfg.model.blocks_per_stage = [a.blocks; 3];
        cfg.batch = a.batch;
        cfg.steps = a.steps;
        cfg.warmup = a.warmup;
        cfg.time_limit_s = a.time_limit_s;
        cfg.model.conv_algorithm = a.conv.algorithm();
        if let Some(peer) = &a.torch {
            // Read now, so that a bad file stops the run before the measurements.
            crate::report::read_json::<PeerFile>(peer)?;
            cfg.peer = Some(peer.clone());
        }
        if let Some(list) = &a.objectives {
            cfg.objectives = list
                .iter()
                .map(|o| Objective::parse(o))
                .collect::<Result<_>>()?;
        }
        Ok(cfg)
    }

    fn validate(cfg: &StepBenchConfig) -> Result<()> {
        cfg.validate()
    }

    fn rows(cfg: &StepBenchConfig) -> Vec<Objective> {
        cfg.objectives.clone()
    }

    fn phases(_: &StepBenchConfig, row: Objective) -> Vec<Phase> {
        vec![Phase {
            name: "measure",
            higher_order: row.gradient_based(),
        }]
    }

    fn limits(cfg: &StepBenchConfig) -> Option<Limits> {
        Some(Limits {
            memory_bytes: memory::available_bytes().map_or(16_000_000_000, |a| a * 9 / 10),
            time: Duration::from_secs_f64(cfg.time_limit_s),
        })
    }

    fn run_phase(
        ctx: &RowContext,
        cfg: &StepBenchConfig,
        row: Objective,
        _phase: &str,
    ) -> Result<PhaseOutcome> {
        let r = measure(cfg, row, ctx.run.device)?;
        write_json(&ctx.dir.join("measure.json"), &r)?;
        Ok(PhaseOutcome::Done)
    }

    fn report(
        ctx: &Context,
        cfg: &StepBenchConfig,
        rows: &[(Objective, RowStatus)],
    ) -> Result<String> {
        report::write(ctx, cfg, rows)
    }
}
