//! Counters kept beside the records, so that the questions asked on every submit and every
//! scrape — how many jobs are queued, running, finished; how many jobs one owner has queued or
//! running — cost one key read instead of a scan of the store.
//!
//! Tree `job_counts`: `s/<state>` → jobs in that state, `a/<owner>` → the owner's jobs that are
//! queued or running (absent at 0); both u64 big-endian. They change only inside the same sled
//! transaction as the record they count ([`super::JobStore::insert`],
//! [`super::JobStore::transition`], [`super::JobStore::delete`]), so a crash cannot separate a
//! state change from its count. [`JobStore::check_counts`] recomputes everything from the
//! indexes and the records (once, when the store opens) and rewrites the counters when they
//! disagree: a store written by an older version, or a counter a bug got wrong, heals at the
//! next start. The same check fills the owner index (`jobs_by_owner`) of a store that predates
//! it.

use std::collections::BTreeMap;

use protocol::{JobRecord, JobState, Owner};
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use super::{keys, JobStore, StoreError, BY_OWNER, BY_STATE};

/// Changes to the counters, applied inside a transaction by [`Deltas::apply`].
#[derive(Debug, Default)]
pub(super) struct Deltas(BTreeMap<Vec<u8>, i64>);

fn state_key(state: JobState) -> Vec<u8> {
    let mut k = b"s/".to_vec();
    k.extend_from_slice(state.as_str().as_bytes());
    k
}

fn owner_key(owner: &Owner) -> Vec<u8> {
    let mut k = b"a/".to_vec();
    k.extend_from_slice(owner.as_str().as_bytes());
    k
}

/// Queued or running: what an owner's concurrency limit counts.
pub(super) fn is_active(state: JobState) -> bool {
    matches!(state, JobState::Queued | JobState::Running)
}

impl Deltas {
    fn add(&mut self, key: Vec<u8>, by: i64) {
        *self.0.entry(key).or_insert(0) += by;
    }

    /// `record` appears (`by` = 1) or disappears (`by` = -1).
    pub(super) fn record(mut self, record: &JobRecord, by: i64) -> Deltas {
        self.add(state_key(record.state), by);
        if is_active(record.state) {
            self.add(owner_key(&record.owner), by);
        }
        self
    }

    /// `old` becomes `new` (same job, same owner).
    pub(super) fn change(old: &JobRecord, new: &JobRecord) -> Deltas {
        Deltas::default().record(old, -1).record(new, 1)
    }

    /// Applies the changes to the counters tree inside a transaction.
    pub(super) fn apply<E>(
        &self,
        counts: &TransactionalTree,
    ) -> Result<(), ConflictableTransactionError<E>> {
        for (key, by) in &self.0 {
            if *by == 0 {
                continue;
            }
            let now = counts.get(key.as_slice())?.map_or(0, |v| read(&v));
            let next = now.saturating_add_signed(*by);
            if next == 0 {
                counts.remove(key.as_slice())?;
            } else {
                counts.insert(key.as_slice(), &next.to_be_bytes())?;
            }
        }
        Ok(())
    }
}

fn read(value: &[u8]) -> u64 {
    <[u8; 8]>::try_from(value).map_or(0, u64::from_be_bytes)
}

/// What [`JobStore::check_counts`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CountCheck {
    /// Whether the counters disagreed with the store and were rewritten.
    pub counters_rebuilt: bool,
    /// Whether the owner index was incomplete and was rebuilt.
    pub owner_index_rebuilt: bool,
}

impl JobStore {
    /// Jobs in a state: one counter read.
    pub fn count(&self, state: JobState) -> Result<usize, StoreError> {
        Ok(self.counts.get(state_key(state))?.map_or(0, |v| read(&v)) as usize)
    }

    /// Jobs of `owner` that are queued or running: one counter read.
    pub fn active_of(&self, owner: &Owner) -> Result<usize, StoreError> {
        Ok(self.counts.get(owner_key(owner))?.map_or(0, |v| read(&v)) as usize)
    }

    /// Recomputes the counters from the state index and the active jobs' records, and the
    /// owner index from the records when it does not hold one entry per job; rewrites what
    /// disagrees (under the writer lock). Reads every index key once: run at start-up.
    pub fn check_counts(&self) -> Result<CountCheck, StoreError> {
        let _writer = self.lock();
        let mut check = CountCheck::default();
        let mut want: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        for state in JobState::ALL {
            let mut n = 0u64;
            for item in self.by_state.scan_prefix(keys::state_prefix(state)) {
                let (key, value) = item?;
                n += 1;
                if is_active(state) {
                    let id = keys::id_value(BY_STATE, &key, &value)?;
                    if let Some(record) = self.get(&id)? {
                        *want.entry(owner_key(&record.owner)).or_insert(0) += 1;
                    }
                }
            }
            if n > 0 {
                want.insert(state_key(state), n);
            }
        }
        let mut have = BTreeMap::new();
        for item in self.counts.iter() {
            let (k, v) = item?;
            have.insert(k.to_vec(), read(&v));
        }
        if have != want {
            tracing::warn!(
                stored = have.len(),
                computed = want.len(),
                "job counters disagree with the store: rebuilding them"
            );
            let mut batch = sled::Batch::default();
            for k in have.keys().filter(|k| !want.contains_key(*k)) {
                batch.remove(k.as_slice());
            }
            for (k, v) in &want {
                batch.insert(k.as_slice(), &v.to_be_bytes());
            }
            self.counts.apply_batch(batch)?;
            check.counters_rebuilt = true;
        }
        if self.by_owner.len() != self.jobs.len() {
            tracing::warn!(
                entries = self.by_owner.len(),
                jobs = self.jobs.len(),
                "rebuilding the owner index"
            );
            self.by_owner.clear()?;
            let mut batch = sled::Batch::default();
            for item in self.jobs.iter() {
                let (key, bytes) = item?;
                match super::decode(&key, &bytes) {
                    Ok(r) => batch.insert(keys::owner_key(&r.owner, r.created_ms, &r.id), key),
                    Err(e) => tracing::warn!(error = %e, "owner index: skipping a record"),
                }
            }
            self.by_owner.apply_batch(batch)?;
            check.owner_index_rebuilt = true;
        }
        Ok(check)
    }

    /// Creation times of `owner`'s jobs created at or after `since_ms`, newest first, at most
    /// `limit`; and how many there are in all (counted by keys only when there are more).
    pub fn owner_created_since(
        &self,
        owner: &Owner,
        since_ms: u64,
        limit: usize,
    ) -> Result<(Vec<u64>, usize), StoreError> {
        let from = keys::owner_bound(owner, since_ms);
        let to = keys::owner_bound(owner, u64::MAX);
        let mut newest = Vec::new();
        let mut total = 0;
        for item in self.by_owner.range(from..to).keys().rev() {
            let key = item?;
            total += 1;
            if newest.len() < limit {
                let created = keys::owner_created(&key).ok_or_else(|| StoreError::Corrupt {
                    key: format!("{BY_OWNER}/{}", String::from_utf8_lossy(&key)),
                    reason: "not an owner index key".into(),
                })?;
                newest.push(created);
            }
        }
        Ok((newest, total))
    }
}
