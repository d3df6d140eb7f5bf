//! Table 2 of FD-SM (Sec. 6.1, App. C.2): the deep-EBM ResNet trained on MNIST by DSM, FD-DSM*,
//! FD-DSM, SSM, SSMVR, FD-SSM*, FD-SSM (and sliced DSM and maximum likelihood, which the paper
//! does not have), with the test SM loss, the time per iteration and the memory of each row side
//! by side with the paper's numbers, over one or more seeds.
//!
//! Each row runs two phases in their own processes: `train` (Candle's higher-order mode on only
//! for the gradient-based rows, so the memory column is the row's own) and `eval`, which
//! computes the test SM loss of the snapshots taken along training (the loss-against-wall-time
//! curves of Fig. 4) and draws samples by annealed Langevin dynamics. The report puts the rows
//! beside the paper's.

mod config;
mod eval;
mod report;
mod train;

pub use crate::deep_ebm::reference_scale;
pub use config::{paper_label, paper_row, PaperRow, Table2Config, PAPER_ROWS, ROWS};
pub use eval::{eval_row, EvalReport};
pub use report::{
    compare, markdown, sm_agree, summarise, Comparison, RowSummary, Table2Results, AGREE_RELATIVE,
};
pub use train::{train_row, TrainReport};

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::error::{ExpError, Result};
use crate::objective::Objective;
use crate::runner::{
    Context, Experiment, ExperimentRow, Kind, Phase, PhaseOutcome, RowContext, RowStatus,
};
use crate::setup::ConvKernels;

/// Table 2 for the runner.
#[derive(Debug, Clone, Copy)]
pub struct Table2;

/// The command-line options of Table 2 (overrides of the profile).
#[derive(Debug, Clone, Args)]
pub struct Table2Options {
    /// Override the ResNet width n.
    #[arg(long)]
    pub width: Option<usize>,
    /// Override the training iterations per row.
    #[arg(long)]
    pub iters: Option<u64>,
    /// Override the batch size.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Rows to run, comma-separated: mdsm (the paper's DSM), sliced-mdsm (sliced DSM),
    /// fd-mdsm-seq (FD-DSM*, also fd-mdsm*), fd-mdsm (FD-DSM), ssm, ssmvr, fd-ssm-seq (FD-SSM*,
    /// also fd-ssm*), fd-ssm, mle-langevin (maximum likelihood, persistent Langevin chains).
    #[arg(long, value_delimiter = ',')]
    pub rows: Option<Vec<String>>,
    /// Override the learning rate of the DSM family.
    #[arg(long)]
    pub lr_dsm: Option<f64>,
    /// Override the learning rate of the SSM family.
    #[arg(long)]
    pub lr_ssm: Option<f64>,
    /// Override the learning rate of maximum likelihood.
    #[arg(long)]
    pub lr_mle: Option<f64>,
    /// Override the Langevin steps per training step of maximum likelihood.
    #[arg(long)]
    pub mle_steps: Option<usize>,
    /// Override the ResNet's activation: elu (the reference default) or softplus
    /// (`softplus(x) - log 2`, the reference code's final runs).
    #[arg(long)]
    pub activation: Option<String>,
    /// Override the number of seeds per row.
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Override the number of test images of the SM loss.
    #[arg(long)]
    pub eval_images: Option<usize>,
    /// Override the number of loss-curve points.
    #[arg(long)]
    pub eval_points: Option<usize>,
    /// Override the number of samples per row.
    #[arg(long)]
    pub samples: Option<usize>,
    /// Override the samples per row for FID with LeNet features (0: no FID; at least 129).
    #[arg(long)]
    pub fid_samples: Option<usize>,
    /// Where the LeNet feature network of FID is cached (default: `<data dir>/feature-nets`).
    #[arg(long)]
    pub feature_cache: Option<std::path::PathBuf>,
    /// Scale every phase of the Langevin schedule by this factor (e.g. 0.1 for a smoke test).
    #[arg(long)]
    pub langevin_scale: Option<f64>,
    /// Master seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Convolution algorithms: fastest (Winograd F(4x4, 3x3) where it pays off), accurate
    /// (F(2x2, 3x3) only, rounding like the direct convolution) or direct.
    #[arg(long, value_enum, default_value_t = ConvKernels::Fastest)]
    pub conv: ConvKernels,
}

/// One training run of Table 2: a row's objective with the index of its seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// The row.
    pub objective: Objective,
    /// The seed index (`0..seeds`); the run trains with seed `seed + index`.
    pub seed: usize,
}

impl ExperimentRow for Run {
    fn key(&self) -> String {
        format!("{}.seed{}", self.objective.key(), self.seed)
    }

    fn label(&self) -> String {
        format!("{} (seed {})", paper_label(self.objective), self.seed)
    }

    fn parse(s: &str) -> Result<Self> {
        let (objective, seed) = s.rsplit_once(".seed").ok_or_else(|| {
            ExpError::Config(format!("`{s}` is not a Table 2 run (objective.seedN)"))
        })?;
        Ok(Run {
            objective: Objective::parse(objective)?,
            seed: seed
                .parse()
                .map_err(|_| ExpError::Config(format!("`{s}`: the seed index must be a number")))?,
        })
    }
}

