//! Durability of the embedded deployment: `refrain serve` runs as a child process, gets jobs
//! over HTTP, and is killed with SIGKILL (`kill -9`) at different moments — right after a 202,
//! in the middle of a generation, right after a job finished — then started again on the same
//! data directory (and a new port).
//!
//! Every job that got a 202 must complete exactly once (one `succeeded` in its event stream,
//! whose history survives every kill; the store's counts; one result file each), its output
//! URL must still work after the restarts, and a job interrupted any number of times must give
//! the bytes of an uninterrupted run of the same request (`refrain generate` with the same
//! lyrics, prompt, length, seed and steps): no job runs to two different results. The moments
//! to kill at are found on the event stream; the logs are read only for what the node did (one
//! job at a time, no failed attempt).
//!
//! Without ONNX Runtime (tools/fetch-onnxruntime.sh) the tests are skipped with a message,
//! except in CI (`CI` set), where they fail. A failed test keeps its directory (the logs of every
//! run) and prints its path.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use support::*;

/// The tests of this file run one after another (they time kills on 2 cores).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

const GENEROUS: Duration = Duration::from_secs(180);

fn wav(api: &Api, job: &SongJob) -> Vec<u8> {
    match api.wait(&job.url, GENEROUS) {
        Done::Wav(bytes) => bytes,
        Done::Failed(body) => panic!("job {} failed: {body}", job.id),
    }
}

/// Waits until `job` runs in the server's current run and has made `steps` sampler steps
/// (events of earlier runs are skipped).
fn wait_running(api: &Api, job: &SongJob, steps: u64) -> JobEvent {
    let seen = api.job(&job.id)["event_seq"].as_u64().unwrap_or(0);
    api.events_after(&job.id, seen).wait_sampling(steps)
}

/// Waits for the job's `succeeded` event; returns its WAV at once.
fn wait_wav_now(api: &Api, job: &SongJob) -> Vec<u8> {
    let done = api.events(&job.id).final_event();
    assert_eq!(done.kind, "succeeded", "job {}: {:?}", job.id, done.data);
    wav(api, job)
}

/// What each job went through, from its events: job → attempts started (in order), and how
/// many times it succeeded. A job that failed, was cancelled or expired fails the test.
fn runs_of(api: &Api, jobs: &[SongJob]) -> (BTreeMap<String, Vec<u64>>, BTreeMap<String, usize>) {
    let mut started = BTreeMap::new();
    let mut succeeded = BTreeMap::new();
    for job in jobs {
        let summary = api.summary(&job.id);
        assert!(
            summary.ended_otherwise.is_empty(),
            "job {} ended {:?}",
            job.id,
            summary.ended_otherwise
        );
        started.insert(job.id.clone(), summary.attempts());
        succeeded.insert(job.id.clone(), summary.succeeded);
    }
    (started, succeeded)
}

/// What the node did, which no job's events tell, from the log of every run: one job at a
/// time, only accepted jobs, and no run that failed (a kill -9 leaves no line).
fn check_node_runs(server: &Server, jobs: &[SongJob]) {
    let accepted: BTreeSet<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    for run in 1..=server.runs() {
        let events = node_events(&server.log_of_run(run));
        for (job, _) in one_at_a_time(&format!("cpu (run {run})"), &events) {
            assert!(
                accepted.contains(job.as_str()),
                "run {run}: the node ran {job}, which nobody submitted"
            );
        }
        for e in events {
            if let NodeLogEvent::Finished { job, how } = e {
                assert_eq!(how, "succeeded", "run {run}: job {job} ended {how}");
            }
        }
    }
}

