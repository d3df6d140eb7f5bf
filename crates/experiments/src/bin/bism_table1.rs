//! `bism_table1`: BiSM Table 1, a GRBM (H = 400) on Frey face by DSM and BiDSM with N = 0, 1, 5,
//! 10. `cargo xtask repro bism-table1` runs it.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use experiments::bism_table1::{markdown, run, Row, Table1Config};
use experiments::cli::RunControlArgs;

/// Reproduce Table 1 of "Bi-level Score Matching": test log-likelihood (AIS) and test Fisher
/// divergence of a Gaussian RBM on Frey face trained by DSM and by BiDSM with N unrolled steps.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Train every row and write results/bism-table1.
    Run(RunArgs),
}

#[derive(Args)]
struct RunArgs {
    /// Settings profile: `quick` (a few minutes on a laptop CPU) or `paper` (20000 iterations,
    /// lr 2e-4, AIS with 2000 chains and 2000 distributions).
    #[arg(long, default_value = "quick")]
    profile: String,
    /// Override the iterations per row.
    #[arg(long)]
    iters: Option<u64>,
    /// Override the hidden units.
    #[arg(long)]
    hidden: Option<usize>,
    /// Rows: `dsm` and the BiDSM unroll counts, e.g. `dsm,0,5`.
    #[arg(long, value_delimiter = ',')]
    rows: Option<Vec<String>>,
    /// Override the AIS chains and distributions, e.g. `--ais 200,1000`.
    #[arg(long, value_delimiter = ',')]
    ais: Option<Vec<usize>>,
    /// Seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Data directory (default: $FDSM_DATA_DIR, else the user cache directory). Frey face is
    /// downloaded there if missing.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Output directory (checkpoints go to its `checkpoints/`).
    #[arg(long, default_value = "results/bism-table1")]
    out: PathBuf,
    #[command(flatten)]
    run: RunControlArgs,
}

fn main() -> Result<()> {
    experiments::allocator::tune_for_training();
    anyhow::ensure!(
        sm_objectives::autodiff::enable_higher_order(),
        "Candle's higher-order mode could not be enabled"
    );
    let Cmd::Run(a) = Cli::parse().command;
    let mut cfg = Table1Config::profile(&a.profile)?;
    if let Some(i) = a.iters {
        cfg.iters = i;
        cfg.eval_points = cfg.eval_points.min(i as usize).max(1);
        cfg.checkpoint_every = cfg.checkpoint_every.min(i.max(1));
    }
    if let Some(every) = a.run.checkpoint_every {
        cfg.checkpoint_every = every;
    }
    if let Some(h) = a.hidden {
        cfg.hidden = h;
    }
    if let Some(rows) = &a.rows {
        cfg.rows = rows
            .iter()
            .map(|r| match r.trim() {
                "dsm" => Ok(Row::Dsm),
                n => n.parse().map(Row::Bidsm).map_err(|_| {
                    anyhow::anyhow!("row `{n}` is neither `dsm` nor a BiDSM unroll count")
                }),
            })
            .collect::<Result<_>>()?;
    }
    if let Some(ais) = &a.ais {
        let [chains, steps] = ais.as_slice() else {
            anyhow::bail!("--ais takes two numbers, chains and distributions, e.g. --ais 200,1000")
        };
        (cfg.ais_chains, cfg.ais_steps) = (*chains, *steps);
    }
    if let Some(s) = a.seed {
        cfg.seed = s;
    }
    cfg.validate()?;
    let data_dir = datasets::resolve_data_dir(a.data_dir.as_deref());
    experiments::setup::ensure_data(&data_dir, datasets::Dataset::FreyFace)?;
    let r = run(&cfg, &data_dir, &a.out, a.run.control())?;
    println!("{}", markdown(&r));
    println!("results written to {}", a.out.display());
    Ok(())
}
