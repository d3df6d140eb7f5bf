//! A reader for MATLAB level-5 MAT-files (the format of Frey face and SVHN): the 128-byte
//! header, tagged data elements (also the small-element form), `miCOMPRESSED` (zlib) elements
//! and numeric `miMATRIX` arrays. Cell, struct, sparse and complex arrays are skipped.
//! Format: "MAT-File Format", The MathWorks, 1999-2023.

use std::io::Read;
use std::path::Path;

use flate2::read::ZlibDecoder;

use crate::error::{format_err, DataError, Result};
use crate::gzip::MAX_INFLATED;

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;

/// The values of a numeric array: raw bytes when stored as `uint8`, otherwise converted to `f64`.
#[derive(Debug, Clone, PartialEq)]
pub enum MatData {
    /// Stored as unsigned bytes (images).
    U8(Vec<u8>),
    /// Any other numeric storage, converted.
    F64(Vec<f64>),
}

impl MatData {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            MatData::U8(v) => v.len(),
            MatData::F64(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values as `f64`.
    pub fn to_f64(&self) -> Vec<f64> {
        match self {
            MatData::U8(v) => v.iter().map(|&b| f64::from(b)).collect(),
            MatData::F64(v) => v.clone(),
        }
    }
}

/// A numeric array of a MAT-file, in MATLAB's column-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct MatArray {
    /// The variable name.
    pub name: String,
    /// The dimensions (at least two, MATLAB style).
    pub dims: Vec<usize>,
    /// The real part.
    pub data: MatData,
}

/// Parses every numeric array of a level-5 MAT-file.
///
/// # Errors
/// [`DataError::Format`] for a missing or wrong header, a big-endian file with a bad endian
/// indicator, element sizes running past the end, corrupt compressed elements, or an array
/// whose data length does not match its dimensions.
pub fn parse_mat(bytes: &[u8], path: &Path) -> Result<Vec<MatArray>> {
    if bytes.len() < 128 {
        return Err(format_err(
            path,
            format!(
                "{} bytes is too short for a MAT-file header (128 bytes)",
                bytes.len()
            ),
        ));
    }
    if !bytes.starts_with(b"MATLAB 5.0 MAT-file") {
        let shown: String = bytes[..19]
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        return Err(format_err(path, format!("not a MATLAB level-5 MAT-file: header starts with {shown:?} (version 7.3 HDF5 files are not supported)")));
    }
    let big_endian = match &bytes[126..128] {
        b"IM" => false,
        b"MI" => true,
        other => {
            return Err(format_err(
                path,
                format!("bad MAT endian indicator {other:?} (expected \"IM\" or \"MI\")"),
            ))
        }
    };
    let mut out = Vec::new();
    parse_elements(&bytes[128..], big_endian, path, &mut out, 0)?;
    Ok(out)
}

struct Reader<'a> {
    bytes: &'a [u8],
    big_endian: bool,
}

impl Reader<'_> {
    fn u32_at(&self, at: usize) -> u32 {
        let b: [u8; 4] = self.bytes[at..at + 4].try_into().expect("4 bytes");
        if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }
}

/// One tagged element: its type and payload.
fn next_element<'a>(r: &Reader<'a>, pos: usize, path: &Path) -> Result<(u32, &'a [u8], usize)> {
    if pos + 8 > r.bytes.len() {
        return Err(format_err(
            path,
            "MAT data element tag runs past the end of the file",
        ));
    }
    let first = r.u32_at(pos);
    if first >> 16 != 0 {
        // Small data element: size in the upper 16 bits, at most 4 bytes of data in the tag.
        let (ty, n) = (first & 0xffff, (first >> 16) as usize);
        if n > 4 {
            return Err(format_err(
                path,
                format!("small MAT element claims {n} bytes (at most 4)"),
            ));
        }
        return Ok((ty, &r.bytes[pos + 4..pos + 4 + n], pos + 8));
    }
    let n = r.u32_at(pos + 4) as usize;
    let start = pos + 8;
    let end = start
        .checked_add(n)
        .filter(|&e| e <= r.bytes.len())
        .ok_or_else(|| {
            format_err(
                path,
                format!("MAT element of {n} bytes at offset {pos} runs past the end of the file"),
            )
        })?;
    let next = if first == MI_COMPRESSED {
        end
    } else {
        end.div_ceil(8) * 8
    };
    Ok((first, &r.bytes[start..end], next.min(r.bytes.len())))
}

