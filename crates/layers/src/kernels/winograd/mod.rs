//! Winograd's minimal filtering algorithms F(2x2, 3x3) and F(4x4, 3x3) for the 3x3 stride-1
//! convolution behind [`crate::conv2d`] on the CPU (Lavin and Gray, "Fast Algorithms for
//! Convolutional Neural Networks", CVPR 2016, Sec. 4): each `m x m` output tile is
//! `A^T [(G g G^T) . (B^T d B)] A` for the `(m + 2) x (m + 2)` input patch `d` and the 3x3
//! kernel `g`, so a tile costs `(m + 2)^2` multiplications per channel pair instead of `9 m^2`:
//! 16 instead of 36 for F(2x2, 3x3), 36 instead of 144 for F(4x4, 3x3). Summed over input
//! channels, the elementwise products become `(m + 2)^2` matrix products
//! `V_xi [tiles, C] @ U_xi [C, O]`, 2.25x (m = 2) or 4x (m = 4) fewer multiply-adds than the
//! direct convolution on maps the tiles cover exactly. The kernel gradient is the adjoint of the
//! same map: `dU_xi = V_xi^T @ (A dY A^T)_xi` summed over tiles, then `dg = G^T dU G`.
//!
//! F(2x2, 3x3)'s transforms only add, subtract and halve; F(4x4, 3x3)'s use the points
//! `0, +-1, +-2` and scale by up to 8 (and by 1/24 in `G`), so its rounding errors are several
//! times larger (Lavin and Gray, Table 1 and Sec. 5): both are tested against Candle's
//! `conv2d` in f32 and f64 with every padding and odd map sizes. F(4x4, 3x3) is used only on
//! maps large enough to pay for its larger transforms, and not under
//! [`ConvAlgorithm::Accurate`] ([`plan`]). Work is split over fixed
//! chunks of samples, one thread per chunk, so results do not depend on the number of
//! threads.
//!
//! The transforms work channels-last: each sample is transposed into a zero-padded
//! `[m Th + 2, m Tw + 2, C]` buffer, so that every element of a tile's patch is a contiguous
//! vector over the channels and each transform step is one elementwise loop of `C` (or `O`)
//! elements, compiled for the CPU's widest vector unit; outputs and output gradients go through
//! `[m Th, m Tw, O]` buffers the same way.

use std::marker::PhantomData;

use rayon::prelude::*;

use super::buffers::par_build;
use super::conv_cpu::{sum_parts, Geometry};
use super::dense::{matmul_into, sized, transpose, Element, Mat};
use super::fused::{elu_scaled_slope, elu_value};
use super::simd::{vectorised, Kernel};
use crate::ConvAlgorithm;

mod transforms;

use transforms::{fill, Transforms, Vectors, F2, F4, MAX_A};

/// Fewest input and output channels for which [`forward`] beats the direct convolution: with
/// fewer, the products are too thin for the transforms to pay off.
const MIN_CHANNELS: usize = 16;

/// Smallest output height and width for which [`forward`] beats the direct convolution: on
/// smaller maps the 2x2 tiles overhang the map (a 3x3 map takes four tiles, 16 outputs for 9)
/// and the transforms cost more than the saved multiplications.
const MIN_OUT_SIDE: usize = 6;

/// Smallest output height and width on which F(4x4, 3x3) is used instead of F(2x2, 3x3):
/// measured with `cargo bench --bench conv_layers`, it is faster on every layer of the ResNet
/// EBM with maps of 7 and more (on a 6 x 6 map its 4 x 4 tiles would cover 8 x 8).
const MIN_F4_SIDE: usize = 7;

/// The algorithm for `g` under its [`ConvAlgorithm`], or `None` where the direct
/// convolution is used: Winograd needs 3x3 kernels with padding below 3, and is faster than
/// the direct convolution (measured with `cargo bench --bench conv_layers`) with at least
/// [`MIN_CHANNELS`] input and output channels and output maps of at least [`MIN_OUT_SIDE`] on
/// each side.
pub(crate) fn plan(g: &Geometry) -> Option<Variant> {
    let (ho, wo) = g.out_hw();
    let fits = g.k == 3
        && g.p < 3
        && g.c >= MIN_CHANNELS
        && g.o >= MIN_CHANNELS
        && ho >= MIN_OUT_SIDE
        && wo >= MIN_OUT_SIDE;
    if !fits {
        return None;
    }
    match g.algorithm {
        ConvAlgorithm::Direct => None,
        ConvAlgorithm::Accurate => Some(Variant::F2),
        ConvAlgorithm::Fastest if ho.min(wo) >= MIN_F4_SIDE => Some(Variant::F4),
        ConvAlgorithm::Fastest => Some(Variant::F2),
    }
}

