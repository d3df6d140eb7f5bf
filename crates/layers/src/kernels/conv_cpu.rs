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

use std::cell::RefCell;

use rayon::prelude::*;

use super::buffers::{par_build, par_build_uninit, par_zeroed};
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

/// Working buffers of one thread: padded planes, the patch matrix, a wide output or gradient.
/// Their contents are never read before being written.
#[derive(Default)]
pub(crate) struct Scratch<T> {
    pub(crate) planes: Vec<T>,
    pub(crate) cols: Vec<T>,
    pub(crate) wide: Vec<T>,
}

/// `buf` grown to at least `len` elements; returns its first `len`.
pub(crate) fn sized<T: Element>(buf: &mut Vec<T>, len: usize) -> &mut [T] {
    if buf.len() < len {
        buf.resize(len, T::default());
    }
    &mut buf[..len]
}

/// The element types of the kernels: the fused ops' float types (their arithmetic and
/// constants), plus per-thread scratch buffers.
pub(crate) trait Element: super::fused::Float {
    /// Runs `f` with this thread's scratch buffers (fresh ones if they are in use).
    fn with_scratch<R>(f: impl FnOnce(&mut Scratch<Self>) -> R) -> R;

    /// The full 8x8 blocks of [`transpose`]: `dst[dst_row(j) + i] = src[src_row(i) + j]` for
    /// `i < full_rows`, `j < full_cols` (multiples of 8).
    #[inline(always)]
    fn transpose_blocks(
        src: &[Self],
        full: (usize, usize),
        src_row: &impl Fn(usize) -> usize,
        dst: &mut [Self],
        dst_row: &impl Fn(usize) -> usize,
    ) {
        transpose_blocks_portable(src, full, src_row, dst, dst_row);
    }
}

thread_local! {
    static SCRATCH_F32: RefCell<Scratch<f32>> = RefCell::default();
    static SCRATCH_F64: RefCell<Scratch<f64>> = RefCell::default();
}

impl Element for f32 {
    fn with_scratch<R>(f: impl FnOnce(&mut Scratch<Self>) -> R) -> R {
        SCRATCH_F32.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => f(&mut scratch),
            Err(_) => f(&mut Scratch::default()),
        })
    }

    /// With AVX, each block is eight 8-float register loads, three rounds of shuffles and eight
    /// stores ([`super::simd::transpose_blocks_avx`]); the portable loop compiles to element
    /// moves through the stack (measured: 30-40% of the Winograd transforms' time).
    #[inline(always)]
    fn transpose_blocks(
        src: &[Self],
        full: (usize, usize),
        src_row: &impl Fn(usize) -> usize,
        dst: &mut [Self],
        dst_row: &impl Fn(usize) -> usize,
    ) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx") {
            #[allow(unsafe_code)]
            // SAFETY: the CPU has AVX (checked just above).
            unsafe {
                super::simd::transpose_blocks_avx(src, full, src_row, dst, dst_row)
            };
            return;
        }
        transpose_blocks_portable(src, full, src_row, dst, dst_row);
    }
}

impl Element for f64 {
    fn with_scratch<R>(f: impl FnOnce(&mut Scratch<Self>) -> R) -> R {
        SCRATCH_F64.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => f(&mut scratch),
            Err(_) => f(&mut Scratch::default()),
        })
    }
}

/// A row-major view `rows x cols` of `data` with row stride `rs` and column stride `cs`.
pub(crate) struct Mat<'a, T> {
    pub(crate) data: &'a [T],
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) rs: usize,
    pub(crate) cs: usize,
}

impl<T> Mat<'_, T> {
    /// Whether every element of the view lies inside `data`.
    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }
}

/// `dst = lhs @ rhs` (or `dst += lhs @ rhs` with `accumulate`), `dst` row-major contiguous with
/// `lhs.rows` rows and `rhs.cols` columns, on the calling thread or split by `gemm` over output
/// tiles (each element's sum is formed by one thread in a fixed order either way).
///
/// # Panics
/// When a view reaches outside its slice or the shapes disagree: the kernels above build every
/// view from checked geometry, so this is an internal invariant.
pub(crate) fn matmul_into<T: Element>(
    dst: &mut [T],
    lhs: &Mat<'_, T>,
    rhs: &Mat<'_, T>,
    accumulate: bool,
    parallelism: gemm::Parallelism,
) {
    let n = rhs.cols;
    matmul_strided(dst, (n, 1), lhs, rhs, accumulate, parallelism);
}

