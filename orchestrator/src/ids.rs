//! Job ids: in creation order, and unguessable.
//!
//! An id is 128 bits, written as 32 hex digits: the creation time in milliseconds (48 bits,
//! big-endian), a sequence number within that millisecond (16 bits), then 64 random bits.
//!
//! - **Time first**, as a UUIDv7 orders it, so that the store's id-keyed trees (records, result
//!   files, outbox) grow at their end: a submit writes the same few leaves as the submits
//!   around it, and its cost does not depend on how many jobs are stored. With fully random ids
//!   every submit wrote a different leaf of each tree, and 16-client submits were about 20 %
//!   slower at 100k stored jobs than at 1k (docs/benchmarks.md).
//! - **The sequence** makes ids made one after the other in the same millisecond sort in the
//!   order they were made, so "newest first" listings (by creation time, then id) and anything
//!   else that orders by id keep the order of a burst of submits, such as a schedule's fire.
//! - **64 fresh random bits** keep ids unguessable: a result's public URL is only as secret as
//!   its job id. That is why the sequence is a counter beside the random bits, not the random
//!   part counted up (ULID's monotonic mode, or the `uuid` crate's v7 counter): there, knowing
//!   one's own id would give away the next one made in the same millisecond.

use std::sync::{Mutex, PoisonError};

use protocol::JobId;

/// The last (millisecond, sequence) handed out; ids only go forward from it.
#[derive(Debug, Default)]
pub struct IdClock {
    last: Mutex<(u64, u16)>,
}

impl IdClock {
    pub const fn new() -> IdClock {
        IdClock {
            last: Mutex::new((0, 0)),
        }
    }

    /// An id for a job created at `now_ms`. Later than every id this clock made before, even
    /// when the system clock stepped back (then it keeps the last millisecond and counts on)
    /// or a millisecond's 65,536 sequence numbers are used up (then it borrows the next
    /// millisecond).
    pub fn next(&self, now_ms: u64) -> JobId {
        let (ms, seq) = {
            let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
            let (last_ms, last_seq) = *last;
            *last = if now_ms > last_ms {
                (now_ms, 0)
            } else if let Some(seq) = last_seq.checked_add(1) {
                (last_ms, seq)
            } else {
                (last_ms + 1, 0)
            };
            *last
        };
        let random: [u8; 8] = rand::random();
        let mut bytes = [0u8; 16];
        bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
        bytes[6..8].copy_from_slice(&seq.to_be_bytes());
        bytes[8..].copy_from_slice(&random);
        JobId::from_bytes(bytes)
    }
}

/// The process's id clock: every job this process creates takes its id from it.
static CLOCK: IdClock = IdClock::new();

/// A fresh job id for a job created at `now_ms` (see the module's notes).
pub fn job_id_at(now_ms: u64) -> JobId {
    CLOCK.next(now_ms)
}

/// A fresh job id, created now.
pub fn new_job_id() -> JobId {
    job_id_at(crate::store::now_ms())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(id: &JobId) -> (u64, u16, &str) {
        let s = id.as_str();
        (
            u64::from_str_radix(&s[..12], 16).unwrap(),
            u16::from_str_radix(&s[12..16], 16).unwrap(),
            &s[16..],
        )
    }

    #[test]
    fn ids_of_one_millisecond_count_up_and_keep_their_random_bits() {
        let clock = IdClock::new();
        let ids: Vec<JobId> = (0..1000).map(|_| clock.next(1_796_209_200_000)).collect();
        for (n, id) in ids.iter().enumerate() {
            assert_eq!(parts(id).0, 1_796_209_200_000);
            assert_eq!(parts(id).1, n as u16);
        }
        assert!(ids.windows(2).all(|w| w[0].as_str() < w[1].as_str()));
        let random: std::collections::HashSet<_> = ids.iter().map(|id| parts(id).2).collect();
        assert_eq!(random.len(), ids.len(), "64 fresh random bits each");
        // A new millisecond starts the sequence again.
        assert_eq!(parts(&clock.next(1_796_209_200_001)).1, 0);
    }

    #[test]
    fn ids_go_forward_when_the_clock_steps_back() {
        let clock = IdClock::new();
        let before = clock.next(1_796_209_200_000);
        let after = clock.next(1_796_209_100_000);
        assert!(before.as_str() < after.as_str());
        assert_eq!(parts(&after).0, 1_796_209_200_000);
        assert_eq!(parts(&after).1, 1);
    }

    #[test]
    fn a_full_millisecond_borrows_the_next() {
        let clock = IdClock::new();
        let mut last = clock.next(7);
        for _ in 0..u16::MAX {
            let id = clock.next(7);
            assert!(last.as_str() < id.as_str());
            last = id;
        }
        assert_eq!((parts(&last).0, parts(&last).1), (7, u16::MAX));
        let borrowed = clock.next(7);
        assert_eq!((parts(&borrowed).0, parts(&borrowed).1), (8, 0));
    }

    #[test]
    fn ids_are_well_formed() {
        let id = new_job_id();
        assert_eq!(JobId::parse(id.as_str()), Some(id));
    }
}
