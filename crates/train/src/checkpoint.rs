//! Atomic training checkpoints in one safetensors file: the parameters (`param/<name>`), Adam's
//! moments (`adam_m/<name>`, `adam_v/<name>`), an experiment's own state (`extra/<name>`: a second
//! optimiser, persistent chains, ...) and JSON metadata (step, Adam's `t`, the run's config, the
//! experiment's own JSON state). Written to a temporary file, synced, then renamed over the old one, so a crash never
//! leaves a torn or missing checkpoint. The SHA-256 digest of the tensor data is stored in the
//! metadata and checked on load, so a file changed on disk is refused instead of resumed from.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor, Var};
use sha2::{Digest, Sha256};

use crate::error::{io_err, Result, TrainError};

/// Metadata stored beside the tensors.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CheckpointMeta {
    /// Completed training steps.
    pub step: u64,
    /// Adam's update counter.
    pub adam_t: u64,
    /// Training wall time so far, in seconds (excluding evaluation).
    pub train_seconds: f64,
    /// The run's configuration as JSON, to refuse resuming a different run.
    pub config: String,
    /// The experiment's own state besides tensors (curves, selection), `null` when it has none.
    #[serde(default)]
    pub extra: serde_json::Value,
}

/// Writes a checkpoint atomically.
///
/// # Errors
/// [`TrainError::Io`] / [`TrainError::Candle`] when writing fails; the previous checkpoint is then
/// still in place.
pub fn save(
    path: &Path,
    names: &[String],
    vars: &[Var],
    m: &[Tensor],
    v: &[Tensor],
    extra: Vec<(String, Tensor)>,
    meta: &CheckpointMeta,
) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = Vec::with_capacity(3 * vars.len() + extra.len());
    for (i, name) in names.iter().enumerate() {
        tensors.push((format!("param/{name}"), vars[i].as_tensor().detach()));
        tensors.push((format!("adam_m/{name}"), m[i].clone()));
        tensors.push((format!("adam_v/{name}"), v[i].clone()));
    }
    tensors.extend(
        extra
            .into_iter()
            .map(|(name, t)| (format!("extra/{name}"), t.detach())),
    );
    let json = serde_json::to_string(meta).map_err(|source| TrainError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    let tmp = tmp_path(path);
    let serialise = |metadata: HashMap<String, String>| {
        safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(metadata))
            .map_err(|e| TrainError::Checkpoint {
                path: tmp.clone(),
                problem: e.to_string(),
            })
    };
    // The data section does not depend on the metadata, so the digest of a first serialisation
    // is the digest of the file written.
    let mut metadata = HashMap::from([(META_KEY.to_string(), json)]);
    let digest =
        data_digest(&serialise(metadata.clone())?).ok_or_else(|| TrainError::Checkpoint {
            path: tmp.clone(),
            problem: "the serialised checkpoint has no data section".into(),
        })?;
    metadata.insert(DIGEST_KEY.to_string(), digest);
    let bytes = serialise(metadata)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .map_err(io_err(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// The metadata key of [`CheckpointMeta`].
const META_KEY: &str = "fdsm";
/// The metadata key of the tensor data's SHA-256 digest.
const DIGEST_KEY: &str = "fdsm_data_sha256";

/// The hex SHA-256 of the data section of a safetensors file (after the 8-byte header length
/// and the header), `None` if `bytes` is too short to hold one.
fn data_digest(bytes: &[u8]) -> Option<String> {
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let start = usize::try_from(n).ok()?.checked_add(8)?;
    let data = bytes.get(start..)?;
    Some(
        Sha256::digest(data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// A loaded checkpoint.
#[derive(Debug)]
pub struct Loaded {
    /// Its metadata.
    pub meta: CheckpointMeta,
    /// Parameters by name.
    pub params: HashMap<String, Tensor>,
    /// Adam first moments by name.
    pub m: HashMap<String, Tensor>,
    /// Adam second moments by name.
    pub v: HashMap<String, Tensor>,
    /// The experiment's own tensors by name.
    pub extra: HashMap<String, Tensor>,
}

/// Reads a checkpoint.
///
/// # Errors
/// [`TrainError::Checkpoint`] for an unreadable file, missing metadata, or tensor data that
/// does not match the digest stored with it (a file changed or damaged on disk).
pub fn load(path: &Path, device: &Device) -> Result<Loaded> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let bad = |problem: String| TrainError::Checkpoint {
        path: path.to_path_buf(),
        problem,
    };
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let stored = header.metadata().as_ref();
    let json = stored
        .and_then(|m| m.get(META_KEY))
        .ok_or_else(|| bad("no fdsm metadata".into()))?;
    let digest = stored
        .and_then(|m| m.get(DIGEST_KEY))
        .ok_or_else(|| bad("no digest of its tensor data (written by an older version?)".into()))?;
    if data_digest(&bytes).as_ref() != Some(digest) {
        return Err(bad(
            "its tensor data does not match the SHA-256 digest stored with it: the file was \
             changed or damaged after it was written. Delete it to start the row afresh, or \
             restore it from a copy"
                .into(),
        ));
    }
    let meta: CheckpointMeta =
        serde_json::from_str(json).map_err(|e| bad(format!("bad metadata: {e}")))?;
    let all = candle_core::safetensors::load_buffer(&bytes, device)?;
    let (mut params, mut m, mut v, mut extra) = (
        HashMap::new(),
        HashMap::new(),
        HashMap::new(),
        HashMap::new(),
    );
    for (key, t) in all {
        if let Some(n) = key.strip_prefix("param/") {
            params.insert(n.to_string(), t);
        } else if let Some(n) = key.strip_prefix("adam_m/") {
            m.insert(n.to_string(), t);
        } else if let Some(n) = key.strip_prefix("adam_v/") {
            v.insert(n.to_string(), t);
        } else if let Some(n) = key.strip_prefix("extra/") {
            extra.insert(n.to_string(), t);
        }
    }
    Ok(Loaded {
        meta,
        params,
        m,
        v,
        extra,
    })
}
