//! The portable path of every op of this crate: the composition of Candle's own ops that runs
//! on CUDA and Metal devices (and for dtypes the CPU kernels do not handle), chosen on the CPU
//! too inside [`with_portable_ops`], so that tests can check on a machine without a GPU that it
//! computes the same values and derivatives as the CPU kernels.
//!
//! The choice is made per thread, when an op is called; a backward pass built later follows
//! the path its forward pass took (a portable forward pass records only Candle's ops).

use std::cell::Cell;

thread_local! {
    static PORTABLE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with the CPU kernels of this crate (and of the crates that consult
/// [`cpu_kernels_enabled`], such as the trainer's fused Adam update) switched off on this
/// thread: every op takes the path it takes on a GPU. The previous state is restored on return,
/// also when `f` panics.
pub fn with_portable_ops<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            PORTABLE.with(|p| p.set(self.0));
        }
    }
    let _restore = Restore(PORTABLE.with(|p| p.replace(true)));
    f()
}

/// Whether CPU kernels may be used on this thread (false inside [`with_portable_ops`]). Code
/// outside this crate with a CPU fast path of its own checks it beside `device.is_cpu()`.
pub fn cpu_kernels_enabled() -> bool {
    !PORTABLE.with(Cell::get)
}
