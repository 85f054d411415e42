//! End-to-end tests of `refrain serve` under load and across its life: many parallel
//! submissions and polls (every job once, none lost, no 5xx), the single-job server of
//! `queue.capacity = 0` (503 + Retry-After) and graceful shutdown on SIGTERM (exit 0, the job
//! finishes after a restart, with the bytes an uninterrupted run gives). The real binary runs as
//! a child process on port 0 with its own data directory, driven over HTTP on 127.0.0.1; see
//! `tests/server.rs` for the client flow and error answers, and `tests/support` for the harness.
//!
//! The tests run one at a time (some time a running job on 2 cores). Without ONNX Runtime they
//! are skipped with a message, except in CI (`CI` set), where they fail.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header;
use serde_json::Value;
use support::spec::*;
use support::*;

/// The tests of this file run one after another.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

const GENEROUS: Duration = Duration::from_secs(120);

#[test]
fn many_parallel_submissions_and_polls() {
    let _serial = serial();
    const SUBMITTERS: usize = 24;
    const POLLERS: usize = 16;
    let Some(app) = TestApp::embedded().steps(2).start() else {
        return;
    };
    let server = &app.server;
    let base = server.base.clone();

    let urls: Arc<Mutex<Vec<String>>> = Arc::default();
    let finished = Arc::new(AtomicBool::new(false));
    let server_errors = Arc::new(AtomicUsize::new(0));
    let polls = Arc::new(AtomicUsize::new(0));
    let saw_queue_position = Arc::new(AtomicBool::new(false));

    // Pollers hammer every status URL known so far, and /status.
    let pollers: Vec<_> = (0..POLLERS)
        .map(|k| {
            let (urls, finished, server_errors, polls, seen, base) = (
                urls.clone(),
                finished.clone(),
                server_errors.clone(),
                polls.clone(),
                saw_queue_position.clone(),
                base.clone(),
            );
            std::thread::spawn(move || {
                let http = local_client();
                let mut last: HashMap<String, u64> = HashMap::new();
                while !finished.load(Ordering::SeqCst) {
                    let known = urls.lock().unwrap().clone();
                    let targets = if known.is_empty() {
                        vec!["/status".to_string()]
                    } else {
                        let mut t = known;
                        let shift = k % t.len();
                        t.rotate_left(shift);
                        t.push("/status".into());
                        t
                    };
                    for url in targets {
                        let r = http.get(format!("{base}{url}")).send().expect("GET");
                        polls.fetch_add(1, Ordering::SeqCst);
                        let code = r.status().as_u16();
                        if code >= 500 {
                            server_errors.fetch_add(1, Ordering::SeqCst);
                            eprintln!("{code} for {url}: {:?}", r.text());
                            continue;
                        }
                        assert_eq!(code, 200, "{url}");
                        if header_of(&r, header::CONTENT_TYPE) == "audio/wav" {
                            continue;
                        }
                        let body: Value = r.json().expect("JSON");
                        if url == "/status" {
                            continue;
                        }
                        assert_eq!(body["status"], "processing", "{url}: {body}");
                        if body.get("queue_position").is_some() {
                            seen.store(true, Ordering::SeqCst);
                        }
                        let percent = body["progress_percent"].as_u64().expect("percent");
                        let before = last.insert(url.clone(), percent).unwrap_or(0);
                        assert!(percent >= before, "{url}: {before} → {body}");
                    }
                }
            })
        })
        .collect();

    // Submitters, all at once. Seeds repeat: equal requests must give equal bytes.
    let start = Arc::new(std::sync::Barrier::new(SUBMITTERS));
    let submitters: Vec<_> = (0..SUBMITTERS)
        .map(|i| {
            let (urls, base, start) = (urls.clone(), base.clone(), start.clone());
            std::thread::spawn(move || {
                let http = local_client();
                let seed = (i % 4) as u64;
                start.wait();
                let r = http
                    .post(format!("{base}/generate"))
                    .multipart(song_form(95, seed))
                    .send()
                    .expect("POST /generate");
                let (id, url) = accepted(r);
                urls.lock().unwrap().push(url.clone());
                (id, url, seed)
            })
        })
        .collect();
    let jobs: Vec<(String, String, u64)> = submitters
        .into_iter()
        .map(|t| t.join().expect("submitter"))
        .collect();

    let api = server.api();
    let mut wavs: HashMap<String, Vec<u8>> = HashMap::new();
    for (id, url, _) in &jobs {
        match api.wait(url, GENEROUS) {
            Done::Wav(bytes) => {
                assert_song_wav(&bytes, 2048);
                wavs.insert(id.clone(), bytes);
            }
            Done::Failed(body) => panic!("{url}: {body}"),
        }
    }
    // Let the pollers see the finished files for a moment, then stop them.
    std::thread::sleep(Duration::from_millis(300));
    finished.store(true, Ordering::SeqCst);
    for p in pollers {
        p.join().expect("poller");
    }
    assert_eq!(server_errors.load(Ordering::SeqCst), 0, "5xx answers");
    eprintln!(
        "{} polls; queue_position seen: {}",
        polls.load(Ordering::SeqCst),
        saw_queue_position.load(Ordering::SeqCst)
    );

    // Every accepted job ran exactly once, one at a time, and succeeded.
    let ids: BTreeSet<&str> = jobs.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(ids.len(), SUBMITTERS, "distinct job ids");
    let events = node_events(&server.proc.log_text());
    let runs = one_at_a_time("cpu", &events);
    let ran: BTreeSet<&str> = runs.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(runs.len(), SUBMITTERS, "runs: {runs:?}");
    assert_eq!(ran, ids);
    assert!(runs.iter().all(|(_, attempt)| *attempt == 1), "{runs:?}");
    let succeeded = events
        .iter()
        .filter(|e| matches!(e, NodeLogEvent::Finished { how, .. } if how == "succeeded"))
        .count();
    assert_eq!(succeeded, SUBMITTERS);

    let status = api.get_json("/status");
    assert_eq!(status["jobs"]["succeeded"], SUBMITTERS, "{status}");
    for state in ["queued", "running", "failed", "cancelled"] {
        assert_eq!(status["jobs"][state], 0, "{status}");
    }

    // One result file per job, and nothing else.
    let files = api.get_json("/files");
    let listed: BTreeSet<String> = files["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["url"].as_str().unwrap().to_string())
        .collect();
    let accepted_urls: BTreeSet<String> = jobs.iter().map(|(_, u, _)| u.clone()).collect();
    assert_eq!(listed, accepted_urls);
    let on_disk = std::fs::read_dir(server.data_dir().join("outputs"))
        .unwrap()
        .count();
    assert_eq!(on_disk, SUBMITTERS, "files in the output folder");

    // Same request, same bytes; another seed, other bytes.
    let mut by_seed: HashMap<u64, &Vec<u8>> = HashMap::new();
    for (id, _, seed) in &jobs {
        let wav = &wavs[id];
        match by_seed.get(seed) {
            Some(first) => assert!(*first == wav, "seed {seed} gave two results"),
            None => {
                by_seed.insert(*seed, wav);
            }
        }
    }
    assert!(
        by_seed[&0] != by_seed[&1],
        "seeds 0 and 1 gave the same song"
    );
}

#[test]
fn capacity_zero_is_the_single_job_server() {
    let _serial = serial();
    let Some(app) = TestApp::embedded()
        .steps(300)
        .env("REFRAIN_QUEUE__CAPACITY", 0)
        .start()
    else {
        return;
    };
    let server = &app.server;
    let api = server.api();
    let http = &api.http;
    let (_, url) = accepted(
        http.post(server.url("/generate"))
            .multipart(song_form(285, 1))
            .send()
            .unwrap(),
    );

    // Right after the 202 (queued or already running), and while it runs, a second submission
    // is refused.
    let busy = || {
        let r = http
            .post(server.url("/generate"))
            .multipart(song_form(95, 2))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 503);
        assert_eq!(header_of(&r, header::RETRY_AFTER), "30");
        let body: Value = r.json().unwrap();
        assert_eq!(body["status"], "busy", "{body}");
        assert_eq!(body["retry_after"], 30, "{body}");
    };
    busy();
    wait_json(&api, &url, GENEROUS, |b| {
        b["state"] == "running" && b["stage"] == "sampling"
    });
    busy();
    let status = api.get_json("/status");
    assert_eq!(status["server_busy"], true, "{status}");
    assert_eq!(status["queue"]["capacity"], 0, "{status}");

    match api.wait(&url, GENEROUS) {
        Done::Wav(bytes) => {
            assert_song_wav(&bytes, latent_frames(285));
        }
        Done::Failed(body) => panic!("{body}"),
    }
    // Free again.
    let (_, url2) = accepted(
        http.post(server.url("/generate"))
            .multipart(song_form(95, 2))
            .send()
            .unwrap(),
    );
    assert!(matches!(api.wait(&url2, GENEROUS), Done::Wav(_)));
    let metrics = api.metrics();
    assert_eq!(
        metric(&metrics, "refrain_jobs_rejected_busy_total"),
        Some(2.0),
        "{metrics}"
    );
}

