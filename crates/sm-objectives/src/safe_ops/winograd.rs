//! Winograd's minimal filtering algorithm F(2x2, 3x3) for the 3x3 stride-1 convolution behind
//! `safe_ops::conv2d` on the CPU (Lavin and Gray, "Fast Algorithms for Convolutional Neural
//! Networks", CVPR 2016): each 2x2 output tile is `A^T [(G g G^T) . (B^T d B)] A` for the 4x4
//! input patch `d` and the 3x3 kernel `g`, so a tile costs 16 multiplications per channel pair
//! instead of 36. Summed over input channels, the 16 elementwise products become 16 matrix
//! products `V_xi [tiles, C] @ U_xi [C, O]`, 2.25x fewer multiply-adds than the direct
//! convolution on large maps. The kernel gradient is the adjoint of the same map:
//! `dU_xi = V_xi^T @ (A dY A^T)_xi` summed over tiles, then `dg = G^T dU G`.
//!
//! The transforms only add, subtract and halve, so the values agree with the direct
//! convolution to a few rounding errors (tested against Candle's `conv2d` in f32 and f64, with
//! every padding and odd map sizes). Work is split over fixed chunks of samples, one thread per
//! chunk, so results do not depend on the number of threads.
//!
//! The transforms work channels-last: each sample is transposed into a zero-padded
//! `[H + 2p', W + 2p', C]` buffer, so that every element of a tile's 4x4 patch is a contiguous
//! vector over the channels and each transform step is one elementwise loop of `C` (or `O`)
//! elements, compiled for the CPU's widest vector unit; outputs and output gradients go through
//! `[2 Th, 2 Tw, O]` buffers the same way.

use rayon::prelude::*;

use super::buffers::par_build;
use super::conv_cpu::{matmul_into, sized, sum_parts, transpose, Element, Geometry, Mat};
use super::simd::{vectorised, Kernel};

/// Number of transformed components: one per element of the 4x4 input patch.
const XI: usize = 16;

/// Tiles per chunk of work: enough rows for efficient products, while the transformed
/// input and the products (`16 (C + O) tiles` elements) stay near the core's cache.
const CHUNK_TILES: usize = 256;

/// Fewest input and output channels for which [`forward`] beats the direct convolution: with
/// fewer, the 16 products are too thin for the transforms to pay off.
const MIN_CHANNELS: usize = 16;

/// Smallest output height and width for which [`forward`] beats the direct convolution: on
/// smaller maps the 2x2 tiles overhang the map (a 3x3 map takes four tiles, 16 outputs for 9)
/// and the transforms cost more than the saved multiplications.
const MIN_OUT_SIDE: usize = 6;

/// Whether [`forward`] and [`kernel_grad`] handle `g`, and are faster there than the direct
/// convolution (measured with `cargo bench --bench conv_layers`): 3x3 kernels with padding
/// below 3, at least [`MIN_CHANNELS`] input and output channels and output maps of at least
/// [`MIN_OUT_SIDE`] on each side.
pub(super) fn applies(g: &Geometry) -> bool {
    let (ho, wo) = g.out_hw();
    g.k == 3
        && g.p < 3
        && g.c >= MIN_CHANNELS
        && g.o >= MIN_CHANNELS
        && ho >= MIN_OUT_SIDE
        && wo >= MIN_OUT_SIDE
}

/// The tiles of one geometry and the sizes of its buffers.
struct Tiling {
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
    /// Tiles per column and per row of a map: `ceil(Ho / 2)`, `ceil(Wo / 2)`.
    th: usize,
    tw: usize,
}

