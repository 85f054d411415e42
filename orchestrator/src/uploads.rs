//! The upload ledger: what the job core remembers of the uploads it stored (`POST
//! /api/v1/uploads`, `POST /riffusion/upload`, through `App::upload`), so that an upload can be
//! retried under an `Idempotency-Key` and an owner's uploads can be limited.
//!
//! Three trees in the job store's sled database (so `refrain backup` copies them and the job
//! store's flush makes them durable):
//!
//! - `uploads_by_owner`: `<owner>\0<created_ms BE><upload id>` → the [`UploadEntry`] (JSON): one
//!   owner's uploads in creation order, for the sliding windows of [`UploadLimits`];
//! - `uploads_by_idempotency_key`: `<owner>\0<key>` → the `uploads_by_owner` key of the upload
//!   the key made (keys are per owner, and apart from the keys of jobs);
//! - `uploads_by_time`: `<created_ms BE><upload id>` → the `uploads_by_owner` key: every entry in
//!   creation order, so that [`UploadLedger::prune`] drops what no window and no key needs any
//!   more without scanning the rest.
//!
//! A key names its upload for `limits.idempotency_hours`, as a job's key names its job; entries
//! are pruned once older than both that and the longest window (24 h). [`UploadLedger::prune`]
//! returns the uploads it forgot, and the caller (`App::expire_uploads`) deletes the file of
//! each one that no job uses: an upload nobody made a song from does not stay forever. An
//! upload a job uses is deleted by retention with the last job that uses it.

use protocol::Owner;
use serde::{Deserialize, Serialize};
use sled::transaction::ConflictableTransactionError;
use sled::{Transactional, Tree};

use crate::error::OrchestratorError;
use crate::store::StoreError;

const BY_OWNER: &str = "uploads_by_owner";
const BY_KEY: &str = "uploads_by_idempotency_key";
const BY_TIME: &str = "uploads_by_time";

const MINUTE_MS: u64 = 60 * 1000;
/// The longest window of [`UploadLimits`].
pub const DAY_MS: u64 = 24 * 3600 * 1000;

/// How many uploads one owner may store (`[limits.uploads]`; 0: no limit). Counted from the
/// ledger, so they hold across restarts; a refusal says when the window has room again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadLimits {
    /// Uploads stored in any 60 seconds.
    pub per_minute: usize,
    /// Uploads stored in any 24 hours.
    pub per_day: usize,
}

impl Default for UploadLimits {
    fn default() -> Self {
        UploadLimits {
            per_minute: 20,
            per_day: 200,
        }
    }
}

/// What the ledger keeps of one stored upload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadEntry {
    /// The upload id (the blob name) clients use.
    pub upload: String,
    /// The `Idempotency-Key` it was stored under, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The digest of the request, telling a retry from another request under the key.
    pub fingerprint: String,
    /// Size of the stored file, and the duration of its decoded audio.
    pub bytes: usize,
    pub seconds: f64,
    pub created_ms: u64,
}

/// The ledger's trees and the lock that makes "check, then record" one step.
pub struct UploadLedger {
    by_owner: Tree,
    by_key: Tree,
    by_time: Tree,
    lock: tokio::sync::Mutex<()>,
}

/// `<owner>\0`.
fn owner_prefix(owner: &Owner) -> Vec<u8> {
    let mut k = owner.as_str().as_bytes().to_vec();
    k.push(0);
    k
}

/// `<owner>\0<created_ms BE>`.
fn owner_bound(owner: &Owner, created_ms: u64) -> Vec<u8> {
    let mut k = owner_prefix(owner);
    k.extend_from_slice(&created_ms.to_be_bytes());
    k
}

/// `<owner>\0<key>`.
fn key_key(owner: &Owner, key: &str) -> Vec<u8> {
    let mut k = owner_prefix(owner);
    k.extend_from_slice(key.as_bytes());
    k
}

fn corrupt(tree: &str, key: &[u8], reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        key: format!("{tree}/{}", String::from_utf8_lossy(key)),
        reason: reason.into(),
    }
}

fn decode(key: &[u8], bytes: &[u8]) -> Result<UploadEntry, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| corrupt(BY_OWNER, key, e.to_string()))
}

