//! The fair-share choice on its own: pure data, no I/O, every test synchronous.

use std::time::Duration;

use protocol::{JobId, Owner, Priority};
use tokio::time::Instant;

use super::{Choice, FairQueue};
use crate::queue::QueueItem;

fn id(n: u32) -> JobId {
    let mut bytes = [0u8; 16];
    bytes[12..].copy_from_slice(&n.to_be_bytes());
    JobId::from_bytes(bytes)
}

fn item(n: u32, owner: &str, priority: Priority) -> QueueItem {
    QueueItem {
        id: id(n),
        owner: Owner::new("key", owner),
        priority,
    }
}

/// Hands out the next job and finishes it at once (one worker): its id.
fn run_next(q: &mut FairQueue) -> Option<JobId> {
    let Choice::Next(seq) = q.choose(Instant::now()) else {
        return None;
    };
    let taken = q.take(seq).expect("chosen job is waiting").id.clone();
    q.remove(&taken);
    Some(taken)
}

fn drain(q: &mut FairQueue) -> Vec<JobId> {
    std::iter::from_fn(|| run_next(q)).collect()
}

#[test]
fn one_owners_many_jobs_do_not_starve_anothers_single_job() {
    let mut q = FairQueue::new();
    for n in 0..50 {
        assert!(q.insert(u64::from(n), item(n, "alice", Priority::Interactive)));
    }
    assert!(q.insert(50, item(500, "bob", Priority::Interactive)));
    assert_eq!(q.position(&id(500)), Some(1));
    let order = drain(&mut q);
    assert_eq!(order.len(), 51);
    assert_eq!(order[..2], [id(0), id(500)]);
    let alice: Vec<_> = order.iter().filter(|i| **i != id(500)).cloned().collect();
    assert_eq!(
        alice,
        (0..50).map(id).collect::<Vec<_>>(),
        "FIFO within an owner"
    );
}

#[test]
fn interactive_jobs_go_before_batches_whatever_their_age() {
    let mut q = FairQueue::new();
    for n in 0..3 {
        q.insert(u64::from(n), item(1000 + n, "schedule", Priority::Batch));
    }
    q.insert(10, item(1, "alice", Priority::Interactive));
    q.insert(11, item(2, "alice", Priority::Interactive));
    assert_eq!(q.position(&id(1000)), Some(2));
    assert_eq!(drain(&mut q), [id(1), id(2), id(1000), id(1001), id(1002)]);
}

#[test]
fn an_owner_with_a_job_in_flight_waits_behind_idle_owners() {
    let mut q = FairQueue::new();
    for n in 0..3 {
        q.insert(u64::from(n), item(n, "alice", Priority::Interactive));
    }
    let Choice::Next(seq) = q.choose(Instant::now()) else {
        panic!("a job waits");
    };
    assert_eq!(q.take(seq).unwrap().id, id(0));
    q.insert(10, item(10, "bob", Priority::Interactive));
    q.insert(11, item(11, "carol", Priority::Interactive));
    // Alice still has a job in flight: bob and carol go first.
    let mut next = Vec::new();
    for _ in 0..3 {
        let Choice::Next(seq) = q.choose(Instant::now()) else {
            panic!("jobs wait");
        };
        next.push(q.take(seq).unwrap().id.clone());
    }
    assert_eq!(next, [id(10), id(11), id(1)]);
    assert_eq!((q.in_flight(), q.waiting()), (4, 1));
}

#[test]
fn owners_take_turns_in_the_order_they_were_served() {
    let mut q = FairQueue::new();
    // Carol's job is the oldest, then bob's, then alice's; each has three.
    let mut owner_of = std::collections::HashMap::new();
    let mut n = 0u32;
    for (o, owner) in ["carol", "bob", "alice"].into_iter().enumerate() {
        for _ in 0..3 {
            q.insert(u64::from(n), item(n, owner, Priority::Interactive));
            owner_of.insert(id(n), o);
            n += 1;
        }
    }
    let owners: Vec<usize> = drain(&mut q).iter().map(|i| owner_of[i]).collect();
    assert_eq!(owners, [0, 1, 2, 0, 1, 2, 0, 1, 2]);
}

#[test]
fn a_job_given_back_keeps_its_place_after_its_delay() {
    let mut q = FairQueue::new();
    q.insert(1, item(1, "alice", Priority::Interactive));
    q.insert(2, item(2, "alice", Priority::Interactive));
    let now = Instant::now();
    assert_eq!(q.choose(now), Choice::Next(1));
    q.take(1);
    assert!(
        !q.give_back(&id(2), None),
        "only a job in flight can be given back"
    );
    let later = now + Duration::from_secs(5);
    assert!(q.give_back(&id(1), Some(later)));
    assert_eq!(q.in_flight(), 0);
    // Delayed: the next job goes first; once both are out, only the delay is left.
    assert_eq!(q.choose(now), Choice::Next(2));
    q.take(2);
    assert_eq!(q.choose(now), Choice::Wait(Some(later)));
    assert_eq!(q.choose(later), Choice::Next(1));
    q.remove(&id(1));
    q.remove(&id(2));
    assert_eq!(q.choose(later), Choice::Wait(None));
    assert_eq!((q.in_flight(), q.waiting()), (0, 0));
}

