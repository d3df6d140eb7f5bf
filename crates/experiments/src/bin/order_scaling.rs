//! `order_scaling`: FD-SM Fig. 2, the cost of T-th order directional derivatives of the deep
//! EBM, exact against the FD decomposition. `run` is what `cargo xtask bench order-scaling`
//! calls; `measure` and `errors` are its child processes.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use experiments::order_scaling::{
    checkpoint_model, error_study, markdown, measure_cell, run, Method, OrderScalingConfig,
    RunOptions,
};
use experiments::report::{read_json, write_json};

/// Time, memory and accuracy of the T-th directional derivative (v . grad)^T log p(x) of the
/// deep-EBM ResNet: exact by nested autodiff, and by the finite-difference decomposition of
/// "Efficient Learning of Generative Models via Finite-Difference Score Matching" (Theorem 1),
/// sequential and parallel.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Measure every method and order and write results/order-scaling (JSON, Markdown, PNG).
    Run(RunArgs),
    /// (internal) Time one method at one order in this process.
    Measure(MeasureArgs),
    /// (internal) Run the error study in this process.
    Errors(ChildArgs),
}

#[derive(Args)]
struct RunArgs {
    /// Settings profile: `quick` (laptop CPU, a few minutes) or `paper` (the Table 2 network,
    /// n = 128, batch 64; meant for a large machine or GPU).
    #[arg(long, default_value = "quick")]
    profile: String,
    /// Override the ResNet width n.
    #[arg(long)]
    width: Option<usize>,
    /// Override the images per call.
    #[arg(long)]
    batch: Option<usize>,
    /// Override the highest order T.
    #[arg(long)]
    max_order: Option<u32>,
    /// Override |v|, the radius of the direction.
    #[arg(long)]
    eps: Option<f64>,
    /// Override the timed calls per cell.
    #[arg(long)]
    repeats: Option<usize>,
    /// Memory a cell may use, GB (default: half of what is available).
    #[arg(long)]
    memory_limit_gb: Option<f64>,
    /// Time a cell may take, seconds.
    #[arg(long)]
    time_limit_s: Option<f64>,
    /// Use the trained weights (and network settings) of a Table 2 checkpoint, e.g.
    /// results/table2/rows/ssm/checkpoint.safetensors; overrides --width.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Seed of the weights and directions.
    #[arg(long)]
    seed: Option<u64>,
    /// Data directory (default: $FDSM_DATA_DIR, else the user cache directory). MNIST is
    /// downloaded there if missing.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Output directory.
    #[arg(long, default_value = "results/order-scaling")]
    out: PathBuf,
    /// Do not draw a progress bar.
    #[arg(long)]
    no_progress: bool,
}

#[derive(Args)]
struct ChildArgs {
    /// The run's config.json.
    #[arg(long)]
    config: PathBuf,
    /// Data directory.
    #[arg(long)]
    data_dir: PathBuf,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct MeasureArgs {
    #[command(flatten)]
    child: ChildArgs,
    /// exact, fd-sequential or fd-parallel.
    #[arg(long)]
    method: String,
    /// Derivative order T.
    #[arg(long)]
    order: u32,
}

fn main() -> Result<()> {
    experiments::allocator::tune_for_training();
    match Cli::parse().command {
        Cmd::Run(a) => {
            let mut cfg = OrderScalingConfig::profile(&a.profile)?;
            if let Some(w) = a.width {
                cfg.model.width = w;
            }
            if let Some(b) = a.batch {
                cfg.batch = b;
                cfg.error_batch = cfg.error_batch.min(b);
            }
            if let Some(t) = a.max_order {
                cfg.max_order = t;
            }
            if let Some(e) = a.eps {
                cfg.eps = e;
                if !cfg.error_eps.contains(&e) {
                    cfg.error_eps.push(e);
                }
            }
            if let Some(r) = a.repeats {
                cfg.repeats = r;
            }
            if let Some(m) = a.memory_limit_gb {
                cfg.memory_limit_gb = m;
            }
            if let Some(t) = a.time_limit_s {
                cfg.time_limit_s = t;
            }
            if let Some(s) = a.seed {
                cfg.seed = s;
            }
            if let Some(path) = a.checkpoint {
                cfg.model = checkpoint_model(&path)?;
                eprintln!(
                    "using the trained weights of {} (width {}, {:?})",
                    path.display(),
                    cfg.model.width,
                    cfg.model.activation
                );
                cfg.checkpoint = Some(path);
            }
            cfg.validate()?;
            let data_dir = datasets::resolve_data_dir(a.data_dir.as_deref());
            experiments::setup::ensure_data(&data_dir, datasets::Dataset::Mnist)?;
            let opts = RunOptions {
                data_dir,
                out: a.out.clone(),
                exe: std::env::current_exe().context("locating the order_scaling executable")?,
                progress: !a.no_progress,
            };
            let results = run(&cfg, &opts)?;
            println!("{}", markdown(&results));
            println!("results written to {}", a.out.display());
            Ok(())
        }
        Cmd::Measure(a) => {
            let cfg: OrderScalingConfig = read_json(&a.child.config)?;
            let images = experiments::setup::mnist32(&a.child.data_dir, false)?;
            let cell = measure_cell(&cfg, &images, Method::parse(&a.method)?, a.order)?;
            write_json(&a.child.out, &cell)?;
            Ok(())
        }
        Cmd::Errors(a) => {
            let cfg: OrderScalingConfig = read_json(&a.config)?;
            let images = experiments::setup::mnist32(&a.data_dir, false)?;
            error_study(&cfg, &images, |study| write_json(&a.out, study))?;
            Ok(())
        }
    }
}
