//! `settle_thread_count` sets the thread count Candle's matrix product reads, to the value Candle
//! would have computed itself, turns off the spinning of Candle's idle elementwise workers, makes
//! the calling thread worker 0 of rayon's pool (whose parallel calls, and other threads', still
//! finish), and leaves a user's values alone. One test, so the process's environment changes in
//! order.

use rayon::prelude::*;

use layers::cpu::{settle_thread_count, SPIN_LIMIT_ENV, THREADS_ENV};

#[test]
fn settles_to_candles_own_count_and_keeps_a_users_value() {
    std::env::remove_var(THREADS_ENV);
    std::env::remove_var(SPIN_LIMIT_ENV);
    // Candle's own answer without the variable (parsed from the system each call).
    let candle_default = candle_core::utils::get_num_threads();
    let n = settle_thread_count();
    assert_eq!(n, candle_default);
    assert_eq!(std::env::var(THREADS_ENV).unwrap(), n.to_string());
    assert_eq!(candle_core::utils::get_num_threads(), n);
    assert_eq!(std::env::var(SPIN_LIMIT_ENV).unwrap(), "0");
    // The pool: this thread is its worker 0 when there are two threads or more.
    assert_eq!(rayon::current_num_threads(), n);
    assert_eq!(rayon::current_thread_index(), (n >= 2).then_some(0));
    // Parallel work from this thread and from a thread outside the pool (served by the other
    // workers while this one waits) gives the closed form sum of 0..m.
    let m = 1_000_000usize;
    let sum = || (0..m).into_par_iter().with_min_len(1000).sum::<usize>();
    assert_eq!(sum(), m * (m - 1) / 2);
    let other = std::thread::spawn(move || {
        assert_eq!(rayon::current_thread_index(), None);
        (0..m).into_par_iter().with_min_len(1000).sum::<usize>()
    });
    assert_eq!(other.join().unwrap(), m * (m - 1) / 2);
    // Values the user set are kept.
    std::env::set_var(SPIN_LIMIT_ENV, "1000");
    std::env::set_var(THREADS_ENV, "3");
    assert_eq!(settle_thread_count(), 3);
    assert_eq!(candle_core::utils::get_num_threads(), 3);
    assert_eq!(std::env::var(SPIN_LIMIT_ENV).unwrap(), "1000");
    std::env::set_var(THREADS_ENV, "0");
    assert_eq!(settle_thread_count(), candle_default, "0 is not a count");
}
