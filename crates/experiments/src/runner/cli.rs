//! The command line of the experiment runner: `repro <name>` and `bench <name>` with the
//! options every experiment shares (profile, data and results directories, progress, and for
//! training experiments resume and pause) plus each experiment's own, `list`, and the internal
//! `row` command a run starts its children with. The binary is a thin `main` over [`main`].

use std::marker::PhantomData;
use std::path::PathBuf;

use candle_core::Device;
use clap::{Arg, ArgMatches, Args, Command, FromArgMatches};

use super::{run, run_row, Context, Experiment, Kind, RunOptions, RunOutcome};
use crate::error::{ExpError, Result};
use crate::RunControl;

/// The internal subcommand a run starts its children with.
pub const ROW_COMMAND: &str = "row";

/// The exit status of a run that paused as `--stop-after` asked (checkpointed, no report): not
/// 0, so that a script does not take a paused run for a finished one, and not 1, the status of
/// a failure.
pub const PAUSED_EXIT_CODE: u8 = 3;

/// What the command line did: the text to print and whether the run paused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The report, the list of experiments, or how to continue a paused run.
    pub text: String,
    /// The run paused before its end ([`PAUSED_EXIT_CODE`]).
    pub paused: bool,
}

/// Options of every experiment.
#[derive(Debug, Clone, Args)]
struct SharedArgs {
    /// Data directory (default: $FDSM_DATA_DIR, else the user cache directory). Missing data
    /// sets are downloaded there.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Results directory (default: results/<experiment>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Do not draw progress bars.
    #[arg(long)]
    no_progress: bool,
}

/// Options of the experiments that train with checkpoints.
#[derive(Debug, Clone, Args)]
struct PauseArgs {
    /// Continue every row from its checkpoint in the results directory (a finished row is
    /// evaluated again from its final checkpoint without training; a checkpoint of other
    /// settings is refused).
    #[arg(long)]
    resume: bool,
    /// Pause every row once it has trained this many steps, checkpointed (e.g. to fit a
    /// scheduler's time limit); no report is written. Continue later with --resume.
    #[arg(long)]
    stop_after: Option<u64>,
}

/// The arguments of the internal `row` command.
#[derive(Debug, Clone, Args)]
struct RowArgs {
    /// The phase to run.
    #[arg(long)]
    phase: String,
    /// The row's key.
    #[arg(long)]
    row: String,
    /// The run's config.json.
    #[arg(long)]
    config: PathBuf,
    /// Data directory.
    #[arg(long)]
    data_dir: PathBuf,
    /// Results directory.
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

/// An experiment as the command line sees it, whatever its types.
pub trait Registered: Sync {
    /// [`Experiment::NAME`].
    fn name(&self) -> &'static str;
    /// [`Experiment::KIND`].
    fn kind(&self) -> Kind;
    /// [`Experiment::ABOUT`].
    fn about(&self) -> &'static str;
    /// The `repro <name>` / `bench <name>` command with every option.
    fn command(&self) -> Command;
    /// Runs the experiment with the parsed options.
    ///
    /// # Errors
    /// See [`run`].
    fn run(&self, m: &ArgMatches, device: &Device) -> Result<Finished>;
    /// Runs one phase of one row (the internal `row` command).
    ///
    /// # Errors
    /// See [`run_row`].
    fn row(&self, m: &ArgMatches, device: &Device) -> Result<()>;
}

/// [`Registered`] for the experiment type `E`.
pub struct Entry<E>(PhantomData<fn() -> E>);

impl<E> Entry<E> {
    /// The entry of `E`.
    pub const fn new() -> Self {
        Self(PhantomData)
    }
}

impl<E> Default for Entry<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: Experiment> Registered for Entry<E> {
    fn name(&self) -> &'static str {
        E::NAME
    }

    fn kind(&self) -> Kind {
        E::KIND
    }

