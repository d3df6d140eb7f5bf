//! Training one detector of Table 4 (the `train` phase): the deep-EBM ResNet on the run's
//! training set by DSM or FD-DSM ([`crate::deep_ebm`]), or a finished detector of a Table 2 or
//! Table 4 results directory reused when its training settings are the run's.

use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::deep_ebm::{train_deep_ebm, DeepEbmTraining, TrainReport};
use crate::error::{io_err, ExpError, Result};
use crate::objective::Objective;
use crate::report::write_json;
use crate::runner::{ExperimentRow, RowContext};

use super::{data, Run, Table4Config};

/// Where a reused detector came from, written as `reused.json` in the row's directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reused {
    /// The row directory whose checkpoint and `train.json` were copied.
    pub from: PathBuf,
}

/// What a checkpoint must match to stand for this run: the training settings without the
/// timing, checkpoint and snapshot schedules, the objective, and the training set (Table 2's
/// rows use the same triple with MNIST).
pub fn identity(cfg: &Table4Config, run: Run) -> (DeepEbmTraining, Objective, &'static str) {
    (
        cfg.training_of(run.seed).identity(run.method),
        run.method,
        run.train_set.key(),
    )
}

/// Trains one detector (or reuses one, see [`Table4Config::reuse_from`]) and writes
/// `train.json` into the row's directory.
///
/// # Errors
/// Data, configuration, divergence and I/O errors; higher-order mode off for DSM.
pub fn train_run(ctx: &RowContext, cfg: &Table4Config, run: Run) -> Result<TrainReport> {
    cfg.validate()?;
    let identity = identity(cfg, run);
    let mut ctx = ctx.clone();
    let own = ctx.dir.join("checkpoint.safetensors");
    // A resumed row keeps its own checkpoint, and the record of where it came from.
    let keep_own = ctx.run.control.resume && own.is_file();
    if !keep_own {
        crate::report::remove_if_exists(&ctx.dir.join("reused.json"))?;
    }
    if let Some(source) = &cfg.reuse_from {
        if !keep_own {
            if let Some(from) = reusable(source, cfg, run, &identity)? {
                for file in ["checkpoint.safetensors", "train.json"] {
                    let (src, dst) = (from.join(file), ctx.dir.join(file));
                    std::fs::copy(&src, &dst).map_err(io_err(&src))?;
                }
                write_json(&ctx.dir.join("reused.json"), &Reused { from })?;
                // The copied checkpoint is complete: resuming it trains nothing and keeps the
                // original run's timings.
                ctx.run.control.resume = true;
            }
        }
    }
    let raw = data::load(cfg, ctx.run.data_dir, run.train_set, None)?;
    let images = data::to_model(&raw.train, run.train_set, ctx.run.device)?;
    drop(raw);
    train_deep_ebm(
        &ctx,
        &cfg.training_of(run.seed),
        run.method,
        &images,
        &identity,
    )
}

/// The row directory under `source` whose finished checkpoint was trained with `identity`:
/// Table 4's own row key first, then Table 2's run key (`<objective>.seed<k>`) for an MNIST
/// detector. A candidate with other settings is reported on standard error and passed over.
fn reusable(
    source: &Path,
    cfg: &Table4Config,
    run: Run,
    identity: &impl Serialize,
) -> Result<Option<PathBuf>> {
    let want = serde_json::to_string(identity)
        .map_err(|e| ExpError::Config(format!("the settings do not serialise: {e}")))?;
    let mut candidates = vec![source.join("rows").join(run.key())];
    if run.train_set == super::ImageSet::Mnist {
        candidates.push(
            source
                .join("rows")
                .join(format!("{}.seed{}", run.method.key(), run.seed)),
        );
    }
    for dir in candidates {
        let ckpt = dir.join("checkpoint.safetensors");
        if !ckpt.is_file() || !dir.join("train.json").is_file() {
            continue;
        }
        let meta = crate::checkpoint::load(&ckpt, &Device::Cpu)?.meta;
        if meta.config != want {
            eprintln!(
                "{}: not reused for {}: it was trained with other settings",
                ckpt.display(),
                run.label()
            );
        } else if meta.step != cfg.training.iters {
            eprintln!(
                "{}: not reused for {}: it completed {} of {} steps",
                ckpt.display(),
                run.label(),
                meta.step,
                cfg.training.iters
            );
        } else {
            return Ok(Some(dir));
        }
    }
    Ok(None)
}
