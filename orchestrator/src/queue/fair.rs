//! The fair-share order of waiting jobs, in one place for both queue backends: the embedded
//! queue hands its messages to in-process nodes in this order ([`super::embedded`]), and the
//! NATS dispatcher publishes jobs into the JetStream work queue in this order
//! ([`super::dispatch`]), so both deployments schedule alike.
//!
//! [`FairQueue::choose`] picks, among the waiting jobs available now: the highest priority class
//! first (interactive before batch); within it the owner with the fewest jobs in flight, then
//! the owner served longest ago ([`FairQueue::take`] records each owner's turn); within an
//! owner, the oldest job (lowest sequence number). So one owner with 50 queued jobs and another
//! with one take turns, and a schedule's batch waits for the people. [`FairQueue::position`]
//! estimates a waiting job's place under that rule from per-owner counts.
//!
//! It is plain data — no I/O, no locks, no clock of its own (callers pass `now`) — owned by
//! whoever owns the backend's state: the embedded queue's mutex, the NATS dispatcher's task.

use std::collections::{BTreeMap, HashMap};

use protocol::{JobId, Owner, Priority};
use tokio::time::Instant;

use super::QueueItem;

/// Fair-share order of a waiting job: priority class, its owner's jobs in flight, when the
/// owner was last served. Lower goes first; ties go to the oldest job.
type Rank = (Priority, usize, u64);

#[derive(Debug)]
struct Entry {
    item: QueueItem,
    in_flight: bool,
    /// Not to be handed out before this (a job given back with a delay).
    not_before: Option<Instant>,
}

/// What [`FairQueue::choose`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// The sequence number of the job to hand out next.
    Next(u64),
    /// Nothing to hand out now; the earliest time a delayed job becomes available (`None`:
    /// none is delayed).
    Wait(Option<Instant>),
}

/// Jobs waiting and in flight, by sequence number (FIFO order), with each owner's share.
#[derive(Debug, Default)]
pub struct FairQueue {
    entries: BTreeMap<u64, Entry>,
    by_id: HashMap<JobId, u64>,
    /// Jobs in flight per owner (owners with none are absent).
    busy: HashMap<Owner, usize>,
    in_flight: usize,
    /// When each owner was last handed a job (a counter, not a time).
    served: HashMap<Owner, u64>,
    tick: u64,
}

impl FairQueue {
    pub fn new() -> FairQueue {
        FairQueue::default()
    }

    /// Adds a waiting job under sequence number `seq` (lower is older). False, and nothing
    /// changes, when the job or the number is already known.
    pub fn insert(&mut self, seq: u64, item: QueueItem) -> bool {
        self.add(seq, item, false)
    }

    /// Adds a job that is already in flight (found so at startup): it counts against its
    /// owner's share but is not a turn.
    pub fn insert_in_flight(&mut self, seq: u64, item: QueueItem) -> bool {
        self.add(seq, item, true)
    }

    fn add(&mut self, seq: u64, item: QueueItem, in_flight: bool) -> bool {
        if self.by_id.contains_key(&item.id) || self.entries.contains_key(&seq) {
            return false;
        }
        if in_flight {
            *self.busy.entry(item.owner.clone()).or_insert(0) += 1;
            self.in_flight += 1;
        }
        self.by_id.insert(item.id.clone(), seq);
        self.entries.insert(
            seq,
            Entry {
                item,
                in_flight,
                not_before: None,
            },
        );
        true
    }

    /// Whether the job is known (waiting or in flight).
    pub fn contains(&self, id: &JobId) -> bool {
        self.by_id.contains_key(id)
    }

    /// The job's sequence number.
    pub fn seq(&self, id: &JobId) -> Option<u64> {
        self.by_id.get(id).copied()
    }

    /// The job under sequence number `seq`.
    pub fn item(&self, seq: u64) -> Option<&QueueItem> {
        self.entries.get(&seq).map(|e| &e.item)
    }

    /// `Some(true)` when the job is in flight, `Some(false)` when it waits, `None` if unknown.
    pub fn is_in_flight(&self, id: &JobId) -> Option<bool> {
        let seq = self.by_id.get(id)?;
        self.entries.get(seq).map(|e| e.in_flight)
    }

    /// Forgets a job, waiting or in flight (acknowledged, cancelled, finished).
    pub fn remove(&mut self, id: &JobId) -> Option<QueueItem> {
        let seq = self.by_id.remove(id)?;
        let entry = self.entries.remove(&seq)?;
        if entry.in_flight {
            self.release(&entry.item.owner);
        }
        Some(entry.item)
    }

