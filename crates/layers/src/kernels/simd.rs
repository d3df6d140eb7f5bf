//! Runtime selection of the CPU's vector unit for the hand-written loops of the custom ops
//! (`fused.rs`, `winograd.rs`): the crate is compiled for the x86-64 baseline (4-wide SSE2),
//! so hot loops are re-compiled for AVX-512 or AVX2 and picked when the CPU has them.

/// A piece of work to compile once per vector unit. Implementations mark [`Kernel::run`]
/// `#[inline(always)]`, so that it is compiled into each of [`vectorised`]'s per-CPU copies
/// whatever its size (a plain closure is only inlined there when the compiler finds it
/// small).
pub trait Kernel {
    /// What the work returns.
    type Output;
    /// Does the work.
    fn run(self) -> Self::Output;
}

impl<R, F: FnOnce() -> R> Kernel for F {
    type Output = R;

    #[inline(always)]
    fn run(self) -> R {
        self()
    }
}

/// Runs `body` (a closure or a [`Kernel`]) compiled for the widest vector unit of this CPU (AVX-512, AVX2, else the
/// baseline): the loops inside `body` then process 16 (or 8) floats per instruction
/// instead of the baseline's 4. Every path does the same operations in the same order (no
/// fused multiply-adds are introduced), so results are identical on every CPU.
#[inline(always)]
#[allow(unsafe_code)]
pub fn vectorised<K: Kernel>(body: K) -> K::Output {
    #[cfg(target_arch = "x86_64")]
    {
        /// # Safety
        /// Only call on CPUs with AVX-512F.
        #[target_feature(enable = "avx512f")]
        unsafe fn avx512<K: Kernel>(body: K) -> K::Output {
            body.run()
        }
        /// # Safety
        /// Only call on CPUs with AVX2.
        #[target_feature(enable = "avx2")]
        unsafe fn avx2<K: Kernel>(body: K) -> K::Output {
            body.run()
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            return unsafe { avx512(body) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { avx2(body) };
        }
    }
    body.run()
}

/// The full 8x8 blocks of `dense::transpose` for `f32` with AVX:
/// `dst[dst_row(j) + i] = src[src_row(i) + j]` for `i < full_rows`, `j < full_cols` (multiples
/// of 8). Each block is loaded as eight rows of eight floats; pairs of rows are interleaved
/// (`unpacklo/hi`: elements 0 and 1 of both rows, then 2 and 3, per 128-bit half), pairs of
/// those combined into four-element columns (`shuffle`), and the two 128-bit halves exchanged
/// (`permute2f128`), which leaves column `c` of the block in register `c`.
///
/// # Safety
/// Only call on CPUs with AVX. Every row read or written is bounds-checked as a slice first.
///
/// # Panics
/// If a block row lies outside `src` or `dst` (an indexing bug in the caller).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
#[allow(unsafe_code)]
pub(crate) unsafe fn transpose_blocks_avx(
    src: &[f32],
    (full_rows, full_cols): (usize, usize),
    src_row: &impl Fn(usize) -> usize,
    dst: &mut [f32],
    dst_row: &impl Fn(usize) -> usize,
) {
    use std::arch::x86_64::{
        _mm256_loadu_ps, _mm256_permute2f128_ps, _mm256_setzero_ps, _mm256_shuffle_ps,
        _mm256_storeu_ps, _mm256_unpackhi_ps, _mm256_unpacklo_ps,
    };
    /// `_MM_SHUFFLE(1, 0, 1, 0)`: elements 0, 1 of the first operand, then 0, 1 of the second.
    const LOW_PAIRS: i32 = 0b01_00_01_00;
    /// `_MM_SHUFFLE(3, 2, 3, 2)`: elements 2, 3 of the first operand, then 2, 3 of the second.
    const HIGH_PAIRS: i32 = 0b11_10_11_10;
    for i0 in (0..full_rows).step_by(8) {
        let starts: [usize; 8] = std::array::from_fn(|r| src_row(i0 + r));
        for j0 in (0..full_cols).step_by(8) {
            let mut rows = [&[0f32; 8][..]; 8];
            for (row, &start) in rows.iter_mut().zip(&starts) {
                *row = &src[start + j0..][..8];
            }
            let mut r = [_mm256_setzero_ps(); 8];
            for (reg, row) in r.iter_mut().zip(rows) {
                // SAFETY: `row` is a slice of 8 floats (bounds-checked above); unaligned load.
                *reg = unsafe { _mm256_loadu_ps(row.as_ptr()) };
            }
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let t6 = _mm256_unpacklo_ps(r[6], r[7]);
            let t7 = _mm256_unpackhi_ps(r[6], r[7]);
            let s0 = _mm256_shuffle_ps::<LOW_PAIRS>(t0, t2);
            let s1 = _mm256_shuffle_ps::<HIGH_PAIRS>(t0, t2);
            let s2 = _mm256_shuffle_ps::<LOW_PAIRS>(t1, t3);
            let s3 = _mm256_shuffle_ps::<HIGH_PAIRS>(t1, t3);
            let s4 = _mm256_shuffle_ps::<LOW_PAIRS>(t4, t6);
            let s5 = _mm256_shuffle_ps::<HIGH_PAIRS>(t4, t6);
            let s6 = _mm256_shuffle_ps::<LOW_PAIRS>(t5, t7);
            let s7 = _mm256_shuffle_ps::<HIGH_PAIRS>(t5, t7);
            let columns = [
                _mm256_permute2f128_ps::<0x20>(s0, s4),
                _mm256_permute2f128_ps::<0x20>(s1, s5),
                _mm256_permute2f128_ps::<0x20>(s2, s6),
                _mm256_permute2f128_ps::<0x20>(s3, s7),
                _mm256_permute2f128_ps::<0x31>(s0, s4),
                _mm256_permute2f128_ps::<0x31>(s1, s5),
                _mm256_permute2f128_ps::<0x31>(s2, s6),
                _mm256_permute2f128_ps::<0x31>(s3, s7),
            ];
            for (c, column) in columns.into_iter().enumerate() {
                let out = &mut dst[dst_row(j0 + c) + i0..][..8];
                // SAFETY: `out` is a slice of 8 floats (bounds-checked just above).
                unsafe { _mm256_storeu_ps(out.as_mut_ptr(), column) };
            }
        }
    }
}
