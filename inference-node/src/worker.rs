//! An inference node's worker loop: take one job at a time, run the pipeline on this node's
//! sessions, report progress and the outcome.
//!
//! The loop does not know where jobs come from. A [`NodeLink`] hands it [`Assignment`]s and
//! takes its reports: the embedded link (in the orchestrator) works on the job store and the
//! in-process queue; the NATS link works on JetStream messages and the object store. The loop is
//! the same code in both deployments. Cancellation (shutdown) stops a generation between two
//! steps and hands the job back ([`Outcome::Interrupted`]).

use std::time::Duration;

use protocol::{JobId, JobSpec, ProgressEvent, SongRef, StyleSpec};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::audio::{self, Decoded};
use crate::pipeline::{EditRequest, GenerateRequest, Generator};
use crate::style::StyleSource;
use crate::InferenceError;

/// One job handed to this node.
#[derive(Debug, Clone)]
pub struct Assignment {
    pub id: JobId,
    /// 1 on the first run, +1 on every redelivery.
    pub attempt: u32,
    pub spec: JobSpec,
    /// The link's own handle (queue delivery, JetStream message).
    pub handle: u64,
}

/// How a run ended.
#[derive(Debug)]
pub enum Outcome {
    /// The first variant as a 16-bit stereo WAV file.
    Succeeded { wav: Vec<u8>, duration_seconds: f64 },
    /// Bad input: running it again cannot help.
    Invalid(String),
    /// A node-side error: worth another attempt while attempts are left.
    Retry(String),
    /// Shutdown interrupted the run: the job goes back untouched.
    Interrupted,
}

/// Errors a link reports to the loop (which logs them and carries on).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct LinkError {
    pub message: String,
    /// A passing condition (a network outage, a busy disk): the job is worth another attempt.
    /// Otherwise the failure is final for this job (a missing upload, a bad name).
    pub transient: bool,
}

impl LinkError {
    /// A failure that retrying cannot fix.
    pub fn new(message: impl Into<String>) -> LinkError {
        LinkError {
            message: message.into(),
            transient: false,
        }
    }

    /// A failure that may pass: the job is retried while attempts are left.
    pub fn transient(message: impl Into<String>) -> LinkError {
        LinkError {
            message: message.into(),
            transient: true,
        }
    }
}

/// Where a node gets its jobs and inputs from, and where its reports go.
#[async_trait::async_trait]
pub trait NodeLink: Send + Sync + 'static {
    /// Waits for the next job this node should run (already marked running where the link
    /// keeps state). Must be cancel-safe: dropping the future loses no job.
    async fn next(&self) -> Result<Assignment, LinkError>;
    /// A progress event of a running job.
    async fn progress(&self, job: &Assignment, event: ProgressEvent);
    /// An uploaded file (reference audio or song) by blob name.
    async fn blob(&self, name: &str) -> Result<Vec<u8>, LinkError>;
    /// The result WAV of an earlier job (edit mode).
    async fn earlier_result(&self, job: &JobId) -> Result<Vec<u8>, LinkError>;
    /// Records the outcome and releases the job (ack, nack or term).
    async fn finish(&self, job: Assignment, outcome: Outcome) -> Result<(), LinkError>;
}

/// Settings of one node's worker.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Name for logs, e.g. `cpu` or `cuda:0`.
    pub name: String,
    /// Overrides every job's sampler steps (load tests).
    pub steps: Option<u32>,
    /// Longest reference recording decoded, seconds.
    pub max_reference_seconds: f64,
}