/// One of the algorithms here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Variant {
    /// F(2x2, 3x3).
    F2,
    /// F(4x4, 3x3).
    F4,
}

/// The tiles of one geometry and the sizes of its buffers, for the algorithm `W`.
struct Tiling<W> {
    /// Input and output channels.
    c: usize,
    o: usize,
    /// Input map and padding.
    h: usize,
    w: usize,
    p: usize,
    /// Output map.
    ho: usize,
    wo: usize,
    /// Tiles per column and per row of a map: `ceil(Ho / m)`, `ceil(Wo / m)`.
    th: usize,
    tw: usize,
    algorithm: PhantomData<W>,
}

impl<W: Transforms> Tiling<W> {
    /// Transformed components: one per element of the `A x A` input patch.
    const XI: usize = W::A * W::A;

    fn new(g: &Geometry) -> Self {
        let (ho, wo) = g.out_hw();
        Self {
            c: g.c,
            o: g.o,
            h: g.h,
            w: g.w,
            p: g.p,
            ho,
            wo,
            th: ho.div_ceil(W::M),
            tw: wo.div_ceil(W::M),
            algorithm: PhantomData,
        }
    }

    fn per_sample(&self) -> usize {
        self.th * self.tw
    }

    /// Samples per chunk of work (at least one).
    fn chunk_samples(&self, n: usize) -> usize {
        (W::CHUNK_TILES / self.per_sample()).clamp(1, n.max(1))
    }

    /// Width of the padded channels-last sample, `m Tw + 2` (every tile's patch inside).
    fn padded_w(&self) -> usize {
        W::M * self.tw + 2
    }

    /// Elements of the padded channels-last sample, `(m Th + 2) (m Tw + 2) C`.
    fn padded_len(&self) -> usize {
        (W::M * self.th + 2) * self.padded_w() * self.c
    }

    /// Elements of a channels-last output map rounded up to whole tiles, `m Th m Tw O`.
    fn tiled_out_len(&self) -> usize {
        W::M * W::M * self.per_sample() * self.o
    }

    /// Offset in a channels-last tiled output map (`[m Th, m Tw, O]`) of output position `q`
    /// (row-major over the `Ho x Wo` map).
    fn tiled_offset(&self, q: usize) -> usize {
        (q / self.wo * W::M * self.tw + q % self.wo) * self.o
    }

    /// Elements of the transforms' work space: see [`Tiling::split_work`].
    fn work_len(&self) -> usize {
        self.padded_len() + Self::XI * self.c.max(self.o) + self.tiled_out_len()
    }

    /// The work space as the padded channels-last sample, one tile's intermediate (room for
    /// `A^2` rows of `max(C, O)`) and a channels-last tiled output map.
    fn split_work<'w, T>(&self, work: &'w mut [T]) -> (&'w mut [T], &'w mut [T], &'w mut [T]) {
        let (hwc, rest) = work.split_at_mut(self.padded_len());
        let (tmp, yhwc) = rest.split_at_mut(Self::XI * self.c.max(self.o));
        (hwc, tmp, &mut yhwc[..self.tiled_out_len()])
    }

    fn in_len(&self) -> usize {
        self.c * self.h * self.w
    }

    fn out_len(&self) -> usize {
        self.o * self.ho * self.wo
    }
}

/// `MAX_A` vectors `at(0), .., at(used - 1)`, the rest empty.
#[inline(always)]
fn vectors<'a, T>(used: usize, at: impl Fn(usize) -> &'a [T]) -> Vectors<'a, T> {
    let mut v: Vectors<'a, T> = [&[]; MAX_A];
    for (i, slot) in v.iter_mut().enumerate().take(used) {
        *slot = at(i);
    }
    v
}

