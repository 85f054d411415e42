//! `refrain submit` and `refrain jobs`, the command-line client of Refrain's own API, against a
//! real `refrain serve` (the embedded deployment of the shared test support): a song submitted
//! and waited for lands as a valid WAV (or MP3, or two variants, or from an uploaded reference
//! recording), `jobs list`/`show`/`download` see it, `jobs cancel` stops a running and a queued
//! job (and a `submit -o` waiting on the running one exits non-zero), and what goes wrong — a
//! server nobody listens on, a request the API refuses — ends in a clear message and a non-zero
//! exit, never in a panic or a printed key.
//!
//! The server tests are skipped with a message without ONNX Runtime, except in CI.

mod support;

use std::io::{BufRead, BufReader};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::process::{log_file, refrain_command};
use support::*;

const LRC: &str = "[00:02.00]we were here before\n[00:06.00]and we sing it again\n";
const PROMPT: &str = "warm synthwave";

/// `refrain` from the workspace root, no `REFRAIN_*` variable of the caller, no proxy for
/// the local server.
fn client() -> Command {
    refrain_command(&[("NO_PROXY".into(), "127.0.0.1,localhost".into())])
}

fn run(args: &[&str]) -> Output {
    client().args(args).output().expect("refrain runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Succeeded, else panics with its output.
fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "refrain failed ({}): {}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// Failed with a message and no panic; its stderr.
fn failed(out: Output) -> String {
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "expected a failure: {}{stderr}",
        text(&out.stdout)
    );
    assert!(stderr.contains("error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// The job id `submit` prints on stdout.
fn job_id(out: &Output) -> String {
    let id = text(&out.stdout).trim().to_string();
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "not a job id: {id:?}"
    );
    id
}

fn lrc(dir: &Path) -> String {
    let path = dir.join("song.lrc");
    std::fs::write(&path, LRC).expect("lyrics file");
    path.display().to_string()
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

/// Whether `bytes` start like an MP3 (an ID3 tag or an MPEG audio frame).
fn is_mp3(bytes: &[u8]) -> bool {
    bytes.len() > 1000
        && (bytes.starts_with(b"ID3") || (bytes[0] == 0xFF && bytes[1] & 0xE0 == 0xE0))
}

#[test]
fn submit_waits_and_downloads_and_jobs_see_it() {
    let Some(app) = TestApp::embedded().steps(2).start() else {
        return;
    };
    let dir = app.dir();
    let lrc = lrc(dir);
    let base = app.base();
    let submit = |extra: &[&str]| {
        let mut args = vec!["submit", "--server", base, "--lrc", &lrc, "--length", "95"];
        args.extend_from_slice(extra);
        ok(run(&args))
    };

    // -o implies --wait: the WAV is there when the command returns.
    let wav_path = path(dir, "song.wav");
    let out = submit(&["--prompt", PROMPT, "--seed", "7", "-o", &wav_path]);
    let wav_job = job_id(&out);
    let wav = std::fs::read(&wav_path).expect("song.wav");
    assert_song_wav(&wav, latent_frames(95));
    assert!(text(&out.stderr).contains("wrote"), "{}", text(&out.stderr));

    // The format follows --format (and -o's extension).
    let mp3_path = path(dir, "song.mp3");
    let out = submit(&["--prompt", PROMPT, "--format", "mp3", "-o", &mp3_path]);
    let mp3_job = job_id(&out);
    assert!(is_mp3(&std::fs::read(&mp3_path).expect("song.mp3")));

    // Two variants: OUT and OUT-2, as `refrain generate --batch`.
    let v_path = path(dir, "v.wav");
    let out = submit(&["--prompt", PROMPT, "--variants", "2", "-o", &v_path]);
    let variants_job = job_id(&out);
    let v1 = std::fs::read(&v_path).expect("v.wav");
    let v2 = std::fs::read(dir.join("v-2.wav")).expect("v-2.wav");
    assert_song_wav(&v1, latent_frames(95));
    assert_song_wav(&v2, latent_frames(95));
    assert_ne!(v1, v2, "two variants differ");

    // A reference recording is uploaded first; --wait without -o only waits.
    let reference = dir.join("reference.wav");
    std::fs::write(&reference, sine_wav(12.0)).expect("reference.wav");
    let reference = reference.display().to_string();
    let out = submit(&["--ref-audio", &reference, "--wait"]);
    let ref_job = job_id(&out);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("uploaded"), "{stderr}");
    assert!(stderr.contains("succeeded"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "no terminal codes off a terminal"
    );

    // No temporary file is left next to the songs.
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .expect("test directory")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // `jobs list` shows them all, newest first, with the server from REFRAIN_SERVER.
    let out = ok(client()
        .env("REFRAIN_SERVER", base)
        .args(["jobs", "list"])
        .output()
        .expect("refrain runs"));
    let table = text(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("ID"), "{table}");
    for id in [&wav_job, &mp3_job, &variants_job, &ref_job] {
        let line = lines
            .iter()
            .find(|l| l.starts_with(id.as_str()))
            .unwrap_or_else(|| panic!("{id} not listed:\n{table}"));
        assert!(line.contains("succeeded"), "{line}");
        assert!(line.contains("95 s"), "{line}");
        assert!(line.contains("100%"), "{line}");
    }
    assert!(
        lines[1].starts_with(ref_job.as_str()),
        "newest first:\n{table}"
    );
    let out = ok(run(&[
        "jobs", "list", "--server", base, "--state", "failed",
    ]));
    assert!(!text(&out.stdout).contains(&wav_job));

    // `jobs show`: the job as JSON.
    let out = ok(run(&["jobs", "show", &mp3_job, "--server", base]));
    let job: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(job["id"], mp3_job.as_str());
    assert_eq!(job["state"], "succeeded");
    assert_eq!(job["request"]["format"], "mp3");

    // `jobs download`: the same bytes; without -o as ID-N.EXT in the working directory.
    let again = path(dir, "again.wav");
    ok(run(&[
        "jobs", "download", &wav_job, "--server", base, "-o", &again,
    ]));
    assert_eq!(std::fs::read(&again).expect("again.wav"), wav);
    ok(client()
        .current_dir(dir)
        .args(["jobs", "download", &variants_job, "--server", base])
        .args(["--variant", "2"])
        .output()
        .expect("refrain runs"));
    assert_eq!(
        std::fs::read(dir.join(format!("{variants_job}-2.wav"))).expect("ID-2.wav"),
        v2
    );
    let as_mp3 = path(dir, "as.mp3");
    ok(run(&[
        "jobs", "download", &wav_job, "--server", base, "--format", "mp3", "-o", &as_mp3,
    ]));
    assert!(is_mp3(&std::fs::read(&as_mp3).expect("as.mp3")));
}

#[test]
fn jobs_cancel_stops_a_running_and_a_queued_job() {
    let Some(app) = TestApp::embedded().steps(1000).start() else {
        return;
    };
    let dir = app.dir();
    let lrc = lrc(dir);
    let base = app.base();

    // A long job (four variants of the longest song at 1000 steps: long enough for the five
    // client runs below on a slow machine), followed by a `submit -o` that waits for it.
    let long_out = path(dir, "long.wav");
    let mut child = client()
        .args([
            "submit", "--server", base, "--lrc", &lrc, "--prompt", PROMPT,
        ])
        .args([
            "--length",
            "285",
            "--variants",
            "4",
            "--seed",
            "1",
            "-o",
            &long_out,
        ])
        .stdout(Stdio::piped())
        .stderr(log_file(&dir.join("submit-long.log")))
        .spawn()
        .expect("refrain submit starts");
    let mut first_line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first_line)
        .expect("the job id");
    let mut waiting = Proc::new(child, dir.join("submit-long.log"));
    let running = first_line.trim().to_string();
    app.events(&running).wait_sampling(1);

    // A second job waits behind it in the queue.
    let out = ok(run(&[
        "submit", "--server", base, "--lrc", &lrc, "--prompt", PROMPT, "--length", "285",
    ]));
    let queued = job_id(&out);
    let out = ok(run(&[
        "jobs", "list", "--server", base, "--state", "queued",
    ]));
    let table = text(&out.stdout);
    let line = table
        .lines()
        .find(|l| l.starts_with(queued.as_str()))
        .unwrap_or_else(|| panic!("{queued} not listed as queued:\n{table}"));
    assert!(line.contains("queued"), "{line}");
    assert!(line.contains("285 s"), "{line}");
    let out = ok(run(&[
        "jobs", "list", "--server", base, "--state", "running",
    ]));
    assert!(
        text(&out.stdout).contains(&running),
        "{}",
        text(&out.stdout)
    );

    // Both are cancelled.
    let out = ok(run(&["jobs", "cancel", &queued, "--server", base]));
    assert_eq!(text(&out.stdout).trim(), format!("{queued} cancelled"));
    let out = ok(run(&["jobs", "cancel", &running, "--server", base]));
    assert!(
        text(&out.stdout).starts_with(&running),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(app.events(&running).final_event().kind, "cancelled");
    assert_eq!(app.events(&queued).final_event().kind, "cancelled");

    // The waiting `submit` ends with an error naming the cancellation, and writes nothing.
    let status = waiting
        .wait_exit(Duration::from_secs(60))
        .expect("submit -o ends once its job is cancelled");
    let log = waiting.log_text();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains(&format!("error: job {running} cancelled")),
        "{log}"
    );
    assert!(!dir.join("long.wav").exists());

    // Cancelling a finished job is the API's conflict.
    let stderr = failed(run(&["jobs", "cancel", &running, "--server", base]));
    assert!(stderr.contains("job_finished"), "{stderr}");
    assert!(stderr.contains("HTTP 409"), "{stderr}");
    let out = ok(run(&["jobs", "show", &running, "--server", base]));
    let job: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(job["state"], "cancelled");
    // An unknown job is the API's 404.
    let stderr = failed(run(&["jobs", "show", &"0".repeat(32), "--server", base]));
    assert!(stderr.contains("HTTP 404"), "{stderr}");
}

/// A TCP relay in front of the server whose open connections the test can cut, as a flaky
/// network would.
struct Relay {
    base: String,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    /// With `lose_first_answer`, the first connection's request reaches the server but its
    /// answer is lost: the connection breaks as soon as the answer starts.
    fn start(server_base: &str, lose_first_answer: bool) -> Relay {
        let upstream = server_base
            .strip_prefix("http://")
            .expect("an http:// base")
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("a relay port");
        let base = format!("http://{}", listener.local_addr().expect("its address"));
        let open = Arc::new(Mutex::new(Vec::new()));
        let tracked = open.clone();
        std::thread::spawn(move || {
            let mut lose_answer = lose_first_answer;
            for client in listener.incoming().map_while(Result::ok) {
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let socket = |s: &TcpStream| s.try_clone().expect("socket");
                tracked
                    .lock()
                    .unwrap()
                    .extend([socket(&client), socket(&server)]);
                let (mut from, mut to) = (socket(&client), socket(&server));
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(Shutdown::Write);
                });
                if std::mem::take(&mut lose_answer) {
                    std::thread::spawn(move || {
                        let _ = std::io::Read::read(&mut &server, &mut [0u8; 1]);
                        let _ = client.shutdown(Shutdown::Both);
                        let _ = server.shutdown(Shutdown::Both);
                    });
                    continue;
                }
                let (mut from, mut to) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(Shutdown::Write);
                });
            }
        });
        Relay { base, open }
    }

    /// Cuts every connection open now.
    fn cut(&self) {
        for socket in self.open.lock().unwrap().drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

#[test]
fn a_job_request_sent_again_after_a_lost_answer_makes_one_job() {
    let Some(app) = TestApp::embedded().steps(2).start() else {
        return;
    };
    let relay = Relay::start(app.base(), true);
    let lrc = lrc(app.dir());
    let out = ok(run(&[
        "submit",
        "--server",
        &relay.base,
        "--lrc",
        &lrc,
        "--prompt",
        PROMPT,
    ]));
    let id = job_id(&out);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("sending again (1/3)"), "{stderr}");
    // The server created the job on the first send and answered the second with it.
    let listed = ok(run(&["jobs", "list", "--server", app.base()]));
    let table = text(&listed.stdout);
    assert_eq!(table.lines().count(), 2, "one job:\n{table}");
    assert!(table.lines().nth(1).unwrap().starts_with(&id), "{table}");
}

