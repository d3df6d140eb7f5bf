//! PyTorch state dicts (`torch.save(model.state_dict())`) in both of PyTorch's formats: the zip
//! archive of PyTorch 1.6 and later (read by Candle) and the earlier stream of pickles followed
//! by the raw storages, which Candle does not read (pre-1.6 files such as older published
//! weights). Tensors must be contiguous in their storage.
//!
//! The legacy stream: three small pickles (a magic number, the protocol version, system
//! information), the pickled state dict whose tensors refer to storages by key, the pickled list
//! of storage keys, then each storage in that order as a little-endian `u64` element count and
//! its raw little-endian elements.

use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::path::Path;

use candle_core::pickle::{Object, Stack};
use candle_core::{Device, Tensor};

/// Reads every tensor of the state dict at `path` onto the CPU.
///
/// # Errors
/// A missing file, a stream that is neither format, a storage type Candle has no dtype for, a
/// truncated storage, a non-contiguous tensor.
pub fn read_state_dict(path: &Path) -> candle_core::Result<HashMap<String, Tensor>> {
    let bytes = std::fs::read(path)?;
    if bytes.starts_with(b"PK") {
        return Ok(candle_core::pickle::read_all(path)?.into_iter().collect());
    }
    read_legacy(&bytes)
}

fn pickle(r: &mut Cursor<&[u8]>) -> candle_core::Result<Object> {
    let mut stack = Stack::empty();
    stack.read_loop(r)?;
    stack.finalize()
}

fn read_legacy(bytes: &[u8]) -> candle_core::Result<HashMap<String, Tensor>> {
    let mut r = Cursor::new(bytes);
    // PyTorch's magic number (an integer too wide for the parser's `i64`, read as whatever it
    // makes of it): a file starting with anything but an integer is not PyTorch's.
    if !matches!(pickle(&mut r)?, Object::Int(_) | Object::Long(_)) {
        candle_core::bail!("not a PyTorch file: it does not start with PyTorch's magic number")
    }
    let _protocol = pickle(&mut r)?;
    let _sys_info = pickle(&mut r)?;
    let state = match pickle(&mut r)? {
        Object::Dict(entries) => entries,
        other => candle_core::bail!("the file does not hold a state dict: {other:?}"),
    };
    let keys: Vec<String> = match pickle(&mut r)? {
        Object::List(keys) => keys
            .into_iter()
            .map(|k| {
                k.unicode()
                    .map_err(|k| candle_core::Error::Msg(format!("storage key {k:?}")))
            })
            .collect::<candle_core::Result<_>>()?,
        other => candle_core::bail!("no list of storage keys: {other:?}"),
    };
    let mut infos = Vec::new();
    for (name, value) in state {
        if let Some(info) = value.into_tensor_info(name, Path::new(""))? {
            infos.push(info);
        }
    }
    let key_of = |path: &str| path.trim_start_matches('/').to_string();
    let dtype_of: HashMap<String, candle_core::DType> =
        infos.iter().map(|i| (key_of(&i.path), i.dtype)).collect();
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    for key in keys {
        let mut count = [0u8; 8];
        r.read_exact(&mut count)
            .map_err(|_| candle_core::Error::Msg(format!("storage {key} is truncated")))?;
        let count = u64::from_le_bytes(count) as usize;
        let dtype = dtype_of.get(&key).copied().ok_or_else(|| {
            candle_core::Error::Msg(format!("storage {key} is used by no tensor"))
        })?;
        let mut data = vec![0u8; count * dtype.size_in_bytes()];
        r.read_exact(&mut data)
            .map_err(|_| candle_core::Error::Msg(format!("storage {key} is truncated")))?;
        storages.insert(key, data);
    }
    let mut out = HashMap::new();
    for info in infos {
        let layout = &info.layout;
        if !layout.is_contiguous() {
            candle_core::bail!("{}: non-contiguous tensors are not supported", info.name)
        }
        let data = &storages[&key_of(&info.path)];
        let start = layout.start_offset();
        let len = layout.shape().elem_count() * info.dtype.size_in_bytes();
        let slice = data.get(start..start + len).ok_or_else(|| {
            candle_core::Error::Msg(format!("{}: its storage is too short", info.name))
        })?;
        let t = Tensor::from_raw_buffer(slice, info.dtype, layout.dims(), &Device::Cpu)?;
        out.insert(info.name, t);
    }
    Ok(out)
}
