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
//!
//! Uploads expire: [`App::expire_uploads`] (after each upload, and every
//! `retention.sweep_interval_seconds`: [`App::spawn_upload_expiry`])
//! forgets ledger entries older than both the idempotency window and 24 hours, and deletes the
//! file of each such upload that no job uses. A job that uses an upload keeps it until
//! retention deletes the last such job. A job created from an upload at the very moment it
//! expires fails with "upload not found", as one created after.

use protocol::Owner;

use super::audio::{self, Checked};
use super::draft::AudioInput;
use super::idempotency::{check_idempotency_key, upload_fingerprint};
use crate::app::App;
use crate::error::{ErrorCode, Field, OrchestratorError};
use crate::uploads::{UploadEntry, UploadLedger, DAY_MS};

/// Most old ledger entries one upload prunes.
const PRUNE_BATCH: usize = 256;

/// Most old ledger entries one periodic expiry prunes (the rest wait for the next).
const EXPIRE_BATCH: usize = 10_000;

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
        if let Err(e) = self
            .expire_uploads(crate::store::now_ms(), PRUNE_BATCH)
            .await
        {
            tracing::warn!(error = %e, "cannot expire old uploads");
        }
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
        let since = crate::store::now_ms().saturating_sub(self.config().limits.idempotency_ms());
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

    /// Forgets up to `max` uploads older than both the idempotency window and 24 hours at
    /// `now_ms`, and deletes the file of each one no job uses; returns how many it
    /// deleted (or found gone). A file that cannot be deleted is logged and left (its entry is gone, so a
    /// later call does not try again: the operator's log says which).
    pub async fn expire_uploads(
        &self,
        now_ms: u64,
        max: usize,
    ) -> Result<usize, OrchestratorError> {
        let ledger = self.uploads()?;
        let keep_ms = self.config().limits.idempotency_ms().max(DAY_MS);
        let expired = {
            let _lock = ledger.lock().await;
            ledger.prune(now_ms.saturating_sub(keep_ms), max)?
        };
        let mut deleted = 0;
        for upload in expired {
            if !self.store().upload_users(&upload)?.is_empty() {
                continue;
            }
            match self.blobs().delete(&upload).await {
                Ok(()) => deleted += 1,
                Err(e) => {
                    tracing::warn!(upload = %upload, error = %e, "cannot delete an expired upload")
                }
            }
        }
        Ok(deleted)
    }

    /// Runs [`App::expire_uploads`] now and then every `interval` until `cancel` fires.
    pub fn spawn_upload_expiry(
        &self,
        tracker: &tokio_util::task::TaskTracker,
        cancel: tokio_util::sync::CancellationToken,
        interval: std::time::Duration,
    ) {
        let app = self.clone();
        crate::retention::spawn_every(tracker, cancel, interval, move || {
            let app = app.clone();
            async move {
                match app
                    .expire_uploads(crate::store::now_ms(), EXPIRE_BATCH)
                    .await
                {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "deleted unused uploads"),
                    Err(e) => tracing::warn!(error = %e, "expiring unused uploads failed"),
                }
            }
        });
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
