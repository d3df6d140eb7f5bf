//! Output buffers of the custom CPU kernels, zero-filled by the worker that then writes them.
//!
//! `vec![0.0; n]` followed by a parallel loop zero-fills the whole buffer on the calling
//! thread first, while the worker threads wait: measured on the FD-SSM step of the step
//! benchmark, such serial `memset`s of activation-sized outputs took about 60 ms of a 1.4 s
//! step on one core of two. Here each chunk is zeroed by the thread that fills it, right
//! before it does (the chunk is then already in that core's cache), so the zeroing runs in
//! parallel and in cache rather than as a serial pass over the whole buffer. Kernels that write
//! every element of their chunk in order skip the zeroing ([`par_build_in_order`]): they write
//! through a [`ChunkWriter`], which checks that the whole chunk was written before the buffer
//! is handed out. The unsafe code of the kernels' buffers is in this file only.

use std::mem::MaybeUninit;
use std::ops::Range;

use rayon::prelude::*;

/// A vector of `len` elements made of chunks of `chunk` elements (the last may be shorter):
/// chunk `i` is set to zeros and then handed to `fill(i, chunk)` on a rayon worker, with at
/// least `min_chunks` chunks per task.
///
/// # Panics
/// Propagates a panic of `fill` (the partly built buffer is discarded).
pub(crate) fn par_build<T, F>(len: usize, chunk: usize, min_chunks: usize, fill: F) -> Vec<T>
where
    T: Copy + Default + Send + Sync,
    F: Fn(usize, &mut [T]) + Sync + Send,
{
    par_build_in_order(len, chunk, min_chunks, |i, w| {
        w.fill_rest(T::default());
        fill(i, w.written_mut());
    })
}

/// A chunk of a buffer under construction, written front to back: what has been written can be
/// read back and changed, the rest cannot be reached.
pub struct ChunkWriter<'a, T> {
    slots: &'a mut [MaybeUninit<T>],
    written: usize,
}

impl<T: Copy> ChunkWriter<'_, T> {
    /// The chunk's length.
    #[inline(always)]
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Appends the values of `values` until the chunk is full (values beyond it are not drawn).
    #[inline(always)]
    pub fn extend(&mut self, values: impl IntoIterator<Item = T>) {
        let mut n = 0;
        for (slot, v) in self.slots[self.written..].iter_mut().zip(values) {
            slot.write(v);
            n += 1;
        }
        self.written += n;
    }

    /// Sets every element not written yet to `value` (a loop the compiler turns into a fill).
    #[inline(always)]
    pub fn fill_rest(&mut self, value: T) {
        for slot in &mut self.slots[self.written..] {
            slot.write(value);
        }
        self.written = self.slots.len();
    }

    /// Appends `f(s)` for every element `s` of `src` (as far as the chunk holds them): a loop
    /// over two slices, whose trip count the compiler knows, so it vectorises.
    #[inline(always)]
    pub fn extend_map<S: Copy>(&mut self, src: &[S], f: impl Fn(S) -> T) {
        let rest = &mut self.slots[self.written..];
        let n = rest.len().min(src.len());
        for (slot, &s) in rest[..n].iter_mut().zip(&src[..n]) {
            slot.write(f(s));
        }
        self.written += n;
    }

    /// Appends `f(a, b)` for the pairs of elements of `a` and `b` (as far as the chunk and the
    /// shorter of the two go), vectorised as [`ChunkWriter::extend_map`].
    #[inline(always)]
    pub fn extend_map2<S: Copy>(&mut self, a: &[S], b: &[S], f: impl Fn(S, S) -> T) {
        let rest = &mut self.slots[self.written..];
        let n = rest.len().min(a.len()).min(b.len());
        for ((slot, &u), &v) in rest[..n].iter_mut().zip(&a[..n]).zip(&b[..n]) {
            slot.write(f(u, v));
        }
        self.written += n;
    }

    /// Appends `f(a, b, c)` for the triples of elements of `a`, `b` and `c` (as far as the
    /// chunk and the shortest of the three go), vectorised as [`ChunkWriter::extend_map`].
    #[inline(always)]
    pub fn extend_map3<S: Copy>(&mut self, a: &[S], b: &[S], c: &[S], f: impl Fn(S, S, S) -> T) {
        let rest = &mut self.slots[self.written..];
        let n = rest.len().min(a.len()).min(b.len()).min(c.len());
        for (((slot, &u), &v), &w) in rest[..n].iter_mut().zip(&a[..n]).zip(&b[..n]).zip(&c[..n]) {
            slot.write(f(u, v, w));
        }
        self.written += n;
    }

    /// Appends a copy of the written elements `range`.
    ///
    /// # Panics
    /// `range` reaches past what has been written, or the copy past the chunk's end.
    pub fn repeat_written(&mut self, range: Range<usize>) {
        assert!(range.start <= range.end && range.end <= self.written);
        let (done, rest) = self.slots.split_at_mut(self.written);
        let n = range.len();
        for (slot, v) in rest[..n].iter_mut().zip(&done[range]) {
            // SAFETY: `v` lies in the first `written` elements, all written.
            #[allow(unsafe_code)]
            slot.write(unsafe { v.assume_init() });
        }
        self.written += n;
    }

    /// The elements written so far.
    pub fn written_mut(&mut self) -> &mut [T] {
        let done = &mut self.slots[..self.written];
        // SAFETY: the first `written` elements are initialised, and `MaybeUninit<T>` has the
        // layout of `T`.
        #[allow(unsafe_code)]
        unsafe {
            &mut *(std::ptr::from_mut::<[MaybeUninit<T>]>(done) as *mut [T])
        }
    }
}