impl Tiling {
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
            th: ho.div_ceil(2),
            tw: wo.div_ceil(2),
        }
    }

    fn per_sample(&self) -> usize {
        self.th * self.tw
    }

    /// Samples per chunk of work (at least one).
    fn chunk_samples(&self, n: usize) -> usize {
        (CHUNK_TILES / self.per_sample()).clamp(1, n.max(1))
    }

    /// Width of the padded channels-last sample, `2 Tw + 2` (every tile's patch inside).
    fn padded_w(&self) -> usize {
        2 * self.tw + 2
    }

    /// Elements of the padded channels-last sample, `(2 Th + 2) (2 Tw + 2) C`.
    fn padded_len(&self) -> usize {
        (2 * self.th + 2) * self.padded_w() * self.c
    }

    /// Elements of a channels-last output map rounded up to whole tiles, `2 Th 2 Tw O`.
    fn tiled_out_len(&self) -> usize {
        4 * self.per_sample() * self.o
    }

    /// Offset in a channels-last tiled output map (`[2 Th, 2 Tw, O]`) of output position `q`
    /// (row-major over the `Ho x Wo` map).
    fn tiled_offset(&self, q: usize) -> usize {
        (q / self.wo * 2 * self.tw + q % self.wo) * self.o
    }

    /// Elements of the transforms' work space: see [`Tiling::split_work`].
    fn work_len(&self) -> usize {
        self.padded_len() + XI * self.c.max(self.o) + self.tiled_out_len()
    }

    /// The work space as the padded channels-last sample, one tile's intermediate (room for
    /// 16 rows of `max(C, O)`) and a channels-last tiled output map.
    fn split_work<'w, T>(&self, work: &'w mut [T]) -> (&'w mut [T], &'w mut [T], &'w mut [T]) {
        let (hwc, rest) = work.split_at_mut(self.padded_len());
        let (tmp, yhwc) = rest.split_at_mut(XI * self.c.max(self.o));
        (hwc, tmp, &mut yhwc[..self.tiled_out_len()])
    }

    fn in_len(&self) -> usize {
        self.c * self.h * self.w
    }

    fn out_len(&self) -> usize {
        self.o * self.ho * self.wo
    }
}

/// `U = G g G^T` for every kernel `g = w[o, c]`, as `[16, C, O]` (component-major, output
/// channels innermost), with `G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]`.
fn transform_kernel<T: Element>(g: &Geometry, weight: &[T]) -> Vec<T> {
    let (o_n, c_n) = (g.o, g.c);
    let half = T::ONE / T::from_usize(2);
    // `[a, (a + b + c) / 2, (a - b + c) / 2, c]`: one side of the transform.
    let side = |a: T, b: T, c: T| [a, (a + b + c) * half, (a - b + c) * half, c];
    // In parallel over the four rows `i` of the 4 x 4 transform (components `4 i .. 4 i + 4`).
    par_build(XI * o_n * c_n, 4 * c_n * o_n, 1, |i, u| {
        for o in 0..o_n {
            for c in 0..c_n {
                let w = &weight[(o * c_n + c) * 9..][..9];
                // Row `i` of the columns of `G g` (4 x 3), then of `(G g) G^T` (4 x 4).
                let col = |j: usize| side(w[j], w[3 + j], w[6 + j])[i];
                let row = side(col(0), col(1), col(2));
                for (j, &v) in row.iter().enumerate() {
                    u[(j * c_n + c) * o_n + o] = v;
                }
            }
        }
    })
}

/// Component `k` of `B^T d` for four vectors `d` (elementwise),
/// `B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]`.
#[inline(always)]
fn input_side<T: Element>(k: usize, d: [&[T]; 4], out: &mut [T]) {
    let n = out.len();
    let (d0, d1, d2, d3) = (&d[0][..n], &d[1][..n], &d[2][..n], &d[3][..n]);
    match k {
        0 => out
            .iter_mut()
            .enumerate()
            .for_each(|(t, o)| *o = d0[t] - d2[t]),
        1 => out
            .iter_mut()
            .enumerate()
            .for_each(|(t, o)| *o = d1[t] + d2[t]),
        2 => out
            .iter_mut()
            .enumerate()
            .for_each(|(t, o)| *o = d2[t] - d1[t]),
        _ => out
            .iter_mut()
            .enumerate()
            .for_each(|(t, o)| *o = d1[t] - d3[t]),
    }
}

