//! Jobs: the normalised request (`JobSpec`), its durable record (`JobRecord`) and its life cycle
//! (`queued → running → succeeded | failed | cancelled`).
//!
//! A `JobSpec` is independent of the API it came from: the DiffRhythm server API, the PiAPI task
//! API, the bots and the scheduler all produce the same spec, and nodes only ever see specs.
//! Files (reference audio uploads, reference songs) are named by store-managed ids, never by
//! client-chosen paths.

use serde::{Deserialize, Serialize};

use crate::progress::ProgressEvent;

/// A job's id: 32 lower-case hex digits. The orchestrator makes them from the creation time
/// in milliseconds (the first 12 digits) and 80 random bits, so ids sort by creation and
/// cannot be guessed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// A sampler start from an earlier song instead of pure noise: SDEdit for flow matching.
/// Refrain's addition — the reference DiffRhythm has no such mode (its sampler always starts
/// from noise). The song's latents (the VAE encoder's, as edit mode gets them) are re-noised
/// to the time `t0 = 1 − strength` of the sampler's path `x_t = (1 − t)·noise + t·data`, and
/// only the time-grid steps after `t0` run: strength 1 is a fresh generation (the same bytes
/// as without `init` for the same seed), 0 gives the song's own latents back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitSpec {
    /// The song the sampler starts from; it covers every frame of the new song (a longer one
    /// is cut).
    pub song: SongRef,
    /// Noise strength, 0 to 1 (checked at admission).
    pub strength: f32,
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
    /// Start the sampler from a re-noised song ([`InitSpec`]); never together with `edit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<InitSpec>,
    /// Sub-folder of the output root the result goes to (validated, relative, no `..`).
    #[serde(default)]
    pub output_subdir: Option<String>,
    /// The format the client asked for; the WAV is always kept too.
    #[serde(default)]
    pub format: AudioFormat,
}

impl JobSpec {
    /// The songs the job starts from (its edit song, its init song), which a node must be
    /// given and retention must keep while the job may still run.
    pub fn songs(&self) -> impl Iterator<Item = &SongRef> {
        self.edit
            .as_ref()
            .map(|e| &e.song)
            .into_iter()
            .chain(self.init.as_ref().map(|i| &i.song))
    }
}

/// An output audio format. Every job produces WAVs; other formats are transcoded from them once
/// and cached beside them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum AudioFormat {
    /// 16-bit PCM WAV, 44.1 kHz stereo (what the model produces).
    #[default]
    Wav,
    /// MP3 (CBR).
    Mp3,
    /// Opus in an Ogg container (`.ogg`).
    Opus,
}

impl AudioFormat {
    pub const ALL: [AudioFormat; 3] = [AudioFormat::Wav, AudioFormat::Mp3, AudioFormat::Opus];

    /// Reads a client's name for a format: `wav`, `mp3`, `ogg` or `opus` (case-insensitive).
    pub fn parse(s: &str) -> Option<AudioFormat> {
        match s.trim().to_ascii_lowercase().as_str() {
            "wav" | "wave" => Some(AudioFormat::Wav),
            "mp3" | "mpeg" => Some(AudioFormat::Mp3),
            "ogg" | "opus" => Some(AudioFormat::Opus),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AudioFormat::Wav => "wav",
            AudioFormat::Mp3 => "mp3",
            AudioFormat::Opus => "opus",
        }
    }

    /// File extension (without the dot).
    pub fn extension(self) -> &'static str {
        match self {
            AudioFormat::Wav => "wav",
            AudioFormat::Mp3 => "mp3",
            AudioFormat::Opus => "ogg",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            AudioFormat::Wav => "audio/wav",
            AudioFormat::Mp3 => "audio/mpeg",
            AudioFormat::Opus => "audio/ogg",
        }
    }
}

/// Who a job belongs to: limits and fair share are per owner. Written `<kind>:<id>`, e.g.
/// `key:alice`, `discord:<user>@<guild>`, `telegram:<chat>`, `schedule:<name>`, `ip:<addr>`,
/// `anonymous`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Owner(String);

impl Owner {
    /// The owner of requests that carry no identity (the seed-000 API without keys).
    pub fn anonymous() -> Owner {
        Owner("anonymous".into())
    }

