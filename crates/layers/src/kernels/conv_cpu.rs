//! CPU kernels of the stride-1 convolution behind [`crate::conv2d`]: the forward pass and the
//! kernel gradient, both as one matrix product per sample over a "wide" im2col matrix.
//!
//! Each sample's input is zero-padded into planes with row stride `S = W + p` (one gap of `p`
//! zeros between rows serves as the right padding of one row and the left padding of the
//! next); then the patch row of channel `c` and kernel offset `(a, b)` over all output
//! positions is one contiguous slice of the padded plane starting at `a * S + b`, if the output
//! is computed on rows of length `S` (`Wo` valid columns, `K - 1 - p` discarded ones per row).
//! So building the `[C K K, Ho S]` patch matrix is `C K K` memory copies instead of an index computation per
//! element, and it stays small enough (per sample) to live in cache. The products go to the
//! `gemm` crate (the matrix multiplication Candle itself uses on the CPU).
//!
//! Work is split over samples with rayon; the kernel gradient sums fixed chunks of samples in a
//! fixed order, so results do not depend on the number of threads. Small maps instead go through
//! one product over the whole batch ("compact" patch matrix, one column per output position),
//! split by `gemm` over output tiles, which again fixes every sum's order. The per-sample buffers are
//! kept per thread and reused from call to call: fresh megabyte-sized buffers cost page faults
//! that showed up as a fifth of a layer's backward pass.
//!
//! 3x3 kernels on maps of at least 6x6 outputs with 16 or more channels each way skip all of
//! this for Winograd's F(4x4, 3x3) or F(2x2, 3x3) algorithm (`winograd.rs`), which need up to
//! 4x or 2.25x fewer multiply-adds, unless [`crate::ConvAlgorithm::Direct`] is set; both entry
//! points ask [`super::winograd::plan`] first.

use rayon::prelude::*;

use super::buffers::{par_build, par_build_in_order, par_zeroed};
use super::dense::{copy_row, matmul_into, sized, Element, Mat};
pub(crate) use super::winograd::Epilogue;

/// The geometry of one convolution: `[N, C, H, W]` input, `[O, C, K, K]` kernel, padding `p`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub k: usize,
    pub p: usize,
    /// Which algorithms [`super::winograd::plan`] may choose.
    pub algorithm: crate::ConvAlgorithm,
}

impl Geometry {
    /// Row stride of a padded plane: `W + p`. Neighbouring rows share their zero columns (the
    /// right padding of one row is the left padding of the next), so one gap of `p` zeros is
    /// enough between rows.
    fn row_stride(&self) -> usize {
        self.w + self.p
    }

    /// Output height and width.
    pub fn out_hw(&self) -> (usize, usize) {
        (
            self.h + 2 * self.p + 1 - self.k,
            self.w + 2 * self.p + 1 - self.k,
        )
    }

    /// Output positions per map.
    fn positions(&self) -> usize {
        let (ho, wo) = self.out_hw();
        ho * wo
    }

    /// Columns of the wide patch matrix: output rows times the row stride.
    fn wide(&self) -> usize {
        self.out_hw().0 * self.row_stride()
    }

    /// Rows of the patch matrix.
    fn patch_rows(&self) -> usize {
        self.c * self.k * self.k
    }

    /// Length of one padded plane: `p` leading zeros (the left padding of the first row), then
    /// `H + 2p` rows of `row_stride()` (`p` zero rows above and below the data), then `K - 1`
    /// trailing zeros so that every shifted slice of `wide()` elements fits.
    fn plane(&self) -> usize {
        self.p + (self.h + 2 * self.p) * self.row_stride() + self.k - 1
    }
}

/// Pads the `[C, H, W]` sample `x` into `planes` (`[C, plane()]`, zeros around).
fn pad_sample<T: Element>(g: &Geometry, x: &[T], planes: &mut [T]) {
    planes.fill(T::default());
    place_sample(g, x, planes);
}

/// Copies the rows of the `[C, H, W]` sample `x` to their places in `planes`, leaving the
/// padding as it is (zeros in a freshly zeroed buffer).
fn place_sample<T: Element>(g: &Geometry, x: &[T], planes: &mut [T]) {
    let (stride, plane) = (g.row_stride(), g.plane());
    for c in 0..g.c {
        for y in 0..g.h {
            let src = &x[(c * g.h + y) * g.w..][..g.w];
            copy_row(
                &mut planes[c * plane + g.p + (y + g.p) * stride..][..g.w],
                src,
            );
        }
    }
}

