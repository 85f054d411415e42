//! What the end-to-end tests need from outside the repository — ONNX Runtime
//! (`tools/fetch-onnxruntime.sh`) and a nats-server (`tools/fetch-nats-server.sh`) — and the
//! directory each test works in. A missing piece skips the test with a message, except in CI
//! (`CI` set), where it fails: a skipped test must never pass silently there.

use std::path::{Path, PathBuf};

/// The workspace root (the `refrain` package's manifest directory).
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The nats-server binary: `NATS_SERVER`, else `.nats/bin/nats-server` (from
/// `tools/fetch-nats-server.sh`). Missing: `None` with a message, or a panic in CI.
pub fn nats_server_binary() -> Option<PathBuf> {
    let path = std::env::var_os("NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".nats/bin/nats-server"));
    if path.is_file() {
        return Some(path);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "nats-server not found at {} in CI: run tools/fetch-nats-server.sh",
            path.display()
        );
    }
    eprintln!(
        "skipped: nats-server not found at {} (run tools/fetch-nats-server.sh)",
        path.display()
    );
    None
}

/// Whether ONNX Runtime can be found (as the library decides it); missing skips, or panics in CI.
pub fn ort_available() -> bool {
    if refrain_inference::runtime::library_candidates(None)
        .iter()
        .any(|p| p.is_file())
    {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("ONNX Runtime not found in CI: run tools/fetch-onnxruntime.sh");
    }
    eprintln!("skipped: ONNX Runtime not found (run tools/fetch-onnxruntime.sh)");
    false
}

/// A test's own directory (data, logs), removed afterwards unless the test failed, it was told
/// to [`TestDir::keep`] it, or `REFRAIN_TEST_KEEP` is set (then its path is printed, with the
/// logs in it).
pub struct TestDir {
    dir: Option<tempfile::TempDir>,
    keep: bool,
}

impl TestDir {
    pub fn new() -> TestDir {
        TestDir {
            dir: Some(
                tempfile::Builder::new()
                    .prefix("refrain-test-")
                    .tempdir()
                    .expect("temporary directory"),
            ),
            keep: false,
        }
    }

    /// Keeps the directory (and prints its path) when dropped, as after a failure.
    pub fn keep(&mut self) {
        self.keep = true;
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("directory").path()
    }
}

impl Default for TestDir {
    fn default() -> Self {
        TestDir::new()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let keep = self.keep || std::env::var_os("REFRAIN_TEST_KEEP").is_some();
        if std::thread::panicking() || keep {
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!("logs kept in {}", kept.display());
            }
        }
    }
}

/// A loopback port that refuses connections for as long as the returned socket lives: bound but
/// not listening, so nothing answers and no test running beside this one can start a server on
/// it (a port bound and let go again could be taken meanwhile).
pub fn refusing_port() -> (socket2::Socket, u16) {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a socket");
    socket
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("a free port");
    let port = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("its address")
        .port();
    (socket, port)
}