#[test]
fn sigterm_stops_gracefully_and_the_job_finishes_after_a_restart() {
    let _serial = serial();
    const N: u32 = 400;
    let Some(mut app) = TestApp::embedded().steps(N).start() else {
        return;
    };
    let server = &mut app.server;
    let api = server.api();
    let r = api
        .http
        .post(server.url("/generate"))
        .multipart(song_form(285, 42))
        .send()
        .unwrap();
    let (id, url) = accepted(r);
    let running = wait_json(&api, &url, GENEROUS, |b| {
        b["state"] == "running" && b["stage"] == "sampling"
    });
    assert_eq!(running["attempt"], 1);

    let asked = Instant::now();
    let exit = server
        .terminate(Duration::from_secs(20))
        .expect("refrain serve exits after SIGTERM");
    eprintln!("stopped in {:?}", asked.elapsed());
    assert!(exit.success(), "exit status {exit:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "graceful shutdown took {:?}",
        asked.elapsed()
    );
    let log = server.log_of_run(1);
    assert!(log.contains("job interrupted"), "{log}");
    assert!(!log.contains("job succeeded"), "{log}");

    // Same data directory: the job is still there, and runs again.
    server.restart();
    let api = server.api();
    let wav = match api.wait(&url, GENEROUS) {
        Done::Wav(bytes) => bytes,
        Done::Failed(body) => panic!("{body}"),
    };
    assert_song_wav(&wav, latent_frames(285));
    let runs = one_at_a_time("cpu", &node_events(&server.log_of_run(2)));
    // A graceful hand-back is not a failed attempt: the job runs again as attempt 1.
    assert_eq!(runs, vec![(id, 1)], "the second run: {runs:?}");
    // The interrupted job gives the bytes of an uninterrupted run of the same request.
    let reference = generate_reference(app.dir(), LYRICS, PROMPT, 285, 42, N);
    assert!(
        wav == reference,
        "the resumed job's WAV differs from `refrain generate`"
    );
}
