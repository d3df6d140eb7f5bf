//! Building blocks for hand-written CPU loops outside this crate's ops (an optimiser's update,
//! a custom elementwise pass): [`vectorised`] runs a closure compiled for the widest vector unit
//! of the CPU (AVX-512, AVX2, else the baseline), and [`par_build_in_order`] fills a new buffer
//! in parallel chunks through a [`ChunkWriter`] that checks every element was written, with no
//! zeroing pass and no `unsafe` at the call site. [`settle_thread_count`] removes a per-call
//! cost of Candle's CPU matrix product.

pub use crate::kernels::buffers::{par_build_in_order, ChunkWriter};
pub use crate::kernels::simd::{vectorised, Kernel};

/// The environment variable rayon and Candle read for their thread count.
pub const THREADS_ENV: &str = "RAYON_NUM_THREADS";

/// Fixes the CPU thread count for the process: when `RAYON_NUM_THREADS` is unset, sets it to the
/// number of physical cores (the count Candle's matrix product uses by default), and returns the
/// count in force.
///
/// Why: without the variable, Candle's CPU matrix product recomputes its thread count at every
/// call from `/proc/cpuinfo` (`num_cpus::get_physical`), about 50 µs per product on Linux, which
/// is a quarter of a small dense network's training step (measured: the 784-512-512-1 MLP's DSM
/// step 9.3 -> 7.1 ms). With it set, the count is read from the environment.
///
/// Call it first thing in `main`, before any thread runs (it changes the environment, and
/// rayon's global pool takes its size from the variable when it starts: on a machine with
/// hyper-threading the pool then has one thread per physical core instead of one per logical
/// core). A value the user set is left alone.
pub fn settle_thread_count() -> usize {
    if let Some(n) = std::env::var(THREADS_ENV)
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
    {
        return n;
    }
    let n = num_cpus::get_physical().max(1);
    std::env::set_var(THREADS_ENV, n.to_string());
    n
}
