//! Training that keeps the parameters of the best validation loss (Tables 1 and 3, as the
//! reference implementations select their models): the validation record travels in the
//! checkpoint, the best parameters are written atomically, early stopping after a patience of
//! validations without improvement, and a divergence after the first validation ends training
//! instead of failing it (the best parameters so far are evaluated).

use std::path::{Path, PathBuf};

use candle_core::Tensor;
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use crate::error::{io_err, ExpError, Result};
use crate::trainer::{train_with_state, StepRecord, TrainOptions, TrainState};

/// The validation record: every validation, the best one, and early stopping's count.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct KeepBest {
    /// `(step, validation loss)` of every validation.
    pub curve: Vec<(u64, f64)>,
    /// The best finite validation loss and its step.
    pub best: Option<(u64, f64)>,
    /// Validations since the best one.
    pub since_best: u64,
    /// Stop after this many validations without improvement (from the configuration, not the
    /// checkpoint).
    #[serde(skip)]
    pub patience: Option<u64>,
}

impl KeepBest {
    /// An empty record with early stopping after `patience` validations without improvement.
    pub fn new(patience: Option<u64>) -> Self {
        Self {
            patience,
            ..Self::default()
        }
    }

    /// Records the validation loss `value` after `step` steps, writing `vm` to `path` when it is
    /// the best so far.
    ///
    /// # Errors
    /// The parameters cannot be written.
    pub fn record(&mut self, step: u64, value: f64, vm: &VarMap, path: &Path) -> Result<()> {
        self.curve.push((step, value));
        if value.is_finite() && self.best.is_none_or(|(_, b)| value < b) {
            save_atomic(vm, path)?;
            self.best = Some((step, value));
            self.since_best = 0;
        } else {
            self.since_best += 1;
        }
        Ok(())
    }
}

impl TrainState for KeepBest {
    fn tensors(&self) -> train::Result<Vec<(String, Tensor)>> {
        Ok(Vec::new())
    }

    fn json(&self) -> train::Result<serde_json::Value> {
        serde_json::to_value(self)
            .map_err(|e| train::TrainError::Config(format!("validation record: {e}")))
    }

    fn restore(
        &mut self,
        _: &std::collections::HashMap<String, Tensor>,
        json: &serde_json::Value,
    ) -> train::Result<()> {
        let saved: KeepBest = serde_json::from_value(json.clone())
            .map_err(|e| train::TrainError::Config(format!("validation record: {e}")))?;
        *self = KeepBest {
            patience: self.patience,
            ..saved
        };
        Ok(())
    }

    fn stop_requested(&self) -> bool {
        self.patience.is_some_and(|p| self.since_best >= p)
    }
}

/// The file of a run's best parameters in its row directory.
pub fn best_file(dir: &Path) -> PathBuf {
    dir.join("best.safetensors")
}

/// Writes the parameters to `path` atomically (a temporary file renamed over it).
///
/// # Errors
/// The file cannot be written.
pub fn save_atomic(vm: &VarMap, path: &Path) -> Result<()> {
    let tmp = path.with_extension("safetensors.tmp");
    vm.save(&tmp).map_err(|e| ExpError::Checkpoint {
        path: tmp.clone(),
        problem: format!("could not write the parameters: {e}"),
    })?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// What [`train_keeping_best`] did.
#[derive(Debug, Clone)]
pub struct Trained {
    /// `(step, loss)` of every step, an interrupted run's earlier steps included.
    pub losses: Vec<(u64, f64)>,
    /// Median step time after the warm-up, ms (`None` when no step ran).
    pub median_step_ms: Option<f64>,
    /// Steps complete.
    pub completed: u64,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Why the loss diverged, when it did (after at least one validation).
    pub diverged: Option<String>,
    /// Whether this call trained no step (a finished run resumed).
    pub nothing_trained: bool,
}

impl Trained {
    /// The step a `--stop-after` pause left the run at, of `iters`.
    pub fn paused_at(&self, iters: u64) -> Option<u64> {
        (self.diverged.is_none() && !self.stopped_early && self.completed < iters)
            .then_some(self.completed)
    }

    /// The step early stopping ended the run at.
    pub fn stopped_early_at(&self) -> Option<u64> {
        self.stopped_early.then_some(self.completed)
    }
}

/// Trains with `opts`, validating through `validate(done_steps)` (which returns the loss when a
/// validation is due) and keeping the best parameters in `best_path`.
///
/// `earlier_losses` are the losses an interrupted run reported (those before the step it
/// resumes from are kept); `what` names the run in errors.
///
/// # Errors
/// A divergence before the first validation (nothing to keep), and any training, data or I/O
/// error.
#[allow(clippy::too_many_arguments)]
pub fn train_keeping_best(
    vm: &VarMap,
    opts: &TrainOptions,
    keep: &mut KeepBest,
    best_path: &Path,
    loss_at: &mut dyn FnMut(u64) -> candle_core::Result<Tensor>,
    validate: &mut dyn FnMut(u64) -> Result<Option<f64>>,
    earlier_losses: Vec<(u64, f64)>,
    warmup: u64,
    what: &str,
) -> Result<Trained> {
    let mut seen: Vec<StepRecord> = Vec::new();
    let mut after = |r: &StepRecord, k: &mut KeepBest| -> Result<()> {
        seen.push(*r);
        if let Some(value) = validate(r.step + 1)? {
            k.record(r.step + 1, value, vm, best_path)?;
        }
        Ok(())
    };
    let result = train_with_state(vm, opts, keep, &mut |step, _| loss_at(step), &mut after);
    let (summary, diverged) = match result {
        Ok(summary) => (Some(summary), None),
        Err(ExpError::Train(e @ train::TrainError::Diverged { .. })) => (None, Some(e.to_string())),
        Err(e) => return Err(e),
    };
    if let Some(why) = &diverged {
        if keep.best.is_none() {
            return Err(ExpError::Config(format!(
                "{what} diverged before its first validation ({why}); lower the learning rate \
                 or validate more often (val_every)"
            )));
        }
    }
    let from = summary.as_ref().and_then(|s| s.resumed_from).unwrap_or(0);
    let mut losses: Vec<(u64, f64)> = earlier_losses
        .into_iter()
        .filter(|(s, _)| *s < from)
        .collect();
    losses.extend(seen.iter().map(|r| (r.step, r.loss)));
    let mut times: Vec<f64> = seen
        .iter()
        .filter(|r| r.step >= warmup)
        .map(|r| r.seconds * 1e3)
        .collect();
    if times.is_empty() {
        times = seen.iter().map(|r| r.seconds * 1e3).collect();
    }
    times.sort_by(f64::total_cmp);
    Ok(Trained {
        losses,
        median_step_ms: times.get(times.len() / 2).copied(),
        completed: summary
            .as_ref()
            .map_or_else(|| seen.last().map_or(from, |r| r.step + 1), |s| s.completed),
        stopped_early: summary.as_ref().is_some_and(|s| s.stopped_early),
        nothing_trained: summary.as_ref().is_some_and(|s| s.records.is_empty()),
        diverged,
    })
}
