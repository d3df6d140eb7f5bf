//! `fdsm-data`: fetch the experiments' datasets into the data directory, each file checked
//! against its SHA-256 (the registry of `datasets::registry`); `cargo xtask download` runs it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use datasets::download::{ensure_dataset, DownloadOptions};
use datasets::Dataset;

/// The fdsm datasets: download and verify.
#[derive(Parser)]
#[command(name = "fdsm-data", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Download datasets into the data directory, verifying their SHA-256; files already present
    /// and intact are kept, interrupted downloads resume.
    Download {
        /// Datasets to fetch (see `list`), or `all`.
        #[arg(required = true)]
        datasets: Vec<String>,
        /// Data directory (default: $FDSM_DATA_DIR, else the user cache directory).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Extra base URL to try first: files are fetched from {URL}/{dataset}/{file} (repeatable).
        #[arg(long)]
        mirror: Vec<String>,
        /// Further attempts per URL after a network error.
        #[arg(long, default_value_t = 2)]
        retries: u32,
        /// Connect and read timeout in seconds.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        /// No progress bars.
        #[arg(long)]
        no_progress: bool,
    },
    /// List the datasets that can be downloaded, with their files.
    List,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Cmd::List => {
            for ds in Dataset::ALL {
                let files = ds.files();
                let bytes: u64 = files.iter().map(|f| f.size).sum();
                let paths: Vec<&str> = files.iter().map(|f| f.path).collect();
                println!(
                    "{:<28} {:>9.1} MB  {}",
                    ds.name(),
                    bytes as f64 / 1e6,
                    paths.join(" ")
                );
            }
            ExitCode::SUCCESS
        }
        Cmd::Download {
            datasets,
            data_dir,
            mirror,
            retries,
            timeout,
            no_progress,
        } => {
            let wanted: Vec<Dataset> = if datasets.iter().any(|n| n == "all") {
                Dataset::ALL.to_vec()
            } else {
                match datasets.iter().map(|n| Dataset::from_name(n)).collect() {
                    Ok(w) => w,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(2);
                    }
                }
            };
            let dir = datasets::resolve_data_dir(data_dir.as_deref());
            eprintln!("data directory: {}", dir.display());
            let options = DownloadOptions {
                mirrors: mirror,
                retries,
                progress: !no_progress,
                timeout: Duration::from_secs(timeout),
            };
            let mut failed = Vec::new();
            for ds in wanted {
                match ensure_dataset(&dir, ds, &options) {
                    Ok(files) => {
                        for f in files {
                            eprintln!("ok  {}", f.display());
                        }
                    }
                    Err(e) => {
                        eprintln!("failed  {}: {e}", ds.name());
                        failed.push(ds.name());
                    }
                }
            }
            if failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                eprintln!("error: could not obtain: {}", failed.join(", "));
                ExitCode::FAILURE
            }
        }
    }
}
