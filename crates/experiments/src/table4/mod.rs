//! Table 4 of FD-SM (Sec. 6.1, App. C.3): deep EBMs trained by DSM and FD-DSM used as
//! out-of-distribution detectors with the typicality test (`M = 2`), the ROC-AUC of every
//! (training set, test set) pair and the training time per iteration, beside the paper's.
//!
//! Every (training set, method, seed) is a row of the runner with two phases in their own
//! processes: `train` (the deep-EBM training of Table 2 on the row's images; Candle's
//! higher-order mode only for DSM) and `eval` (energies only: the typicality reference, the
//! scores of every column and their AUCs). The `quick` profile uses the sets at hand (MNIST and
//! Fashion-MNIST against each other, uniform noise, and the permuted and inverted test images);
//! the `paper` profile uses SVHN, CIFAR-10 and ImageNet 32 x 32.

mod config;
mod data;
mod eval;
mod report;
mod train;

pub use config::{ImageSet, Table4Config, TestSet, METHODS, PAPER, PAPER_COLUMNS};
pub use data::{invert, permute_pixels, uniform_noise};
pub use eval::{eval_run, Column, EvalReport};
pub use report::{markdown, RowSummary, Table4Results};
pub use train::{identity, train_run, Reused};

use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::error::{ExpError, Result};
use crate::objective::Objective;
use crate::runner::{
    Context, Experiment, ExperimentRow, Kind, Phase, PhaseOutcome, RowContext, RowStatus,
};
use crate::setup::ConvKernels;

/// One detector: its training set, method and seed index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// The training set (in distribution).
    pub train_set: ImageSet,
    /// DSM (`mdsm`) or FD-DSM (`fd-mdsm`).
    pub method: Objective,
    /// The seed's index, `0..seeds`.
    pub seed: u32,
}

impl ExperimentRow for Run {
    fn key(&self) -> String {
        format!(
            "{}.{}.seed{}",
            self.train_set.key(),
            self.method.key(),
            self.seed
        )
    }

    fn label(&self) -> String {
        format!(
            "{}, {}, seed {}",
            self.train_set.label(),
            report::method_label(self.method),
            self.seed
        )
    }

    fn parse(s: &str) -> Result<Self> {
        let bad = || {
            ExpError::Config(format!(
                "`{s}` is not a Table 4 run (training-set.method.seedN, e.g. mnist.fd-mdsm.seed0)"
            ))
        };
        let (rest, seed) = s.rsplit_once(".seed").ok_or_else(bad)?;
        let (set, method) = rest.split_once('.').ok_or_else(bad)?;
        Ok(Run {
            train_set: ImageSet::parse(set)?,
            method: Objective::parse(method)?,
            seed: seed.parse().map_err(|_| bad())?,
        })
    }
}

/// Table 4 for the runner.
#[derive(Debug, Clone, Copy)]
pub struct Table4;

/// The command-line options of Table 4 (overrides of the profile).
#[derive(Debug, Clone, Args)]
pub struct Table4Options {
    /// Training sets, comma-separated: mnist, fashion-mnist, svhn, cifar-10, imagenet32 (one
    /// image shape per run: the grey-scale or the colour sets).
    #[arg(long, value_delimiter = ',')]
    pub train_sets: Option<Vec<String>>,
    /// Test sets (the columns), comma-separated: the image sets, noise, permuted, inverted.
    #[arg(long, value_delimiter = ',')]
    pub test_sets: Option<Vec<String>>,
    /// Methods, comma-separated: mdsm (the paper's DSM), fd-mdsm (FD-DSM).
    #[arg(long, value_delimiter = ',')]
    pub methods: Option<Vec<String>>,
    /// Override the training runs per (training set, method).
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Override the ResNet width n.
    #[arg(long)]
    pub width: Option<usize>,
    /// Override the training iterations per detector.
    #[arg(long)]
    pub iters: Option<u64>,
    /// Override the batch size.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Override the learning rate of DSM and FD-DSM.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Override M, the test images per typicality score (paper 2).
    #[arg(long)]
    pub m: Option<usize>,
    /// Override the typicality scores per column (paper 1000).
    #[arg(long)]
    pub test_batches: Option<usize>,
    /// Override the training images of the typicality reference.
    #[arg(long)]
    pub reference_images: Option<usize>,
    /// Directory of ImageNet 32x32's .npz archives (default: `<data dir>/imagenet32`).
    #[arg(long)]
    pub imagenet32_dir: Option<PathBuf>,
    /// Read only this many ImageNet 32x32 training images (all 1.28 million take 3.9 GB).
    #[arg(long)]
    pub imagenet32_train_images: Option<usize>,
    /// A Table 2 or Table 4 results directory: its finished detectors whose training settings
    /// are this run's (checked against their checkpoints) are reused instead of trained again.
    #[arg(long)]
    pub reuse: Option<PathBuf>,
    /// Master seed (run k trains with seed + k).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Convolution algorithms: fastest (Winograd F(4x4, 3x3) where it pays off), accurate
    /// (F(2x2, 3x3) only, rounding like the direct convolution) or direct.
    #[arg(long, value_enum, default_value_t = ConvKernels::Fastest)]
    pub conv: ConvKernels,
}

