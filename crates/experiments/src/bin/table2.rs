//! `table2`: reproduces Table 2 of FD-SM (deep EBMs on MNIST). `run` is what
//! `cargo xtask repro table2` calls; `train-row` and `eval-row` are its child processes.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use experiments::setup::ConvKernels;
use experiments::table2::{eval_row, run, train_row, Row, RunOptions, Table2Config, Table2Run};
use experiments::RunControl;

/// Reproduce Table 2 of "Efficient Learning of Generative Models via Finite-Difference Score
/// Matching": the deep-EBM ResNet on MNIST trained by DSM, FD-DSM*, FD-DSM, SSM, SSMVR,
/// FD-SSM*, FD-SSM.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the selected rows and write results/table2 (JSON, Markdown, PNG samples and curves).
    Run(RunArgs),
    /// (internal) Train one row in this process.
    TrainRow(RowArgs),
    /// (internal) Evaluate one row's snapshots and draw samples in this process.
    EvalRow(RowArgs),
}

#[derive(Args)]
struct RunArgs {
    /// Settings profile: `quick` (2-core CPU, about 3 minutes) or `paper` (n = 128, 300K
    /// iterations; meant for a GPU).
    #[arg(long, default_value = "quick")]
    profile: String,
    /// Override the ResNet width n.
    #[arg(long)]
    width: Option<usize>,
    /// Override the training iterations per row.
    #[arg(long)]
    iters: Option<u64>,
    /// Override the batch size.
    #[arg(long)]
    batch: Option<usize>,
    /// Rows to run, comma-separated: dsm, fd-dsm-seq (or fd-dsm*), fd-dsm, ssm, ssmvr,
    /// fd-ssm-seq (or fd-ssm*), fd-ssm.
    #[arg(long, value_delimiter = ',')]
    rows: Option<Vec<String>>,
    /// Override the number of test images of the SM loss.
    #[arg(long)]
    eval_images: Option<usize>,
    /// Override the number of loss-curve points.
    #[arg(long)]
    eval_points: Option<usize>,
    /// Override the number of samples per row.
    #[arg(long)]
    samples: Option<usize>,
    /// Scale every phase of the Langevin schedule by this factor (e.g. 0.1 for a smoke test).
    #[arg(long)]
    langevin_scale: Option<f64>,
    /// Master seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Convolution algorithms: fastest (Winograd F(4x4, 3x3) where it pays off), accurate
    /// (F(2x2, 3x3) only, rounding like the direct convolution) or direct.
    #[arg(long, value_enum, default_value_t = ConvKernels::Fastest)]
    conv: ConvKernels,
    /// Data directory (default: $FDSM_DATA_DIR, else the user cache directory). MNIST is
    /// downloaded there if missing.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Output directory.
    #[arg(long, default_value = "results/table2")]
    out: PathBuf,
    /// Continue rows from their checkpoints (a finished row is evaluated again without
    /// training).
    #[arg(long)]
    resume: bool,
    /// Pause every row once it has trained this many steps, checkpointed (e.g. to fit a
    /// scheduler's time limit); no table is written. Continue later with --resume.
    #[arg(long)]
    stop_after: Option<u64>,
    /// Do not draw progress bars.
    #[arg(long)]
    no_progress: bool,
}

#[derive(Args)]
struct RowArgs {
    /// The run's config.json.
    #[arg(long)]
    config: PathBuf,
    /// The row.
    #[arg(long)]
    row: String,
    /// Data directory.
    #[arg(long)]
    data_dir: PathBuf,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Continue from the row's checkpoint.
    #[arg(long)]
    resume: bool,
    /// Pause once this many steps are complete.
    #[arg(long)]
    stop_after: Option<u64>,
    /// Do not draw a progress bar.
    #[arg(long)]
    no_progress: bool,
}

fn main() -> Result<()> {
    experiments::allocator::tune_for_training();
    match Cli::parse().command {
        Cmd::Run(a) => {
            let mut cfg = Table2Config::profile(&a.profile)?;
            if let Some(w) = a.width {
                cfg.model.width = w;
            }
            if let Some(i) = a.iters {
                cfg.iters = i;
                cfg.checkpoint_every = cfg.checkpoint_every.min(i.max(1));
            }
            if let Some(b) = a.batch {
                cfg.batch = b;
            }
            cfg.model.conv_algorithm = a.conv.algorithm();
            if let Some(rows) = &a.rows {
                cfg.rows = rows
                    .iter()
                    .map(|r| Row::parse(r))
                    .collect::<Result<_, _>>()?;
            }
            if let Some(n) = a.eval_images {
                cfg.eval_images = n;
                cfg.eval_batch = cfg.eval_batch.min(n);
            }
            if let Some(n) = a.eval_points {
                cfg.eval_points = n;
            }
            if let Some(n) = a.samples {
                cfg.samples = n;
            }
            if let Some(f) = a.langevin_scale {
                anyhow::ensure!(f > 0.0 && f.is_finite(), "--langevin-scale must be > 0");
                let l = &mut cfg.langevin;
                let scale = |n: usize| ((n as f64 * f).round() as usize).max(1);
                (l.hold_steps, l.anneal_steps, l.cool_steps) = (
                    scale(l.hold_steps),
                    scale(l.anneal_steps),
                    scale(l.cool_steps),
                );
            }
            if let Some(s) = a.seed {
                cfg.seed = s;
            }
            cfg.timing_warmup = cfg.timing_warmup.min(cfg.iters.saturating_sub(1) as usize);
            let data_dir = datasets::resolve_data_dir(a.data_dir.as_deref());
            experiments::setup::ensure_data(&data_dir, datasets::Dataset::Mnist)?;
            let exe = std::env::current_exe().context("locating the table2 executable")?;
            let opts = RunOptions {
                data_dir,
                out: a.out.clone(),
                control: RunControl {
                    progress: !a.no_progress,
                    resume: a.resume,
                    stop_after: a.stop_after,
                },
                exe,
            };
            match run(&cfg, &opts)? {
                Table2Run::Finished(results) => {
                    println!("{}", experiments::table2::markdown(&results));
                    println!("results written to {}", a.out.display());
                }
                Table2Run::Paused(rows) => {
                    for (row, done) in rows {
                        println!(
                            "{}: paused after {done} of {} steps",
                            row.label(),
                            cfg.iters
                        );
                    }
                    println!(
                        "checkpoints in {}; continue with the same options and --resume",
                        a.out.display()
                    );
                }
            }
            Ok(())
        }
        Cmd::TrainRow(a) => {
            let cfg: Table2Config = experiments::report::read_json(&a.config)?;
            train_row(
                &cfg,
                Row::parse(&a.row)?,
                &a.data_dir,
                &a.out,
                RunControl {
                    progress: !a.no_progress,
                    resume: a.resume,
                    stop_after: a.stop_after,
                },
            )?;
            Ok(())
        }
        Cmd::EvalRow(a) => {
            let cfg: Table2Config = experiments::report::read_json(&a.config)?;
            eval_row(&cfg, Row::parse(&a.row)?, &a.data_dir, &a.out)?;
            Ok(())
        }
    }
}
