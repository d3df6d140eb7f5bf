//! `settle_thread_count` sets the thread count Candle's matrix product reads, to the value Candle
//! would have computed itself, and leaves a user's value alone. One test per process state, so
//! both run in this file's process in order.

use layers::cpu::{settle_thread_count, THREADS_ENV};

#[test]
fn settles_to_candles_own_count_and_keeps_a_users_value() {
    std::env::remove_var(THREADS_ENV);
    // Candle's own answer without the variable (parsed from the system each call).
    let candle_default = candle_core::utils::get_num_threads();
    let n = settle_thread_count();
    assert_eq!(n, candle_default);
    assert_eq!(std::env::var(THREADS_ENV).unwrap(), n.to_string());
    assert_eq!(candle_core::utils::get_num_threads(), n);
    // A value the user set is kept.
    std::env::set_var(THREADS_ENV, "3");
    assert_eq!(settle_thread_count(), 3);
    assert_eq!(candle_core::utils::get_num_threads(), 3);
    std::env::set_var(THREADS_ENV, "0");
    assert_eq!(settle_thread_count(), candle_default, "0 is not a count");
}