    /// An owner of `kind` (`key`, `discord`, `telegram`, `schedule`, `ip`, …) named `id`.
    /// Control characters are replaced so the name is safe in logs and keys.
    pub fn new(kind: &str, id: &str) -> Owner {
        let clean: String = id
            .chars()
            .take(200)
            .map(|c| if c.is_control() { '_' } else { c })
            .collect();
        Owner(format!("{kind}:{clean}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Owner {
    fn default() -> Owner {
        Owner::anonymous()
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Scheduling class: every queued interactive job goes ahead of every queued batch job; within
/// a class, owners take turns.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// A person is waiting (APIs, bots, the web page).
    #[default]
    Interactive,
    /// Nobody is waiting (schedules, bulk submissions).
    Batch,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Interactive => "interactive",
            Priority::Batch => "batch",
        }
    }
}

/// The front end a job came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// Refrain's own JSON API (`/api/v1/jobs`).
    RefrainApi,
}

impl Source {
    pub const ALL: [Source; 8] = [
        Source::DiffRhythmApi,
        Source::TaskApi,
        Source::RiffusionApi,
        Source::Discord,
        Source::Telegram,
        Source::Schedule,
        Source::Cli,
        Source::RefrainApi,
    ];

    /// The source named `name` (its [`Source::as_str`]).
    pub fn parse(name: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|s| s.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Source::DiffRhythmApi => "diff_rhythm_api",
            Source::TaskApi => "task_api",
            Source::RiffusionApi => "riffusion_api",
            Source::Discord => "discord",
            Source::Telegram => "telegram",
            Source::Schedule => "schedule",
            Source::Cli => "cli",
            Source::RefrainApi => "refrain_api",
        }
    }

    /// The scheduling class of jobs from this source unless the request says otherwise.
    pub fn default_priority(self) -> Priority {
        match self {
            Source::Schedule => Priority::Batch,
            _ => Priority::Interactive,
        }
    }
}

/// Where a job is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobResult {
    /// The first variant's WAV under the output store (`<id>.wav` or `sub/dir/<id>.wav`).
    pub file: String,
    pub bytes: u64,
    pub duration_seconds: f64,
    /// Which attempt produced it (completion is idempotent on (id, attempt)).
    pub attempt: u32,
    /// Every file of the result: each variant's WAV (variant 1 is `file`) and, when the job
    /// asked for another format, its transcoded copies.
    #[serde(default)]
    pub files: Vec<ResultFile>,
}

/// One file of a job's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResultFile {
    /// 1-based variant number.
    pub variant: u32,
    pub format: AudioFormat,
    /// Name under the output store.
    pub file: String,
    pub bytes: u64,
    pub duration_seconds: f64,
}

/// The durable record of a job, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: JobId,
    pub spec: JobSpec,
    pub state: JobState,
    /// 1 for the first run; +1 after each run that failed with an error of its own (a
    /// retryable node error, or its inference process dying under it). A run cut short because
    /// the service or its node stopped does not count: see `interruptions`.
    pub attempt: u32,
    /// Runs in a row cut short because the process running the job died (kill -9, power loss,
    /// out of memory) rather than by an error of the job. They do not use up attempts; only a
    /// long run of them (`inference.max_interruptions`) fails the job, as a guard against a job
    /// that itself crashes the process each time. Reset when a run ends on its own.
    #[serde(default)]
    pub interruptions: u32,
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
    /// Why the job failed, for clients (while queued again after a failed attempt: why that
    /// attempt failed).
    #[serde(default)]
    pub error: Option<String>,
    /// Who the job belongs to (limits, fair share).
    #[serde(default)]
    pub owner: Owner,
    #[serde(default)]
    pub priority: Priority,
    /// The client's idempotency key, if it gave one.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// A digest of the request, to tell a retry (same key, same request) from a misuse of the
    /// key (same key, another request).
    #[serde(default)]
    pub request_hash: Option<String>,
    /// The sequence number of the job's latest event in the outbox (0: none yet).
    #[serde(default)]
    pub event_seq: u64,
    /// Opaque text a client kept on the job at creation and reads back with it (a bot's chat
    /// and message ids, so that it finds its message again after a restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_data: Option<String>,
    /// The song's title, as the client gave it (checked at admission: at most 200 characters,
    /// no control characters); download file names are made from it. Records written before
    /// titles existed load with none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
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
