//! Child processes under a memory and a time limit, watched from the parent: a measurement that
//! would exhaust the machine (the exact high-order derivatives of FD-SM Fig. 2 grow
//! exponentially) is stopped and reported instead of taking the run down with it.

use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use crate::error::{ExpError, Result};
use crate::memory;

/// What a child may use before it is stopped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Resident memory, bytes.
    pub memory_bytes: u64,
    /// Wall-clock time.
    pub time: Duration,
}

/// How a limited child ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// It exited by itself.
    Exited(ExitStatus),
    /// It was stopped when its resident memory reached the limit.
    OverMemory {
        /// The RSS seen when it was stopped, bytes.
        rss_bytes: u64,
    },
    /// It was stopped when it ran past the time limit.
    OverTime,
}

impl Outcome {
    /// `None` for a successful exit, else why the child did not finish, e.g. "stopped at
    /// 12.4 GB resident, the memory limit of 12.4 GB".
    pub fn failure(&self, limits: Limits) -> Option<String> {
        match self {
            Outcome::Exited(s) if s.success() => None,
            Outcome::Exited(s) => Some(format!("the measurement failed ({s})")),
            Outcome::OverMemory { rss_bytes } => Some(format!(
                "stopped at {:.2} GB resident, the memory limit of {:.2} GB",
                *rss_bytes as f64 / 1e9,
                limits.memory_bytes as f64 / 1e9
            )),
            Outcome::OverTime => Some(format!(
                "stopped after the time limit of {:.0} s",
                limits.time.as_secs_f64()
            )),
        }
    }
}

/// How often the child's memory is polled.
const POLL: Duration = Duration::from_millis(5);

/// Runs `cmd` to completion unless it passes `limits`, polling its RSS (Linux `/proc`; elsewhere
/// only the time limit applies).
///
/// # Errors
/// The child cannot be started or waited for.
pub fn run_limited(cmd: &mut Command, limits: Limits) -> Result<Outcome> {
    let mut child = cmd
        .spawn()
        .map_err(|e| ExpError::Child(format!("could not start {cmd:?}: {e}")))?;
    let start = Instant::now();
    let wait_err = |e: std::io::Error| ExpError::Child(format!("waiting for {cmd:?}: {e}"));
    loop {
        if let Some(status) = child.try_wait().map_err(wait_err)? {
            return Ok(Outcome::Exited(status));
        }
        if let Some(rss) = memory::rss_bytes_of(child.id()) {
            if rss >= limits.memory_bytes {
                let _ = child.kill();
                child.wait().map_err(wait_err)?;
                return Ok(Outcome::OverMemory { rss_bytes: rss });
            }
        }
        if start.elapsed() >= limits.time {
            let _ = child.kill();
            child.wait().map_err(wait_err)?;
            return Ok(Outcome::OverTime);
        }
        std::thread::sleep(POLL);
    }
}