/// One tile's two-sided transform `S X S^T`, for the `n_in x n_in` vectors `x(i, j)` (each
/// `len` long) and the one-sided transform `side` (component `k` of `S d` for `n_in` vectors
/// `d`): the columns into `tmp` (`tmp[k, j] = (S X)[k, j]`), then its rows into `dst`, whose
/// component `(k, l)` starts at `dst_at(k, l)`.
///
/// Callers pass `side` as an `#[inline(always)]` closure: a function item, or a plain closure
/// around a whole transform, is compiled once outside [`vectorised`]'s per-CPU copies and runs
/// with the baseline's 4-wide vectors (measured: a fifth of a layer's time in `Fn::call`).
#[inline(always)]
fn two_sided<'x, T: Element>(
    (n_in, n_out, len): (usize, usize, usize),
    x: impl Fn(usize, usize) -> &'x [T],
    side: impl Fn(usize, &Vectors<'_, T>, &mut [T]),
    tmp: &mut [T],
    dst: &mut [T],
    dst_at: impl Fn(usize, usize) -> usize,
) {
    for j in 0..n_in {
        let d = vectors(n_in, |i| x(i, j));
        for k in 0..n_out {
            side(k, &d, &mut tmp[(k * n_in + j) * len..][..len]);
        }
    }
    for k in 0..n_out {
        let d = vectors(n_in, |j| &tmp[(k * n_in + j) * len..][..len]);
        for l in 0..n_out {
            side(l, &d, &mut dst[dst_at(k, l)..][..len]);
        }
    }
}

/// `U = G g G^T` for every kernel `g = w[o, c]`, as `[A^2, C, O]` (component-major, output
/// channels innermost).
fn transform_kernel<W: Transforms, T: Element>(g: &Geometry, weight: &[T]) -> Vec<T> {
    let (o_n, c_n, a_n) = (g.o, g.c, W::A);
    // The taps turned around to `[C, 9, O]`: each tap of one input channel is a contiguous
    // vector over the output channels, and every step below one elementwise loop over them.
    let mut taps = vec![T::ZERO; 9 * c_n * o_n];
    transpose(
        weight,
        (o_n, 9 * c_n),
        |o| o * 9 * c_n,
        &mut taps,
        |j| j * o_n,
    );
    // In parallel over the rows `i` of the transform (components `A i .. A i + A`).
    // Each row's chunk is `A` blocks `[C, O]`, written channel by channel; the buffer is as
    // large as the kernels' transform (weights, not activations), so its zeroing costs little.
    par_build(a_n * a_n * o_n * c_n, a_n * c_n * o_n, 1, |i, u| {
        let mut cols = vec![T::ZERO; 3 * o_n];
        for c in 0..c_n {
            let tap = |k: usize| &taps[(c * 9 + k) * o_n..][..o_n];
            vectorised(|| {
                // Row `i` of the columns of `G g` (A x 3), then of `(G g) G^T` (A x A).
                for (l, col) in cols.chunks_exact_mut(o_n).enumerate() {
                    let (t0, t1, t2) = (tap(l), tap(3 + l), tap(6 + l));
                    let side = |o: usize| W::kernel_side([t0[o], t1[o], t2[o]]);
                    fill_component(i, col, side);
                }
                let (c0, c1, c2) = (&cols[..o_n], &cols[o_n..2 * o_n], &cols[2 * o_n..]);
                for (j, row) in u.chunks_exact_mut(c_n * o_n).enumerate() {
                    let row = &mut row[c * o_n..][..o_n];
                    let side = |o: usize| W::kernel_side([c0[o], c1[o], c2[o]]);
                    fill_component(j, row, side);
                }
            });
        }
    })
}

/// `out[t] = f(t)[k]`, with the component `k` chosen outside the loop, so that each loop
/// computes one component and vectorises (an index into the array inside the loop keeps it
/// scalar).
#[inline(always)]
fn fill_component<T: Copy>(k: usize, out: &mut [T], f: impl Fn(usize) -> [T; MAX_A]) {
    match k {
        0 => fill(out, |t| f(t)[0]),
        1 => fill(out, |t| f(t)[1]),
        2 => fill(out, |t| f(t)[2]),
        3 => fill(out, |t| f(t)[3]),
        4 => fill(out, |t| f(t)[4]),
        _ => fill(out, |t| f(t)[5]),
    }
}

