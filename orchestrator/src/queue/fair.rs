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
//! Neither walks the waiting jobs: each owner's waiting jobs of a class are one sorted list,
//! so [`FairQueue::choose`] looks at the head of each owner's list and
//! [`FairQueue::position`] at each owner's length (cost: the number of owners waiting, whatever
//! the number of jobs). Each owner's last turn is remembered while it has jobs, and for the
//! [`REMEMBERED_IDLE_OWNERS`] most recently served owners that have none; an owner forgotten
//! beyond that ranks as never served when it comes back (it was served longest ago anyway),
//! so the memory stays bounded however many owners come and go.
//!
//! It is plain data — no I/O, no locks, no clock of its own (callers pass `now`) — owned by
//! whoever owns the backend's state: the embedded queue's mutex, the NATS dispatcher's task.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use protocol::{JobId, Owner, Priority};
use tokio::time::Instant;

use super::QueueItem;

/// Owners without jobs whose last turn is still remembered (the most recently served ones).
pub const REMEMBERED_IDLE_OWNERS: usize = 4096;

/// Fair-share order of a waiting job: priority class, its owner's jobs in flight, when the
/// owner was last served. Lower goes first; ties go to the oldest job.
type Rank = (Priority, usize, u64);

#[derive(Debug)]
struct Entry {
    item: QueueItem,
    in_flight: bool,
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
    entries: HashMap<u64, Entry>,
    by_id: HashMap<JobId, u64>,
    /// Waiting jobs (delayed ones included) per class and owner, oldest first.
    waiting: BTreeMap<Priority, HashMap<Owner, VecDeque<u64>>>,
    /// Waiting jobs not to be handed out before a time (given back with a delay).
    delayed: HashMap<u64, Instant>,
    /// Jobs in flight per owner (owners with none are absent).
    busy: HashMap<Owner, usize>,
    /// The jobs in flight, by sequence number.
    flying: BTreeSet<u64>,
    /// Jobs known per owner, waiting or in flight (owners with none are absent).
    known: HashMap<Owner, usize>,
    /// When each owner was last handed a job (a counter, not a time).
    served: HashMap<Owner, u64>,
    /// Owners with no job known but a remembered turn, by that turn (oldest first).
    idle: BTreeMap<u64, Owner>,
    tick: u64,
}

/// Inserts `seq` into an ascending list (new jobs have the highest numbers: usually a push).
fn insert_sorted(list: &mut VecDeque<u64>, seq: u64) {
    let at = list.partition_point(|&s| s < seq);
    list.insert(at, seq);
}

