//! The stride-1 convolution on small padded maps (at most [`MAX_POSITIONS`] outputs, e.g. the
//! ResNet EBM's 3 x 3 stage) by kernel offset, skipping the zero padding.
//!
//! With padding, much of an im2col product multiplies zeros: on a 3 x 3 map with a 3 x 3
//! kernel and padding 1, only 49 of the 81 (output position, kernel offset) pairs read the map.
//! Here the batch is laid out `[C, H, W, N]` (samples innermost), so that for kernel offset
//! `(a, b)` and output row `y` the inputs of the valid output columns `x0..x1` form one
//! `[C, (x1 - x0) N]` matrix with contiguous rows, and the convolution is a sum of products
//! `[O, C] @ [C, (x1 - x0) N]`, one per offset and valid row: exactly the multiply-adds that
//! touch the map. Where the valid columns are the whole width (the middle column of a 3 x 3
//! kernel at padding 1) the valid rows follow each other in memory and make one product, which
//! keeps the products large at small batches (each output still sums its offsets in the same
//! order). The kernel gradient pairs the same views the other way round,
//! `[O, (x1 - x0) N] @ [(x1 - x0) N, C]` per offset and valid row. Every sum runs in a fixed
//! order, so the results do not depend on the number of threads.

use rayon::prelude::*;

use super::buffers::{par_build, par_zeroed};
use super::conv_cpu::Geometry;
use super::dense::{matmul_strided, transpose, Element, Mat};

/// Output positions per map up to which the offset decomposition is used (when there is
/// padding). On larger maps the padding is a smaller share and the other paths (per-sample
/// im2col, Winograd) win. Measured on the 256-channel 3 x 3-map layer at batch 192
/// (`benches/benchmarks/conv_layers.rs`, against the whole-batch im2col product it replaces):
/// forward pass 15.2 -> 7.3 ms, forward and backward 47.3 -> 28.2 ms.
pub(crate) const MAX_POSITIONS: usize = 16;

/// Output channels per task of the forward pass: each task packs the same input views again,
/// so fewer, larger blocks win while each core still gets one (two blocks on the 256-channel
/// layers). Measured on that layer at batch 64: 128 instead of 64 channels, forward and
/// backward 7.5 -> 7.0 ms.
const OUT_BLOCK: usize = 128;

/// Whether [`forward`] and [`kernel_grad`] take this path: padded small maps, where the
/// padding is a large share of an im2col product.
pub(crate) fn applies(g: &Geometry) -> bool {
    let (ho, wo) = g.out_hw();
    g.p > 0 && g.k > 1 && ho * wo <= MAX_POSITIONS
}

/// The valid output range `lo..hi` along one axis of length `out` for kernel offset `a`: the
/// outputs whose input `y + a - p` lies in `0..len`.
fn valid(out: usize, len: usize, a: usize, p: usize) -> (usize, usize) {
    let lo = p.saturating_sub(a);
    let hi = out.min((len + p).saturating_sub(a));
    (lo, hi.max(lo))
}

/// The valid output rows `y0..y1` of one kernel offset as `(first row, rows)` groups whose
/// views are each one matrix: all rows at once where the valid columns `x0..x1` span both the
/// input and the output width (the rows' spans then follow each other in memory, in the
/// samples-last layouts of both), else one row per group.
fn row_groups(
    (y0, y1): (usize, usize),
    (x0, x1): (usize, usize),
    (w_in, w_out): (usize, usize),
) -> impl Iterator<Item = (usize, usize)> {
    let whole = x1 - x0 == w_in && x1 - x0 == w_out;
    let step = if whole { (y1 - y0).max(1) } else { 1 };
    (y0..y1).step_by(step).map(move |y| (y, step.min(y1 - y)))
}