/// The three buffers of a chunk: transformed inputs `[A^2, tiles, C]`, transformed outputs (or
/// output gradients) `[A^2, tiles, O]`, and the work space of the transforms.
fn chunk_buffers<W: Transforms, T: Element>(
    t: &Tiling<W>,
    tiles: usize,
    f: impl FnOnce(&mut [T], &mut [T], &mut [T]),
) {
    let xi = Tiling::<W>::XI;
    T::with_scratch(|scratch| {
        let v = sized(&mut scratch.cols, xi * tiles * t.c);
        let m = sized(&mut scratch.wide, xi * tiles * t.o);
        let work = sized(&mut scratch.planes, t.work_len());
        f(v, m, work)
    })
}

/// `V[xi, tile, c] = (B^T d B)[xi]` for every tile of the samples `x` (`[count, C, H, W]`),
/// or of `elu(x)` where `elu`, into `v`; `work` holds the padded sample and one tile's
/// intermediate.
struct InputTiles<'a, W, T> {
    t: &'a Tiling<W>,
    x: &'a [T],
    elu: bool,
    v: &'a mut [T],
    work: &'a mut [T],
}

impl<W: Transforms, T: Element> Kernel for InputTiles<'_, W, T> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Self { t, x, elu, v, work } = self;
        let (c_n, bw, a_n, m_n) = (t.c, t.padded_w(), W::A, W::M);
        let count = x.len() / t.in_len();
        let tiles = count * t.per_sample();
        let (hwc, tmp, _) = t.split_work(work);
        // The padding is zeroed once: every sample overwrites the same inner positions.
        hwc.fill(T::ZERO);
        for (s, sample) in x.chunks_exact(t.in_len()).enumerate() {
            // Row `r`, column `q` of the padded sample hold input `(r - p, q - p)`.
            let hw = t.h * t.w;
            transpose(
                sample,
                (c_n, hw),
                |c| c * hw,
                hwc,
                |q| ((q / t.w + t.p) * bw + q % t.w + t.p) * c_n,
            );
            if elu {
                // In cache, over the padding too: `elu(0) = 0` keeps it zero.
                for v in hwc.iter_mut() {
                    *v = elu_value(*v);
                }
            }
            let hwc = &*hwc;
            for ty in 0..t.th {
                for tx in 0..t.tw {
                    let col = s * t.per_sample() + ty * t.tw + tx;
                    // V[k, l] = (B^T d B)[k, l] for the tile's patch `d`.
                    two_sided(
                        (a_n, a_n, c_n),
                        |i, j| &hwc[((m_n * ty + i) * bw + m_n * tx + j) * c_n..][..c_n],
                        #[inline(always)]
                        |k, d, out| W::input_side(k, d, out),
                        tmp,
                        v,
                        |k, l| ((k * a_n + l) * tiles + col) * c_n,
                    );
                }
            }
        }
    }
}

/// `Y = A^T M A` for every tile, from `m` (`[A^2, tiles, O]`) into the samples `dst`
/// (`[count, O, Ho, Wo]`); `work` holds one tile's intermediate and a channels-last map.
struct OutputTiles<'a, W, T> {
    t: &'a Tiling<W>,
    m: &'a [T],
    /// What is done to each sample's outputs once written (values as long as `dst`).
    epilogue: Epilogue<'a, T>,
    dst: &'a mut [T],
    work: &'a mut [T],
}

