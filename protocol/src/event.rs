//! Job events: what the job core's outbox records about every change of a job, in order, and
//! what every subscriber (Server-Sent Events, webhooks, bots, the web page) receives.
//!
//! Each event carries the job's sequence number `seq` (1, 2, 3, … per job, no gaps), so a
//! subscriber that reconnects names the last `seq` it saw and receives everything after it.

use serde::{Deserialize, Serialize};

use crate::job::{JobId, JobRecord, JobResult, JobState};
use crate::progress::Stage;

/// What happened to the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum JobEventKind {
    /// Accepted and waiting in the queue.
    Queued,
    /// A node took it (attempt `attempt`).
    Started,
    /// A step of the running generation (stage, step/total, percent, ETA).
    Progress,
    /// An attempt failed; the job waits in the queue for the next one.
    Retrying,
    /// Given back untouched (shutdown); it runs again with the same attempt number.
    Requeued,
    Succeeded,
    Failed,
    Cancelled,
    /// Removed by the retention policy: the last event of a job.
    Expired,
}

impl JobEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobEventKind::Queued => "queued",
            JobEventKind::Started => "started",
            JobEventKind::Progress => "progress",
            JobEventKind::Retrying => "retrying",
            JobEventKind::Requeued => "requeued",
            JobEventKind::Succeeded => "succeeded",
            JobEventKind::Failed => "failed",
            JobEventKind::Cancelled => "cancelled",
            JobEventKind::Expired => "expired",
        }
    }

    /// Whether nothing follows this event.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobEventKind::Succeeded
                | JobEventKind::Failed
                | JobEventKind::Cancelled
                | JobEventKind::Expired
        )
    }
}

/// One entry of a job's outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobEvent {
    pub job: JobId,
    /// Per-job sequence number, from 1, without gaps.
    pub seq: u64,
    pub kind: JobEventKind,
    /// The job's state after the change.
    pub state: JobState,
    pub attempt: u32,
    /// Unix milliseconds.
    pub at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<f64>,
    /// 0-based position in the queue when the job was queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<JobResult>,
}

impl JobEvent {
    /// The event describing `record` as it is now (its `event_seq` is the event's `seq`).
    pub fn of(record: &JobRecord, kind: JobEventKind, at_ms: u64) -> JobEvent {
        let progress = record.progress.as_ref();
        JobEvent {
            job: record.id.clone(),
            seq: record.event_seq,
            kind,
            state: record.state,
            attempt: record.attempt,
            at_ms,
            stage: progress.map(|p| p.stage),
            step: progress.map(|p| p.step),
            total: progress.map(|p| p.total),
            percent: progress.map(|p| p.percent),
            eta_seconds: progress.and_then(|p| p.eta_seconds),
            queue_position: None,
            error: record.error.clone(),
            result: record.result.clone(),
        }
    }
}