    fn about(&self) -> &'static str {
        E::ABOUT
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(E::NAME).arg(
            Arg::new("profile")
                .long("profile")
                .value_name("PROFILE")
                .help(format!(
                    "Settings profile: {} (see the experiment's documentation)",
                    E::PROFILES.join(" or ")
                ))
                .value_parser(E::PROFILES.to_vec())
                .default_value(E::PROFILES[0]),
        );
        cmd = E::Options::augment_args(cmd);
        cmd = SharedArgs::augment_args(cmd);
        if E::TRAINS {
            cmd = PauseArgs::augment_args(cmd);
        }
        // After the argument groups, whose own documentation would otherwise be the about text.
        // A later occurrence of an option overrides an earlier one (scripts append overrides).
        cmd.about(first_sentence(E::ABOUT))
            .long_about(E::ABOUT)
            .args_override_self(true)
    }

    fn run(&self, m: &ArgMatches, device: &Device) -> Result<Finished> {
        let bad = |e: clap::Error| ExpError::Config(e.to_string());
        let shared = SharedArgs::from_arg_matches(m).map_err(bad)?;
        let pause = if E::TRAINS {
            Some(PauseArgs::from_arg_matches(m).map_err(bad)?)
        } else {
            None
        };
        if pause.as_ref().and_then(|p| p.stop_after) == Some(0) {
            return Err(ExpError::Config(
                "--stop-after must be >= 1 (it pauses after that many steps)".into(),
            ));
        }
        let options = E::Options::from_arg_matches(m).map_err(bad)?;
        let profile = m
            .get_one::<String>("profile")
            .map_or(E::PROFILES[0], String::as_str);
        let cfg = E::config(profile, &options)?;
        let out = shared
            .out
            .unwrap_or_else(|| PathBuf::from("results").join(E::NAME));
        let opts = RunOptions {
            data_dir: datasets::resolve_data_dir(shared.data_dir.as_deref()),
            out: out.clone(),
            control: RunControl {
                progress: !shared.no_progress,
                resume: pause.as_ref().is_some_and(|p| p.resume),
                stop_after: pause.and_then(|p| p.stop_after),
            },
            exe: std::env::current_exe().map_err(|e| {
                ExpError::Child(format!("cannot locate this executable to start rows: {e}"))
            })?,
        };
        Ok(match run::<E>(&cfg, device, &opts)? {
            RunOutcome::Finished(report) => Finished {
                text: format!("{report}\nresults written to {}", out.display()),
                paused: false,
            },
            RunOutcome::Paused(rows) => {
                let mut text = String::new();
                for (row, step) in rows {
                    text += &format!(
                        "{}: paused after step {step}\n",
                        super::ExperimentRow::label(&row)
                    );
                }
                Finished {
                    text: text
                        + &format!(
                            "checkpoints in {}; continue with the same options and --resume",
                            out.display()
                        ),
                    paused: true,
                }
            }
        })
    }

    fn row(&self, m: &ArgMatches, device: &Device) -> Result<()> {
        let a = RowArgs::from_arg_matches(m).map_err(|e| ExpError::Config(e.to_string()))?;
        let ctx = Context {
            device,
            data_dir: &a.data_dir,
            out: &a.out,
            control: RunControl {
                progress: !a.no_progress,
                resume: a.resume,
                stop_after: a.stop_after,
            },
        };
        run_row::<E>(&a.config, &a.row, &a.phase, ctx)?;
        Ok(())
    }
}

/// The first sentence of `text`: up to the first full stop followed by a space and a capital
/// letter (so that "Figs. 2-3" does not end it).
pub fn first_sentence(text: &str) -> &str {
    let bytes = text.as_bytes();
    (0..bytes.len().saturating_sub(2))
        .find(|&i| bytes[i] == b'.' && bytes[i + 1] == b' ' && bytes[i + 2].is_ascii_uppercase())
        .map_or(text, |i| &text[..i])
}

/// The whole command line over the experiments `all`.
pub fn command(all: &[&dyn Registered]) -> Command {
    let group = |kind: Kind, name: &'static str, about: &'static str| {
        Command::new(name)
            .about(about)
            .subcommand_required(true)
            .arg_required_else_help(true)
            .subcommands(all.iter().filter(|e| e.kind() == kind).map(|e| e.command()))
    };
    let row = Command::new(ROW_COMMAND)
        .about("(internal) Run one phase of one row in this process")
        .hide(true)
        .subcommand_required(true)
        .subcommands(all.iter().map(|e| {
            RowArgs::augment_args(Command::new(e.name()))
                .about(format!("Run one phase of one row of `{}`", e.name()))
        }));
    Command::new("experiments")
        .about(
            "Reproduce the tables and figures of the finite-difference score-matching papers and \
             measure this implementation; `list` shows every experiment",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .arg_required_else_help(true)
        .subcommand(group(
            Kind::Repro,
            "repro",
            "Reproduce a table or figure of the papers",
        ))
        .subcommand(group(
            Kind::Bench,
            "bench",
            "Measure the cost of this implementation",
        ))
        .subcommand(
            Command::new("list").about("List the experiments, one per line: kind, name, about"),
        )
        .subcommand(row)
}

/// Runs what the parsed command line asks for; `device` opens the device, once.
///
/// # Errors
/// A bad command line (as [`ExpError::Config`], clap's message included) and the run's errors.
pub fn main(
    all: &[&dyn Registered],
    matches: &ArgMatches,
    device: impl FnOnce() -> Result<Device>,
) -> Result<Finished> {
    let find = |name: &str| {
        all.iter()
            .find(|e| e.name() == name)
            .ok_or_else(|| ExpError::Config(format!("unknown experiment `{name}`")))
    };
    match matches.subcommand() {
        Some(("list", _)) => Ok(Finished {
            text: all
                .iter()
                .map(|e| {
                    let kind = match e.kind() {
                        Kind::Repro => "repro",
                        Kind::Bench => "bench",
                    };
                    format!("{kind}\t{}\t{}", e.name(), first_sentence(e.about()))
                })
                .collect::<Vec<_>>()
                .join("\n"),
            paused: false,
        }),
        Some(("repro" | "bench", group)) => {
            let (name, m) = group
                .subcommand()
                .ok_or_else(|| ExpError::Config("no experiment named".into()))?;
            find(name)?.run(m, &device()?)
        }
        Some((ROW_COMMAND, group)) => {
            let (name, m) = group
                .subcommand()
                .ok_or_else(|| ExpError::Config("no experiment named".into()))?;
            find(name)?.row(m, &device()?)?;
            Ok(Finished {
                text: String::new(),
                paused: false,
            })
        }
        _ => Err(ExpError::Config("no command given; see --help".into())),
    }
}
