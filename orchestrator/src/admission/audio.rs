//! Turning the audio a client handed in ([`AudioInput`]: upload bytes, base64, a URL, an upload
//! id, an earlier result) into checked bytes: fetched through the outbound guard, size-limited,
//! decoded off the async threads to prove it is audio of an acceptable length, and finally
//! stored as a blob the job refers to. Blobs stored for a request that is then refused are deleted ([`Stored`]).

use base64::Engine as _;
use refrain_model::audio::{self, AudioError};

use super::draft::AudioInput;
use crate::app::App;
use crate::error::{ErrorCode, Field, OrchestratorError};
use crate::outbound::{self as fetch, FetchError, FetchPolicy};

/// Shortest reference recording accepted for the style, seconds (the style clip length).
pub const MIN_REFERENCE_SECONDS: f64 = audio::STYLE_CLIP_SECONDS as f64;

/// Checked audio, stored or not yet.
#[derive(Debug)]
pub(crate) enum Checked {
    /// New bytes, to be stored as a blob with this extension; they decode to `seconds` of audio.
    Bytes {
        bytes: Vec<u8>,
        ext: String,
        seconds: f64,
    },
    /// An upload stored earlier, `seconds` long: the job refers to it as it is.
    Blob { id: String, seconds: f64 },
}

impl Checked {
    /// The decoded audio's duration in seconds.
    pub(crate) fn seconds(&self) -> f64 {
        match self {
            Checked::Bytes { seconds, .. } | Checked::Blob { seconds, .. } => *seconds,
        }
    }
}

/// Reads `input` into bytes (fetching or decoding base64), checks that it decodes as audio and,
/// when `min_seconds` is given, that it lasts at least that long.
pub(crate) async fn check(
    app: &App,
    field: Field,
    input: AudioInput,
    min_seconds: Option<f64>,
) -> Result<Checked, OrchestratorError> {
    let max_bytes = app.config().limits.max_upload_bytes;
    let too_large = |field: &Field| OrchestratorError::TooLarge {
        field: field.clone(),
        limit: max_bytes,
    };
    let (bytes, hint, blob) = match input {
        AudioInput::Bytes { bytes, hint } => (bytes, hint, None),
        AudioInput::Base64(text) => {
            let (bytes, hint) = decode_base64(&text, max_bytes)
                .map_err(|e| e.unwrap_or_else(|| too_large(&field)))
                .map_err(|e| match e {
                    OrchestratorError::Invalid { message, .. } => {
                        OrchestratorError::coded(ErrorCode::InvalidAudio, field.clone(), message)
                    }
                    other => other,
                })?;
            (bytes, hint, None)
        }
        AudioInput::Url(url) => {
            let policy = FetchPolicy::from_config(&app.config().fetch, max_bytes);
            let (bytes, hint) = fetch::fetch(&url, &policy).await.map_err(|e| match e {
                FetchError::Refused(m) => {
                    OrchestratorError::coded(ErrorCode::InvalidUrl, field.clone(), m)
                }
                FetchError::Failed(m) => {
                    OrchestratorError::coded(ErrorCode::FetchFailed, field.clone(), m)
                }
                FetchError::TooLarge(_) => too_large(&field),
            })?;
            (bytes, hint, None)
        }
        AudioInput::UploadId(id) => {
            let id = id.trim().to_string();
            let bytes = app.blobs().read(&id).await.map_err(|e| {
                let e = OrchestratorError::from(e);
                match e {
                    OrchestratorError::Invalid { code, message, .. } => {
                        OrchestratorError::coded(code, field.clone(), message)
                    }
                    other => other,
                }
            })?;
            let hint = fetch::hint_from_path(&id);
            (bytes, hint, Some(id))
        }
        AudioInput::Job(id) => {
            let bytes = app.result_wav(&id, &field).await?;
            (bytes, Some("wav".to_string()), None)
        }
    };
    if bytes.len() > max_bytes {
        return Err(too_large(&field));
    }
    let max_seconds = app.config().limits.max_reference_seconds;
    let decode_hint = hint.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let result = audio::decode(&bytes, decode_hint.as_deref(), max_seconds)
            .map(|d| d.duration_seconds());
        (bytes, result)
    })
    .await;
    let (bytes, seconds) = match joined {
        Ok((bytes, Ok(duration))) => {
            if let Some(min) = min_seconds.filter(|min| duration < *min) {
                let e = AudioError::TooShort {
                    needed_seconds: min,
                    actual_seconds: duration,
                };
                return Err(OrchestratorError::coded(
                    ErrorCode::InvalidAudio,
                    field,
                    e.to_string(),
                ));
            }
            (bytes, duration)
        }
        Ok((_, Err(e))) => {
            return Err(OrchestratorError::coded(
                ErrorCode::InvalidAudio,
                field,
                e.to_string(),
            ))
        }
        Err(e) => {
            tracing::warn!(field = %field, error = %e, "the audio decoder panicked on an upload");
            return Err(OrchestratorError::coded(
                ErrorCode::InvalidAudio,
                field,
                "the audio data could not be decoded",
            ));
        }
    };
    Ok(match blob {
        Some(id) => Checked::Blob { id, seconds },
        None => Checked::Bytes {
            bytes,
            ext: hint.unwrap_or_else(|| "bin".into()),
            seconds,
        },
    })
}

