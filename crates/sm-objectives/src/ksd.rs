//! The kernelized Stein discrepancy (Liu, Lee and Jordan 2016) with a Gaussian kernel, as the
//! higher-level objective of VaGES-KSD (VaGES App. F.1/G.1): the U-statistic
//! `KSD^2 = 1/(B(B-1)) sum_{i != j} u(x_i, x_j)` with
//! `u(x, y) = k s(x).s(y) + s(x).grad_y k + s(y).grad_x k + tr(grad_x grad_y k)`,
//! `k = exp(-|x - y|^2 / (2 h^2))`, for which `grad_x k = -(x - y) k / h^2`,
//! `grad_y k = (x - y) k / h^2` and `tr(grad_x grad_y k) = k (D / h^2 - |x - y|^2 / h^4)`.
//! Only the score is needed, so an estimate (VaES / VaGES) can stand in for the marginal score,
//! and training a model by it ("How to Train Your EBMs" Sec. 6.2) needs neither its normaliser
//! nor second derivatives.

use candle_core::{bail, Result, Tensor, D};

/// The median heuristic bandwidth: `h^2 = median_{i<j} |x_i - x_j|^2 / (2 ln(B + 1))`.
///
/// # Errors
/// Fewer than two points.
pub fn median_bandwidth(x: &Tensor) -> Result<f64> {
    let b = x.dim(0)?;
    if b < 2 {
        bail!("the median heuristic needs at least two points, got {b}")
    }
    let sq = pairwise_sq(&x.detach())?
        .to_dtype(candle_core::DType::F64)?
        .to_vec2::<f64>()?;
    let mut d: Vec<f64> = (0..b)
        .flat_map(|i| ((i + 1)..b).map(move |j| (i, j)))
        .map(|(i, j)| sq[i][j])
        .collect();
    d.sort_by(f64::total_cmp);
    let med = d[d.len() / 2];
    Ok((med / (2.0 * ((b + 1) as f64).ln())).sqrt().max(1e-6))
}

/// `|x_i - x_j|^2`, `[B, B]`.
fn pairwise_sq(x: &Tensor) -> Result<Tensor> {
    let n = x.sqr()?.sum_keepdim(D::Minus1)?;
    (n.broadcast_add(&n.t()?)? - (x.matmul(&x.t()?)? * 2.0)?)?.relu()
}

/// The U-statistic `KSD^2` of the points `x` under the model with score `score` (differentiable
/// in the model's parameters), kernel bandwidth `h`.
///
/// # Shapes
/// * `x`, `score`: `[B, D]`, `B >= 2`
/// * returns a scalar
///
/// # Errors
/// Mismatched shapes, `B < 2`, `h <= 0`.
pub fn ksd(x: &Tensor, score: &Tensor, h: f64) -> Result<Tensor> {
    if x.dims() != score.dims() || x.rank() != 2 {
        bail!(
            "KSD needs points and scores of the same [B, D] shape, got {:?} and {:?}",
            x.dims(),
            score.dims()
        )
    }
    let (b, d) = x.dims2()?;
    if b < 2 {
        bail!("KSD needs at least two points, got {b}")
    }
    if !(h.is_finite() && h > 0.0) {
        bail!("the kernel bandwidth must be > 0, got {h}")
    }
    let x = x.detach();
    let h2 = h * h;
    let sq = pairwise_sq(&x)?;
    let k = (&sq * (-0.5 / h2))?.exp()?;
    let ss = score.matmul(&score.t()?)?; // s_i . s_j
    let sx = (score * &x)?.sum_keepdim(D::Minus1)?; // s_i . x_i, [B, 1]
    let s_xt = score.matmul(&x.t()?)?; // s_i . x_j
                                       // s_i . grad_{x_j} k = (s_i . x_i - s_i . x_j) k / h^2
    let t2 = sx.broadcast_sub(&s_xt)?;
    // s_j . grad_{x_i} k = (s_j . x_j - s_j . x_i) k / h^2 = transpose of t2
    let t3 = t2.t()?;
    let trace = ((&sq * (-1.0 / (h2 * h2)))? + d as f64 / h2)?;
    let u = ((ss + ((t2 + t3)? / h2)?)? + trace)?.mul(&k)?;
    let off_diagonal = Tensor::eye(b, u.dtype(), u.device())?.affine(-1.0, 1.0)?;
    (u * off_diagonal)?.sum_all()? / (b * (b - 1)) as f64
}
