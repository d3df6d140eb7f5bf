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
    if bytes.len() < 18 || bytes[0] != 0x1f || bytes[1] != 0x8b {
        return Err(format_err(
            path,
            "not a gzip file (missing the 1f 8b magic bytes or shorter than a gzip header)",
        ));
    }
    let mut decoder = GzDecoder::new(bytes);
    let mut out = Vec::new();
    let read = (&mut decoder)
        .take(MAX_INFLATED + 1)
        .read_to_end(&mut out)
        .map_err(|source| DataError::Gzip {
            path: path.to_path_buf(),
            source,
        })?;
    if read as u64 > MAX_INFLATED {
        return Err(format_err(
            path,
            format!("inflates to more than {MAX_INFLATED} bytes"),
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
