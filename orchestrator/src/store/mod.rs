//! The durable job store: every job's record in sled, with indexes by state, by creation time
//! and by result file name.
//!
//! It exists so that a job accepted with 202 survives `kill -9`, and so that every state change
//! is a compare-and-swap that exactly one caller wins. The rules:
//!
//! - Records are JSON (`serde_json`); a record that would not read back is refused, not stored.
//! - Every write that touches a record and its indexes is one sled transaction, so the indexes
//!   never disagree with the records.
//! - In-process writers are serialised by one short lock around read-check-write (no await is
//!   held under it); the transaction re-checks the stored bytes as well, so the compare-and-swap
//!   holds even against a writer that bypassed the lock.
//! - sled buffers writes in memory for up to 500 ms, and a write that returned `Ok` is lost on
//!   SIGKILL unless flushed (stack-notes §5). So every state change is flushed before the call
//!   returns — through [`commit::GroupFlush`], so that concurrent writers share one flush; only
//!   progress updates are left to the background flush (they are advisory, and the next stage
//!   change flushes them). [`JobStore::insert_buffered`] leaves the flush to its caller (the
//!   admission path, which flushes after releasing its lock).
//! - Counts per state and per owner ([`counts`]) change in the same transaction as the record,
//!   so `/status`, `/metrics` and admission read counters instead of scanning; so do the
//!   [`lookup`] index's entries (by source, finish time, upload, referenced result), so
//!   listings by source and retention sweeps read ranges instead of every job.
//!
//! - Reads of one record ([`JobStore::get`]) are served from memory when the record was
//!   written or read lately ([`recent`]): every write updates that copy under the writer
//!   lock, so it is never older than sled's, and polling a job costs the same at any store
//!   size. Compare-and-swaps read sled.
//!
//! - Every change of a record appends the job's next [`JobEvent`] to the outbox (tree
//!   `job_events`, see [`outbox`]) in the same transaction, with `event_seq` of the record as
//!   its sequence number: the outbox can never disagree with the record, and a subscriber that
//!   resumes from a sequence number reads exactly what it missed.
//!
//! - Sequence numbers are never given twice, even across a crash. Progress events are written
//!   without a flush and any event is readable before its flush ends, so a subscriber may have
//!   seen event N of a job that a `kill -9` then lost; the job's next event after the restart
//!   must not be N again, or that subscriber (resuming after N) would skip it. So every
//!   opening of the store counts a *boot* (durably, before anything else is written), and a
//!   boot's events are numbered from [`JobStore::seq_floor`] = `(boot - 1) << 32` up: a job's
//!   first event in a later boot jumps past every number an earlier boot could have used. A
//!   store that never restarted numbers 1, 2, 3, …; after a restart the numbers of older jobs
//!   jump (e.g. to 4294967297) and stay increasing, which is all `Last-Event-ID` relies on.
//!
//! Only [`crate::jobs::Lifecycle`] calls [`JobStore::insert_buffered`] and
//! [`JobStore::transition`] (tests use [`JobStore::insert`]).
//!
//! All sled-specific code of the job store lives here; `EmbeddedQueue` shares the same
//! `sled::Db` (see [`JobStore::db`]) so that one flush covers both.

pub mod backup;
pub mod commit;
pub mod counts;
mod delete;
mod keys;
pub mod list;
mod lookup;
mod outbox;
mod read;
mod recent;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use protocol::{JobEvent, JobEventKind, JobId, JobRecord, JobState};
use sled::transaction::{abort, TransactionError};
use sled::{IVec, Transactional, Tree};

/// What can go wrong in the job store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("job store: {0}")]
    Sled(#[from] sled::Error),
    /// A stored record or index entry that does not decode (or a record that would not).
    #[error("job store: corrupt entry {key}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("no job {0}")]
    NotFound(JobId),
    /// A compare-and-swap lost: the job was not in the expected state (nothing was written).
    #[error("job {id}: expected {expected}, found {found}")]
    Conflict {
        id: JobId,
        expected: String,
        found: String,
    },
    /// A write the store refuses (e.g. an update that would change a record's identity).
    #[error("job store transaction: {0}")]
    Transaction(String),
    /// Making writes durable failed (shared by every writer of that flush).
    #[error("job store: flushing to disk failed: {0}")]
    Flush(String),
}

