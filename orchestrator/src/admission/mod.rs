//! Admission: the one way a request becomes a job, whatever front end it came through.
//!
//! A front end translates its request into a [`Draft`] and calls [`App::admit`]. Admission
//! then, in order: checks every field against the limits and the model ([`Validator`]: length,
//! lyrics through the real LRC parser and G2P, the style prompt's token count, the title),
//! parses edit segments, resolves a referenced earlier result, checks an init song ([`init`]),
//! reads and decodes audio (uploads, base64, URLs through the outbound guard in
//! [`crate::outbound`], stored upload ids), answers a repeated idempotency key
//! ([`idempotency`]), stores new uploads as blobs, and hands the spec to `App::submit_spec`,
//! which applies capacity and per-owner limits and makes the job durable. A request that makes
//! several jobs (the takes of [`App::admit_takes`]) is checked once and admitted all at once or
//! not at all. Every refusal is an [`OrchestratorError`] with a catalogue code and the neutral
//! [`Field`] at fault; uploads stored for a refused request are deleted. Uploads on their own
//! (`App::upload`, with their idempotency keys and per-owner limits) are in [`upload`].

pub mod audio;
pub mod draft;
mod idempotency;
mod init;
mod upload;
mod validate;

use protocol::{EditSpec, InitSpec, JobId, JobRecord, JobSpec, JobState, SongRef, StyleSpec};

pub use self::audio::MIN_REFERENCE_SECONDS;
pub use self::draft::{
    AudioInput, Draft, EditInput, InitInput, SegmentsInput, SongInput, StyleInput, Timing,
};
pub use self::idempotency::MAX_TAKES;
use self::idempotency::{check_idempotency_key, fingerprint, take_meta};
pub use self::upload::{NewUpload, StoredUpload};
pub use self::validate::Validator;
use crate::app::{App, JobMeta, Submitted};
use crate::error::{ErrorCode, Field, OrchestratorError};
use crate::outputs::{OutputError, OutputStore};

/// A checked song to edit.
enum Song {
    Job(JobId),
    Audio(audio::Checked),
}

impl App {
    /// Validates `draft`, stores its uploads and admits it as a job. An idempotency key that
    /// names a live job of the same owner returns that job (`created: false`) when the request
    /// is the same, and [`OrchestratorError::IdempotencyConflict`] when it is not.
    pub async fn admit(&self, draft: Draft) -> Result<Submitted, OrchestratorError> {
        let mut takes = self.admit_takes(draft, 1).await?;
        Ok(takes.remove(0))
    }

