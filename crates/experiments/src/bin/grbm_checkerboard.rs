//! `grbm_checkerboard`: a GRBM (H = 4) trained on the 2-D checkerboard by SSM, DSM, CD-1, PCD,
//! NCE, BiSSM, BiDSM, VaGES-DSM, KSD and VaGES-KSD (BiSM Figs. 2-3, VaGES Figs. 3-4). `cargo xtask repro
//! grbm-checkerboard` runs it.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use experiments::cli::RunControlArgs;
use experiments::grbm_checkerboard::{markdown, run, CheckerboardConfig, Method};

/// Train a Gaussian RBM on the checkerboard by every method and write the test log-likelihood
/// curves (exact log Z) and the learned densities to results/grbm-checkerboard.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Train every selected method and write the report.
    Run(RunArgs),
}

#[derive(Args)]
struct RunArgs {
    /// Settings profile: `quick` (a few minutes on a laptop CPU) or `paper` (100000 iterations
    /// at lr 1e-3).
    #[arg(long, default_value = "quick")]
    profile: String,
    /// Override the iterations per method.
    #[arg(long)]
    iters: Option<u64>,
    /// Methods, comma-separated: ssm, dsm, cd1, pcd, nce, bissm, bidsm, vages-dsm, ksd,
    /// vages-ksd.
    #[arg(long, value_delimiter = ',')]
    methods: Option<Vec<String>>,
    /// Override the number of unrolled BiSM steps N.
    #[arg(long)]
    unroll: Option<usize>,
    /// Seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Output directory (checkpoints go to its `checkpoints/`).
    #[arg(long, default_value = "results/grbm-checkerboard")]
    out: PathBuf,
    #[command(flatten)]
    run: RunControlArgs,
}

fn main() -> Result<()> {
    experiments::allocator::tune_for_training();
    // BiSM, VaGES and SSM differentiate scores: Candle's higher-order mode, set before any
    // backward pass.
    anyhow::ensure!(
        sm_objectives::autodiff::enable_higher_order(),
        "Candle's higher-order mode could not be enabled"
    );
    let Cmd::Run(a) = Cli::parse().command;
    let mut cfg = CheckerboardConfig::profile(&a.profile)?;
    if let Some(i) = a.iters {
        cfg.iters = i;
        cfg.eval_points = cfg.eval_points.min(i as usize).max(1);
        cfg.checkpoint_every = cfg.checkpoint_every.min(i.max(1));
    }
    if let Some(every) = a.run.checkpoint_every {
        cfg.checkpoint_every = every;
    }
    if let Some(list) = &a.methods {
        cfg.methods = list
            .iter()
            .map(|m| Method::parse(m))
            .collect::<Result<_, _>>()?;
    }
    if let Some(n) = a.unroll {
        cfg.bism.unroll = n;
    }
    if let Some(s) = a.seed {
        cfg.seed = s;
    }
    let r = run(&cfg, &a.out, a.run.control())?;
    println!("{}", markdown(&r));
    println!("results written to {}", a.out.display());
    Ok(())
}