impl<W: Transforms, T: Element> Kernel for OutputTiles<'_, W, T> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Self {
            t,
            m,
            epilogue,
            dst,
            work,
        } = self;
        let (o_n, a_n, m_n) = (t.o, W::A, W::M);
        let tiles = dst.len() / t.out_len() * t.per_sample();
        let (_, tmp, yhwc) = t.split_work(work);
        let row = m_n * t.tw;
        for (s, y_s) in dst.chunks_exact_mut(t.out_len()).enumerate() {
            for ty in 0..t.th {
                for tx in 0..t.tw {
                    let col = s * t.per_sample() + ty * t.tw + tx;
                    // Y[a, b] = (A^T M A)[a, b] into the tile's place in the map.
                    two_sided(
                        (a_n, m_n, o_n),
                        |i, j| &m[((i * a_n + j) * tiles + col) * o_n..][..o_n],
                        #[inline(always)]
                        |k, d, out| W::output_side(k, d, out),
                        tmp,
                        yhwc,
                        |a, b| ((m_n * ty + a) * row + m_n * tx + b) * o_n,
                    );
                }
            }
            // The valid `Ho x Wo` part of the tiled map, back to channels first.
            let hw = t.ho * t.wo;
            transpose(yhwc, (hw, o_n), |q| t.tiled_offset(q), y_s, |o| o * hw);
            // In cache, right after the transpose wrote it.
            match epilogue {
                Epilogue::None => {}
                Epilogue::EluSlope(z) => {
                    let z = &z[s * t.out_len()..][..t.out_len()];
                    for (y, &z) in y_s.iter_mut().zip(z) {
                        *y = elu_scaled_slope(*y, z);
                    }
                }
                Epilogue::Add(r) => {
                    let r = &r[s * t.out_len()..][..t.out_len()];
                    for (y, &r) in y_s.iter_mut().zip(r) {
                        *y = *y + r;
                    }
                }
            }
        }
    }
}

/// What [`forward_ends`] does to each output `y` once computed, with the matching element of
/// a tensor of the output's shape.
#[derive(Clone, Copy)]
pub(crate) enum Epilogue<'a, T> {
    /// Nothing.
    None,
    /// `y elu'(z)`: the input gradient of a convolution of `elu(z)`.
    EluSlope(&'a [T]),
    /// `y + r`: a residual sum.
    Add(&'a [T]),
}

impl<'a, T> Epilogue<'a, T> {
    /// The values it reads, if any.
    pub(crate) fn values(self) -> Option<&'a [T]> {
        match self {
            Epilogue::None => None,
            Epilogue::EluSlope(v) | Epilogue::Add(v) => Some(v),
        }
    }

    /// The same epilogue on `values()[at..at + len]`.
    fn narrow(self, at: usize, len: usize) -> Self {
        match self {
            Epilogue::None => Epilogue::None,
            Epilogue::EluSlope(v) => Epilogue::EluSlope(&v[at..][..len]),
            Epilogue::Add(v) => Epilogue::Add(&v[at..][..len]),
        }
    }
}

/// `M'[xi, tile, o] = (A dY A^T)[xi]` for every `m x m` tile `dY` of the output gradients `dy`
/// (`[count, O, Ho, Wo]`, zeros beyond the map), into `mg`; the adjoint of [`OutputTiles`].
struct GradientTiles<'a, W, T> {
    t: &'a Tiling<W>,
    dy: &'a [T],
    mg: &'a mut [T],
    work: &'a mut [T],
}

impl<W: Transforms, T: Element> Kernel for GradientTiles<'_, W, T> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Self { t, dy, mg, work } = self;
        let (o_n, a_n, m_n) = (t.o, W::A, W::M);
        let tiles = dy.len() / t.out_len() * t.per_sample();
        let (_, tmp, yhwc) = t.split_work(work);
        let row = m_n * t.tw;
        // Tiles overhanging the map see zeros there, set once: every sample overwrites the
        // same valid positions.
        if t.ho % m_n != 0 || t.wo % m_n != 0 {
            yhwc.fill(T::ZERO);
        }
        for (s, dy_s) in dy.chunks_exact(t.out_len()).enumerate() {
            let hw = t.ho * t.wo;
            transpose(dy_s, (o_n, hw), |o| o * hw, yhwc, |q| t.tiled_offset(q));
            let yhwc = &*yhwc;
            for ty in 0..t.th {
                for tx in 0..t.tw {
                    let col = s * t.per_sample() + ty * t.tw + tx;
                    // M'[i, j] = (A dY A^T)[i, j] for the tile's output gradient `dY`.
                    two_sided(
                        (m_n, a_n, o_n),
                        |a, b| &yhwc[((m_n * ty + a) * row + m_n * tx + b) * o_n..][..o_n],
                        #[inline(always)]
                        |k, d, out| W::gradient_side(k, d, out),
                        tmp,
                        mg,
                        |i, j| ((i * a_n + j) * tiles + col) * o_n,
                    );
                }
            }
        }
    }
}

