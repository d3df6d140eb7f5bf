//! Command-line options shared by the experiment binaries whose training runs checkpoint, pause
//! and resume through the shared trainer (`grbm_checkerboard`, `bism_table1`).

use clap::Args;

use crate::RunControl;

/// Checkpointing, pausing, resuming and progress, flattened into a binary's options.
#[derive(Debug, Clone, Args)]
pub struct RunControlArgs {
    /// Checkpoint every this many steps (and at the end of each training run).
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// Continue every training run from its checkpoint in the output directory, if there is
    /// one; a finished run is evaluated again from its final checkpoint without training.
    #[arg(long)]
    pub resume: bool,
    /// Pause once every training run has trained this many steps, checkpointed (e.g. to fit a
    /// scheduler's time limit); continue later with --resume.
    #[arg(long)]
    pub stop_after: Option<u64>,
    /// Do not draw a progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

impl RunControlArgs {
    /// The [`RunControl`] these options ask for.
    pub fn control(&self) -> RunControl {
        RunControl {
            progress: !self.no_progress,
            resume: self.resume,
            stop_after: self.stop_after,
        }
    }
}
