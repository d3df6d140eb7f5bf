//! Table 6 of FD-SM (Sec. 6.3, App. C.4): the VAE and WAE with implicit encoders (Song et al.
//! 2019, Sec. 5.2.2), whose entropy gradient comes from a score network trained by SSMVR or
//! FD-SSMVR, beside the paper's numbers. On dynamically binarised MNIST (dense networks): the
//! test NLL by AIS, the time per iteration of the score estimation alone, FID with LeNet
//! features, sample grids. On CelebA (64 x 64 faces the user supplies, convolutional networks):
//! FID with Inception features, the time, sample grids.
//!
//! Every (data set, model, estimator, latent size, seed) is a row of the runner with two phases in their
//! own processes: `train` (Candle's higher-order mode only for SSMVR, so that each estimator's
//! time is its own) and `eval` (AIS, samples, FID; first-order only).

mod config;
mod data;
mod eval;
mod objective;
mod report;
mod train;

pub use config::{
    model_key, model_label, paper_celeba, paper_mnist, parse_model, CelebaSettings, Estimator,
    Table6Config, Table6Data, DATA, ESTIMATORS, MODELS,
};
pub use data::{binarize, load as load_mnist, Mnist};
pub use eval::{eval_run, EvalReport};
pub use objective::{exact_sm, score_loss};
pub use report::{markdown, RowSummary, Table6Results};
pub use train::{autoencoder_loss, train_run, TestPoint, TrainReport};

use clap::Args;
use models::AutoencoderKind;
use serde::{Deserialize, Serialize};

use crate::error::{ExpError, Result};
use crate::runner::{
    Context, Experiment, ExperimentRow, Kind, Phase, PhaseOutcome, RowContext, RowStatus,
};

/// One training run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// MNIST or CelebA.
    #[serde(default)]
    pub data: Table6Data,
    /// VAE or WAE.
    pub model: AutoencoderKind,
    /// The score estimator.
    pub estimator: Estimator,
    /// Latent size.
    pub z_dim: usize,
    /// The seed's index.
    pub seed: u32,
}

impl Run {
    /// The seed of the run's initialisation, batches and noise: the same for both estimators at
    /// the same data set, model, latent size and index, so that they start from the same
    /// networks.
    pub fn seed_value(self, cfg: &Table6Config) -> u64 {
        let model = match self.model {
            AutoencoderKind::Vae => 0,
            AutoencoderKind::Wae => 1,
        };
        let base = match self.data {
            Table6Data::Mnist => 6_000_000,
            Table6Data::Celeba => 7_000_000,
        };
        crate::step_seed(
            cfg.seed,
            base + 1000 * (2 * self.z_dim as u64 + model) + u64::from(self.seed),
        )
    }

    /// `vae.fd-ssmvr.z32` on MNIST, `celeba.vae.fd-ssmvr.z32` on CelebA (the row without its
    /// seed).
    pub fn key_text(self) -> String {
        let prefix = match self.data {
            Table6Data::Mnist => "",
            Table6Data::Celeba => "celeba.",
        };
        format!(
            "{prefix}{}.{}.z{}",
            model_key(self.model),
            self.estimator.key(),
            self.z_dim
        )
    }

    /// `VAE, FD-SSMVR, z 32, seed 0` (`CelebA, ...` on CelebA).
    pub fn label_text(self) -> String {
        let prefix = match self.data {
            Table6Data::Mnist => "",
            Table6Data::Celeba => "CelebA, ",
        };
        format!(
            "{prefix}{}, {}, z {}, seed {}",
            model_label(self.model),
            self.estimator.label(),
            self.z_dim,
            self.seed
        )
    }
}

impl ExperimentRow for Run {
    fn key(&self) -> String {
        format!("{}.seed{}", self.key_text(), self.seed)
    }

    fn label(&self) -> String {
        self.label_text()
    }

    fn parse(s: &str) -> Result<Self> {
        let bad = || {
            ExpError::Config(format!(
                "`{s}` is not a Table 6 run ([celeba.]model.estimator.zK.seedN, e.g. \
                 vae.fd-ssmvr.z32.seed0 or celeba.wae.ssmvr.z32.seed1)"
            ))
        };
        let parts: Vec<&str> = s.split('.').collect();
        let (data, rest) = match parts.as_slice() {
            [first, rest @ ..] if rest.len() == 4 => (Table6Data::parse(first)?, rest),
            rest => (Table6Data::Mnist, rest),
        };
        let [model, estimator, z, seed] = rest else {
            return Err(bad());
        };
        Ok(Run {
            data,
            model: parse_model(model)?,
            estimator: Estimator::parse(estimator)?,
            z_dim: z
                .strip_prefix('z')
                .and_then(|v| v.parse().ok())
                .ok_or_else(bad)?,
            seed: seed
                .strip_prefix("seed")
                .and_then(|v| v.parse().ok())
                .ok_or_else(bad)?,
        })
    }
}

