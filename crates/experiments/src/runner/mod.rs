//! The experiment runner: what every experiment of the papers (a table, a figure, a benchmark)
//! shares. An experiment is a type implementing [`Experiment`]: its configuration with named
//! profiles, its rows, the phases a row runs (train, evaluate, measure) and its report. The
//! runner owns the rest: the results directory and its `config.json`, one child process per
//! row and phase (so that a row's peak memory is its own and Candle's higher-order mode is on
//! only where a phase needs it), memory and time limits for measurements, pausing after a step
//! count and resuming from checkpoints, and the command line ([`cli`]).
//!
//! Layout of a results directory: `config.json`, `rows/<row key>/` (each phase's files and
//! `<phase>.outcome.json`), and whatever the report writes (JSON, Markdown, PNG); `.lock` while
//! a run holds it ([`lock`]).

pub mod cli;
pub mod limits;
pub mod lock;

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::Device;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sm_objectives::autodiff::{HigherOrder, HIGHER_ORDER_ENV};

use crate::error::{io_err, ExpError, Result};
use crate::report::{read_json, remove_if_exists, write_json};
use crate::RunControl;
use limits::{run_limited, Limits};

/// A row of an experiment: one method, objective or measurement cell.
pub trait ExperimentRow: Copy + PartialEq + Debug + Serialize + DeserializeOwned {
    /// The command-line and directory key, e.g. `fd-ssm`.
    fn key(&self) -> String;
    /// The name printed in reports, e.g. `FD-SSM`.
    fn label(&self) -> String;
    /// Parses [`ExperimentRow::key`].
    ///
    /// # Errors
    /// [`ExpError::Config`] listing the valid keys.
    fn parse(s: &str) -> Result<Self>;
}

/// Whether an experiment reproduces a result of the papers or measures this implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A table or figure of the papers (`cargo xtask repro <name>`).
    Repro,
    /// A measurement of cost (`cargo xtask bench <name>`).
    Bench,
}

/// A step of a row that runs in its own child process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phase {
    /// Its name, e.g. `train`.
    pub name: &'static str,
    /// Whether it differentiates through gradients (Candle's higher-order mode on).
    pub higher_order: bool,
}

/// How a phase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PhaseOutcome {
    /// It did all its work.
    Done,
    /// Training stopped after this many steps as [`RunControl::stop_after`] asked, with
    /// everything checkpointed.
    Paused {
        /// The completed steps.
        step: u64,
    },
}

/// How a row ended in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RowStatus {
    /// Every phase is done.
    Done,
    /// Training paused after this many steps; later phases did not run.
    Paused {
        /// The completed steps.
        step: u64,
    },
    /// A measurement stopped at a limit or failed; the run went on without it.
    Failed {
        /// Why.
        reason: String,
    },
    /// Not attempted.
    Skipped {
        /// Why.
        reason: String,
    },
}

/// What a run shares with every phase and with the report.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The device, made once per process.
    pub device: &'a Device,
    /// The data directory.
    pub data_dir: &'a Path,
    /// The results directory.
    pub out: &'a Path,
    /// Progress bars, resuming and pausing.
    pub control: RunControl,
}

impl Context<'_> {
    /// The directory of the row with key `key`: `<out>/rows/<key>`.
    pub fn row_dir(&self, key: &str) -> PathBuf {
        self.out.join("rows").join(key)
    }
}

/// What a phase of one row gets.
#[derive(Debug, Clone)]
pub struct RowContext<'a> {
    /// The run's context.
    pub run: Context<'a>,
    /// The row's directory (created before the phase starts).
    pub dir: PathBuf,
    /// The proof of Candle's higher-order mode, for a phase that asked for it.
    pub higher_order: Option<HigherOrder>,
}