impl UploadLedger {
    /// Opens (creating) the ledger's trees in the job store's database.
    pub fn open(db: &sled::Db) -> Result<UploadLedger, StoreError> {
        Ok(UploadLedger {
            by_owner: db.open_tree(BY_OWNER)?,
            by_key: db.open_tree(BY_KEY)?,
            by_time: db.open_tree(BY_TIME)?,
            lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Held while a caller checks the limits and the key and records an upload, so that two
    /// uploads cannot both take the last place, nor both record one key.
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.lock.lock().await
    }

    /// The upload `owner` stored under `key`, if the key was used after `since_ms`.
    pub fn by_key(
        &self,
        owner: &Owner,
        key: &str,
        since_ms: u64,
    ) -> Result<Option<UploadEntry>, StoreError> {
        let Some(at) = self.by_key.get(key_key(owner, key))? else {
            return Ok(None);
        };
        let Some(bytes) = self.by_owner.get(&at)? else {
            return Ok(None);
        };
        let entry = decode(&at, &bytes)?;
        Ok((entry.created_ms >= since_ms).then_some(entry))
    }

    /// When `owner`'s uploads at or after `since_ms` were stored, newest first, at most
    /// `limit` of them, and how many there are in all.
    fn created_since(
        &self,
        owner: &Owner,
        since_ms: u64,
        limit: usize,
    ) -> Result<(Vec<u64>, usize), StoreError> {
        let from = owner_bound(owner, since_ms);
        let to = owner_bound(owner, u64::MAX);
        let at = owner_prefix(owner).len();
        let mut newest = Vec::new();
        let mut total = 0;
        for item in self.by_owner.range(from..to).keys().rev() {
            let key = item?;
            total += 1;
            if newest.len() < limit {
                let created = key
                    .get(at..at + 8)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| corrupt(BY_OWNER, &key, "not an owner key"))?;
                newest.push(created);
            }
        }
        Ok((newest, total))
    }

    /// Refuses one more upload of `owner` at `now_ms` when it would go over `limits` (429
    /// `owner_limit`, with the seconds until the window has room again).
    pub fn check_limits(
        &self,
        owner: &Owner,
        limits: &UploadLimits,
        now_ms: u64,
    ) -> Result<(), OrchestratorError> {
        for (limit, window_ms, window) in [
            (limits.per_minute, MINUTE_MS, "minute"),
            (limits.per_day, DAY_MS, "24 hours"),
        ] {
            if limit == 0 {
                continue;
            }
            let (newest, total) =
                self.created_since(owner, now_ms.saturating_sub(window_ms), limit)?;
            if let Some(&oldest) = newest.get(limit - 1) {
                let retry_after = (oldest + window_ms)
                    .saturating_sub(now_ms)
                    .div_ceil(1000)
                    .max(1);
                return Err(OrchestratorError::OwnerLimit {
                    message: format!(
                        "{owner} stored {total} uploads in the last {window} (the limit is \
                         {limit}); try again in {retry_after} s"
                    ),
                    retry_after,
                });
            }
        }
        Ok(())
    }

    /// Records an upload of `owner` (and its key, replacing an expired use of it). Made
    /// durable by the job store's next flush.
    pub fn record(&self, owner: &Owner, entry: &UploadEntry) -> Result<(), StoreError> {
        let mut at = owner_bound(owner, entry.created_ms);
        at.extend_from_slice(entry.upload.as_bytes());
        let mut time = entry.created_ms.to_be_bytes().to_vec();
        time.extend_from_slice(entry.upload.as_bytes());
        let key = entry.key.as_deref().map(|k| key_key(owner, k));
        let value = serde_json::to_vec(entry)
            .map_err(|e| corrupt(BY_OWNER, &at, format!("cannot encode: {e}")))?;
        (&self.by_owner, &self.by_key, &self.by_time)
            .transaction(|(by_owner, by_key, by_time)| {
                by_owner.insert(at.as_slice(), value.as_slice())?;
                by_time.insert(time.as_slice(), at.as_slice())?;
                if let Some(key) = &key {
                    by_key.insert(key.as_slice(), at.as_slice())?;
                }
                Ok::<_, ConflictableTransactionError<StoreError>>(())
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Abort(e) => e,
                sled::transaction::TransactionError::Storage(e) => StoreError::Sled(e),
            })
    }

    /// Forgets up to `max` uploads stored before `before_ms` (their window entries and their
    /// keys, unless a key was used again since); returns their upload ids, oldest first.
    pub fn prune(&self, before_ms: u64, max: usize) -> Result<Vec<String>, StoreError> {
        let mut pruned = Vec::new();
        for item in self
            .by_time
            .range(..before_ms.to_be_bytes().to_vec())
            .take(max)
        {
            let (time, at) = item?;
            if let Some(bytes) = self.by_owner.remove(&at)? {
                let entry = decode(&at, &bytes)?;
                let owner_end = at.iter().position(|b| *b == 0);
                pruned.push(entry.upload.clone());
                if let (Some(key), Some(nul)) = (&entry.key, owner_end) {
                    let mut k = at[..=nul].to_vec();
                    k.extend_from_slice(key.as_bytes());
                    // Only when the key still names this upload.
                    let _ = self
                        .by_key
                        .compare_and_swap(k, Some(at.as_ref()), None::<&[u8]>)?;
                }
            }
            self.by_time.remove(time)?;
        }
        Ok(pruned)
    }

    /// Entries in the ledger (tests, diagnostics).
    pub fn len(&self) -> usize {
        self.by_owner.len()
    }

    /// Whether the ledger is empty.
    pub fn is_empty(&self) -> bool {
        self.by_owner.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(upload: &str, key: Option<&str>, created_ms: u64) -> UploadEntry {
        UploadEntry {
            upload: upload.into(),
            key: key.map(str::to_string),
            fingerprint: "fp".into(),
            bytes: 10,
            seconds: 12.5,
            created_ms,
        }
    }

    fn ledger() -> (tempfile::TempDir, UploadLedger) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let ledger = UploadLedger::open(&db).unwrap();
        (dir, ledger)
    }

    #[test]
    fn keys_name_their_upload_for_their_time() {
        let (_dir, l) = ledger();
        let alice = Owner::new("key", "alice");
        let bob = Owner::new("key", "bob");
        l.record(&alice, &entry("a1.wav", Some("k"), 1_000))
            .unwrap();
        assert_eq!(l.by_key(&alice, "k", 0).unwrap().unwrap().upload, "a1.wav");
        assert_eq!(l.by_key(&alice, "k", 1_001).unwrap(), None, "too old");
        assert_eq!(l.by_key(&bob, "k", 0).unwrap(), None, "keys are per owner");
        // A later use of the key replaces the expired one, and pruning the old entry keeps it.
        l.record(&alice, &entry("a2.wav", Some("k"), 5_000))
            .unwrap();
        assert_eq!(l.prune(2_000, 100).unwrap(), ["a1.wav"]);
        assert_eq!(l.by_key(&alice, "k", 0).unwrap().unwrap().upload, "a2.wav");
        assert_eq!(l.prune(6_000, 100).unwrap(), ["a2.wav"]);
        assert_eq!(l.by_key(&alice, "k", 0).unwrap(), None);
        assert!(l.is_empty());
    }

    #[test]
    fn windows_count_one_owner_and_say_when_they_free() {
        let (_dir, l) = ledger();
        let alice = Owner::new("key", "alice");
        let bob = Owner::new("key", "bob");
        let limits = UploadLimits {
            per_minute: 2,
            per_day: 3,
        };
        let now = 10 * DAY_MS;
        l.record(&alice, &entry("a1.wav", None, now - 50_000))
            .unwrap();
        l.check_limits(&alice, &limits, now).unwrap();
        l.record(&alice, &entry("a2.wav", None, now - 10_000))
            .unwrap();
        match l.check_limits(&alice, &limits, now) {
            Err(OrchestratorError::OwnerLimit { retry_after, .. }) => assert_eq!(retry_after, 10),
            other => panic!("{other:?}"),
        }
        l.check_limits(&bob, &limits, now).unwrap();
        // A minute later the minute has room, the day does not (three in 24 h).
        let later = now + 60_000;
        l.record(&alice, &entry("a3.wav", None, later - 1_000))
            .unwrap();
        match l.check_limits(&alice, &limits, later) {
            Err(OrchestratorError::OwnerLimit {
                retry_after,
                message,
            }) => {
                assert_eq!(retry_after, (DAY_MS - 110_000) / 1000, "{message}");
                assert!(message.contains("24 hours"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let unlimited = UploadLimits {
            per_minute: 0,
            per_day: 0,
        };
        l.check_limits(&alice, &unlimited, later).unwrap();
    }
}
