//! Runtime selection of the CPU's vector unit for the hand-written loops of the custom ops
//! (`fused.rs`, `winograd.rs`): the crate is compiled for the x86-64 baseline (4-wide SSE2),
//! so hot loops are re-compiled for AVX-512 or AVX2 and picked when the CPU has them.

/// A piece of work to compile once per vector unit. Implementations mark [`Kernel::run`]
/// `#[inline(always)]`, so that it is compiled into each of [`vectorised`]'s per-CPU copies
/// whatever its size (a plain closure is only inlined there when the compiler finds it
/// small).
pub(super) trait Kernel {
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
pub(super) fn vectorised<K: Kernel>(body: K) -> K::Output {
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