#[test]
fn submit_wait_reconnects_after_a_dropped_connection() {
    let Some(app) = TestApp::embedded().steps(1000).start() else {
        return;
    };
    let dir = app.dir();
    let lrc = lrc(dir);
    let relay = Relay::start(app.base(), false);
    let out = path(dir, "long.wav");
    let log = dir.join("submit-relay.log");
    let mut child = client()
        .args([
            "submit",
            "--server",
            &relay.base,
            "--lrc",
            &lrc,
            "--prompt",
            PROMPT,
        ])
        .args(["--length", "285", "--seed", "3", "-o", &out])
        .stdout(Stdio::piped())
        .stderr(log_file(&log))
        .spawn()
        .expect("refrain submit starts");
    let mut first_line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first_line)
        .expect("the job id");
    let mut waiting = Proc::new(child, log);
    let id = first_line.trim().to_string();
    app.events(&id).wait_sampling(1);

    // The event stream drops while the job samples; the client resumes after the last event
    // it saw (Last-Event-ID): nothing is shown twice, and the song is downloaded.
    relay.cut();
    let status = waiting
        .wait_exit(Duration::from_secs(120))
        .expect("submit -o ends with its job");
    let log = waiting.log_text();
    assert!(status.success(), "{log}");
    assert!(log.contains("reconnecting"), "{log}");
    for once in [": queued", ": started", ": succeeded"] {
        assert_eq!(log.matches(once).count(), 1, "{once} once:\n{log}");
    }
    assert_song_wav(&std::fs::read(&out).expect("long.wav"), latent_frames(285));
}

