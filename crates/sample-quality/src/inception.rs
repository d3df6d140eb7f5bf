//! InceptionV3 as the FID standard uses it (Szegedy et al. 2016; the network of the TF FID code
//! of 2015-12-05, as pytorch-fid ports it with its `pt_inception-2015-12-05` weights): images in
//! `[0, 1]` resized to 299 x 299 (bilinear, half-pixel centres), mapped to `[-1, 1]`, and the
//! 2048 features of the final average pool. Forward only, f32.
//!
//! The FID variant differs from torchvision's InceptionV3 in its pooling branches: the average
//! pools of the A, C and first E blocks do not count the padding, and the second E block's pool
//! branch is a 3 x 3 max pool. Convolutions carry no bias; each is followed by batch
//! normalisation (eps 1e-3, running statistics, folded into a scale and shift here) and ReLU.
//! Weight names are the PyTorch module paths (`Mixed_6b.branch7x7_2.conv.weight`, `...bn.
//! running_var`), so the `.pth` file loads as it is.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::VarBuilder;

use crate::error::{QualityError, Result};

/// The feature dimension.
pub const INCEPTION_FEATURES: usize = 2048;

/// Where `cargo xtask download inception` puts pytorch-fid's FID weights (checked against their
/// pinned SHA-256) inside the data directory.
pub const INCEPTION_WEIGHTS: &str = "fid-inception/pt_inception-2015-12-05-6726825d.pth";

/// A convolution (no bias) with batch normalisation folded into a per-channel scale and shift,
/// then ReLU; kernels may be rectangular, with their own padding per axis.
#[derive(Debug, Clone)]
struct ConvBn {
    weight: Tensor,
    scale: Tensor,
    shift: Tensor,
    stride: usize,
    padding: (usize, usize),
}

impl ConvBn {
    fn new(
        c_in: usize,
        c_out: usize,
        kernel: (usize, usize),
        stride: usize,
        padding: (usize, usize),
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        let weight = vb
            .pp("conv")
            .get((c_out, c_in, kernel.0, kernel.1), "weight")?;
        let bn = vb.pp("bn");
        let gamma = bn.get(c_out, "weight")?;
        let beta = bn.get(c_out, "bias")?;
        let mean = bn.get(c_out, "running_mean")?;
        let var = bn.get(c_out, "running_var")?;
        let scale = (gamma / (var + 1e-3)?.sqrt()?)?;
        let shift = (beta - (mean * &scale)?)?;
        Ok(Self {
            weight,
            scale: scale.reshape((1, c_out, 1, 1))?,
            shift: shift.reshape((1, c_out, 1, 1))?,
            stride,
            padding,
        })
    }

    fn square(c_in: usize, c_out: usize, k: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        Self::new(c_in, c_out, (k, k), 1, (k / 2, k / 2), vb)
    }
}

impl Module for ConvBn {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (ph, pw) = self.padding;
        let x = if ph > 0 || pw > 0 {
            x.pad_with_zeros(2, ph, ph)?.pad_with_zeros(3, pw, pw)?
        } else {
            x.clone()
        };
        x.conv2d(&self.weight, 0, self.stride, 1, 1)?
            .broadcast_mul(&self.scale)?
            .broadcast_add(&self.shift)?
            .relu()
    }
}

/// 3 x 3 average pooling with stride 1 and padding 1 that averages over the pixels inside the
/// image only (PyTorch's `count_include_pad=False`).
///
/// # Errors
/// Tensor errors.
pub fn avg_pool3_excluding_padding(x: &Tensor) -> candle_core::Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let sums = (x
        .pad_with_zeros(2, 1, 1)?
        .pad_with_zeros(3, 1, 1)?
        .avg_pool2d_with_stride(3, 1)?
        * 9.0)?;
    let counts = (Tensor::ones((1, 1, h, w), x.dtype(), x.device())?
        .pad_with_zeros(2, 1, 1)?
        .pad_with_zeros(3, 1, 1)?
        .avg_pool2d_with_stride(3, 1)?
        * 9.0)?;
    sums.broadcast_div(&counts)
}

/// 3 x 3 max pooling with stride 1 and padding 1 of a non-negative input (every input here
/// follows a ReLU): zero padding never exceeds the window's own centre, so it equals PyTorch's
/// padding with minus infinity.
fn max_pool3_same(x: &Tensor) -> candle_core::Result<Tensor> {
    x.pad_with_zeros(2, 1, 1)?
        .pad_with_zeros(3, 1, 1)?
        .max_pool2d_with_stride(3, 1)
}