/// The checks after the last restart: every job completed exactly once, with the bytes of an
/// uninterrupted run, under its original URL.
fn check_all_once(server: &Server, dir: &std::path::Path, jobs: &[SongJob], steps: u32) {
    let api = server.api();
    let mut results = Vec::new();
    for job in jobs {
        let bytes = wav(&api, job);
        assert_song_wav(&bytes, latent_frames(job.seconds));
        // HEAD on the same URL after the restarts.
        let head = api.http.head(server.url(&job.url)).send().unwrap();
        assert_eq!(head.status().as_u16(), 200);
        assert_eq!(
            head.headers()["content-length"].to_str().unwrap(),
            bytes.len().to_string()
        );
        results.push(bytes);
    }

    check_node_runs(server, jobs);
    let (started, succeeded) = runs_of(&api, jobs);
    for job in jobs {
        assert_eq!(
            succeeded.get(&job.id),
            Some(&1),
            "job {} succeeded once: {succeeded:?}",
            job.id
        );
        let attempts = &started[&job.id];
        assert!(
            attempts.iter().all(|a| *a == 1),
            "job {}: attempts {attempts:?} (a kill is not the job's fault: it uses up no attempt)",
            job.id
        );
    }

    let status = api.get_json("/status");
    assert_eq!(status["jobs"]["succeeded"], jobs.len(), "{status}");
    for state in ["queued", "running", "failed", "cancelled"] {
        assert_eq!(status["jobs"][state], 0, "{status}");
    }
    let listed: BTreeSet<String> = api.get_json("/files")["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["url"].as_str().unwrap().to_string())
        .collect();
    let urls: BTreeSet<String> = jobs.iter().map(|j| j.url.clone()).collect();
    assert_eq!(listed, urls, "one result file per job");

    // The same request always gives the same bytes: those of an uninterrupted run (so jobs of
    // the same request are equal too).
    let mut oracle = Oracle::new(dir, steps);
    for (job, bytes) in jobs.iter().zip(&results) {
        assert!(
            oracle.matches(job, bytes),
            "job {} ({} s, seed {}) differs from an uninterrupted run",
            job.id,
            job.seconds,
            job.seed
        );
    }
}

#[test]
fn kill_9_right_after_202_mid_generation_and_after_a_finish() {
    let _serial = serial();
    const STEPS: u32 = 200;
    let Some(mut app) = TestApp::embedded().steps(STEPS).start() else {
        return;
    };
    let server = &mut app.server;

    // Run 1: killed right after the 202.
    let a = server.api().submit_song(285, 11);
    server.kill();

    // Run 2: the job is still there; two more arrive; killed while the first one samples.
    server.restart();
    let api = server.api();
    let b = api.submit_song(285, 12);
    let c = api.submit_song(96, 13);
    let running = wait_running(&api, &a, 5);
    eprintln!(
        "run 2: killing during step {} of {}",
        running.data["step"], running.data["total"]
    );
    server.kill();

    // Run 3: the interrupted job runs again from the start; killed as soon as it is served.
    server.restart();
    let api = server.api();
    let queued = api.poll(&b.url).expect_err("b still waits");
    assert_eq!(queued["state"], "queued", "{queued}");
    let first = wait_wav_now(&api, &a);
    server.kill();

    // Run 4: everything completes; the finished job is not run again.
    server.restart();
    let api = server.api();
    match api.poll(&a.url) {
        Ok(Done::Wav(bytes)) => assert!(bytes == first, "the served result changed"),
        other => panic!("a finished job is served at once after a restart: {other:?}"),
    }
    let jobs = [a, b, c];
    check_all_once(&app.server, app.dir(), &jobs, STEPS);
    let (started, _) = runs_of(&app.api(), &jobs);
    eprintln!("attempts per job: {started:?}");
    let a_runs = &started[&jobs[0].id];
    assert!(
        a_runs.len() >= 2,
        "the first job was interrupted at least once: {a_runs:?}"
    );
}

#[test]
fn kill_9_repeatedly_under_a_queue_of_jobs() {
    let _serial = serial();
    const STEPS: u32 = 150;
    let Some(mut app) = TestApp::embedded().steps(STEPS).start() else {
        return;
    };
    let server = &mut app.server;
    // Six jobs on both models, two requests twice.
    let api = server.api();
    let jobs: Vec<SongJob> = [(95, 0), (120, 1), (95, 0), (120, 1), (95, 2), (120, 3)]
        .into_iter()
        .map(|(seconds, seed)| api.submit_song(seconds, seed))
        .collect();

    // Kill at a few moments: while the first job samples, while a later one samples, and
    // right after a later one was served.
    let running = wait_running(&api, &jobs[0], 3);
    eprintln!("kill 1 at step {}", running.data["step"]);
    server.kill();
    server.restart();
    wait_running(&server.api(), &jobs[2], 1);
    server.kill();
    server.restart();
    wait_wav_now(&server.api(), &jobs[3]);
    server.kill();

    server.restart();
    check_all_once(&app.server, app.dir(), &jobs, STEPS);
}

/// The same job killed under it more times than `inference.max_attempts` (3) still succeeds:
/// interruptions use up no attempt, and the record says how many there were.
#[test]
fn a_job_killed_more_often_than_its_attempts_still_succeeds() {
    let _serial = serial();
    const STEPS: u32 = 200;
    let Some(mut app) = TestApp::embedded().steps(STEPS).start() else {
        return;
    };
    let server = &mut app.server;
    let job = server.api().submit_song(95, 21);
    for kill in 1..=4 {
        let running = wait_running(&server.api(), &job, 2);
        eprintln!("kill {kill} at step {}", running.data["step"]);
        server.kill();
        server.restart();
    }
    let api = server.api();
    let jobs = [job];
    check_all_once(&app.server, app.dir(), &jobs, STEPS);
    let record = api.get_json(&format!("/api/v1/jobs/{}", jobs[0].id));
    assert_eq!(record["attempt"], 1, "{record}");
    assert_eq!(record["interruptions"], 4, "{record}");
    let requeued = api
        .history(&jobs[0].id)
        .iter()
        .filter(|e| e.kind == "requeued")
        .count();
    assert_eq!(requeued, 4, "one requeued event per kill");
}