/// Runs the loop until `cancel` fires. `generator` is this node's loaded bundle.
pub async fn run(
    link: &dyn NodeLink,
    mut generator: Generator,
    settings: WorkerSettings,
    cancel: CancellationToken,
) {
    tracing::info!(node = %settings.name, "inference node ready");
    loop {
        let job = tokio::select! {
            _ = cancel.cancelled() => break,
            j = link.next() => match j {
                Ok(j) => j,
                Err(e) => {
                    tracing::error!(node = %settings.name, error = %e, "cannot take a job; retrying in 1 s");
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            },
        };
        tracing::info!(job = %job.id, attempt = job.attempt, node = %settings.name, "job started");
        let (g, outcome) = execute(link, generator, &settings, &job, &cancel).await;
        generator = g;
        match &outcome {
            Outcome::Succeeded {
                duration_seconds, ..
            } => {
                tracing::info!(job = %job.id, attempt = job.attempt, seconds = duration_seconds, "job succeeded")
            }
            Outcome::Invalid(m) => {
                tracing::warn!(job = %job.id, error = %m, "job failed: invalid input")
            }
            Outcome::Retry(m) => tracing::warn!(job = %job.id, error = %m, "job attempt failed"),
            Outcome::Interrupted => {
                tracing::info!(job = %job.id, "job interrupted; it will run again")
            }
        }
        let id = job.id.clone();
        if let Err(e) = link.finish(job, outcome).await {
            tracing::error!(job = %id, error = %e, "cannot record the outcome; the job will be delivered again");
        }
    }
    tracing::info!(node = %settings.name, "inference node stopped");
}

async fn execute(
    link: &dyn NodeLink,
    mut generator: Generator,
    settings: &WorkerSettings,
    job: &Assignment,
    cancel: &CancellationToken,
) -> (Generator, Outcome) {
    let request = match load_request(link, &job.spec, settings).await {
        Ok(r) => r,
        Err(outcome) => return (generator, outcome),
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<ProgressEvent>();
    let run_cancel = cancel.child_token();
    let blocking = tokio::task::spawn_blocking(move || {
        let result = generator.generate(&request, &run_cancel, &mut |e| {
            let _ = tx.send(e);
        });
        (generator, result)
    });
    // Forward progress while the pipeline runs; the channel closes when it returns.
    while let Some(event) = rx.recv().await {
        link.progress(job, event).await;
    }
    let (generator, result) = match blocking.await {
        Ok(x) => x,
        Err(e) => {
            // The pipeline panicked: this node's sessions are in an unknown state. Stop the
            // process; the job is delivered again (and fails for good after max attempts).
            tracing::error!(job = %job.id, error = %e, "inference panicked; stopping the process");
            std::process::abort();
        }
    };
    let outcome = match result {
        Ok(output) => match output.songs.first() {
            None => Outcome::Retry("the pipeline returned no song".into()),
            Some(song) => match audio::wav_bytes_i16(song, 2, output.sample_rate) {
                Ok(wav) => Outcome::Succeeded {
                    wav,
                    duration_seconds: (song.len() / 2) as f64 / output.sample_rate as f64,
                },
                Err(e) => Outcome::Retry(format!("encoding WAV: {e}")),
            },
        },
        Err(InferenceError::Cancelled) => Outcome::Interrupted,
        Err(e) if e.is_invalid_input() => Outcome::Invalid(e.to_string()),
        Err(e) => Outcome::Retry(e.to_string()),
    };
    (generator, outcome)
}

async fn decode(
    bytes: Vec<u8>,
    hint: Option<String>,
    max_seconds: f64,
    what: &str,
) -> Result<Decoded, Outcome> {
    tokio::task::spawn_blocking(move || audio::decode(&bytes, hint.as_deref(), max_seconds))
        .await
        .map_err(|e| Outcome::Retry(format!("decoder task: {e}")))?
        .map_err(|e| Outcome::Invalid(format!("{what}: {e}")))
}

async fn blob(
    link: &dyn NodeLink,
    name: &str,
    max_seconds: f64,
    what: &str,
) -> Result<Decoded, Outcome> {
    let bytes = link.blob(name).await.map_err(|e| {
        let message = format!("{what}: the upload is not available ({e})");
        if e.transient {
            Outcome::Retry(message)
        } else {
            Outcome::Invalid(message)
        }
    })?;
    let hint = name.rsplit_once('.').map(|(_, ext)| ext.to_string());
    decode(bytes, hint, max_seconds, what).await
}

/// Turns a spec into a pipeline request, fetching the files it names.
pub async fn load_request(
    link: &dyn NodeLink,
    spec: &JobSpec,
    settings: &WorkerSettings,
) -> Result<GenerateRequest, Outcome> {
    let max = settings.max_reference_seconds;
    let style = match &spec.style {
        StyleSpec::Prompt(p) => StyleSource::Prompt(p.clone()),
        StyleSpec::Upload(name) => StyleSource::Audio(blob(link, name, max, "ref_audio").await?),
    };
    let edit = match &spec.edit {
        None => None,
        Some(edit) => {
            let reference = match &edit.song {
                SongRef::Upload(name) => blob(link, name, max, "ref_song").await?,
                SongRef::Output(source) => {
                    let bytes = link.earlier_result(source).await.map_err(|e| {
                        if e.transient {
                            Outcome::Retry(format!("ref_song: {e}"))
                        } else {
                            Outcome::Invalid(format!("ref_song: {e}"))
                        }
                    })?;
                    decode(bytes, Some("wav".into()), max, "ref_song").await?
                }
            };
            Some(EditRequest {
                reference,
                segments: edit.segments.clone(),
            })
        }
    };
    Ok(GenerateRequest {
        lyrics: spec.lyrics.clone(),
        style,
        seconds: spec.seconds,
        seed: spec.seed,
        steps: settings.steps.or(spec.steps),
        cfg_strength: spec.cfg_strength,
        variants: spec.variants as usize,
        chunked: spec.chunked,
        edit,
    })
}