impl RowContext<'_> {
    /// Training options for this row: `iters` steps at base rate `lr`, checkpoints in
    /// `<row dir>/checkpoint.safetensors` every `every` steps, resuming, pausing and progress as
    /// the run asks, labelled `label`, and `identity` (the settings a checkpoint must match) as
    /// the configuration JSON. The schedule, optimiser and clip are left at their defaults.
    ///
    /// # Errors
    /// `identity` does not serialise.
    pub fn train_options(
        &self,
        iters: u64,
        lr: f64,
        every: u64,
        label: String,
        identity: &impl Serialize,
    ) -> Result<crate::trainer::TrainOptions> {
        let control = self.run.control;
        let mut opts = crate::trainer::TrainOptions::new(iters, lr)
            .with_checkpoint(
                self.dir.join("checkpoint.safetensors"),
                every,
                control.resume,
            )
            .with_progress(control.progress, label)
            .with_config_json(
                serde_json::to_string(identity)
                    .map_err(|e| ExpError::Config(format!("the settings do not serialise: {e}")))?,
            );
        opts.stop_after = control.stop_after;
        Ok(opts)
    }

    /// The proof of higher-order mode.
    ///
    /// # Errors
    /// [`ExpError::Config`] when the phase was not declared to need it.
    pub fn higher_order(&self) -> Result<HigherOrder> {
        self.higher_order.ok_or_else(|| {
            ExpError::Config(
                "this phase differentiates through gradients but was not declared to need \
                 Candle's higher-order mode"
                    .into(),
            )
        })
    }
}

/// An experiment the runner can run; see the module documentation.
pub trait Experiment: 'static {
    /// The name on the command line and of the default results directory, e.g. `table2`.
    const NAME: &'static str;
    /// Repro or bench.
    const KIND: Kind;
    /// One paragraph for `--help`.
    const ABOUT: &'static str;
    /// The profile names, the default first (e.g. `quick`, `paper`).
    const PROFILES: &'static [&'static str];
    /// Whether rows train with checkpoints, so that `--resume` and `--stop-after` apply.
    const TRAINS: bool;
    /// Everything that defines a run; saved as `config.json`.
    type Config: Clone + Debug + PartialEq + Serialize + DeserializeOwned;
    /// A row.
    type Row: ExperimentRow;
    /// The experiment's own command-line options (overrides of the profile's settings).
    type Options: clap::Args;

    /// The settings of profile `profile` with the options applied.
    ///
    /// # Errors
    /// An unknown profile or an unusable option.
    fn config(profile: &str, opts: &Self::Options) -> Result<Self::Config>;
    /// Checks every setting a run depends on.
    ///
    /// # Errors
    /// [`ExpError::Config`] naming the bad value.
    fn validate(cfg: &Self::Config) -> Result<()>;
    /// The data sets the run reads (made complete in the data directory before any row starts).
    fn datasets(_cfg: &Self::Config) -> Vec<datasets::Dataset> {
        Vec::new()
    }
    /// Checks the data the run reads that cannot be downloaded (user-supplied), before any row
    /// starts.
    ///
    /// # Errors
    /// The data is missing, with where to put it and how to get it.
    fn check_supplied_data(_cfg: &Self::Config, _data_dir: &Path) -> Result<()> {
        Ok(())
    }
    /// The rows to run, in order.
    fn rows(cfg: &Self::Config) -> Vec<Self::Row>;
    /// The phases of `row`, in order.
    fn phases(cfg: &Self::Config, row: Self::Row) -> Vec<Phase>;
    /// Limits on every child; with them a child that passes one (or fails) is recorded as
    /// [`RowStatus::Failed`] and the run goes on, without them it stops the run.
    fn limits(_cfg: &Self::Config) -> Option<Limits> {
        None
    }
    /// Why `row` is not attempted given the rows before it, if it is not.
    fn skip(
        _cfg: &Self::Config,
        _row: Self::Row,
        _before: &[(Self::Row, RowStatus)],
    ) -> Option<String> {
        None
    }
    /// Runs `phase` of `row` in this process, writing its files into `ctx.dir`.
    ///
    /// # Errors
    /// Whatever stops the phase.
    fn run_phase(
        ctx: &RowContext,
        cfg: &Self::Config,
        row: Self::Row,
        phase: &str,
    ) -> Result<PhaseOutcome>;
    /// Reads the rows' files, writes the results (JSON, Markdown, figures) into `ctx.out` and
    /// returns the Markdown report.
    ///
    /// # Errors
    /// Unreadable row files, I/O and plotting errors.
    fn report(ctx: &Context, cfg: &Self::Config, rows: &[(Self::Row, RowStatus)])
        -> Result<String>;
}

/// What [`run`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome<R> {
    /// Every row ran; the report is written and returned.
    Finished(String),
    /// These rows paused after the given steps (checkpointed, later phases not run) and no
    /// report was written; run again with `resume`.
    Paused(Vec<(R, u64)>),
}

