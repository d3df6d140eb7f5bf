//! Strict gzip decompression with a size cap: truncated streams, bad CRCs and trailing garbage
//! become [`DataError::Gzip`] / [`DataError::Format`] instead of silently short data.

use std::io::Read;
use std::path::Path;

use flate2::bufread::GzDecoder;

use crate::error::{format_err, DataError, Result};

/// Decompressed data above this size is rejected (the largest file here inflates to 47 MB).
pub const MAX_INFLATED: u64 = 1 << 30;

/// Decompresses a complete gzip file held in memory.
///
/// # Errors
/// [`DataError::Gzip`] for a corrupt or truncated stream, [`DataError::Format`] when the
/// output would exceed [`MAX_INFLATED`] or bytes follow the gzip member.
pub fn gunzip(bytes: &[u8], path: &Path) -> Result<Vec<u8>> {
    gunzip_limited(bytes, path, MAX_INFLATED, "the size limit")
}

/// Decompresses a gzipped IDX file, inflating no more than the size its header declares: a
/// file whose data runs past it (a decompression bomb, or a wrong header) is rejected after
/// at most that many bytes.
///
/// # Errors
/// As [`gunzip`], and [`DataError::Format`] for a header that is truncated or declares an
/// impossible size.
pub fn gunzip_idx(bytes: &[u8], path: &Path) -> Result<Vec<u8>> {
    let head = gunzip_prefix(bytes, path, 4)?;
    let ndims = head.get(3).copied().unwrap_or(0) as usize;
    if !(1..=4).contains(&ndims) {
        return Err(format_err(
            path,
            format!("IDX header declares {ndims} dimensions (expected 1 to 4)"),
        ));
    }
    let header = 4 + 4 * ndims;
    let head = gunzip_prefix(bytes, path, header)?;
    let data = head[4..header]
        .chunks_exact(4)
        .map(|d| u64::from(u32::from_be_bytes([d[0], d[1], d[2], d[3]])))
        .try_fold(1u64, u64::checked_mul);
    let limit = data
        .and_then(|n| n.checked_add(header as u64))
        .filter(|&n| n <= MAX_INFLATED)
        .ok_or_else(|| {
            format_err(
                path,
                format!("the IDX header declares more than {MAX_INFLATED} bytes"),
            )
        })?;
    gunzip_limited(bytes, path, limit, "the size its IDX header declares")
}

/// The first `n` decompressed bytes.
fn gunzip_prefix(bytes: &[u8], path: &Path, n: usize) -> Result<Vec<u8>> {
    check_magic(bytes, path)?;
    let mut out = Vec::with_capacity(n);
    GzDecoder::new(bytes)
        .take(n as u64)
        .read_to_end(&mut out)
        .map_err(|source| DataError::Gzip {
            path: path.to_path_buf(),
            source,
        })?;
    if out.len() < n {
        return Err(format_err(path, "the IDX header is truncated"));
    }
    Ok(out)
}

fn check_magic(bytes: &[u8], path: &Path) -> Result<()> {
    if bytes.len() < 18 || bytes[0] != 0x1f || bytes[1] != 0x8b {
        return Err(format_err(
            path,
            "not a gzip file (missing the 1f 8b magic bytes or shorter than a gzip header)",
        ));
    }
    Ok(())
}

/// Decompresses at most `max` bytes; more is an error naming `what` the limit is.
fn gunzip_limited(bytes: &[u8], path: &Path, max: u64, what: &str) -> Result<Vec<u8>> {
    check_magic(bytes, path)?;
    let mut decoder = GzDecoder::new(bytes);
    let mut out = Vec::new();
    let read = (&mut decoder)
        .take(max + 1)
        .read_to_end(&mut out)
        .map_err(|source| DataError::Gzip {
            path: path.to_path_buf(),
            source,
        })?;
    if read as u64 > max {
        return Err(format_err(
            path,
            format!("inflates to more than {max} bytes, {what}"),
        ));
    }
    let rest = decoder.into_inner();
    if !rest.is_empty() {
        return Err(format_err(
            path,
            format!("{} unexpected bytes after the gzip stream", rest.len()),
        ));
    }
    Ok(out)
}
