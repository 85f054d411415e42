//! Signed, expiring download links: `POST /api/v1/jobs/{id}/links` gives a URL under `/dl/`
//! that serves one song of a succeeded job (a variant, a format, a bitrate) without an API key
//! until it expires. A chat bot posts one when the song is too large for the chat's upload
//! limit: unlike a job's `public_url`, which works for as long as the file is kept, such a link
//! stops working at the time it names.
//!
//! The link is `/dl/<job>.<variant>.<ext>.<kbps>.<expires>.<signature>`: the signature is an
//! HMAC-SHA256 of everything before it under a key of this server, made once (32 random bytes
//! in `<data_dir>/download-links.key`, mode 0600) and read once per data folder. Nothing about a
//! link is stored: deleting the key file ends every link given out. A link whose signature does
//! not match is a 404 (as an unknown file); a genuine one past its time is a 410
//! `link_expired`.

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use protocol::{AudioFormat, JobId, JobState};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use utoipa::ToSchema;

use super::auth::Caller;
use super::jobs::{audio_format, find, serve_record_audio};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::routing::Routes;
use crate::app::App;
use crate::error::{ErrorCode, Field, OrchestratorError};

/// How long a link works when the request names no time: a day.
pub const DEFAULT_LINK_SECONDS: u64 = 24 * 3600;
/// The longest a link may work: a week.
pub const MAX_LINK_SECONDS: u64 = 7 * 24 * 3600;

/// `/dl/{token}`: the public half, outside the API-key check.
pub fn public_routes() -> Routes {
    Routes::new().get("/dl/{token}", download)
}

/// What a link serves and until when.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct NewLink {
    /// 1-based variant (default 1).
    pub variant: Option<u32>,
    /// `wav`, `mp3` or `ogg` (default: the job's own format).
    pub format: Option<String>,
    /// A bitrate of the download ladder (see `GET /api/v1/jobs/{id}/audio`).
    pub kbps: Option<u32>,
    /// Seconds the link works: 60 to 604800 (default 86400).
    pub expires_in_seconds: Option<u64>,
}

/// A link made.
#[derive(Debug, Serialize, ToSchema)]
pub struct Link {
    /// The absolute URL (`<public_url>/dl/…`).
    pub url: String,
    /// The same, relative to the server.
    pub path: String,
    /// RFC 3339, UTC.
    pub expires_at: String,
}

/// A signed download link to one song of the job.
#[utoipa::path(
    post,
    path = "/api/v1/jobs/{id}/links",
    operation_id = "createLink",
    tag = "jobs",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path, description = "The job's id.")),
    request_body(content = NewLink, content_type = "application/json"),
    responses(
        (status = 201, description = "The link.", body = Link),
        (status = 400, description = "`invalid_field`, `invalid_format`.", body = ErrorBody),
        (status = 401, description = "API keys are configured and none valid was given.",
            body = ErrorBody),
        (status = 404, description = "`not_found`: no such job or variant, or the job has not \
            succeeded.", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
    ),
)]
pub(crate) async fn create(
    State(app): State<App>,
    Extension(_caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let new: NewLink = if body.is_empty() {
        NewLink::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            OrchestratorError::invalid(Field::Body, format!("not a valid link request: {e}"))
        })?
    };
    let record = find(&app, &id)?;
    let format = audio_format(new.format.as_deref())?.unwrap_or(record.spec.format);
    let variant = new.variant.unwrap_or(1);
    if variant == 0 || variant > record.spec.variants.max(1) {
        return Err(OrchestratorError::NotFound(format!("{id} variant {variant}")).into());
    }
    if record.state != JobState::Succeeded {
        return Err(OrchestratorError::NotFound(format!(
            "job {} has no audio: it is {}",
            record.id, record.state
        ))
        .into());
    }
    if let Some(kbps) = new.kbps {
        let ladder = crate::jobs::results::bitrates(format);
        let configured = match format {
            AudioFormat::Wav => None,
            AudioFormat::Mp3 => Some(app.outputs().encoding().mp3_kbps),
            AudioFormat::Opus => Some(app.outputs().encoding().opus_kbps),
        };
        if !ladder.contains(&kbps) && configured != Some(kbps) {
            return Err(OrchestratorError::coded(
                ErrorCode::InvalidFormat,
                Field::Named("kbps".into()),
                format!(
                    "{} is offered at {ladder:?} kbps, not {kbps}",
                    format.extension()
                ),
            )
            .into());
        }
    }
    let seconds = new.expires_in_seconds.unwrap_or(DEFAULT_LINK_SECONDS);
    if !(60..=MAX_LINK_SECONDS).contains(&seconds) {
        return Err(OrchestratorError::invalid(
            Field::Named("expires_in_seconds".into()),
            format!("expected 60 to {MAX_LINK_SECONDS} seconds, not {seconds}"),
        )
        .into());
    }
    let expires = now_seconds() + seconds;
    let target = Target {
        job: record.id.clone(),
        variant,
        format,
        kbps: new.kbps.unwrap_or(0),
        expires,
    };
    let key = link_key(&app.config().data_dir)?;
    let path = format!("/dl/{}", target.token(&key));
    let expires_at = chrono::DateTime::<chrono::Utc>::from_timestamp(expires as i64, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let link = Link {
        url: format!("{}{path}", app.public_url().trim_end_matches('/')),
        path,
        expires_at,
    };
    Ok((StatusCode::CREATED, Json(link)).into_response())
}

