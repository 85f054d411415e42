//! The byte layout of the job outbox (tree `job_events`) and its readers.
//!
//! Key: `<id (32 ASCII hex digits)><seq u64 BE>`, so one job's events are one contiguous key
//! range in sequence order. Value: the [`JobEvent`] as JSON. Entries are written only by the
//! store's transactions together with the record they describe ([`super::JobStore::insert`],
//! [`super::JobStore::transition`]) and removed with it ([`super::JobStore::delete`]).

use protocol::{JobEvent, JobId};
use sled::Tree;

use super::StoreError;

/// `<id><seq BE>`.
pub(super) fn key(id: &JobId, seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(40);
    key.extend_from_slice(id.as_str().as_bytes());
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

pub(super) fn encode(event: &JobEvent) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(event).map_err(|e| StoreError::Corrupt {
        key: format!("{}/{}/{}", super::EVENTS, event.job, event.seq),
        reason: format!("refusing to store an event that would not encode: {e}"),
    })
}

/// Events of `id` with `seq > after`, in order.
pub(super) fn read_after(tree: &Tree, id: &JobId, after: u64) -> Result<Vec<JobEvent>, StoreError> {
    let from = key(id, after.saturating_add(1));
    let to = key(id, u64::MAX);
    let mut out = Vec::new();
    for item in tree.range(from..=to) {
        let (k, v) = item?;
        let event: JobEvent = serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt {
            key: format!(
                "{}/{}",
                super::EVENTS,
                String::from_utf8_lossy(&k[..32.min(k.len())])
            ),
            reason: e.to_string(),
        })?;
        out.push(event);
    }
    Ok(out)
}

/// Every outbox key of `id` (to delete them with the job).
pub(super) fn keys_of(tree: &Tree, id: &JobId) -> Result<Vec<Vec<u8>>, StoreError> {
    tree.scan_prefix(id.as_str().as_bytes())
        .keys()
        .map(|k| Ok(k?.to_vec()))
        .collect()
}
