//! "FID (LeNet features)" for the MNIST family: a [`LeNet`] classifier trained by this crate on
//! the training split (deterministic given its settings), cached as safetensors with its
//! settings and test accuracy, and its features of the test split (cached) as the reference. Not comparable with Inception FID: a different feature space.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use models::{LeNet, LeNetConfig};
use serde::{Deserialize, Serialize};
use sm_objectives::NoiseSource;
use train::{named_vars, train, TrainOptions};

use crate::error::{QualityError, Result};
use crate::stats::GaussianStats;

/// A data set with a LeNet feature network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MnistFamily {
    /// MNIST digits.
    Mnist,
    /// Fashion-MNIST.
    FashionMnist,
}

impl MnistFamily {
    /// The name in file names and on the command line.
    pub fn key(self) -> &'static str {
        match self {
            Self::Mnist => "mnist",
            Self::FashionMnist => "fashion-mnist",
        }
    }

    fn idx(self) -> datasets::IdxDataset {
        match self {
            Self::Mnist => datasets::IdxDataset::Mnist,
            Self::FashionMnist => datasets::IdxDataset::FashionMnist,
        }
    }
}

/// How the feature network is trained (the settings are stored with the weights; a cached
/// network of other settings is trained again).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LeNetTraining {
    /// The network's sizes.
    pub net: LeNetConfig,
    /// Adam steps.
    pub steps: u64,
    /// Minibatch size.
    pub batch: usize,
    /// Learning rate (constant).
    pub lr: f64,
    /// Seed of the initial weights and the batches.
    pub seed: u64,
}

impl Default for LeNetTraining {
    /// 16 and 32 channels, 128 features; three epochs of batch 128 at learning rate 1e-3.
    fn default() -> Self {
        Self {
            net: LeNetConfig {
                conv1: 16,
                conv2: 32,
                features: 128,
                classes: 10,
            },
            steps: 3 * 60_000 / 128,
            batch: 128,
            lr: 1e-3,
            seed: 0,
        }
    }
}

/// A trained feature network.
pub struct LeNetFeatures {
    /// The network.
    pub net: LeNet,
    /// What it was trained on.
    pub data: MnistFamily,
    /// Its settings.
    pub training: LeNetTraining,
    /// Accuracy on the test split.
    pub test_accuracy: f64,
    /// Whether it was trained in this call (else read from the cache).
    pub trained_now: bool,
    vars: VarMap,
}

impl std::fmt::Debug for LeNetFeatures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeNetFeatures")
            .field("data", &self.data)
            .field("training", &self.training)
            .field("test_accuracy", &self.test_accuracy)
            .field("trained_now", &self.trained_now)
            .finish_non_exhaustive()
    }
}

const META_KEY: &str = "fdsm-lenet";

#[derive(Serialize, Deserialize)]
struct Stored {
    data: MnistFamily,
    training: LeNetTraining,
    test_accuracy: f64,
}

/// The cached network of `data` in `cache_dir`.
pub fn lenet_path(cache_dir: &Path, data: MnistFamily) -> PathBuf {
    cache_dir.join(format!("lenet-{}.safetensors", data.key()))
}

/// The cached reference features (of the test split) of `data` in `cache_dir`.
pub fn reference_features_path(cache_dir: &Path, data: MnistFamily) -> PathBuf {
    cache_dir.join(format!("lenet-{}-test-features.safetensors", data.key()))
}

fn labels_u32(t: &Tensor) -> Result<Tensor> {
    Ok(t.to_dtype(DType::U32)?)
}

/// Overwrites every variable with seeded values: weights uniform in `+-1/sqrt(fan_in)`,
/// biases 0 (Candle's own initialisers cannot be seeded).
fn seed_weights(vm: &VarMap, seed: u64) -> Result<()> {
    let mut noise = NoiseSource::new(seed);
    for (name, var) in named_vars(vm).0.iter().zip(named_vars(vm).1) {
        let dims = var.dims().to_vec();
        let value = if name.ends_with("bias") {
            var.zeros_like()?
        } else {
            let fan_in: usize = dims[1..].iter().product();
            let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
            (noise
                .uniform_like(var.as_tensor())?
                .affine(2.0 * bound, -bound))?
        };
        var.set(&value)?;
    }
    Ok(())
}

