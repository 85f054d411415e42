//! The lookup index (tree `jobs_lookup`): the questions that would otherwise read every job —
//! which jobs came from one source (`GET /api/v1/jobs?source=`), which finished before a time
//! (retention), which jobs use an upload or start from an earlier job's result (what
//! retention must keep) — as ranges of one tree. Every key's value is the job id.
//!
//! - `s<source>/*/<created_ms BE><id>`: every job of a source, in creation order;
//! - `s<source>/<state>/<created_ms BE><id>`: a source's jobs in one state;
//! - `f<finished_ms BE><id>`: terminal jobs by finish time (`finished_ms`, else `updated_ms`);
//! - `u<blob>\0<id>`: the jobs that use upload `blob` (style, edit or init song);
//! - `o<source id>\0<id>`: the jobs that start from job `source id`'s result.
//!
//! A record's keys ([`keys_of`]) are written with it and moved in the same sled transaction as
//! every state change ([`super::JobStore::insert`], `transition`, `delete`), like the state
//! index and the counters. [`super::JobStore::check_lookup`] (at start-up, after the
//! counters) rebuilds the tree from the records when it is missing (a store written before
//! it), or when its per-source and finished entries disagree with the counters.

use std::collections::BTreeSet;

use protocol::{JobId, JobRecord, JobState, SongRef, Source, StyleSpec};
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use super::{keys, JobStore, StoreError, LOOKUP};

/// Set once the tree was built from the records (version of the layout).
const BUILT: &[u8] = b"v1";

/// `s<source>/<state or *>/`: the prefix of a source's jobs (in one state, or all).
pub(super) fn source_prefix(source: Source, state: Option<JobState>) -> Vec<u8> {
    let mut k = b"s".to_vec();
    k.extend_from_slice(source.as_str().as_bytes());
    k.push(b'/');
    k.extend_from_slice(state.map_or("*", |s| s.as_str()).as_bytes());
    k.push(b'/');
    k
}

/// `f<finished_ms BE>`: terminal jobs finished before `ms` sort below it.
pub(super) fn finished_bound(ms: u64) -> Vec<u8> {
    let mut k = b"f".to_vec();
    k.extend_from_slice(&ms.to_be_bytes());
    k
}

fn users_prefix(kind: u8, of: &str) -> Vec<u8> {
    let mut k = vec![kind];
    k.extend_from_slice(of.as_bytes());
    k.push(0);
    k
}

/// When a terminal record finished, as the index and retention read it.
pub(super) fn finished_at(record: &JobRecord) -> u64 {
    record.finished_ms.unwrap_or(record.updated_ms)
}

/// Every lookup key of `record`.
pub(super) fn keys_of(record: &JobRecord) -> BTreeSet<Vec<u8>> {
    let id = record.id.as_str().as_bytes();
    let created = keys::created_key(record.created_ms, &record.id);
    let mut out = BTreeSet::new();
    for state in [None, Some(record.state)] {
        let mut k = source_prefix(record.source, state);
        k.extend_from_slice(&created);
        out.insert(k);
    }
    if record.state.is_terminal() {
        let mut k = finished_bound(finished_at(record));
        k.extend_from_slice(id);
        out.insert(k);
    }
    let spec = &record.spec;
    let style = match &spec.style {
        StyleSpec::Upload(blob) => Some(blob.as_str()),
        StyleSpec::Prompt(_) => None,
    };
    let songs = spec.songs().filter_map(|s| match s {
        SongRef::Upload(blob) => Some(blob.as_str()),
        SongRef::Output(_) => None,
    });
    for blob in style.into_iter().chain(songs) {
        let mut k = users_prefix(b'u', blob);
        k.extend_from_slice(id);
        out.insert(k);
    }
    for song in spec.songs() {
        if let SongRef::Output(source) = song {
            let mut k = users_prefix(b'o', source.as_str());
            k.extend_from_slice(id);
            out.insert(k);
        }
    }
    out
}

