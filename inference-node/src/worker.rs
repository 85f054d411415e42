//! An inference node's worker loop: take one job at a time, run the pipeline on this node's
//! sessions, report progress and the outcome.
//!
//! The loop does not know where jobs come from. A [`NodeLink`] hands it [`Assignment`]s and
//! takes its reports: the embedded link (in the orchestrator) works on the job store and the
//! in-process queue; the NATS link works on JetStream messages and the object store. The loop is
//! the same code in both deployments. Cancellation stops a generation between two steps: the
//! shutdown token hands the job back ([`Outcome::Interrupted`]); the job's own token
//! ([`Assignment::cancel`]) ends it for good ([`Outcome::Cancelled`]). The contract types live
//! in `protocol::node` and are re-exported here.

use std::time::Duration;

use protocol::{JobSpec, ProgressEvent, SongRef, StyleSpec};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::audio::{self, Decoded};
use crate::pipeline::{EditRequest, GenerateRequest, Generator, InitRequest};
use crate::style::StyleSource;
use crate::InferenceError;

pub use protocol::node::{Assignment, LinkError, NodeLink, Outcome, WorkerSettings};

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
            Outcome::Cancelled => tracing::info!(job = %job.id, "job cancelled"),
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
    // The pipeline sees one token: the job's, also fired by shutdown.
    let run_cancel = job.cancel.child_token();
    let forward = {
        let (shutdown, run) = (cancel.clone(), run_cancel.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => run.cancel(),
                _ = run.cancelled() => {}
            }
        })
    };
    let pipeline_cancel = run_cancel.clone();
    let blocking = tokio::task::spawn_blocking(move || {
        let result = generator.generate(&request, &pipeline_cancel, &mut |e| {
            let _ = tx.send(e);
        });
        (generator, result)
    });
    // Forward progress while the pipeline runs; the channel closes when it returns.
    while let Some(event) = rx.recv().await {
        link.progress(job, event).await;
    }
    let joined = blocking.await;
    run_cancel.cancel();
    let _ = forward.await;
    let (generator, result) = match joined {
        Ok(x) => x,
        Err(e) => {
            // The pipeline panicked: this node's sessions are in an unknown state. Stop the
            // process; the job is delivered again (and fails for good after max attempts).
            tracing::error!(job = %job.id, error = %e, "inference panicked; stopping the process");
            std::process::abort();
        }
    };
    let outcome = match result {
        Ok(output) => succeeded(&output.songs, output.sample_rate),
        // The job's own cancellation wins: a cancelled job must not run again.
        Err(InferenceError::Cancelled) if job.cancel.is_cancelled() => Outcome::Cancelled,
        Err(InferenceError::Cancelled) => Outcome::Interrupted,
        Err(e) if e.is_invalid_input() => Outcome::Invalid(e.to_string()),
        Err(e) => Outcome::Retry(e.to_string()),
    };
    (generator, outcome)
}

/// Every variant as a WAV file (index 0 first).
fn succeeded(songs: &[Vec<i16>], sample_rate: u32) -> Outcome {
    let Some(first) = songs.first() else {
        return Outcome::Retry("the pipeline returned no song".into());
    };
    let wavs = songs
        .iter()
        .map(|song| audio::wav_bytes_i16(song, 2, sample_rate))
        .collect::<Result<Vec<_>, _>>();
    match wavs {
        Ok(wavs) => Outcome::Succeeded {
            wavs,
            duration_seconds: (first.len() / 2) as f64 / sample_rate as f64,
        },
        Err(e) => Outcome::Retry(format!("encoding WAV: {e}")),
    }
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
        Some(edit) => Some(EditRequest {
            reference: song(link, &edit.song, max, "ref_song").await?,
            segments: edit.segments.clone(),
        }),
    };
    let init = match &spec.init {
        None => None,
        Some(init) => Some(InitRequest {
            song: song(link, &init.song, max, "init song").await?,
            strength: init.strength,
        }),
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
        init,
    })
}

/// A song a job starts from (an edit's or an init's): an upload, or an earlier job's result.
async fn song(
    link: &dyn NodeLink,
    song: &SongRef,
    max_seconds: f64,
    what: &str,
) -> Result<Decoded, Outcome> {
    match song {
        SongRef::Upload(name) => blob(link, name, max_seconds, what).await,
        SongRef::Output(source) => {
            let bytes = link.earlier_result(source).await.map_err(|e| {
                if e.transient {
                    Outcome::Retry(format!("{what}: {e}"))
                } else {
                    Outcome::Invalid(format!("{what}: {e}"))
                }
            })?;
            decode(bytes, Some("wav".into()), max_seconds, what).await
        }
    }
}
