//! A LeNet-style classifier of 28 x 28 grey images (LeCun et al. 1998, with ReLU and average
//! pooling): two 5 x 5 convolutions, each followed by ReLU and 2 x 2 average pooling, then a
//! hidden dense layer whose ReLU output is the feature vector and a linear classifier. Trained on
//! MNIST or Fashion-MNIST it is the feature network of "FID (LeNet features)", the usual
//! substitute for Inception features on these data sets (not comparable with Inception FID).
//!
//! Weights: `conv1.{weight,bias}`, `conv2.{weight,bias}`, `fc1.{weight,bias}`,
//! `classifier.{weight,bias}`.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use layers::{avg_pool2d, conv2d_layer, linear, Conv2d, Conv2dConfig, Linear};
use serde::{Deserialize, Serialize};

/// The sizes of a [`LeNet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeNetConfig {
    /// Channels of the first convolution.
    pub conv1: usize,
    /// Channels of the second convolution.
    pub conv2: usize,
    /// Width of the hidden layer: the feature dimension.
    pub features: usize,
    /// Classes.
    pub classes: usize,
}

impl Default for LeNetConfig {
    /// 32 and 64 channels, 128 features, 10 classes.
    fn default() -> Self {
        Self {
            conv1: 32,
            conv2: 64,
            features: 128,
            classes: 10,
        }
    }
}

/// The classifier; see the module documentation.
#[derive(Debug, Clone)]
pub struct LeNet {
    conv1: Conv2d,
    conv2: Conv2d,
    fc1: Linear,
    classifier: Linear,
    cfg: LeNetConfig,
}

impl LeNet {
    /// Builds the network under `vb`.
    ///
    /// # Errors
    /// A `VarBuilder` that lacks a weight or holds one of the wrong shape.
    pub fn new(cfg: LeNetConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            conv1: conv2d_layer(1, cfg.conv1, 5, Conv2dConfig::padded(2), vb.pp("conv1"))?,
            conv2: conv2d_layer(
                cfg.conv1,
                cfg.conv2,
                5,
                Conv2dConfig::default(),
                vb.pp("conv2"),
            )?,
            fc1: linear(cfg.conv2 * 5 * 5, cfg.features, vb.pp("fc1"))?,
            classifier: linear(cfg.features, cfg.classes, vb.pp("classifier"))?,
            cfg,
        })
    }

    /// The configuration.
    pub fn config(&self) -> LeNetConfig {
        self.cfg
    }

    /// The feature vectors (the hidden layer after ReLU).
    ///
    /// # Shapes
    /// * `x`: `[N, 1, 28, 28]`, pixels in `[0, 1]`
    /// * returns `[N, features]`
    ///
    /// # Errors
    /// Another input shape (the error names it).
    pub fn features(&self, x: &Tensor) -> Result<Tensor> {
        match x.dims() {
            [_, 1, 28, 28] => {}
            other => candle_core::bail!(
                "LeNet takes [N, 1, 28, 28] images, got {other:?} (crop 32 x 32 padded images \
                 to their centre first)"
            ),
        }
        let h = avg_pool2d(&self.conv1.forward(x)?.relu()?, 2)?;
        let h = avg_pool2d(&self.conv2.forward(&h)?.relu()?, 2)?;
        self.fc1.forward(&h.flatten_from(1)?)?.relu()
    }

    /// Class logits, `[N, classes]`.
    ///
    /// # Errors
    /// As [`LeNet::features`].
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        self.classifier.forward(&self.features(x)?)
    }
}
