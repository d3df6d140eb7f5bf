//! `experiments`: the experiments that reproduce the FD score-matching papers' tables and
//! figures and measure this implementation, and the runner they share.
//!
//! - [`runner`]: an experiment is a type implementing [`runner::Experiment`] (configuration
//!   with named profiles, rows, the phases of a row, the report); the runner owns the results
//!   directory, one child process per row and phase, limits, pausing and resuming, and the
//!   command line of the `experiments` binary. [`EXPERIMENTS`] lists every experiment.
//! - One folder per experiment: [`table1`], [`table2`], [`table3`], [`table4`], [`table5`], [`table6`], [`grbm_checkerboard`], [`bism_table1`], [`deep_eblvm`] (repro),
//!   [`step_bench`], [`order_scaling`] (bench).
//! - Shared pieces: the objectives the experiments compare ([`objective`]), training that keeps
//!   the best validated parameters ([`keep_best`]), the deep-EBM training of Tables 2 and 4
//!   ([`deep_ebm`]), data and model
//!   set-up ([`setup`]), figures ([`plot`]), result files ([`report`]), memory measurement
//!   ([`memory`], [`allocator`]).
//!
//! Training, sampling and evaluation come from the `train` crate (re-exported here as
//! [`trainer`], [`optim`], [`checkpoint`], [`eval`], [`langevin`]).

pub mod allocator;
pub mod bism_table1;
pub mod deep_eblvm;
pub mod deep_ebm;
mod error;
pub mod grbm_checkerboard;
pub mod inception_fid;
pub mod keep_best;
pub mod memory;
pub mod objective;
pub mod order_scaling;
pub mod plot;
pub mod report;
pub mod runner;
pub mod setup;
pub mod sliced_estimator;
pub mod step_bench;
pub mod table1;
pub mod table2;
pub mod table3;
pub mod table4;
pub mod table5;
pub mod table6;
pub mod toy_gallery;

pub use error::{ExpError, Result};
pub use train::{checkpoint, eval, langevin, optim, step_seed, trainer};

use runner::cli::{Entry, Registered};

/// Every experiment, in the order `experiments list` prints them.
pub static EXPERIMENTS: [&dyn Registered; 12] = [
    &Entry::<table1::Table1>::new(),
    &Entry::<table2::Table2>::new(),
    &Entry::<table3::Table3>::new(),
    &Entry::<table4::Table4>::new(),
    &Entry::<table5::Table5>::new(),
    &Entry::<table6::Table6>::new(),
    &Entry::<grbm_checkerboard::GrbmCheckerboard>::new(),
    &Entry::<bism_table1::BismTable1>::new(),
    &Entry::<deep_eblvm::DeepEblvmExperiment>::new(),
    &Entry::<toy_gallery::ToyGallery>::new(),
    &Entry::<step_bench::StepBench>::new(),
    &Entry::<order_scaling::OrderScaling>::new(),
];

/// How to run an experiment, besides its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunControl {
    /// Draw progress bars.
    pub progress: bool,
    /// Continue from the checkpoints in the output directory where they exist (a checkpoint of
    /// other settings is refused); without it, training starts afresh and overwrites them.
    pub resume: bool,
    /// Pause every training run once this many of its steps are complete (checkpointed, to be
    /// continued with `resume`), e.g. to fit a job into a scheduler's time limit.
    pub stop_after: Option<u64>,
}

/// The 1-based steps after which a run of `iters` steps evaluates, `points` times evenly
/// spaced and ending at `iters` (a step is listed once even when `points > iters`).
pub fn eval_steps(iters: u64, points: usize) -> Vec<u64> {
    let mut steps: Vec<u64> = (1..=points as u64)
        .map(|k| (k * iters).div_ceil(points as u64))
        .collect();
    steps.dedup();
    steps
}

/// The settings of the profile `name`: `quick` (a laptop CPU in minutes) or `paper` (the
/// papers' settings, for a GPU or a long run).
///
/// # Errors
/// [`ExpError::Config`] for any other name.
pub fn pick_profile<T>(name: &str, quick: fn() -> T, paper: fn() -> T) -> Result<T> {
    match name {
        "quick" => Ok(quick()),
        "paper" => Ok(paper()),
        other => Err(ExpError::Config(format!(
            "unknown profile `{other}`; expected quick or paper"
        ))),
    }
}

/// Checks that `bytes` of memory, needed by `what`, fit in what this machine has available
/// (where that can be read).
///
/// # Errors
/// [`ExpError::Config`] saying how much is needed and how much there is.
pub fn require_memory(what: &str, bytes: u64) -> Result<()> {
    match memory::available_bytes() {
        Some(available) if bytes > available => Err(ExpError::Config(format!(
            "{what} needs about {:.1} GB, more than the {:.1} GB this machine has available",
            bytes as f64 / 1e9,
            available as f64 / 1e9
        ))),
        _ => Ok(()),
    }
}

/// Checks that a ResNet EBM's trainable state (f32 weights, gradients and Adam's two moments)
/// fits in memory, see [`require_memory`].
///
/// # Errors
/// [`ExpError::Config`] naming the width, the parameters and the GB needed.
pub fn require_resnet_memory(model: &models::ResNetEbmConfig) -> Result<()> {
    require_memory(
        &format!(
            "a width-{} ResNet EBM ({} parameters: weights, gradients and Adam's moments)",
            model.width,
            model.parameter_count()
        ),
        model.parameter_count().saturating_mul(16),
    )
}

/// Checks that every named setting is finite and positive.
///
/// # Errors
/// [`ExpError::Config`] naming the first one that is not.
pub fn require_positive(settings: &[(&str, f64)]) -> Result<()> {
    match settings.iter().find(|(_, v)| !(v.is_finite() && *v > 0.0)) {
        Some((name, v)) => Err(ExpError::Config(format!(
            "{name} must be finite and > 0, got {v}"
        ))),
        None => Ok(()),
    }
}
