//! The worker loop's two cancellations: the job's own token ends the run with
//! `Outcome::Cancelled`; the shutdown token with `Outcome::Interrupted`. Both stop the pipeline
//! between two sampler steps.

mod common;

use std::sync::Mutex;

use protocol::node::{Assignment, LinkError, NodeLink, Outcome, WorkerSettings};
use protocol::{JobId, JobSpec, ProgressEvent, Stage};
use refrain_inference::pipeline::{Generator, GeneratorConfig};
use refrain_inference::worker;
use tokio_util::sync::CancellationToken;

/// Hands out one job, then waits forever; fires `on_step` at the first sampling step.
struct OneJob {
    job: Mutex<Option<Assignment>>,
    on_step: CancellationToken,
    stop: CancellationToken,
    outcomes: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl NodeLink for OneJob {
    async fn next(&self) -> Result<Assignment, LinkError> {
        let job = self.job.lock().unwrap().take();
        match job {
            Some(j) => Ok(j),
            None => {
                std::future::pending::<()>().await;
                unreachable!()
            }
        }
    }
    async fn progress(&self, _job: &Assignment, event: ProgressEvent) {
        if event.stage == Stage::Sampling {
            self.on_step.cancel();
        }
    }
    async fn blob(&self, _job: &JobId, name: &str) -> Result<Vec<u8>, LinkError> {
        Err(LinkError::new(format!("no blob {name}")))
    }
    async fn earlier_result(&self, _for: &JobId, job: &JobId) -> Result<Vec<u8>, LinkError> {
        Err(LinkError::new(format!("no result of {job}")))
    }
    async fn finish(&self, _job: Assignment, outcome: Outcome) -> Result<(), LinkError> {
        let name = match outcome {
            Outcome::Succeeded { wavs, .. } => format!("succeeded {}", wavs.len()),
            Outcome::Invalid(m) => format!("invalid {m}"),
            Outcome::Retry(m) => format!("retry {m}"),
            Outcome::Interrupted => "interrupted".into(),
            Outcome::Cancelled => "cancelled".into(),
        };
        self.outcomes.lock().unwrap().push(name);
        self.stop.cancel();
        Ok(())
    }
}

/// A job of two variants and `steps` sampler steps.
fn spec(steps: u32) -> JobSpec {
    serde_json::from_value(serde_json::json!({
        "lyrics": "[00:01.00]hello world",
        "style": {"kind": "prompt", "value": "pop"},
        "seconds": 95,
        "seed": 1,
        "steps": steps,
        "variants": 2,
        "chunked": true,
    }))
    .unwrap()
}

/// Runs one job of two variants. At the first sampling step `fire` cancels the shutdown token
/// (`Some(true)`), the job's own token (`Some(false)`) or nothing (`None`). A job that is to be
/// stopped takes 1000 steps: the step's progress reaches the link asynchronously, and with few
/// steps a busy machine could finish the job before the token is fired.
async fn run(fire: Option<bool>) -> Vec<String> {
    let generator = tokio::task::spawn_blocking(|| {
        Generator::load(&common::bundle_dir(), GeneratorConfig::default()).unwrap()
    })
    .await
    .unwrap();
    let (job_cancel, shutdown, stop) = (
        CancellationToken::new(),
        CancellationToken::new(),
        CancellationToken::new(),
    );
    let on_step = match fire {
        Some(true) => shutdown.clone(),
        Some(false) => job_cancel.clone(),
        None => CancellationToken::new(),
    };
    let link = OneJob {
        job: Mutex::new(Some(Assignment {
            id: JobId::from_bytes([7; 16]),
            attempt: 1,
            spec: spec(if fire.is_some() { 1000 } else { 32 }),
            handle: 1,
            cancel: job_cancel,
        })),
        on_step,
        stop: stop.clone(),
        outcomes: Mutex::new(Vec::new()),
    };
    let settings = WorkerSettings {
        name: "test".into(),
        steps: None,
        max_reference_seconds: 60.0,
    };
    let loop_cancel = CancellationToken::new();
    let run = worker::run(&link, generator, settings, loop_cancel.clone());
    let shutdown_forward = async {
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = stop.cancelled() => {}
        }
        if shutdown.is_cancelled() {
            loop_cancel.cancel();
        }
        stop.cancelled().await;
        loop_cancel.cancel();
    };
    tokio::join!(run, shutdown_forward);
    link.outcomes.into_inner().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_token_cancels_shutdown_interrupts_and_every_variant_comes_back() {
    if !common::ort_available() {
        return;
    }
    assert_eq!(run(Some(false)).await, ["cancelled"]);
    assert_eq!(run(Some(true)).await, ["interrupted"]);
    assert_eq!(run(None).await, ["succeeded 2"]);
}
