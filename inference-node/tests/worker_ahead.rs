//! The worker loop prepares the next job while the current one runs: the job the link's
//! `peek` names has its upload fetched before the loop is handed that job, and both jobs end
//! with their songs; a job `peek` did not foresee is prepared when it comes. Once the next job
//! is taken (during the running job's decode), looking ahead stops, so a long decode does not
//! make the loop prepare the job after it in its place; a job that was not foreseen is
//! prepared once taken, during the decode of the job before it. A preparation still under way
//! when its job is taken is finished, not started again.

mod common;

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use protocol::node::{Assignment, LinkError, NodeLink, Outcome, WorkerSettings};
use protocol::{JobId, JobSpec, ProgressEvent, Stage};
use refrain_inference::pipeline::{Generator, GeneratorConfig};
use refrain_inference::worker;
use tokio_util::sync::CancellationToken;

/// Hands out its jobs in order; `peek` names the next one when `foresee` is set. Records what
/// the loop asked for, in order.
struct Jobs {
    queue: Mutex<VecDeque<Assignment>>,
    foresee: bool,
    calls: Mutex<Vec<String>>,
    style: Vec<u8>,
    finished: tokio::sync::Notify,
    /// The first decode event of this job is held this long (a long decode).
    slow_decode: Option<(u64, Duration)>,
    /// This job's upload is handed out only once the job was taken (a slow fetch, still
    /// under way when the job is taken).
    held_blob: Option<u8>,
}

