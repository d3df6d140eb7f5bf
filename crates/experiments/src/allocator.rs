//! Tuning of the C allocator for training processes: freed tensor buffers are kept for reuse
//! instead of being handed back to the kernel and faulted in again, page by page, on the next
//! allocation.
//!
//! A training step allocates and frees hundreds of tensors of one to twenty megabytes. glibc
//! serves such sizes with fresh `mmap` regions and returns them on `free`, so every new tensor
//! costs a page fault and a page clear per 4 KiB: measured on the Table 2 ResNet, 1.5 million
//! faults and a fifth of an FD-SSM step. Raising the mmap threshold to its maximum (32 MiB)
//! and the trim threshold keeps such buffers in the heap, where the next step reuses them
//! (see `docs/performance.md`).

/// Environment variable that, when set to `1`, leaves the allocator at its defaults.
pub const OPT_OUT_VAR: &str = "FDSM_DEFAULT_MALLOC";

/// Applies the tuning on glibc targets unless [`OPT_OUT_VAR`]` = 1`; returns whether it was
/// applied. Call it first thing in `main`, before threads start. Elsewhere (musl, macOS,
/// Windows) it does nothing: those allocators cache freed memory on their own terms.
pub fn tune_for_training() -> bool {
    if std::env::var(OPT_OUT_VAR).is_ok_and(|v| v == "1") {
        return false;
    }
    apply()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn apply() -> bool {
    /// glibc's largest mmap threshold on 64-bit targets (`DEFAULT_MMAP_THRESHOLD_MAX`).
    const MMAP_THRESHOLD: libc::c_int = 32 << 20;
    /// Free memory at the top of the heap kept before trimming.
    const TRIM_THRESHOLD: libc::c_int = 1 << 30;
    /// Extra memory requested whenever the heap grows, so it grows rarely.
    const TOP_PAD: libc::c_int = 256 << 20;
    // SAFETY: `mallopt` only changes allocator parameters; glibc documents these three as
    // settable at any time, and every value is within its accepted range.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
            && libc::mallopt(libc::M_TOP_PAD, TOP_PAD) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() -> bool {
    false
}

/// Hands the heap's free memory back to the kernel; returns whether any was released.
///
/// With the tuning above the heap keeps what a process frees, so buffers dropped while a data
/// set is decoded and padded (hundreds of megabytes for MNIST) would stay resident through
/// training and be counted in every memory measurement taken after them. Call it once set-up
/// is done and before measuring. Elsewhere than glibc it does nothing and returns `false`.
pub fn release_free_memory() -> bool {
    trim()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() -> bool {
    // SAFETY: `malloc_trim` only returns free pages to the kernel; it is thread-safe and
    // leaves every live allocation untouched.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}

#[cfg(test)]
mod tests {
    /// glibc rejects out-of-range values by returning 0; every value here must be accepted.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_accepts_every_setting() {
        assert!(super::apply());
    }
}
