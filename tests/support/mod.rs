//! Harness of the distributed end-to-end tests and benchmark: a real nats-server (JetStream on
//! disk, random port, all on 127.0.0.1), the real `refrain` binary as orchestrator
//! (`serve --config config/distributed.toml`) and as nodes (`refrain node`), and a blocking
//! HTTP client of the DiffRhythm API. Every process is killed when its handle drops; logs go to
//! files in the test's own temporary directory.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

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

/// The base URL `refrain serve` prints (`listening on http://…`) once it listens, read from the
/// child's piped stdout on a thread.
fn listening_url(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("listening on ") {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    rx
}

/// Both external pieces are present (else the test is skipped, or fails in CI).
pub fn prerequisites() -> Option<PathBuf> {
    let nats = nats_server_binary()?;
    ort_available().then_some(nats)
}

/// A test's own directory, removed afterwards unless the test failed or `REFRAIN_TEST_KEEP` is
/// set (then its path is printed, with the logs in it).
pub struct TestDir {
    dir: Option<tempfile::TempDir>,
}

impl TestDir {
    pub fn new() -> TestDir {
        TestDir {
            dir: Some(
                tempfile::Builder::new()
                    .prefix("refrain-dist-")
                    .tempdir()
                    .expect("temporary directory"),
            ),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("directory").path()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let keep = std::env::var_os("REFRAIN_TEST_KEEP").is_some();
        if std::thread::panicking() || keep {
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!("logs kept in {}", kept.display());
            }
        }
    }
}

/// A nats-server with JetStream storing in `dir/js`.
pub struct NatsServer {
    binary: PathBuf,
    dir: PathBuf,
    child: Option<Child>,
    pub port: u16,
}

impl NatsServer {
    /// Starts on a random port.
    pub fn start(binary: &Path, dir: &Path) -> NatsServer {
        std::fs::create_dir_all(dir).expect("nats dir");
        let mut server = NatsServer {
            binary: binary.to_path_buf(),
            dir: dir.to_path_buf(),
            child: None,
            port: 0,
        };
        let child = server.spawn(None);
        let pid = child.id();
        server.child = Some(child);
        let ports = dir.join(format!(
            "{}_{pid}.ports",
            binary
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("nats-server")
        ));
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = loop {
            if let Ok(text) = std::fs::read_to_string(&ports) {
                if let Ok(v) = serde_json::from_str::<Value>(&text) {
                    if let Some(u) = v["nats"][0].as_str() {
                        break u.to_string();
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not write {}",
                ports.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        server.port = url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port in the ports file");
        server.wait_listening();
        server
    }

    fn spawn(&self, port: Option<u16>) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("nats-server.log"))
            .expect("nats log");
        let port = port.map_or("-1".to_string(), |p| p.to_string());
        Command::new(&self.binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port, "-m", "-1"])
            .arg("-sd")
            .arg(self.dir.join("js"))
            .arg("--ports_file_dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server starts")
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server does not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port with the same store.
    pub fn restart(&mut self) {
        self.kill();
        self.child = Some(self.spawn(Some(self.port)));
        self.wait_listening();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `refrain` process with its log file.
pub struct Proc {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The log so far, without colour codes.
    pub fn log_text(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Environment shared by the orchestrator and the nodes of one test.
#[derive(Debug, Clone)]
pub struct Env {
    pub vars: Vec<(String, String)>,
}

impl Env {
    /// Fast jobs (`steps`), quick pulls and heartbeats, `ack_wait` seconds.
    pub fn new(steps: u32, ack_wait: u64) -> Env {
        Env {
            vars: vec![
                ("REFRAIN_INFERENCE__STEPS".into(), steps.to_string()),
                (
                    "REFRAIN_NATS__ACK_WAIT_SECONDS".into(),
                    ack_wait.to_string(),
                ),
                ("REFRAIN_NATS__FETCH_EXPIRES_SECONDS".into(), "2".into()),
                ("REFRAIN_NATS__HEARTBEAT_SECONDS".into(), "1".into()),
                ("REFRAIN_NATS__RETRY_DELAY_SECONDS".into(), "1".into()),
            ],
        }
    }

    pub fn with(mut self, key: &str, value: &str) -> Env {
        self.vars.retain(|(k, _)| k != key);
        self.vars.push((key.into(), value.into()));
        self
    }
}

fn refrain_command(env: &Env, nats_url: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_refrain"));
    cmd.current_dir(workspace());
    for (k, _) in std::env::vars() {
        if k.starts_with("REFRAIN_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("RUST_LOG", "info,ort=warn")
        .env("REFRAIN_NATS__URL", nats_url);
    for (k, v) in &env.vars {
        cmd.env(k, v);
    }
    cmd
}

fn log_file(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("log file")
}

/// The orchestrator, `refrain serve --config config/distributed.toml`, on a random port.
pub struct Orchestrator {
    pub proc: Proc,
    pub base: String,
}

impl Orchestrator {
    pub fn start(dir: &Path, nats_url: &str, env: &Env) -> Orchestrator {
        Orchestrator::start_with(dir, "config/distributed.toml", nats_url, env)
    }

    /// With another configuration file (e.g. `config/default.toml`, the embedded deployment).
    pub fn start_with(dir: &Path, config: &str, nats_url: &str, env: &Env) -> Orchestrator {
        let log = dir.join("orchestrator.log");
        let mut child = refrain_command(env, nats_url)
            .args([
                "serve",
                "--config",
                config,
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(dir.join("data"))
            .stdout(Stdio::piped())
            .stderr(log_file(&log))
            .spawn()
            .expect("refrain serve starts");
        let rx = listening_url(&mut child);
        let proc = Proc {
            child: Some(child),
            log,
        };
        let base = match rx.recv_timeout(Duration::from_secs(180)) {
            Ok(b) => b,
            Err(_) => panic!("the orchestrator did not start:\n{}", proc.log_text()),
        };
        Orchestrator { proc, base }
    }
}

/// A node, `refrain node --name NAME`.
pub fn start_node(dir: &Path, nats_url: &str, name: &str, env: &Env) -> Proc {
    let log = dir.join(format!("node-{name}.log"));
    let child = refrain_command(env, nats_url)
        .args([
            "node",
            "--nats",
            nats_url,
            "--device",
            "cpu",
            "--bundle",
            "models/test-bundle",
            "--threads",
            "1",
        ])
        .args(["--name", name])
        .stdout(Stdio::null())
        .stderr(log_file(&log))
        .spawn()
        .expect("refrain node starts");
    Proc {
        child: Some(child),
        log,
    }
}

/// Removes terminal colour codes.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// What a node's log says it did, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeLogEvent {
    Started { job: String, attempt: u32 },
    Finished { job: String, how: String },
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {name}="))? + name.len() + 2;
    line[start..].split_whitespace().next()
}

/// The worker loop's job lines of a node log.
pub fn node_events(log: &str) -> Vec<NodeLogEvent> {
    let mut out = Vec::new();
    for line in log.lines() {
        let Some(job) = field(line, "job").map(str::to_string) else {
            continue;
        };
        if line.contains(" job started ") {
            let attempt = field(line, "attempt")
                .and_then(|a| a.parse().ok())
                .unwrap_or(0);
            out.push(NodeLogEvent::Started { job, attempt });
        } else {
            for (needle, how) in [
                (" job succeeded ", "succeeded"),
                (" job failed: invalid input ", "invalid"),
                (" job attempt failed ", "retry"),
                (" job interrupted", "interrupted"),
            ] {
                if line.contains(needle) && line.contains("refrain_inference::worker") {
                    out.push(NodeLogEvent::Finished {
                        job: job.clone(),
                        how: how.into(),
                    });
                }
            }
        }
    }
    out
}

/// Checks that a node ran one job at a time; returns the (job, attempt) pairs it started.
pub fn one_at_a_time(name: &str, events: &[NodeLogEvent]) -> Vec<(String, u32)> {
    let mut running: Option<&str> = None;
    let mut started = Vec::new();
    for e in events {
        match e {
            NodeLogEvent::Started { job, attempt } => {
                assert!(
                    running.is_none(),
                    "node {name} started {job} while running {running:?}: {events:?}"
                );
                running = Some(job);
                started.push((job.clone(), *attempt));
            }
            NodeLogEvent::Finished { job, .. } => {
                assert_eq!(
                    running,
                    Some(job.as_str()),
                    "node {name} finished a job it was not running: {events:?}"
                );
                running = None;
            }
        }
    }
    started
}

/// What polling a result ended with.
#[derive(Debug)]
pub enum Done {
    Wav(Vec<u8>),
    Failed(Value),
}

/// A blocking client of the DiffRhythm API.
pub struct Api {
    pub http: reqwest::blocking::Client,
    pub base: String,
}

impl Api {
    pub fn new(base: &str) -> Api {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("HTTP client");
        Api {
            http,
            base: base.to_string(),
        }
    }

    /// `POST /generate`; returns (job id, result URL).
    pub fn submit(&self, form: reqwest::blocking::multipart::Form) -> (String, String) {
        let response = self
            .http
            .post(format!("{}/generate", self.base))
            .multipart(form)
            .send()
            .expect("POST /generate");
        let status = response.status();
        let body: Value = response.json().expect("JSON reply");
        assert_eq!(status.as_u16(), 202, "POST /generate: {body}");
        (
            body["job_id"].as_str().expect("job_id").to_string(),
            body["url"].as_str().expect("url").to_string(),
        )
    }

    /// A plain text-prompt job of `seconds`.
    pub fn submit_prompt(&self, seconds: u32, seed: u64) -> (String, String) {
        let form = reqwest::blocking::multipart::Form::new()
            .text("audio_length", seconds.to_string())
            .text("ref_prompt", "bright acoustic pop with piano")
            .text("lrc", "[00:01.00]hello from a node\n[00:05.00]la la la")
            .text("seed", seed.to_string());
        self.submit(form)
    }

    /// `GET url`: `Ok(Done)` when finished, `Err(json)` while processing.
    pub fn poll(&self, url: &str) -> Result<Done, Value> {
        let response = match self.http.get(format!("{}{url}", self.base)).send() {
            Ok(r) => r,
            Err(e) => return Err(serde_json::json!({"transport_error": e.to_string()})),
        };
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let status = response.status().as_u16();
        if status == 200 && content_type.starts_with("audio/wav") {
            return Ok(Done::Wav(response.bytes().expect("WAV body").to_vec()));
        }
        let body: Value = response.json().unwrap_or(Value::Null);
        match body["status"].as_str() {
            Some("failed") | Some("cancelled") => Ok(Done::Failed(body)),
            _ => Err(body),
        }
    }

    /// Polls until finished.
    pub fn wait(&self, url: &str, timeout: Duration) -> Done {
        let deadline = Instant::now() + timeout;
        loop {
            match self.poll(url) {
                Ok(done) => return done,
                Err(body) => assert!(
                    Instant::now() < deadline,
                    "{url} did not finish in {timeout:?}: {body}"
                ),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn get_json(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .and_then(|r| r.json())
            .unwrap_or(Value::Null)
    }

    pub fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default()
    }

    /// Waits until `GET /api/v1/nodes` reports `live` nodes.
    pub fn wait_nodes(&self, live: u64, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.get_json("/api/v1/nodes");
            if v["live"].as_u64() == Some(live) {
                return v;
            }
            assert!(Instant::now() < deadline, "expected {live} live nodes: {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A 16-bit stereo 44.1 kHz WAV of a sine, `seconds` long.
/// A 5 s recording is a valid upload, but too short a song to edit into 95 s: only the node
/// finds out, at run time.
pub fn rejected_at_run_time_form() -> reqwest::blocking::multipart::Form {
    use reqwest::blocking::multipart::{Form, Part};
    Form::new()
        .text("audio_length", "95")
        .text("ref_prompt", "pop")
        .text("edit", "true")
        .text("edit_segments", "[[1, 3]]")
        .part(
            "ref_song",
            Part::bytes(sine_wav(5.0))
                .file_name("short.wav")
                .mime_str("audio/wav")
                .expect("valid MIME type"),
        )
}

pub fn sine_wav(seconds: f64) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 44100,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cursor = std::io::Cursor::new(Vec::new());
    {
        let mut w = hound::WavWriter::new(&mut cursor, spec).expect("WAV writer");
        let n = (seconds * 44100.0) as usize;
        for i in 0..n {
            let s =
                ((i as f64 * 440.0 * 2.0 * std::f64::consts::PI / 44100.0).sin() * 8000.0) as i16;
            w.write_sample(s).expect("sample");
            w.write_sample(s).expect("sample");
        }
        w.finalize().expect("WAV finalize");
    }
    cursor.into_inner()
}

// ---------------------------------------------------------------------------------------------
// The embedded deployment: `refrain serve` as a child process (tests/server.rs,
// tests/durability.rs, benches/server_load.rs). General enough for any configuration file.
// ---------------------------------------------------------------------------------------------

/// A blocking HTTP client for 127.0.0.1 (no proxy; generous timeout).
pub fn local_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("HTTP client")
}

impl Proc {
    /// The child's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends a signal (`TERM`, `INT`, `KILL`, …) with the `kill` command.
    pub fn signal(&self, signal: &str) {
        let pid = self.pid().expect("the process was started");
        let status = Command::new("kill")
            .args(["-s", signal, &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -s {signal} {pid} failed");
    }

    /// Waits up to `timeout` for the process to exit; its exit status, or `None` if it still
    /// runs (it is left running).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `refrain serve --listen 127.0.0.1:0 --data-dir DIR/data` from the workspace root (so the
/// default `config/default.toml`, `models/test-bundle` and `.ort/lib` are found), with extra
/// `REFRAIN_*` variables. Every start writes its own log, `DIR/serve-<n>.log`. The process is
/// killed (`kill -9`) when the handle drops.
pub struct Server {
    pub proc: Proc,
    /// `http://127.0.0.1:PORT` of the current run.
    pub base: String,
    dir: PathBuf,
    config: Option<String>,
    vars: Vec<(String, String)>,
    runs: usize,
}

impl Server {
    /// The default configuration with `vars` (e.g. `REFRAIN_INFERENCE__STEPS`).
    pub fn start(dir: &Path, vars: &[(&str, &str)]) -> Server {
        Server::start_with(dir, None, vars)
    }

    /// With a configuration file (`--config`, relative to the workspace root).
    pub fn start_with(dir: &Path, config: Option<&str>, vars: &[(&str, &str)]) -> Server {
        let mut server = Server {
            proc: Proc {
                child: None,
                log: dir.join("serve-0.log"),
            },
            base: String::new(),
            dir: dir.to_path_buf(),
            config: config.map(str::to_string),
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            runs: 0,
        };
        server.spawn();
        server
    }

    /// The data directory (job store, uploads, outputs).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A client of this run's address.
    pub fn api(&self) -> Api {
        Api {
            http: local_client(),
            base: self.base.clone(),
        }
    }

    /// `http://127.0.0.1:PORT/PATH`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn spawn(&mut self) {
        self.runs += 1;
        let log = self.dir.join(format!("serve-{}.log", self.runs));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_refrain"));
        cmd.current_dir(workspace());
        for (k, _) in std::env::vars() {
            if k.starts_with("REFRAIN_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("RUST_LOG", "info,ort=warn").env("NO_COLOR", "1");
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        cmd.arg("serve");
        if let Some(config) = &self.config {
            cmd.args(["--config", config]);
        }
        let mut child = cmd
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(self.data_dir())
            .stdout(Stdio::piped())
            .stderr(log_file(&log))
            .spawn()
            .expect("refrain serve starts");
        let rx = listening_url(&mut child);
        self.proc = Proc {
            child: Some(child),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        self.base = loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(base) => break base,
                Err(_) if !self.proc.is_running() => {
                    panic!("refrain serve exited:\n{}", self.proc.log_text())
                }
                Err(_) if Instant::now() > deadline => {
                    panic!("refrain serve did not listen:\n{}", self.proc.log_text())
                }
                Err(_) => {}
            }
        };
        self.wait_ready(deadline);
    }

    /// Polls `GET /readyz` until 200.
    fn wait_ready(&mut self, deadline: Instant) {
        let http = local_client();
        loop {
            let ready = http
                .get(self.url("/readyz"))
                .send()
                .map(|r| r.status().as_u16() == 200)
                .unwrap_or(false);
            if ready {
                return;
            }
            assert!(
                self.proc.is_running(),
                "refrain serve exited before it was ready:\n{}",
                self.proc.log_text()
            );
            assert!(
                Instant::now() < deadline,
                "refrain serve not ready:\n{}",
                self.proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// `kill -9`, then a new process on the same data directory (and a new port).
    pub fn restart(&mut self) {
        self.proc.kill();
        self.spawn();
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.proc.signal("TERM");
        self.proc.wait_exit(timeout)
    }

    /// The log of run `n` (1-based).
    pub fn log_of_run(&self, n: usize) -> String {
        strip_ansi(
            &std::fs::read_to_string(self.dir.join(format!("serve-{n}.log"))).unwrap_or_default(),
        )
    }

    /// The logs of every run so far, in order.
    pub fn all_logs(&self) -> String {
        (1..=self.runs).map(|n| self.log_of_run(n)).collect()
    }

    /// How many times the process was started.
    pub fn runs(&self) -> usize {
        self.runs
    }
}

/// A string field of a job's JSON (`state`, `stage`, …) from `GET url`; `None` once the answer
/// is the WAV or not JSON.
pub fn json_field(api: &Api, url: &str, field: &str) -> Option<String> {
    let r = api.http.get(format!("{}{url}", api.base)).send().ok()?;
    let is_json = r
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return None;
    }
    let v: Value = r.json().ok()?;
    v[field].as_str().map(str::to_string)
}

/// Polls a job's JSON until `pred` holds for it (e.g. it is running and has made a step);
/// panics after `timeout` or if the job finished first.
pub fn wait_json(api: &Api, url: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        match api.poll(url) {
            Ok(Done::Wav(_)) => panic!("{url} finished before the awaited moment"),
            Ok(Done::Failed(body)) => panic!("{url} failed: {body}"),
            Err(body) if pred(&body) => return body,
            Err(body) => assert!(Instant::now() < deadline, "{url}: still {body}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `refrain generate` of the same request as a server job (text prompt): the reference bytes a
/// job must produce, however often it was interrupted.
pub fn generate_reference(
    dir: &Path,
    lyrics: &str,
    prompt: &str,
    seconds: u32,
    seed: u64,
    steps: u32,
) -> Vec<u8> {
    let lrc = dir.join(format!("ref-{seed}-{seconds}.lrc"));
    let out = dir.join(format!("ref-{seed}-{seconds}.wav"));
    std::fs::write(&lrc, lyrics).expect("lyrics file");
    let output = Command::new(env!("CARGO_BIN_EXE_refrain"))
        .current_dir(workspace())
        .env_remove("REFRAIN_BUNDLE")
        .env_remove("REFRAIN_ORT_LIBRARY")
        .env_remove("REFRAIN_DEVICE")
        .args(["generate", "--prompt", prompt])
        .arg("--lrc")
        .arg(&lrc)
        .args(["--length", &seconds.to_string()])
        .args(["--seed", &seed.to_string()])
        .args(["--steps", &steps.to_string()])
        .arg("--output")
        .arg(&out)
        .output()
        .expect("refrain generate runs");
    assert!(
        output.status.success(),
        "refrain generate failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read(&out).expect("reference WAV")
}

/// Checks a WAV: 16-bit stereo 44.1 kHz, `frames` latent frames of 2048 samples. Returns the
/// samples per channel.
pub fn assert_song_wav(bytes: &[u8], latent_frames: usize) -> u32 {
    let reader = hound::WavReader::new(std::io::Cursor::new(bytes)).expect("a WAV file");
    let spec = reader.spec();
    assert_eq!(spec.channels, 2, "stereo");
    assert_eq!(spec.sample_rate, 44100, "44.1 kHz");
    assert_eq!(spec.bits_per_sample, 16, "16-bit");
    assert_eq!(spec.sample_format, hound::SampleFormat::Int, "integer PCM");
    let frames = reader.duration();
    assert_eq!(frames as usize, latent_frames * 2048, "samples per channel");
    frames
}

/// Latent frames of a song of `seconds` (95 s is the base model's 2048 frames).
pub fn latent_frames(seconds: u32) -> usize {
    if seconds == 95 {
        2048
    } else {
        seconds as usize * 44100 / 2048
    }
}