#[test]
fn a_refused_request_prints_the_api_message() {
    let Some(app) = TestApp::embedded().steps(2).start() else {
        return;
    };
    let lrc = lrc(app.dir());
    let out = path(app.dir(), "never.wav");
    let stderr = failed(run(&[
        "submit",
        "--server",
        app.base(),
        "--lrc",
        &lrc,
        "--prompt",
        PROMPT,
        "--length",
        "50",
        "-o",
        &out,
    ]));
    assert!(
        stderr.contains("audio length 50 s is not supported"),
        "{stderr}"
    );
    assert!(stderr.contains("invalid_length"), "{stderr}");
    assert!(stderr.contains("field length_seconds"), "{stderr}");
    assert!(stderr.contains("HTTP 400"), "{stderr}");
    assert!(!Path::new(&out).exists());
    // Nothing was created.
    let listed = ok(run(&["jobs", "list", "--server", app.base()]));
    assert_eq!(text(&listed.stdout), "", "{}", text(&listed.stderr));
}

#[test]
fn the_key_is_sent_as_a_bearer_token_and_never_printed() {
    let Some(app) = TestApp::embedded().steps(2).start() else {
        return;
    };
    let key =
        refrain_orchestrator::api::v1::auth::add_key(&app.data_dir().join("api-keys.json"), "cli")
            .expect("a key");
    let base = app.base();
    let stderr = failed(run(&["jobs", "list", "--server", base]));
    assert!(stderr.contains("HTTP 401"), "{stderr}");

    let lrc = lrc(app.dir());
    let out = ok(client()
        .env("REFRAIN_API_KEY", &key)
        .args([
            "submit", "--server", base, "--lrc", &lrc, "--prompt", PROMPT, "--wait",
        ])
        .output()
        .expect("refrain runs"));
    let id = job_id(&out);
    assert!(!text(&out.stderr).contains(&key), "{}", text(&out.stderr));
    let out = ok(run(&["jobs", "show", &id, "--server", base, "--key", &key]));
    let job: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(job["owner"], "key:cli", "{job}");
    let stderr = failed(run(&[
        "jobs", "list", "--server", base, "--key", "rf_wrong",
    ]));
    assert!(stderr.contains("HTTP 401"), "{stderr}");
    assert!(!stderr.contains("rf_wrong"), "{stderr}");
}

