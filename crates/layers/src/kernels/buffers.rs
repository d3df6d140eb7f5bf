//! Output buffers of the custom CPU kernels, zero-filled by the worker that then writes them.
//!
//! `vec![0.0; n]` followed by a parallel loop zero-fills the whole buffer on the calling
//! thread first, while the worker threads wait: measured on the FD-SSM step of the step
//! benchmark, such serial `memset`s of activation-sized outputs took about 60 ms of a 1.4 s
//! step on one core of two. Here each chunk is zeroed by the thread that fills it, right
//! before it does (the chunk is then already in that core's cache), so the zeroing runs in
//! parallel and in cache rather than as a serial pass over the whole buffer. Kernels that write
//! every element of their chunk skip the zeroing ([`par_build_uninit`]).

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// A vector of `len` elements made of chunks of `chunk` elements (the last may be shorter):
/// chunk `i` is set to zeros and then handed to `fill(i, chunk)` on a rayon worker, with at
/// least `min_chunks` chunks per task.
///
/// # Panics
/// Propagates a panic of `fill` (the partly built buffer is discarded).
#[allow(unsafe_code)]
pub(crate) fn par_build<T, F>(len: usize, chunk: usize, min_chunks: usize, fill: F) -> Vec<T>
where
    T: Copy + Default + Send + Sync,
    F: Fn(usize, &mut [T]) + Sync + Send,
{
    // SAFETY: every element of a chunk is set to zero before `fill` sees it.
    unsafe {
        par_build_uninit(len, chunk, min_chunks, |i, part| {
            for v in part.iter_mut() {
                v.write(T::default());
            }
            // SAFETY: every element of `part` was initialised just above, and
            // `MaybeUninit<T>` has the layout of `T`.
            let part = &mut *(std::ptr::from_mut::<[MaybeUninit<T>]>(part) as *mut [T]);
            fill(i, part);
        })
    }
}

/// Like [`par_build`] for fills that write every element of their chunk: chunk `i` is handed
/// to `fill(i, chunk)` uninitialised, which saves the zeroing pass (measured: the zero-fills
/// of `par_build` were about 6% of an FD-SSM step, most of it in the elementwise kernels).
///
/// # Safety
/// `fill` must initialise every element of the chunk it is given (typically by writing each
/// element once in a loop over the whole chunk); the vector is returned as initialised.
///
/// # Panics
/// Propagates a panic of `fill` (the partly built buffer is discarded).
#[allow(unsafe_code)]
pub(crate) unsafe fn par_build_uninit<T, F>(
    len: usize,
    chunk: usize,
    min_chunks: usize,
    fill: F,
) -> Vec<T>
where
    T: Copy + Send + Sync,
    F: Fn(usize, &mut [MaybeUninit<T>]) + Sync + Send,
{
    let mut out: Vec<T> = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .with_min_len(min_chunks.max(1))
        .for_each(|(i, part)| fill(i, part));
    // SAFETY: the chunks cover the first `len` elements of the allocation, and the caller
    // guarantees that `fill` initialised every element of each (a panic in `fill` unwinds past
    // this point with the length still 0).
    unsafe { out.set_len(len) };
    out
}

/// Elements zeroed per task by [`par_zeroed`]: large enough that task overhead is negligible.
const ZERO_CHUNK: usize = 1 << 16;

/// `len` zeros, written in parallel (for buffers that a multithreaded matrix product fills).
pub(crate) fn par_zeroed<T: Copy + Default + Send + Sync>(len: usize) -> Vec<T> {
    par_build(len, ZERO_CHUNK, 1, |_, _| {})
}

#[cfg(test)]
mod tests {
    use super::{par_build, par_build_uninit};

    /// Every chunk index and length as `par_chunks_mut` would give them, and zeros where the
    /// fill leaves elements untouched.
    #[test]
    fn chunks_are_indexed_zeroed_and_complete() {
        for (len, chunk) in [(0, 3), (1, 1), (10, 3), (4096, 7), (4096, 4096), (5, 100)] {
            let built: Vec<u64> = par_build(len, chunk, 2, |i, part| {
                let n = part.len();
                for (j, v) in part.iter_mut().enumerate().take(n - 1) {
                    assert_eq!(*v, 0, "chunk {i} not zeroed");
                    *v = (i * chunk + j) as u64 + 1;
                }
            });
            assert_eq!(built.len(), len);
            for (k, &v) in built.iter().enumerate() {
                let last_of_chunk = k % chunk == chunk - 1 || k == len - 1;
                let want = if last_of_chunk { 0 } else { k as u64 + 1 };
                assert_eq!(v, want, "len {len}, chunk {chunk}, element {k}");
            }
        }
    }

    /// Every chunk index and length as `par_chunks_mut` would give them, every element written.
    #[test]
    #[allow(unsafe_code)]
    fn uninitialised_chunks_are_indexed_and_complete() {
        for (len, chunk) in [(0, 3), (1, 1), (10, 3), (4096, 7), (4096, 4096), (5, 100)] {
            // SAFETY: the fill writes every element of its chunk.
            let built: Vec<u64> = unsafe {
                par_build_uninit(len, chunk, 2, |i, part| {
                    for (j, v) in part.iter_mut().enumerate() {
                        v.write((i * chunk + j) as u64 + 1);
                    }
                })
            };
            let want: Vec<u64> = (1..=len as u64).collect();
            assert_eq!(built, want, "len {len}, chunk {chunk}");
        }
    }
}