/// `[N, R] -> [R, N]` for the `[N, ...]` tensor `x` with `r` elements per sample, in parallel
/// over blocks of output rows.
fn samples_last<T: Element>(x: &[T], n: usize, r: usize) -> Vec<T> {
    /// Output rows (elements per sample) per task.
    const ROWS: usize = 256;
    par_build(r * n, ROWS * n, 1, |i, dst| {
        let r0 = i * ROWS;
        let rows = dst.len() / n.max(1);
        transpose(x, (n, rows), |s| s * r + r0, dst, |j| j * n);
    })
}

/// `[R, N] -> [N, R]`, the inverse of [`samples_last`].
fn samples_first<T: Element>(y: &[T], n: usize, r: usize) -> Vec<T> {
    /// Samples per task.
    const SAMPLES: usize = 8;
    par_build(n * r, SAMPLES * r, 1, |i, dst| {
        let s0 = i * SAMPLES;
        let samples = dst.len() / r.max(1);
        transpose(y, (r, samples), |j| j * n + s0, dst, |s| s * r);
    })
}

/// The convolution `[N, C, H, W] * [O, C, K, K] -> [N, O, Ho, Wo]` (stride 1, padding
/// `g.p`), the values of `conv_cpu::forward`. `x` and `weight` are contiguous.
pub(crate) fn forward<T: Element>(g: &Geometry, x: &[T], weight: &[T]) -> Vec<T> {
    let (ho, wo) = g.out_hw();
    let (n, kk) = (g.n, g.k * g.k);
    let xt = samples_last(x, n, g.c * g.h * g.w);
    // `[O, Ho, Wo, N]`, in blocks of output channels.
    let plane = ho * wo * n;
    let yt = par_build(g.o * plane, OUT_BLOCK * plane, 1, |blk, dst| {
        let (o0, rows) = (blk * OUT_BLOCK, dst.len() / plane);
        for a in 0..g.k {
            let (y0, y1) = valid(ho, g.h, a, g.p);
            for b in 0..g.k {
                let (x0, x1) = valid(wo, g.w, b, g.p);
                if x0 == x1 {
                    continue;
                }
                let lhs = Mat {
                    data: &weight[o0 * g.c * kk + a * g.k + b..],
                    rows,
                    cols: g.c,
                    rs: g.c * kk,
                    cs: kk,
                };
                for (y, ys) in row_groups((y0, y1), (x0, x1), (g.w, wo)) {
                    let (iy, ix) = (y + a - g.p, x0 + b - g.p);
                    let rhs = Mat {
                        data: &xt[(iy * g.w + ix) * n..],
                        rows: g.c,
                        cols: ys * (x1 - x0) * n,
                        rs: g.h * g.w * n,
                        cs: 1,
                    };
                    matmul_strided(
                        &mut dst[(y * wo + x0) * n..],
                        (plane, 1),
                        &lhs,
                        &rhs,
                        true,
                        gemm::Parallelism::None,
                    );
                }
            }
        }
    });
    samples_first(&yt, n, g.o * ho * wo)
}

