//! The webhook trees in the job store's sled database. Keys start with the job id (32 ASCII hex
//! digits), so a job's entries are one contiguous range; every write that the dispatcher acts
//! on is flushed first.
//!
//! * `webhook_targets`: `<id>` → the [`Target`] (JSON), kept with the job for redeliveries;
//! * `webhook_cursors`: `<id>` → the last outbox seq turned into deliveries (u64 BE); removed
//!   once the job's final event is, so the start-up sweep reads only unfinished jobs;
//! * `webhook_deliveries`: `<id><seq BE>` → the [`Delivery`] (JSON);
//! * `webhook_due`: `<id><seq BE>` → when the pending delivery is due (u64 BE ms): the pending
//!   deliveries only, in per-job order.

use protocol::JobId;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::{Transactional, Tree};
use thiserror::Error;

use super::{Delivery, DeliveryState, Target};

#[derive(Debug, Error)]
pub enum WebhookStoreError {
    #[error("webhook store: {0}")]
    Sled(#[from] sled::Error),
    #[error("webhook store: undecodable entry {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

impl From<TransactionError<WebhookStoreError>> for WebhookStoreError {
    fn from(e: TransactionError<WebhookStoreError>) -> Self {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => WebhookStoreError::Sled(e),
        }
    }
}

#[derive(Clone)]
pub(super) struct Trees {
    db: sled::Db,
    targets: Tree,
    cursors: Tree,
    deliveries: Tree,
    due: Tree,
}

fn key(id: &JobId, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(40);
    k.extend_from_slice(id.as_str().as_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn job_of(key: &[u8]) -> Result<JobId, WebhookStoreError> {
    let text = std::str::from_utf8(&key[..32.min(key.len())]).unwrap_or_default();
    JobId::parse(text).ok_or_else(|| WebhookStoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: "not a job id".into(),
    })
}

fn u64_of(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = bytes.len().min(8);
    b[8 - n..].copy_from_slice(&bytes[bytes.len() - n..]);
    u64::from_be_bytes(b)
}

fn decode<T: serde::de::DeserializeOwned>(
    key: &[u8],
    bytes: &[u8],
) -> Result<T, WebhookStoreError> {
    serde_json::from_slice(bytes).map_err(|e| WebhookStoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("webhook entries always encode")
}

impl Trees {
    pub(super) fn open(db: &sled::Db) -> Result<Trees, WebhookStoreError> {
        Ok(Trees {
            db: db.clone(),
            targets: db.open_tree("webhook_targets")?,
            cursors: db.open_tree("webhook_cursors")?,
            deliveries: db.open_tree("webhook_deliveries")?,
            due: db.open_tree("webhook_due")?,
        })
    }

    async fn flush(&self) -> Result<(), WebhookStoreError> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// Writes `target` for job `id` without flushing: the caller's flush of the same
    /// database (the job's group commit) makes it durable.
    pub(super) fn register_buffered(
        &self,
        id: &JobId,
        target: &Target,
    ) -> Result<(), WebhookStoreError> {
        let k = id.as_str().as_bytes();
        let value = encode(target);
        (&self.targets, &self.cursors).transaction(|(targets, cursors)| {
            targets.insert(k, value.as_slice())?;
            cursors.insert(k, &0u64.to_be_bytes())?;
            Ok::<_, ConflictableTransactionError<WebhookStoreError>>(())
        })?;
        Ok(())
    }

    pub(super) fn target(&self, id: &JobId) -> Result<Option<Target>, WebhookStoreError> {
        let k = id.as_str().as_bytes();
        self.targets.get(k)?.map(|v| decode(k, &v)).transpose()
    }

    pub(super) fn cursor(&self, id: &JobId) -> Result<Option<u64>, WebhookStoreError> {
        Ok(self
            .cursors
            .get(id.as_str().as_bytes())?
            .map(|v| u64_of(&v)))
    }

    /// Jobs whose events are not all turned into deliveries yet.
    pub(super) fn unfinished(&self) -> Result<Vec<JobId>, WebhookStoreError> {
        self.cursors.iter().keys().map(|k| job_of(&k?)).collect()
    }

    /// Every job with a webhook.
    pub(super) fn with_targets(&self) -> Result<Vec<JobId>, WebhookStoreError> {
        self.targets.iter().keys().map(|k| job_of(&k?)).collect()
    }

    /// Adds `new` deliveries (due now) and moves the cursor of `id` to `cursor` (removes it
    /// when `finished`), in one transaction; flushed.
    pub(super) async fn enqueue(
        &self,
        id: &JobId,
        cursor: u64,
        finished: bool,
        new: &[Delivery],
    ) -> Result<(), WebhookStoreError> {
        let entries: Vec<(Vec<u8>, Vec<u8>, u64)> = new
            .iter()
            .map(|d| (key(&d.job, d.seq), encode(d), d.next_ms.unwrap_or(0)))
            .collect();
        let k = id.as_str().as_bytes();
        (&self.cursors, &self.deliveries, &self.due).transaction(
            |(cursors, deliveries, due)| {
                for (dk, value, next) in &entries {
                    deliveries.insert(dk.as_slice(), value.as_slice())?;
                    due.insert(dk.as_slice(), &next.to_be_bytes())?;
                }
                if finished {
                    cursors.remove(k)?;
                } else {
                    cursors.insert(k, &cursor.to_be_bytes())?;
                }
                Ok::<_, ConflictableTransactionError<WebhookStoreError>>(())
            },
        )?;
        self.flush().await
    }

    /// Stores `delivery` as it now is (pending: due at `next_ms`; otherwise off the due list);
    /// flushed.
    pub(super) async fn record(&self, delivery: &Delivery) -> Result<(), WebhookStoreError> {
        let k = key(&delivery.job, delivery.seq);
        let value = encode(delivery);
        let next = delivery
            .next_ms
            .filter(|_| delivery.state == DeliveryState::Pending);
        (&self.deliveries, &self.due).transaction(|(deliveries, due)| {
            deliveries.insert(k.as_slice(), value.as_slice())?;
            match next {
                Some(ms) => due.insert(k.as_slice(), &ms.to_be_bytes())?,
                None => due.remove(k.as_slice())?,
            };
            Ok::<_, ConflictableTransactionError<WebhookStoreError>>(())
        })?;
        self.flush().await
    }

    pub(super) fn delivery(
        &self,
        id: &JobId,
        seq: u64,
    ) -> Result<Option<Delivery>, WebhookStoreError> {
        let k = key(id, seq);
        self.deliveries.get(&k)?.map(|v| decode(&k, &v)).transpose()
    }

    pub(super) fn deliveries_of(&self, id: &JobId) -> Result<Vec<Delivery>, WebhookStoreError> {
        self.deliveries
            .scan_prefix(id.as_str().as_bytes())
            .map(|item| {
                let (k, v) = item?;
                decode(&k, &v)
            })
            .collect()
    }

    /// The first pending delivery of each job, as `(job, seq, due ms)`: deliveries of one job
    /// go out in order.
    pub(super) fn heads(&self) -> Result<Vec<(JobId, u64, u64)>, WebhookStoreError> {
        let mut heads: Vec<(JobId, u64, u64)> = Vec::new();
        for item in self.due.iter() {
            let (k, v) = item?;
            let job = job_of(&k)?;
            if heads.last().is_some_and(|(last, _, _)| *last == job) {
                continue;
            }
            heads.push((job, u64_of(&k[32..]), u64_of(&v)));
        }
        Ok(heads)
    }

    /// Removes everything of job `id` (its job is gone); flushed.
    pub(super) async fn forget(&self, id: &JobId) -> Result<(), WebhookStoreError> {
        let k = id.as_str().as_bytes();
        self.targets.remove(k)?;
        self.cursors.remove(k)?;
        for tree in [&self.deliveries, &self.due] {
            for key in tree.scan_prefix(k).keys() {
                tree.remove(key?)?;
            }
        }
        self.flush().await
    }
}
