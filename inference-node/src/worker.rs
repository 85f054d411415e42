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
//!
//! **No idle device between jobs.** Three things overlap with the device's work:
//!
//! - *the next job's inputs*: while a job runs, the loop asks the link which job comes next
//!   ([`NodeLink::peek`], often at first, then every [`PEEK_EVERY`]; the embedded queue's
//!   head, or the NATS work queue's next undelivered message — read, not taken, so no other
//!   node is kept from it) and prepares it: its uploads fetched and decoded, its lyric track
//!   and style embedding made ([`crate::prepare`], kept in `ahead`'s one slot). When that job
//!   is the one handed out next, its generation starts with sampling; a wrong guess only cost
//!   the preparation.
//! - *taking the next job*: once the running job's last sampler step is done, while its VAE
//!   decodes, the loop already takes the next job from the link (a queue hand-out and the
//!   durable `started`, a flush or a round trip to the server) and finishes its preparation
//!   (the one under way, or a new one when it was not foreseen), so the next generation can
//!   begin as soon as this one ends. Looking ahead stops then: the queue's head is the job
//!   after. The next job is therefore shown running from that moment, a decode's time (a
//!   few seconds on a GPU) before its first step. On a shutdown in that window it is handed
//!   back like any interrupted job.
//! - *the reports*: a finished job's report (the WAV encoding and the link's `finish`:
//!   writing or uploading the result, the durable event, the ack) is queued behind the one
//!   before it instead of being waited for, so a slow report (a 16 MB WAV synced to a slow
//!   disk) does not hold up the next generation. Reports run one at a time and in order, at
//!   most [`REPORTS_BEHIND`] are outstanding (each holds its songs in memory), and all are
//!   done before the loop returns. A link must therefore treat a job it still reports as its
//!   own (the NATS node announces such jobs in its heartbeats, and waits for its own report
//!   when the server delivers one again) and not mark the node idle at its end.
//!
//! The loop logs each job as `node idle gap`: `idle_ms`, from the previous generation's end
//! (its VAE decode done) to this one's first sampler step, and `after_last_step_ms`, from the
//! previous job's last sampler step (so its decode included); of the idle time,
//! `report_wait_ms` went to waiting for a report (only when [`REPORTS_BEHIND`] were
//! outstanding) and `take_ms` to taking this job (zero when it was taken during the decode,
//! `taken_early`). Meaningful for jobs that were waiting when the previous one ended (the
//! distributed bench submits them so).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::time::{Duration, Instant};

use protocol::{ProgressEvent, Stage};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::audio;
use crate::pipeline::{GenerateOutput, Generator};
use crate::InferenceError;

pub use protocol::node::{Assignment, LinkError, NodeLink, Outcome, WorkerSettings};
pub use request::load_request;

use ahead::{Inputs, Lookahead};

mod ahead;
mod request;

/// How often a running job's loop asks the link for the next job: every [`PEEK_SOON`] in
/// the first [`SOON_FOR`] of a job (the next job is often published, or queued, just after
/// this one started), then every [`PEEK_EVERY`].
pub const PEEK_EVERY: Duration = Duration::from_millis(200);
/// See [`PEEK_EVERY`].
pub const PEEK_SOON: Duration = Duration::from_millis(25);
/// See [`PEEK_EVERY`].
pub const SOON_FOR: Duration = Duration::from_secs(1);

/// Reports that may be outstanding at once (queued or running); the loop waits before queuing
/// one more.
pub const REPORTS_BEHIND: usize = 2;

/// When a generation ended, and how long its VAE decode took.
#[derive(Clone, Copy)]
struct Ended {
    at: Instant,
    decode: Duration,
}

/// How a run went, before its report.
enum Ran {
    Songs {
        songs: Vec<Vec<i16>>,
        sample_rate: u32,
    },
    Done(Outcome),
}

