//! `experiments`: every experiment of the FD score-matching papers behind one command line
//! (`experiments repro table2`, `experiments bench steps`, `experiments list`), as
//! `cargo xtask repro` and `cargo xtask bench` run it. A run that pauses as `--stop-after` asks
//! exits with status 3.

use std::process::ExitCode;

use anyhow::Result;
use experiments::runner::cli::PAUSED_EXIT_CODE;
use experiments::{runner, setup, EXPERIMENTS};

fn main() -> Result<ExitCode> {
    // Before any thread starts: the thread count read once instead of at every matrix product,
    // and this thread one of rayon's workers.
    layers::cpu::settle_thread_count();
    experiments::allocator::tune_for_training();
    let matches = runner::cli::command(&EXPERIMENTS).get_matches();
    // The device is opened once, here, and passed down to every row and report.
    let done = runner::cli::main(&EXPERIMENTS, &matches, setup::open_device)?;
    if done.paused {
        eprintln!("{}", done.text);
        return Ok(ExitCode::from(PAUSED_EXIT_CODE));
    }
    if !done.text.is_empty() {
        println!("{}", done.text);
    }
    Ok(ExitCode::SUCCESS)
}