/// Class accuracy of `net` on `images` / `labels`.
///
/// # Errors
/// Tensor errors.
pub fn accuracy(net: &LeNet, images: &Tensor, labels: &Tensor) -> Result<f64> {
    let n = images.dim(0)?;
    let mut correct = 0u64;
    for start in (0..n).step_by(1000) {
        let len = 1000.min(n - start);
        let pred = net.logits(&images.narrow(0, start, len)?)?.argmax(1)?;
        let truth = labels_u32(&labels.narrow(0, start, len)?)?;
        correct += pred
            .eq(&truth)?
            .to_dtype(DType::U32)?
            .sum_all()?
            .to_scalar::<u32>()? as u64;
    }
    Ok(correct as f64 / n.max(1) as f64)
}

/// Trains a LeNet on `images` / `labels` (`[N, 1, 28, 28]`, `[N]`) with `training`; the same
/// settings and data give the same weights.
///
/// # Errors
/// Training and tensor errors.
pub fn train_lenet(
    images: &Tensor,
    labels: &Tensor,
    training: &LeNetTraining,
    progress: bool,
) -> Result<(VarMap, LeNet)> {
    let device = images.device();
    let vm = VarMap::new();
    let net = LeNet::new(
        training.net,
        VarBuilder::from_varmap(&vm, DType::F32, device),
    )?;
    seed_weights(&vm, training.seed ^ 0x1e7e7)?;
    let labels = labels_u32(labels)?;
    let mut batcher = datasets::Batcher::new(images.dim(0)?, training.batch, training.seed)?;
    let opts = TrainOptions::new(training.steps, training.lr)
        .with_progress(progress, "LeNet feature network");
    train(
        &vm,
        &opts,
        &mut |step| {
            // The same step draws the same rows of both tensors.
            let x = batcher
                .batch(images, step)
                .map_err(candle_core::Error::wrap)?;
            let y = batcher
                .batch(&labels, step)
                .map_err(candle_core::Error::wrap)?;
            candle_nn::loss::cross_entropy(&net.logits(&x)?, &y)
        },
        &mut |_| Ok(()),
    )?;
    Ok((vm, net))
}

