//! `cargo xtask`: project automation. `download` fetches datasets (checksummed, resumable)
//! through the datasets crate's `fdsm-data` binary; `repro` reproduces a table or figure and
//! `bench` runs a measurement through the `experiments` binary (which lists them: `cargo xtask
//! list`); `ci` runs the checks CI runs (format, lints, the test suite of README.md);
//! `gpu-smoke` builds for a GPU and runs a few steps of everything on it. This crate itself
//! depends on no Candle crate, so that it builds in seconds.

mod gpu_smoke;

use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

/// Project automation for the fdsm workspace.
#[derive(Parser)]
#[command(name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Download datasets into the data directory, verifying their SHA-256: `cargo xtask download
    /// <datasets> [options]` runs `fdsm-data download` of the datasets crate in release mode
    /// (`cargo xtask download --help` shows its options; `all` fetches everything).
    #[command(disable_help_flag = true)]
    Download {
        /// The datasets and options (e.g. mnist fashion-mnist --data-dir data).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Reproduce a table or figure of the papers: `cargo xtask repro <name> [options]` runs
    /// `experiments repro <name> [options]` in release mode. `cargo xtask repro` alone lists the
    /// experiments; `cargo xtask repro <name> --help` shows an experiment's options.
    #[command(disable_help_flag = true)]
    Repro {
        /// The experiment and its options (e.g. table2 --profile paper --rows ssm,fd-ssm).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Measure the cost of this implementation and write a report: `cargo xtask bench <name>
    /// [options]` runs `experiments bench <name> [options]` (e.g. `steps`, `order-scaling`).
    /// `cargo xtask bench` alone lists the measurements.
    #[command(disable_help_flag = true)]
    Bench {
        /// The measurement and its options (e.g. steps --objectives ssm,fd-ssm).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Measure sample quality: `cargo xtask eval fid --samples PATH --reference mnist` runs the
    /// `eval` binary in release mode (FID and KID with LeNet features; `--help` for options).
    #[command(disable_help_flag = true)]
    Eval {
        /// The measure and its options (e.g. fid --samples samples.safetensors --reference mnist).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// List every experiment (kind, name, summary), as the experiments binary registers them.
    List,
    /// Build the experiments with the `cuda` (or `metal`) feature, run a few training steps of
    /// every reproduction's quick profile, the step bench at the paper's ResNet width and a
    /// short order-scaling measurement on the GPU, and write a report (gpu-smoke.md and .json,
    /// one log per command). `--backend cpu` runs the same sequence on the CPU build.
    GpuSmoke(gpu_smoke::SmokeArgs),
    /// Run what CI runs: `cargo fmt --check`, `cargo clippy -D warnings`, `cargo doc` with
    /// warnings as errors, then the test suite (`cargo test --workspace --release`).
    Ci {
        /// Skip the format, lint and doc checks and only run the tests.
        #[arg(long)]
        tests_only: bool,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Download { args } => run_bin("datasets", "fdsm-data", Some("download"), &args),
        Cmd::Repro { args } => run_bin("experiments", "experiments", Some("repro"), &args),
        Cmd::Bench { args } => run_bin("experiments", "experiments", Some("bench"), &args),
        Cmd::Eval { args } => run_bin("experiments", "eval", None, &args),
        Cmd::List => run_bin("experiments", "experiments", Some("list"), &[]),
        Cmd::Ci { tests_only } => ci(tests_only),
        Cmd::GpuSmoke(args) => gpu_smoke::gpu_smoke(&args),
    }
}

/// Runs the binary `bin` of the workspace package `package` (`experiments` or `eval` of the
/// experiments crate, `fdsm-data` of the datasets crate) in release mode from the workspace root
/// (so results land in `results/` there) with the command `group` (`repro`, `bench`, `list`,
/// `download`; none for `eval`) and `args`. Without arguments it prints the command's help (the
/// experiments binary's lists the experiments).
fn run_bin(package: &str, bin: &str, group: Option<&str>, args: &[String]) -> Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?;
    let mut full = vec!["run", "--release", "-p", package, "--bin", bin, "--"];
    full.extend(group);
    // The binary runs from the workspace root (default results land in `results/` there), so
    // paths the caller gave relative to their own directory are made absolute first.
    let caller = std::env::current_dir().context("the current directory")?;
    let args = absolute_paths(args, &caller);
    full.extend(args.iter().map(String::as_str));
    if args.is_empty() && group != Some("list") {
        full.push("--help");
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // The build's own progress goes to the terminal: a first call compiles for minutes.
    let status = inner_cargo(&cargo)
        .current_dir(root)
        .args(&full)
        .status()
        .with_context(|| format!("could not start `{cargo}`"))?;
    if status.code() == Some(PAUSED_EXIT_CODE) {
        // A run paused by --stop-after: its message is printed; pass the status on.
        std::process::exit(PAUSED_EXIT_CODE);
    }
    if !status.success() {
        bail!("`cargo {}` failed with {status}", full.join(" "));
    }
    Ok(())
}

/// The status of the experiments binary for a run paused by `--stop-after`.
const PAUSED_EXIT_CODE: i32 = 3;

/// The options of the experiments that take a path.
const PATH_OPTIONS: [&str; 9] = [
    "--out",
    "--data-dir",
    "--torch",
    "--checkpoint",
    "--samples",
    "--cache-dir",
    "--json",
    "--reuse",
    "--imagenet32-dir",
];

/// `args` with the values of [`PATH_OPTIONS`] (`--out DIR` or `--out=DIR`) made absolute
/// against `cwd` where they are relative.
fn absolute_paths(args: &[String], cwd: &std::path::Path) -> Vec<String> {
    let absolute = |p: &str| {
        let path = std::path::Path::new(p);
        if path.is_absolute() || p.is_empty() {
            p.to_string()
        } else {
            cwd.join(path).display().to_string()
        }
    };
    let mut out = Vec::with_capacity(args.len());
    let mut value_next = false;
    for a in args {
        if value_next {
            out.push(absolute(a));
            value_next = false;
        } else if let Some((flag, value)) = a.split_once('=') {
            if PATH_OPTIONS.contains(&flag) {
                out.push(format!("{flag}={}", absolute(value)));
            } else {
                out.push(a.clone());
            }
        } else {
            value_next = PATH_OPTIONS.contains(&a.as_str());
            out.push(a.clone());
        }
    }
    out
}

/// A `cargo` command for a nested build, without the variables that `cargo run` set for this
/// task (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, ...). Build scripts of dependencies watch some of
/// them, so passing them on made every nested build (and the next plain `cargo` command after
/// it) recompile about sixty crates.
fn inner_cargo(cargo: &str) -> Command {
    let mut cmd = Command::new(cargo);
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if is_set_by_cargo_run(key) {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Whether `key` is one of the variables Cargo sets for the program it runs (rather than one a
/// user sets to configure Cargo, such as `CARGO_HOME` or `CARGO_TARGET_DIR`).
fn is_set_by_cargo_run(key: &str) -> bool {
    const EXACT: &[&str] = &[
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_MANIFEST_LINKS",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
    ];
    EXACT.contains(&key) || key.starts_with("CARGO_PKG_") || key.starts_with("CARGO_BIN_EXE_")
}

/// The test command of README.md. Kept in one place so that README, `.ci/run` and this task agree.
const TEST_ARGS: &[&str] = &["test", "--workspace", "--release"];

/// One check of CI: its name, the `cargo` arguments, extra environment variables.
type Check = (
    &'static str,
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
);

/// What CI runs before the tests, in order: the one list `cargo xtask ci` and `.ci/run` (which
/// calls it) share.
const CI_CHECKS: &[Check] = &[
    ("format", &["fmt", "--all", "--check"], &[]),
    (
        "lints",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--release",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    ),
    // Broken intra-doc links and stray HTML in doc comments. In the release profile, so the
    // dependencies' metadata from the lint step is reused (measured: 13 s instead of 77 s).
    (
        "rustdoc",
        &["doc", "--workspace", "--no-deps", "--release"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    ),
];

fn ci(tests_only: bool) -> Result<()> {
    if !tests_only {
        for (what, args, env) in CI_CHECKS {
            eprintln!("== {what}");
            cargo_with(args, env)?;
        }
    }
    eprintln!("== tests (README.md)");
    cargo(TEST_ARGS)
}

fn cargo(args: &[&str]) -> Result<()> {
    cargo_with(args, &[])
}

/// `cargo args`, with extra environment variables `env`, failing on a non-zero exit.
fn cargo_with(args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("+ cargo {}", args.join(" "));
    let status = inner_cargo(&cargo)
        .args(args)
        .envs(env.iter().copied())
        .status()
        .with_context(|| format!("could not start `{cargo}`"))?;
    if !status.success() {
        bail!("`cargo {}` failed with {status}", args.join(" "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::absolute_paths;

    /// Relative path values of both spellings are joined to the caller's directory; absolute
    /// ones and other options are left as they are.
    #[test]
    fn relative_paths_resolve_against_the_callers_directory() {
        let args: Vec<String> = [
            "table2",
            "--out",
            "res",
            "--data-dir=/data",
            "--iters",
            "5",
            "--torch=t.json",
        ]
        .map(String::from)
        .to_vec();
        let got = absolute_paths(&args, std::path::Path::new("/home/u/work"));
        assert_eq!(
            got,
            [
                "table2",
                "--out",
                "/home/u/work/res",
                "--data-dir=/data",
                "--iters",
                "5",
                "--torch=/home/u/work/t.json"
            ]
        );
    }
}
