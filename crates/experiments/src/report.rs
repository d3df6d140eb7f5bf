//! Run reports: machine and version facts, JSON and Markdown files written atomically.

use std::path::Path;

use crate::error::{io_err, ExpError, Result};

/// Facts about the machine and software a result was measured on.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Environment {
    /// CPU model name.
    pub cpu: String,
    /// Logical cores available to this process.
    pub cores: usize,
    /// Total memory in GiB.
    pub memory_gib: f64,
    /// Operating system.
    pub os: String,
    /// fdsm version.
    pub fdsm_version: String,
    /// Candle version.
    pub candle_version: String,
    /// Whether the run used a release build.
    pub release_build: bool,
}

/// Reads the environment facts (best effort; unknown fields say so).
pub fn environment() -> Environment {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_gib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0.0, |k| k / 1024.0 / 1024.0);
    Environment {
        cpu,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_gib,
        os: std::env::consts::OS.to_string(),
        fdsm_version: env!("CARGO_PKG_VERSION").to_string(),
        candle_version: "0.11.1".to_string(),
        release_build: !cfg!(debug_assertions),
    }
}

/// Writes `text` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, text).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// Removes the file at `path` if there is one.
///
/// # Errors
/// The file exists and cannot be removed.
pub fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(path)(e)),
        _ => Ok(()),
    }
}

/// Serialises `value` as pretty JSON to `path`.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|source| ExpError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomic(path, &(text + "\n"))
}

/// Reads JSON from `path`.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    serde_json::from_str(&text).map_err(|source| ExpError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// A Markdown table from a header and rows.
pub fn markdown_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!(
        "| {} |\n|{}\n",
        header.join(" | "),
        " --- |".repeat(header.len())
    );
    for r in rows {
        out.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    out
}

/// A mean over samples (test points, images) with its standard error.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Estimate {
    /// Mean.
    pub mean: f64,
    /// Standard error of the mean (sample standard deviation over `sqrt(count)`).
    pub std_err: f64,
    /// Number of samples.
    pub count: usize,
}

impl Estimate {
    /// The estimate from the samples' values (a standard error of 0 for fewer than two).
    pub fn of(values: &[f64]) -> Self {
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n.max(1) as f64;
        let var = if n > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        Self {
            mean,
            std_err: (var / n.max(1) as f64).sqrt(),
            count: n,
        }
    }

    /// `mean ± std_err` with `digits` decimals, or the mean alone from a single sample.
    pub fn display(&self, digits: usize) -> String {
        if self.count > 1 {
            format!("{:.*} ± {:.*}", digits, self.mean, digits, self.std_err)
        } else {
            format!("{:.*}", digits, self.mean)
        }
    }
}

/// The `train.json` and `eval.json` reports of every row, from the rows' directories.
///
/// # Errors
/// A missing or unreadable report.
pub fn read_train_eval<R, T, E>(
    ctx: &crate::runner::Context,
    rows: &[(R, crate::runner::RowStatus)],
) -> Result<Vec<(T, E)>>
where
    R: crate::runner::ExperimentRow,
    T: serde::de::DeserializeOwned,
    E: serde::de::DeserializeOwned,
{
    rows.iter()
        .map(|(row, _)| {
            let dir = ctx.row_dir(&row.key());
            Ok((
                read_json::<T>(&dir.join("train.json"))?,
                read_json::<E>(&dir.join("eval.json"))?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::Estimate;

    #[test]
    fn estimate_of_known_values() {
        let e = Estimate::of(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!((e.mean, e.count), (2.5, 4));
        // Sample variance 5/3, standard error sqrt(5/3 / 4).
        assert!((e.std_err - (5.0f64 / 12.0).sqrt()).abs() < 1e-15);
        assert_eq!(Estimate::of(&[7.0]).std_err, 0.0);
    }
}