/// The wide patch matrix `[C K K, Ho S]` of one padded sample.
fn patches<T: Element>(g: &Geometry, planes: &[T], cols: &mut [T]) {
    let (stride, plane, wide) = (g.row_stride(), g.plane(), g.wide());
    for c in 0..g.c {
        for a in 0..g.k {
            for b in 0..g.k {
                let row = (c * g.k + a) * g.k + b;
                cols[row * wide..][..wide]
                    .copy_from_slice(&planes[c * plane + a * stride + b..][..wide]);
            }
        }
    }
}

/// The kernel of a convolution's input gradient: `w[o, c, a, b]` (`[O, C, K, K]`) to
/// `[C, O, K, K]` with both spatial axes reversed, `w'[c, o, K-1-a, K-1-b]`. One parallel pass
/// in blocks of input channels, each block written in order (reversing both axes reverses the
/// `K^2` taps of each kernel).
pub(crate) fn flip_transpose<T: Element>(w: &[T], (o_n, c_n, k): (usize, usize, usize)) -> Vec<T> {
    let k2 = k * k;
    let per_c = o_n * k2;
    /// Elements per task: small kernels stay on one thread.
    const MIN_TASK: usize = 1 << 15;
    par_build_in_order(c_n * per_c, per_c, MIN_TASK / per_c.max(1), |c, dst| {
        for o in 0..o_n {
            dst.extend(w[(o * c_n + c) * k2..][..k2].iter().rev().copied());
        }
    })
}

/// The convolution of `x`, or of `elu(x)` where `elu`, with the `epilogue` applied to its
/// outputs (`y elu'(z)`: the input gradient of a convolution of `elu(z)`; `y + r`: a residual
/// sum). In the Winograd layers the ELU is applied inside the transforms' channels-last copy of
/// each sample and the epilogue to each sample as it is written (both in cache); elsewhere
/// the ELU goes into a temporary first and the epilogue is one parallel pass after.
pub(crate) fn forward_ends<T: Element>(
    g: &Geometry,
    (x, elu): (&[T], bool),
    weight: &[T],
    epilogue: Epilogue<'_, T>,
) -> Vec<T> {
    if let Some(variant) = super::winograd::plan(g) {
        return super::winograd::forward_ends(g, variant, (x, elu), weight, epilogue);
    }
    let mut out = if elu {
        forward(g, &super::fused::Activation::Elu.values(x), weight)
    } else {
        forward(g, x, weight)
    };
    apply_epilogue(&mut out, epilogue);
    out
}

/// [`forward_ends`] without an epilogue, plus a bias per output channel where given: the
/// forward values of `conv2d` and `elu_conv2d`, biased or not.
pub(crate) fn forward_biased<T: Element>(
    g: &Geometry,
    x_elu: (&[T], bool),
    weight: &[T],
    bias: Option<&[T]>,
) -> Vec<T> {
    let mut out = forward_ends(g, x_elu, weight, Epilogue::None);
    if let Some(b) = bias {
        let (ho, wo) = g.out_hw();
        add_bias(&mut out, b, ho * wo);
    }
    out
}

/// `epilogue` applied to every element of `out` (as long as its values), in one parallel pass.
pub(crate) fn apply_epilogue<T: Element>(out: &mut [T], epilogue: Epilogue<'_, T>) {
    let Some(values) = epilogue.values() else {
        return;
    };
    assert_eq!(out.len(), values.len(), "epilogue of the output's size");
    out.par_chunks_mut(SUM_CHUNK)
        .zip(values.par_chunks(SUM_CHUNK))
        .for_each(|(out, v)| {
            super::simd::vectorised(|| match epilogue {
                Epilogue::None => {}
                Epilogue::EluSlope(_) => {
                    for (y, &z) in out.iter_mut().zip(v) {
                        *y = super::fused::elu_scaled_slope(*y, z);
                    }
                }
                Epilogue::Add(_) => {
                    for (y, &r) in out.iter_mut().zip(v) {
                        *y = *y + r;
                    }
                }
            })
        });
}

/// [`kernel_grad`] at input `elu(x)`, the ELU applied as in [`forward_ends`].
pub(crate) fn kernel_grad_elu<T: Element>(g: &Geometry, x: &[T], grad: &[T]) -> Vec<T> {
    if let Some(variant) = super::winograd::plan(g) {
        return super::winograd::kernel_grad(g, variant, (x, true), grad);
    }
    kernel_grad(g, &super::fused::Activation::Elu.values(x), grad)
}

