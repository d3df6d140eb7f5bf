//! Building blocks for hand-written CPU loops outside this crate's ops (an optimiser's update,
//! a custom elementwise pass): [`vectorised`] runs a closure compiled for the widest vector unit
//! of the CPU (AVX-512, AVX2, else the baseline), and [`par_build_in_order`] fills a new buffer
//! in parallel chunks through a [`ChunkWriter`] that checks every element was written, with no
//! zeroing pass and no `unsafe` at the call site. [`settle_thread_count`] removes a per-call
//! cost of Candle's CPU matrix product, keeps Candle's idle elementwise workers off the cores and
//! makes the calling thread a worker of rayon's pool.

pub use crate::kernels::buffers::{par_build_in_order, ChunkWriter};
pub use crate::kernels::simd::{vectorised, Kernel};

/// The environment variable rayon and Candle read for their thread count.
pub const THREADS_ENV: &str = "RAYON_NUM_THREADS";

/// The environment variable Candle reads for how long its elementwise workers spin after a task
/// before they sleep (25,000 spins by default).
pub const SPIN_LIMIT_ENV: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";

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
///
/// It also sets [`SPIN_LIMIT_ENV`] to 0 when unset: Candle's elementwise workers then sleep as
/// soon as a task ends instead of spinning on a core that rayon's matrix-product workers need
/// (Candle starts that pool on first use, so the setting must come before it). Measured on a
/// 2-core CPU, three alternated rounds of the 784-512-512-1 MLP step (ms, default spinning
/// against none): mle-cost 4.4-4.7 against 3.9-4.3, DSM 10.0-10.5 against 8.5-9.5, SSM
/// 21.6-22.5 against 19.1-20.8, FD-DSM 7.9-8.4 against 6.6-7.7, FD-SSM 9.4-12.3 against
/// 7.8-8.4; the ResNet step was unchanged within its noise (docs/performance.md).
///
/// Last, with two or more threads, it builds rayon's global pool with the calling thread as
/// its worker 0 (and `n - 1` threads besides), unless the pool already exists. The parallel
/// loops and matrix products the calling thread starts then run as a worker's fork-join: it
/// takes part in the work and hands halves to the other worker directly, where a thread outside
/// the pool queues each parallel call, sleeps until a worker has run it and is woken again, for
/// every op of a step. Measured on a 2-core CPU, three alternated rounds (ms per step, outside
/// against inside): the MLP's DSM 8.0-13.4 against 7.5-7.6 and SSM 17.8-23.0 against 16.2-16.9,
/// the ResNet's DSM 625-661 against 523-534, the deep EBLVM's BiMDSM 221-226 against 165-169
/// (docs/performance.md). Other threads' parallel calls are served by the remaining workers, so
/// a single-threaded count leaves the pool as rayon builds it.
pub fn settle_thread_count() -> usize {
    if std::env::var_os(SPIN_LIMIT_ENV).is_none() {
        std::env::set_var(SPIN_LIMIT_ENV, "0");
    }
    let n = match std::env::var(THREADS_ENV)
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
    {
        Some(n) => n,
        None => {
            let n = num_cpus::get_physical().max(1);
            std::env::set_var(THREADS_ENV, n.to_string());
            n
        }
    };
    if n >= 2 {
        // An error means the pool exists already (built by the user or started by an earlier
        // parallel call): it is kept as it is.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .use_current_thread()
            .build_global();
    }
    n
}
