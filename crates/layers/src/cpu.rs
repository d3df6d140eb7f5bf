//! Building blocks for hand-written CPU loops outside this crate's ops (an optimiser's update,
//! a custom elementwise pass): [`vectorised`] runs a closure compiled for the widest vector unit
//! of the CPU (AVX-512, AVX2, else the baseline), and [`par_build_in_order`] fills a new buffer
//! in parallel chunks through a [`ChunkWriter`] that checks every element was written, with no
//! zeroing pass and no `unsafe` at the call site.

pub use crate::kernels::buffers::{par_build_in_order, ChunkWriter};
pub use crate::kernels::simd::{vectorised, Kernel};