/// The convolution `[N, C, H, W] * [O, C, K, K] -> [N, O, Ho, Wo]` (stride 1, cross-correlation
/// as in every deep-learning library). `x` and `weight` are contiguous.
pub(crate) fn forward<T: Element>(g: &Geometry, x: &[T], weight: &[T]) -> Vec<T> {
    if let Some(variant) = super::winograd::plan(g) {
        return super::winograd::forward_ends(g, variant, (x, false), weight, Epilogue::None);
    }
    if super::small_map::applies(g) {
        return super::small_map::forward(g, x, weight);
    }
    if g.positions() <= FORWARD_WHOLE_BATCH_MAX_POSITIONS {
        return forward_whole_batch(g, x, weight);
    }
    if g.k == 1 && g.p == 0 {
        return forward_pointwise(g, x, weight);
    }
    let (ho, wo) = g.out_hw();
    let (stride, wide, rows) = (g.row_stride(), g.wide(), g.patch_rows());
    let kernel = Mat {
        data: weight,
        rows: g.o,
        cols: rows,
        rs: rows,
        cs: 1,
    };
    par_build(g.n * g.o * ho * wo, g.o * ho * wo, 1, |i, dst| {
        T::with_scratch(|scratch| {
            let planes = sized(&mut scratch.planes, g.c * g.plane());
            let cols = sized(&mut scratch.cols, rows * wide);
            let wide_out = sized(&mut scratch.wide, g.o * wide);
            pad_sample(g, &x[i * g.c * g.h * g.w..][..g.c * g.h * g.w], planes);
            patches(g, planes, cols);
            let patch = Mat {
                data: cols,
                rows,
                cols: wide,
                rs: wide,
                cs: 1,
            };
            matmul_into(wide_out, &kernel, &patch, false, gemm::Parallelism::None);
            // Keep the `Wo` valid columns of every wide row.
            for o in 0..g.o {
                for y in 0..ho {
                    copy_row(
                        &mut dst[(o * ho + y) * wo..][..wo],
                        &wide_out[o * wide + y * stride..],
                    );
                }
            }
        })
    })
}

/// Adds `bias[o]` to every `plane`-long map `o` of the `[N, O, plane]` tensor `out`, in parallel.
pub(crate) fn add_bias<T: Element>(out: &mut [T], bias: &[T], plane: usize) {
    /// Elements per task, at least.
    const MIN_TASK: usize = 1 << 14;
    let (o_n, plane) = (bias.len().max(1), plane.max(1));
    out.par_chunks_mut(plane)
        .enumerate()
        .with_min_len((MIN_TASK / plane).max(1))
        .for_each(|(i, map)| {
            let b = bias[i % o_n];
            for v in map {
                *v = *v + b;
            }
        });
}

/// [`forward`] of a 1x1 convolution without padding: each sample's `[C, H W]` input is its
/// own patch matrix, so one product `[O, C] @ [C, H W]` per sample, with no copies.
fn forward_pointwise<T: Element>(g: &Geometry, x: &[T], weight: &[T]) -> Vec<T> {
    let hw = g.h * g.w;
    let kernel = Mat {
        data: weight,
        rows: g.o,
        cols: g.c,
        rs: g.c,
        cs: 1,
    };
    par_build(g.n * g.o * hw, g.o * hw, 1, |i, dst| {
        let input = Mat {
            data: &x[i * g.c * hw..][..g.c * hw],
            rows: g.c,
            cols: hw,
            rs: hw,
            cs: 1,
        };
        matmul_into(dst, &kernel, &input, false, gemm::Parallelism::None);
    })
}

/// [`kernel_grad`] of a 1x1 convolution without padding: per chunk of samples the sum of
/// `G_n @ X_n^T` (`[O, H W] @ [H W, C]`) straight from the tensors, then the chunks summed in
/// order.
fn kernel_grad_pointwise<T: Element>(g: &Geometry, x: &[T], grad: &[T]) -> Vec<T> {
    let hw = g.h * g.w;
    let chunks: Vec<Vec<T>> = (0..g.n.div_ceil(KERNEL_GRAD_CHUNK))
        .into_par_iter()
        .map(|chunk| {
            let mut acc = vec![T::default(); g.o * g.c];
            let first = chunk * KERNEL_GRAD_CHUNK;
            for (j, i) in (first..(first + KERNEL_GRAD_CHUNK).min(g.n)).enumerate() {
                let lhs = Mat {
                    data: &grad[i * g.o * hw..][..g.o * hw],
                    rows: g.o,
                    cols: hw,
                    rs: hw,
                    cs: 1,
                };
                // The sample's input transposed: `[H W, C]`.
                let rhs = Mat {
                    data: &x[i * g.c * hw..][..g.c * hw],
                    rows: hw,
                    cols: g.c,
                    rs: 1,
                    cs: hw,
                };
                matmul_into(&mut acc, &lhs, &rhs, j > 0, gemm::Parallelism::None);
            }
            acc
        })
        .collect();
    sum_parts(&chunks, g.o * g.c)
}

