//! A node's files in NATS: the inputs a job names, read from the object store's inputs bucket,
//! its results, put into the results bucket, and a look at the job the work queue would
//! deliver next ([`NatsLink::peek_next`]), whose inputs the worker loop prepares while the
//! current job runs.
//!
//! The look takes nothing: it reads the consumer's delivered sequence and the first job
//! message after it in the stream (a plain stream read), so the job stays in the work queue
//! for whichever node pulls first — a node never holds a second job while it runs one (a
//! pull would; see the stack notes on prefetching consumers). Nor does it reorder anything:
//! the orchestrator's dispatcher already published that job as the next in its fair order
//! (`queue.prefetch`, 1 by default, keeps one waiting). A message given back for redelivery
//! (a retry, a released job) is not seen and is simply prepared when it comes.

use protocol::{JobId, JobSpec};
use refrain_nats::objects::Bucket;
use refrain_nats::wire;
use refrain_nats::{retry, NatsError};
use tokio_util::sync::CancellationToken;

use super::link::{NatsLink, REPORT_FOR, REPORT_SUCCESS_FOR};
use protocol::node::{Assignment, LinkError};
use refrain_nats::wire::ResultObject;

impl NatsLink {
    /// Reads input `name` of job `job` from the inputs bucket (retrying for a while).
    pub(super) async fn fetch(&self, job: &JobId, name: &str) -> Result<Vec<u8>, LinkError> {
        let object = wire::input_object(job, name);
        let never = CancellationToken::new();
        retry(
            &format!("reading {object}"),
            &never,
            Some(REPORT_FOR),
            || async {
                match self.js.objects.get(Bucket::Inputs, &object).await {
                    // Not there is final: no retry.
                    Err(e @ NatsError::ObjectNotFound { .. }) => Ok(Err(e)),
                    Err(e) => Err(e),
                    Ok(bytes) => Ok(Ok(bytes)),
                }
            },
        )
        .await
        .map_err(|e| LinkError::transient(e.to_string()))?
        .map_err(|e| LinkError::new(e.to_string()))
    }

    /// The job the shared consumer would deliver next, without taking it; `None` when none
    /// waits or the server cannot say now.
    pub(super) async fn peek_next(&self) -> Option<(JobId, JobSpec)> {
        match self.queue.peek().await {
            Ok(next) => next.map(|job| (job.id, job.spec)),
            Err(e) => {
                tracing::debug!(error = %e, "cannot look at the next job");
                None
            }
        }
    }

    /// Puts every variant into the results bucket (retrying for a while), in order.
    pub(super) async fn store_results(
        &self,
        job: &Assignment,
        wavs: &[Vec<u8>],
    ) -> Result<Vec<ResultObject>, NatsError> {
        let never = CancellationToken::new();
        let mut objects = Vec::with_capacity(wavs.len());
        for (variant, wav) in wavs.iter().enumerate() {
            let object = wire::result_object(&job.id, job.attempt, &self.identity.node, variant);
            retry::<_, NatsError, _, _>(
                &format!("storing {object}"),
                &never,
                Some(REPORT_SUCCESS_FOR),
                || self.js.objects.put(Bucket::Results, &object, wav),
            )
            .await?;
            objects.push(ResultObject {
                object,
                bytes: wav.len() as u64,
            });
        }
        Ok(objects)
    }
}
