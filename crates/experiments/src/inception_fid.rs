//! FID and KID (Heusel et al. 2017; Binkowski et al. 2018) with the FID InceptionV3's 2048 pool
//! features (pytorch-fid's `pt_inception-2015-12-05` weights, `sample_quality::inception`) of
//! RGB samples against a reference image set whose features are computed once and cached: the
//! measure of FD-SM's CIFAR-10 (Table 5) and CelebA (Table 6) columns.

use std::path::Path;

use candle_core::{Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use sample_quality::inception::{FidInception, INCEPTION_FEATURES, INCEPTION_WEIGHTS};
use sample_quality::{
    cached_features, features_matrix, frechet_distance, kernel_distance, GaussianStats,
};
use serde::{Deserialize, Serialize};

use crate::error::{ExpError, Result};

/// FID and KID with Inception features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InceptionQuality {
    /// The reference set (its cache name).
    pub reference: String,
    /// Samples evaluated.
    pub samples: usize,
    /// Reference images.
    pub reference_images: usize,
    /// FID.
    pub fid: f64,
    /// KID: mean over subsets.
    pub kid: f64,
    /// Standard error of the KID over its subsets.
    pub kid_std_err: f64,
    /// KID subsets and their size.
    pub kid_subsets: (usize, usize),
}

/// The FID Inception network from the data directory (`cargo xtask download inception`).
///
/// # Errors
/// The weights are missing or not the FID Inception's.
pub fn load_inception(data_dir: &Path, device: &Device) -> Result<FidInception> {
    crate::setup::ensure_data(data_dir, datasets::Dataset::FidInception)?;
    Ok(FidInception::from_pth(
        &data_dir.join(INCEPTION_WEIGHTS),
        device,
    )?)
}

/// Inception features of RGB `images` in `[0, 1]` (`[N, 3, H, W]`), 25 at a time, with a
/// progress bar saying `what`.
///
/// # Errors
/// Images of the wrong shape or outside `[0, 1]`.
pub fn inception_features(
    net: &FidInception,
    images: &Tensor,
    what: &str,
    progress: bool,
) -> sample_quality::Result<Tensor> {
    let n = images.dim(0)?;
    let bar = if progress {
        ProgressBar::new(n as u64)
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} images, {eta} left")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(format!("Inception features of {what}"));
    let mut parts = Vec::new();
    for start in (0..n).step_by(25) {
        let len = 25.min(n - start);
        parts.push(net.features(&images.narrow(0, start, len)?, len)?);
        bar.inc(len as u64);
    }
    bar.finish_and_clear();
    Ok(Tensor::cat(&parts, 0)?)
}

/// An error unless `n` samples give a full-rank covariance of the Inception features.
///
/// # Errors
/// [`ExpError::Config`] for `n <= 2048`.
pub fn require_inception_samples(n: usize) -> Result<()> {
    if n <= INCEPTION_FEATURES {
        return Err(ExpError::Config(format!(
            "FID with Inception features needs more samples than its {INCEPTION_FEATURES} \
             features (a full-rank covariance): at least {}, 10 000 or more for the usual \
             estimate; got {n}",
            INCEPTION_FEATURES + 1
        )));
    }
    Ok(())
}

/// FID and KID (100 subsets of up to 1000) of `samples` (`[N, 3, H, W]` in `[0, 1]`) against
/// the reference images `reference()` gives, whose features are cached in
/// `<cache_dir>/inception-<reference_name>-features.safetensors` (so `reference_name` must
/// name everything that makes the set: data, split, preprocessing, count).
///
/// # Errors
/// At most 2048 samples (a rank-deficient covariance), the reference's or the network's errors.
pub fn inception_quality(
    net: &FidInception,
    samples: &Tensor,
    reference_name: &str,
    reference: impl FnOnce() -> Result<Tensor>,
    cache_dir: &Path,
    progress: bool,
) -> Result<InceptionQuality> {
    let n = samples.dim(0)?;
    require_inception_samples(n)?;
    let path = cache_dir.join(format!("inception-{reference_name}-features.safetensors"));
    // The cache speaks the feature crate's errors; the reference's own error is kept aside
    // and returned as it is.
    let mut failure = None;
    let reference_features = cached_features(&path, false, || {
        let images = reference().map_err(|e| {
            let text = sample_quality::QualityError::Input(e.to_string());
            failure = Some(e);
            text
        })?;
        inception_features(
            net,
            &images,
            &format!("{reference_name} (cached after)"),
            progress,
        )
    })
    .map_err(|e| failure.take().unwrap_or_else(|| e.into()))?;
    let ours = inception_features(net, samples, "the samples", progress)?;
    let (x, _, d) = features_matrix(&ours)?;
    let (y, m, _) = features_matrix(&reference_features)?;
    let fid = frechet_distance(
        &GaussianStats::from_rows(&x, n, d)?,
        &GaussianStats::from_rows(&y, m, d)?,
    )?;
    let size = n.min(m).min(1000);
    let kid = kernel_distance(&x, &y, d, 100, size, 0)?;
    Ok(InceptionQuality {
        reference: reference_name.to_string(),
        samples: n,
        reference_images: m,
        fid,
        kid: kid.mean,
        kid_std_err: kid.std_err,
        kid_subsets: (100, size),
    })
}