/// Samples per chunk of the kernel gradient: a fixed split, so the summation order (and the
/// rounding) does not depend on the thread count.
const KERNEL_GRAD_CHUNK: usize = 4;

/// The kernel gradient `dL/dw[o, c, a, b] = sum_{n, y, z} g[n, o, y, z] x_pad[n, c, y + a, z + b]`
/// of the convolution [`forward`], from its input `x` (`[N, C, H, W]`) and output gradient
/// `grad` (`[N, O, Ho, Wo]`), both contiguous; returns `[O, C, K, K]`.
pub(crate) fn kernel_grad<T: Element>(g: &Geometry, x: &[T], grad: &[T]) -> Vec<T> {
    if let Some(variant) = super::winograd::plan(g) {
        return super::winograd::kernel_grad(g, variant, (x, false), grad);
    }
    if super::small_map::applies(g) {
        return super::small_map::kernel_grad(g, x, grad);
    }
    if g.positions() <= KERNEL_GRAD_WHOLE_BATCH_MAX_POSITIONS {
        return kernel_grad_whole_batch(g, x, grad);
    }
    if g.k == 1 && g.p == 0 {
        return kernel_grad_pointwise(g, x, grad);
    }
    let (ho, wo) = g.out_hw();
    let (stride, wide, rows) = (g.row_stride(), g.wide(), g.patch_rows());
    let chunks: Vec<Vec<T>> = (0..g.n.div_ceil(KERNEL_GRAD_CHUNK))
        .into_par_iter()
        .map(|chunk| {
            T::with_scratch(|scratch| {
                let planes = sized(&mut scratch.planes, g.c * g.plane());
                let cols = sized(&mut scratch.cols, rows * wide);
                // The output gradient on wide rows: zeros in the discarded columns.
                let wide_grad = sized(&mut scratch.wide, g.o * wide);
                wide_grad.fill(T::default());
                let mut acc = vec![T::default(); g.o * rows];
                let first = chunk * KERNEL_GRAD_CHUNK;
                for (j, i) in (first..(first + KERNEL_GRAD_CHUNK).min(g.n)).enumerate() {
                    pad_sample(g, &x[i * g.c * g.h * g.w..][..g.c * g.h * g.w], planes);
                    patches(g, planes, cols);
                    let gi = &grad[i * g.o * ho * wo..][..g.o * ho * wo];
                    for o in 0..g.o {
                        for y in 0..ho {
                            copy_row(
                                &mut wide_grad[o * wide + y * stride..][..wo],
                                &gi[(o * ho + y) * wo..],
                            );
                        }
                    }
                    let lhs = Mat {
                        data: wide_grad,
                        rows: g.o,
                        cols: wide,
                        rs: wide,
                        cs: 1,
                    };
                    // The patch matrix transposed: `[Ho S, C K K]`.
                    let rhs = Mat {
                        data: cols,
                        rows: wide,
                        cols: rows,
                        rs: 1,
                        cs: wide,
                    };
                    matmul_into(&mut acc, &lhs, &rhs, j > 0, gemm::Parallelism::None);
                }
                acc
            })
        })
        .collect();
    sum_parts(&chunks, g.o * rows)
}

/// Elements per task of [`sum_parts`].
const SUM_CHUNK: usize = 1 << 14;

/// The elementwise sum of equally long `parts` (`len` elements each), in parallel over
/// elements; each element adds the parts in their order, so the result does not depend on the
/// thread count.
pub(crate) fn sum_parts<T: Element>(parts: &[Vec<T>], len: usize) -> Vec<T> {
    par_build(len, SUM_CHUNK, 1, |i, total| {
        for part in parts {
            for (t, &v) in total.iter_mut().zip(&part[i * SUM_CHUNK..]) {
                *t = *t + v;
            }
        }
    })
}

/// Output positions per map up to which the forward pass is one matrix product over the whole
/// batch: per-sample products on 3 x 3 maps are dominated by packing the kernel. Measured on
/// the step benchmark's layers (`benches/benchmarks/conv_layers.rs`): 3 x 3 maps gain 25%,
/// 7 x 7 maps lose 50%, so only the smallest maps take this path.
const FORWARD_WHOLE_BATCH_MAX_POSITIONS: usize = 16;

