//! Runnable examples of the fdsm crates, each a self-contained file to copy from:
//!
//! - `examples/energy_fd_ssm.rs`: your own energy model on 2-D data, trained by FD-SSM;
//! - `examples/energy_checkpoint_resume.rs`: the same with checkpoints, a pause and an exact
//!   resume;
//! - `examples/score_fd_ssmvr.rs`: a score network trained by FD-SSMVR.
//!
//! Run one with `cargo run --release -p fdsm-examples --example energy_fd_ssm`; `cargo test`
//! trains each at a small size and checks what it learned.