/// Component `a` of `A^T m` for four vectors `m` (elementwise),
/// `A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]`.
#[inline(always)]
fn output_side<T: Element>(a: usize, m: [&[T]; 4], out: &mut [T]) {
    let n = out.len();
    let (m0, m1, m2, m3) = (&m[0][..n], &m[1][..n], &m[2][..n], &m[3][..n]);
    if a == 0 {
        out.iter_mut()
            .enumerate()
            .for_each(|(t, o)| *o = m0[t] + m1[t] + m2[t]);
    } else {
        out.iter_mut()
            .enumerate()
            .for_each(|(t, o)| *o = m1[t] - m2[t] - m3[t]);
    }
}

/// Component `k` of `A y` for two vectors `y` (elementwise), `A = [[1, 0], [1, 1], [1, -1],
/// [0, -1]]`: the adjoint of [`output_side`].
#[inline(always)]
fn gradient_side<T: Element>(k: usize, y: [&[T]; 2], out: &mut [T]) {
    let n = out.len();
    let (y0, y1) = (&y[0][..n], &y[1][..n]);
    match k {
        0 => out.copy_from_slice(y0),
        1 => out
            .iter_mut()
            .enumerate()
            .for_each(|(t, o)| *o = y0[t] + y1[t]),
        2 => out
            .iter_mut()
            .enumerate()
            .for_each(|(t, o)| *o = y0[t] - y1[t]),
        _ => out
            .iter_mut()
            .enumerate()
            .for_each(|(t, o)| *o = T::default() - y1[t]),
    }
}

/// The three buffers of a chunk: transformed inputs `[16, tiles, C]`, transformed outputs (or
/// output gradients) `[16, tiles, O]`, and the work space of the transforms.
fn chunk_buffers<T: Element>(
    t: &Tiling,
    tiles: usize,
    f: impl FnOnce(&mut [T], &mut [T], &mut [T]),
) {
    T::with_scratch(|scratch| {
        let v = sized(&mut scratch.cols, XI * tiles * t.c);
        let m = sized(&mut scratch.wide, XI * tiles * t.o);
        let work = sized(&mut scratch.planes, t.work_len());
        f(v, m, work)
    })
}

/// `V[xi, tile, c] = (B^T d B)[xi]` for every tile of the samples `x` (`[count, C, H, W]`),
/// into `v`; `work` holds the padded sample and one tile's intermediate.
struct InputTiles<'a, T> {
    t: &'a Tiling,
    x: &'a [T],
    v: &'a mut [T],
    work: &'a mut [T],
}

impl<T: Element> Kernel for InputTiles<'_, T> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Self { t, x, v, work } = self;
        let (c_n, bw) = (t.c, t.padded_w());
        let count = x.len() / t.in_len();
        let tiles = count * t.per_sample();
        let (hwc, tmp, _) = t.split_work(work);
        for (s, sample) in x.chunks_exact(t.in_len()).enumerate() {
            // Row `r`, column `q` of the padded sample hold input `(r - p, q - p)`.
            hwc.fill(T::default());
            let hw = t.h * t.w;
            transpose(
                sample,
                (c_n, hw),
                |c| c * hw,
                hwc,
                |q| ((q / t.w + t.p) * bw + q % t.w + t.p) * c_n,
            );
            let hwc = &*hwc;
            for ty in 0..t.th {
                for tx in 0..t.tw {
                    let col = s * t.per_sample() + ty * t.tw + tx;
                    let patch =
                        |i: usize, j: usize| &hwc[((2 * ty + i) * bw + 2 * tx + j) * c_n..][..c_n];
                    // tmp[k, j] = (B^T d)[k, j], then V[k, j'] = (B^T d B)[k, j'].
                    for j in 0..4 {
                        let d = [patch(0, j), patch(1, j), patch(2, j), patch(3, j)];
                        for k in 0..4 {
                            input_side(k, d, &mut tmp[(k * 4 + j) * c_n..][..c_n]);
                        }
                    }
                    for k in 0..4 {
                        let d: [&[T]; 4] =
                            std::array::from_fn(|j| &tmp[(k * 4 + j) * c_n..][..c_n]);
                        for j in 0..4 {
                            let xi = k * 4 + j;
                            input_side(j, d, &mut v[(xi * tiles + col) * c_n..][..c_n]);
                        }
                    }
                }
            }
        }
    }
}