/// `GET /dl/{token}`: the song a genuine, unexpired link names.
#[utoipa::path(
    get,
    path = "/dl/{token}",
    operation_id = "download",
    tag = "jobs",
    params(("token" = String, Path, description = "What `POST /api/v1/jobs/{id}/links` gave.")),
    responses(
        (status = 200, description = "The song, with `Range`, `ETag` and a file name; no API \
            key needed.", content(
            (Vec<u8> = "audio/wav"), (Vec<u8> = "audio/mpeg"), (Vec<u8> = "audio/ogg"))),
        (status = 206, description = "The `Range` asked for."),
        (status = 404, description = "`not_found`: no such link (or one tampered with), or the \
            song was deleted.", body = ErrorBody),
        (status = 410, description = "`link_expired`: the link is past its time.",
            body = ErrorBody),
        (status = 416, description = "`range_not_satisfiable`.", body = ErrorBody),
    ),
)]
pub(crate) async fn download(
    State(app): State<App>,
    Path(token): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let key = link_key(&app.config().data_dir)?;
    let not_found = || OrchestratorError::NotFound("download link".into());
    let target = Target::verify(&token, &key).ok_or_else(not_found)?;
    if target.expires < now_seconds() {
        return Err(OrchestratorError::coded(
            ErrorCode::LinkExpired,
            Field::Named("link".into()),
            "this download link has expired; ask for the song again",
        )
        .into());
    }
    let record = app.job(&target.job)?.ok_or_else(not_found)?;
    let kbps = (target.kbps > 0).then_some(target.kbps);
    serve_record_audio(&app, record, target.variant, target.format, kbps, request).await
}

/// What a link points at.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    job: JobId,
    variant: u32,
    format: AudioFormat,
    /// 0: the configured bitrate.
    kbps: u32,
    /// Unix seconds.
    expires: u64,
}

impl Target {
    fn payload(&self) -> String {
        format!(
            "{}.{}.{}.{}.{}",
            self.job,
            self.variant,
            self.format.extension(),
            self.kbps,
            self.expires
        )
    }

    fn token(&self, key: &[u8]) -> String {
        let payload = self.payload();
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(mac(key, &payload)))
    }

    /// The target of `token` if its signature is this server's.
    fn verify(token: &str, key: &[u8]) -> Option<Target> {
        let (payload, signature) = token.rsplit_once('.')?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        let mut check = Hmac::<Sha256>::new_from_slice(key).ok()?;
        check.update(payload.as_bytes());
        check.verify_slice(&signature).ok()?;
        let mut parts = payload.split('.');
        let target = Target {
            job: JobId::parse(parts.next()?)?,
            variant: parts.next()?.parse().ok()?,
            format: AudioFormat::parse(parts.next()?)?,
            kbps: parts.next()?.parse().ok()?,
            expires: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(target)
    }
}

fn mac(key: &[u8], payload: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(payload.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The signing key of the server with data folder `data_dir`: read (or made) once.
fn link_key(data_dir: &FsPath) -> Result<Vec<u8>, OrchestratorError> {
    static KEYS: Mutex<Option<HashMap<PathBuf, Vec<u8>>>> = Mutex::new(None);
    let mut keys = KEYS.lock().unwrap_or_else(|p| p.into_inner());
    let keys = keys.get_or_insert_with(HashMap::new);
    if let Some(key) = keys.get(data_dir) {
        return Ok(key.clone());
    }
    let path = data_dir.join("download-links.key");
    let io = |source| OrchestratorError::Io {
        context: format!("the download link key {}", path.display()),
        source,
    };
    let key = match std::fs::read_to_string(&path) {
        Ok(text) => decode_key(&text).ok_or_else(|| {
            io(std::io::Error::other(
                "not 64 hex digits: delete it to make a new one (links given out stop working)",
            ))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; 32] = rand::random();
            write_key(&path, &key).map_err(io)?;
            // Another process may have made it first: use what is on disk.
            let text = std::fs::read_to_string(&path).map_err(io)?;
            decode_key(&text).ok_or_else(|| io(std::io::Error::other("unreadable key")))?
        }
        Err(e) => return Err(io(e)),
    };
    keys.insert(data_dir.to_path_buf(), key.clone());
    Ok(key)
}

fn decode_key(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    (text.len() == 64)
        .then(|| {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
                .collect::<Option<Vec<u8>>>()
        })
        .flatten()
}

/// Writes a new key file (never over an existing one), synced, readable by its owner only.
fn write_key(path: &FsPath, key: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = match options.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    };
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    file.write_all(hex.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            job: JobId::from_bytes([7; 16]),
            variant: 2,
            format: AudioFormat::Mp3,
            kbps: 96,
            expires: 1_900_000_000,
        }
    }

    #[test]
    fn a_token_verifies_only_with_its_key_and_unchanged() {
        let key = [1u8; 32];
        let token = target().token(&key);
        assert_eq!(Target::verify(&token, &key), Some(target()));
        assert_eq!(
            Target::verify(&token, &[2u8; 32]),
            None,
            "another server's key"
        );
        // Any change to what it names breaks the signature.
        let longer = token.replacen(".1900000000.", ".1900000001.", 1);
        assert_ne!(longer, token);
        assert_eq!(Target::verify(&longer, &key), None);
        let other_variant = token.replacen(".2.mp3.", ".1.mp3.", 1);
        assert_eq!(Target::verify(&other_variant, &key), None);
        for bad in ["", ".", "x.y", "../../etc/passwd", &format!("{token}.x")] {
            assert_eq!(Target::verify(bad, &key), None, "{bad:?}");
        }
    }

    #[test]
    fn the_key_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = link_key(dir.path()).unwrap();
        assert_eq!(first.len(), 32);
        let text = std::fs::read_to_string(dir.path().join("download-links.key")).unwrap();
        assert_eq!(decode_key(&text), Some(first.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("download-links.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(link_key(dir.path()).unwrap(), first);
    }
}