/// Decodes base64 audio: standard or URL-safe alphabet, padded or not, whitespace ignored,
/// optionally a `data:audio/…;base64,` URL (whose type gives the decoder hint). `Err(None)`:
/// larger than `max_bytes` once decoded.
fn decode_base64(
    text: &str,
    max_bytes: usize,
) -> Result<(Vec<u8>, Option<String>), Option<OrchestratorError>> {
    let text = text.trim();
    let (hint, payload) = match text.strip_prefix("data:") {
        Some(rest) => {
            let (header, payload) = rest.split_once(',').ok_or_else(|| {
                Some(OrchestratorError::invalid(
                    Field::StyleAudio,
                    "a data: URL needs a comma before its data",
                ))
            })?;
            if !header.ends_with(";base64") {
                return Err(Some(OrchestratorError::invalid(
                    Field::StyleAudio,
                    "only base64 data: URLs are accepted",
                )));
            }
            (
                fetch::hint_from_content_type(header.trim_end_matches(";base64")),
                payload,
            )
        }
        None => (None, text),
    };
    let compact: String = payload
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if compact.len() / 4 * 3 > max_bytes + 3 {
        return Err(None);
    }
    let trimmed = compact.trim_end_matches('=');
    let engine = if trimmed.contains(['-', '_']) {
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
    } else {
        &base64::engine::general_purpose::STANDARD_NO_PAD
    };
    let bytes = engine.decode(trimmed).map_err(|e| {
        Some(OrchestratorError::invalid(
            Field::StyleAudio,
            format!("not valid base64 ({e})"),
        ))
    })?;
    if bytes.len() > max_bytes {
        return Err(None);
    }
    Ok((bytes, hint))
}

/// The blobs stored for one request: deleted again unless the request became a job.
#[derive(Default)]
pub(crate) struct Stored {
    new: Vec<String>,
}

impl Stored {
    /// Stores `checked` (if it is new bytes) and returns the blob name the job refers to.
    pub(crate) async fn put(
        &mut self,
        app: &App,
        checked: Checked,
    ) -> Result<String, OrchestratorError> {
        match checked {
            Checked::Blob { id, .. } => Ok(id),
            Checked::Bytes { bytes, ext, .. } => {
                let name = app.blobs().put(&bytes, &ext).await?;
                self.new.push(name.clone());
                Ok(name)
            }
        }
    }

    /// Deletes the blobs this request stored (it was refused, or it repeated an existing job).
    pub(crate) async fn discard(self, app: &App) {
        for blob in &self.new {
            if let Err(e) = app.blobs().delete(blob).await {
                tracing::warn!(%blob, error = %e, "cannot delete the upload of a refused request");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_forms() {
        let want = b"RIFF\x00\x01\xff".to_vec();
        for text in [
            "UklGRgAB/w==",
            "UklGRgAB/w",
            "UklGRgAB_w",
            " UklG\nRgAB/w== ",
            "data:audio/wav;base64,UklGRgAB/w==",
        ] {
            let (bytes, _) = decode_base64(text, 100).unwrap();
            assert_eq!(bytes, want, "{text}");
        }
        let (_, hint) = decode_base64("data:audio/mpeg;base64,AAAA", 100).unwrap();
        assert_eq!(hint.as_deref(), Some("mp3"));
        assert!(matches!(decode_base64("not base64!", 100), Err(Some(_))));
        assert!(matches!(
            decode_base64("data:audio/wav,abc", 100),
            Err(Some(_))
        ));
        assert!(matches!(decode_base64(&"A".repeat(400), 100), Err(None)));
    }
}
