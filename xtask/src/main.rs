//! `cargo xtask`: project automation. `ci` runs the checks CI runs (format, lints, the test
//! suite of README.md); later subcommands download data and reproduce the papers' tables.

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
    /// Run what CI runs: `cargo fmt --check`, `cargo clippy -D warnings`, then the test suite
    /// (`cargo test --workspace --release`).
    Ci {
        /// Skip the format and lint checks and only run the tests.
        #[arg(long)]
        tests_only: bool,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Ci { tests_only } => ci(tests_only),
    }
}

/// The test command of README.md. Kept in one place so that README, `.ci/run` and this task agree.
const TEST_ARGS: &[&str] = &["test", "--workspace", "--release"];

fn ci(tests_only: bool) -> Result<()> {
    if !tests_only {
        cargo(&["fmt", "--all", "--check"])?;
        cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--release",
            "--",
            "-D",
            "warnings",
        ])?;
    }
    cargo(TEST_ARGS)
}

fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("+ cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .status()
        .with_context(|| format!("could not start `{cargo}`"))?;
    if !status.success() {
        bail!("`cargo {}` failed with {status}", args.join(" "));
    }
    Ok(())
}
