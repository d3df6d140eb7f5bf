//! The settings of Table 4 (FD-SM Sec. 6.1, App. C.3): the image sets detectors are trained on
//! and tested against, the paper's numbers, and the `quick` and `paper` profiles.

use std::path::PathBuf;

use models::ResNetEbmConfig;
use serde::{Deserialize, Serialize};

use crate::deep_ebm::DeepEbmTraining;
use crate::error::{ExpError, Result};
use crate::objective::Objective;

/// An image data set a detector is trained on or tested against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageSet {
    /// MNIST digits, padded from 28 x 28 to 32 x 32 as the deep-EBM code feeds them.
    Mnist,
    /// Fashion-MNIST, padded like MNIST.
    FashionMnist,
    /// SVHN cropped digits, 3 x 32 x 32.
    Svhn,
    /// CIFAR-10, 3 x 32 x 32.
    Cifar10,
    /// Downsampled ImageNet 32 x 32, from a user-supplied directory.
    Imagenet32,
}

impl ImageSet {
    /// Every image set.
    pub const ALL: [ImageSet; 5] = [
        ImageSet::Mnist,
        ImageSet::FashionMnist,
        ImageSet::Svhn,
        ImageSet::Cifar10,
        ImageSet::Imagenet32,
    ];

    /// The command-line key, e.g. `fashion-mnist`.
    pub fn key(self) -> &'static str {
        match self {
            Self::Mnist => "mnist",
            Self::FashionMnist => "fashion-mnist",
            Self::Svhn => "svhn",
            Self::Cifar10 => "cifar-10",
            Self::Imagenet32 => "imagenet32",
        }
    }

    /// The name in reports, e.g. `Fashion-MNIST`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Mnist => "MNIST",
            Self::FashionMnist => "Fashion-MNIST",
            Self::Svhn => "SVHN",
            Self::Cifar10 => "CIFAR-10",
            Self::Imagenet32 => "ImageNet 32x32",
        }
    }

    /// Parses [`ImageSet::key`] (also `cifar10`, `fmnist`, `imagenet`).
    ///
    /// # Errors
    /// [`ExpError::Config`] listing the keys.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "cifar10" => return Ok(Self::Cifar10),
            "fmnist" => return Ok(Self::FashionMnist),
            "imagenet" => return Ok(Self::Imagenet32),
            _ => {}
        }
        Self::ALL.into_iter().find(|d| d.key() == s).ok_or_else(|| {
            ExpError::Config(format!(
                "unknown image set `{s}`; expected one of {}",
                Self::ALL.map(|d| d.key()).join(", ")
            ))
        })
    }

    /// `(channels, size before padding, padding)`: the MNIST family is 1 x 28 x 28 padded by 2
    /// to 32 x 32, the colour sets 3 x 32 x 32.
    pub fn layout(self) -> (usize, usize, usize) {
        match self {
            Self::Mnist | Self::FashionMnist => (1, 28, 2),
            Self::Svhn | Self::Cifar10 | Self::Imagenet32 => (3, 32, 0),
        }
    }

    /// The data set the downloader knows, `None` for ImageNet 32 x 32 (user-supplied).
    pub fn dataset(self) -> Option<datasets::Dataset> {
        match self {
            Self::Mnist => Some(datasets::Dataset::Mnist),
            Self::FashionMnist => Some(datasets::Dataset::FashionMnist),
            Self::Svhn => Some(datasets::Dataset::Svhn),
            Self::Cifar10 => Some(datasets::Dataset::Cifar10),
            Self::Imagenet32 => None,
        }
    }
}

/// A column of the table: a data set's test split, or a synthetic set made from the training
/// set's own test images that any user can regenerate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TestSet {
    /// The test split of an image set; for the detector's own training set this is the
    /// in-distribution column (two independent draws of its test images, AUC near 0.5).
    Data(ImageSet),
    /// Pixels uniform in `[0, 1]` (inside the padding for the MNIST family).
    Noise,
    /// The training set's test images with their pixel positions shuffled by one fixed
    /// permutation (channels kept together): the same pixel values, no structure.
    Permuted,
    /// The training set's test images with every pixel `p` replaced by `1 - p` (inside the
    /// padding for the MNIST family).
    Inverted,
}

impl TestSet {
    /// The command-line key: an image set's key, `noise`, `permuted` or `inverted`.
    pub fn key(self) -> String {
        match self {
            Self::Data(d) => d.key().to_string(),
            Self::Noise => "noise".into(),
            Self::Permuted => "permuted".into(),
            Self::Inverted => "inverted".into(),
        }
    }