/// [`matmul_into`] into a strided `dst`: element `(i, j)` of the product at
/// `dst[i * rs + j * cs]`.
///
/// # Panics
/// As [`matmul_into`].
#[allow(unsafe_code)]
pub(crate) fn matmul_strided<T: Element>(
    dst: &mut [T],
    (rs, cs): (usize, usize),
    lhs: &Mat<'_, T>,
    rhs: &Mat<'_, T>,
    accumulate: bool,
    parallelism: gemm::Parallelism,
) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(rhs.rows, k, "inner dimensions differ");
    assert!(lhs.in_bounds() && rhs.in_bounds());
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        (m - 1) * rs + (n - 1) * cs < dst.len(),
        "output view out of bounds"
    );
    // SAFETY: `dst` holds every element of the strided `m x n` result and `lhs` / `rhs` every
    // element of their strided views (checked just above); `dst` is borrowed mutably, so it
    // aliases neither operand. `gemm` reads and writes only inside these extents.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            cs as isize,
            rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `dst.copy_from_slice(src)` for the short rows of this network's maps (3 to 28 elements):
/// as fixed-size block moves that compile to a few vector loads and stores, where
/// `copy_from_slice` of a run-time length is a `memcpy` call whose overhead dwarfs a 3- or
/// 9-element copy (it was a sixth of the small-map layers' time). Longer rows take `memcpy`.
///
/// # Panics
/// If `src` is shorter than `dst` (an indexing bug in the caller).
#[inline(always)]
pub(crate) fn copy_row<T: Copy>(dst: &mut [T], src: &[T]) {
    let n = dst.len();
    let src = &src[..n];
    macro_rules! fixed {
        ($($len:literal)*) => {
            match n {
                $($len => dst[..$len].copy_from_slice(&src[..$len]),)*
                _ => {}
            }
        };
    }
    match n {
        0..8 => fixed!(1 2 3 4 5 6 7),
        8..=32 => {
            // Blocks of 8 at 0, 8 and 16 as far as they fit, and one ending at `n` (which may
            // overlap the previous block; the values written twice are the same).
            dst[..8].copy_from_slice(&src[..8]);
            if n > 16 {
                dst[8..16].copy_from_slice(&src[8..16]);
            }
            if n > 24 {
                dst[16..24].copy_from_slice(&src[16..24]);
            }
            dst[n - 8..].copy_from_slice(&src[n - 8..]);
        }
        _ => dst.copy_from_slice(src),
    }
}

/// Side of the square blocks of [`transpose`]: eight rows of eight elements, small enough to
/// live in vector registers while they are turned around.
const BLOCK: usize = 8;

/// `dst[dst_row(j) + i] = src[src_row(i) + j]` for the `rows x cols` matrix whose row `i`
/// starts at `src_row(i)`, into rows starting at `dst_row(j)`, by 8x8 blocks: each block is
/// read as eight contiguous rows and written as eight contiguous rows, turned around in vector
/// registers ([`Element::transpose_blocks`]); the ragged edges go element by element.
#[inline(always)]
pub(crate) fn transpose<T: Element>(
    src: &[T],
    (rows, cols): (usize, usize),
    src_row: impl Fn(usize) -> usize,
    dst: &mut [T],
    dst_row: impl Fn(usize) -> usize,
) {
    let (full_rows, full_cols) = (rows / BLOCK * BLOCK, cols / BLOCK * BLOCK);
    T::transpose_blocks(src, (full_rows, full_cols), &src_row, dst, &dst_row);
    // The last `cols % 8` columns of every row, then the last `rows % 8` rows.
    for j in full_cols..cols {
        let d = dst_row(j);
        for i in 0..full_rows {
            dst[d + i] = src[src_row(i) + j];
        }
    }
    for i in full_rows..rows {
        let s = src_row(i);
        for j in 0..cols {
            dst[dst_row(j) + i] = src[s + j];
        }
    }
}