/// A report under way (the link's `finish` of the previous job).
type Pending<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Taking the next job while the running one decodes: `None` when the running job never got
/// to its decode, or the node is stopping.
type Taking<'a> = Pin<Box<dyn Future<Output = Option<Assignment>> + Send + 'a>>;

/// Runs `main` to its end while also driving `pending` (dropped once it completes).
async fn alongside<T>(pending: &mut Option<Pending<'_>>, main: impl Future<Output = T>) -> T {
    tokio::pin!(main);
    loop {
        let Some(other) = pending.as_mut() else {
            return main.await;
        };
        tokio::select! {
            biased;
            out = &mut main => return out,
            _ = other => *pending = None,
        }
    }
}

/// Runs `main` to its end while also driving `taking`; `taking`'s output if it finished
/// meanwhile (else it is left to finish later).
async fn beside<T>(
    taking: &mut Taking<'_>,
    main: impl Future<Output = T>,
) -> (T, Option<Option<Assignment>>) {
    tokio::pin!(main);
    tokio::select! {
        biased;
        out = &mut main => (out, None),
        taken = taking.as_mut() => (main.await, Some(taken)),
    }
}

/// Takes the next job once `decoding` says the running job's sampling is done, and prepares
/// its inputs unless they were made ahead, so that this too overlaps with the decode. A stop
/// does not wait for the preparation (a slow upload): the job is returned at once, and the
/// loop hands it back.
async fn take_when_decoding(
    decoding: oneshot::Receiver<()>,
    link: &dyn NodeLink,
    settings: &WorkerSettings,
    cancel: &CancellationToken,
    ahead: &Lookahead<'_>,
) -> Option<Assignment> {
    decoding.await.ok()?;
    let job = take(link, settings, cancel).await?;
    tokio::select! {
        _ = ahead.for_job(&job.id, &job.spec) => {}
        _ = cancel.cancelled() => {}
    }
    Some(job)
}

/// Runs the loop until `cancel` fires. `generator` is this node's loaded bundle.
pub async fn run(
    link: &dyn NodeLink,
    generator: Generator,
    settings: WorkerSettings,
    cancel: CancellationToken,
) {
    tracing::info!(node = %settings.name, "inference node ready");
    let preparer = generator.preparer();
    let mut generator = generator;
    let ahead = Lookahead::new(link, &preparer, &settings);
    // Declared before the reports that count themselves in it.
    let outstanding = AtomicUsize::new(0);
    let mut pending: Option<Pending<'_>> = None;
    let mut last: Option<Ended> = None;
    // The next job, being taken (or taken) while the last one decoded.
    let mut next: Option<Taking<'_>> = None;
    // How long the loop waited for a report after the last generation.
    let mut report_wait = Duration::ZERO;
    loop {
        let taking = Instant::now();
        let early = match next.take() {
            Some(taking) => alongside(&mut pending, taking).await,
            None => None,
        };
        let taken_early = early.is_some();
        let job = match early {
            Some(job) => job,
            None => match alongside(&mut pending, take(link, &settings, &cancel)).await {
                Some(job) => job,
                None => break,
            },
        };
        let take_time = taking.elapsed();
        if cancel.is_cancelled() {
            // Taken during the last decode, just before the stop: hand it back.
            pending = Some(queue_report(
                pending.take(),
                &outstanding,
                link,
                job,
                Ran::Done(Outcome::Interrupted),
            ));
            break;
        }
        tracing::info!(job = %job.id, attempt = job.attempt, node = %settings.name, "job started");
        let ready = ahead.claim(&job.id);
        // Still being made only when the job was taken before its preparation ended.
        let made = match ready {
            Some(ready) => alongside(&mut pending, ready).await.take(),
            None => None,
        };
        // Fired at the running job's last sampler step: the next job is taken from then on,
        // and no longer looked for ahead (the queue's head is then the job after it).
        let sampled = CancellationToken::new();
        let (decoding, decoded) = oneshot::channel();
        let mut taking: Taking<'_> = Box::pin(take_when_decoding(
            decoded, link, &settings, &cancel, &ahead,
        ));
        let run = async {
            tokio::select! {
                biased;
                ran = execute(link, generator, &settings, &job, &cancel, made, (&sampled, decoding)) => ran,
                never = ahead.watch(&job.id, &sampled) => match never {},
            }
        };
        let ((g, ran, timing), taken) = alongside(&mut pending, beside(&mut taking, run)).await;
        next = Some(match taken {
            Some(taken) => Box::pin(std::future::ready(taken)),
            None => taking,
        });
        generator = g;
        log_outcome(&job, &ran);
        if let Some(t) = &timing {
            if let (Some(prev), Some(sampling)) = (last, t.sampling) {
                let idle = sampling.saturating_duration_since(prev.at);
                tracing::info!(
                    job = %job.id,
                    node = %settings.name,
                    idle_ms = ms(idle),
                    after_last_step_ms = ms(idle + prev.decode),
                    report_wait_ms = ms(report_wait),
                    take_ms = ms(take_time),
                    taken_early,
                    prepared_ahead = t.prepared_ahead,
                    "node idle gap"
                );
            }
            last = Some(t.ended);
        }
        // Reports run one at a time, in order; wait only when too many are outstanding.
        let waiting = Instant::now();
        if outstanding.load(Ordering::Acquire) >= REPORTS_BEHIND {
            if let Some(previous) = pending.take() {
                previous.await;
            }
        }
        report_wait = waiting.elapsed();
        pending = Some(queue_report(pending.take(), &outstanding, link, job, ran));
    }
    if let Some(previous) = pending.take() {
        previous.await;
    }
    tracing::info!(node = %settings.name, "inference node stopped");
}

