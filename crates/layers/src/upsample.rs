//! Bilinear upsampling correct at every derivative order (Candle's `upsample_bilinear2d` has no
//! usable backward pass): two matrix products with fixed interpolation matrices, as RefineNet's
//! multi-resolution fusion in NCSN needs (`align_corners = true` there).

use candle_core::{bail, Result, Tensor};

/// Resizes `[N, C, H, W]` to `[N, C, h_out, w_out]` by bilinear interpolation, PyTorch's
/// `interpolate(mode = "bilinear")`: with `align_corners` the corner pixels of input and output
/// coincide (source coordinate `i (H - 1) / (h_out - 1)`); without, pixel centres are mapped
/// (`(i + 1/2) H / h_out - 1/2`, clamped at 0). Computed as `A_h x A_w^T` with the
/// interpolation matrices `A_h` (`[h_out, H]`) and `A_w` (`[w_out, W]`), so every derivative
/// is again a matrix product.
///
/// # Shapes
/// * `x`: `[N, C, H, W]`
/// * returns `[N, C, h_out, w_out]`
///
/// # Errors
/// A zero output size, or an input that is not 4-D.
pub fn upsample_bilinear2d(
    x: &Tensor,
    (h_out, w_out): (usize, usize),
    align_corners: bool,
) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if h_out == 0 || w_out == 0 || h == 0 || w == 0 {
        bail!("upsample_bilinear2d: cannot resize {h}x{w} to {h_out}x{w_out}")
    }
    let a_h = interpolation_matrix(h, h_out, align_corners, x)?;
    let a_w_t = interpolation_matrix(w, w_out, align_corners, x)?.t()?;
    let rows = x.broadcast_matmul(&a_w_t)?; // [N, C, H, w_out]
    a_h.broadcast_matmul(&rows) // [N, C, h_out, w_out]
}

/// The `[n_out, n_in]` matrix of 1-D linear interpolation, in the dtype and on the device of
/// `like`.
fn interpolation_matrix(
    n_in: usize,
    n_out: usize,
    align_corners: bool,
    like: &Tensor,
) -> Result<Tensor> {
    let mut a = vec![0f64; n_out * n_in];
    for i in 0..n_out {
        let src = if align_corners {
            if n_out > 1 {
                i as f64 * (n_in - 1) as f64 / (n_out - 1) as f64
            } else {
                0.0
            }
        } else {
            ((i as f64 + 0.5) * n_in as f64 / n_out as f64 - 0.5).max(0.0)
        };
        let i0 = (src.floor() as usize).min(n_in - 1);
        let i1 = (i0 + 1).min(n_in - 1);
        let t = src - i0 as f64;
        a[i * n_in + i0] += 1.0 - t;
        a[i * n_in + i1] += t;
    }
    Tensor::from_vec(a, (n_out, n_in), like.device())?.to_dtype(like.dtype())
}