/// The LeNet of `data` from `cache_dir`, or trained on the training split from `data_dir`
/// (then written to the cache atomically) when the cache lacks it or holds one of other
/// settings.
///
/// # Errors
/// Missing data (the error says where it was expected), a corrupt cache file (named, with the
/// advice to delete it), training and I/O errors.
pub fn load_or_train_lenet(
    data_dir: &Path,
    cache_dir: &Path,
    data: MnistFamily,
    training: &LeNetTraining,
    device: &Device,
    progress: bool,
) -> Result<LeNetFeatures> {
    let path = lenet_path(cache_dir, data);
    let bad = |problem: String| QualityError::File {
        path: path.clone(),
        problem,
    };
    if path.is_file() {
        let bytes = std::fs::read(&path).map_err(|e| bad(format!("unreadable: {e}")))?;
        let corrupt = |e: String| {
            bad(format!(
                "not a feature network written by this crate ({e}); delete it to train the \
                 network again"
            ))
        };
        let (_, header) =
            safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let stored: Stored = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(META_KEY))
            .ok_or_else(|| corrupt("no settings stored".into()))
            .and_then(|j| serde_json::from_str(j).map_err(|e| corrupt(e.to_string())))?;
        if stored.training == *training && stored.data == data {
            let vm = VarMap::new();
            let net = LeNet::new(
                training.net,
                VarBuilder::from_varmap(&vm, DType::F32, device),
            )?;
            let tensors = candle_core::safetensors::load_buffer(&bytes, device)
                .map_err(|e| corrupt(e.to_string()))?;
            let (names, vars) = named_vars(&vm);
            for (name, var) in names.iter().zip(vars) {
                let t = tensors
                    .get(name)
                    .ok_or_else(|| corrupt(format!("no tensor `{name}`")))?;
                var.set(t).map_err(|e| corrupt(e.to_string()))?;
            }
            return Ok(LeNetFeatures {
                net,
                data,
                training: *training,
                test_accuracy: stored.test_accuracy,
                trained_now: false,
                vars: vm,
            });
        }
    }
    let splits = datasets::load_idx_dataset(data_dir, data.idx(), device)?;
    let (vm, net) = train_lenet(
        &splits.train.images,
        &splits.train.labels,
        training,
        progress,
    )?;
    let test_accuracy = accuracy(&net, &splits.test.images, &splits.test.labels)?;
    let (names, vars) = named_vars(&vm);
    let tensors: Vec<(String, Tensor)> = names
        .into_iter()
        .zip(vars.iter().map(|v| v.as_tensor().clone()))
        .collect();
    let meta = serde_json::to_string(&Stored {
        data,
        training: *training,
        test_accuracy,
    })
    .map_err(|e| bad(e.to_string()))?;
    let bytes = safetensors::serialize(
        tensors.iter().map(|(k, v)| (k.as_str(), v)),
        Some(HashMap::from([(META_KEY.to_string(), meta)])),
    )
    .map_err(|e| bad(format!("cannot be serialised: {e}")))?;
    std::fs::create_dir_all(cache_dir)
        .map_err(|e| bad(format!("cannot create its folder: {e}")))?;
    let tmp = path.with_extension("safetensors.partial");
    std::fs::write(&tmp, bytes).map_err(|e| bad(format!("cannot be written: {e}")))?;
    std::fs::rename(&tmp, &path).map_err(|e| bad(format!("cannot be renamed into place: {e}")))?;
    Ok(LeNetFeatures {
        net,
        data,
        training: *training,
        test_accuracy,
        trained_now: true,
        vars: vm,
    })
}

/// Images as the feature network takes them: `[N, 1, 28, 28]` or `[N, 28, 28]`, or 32 x 32
/// (MNIST padded by 2, as the deep-EBM experiments use it) cropped to the centre; any float
/// dtype with values in `[0, 1]` (a margin of 1e-3 for rounding).
///
/// # Errors
/// [`QualityError::Input`] naming a wrong shape, a value outside `[0, 1]` or a non-finite one.
pub fn prepare_images(images: &Tensor) -> Result<Tensor> {
    let x = match images.dims() {
        [n, h, w] => images.reshape((*n, 1, *h, *w))?,
        [_, 1, _, _] => images.clone(),
        other => {
            return Err(QualityError::Input(format!(
                "images must be [N, 1, H, W] or [N, H, W] grey images, got {other:?}"
            )))
        }
    };
    let x = match x.dims() {
        [_, _, 28, 28] => x,
        [_, _, 32, 32] => x.narrow(2, 2, 28)?.narrow(3, 2, 28)?,
        other => {
            return Err(QualityError::Input(format!(
                "images must be 28 x 28 (or 32 x 32, MNIST padded by 2), got {other:?}"
            )))
        }
    };
    let x = x.to_dtype(DType::F32)?;
    let flat: Vec<f32> = x.flatten_all()?.to_vec1()?;
    if let Some(i) = flat
        .iter()
        .position(|v| !v.is_finite() || *v < -1e-3 || *v > 1.0 + 1e-3)
    {
        return Err(QualityError::Input(format!(
            "pixel values must be in [0, 1]; image {} holds {} (map [-1, 1] or [0, 255] images \
             to [0, 1] first)",
            i / (28 * 28),
            flat[i]
        )));
    }
    Ok(x.clamp(0f32, 1f32)?)
}