/// Milliseconds, to two decimals (for the log).
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 100_000.0).round() / 100.0
}

/// The next job, or `None` once `cancel` fires.
async fn take(
    link: &dyn NodeLink,
    settings: &WorkerSettings,
    cancel: &CancellationToken,
) -> Option<Assignment> {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return None,
            j = link.next() => match j {
                Ok(j) => return Some(j),
                Err(e) => {
                    tracing::error!(node = %settings.name, error = %e, "cannot take a job; retrying in 1 s");
                    tokio::select! {
                        _ = cancel.cancelled() => return None,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            },
        }
    }
}

fn log_outcome(job: &Assignment, ran: &Ran) {
    match ran {
        Ran::Songs { songs, sample_rate } => {
            let seconds = songs
                .first()
                .map_or(0.0, |s| (s.len() / 2) as f64 / *sample_rate as f64);
            tracing::info!(job = %job.id, attempt = job.attempt, seconds, "job succeeded")
        }
        Ran::Done(Outcome::Succeeded {
            duration_seconds, ..
        }) => {
            tracing::info!(job = %job.id, attempt = job.attempt, seconds = duration_seconds, "job succeeded")
        }
        Ran::Done(Outcome::Invalid(m)) => {
            tracing::warn!(job = %job.id, error = %m, "job failed: invalid input")
        }
        Ran::Done(Outcome::Retry(m)) => {
            tracing::warn!(job = %job.id, error = %m, "job attempt failed")
        }
        Ran::Done(Outcome::Interrupted) => {
            tracing::info!(job = %job.id, "job interrupted; it will run again")
        }
        Ran::Done(Outcome::Cancelled) => tracing::info!(job = %job.id, "job cancelled"),
    }
}

/// Queues `job`'s report behind `previous` (the reports outstanding so far), counted in
/// `outstanding` until it is done.
fn queue_report<'a>(
    previous: Option<Pending<'a>>,
    outstanding: &'a AtomicUsize,
    link: &'a dyn NodeLink,
    job: Assignment,
    ran: Ran,
) -> Pending<'a> {
    outstanding.fetch_add(1, Ordering::AcqRel);
    Box::pin(async move {
        if let Some(previous) = previous {
            previous.await;
        }
        report(link, job, ran).await;
        outstanding.fetch_sub(1, Ordering::AcqRel);
    })
}