/// Where [`run`] writes and how it starts children.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The results directory.
    pub out: PathBuf,
    /// Progress bars, resuming and pausing.
    pub control: RunControl,
    /// The executable whose `row` subcommand runs a phase ([`cli`]).
    pub exe: PathBuf,
}

/// The end of a training phase that yields a result, or `None` when `--stop-after` paused it
/// (after `min(stop_after, iters)` steps): the result is written to `<row dir>/result.json`.
///
/// # Errors
/// Writing the file.
pub fn finish_training<T: Serialize>(
    ctx: &RowContext,
    result: Option<T>,
    iters: u64,
) -> Result<PhaseOutcome> {
    match result {
        Some(result) => {
            write_json(&ctx.dir.join("result.json"), &result)?;
            Ok(PhaseOutcome::Done)
        }
        None => Ok(PhaseOutcome::Paused {
            step: ctx.run.control.stop_after.unwrap_or(0).min(iters),
        }),
    }
}

/// The file a phase's outcome is written to.
pub fn outcome_file(row_dir: &Path, phase: &str) -> PathBuf {
    row_dir.join(format!("{phase}.outcome.json"))
}

/// Runs experiment `E` with settings `cfg`: checks them, makes the data sets complete, writes
/// `config.json`, runs every phase of every row in a child process of `opts.exe`, and writes the
/// report.
///
/// # Errors
/// Bad settings, missing data, a child that cannot be started or (without limits) fails, I/O
/// errors and the report's errors.
pub fn run<E: Experiment>(
    cfg: &E::Config,
    device: &Device,
    opts: &RunOptions,
) -> Result<RunOutcome<E::Row>> {
    E::validate(cfg)?;
    if opts.out.exists() && !opts.out.is_dir() {
        return Err(ExpError::Config(format!(
            "--out {} is a file, not a directory",
            opts.out.display()
        )));
    }
    for dataset in E::datasets(cfg) {
        crate::setup::ensure_data(&opts.data_dir, dataset)?;
    }
    E::check_supplied_data(cfg, &opts.data_dir)?;
    let _lock = lock::OutputLock::acquire(&opts.out)?;
    let cfg_path = opts.out.join("config.json");
    if opts.control.resume && cfg_path.is_file() {
        let before = std::fs::read_to_string(&cfg_path).map_err(io_err(&cfg_path))?;
        let now = serde_json::to_string(cfg).map_err(|source| ExpError::Json {
            path: cfg_path.clone(),
            source,
        })?;
        let same = serde_json::from_str::<serde_json::Value>(&before).ok()
            == serde_json::from_str::<serde_json::Value>(&now).ok();
        if !same {
            eprintln!(
                "note: resuming with settings that differ from {} ({}); rows whose training \
                 settings differ refuse their checkpoints",
                cfg_path.display(),
                train::trainer::describe_difference(&before, &now, "before")
            );
        }
    }
    // The children read this run's settings from a file of their own; `config.json` is
    // replaced only once every row has accepted them (a refused resume leaves it as it was).
    let run_cfg_path = opts.out.join("config.run.json");
    write_json(&run_cfg_path, cfg)?;
    let ctx = Context {
        device,
        data_dir: &opts.data_dir,
        out: &opts.out,
        control: opts.control,
    };
    let done = match run_rows::<E>(cfg, &ctx, &run_cfg_path, opts) {
        Ok(done) => done,
        Err(e) => {
            remove_if_exists(&run_cfg_path)?;
            return Err(e);
        }
    };
    std::fs::rename(&run_cfg_path, &cfg_path).map_err(io_err(&cfg_path))?;
    let paused: Vec<(E::Row, u64)> = done
        .iter()
        .filter_map(|(r, s)| match s {
            RowStatus::Paused { step } => Some((*r, *step)),
            _ => None,
        })
        .collect();
    if !paused.is_empty() {
        return Ok(RunOutcome::Paused(paused));
    }
    Ok(RunOutcome::Finished(E::report(&ctx, cfg, &done)?))
}

