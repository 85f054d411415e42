//! What travels over NATS: subject, stream, consumer and bucket names, and the JSON messages
//! (job, durable node event, progress, node announcement). Both sides — `refrain serve` and
//! `refrain node` — use these and nothing else, so a node needs no access to the job store.
//!
//! | what | where | kind |
//! |---|---|---|
//! | job ([`JobMessage`]) | `refrain.jobs.<id>` in stream `REFRAIN_JOBS` (work queue) | JetStream, `Nats-Msg-Id` = job id |
//! | node events ([`NodeEvent`]) | `refrain.events.<id>` in stream `REFRAIN_EVENTS` | JetStream, consumed by the orchestrator |
//! | max-deliveries advisory | `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.REFRAIN_JOBS.refrain-nodes`, captured in `REFRAIN_EVENTS` | JetStream |
//! | progress ([`ProgressWire`]) | `refrain.progress.<id>` | core NATS |
//! | cancel a job | `refrain.cancel.<id>` (empty payload; the node running it stops) | core NATS |
//! | node heartbeat ([`NodeAnnouncement`]) | `refrain.nodes.<node>`; `refrain.registry.ping` asks every node to announce | core NATS |
//! | inputs (uploads, earlier results) | bucket `refrain-inputs`, `<id>/<name>` | object store |
//! | results | bucket `refrain-results`, `<id>/<attempt>-<node>-<variant>.wav` | object store |

use protocol::{JobId, JobSpec, ProgressEvent};
use serde::{Deserialize, Serialize};

/// The work-queue stream of jobs.
pub const JOBS_STREAM: &str = "REFRAIN_JOBS";
/// Subjects of the jobs stream (one per job).
pub const JOBS_SUBJECTS: &str = "refrain.jobs.*";
/// The one durable pull consumer every node shares.
pub const JOBS_CONSUMER: &str = "refrain-nodes";
/// The stream of durable node events (and the max-deliveries advisories).
pub const EVENTS_STREAM: &str = "REFRAIN_EVENTS";
/// Subjects of node events (one per job).
pub const EVENTS_SUBJECTS: &str = "refrain.events.*";
/// The orchestrator's durable consumer of the events stream.
pub const EVENTS_CONSUMER: &str = "refrain-orchestrator";
/// Bucket of the files a job needs (uploads, earlier results).
pub const INPUTS_BUCKET: &str = "refrain-inputs";
/// Bucket of the WAVs nodes produce.
pub const RESULTS_BUCKET: &str = "refrain-results";
/// Core subject prefix of node heartbeats.
pub const NODES_PREFIX: &str = "refrain.nodes";
/// Core subject the orchestrator publishes on to make every node announce itself now.
pub const REGISTRY_PING: &str = "refrain.registry.ping";
/// Core subject prefix of progress events.
pub const PROGRESS_PREFIX: &str = "refrain.progress";
/// Core subject prefix of job cancellations.
pub const CANCEL_PREFIX: &str = "refrain.cancel";

/// The advisory the server publishes when a job ran out of deliveries.
pub fn max_deliveries_advisory() -> String {
    format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{JOBS_STREAM}.{JOBS_CONSUMER}")
}

/// The subject of a job's message.
pub fn job_subject(id: &JobId) -> String {
    format!("refrain.jobs.{id}")
}

/// The subject of a job's durable events.
pub fn event_subject(id: &JobId) -> String {
    format!("refrain.events.{id}")
}

/// The subject of a job's progress.
pub fn progress_subject(id: &JobId) -> String {
    format!("{PROGRESS_PREFIX}.{id}")
}

/// The subject on which a job's cancellation is published (core NATS).
pub fn cancel_subject(id: &JobId) -> String {
    format!("{CANCEL_PREFIX}.{id}")
}

/// The subject of a node's heartbeats (node ids are made subject-safe).
pub fn node_subject(node: &str) -> String {
    format!("{NODES_PREFIX}.{}", subject_token(node))
}

/// `s` with every character that may not appear in a subject token replaced by `_`.
pub fn subject_token(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Object name of an input of a job: an upload by blob name, or an earlier result.
pub fn input_object(job: &JobId, name: &str) -> String {
    format!("{job}/{name}")
}

/// The input name under which an earlier job's result is handed to an edit job.
pub fn earlier_result_name(source: &JobId) -> String {
    format!("output-{source}.wav")
}

/// Object name of one variant (0-based) of the result of one attempt on one node (two nodes may
/// run the same attempt after a server crash rewound the consumer: their WAVs must not
/// overwrite each other).
pub fn result_object(job: &JobId, attempt: u32, node: &str, variant: usize) -> String {
    format!("{job}/{attempt}-{}-{variant}.wav", subject_token(node))
}

/// The message id of a node event: publishing it again (a retry after a lost ack) is dropped
/// by the stream's duplicate window.
pub fn event_message_id(event: &NodeEvent) -> String {
    if event.interruptions == 0 {
        format!("{}:{}:{}", event.id, event.attempt, event.kind.name())
    } else {
        // The run after an interruption has the same attempt number: its events need their
        // own ids, or the duplicate window would drop them.
        format!(
            "{}:{}.{}:{}",
            event.id,
            event.attempt,
            event.interruptions,
            event.kind.name()
        )
    }
}

/// A job on the queue: everything a node needs (it has no access to the job store).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobMessage {
    pub id: JobId,
    pub spec: JobSpec,
    /// Unix milliseconds when the job was admitted.
    pub created_ms: u64,
    /// Attempts before this message: a node's attempt number is `attempt_base` + JetStream's
    /// delivery count. 0 for a job's first message; more when the orchestrator published the
    /// job again (startup reconciliation after the server lost it).
    #[serde(default)]
    pub attempt_base: u32,
}