/// Encodes the songs and hands the outcome to the link.
async fn report(link: &dyn NodeLink, job: Assignment, ran: Ran) {
    let outcome = match ran {
        Ran::Done(outcome) => outcome,
        Ran::Songs { songs, sample_rate } => {
            tokio::task::spawn_blocking(move || succeeded(&songs, sample_rate))
                .await
                .unwrap_or_else(|e| Outcome::Retry(format!("encoding WAV: {e}")))
        }
    };
    let id = job.id.clone();
    if let Err(e) = link.finish(job, outcome).await {
        tracing::error!(job = %id, error = %e, "cannot record the outcome; the job will be delivered again");
    }
}

/// When a run's generation happened.
struct Timing {
    /// When its first sampler step began (`None`: it never sampled).
    sampling: Option<Instant>,
    ended: Ended,
    prepared_ahead: bool,
}

async fn execute(
    link: &dyn NodeLink,
    mut generator: Generator,
    settings: &WorkerSettings,
    job: &Assignment,
    cancel: &CancellationToken,
    made: Option<Inputs>,
    (sampled, decoding): (&CancellationToken, oneshot::Sender<()>),
) -> (Generator, Ran, Option<Timing>) {
    let (request, prepared) = match made {
        Some(made) => made,
        None => match load_request(link, &job.id, &job.spec, settings).await {
            Ok(r) => (r, None),
            Err(outcome) => return (generator, Ran::Done(outcome), None),
        },
    };
    let prepared_ahead = prepared.is_some();
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
        let began = Instant::now();
        let result = generator.generate_prepared(&request, prepared, &pipeline_cancel, &mut |e| {
            let _ = tx.send(e);
        });
        (generator, result, began, Instant::now())
    });
    // Forward progress while the pipeline runs; the channel closes when it returns. The last
    // sampler step (or any decode event) lets the loop take the next job.
    let mut decoding = Some(decoding);
    while let Some(event) = rx.recv().await {
        let sampling_done = match event.stage {
            Stage::Sampling => event.step >= event.total,
            Stage::Decode | Stage::Done => true,
            Stage::Tokenize | Stage::Style | Stage::Encode => false,
        };
        if sampling_done && !job.cancel.is_cancelled() && !cancel.is_cancelled() {
            if let Some(decoding) = decoding.take() {
                sampled.cancel();
                let _ = decoding.send(());
            }
        }
        link.progress(job, event).await;
    }
    let joined = blocking.await;
    run_cancel.cancel();
    let _ = forward.await;
    let (generator, result, began, ended) = match joined {
        Ok(x) => x,
        Err(e) => {
            // The pipeline panicked: this node's sessions are in an unknown state. Stop the
            // process; the job is delivered again (and fails for good after max attempts).
            tracing::error!(job = %job.id, error = %e, "inference panicked; stopping the process");
            std::process::abort();
        }
    };
    let timing = |output: Option<&GenerateOutput>| Timing {
        sampling: output.map(|o| began + o.timings.prepare),
        ended: Ended {
            at: ended,
            decode: output.map_or(Duration::ZERO, |o| o.timings.decode),
        },
        prepared_ahead,
    };
    let (ran, timing) = match result {
        Ok(output) => {
            let t = timing(Some(&output));
            (
                Ran::Songs {
                    songs: output.songs,
                    sample_rate: output.sample_rate,
                },
                t,
            )
        }
        // The job's own cancellation wins: a cancelled job must not run again.
        Err(InferenceError::Cancelled) if job.cancel.is_cancelled() => {
            (Ran::Done(Outcome::Cancelled), timing(None))
        }
        Err(InferenceError::Cancelled) => (Ran::Done(Outcome::Interrupted), timing(None)),
        Err(e) if e.is_invalid_input() => {
            (Ran::Done(Outcome::Invalid(e.to_string())), timing(None))
        }
        Err(e) => (Ran::Done(Outcome::Retry(e.to_string())), timing(None)),
    };
    (generator, ran, Some(timing))
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