/// Runs every phase of every row in child processes reading the settings at `run_cfg_path`.
fn run_rows<E: Experiment>(
    cfg: &E::Config,
    ctx: &Context,
    run_cfg_path: &Path,
    opts: &RunOptions,
) -> Result<Vec<(E::Row, RowStatus)>> {
    let limits = E::limits(cfg);
    let rows = E::rows(cfg);
    let mut done: Vec<(E::Row, RowStatus)> = Vec::new();
    for (i, &row) in rows.iter().enumerate() {
        if let Some(reason) = E::skip(cfg, row, &done) {
            eprintln!(
                "== [{}/{}] {}: skipped, {reason}",
                i + 1,
                rows.len(),
                row.label()
            );
            done.push((row, RowStatus::Skipped { reason }));
            continue;
        }
        let dir = ctx.row_dir(&row.key());
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let mut status = RowStatus::Done;
        for phase in E::phases(cfg, row) {
            eprintln!(
                "== [{}/{}] {}: {}",
                i + 1,
                rows.len(),
                row.label(),
                phase.name
            );
            let file = outcome_file(&dir, phase.name);
            remove_if_exists(&file)?;
            let mut cmd = child_command::<E>(run_cfg_path, row, phase, opts);
            let failure = match limits {
                Some(l) => run_limited(&mut cmd, l)?.failure(l),
                None => {
                    let s = cmd.status().map_err(|e| {
                        ExpError::Child(format!("could not start {}: {e}", opts.exe.display()))
                    })?;
                    if !s.success() {
                        return Err(ExpError::Child(format!(
                            "{} of {} `{}` failed ({s}); its error is printed above",
                            phase.name,
                            E::NAME,
                            row.key()
                        )));
                    }
                    None
                }
            };
            if let Some(reason) = failure {
                eprintln!("   {}: {reason}", row.label());
                status = RowStatus::Failed { reason };
                break;
            }
            match read_json::<PhaseOutcome>(&file)? {
                PhaseOutcome::Done => {}
                PhaseOutcome::Paused { step } => {
                    eprintln!("   paused after step {step}");
                    status = RowStatus::Paused { step };
                    break;
                }
            }
        }
        done.push((row, status));
    }
    Ok(done)
}

fn child_command<E: Experiment>(
    cfg_path: &Path,
    row: E::Row,
    phase: Phase,
    opts: &RunOptions,
) -> Command {
    let mut cmd = Command::new(&opts.exe);
    cmd.args([cli::ROW_COMMAND, E::NAME, "--phase", phase.name, "--row"])
        .arg(row.key())
        .arg("--config")
        .arg(cfg_path)
        .arg("--data-dir")
        .arg(&opts.data_dir)
        .arg("--out")
        .arg(&opts.out);
    if opts.control.resume {
        cmd.arg("--resume");
    }
    if let Some(n) = opts.control.stop_after {
        cmd.args(["--stop-after", &n.to_string()]);
    }
    if !opts.control.progress {
        cmd.arg("--no-progress");
    }
    cmd.env(lock::RUN_PID_ENV, std::process::id().to_string());
    if phase.higher_order {
        cmd.env(HIGHER_ORDER_ENV, "1");
    } else {
        cmd.env_remove(HIGHER_ORDER_ENV);
    }
    cmd
}

/// Runs `phase` of the row `row_key` in this process (the child side of [`run`]) and writes its
/// outcome file.
///
/// # Errors
/// An unreadable or invalid configuration, an unknown row or phase, higher-order mode off for a
/// phase that needs it, and the phase's own errors.
pub fn run_row<E: Experiment>(
    cfg_path: &Path,
    row_key: &str,
    phase: &str,
    ctx: Context,
) -> Result<PhaseOutcome> {
    lock::exit_with_parent();
    let cfg: E::Config = read_json(cfg_path)?;
    E::validate(&cfg)?;
    let row = E::Row::parse(row_key)?;
    let phases = E::phases(&cfg, row);
    let spec = phases.iter().find(|p| p.name == phase).ok_or_else(|| {
        ExpError::Config(format!(
            "{} has no phase `{phase}` for row `{row_key}`; phases: {}",
            E::NAME,
            phases.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
        ))
    })?;
    let higher_order = if spec.higher_order {
        Some(HigherOrder::current().ok_or_else(|| {
            ExpError::Config(format!(
                "phase `{phase}` of `{row_key}` needs Candle's higher-order mode: start it with \
                 {HIGHER_ORDER_ENV}=1 (the runner does)"
            ))
        })?)
    } else {
        None
    };
    let dir = ctx.row_dir(row_key);
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let row_ctx = RowContext {
        run: ctx,
        dir,
        higher_order,
    };
    let outcome = E::run_phase(&row_ctx, &cfg, row, phase)?;
    write_json(&outcome_file(&row_ctx.dir, phase), &outcome)?;
    Ok(outcome)
}