#[derive(Debug, Clone)]
struct BlockA {
    b1: ConvBn,
    b5: [ConvBn; 2],
    b3: [ConvBn; 3],
    pool: ConvBn,
}

impl BlockA {
    fn new(c_in: usize, pool: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            b1: ConvBn::square(c_in, 64, 1, vb.pp("branch1x1"))?,
            b5: [
                ConvBn::square(c_in, 48, 1, vb.pp("branch5x5_1"))?,
                ConvBn::square(48, 64, 5, vb.pp("branch5x5_2"))?,
            ],
            b3: [
                ConvBn::square(c_in, 64, 1, vb.pp("branch3x3dbl_1"))?,
                ConvBn::square(64, 96, 3, vb.pp("branch3x3dbl_2"))?,
                ConvBn::square(96, 96, 3, vb.pp("branch3x3dbl_3"))?,
            ],
            pool: ConvBn::square(c_in, pool, 1, vb.pp("branch_pool"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let b5 = self.b5[1].forward(&self.b5[0].forward(x)?)?;
        let b3 = self.b3.iter().try_fold(x.clone(), |h, c| c.forward(&h))?;
        let pool = self.pool.forward(&avg_pool3_excluding_padding(x)?)?;
        Tensor::cat(&[self.b1.forward(x)?, b5, b3, pool], 1)
    }
}

#[derive(Debug, Clone)]
struct BlockB {
    b3: ConvBn,
    dbl: [ConvBn; 3],
}

impl BlockB {
    fn new(c_in: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            b3: ConvBn::new(c_in, 384, (3, 3), 2, (0, 0), vb.pp("branch3x3"))?,
            dbl: [
                ConvBn::square(c_in, 64, 1, vb.pp("branch3x3dbl_1"))?,
                ConvBn::square(64, 96, 3, vb.pp("branch3x3dbl_2"))?,
                ConvBn::new(96, 96, (3, 3), 2, (0, 0), vb.pp("branch3x3dbl_3"))?,
            ],
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dbl = self.dbl.iter().try_fold(x.clone(), |h, c| c.forward(&h))?;
        let pool = x.max_pool2d_with_stride(3, 2)?;
        Tensor::cat(&[self.b3.forward(x)?, dbl, pool], 1)
    }
}

#[derive(Debug, Clone)]
struct BlockC {
    b1: ConvBn,
    b7: [ConvBn; 3],
    dbl: [ConvBn; 5],
    pool: ConvBn,
}

impl BlockC {
    fn new(c7: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        let c = 768;
        let row = |i, o, name: &str| ConvBn::new(i, o, (1, 7), 1, (0, 3), vb.pp(name));
        let col = |i, o, name: &str| ConvBn::new(i, o, (7, 1), 1, (3, 0), vb.pp(name));
        Ok(Self {
            b1: ConvBn::square(c, 192, 1, vb.pp("branch1x1"))?,
            b7: [
                ConvBn::square(c, c7, 1, vb.pp("branch7x7_1"))?,
                row(c7, c7, "branch7x7_2")?,
                col(c7, 192, "branch7x7_3")?,
            ],
            dbl: [
                ConvBn::square(c, c7, 1, vb.pp("branch7x7dbl_1"))?,
                col(c7, c7, "branch7x7dbl_2")?,
                row(c7, c7, "branch7x7dbl_3")?,
                col(c7, c7, "branch7x7dbl_4")?,
                row(c7, 192, "branch7x7dbl_5")?,
            ],
            pool: ConvBn::square(c, 192, 1, vb.pp("branch_pool"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let b7 = self.b7.iter().try_fold(x.clone(), |h, c| c.forward(&h))?;
        let dbl = self.dbl.iter().try_fold(x.clone(), |h, c| c.forward(&h))?;
        let pool = self.pool.forward(&avg_pool3_excluding_padding(x)?)?;
        Tensor::cat(&[self.b1.forward(x)?, b7, dbl, pool], 1)
    }
}

#[derive(Debug, Clone)]
struct BlockD {
    b3: [ConvBn; 2],
    b7: [ConvBn; 4],
}

impl BlockD {
    fn new(vb: VarBuilder) -> candle_core::Result<Self> {
        let c = 768;
        Ok(Self {
            b3: [
                ConvBn::square(c, 192, 1, vb.pp("branch3x3_1"))?,
                ConvBn::new(192, 320, (3, 3), 2, (0, 0), vb.pp("branch3x3_2"))?,
            ],
            b7: [
                ConvBn::square(c, 192, 1, vb.pp("branch7x7x3_1"))?,
                ConvBn::new(192, 192, (1, 7), 1, (0, 3), vb.pp("branch7x7x3_2"))?,
                ConvBn::new(192, 192, (7, 1), 1, (3, 0), vb.pp("branch7x7x3_3"))?,
                ConvBn::new(192, 192, (3, 3), 2, (0, 0), vb.pp("branch7x7x3_4"))?,
            ],
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let b3 = self.b3.iter().try_fold(x.clone(), |h, c| c.forward(&h))?;
        let b7 = self.b7.iter().try_fold(x.clone(), |h, c| c.forward(&h))?;
        Tensor::cat(&[b3, b7, x.max_pool2d_with_stride(3, 2)?], 1)
    }
}

#[derive(Debug, Clone)]
struct BlockE {
    b1: ConvBn,
    b3: ConvBn,
    b3_split: [ConvBn; 2],
    dbl: [ConvBn; 2],
    dbl_split: [ConvBn; 2],
    pool: ConvBn,
    /// The second E block pools by maximum, the first by an average without the padding.
    max_pool: bool,
}

impl BlockE {
    fn new(c_in: usize, max_pool: bool, vb: VarBuilder) -> candle_core::Result<Self> {
        let split = |i, name_a: &str, name_b: &str| -> candle_core::Result<[ConvBn; 2]> {
            Ok([
                ConvBn::new(i, 384, (1, 3), 1, (0, 1), vb.pp(name_a))?,
                ConvBn::new(i, 384, (3, 1), 1, (1, 0), vb.pp(name_b))?,
            ])
        };
        Ok(Self {
            b1: ConvBn::square(c_in, 320, 1, vb.pp("branch1x1"))?,
            b3: ConvBn::square(c_in, 384, 1, vb.pp("branch3x3_1"))?,
            b3_split: split(384, "branch3x3_2a", "branch3x3_2b")?,
            dbl: [
                ConvBn::square(c_in, 448, 1, vb.pp("branch3x3dbl_1"))?,
                ConvBn::square(448, 384, 3, vb.pp("branch3x3dbl_2"))?,
            ],
            dbl_split: split(384, "branch3x3dbl_3a", "branch3x3dbl_3b")?,
            pool: ConvBn::square(c_in, 192, 1, vb.pp("branch_pool"))?,
            max_pool,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let b3 = self.b3.forward(x)?;
        let b3 = Tensor::cat(
            &[
                self.b3_split[0].forward(&b3)?,
                self.b3_split[1].forward(&b3)?,
            ],
            1,
        )?;
        let dbl = self.dbl[1].forward(&self.dbl[0].forward(x)?)?;
        let dbl = Tensor::cat(
            &[
                self.dbl_split[0].forward(&dbl)?,
                self.dbl_split[1].forward(&dbl)?,
            ],
            1,
        )?;
        let pooled = if self.max_pool {
            max_pool3_same(x)?
        } else {
            avg_pool3_excluding_padding(x)?
        };
        Tensor::cat(
            &[self.b1.forward(x)?, b3, dbl, self.pool.forward(&pooled)?],
            1,
        )
    }
}

/// The FID InceptionV3 up to its 2048-d pool features; see the module documentation.
#[derive(Debug, Clone)]
pub struct FidInception {
    stem: [ConvBn; 5],
    mixed_5: [BlockA; 3],
    mixed_6a: BlockB,
    mixed_6: [BlockC; 4],
    mixed_7a: BlockD,
    mixed_7: [BlockE; 2],
    device: Device,
}

impl FidInception {
    /// Builds the network from weights named as pytorch-fid's (the classifier's `fc.*` is not
    /// read).
    ///
    /// # Errors
    /// A missing weight or one of the wrong shape (named by Candle).
    pub fn new(vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            stem: [
                ConvBn::new(3, 32, (3, 3), 2, (0, 0), vb.pp("Conv2d_1a_3x3"))?,
                ConvBn::new(32, 32, (3, 3), 1, (0, 0), vb.pp("Conv2d_2a_3x3"))?,
                ConvBn::square(32, 64, 3, vb.pp("Conv2d_2b_3x3"))?,
                ConvBn::square(64, 80, 1, vb.pp("Conv2d_3b_1x1"))?,
                ConvBn::new(80, 192, (3, 3), 1, (0, 0), vb.pp("Conv2d_4a_3x3"))?,
            ],
            mixed_5: [
                BlockA::new(192, 32, vb.pp("Mixed_5b"))?,
                BlockA::new(256, 64, vb.pp("Mixed_5c"))?,
                BlockA::new(288, 64, vb.pp("Mixed_5d"))?,
            ],
            mixed_6a: BlockB::new(288, vb.pp("Mixed_6a"))?,
            mixed_6: [
                BlockC::new(128, vb.pp("Mixed_6b"))?,
                BlockC::new(160, vb.pp("Mixed_6c"))?,
                BlockC::new(160, vb.pp("Mixed_6d"))?,
                BlockC::new(192, vb.pp("Mixed_6e"))?,
            ],
            mixed_7a: BlockD::new(vb.pp("Mixed_7a"))?,
            mixed_7: [
                BlockE::new(1280, false, vb.pp("Mixed_7b"))?,
                BlockE::new(2048, true, vb.pp("Mixed_7c"))?,
            ],
            device: vb.device().clone(),
        })
    }

    /// Reads the network from a PyTorch `.pth` state dict (pytorch-fid's weights, see
    /// [`INCEPTION_WEIGHTS`], or any file with its names and shapes), in either of PyTorch's
    /// formats ([`crate::pth`]).
    ///
    /// # Errors
    /// [`QualityError::File`] for a missing or unreadable file or one without the weights.
    pub fn from_pth(path: &Path, device: &Device) -> Result<Self> {
        let bad = |problem: String| QualityError::File {
            path: path.to_path_buf(),
            problem,
        };
        if !path.is_file() {
            return Err(bad(
                "missing: run `cargo xtask download inception` (or fetch pytorch-fid's \
                 pt_inception-2015-12-05-6726825d.pth from its release page and put it here)"
                    .into(),
            ));
        }
        let tensors = crate::pth::read_state_dict(path)
            .map_err(|e| bad(format!("not a readable PyTorch state dict: {e}")))?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        Self::new(vb).map_err(|e| bad(format!("not the FID Inception weights: {e}")))
    }

    /// The 2048 pool features of RGB images in `[0, 1]`, `[N, 3, H, W]` (any size; grey
    /// `[N, 1, H, W]` images are repeated into three channels), `batch` at a time on the
    /// network's device, returned on the CPU.
    ///
    /// # Errors
    /// [`QualityError::Input`] naming a wrong shape or a value outside `[0, 1]`.
    pub fn features(&self, images: &Tensor, batch: usize) -> Result<Tensor> {
        let x = match images.dims() {
            [_, 3, _, _] => images.to_dtype(DType::F32)?,
            [_, 1, _, _] => images.to_dtype(DType::F32)?.repeat((1, 3, 1, 1))?,
            other => {
                return Err(QualityError::Input(format!(
                    "Inception takes [N, 3, H, W] (or grey [N, 1, H, W]) images, got {other:?}"
                )))
            }
        };
        let (lo, hi) = (
            x.min_all()?.to_scalar::<f32>()?,
            x.max_all()?.to_scalar::<f32>()?,
        );
        if !(lo >= -1e-3 && hi <= 1.0 + 1e-3) {
            return Err(QualityError::Input(format!(
                "pixel values must be in [0, 1], found [{lo}, {hi}]"
            )));
        }
        let n = x.dim(0)?;
        let mut parts = Vec::new();
        for start in (0..n).step_by(batch.max(1)) {
            let chunk = x.narrow(0, start, batch.max(1).min(n - start))?;
            parts.push(
                self.forward_unit(&chunk.to_device(&self.device)?)?
                    .to_device(&Device::Cpu)?,
            );
        }
        Ok(Tensor::cat(&parts, 0)?)
    }

    fn forward_unit(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = layers::upsample_bilinear2d(x, (299, 299), false)?;
        let mut h = x.affine(2.0, -1.0)?;
        for (i, conv) in self.stem.iter().enumerate() {
            h = conv.forward(&h)?;
            // The two 3 x 3 max pools of stride 2: after the third and the fifth convolution.
            if i == 2 || i == 4 {
                h = h.max_pool2d_with_stride(3, 2)?;
            }
        }
        for b in &self.mixed_5 {
            h = b.forward(&h)?;
        }
        h = self.mixed_6a.forward(&h)?;
        for b in &self.mixed_6 {
            h = b.forward(&h)?;
        }
        h = self.mixed_7a.forward(&h)?;
        for b in &self.mixed_7 {
            h = b.forward(&h)?;
        }
        h.mean(D::Minus1)?.mean(D::Minus1)
    }
}