impl Experiment for Table2 {
    const NAME: &'static str = "table2";
    const KIND: Kind = Kind::Repro;
    const ABOUT: &'static str = "Table 2 of FD-SM: the deep-EBM ResNet on MNIST trained by DSM, \
        sliced DSM, FD-DSM*, FD-DSM, SSM, SSMVR, FD-SSM*, FD-SSM and maximum likelihood \
        (Langevin), with the test SM loss, time per iteration and memory beside the paper's. \
        Profiles: quick (2-core CPU, minutes), cpu (2-core CPU, about an hour) and paper \
        (n = 128, 300K iterations; meant for a GPU). Writes table2.md, results.json, loss \
        curves and sample grids.";
    const PROFILES: &'static [&'static str] = &["quick", "cpu", "paper"];
    const TRAINS: bool = true;
    type Config = Table2Config;
    type Row = Run;
    type Options = Table2Options;

    fn config(profile: &str, a: &Table2Options) -> Result<Table2Config> {
        let mut cfg = Table2Config::profile(profile)?;
        if let Some(w) = a.width {
            cfg.training.model.width = w;
        }
        if let Some(i) = a.iters {
            cfg.training.iters = i;
            cfg.training.checkpoint_every = cfg.training.checkpoint_every.min(i.max(1));
        }
        if let Some(b) = a.batch {
            cfg.training.batch = b;
        }
        cfg.training.model.conv_algorithm = a.conv.algorithm();
        if let Some(rows) = &a.rows {
            cfg.rows = rows
                .iter()
                .map(|r| Objective::parse(r))
                .collect::<Result<_>>()?;
        }
        if let Some(n) = a.eval_images {
            cfg.eval_images = n;
            cfg.eval_batch = cfg.eval_batch.min(n);
        }
        if let Some(n) = a.eval_points {
            cfg.training.eval_points = n;
        }
        if let Some(n) = a.samples {
            cfg.samples = n;
        }
        if let Some(n) = a.fid_samples {
            cfg.fid_samples = n;
        }
        if let Some(d) = &a.feature_cache {
            cfg.feature_cache = Some(d.clone());
        }
        if let Some(f) = a.langevin_scale {
            if !(f > 0.0 && f.is_finite()) {
                return Err(ExpError::Config(format!(
                    "--langevin-scale must be finite and > 0, got {f}"
                )));
            }
            let l = &mut cfg.langevin;
            let scale = |n: usize| ((n as f64 * f).round() as usize).max(1);
            (l.hold_steps, l.anneal_steps, l.cool_steps) = (
                scale(l.hold_steps),
                scale(l.anneal_steps),
                scale(l.cool_steps),
            );
        }
        if let Some(s) = a.seed {
            cfg.training.seed = s;
        }
        if let Some(n) = a.seeds {
            cfg.seeds = n;
        }
        let t = &mut cfg.training;
        for (value, slot) in [
            (a.lr_dsm, &mut t.lr_dsm),
            (a.lr_ssm, &mut t.lr_ssm),
            (a.lr_mle, &mut t.lr_mle),
        ] {
            if let Some(v) = value {
                *slot = v;
            }
        }
        if let Some(name) = &a.activation {
            t.model.activation = match name.as_str() {
                "elu" => models::Activation::Elu,
                "softplus" => models::Activation::ShiftedSoftplus,
                other => {
                    return Err(ExpError::Config(format!(
                        "unknown activation `{other}`; expected elu or softplus"
                    )))
                }
            };
        }
        if let Some(n) = a.mle_steps {
            t.mle.sampler.steps = n;
        }
        cfg.training.timing_warmup = cfg
            .training
            .timing_warmup
            .min(cfg.training.iters.saturating_sub(1) as usize);
        Ok(cfg)
    }

    fn validate(cfg: &Table2Config) -> Result<()> {
        cfg.validate()
    }

    fn datasets(_: &Table2Config) -> Vec<datasets::Dataset> {
        vec![datasets::Dataset::Mnist]
    }

    fn rows(cfg: &Table2Config) -> Vec<Run> {
        cfg.rows
            .iter()
            .flat_map(|&objective| (0..cfg.seeds).map(move |seed| Run { objective, seed }))
            .collect()
    }

    fn phases(_: &Table2Config, run: Run) -> Vec<Phase> {
        vec![
            Phase {
                name: "train",
                higher_order: run.objective.gradient_based(),
            },
            Phase {
                name: "eval",
                higher_order: true,
            },
        ]
    }

    fn run_phase(
        ctx: &RowContext,
        cfg: &Table2Config,
        row: Run,
        phase: &str,
    ) -> Result<PhaseOutcome> {
        match phase {
            "train" => Ok(match train_row(ctx, cfg, row)?.paused_at {
                Some(step) => PhaseOutcome::Paused { step },
                None => PhaseOutcome::Done,
            }),
            "eval" => {
                eval_row(ctx, cfg, row)?;
                Ok(PhaseOutcome::Done)
            }
            other => Err(ExpError::Config(format!("table2 has no phase `{other}`"))),
        }
    }

    fn report(ctx: &Context, cfg: &Table2Config, rows: &[(Run, RowStatus)]) -> Result<String> {
        report::write(ctx, cfg, rows)
    }
}