/// Output positions per map up to which the kernel gradient is one matrix product over the
/// whole batch: per sample, its reduction is only `Ho S` long (12 on 3 x 3 maps, 56 on 7 x 7),
/// so each product re-reads and re-writes the whole `[O, C K K]` accumulator for little work.
/// Measured: the backward pass of a 3 x 3 layer 35% faster, of a 7 x 7 layer 7-12%, of a
/// 14 x 14 layer twice as slow.
const KERNEL_GRAD_WHOLE_BATCH_MAX_POSITIONS: usize = 64;

/// The compact patch matrix of the whole batch, `[C K K, N Ho Wo]`: row `(c, a, b)`, column
/// `(n, y, z)` holds `x_pad[n, c, y + a, z + b]`.
fn batch_patches<T: Element>(g: &Geometry, x: &[T]) -> Vec<T> {
    let (ho, wo) = g.out_hw();
    let (stride, plane, hw) = (g.row_stride(), g.plane(), ho * wo);
    let len = g.c * g.h * g.w;
    let planes = par_build(g.n * g.c * plane, g.c * plane, 1, |n, dst| {
        // `par_build` hands the chunk over zeroed: only the rows need placing.
        place_sample(g, &x[n * len..][..len], dst);
    });
    let n_cols = g.n * hw;
    par_build(g.patch_rows() * n_cols, n_cols, 1, |row, dst| {
        let (c, a, b) = (row / (g.k * g.k), (row / g.k) % g.k, row % g.k);
        for n in 0..g.n {
            let src = &planes[(n * g.c + c) * plane + a * stride + b..];
            for y in 0..ho {
                copy_row(&mut dst[n * hw + y * wo..][..wo], &src[y * stride..]);
            }
        }
    })
}

/// [`forward`] on small maps: `[O, C K K] @ [C K K, N Ho Wo]`, one product split over threads by
/// `gemm`, then `[O, N, Ho Wo]` reordered to `[N, O, Ho Wo]`.
fn forward_whole_batch<T: Element>(g: &Geometry, x: &[T], weight: &[T]) -> Vec<T> {
    let (ho, wo) = g.out_hw();
    let (hw, rows) = (ho * wo, g.patch_rows());
    let n_cols = g.n * hw;
    let cols = batch_patches(g, x);
    let kernel = Mat {
        data: weight,
        rows: g.o,
        cols: rows,
        rs: rows,
        cs: 1,
    };
    let patch = Mat {
        data: &cols,
        rows,
        cols: n_cols,
        rs: n_cols,
        cs: 1,
    };
    let mut by_channel = par_zeroed(g.o * n_cols);
    matmul_into(
        &mut by_channel,
        &kernel,
        &patch,
        false,
        gemm::Parallelism::Rayon(0),
    );
    par_build(g.n * g.o * hw, g.o * hw, 1, |n, dst| {
        for o in 0..g.o {
            copy_row(&mut dst[o * hw..][..hw], &by_channel[o * n_cols + n * hw..]);
        }
    })
}

/// [`kernel_grad`] on small maps: `[O, N Ho Wo] @ [N Ho Wo, C K K]`, one product with the whole
/// batch as its reduction, split over threads by `gemm`.
fn kernel_grad_whole_batch<T: Element>(g: &Geometry, x: &[T], grad: &[T]) -> Vec<T> {
    let (ho, wo) = g.out_hw();
    let (hw, rows) = (ho * wo, g.patch_rows());
    let n_cols = g.n * hw;
    let cols = batch_patches(g, x);
    // The output gradient reordered to `[O, N Ho Wo]`.
    let by_channel = par_build(g.o * n_cols, n_cols, 1, |o, dst| {
        for n in 0..g.n {
            copy_row(&mut dst[n * hw..][..hw], &grad[(n * g.o + o) * hw..]);
        }
    });
    let lhs = Mat {
        data: &by_channel,
        rows: g.o,
        cols: n_cols,
        rs: n_cols,
        cs: 1,
    };
    // The patch matrix transposed: `[N Ho Wo, C K K]`.
    let rhs = Mat {
        data: &cols,
        rows: n_cols,
        cols: rows,
        rs: 1,
        cs: n_cols,
    };
    let mut out = par_zeroed(g.o * rows);
    matmul_into(&mut out, &lhs, &rhs, false, gemm::Parallelism::Rayon(0));
    out
}
