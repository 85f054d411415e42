//! `refrain serve` as a child process — the embedded deployment (`config/default.toml`, one
//! in-process CPU node) or the orchestrator of the distributed one (`config/distributed.toml`)
//! — on 127.0.0.1 port 0 with the test's data directory. It can be killed (`kill -9`),
//! stopped with a signal and started again on the same data directory (on a new port), as the
//! restart tests need. Every start writes its own log, `serve-<n>.log`. Started only through
//! [`super::TestApp`].

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::http::{local_client, Api};
use super::process::{listening_url, log_file, read_log, refrain_command, Proc};

/// How long a start may take before the test fails (a debug build loading the bundle on a
/// loaded machine): only against hangs.
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// A `refrain serve` process; killed when dropped.
pub struct Server {
    /// The current run (a finished or killed one after [`Server::kill`]).
    pub proc: Proc,
    /// `http://127.0.0.1:PORT` of the current run.
    pub base: String,
    dir: PathBuf,
    config: Option<String>,
    vars: Vec<(String, String)>,
    runs: usize,
}

impl Server {
    /// `refrain serve [--config CONFIG] --listen 127.0.0.1:0 --data-dir DIR/data` with the
    /// `REFRAIN_*` variables `vars`; returns once it answers `GET /readyz` with 200.
    pub(super) fn start(dir: &Path, config: Option<String>, vars: Vec<(String, String)>) -> Server {
        let mut server = Server {
            proc: Proc::new_exited(dir.join("serve-0.log")),
            base: String::new(),
            dir: dir.to_path_buf(),
            config,
            vars,
            runs: 0,
        };
        server.spawn();
        server
    }

    /// The data directory (job store, uploads, outputs), the same for every run.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A client of this run's address.
    pub fn api(&self) -> Api {
        Api::new(&self.base)
    }

    /// `http://127.0.0.1:PORT/PATH`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn spawn(&mut self) {
        self.runs += 1;
        let log = self.dir.join(format!("serve-{}.log", self.runs));
        let mut cmd = refrain_command(&self.vars);
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
        self.proc = Proc::new(child, log);
        let deadline = Instant::now() + START_TIMEOUT;
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

    /// Polls `GET /readyz` until 200 (the in-process nodes loaded their bundle; at once with
    /// remote nodes).
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

    /// `kill -9` (if it still runs), then a new process on the same data directory, with the
    /// same configuration, on a new port.
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
        read_log(&self.dir.join(format!("serve-{n}.log")))
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
