//! Reads of the job store: one record (by id, by idempotency key, by result file name; from
//! the records kept in memory when it was written or read lately, see [`super::recent`]), the
//! ids in a state, a job's place in creation order among the queued ones, and the whole store
//! for maintenance (finished jobs for retention are in [`super::lookup`]). Each reads one key
//! or one index range (or, for [`JobStore::scan`], everything, which only maintenance does).

use protocol::{JobId, JobRecord, JobState};

use super::{decode, keys, JobStore, StoreError, BY_FILE, BY_KEY, BY_STATE};

impl JobStore {
    /// The record of `id`, if any: from memory when it was written or read lately
    /// ([`super::recent`]), else from sled.
    pub fn get(&self, id: &JobId) -> Result<Option<JobRecord>, StoreError> {
        let missed = match self.recent.get(id) {
            Ok(record) => return Ok(Some(record)),
            Err(missed) => missed,
        };
        let key = id.as_str().as_bytes();
        let Some(bytes) = self.jobs.get(key)? else {
            return Ok(None);
        };
        let record = decode(key, &bytes)?;
        self.recent.fill(missed, &record);
        Ok(Some(record))
    }

    /// The job an owner created with an idempotency key, if the index still names one.
    pub fn get_by_idempotency_key(
        &self,
        owner: &protocol::Owner,
        key: &str,
    ) -> Result<Option<JobRecord>, StoreError> {
        let k = keys::idempotency_key(owner, key);
        let Some(value) = self.by_key.get(&k)? else {
            return Ok(None);
        };
        let id = keys::id_value(BY_KEY, &k, &value)?;
        self.get(&id)
    }

    /// The job whose result file is `file` (`<id>.wav`, or `sub/dir/<id>.wav` when the job has
    /// an `output_subdir`). The index is written at insert time, so this works before the file
    /// exists. Only an exact stored name matches: `file` is a lookup key, never a path.
    pub fn get_by_file(&self, file: &str) -> Result<Option<JobRecord>, StoreError> {
        let Some(value) = self.by_file.get(file.as_bytes())? else {
            return Ok(None);
        };
        let id = keys::id_value(BY_FILE, file.as_bytes(), &value)?;
        self.get(&id)
    }

    /// Ids in a state, oldest first (by created_ms, then id).
    pub fn ids_in_state(&self, state: JobState) -> Result<Vec<JobId>, StoreError> {
        self.by_state
            .scan_prefix(keys::state_prefix(state))
            .map(|item| {
                let (key, value) = item?;
                keys::id_value(BY_STATE, &key, &value)
            })
            .collect()
    }

    /// 0-based position among Queued jobs by creation order; `None` if the job is not queued
    /// (or does not exist). It counts the index entries ahead of the job: the queues answer
    /// positions themselves ([`crate::queue::Queue::position`]); this is only the fallback for
    /// a job the queue does not track (yet).
    pub fn queue_position(&self, id: &JobId) -> Result<Option<usize>, StoreError> {
        let Some(record) = self.get(id)? else {
            return Ok(None);
        };
        if record.state != JobState::Queued {
            return Ok(None);
        }
        let own = keys::state_key(JobState::Queued, record.created_ms, id);
        let mut ahead = 0;
        for item in self
            .by_state
            .range(keys::state_prefix(JobState::Queued)..own)
            .keys()
        {
            item?;
            ahead += 1;
        }
        Ok(Some(ahead))
    }

    /// Every record, in id order, one by one (an undecodable one is an `Err` item and the scan
    /// goes on). For maintenance and tests only: this reads the whole store.
    pub fn scan(&self) -> impl Iterator<Item = Result<JobRecord, StoreError>> + Send + 'static {
        self.jobs.iter().map(|item| {
            let (key, bytes) = item?;
            decode(&key, &bytes)
        })
    }
}