    /// [`App::admit`] for a request that makes `takes` independent jobs of one draft (the two
    /// takes of a Riffusion request), checked once and admitted together: all of them or none
    /// (capacity and owner limits count them all). Each take has its own seed: random, or the
    /// draft's seed + k − 1 for take k. An idempotency key covers the whole request: the same
    /// key and request answer the same jobs, in order.
    pub async fn admit_takes(
        &self,
        draft: Draft,
        takes: u32,
    ) -> Result<Vec<Submitted>, OrchestratorError> {
        if !(1..=MAX_TAKES).contains(&takes) {
            return Err(OrchestratorError::invalid(
                Field::Variants,
                format!("a request makes 1 to {MAX_TAKES} takes, not {takes}"),
            ));
        }
        let limits = &self.config().limits;
        let validator = self.validator();

        let seconds = draft.seconds.ok_or_else(|| {
            OrchestratorError::missing(
                Field::Length,
                format!(
                    "required: the song length in seconds ({})",
                    self.node().lengths
                ),
            )
        })?;
        validator.check_length(seconds)?;

        let variants = draft.variants.unwrap_or(1);
        if !(1..=limits.max_variants).contains(&variants) {
            return Err(OrchestratorError::invalid(
                Field::Variants,
                format!(
                    "expected a whole number from 1 to {}, not {variants}",
                    limits.max_variants
                ),
            ));
        }
        let output_subdir = draft
            .output_subdir
            .as_deref()
            .map(|d| self.outputs().check_subdir(d.trim()))
            .transpose()?;
        if let Some(key) = &draft.meta.idempotency_key {
            check_idempotency_key(key)?;
        }
        let mut draft = draft;
        draft.meta.title = check_title(draft.meta.title.take())?;
        if let Some(target) = &draft.meta.webhook {
            self.check_webhook(target).await?;
        }
        let style = draft.style.clone().ok_or_else(|| {
            OrchestratorError::missing(
                Field::Style,
                "a style is required: a text prompt or a reference recording",
            )
        })?;
        if let StyleInput::Prompt(prompt) = &style {
            validator.check_prompt(prompt)?;
        }
        let lyrics = timed_lyrics(&draft, seconds)?;
        validator.check_lyrics(&lyrics, seconds)?;
        if let Some(cfg) = draft.cfg_strength {
            if !(cfg.is_finite() && (0.0..=20.0).contains(&cfg)) {
                return Err(OrchestratorError::invalid(
                    Field::Named("cfg_strength".into()),
                    format!("expected a CFG strength from 0 to 20, not {cfg}"),
                ));
            }
        }

        let edit = match draft.edit.clone() {
            None => None,
            Some(edit) => {
                let segments = match edit.segments {
                    SegmentsInput::Json(text) => refrain_model::edit::parse_edit_segments(&text)
                        .map_err(|e| {
                            let message = match e {
                                refrain_model::ModelError::InvalidRequest(m) => m,
                                other => other.to_string(),
                            };
                            let message = message
                                .strip_prefix("edit_segments: ")
                                .unwrap_or(&message)
                                .to_string();
                            OrchestratorError::coded(
                                ErrorCode::InvalidEdit,
                                Field::EditSegments,
                                message,
                            )
                        })?,
                    SegmentsInput::List(list) => {
                        let json = serde_json::to_string(&list).unwrap_or_default();
                        refrain_model::edit::parse_edit_segments(&json).map_err(|e| {
                            OrchestratorError::coded(
                                ErrorCode::InvalidEdit,
                                Field::EditSegments,
                                e.to_string(),
                            )
                        })?
                    }
                };
                let song = match edit.song {
                    SongInput::ResultFile(name) => Song::Job(self.resolve_result(&name).await?),
                    SongInput::Job(id) => Song::Job(self.resolve_job(&id).await?),
                    SongInput::Audio(input) => {
                        Song::Audio(audio::check(self, Field::EditSong, input, None).await?)
                    }
                };
                Some((song, segments))
            }
        };
        let init = match draft.init.clone() {
            None => None,
            Some(init) => Some(self.check_init(&draft, init, seconds).await?),
        };
        let style = match style {
            StyleInput::Prompt(p) => Ok(p),
            StyleInput::Audio(input) => {
                Err(
                    audio::check(self, Field::StyleAudio, input, Some(MIN_REFERENCE_SECONDS))
                        .await?,
                )
            }
        };

        // Same key, same request: the same jobs, before anything is stored.
        let fingerprint = fingerprint(&draft, takes);
        let metas: Vec<JobMeta> = (1..=takes)
            .map(|take| take_meta(&draft.meta, take, takes))
            .collect();
        let mut known = Vec::with_capacity(metas.len());
        for meta in &metas {
            match self.idempotent_job(meta, &fingerprint)? {
                Some(record) => known.push(Submitted {
                    record,
                    created: false,
                }),
                None => break,
            }
        }
        if known.len() == metas.len() {
            return Ok(known);
        }

        let mut stored = audio::Stored::default();
        let spec = async {
            let style = match style {
                Ok(prompt) => StyleSpec::Prompt(prompt),
                Err(checked) => StyleSpec::Upload(stored.put(self, checked).await?),
            };
            let edit = match edit {
                None => None,
                Some((song, segments)) => Some(EditSpec {
                    song: match song {
                        Song::Job(id) => SongRef::Output(id),
                        Song::Audio(checked) => SongRef::Upload(stored.put(self, checked).await?),
                    },
                    segments,
                }),
            };
            let init = match init {
                None => None,
                Some((song, strength)) => Some(InitSpec {
                    song: match song {
                        Song::Job(id) => SongRef::Output(id),
                        Song::Audio(checked) => SongRef::Upload(stored.put(self, checked).await?),
                    },
                    strength,
                }),
            };
            Ok::<_, OrchestratorError>(JobSpec {
                lyrics,
                style,
                seconds,
                seed: 0,
                steps: None,
                cfg_strength: draft.cfg_strength,
                variants,
                chunked: draft.chunked,
                edit,
                init,
                format: draft.format,
                output_subdir,
            })
        }
        .await;
        let spec = match spec {
            Ok(spec) => spec,
            Err(e) => {
                stored.discard(self).await;
                return Err(e);
            }
        };
        let items = metas
            .into_iter()
            .enumerate()
            .map(|(k, meta)| {
                let mut spec = spec.clone();
                spec.seed = match draft.seed {
                    Some(seed) => seed.wrapping_add(k as u64),
                    None => rand::random::<u64>(),
                };
                (spec, meta)
            })
            .collect();
        match self.submit_spec(items, Some(fingerprint)).await {
            Ok(submitted) if submitted.iter().any(|s| s.created) => Ok(submitted),
            Ok(existing) => {
                // A concurrent request with the same key won the race.
                stored.discard(self).await;
                Ok(existing)
            }
            Err(e) => {
                // Refused before anything was stored: the uploads are nobody's. (After a store
                // or queue failure the record may exist and be re-enqueued at start: keep them.)
                if matches!(
                    e,
                    OrchestratorError::Busy { .. }
                        | OrchestratorError::NotReady(_)
                        | OrchestratorError::OwnerLimit { .. }
                        | OrchestratorError::Invalid { .. }
                        | OrchestratorError::IdempotencyConflict(_)
                ) {
                    stored.discard(self).await;
                }
                Err(e)
            }
        }
    }