/// Writes the keys `new` has and `old` had not, removes the ones `old` had and `new` has not
/// (either may be empty: an insert, a delete), inside a transaction.
pub(super) fn apply<E>(
    tree: &TransactionalTree,
    id: &JobId,
    old: &BTreeSet<Vec<u8>>,
    new: &BTreeSet<Vec<u8>>,
) -> Result<(), ConflictableTransactionError<E>> {
    for k in old.difference(new) {
        tree.remove(k.as_slice())?;
    }
    for k in new.difference(old) {
        tree.insert(k.as_slice(), id.as_str().as_bytes())?;
    }
    Ok(())
}

impl JobStore {
    /// The ids of the jobs that use upload `blob`.
    pub fn upload_users(&self, blob: &str) -> Result<Vec<JobId>, StoreError> {
        self.ids_with_prefix(&users_prefix(b'u', blob))
    }

    /// The ids of the jobs that start from job `source`'s result (edit, init).
    pub fn output_users(&self, source: &JobId) -> Result<Vec<JobId>, StoreError> {
        self.ids_with_prefix(&users_prefix(b'o', source.as_str()))
    }

    fn ids_with_prefix(&self, prefix: &[u8]) -> Result<Vec<JobId>, StoreError> {
        self.lookup
            .scan_prefix(prefix)
            .map(|item| {
                let (k, v) = item?;
                keys::id_value(LOOKUP, &k, &v)
            })
            .collect()
    }

    /// Terminal jobs whose finish time (`finished_ms`, else `updated_ms`) is before
    /// `before_ms`, oldest first: one range of the lookup index.
    pub fn finished_before(&self, before_ms: u64) -> Result<Vec<JobRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .lookup
            .range(finished_bound(0)..finished_bound(before_ms))
        {
            let (key, value) = item?;
            let id = keys::id_value(LOOKUP, &key, &value)?;
            if let Some(record) = self.get(&id)? {
                if record.state.is_terminal() && finished_at(&record) < before_ms {
                    out.push(record);
                }
            }
        }
        Ok(out)
    }

    /// Rebuilds the lookup index from the records when it was never built, or when its
    /// entries per source or its finished entries disagree with the counters (run at start-up,
    /// after [`JobStore::check_counts`]). True if it was rebuilt.
    pub fn check_lookup(&self) -> Result<bool, StoreError> {
        let _writer = self.lock();
        let built = self.lookup.get(BUILT)?.is_some();
        if built {
            let jobs: usize = JobState::ALL
                .into_iter()
                .map(|s| self.count(s))
                .sum::<Result<usize, _>>()?;
            let terminal: usize = JobState::ALL
                .into_iter()
                .filter(|s| s.is_terminal())
                .map(|s| self.count(s))
                .sum::<Result<usize, _>>()?;
            let all_sources = Source::ALL
                .into_iter()
                .map(|s| {
                    self.lookup
                        .scan_prefix(source_prefix(s, None))
                        .keys()
                        .count()
                })
                .sum::<usize>();
            let finished = self
                .lookup
                .range(finished_bound(0)..finished_bound(u64::MAX))
                .keys()
                .count();
            if all_sources == jobs && finished == terminal {
                return Ok(false);
            }
            tracing::warn!(
                jobs,
                indexed = all_sources,
                terminal,
                finished,
                "the lookup index disagrees with the store: rebuilding it"
            );
        }
        self.lookup.clear()?;
        let mut batch = sled::Batch::default();
        for item in self.jobs.iter() {
            let (key, bytes) = item?;
            match super::decode(&key, &bytes) {
                Ok(r) => {
                    for k in keys_of(&r) {
                        batch.insert(k, key.clone());
                    }
                }
                Err(e) => tracing::warn!(error = %e, "lookup index: skipping a record"),
            }
        }
        batch.insert(BUILT, b"1".as_slice());
        self.lookup.apply_batch(batch)?;
        Ok(true)
    }
}
