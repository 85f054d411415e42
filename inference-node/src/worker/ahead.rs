//! The next job's inputs, made while the current job runs (see the loop's docs in `super`).
//!
//! A [`Lookahead`] holds at most one job's [`Preparation`]: its uploads fetched and decoded,
//! its lyric track and style embedding made. Three parts of the loop want it: the look-ahead
//! that starts it from the link's `peek` ([`Lookahead::watch`]), the take during the running
//! job's decode ([`Lookahead::for_job`]), and the job's own start ([`Lookahead::claim`]). A
//! preparation is a shared future, so it goes on when the one that started it is dropped (the
//! running job ended) and whoever needs it next finishes it: a job is never prepared twice
//! because its preparation was still under way when it was taken. Apart from the loop because
//! it is state of its own with its own rules, and the loop's file is about timing.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use futures_util::future::{FutureExt, Shared};
use protocol::{JobId, JobSpec};
use tokio_util::sync::CancellationToken;

use crate::pipeline::GenerateRequest;
use crate::prepare::{Prepared, Preparer};

use super::{load_request, NodeLink, WorkerSettings, PEEK_EVERY, PEEK_SOON, SOON_FOR};

/// A job's request with its prepared inputs (`None`: preparing them failed, and the pipeline
/// prepares them itself, reporting why).
pub(super) type Inputs = (GenerateRequest, Option<Prepared>);

/// One job's preparation, started when first polled, shared by whoever needs it.
pub(super) type Preparation<'a> = Shared<Pin<Box<dyn Future<Output = Made> + Send + 'a>>>;

/// A preparation's result, taken once by the job's run; `None` when loading the request
/// failed (the job's own run then loads it and reports why) or it was taken already.
#[derive(Clone)]
pub(super) struct Made(Arc<Mutex<Option<Inputs>>>);

impl Made {
    pub(super) fn take(&self) -> Option<Inputs> {
        lock(&self.0).take()
    }
}

/// The job being prepared, or prepared, ahead.
struct Ahead<'a> {
    id: JobId,
    ready: Preparation<'a>,
}

/// The loop's one slot for the next job's inputs.
pub(super) struct Lookahead<'a> {
    link: &'a dyn NodeLink,
    preparer: &'a Preparer,
    settings: &'a WorkerSettings,
    slot: Mutex<Option<Ahead<'a>>>,
}

impl<'a> Lookahead<'a> {
    pub(super) fn new(
        link: &'a dyn NodeLink,
        preparer: &'a Preparer,
        settings: &'a WorkerSettings,
    ) -> Self {
        Self {
            link,
            preparer,
            settings,
            slot: Mutex::new(None),
        }
    }

    /// Job `id`'s preparation if it was started ahead, taken out of the slot (it may still be
    /// under way: awaiting it finishes it).
    pub(super) fn claim(&self, id: &JobId) -> Option<Preparation<'a>> {
        let mut slot = lock(&self.slot);
        match slot.take() {
            Some(a) if a.id == *id => Some(a.ready),
            other => {
                *slot = other;
                None
            }
        }
    }

    /// A taken job's preparation: the one made or under way, else a new one in the slot
    /// (replacing a wrong guess).
    pub(super) fn for_job(&self, id: &JobId, spec: &JobSpec) -> Preparation<'a> {
        let mut slot = lock(&self.slot);
        match slot.as_ref() {
            Some(a) if a.id == *id => a.ready.clone(),
            _ => self.start(&mut slot, id, spec),
        }
    }

    /// While job `running` runs: prepares the job the link says comes next, again whenever
    /// that changes, until `sampled` fires (the next job is being taken, so the queue's head
    /// is then the job after it). Never returns (dropped when the running job ends).
    pub(super) async fn watch(&self, running: &JobId, sampled: &CancellationToken) -> Infallible {
        let began = Instant::now();
        loop {
            if sampled.is_cancelled() {
                return std::future::pending().await;
            }
            // A head read before the next job was taken, not after.
            let head = self.link.peek().await.filter(|_| !sampled.is_cancelled());
            if let Some((id, spec)) = head {
                let started = {
                    let mut slot = lock(&self.slot);
                    let known = slot.as_ref().is_some_and(|a| a.id == id);
                    (!known && id != *running).then(|| self.start(&mut slot, &id, &spec))
                };
                if let Some(ready) = started {
                    ready.await;
                }
            }
            let pause = if began.elapsed() < SOON_FOR {
                PEEK_SOON
            } else {
                PEEK_EVERY
            };
            tokio::time::sleep(pause).await;
        }
    }

    /// Puts a new preparation of job `id` in `slot`.
    fn start(&self, slot: &mut Option<Ahead<'a>>, id: &JobId, spec: &JobSpec) -> Preparation<'a> {
        let (link, preparer, settings) = (self.link, self.preparer, self.settings);
        let (job, spec) = (id.clone(), spec.clone());
        let made: Pin<Box<dyn Future<Output = Made> + Send + 'a>> = Box::pin(async move {
            let ready = prepare(link, preparer, settings, &job, &spec).await;
            Made(Arc::new(Mutex::new(ready)))
        });
        let ready = made.shared();
        *slot = Some(Ahead {
            id: id.clone(),
            ready: ready.clone(),
        });
        ready
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Loads job `id`'s request (its uploads fetched and decoded) and prepares its inputs; `None`
/// when loading fails (the job's own run reports why).
async fn prepare(
    link: &dyn NodeLink,
    preparer: &Preparer,
    settings: &WorkerSettings,
    id: &JobId,
    spec: &JobSpec,
) -> Option<Inputs> {
    let request = load_request(link, id, spec, settings).await.ok()?;
    let preparer = preparer.clone();
    let made = tokio::task::spawn_blocking(move || {
        let prepared = preparer.prepare(&request);
        (request, prepared)
    })
    .await;
    let ready = made
        .ok()
        .map(|(request, prepared)| (request, prepared.ok()));
    tracing::debug!(job = %id, ready = ready.is_some(), "prepared the next job ahead");
    ready
}