    /// The duration in seconds of a song an edit could start from (decoded, so it is the length
    /// the node will see), checked as admission checks it.
    pub async fn song_seconds(
        &self,
        field: Field,
        song: &SongInput,
    ) -> Result<f64, OrchestratorError> {
        let input = match song {
            SongInput::Audio(input) => input.clone(),
            SongInput::Job(id) => AudioInput::Job(id.clone()),
            SongInput::ResultFile(name) => AudioInput::Job(self.resolve_result(name).await?),
        };
        match audio::check(self, field, input, None).await? {
            audio::Checked::Bytes { seconds, .. } | audio::Checked::Blob { seconds, .. } => {
                Ok(seconds)
            }
        }
    }

    /// The first result (the WAV) of a succeeded job, as audio a request can use.
    async fn result_wav(&self, id: &JobId, field: &Field) -> Result<Vec<u8>, OrchestratorError> {
        let refuse = |e: OrchestratorError| match e {
            OrchestratorError::Invalid { code, message, .. } => {
                OrchestratorError::coded(code, field.clone(), message)
            }
            other => other,
        };
        let id = self.resolve_job(id).await.map_err(refuse)?;
        let record = self
            .job(&id)?
            .ok_or_else(|| refuse(bad_reference(format!("there is no job {id}"))))?;
        let file = record
            .result
            .as_ref()
            .map(|r| r.file.clone())
            .unwrap_or_else(|| OutputStore::relative(record.spec.output_subdir.as_deref(), &id));
        let path = self
            .outputs()
            .resolve(&file)
            .map_err(|_| refuse(bad_reference(format!("{file:?} is not a result file"))))?;
        tokio::fs::read(&path)
            .await
            .map_err(|source| OrchestratorError::Io {
                context: format!("reading {}", path.display()),
                source,
            })
    }

    /// The job an idempotency key names, when it is still remembered: `Ok(Some)` for the same
    /// request, [`OrchestratorError::IdempotencyConflict`] for another one.
    pub(crate) fn idempotent_job(
        &self,
        meta: &JobMeta,
        fingerprint: &str,
    ) -> Result<Option<JobRecord>, OrchestratorError> {
        let Some(key) = &meta.idempotency_key else {
            return Ok(None);
        };
        let Some(record) = self.store().get_by_idempotency_key(&meta.owner, key)? else {
            return Ok(None);
        };
        let ttl_ms = self.config().limits.idempotency_ms();
        if crate::store::now_ms().saturating_sub(record.created_ms) > ttl_ms {
            return Ok(None);
        }
        if record.request_hash.as_deref() == Some(fingerprint) {
            Ok(Some(record))
        } else {
            Err(OrchestratorError::IdempotencyConflict(record.id))
        }
    }

    /// A succeeded job by one of its result file names.
    async fn resolve_result(&self, name: &str) -> Result<JobId, OrchestratorError> {
        let record = self.job_by_file(name.trim())?.ok_or_else(|| {
            bad_reference(format!(
                "{:?} is not a result of this server",
                shorten(name)
            ))
        })?;
        self.resolve_job(&record.id).await
    }

