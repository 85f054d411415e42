//! [`Draft`]: a song request as every front end hands it to admission — already translated out
//! of the API's own field names and encodings, not yet validated. Fields a front end cannot
//! express stay at their defaults; admission decides what is missing or wrong.

use protocol::{AudioFormat, JobId};

use crate::app::JobMeta;

/// A front-end-neutral song request.
#[derive(Debug, Clone)]
pub struct Draft {
    /// LRC or plain lyrics; empty for an instrumental.
    pub lyrics: String,
    /// The style: a prompt or reference audio. `None` is refused (`missing_field`).
    pub style: Option<StyleInput>,
    /// Song length in seconds. `None` is refused.
    pub seconds: Option<u32>,
    /// How untimed lyrics are timed ([`Timing`]); by default they are used as given.
    pub timing: Timing,
    /// Noise seed; `None`: random, fixed at admission.
    pub seed: Option<u64>,
    /// CFG strength (how strongly lyrics and style are followed, 0–20); `None`: the bundle's.
    pub cfg_strength: Option<f32>,
    /// Variants generated together; `None`: 1.
    pub variants: Option<u32>,
    /// Chunked VAE decoding (less memory).
    pub chunked: bool,
    /// Edit (inpainting) of an existing song.
    pub edit: Option<EditInput>,
    /// Start the sampler from an existing song re-noised (SDEdit; never with `edit`).
    pub init: Option<InitInput>,
    /// The format the client wants; WAV is always kept too.
    pub format: AudioFormat,
    /// Sub-folder of the output root for the result (validated as a plain relative path).
    pub output_subdir: Option<String>,
    /// Who asks, from where, how urgent, and the idempotency key.
    pub meta: JobMeta,
}

impl Draft {
    /// An empty draft from `meta`'s owner and source.
    pub fn new(meta: JobMeta) -> Draft {
        Draft {
            lyrics: String::new(),
            style: None,
            seconds: None,
            timing: Timing::AsGiven,
            seed: None,
            cfg_strength: None,
            variants: None,
            chunked: false,
            edit: None,
            init: None,
            format: AudioFormat::Wav,
            output_subdir: None,
            meta,
        }
    }
}

/// How admission times lyrics that have no timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Timing {
    /// As given: plain lines are spread evenly over the song by the lyrics parser.
    #[default]
    AsGiven,
    /// By the section rule of `refrain_model::lyrics::structure` over the whole song (intro,
    /// sections, breaks).
    Song,
    /// By the same rule within `[start, end)` seconds (the span an edit regenerates).
    Span(f64, f64),
}

/// The style of a request.
#[derive(Debug, Clone)]
pub enum StyleInput {
    /// A text description ("bright acoustic pop with piano").
    Prompt(String),
    /// A reference recording; its first 10 s (after the reference's clip rule) set the style.
    Audio(AudioInput),
}

/// Audio handed in by a client, in any of the forms the APIs allow.
#[derive(Debug, Clone)]
pub enum AudioInput {
    /// The bytes of an upload, with a decoder hint (file extension) when known.
    Bytes {
        bytes: Vec<u8>,
        hint: Option<String>,
    },
    /// Base64 (standard or URL-safe alphabet, with or without padding, or a `data:` URL).
    Base64(String),
    /// An `http(s)` URL fetched by the server through the outbound guard.
    Url(String),
    /// An upload stored earlier (`POST /api/v1/uploads`), by its id.
    UploadId(String),
    /// The first result (WAV) of a succeeded job of this server.
    Job(JobId),
}

/// The song an edit changes, and which parts.
#[derive(Debug, Clone)]
pub struct EditInput {
    pub song: SongInput,
    pub segments: SegmentsInput,
}

/// The song the sampler starts from, and how much noise it gets (`protocol::InitSpec`).
#[derive(Debug, Clone)]
pub struct InitInput {
    pub song: SongInput,
    /// 0 (the song itself) to 1 (a fresh generation); checked by admission.
    pub strength: f64,
}

/// The song to edit.
#[derive(Debug, Clone)]
pub enum SongInput {
    /// A result of this server by file name (`<id>.wav`, `sub/<id>.wav` or `/output/<id>.wav`).
    ResultFile(String),
    /// A succeeded job of this server.
    Job(JobId),
    /// Audio from the client.
    Audio(AudioInput),
}

/// Edit segments, as text JSON (`[[start, end], …]`) or already a list.
#[derive(Debug, Clone)]
pub enum SegmentsInput {
    Json(String),
    List(Vec<(f64, f64)>),
}