    fn release(&mut self, owner: &Owner) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(n) = self.busy.get_mut(owner) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.busy.remove(owner);
            }
        }
    }

    fn rank(&self, item: &QueueItem) -> Rank {
        (
            item.priority,
            self.busy.get(&item.owner).copied().unwrap_or(0),
            self.served.get(&item.owner).copied().unwrap_or(0),
        )
    }

    /// The waiting job to hand out next (see the module docs); changes nothing.
    pub fn choose(&self, now: Instant) -> Choice {
        let mut soonest: Option<Instant> = None;
        let mut chosen: Option<(Rank, u64)> = None;
        // Entries iterate in FIFO order, so the first available job of each rank wins.
        for (&seq, entry) in &self.entries {
            if entry.in_flight {
                continue;
            }
            match entry.not_before {
                Some(at) if at > now => soonest = Some(soonest.map_or(at, |s| s.min(at))),
                _ => {
                    let rank = self.rank(&entry.item);
                    if chosen.as_ref().is_none_or(|(best, _)| rank < *best) {
                        chosen = Some((rank, seq));
                    }
                }
            }
        }
        chosen.map_or(Choice::Wait(soonest), |(_, seq)| Choice::Next(seq))
    }

    /// Hands out waiting job `seq`: in flight from now on, and its owner's turn is recorded.
    /// `None` if there is no such waiting job.
    pub fn take(&mut self, seq: u64) -> Option<&QueueItem> {
        let entry = self.entries.get_mut(&seq)?;
        if entry.in_flight {
            return None;
        }
        entry.in_flight = true;
        entry.not_before = None;
        self.tick += 1;
        self.served.insert(entry.item.owner.clone(), self.tick);
        *self.busy.entry(entry.item.owner.clone()).or_insert(0) += 1;
        self.in_flight += 1;
        Some(&entry.item)
    }

    /// Puts an in-flight job back to waiting under its old number (so ahead of newer jobs of
    /// its owner), not to be handed out before `not_before`. False if it was not in flight.
    pub fn give_back(&mut self, id: &JobId, not_before: Option<Instant>) -> bool {
        let Some(&seq) = self.by_id.get(id) else {
            return false;
        };
        let Some(entry) = self.entries.get_mut(&seq) else {
            return false;
        };
        if !entry.in_flight {
            return false;
        }
        entry.in_flight = false;
        entry.not_before = not_before;
        let owner = entry.item.owner.clone();
        self.release(&owner);
        true
    }

    /// The estimated 0-based position of waiting job `id` among the waiting jobs: every waiting
    /// job of a higher class, the owner's own older jobs, and, from every other owner of the
    /// same class, as many jobs as turns pass before this one (one more when that owner comes
    /// earlier in the rotation). Exact when nothing else arrives, no job is given back, each
    /// job handed out leaves before the next is chosen, and no owner of the job's class also
    /// has jobs of a higher class (their turns there reorder the rotation). `None` unless the
    /// job waits.
    pub fn position(&self, id: &JobId) -> Option<usize> {
        let seq = *self.by_id.get(id)?;
        let own = self.entries.get(&seq)?;
        if own.in_flight {
            return None;
        }
        let own_item = &own.item;
        let mut ahead = 0usize;
        let mut own_before = 0usize;
        let mut own_oldest = seq;
        let mut others: HashMap<&Owner, (usize, Rank, u64)> = HashMap::new();
        for (&s, e) in &self.entries {
            if e.in_flight || s == seq {
                continue;
            }
            let item = &e.item;
            if item.priority < own_item.priority {
                ahead += 1;
            } else if item.priority == own_item.priority {
                if item.owner == own_item.owner {
                    if s < seq {
                        own_before += 1;
                        own_oldest = own_oldest.min(s);
                    }
                } else {
                    // Entries iterate in key order: the first seen is the owner's oldest.
                    let rank = self.rank(item);
                    others.entry(&item.owner).or_insert((0, rank, s)).0 += 1;
                }
            }
        }
        // An owner's turn comes by rank, then by its oldest waiting job (`choose`'s tie-break).
        let own_turn = (self.rank(own_item), own_oldest);
        for (count, rank, oldest) in others.values() {
            let earlier = (*rank, *oldest) < own_turn;
            ahead += (*count).min(own_before + usize::from(earlier));
        }
        Some(ahead + own_before)
    }

    /// Jobs waiting (delayed ones included).
    pub fn waiting(&self) -> usize {
        self.entries.len() - self.in_flight
    }

    /// Jobs in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Every known job, waiting or in flight.
    pub fn ids(&self) -> impl Iterator<Item = &JobId> {
        self.by_id.keys()
    }
}

#[cfg(test)]
mod tests;