/// [`Element::transpose_blocks`] for any element type: each block read into an array of eight
/// rows and written out column by column.
#[inline(always)]
fn transpose_blocks_portable<T: Copy>(
    src: &[T],
    (full_rows, full_cols): (usize, usize),
    src_row: &impl Fn(usize) -> usize,
    dst: &mut [T],
    dst_row: &impl Fn(usize) -> usize,
) {
    for i0 in (0..full_rows).step_by(BLOCK) {
        let starts: [usize; BLOCK] = std::array::from_fn(|r| src_row(i0 + r));
        for j0 in (0..full_cols).step_by(BLOCK) {
            let block: [[T; BLOCK]; BLOCK] = std::array::from_fn(|r| {
                let row: &[T; BLOCK] = src[starts[r] + j0..][..BLOCK]
                    .try_into()
                    .expect("a block row");
                *row
            });
            for c in 0..BLOCK {
                let out: &mut [T; BLOCK] = (&mut dst[dst_row(j0 + c) + i0..][..BLOCK])
                    .try_into()
                    .expect("a block row");
                for (r, o) in out.iter_mut().enumerate() {
                    *o = block[r][c];
                }
            }
        }
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
#[allow(unsafe_code)]
pub(crate) fn flip_transpose<T: Element>(w: &[T], (o_n, c_n, k): (usize, usize, usize)) -> Vec<T> {
    let k2 = k * k;
    let per_c = o_n * k2;
    /// Elements per task: small kernels stay on one thread.
    const MIN_TASK: usize = 1 << 15;
    // SAFETY: the chunk of input channel `c` is `O` kernels of `K^2` taps, each tap written once
    // (the source is sliced to `K^2` elements, so a short `w` panics instead).
    unsafe {
        par_build_uninit(c_n * per_c, per_c, MIN_TASK / per_c.max(1), |c, dst| {
            for (o, out) in dst.chunks_exact_mut(k2).enumerate() {
                let src = &w[(o * c_n + c) * k2..][..k2];
                for (d, &v) in out.iter_mut().zip(src.iter().rev()) {
                    d.write(v);
                }
            }
        })
    }
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

#[cfg(test)]
mod tests {
    use super::{copy_row, transpose};

    /// Every length through the fixed-size arms, the overlapping blocks and `memcpy`, from an
    /// offset and into a longer source: the copy equals the source's prefix, and nothing after
    /// `dst` is touched.
    #[test]
    fn copy_row_copies_every_length_exactly() {
        let src: Vec<u32> = (1..=50).collect();
        for n in 0..=40 {
            let mut buf = vec![0u32; n + 3];
            copy_row(&mut buf[1..1 + n], &src[2..]);
            assert_eq!(buf[0], 0, "length {n}: wrote before the row");
            assert_eq!(&buf[1..1 + n], &src[2..2 + n], "length {n}");
            assert_eq!(&buf[1 + n..], &[0, 0], "length {n}: wrote past the row");
        }
    }

    /// Every shape from 0x0 to 19x19 (full blocks, ragged edges, both at once), with row
    /// offsets and padding in both layouts: `dst[j, i] = src[i, j]` element by element (the
    /// oracle is the definition), and the padding of `dst` is left alone. `f32` takes the
    /// vector-register blocks where the CPU has AVX, `f64` the portable loop.
    #[test]
    fn transpose_matches_the_definition_for_every_shape() {
        fn check<T: super::Element + std::fmt::Debug>(from: impl Fn(usize) -> T) {
            for rows in 0..20 {
                for cols in 0..20 {
                    // Row `i` of `src` at `3 + 23 i`; row `j` of `dst` at `1 + 21 j`.
                    let src: Vec<T> = (0..3 + 23 * rows.max(1)).map(&from).collect();
                    let sentinel = from(9999);
                    let mut dst = vec![sentinel; 1 + 21 * cols.max(1)];
                    transpose(&src, (rows, cols), |i| 3 + 23 * i, &mut dst, |j| 1 + 21 * j);
                    for (k, &v) in dst.iter().enumerate() {
                        let (j, i) = ((k.max(1) - 1) / 21, (k.max(1) - 1) % 21);
                        if k >= 1 && i < rows && j < cols {
                            assert_eq!(v, src[3 + 23 * i + j], "{rows}x{cols}: ({i}, {j})");
                        } else {
                            assert_eq!(v, sentinel, "{rows}x{cols}: wrote padding at {k}");
                        }
                    }
                }
            }
        }
        check(|k| k as f32);
        check(|k| k as f64);
    }
}
