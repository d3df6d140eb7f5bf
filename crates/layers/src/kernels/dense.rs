//! The dense building blocks of the CPU convolution kernels: the element trait (`f32`, `f64`)
//! with per-thread scratch buffers, strided matrix products through the `gemm` crate (the
//! matrix multiplication Candle itself uses on the CPU), row copies and blocked transposes.

use std::cell::RefCell;

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
pub(crate) fn transpose_blocks_portable<T: Copy>(
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
