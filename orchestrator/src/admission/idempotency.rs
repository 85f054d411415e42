//! What makes two requests the same: the digest of a draft ([`fingerprint`]) or of an upload
//! ([`upload_fingerprint`]) that tells a retry under an `Idempotency-Key` from another request,
//! the key's form, and the keys of the takes of a request that makes several jobs
//! ([`take_meta`]).

use sha2::{Digest, Sha256};

use super::draft::{AudioInput, Draft, SegmentsInput, SongInput, StyleInput};
use crate::app::JobMeta;
use crate::error::{Field, OrchestratorError};

/// Most takes one request may make.
pub const MAX_TAKES: u32 = 4;

/// The meta of take `take` of `takes`: one take keeps the client's idempotency key; takes of a
/// larger request each get the key and their number, joined by a character no client key may
/// hold (keys are printable ASCII), so no client key can name a take.
pub(super) fn take_meta(meta: &JobMeta, take: u32, takes: u32) -> JobMeta {
    let mut meta = meta.clone();
    if takes > 1 {
        meta.idempotency_key = meta
            .idempotency_key
            .take()
            .map(|key| format!("{key}\u{1f}{take}"));
    }
    meta
}

/// Idempotency keys are printable ASCII, 1 to 255 characters (as the IETF draft suggests).
pub(super) fn check_idempotency_key(key: &str) -> Result<(), OrchestratorError> {
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(OrchestratorError::invalid(
            Field::IdempotencyKey,
            "expected 1 to 255 printable ASCII characters",
        ));
    }
    Ok(())
}

/// What identifies client audio in a digest: its bytes' SHA-256, or its URL or upload id.
pub(super) fn audio_digest(input: &AudioInput) -> Vec<u8> {
    match input {
        AudioInput::Bytes { bytes, .. } => [b"bytes:".as_slice(), &Sha256::digest(bytes)].concat(),
        AudioInput::Base64(t) => [b"base64:".as_slice(), &Sha256::digest(t.trim())].concat(),
        AudioInput::Url(u) => format!("url:{}", u.trim()).into_bytes(),
        AudioInput::UploadId(id) => format!("upload:{}", id.trim()).into_bytes(),
        AudioInput::Job(id) => format!("job:{id}").into_bytes(),
    }
}

/// The digest of an upload request (`App::upload`): its audio, nothing else.
pub(super) fn upload_fingerprint(input: &AudioInput) -> String {
    let digest = Sha256::digest([b"upload\0".as_slice(), &audio_digest(input)].concat());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A digest of everything that defines the request (audio by the SHA-256 of its bytes or by its
/// URL or upload id), so a retry with the same key can be told from a different request.
pub(super) fn fingerprint(draft: &Draft, takes: u32) -> String {
    let mut h = Sha256::new();
    let mut field = |name: &str, value: &[u8]| {
        h.update((name.len() as u64).to_be_bytes());
        h.update(name.as_bytes());
        h.update((value.len() as u64).to_be_bytes());
        h.update(value);
    };
    let audio = audio_digest;
    field("lyrics", draft.lyrics.as_bytes());
    match &draft.style {
        None => field("style", b""),
        Some(StyleInput::Prompt(p)) => field("style.prompt", p.as_bytes()),
        Some(StyleInput::Audio(a)) => field("style.audio", &audio(a)),
    }
    field("seconds", format!("{:?}", draft.seconds).as_bytes());
    field("timing", format!("{:?}", draft.timing).as_bytes());
    field("seed", format!("{:?}", draft.seed).as_bytes());
    field(
        "cfg_strength",
        format!("{:?}", draft.cfg_strength).as_bytes(),
    );
    field("variants", format!("{:?}", draft.variants).as_bytes());
    field("chunked", format!("{}", draft.chunked).as_bytes());
    field("format", draft.format.extension().as_bytes());
    field(
        "output_dir",
        format!("{:?}", draft.output_subdir).as_bytes(),
    );
    if let Some(edit) = &draft.edit {
        match &edit.song {
            SongInput::ResultFile(f) => field("edit.song", format!("file:{f}").as_bytes()),
            SongInput::Job(id) => field("edit.song", format!("job:{id}").as_bytes()),
            SongInput::Audio(a) => field("edit.song", &audio(a)),
        }
        match &edit.segments {
            SegmentsInput::Json(t) => field("edit.segments", t.trim().as_bytes()),
            SegmentsInput::List(l) => field("edit.segments", format!("{l:?}").as_bytes()),
        }
    }
    field("priority", format!("{:?}", draft.meta.priority).as_bytes());
    // Only when given, so requests without them keep the digests they had before.
    if takes != 1 {
        field("takes", takes.to_string().as_bytes());
    }
    if let Some(init) = &draft.init {
        match &init.song {
            SongInput::ResultFile(f) => field("init.song", format!("file:{f}").as_bytes()),
            SongInput::Job(id) => field("init.song", format!("job:{id}").as_bytes()),
            SongInput::Audio(a) => field("init.song", &audio(a)),
        }
        field("init.strength", init.strength.to_string().as_bytes());
    }
    if let Some(title) = &draft.meta.title {
        field("title", title.as_bytes());
    }
    if let Some(target) = &draft.meta.webhook {
        field("webhook.endpoint", target.endpoint.as_bytes());
        field("webhook.secret", &Sha256::digest(target.secret.as_bytes()));
    }
    let digest = h.finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
