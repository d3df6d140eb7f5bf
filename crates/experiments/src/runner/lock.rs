//! One run per results directory: the runner holds `<out>/.lock` (the holder's process id and
//! start time) while it runs, so that a second run into the same directory, or a `--resume`
//! racing a running one, is refused with the holder named instead of mixing two runs' files. A
//! lock left by a process that no longer exists (killed) is taken over.
//!
//! And the other direction: a row's child process exits when the run that started it is gone
//! ([`exit_with_parent`]), so that stopping a run does not leave orphans writing into its
//! directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{io_err, ExpError, Result};

/// The lock of a results directory, released when dropped.
#[derive(Debug)]
pub struct OutputLock {
    path: PathBuf,
}

/// The lock file's name inside a results directory.
pub const LOCK_FILE: &str = ".lock";

impl OutputLock {
    /// Takes the lock of the results directory `out` (created if missing).
    ///
    /// # Errors
    /// [`ExpError::Config`] naming the process that holds it; I/O errors.
    pub fn acquire(out: &Path) -> Result<Self> {
        std::fs::create_dir_all(out).map_err(io_err(out))?;
        let path = out.join(LOCK_FILE);
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    let since = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    writeln!(f, "{} {since}", std::process::id()).map_err(io_err(&path))?;
                    return Ok(Self { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    let holder = text
                        .split_whitespace()
                        .next()
                        .and_then(|p| p.parse::<u32>().ok());
                    match holder {
                        Some(pid) if process_exists(pid) => {
                            return Err(ExpError::Config(format!(
                                "{} is in use by another run (process {pid}, lock file {}); \
                                 wait for it to finish, stop it, or choose another --out",
                                out.display(),
                                path.display()
                            )));
                        }
                        // Left by a process that is gone (or unreadable): take it over.
                        _ => crate::report::remove_if_exists(&path)?,
                    }
                }
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        Err(ExpError::Config(format!(
            "could not take the lock {} (another run took it at the same moment)",
            path.display()
        )))
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Nothing to do if it is already gone; a failure leaves a lock that the next run takes
        // over once this process has exited.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether a process with id `pid` exists (Linux and other systems with `/proc`; elsewhere every
/// lock counts as held until it is removed by hand).
fn process_exists(pid: u32) -> bool {
    if Path::new("/proc/self").exists() {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

/// The exit status of a child that stopped because its run was gone.
pub const ORPHAN_EXIT_CODE: i32 = 4;

/// The environment variable through which the runner tells a row's child its own process id,
/// so that the child notices a run killed before the child started watching.
pub const RUN_PID_ENV: &str = "FDSM_RUN_PID";

/// Makes this process exit (status [`ORPHAN_EXIT_CODE`]) soon after its parent does: a thread
/// polls the parent's id, which changes when the parent dies and the process is adopted. The
/// parent to watch is the one named by [`RUN_PID_ENV`] when set (the runner sets it), else the
/// parent at the time of the call; a parent already gone exits at once. (Unix only; elsewhere
/// nothing is watched.)
pub fn exit_with_parent() {
    #[cfg(unix)]
    {
        let parent = std::env::var(RUN_PID_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or_else(std::os::unix::process::parent_id);
        let gone = move || std::os::unix::process::parent_id() != parent;
        let stop = || -> ! {
            eprintln!("the run that started this row is gone; stopping");
            std::process::exit(ORPHAN_EXIT_CODE);
        };
        if gone() {
            stop();
        }
        std::thread::spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_millis(200));
            if gone() {
                stop();
            }
        });
    }
}