fn parse_elements(
    bytes: &[u8],
    big_endian: bool,
    path: &Path,
    out: &mut Vec<MatArray>,
    depth: u32,
) -> Result<()> {
    let r = Reader { bytes, big_endian };
    let mut pos = 0;
    while pos < bytes.len() {
        if bytes.len() - pos < 8 && bytes[pos..].iter().all(|&b| b == 0) {
            break; // padding at the end
        }
        let (ty, payload, next) = next_element(&r, pos, path)?;
        match ty {
            MI_COMPRESSED => {
                if depth > 0 {
                    return Err(format_err(path, "nested compressed MAT elements"));
                }
                let mut inflated = Vec::new();
                ZlibDecoder::new(payload)
                    .take(MAX_INFLATED + 1)
                    .read_to_end(&mut inflated)
                    .map_err(|source| DataError::Gzip {
                        path: path.to_path_buf(),
                        source,
                    })?;
                if inflated.len() as u64 > MAX_INFLATED {
                    return Err(format_err(
                        path,
                        "compressed MAT element inflates past the size limit",
                    ));
                }
                parse_elements(&inflated, big_endian, path, out, depth + 1)?;
            }
            MI_MATRIX => {
                if let Some(array) = parse_matrix(payload, big_endian, path)? {
                    out.push(array);
                }
            }
            _ => {} // other top-level elements carry no variables
        }
        pos = next;
    }
    Ok(())
}

fn parse_matrix(payload: &[u8], big_endian: bool, path: &Path) -> Result<Option<MatArray>> {
    if payload.is_empty() {
        return Ok(None);
    }
    let r = Reader {
        bytes: payload,
        big_endian,
    };
    let (ty, flags, pos) = next_element(&r, 0, path)?;
    if ty != MI_UINT32 || flags.len() < 8 {
        return Err(format_err(
            path,
            "MAT array without its array-flags subelement",
        ));
    }
    let flag_word = Reader {
        bytes: flags,
        big_endian,
    }
    .u32_at(0);
    let class = flag_word & 0xff;
    let complex = flag_word & 0x0800 != 0;
    if !(6..=15).contains(&class) || complex {
        return Ok(None); // cell, struct, object, char, sparse or complex: not used here
    }
    let (ty, dims_bytes, pos) = next_element(&r, pos, path)?;
    if ty != MI_INT32 || dims_bytes.len() < 8 || dims_bytes.len() % 4 != 0 {
        return Err(format_err(
            path,
            "MAT array with a malformed dimensions subelement",
        ));
    }
    let dr = Reader {
        bytes: dims_bytes,
        big_endian,
    };
    let dims: Vec<usize> = (0..dims_bytes.len() / 4)
        .map(|i| dr.u32_at(4 * i) as usize)
        .collect();
    let (ty, name, pos) = next_element(&r, pos, path)?;
    if ty != MI_INT8 {
        return Err(format_err(
            path,
            "MAT array with a malformed name subelement",
        ));
    }
    let name = String::from_utf8_lossy(name).into_owned();
    let (ty, real, _) = next_element(&r, pos, path)?;
    let data = decode_numeric(ty, real, big_endian, path, &name)?;
    let expected = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if expected != Some(data.len()) {
        return Err(format_err(
            path,
            format!(
                "MAT variable {name:?} has dimensions {dims:?} but {} values",
                data.len()
            ),
        ));
    }
    Ok(Some(MatArray { name, dims, data }))
}

fn decode_numeric(ty: u32, b: &[u8], big_endian: bool, path: &Path, name: &str) -> Result<MatData> {
    let width = match ty {
        MI_INT8 | MI_UINT8 => 1,
        MI_INT16 | MI_UINT16 => 2,
        MI_INT32 | MI_UINT32 | MI_SINGLE => 4,
        MI_DOUBLE | MI_INT64 | MI_UINT64 => 8,
        other => {
            return Err(format_err(
                path,
                format!("MAT variable {name:?} has unsupported storage type {other}"),
            ))
        }
    };
    if b.len() % width != 0 {
        return Err(format_err(
            path,
            format!(
                "MAT variable {name:?}: {} bytes is not a whole number of {width}-byte values",
                b.len()
            ),
        ));
    }
    if ty == MI_UINT8 {
        return Ok(MatData::U8(b.to_vec()));
    }
    let word = |c: &[u8]| -> [u8; 8] {
        let mut w = [0u8; 8];
        if big_endian {
            w[8 - c.len()..].copy_from_slice(c);
            w.reverse();
        } else {
            w[..c.len()].copy_from_slice(c);
        }
        w // little-endian bytes, zero-extended
    };
    let values = b
        .chunks_exact(width)
        .map(|c| {
            let w = word(c);
            match ty {
                MI_INT8 => f64::from(w[0] as i8),
                MI_INT16 => f64::from(i16::from_le_bytes([w[0], w[1]])),
                MI_UINT16 => f64::from(u16::from_le_bytes([w[0], w[1]])),
                MI_INT32 => f64::from(i32::from_le_bytes([w[0], w[1], w[2], w[3]])),
                MI_UINT32 => f64::from(u32::from_le_bytes([w[0], w[1], w[2], w[3]])),
                MI_SINGLE => f64::from(f32::from_le_bytes([w[0], w[1], w[2], w[3]])),
                MI_DOUBLE => f64::from_le_bytes(w),
                MI_INT64 => i64::from_le_bytes(w) as f64,
                _ => u64::from_le_bytes(w) as f64,
            }
        })
        .collect();
    Ok(MatData::F64(values))
}
