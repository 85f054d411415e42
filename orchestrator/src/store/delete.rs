//! Deleting a job (retention): the record, every index entry, its counters and its outbox go
//! in one transaction.

use sled::transaction::abort;
use sled::{Transactional, Tree};

use protocol::JobId;

use super::{counts, decode, from_tx, keys, outbox, JobStore, StoreError};

impl JobStore {
    /// Deletes a record, all its index entries, its counts and its outbox (one transaction),
    /// then flushes. A record that no longer decodes is deleted too (its index entries are
    /// found by value, and the counters are rebuilt from the store afterwards).
    pub async fn delete(&self, id: &JobId) -> Result<(), StoreError> {
        {
            let _writer = self.lock();
            let key = id.as_str().as_bytes();
            let Some(bytes) = self.jobs.get(key)? else {
                return Err(StoreError::NotFound(id.clone()));
            };
            let decoded = decode(key, &bytes);
            let deltas = match &decoded {
                Ok(record) => counts::Deltas::default().record(record, -1),
                Err(_) => counts::Deltas::default(),
            };
            let lookup_keys: Vec<Vec<u8>> = match &decoded {
                Ok(record) => super::lookup::keys_of(record).into_iter().collect(),
                Err(_) => self.keys_pointing_to(&self.lookup, key)?,
            };
            let index_keys: [Vec<Vec<u8>>; 5] = match &decoded {
                Ok(record) => [
                    vec![keys::state_key(record.state, record.created_ms, id)],
                    vec![keys::created_key(record.created_ms, id)],
                    vec![keys::file_key(record).into_bytes()],
                    record
                        .idempotency_key
                        .iter()
                        .map(|k| keys::idempotency_key(&record.owner, k))
                        .collect(),
                    vec![keys::owner_key(&record.owner, record.created_ms, id)],
                ],
                Err(e) => {
                    tracing::warn!(job = %id, error = %e, "deleting an undecodable job record");
                    [
                        self.keys_pointing_to(&self.by_state, key)?,
                        self.keys_pointing_to(&self.by_created, key)?,
                        self.keys_pointing_to(&self.by_file, key)?,
                        self.keys_pointing_to(&self.by_key, key)?,
                        self.keys_pointing_to(&self.by_owner, key)?,
                    ]
                }
            };
            let [state_keys, created_keys, file_keys, idempotency_keys, owner_keys] = &index_keys;
            let event_keys = outbox::keys_of(&self.events, id)?;
            (
                &self.jobs,
                &self.by_state,
                &self.by_created,
                &self.by_file,
                &self.events,
                &self.by_key,
                &self.by_owner,
                &self.counts,
                &self.lookup,
            )
                .transaction(
                    |(
                        jobs,
                        by_state,
                        by_created,
                        by_file,
                        events,
                        by_key,
                        by_owner,
                        counts,
                        lookup_tree,
                    )| {
                        if jobs.get(key)?.as_ref() != Some(&bytes) {
                            return abort(StoreError::Transaction(format!(
                                "job {id} changed while being deleted"
                            )));
                        }
                        jobs.remove(key)?;
                        for k in state_keys {
                            by_state.remove(k.as_slice())?;
                        }
                        for k in created_keys {
                            by_created.remove(k.as_slice())?;
                        }
                        for k in owner_keys {
                            by_owner.remove(k.as_slice())?;
                        }
                        for k in &lookup_keys {
                            lookup_tree.remove(k.as_slice())?;
                        }
                        deltas.apply(counts)?;
                        for k in &event_keys {
                            events.remove(k.as_slice())?;
                        }
                        for k in file_keys {
                            // Only if it still points to this job.
                            if by_file.get(k.as_slice())?.as_deref() == Some(key) {
                                by_file.remove(k.as_slice())?;
                            }
                        }
                        for k in idempotency_keys {
                            if by_key.get(k.as_slice())?.as_deref() == Some(key) {
                                by_key.remove(k.as_slice())?;
                            }
                        }
                        Ok(())
                    },
                )
                .map_err(from_tx)?;
            self.recent.deleted(id);
            if decoded.is_err() {
                // Its state and owner are unknown: count everything again.
                drop(_writer);
                self.check_counts()?;
            }
        }
        self.flush().await
    }

    /// Index keys whose value is `id` (a full scan of one index: only for undecodable records).
    fn keys_pointing_to(&self, tree: &Tree, id: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out = Vec::new();
        for item in tree.iter() {
            let (k, v) = item?;
            if v.as_ref() == id {
                out.push(k.to_vec());
            }
        }
        Ok(out)
    }
}