/// Table 6 for the runner.
#[derive(Debug, Clone, Copy)]
pub struct Table6;

/// The command-line options of Table 6 (overrides of the profile).
#[derive(Debug, Clone, Args)]
pub struct Table6Options {
    /// Data sets, comma-separated: mnist, celeba (CelebA must be supplied: its JPEGs in
    /// `<data dir>/celeba/img_align_celeba`, or `--celeba-dir`).
    #[arg(long, value_delimiter = ',')]
    pub data: Option<Vec<String>>,
    /// The folder of CelebA's JPEGs (default `<data dir>/celeba/img_align_celeba`).
    #[arg(long)]
    pub celeba_dir: Option<std::path::PathBuf>,
    /// Override CelebA's training images read (the first of its permuted training split).
    #[arg(long)]
    pub celeba_train_images: Option<usize>,
    /// Override CelebA's test images read (evaluations, reconstructions, FID reference).
    #[arg(long)]
    pub celeba_test_images: Option<usize>,
    /// Override CelebA's channel widths (nef = ndf; reference 64).
    #[arg(long)]
    pub celeba_width: Option<usize>,
    /// Override CelebA's image side (a multiple of 16; reference 64).
    #[arg(long)]
    pub celeba_size: Option<usize>,
    /// Models, comma-separated: vae, wae.
    #[arg(long, value_delimiter = ',')]
    pub models: Option<Vec<String>>,
    /// Score estimators, comma-separated: ssmvr, fd-ssmvr.
    #[arg(long, value_delimiter = ',')]
    pub estimators: Option<Vec<String>>,
    /// Latent sizes of the MNIST rows, comma-separated (reference 32 and 8).
    #[arg(long, value_delimiter = ',')]
    pub z_dims: Option<Vec<usize>>,
    /// Override the runs per (model, estimator, latent size).
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Override the training steps.
    #[arg(long)]
    pub iters: Option<u64>,
    /// Override the batch size.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Override the hidden width of every MNIST network.
    #[arg(long)]
    pub hidden: Option<usize>,
    /// Override the RMSProp learning rate (MNIST; CelebA's is --celeba-lr).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Override CelebA's RMSProp learning rate (reference 1e-4).
    #[arg(long)]
    pub celeba_lr: Option<f64>,
    /// Override CelebA's latent size (reference 32).
    #[arg(long)]
    pub celeba_z_dim: Option<usize>,
    /// Override FD-SSMVR's step.
    #[arg(long)]
    pub eps: Option<f64>,
    /// Override the test images of the NLL.
    #[arg(long)]
    pub nll_images: Option<usize>,
    /// Override the AIS temperatures.
    #[arg(long)]
    pub ais_temperatures: Option<usize>,
    /// Override the AIS chains per image.
    #[arg(long)]
    pub ais_chains: Option<usize>,
    /// Override the test images of the evaluations along training.
    #[arg(long)]
    pub eval_images: Option<usize>,
    /// Override the evaluations along training.
    #[arg(long)]
    pub eval_points: Option<usize>,
    /// Override the decoder samples of FID (0: no FID; CelebA's Inception FID needs more than
    /// 2048).
    #[arg(long)]
    pub fid_samples: Option<usize>,
    /// Where LeNet's weights and the reference features are cached (default:
    /// `<data>/feature-nets`).
    #[arg(long)]
    pub feature_cache: Option<std::path::PathBuf>,
    /// Master seed.
    #[arg(long)]
    pub seed: Option<u64>,
}