    /// A succeeded job whose result file still exists.
    async fn resolve_job(&self, id: &JobId) -> Result<JobId, OrchestratorError> {
        let record = self
            .job(id)?
            .ok_or_else(|| bad_reference(format!("there is no job {id}")))?;
        if record.state != JobState::Succeeded {
            return Err(bad_reference(format!(
                "job {} has not succeeded (it is {})",
                record.id, record.state
            )));
        }
        let file = record
            .result
            .as_ref()
            .map(|r| r.file.clone())
            .unwrap_or_else(|| OutputStore::relative(record.spec.output_subdir.as_deref(), id));
        let path = match self.outputs().resolve(&file) {
            Ok(p) => p,
            Err(OutputError::Io { context, source }) => {
                return Err(OrchestratorError::Io { context, source })
            }
            Err(_) => return Err(bad_reference(format!("{file:?} is not a result file"))),
        };
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() => Ok(record.id),
            _ => Err(bad_reference(format!(
                "the result {file:?} no longer exists"
            ))),
        }
    }
}

fn bad_reference(why: String) -> OrchestratorError {
    OrchestratorError::coded(
        ErrorCode::InvalidReference,
        Field::EditSong,
        format!("{why}; name a finished result of this server, or upload the song"),
    )
}

impl App {
    /// A webhook the server may call: an `http(s)` URL of at most 2,048 characters whose host
    /// passes the outbound guard now (it is checked again at every delivery), and a secret of
    /// at most 256 characters. Schedules made through the API are checked with it too.
    pub(crate) async fn check_webhook(
        &self,
        target: &crate::webhooks::Target,
    ) -> Result<(), OrchestratorError> {
        let refuse = |field, message: String| {
            OrchestratorError::coded(ErrorCode::InvalidWebhook, field, message)
        };
        if target.endpoint.len() > 2048 {
            return Err(refuse(
                Field::WebhookEndpoint,
                "longer than 2,048 characters".into(),
            ));
        }
        if target.secret.chars().count() > 256 {
            return Err(refuse(
                Field::WebhookSecret,
                "longer than 256 characters".into(),
            ));
        }
        let policy = crate::outbound::FetchPolicy::from_config(&self.config().fetch, 0);
        crate::outbound::check_raw(&target.endpoint, &policy)
            .await
            .map_err(|e| refuse(Field::WebhookEndpoint, e.to_string()))?;
        Ok(())
    }
}

/// The draft's lyrics, timed as [`Draft::timing`] asks (refused as `invalid_lyrics` when they do
/// not fit).
fn timed_lyrics(draft: &Draft, seconds: u32) -> Result<String, OrchestratorError> {
    use refrain_model::lyrics::structure::{time_lyrics, Window};
    let window = match draft.timing {
        Timing::AsGiven => return Ok(draft.lyrics.clone()),
        Timing::Song => Window::song(f64::from(seconds)),
        Timing::Span(start, end) => Window::span(start, end.min(f64::from(seconds))),
    };
    match time_lyrics(&draft.lyrics, window) {
        Ok(Some(lrc)) => Ok(lrc),
        Ok(None) => Ok(draft.lyrics.clone()),
        Err(e) => Err(OrchestratorError::coded(
            ErrorCode::InvalidLyrics,
            Field::Lyrics,
            e.to_string(),
        )),
    }
}

/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;

/// A title is trimmed (blank: none) and at most [`MAX_TITLE_CHARS`] characters without control
/// characters.
fn check_title(title: Option<String>) -> Result<Option<String>, OrchestratorError> {
    let Some(title) = title
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
    else {
        return Ok(None);
    };
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(OrchestratorError::invalid(
            Field::Title,
            format!("longer than {MAX_TITLE_CHARS} characters"),
        ));
    }
    if title.chars().any(char::is_control) {
        return Err(OrchestratorError::invalid(
            Field::Title,
            "control characters (line breaks, tabs) are not allowed",
        ));
    }
    Ok(Some(title))
}

/// A value shortened for an error message (trimmed, at most 40 characters and `…`).
pub(crate) fn shorten(value: &str) -> String {
    const MAX: usize = 40;
    let value = value.trim();
    if value.chars().count() <= MAX {
        value.to_string()
    } else {
        format!("{}…", value.chars().take(MAX).collect::<String>())
    }
}