/// Needs no server (and no ONNX Runtime): a port that refuses for the whole test.
#[test]
fn an_unreachable_server_is_a_clear_error() {
    let (_refusing, port) = refusing_port();
    let server = format!("http://127.0.0.1:{port}");
    let secret = "rf_never_printed_secret";
    let stderr = failed(run(&["jobs", "list", "--server", &server, "--key", secret]));
    assert!(
        stderr.contains(&format!("cannot reach the Refrain server at {server}")),
        "{stderr}"
    );
    assert!(!stderr.contains(secret), "{stderr}");

    // `submit` sends its request again (3 times) before it gives up; the key from the
    // environment is not printed either.
    let lrc = std::env::temp_dir().join(format!("refrain-client-{port}.lrc"));
    std::fs::write(&lrc, LRC).expect("lyrics file");
    let out = client()
        .env("REFRAIN_SERVER", &server)
        .env("REFRAIN_API_KEY", secret)
        .args(["submit", "--prompt", PROMPT, "--lrc"])
        .arg(&lrc)
        .output()
        .expect("refrain runs");
    let _ = std::fs::remove_file(&lrc);
    let stderr = failed(out);
    assert!(stderr.contains("sending again (3/3)"), "{stderr}");
    assert!(
        stderr.contains("cannot reach the Refrain server"),
        "{stderr}"
    );
    assert!(!stderr.contains(secret), "{stderr}");

    let stderr = failed(run(&["jobs", "list", "--server", "ftp://example.org"]));
    assert!(stderr.contains("invalid server URL"), "{stderr}");
    let stderr = failed(run(&["jobs", "show", "../etc", "--server", &server]));
    assert!(stderr.contains("is not a job id"), "{stderr}");
}