/// The job store. Cheap to clone: all clones share one sled database.
#[derive(Clone)]
pub struct JobStore {
    db: sled::Db,
    jobs: Tree,
    by_state: Tree,
    by_created: Tree,
    by_file: Tree,
    by_key: Tree,
    by_owner: Tree,
    events: Tree,
    /// Counters per state and per owner ([`counts`]).
    counts: Tree,
    /// By source, by finish time, by upload and by referenced result ([`lookup`]).
    lookup: Tree,
    /// Concurrent flushes become one ([`commit`]).
    group: commit::GroupFlush,
    /// Serialises read-check-write sequences of this process (never held across an await).
    writer: Arc<Mutex<()>>,
    /// Recently written and read records, decoded ([`recent`]); every write under `writer`
    /// updates it.
    recent: Arc<recent::Recent>,
    /// Every event written by this process has a sequence number above this one (see the
    /// module docs on sequence numbers).
    seq_floor: u64,
}

impl std::fmt::Debug for JobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobStore").finish_non_exhaustive()
    }
}

/// Unix time in milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

const JOBS: &str = "jobs";
const BY_STATE: &str = "jobs_by_state";
const BY_CREATED: &str = "jobs_by_created";
const BY_FILE: &str = "jobs_by_file";
const BY_KEY: &str = "jobs_by_idempotency_key";
const BY_OWNER: &str = "jobs_by_owner";
const EVENTS: &str = "job_events";
const COUNTS: &str = "job_counts";
const LOOKUP: &str = "jobs_lookup";
/// Key in sled's default tree: how many times the store was opened (u32, big-endian).
const BOOT: &[u8] = b"job_store_boot";

impl JobStore {
    /// Opens (or creates) the store at `path`. sled takes an exclusive lock on the directory:
    /// one process, one `JobStore` (clone it to share; a second store on the same database
    /// would not see the first one's writes in its [`recent`] records).
    pub fn open(path: &Path) -> Result<JobStore, StoreError> {
        let db = sled::Config::new().path(path).open()?;
        Self::with_db(db)
    }

    /// Uses an already opened database (its trees `jobs*` belong to the store), and checks
    /// its counters against its records ([`JobStore::check_counts`]).
    pub fn with_db(db: sled::Db) -> Result<JobStore, StoreError> {
        let store = Self::unchecked(db)?;
        store.check_counts()?;
        store.check_lookup()?;
        Ok(store)
    }

    /// The store on `db` without the start-up checks (tests look at what they would repair).
    pub(crate) fn unchecked(db: sled::Db) -> Result<JobStore, StoreError> {
        let seq_floor = u64::from(next_boot(&db)? - 1) << 32;
        Ok(JobStore {
            jobs: db.open_tree(JOBS)?,
            by_state: db.open_tree(BY_STATE)?,
            by_created: db.open_tree(BY_CREATED)?,
            by_file: db.open_tree(BY_FILE)?,
            by_key: db.open_tree(BY_KEY)?,
            by_owner: db.open_tree(BY_OWNER)?,
            events: db.open_tree(EVENTS)?,
            counts: db.open_tree(COUNTS)?,
            lookup: db.open_tree(LOOKUP)?,
            group: commit::GroupFlush::new(db.clone()),
            db,
            writer: Arc::new(Mutex::new(())),
            recent: Arc::new(recent::Recent::new(recent::RECENT_RECORDS)),
            seq_floor,
        })
    }

    /// Every event this process writes has a sequence number above this floor, and every
    /// event an earlier opening of the store wrote has one at or below it.
    pub fn seq_floor(&self) -> u64 {
        self.seq_floor
    }

    /// The sequence number of the event after one numbered `last` (0: none yet).
    pub fn next_seq(&self, last: u64) -> u64 {
        last.max(self.seq_floor) + 1
    }

    /// The underlying database, for the embedded queue (one Db, one flush).
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// The store's group commit, for the embedded queue in the same database: a flush by
    /// either covers the writes of both.
    pub fn group_flush(&self) -> commit::GroupFlush {
        self.group.clone()
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        // The guarded data is `()`: a panic under the lock (in a caller's closure) leaves
        // nothing half-done in memory, and sled transactions are atomic, so poisoning is moot.
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes every write this caller made so far durable, sharing the flush with concurrent
    /// callers ([`commit::GroupFlush`]).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.group.flush().await
    }

