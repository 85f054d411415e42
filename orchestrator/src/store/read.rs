//! Reads of the job store by state: the ids in a state, a job's place in creation order among
//! the queued ones, and the whole store for maintenance (finished jobs for retention are in
//! [`super::lookup`]). Each
//! reads one index range (or, for [`JobStore::scan`], everything, which only maintenance does).

use protocol::{JobId, JobRecord, JobState};

use super::{decode, keys, JobStore, StoreError, BY_STATE};

impl JobStore {
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
