//! Resident-memory probes from `/proc/self` (Linux): current and peak RSS, and resetting the
//! peak so that a timed loop's own high-water mark can be read; the RSS of a child process and
//! the memory the system has available. Elsewhere they return `None`.

fn status_kib(field: &str) -> Option<u64> {
    proc_kib("/proc/self/status", field)
}

fn proc_kib(file: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Current resident set size in bytes.
pub fn rss_bytes() -> Option<u64> {
    status_kib("VmRSS:").map(|k| k * 1024)
}

/// Peak resident set size (since start or the last [`reset_peak`]) in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    status_kib("VmHWM:").map(|k| k * 1024)
}

/// Resets the peak to the current RSS; `false` where the kernel does not allow it.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Current resident set size of process `pid` in bytes.
pub fn rss_bytes_of(pid: u32) -> Option<u64> {
    proc_kib(&format!("/proc/{pid}/status"), "VmRSS:").map(|k| k * 1024)
}

/// Memory the system could give to a new process without swapping, in bytes.
pub fn available_bytes() -> Option<u64> {
    proc_kib("/proc/meminfo", "MemAvailable:").map(|k| k * 1024)
}