/// The convolution `[N, C, H, W] * [O, C, 3, 3] -> [N, O, Ho, Wo]` (stride 1, padding `g.p`)
/// of `x`, or of `elu(x)` where `elu`, the values of `conv_cpu::forward`, with the `epilogue`
/// applied to each sample's outputs as they are written (in cache). `x` and `weight` are
/// contiguous.
pub(crate) fn forward_ends<T: Element>(
    g: &Geometry,
    variant: Variant,
    (x, elu): (&[T], bool),
    weight: &[T],
    epilogue: Epilogue<'_, T>,
) -> Vec<T> {
    match variant {
        Variant::F2 => forward_with::<F2, T>(g, (x, elu), weight, epilogue),
        Variant::F4 => forward_with::<F4, T>(g, (x, elu), weight, epilogue),
    }
}

/// [`forward_ends`] for the algorithm `W`.
fn forward_with<W: Transforms, T: Element>(
    g: &Geometry,
    (x, elu): (&[T], bool),
    weight: &[T],
    epilogue: Epilogue<'_, T>,
) -> Vec<T> {
    let t = Tiling::<W>::new(g);
    let samples = t.chunk_samples(g.n);
    let u = transform_kernel::<W, T>(g, weight);
    if let Some(values) = epilogue.values() {
        assert_eq!(
            values.len(),
            g.n * t.out_len(),
            "epilogue of the output's size"
        );
    }
    par_build(g.n * t.out_len(), samples * t.out_len(), 1, |i, dst| {
        let x = &x[i * samples * t.in_len()..][..dst.len() / t.out_len() * t.in_len()];
        let epilogue = epilogue.narrow(i * samples * t.out_len(), dst.len());
        let tiles = x.len() / t.in_len() * t.per_sample();
        chunk_buffers(&t, tiles, |v, m, work| {
            vectorised(InputTiles {
                t: &t,
                x,
                elu,
                v,
                work,
            });
            // M[xi] = V[xi] @ U[xi]: A^2 products [tiles, C] @ [C, O].
            for xi in 0..Tiling::<W>::XI {
                let lhs = Mat {
                    data: &v[xi * tiles * t.c..][..tiles * t.c],
                    rows: tiles,
                    cols: t.c,
                    rs: t.c,
                    cs: 1,
                };
                let rhs = Mat {
                    data: &u[xi * t.c * t.o..][..t.c * t.o],
                    rows: t.c,
                    cols: t.o,
                    rs: t.o,
                    cs: 1,
                };
                let dst = &mut m[xi * tiles * t.o..][..tiles * t.o];
                matmul_into(dst, &lhs, &rhs, false, gemm::Parallelism::None);
            }
            vectorised(OutputTiles {
                t: &t,
                m,
                epilogue,
                dst,
                work,
            });
        })
    })
}

/// The kernel gradient `[O, C, 3, 3]` of the convolution of `x` (`[N, C, H, W]`), or of
/// `elu(x)` where `elu` (applied to each sample's channels-last copy), given the
/// output gradient `grad` (`[N, O, Ho, Wo]`), the values of `conv_cpu::kernel_grad`: per chunk
/// of samples `dU[xi] = V[xi]^T @ M'[xi]` (`A^2` products `[C, tiles] @ [tiles, O]`), the
/// chunks summed in a fixed order, then `dg = G^T dU G` per channel pair.
pub(crate) fn kernel_grad<T: Element>(
    g: &Geometry,
    variant: Variant,
    (x, elu): (&[T], bool),
    grad: &[T],
) -> Vec<T> {
    match variant {
        Variant::F2 => kernel_grad_with::<F2, T>(g, (x, elu), grad),
        Variant::F4 => kernel_grad_with::<F4, T>(g, (x, elu), grad),
    }
}

