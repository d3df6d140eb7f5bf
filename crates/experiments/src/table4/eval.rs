//! Evaluating one detector of Table 4 (the `eval` phase): the typicality reference on training
//! images, the typicality scores of `test_batches` batches of `M` images per column, and each
//! column's ROC-AUC against in-distribution test batches (out of distribution positive).

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{ExpError, Result};
use crate::report::write_json;
use crate::runner::RowContext;
use crate::trainer::named_vars;
use train::ood::{neg_log_densities, roc_auc, Typicality};

use super::{data, ImageSet, Run, Table4Config, TestSet};

/// The most training images the typicality reference is drawn from (ImageNet 32 x 32 only; the
/// other sets have fewer).
const REFERENCE_POOL: usize = 100_000;

/// One column of a detector's row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    /// The test set.
    pub test_set: TestSet,
    /// ROC-AUC of its scores against the in-distribution scores.
    pub auc: f64,
    /// Mean `-log p~` of its images.
    pub mean_neg_log_p: f64,
    /// Its typicality scores, one per batch of `M` images.
    pub scores: Vec<f64>,
}

/// What an evaluation child reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// The run.
    pub run: Run,
    /// The reference: mean `-log p~` over the training images.
    pub typicality: Typicality,
    /// Typicality scores of in-distribution test batches (the negatives of every column).
    pub in_distribution: Vec<f64>,
    /// Mean `-log p~` of those in-distribution test images.
    pub in_distribution_neg_log_p: f64,
    /// The columns, in the configuration's order.
    pub columns: Vec<Column>,
}

/// The seed of every random choice of the evaluation: the same for every run of a
/// configuration, so that detectors are compared on the same images.
fn eval_seed(cfg: &Table4Config, salt: u64) -> u64 {
    crate::step_seed(cfg.training.seed ^ 0x0dd_7e57, salt)
}

/// Evaluates one detector from its final checkpoint and writes `eval.json`.
///
/// # Errors
/// Data, checkpoint and I/O errors; a test split too small for `2 M test_batches` images.
pub fn eval_run(ctx: &RowContext, cfg: &Table4Config, run: Run) -> Result<EvalReport> {
    cfg.validate()?;
    let device = ctx.run.device;
    let training = cfg.training_of(run.seed);
    let (vm, net) = crate::setup::seeded_resnet_ebm(&training.model, training.seed, device)?;
    let ckpt = ctx.dir.join("checkpoint.safetensors");
    let loaded = crate::checkpoint::load(&ckpt, device)?;
    let (names, vars) = named_vars(&vm);
    for (name, var) in names.iter().zip(vars) {
        let t = loaded
            .params
            .get(name)
            .ok_or_else(|| ExpError::Checkpoint {
                path: ckpt.clone(),
                problem: format!("no tensor for {name}"),
            })?;
        var.set(t)?;
    }
    let set = run.train_set;
    let n_test = cfg.m * cfg.test_batches;
    let values = |images: &Tensor, of: ImageSet| -> Result<Vec<f64>> {
        let x = data::to_model(images, of, device)?;
        Ok(neg_log_densities(&net, &x, cfg.eval_batch)?)
    };
    // The reference is drawn from (at most) the first 100 000 training images: all of
    // ImageNet 32 x 32's would be 3.9 GB read for 1000 images.
    let own = data::load(cfg, ctx.run.data_dir, set, Some(REFERENCE_POOL))?;
    let reference = data::pick(
        &own.train,
        cfg.reference_images,
        eval_seed(cfg, 1),
        &format!("the typicality reference on {}", set.label()),
    )?;
    let typicality = Typicality::fit(&values(&reference, set)?)?;
    // Two disjoint draws of in-distribution test images: the negatives, and the images the
    // in-distribution column and the synthetic sets are made from.
    let test = data::pick(
        &own.test,
        2 * n_test,
        eval_seed(cfg, 2),
        &format!(
            "two disjoint sets of {} x {} {} test images",
            cfg.test_batches,
            cfg.m,
            set.label()
        ),
    )?;
    let (negatives, base) = (test.narrow(0, 0, n_test)?, test.narrow(0, n_test, n_test)?);
    let negative_values = values(&negatives, set)?;
    let in_distribution = typicality.scores(&negative_values, cfg.m)?;
    let (channels, size, _) = set.layout();
    let mut columns = Vec::with_capacity(cfg.test_sets.len());
    for &test_set in &cfg.test_sets {
        let images = match test_set {
            TestSet::Data(d) if d == set => base.clone(),
            TestSet::Data(d) => data::pick(
                &data::load(cfg, ctx.run.data_dir, d, Some(0))?.test,
                n_test,
                eval_seed(cfg, 3),
                &format!("{} test images", d.label()),
            )?,
            TestSet::Noise => data::uniform_noise(n_test, channels, size, eval_seed(cfg, 4))?,
            TestSet::Permuted => data::permute_pixels(&base, eval_seed(cfg, 5))?,
            TestSet::Inverted => data::invert(&base)?,
        };
        let v = values(&images, set)?;
        let scores = typicality.scores(&v, cfg.m)?;
        columns.push(Column {
            test_set,
            auc: roc_auc(&in_distribution, &scores)?,
            mean_neg_log_p: v.iter().sum::<f64>() / v.len() as f64,
            scores,
        });
    }
    let report = EvalReport {
        run,
        typicality,
        in_distribution,
        in_distribution_neg_log_p: negative_values.iter().sum::<f64>()
            / negative_values.len() as f64,
        columns,
    };
    write_json(&ctx.dir.join("eval.json"), &report)?;
    Ok(report)
}