/// `Y = A^T M A` for every tile, from `m` (`[16, tiles, O]`) into the samples `dst`
/// (`[count, O, Ho, Wo]`); `work` holds one tile's intermediate and a channels-last map.
struct OutputTiles<'a, T> {
    t: &'a Tiling,
    m: &'a [T],
    dst: &'a mut [T],
    work: &'a mut [T],
}

impl<T: Element> Kernel for OutputTiles<'_, T> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Self { t, m, dst, work } = self;
        let o_n = t.o;
        let tiles = dst.len() / t.out_len() * t.per_sample();
        let (_, tmp, yhwc) = t.split_work(work);
        let row = 2 * t.tw;
        for (s, y_s) in dst.chunks_exact_mut(t.out_len()).enumerate() {
            for ty in 0..t.th {
                for tx in 0..t.tw {
                    let col = s * t.per_sample() + ty * t.tw + tx;
                    let mm = |i: usize, j: usize| &m[((i * 4 + j) * tiles + col) * o_n..][..o_n];
                    for j in 0..4 {
                        let d = [mm(0, j), mm(1, j), mm(2, j), mm(3, j)];
                        for a in 0..2 {
                            output_side(a, d, &mut tmp[(a * 4 + j) * o_n..][..o_n]);
                        }
                    }
                    for a in 0..2 {
                        let d: [&[T]; 4] =
                            std::array::from_fn(|j| &tmp[(a * 4 + j) * o_n..][..o_n]);
                        for b in 0..2 {
                            let pos = (2 * ty + a) * row + 2 * tx + b;
                            output_side(b, d, &mut yhwc[pos * o_n..][..o_n]);
                        }
                    }
                }
            }
            // The valid `Ho x Wo` part of the tiled map, back to channels first.
            let hw = t.ho * t.wo;
            transpose(yhwc, (hw, o_n), |q| t.tiled_offset(q), y_s, |o| o * hw);
        }
    }
}

/// `M'[xi, tile, o] = (A dY A^T)[xi]` for every 2x2 tile `dY` of the output gradients `dy`
/// (`[count, O, Ho, Wo]`, zeros beyond the map), into `mg`; the adjoint of [`OutputTiles`].
struct GradientTiles<'a, T> {
    t: &'a Tiling,
    dy: &'a [T],
    mg: &'a mut [T],
    work: &'a mut [T],
}

impl<T: Element> Kernel for GradientTiles<'_, T> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Self { t, dy, mg, work } = self;
        let o_n = t.o;
        let tiles = dy.len() / t.out_len() * t.per_sample();
        let (_, tmp, yhwc) = t.split_work(work);
        let row = 2 * t.tw;
        for (s, dy_s) in dy.chunks_exact(t.out_len()).enumerate() {
            if t.ho % 2 == 1 || t.wo % 2 == 1 {
                yhwc.fill(T::default());
            }
            let hw = t.ho * t.wo;
            transpose(dy_s, (o_n, hw), |o| o * hw, yhwc, |q| t.tiled_offset(q));
            let yhwc = &*yhwc;
            for ty in 0..t.th {
                for tx in 0..t.tw {
                    let col = s * t.per_sample() + ty * t.tw + tx;
                    let dd = |a: usize, b: usize| {
                        &yhwc[((2 * ty + a) * row + 2 * tx + b) * o_n..][..o_n]
                    };
                    // tmp[a, j] = (dY A^T)[a, j], then M'[i, j] = (A dY A^T)[i, j].
                    for a in 0..2 {
                        let d = [dd(a, 0), dd(a, 1)];
                        for j in 0..4 {
                            gradient_side(j, d, &mut tmp[(a * 4 + j) * o_n..][..o_n]);
                        }
                    }
                    for j in 0..4 {
                        let d = [&tmp[j * o_n..][..o_n], &tmp[(4 + j) * o_n..][..o_n]];
                        for i in 0..4 {
                            let xi = i * 4 + j;
                            gradient_side(i, d, &mut mg[(xi * tiles + col) * o_n..][..o_n]);
                        }
                    }
                }
            }
        }
    }
}