fn remove_sorted(list: &mut VecDeque<u64>, seq: u64) {
    if let Ok(at) = list.binary_search(&seq) {
        list.remove(at);
    }
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
        self.joined(&item.owner);
        if in_flight {
            *self.busy.entry(item.owner.clone()).or_insert(0) += 1;
            self.flying.insert(seq);
        } else {
            self.wait(seq, &item);
        }
        self.by_id.insert(item.id.clone(), seq);
        self.entries.insert(seq, Entry { item, in_flight });
        true
    }

    fn wait(&mut self, seq: u64, item: &QueueItem) {
        let owners = self.waiting.entry(item.priority).or_default();
        insert_sorted(owners.entry(item.owner.clone()).or_default(), seq);
    }

    fn unwait(&mut self, seq: u64, item: &QueueItem) {
        self.delayed.remove(&seq);
        let Some(owners) = self.waiting.get_mut(&item.priority) else {
            return;
        };
        if let Some(list) = owners.get_mut(&item.owner) {
            remove_sorted(list, seq);
            if list.is_empty() {
                owners.remove(&item.owner);
            }
        }
        if owners.is_empty() {
            self.waiting.remove(&item.priority);
        }
    }

    /// An owner's job became known: its turn, if remembered, is no longer an idle owner's.
    fn joined(&mut self, owner: &Owner) {
        let n = self.known.entry(owner.clone()).or_insert(0);
        *n += 1;
        if *n == 1 {
            if let Some(turn) = self.served.get(owner) {
                self.idle.remove(turn);
            }
        }
    }

    /// An owner's job left: an owner with none left keeps its turn among the idle owners, the
    /// longest idle of which are forgotten beyond [`REMEMBERED_IDLE_OWNERS`].
    fn left(&mut self, owner: &Owner) {
        let Some(n) = self.known.get_mut(owner) else {
            return;
        };
        *n = n.saturating_sub(1);
        if *n > 0 {
            return;
        }
        self.known.remove(owner);
        if let Some(&turn) = self.served.get(owner) {
            self.idle.insert(turn, owner.clone());
        }
        while self.idle.len() > REMEMBERED_IDLE_OWNERS {
            if let Some((_, forgotten)) = self.idle.pop_first() {
                self.served.remove(&forgotten);
            }
        }
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
            self.release(seq, &entry.item.owner);
        } else {
            self.unwait(seq, &entry.item);
        }
        self.left(&entry.item.owner);
        Some(entry.item)
    }

    fn release(&mut self, seq: u64, owner: &Owner) {
        self.flying.remove(&seq);
        if let Some(n) = self.busy.get_mut(owner) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.busy.remove(owner);
            }
        }
    }

    fn rank(&self, priority: Priority, owner: &Owner) -> Rank {
        (
            priority,
            self.busy.get(owner).copied().unwrap_or(0),
            self.served.get(owner).copied().unwrap_or(0),
        )
    }

    /// The waiting job to hand out next (see the module docs); changes nothing. Looks at the
    /// oldest available job of each owner waiting.
    pub fn choose(&self, now: Instant) -> Choice {
        let soonest = self.delayed.values().filter(|at| **at > now).min().copied();
        let available = |seq: &&u64| self.delayed.get(*seq).is_none_or(|at| *at <= now);
        let mut chosen: Option<(Rank, u64)> = None;
        for (&priority, owners) in &self.waiting {
            for (owner, list) in owners {
                let Some(&seq) = list.iter().find(available) else {
                    continue;
                };
                let turn = (self.rank(priority, owner), seq);
                if chosen.is_none_or(|best| turn < best) {
                    chosen = Some(turn);
                }
            }
            if chosen.is_some() {
                // Every job of a later class ranks below this one.
                break;
            }
        }
        chosen.map_or(Choice::Wait(soonest), |(_, seq)| Choice::Next(seq))
    }

    /// Hands out waiting job `seq`: in flight from now on, and its owner's turn is recorded.
    /// `None` if there is no such waiting job.
    pub fn take(&mut self, seq: u64) -> Option<&QueueItem> {
        let entry = self.entries.get(&seq)?;
        if entry.in_flight {
            return None;
        }
        let item = entry.item.clone();
        self.unwait(seq, &item);
        self.tick += 1;
        self.served.insert(item.owner.clone(), self.tick);
        *self.busy.entry(item.owner).or_insert(0) += 1;
        self.flying.insert(seq);
        let entry = self.entries.get_mut(&seq)?;
        entry.in_flight = true;
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
        let item = entry.item.clone();
        self.release(seq, &item.owner);
        self.wait(seq, &item);
        if let Some(at) = not_before {
            self.delayed.insert(seq, at);
        }
        true
    }

    /// The estimated 0-based position of waiting job `id` among the waiting jobs: every waiting
    /// job of a higher class, the owner's own older jobs, and, from every other owner of the
    /// same class, as many jobs as turns pass before this one (one more when that owner comes
    /// earlier in the rotation). Exact when nothing else arrives, no job is given back, each
    /// job handed out leaves before the next is chosen, and no owner of the job's class also
    /// has jobs of a higher class (their turns there reorder the rotation). `None` unless the
    /// job waits. Costs one look per owner waiting, not per job.
    pub fn position(&self, id: &JobId) -> Option<usize> {
        let seq = *self.by_id.get(id)?;
        let own = self.entries.get(&seq)?;
        if own.in_flight {
            return None;
        }
        let (priority, owner) = (own.item.priority, &own.item.owner);
        let mut ahead: usize = self
            .waiting
            .range(..priority)
            .flat_map(|(_, owners)| owners.values())
            .map(VecDeque::len)
            .sum();
        let owners = self.waiting.get(&priority)?;
        let own_list = owners.get(owner)?;
        let own_before = own_list.partition_point(|&s| s < seq);
        let own_oldest = own_list.front().copied().unwrap_or(seq).min(seq);
        // An owner's turn comes by rank, then by its oldest waiting job (`choose`'s tie-break).
        let own_turn = (self.rank(priority, owner), own_oldest);
        for (other, list) in owners {
            if other == owner {
                continue;
            }
            let Some(&oldest) = list.front() else {
                continue;
            };
            let earlier = (self.rank(priority, other), oldest) < own_turn;
            ahead += list.len().min(own_before + usize::from(earlier));
        }
        Some(ahead + own_before)
    }

    /// Jobs waiting (delayed ones included).
    pub fn waiting(&self) -> usize {
        self.entries.len() - self.flying.len()
    }

    /// Jobs in flight.
    pub fn in_flight(&self) -> usize {
        self.flying.len()
    }

    /// The jobs in flight, oldest first.
    pub fn in_flight_ids(&self) -> impl Iterator<Item = &JobId> {
        self.flying
            .iter()
            .filter_map(|seq| self.entries.get(seq).map(|e| &e.item.id))
    }

    /// Every known job, waiting or in flight.
    pub fn ids(&self) -> impl Iterator<Item = &JobId> {
        self.by_id.keys()
    }

    /// Owners whose last turn is remembered (bounded: see the module docs).
    pub fn remembered_owners(&self) -> usize {
        self.served.len()
    }
}

#[cfg(test)]
mod tests;
