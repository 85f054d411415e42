//! The one upload path of every front end (`POST /api/v1/uploads`, `POST /riffusion/upload`):
//! [`App::upload`] decodes the audio a client hands in (bytes, or a URL fetched through the
//! outbound guard), stores it as an upload and records it in the upload ledger
//! ([`crate::uploads`]), which gives uploads what job requests have:
//!
//! - an `Idempotency-Key` (checked as a job's: printable ASCII, 1–255): the same key and the
//!   same audio within `limits.idempotency_hours` answer the upload the key made (nothing is
//!   fetched or stored again); the same key with other audio is `409 idempotency_conflict`. Keys
//!   are per owner and apart from the keys of jobs;
//! - per-owner limits (`[limits.uploads]`): over one is `429 owner_limit` with `Retry-After`,
//!   checked before anything is fetched or decoded and again, under the ledger's lock, when the
//!   upload is recorded (the file of a refused upload is deleted).

use protocol::Owner;

use super::audio::{self, Checked};
use super::draft::AudioInput;
use super::idempotency::{check_idempotency_key, upload_fingerprint};
use crate::app::App;
use crate::error::{ErrorCode, Field, OrchestratorError};
use crate::uploads::{UploadEntry, UploadLedger, DAY_MS};

/// Most old ledger entries one upload prunes.
const PRUNE_BATCH: usize = 256;

/// An upload as a front end hands it to the core.
#[derive(Debug, Clone)]
pub struct NewUpload {
    /// Who stores it (limits and keys are per owner).
    pub owner: Owner,
    /// The request's `Idempotency-Key`, if any.
    pub idempotency_key: Option<String>,
    /// The field errors about the audio name (`file`, `url`).
    pub field: Field,
    pub input: AudioInput,
}

/// A stored upload.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredUpload {
    /// The upload id (`style.upload_id`, `edit.song.upload_id`, `morph.audio_upload_id`).
    pub upload_id: String,
    /// Size of the stored file.
    pub bytes: usize,
    /// Duration of the decoded audio.
    pub duration_seconds: f64,
    /// False when an idempotency key named an upload made earlier.
    pub created: bool,
}

impl StoredUpload {
    fn known(entry: UploadEntry) -> StoredUpload {
        StoredUpload {
            upload_id: entry.upload,
            bytes: entry.bytes,
            duration_seconds: entry.seconds,
            created: false,
        }
    }
}

impl App {
    /// Stores audio a client hands in as an upload, after decoding it, with the request's
    /// idempotency key and the owner's upload limits (see the module docs).
    pub async fn upload(&self, request: NewUpload) -> Result<StoredUpload, OrchestratorError> {
        if let Some(key) = &request.idempotency_key {
            check_idempotency_key(key)?;
        }
        let ledger = self.uploads()?;
        let limits = self.config().limits.uploads;
        let fingerprint = upload_fingerprint(&request.input);
        if let Some(known) = self.known_upload(ledger, &request, &fingerprint).await? {
            return Ok(known);
        }
        ledger.check_limits(&request.owner, &limits, crate::store::now_ms())?;

        let checked =
            audio::check(self, request.field.clone(), request.input.clone(), None).await?;
        let duration_seconds = checked.seconds();
        let bytes = match &checked {
            Checked::Bytes { bytes, .. } => bytes.len(),
            Checked::Blob { id, .. } => self.blob_len(id).await,
        };
        let mut stored = audio::Stored::default();
        let upload_id = stored.put(self, checked).await?;

        let recorded = async {
            let _lock = ledger.lock().await;
            // A concurrent request with the same key may have won the race.
            if let Some(known) = self.known_upload(ledger, &request, &fingerprint).await? {
                return Ok(Some(known));
            }
            let now = crate::store::now_ms();
            ledger.check_limits(&request.owner, &limits, now)?;
            let entry = UploadEntry {
                upload: upload_id.clone(),
                key: request.idempotency_key.clone(),
                fingerprint: fingerprint.clone(),
                bytes,
                seconds: duration_seconds,
                created_ms: now,
            };
            ledger.record(&request.owner, &entry)?;
            let keep_ms = self.idempotency_ms().max(DAY_MS);
            if let Err(e) = ledger.prune(now.saturating_sub(keep_ms), PRUNE_BATCH) {
                tracing::warn!(error = %e, "cannot prune the upload ledger");
            }
            Ok::<_, OrchestratorError>(None)
        }
        .await;
        match recorded {
            Ok(None) => {}
            Ok(Some(known)) => {
                stored.discard(self).await;
                return Ok(known);
            }
            Err(e) => {
                stored.discard(self).await;
                return Err(e);
            }
        }
        self.store().flush().await?;
        Ok(StoredUpload {
            upload_id,
            bytes,
            duration_seconds,
            created: true,
        })
    }

    /// The upload the request's key made, when it is remembered and its file still exists;
    /// another request under the key is a conflict.
    async fn known_upload(
        &self,
        ledger: &UploadLedger,
        request: &NewUpload,
        fingerprint: &str,
    ) -> Result<Option<StoredUpload>, OrchestratorError> {
        let Some(key) = &request.idempotency_key else {
            return Ok(None);
        };
        let since = crate::store::now_ms().saturating_sub(self.idempotency_ms());
        let Some(entry) = ledger.by_key(&request.owner, key, since)? else {
            return Ok(None);
        };
        if entry.fingerprint != fingerprint {
            return Err(OrchestratorError::coded(
                ErrorCode::IdempotencyConflict,
                Field::IdempotencyKey,
                format!(
                    "the Idempotency-Key was already used for a different upload ({})",
                    entry.upload
                ),
            ));
        }
        let exists = match self.blobs().path(&entry.upload) {
            Ok(path) => tokio::fs::metadata(path).await.is_ok(),
            Err(_) => false,
        };
        Ok(exists.then(|| StoredUpload::known(entry)))
    }

    /// How long an idempotency key is remembered, in milliseconds.
    fn idempotency_ms(&self) -> u64 {
        self.config()
            .limits
            .idempotency_hours
            .saturating_mul(3_600_000)
    }

    /// The size of a stored upload (0 when it cannot be read).
    async fn blob_len(&self, id: &str) -> usize {
        match self.blobs().path(id) {
            Ok(path) => tokio::fs::metadata(path)
                .await
                .map_or(0, |m| usize::try_from(m.len()).unwrap_or(usize::MAX)),
            Err(_) => 0,
        }
    }
}
