//! The downloader against a small HTTP server on 127.0.0.1 run by the test: mirror fallback past
//! 404s and bad checksums, resuming an interrupted transfer with a range request, replacing a
//! corrupt file, extracting an archive, and the error that says where to put the file when
//! nothing can be reached. No traffic leaves the machine.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::temp_dir;
use datasets::download::{ensure_file, ensure_files, DownloadOptions};
use datasets::registry::{sha256_file, Dataset, RemoteFile};
use datasets::DataError;

/// What the server saw: (path, range header).
type Log = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// Serves `/good/*` with `body` (honouring ranges), `/flaky/*` with half the body on its first
/// request and honouring ranges afterwards, `/bad/*` with other bytes, anything else with 404.
/// Stops after `max_requests` connections.
fn serve(body: Vec<u8>, max_requests: usize) -> (String, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log: Log = Arc::default();
    let seen = log.clone();
    std::thread::spawn(move || {
        let mut flaky_served = false;
        for stream in listener.incoming().take(max_requests) {
            let Ok(stream) = stream else { continue };
            let _ = handle(stream, &body, &seen, &mut flaky_served);
        }
    });
    (base, log)
}

fn handle(
    mut stream: TcpStream,
    body: &[u8],
    log: &Log,
    flaky_served: &mut bool,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let mut range = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if line.trim().is_empty() {
            break;
        }
        if let Some(v) = line
            .strip_prefix("Range: ")
            .or_else(|| line.strip_prefix("range: "))
        {
            range = Some(v.trim().to_string());
        }
    }
    log.lock().unwrap().push((path.clone(), range.clone()));
    let start: usize = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.trim_end_matches('-').parse().ok())
        .unwrap_or(0);
    let send = |stream: &mut TcpStream,
                status: &str,
                extra: String,
                payload: &[u8],
                declared: usize|
     -> std::io::Result<()> {
        write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Length: {declared}\r\nConnection: close\r\n{extra}\r\n"
        )?;
        stream.write_all(payload)?;
        stream.flush()
    };
    if path.starts_with("/good/") || (path.starts_with("/flaky/") && *flaky_served) {
        if start > 0 {
            let part = &body[start..];
            let extra = format!(
                "Content-Range: bytes {start}-{}/{}\r\n",
                body.len() - 1,
                body.len()
            );
            send(&mut stream, "206 Partial Content", extra, part, part.len())
        } else {
            send(&mut stream, "200 OK", String::new(), body, body.len())
        }
    } else if path.starts_with("/flaky/") {
        *flaky_served = true;
        // Declare the whole body, send half, hang up.
        send(
            &mut stream,
            "200 OK",
            String::new(),
            &body[..body.len() / 2],
            body.len(),
        )
    } else if path.starts_with("/bad/") {
        let wrong = vec![b'x'; body.len()];
        send(&mut stream, "200 OK", String::new(), &wrong, wrong.len())
    } else {
        send(&mut stream, "404 Not Found", String::new(), b"", 0)
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn remote(urls: Vec<String>, body: &[u8], path: &str) -> RemoteFile {
    let dir = temp_dir("sha");
    let f = dir.join("body");
    std::fs::write(&f, body).unwrap();
    RemoteFile {
        dataset: Dataset::Mnist,
        path: leak(path.to_string()),
        urls: Box::leak(
            urls.into_iter()
                .map(leak)
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        ),
        sha256: leak(sha256_file(&f).unwrap()),
        size: body.len() as u64,
        extract: &[],
    }
}

fn options() -> DownloadOptions {
    DownloadOptions {
        retries: 1,
        progress: false,
        timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

fn body(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn falls_back_past_404_and_bad_checksums() {
    let data = body(200_000);
    let (base, log) = serve(data.clone(), 10);
    let file = remote(
        vec![
            format!("{base}/missing/a.bin"),
            format!("{base}/bad/a.bin"),
            format!("{base}/good/a.bin"),
        ],
        &data,
        "mnist/a.bin",
    );
    let dir = temp_dir("fallback");
    let dest = ensure_file(&dir, &file, &options()).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert!(
        !dir.join("mnist/a.bin.part").exists(),
        "no partial file left behind"
    );
    let paths: Vec<String> = log.lock().unwrap().iter().map(|(p, _)| p.clone()).collect();
    // 404 is final for its URL (no retry); the bad checksum is not retried either.
    assert_eq!(paths, vec!["/missing/a.bin", "/bad/a.bin", "/good/a.bin"]);
    // A second call finds the verified file and makes no request.
    ensure_file(&dir, &file, &options()).unwrap();
    assert_eq!(log.lock().unwrap().len(), 3);
}

#[test]
fn resumes_an_interrupted_transfer_with_a_range_request() {
    let data = body(300_000);
    let (base, log) = serve(data.clone(), 10);
    let file = remote(vec![format!("{base}/flaky/b.bin")], &data, "mnist/b.bin");
    let dir = temp_dir("resume");
    let dest = ensure_file(&dir, &file, &options()).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[0].1, None);
    assert_eq!(
        log[1].1.as_deref(),
        Some(format!("bytes={}-", data.len() / 2).as_str()),
        "resumed where it stopped"
    );
}

#[test]
fn replaces_a_corrupt_existing_file() {
    let data = body(50_000);
    let (base, _log) = serve(data.clone(), 5);
    let file = remote(vec![format!("{base}/good/c.bin")], &data, "mnist/c.bin");
    let dir = temp_dir("corrupt");
    std::fs::create_dir_all(dir.join("mnist")).unwrap();
    std::fs::write(dir.join("mnist/c.bin"), b"corrupted").unwrap();
    let dest = ensure_file(&dir, &file, &options()).unwrap();
    assert_eq!(std::fs::read(dest).unwrap(), data);
}

#[test]
fn unreachable_sources_give_instructions() {
    // Bind then drop a listener: nothing listens on that port any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = body(1000);
    let file = remote(
        vec![format!("http://127.0.0.1:{port}/d.bin")],
        &data,
        "mnist/d.bin",
    );
    let dir = temp_dir("offline");
    let err = ensure_file(&dir, &file, &options()).unwrap_err();
    assert!(matches!(err, DataError::Download { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains(&dir.join("mnist/d.bin").display().to_string()),
        "{msg}"
    );
    assert!(
        msg.contains(file.sha256) && msg.contains("FDSM_DATA_DIR"),
        "{msg}"
    );
    assert!(msg.contains("attempt 2"), "retried: {msg}");
    // The folder made for the file does not stay behind, empty.
    assert!(!dir.join("mnist").exists());
}

#[test]
fn extracts_archives_atomically() {
    // A .tar.gz with the two entries we want and one we do not.
    let mut tar = tar::Builder::new(Vec::new());
    for (name, content) in [
        ("batches/one.bin", &b"first"[..]),
        ("batches/two.bin", b"second"),
        ("batches/readme", b"skip"),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, content).unwrap();
    }
    let archive = common::gzip(&tar.into_inner().unwrap());
    let (base, _log) = serve(archive.clone(), 5);
    let mut file = remote(
        vec![format!("{base}/good/e.tar.gz")],
        &archive,
        "cifar-10/e.tar.gz",
    );
    file.dataset = Dataset::Cifar10;
    file.extract = &["batches/one.bin", "batches/two.bin"];
    let dir = temp_dir("extract");
    ensure_file(&dir, &file, &options()).unwrap();
    assert_eq!(
        std::fs::read(dir.join("cifar-10/batches/one.bin")).unwrap(),
        b"first"
    );
    assert_eq!(
        std::fs::read(dir.join("cifar-10/batches/two.bin")).unwrap(),
        b"second"
    );
    assert!(!dir.join("cifar-10/batches/readme").exists());
    let mut missing_entry = file.clone();
    missing_entry.extract = &["batches/one.bin", "batches/three.bin"];
    let err = ensure_file(&dir, &missing_entry, &options()).unwrap_err();
    assert!(
        err.to_string().contains("1 of the 2 expected entries")
            || err.to_string().contains("2 expected"),
        "{err}"
    );
    let mut reader = std::fs::File::open(dir.join("cifar-10/e.tar.gz")).unwrap();
    let mut buf = Vec::new();
    reader.read_to_end(&mut buf).unwrap();
    assert_eq!(buf, archive);
}

/// Offline, every missing file is listed (path, checksum, URL), not only the first, and a file
/// that fails its checksum is left in place rather than deleted before a download that fails.
#[test]
fn offline_lists_every_missing_file_and_keeps_a_corrupt_one() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (a, b) = (body(700), body(900));
    let fa = remote(
        vec![format!("http://127.0.0.1:{port}/e.bin")],
        &a,
        "mnist/e.bin",
    );
    let fb = remote(
        vec![format!("http://127.0.0.1:{port}/f.bin")],
        &b,
        "mnist/f.bin",
    );
    let dir = temp_dir("offline-many");
    std::fs::create_dir_all(dir.join("mnist")).unwrap();
    std::fs::write(dir.join("mnist/f.bin"), b"a user's damaged copy").unwrap();
    let err = ensure_files(&dir, &[&fa, &fb], &options()).unwrap_err();
    assert!(
        matches!(err, DataError::Unavailable { count: 2, .. }),
        "{err}"
    );
    let msg = err.to_string();
    for f in [&fa, &fb] {
        assert!(
            msg.contains(&dir.join(f.path).display().to_string()) && msg.contains(f.sha256),
            "{msg}"
        );
        assert!(msg.contains(f.urls[0]), "{msg}");
    }
    assert_eq!(
        std::fs::read(dir.join("mnist/f.bin")).unwrap(),
        b"a user's damaged copy",
        "the existing file was removed"
    );
}

/// The `fdsm-data` binary (what `cargo xtask download` runs): it lists the registry, refuses an
/// unknown name with the known ones, fetches a real dataset from a local mirror into the data
/// directory with its published checksum verified, then keeps the verified file on a second
/// call without any network, and exits non-zero naming a dataset it could not store.
#[test]
fn the_fdsm_data_binary_lists_refuses_and_downloads() {
    use std::process::Command;
    let bin = env!("CARGO_BIN_EXE_fdsm-data");
    let list = Command::new(bin).arg("list").output().unwrap();
    assert!(list.status.success());
    let listed = String::from_utf8_lossy(&list.stdout);
    for ds in Dataset::ALL {
        assert!(listed.contains(ds.name()), "{} not in {listed}", ds.name());
    }
    let unknown = Command::new(bin)
        .args(["download", "no-such-set"])
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        err.contains("no-such-set") && err.contains("frey-face"),
        "{err}"
    );

    let Some(shared) = common::shared_data("frey-face/frey_rawface.mat") else {
        return;
    };
    let genuine = std::fs::read(shared.join("frey-face/frey_rawface.mat")).unwrap();
    let (base, log) = serve(genuine, 4);
    let dir = temp_dir("fdsm-data");
    let download = |mirror: &str| {
        Command::new(bin)
            .args(["download", "frey", "--no-progress", "--retries", "0"])
            .args(["--timeout", "5", "--mirror", mirror, "--data-dir"])
            .arg(&dir)
            .output()
            .unwrap()
    };
    let first = download(&format!("{base}/good"));
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let file = dir.join("frey-face/frey_rawface.mat");
    let expected = Dataset::FreyFace.files()[0].sha256;
    assert_eq!(sha256_file(&file).unwrap(), expected);
    assert_eq!(log.lock().unwrap().len(), 1);
    // Present and intact: kept, nothing fetched (the mirror would serve bad bytes).
    let again = download(&format!("{base}/bad"));
    assert!(again.status.success());
    assert_eq!(log.lock().unwrap().len(), 1);
    // A dataset that cannot be stored (the data directory is a file): non-zero, named, with or
    // without a network.
    let not_a_dir = dir.join("frey-face/frey_rawface.mat");
    let missing = Command::new(bin)
        .args(["download", "wine", "--no-progress", "--retries", "0"])
        .args([
            "--timeout",
            "2",
            "--mirror",
            &format!("{base}/bad"),
            "--data-dir",
        ])
        .arg(&not_a_dir)
        .output()
        .unwrap();
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("could not obtain: wine-quality"), "{err}");
}
