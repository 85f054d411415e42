//! The NATS backlog on its own: what is published when, in which order, and what frees a slot.
//! Plain data, every test synchronous: a "publish" is `Backlog::next` followed by
//! `Backlog::published`.

use protocol::{JobEvent, JobEventKind, JobId, JobState, Owner, Priority};

use super::{Backlog, Cancelled, Outcome};
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

fn event(n: u32, kind: JobEventKind) -> JobEvent {
    event_of(&id(n), kind)
}

fn event_of(job: &JobId, kind: JobEventKind) -> JobEvent {
    let state = match kind {
        JobEventKind::Started | JobEventKind::Progress => JobState::Running,
        JobEventKind::Succeeded => JobState::Succeeded,
        JobEventKind::Failed => JobState::Failed,
        JobEventKind::Cancelled => JobState::Cancelled,
        _ => JobState::Queued,
    };
    JobEvent {
        job: job.clone(),
        seq: 2,
        kind,
        state,
        attempt: 1,
        at_ms: 0,
        stage: None,
        step: None,
        total: None,
        percent: None,
        eta_seconds: None,
        queue_position: None,
        error: None,
        result: None,
    }
}

/// Publishes every job a slot allows now (each publish succeeds); their ids in order.
fn publish_all(b: &mut Backlog, live: usize) -> Vec<JobId> {
    let mut out = Vec::new();
    while let Some(item) = b.next(live) {
        assert!(!b.published(&item.id, Outcome::InStream));
        out.push(item.id);
    }
    out
}

/// Runs every job to the end on one node without prefetch (each job is published, started and
/// finished before the next is chosen): the order they ran in.
fn run_all(b: &mut Backlog) -> Vec<JobId> {
    let mut order = Vec::new();
    while let Some(item) = b.next(1) {
        assert!(!b.published(&item.id, Outcome::InStream));
        b.job_event(&event_of(&item.id, JobEventKind::Started));
        b.job_event(&event_of(&item.id, JobEventKind::Succeeded));
        order.push(item.id);
    }
    order
}

#[test]
fn nothing_is_published_before_the_stream_is_known() {
    let mut b = Backlog::new(0);
    b.enqueue(item(1, "alice", Priority::Interactive));
    assert_eq!(b.next(4), None);
    b.seed(Vec::new());
    assert_eq!(publish_all(&mut b, 4), [id(1)]);
}

#[test]
fn one_job_per_live_node_plus_the_prefetch_window() {
    let mut b = Backlog::new(1);
    b.seed(Vec::new());
    for n in 0..6 {
        b.enqueue(item(n, "alice", Priority::Interactive));
    }
    // No node yet: only the prefetch window.
    assert_eq!(publish_all(&mut b, 0), [id(0)]);
    // Two nodes appear: two more.
    assert_eq!(publish_all(&mut b, 2), [id(1), id(2)]);
    // A start frees nothing; a finished job frees one slot.
    b.job_event(&event(0, JobEventKind::Started));
    assert_eq!(publish_all(&mut b, 2), Vec::<JobId>::new());
    b.job_event(&event(0, JobEventKind::Progress));
    b.job_event(&event(0, JobEventKind::Succeeded));
    assert_eq!(publish_all(&mut b, 2), [id(3)]);
    // A failed attempt that goes back to the stream keeps its slot.
    b.job_event(&event(1, JobEventKind::Started));
    b.job_event(&event(1, JobEventKind::Retrying));
    assert_eq!(publish_all(&mut b, 2), Vec::<JobId>::new());
    b.job_event(&event(1, JobEventKind::Failed));
    assert_eq!(publish_all(&mut b, 2), [id(4)]);
    assert_eq!(b.depth(), 4, "one waiting, three published and not started");
}

#[test]
fn one_owners_many_jobs_do_not_starve_anothers_single_job() {
    let mut b = Backlog::new(0);
    b.seed(Vec::new());
    for n in 0..5 {
        b.enqueue(item(n, "alice", Priority::Interactive));
    }
    // Alice's first job is published at once (one node, no prefetch); bob's comes later.
    assert_eq!(publish_all(&mut b, 1), [id(0)]);
    b.enqueue(item(100, "bob", Priority::Interactive));
    assert_eq!(
        b.position(&id(100)),
        Some(1),
        "behind alice's published job only"
    );
    assert_eq!(b.position(&id(1)), Some(2));
    b.forget(&id(0));
    let order = run_all(&mut b);
    assert_eq!(order, [id(100), id(1), id(2), id(3), id(4)]);
}

#[test]
fn an_interactive_job_goes_ahead_of_queued_batches() {
    let mut b = Backlog::new(0);
    b.seed(Vec::new());
    for n in 0..4 {
        b.enqueue(item(n, "schedule", Priority::Batch));
    }
    assert_eq!(publish_all(&mut b, 1), [id(0)]);
    b.job_event(&event(0, JobEventKind::Started));
    b.enqueue(item(100, "anonymous", Priority::Interactive));
    assert_eq!(b.position(&id(100)), Some(0));
    assert_eq!(b.position(&id(1)), Some(1));
    b.job_event(&event(0, JobEventKind::Succeeded));
    assert_eq!(run_all(&mut b), [id(100), id(1), id(2), id(3)]);
}