impl JobMessage {
    /// The `Nats-Msg-Id` of this message: the job id for the first publish, `<id>:a<N>` for a
    /// republish from attempt N on (a new id, so the duplicate window does not drop it).
    pub fn message_id(&self) -> String {
        if self.attempt_base == 0 {
            self.id.to_string()
        } else {
            format!("{}:a{}", self.id, self.attempt_base + 1)
        }
    }
}

/// A durable report of a node about one attempt of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeEvent {
    pub id: JobId,
    /// The attempt: 1 on the first run, +1 after each run that failed with an error of the job
    /// (`retrying`). A run lost with its node does not count (see `interruptions`).
    pub attempt: u32,
    /// Runs of this attempt in a row lost with their node (killed, cut off) before this one.
    #[serde(default)]
    pub interruptions: u32,
    /// The node that ran it.
    pub node: String,
    /// Unix milliseconds on the node.
    pub at_ms: u64,
    pub kind: EventKind,
}

/// What happened to an attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum EventKind {
    /// The node took the job and starts running it.
    Started,
    /// The WAVs are in the results bucket, one object per variant (index 0 first).
    Succeeded {
        objects: Vec<ResultObject>,
        duration_seconds: f64,
    },
    /// The attempt failed and the job goes back to the queue (after a delay).
    Retrying { message: String },
    /// The job failed for good (invalid input, or out of attempts).
    Failed { message: String },
    /// The job was cancelled while this node ran it; it does not run again.
    Cancelled,
    /// The node stopped gracefully and gave the job back untouched: it runs again as the same
    /// attempt (not the job's fault, not an interruption).
    Released,
}

/// One stored result WAV.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultObject {
    /// Object name in the results bucket.
    pub object: String,
    pub bytes: u64,
}

impl EventKind {
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Started => "started",
            EventKind::Succeeded { .. } => "succeeded",
            EventKind::Retrying { .. } => "retrying",
            EventKind::Failed { .. } => "failed",
            EventKind::Cancelled => "cancelled",
            EventKind::Released => "released",
        }
    }
}

/// The payload of the server's max-deliveries advisory (the fields used).
#[derive(Debug, Clone, Deserialize)]
pub struct MaxDeliveriesAdvisory {
    pub stream: String,
    pub consumer: String,
    pub stream_seq: u64,
    pub deliveries: u64,
}

/// A progress event on core NATS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressWire {
    pub id: JobId,
    pub attempt: u32,
    pub event: ProgressEvent,
}

/// What a node is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Loading its bundle.
    Starting,
    /// Waiting for a job.
    Idle,
    /// Running a job.
    Busy,
    /// Shut down cleanly (its last announcement).
    Stopped,
}

/// The job a node is running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurrentJob {
    pub id: JobId,
    pub attempt: u32,
    /// Overall percent of the latest progress event.
    pub percent: f32,
}

/// A node's heartbeat: who it is and what it does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeAnnouncement {
    /// Unique per node process: `<host>/<device>/<random>` unless named.
    pub node: String,
    pub host: String,
    pub device: String,
    pub bundle_name: String,
    pub bundle_version: String,
    pub state: NodeState,
    #[serde(default)]
    pub job: Option<CurrentJob>,
    /// Jobs whose run ended on this node and whose outcome it is still reporting (results
    /// uploaded, durable event, ack): the node may already run its next job meanwhile, and
    /// another node that is delivered one of these again must wait for it as for `job`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reporting: Vec<JobId>,
    /// Attempts this node finished (any outcome).
    pub jobs_done: u64,
    /// Unix milliseconds when the node started.
    pub started_ms: u64,
    /// Milliseconds until the next heartbeat.
    pub heartbeat_ms: u64,
    /// Crate version of the node.
    pub version: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let id = JobId::from_bytes([0x1f; 16]);
        assert_eq!(job_subject(&id), format!("refrain.jobs.{id}"));
        assert_eq!(
            result_object(&id, 2, "gpu/0", 1),
            format!("{id}/2-gpu_0-1.wav")
        );
        assert_eq!(cancel_subject(&id), format!("refrain.cancel.{id}"));
        assert_eq!(
            node_subject("host.a/cuda:0/x"),
            "refrain.nodes.host_a_cuda_0_x"
        );
        assert_eq!(
            max_deliveries_advisory(),
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.REFRAIN_JOBS.refrain-nodes"
        );
    }

    #[test]
    fn events_round_trip() {
        let e = NodeEvent {
            id: JobId::from_bytes([1; 16]),
            attempt: 3,
            interruptions: 0,
            node: "n".into(),
            at_ms: 5,
            kind: EventKind::Succeeded {
                objects: vec![ResultObject {
                    object: "o".into(),
                    bytes: 10,
                }],
                duration_seconds: 95.0,
            },
        };
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains("\"type\":\"succeeded\""), "{json}");
        assert_eq!(serde_json::from_str::<NodeEvent>(&json).unwrap(), e);
        assert_eq!(event_message_id(&e), format!("{}:3:succeeded", e.id));
        // The run after an interruption has ids of its own (not dropped as duplicates).
        let again = NodeEvent {
            interruptions: 2,
            ..e.clone()
        };
        assert_eq!(event_message_id(&again), format!("{}:3.2:succeeded", e.id));
        // Events of older nodes (no `interruptions`) still decode.
        let old = json.replace(",\"interruptions\":0", "");
        assert!(!old.contains("interruptions"), "{old}");
        assert_eq!(serde_json::from_str::<NodeEvent>(&old).unwrap(), e);
    }
}
