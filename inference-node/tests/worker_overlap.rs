//! The worker loop overlaps the steps between two jobs with the device's work: the next job
//! is taken while the running one decodes, a slow report is queued behind the next
//! generation instead of holding it up, and a job taken during the last decode before a stop
//! is handed back, without waiting for its preparation. Each test's link holds one of the loop's calls until the overlap it checks
//! has happened (or 20 s passed: then it logs a timeout and the assertion fails), so the old,
//! sequential loop would fail them instead of passing by luck of timing.

mod common;

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use protocol::node::{Assignment, LinkError, NodeLink, Outcome, WorkerSettings};
use protocol::{JobId, JobSpec, ProgressEvent, Stage};
use refrain_inference::pipeline::{Generator, GeneratorConfig};
use refrain_inference::worker;
use tokio_util::sync::CancellationToken;

/// How long a held call waits for what it waits for.
const HOLD_FOR: Duration = Duration::from_secs(20);

/// What the link holds back, and until when.
#[derive(Default, Clone, Copy)]
struct Holds {
    /// Job `a`'s first decode event waits until job `b` was handed out.
    decode_until_next: Option<(u64, u64)>,
    /// Job `a`'s report waits until job `b` has sampled a step.
    finish_until_sampling: Option<(u64, u64)>,
    /// The node is stopped as soon as job `a` is handed out.
    stop_at_next: Option<u64>,
    /// Job `a`'s style is an upload whose fetch takes [`HOLD_FOR`].
    slow_upload: Option<u64>,
}

/// Hands out its jobs in order and records the loop's calls.
struct Jobs {
    queue: Mutex<VecDeque<Assignment>>,
    calls: Mutex<Vec<String>>,
    holds: Holds,
    stop: CancellationToken,
}

impl Jobs {
    fn log(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }

    fn logged(&self, call: &str) -> bool {
        self.calls.lock().unwrap().iter().any(|c| c == call)
    }

