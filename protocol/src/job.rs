//! Jobs: the normalised request (`JobSpec`), its durable record (`JobRecord`) and its life cycle
//! (`queued → running → succeeded | failed | cancelled`).
//!
//! A `JobSpec` is independent of the API it came from: the DiffRhythm server API, the PiAPI task
//! API, the bots and the scheduler all produce the same spec, and nodes only ever see specs.
//! Files (reference audio uploads, reference songs) are named by store-managed ids, never by
//! client-chosen paths.

use serde::{Deserialize, Serialize};

use crate::progress::ProgressEvent;

/// A job's id: 32 lower-case hex digits (a random UUID without dashes).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(String);

impl JobId {
    /// Wraps an id after checking its form (32 lower-case hex digits).
    pub fn parse(s: &str) -> Option<JobId> {
        (s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| JobId(s.to_string()))
    }

    /// Builds an id from 16 random bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> JobId {
        JobId(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The result file name of this job: `<id>.wav`.
    pub fn file_name(&self) -> String {
        format!("{}.wav", self.0)
    }
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the style of a job comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum StyleSpec {
    /// A text prompt.
    Prompt(String),
    /// An uploaded recording, by blob id (see the orchestrator's blob store).
    Upload(String),
}

/// The song an edit job starts from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum SongRef {
    /// The result of an earlier job.
    Output(JobId),
    /// An uploaded recording, by blob id.
    Upload(String),
}

/// Edit (inpainting) settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EditSpec {
    pub song: SongRef,
    /// `[start_s, end_s]` spans to regenerate; `-1` means the song's start or end.
    pub segments: Vec<(f64, f64)>,
}

/// A validated, normalised generation request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// LRC (or plain) lyrics; empty for an instrumental.
    pub lyrics: String,
    pub style: StyleSpec,
    /// Song length in whole seconds (95, or 96..=285).
    pub seconds: u32,
    /// Noise seed, fixed at admission so a re-run gives the same bytes.
    pub seed: u64,
    /// Sampler time-grid points; `None` is the bundle default.
    #[serde(default)]
    pub steps: Option<u32>,
    #[serde(default)]
    pub cfg_strength: Option<f32>,
    /// `batch_infer_num`: variants generated together (the first is kept).
    pub variants: u32,
    pub chunked: bool,
    #[serde(default)]
    pub edit: Option<EditSpec>,
    /// Sub-folder of the output root the result goes to (validated, relative, no `..`).
    #[serde(default)]
    pub output_subdir: Option<String>,
}

/// The front end a job came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The DiffRhythm server API (`POST /generate`).
    DiffRhythmApi,
    /// The PiAPI / Qubico task API.
    TaskApi,
    /// The Riffusion-style API.
    RiffusionApi,
    Discord,
    Telegram,
    Schedule,
    Cli,
}

/// Where a job is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 5] = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Whether the job can no longer change.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }

    /// The transitions the life cycle allows. `Running → Queued` is the crash recovery and
    /// redelivery path (with a higher attempt number).
    pub fn can_become(self, next: JobState) -> bool {
        use JobState::*;
        matches!(
            (self, next),
            (Queued, Running)
                | (Queued, Cancelled)
                | (Queued, Failed)
                | (Running, Succeeded)
                | (Running, Failed)
                | (Running, Cancelled)
                | (Running, Queued)
        )
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of a finished job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    /// File name under the output store (e.g. `<id>.wav` or `sub/dir/<id>.wav`).
    pub file: String,
    pub bytes: u64,
    pub duration_seconds: f64,
    /// Which attempt produced it (completion is idempotent on (id, attempt)).
    pub attempt: u32,
}

/// The durable record of a job, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: JobId,
    pub spec: JobSpec,
    pub state: JobState,
    /// 1 for the first run; +1 on every redelivery.
    pub attempt: u32,
    pub source: Source,
    /// Unix milliseconds.
    pub created_ms: u64,
    pub updated_ms: u64,
    #[serde(default)]
    pub started_ms: Option<u64>,
    #[serde(default)]
    pub finished_ms: Option<u64>,
    /// The latest progress of the current attempt (stage changes are persisted).
    #[serde(default)]
    pub progress: Option<ProgressEvent>,
    #[serde(default)]
    pub result: Option<JobResult>,
    /// Why the job failed, for clients.
    #[serde(default)]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids() {
        let id = JobId::from_bytes([0xab; 16]);
        assert_eq!(id.as_str(), "ab".repeat(16));
        assert_eq!(JobId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(id.file_name(), format!("{}.wav", "ab".repeat(16)));
        for bad in [
            "",
            "AB",
            &"g".repeat(32),
            &"a".repeat(31),
            "../../etc/passwd",
        ] {
            assert_eq!(JobId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn life_cycle() {
        use JobState::*;
        assert!(Queued.can_become(Running));
        assert!(Running.can_become(Queued));
        assert!(!Succeeded.can_become(Running));
        assert!(!Queued.can_become(Succeeded));
        assert!(Failed.is_terminal() && !Running.is_terminal());
    }
}