#[test]
fn cancel_removes_from_the_backlog_or_asks_for_a_withdrawal() {
    let mut b = Backlog::new(0);
    b.seed(Vec::new());
    for n in 0..3 {
        b.enqueue(item(n, "alice", Priority::Interactive));
    }
    assert_eq!(publish_all(&mut b, 1), [id(0)]);
    assert_eq!(b.cancel(&id(1)), Cancelled::Waiting);
    assert_eq!(b.cancel(&id(0)), Cancelled::Published);
    assert_eq!(b.cancel(&id(0)), Cancelled::Unknown);
    // Cancelling the published job freed its slot; the cancelled one is never published.
    assert_eq!(publish_all(&mut b, 1), [id(2)]);
    assert_eq!(b.depth(), 1);
}

#[test]
fn a_job_cancelled_while_being_published_is_withdrawn() {
    let mut b = Backlog::new(0);
    b.seed(Vec::new());
    b.enqueue(item(1, "alice", Priority::Interactive));
    b.enqueue(item(2, "alice", Priority::Interactive));
    let taken = b.next(2).expect("a free slot");
    assert_eq!(b.next(2), None, "one publish at a time");
    // The final event may come first (the store changed before the queue was told).
    b.job_event(&event(1, JobEventKind::Cancelled));
    assert_eq!(b.cancel(&taken.id), Cancelled::Unknown);
    assert!(b.published(&taken.id, Outcome::InStream), "withdraw it");
    assert_eq!(publish_all(&mut b, 2), [id(2)]);
}

#[test]
fn a_failed_publish_keeps_the_jobs_place_and_a_dropped_job_is_forgotten() {
    let mut b = Backlog::new(0);
    b.seed(Vec::new());
    b.enqueue(item(1, "alice", Priority::Interactive));
    b.enqueue(item(2, "bob", Priority::Interactive));
    let first = b.next(1).unwrap();
    assert_eq!(first.id, id(1));
    assert!(!b.published(&first.id, Outcome::Failed));
    assert_eq!(
        b.position(&id(1)),
        Some(1),
        "alice was served: bob's turn first"
    );
    let second = b.next(1).unwrap();
    assert_eq!(second.id, id(2));
    assert!(!b.published(&second.id, Outcome::Dropped));
    assert_eq!(publish_all(&mut b, 1), [id(1)]);
    assert_eq!(b.depth(), 1);
    assert_eq!(b.tracked(), [(id(1), true)]);
}

#[test]
fn only_published_jobs_are_swept_regularly() {
    let mut b = Backlog::new(1);
    b.seed(vec![(item(9, "carol", Priority::Interactive), true)]);
    for n in 1..=5 {
        b.enqueue(item(n, "alice", Priority::Interactive));
    }
    assert_eq!(publish_all(&mut b, 1), [id(1)]);
    // One job found in the stream, one published (a node slot plus the prefetch): those two,
    // oldest first, not the four still in the backlog.
    assert_eq!(b.published_ids(), [id(9), id(1)]);
    assert_eq!(b.tracked().len(), 6);
    b.forget(&id(9));
    assert_eq!(b.published_ids(), [id(1)]);
}

#[test]
fn jobs_found_in_the_stream_at_startup_hold_their_slots_and_shares() {
    let mut b = Backlog::new(0);
    // Before the look-up ends, two jobs are admitted.
    b.enqueue(item(10, "alice", Priority::Interactive));
    b.enqueue(item(11, "bob", Priority::Interactive));
    // Alice has one job running and one waiting in the stream.
    b.seed(vec![
        (item(1, "alice", Priority::Interactive), true),
        (item(2, "alice", Priority::Interactive), false),
    ]);
    assert_eq!(b.position(&id(2)), Some(0));
    assert_eq!(b.position(&id(1)), None, "running");
    assert_eq!(b.position(&id(11)), Some(1));
    assert_eq!(
        publish_all(&mut b, 2),
        Vec::<JobId>::new(),
        "two nodes, both slots taken"
    );
    b.job_event(&event(1, JobEventKind::Succeeded));
    // Alice still has a job in flight: bob goes first.
    assert_eq!(publish_all(&mut b, 2), [id(11)]);
}

#[test]
fn a_published_job_the_stream_lost_is_published_again_in_its_place() {
    let mut b = Backlog::new(1);
    b.seed(Vec::new());
    for n in 0..3 {
        b.enqueue(item(n, "alice", Priority::Interactive));
    }
    let first = b.next(1).unwrap();
    // The one being published is not looked up.
    assert_eq!(b.unstarted(), Vec::<JobId>::new());
    assert!(!b.lost(&first.id));
    b.published(&first.id, Outcome::InStream);
    assert_eq!(publish_all(&mut b, 1), [id(1)]);
    b.job_event(&event(0, JobEventKind::Started));
    assert_eq!(b.unstarted(), [id(1)]);
    // A started job is not lost (its node holds it); an unstarted one goes back, ahead of
    // alice's newer job.
    assert!(!b.lost(&id(0)));
    assert!(b.lost(&id(1)));
    assert_eq!(b.position(&id(1)), Some(0));
    assert_eq!(publish_all(&mut b, 1), [id(1)]);
    assert_eq!(b.position(&id(2)), Some(1));
}