impl Jobs {
    fn log(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
}

#[async_trait::async_trait]
impl NodeLink for Jobs {
    async fn next(&self) -> Result<Assignment, LinkError> {
        let job = self.queue.lock().unwrap().pop_front();
        match job {
            Some(j) => {
                self.log(format!("next {}", j.handle));
                Ok(j)
            }
            None => std::future::pending().await,
        }
    }
    async fn progress(&self, job: &Assignment, event: ProgressEvent) {
        if let Some((handle, hold)) = self.slow_decode {
            if job.handle == handle && event.stage == Stage::Decode && event.step == 1 {
                tokio::time::sleep(hold).await;
                self.log(format!("slow decode {handle} done"));
            }
        }
    }
    async fn blob(&self, job: &JobId, name: &str) -> Result<Vec<u8>, LinkError> {
        let n = job.as_str().as_bytes()[1] as char;
        self.log(format!("blob {n} {name}"));
        if self
            .held_blob
            .is_some_and(|h| h.to_string() == n.to_string())
        {
            let taken = format!("next {n}");
            while !self.calls.lock().unwrap().contains(&taken) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        Ok(self.style.clone())
    }
    async fn earlier_result(&self, _for: &JobId, job: &JobId) -> Result<Vec<u8>, LinkError> {
        Err(LinkError::new(format!("no result of {job}")))
    }
    async fn finish(&self, job: Assignment, outcome: Outcome) -> Result<(), LinkError> {
        let how = match outcome {
            Outcome::Succeeded { wavs, .. } => format!("succeeded {}", wavs.len()),
            Outcome::Invalid(m) => format!("invalid {m}"),
            Outcome::Retry(m) => format!("retry {m}"),
            Outcome::Interrupted => "interrupted".into(),
            Outcome::Cancelled => "cancelled".into(),
        };
        self.log(format!("finish {} {how}", job.handle));
        self.finished.notify_one();
        Ok(())
    }
    async fn peek(&self) -> Option<(JobId, JobSpec)> {
        if !self.foresee {
            return None;
        }
        let queue = self.queue.lock().unwrap();
        queue.front().map(|j| (j.id.clone(), j.spec.clone()))
    }
}

fn job(n: u8) -> Assignment {
    // The id's first byte is the job's number: its hex form's second digit, for the blob log.
    common::assignment(
        n,
        serde_json::json!({
            "lyrics": "[00:01.00]hello world",
            "style": {"kind": "upload", "value": format!("style-{n}.wav")},
            "seconds": 95,
            "seed": n,
            "steps": 32,
            "variants": 1,
            "chunked": true,
        }),
    )
}

/// How a run goes: see [`Jobs`].
#[derive(Default)]
struct Scenario {
    foresee: bool,
    jobs: u8,
    slow_decode: Option<(u64, Duration)>,
    held_blob: Option<u8>,
}

/// Runs jobs 1 to `jobs` through the loop; returns the link's record of calls.
async fn run(scenario: Scenario) -> Vec<String> {
    let Scenario {
        foresee,
        jobs,
        slow_decode,
        held_blob,
    } = scenario;
    let generator = tokio::task::spawn_blocking(|| {
        Generator::load(&common::bundle_dir(), GeneratorConfig::default()).unwrap()
    })
    .await
    .unwrap();
    // 12 s of a 440 Hz stereo tone at 44.1 kHz: a style recording.
    let tone: Vec<i16> = (0..44_100 * 12)
        .flat_map(|i| {
            let v = ((i as f32 * 440.0 * std::f32::consts::TAU / 44_100.0).sin() * 8000.0) as i16;
            [v, v]
        })
        .collect();
    let link = Jobs {
        queue: Mutex::new((1..=jobs).map(job).collect()),
        foresee,
        calls: Mutex::new(Vec::new()),
        style: refrain_inference::audio::wav_bytes_i16(&tone, 2, 44_100).unwrap(),
        finished: tokio::sync::Notify::new(),
        slow_decode,
        held_blob,
    };
    let settings = WorkerSettings {
        name: "test".into(),
        steps: None,
        max_reference_seconds: 60.0,
    };
    let cancel = CancellationToken::new();
    let stop = async {
        loop {
            let done = link
                .calls
                .lock()
                .unwrap()
                .iter()
                .filter(|c| c.starts_with("finish"))
                .count();
            if done == usize::from(jobs) {
                break;
            }
            let _ =
                tokio::time::timeout(Duration::from_millis(100), link.finished.notified()).await;
        }
        cancel.cancel();
    };
    tokio::join!(
        worker::run(&link, generator, settings, cancel.clone()),
        stop
    );
    link.calls.into_inner().unwrap()
}

fn position(calls: &[String], call: &str) -> usize {
    calls
        .iter()
        .position(|c| c.starts_with(call))
        .unwrap_or_else(|| panic!("no {call:?} in {calls:?}"))
}

/// Asserts that the first call starting with `a` came before the first starting with `b`.
fn assert_before(calls: &[String], a: &str, b: &str) {
    assert!(
        position(calls, a) < position(calls, b),
        "{a} before {b}: {calls:?}"
    );
}

/// How many calls start with `call`.
fn count(calls: &[String], call: &str) -> usize {
    calls.iter().filter(|c| c.starts_with(call)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_job_is_prepared_while_the_current_one_runs() {
    if !common::ort_available() {
        return;
    }
    let calls = run(Scenario {
        foresee: true,
        jobs: 2,
        ..Scenario::default()
    })
    .await;
    // Job 2's upload is fetched (once) while job 1 runs, before the loop is handed job 2.
    assert_before(&calls, "blob 2", "next 2");
    assert_eq!(count(&calls, "blob 2"), 1, "{calls:?}");
    assert!(
        calls.contains(&"finish 1 succeeded 1".to_string()),
        "{calls:?}"
    );
    assert!(
        calls.contains(&"finish 2 succeeded 1".to_string()),
        "{calls:?}"
    );

    // Unforeseen, job 2 is prepared once it is handed out, with the same result.
    let calls = run(Scenario {
        jobs: 2,
        ..Scenario::default()
    })
    .await;
    assert_before(&calls, "next 2", "blob 2");
    assert!(
        calls.contains(&"finish 2 succeeded 1".to_string()),
        "{calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_decode_does_not_replace_the_next_jobs_preparation() {
    if !common::ort_available() {
        return;
    }
    // Job 1 decodes for 1.5 s after job 2 was taken: long enough for many peeks, which would
    // now see job 3 at the head.
    let calls = run(Scenario {
        foresee: true,
        jobs: 3,
        slow_decode: Some((1, Duration::from_millis(1500))),
        ..Scenario::default()
    })
    .await;
    // Job 2's upload was fetched once, ahead, so job 2 started with it prepared.
    assert_eq!(count(&calls, "blob 2"), 1, "{calls:?}");
    assert_before(&calls, "blob 2", "next 2");
    // Job 3 was looked at only once job 2 ran.
    assert_eq!(count(&calls, "blob 3"), 1, "{calls:?}");
    assert_before(&calls, "next 2", "blob 3");
    assert!(
        calls.contains(&"finish 3 succeeded 1".to_string()),
        "{calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unforeseen_job_is_prepared_while_the_one_before_decodes() {
    if !common::ort_available() {
        return;
    }
    let calls = run(Scenario {
        jobs: 2,
        slow_decode: Some((1, Duration::from_millis(1500))),
        ..Scenario::default()
    })
    .await;
    // Job 2 was taken after job 1's last step and its upload fetched during job 1's decode.
    assert_before(&calls, "next 2", "blob 2");
    assert_before(&calls, "blob 2", "slow decode 1 done");
    assert_eq!(count(&calls, "blob 2"), 1, "{calls:?}");
    assert!(
        calls.contains(&"finish 2 succeeded 1".to_string()),
        "{calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preparation_under_way_when_its_job_is_taken_is_finished_not_repeated() {
    if !common::ort_available() {
        return;
    }
    // Job 2's upload, asked for ahead while job 1 runs, arrives only once job 2 was taken
    // (during job 1's decode): the preparation started ahead is the one job 2 uses.
    let calls = run(Scenario {
        foresee: true,
        jobs: 2,
        held_blob: Some(2),
        ..Scenario::default()
    })
    .await;
    assert_before(&calls, "blob 2", "next 2");
    assert_eq!(count(&calls, "blob 2"), 1, "{calls:?}");
    assert!(
        calls.contains(&"finish 2 succeeded 1".to_string()),
        "{calls:?}"
    );
}