    /// The column heading.
    pub fn label(self) -> String {
        match self {
            Self::Data(d) => d.label().to_string(),
            Self::Noise => "Uniform noise".into(),
            Self::Permuted => "Permuted pixels".into(),
            Self::Inverted => "Inverted".into(),
        }
    }

    /// Parses [`TestSet::key`].
    ///
    /// # Errors
    /// [`ExpError::Config`] listing the keys.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "noise" => Ok(Self::Noise),
            "permuted" => Ok(Self::Permuted),
            "inverted" => Ok(Self::Inverted),
            other => ImageSet::parse(other).map(Self::Data).map_err(|_| {
                ExpError::Config(format!(
                    "unknown test set `{other}`; expected noise, permuted, inverted or one of {}",
                    ImageSet::ALL.map(|d| d.key()).join(", ")
                ))
            }),
        }
    }
}

/// The methods of Table 4 (the paper's DSM is multiscale DSM, as the deep-EBM code trains it).
pub const METHODS: [Objective; 2] = [Objective::Mdsm, Objective::FdMdsm];

/// The paper's Table 4 (GPU, 300K iterations, M = 2): `(training set, method, time per
/// iteration in ms, AUC against SVHN, CIFAR-10, ImageNet)`.
pub const PAPER: [(ImageSet, Objective, f64, [f64; 3]); 6] = [
    (ImageSet::Svhn, Objective::Mdsm, 673.0, [0.49, 1.00, 0.99]),
    (ImageSet::Svhn, Objective::FdMdsm, 305.0, [0.50, 1.00, 1.00]),
    (
        ImageSet::Cifar10,
        Objective::Mdsm,
        635.0,
        [0.91, 0.49, 0.79],
    ),
    (
        ImageSet::Cifar10,
        Objective::FdMdsm,
        311.0,
        [0.92, 0.51, 0.81],
    ),
    (
        ImageSet::Imagenet32,
        Objective::Mdsm,
        1125.0,
        [0.95, 0.87, 0.49],
    ),
    (
        ImageSet::Imagenet32,
        Objective::FdMdsm,
        713.0,
        [0.95, 0.89, 0.49],
    ),
];

/// The paper's columns, in order.
pub const PAPER_COLUMNS: [ImageSet; 3] = [ImageSet::Svhn, ImageSet::Cifar10, ImageSet::Imagenet32];

/// Everything that defines a Table 4 run; saved as `config.json` next to the results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table4Config {
    /// Profile name the run started from ("quick" or "paper").
    pub profile: String,
    /// How every detector trains (the deep-EBM settings of Table 2, flattened into this JSON
    /// object); run `k` uses the seed `seed + k`.
    #[serde(flatten)]
    pub training: DeepEbmTraining,
    /// The training sets (one detector per training set, method and seed).
    pub train_sets: Vec<ImageSet>,
    /// The methods (among [`METHODS`]).
    pub methods: Vec<Objective>,
    /// Training runs per (training set, method).
    pub seeds: usize,
    /// The columns.
    pub test_sets: Vec<TestSet>,
    /// Training images whose mean energy is the typicality reference (reference code 1000:
    /// ten batches of 100; the paper's text says 50,000).
    pub reference_images: usize,
    /// Test inputs per typicality score (paper M = 2).
    pub m: usize,
    /// Typicality scores per column (paper 1000, so `1000 M` test images).
    pub test_batches: usize,
    /// Batch size of the energy evaluations.
    pub eval_batch: usize,
    /// Training images read from ImageNet 32 x 32 (`None`: all 1.28 million, 3.9 GB as `u8`).
    pub imagenet32_train_images: Option<usize>,
    /// Where ImageNet 32 x 32's `.npz` archives are (`None`: `<data dir>/imagenet32`).
    pub imagenet32_dir: Option<PathBuf>,
    /// A Table 2 (or Table 4) results directory whose finished MNIST detectors are reused when
    /// their training settings are these (checked against the checkpoint), instead of training
    /// them again.
    pub reuse_from: Option<PathBuf>,
}

