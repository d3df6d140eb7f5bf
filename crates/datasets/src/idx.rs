//! The IDX format of MNIST and Fashion-MNIST (LeCun et al.): a 4-byte magic `00 00 <type>
//! <ndims>`, `ndims` big-endian `u32` sizes, then the data. Only unsigned bytes (type `0x08`)
//! occur in these datasets.

use std::path::Path;

use crate::error::{format_err, Result};

/// A parsed IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// The sizes, outermost first (e.g. `[60000, 28, 28]`).
    pub dims: Vec<usize>,
    /// The values in row-major order.
    pub data: Vec<u8>,
}

/// Parses an uncompressed IDX file of unsigned bytes.
///
/// # Errors
/// [`crate::DataError::Format`] for a wrong magic, an unsupported element type, a bad
/// dimension count, or a data length that does not match the header.
pub fn parse_idx(bytes: &[u8], path: &Path) -> Result<IdxArray> {
    if bytes.len() < 4 {
        return Err(format_err(
            path,
            format!("IDX file of {} bytes has no header", bytes.len()),
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(format_err(
            path,
            format!(
                "wrong IDX magic {:02x} {:02x} (expected 00 00): not an IDX file",
                bytes[0], bytes[1]
            ),
        ));
    }
    if bytes[2] != 0x08 {
        return Err(format_err(
            path,
            format!(
                "IDX element type 0x{:02x} is not supported (only 0x08, unsigned byte)",
                bytes[2]
            ),
        ));
    }
    let ndims = bytes[3] as usize;
    if !(1..=4).contains(&ndims) {
        return Err(format_err(
            path,
            format!("IDX header declares {ndims} dimensions (expected 1 to 4)"),
        ));
    }
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(format_err(path, "IDX header is truncated"));
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|i| {
            u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize
        })
        .collect();
    let expected = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let found = bytes.len() - header;
    match expected {
        Some(n) if n == found => Ok(IdxArray {
            dims,
            data: bytes[header..].to_vec(),
        }),
        Some(n) => Err(format_err(
            path,
            format!("IDX dimensions {dims:?} need {n} data bytes, the file has {found}"),
        )),
        None => Err(format_err(
            path,
            format!("IDX dimensions {dims:?} overflow"),
        )),
    }
}