impl LeNetFeatures {
    /// The features of `images` (see [`prepare_images`]), `[N, features]`, 500 at a time.
    ///
    /// # Errors
    /// As [`prepare_images`].
    pub fn features(&self, images: &Tensor) -> Result<Tensor> {
        let x = prepare_images(images)?.to_device(&self.device())?;
        let n = x.dim(0)?;
        let mut parts = Vec::new();
        for start in (0..n).step_by(500) {
            parts.push(
                self.net
                    .features(&x.narrow(0, start, 500.min(n - start))?)?,
            );
        }
        Ok(Tensor::cat(&parts, 0)?)
    }

    fn device(&self) -> Device {
        named_vars(&self.vars)
            .1
            .first()
            .map_or(Device::Cpu, |v| v.device().clone())
    }

    /// The features of the test split of the network's data set, `[10000, features]`, from
    /// `cache_dir` or computed (and cached) when absent or when the network was trained now.
    ///
    /// # Errors
    /// Missing data, I/O errors.
    pub fn reference_features(&self, data_dir: &Path, cache_dir: &Path) -> Result<Tensor> {
        crate::stats::cached_features(
            &reference_features_path(cache_dir, self.data),
            self.trained_now,
            || {
                let splits = datasets::load_idx_dataset(data_dir, self.data.idx(), &Device::Cpu)?;
                self.features(&splits.test.images)
            },
        )
    }

    /// The statistics of [`LeNetFeatures::reference_features`].
    ///
    /// # Errors
    /// As [`LeNetFeatures::reference_features`].
    pub fn reference_stats(&self, data_dir: &Path, cache_dir: &Path) -> Result<GaussianStats> {
        GaussianStats::from_features(&self.reference_features(data_dir, cache_dir)?)
    }
}

/// Sample quality of a set of images against a data set's test split, with LeNet features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeNetQuality {
    /// The reference data set.
    pub reference: MnistFamily,
    /// Images evaluated.
    pub samples: usize,
    /// FID (LeNet features) against the test split.
    pub fid: f64,
    /// KID (LeNet features): mean over subsets.
    pub kid: f64,
    /// Standard error of the KID over its subsets.
    pub kid_std_err: f64,
    /// KID subsets and their size.
    pub kid_subsets: (usize, usize),
    /// Test accuracy of the feature network.
    pub feature_net_accuracy: f64,
}

impl LeNetFeatures {
    /// FID and KID (LeNet features) of `images` against the test split of the network's data
    /// set. FID needs more samples than the feature dimension (a full-rank covariance: at least
    /// `features + 1`; thousands for a stable value); KID uses 100 subsets of up to 1000.
    ///
    /// # Errors
    /// [`QualityError::TooFewSamples`] saying how many are needed, bad images (see
    /// [`prepare_images`]), missing data.
    pub fn evaluate(
        &self,
        images: &Tensor,
        data_dir: &Path,
        cache_dir: &Path,
    ) -> Result<LeNetQuality> {
        let d = self.training.net.features;
        let n = images.dim(0)?;
        if n <= d {
            return Err(QualityError::TooFewSamples {
                what: "FID with LeNet features (a full-rank covariance of the features)",
                needed: d + 1,
                got: n,
            });
        }
        let (x, _, _) = crate::stats::features_matrix(&self.features(images)?)?;
        let (y, m, _) =
            crate::stats::features_matrix(&self.reference_features(data_dir, cache_dir)?)?;
        let fid = crate::frechet::frechet_distance(
            &GaussianStats::from_rows(&x, n, d)?,
            &GaussianStats::from_rows(&y, m, d)?,
        )?;
        let size = n.min(m).min(1000);
        let kid = crate::kid::kernel_distance(&x, &y, d, 100, size, 0)?;
        Ok(LeNetQuality {
            reference: self.data,
            samples: n,
            fid,
            kid: kid.mean,
            kid_std_err: kid.std_err,
            kid_subsets: (100, size),
            feature_net_accuracy: self.test_accuracy,
        })
    }
}
