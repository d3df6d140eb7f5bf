//! The training loop shared by all experiments: Adam with a cosine or constant schedule and
//! gradient clipping, a guard that stops on a non-finite or exploding loss while keeping the last
//! good checkpoint, atomic checkpoints every N steps, exact resume (bit-identical parameters,
//! since batches and noise are pure functions of the step and any other state travels in the
//! checkpoint through [`TrainState`]), and a progress bar with loss and it/s.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Tensor, Var};
use candle_nn::VarMap;
use indicatif::{ProgressBar, ProgressStyle};

use crate::checkpoint::{self, CheckpointMeta};
use crate::error::{Result, TrainError};
use crate::optim::{clip_grad_norm, Adam, AdamConfig, LrSchedule, RmsPropConfig};

/// How to train. [`TrainOptions::new`] sets everything but the step count and the learning
/// rate to defaults (cosine schedule, Adam (0.9, 0.95), no clipping, no checkpoints, a progress
/// bar); the `with_*` methods change one setting each.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Total optimisation steps.
    pub iters: u64,
    /// Base learning rate.
    pub lr: f64,
    /// How the rate moves from `lr` over `iters`.
    pub schedule: LrSchedule,
    /// Adam hyperparameters.
    pub adam: AdamConfig,
    /// Train with RMSProp of these settings instead of Adam (`adam` is then unused).
    pub rmsprop: Option<RmsPropConfig>,
    /// Global gradient-norm clip.
    pub clip: Option<f64>,
    /// The checkpoint file, or `None` to train without checkpoints (and without resume).
    pub checkpoint: Option<PathBuf>,
    /// Checkpoint every this many steps (and at the end).
    pub checkpoint_every: u64,
    /// Continue from `checkpoint` if it exists.
    pub resume: bool,
    /// Stop (checkpointed) once this many steps are complete, to continue later with `resume`;
    /// `None` trains to `iters`.
    pub stop_after: Option<u64>,
    /// A loss whose magnitude exceeds this counts as diverged.
    pub explode_threshold: f64,
    /// Draw a progress bar.
    pub progress: bool,
    /// Shown in front of the progress bar (e.g. the method trained).
    pub label: String,
    /// The run's configuration as JSON; a checkpoint of another configuration is not resumed.
    pub config_json: String,
}

impl TrainOptions {
    /// `iters` steps at base rate `lr`, cosine-annealed to zero; Adam (0.9, 0.95, 1e-8), no
    /// gradient clipping, no checkpoints, divergence above `1e8`, a progress bar.
    pub fn new(iters: u64, lr: f64) -> Self {
        Self {
            iters,
            lr,
            schedule: LrSchedule::Cosine,
            adam: AdamConfig::default(),
            rmsprop: None,
            clip: None,
            checkpoint: None,
            checkpoint_every: iters.clamp(1, 1000),
            resume: false,
            stop_after: None,
            explode_threshold: 1e8,
            progress: true,
            label: String::new(),
            config_json: String::new(),
        }
    }

    /// Checkpoints to `path` every `every` steps and at the end; with `resume`, a run continues
    /// from `path` when it exists (a checkpoint of another `config_json` is refused).
    pub fn with_checkpoint(mut self, path: impl Into<PathBuf>, every: u64, resume: bool) -> Self {
        self.checkpoint = Some(path.into());
        self.checkpoint_every = every;
        self.resume = resume;
        self
    }

    /// The learning-rate schedule.
    pub fn with_schedule(mut self, schedule: LrSchedule) -> Self {
        self.schedule = schedule;
        self
    }

    /// Adam's hyperparameters.
    pub fn with_adam(mut self, adam: AdamConfig) -> Self {
        self.adam = adam;
        self
    }

    /// Trains with RMSProp ([`Adam::rmsprop`]) instead of Adam.
    pub fn with_rmsprop(mut self, rmsprop: RmsPropConfig) -> Self {
        self.rmsprop = Some(rmsprop);
        self
    }

    /// Clips the global gradient norm to `max_norm`.
    pub fn with_clip(mut self, max_norm: f64) -> Self {
        self.clip = Some(max_norm);
        self
    }

