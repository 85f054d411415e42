//! The most recently written or read job records, decoded, in memory.
//!
//! Why: a client polling its job (every front end does, often several times a second) would
//! otherwise pay for a sled lookup — a walk down a B-tree that deepens as jobs accumulate — and
//! a JSON decode on every request. With the record in memory, polling costs the same at 1,000
//! and at 100,000 stored jobs.
//!
//! It can never return a record older than the store's: every write of a record happens under
//! the store's writer lock and puts the new record here (or removes a deleted one) before the
//! lock is released, so a read that begins after a write returned sees that write. A read
//! that missed fills the cache only when no write happened since it began ([`Recent::miss`]
//! hands out the write count, [`Recent::fill`] compares it): otherwise a record read just
//! before a write could land here after the write's own entry and hide it. sled stays the
//! truth; compare-and-swaps read it, not this cache.

use std::num::NonZeroUsize;
use std::sync::{Mutex, MutexGuard};

use lru::LruCache;
use protocol::{JobId, JobRecord};

/// How many records are kept (a few KB each: about 1024 polled jobs in a few MB).
pub const RECENT_RECORDS: usize = 1024;

pub(super) struct Recent {
    inner: Mutex<Inner>,
}

struct Inner {
    records: LruCache<JobId, JobRecord>,
    /// Writes seen so far: a read that began at another count must not fill the cache.
    writes: u64,
}

/// What a read that missed must show [`Recent::fill`].
pub(super) struct Missed(u64);

impl Recent {
    pub(super) fn new(capacity: usize) -> Recent {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Recent {
            inner: Mutex::new(Inner {
                records: LruCache::new(capacity),
                writes: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update below is one call on the map: a panic cannot leave it half-changed.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The record of `id` if kept, else the ticket to [`Recent::fill`] with after reading it.
    pub(super) fn get(&self, id: &JobId) -> Result<JobRecord, Missed> {
        let mut inner = self.lock();
        match inner.records.get(id) {
            Some(record) => Ok(record.clone()),
            None => Err(Missed(inner.writes)),
        }
    }

    /// Keeps `record`, read from sled after [`Recent::get`] missed, unless a write happened
    /// since.
    pub(super) fn fill(&self, missed: Missed, record: &JobRecord) {
        let mut inner = self.lock();
        if inner.writes == missed.0 {
            inner.records.put(record.id.clone(), record.clone());
        }
    }

    /// A write stored `record` (call with the store's writer lock held, after the write).
    pub(super) fn wrote(&self, record: &JobRecord) {
        let mut inner = self.lock();
        inner.writes += 1;
        inner.records.put(record.id.clone(), record.clone());
    }

    /// A write deleted job `id` (call with the store's writer lock held, after the write).
    pub(super) fn deleted(&self, id: &JobId) {
        let mut inner = self.lock();
        inner.writes += 1;
        inner.records.pop(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Job `n` (its id depends on `n` only) with `lyrics`.
    fn record(n: u8, lyrics: &str) -> JobRecord {
        let mut r = crate::store::tests::record_at(1, None);
        let mut id = [0u8; 16];
        id[0] = n;
        r.id = JobId::from_bytes(id);
        r.spec.lyrics = lyrics.into();
        r
    }

    #[test]
    fn a_read_that_began_before_a_write_does_not_fill_the_cache() {
        let recent = Recent::new(8);
        let old = record(1, "old");
        let Err(missed) = recent.get(&old.id) else {
            panic!("an empty cache hit");
        };
        // A write lands between the reader's sled read (which saw `old`) and its fill.
        let new = record(1, "new");
        recent.wrote(&new);
        recent.fill(missed, &old);
        assert_eq!(recent.get(&old.id).ok().unwrap().spec.lyrics, "new");

        // Deleted while the reader read: the reader's copy is not brought back.
        let Err(missed) = recent.get(&record(2, "x").id) else {
            panic!("job 2 was never kept");
        };
        recent.deleted(&old.id);
        recent.fill(missed, &record(2, "x"));
        assert!(recent.get(&old.id).is_err());
        assert!(recent.get(&record(2, "x").id).is_err());
    }

    #[test]
    fn a_quiet_read_fills_and_the_least_recent_goes_first() {
        let recent = Recent::new(2);
        for n in 1..=2 {
            let Err(missed) = recent.get(&record(n, "a").id) else {
                panic!("an empty cache hit");
            };
            recent.fill(missed, &record(n, "a"));
        }
        // Job 1 read again, so job 2 is the least recent when job 3 comes.
        assert!(recent.get(&record(1, "a").id).is_ok());
        recent.wrote(&record(3, "a"));
        assert!(recent.get(&record(1, "a").id).is_ok());
        assert!(recent.get(&record(2, "a").id).is_err());
        assert!(recent.get(&record(3, "a").id).is_ok());
    }
}
