//! Reads of the job store by state: the ids in a state, a job's place in creation order among
//! the queued ones, finished jobs for retention, and the whole store for maintenance. Each
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

    /// Terminal jobs whose `finished_ms` (or, if unset, `updated_ms`) is older than
    /// `before_ms`, oldest first. Only index ranges of jobs created before `before_ms` are read
    /// (a job finishes after it is created).
    pub fn finished_before(&self, before_ms: u64) -> Result<Vec<JobRecord>, StoreError> {
        let mut out = Vec::new();
        for state in JobState::ALL.into_iter().filter(|s| s.is_terminal()) {
            let range = keys::state_prefix(state)..keys::state_bound(state, before_ms);
            for item in self.by_state.range(range) {
                let (key, value) = item?;
                let id = keys::id_value(BY_STATE, &key, &value)?;
                if let Some(record) = self.get(&id)? {
                    let finished = record.finished_ms.unwrap_or(record.updated_ms);
                    if record.state.is_terminal() && finished < before_ms {
                        out.push(record);
                    }
                }
            }
        }
        out.sort_by_key(|r| (r.finished_ms.unwrap_or(r.updated_ms), r.id.clone()));
        Ok(out)
    }

    /// Every record, in id order, one by one (an undecodable one is an `Err` item and the scan
    /// goes on). For maintenance, such as retention's reference check: this reads the whole
    /// store.
    pub fn scan(&self) -> impl Iterator<Item = Result<JobRecord, StoreError>> + Send + 'static {
        self.jobs.iter().map(|item| {
            let (key, bytes) = item?;
            decode(&key, &bytes)
        })
    }
}