fn parse_list<T>(keys: &[String], parse: fn(&str) -> Result<T>) -> Result<Vec<T>> {
    keys.iter().map(|k| parse(k)).collect()
}

impl Experiment for Table4 {
    const NAME: &'static str = "table4";
    const KIND: Kind = Kind::Repro;
    const ABOUT: &'static str = "Table 4 of FD-SM: deep EBMs trained by DSM and FD-DSM as \
        out-of-distribution detectors (typicality test, M = 2), with the ROC-AUC of every \
        (training set, test set) pair and the time per iteration beside the paper's. Profiles: \
        quick (2-core CPU, about 10 minutes after the build: MNIST and Fashion-MNIST detectors, \
        two seeds, against each other, uniform noise, permuted and inverted images) and paper \
        (SVHN, CIFAR-10 and ImageNet 32x32, n = 128, 300K iterations; meant for a GPU). Writes \
        table4.md, results.json, ROC curves, score histograms and loss curves.";
    const PROFILES: &'static [&'static str] = &["quick", "paper"];
    const TRAINS: bool = true;
    type Config = Table4Config;
    type Row = Run;
    type Options = Table4Options;

    fn config(profile: &str, a: &Table4Options) -> Result<Table4Config> {
        let mut cfg = Table4Config::profile(profile)?;
        if let Some(k) = &a.train_sets {
            cfg.train_sets = parse_list(k, ImageSet::parse)?;
            // A colour training set takes colour inputs: the paper's model shape follows.
            let (channels, size, pad) = cfg.train_sets[0].layout();
            cfg.training.model.in_channels = channels;
            cfg.training.model.image_size = size + 2 * pad;
        }
        if let Some(k) = &a.test_sets {
            cfg.test_sets = parse_list(k, TestSet::parse)?;
        }
        if let Some(k) = &a.methods {
            cfg.methods = parse_list(k, Objective::parse)?;
        }
        if let Some(s) = a.seeds {
            cfg.seeds = s;
        }
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
        if let Some(lr) = a.lr {
            cfg.training.lr_dsm = lr;
        }
        if let Some(m) = a.m {
            cfg.m = m;
        }
        if let Some(n) = a.test_batches {
            cfg.test_batches = n;
        }
        if let Some(n) = a.reference_images {
            cfg.reference_images = n;
        }
        if let Some(d) = &a.imagenet32_dir {
            cfg.imagenet32_dir = Some(d.clone());
        }
        if let Some(n) = a.imagenet32_train_images {
            cfg.imagenet32_train_images = Some(n);
        }
        if let Some(d) = &a.reuse {
            cfg.reuse_from = Some(d.clone());
        }
        if let Some(s) = a.seed {
            cfg.training.seed = s;
        }
        cfg.training.model.conv_algorithm = a.conv.algorithm();
        cfg.training.timing_warmup = cfg
            .training
            .timing_warmup
            .min(cfg.training.iters.saturating_sub(1) as usize);
        Ok(cfg)
    }

    fn validate(cfg: &Table4Config) -> Result<()> {
        cfg.validate()
    }

    fn datasets(cfg: &Table4Config) -> Vec<datasets::Dataset> {
        let mut sets: Vec<datasets::Dataset> = cfg
            .image_sets()
            .into_iter()
            .filter_map(ImageSet::dataset)
            .collect();
        sets.sort_by_key(|d| d.name());
        sets.dedup();
        sets
    }

    fn check_supplied_data(cfg: &Table4Config, data_dir: &std::path::Path) -> Result<()> {
        let uses =
            |d: ImageSet| cfg.train_sets.contains(&d) || cfg.test_sets.contains(&TestSet::Data(d));
        if uses(ImageSet::Imagenet32) {
            datasets::check_imagenet32(&data::imagenet32_dir(cfg, data_dir))?;
        }
        Ok(())
    }

    fn rows(cfg: &Table4Config) -> Vec<Run> {
        let mut rows = Vec::new();
        for &train_set in &cfg.train_sets {
            for &method in &cfg.methods {
                for seed in 0..cfg.seeds as u32 {
                    rows.push(Run {
                        train_set,
                        method,
                        seed,
                    });
                }
            }
        }
        rows
    }

    fn phases(_: &Table4Config, run: Run) -> Vec<Phase> {
        vec![
            Phase {
                name: "train",
                higher_order: run.method.gradient_based(),
            },
            Phase {
                name: "eval",
                higher_order: false,
            },
        ]
    }

    fn run_phase(
        ctx: &RowContext,
        cfg: &Table4Config,
        run: Run,
        phase: &str,
    ) -> Result<PhaseOutcome> {
        match phase {
            "train" => Ok(match train_run(ctx, cfg, run)?.paused_at {
                Some(step) => PhaseOutcome::Paused { step },
                None => PhaseOutcome::Done,
            }),
            "eval" => {
                eval_run(ctx, cfg, run)?;
                Ok(PhaseOutcome::Done)
            }
            other => Err(ExpError::Config(format!("table4 has no phase `{other}`"))),
        }
    }

    fn report(ctx: &Context, cfg: &Table4Config, rows: &[(Run, RowStatus)]) -> Result<String> {
        report::write(ctx, cfg, rows)
    }
}
