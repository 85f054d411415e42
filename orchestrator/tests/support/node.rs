//! A stand-in inference node for the orchestrator's tests (this crate links no model): it takes
//! jobs through the service's embedded link in the order the queue hands them out, tells the
//! test which job it holds, and finishes that job with a small WAV only when the test releases
//! it. The test thus decides exactly when the node is busy and sees the scheduler's order.

use std::sync::Arc;
use std::time::Duration;

use protocol::node::Outcome;
use protocol::{JobId, ProgressEvent};
use refrain_orchestrator::service::{InProcessLink, InProcessNode, NodeRunner};
use tokio::sync::{mpsc, Semaphore};

use super::http::wav;

/// Only against hangs: how long the test waits for the node to take a job.
const TAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// The test's side of a stand-in node; [`StandIn::runner`] goes to the service.
pub struct StandIn {
    pub runner: NodeRunner,
    taken: mpsc::UnboundedReceiver<JobId>,
    release: Arc<Semaphore>,
}

impl Default for StandIn {
    fn default() -> Self {
        StandIn::new()
    }
}

impl StandIn {
    pub fn new() -> StandIn {
        StandIn::reporting(None)
    }

    /// A stand-in that reports `progress` (stage, step/total, percent) for each job it takes,
    /// before it tells the test which job it holds.
    pub fn with_progress(progress: ProgressEvent) -> StandIn {
        StandIn::reporting(Some(progress))
    }

    fn reporting(progress: Option<ProgressEvent>) -> StandIn {
        let (tx, taken) = mpsc::unbounded_channel();
        let release = Arc::new(Semaphore::new(0));
        let gate = release.clone();
        let runner: NodeRunner = Arc::new(move |node: InProcessNode| {
            let (tx, gate, progress) = (tx.clone(), gate.clone(), progress.clone());
            Box::pin(async move {
                let InProcessLink::Embedded(link) = node.link else {
                    panic!("the stand-in node runs on the embedded queue");
                };
                node.report.loaded();
                loop {
                    let job = tokio::select! {
                        _ = node.cancel.cancelled() => return,
                        job = link.next() => job.expect("a job from the link"),
                    };
                    if let Some(event) = &progress {
                        link.progress(&job, event.clone()).await;
                    }
                    let _ = tx.send(job.id.clone());
                    let outcome = tokio::select! {
                        _ = node.cancel.cancelled() => Outcome::Interrupted,
                        permit = gate.acquire() => {
                            permit.expect("the gate stays open").forget();
                            Outcome::Succeeded {
                                wavs: vec![wav(1.0, 8000)],
                                duration_seconds: 1.0,
                            }
                        }
                    };
                    let stop = matches!(outcome, Outcome::Interrupted);
                    link.finish(job, outcome)
                        .await
                        .expect("the outcome is recorded");
                    if stop {
                        return;
                    }
                }
            })
        });
        StandIn {
            runner,
            taken,
            release,
        }
    }

    /// The next job the node took (it holds it until [`StandIn::release`]).
    pub async fn taken(&mut self) -> JobId {
        tokio::time::timeout(TAKE_TIMEOUT, self.taken.recv())
            .await
            .expect("the node takes a job")
            .expect("the node runs")
    }

    /// Lets the node finish the job it holds (or the next one it takes) with success.
    pub fn release(&self) {
        self.release.add_permits(1);
    }
}
