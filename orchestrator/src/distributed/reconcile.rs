//! Startup reconciliation of the NATS deployment: the dispatcher's view (which jobs the work
//! queue holds, which go back into the backlog) is rebuilt from the job store, the stream and
//! the node events already waiting, before anything is published. Kept apart from
//! [`super::events`], which applies events while the service runs.

use std::time::Duration;

use protocol::JobState;
use tokio_util::sync::CancellationToken;

use super::{retry, wire, DistributedError};
use crate::jobs::Lifecycle;
use crate::queue::nats::NatsQueue;
use crate::queue::{Queue, QueueItem};

/// Startup reconciliation. First the jobs the work queue still holds: every Queued or Running
/// job of the store is looked up in the stream (retried until NATS answers), and the ones found
/// are handed to the dispatcher as in flight ([`NatsQueue::seed`], which lets it publish). Every
/// other one goes back into the backlog, after the node events that were already in the
/// stream have been applied (a job that finished while this process was down has no message
/// either, but its events say so): a job never published (it waited in the backlog), or lost
/// by the server. A Running job without a message becomes Queued with the next attempt number.
/// Returns how many jobs went back into the backlog.
pub async fn reconcile(
    queue: &NatsQueue,
    lifecycle: &Lifecycle,
    cancel: &CancellationToken,
) -> Result<usize, DistributedError> {
    let store = lifecycle.store();
    let js = queue.jetstream();
    let (held, missing) = retry(
        "looking up the queued jobs in the work queue",
        cancel,
        None,
        || async move {
            let mut held = Vec::new();
            let mut missing = Vec::new();
            for state in [JobState::Queued, JobState::Running] {
                for id in store.ids_in_state(state)? {
                    let Some(record) = store.get(&id)? else {
                        continue;
                    };
                    if record.state != state {
                        continue;
                    }
                    if queue.holds(&id).await? {
                        held.push((QueueItem::of(&record), state == JobState::Running));
                    } else {
                        missing.push(record);
                    }
                }
            }
            Ok::<_, DistributedError>((held, missing))
        },
    )
    .await?;
    queue
        .seed(held)
        .map_err(|e| DistributedError::GaveUp(format!("seeding the dispatcher: {e}")))?;
    if missing.is_empty() {
        return Ok(0);
    }
    // Wait until every event published before the look-up above has been applied.
    let target = retry("reading the events stream", cancel, None, || async {
        js.events
            .get_info()
            .await
            .map_err(|e| DistributedError::js("events stream info", e))
    })
    .await?
    .state
    .last_sequence;
    // The events consumer may be missing for a moment: the events applier rewinds it at
    // startup by recreating it (seen as "consumer not found"). Every failure to read it is
    // retried; after two minutes without getting there the jobs go back anyway (a job whose
    // events were not applied may run again, to the same result: its seed is fixed), since a
    // job left out of the backlog would never run.
    let started = tokio::time::Instant::now();
    loop {
        match js.events.consumer_info(wire::EVENTS_CONSUMER).await {
            Ok(info) if info.ack_floor.stream_sequence >= target => break,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "events consumer info (retrying)");
            }
        }
        if started.elapsed() > Duration::from_secs(120) {
            tracing::warn!(
                "node events published before this start are still not applied after 120 s; \
                 queuing the jobs without a message anyway"
            );
            break;
        }
        tokio::select! {
            _ = cancel.cancelled() => return Err(DistributedError::GaveUp("reconciliation".into())),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    let mut restored = 0;
    for old in missing {
        let Some(record) = store.get(&old.id)? else {
            continue;
        };
        if record.state != old.state || record.attempt != old.attempt {
            continue; // an event moved it meanwhile
        }
        let id = &record.id;
        if record.state == JobState::Running {
            tracing::warn!(job = %id, attempt = record.attempt, "running job is not in the queue any more; queuing it again");
            lifecycle
                .requeue_lost(id, record.attempt, record.attempt + 1)
                .await?;
        } else {
            tracing::debug!(job = %id, "queued job back in the backlog");
        }
        let item = match store.get(id)? {
            Some(now) => QueueItem::of(&now),
            None => QueueItem::of(&record),
        };
        queue
            .enqueue(&item)
            .await
            .map_err(|e| DistributedError::GaveUp(format!("queuing job {id}: {e}")))?;
        restored += 1;
    }
    Ok(restored)
}
