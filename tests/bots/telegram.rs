//! The set-up the `refrain bots` Telegram tests share (included by tests/bots.rs and
//! tests/bots_restart.rs): a real `refrain serve` behind a loopback forwarder, an API key
//! trusted for Telegram users, the fake Bot API and the `refrain bots` process, plus readers of
//! what the fake Bot API received.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::fake_telegram::{Call, FakeTelegram};
use super::proxy::Proxy;
use super::support;
use super::support::process::{log_file, refrain_command, Proc};
use super::support::TestApp;

/// Against hangs only.
pub const SONG_TIMEOUT: Duration = Duration::from_secs(300);
pub const USER: i64 = 7;
pub const EDIT_INTERVAL_MS: u64 = 500;

pub struct Setup {
    pub app: TestApp,
    pub telegram: FakeTelegram,
    pub proxy: Proxy,
    pub key: String,
    pub config: PathBuf,
    pub bots: Proc,
    pub runs: usize,
}

impl Setup {
    /// The server (every job with `steps` sampler steps), an API key trusted for Telegram
    /// users, the fake Bot API and `refrain bots`.
    pub fn start(steps: u32) -> Option<Setup> {
        Setup::start_with(steps, "")
    }

    /// [`Setup::start`] with more `[bots.telegram]` settings.
    pub fn start_with(steps: u32, telegram_extra: &str) -> Option<Setup> {
        let app = TestApp::embedded().steps(steps).start()?;
        let out = refrain_command(&[])
            .args([
                "keys",
                "add",
                "bot",
                "--on-behalf-of",
                "telegram",
                "--data-dir",
            ])
            .arg(app.data_dir())
            .output()
            .expect("refrain keys runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let telegram = FakeTelegram::start();
        let proxy = Proxy::start(app.base());
        let config = app.dir().join("bots.toml");
        std::fs::write(
            &config,
            format!(
                "[bots]\nserver = \"{}\"\napi_key = \"{key}\"\n[bots.limits]\nconcurrent = 1\n\
                 [bots.telegram]\ntoken = \"123:TEST\"\napi_url = \"{}\"\n\
                 edit_interval_ms = {EDIT_INTERVAL_MS}\npoll_timeout_seconds = 1\n{telegram_extra}",
                proxy.url, telegram.url
            ),
        )
        .unwrap();
        let mut setup = Setup {
            bots: Proc::new_exited(app.dir().join("bots-0.log")),
            app,
            telegram,
            proxy,
            key,
            config,
            runs: 0,
        };
        setup.start_bots();
        Some(setup)
    }

    pub fn start_bots(&mut self) {
        self.runs += 1;
        let log = self.app.dir().join(format!("bots-{}.log", self.runs));
        let child = refrain_command(&[])
            .arg("bots")
            .arg("--config")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log_file(&log))
            .spawn()
            .expect("refrain bots starts");
        self.bots = Proc::new(child, log);
    }

    /// The job as the API shows it.
    pub fn job(&self, id: &str) -> Value {
        support::local_client()
            .get(self.app.url(&format!("/api/v1/jobs/{id}")))
            .bearer_auth(&self.key)
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    /// The jobs on the server, newest first.
    pub fn jobs(&self) -> Vec<Value> {
        let page: Value = support::local_client()
            .get(self.app.url("/api/v1/jobs"))
            .bearer_auth(&self.key)
            .send()
            .unwrap()
            .json()
            .unwrap();
        page["jobs"].as_array().cloned().unwrap_or_default()
    }

    pub fn wait_job(&self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + SONG_TIMEOUT;
        loop {
            if let Some(job) = self.jobs().into_iter().find(&check) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "no job {what}: {:?}",
                self.jobs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn logs(&self) -> String {
        (1..=self.runs)
            .map(|n| support::process::read_log(&self.app.dir().join(format!("bots-{n}.log"))))
            .collect()
    }
}

/// The progress edits of message `id`, in order.
pub fn edits_of(calls: &[Call], id: i64) -> Vec<Call> {
    calls
        .iter()
        .filter(|c| c.method == "editmessagetext" && c.body["message_id"].as_i64() == Some(id))
        .cloned()
        .collect()
}

/// The share a progress text shows (`▓▓░… 42%`), if it shows one.
pub fn percent(text: &str) -> Option<u32> {
    text.split_whitespace()
        .find_map(|w| w.strip_suffix('%').and_then(|n| n.parse().ok()))
}

/// The progress message's id, from the bot's first edit (after its first reply).
pub fn progress_message(telegram: &FakeTelegram) -> i64 {
    telegram.wait_for(SONG_TIMEOUT, "a progress edit", |calls| {
        calls.iter().any(|c| c.method == "editmessagetext")
    });
    let calls = telegram.calls();
    let replies = calls.iter().filter(|c| c.method == "sendmessage").count();
    assert_eq!(replies, 1, "one progress message");
    calls
        .iter()
        .find(|c| c.method == "editmessagetext")
        .and_then(|c| c.body["message_id"].as_i64())
        .unwrap()
}

/// Every song is 285 s, the longest: with 1000 sampler steps it takes some seconds on the
/// test bundle, time for several progress edits, a cancel or a restart.
pub const LENGTH: u32 = 285;

pub fn song_command() -> String {
    format!("/song {LENGTH} warm piano ballad\n[00:10.00] hello world\n[00:20.00] second line")
}