    /// Draws a progress bar (`true`) or not, labelled `label`.
    pub fn with_progress(mut self, progress: bool, label: impl Into<String>) -> Self {
        self.progress = progress;
        self.label = label.into();
        self
    }

    /// The run's configuration as JSON, checked against a checkpoint before resuming.
    pub fn with_config_json(mut self, json: impl Into<String>) -> Self {
        self.config_json = json.into();
        self
    }

    /// Pauses (checkpointed) once `steps` steps are complete.
    pub fn with_stop_after(mut self, steps: u64) -> Self {
        self.stop_after = Some(steps);
        self
    }
}

/// What happened at one step.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepRecord {
    /// Zero-based step index.
    pub step: u64,
    /// The loss before the update.
    pub loss: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Wall time of the step (loss, backward, update), seconds.
    pub seconds: f64,
    /// Training wall time after this step, seconds.
    pub train_seconds: f64,
}

/// The result of [`train`].
#[derive(Debug, Clone)]
pub struct TrainSummary {
    /// One record per step run in this call.
    pub records: Vec<StepRecord>,
    /// The step a resumed run started from.
    pub resumed_from: Option<u64>,
    /// Steps complete at return: `iters`, or fewer when `stop_after` paused the run or the
    /// state asked to stop ([`TrainSummary::stopped_early`]).
    pub completed: u64,
    /// Whether the run ended before `iters` because the state asked it to
    /// ([`TrainState::stop_requested`], e.g. early stopping on a validation loss).
    pub stopped_early: bool,
    /// Training wall time of all completed steps, earlier runs' included, seconds.
    pub train_seconds: f64,
}

/// The variables of a `VarMap` in a fixed order (sorted by name).
pub fn named_vars(varmap: &VarMap) -> (Vec<String>, Vec<Var>) {
    layers::sorted_vars(varmap).into_iter().unzip()
}

/// State an experiment carries from step to step besides the trained parameters and their Adam
/// moments: a second optimiser (BiSM's variational posterior), persistent Markov chains, the
/// evaluations made so far. It is written into every checkpoint and restored on resume, so a
/// resumed run continues exactly where the interrupted one stopped.
pub trait TrainState {
    /// The state's tensors, with names unique within the state.
    ///
    /// # Errors
    /// Tensor errors.
    fn tensors(&self) -> Result<Vec<(String, Tensor)>>;
    /// The rest of the state as JSON.
    ///
    /// # Errors
    /// A value that does not serialise.
    fn json(&self) -> Result<serde_json::Value>;
    /// Restores what [`TrainState::tensors`] and [`TrainState::json`] returned.
    ///
    /// # Errors
    /// A missing or misshapen tensor, malformed JSON.
    fn restore(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        json: &serde_json::Value,
    ) -> Result<()>;
    /// Whether training should end now (checked before every step; the state it is decided from
    /// travels in the checkpoint, so a resumed run ends at the same step). Early stopping on a
    /// validation loss sets it; the default never stops.
    fn stop_requested(&self) -> bool {
        false
    }
}

/// No state besides the parameters.
impl TrainState for () {
    fn tensors(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(Vec::new())
    }

    fn json(&self) -> Result<serde_json::Value> {
        Ok(serde_json::Value::Null)
    }

    fn restore(&mut self, _: &HashMap<String, Tensor>, _: &serde_json::Value) -> Result<()> {
        Ok(())
    }
}

/// Runs (or resumes) training. `loss_at(step)` must build the loss of step `step` from data and
/// noise that depend only on `step`; `after_step` sees every record (for evaluation snapshots).
///
/// # Errors
/// [`TrainError::Diverged`] on a bad loss or gradient (the checkpoint on disk is the last good
/// one), [`TrainError::Checkpoint`] for a checkpoint of another run, and any error of `loss_at`.
pub fn train(
    varmap: &VarMap,
    opts: &TrainOptions,
    loss_at: &mut dyn FnMut(u64) -> candle_core::Result<Tensor>,
    after_step: &mut dyn FnMut(&StepRecord) -> Result<()>,
) -> Result<TrainSummary> {
    train_with_state(
        varmap,
        opts,
        &mut (),
        &mut |step, _| loss_at(step),
        &mut |record, _| after_step(record),
    )
}

