//! Training one row of Table 2 in its own process (the `train` phase): the deep-EBM ResNet on
//! MNIST padded to 32 x 32 by the row's objective ([`crate::deep_ebm`]).

pub use crate::deep_ebm::TrainReport;

use crate::deep_ebm::train_deep_ebm;
use crate::error::Result;
use crate::runner::RowContext;

use super::{Run, Table2Config};

/// Trains one run (the `train` phase) and writes `train.json` into its directory; a checkpoint
/// resumes when the training settings (with the run's seed), the objective and the data set
/// (MNIST) match.
///
/// # Errors
/// Data, configuration, divergence and I/O errors; higher-order mode off for a gradient-based
/// row.
pub fn train_row(ctx: &RowContext, cfg: &Table2Config, run: Run) -> Result<TrainReport> {
    cfg.validate()?;
    let images = crate::setup::mnist32(ctx.run.data_dir, true, ctx.run.device)?;
    let training = cfg.run_training(run);
    let identity = (
        training.identity(run.objective),
        run.objective,
        datasets::Dataset::Mnist.name(),
    );
    train_deep_ebm(ctx, &training, run.objective, &images, &identity)
}
