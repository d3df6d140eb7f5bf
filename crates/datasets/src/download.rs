//! Checksummed downloads into the data directory: the canonical URL, then mirrors; an
//! interrupted transfer resumes from its `.part` file with an HTTP range request; a file is
//! renamed into place only after its SHA-256 matches; archives (CIFAR-10) are extracted entry by
//! entry, each written atomically. Without network the error says where to put the files.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use flate2::read::GzDecoder;
use indicatif::{ProgressBar, ProgressStyle};

use crate::dirs::DATA_DIR_ENV;
use crate::error::{DataError, Result};
use crate::registry::{verify, Dataset, RemoteFile};

/// How downloads are made.
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// Base URLs tried before the built-in ones, as `<base>/<path in data dir>` (a local mirror).
    pub mirrors: Vec<String>,
    /// Further attempts per URL after a network error (not after an HTTP 4xx or a bad checksum).
    pub retries: u32,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Connect and per-read timeout.
    pub timeout: Duration,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        Self {
            mirrors: Vec::new(),
            retries: 2,
            progress: true,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Makes sure every file of `dataset` is present and verified in `data_dir`, downloading what is
/// missing. Returns the paths of the files.
///
/// # Errors
/// [`DataError::Unavailable`] listing every file whose sources all failed (with its URL, path
/// and checksum), [`DataError::Io`] for local file-system errors, [`DataError::Format`] for a
/// broken archive.
pub fn ensure_dataset(
    data_dir: &Path,
    dataset: Dataset,
    options: &DownloadOptions,
) -> Result<Vec<PathBuf>> {
    ensure_files(data_dir, &dataset.files(), options)
}

/// [`ensure_file`] for each of `files`, trying every one before reporting: the error lists all
/// that could not be obtained, not only the first.
///
/// # Errors
/// As [`ensure_dataset`].
pub fn ensure_files(
    data_dir: &Path,
    files: &[&RemoteFile],
    options: &DownloadOptions,
) -> Result<Vec<PathBuf>> {
    let (mut paths, mut failed) = (Vec::new(), Vec::new());
    for f in files {
        match ensure_file(data_dir, f, options) {
            Ok(p) => paths.push(p),
            Err(DataError::Download { attempts, .. }) => failed.push(format!(
                "- {} (sha256 {}), from {}:\n{attempts}",
                data_dir.join(f.path).display(),
                f.sha256,
                f.urls.first().copied().unwrap_or("no URL")
            )),
            Err(e) => return Err(e),
        }
    }
    if failed.is_empty() {
        return Ok(paths);
    }
    Err(DataError::Unavailable {
        count: failed.len(),
        files: failed.join("\n"),
        data_dir: data_dir.to_path_buf(),
    })
}

/// Makes sure one file is present and verified, downloading it if needed (see the module docs).
///
/// # Errors
/// As [`ensure_dataset`].
pub fn ensure_file(
    data_dir: &Path,
    file: &RemoteFile,
    options: &DownloadOptions,
) -> Result<PathBuf> {
    let dest = data_dir.join(file.path);
    if dest.is_file() {
        match verify(&dest, file.sha256) {
            Ok(()) => {
                extract(data_dir, file, &dest)?;
                return Ok(dest);
            }
            Err(DataError::Checksum { actual, .. }) => {
                // Kept until a verified copy replaces it (a rename over it), so that a failed
                // download offline does not lose the user's file.
                eprintln!(
                    "{}: sha256 {actual} does not match the published one; downloading a \
                     verified copy to replace it",
                    dest.display()
                );
            }
            Err(e) => return Err(e),
        }
    }
    let parent = dest.parent().expect("a data file has a parent directory");
    let created = !parent.exists();
    fs::create_dir_all(parent).map_err(|source| DataError::Io {
        path: parent.to_path_buf(),
        source,
    })?;
    let part = part_path(&dest);
    let urls: Vec<String> = options
        .mirrors
        .iter()
        .map(|m| format!("{}/{}", m.trim_end_matches('/'), file.path))
        .chain(file.urls.iter().map(|u| u.to_string()))
        .collect();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(options.timeout))
        .timeout_recv_response(Some(options.timeout))
        .timeout_per_read(Some(options.timeout))
        .build()
        .into();
    let mut attempts = Vec::new();
    for url in &urls {
        for attempt in 0..=options.retries {
            match fetch_to_part(&agent, url, &part, file, options.progress) {
                Ok(()) => match verify(&part, file.sha256) {
                    Ok(()) => {
                        fs::rename(&part, &dest).map_err(|source| DataError::Io {
                            path: dest.clone(),
                            source,
                        })?;
                        sync_dir(parent);
                        extract(data_dir, file, &dest)?;
                        return Ok(dest);
                    }
                    Err(DataError::Checksum { actual, .. }) => {
                        attempts.push(format!(
                            "  {url}: downloaded, but sha256 is {actual}, expected {}",
                            file.sha256
                        ));
                        let _ = fs::remove_file(&part);
                        break;
                    }
                    Err(e) => return Err(e),
                },
                Err(Failure::GiveUp(msg)) => {
                    attempts.push(format!("  {url}: {msg}"));
                    break;
                }
                Err(Failure::Retry(msg)) => {
                    attempts.push(format!("  {url} (attempt {}): {msg}", attempt + 1));
                    if attempt < options.retries {
                        std::thread::sleep(Duration::from_millis(250 * u64::from(attempt + 1)));
                    }
                }
            }
        }
    }
    // A folder made for this file and left empty (no partial download in it) goes again, so
    // that a failed attempt offline leaves the data directory as it was.
    if created {
        let _ = fs::remove_dir(parent);
    }
    Err(DataError::Download {
        file: file.path.to_string(),
        attempts: attempts.join("\n"),
        hint: format!(
            "Without network: fetch {} on another machine and put it at {} (sha256 {}). \
             The data directory is {} (set it with --data-dir or {DATA_DIR_ENV}).{}",
            file.urls[0],
            dest.display(),
            file.sha256,
            data_dir.display(),
            if dest.is_file() {
                " The file there now fails its checksum and was left as it is."
            } else {
                ""
            }
        ),
    })
}