/// [`train`] for an experiment with its own [`TrainState`]: `loss_at` and `after_step` get the
/// state to read and update (e.g. to take the lower-level optimiser's steps inside `loss_at`),
/// and the state is checkpointed with the parameters and restored on resume. `after_step` may
/// fail with the caller's own error type `E`, which the training errors convert into.
///
/// # Errors
/// As [`train`], and the state's own errors.
pub fn train_with_state<S: TrainState, E>(
    varmap: &VarMap,
    opts: &TrainOptions,
    state: &mut S,
    loss_at: &mut dyn FnMut(u64, &mut S) -> candle_core::Result<Tensor>,
    after_step: &mut dyn FnMut(&StepRecord, &mut S) -> std::result::Result<(), E>,
) -> std::result::Result<TrainSummary, E>
where
    E: From<TrainError> + From<candle_core::Error>,
{
    if opts.iters == 0 || opts.checkpoint_every == 0 || !(opts.lr.is_finite() && opts.lr > 0.0) {
        return Err(E::from(TrainError::Config(format!(
            "iters ({}) and checkpoint_every ({}) must be >= 1 and lr ({}) > 0",
            opts.iters, opts.checkpoint_every, opts.lr
        ))));
    }
    let (names, vars) = named_vars(varmap);
    if vars.is_empty() {
        return Err(E::from(TrainError::Config(
            "the VarMap holds no variables to train".into(),
        )));
    }
    let mut adam = match opts.rmsprop {
        Some(rmsprop) => Adam::rmsprop(vars.clone(), rmsprop)?,
        None => Adam::new(vars.clone(), opts.adam)?,
    };
    let (mut start, mut train_seconds, mut resumed_from) = (0, 0.0, None);
    let resume_from = opts
        .checkpoint
        .as_ref()
        .filter(|path| opts.resume && path.is_file());
    if let Some(path) = resume_from {
        let loaded = checkpoint::load(path, vars[0].device())?;
        if loaded.meta.config != opts.config_json {
            return Err(E::from(TrainError::Checkpoint {
                path: path.clone(),
                problem: format!(
                    "it was written by a run with a different configuration ({}); remove it or \
                     drop --resume",
                    describe_difference(
                        &loaded.meta.config,
                        &opts.config_json,
                        "in the checkpoint"
                    )
                ),
            }));
        }
        for (i, name) in names.iter().enumerate() {
            let missing = || TrainError::Checkpoint {
                path: path.clone(),
                problem: format!("no tensor for {name}"),
            };
            vars[i].set(loaded.params.get(name).ok_or_else(missing)?)?;
            adam.set_moments(
                i,
                loaded.m.get(name).ok_or_else(missing)?,
                loaded.v.get(name).ok_or_else(missing)?,
            )?;
        }
        adam.t = loaded.meta.adam_t;
        state
            .restore(&loaded.extra, &loaded.meta.extra)
            .map_err(|e| TrainError::Checkpoint {
                path: path.clone(),
                problem: format!("the experiment's state does not restore: {e}"),
            })?;
        start = loaded.meta.step;
        train_seconds = loaded.meta.train_seconds;
        resumed_from = Some(start);
    }
    let bar = if opts.progress {
        ProgressBar::new(opts.iters)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} {bar:30} {pos}/{len} {per_sec} eta {eta} loss {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(opts.label.clone());
    bar.set_position(start);
    let mut last_saved = resumed_from;
    let kept = |saved: Option<u64>| match (&opts.checkpoint, saved) {
        (Some(path), Some(s)) => format!("The checkpoint {} (step {s}) is intact.", path.display()),
        (Some(_), None) => "No checkpoint had been written yet.".to_string(),
        (None, _) => "Checkpointing is off.".to_string(),
    };
    let mut records = Vec::new();
    let end = opts.stop_after.map_or(opts.iters, |s| s.min(opts.iters));
    let mut completed = end.max(start);
    let mut stopped_early = false;
    for step in start..end {
        if state.stop_requested() {
            (completed, stopped_early) = (step, true);
            break;
        }
        let t0 = Instant::now();
        let loss = match loss_at(step, state) {
            Ok(loss) => loss,
            // The objectives refuse a model whose log-density is not finite: the parameters
            // went bad, which is a divergence like a non-finite loss.
            Err(e) if sm_objectives::is_non_finite_output(&e) => {
                bar.abandon();
                return Err(E::from(TrainError::Diverged {
                    step,
                    what: e.to_string(),
                    kept: kept(last_saved),
                }));
            }
            Err(e) => return Err(e.into()),
        };
        let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if !value.is_finite() || value.abs() > opts.explode_threshold {
            bar.abandon();
            return Err(E::from(TrainError::Diverged {
                step,
                what: format!("loss = {value}"),
                kept: kept(last_saved),
            }));
        }
        let mut grads = loss.backward()?;
        drop(loss);
        let grad_norm = clip_grad_norm(&mut grads, adam.vars(), opts.clip)?;
        if !grad_norm.is_finite() {
            bar.abandon();
            return Err(E::from(TrainError::Diverged {
                step,
                what: format!("gradient norm = {grad_norm}"),
                kept: kept(last_saved),
            }));
        }
        let lr = opts.schedule.lr(opts.lr, step, opts.iters);
        adam.step_with_lr(&grads, lr)?;
        drop(grads);
        let seconds = t0.elapsed().as_secs_f64();
        train_seconds += seconds;
        let record = StepRecord {
            step,
            loss: value,
            grad_norm,
            lr,
            seconds,
            train_seconds,
        };
        records.push(record);
        bar.set_message(format!("{value:.4e}"));
        bar.inc(1);
        // The step's evaluations belong to the state the checkpoint captures.
        after_step(&record, state)?;
        let done = step + 1;
        let due = done % opts.checkpoint_every == 0 || done == end || state.stop_requested();
        if let (true, Some(path)) = (due, &opts.checkpoint) {
            let meta = CheckpointMeta {
                step: done,
                adam_t: adam.t,
                train_seconds,
                config: opts.config_json.clone(),
                extra: state.json()?,
            };
            checkpoint::save(
                path,
                &names,
                &vars,
                adam.moments().0,
                adam.moments().1,
                state.tensors()?,
                &meta,
            )?;
            last_saved = Some(done);
        }
    }
    bar.finish_and_clear();
    Ok(TrainSummary {
        records,
        resumed_from,
        completed,
        stopped_early,
        train_seconds,
    })
}

/// Which settings differ between two configurations given as JSON: the paths of the differing
/// values with both values (`iters: 100 in the checkpoint, 200 now` for `saved_as` "in the
/// checkpoint"), at most five; the texts themselves when they are not JSON.
pub fn describe_difference(saved: &str, now: &str, saved_as: &str) -> String {
    fn walk(
        path: &str,
        a: &serde_json::Value,
        b: &serde_json::Value,
        saved_as: &str,
        out: &mut Vec<String>,
    ) {
        use serde_json::Value;
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    match (x.get(k), y.get(k)) {
                        (Some(u), Some(v)) => walk(&p, u, v, saved_as, out),
                        (u, v) => out.push(format!(
                            "{p}: {} {saved_as}, {} now",
                            u.map_or("absent".into(), ToString::to_string),
                            v.map_or("absent".into(), ToString::to_string)
                        )),
                    }
                }
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                for (i, (u, v)) in x.iter().zip(y).enumerate() {
                    let p = if path.is_empty() {
                        format!("[{i}]")
                    } else {
                        format!("{path}[{i}]")
                    };
                    walk(&p, u, v, saved_as, out);
                }
            }
            _ if a != b => out.push(format!("{path}: {a} {saved_as}, {b} now")),
            _ => {}
        }
    }
    match (
        serde_json::from_str::<serde_json::Value>(saved),
        serde_json::from_str::<serde_json::Value>(now),
    ) {
        (Ok(a), Ok(b)) => {
            let mut out = Vec::new();
            walk("", &a, &b, saved_as, &mut out);
            let more = out.len().saturating_sub(5);
            out.truncate(5);
            if more > 0 {
                out.push(format!("and {more} more"));
            }
            if out.is_empty() {
                "the same settings, written differently".into()
            } else {
                out.join("; ")
            }
        }
        _ => format!("{saved:?} {saved_as}, {now:?} now"),
    }
}