    /// [`JobStore::insert_buffered`], then flushes.
    pub async fn insert(
        &self,
        record: &mut JobRecord,
        queue_position: Option<usize>,
    ) -> Result<JobEvent, StoreError> {
        let event = self.insert_buffered(record, queue_position)?;
        self.flush().await?;
        Ok(event)
    }

    /// Inserts a new record (state Queued, attempt 1), its indexes, its counters and its first
    /// outbox event (`queued`, numbered [`JobStore::next_seq`] of 0) in one sled transaction,
    /// not flushed: the caller flushes ([`JobStore::flush`]) before telling anybody. A record
    /// that is not Queued with attempt 1, an id that exists or a result file name that is taken
    /// is a `Conflict` (nothing written).
    pub fn insert_buffered(
        &self,
        record: &mut JobRecord,
        queue_position: Option<usize>,
    ) -> Result<JobEvent, StoreError> {
        record.event_seq = self.next_seq(0);
        let mut event = JobEvent::of(record, JobEventKind::Queued, record.created_ms);
        event.queue_position = queue_position;
        let event_bytes = outbox::encode(&event)?;
        let event_key = outbox::key(&record.id, record.event_seq);
        if record.state != JobState::Queued || record.attempt != 1 {
            return Err(StoreError::Conflict {
                id: record.id.clone(),
                expected: "a new queued job (attempt 1)".into(),
                found: describe(record),
            });
        }
        let bytes = encode(record)?;
        let id = record.id.as_str().as_bytes();
        let state_key = keys::state_key(record.state, record.created_ms, &record.id);
        let created_key = keys::created_key(record.created_ms, &record.id);
        let owner_key = keys::owner_key(&record.owner, record.created_ms, &record.id);
        let deltas = counts::Deltas::default().record(record, 1);
        let lookup_keys = lookup::keys_of(record);
        let file_key = keys::file_key(record);
        let idempotency_key = record
            .idempotency_key
            .as_deref()
            .map(|k| keys::idempotency_key(&record.owner, k));
        {
            let _writer = self.lock();
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
                        if let Some(existing) = jobs.get(id)? {
                            let found = decode(id, &existing)
                                .map(|r| format!("an existing job, {}", describe(&r)))
                                .unwrap_or_else(|_| "an existing (undecodable) record".into());
                            return abort(StoreError::Conflict {
                                id: record.id.clone(),
                                expected: "no job with this id".into(),
                                found,
                            });
                        }
                        if let Some(other) = by_file.get(file_key.as_bytes())? {
                            return abort(StoreError::Conflict {
                                id: record.id.clone(),
                                expected: format!("result file {file_key} to be free"),
                                found: format!(
                                    "it belongs to job {}",
                                    String::from_utf8_lossy(&other)
                                ),
                            });
                        }
                        jobs.insert(id, bytes.as_slice())?;
                        by_state.insert(state_key.as_slice(), id)?;
                        by_created.insert(created_key.as_slice(), id)?;
                        by_file.insert(file_key.as_bytes(), id)?;
                        events.insert(event_key.as_slice(), event_bytes.as_slice())?;
                        by_owner.insert(owner_key.as_slice(), id)?;
                        deltas.apply(counts)?;
                        lookup::apply(lookup_tree, &record.id, &Default::default(), &lookup_keys)?;
                        if let Some(k) = &idempotency_key {
                            // Admission (serialised) decided that any older job under this key is
                            // stale or gone: the key now names this job.
                            by_key.insert(k.as_slice(), id)?;
                        }
                        Ok(())
                    },
                )
                .map_err(from_tx)?;
            self.recent.wrote(record);
        }
        Ok(event)
    }

    /// The compare-and-swap. Applies `f` to the record only if its state is `from` and (when
    /// given) its attempt is `attempt`; checks that `from` may become the new state (a
    /// `Progress` event keeps the state); writes the record, its state index and the job's next
    /// outbox event (`kind`, numbered [`JobStore::next_seq`] of `event_seq`) in one
    /// transaction; sets `updated_ms`; flushes when `durable`; returns the new record and its
    /// event. Any mismatch is `StoreError::Conflict` and nothing is written.
    ///
    /// Besides what `f` does, the store also: sets `started_ms` when the job becomes Running
    /// (unless `f` set it), sets `finished_ms` when it becomes terminal (unless `f` did), and
    /// clears `progress` when it goes back to Queued. `f` must not change `id`, `created_ms`,
    /// `event_seq`, `owner` or `spec.output_subdir` (the indexes and counters hang on them):
    /// that is `StoreError::Transaction`.
    #[allow(clippy::too_many_arguments)]
    pub async fn transition(
        &self,
        id: &JobId,
        from: JobState,
        attempt: Option<u32>,
        kind: JobEventKind,
        queue_position: Option<usize>,
        durable: bool,
        f: impl FnOnce(&mut JobRecord) + Send,
    ) -> Result<(JobRecord, JobEvent), StoreError> {
        let changed = {
            let _writer = self.lock();
            let key = id.as_str().as_bytes();
            let Some(old_bytes) = self.jobs.get(key)? else {
                return Err(StoreError::NotFound(id.clone()));
            };
            let old = decode(key, &old_bytes)?;
            if old.state != from || attempt.is_some_and(|a| a != old.attempt) {
                return Err(StoreError::Conflict {
                    id: id.clone(),
                    expected: expectation(from, attempt),
                    found: describe(&old),
                });
            }
            let mut new = old.clone();
            f(&mut new);
            if new.id != old.id
                || new.created_ms != old.created_ms
                || new.event_seq != old.event_seq
                || new.owner != old.owner
                || new.spec.output_subdir != old.spec.output_subdir
            {
                return Err(StoreError::Transaction(format!(
                    "job {id}: a transition may not change the id, created_ms, event_seq, \
                     owner or output_subdir"
                )));
            }
            let allowed = if kind == JobEventKind::Progress {
                new.state == from
            } else {
                from.can_become(new.state)
            };
            if !allowed {
                return Err(StoreError::Conflict {
                    id: id.clone(),
                    expected: format!("a state that {from} may become by {}", kind.as_str()),
                    found: new.state.to_string(),
                });
            }
            let now = now_ms();
            if kind != JobEventKind::Progress {
                new.updated_ms = now;
            }
            if new.state == JobState::Running
                && old.state != JobState::Running
                && new.started_ms == old.started_ms
            {
                new.started_ms = Some(now);
            }
            if new.state.is_terminal() && new.finished_ms.is_none() {
                new.finished_ms = Some(now);
            }
            if new.state == JobState::Queued {
                new.progress = None;
            }
            new.event_seq = self.next_seq(old.event_seq);
            let mut event = JobEvent::of(&new, kind, now);
            event.queue_position = queue_position;
            self.replace_locked(&old_bytes, &old, &new, &event)?;
            self.recent.wrote(&new);
            (new, event)
        };
        if durable {
            self.flush().await?;
        }
        Ok(changed)
    }

    /// Sets the opaque `client_data` of job `id` (in any state), durably; no event: it is the
    /// client's own note, not a change of the job. A compare-and-swap under the writer lock;
    /// nothing indexed changes.
    pub async fn set_client_data(
        &self,
        id: &JobId,
        data: Option<String>,
    ) -> Result<JobRecord, StoreError> {
        let record = {
            let _writer = self.lock();
            let key = id.as_str().as_bytes();
            let Some(old_bytes) = self.jobs.get(key)? else {
                return Err(StoreError::NotFound(id.clone()));
            };
            let mut record = decode(key, &old_bytes)?;
            record.client_data = data;
            let new_bytes = encode(&record)?;
            self.jobs
                .compare_and_swap(key, Some(old_bytes), Some(new_bytes))?
                .map_err(|_| StoreError::Conflict {
                    id: id.clone(),
                    expected: describe(&record),
                    found: "a record changed concurrently".into(),
                })?;
            self.recent.wrote(&record);
            record
        };
        self.flush().await?;
        Ok(record)
    }

    /// Replaces `old` (whose stored bytes were `old_bytes`) by `new`, moving its state index
    /// entry and its counts and appending `event` to the outbox, in one transaction that
    /// re-checks the stored bytes. Call with the writer lock held; `new` keeps `old`'s id,
    /// created_ms and owner.
    fn replace_locked(
        &self,
        old_bytes: &IVec,
        old: &JobRecord,
        new: &JobRecord,
        event: &JobEvent,
    ) -> Result<(), StoreError> {
        let key = old.id.as_str().as_bytes();
        let new_bytes = encode(new)?;
        let event_bytes = outbox::encode(event)?;
        let event_key = outbox::key(&new.id, event.seq);
        let old_state_key = keys::state_key(old.state, old.created_ms, &old.id);
        let new_state_key = keys::state_key(new.state, new.created_ms, &new.id);
        let deltas = counts::Deltas::change(old, new);
        let (old_lookup, new_lookup) = (lookup::keys_of(old), lookup::keys_of(new));
        (
            &self.jobs,
            &self.by_state,
            &self.events,
            &self.counts,
            &self.lookup,
        )
            .transaction(|(jobs, by_state, events, counts, lookup_tree)| {
                let current = jobs.get(key)?;
                if current.as_ref() != Some(old_bytes) {
                    let found = match &current {
                        None => "no record (deleted concurrently)".to_string(),
                        Some(bytes) => decode(key, bytes)
                            .map(|r| format!("{} (changed concurrently)", describe(&r)))
                            .unwrap_or_else(|_| "an undecodable record".into()),
                    };
                    return abort(StoreError::Conflict {
                        id: old.id.clone(),
                        expected: describe(old),
                        found,
                    });
                }
                jobs.insert(key, new_bytes.as_slice())?;
                events.insert(event_key.as_slice(), event_bytes.as_slice())?;
                if old_state_key != new_state_key {
                    by_state.remove(old_state_key.as_slice())?;
                    by_state.insert(new_state_key.as_slice(), key)?;
                }
                deltas.apply(counts)?;
                lookup::apply(lookup_tree, &new.id, &old_lookup, &new_lookup)?;
                Ok(())
            })
            .map_err(from_tx)
    }

    /// The outbox events of `id` with a sequence number above `after`, in order (all of them
    /// for `after = 0`). Empty once the job is deleted.
    pub fn events_after(&self, id: &JobId, after: u64) -> Result<Vec<JobEvent>, StoreError> {
        outbox::read_after(&self.events, id, after)
    }
}