impl Table4Config {
    /// The paper's settings (App. C.3): the deep-EBM ResNet with n = 128 on SVHN, CIFAR-10 and
    /// ImageNet 32 x 32, DSM and FD-DSM at the reference code's settings (batch 128 for the DSM
    /// family), one run each, M = 2 with 1000 scores per column and a reference over 1000
    /// training images as the reference code computes it. Meant for a GPU.
    pub fn paper() -> Self {
        let mut model = ResNetEbmConfig::res18(128);
        model.in_channels = 3;
        Self {
            profile: "paper".into(),
            training: DeepEbmTraining {
                model,
                batch: 128,
                eval_points: 1,
                ..DeepEbmTraining::paper()
            },
            train_sets: PAPER_COLUMNS.to_vec(),
            methods: METHODS.to_vec(),
            seeds: 1,
            test_sets: PAPER_COLUMNS.map(TestSet::Data).to_vec(),
            reference_images: 1000,
            m: 2,
            test_batches: 1000,
            eval_batch: 100,
            imagenet32_train_images: None,
            imagenet32_dir: None,
            reuse_from: None,
        }
    }

    /// A 2-core CPU profile with the data sets at hand: MNIST and Fashion-MNIST detectors (a
    /// width-8 ResNet, batch 32, 1200 steps, raised learning rate), two seeds, tested against
    /// each other, uniform noise and the permuted and inverted test images.
    pub fn quick() -> Self {
        Self {
            profile: "quick".into(),
            training: DeepEbmTraining {
                model: ResNetEbmConfig::res18(8),
                iters: 1200,
                batch: 32,
                lr_dsm: 1e-3,
                lr_ssm: 2e-4,
                eval_points: 1,
                timing_warmup: 5,
                checkpoint_every: 200,
                ..DeepEbmTraining::paper()
            },
            train_sets: vec![ImageSet::Mnist, ImageSet::FashionMnist],
            seeds: 2,
            test_sets: vec![
                TestSet::Data(ImageSet::Mnist),
                TestSet::Data(ImageSet::FashionMnist),
                TestSet::Noise,
                TestSet::Permuted,
                TestSet::Inverted,
            ],
            ..Self::paper()
        }
    }

    /// A named profile.
    ///
    /// # Errors
    /// [`ExpError::Config`] for an unknown name.
    pub fn profile(name: &str) -> Result<Self> {
        crate::pick_profile(name, Self::quick, Self::paper)
    }

    /// Every image set the run reads: the training sets, then the test sets that are data sets.
    pub fn image_sets(&self) -> Vec<ImageSet> {
        let mut sets = self.train_sets.clone();
        sets.extend(self.test_sets.iter().filter_map(|t| match t {
            TestSet::Data(d) => Some(*d),
            _ => None,
        }));
        sets
    }

    /// The training settings of run `seed` (its seed is the base seed plus the index).
    pub fn training_of(&self, seed: u32) -> DeepEbmTraining {
        DeepEbmTraining {
            seed: self.training.seed + u64::from(seed),
            ..self.training.clone()
        }
    }

    /// Checks the values a run depends on.
    ///
    /// # Errors
    /// [`ExpError::Config`] naming the bad value.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ExpError::Config(m));
        self.training.validate()?;
        if self.train_sets.is_empty() || self.methods.is_empty() || self.test_sets.is_empty() {
            return bad("no training set, method or test set selected".into());
        }
        if let Some(o) = self.methods.iter().find(|o| !METHODS.contains(o)) {
            return bad(format!(
                "`{}` is not a method of Table 4; its methods are mdsm (the paper's DSM) and \
                 fd-mdsm (FD-DSM)",
                o.key()
            ));
        }
        if self.seeds == 0
            || self.reference_images == 0
            || self.m == 0
            || self.test_batches == 0
            || self.eval_batch == 0
        {
            return bad(
                "seeds, reference_images, m, test_batches and eval_batch must be >= 1".into(),
            );
        }
        let layout = self.train_sets[0].layout();
        for d in self.image_sets() {
            if d.layout() != layout {
                return bad(format!(
                    "{} images are {:?} (channels, size, padding) but {} images are {:?}: one \
                     detector takes one shape, so the grey-scale and colour sets cannot be \
                     mixed in a run",
                    d.label(),
                    d.layout(),
                    self.train_sets[0].label(),
                    layout
                ));
            }
        }
        let (channels, size, pad) = layout;
        let model = &self.training.model;
        if model.in_channels != channels || model.image_size != size + 2 * pad {
            return bad(format!(
                "the model takes {} x {} x {} inputs but {} images are {channels} x {s} x {s}",
                model.in_channels,
                model.image_size,
                model.image_size,
                self.train_sets[0].label(),
                s = size + 2 * pad
            ));
        }
        if self.imagenet32_train_images == Some(0) {
            return bad("imagenet32_train_images must be >= 1".into());
        }
        Ok(())
    }
}
