//! The transforms of Winograd's F(2x2, 3x3) and F(4x4, 3x3) (Lavin and Gray 2016, Sec. 4):
//! `B^T` for input patches, `G` for kernels, `A^T` for outputs, and their adjoints for the
//! gradients, each applied to one side of a tile at a time, elementwise over vectors of
//! channels.

use crate::kernels::dense::Element;

/// Largest patch side `m + 2` of the algorithms here.
pub(super) const MAX_A: usize = 6;

/// `MAX_A` vectors of which the first `A` (or `M`) are used.
pub(super) type Vectors<'a, T> = [&'a [T]; MAX_A];

/// Fills `out` elementwise, `out[t] = f(t)`, in one loop the compiler vectorises (the
/// closures pass their inputs cut to `out.len()`).
#[inline(always)]
#[allow(clippy::needless_range_loop)] // A counted loop is what the vectoriser recognises.
pub(super) fn fill<T>(out: &mut [T], f: impl Fn(usize) -> T) {
    let n = out.len();
    for t in 0..n {
        out[t] = f(t);
    }
}

/// One of Winograd's algorithms F(m x m, 3 x 3): its tile sides and its three transforms, each
/// applied to one side of a tile at a time (elementwise over vectors of channels).
pub(super) trait Transforms: Send + Sync {
    /// Outputs per tile side, `m`.
    const M: usize;
    /// Inputs per tile side, `m + 2`.
    const A: usize;
    /// Tiles per chunk of work: enough rows for efficient products, while the transformed
    /// inputs and products (`A^2 (C + O) tiles` elements) stay near the core's cache.
    const CHUNK_TILES: usize;
    /// Component `k` of `B^T d` for the `A` vectors `d`.
    fn input_side<T: Element>(k: usize, d: &Vectors<'_, T>, out: &mut [T]);
    /// Component `a` of `A^T m` for the `A` vectors `m`.
    fn output_side<T: Element>(a: usize, m: &Vectors<'_, T>, out: &mut [T]);
    /// Component `k` of `A y` for the `M` vectors `y`: the adjoint of
    /// [`Transforms::output_side`].
    fn gradient_side<T: Element>(k: usize, y: &Vectors<'_, T>, out: &mut [T]);
    /// `G w` for three kernel values `w` (the first `A` entries).
    fn kernel_side<T: Element>(w: [T; 3]) -> [T; MAX_A];
    /// `G^T u` for the `A` components `u`: the adjoint of [`Transforms::kernel_side`].
    fn kernel_adjoint<T: Element>(u: &[T; MAX_A]) -> [T; 3];
}

/// F(2x2, 3x3): `B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]`,
/// `G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]`,
/// `A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]`.
pub(super) struct F2;

impl Transforms for F2 {
    const M: usize = 2;
    const A: usize = 4;
    const CHUNK_TILES: usize = 256;

    #[inline(always)]
    fn input_side<T: Element>(k: usize, d: &Vectors<'_, T>, out: &mut [T]) {
        let n = out.len();
        let (d0, d1, d2, d3) = (&d[0][..n], &d[1][..n], &d[2][..n], &d[3][..n]);
        match k {
            0 => fill(out, |t| d0[t] - d2[t]),
            1 => fill(out, |t| d1[t] + d2[t]),
            2 => fill(out, |t| d2[t] - d1[t]),
            _ => fill(out, |t| d1[t] - d3[t]),
        }
    }

    #[inline(always)]
    fn output_side<T: Element>(a: usize, m: &Vectors<'_, T>, out: &mut [T]) {
        let n = out.len();
        let (m0, m1, m2, m3) = (&m[0][..n], &m[1][..n], &m[2][..n], &m[3][..n]);
        if a == 0 {
            fill(out, |t| m0[t] + m1[t] + m2[t]);
        } else {
            fill(out, |t| m1[t] - m2[t] - m3[t]);
        }
    }

    #[inline(always)]
    fn gradient_side<T: Element>(k: usize, y: &Vectors<'_, T>, out: &mut [T]) {
        let n = out.len();
        let (y0, y1) = (&y[0][..n], &y[1][..n]);
        match k {
            0 => out.copy_from_slice(y0),
            1 => fill(out, |t| y0[t] + y1[t]),
            2 => fill(out, |t| y0[t] - y1[t]),
            _ => fill(out, |t| T::ZERO - y1[t]),
        }
    }

    #[inline(always)]
    fn kernel_side<T: Element>([a, b, c]: [T; 3]) -> [T; MAX_A] {
        let half = T::ONE / T::from_usize(2);
        [
            a,
            (a + b + c) * half,
            (a - b + c) * half,
            c,
            T::ZERO,
            T::ZERO,
        ]
    }

    #[inline(always)]
    fn kernel_adjoint<T: Element>(u: &[T; MAX_A]) -> [T; 3] {
        let half = T::ONE / T::from_usize(2);
        [
            u[0] + (u[1] + u[2]) * half,
            (u[1] - u[2]) * half,
            (u[1] + u[2]) * half + u[3],
        ]
    }
}

/// F(4x4, 3x3) with the points `0, 1, -1, 2, -2` and infinity:
/// `B^T = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
/// [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]`,
/// `G = [[1/4, 0, 0], [-1/6, -1/6, -1/6], [-1/6, 1/6, -1/6], [1/24, 1/12, 1/6],
/// [1/24, -1/12, 1/6], [0, 0, 1]]`,
/// `A^T = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]`.
pub(super) struct F4;

impl Transforms for F4 {
    const M: usize = 4;
    const A: usize = 6;
    const CHUNK_TILES: usize = 128;

    #[inline(always)]
    fn input_side<T: Element>(k: usize, d: &Vectors<'_, T>, out: &mut [T]) {
        let n = out.len();
        let (d0, d1, d2) = (&d[0][..n], &d[1][..n], &d[2][..n]);
        let (d3, d4, d5) = (&d[3][..n], &d[4][..n], &d[5][..n]);
        let (two, four, five) = (T::from_usize(2), T::from_usize(4), T::from_usize(5));
        match k {
            0 => fill(out, |t| (d0[t] * four - d2[t] * five) + d4[t]),
            1 => fill(out, |t| (d3[t] + d4[t]) - (d1[t] + d2[t]) * four),
            2 => fill(out, |t| (d4[t] - d3[t]) + (d1[t] - d2[t]) * four),
            3 => fill(out, |t| (d4[t] - d2[t]) + (d3[t] - d1[t]) * two),
            4 => fill(out, |t| (d4[t] - d2[t]) - (d3[t] - d1[t]) * two),
            _ => fill(out, |t| (d1[t] * four - d3[t] * five) + d5[t]),
        }
    }

    #[inline(always)]
    fn output_side<T: Element>(a: usize, m: &Vectors<'_, T>, out: &mut [T]) {
        let n = out.len();
        let (m0, m1, m2) = (&m[0][..n], &m[1][..n], &m[2][..n]);
        let (m3, m4, m5) = (&m[3][..n], &m[4][..n], &m[5][..n]);
        let (two, four, eight) = (T::from_usize(2), T::from_usize(4), T::from_usize(8));
        match a {
            0 => fill(out, |t| m0[t] + (m1[t] + m2[t]) + (m3[t] + m4[t])),
            1 => fill(out, |t| (m1[t] - m2[t]) + (m3[t] - m4[t]) * two),
            2 => fill(out, |t| (m1[t] + m2[t]) + (m3[t] + m4[t]) * four),
            _ => fill(out, |t| (m1[t] - m2[t]) + (m3[t] - m4[t]) * eight + m5[t]),
        }
    }

    #[inline(always)]
    fn gradient_side<T: Element>(k: usize, y: &Vectors<'_, T>, out: &mut [T]) {
        let n = out.len();
        let (y0, y1, y2, y3) = (&y[0][..n], &y[1][..n], &y[2][..n], &y[3][..n]);
        let (two, four) = (T::from_usize(2), T::from_usize(4));
        match k {
            0 => out.copy_from_slice(y0),
            1 => fill(out, |t| (y0[t] + y2[t]) + (y1[t] + y3[t])),
            2 => fill(out, |t| (y0[t] + y2[t]) - (y1[t] + y3[t])),
            3 => fill(out, |t| {
                (y0[t] + y2[t] * four) + (y1[t] + y3[t] * four) * two
            }),
            4 => fill(out, |t| {
                (y0[t] + y2[t] * four) - (y1[t] + y3[t] * four) * two
            }),
            _ => out.copy_from_slice(y3),
        }
    }

    #[inline(always)]
    fn kernel_side<T: Element>([a, b, c]: [T; 3]) -> [T; MAX_A] {
        let f = |n: usize| T::ONE / T::from_usize(n);
        let (sum, alt) = (a + b + c, a - b + c);
        let (outer, inner) = (a * f(24) + c * f(6), b * f(12));
        [
            a * f(4),
            T::ZERO - sum * f(6),
            T::ZERO - alt * f(6),
            outer + inner,
            outer - inner,
            c,
        ]
    }

    #[inline(always)]
    fn kernel_adjoint<T: Element>(u: &[T; MAX_A]) -> [T; 3] {
        let f = |n: usize| T::ONE / T::from_usize(n);
        let (s12, d12) = (u[1] + u[2], u[2] - u[1]);
        let (s34, d34) = (u[3] + u[4], u[3] - u[4]);
        [
            u[0] * f(4) - s12 * f(6) + s34 * f(24),
            d12 * f(6) + d34 * f(12),
            (s34 - s12) * f(6) + u[5],
        ]
    }
}