impl Experiment for Table6 {
    const NAME: &'static str = "table6";
    const KIND: Kind = Kind::Repro;
    const ABOUT: &'static str = "Table 6 of FD-SM: the VAE and WAE with implicit encoders on \
        dynamically binarised MNIST, the entropy gradient from a score network trained by SSMVR \
        or FD-SSMVR, with the test NLL by AIS (HMC), the time per iteration of the score \
        estimation alone, FID with LeNet features, samples and reconstructions, beside the \
        paper's. Profiles: quick (2-core CPU, about 10 minutes: latent size 32, 2500 steps, three \
        seeds, AIS with 200 temperatures and 8 chains on 64 test images) and paper (100K steps, \
        latent sizes 32 and 8, AIS with 1000 temperatures and 16 chains on the test set; for a \
        GPU). Writes table6.md, results.json, loss curves, sample and reconstruction grids.";
    const PROFILES: &'static [&'static str] = &["quick", "paper"];
    const TRAINS: bool = true;
    type Config = Table6Config;
    type Row = Run;
    type Options = Table6Options;

    fn config(profile: &str, a: &Table6Options) -> Result<Table6Config> {
        let mut cfg = Table6Config::profile(profile)?;
        if let Some(d) = &a.data {
            cfg.data = d
                .iter()
                .map(|k| Table6Data::parse(k))
                .collect::<Result<_>>()?;
        }
        if let Some(p) = &a.celeba_dir {
            cfg.celeba.dir = Some(p.clone());
        }
        if let Some(n) = a.celeba_train_images {
            cfg.celeba.max_train = Some(n);
        }
        if let Some(n) = a.celeba_test_images {
            cfg.celeba.test_images = n;
        }
        if let Some(w) = a.celeba_width {
            cfg.celeba.nef = w;
            cfg.celeba.ndf = w;
        }
        if let Some(s) = a.celeba_size {
            cfg.celeba.image_size = s;
        }
        if let Some(lr) = a.celeba_lr {
            cfg.celeba.lr = lr;
        }
        if let Some(z) = a.celeba_z_dim {
            cfg.celeba.z_dim = z;
        }
        if let Some(m) = &a.models {
            cfg.models = m.iter().map(|k| parse_model(k)).collect::<Result<_>>()?;
        }
        if let Some(e) = &a.estimators {
            cfg.estimators = e
                .iter()
                .map(|k| Estimator::parse(k))
                .collect::<Result<_>>()?;
        }
        if let Some(z) = &a.z_dims {
            cfg.z_dims = z.clone();
        }
        if let Some(s) = a.seeds {
            cfg.seeds = s;
        }
        if let Some(i) = a.iters {
            cfg.iters = i;
            cfg.checkpoint_every = cfg.checkpoint_every.min(i.max(1));
            cfg.timing_warmup = cfg.timing_warmup.min(i.saturating_sub(1) as usize);
        }
        if let Some(b) = a.batch {
            cfg.batch = b;
        }
        if let Some(h) = a.hidden {
            cfg.hidden = h;
        }
        if let Some(lr) = a.lr {
            cfg.lr = lr;
        }
        if let Some(e) = a.eps {
            cfg.eps = e;
        }
        if let Some(n) = a.nll_images {
            cfg.nll_images = n;
            cfg.nll_batch = cfg.nll_batch.min(n.max(1));
        }
        if let Some(t) = a.ais_temperatures {
            cfg.ais.temperatures = t;
        }
        if let Some(c) = a.ais_chains {
            cfg.ais.chains = c;
        }
        if let Some(n) = a.eval_images {
            cfg.eval_images = n;
        }
        if let Some(n) = a.eval_points {
            cfg.eval_points = n;
        }
        if let Some(n) = a.fid_samples {
            cfg.fid_samples = n;
        }
        if let Some(p) = &a.feature_cache {
            cfg.feature_cache = Some(p.clone());
        }
        if let Some(s) = a.seed {
            cfg.seed = s;
        }
        Ok(cfg)
    }

    fn validate(cfg: &Table6Config) -> Result<()> {
        cfg.validate()
    }

    fn datasets(cfg: &Table6Config) -> Vec<datasets::Dataset> {
        let mut sets = Vec::new();
        if cfg.data.contains(&Table6Data::Mnist) {
            sets.push(datasets::Dataset::Mnist);
        }
        if cfg.data.contains(&Table6Data::Celeba) && cfg.fid_samples > 0 {
            sets.push(datasets::Dataset::FidInception);
        }
        sets
    }

    fn check_supplied_data(cfg: &Table6Config, data_dir: &std::path::Path) -> Result<()> {
        if cfg.data.contains(&Table6Data::Celeba) {
            datasets::check_celeba(&data::celeba_dir(cfg, data_dir))?;
        }
        Ok(())
    }

    fn rows(cfg: &Table6Config) -> Vec<Run> {
        let mut rows = Vec::new();
        for &data in &cfg.data {
            let z_dims = match data {
                Table6Data::Mnist => cfg.z_dims.clone(),
                Table6Data::Celeba => vec![cfg.celeba.z_dim],
            };
            for z_dim in z_dims {
                for &model in &cfg.models {
                    for &estimator in &cfg.estimators {
                        for seed in 0..cfg.seeds as u32 {
                            rows.push(Run {
                                data,
                                model,
                                estimator,
                                z_dim,
                                seed,
                            });
                        }
                    }
                }
            }
        }
        rows
    }

    fn phases(_: &Table6Config, run: Run) -> Vec<Phase> {
        vec![
            Phase {
                name: "train",
                higher_order: run.estimator.higher_order(),
            },
            Phase {
                name: "eval",
                higher_order: false,
            },
        ]
    }

    fn run_phase(
        ctx: &RowContext,
        cfg: &Table6Config,
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
            other => Err(ExpError::Config(format!("table6 has no phase `{other}`"))),
        }
    }

    fn report(ctx: &Context, cfg: &Table6Config, rows: &[(Run, RowStatus)]) -> Result<String> {
        report::write(ctx, cfg, rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_keys_round_trip_and_bad_keys_are_named() {
        for run in Table6::rows(&Table6Config::paper()) {
            assert_eq!(Run::parse(&run.key()).unwrap(), run);
        }
        assert_eq!(Table6::rows(&Table6Config::quick()).len(), 12);
        // Paper: MNIST at two latent sizes and CelebA at one, 4 rows each.
        let paper = Table6::rows(&Table6Config::paper());
        assert_eq!(paper.len(), 12);
        assert_eq!(
            paper
                .iter()
                .filter(|r| r.data == Table6Data::Celeba)
                .count(),
            4
        );
        let celeba = Run::parse("celeba.wae.fd-ssmvr.z32.seed1").unwrap();
        assert_eq!(celeba.data, Table6Data::Celeba);
        assert_eq!(celeba.key(), "celeba.wae.fd-ssmvr.z32.seed1");
        assert_eq!(
            Run::parse("vae.ssmvr.z8.seed0").unwrap().data,
            Table6Data::Mnist
        );
        for bad in [
            "svhn.vae.ssmvr.z32.seed0",
            "vae.ssmvr.z32",
            "gan.ssmvr.z32.seed0",
            "vae.ssm.z32.seed0",
            "vae.ssmvr.32.seed0",
        ] {
            assert!(Run::parse(bad).is_err(), "{bad}");
        }
        let err = Run::parse("vae.ssm.z32.seed0").unwrap_err().to_string();
        assert!(err.contains("fd-ssmvr"), "{err}");
    }

    #[test]
    fn both_estimators_start_from_the_same_networks() {
        let cfg = Table6Config::quick();
        let run = |estimator, seed| Run {
            data: Table6Data::Mnist,
            model: AutoencoderKind::Vae,
            estimator,
            z_dim: 32,
            seed,
        };
        assert_eq!(
            run(Estimator::Ssmvr, 0).seed_value(&cfg),
            run(Estimator::FdSsmvr, 0).seed_value(&cfg)
        );
        assert_ne!(
            run(Estimator::Ssmvr, 0).seed_value(&cfg),
            run(Estimator::Ssmvr, 1).seed_value(&cfg)
        );
    }

    #[test]
    fn bad_settings_are_refused_by_name() {
        let bad = |f: &dyn Fn(&mut Table6Config), word: &str| {
            let mut cfg = Table6Config::quick();
            f(&mut cfg);
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(word), "{word}: {err}");
        };
        bad(&|c| c.z_dims = vec![0], "latent sizes");
        bad(&|c| c.lr = -1.0, "lr");
        bad(&|c| c.fid_samples = 50, "fid_samples");
        bad(&|c| c.nll_images = 20_000, "10000 test images");
        bad(&|c| c.ais.chains = 0, "chains");
        let celeba = |f: &dyn Fn(&mut Table6Config), word: &str| {
            bad(
                &|c: &mut Table6Config| {
                    c.data = vec![Table6Data::Celeba];
                    c.fid_samples = 5000;
                    f(c)
                },
                word,
            )
        };
        celeba(&|c| c.celeba.image_size = 40, "multiple of 16");
        celeba(&|c| c.fid_samples = 1000, "Inception");
        celeba(&|c| c.celeba.lr = 0.0, "celeba.lr");
        celeba(&|c| c.celeba.max_train = Some(10), "max_train");
        assert!(Table6Config::quick().validate().is_ok());
        assert!(Table6Config::paper().validate().is_ok());
    }
}