/// The kernel gradient `[O, C, K, K]` of the convolution of `x` (`[N, C, H, W]`) given the
/// output gradient `grad` (`[N, O, Ho, Wo]`), the values of `conv_cpu::kernel_grad`: per
/// kernel offset, the sum over valid output rows of `G @ X^T`, in row order.
pub(crate) fn kernel_grad<T: Element>(g: &Geometry, x: &[T], grad: &[T]) -> Vec<T> {
    let (ho, wo) = g.out_hw();
    let (n, kk) = (g.n, g.k * g.k);
    let xt = samples_last(x, n, g.c * g.h * g.w);
    let gt = samples_last(grad, n, g.o * ho * wo);
    let plane = ho * wo * n;
    // One `[O, C]` matrix per offset.
    let per_offset: Vec<Vec<T>> = (0..kk)
        .into_par_iter()
        .map(|ab| {
            let (a, b) = (ab / g.k, ab % g.k);
            let mut acc = par_zeroed(g.o * g.c);
            let (y0, y1) = valid(ho, g.h, a, g.p);
            let (x0, x1) = valid(wo, g.w, b, g.p);
            if x0 < x1 {
                // Row by row, not merged as in `forward`: merging would change the order of
                // the sums over rows (measured: 2-5% faster on the 256-channel layer).
                for y in y0..y1 {
                    let (iy, ix) = (y + a - g.p, x0 + b - g.p);
                    let lhs = Mat {
                        data: &gt[(y * wo + x0) * n..],
                        rows: g.o,
                        cols: (x1 - x0) * n,
                        rs: plane,
                        cs: 1,
                    };
                    // The input view transposed: `[(x1 - x0) N, C]`.
                    let rhs = Mat {
                        data: &xt[(iy * g.w + ix) * n..],
                        rows: (x1 - x0) * n,
                        cols: g.c,
                        rs: 1,
                        cs: g.h * g.w * n,
                    };
                    matmul_strided(
                        &mut acc,
                        (g.c, 1),
                        &lhs,
                        &rhs,
                        true,
                        gemm::Parallelism::None,
                    );
                }
            }
            acc
        })
        .collect();
    par_build(g.o * g.c * kk, g.c * kk, 1, |o, dst| {
        for c in 0..g.c {
            for (ab, part) in per_offset.iter().enumerate() {
                dst[c * kk + ab] = part[o * g.c + c];
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::{row_groups, valid};

    /// The groups cover the valid rows once, in order; rows are merged only when the valid
    /// columns span both widths.
    #[test]
    fn row_groups_partition_the_valid_rows() {
        for (rows, cols, widths, merged) in [
            ((1, 3), (0, 3), (3, 3), true),
            ((0, 3), (0, 3), (3, 3), true),
            ((0, 2), (1, 3), (3, 3), false),
            ((0, 3), (0, 2), (3, 2), false),
            ((0, 2), (0, 2), (2, 3), false),
            ((2, 2), (0, 3), (3, 3), true),
        ] {
            let groups: Vec<(usize, usize)> = row_groups(rows, cols, widths).collect();
            let covered: Vec<usize> = groups.iter().flat_map(|&(y, n)| y..y + n).collect();
            assert_eq!(covered, (rows.0..rows.1).collect::<Vec<_>>(), "{groups:?}");
            let expected = if merged {
                rows.1.min(rows.0 + 1) - rows.0
            } else {
                rows.1 - rows.0
            };
            assert_eq!(
                groups.len(),
                expected,
                "{rows:?} {cols:?} {widths:?}: {groups:?}"
            );
        }
    }

    /// The valid ranges of a 3-wide map with a 3-wide kernel at padding 1: 2 + 3 + 2 outputs,
    /// and at padding 2 on a 1-wide map (output 3 wide) one output per offset.
    #[test]
    fn valid_ranges_cover_exactly_the_map() {
        assert_eq!(valid(3, 3, 0, 1), (1, 3));
        assert_eq!(valid(3, 3, 1, 1), (0, 3));
        assert_eq!(valid(3, 3, 2, 1), (0, 2));
        assert_eq!(valid(3, 1, 0, 2), (2, 3));
        assert_eq!(valid(3, 1, 2, 2), (0, 1));
        for (out, len, k, p) in [
            (3, 3, 3, 1),
            (4, 2, 3, 2),
            (2, 4, 5, 1),
            (5, 5, 5, 2),
            (1, 1, 5, 2),
        ] {
            assert_eq!(out, len + 2 * p + 1 - k);
            for a in 0..k {
                let (lo, hi) = valid(out, len, a, p);
                for y in 0..out {
                    let inside = (y + a).checked_sub(p).is_some_and(|i| i < len);
                    assert_eq!(
                        inside,
                        (lo..hi).contains(&y),
                        "out {out} len {len} a {a} p {p} y {y}"
                    );
                }
            }
        }
    }
}