/// A vector of `len` elements made of chunks of `chunk` elements (the last may be shorter),
/// chunk `i` written in order by `fill(i, writer)` on a rayon worker, with at least
/// `min_chunks` chunks per task. No zeroing pass: the zero-fills of the zeroing variant were about 6%
/// of an FD-SSM step, most of it in the elementwise kernels.
///
/// # Panics
/// A `fill` that leaves part of its chunk unwritten (a kernel bug, caught before the buffer is
/// used), and a panic of `fill` (the partly built buffer is discarded).
#[allow(unsafe_code)]
pub fn par_build_in_order<T, F>(len: usize, chunk: usize, min_chunks: usize, fill: F) -> Vec<T>
where
    T: Copy + Send + Sync,
    F: Fn(usize, &mut ChunkWriter<'_, T>) + Sync + Send,
{
    let mut out: Vec<T> = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .with_min_len(min_chunks.max(1))
        .for_each(|(i, part)| {
            let mut w = ChunkWriter {
                slots: part,
                written: 0,
            };
            fill(i, &mut w);
            assert_eq!(
                w.written,
                w.slots.len(),
                "a kernel wrote {} of the {} elements of chunk {i}",
                w.written,
                w.slots.len()
            );
        });
    // SAFETY: the chunks cover the first `len` elements of the allocation, and each was checked
    // to be written in full (a panic unwinds past this point with the length still 0).
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
    use super::{par_build, par_build_in_order};

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

    /// Every chunk index and length as `par_chunks_mut` would give them, every element written,
    /// copies of written ranges included.
    #[test]
    fn in_order_chunks_are_indexed_and_complete() {
        for (len, chunk) in [(0, 3), (1, 1), (10, 3), (4096, 7), (4096, 4096), (5, 100)] {
            let built: Vec<u64> = par_build_in_order(len, chunk, 2, |i, w| {
                let n = w.capacity();
                let half = n / 2;
                w.extend((0..half).map(|j| (i * chunk + j) as u64 + 1));
                w.extend((half..n).map(|j| (i * chunk + j) as u64 + 1));
            });
            let want: Vec<u64> = (1..=len as u64).collect();
            assert_eq!(built, want, "len {len}, chunk {chunk}");
        }
        let doubled: Vec<u32> = par_build_in_order(8, 4, 1, |i, w| {
            w.extend([i as u32, i as u32 + 10]);
            w.repeat_written(0..2);
        });
        assert_eq!(doubled, [0, 10, 0, 10, 1, 11, 1, 11]);
    }

    /// A fill that leaves elements unwritten is caught, not handed out.
    #[test]
    fn an_incomplete_chunk_is_refused() {
        let caught = std::panic::catch_unwind(|| {
            par_build_in_order::<f32, _>(10, 5, 1, |i, w| {
                if i == 1 {
                    w.extend([1.0; 4]);
                } else {
                    w.extend([1.0; 5]);
                }
            })
        });
        let msg = caught.expect_err("an unwritten element was handed out");
        let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("4 of the 5 elements of chunk 1"), "{msg}");
    }
}