    /// Waits until `call` is logged; logs `held` once it is, or a timeout.
    async fn hold_until(&self, call: &str, held: &str) {
        let began = Instant::now();
        while !self.logged(call) {
            if began.elapsed() > HOLD_FOR {
                self.log(format!("timeout: {held} waited for {call}"));
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        self.log(held.to_string());
    }

    fn finished(&self) -> usize {
        let calls = self.calls.lock().unwrap();
        calls.iter().filter(|c| c.starts_with("finish")).count()
    }
}

#[async_trait::async_trait]
impl NodeLink for Jobs {
    async fn next(&self) -> Result<Assignment, LinkError> {
        let job = self.queue.lock().unwrap().pop_front();
        let Some(job) = job else {
            return std::future::pending().await;
        };
        self.log(format!("next {}", job.handle));
        if self.holds.stop_at_next == Some(job.handle) {
            self.stop.cancel();
        }
        Ok(job)
    }

    async fn progress(&self, job: &Assignment, event: ProgressEvent) {
        let first = |stage: &str| {
            let call = format!("{stage} {}", job.handle);
            let new = !self.logged(&call);
            if new {
                self.log(call);
            }
            new
        };
        match event.stage {
            Stage::Sampling => {
                first("sampling");
            }
            Stage::Decode if first("decode") => {
                if let Some((a, b)) = self.holds.decode_until_next.filter(|h| h.0 == job.handle) {
                    let held = format!("held decode {a} until next {b}");
                    self.hold_until(&format!("next {b}"), &held).await;
                }
            }
            _ => {}
        }
    }

    async fn blob(&self, job: &JobId, name: &str) -> Result<Vec<u8>, LinkError> {
        let n = u64::from(job.as_str().as_bytes()[1] - b'0');
        if self.holds.slow_upload == Some(n) {
            self.log(format!("blob {n}"));
            tokio::time::sleep(HOLD_FOR).await;
            self.log(format!("released blob {n}"));
        }
        Err(LinkError::new(format!("no blob {name}")))
    }

    async fn earlier_result(&self, _for: &JobId, job: &JobId) -> Result<Vec<u8>, LinkError> {
        Err(LinkError::new(format!("no result of {job}")))
    }

    async fn finish(&self, job: Assignment, outcome: Outcome) -> Result<(), LinkError> {
        if let Some((a, b)) = self.holds.finish_until_sampling {
            if a == job.handle {
                let held = format!("held finish {a} until sampling {b}");
                self.hold_until(&format!("sampling {b}"), &held).await;
            }
        }
        let how = match outcome {
            Outcome::Succeeded { .. } => "succeeded".to_string(),
            Outcome::Invalid(m) => format!("invalid {m}"),
            Outcome::Retry(m) => format!("retry {m}"),
            Outcome::Interrupted => "interrupted".into(),
            Outcome::Cancelled => "cancelled".into(),
        };
        self.log(format!("finish {} {how}", job.handle));
        Ok(())
    }

    async fn peek(&self) -> Option<(JobId, JobSpec)> {
        None
    }
}

/// Job `n`; its style an upload when `upload`, else a prompt.
fn job(n: u8, upload: bool) -> Assignment {
    let style = if upload {
        serde_json::json!({"kind": "upload", "value": format!("style-{n}.wav")})
    } else {
        serde_json::json!({"kind": "prompt", "value": "pop"})
    };
    // The id's first byte is the job's number.
    common::assignment(
        n,
        serde_json::json!({
            "lyrics": "[00:01.00]hello world",
            "style": style,
            "seconds": 95,
            "seed": n,
            "steps": 8,
            "variants": 1,
            "chunked": true,
        }),
    )
}

/// Runs `jobs` jobs through the loop with `holds`, until each has finished or the node was
/// stopped; returns the link's record of calls.
async fn run(jobs: u8, holds: Holds) -> Vec<String> {
    let generator = tokio::task::spawn_blocking(|| {
        Generator::load(&common::bundle_dir(), GeneratorConfig::default()).unwrap()
    })
    .await
    .unwrap();
    let link = Jobs {
        queue: Mutex::new(
            (1..=jobs)
                .map(|n| job(n, holds.slow_upload == Some(u64::from(n))))
                .collect(),
        ),
        calls: Mutex::new(Vec::new()),
        holds,
        stop: CancellationToken::new(),
    };
    let settings = WorkerSettings {
        name: "test".into(),
        steps: None,
        max_reference_seconds: 60.0,
    };
    let stop = async {
        let began = Instant::now();
        while link.finished() < usize::from(jobs) && !link.stop.is_cancelled() {
            assert!(began.elapsed() < 3 * HOLD_FOR, "{:?}", link.calls.lock());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        link.stop.cancel();
    };
    tokio::join!(
        worker::run(&link, generator, settings, link.stop.clone()),
        stop
    );
    link.calls.into_inner().unwrap()
}

fn position(calls: &[String], call: &str) -> usize {
    calls
        .iter()
        .position(|c| c == call)
        .unwrap_or_else(|| panic!("no {call:?} in {calls:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_job_is_taken_while_the_running_one_decodes() {
    if !common::ort_available() {
        return;
    }
    let holds = Holds {
        decode_until_next: Some((1, 2)),
        ..Holds::default()
    };
    let calls = run(2, holds).await;
    assert!(!calls.iter().any(|c| c.starts_with("timeout")), "{calls:?}");
    // Job 2 was handed out after job 1's last step, while job 1 was decoding.
    assert!(
        position(&calls, "sampling 1") < position(&calls, "next 2"),
        "{calls:?}"
    );
    assert!(
        position(&calls, "next 2") < position(&calls, "held decode 1 until next 2"),
        "{calls:?}"
    );
    assert!(calls.contains(&"finish 1 succeeded".into()), "{calls:?}");
    assert!(calls.contains(&"finish 2 succeeded".into()), "{calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_report_does_not_hold_up_the_next_generations() {
    if !common::ort_available() {
        return;
    }
    // Job 1's report is still under way when job 2 ends; job 3 samples regardless.
    let holds = Holds {
        finish_until_sampling: Some((1, 3)),
        ..Holds::default()
    };
    let calls = run(3, holds).await;
    assert!(!calls.iter().any(|c| c.starts_with("timeout")), "{calls:?}");
    assert!(
        position(&calls, "held finish 1 until sampling 3") < position(&calls, "finish 1 succeeded"),
        "{calls:?}"
    );
    // Reports stay one at a time and in order.
    let finishes: Vec<&String> = calls.iter().filter(|c| c.starts_with("finish")).collect();
    assert_eq!(
        finishes,
        [
            "finish 1 succeeded",
            "finish 2 succeeded",
            "finish 3 succeeded"
        ],
        "{calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_taken_just_before_a_stop_is_handed_back() {
    if !common::ort_available() {
        return;
    }
    // Job 2 is taken during job 1's decode, and the node is told to stop at that moment.
    let holds = Holds {
        decode_until_next: Some((1, 2)),
        stop_at_next: Some(2),
        ..Holds::default()
    };
    let calls = run(2, holds).await;
    assert!(!calls.iter().any(|c| c.starts_with("timeout")), "{calls:?}");
    // Job 2 never ran, and was handed back; job 1 was reported (whatever its decode made of
    // the stop).
    assert!(!calls.contains(&"sampling 2".into()), "{calls:?}");
    assert!(calls.contains(&"finish 2 interrupted".into()), "{calls:?}");
    assert!(
        calls.iter().any(|c| c.starts_with("finish 1 ")),
        "{calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_does_not_wait_for_the_next_jobs_slow_upload() {
    if !common::ort_available() {
        return;
    }
    // Job 2 is taken during job 1's decode, its upload takes 20 s to fetch, and the node is
    // told to stop as job 2 is taken: job 2 is handed back without waiting for the fetch.
    let holds = Holds {
        decode_until_next: Some((1, 2)),
        stop_at_next: Some(2),
        slow_upload: Some(2),
        ..Holds::default()
    };
    let calls = run(2, holds).await;
    assert!(!calls.iter().any(|c| c.starts_with("timeout")), "{calls:?}");
    // Whether the fetch had begun when the stop was seen or not, it was not waited for.
    assert!(calls.contains(&"finish 2 interrupted".into()), "{calls:?}");
    assert!(!calls.contains(&"released blob 2".into()), "{calls:?}");
}
