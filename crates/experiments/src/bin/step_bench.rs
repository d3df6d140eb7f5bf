//! `step_bench`: milliseconds and memory of one full training step for every objective of FD-SM
//! Table 2, on the network of the PyTorch peer benchmark. `run` is what `cargo xtask bench
//! steps` calls; `measure` is its child process.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use experiments::report::{read_json, write_json};
use experiments::setup::ConvKernels;
use experiments::step_bench::{markdown, measure, run, Objective, RunOptions, StepBenchConfig};

/// Time one score-matching training step (noise, loss, backward, Adam) per objective of Table 2
/// plus an MLE-cost reference, each in its own process, on the ResNet EBM configured like
/// `torch_sm_bench.py` (28 x 28, width 32, Res18, batch 64).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Time every selected objective and write results/steps (JSON and Markdown).
    Run(RunArgs),
    /// (internal) Time one objective in this process.
    Measure(MeasureArgs),
}

#[derive(Args)]
struct RunArgs {
    /// ResNet width (peer --width).
    #[arg(long, default_value_t = 32)]
    width: usize,
    /// Residual blocks per stage (peer --depth 18 = 3).
    #[arg(long, default_value_t = 3)]
    blocks: usize,
    /// Images per step.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Warm-up steps.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Objectives, comma-separated: mle-cost, dsm, ssm, ssmvr, fd-dsm, fd-dsm*, fd-ssm, fd-ssm*.
    #[arg(long, value_delimiter = ',')]
    objectives: Option<Vec<String>>,
    /// The PyTorch peer's --json output, shown beside ours.
    #[arg(long)]
    torch: Option<PathBuf>,
    /// Time limit per objective, seconds.
    #[arg(long, default_value_t = 900.0)]
    time_limit_s: f64,
    /// Convolution algorithms: fastest (Winograd F(4x4, 3x3) where it pays off), accurate
    /// (F(2x2, 3x3) only, rounding like the direct convolution) or direct.
    #[arg(long, value_enum, default_value_t = ConvKernels::Fastest)]
    conv: ConvKernels,
    /// Output directory.
    #[arg(long, default_value = "results/steps")]
    out: PathBuf,
}

#[derive(Args)]
struct MeasureArgs {
    /// The run's config.json.
    #[arg(long)]
    config: PathBuf,
    /// The objective.
    #[arg(long)]
    objective: String,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
}

fn main() -> Result<()> {
    experiments::allocator::tune_for_training();
    match Cli::parse().command {
        Cmd::Run(a) => {
            let mut cfg = StepBenchConfig::default();
            cfg.model.width = a.width;
            cfg.model.blocks_per_stage = [a.blocks; 3];
            cfg.batch = a.batch;
            cfg.steps = a.steps;
            cfg.warmup = a.warmup;
            cfg.time_limit_s = a.time_limit_s;
            cfg.model.conv_algorithm = a.conv.algorithm();
            if let Some(list) = &a.objectives {
                cfg.objectives = list
                    .iter()
                    .map(|o| Objective::parse(o))
                    .collect::<Result<_, _>>()?;
            }
            cfg.validate()?;
            let opts = RunOptions {
                out: a.out.clone(),
                exe: std::env::current_exe().context("locating the step_bench executable")?,
                peer: a.torch,
            };
            let r = run(&cfg, &opts)?;
            println!("{}", markdown(&r));
            println!("results written to {}", a.out.display());
            Ok(())
        }
        Cmd::Measure(a) => {
            let cfg: StepBenchConfig = read_json(&a.config)?;
            let r = measure(&cfg, Objective::parse(&a.objective)?)?;
            write_json(&a.out, &r)?;
            Ok(())
        }
    }
}