/// The convolution `[N, C, H, W] * [O, C, 3, 3] -> [N, O, Ho, Wo]` (stride 1, padding `g.p`),
/// the values of `conv_cpu::forward`. `x` and `weight` are contiguous.
pub(super) fn forward<T: Element>(g: &Geometry, x: &[T], weight: &[T]) -> Vec<T> {
    let t = Tiling::new(g);
    let samples = t.chunk_samples(g.n);
    let u = transform_kernel(g, weight);
    par_build(g.n * t.out_len(), samples * t.out_len(), 1, |i, dst| {
        let x = &x[i * samples * t.in_len()..][..dst.len() / t.out_len() * t.in_len()];
        let tiles = x.len() / t.in_len() * t.per_sample();
        chunk_buffers(&t, tiles, |v, m, work| {
            vectorised(InputTiles { t: &t, x, v, work });
            // M[xi] = V[xi] @ U[xi]: 16 products [tiles, C] @ [C, O].
            for xi in 0..XI {
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
                dst,
                work,
            });
        })
    })
}

/// The kernel gradient `[O, C, 3, 3]` of the convolution of `x` (`[N, C, H, W]`) given the
/// output gradient `grad` (`[N, O, Ho, Wo]`), the values of `conv_cpu::kernel_grad`: per chunk
/// of samples `dU[xi] = V[xi]^T @ M'[xi]` (16 products `[C, tiles] @ [tiles, O]`), the chunks
/// summed in a fixed order, then `dg = G^T dU G` per channel pair.
pub(super) fn kernel_grad<T: Element>(g: &Geometry, x: &[T], grad: &[T]) -> Vec<T> {
    let t = Tiling::new(g);
    let samples = t.chunk_samples(g.n);
    let (c_n, o_n) = (t.c, t.o);
    let parts: Vec<Vec<T>> = x
        .par_chunks((samples * t.in_len()).max(1))
        .zip(grad.par_chunks((samples * t.out_len()).max(1)))
        .map(|(x, dy)| {
            let tiles = x.len() / t.in_len() * t.per_sample();
            let mut du = vec![T::default(); XI * c_n * o_n];
            chunk_buffers(&t, tiles, |v, mg, work| {
                vectorised(InputTiles {
                    t: &t,
                    x,
                    v,
                    work: &mut *work,
                });
                vectorised(GradientTiles {
                    t: &t,
                    dy,
                    mg,
                    work,
                });
                for xi in 0..XI {
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
                    matmul_into(dst, &lhs, &rhs, false, gemm::Parallelism::None);
                }
            });
            du
        })
        .collect();
    untransform_kernel_grad(&t, &sum_parts(&parts, XI * c_n * o_n))
}

/// `dg = G^T dU G` for every channel pair of `du` (`[16, C, O]`), as `[O, C, 3, 3]`.
fn untransform_kernel_grad<T: Element>(t: &Tiling, du: &[T]) -> Vec<T> {
    let (c_n, o_n) = (t.c, t.o);
    let half = T::ONE / T::from_usize(2);
    // `G^T u` for the four components `u`.
    let side = |u: [T; 4]| {
        [
            u[0] + (u[1] + u[2]) * half,
            (u[1] - u[2]) * half,
            (u[1] + u[2]) * half + u[3],
        ]
    };
    par_build(o_n * c_n * 9, c_n * 9, 1, |o, dg| {
        for c in 0..c_n {
            let at = |i: usize, j: usize| du[((i * 4 + j) * c_n + c) * o_n + o];
            // Columns of `G^T dU` (3 x 4), then rows of `(G^T dU) G` (3 x 3).
            let cols: [[T; 3]; 4] =
                std::array::from_fn(|j| side(std::array::from_fn(|i| at(i, j))));
            let out = &mut dg[c * 9..][..9];
            for a in 0..3 {
                let row = side(std::array::from_fn(|j| cols[j][a]));
                out[a * 3..][..3].copy_from_slice(&row);
            }
        }
    })
}