#[test]
fn known_jobs_and_numbers_are_not_added_twice() {
    let mut q = FairQueue::new();
    assert!(q.insert(1, item(1, "alice", Priority::Interactive)));
    assert!(!q.insert(2, item(1, "alice", Priority::Interactive)));
    assert!(!q.insert(1, item(2, "bob", Priority::Interactive)));
    assert!(q.insert_in_flight(3, item(3, "bob", Priority::Interactive)));
    assert_eq!(q.is_in_flight(&id(3)), Some(true));
    assert_eq!(q.is_in_flight(&id(1)), Some(false));
    assert_eq!(q.is_in_flight(&id(9)), None);
    assert_eq!(q.position(&id(3)), None, "no position in flight");
    // Bob's job in flight counts against his share, though it was never a turn.
    q.insert(4, item(4, "bob", Priority::Interactive));
    q.insert(5, item(5, "carol", Priority::Interactive));
    assert_eq!(drain(&mut q), [id(1), id(5), id(4)]);
    assert_eq!(q.remove(&id(3)).map(|i| i.id), Some(id(3)));
    assert_eq!(q.ids().count(), 0);
}

/// A small deterministic generator (no clock, no seed from outside).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn positions_match_the_order_jobs_are_handed_out_in() {
    for round in 0..20 {
        let mut rng = Lcg(round);
        let mut q = FairQueue::new();
        // A few jobs already handed out, so owners start with different turns.
        let jobs = 5 + rng.below(40) as u32;
        for n in 0..jobs {
            // People submit interactive jobs, schedules batches (as the front ends do).
            let (owner, priority) = if rng.below(4) == 0 {
                (
                    ["nightly", "weekly"][rng.below(2) as usize],
                    Priority::Batch,
                )
            } else {
                (
                    ["a", "b", "c", "d"][rng.below(4) as usize],
                    Priority::Interactive,
                )
            };
            q.insert(u64::from(n), item(n, owner, priority));
        }
        for _ in 0..rng.below(4) {
            run_next(&mut q);
        }
        let waiting: Vec<JobId> = q.ids().cloned().collect();
        let mut expected: Vec<(usize, JobId)> = waiting
            .iter()
            .map(|i| (q.position(i).expect("waiting"), i.clone()))
            .collect();
        expected.sort();
        let order = drain(&mut q);
        let estimated: Vec<JobId> = expected.iter().map(|(_, i)| i.clone()).collect();
        assert_eq!(order, estimated, "round {round}");
        let positions: Vec<usize> = expected.iter().map(|(p, _)| *p).collect();
        assert_eq!(
            positions,
            (0..order.len()).collect::<Vec<_>>(),
            "round {round}"
        );
    }
}

#[test]
fn the_turns_of_owners_that_left_are_forgotten_oldest_first() {
    let mut q = FairQueue::new();
    // Many owners come, are served once and leave.
    let owners = super::REMEMBERED_IDLE_OWNERS as u32 + 100;
    for n in 0..owners {
        q.insert(
            u64::from(n),
            item(n, &format!("o{n}"), Priority::Interactive),
        );
        assert_eq!(run_next(&mut q), Some(id(n)));
    }
    assert_eq!(q.remembered_owners(), super::REMEMBERED_IDLE_OWNERS);
    // The owner served longest ago is forgotten and ranks as never served: it and a newcomer
    // go by age, both before the owner served last, which is still remembered.
    let seq = u64::from(owners);
    q.insert(
        seq,
        item(owners, &format!("o{}", owners - 1), Priority::Interactive),
    );
    q.insert(seq + 1, item(owners + 1, "o0", Priority::Interactive));
    q.insert(seq + 2, item(owners + 2, "newcomer", Priority::Interactive));
    assert_eq!(drain(&mut q), [id(owners + 1), id(owners + 2), id(owners)]);
}

#[test]
fn an_owner_with_jobs_keeps_its_turn_however_many_others_come_and_go() {
    let mut q = FairQueue::new();
    q.insert(0, item(0, "steady", Priority::Interactive));
    q.insert(1, item(1, "steady", Priority::Interactive));
    assert_eq!(run_next(&mut q), Some(id(0)));
    let others = super::REMEMBERED_IDLE_OWNERS as u32 * 2;
    for n in 2..others {
        q.insert(
            u64::from(n),
            item(n, &format!("o{n}"), Priority::Interactive),
        );
        // The steady owner was served last of all waiting owners: each newcomer goes first.
        assert_eq!(run_next(&mut q), Some(id(n)));
    }
    assert!(q.remembered_owners() <= super::REMEMBERED_IDLE_OWNERS + 1);
    q.insert(
        u64::from(others),
        item(others, "late", Priority::Interactive),
    );
    // "late" was never served; "steady" was, long ago but it kept its jobs: "late" first.
    assert_eq!(drain(&mut q), [id(others), id(1)]);
}
