//! The byte layout of the job store's keys, in one place so that every reader and writer of an
//! index agrees on it. Integers are big-endian so that sled's byte order is numeric order.
//!
//! - `jobs`: `<id>` → the record as JSON.
//! - `jobs_by_state`: `<state>/<created_ms BE>/<id>` → `<id>` (oldest first within a state).
//! - `jobs_by_created`: `<created_ms BE><id>` → `<id>` (creation order).
//! - `jobs_by_file`: `<result file name>` → `<id>`.
//! - `jobs_by_idempotency_key`: `<owner>\0<key>` → `<id>` (owners hold no NUL).
//! - `jobs_by_owner`: `<owner>\0<created_ms BE><id>` → `<id>` (one owner's jobs in creation
//!   order, for the per-owner windows).

use protocol::{JobId, JobRecord, JobState};

use super::StoreError;
use crate::outputs::OutputStore;

/// `<state>/`: the prefix of one state's index range.
pub(super) fn state_prefix(state: JobState) -> Vec<u8> {
    let mut key = Vec::with_capacity(12);
    key.extend_from_slice(state.as_str().as_bytes());
    key.push(b'/');
    key
}

/// The first key after every key that starts with `prefix` (unbounded for an empty prefix:
/// `[0xff; 64]` is above every key the store writes).
pub(super) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xff; 64]
}

/// `<state>/<created_ms BE>`: the exclusive upper end of "created before `created_ms`".
pub(super) fn state_bound(state: JobState, created_ms: u64) -> Vec<u8> {
    let mut key = state_prefix(state);
    key.extend_from_slice(&created_ms.to_be_bytes());
    key
}

/// `<state>/<created_ms BE>/<id>`.
pub(super) fn state_key(state: JobState, created_ms: u64, id: &JobId) -> Vec<u8> {
    let mut key = state_bound(state, created_ms);
    key.push(b'/');
    key.extend_from_slice(id.as_str().as_bytes());
    key
}

/// `<created_ms BE><id>`.
pub(super) fn created_key(created_ms: u64, id: &JobId) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + 32);
    key.extend_from_slice(&created_ms.to_be_bytes());
    key.extend_from_slice(id.as_str().as_bytes());
    key
}

/// The result file name a record is indexed under: `<id>.wav` or `sub/dir/<id>.wav`.
pub(super) fn file_key(record: &JobRecord) -> String {
    OutputStore::relative(record.spec.output_subdir.as_deref(), &record.id)
}

/// `<owner>\0<idempotency key>`.
pub(super) fn idempotency_key(owner: &protocol::Owner, key: &str) -> Vec<u8> {
    let mut k = owner.as_str().as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

/// `<owner>\0<created_ms BE>`: where `owner`'s jobs created at `created_ms` begin.
pub(super) fn owner_bound(owner: &protocol::Owner, created_ms: u64) -> Vec<u8> {
    let mut k = owner.as_str().as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&created_ms.to_be_bytes());
    k
}

/// `<owner>\0<created_ms BE><id>`.
pub(super) fn owner_key(owner: &protocol::Owner, created_ms: u64, id: &JobId) -> Vec<u8> {
    let mut k = owner_bound(owner, created_ms);
    k.extend_from_slice(id.as_str().as_bytes());
    k
}

/// The creation time in an owner index key.
pub(super) fn owner_created(key: &[u8]) -> Option<u64> {
    let nul = key.iter().position(|b| *b == 0)?;
    let bytes = key.get(nul + 1..nul + 9)?;
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// Reads the id an index entry points to.
pub(super) fn id_value(tree: &str, key: &[u8], value: &[u8]) -> Result<JobId, StoreError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(JobId::parse)
        .ok_or_else(|| StoreError::Corrupt {
            key: format!("{tree}/{}", String::from_utf8_lossy(key)),
            reason: format!(
                "index entry holds {:?}, not a job id",
                String::from_utf8_lossy(value)
            ),
        })
}
