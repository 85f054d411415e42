//! Child processes of the tests: the `refrain` binary started from the workspace root with a
//! clean environment (no inherited `REFRAIN_*` variable, only the test's own), its output in a
//! log file of the test directory, and the handle that kills it (`kill -9`) when dropped,
//! sends it signals and reads its log back.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::prereq::workspace;

/// A child process with its log file; killed (`kill -9`) when dropped.
pub struct Proc {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    pub fn new(child: Child, log: PathBuf) -> Proc {
        Proc {
            child: Some(child),
            log,
        }
    }

    /// A handle of no process (yet): its log path only.
    pub fn new_exited(log: PathBuf) -> Proc {
        Proc { child: None, log }
    }

    /// `kill -9` (nothing if it already exited or was killed).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The log so far (checked to hold no colour codes).
    pub fn log_text(&self) -> String {
        read_log(&self.log)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

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

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `refrain` from the workspace root (where `models/test-bundle`, `config/` and `.ort/lib`
/// resolve), without the caller's `REFRAIN_*` variables, with `vars`, info logs, no colours.
pub fn refrain_command(vars: &[(String, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_refrain"));
    cmd.current_dir(workspace());
    for (k, _) in std::env::vars() {
        if k.starts_with("REFRAIN_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("RUST_LOG", "info,ort=warn").env("NO_COLOR", "1");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

/// A log file opened for appending (every start of a process adds to it or writes its own).
pub fn log_file(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("log file")
}

/// The base URL `refrain serve` prints (`listening on http://…`) once it listens, read from
/// the child's piped stdout on a thread.
pub fn listening_url(child: &mut Child) -> mpsc::Receiver<String> {
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

/// Reads a log written by a `refrain` process, checking that it holds no terminal colour codes:
/// with stderr redirected to a file, `refrain` must not colour its logs.
pub fn read_log(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        !text.contains('\u{1b}'),
        "{} holds ANSI escape codes although stderr is not a terminal",
        path.display()
    );
    text
}