/// Counts this opening of the database (durably, before the store writes anything) and
/// returns its number: 1 for a new store.
fn next_boot(db: &sled::Db) -> Result<u32, StoreError> {
    let last = match db.get(BOOT)? {
        None => 0,
        Some(bytes) => <[u8; 4]>::try_from(bytes.as_ref())
            .map(u32::from_be_bytes)
            .map_err(|_| StoreError::Corrupt {
                key: String::from_utf8_lossy(BOOT).into_owned(),
                reason: format!("{} bytes, expected 4", bytes.len()),
            })?,
    };
    let boot = last.checked_add(1).ok_or_else(|| StoreError::Corrupt {
        key: String::from_utf8_lossy(BOOT).into_owned(),
        reason: "the boot counter is exhausted".into(),
    })?;
    db.insert(BOOT, &boot.to_be_bytes())?;
    db.flush()?;
    Ok(boot)
}

/// "queued (attempt 2)".
fn describe(record: &JobRecord) -> String {
    format!("{} (attempt {})", record.state, record.attempt)
}

fn expectation(from: JobState, attempt: Option<u32>) -> String {
    match attempt {
        Some(a) => format!("{from} (attempt {a})"),
        None => from.to_string(),
    }
}

fn decode(key: &[u8], bytes: &[u8]) -> Result<JobRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: format!("{JOBS}/{}", String::from_utf8_lossy(key)),
        reason: e.to_string(),
    })
}

/// Serialises a record, refusing one that would not read back (serde_json writes a NaN or an
/// infinity as `null`, which then fails to parse as a number): better an error now than an
/// unreadable job later.
fn encode(record: &JobRecord) -> Result<Vec<u8>, StoreError> {
    let refuse = |reason: String| StoreError::Corrupt {
        key: format!("{JOBS}/{}", record.id),
        reason: format!("refusing to store a record that would not read back: {reason}"),
    };
    let bytes = serde_json::to_vec(record).map_err(|e| refuse(e.to_string()))?;
    serde_json::from_slice::<JobRecord>(&bytes).map_err(|e| refuse(e.to_string()))?;
    Ok(bytes)
}

fn from_tx(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::Sled(e),
    }
}

#[cfg(test)]
pub(crate) mod tests;