fn kernel_grad_with<W: Transforms, T: Element>(
    g: &Geometry,
    (x, elu): (&[T], bool),
    grad: &[T],
) -> Vec<T> {
    let t = Tiling::<W>::new(g);
    let xi_n = Tiling::<W>::XI;
    let samples = t.chunk_samples(g.n);
    let (c_n, o_n) = (t.c, t.o);
    // Chunks of `samples` samples, dealt in order to at most `GRAD_GROUPS` groups; each group
    // accumulates its chunks' products into one `dU` (the first product overwrites it).
    let chunks = g.n.div_ceil(samples);
    let groups = chunks.min(GRAD_GROUPS);
    let parts: Vec<Vec<T>> = (0..groups)
        .into_par_iter()
        .map(|group| {
            let mut du = vec![T::ZERO; xi_n * c_n * o_n];
            for chunk in group * chunks / groups..(group + 1) * chunks / groups {
                let first = chunk * samples;
                let count = samples.min(g.n - first);
                let x = &x[first * t.in_len()..][..count * t.in_len()];
                let dy = &grad[first * t.out_len()..][..count * t.out_len()];
                let accumulate = chunk > group * chunks / groups;
                chunk_kernel_grad(&t, (x, elu), dy, &mut du, accumulate);
            }
            du
        })
        .collect();
    untransform_kernel_grad(&t, &sum_parts(&parts, xi_n * c_n * o_n))
}

/// Most partial sums of [`kernel_grad_with`]: enough groups of chunks to keep many cores busy,
/// few enough that each group's `dU` (up to `36 C O` elements) is reused over several chunks
/// instead of being allocated, written and summed once per chunk. The grouping depends only on
/// the batch, so the sums' order does not depend on the number of threads.
const GRAD_GROUPS: usize = 8;

/// `dU[xi] (+)= V[xi]^T @ M'[xi]` over the tiles of the samples `x` (or of `elu(x)` where
/// `elu`) and their output gradients `dy`: overwritten, or added to where `accumulate`.
fn chunk_kernel_grad<W: Transforms, T: Element>(
    t: &Tiling<W>,
    (x, elu): (&[T], bool),
    dy: &[T],
    du: &mut [T],
    accumulate: bool,
) {
    let (c_n, o_n) = (t.c, t.o);
    let tiles = x.len() / t.in_len() * t.per_sample();
    chunk_buffers(t, tiles, |v, mg, work| {
        vectorised(InputTiles {
            t,
            x,
            elu,
            v,
            work: &mut *work,
        });
        vectorised(GradientTiles { t, dy, mg, work });
        for xi in 0..Tiling::<W>::XI {
            // V[xi] seen transposed, `[C, tiles]`.
            let lhs = Mat {
                data: &v[xi * tiles * c_n..][..tiles * c_n],
                rows: c_n,
                cols: tiles,
                rs: 1,
                cs: c_n,
            };
            let rhs = Mat {
                data: &mg[xi * tiles * o_n..][..tiles * o_n],
                rows: tiles,
                cols: o_n,
                rs: o_n,
                cs: 1,
            };
            let dst = &mut du[xi * c_n * o_n..][..c_n * o_n];
            matmul_into(dst, &lhs, &rhs, accumulate, gemm::Parallelism::None);
        }
    });
}

/// `dg = G^T dU G` for every channel pair of `du` (`[A^2, C, O]`), as `[O, C, 3, 3]`.
fn untransform_kernel_grad<W: Transforms, T: Element>(t: &Tiling<W>, du: &[T]) -> Vec<T> {
    let (c_n, o_n, a_n) = (t.c, t.o, W::A);
    // Blocks of `OUT_BLOCK` output channels per task, channels innermost: the block's values of
    // one component of `dU` share a cache line.
    par_build(o_n * c_n * 9, OUT_BLOCK * c_n * 9, 1, |b, block| {
        for c in 0..c_n {
            for (ob, dg) in block.chunks_exact_mut(c_n * 9).enumerate() {
                let o = b * OUT_BLOCK + ob;
                let at = |i: usize, j: usize| du[((i * a_n + j) * c_n + c) * o_n + o];
                // Columns of `G^T dU` (3 x A; zeros beyond A), then rows of `(G^T dU) G` (3 x 3).
                let cols: [[T; 3]; MAX_A] = std::array::from_fn(|j| {
                    W::kernel_adjoint(&std::array::from_fn(|i| {
                        if i < a_n && j < a_n {
                            at(i, j)
                        } else {
                            T::ZERO
                        }
                    }))
                });
                let out = &mut dg[c * 9..][..9];
                for a in 0..3 {
                    let row = W::kernel_adjoint(&std::array::from_fn(|j| cols[j][a]));
                    out[a * 3..][..3].copy_from_slice(&row);
                }
            }
        }
    })
}

/// Output channels per task of [`untransform_kernel_grad`]: sixteen f32 values fill a cache
/// line of `dU`.
const OUT_BLOCK: usize = 16;
