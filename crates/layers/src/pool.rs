//! Average pooling correct at every derivative order: kernel = stride as one fused pass on the
//! CPU ([`avg_pool2d`]), any kernel, stride and zero padding composed of shifted slices
//! ([`avg_pool2d_padded`], e.g. the 5x5 stride-1 pooling of RefineNet's chained residual
//! pooling in NCSN), and the [`AvgPool2d`] layer.

use candle_core::{bail, Module, Result, Tensor};

use crate::conv::subsample;
use crate::kernels::{fused, fused_path};

/// Average pooling with kernel = stride = `k` (floor mode: trailing rows and columns that do not
/// fill a window are dropped), built from `narrow`, `reshape` and `mean`.
///
/// # Shapes
/// * `x`: `[N, C, H, W]` with `H, W >= k`
/// * returns `[N, C, H / k, W / k]`
pub fn avg_pool2d(x: &Tensor, k: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    if k == 0 || h < k || w < k {
        bail!("avg_pool2d: kernel {k} does not fit an input of height {h} and width {w}")
    }
    if fused_path(x) {
        return x.apply_op1(fused::AvgPool { k });
    }
    let (ho, wo) = (h / k, w / k);
    let x = if ho * k != h || wo * k != w {
        x.narrow(2, 0, ho * k)?.narrow(3, 0, wo * k)?
    } else {
        x.clone()
    };
    x.reshape((n, c, ho, k, wo, k))?.mean(5)?.mean(3)
}

/// Average pooling with a `kernel x kernel` window moved `stride` pixels at a time over the
/// input padded with `padding` zeros on each side; the zeros count in every mean (PyTorch's
/// default `count_include_pad`). Built from `pad_with_zeros`, `narrow` and sums of the
/// `kernel^2` shifted slices, whose derivatives Candle gets right at every order; kernel =
/// stride without padding takes the fused [`avg_pool2d`].
///
/// # Shapes
/// * `x`: `[N, C, H, W]` with `H + 2 padding >= kernel` (and `W` likewise)
/// * returns `[N, C, (H + 2 padding - kernel) / stride + 1, (W + 2 padding - kernel) / stride + 1]`
///
/// # Errors
/// A zero kernel or stride, `padding > kernel / 2` (as PyTorch), or a window larger than the
/// padded input.
pub fn avg_pool2d_padded(
    x: &Tensor,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if kernel == 0 || stride == 0 || 2 * padding > kernel {
        bail!("avg_pool2d: needs kernel, stride >= 1 and padding <= kernel / 2, got kernel {kernel}, stride {stride}, padding {padding}")
    }
    if h + 2 * padding < kernel || w + 2 * padding < kernel {
        bail!("avg_pool2d: a {kernel}x{kernel} window does not fit a {h}x{w} input padded by {padding}")
    }
    if kernel == stride && padding == 0 {
        return avg_pool2d(x, kernel);
    }
    let xp = x
        .pad_with_zeros(2, padding, padding)?
        .pad_with_zeros(3, padding, padding)?;
    let (hs, ws) = (h + 2 * padding + 1 - kernel, w + 2 * padding + 1 - kernel);
    // The window at offset (0, 0), then the other kernel^2 - 1 offsets added to it.
    let mut sum = xp.narrow(2, 0, hs)?.narrow(3, 0, ws)?;
    for i in 0..kernel {
        let rows = xp.narrow(2, i, hs)?;
        for j in (0..kernel).filter(|&j| i > 0 || j > 0) {
            sum = (sum + rows.narrow(3, j, ws)?)?;
        }
    }
    let mean = (sum / (kernel * kernel) as f64)?;
    subsample(&mean, stride)
}

/// An average-pooling layer: [`avg_pool2d_padded`] as a [`Module`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgPool2d {
    /// Window side.
    pub kernel: usize,
    /// Step between windows.
    pub stride: usize,
    /// Zeros on each side.
    pub padding: usize,
}

impl AvgPool2d {
    /// Kernel = stride = `k`, no padding: the fused [`avg_pool2d`].
    pub fn new(k: usize) -> Self {
        Self {
            kernel: k,
            stride: k,
            padding: 0,
        }
    }
}

impl Module for AvgPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        avg_pool2d_padded(x, self.kernel, self.stride, self.padding)
    }
}