enum Failure {
    Retry(String),
    GiveUp(String),
}

fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().expect("file name").to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

/// Downloads `url` into `part`, resuming from its current length when the server honours ranges.
fn fetch_to_part(
    agent: &ureq::Agent,
    url: &str,
    part: &Path,
    file: &RemoteFile,
    progress: bool,
) -> std::result::Result<(), Failure> {
    let io = |e: std::io::Error| Failure::Retry(format!("local file {}: {e}", part.display()));
    let offset = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    if offset >= file.size {
        return Ok(()); // complete already: the checksum decides
    }
    let mut request = agent.get(url).header("Accept-Encoding", "identity");
    if offset > 0 {
        request = request.header("Range", format!("bytes={offset}-"));
    }
    let mut response = request.call().map_err(|e| Failure::Retry(e.to_string()))?;
    let status = response.status().as_u16();
    let (mut out, start) = match status {
        206 => (
            OpenOptions::new().append(true).open(part).map_err(io)?,
            offset,
        ),
        200 => (File::create(part).map_err(io)?, 0),
        416 => return Ok(()),
        s if (400..500).contains(&s) => return Err(Failure::GiveUp(format!("HTTP {s}"))),
        s => return Err(Failure::Retry(format!("HTTP {s}"))),
    };
    let bar = if progress {
        ProgressBar::new(file.size)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_message(file.path.to_string());
    bar.set_position(start);
    let mut reader = response.body_mut().as_reader();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                let _ = out.sync_all();
                bar.abandon();
                return Err(Failure::Retry(format!("transfer interrupted: {e}")));
            }
        };
        out.write_all(&buf[..n]).map_err(io)?;
        bar.inc(n as u64);
    }
    out.sync_all().map_err(io)?;
    bar.finish_and_clear();
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Extracts the listed entries of a `.tar.gz` archive next to it, each written to a temporary
/// file and renamed into place; skipped when all of them exist already.
fn extract(data_dir: &Path, file: &RemoteFile, archive: &Path) -> Result<()> {
    if file.extract.is_empty() {
        return Ok(());
    }
    let folder = data_dir.join(file.dataset.name());
    if file.extract.iter().all(|e| folder.join(e).is_file()) {
        return Ok(());
    }
    let bad = |problem: String| DataError::Format {
        path: archive.to_path_buf(),
        problem,
    };
    let reader = File::open(archive).map_err(|source| DataError::Io {
        path: archive.to_path_buf(),
        source,
    })?;
    let mut tar = tar::Archive::new(GzDecoder::new(reader));
    let mut found = 0;
    for entry in tar
        .entries()
        .map_err(|e| bad(format!("unreadable tar archive: {e}")))?
    {
        let mut entry = entry.map_err(|e| bad(format!("unreadable tar entry: {e}")))?;
        let name = entry
            .path()
            .map_err(|e| bad(format!("bad tar entry name: {e}")))?
            .to_string_lossy()
            .into_owned();
        if !file.extract.contains(&name.as_str()) {
            continue;
        }
        let dest = folder.join(&name);
        let dir = dest.parent().expect("entry has a parent");
        fs::create_dir_all(dir).map_err(|source| DataError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let tmp = part_path(&dest);
        let mut out = File::create(&tmp).map_err(|source| DataError::Io {
            path: tmp.clone(),
            source,
        })?;
        std::io::copy(&mut entry, &mut out).map_err(|e| bad(format!("extracting {name}: {e}")))?;
        out.sync_all().map_err(|source| DataError::Io {
            path: tmp.clone(),
            source,
        })?;
        fs::rename(&tmp, &dest).map_err(|source| DataError::Io {
            path: dest.clone(),
            source,
        })?;
        found += 1;
    }
    if found != file.extract.len() {
        return Err(bad(format!(
            "the archive holds {found} of the {} expected entries",
            file.extract.len()
        )));
    }
    Ok(())
}
