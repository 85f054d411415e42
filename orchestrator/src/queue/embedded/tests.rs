//! Tests of the embedded queue: order, exclusivity under concurrency, redelivery, restarts,
//! de-duplication and cancel safety.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use protocol::{JobId, Owner, Priority};

use super::*;

fn id(n: u32) -> JobId {
    let mut bytes = [0u8; 16];
    bytes[12..].copy_from_slice(&n.to_be_bytes());
    JobId::from_bytes(bytes)
}

fn open_db(dir: &tempfile::TempDir) -> sled::Db {
    sled::Config::new()
        .path(dir.path().join("db"))
        .open()
        .unwrap()
}

async fn next_soon(q: &EmbeddedQueue) -> Delivery {
    tokio::time::timeout(Duration::from_secs(5), q.next())
        .await
        .expect("a message")
        .unwrap()
}

async fn nothing_for(q: &EmbeddedQueue, wait: Duration) {
    if let Ok(d) = tokio::time::timeout(wait, q.next()).await {
        panic!("unexpected delivery {d:?}");
    }
}

#[tokio::test]
async fn fifo_and_depth() {
    let dir = tempfile::tempdir().unwrap();
    let q = EmbeddedQueue::open(&open_db(&dir)).unwrap();
    assert_eq!(q.backend(), "embedded");
    for n in 0..5 {
        q.enqueue(&QueueItem::plain(&id(n))).await.unwrap();
    }
    assert_eq!(q.depth().await.unwrap(), 5);
    let mut got = Vec::new();
    for n in 0..5 {
        let d = next_soon(&q).await;
        assert_eq!(d.id, id(n));
        assert_eq!(d.delivered, 1);
        assert_eq!(q.depth().await.unwrap(), 4 - n as usize);
        got.push(d);
    }
    assert_eq!(q.in_flight(), 5);
    for d in &got {
        q.in_progress(d).await.unwrap();
        q.ack(d).await.unwrap();
    }
    assert_eq!(q.in_flight(), 0);
    assert_eq!(q.depth().await.unwrap(), 0);
    nothing_for(&q, Duration::from_millis(50)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_message_goes_to_exactly_one_consumer() {
    const MESSAGES: u32 = 200;
    const CONSUMERS: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let q = EmbeddedQueue::open(&open_db(&dir)).unwrap();
    let acked = Arc::new(AtomicUsize::new(0));
    let mut consumers = Vec::new();
    for _ in 0..CONSUMERS {
        let q = q.clone();
        let acked = acked.clone();
        consumers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                match q.next().await {
                    Ok(d) => {
                        got.push(d.clone());
                        tokio::task::yield_now().await;
                        q.ack(&d).await.unwrap();
                        if acked.fetch_add(1, Ordering::SeqCst) + 1 == MESSAGES as usize {
                            q.close();
                        }
                    }
                    Err(QueueError::Closed) => return got,
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    // Produce while the consumers wait, so wake-ups are exercised.
    let producer = {
        let q = q.clone();
        tokio::spawn(async move {
            for n in 0..MESSAGES {
                q.enqueue(&QueueItem::plain(&id(n))).await.unwrap();
                if n % 16 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        })
    };
    producer.await.unwrap();
    let mut all = Vec::new();
    for c in consumers {
        all.extend(
            tokio::time::timeout(Duration::from_secs(30), c)
                .await
                .expect("consumers finish")
                .unwrap(),
        );
    }
    assert_eq!(all.len(), MESSAGES as usize);
    let ids: HashSet<JobId> = all.iter().map(|d| d.id.clone()).collect();
    assert_eq!(ids.len(), MESSAGES as usize);
    assert!(all.iter().all(|d| d.delivered == 1));
    let handles: HashSet<u64> = all.iter().map(|d| d.handle).collect();
    assert_eq!(handles.len(), MESSAGES as usize);
    assert_eq!(q.depth().await.unwrap(), 0);
    assert_eq!(q.in_flight(), 0);
}

#[tokio::test]
async fn nack_redelivers_with_a_higher_count() {
    let dir = tempfile::tempdir().unwrap();
    let q = EmbeddedQueue::open(&open_db(&dir)).unwrap();
    q.enqueue(&QueueItem::plain(&id(1))).await.unwrap();
    let first = next_soon(&q).await;
    assert_eq!(q.depth().await.unwrap(), 0);
    q.nack(&first, Duration::ZERO).await.unwrap();
    assert_eq!(q.depth().await.unwrap(), 1);
    let second = next_soon(&q).await;
    assert_eq!((second.id.clone(), second.delivered), (id(1), 2));
    assert_ne!(second.handle, first.handle);

    // Stale handles do nothing.
    q.ack(&first).await.unwrap();
    q.nack(&first, Duration::ZERO).await.unwrap();
    assert_eq!(q.in_flight(), 1);

    // With a delay: not before it is over, and a newer message is not held up meanwhile.
    let started = Instant::now();
    q.nack(&second, Duration::from_millis(300)).await.unwrap();
    q.enqueue(&QueueItem::plain(&id(2))).await.unwrap();
    let other = next_soon(&q).await;
    assert_eq!(other.id, id(2));
    let third = next_soon(&q).await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!((third.id.clone(), third.delivered), (id(1), 3));
    q.ack(&third).await.unwrap();
    q.ack(&other).await.unwrap();
    assert_eq!(q.depth().await.unwrap(), 0);

    // After an ack the count starts again.
    q.enqueue(&QueueItem::plain(&id(1))).await.unwrap();
    assert_eq!(next_soon(&q).await.delivered, 1);
}

#[tokio::test]
async fn unacked_messages_come_back_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open_db(&dir);
        let q = EmbeddedQueue::open(&db).unwrap();
        for n in 0..4 {
            q.enqueue(&QueueItem::plain(&id(n))).await.unwrap();
        }
        let a = next_soon(&q).await;
        let b = next_soon(&q).await;
        let c = next_soon(&q).await;
        q.ack(&a).await.unwrap();
        q.nack(&c, Duration::from_secs(3600)).await.unwrap();
        assert_eq!(b.id, id(1));
        // b stays in flight: the process "dies" here.
    }
    let db = open_db(&dir);
    let q = EmbeddedQueue::open(&db).unwrap();
    assert_eq!(q.depth().await.unwrap(), 3);
    let b = next_soon(&q).await;
    assert_eq!((b.id.clone(), b.delivered), (id(1), 2));
    let c = next_soon(&q).await;
    assert_eq!(
        (c.id.clone(), c.delivered),
        (id(2), 2),
        "the delay is not persisted"
    );
    let d = next_soon(&q).await;
    assert_eq!((d.id.clone(), d.delivered), (id(3), 1));
    // Keys keep increasing across the restart: a new message goes to the back.
    q.nack(&b, Duration::ZERO).await.unwrap();
    q.enqueue(&QueueItem::plain(&id(9))).await.unwrap();
    assert_eq!(next_soon(&q).await.id, id(1));
    assert_eq!(next_soon(&q).await.id, id(9));
}

#[tokio::test]
async fn enqueue_deduplicates() {
    let dir = tempfile::tempdir().unwrap();
    let q = EmbeddedQueue::open(&open_db(&dir)).unwrap();
    q.enqueue(&QueueItem::plain(&id(1))).await.unwrap();
    q.enqueue(&QueueItem::plain(&id(1))).await.unwrap();
    assert_eq!(q.depth().await.unwrap(), 1);
    let d = next_soon(&q).await;
    q.enqueue(&QueueItem::plain(&id(1))).await.unwrap();
    assert_eq!(q.depth().await.unwrap(), 0, "in flight: no second copy");
    q.ack(&d).await.unwrap();
    q.enqueue(&QueueItem::plain(&id(1))).await.unwrap();
    assert_eq!(q.depth().await.unwrap(), 1, "acked: may be queued again");
}

#[tokio::test]
async fn a_dropped_next_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let q = EmbeddedQueue::open(&open_db(&dir)).unwrap();
    // Dropped while waiting on an empty queue.
    tokio::select! {
        d = q.next() => panic!("unexpected {d:?}"),
        _ = tokio::time::sleep(Duration::from_millis(20)) => {}
    }
    q.enqueue(&QueueItem::plain(&id(1))).await.unwrap();
    assert_eq!(next_soon(&q).await.id, id(1));

    // A consumer that keeps abandoning next() while a producer runs gets every message once.
    const N: u32 = 100;
    let producer = {
        let q = q.clone();
        tokio::spawn(async move {
            for n in 100..100 + N {
                q.enqueue(&QueueItem::plain(&id(n))).await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let mut got = Vec::new();
    let mut timeouts = 0;
    while got.len() < N as usize {
        tokio::select! {
            d = q.next() => got.push(d.unwrap().id),
            _ = tokio::time::sleep(Duration::from_micros(200)) => timeouts += 1,
        }
        assert!(timeouts < 100_000, "stuck with {} messages", got.len());
    }
    producer.await.unwrap();
    let expected: Vec<JobId> = (100..100 + N).map(id).collect();
    assert_eq!(got, expected);
    assert_eq!(q.depth().await.unwrap(), 0);
    assert_eq!(q.in_flight(), N as usize + 1);
}

#[tokio::test]
async fn close_wakes_waiters() {
    let dir = tempfile::tempdir().unwrap();
    let q = EmbeddedQueue::open(&open_db(&dir)).unwrap();
    let waiter = {
        let q = q.clone();
        tokio::spawn(async move { q.next().await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    q.close();
    let r = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(r, Err(QueueError::Closed)));
    assert!(matches!(
        q.enqueue(&QueueItem::plain(&id(1))).await,
        Err(QueueError::Closed)
    ));
}

#[tokio::test]
async fn shares_the_store_database() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::JobStore::open(&dir.path().join("jobs.sled")).unwrap();
    let q = EmbeddedQueue::open(store.db()).unwrap();
    q.enqueue(&QueueItem::plain(&id(1))).await.unwrap();
    assert_eq!(next_soon(&q).await.id, id(1));
}

#[tokio::test]
async fn in_the_store_a_message_rides_on_the_stores_flush() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.sled");
    {
        let store = crate::store::JobStore::open(&path).unwrap();
        let q = EmbeddedQueue::in_store(&store).unwrap();
        assert!(q.enqueue_unflushed(&QueueItem::plain(&id(1))).unwrap());
        assert!(
            q.enqueue_unflushed(&QueueItem::plain(&id(1))).unwrap(),
            "a duplicate is a no-op"
        );
        assert_eq!(q.depth().await.unwrap(), 1);
        store.flush().await.unwrap();
        q.close();
    }
    // The store's flush made it durable: it is waiting after a reopen.
    let store = crate::store::JobStore::open(&path).unwrap();
    let q = EmbeddedQueue::in_store(&store).unwrap();
    assert_eq!(next_soon(&q).await.id, id(1));
    // A queue in a database of its own cannot ride on anybody's flush.
    let other = tempfile::tempdir().unwrap();
    let plain = EmbeddedQueue::open(&open_db(&other)).unwrap();
    assert!(!plain.enqueue_unflushed(&QueueItem::plain(&id(2))).unwrap());
    assert_eq!(plain.depth().await.unwrap(), 0);
}

fn owned(n: u32, owner: &str, priority: Priority) -> QueueItem {
    QueueItem {
        id: id(n),
        owner: Owner::new("key", owner),
        priority,
    }
}

#[tokio::test]
async fn owners_take_turns_and_people_go_before_batches() {
    let dir = tempfile::tempdir().unwrap();
    let q = EmbeddedQueue::open(&open_db(&dir)).unwrap();
    // A schedule's batch, then one owner's 50 jobs, then another owner's single job.
    for n in 0..3 {
        q.enqueue(&owned(1000 + n, "cron", Priority::Batch))
            .await
            .unwrap();
    }
    for n in 0..50 {
        q.enqueue(&owned(n, "alice", Priority::Interactive))
            .await
            .unwrap();
    }
    q.enqueue(&owned(500, "bob", Priority::Interactive))
        .await
        .unwrap();

    // Bob's single job is estimated second and handed out second, not 51st.
    assert_eq!(q.position(&id(0)).await.unwrap(), Some(0));
    assert_eq!(q.position(&id(500)).await.unwrap(), Some(1));
    assert_eq!(q.position(&id(1)).await.unwrap(), Some(2));
    assert_eq!(q.position(&id(1000)).await.unwrap(), Some(51));

    let mut order = Vec::new();
    for _ in 0..54 {
        let d = next_soon(&q).await;
        order.push(d.id.clone());
        q.ack(&d).await.unwrap();
    }
    assert_eq!(order[0], id(0));
    assert_eq!(
        order[1],
        id(500),
        "the single job of another owner goes next"
    );
    // Alice's jobs stay in her order; the batch comes last, in its order.
    let alice: Vec<_> = order.iter().filter(|i| **i < id(50)).cloned().collect();
    assert_eq!(alice, (0..50).map(id).collect::<Vec<_>>());
    assert_eq!(&order[51..], &[id(1000), id(1001), id(1002)]);
}

#[tokio::test]
async fn an_owner_with_a_job_in_flight_waits_behind_idle_owners() {
    let dir = tempfile::tempdir().unwrap();
    let q = EmbeddedQueue::open(&open_db(&dir)).unwrap();
    for n in 0..3 {
        q.enqueue(&owned(n, "alice", Priority::Interactive))
            .await
            .unwrap();
    }
    let first = next_soon(&q).await;
    assert_eq!(first.id, id(0));
    q.enqueue(&owned(10, "bob", Priority::Interactive))
        .await
        .unwrap();
    q.enqueue(&owned(11, "carol", Priority::Interactive))
        .await
        .unwrap();
    // Alice has a job running: bob and carol go first, then alice again.
    let (a, b) = (next_soon(&q).await, next_soon(&q).await);
    assert_eq!([a.id.clone(), b.id.clone()], [id(10), id(11)]);
    assert_eq!(next_soon(&q).await.id, id(1));
}

#[tokio::test]
async fn cancel_removes_a_waiting_message_durably() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(&dir);
    {
        let q = EmbeddedQueue::open(&db).unwrap();
        for n in 0..3 {
            q.enqueue(&QueueItem::plain(&id(n))).await.unwrap();
        }
        let held = next_soon(&q).await;
        q.cancel(&id(1)).await.unwrap();
        // One in flight is left to its holder.
        q.cancel(&held.id).await.unwrap();
        assert_eq!(q.depth().await.unwrap(), 1);
        assert_eq!(q.position(&id(1)).await.unwrap(), None);
    }
    // A queue opened again from the tree (as after a restart) holds the other two.
    let q = EmbeddedQueue::open(&db).unwrap();
    let mut left = vec![next_soon(&q).await.id, next_soon(&q).await.id];
    left.sort();
    assert_eq!(left, vec![id(0), id(2)]);
}
