//! Store tests: reads served from the records kept in memory ([`super::recent`]) see every
//! write, from any clone of the store, whether the record was kept, evicted or never read.

use std::thread;

use super::*;

/// The record as sled has it, bypassing the kept copies.
fn on_disk(store: &JobStore, id: &JobId) -> Option<JobRecord> {
    let key = id.as_str().as_bytes();
    store
        .jobs
        .get(key)
        .unwrap()
        .map(|b| decode(key, &b).unwrap())
}

#[tokio::test]
async fn every_write_is_seen_by_the_next_read() {
    let (dir, store) = open();
    let other = store.clone();
    let record = record_at(1_000, None);
    store.put(&record).await.unwrap();
    assert_eq!(other.get(&record.id).unwrap(), Some(record.clone()));

    let running = other
        .cas(&record.id, JobState::Queued, Some(1), |r| {
            r.state = JobState::Running
        })
        .await
        .unwrap();
    assert_eq!(store.get(&record.id).unwrap(), Some(running));
    assert!(store.set_progress(&record.id, 1, &progress(3)).unwrap());
    assert_eq!(
        store.get(&record.id).unwrap().unwrap().progress,
        Some(progress(3))
    );
    other
        .set_client_data(&record.id, Some("delivered".into()))
        .await
        .unwrap();
    let read = store.get(&record.id).unwrap().unwrap();
    assert_eq!(read.client_data.as_deref(), Some("delivered"));
    assert_eq!(Some(read), on_disk(&store, &record.id));

    other.delete(&record.id).await.unwrap();
    assert_eq!(store.get(&record.id).unwrap(), None);
    assert_eq!(store.get(&record.id).unwrap(), None);

    // Reopened: nothing kept; the first read fills, a write replaces it.
    let kept = record_at(2_000, None);
    store.put(&kept).await.unwrap();
    drop((store, other));
    let store = JobStore::open(&dir.path().join("jobs.sled")).unwrap();
    assert_eq!(store.get(&kept.id).unwrap(), Some(kept.clone()));
    let cancelled = store
        .cas(&kept.id, JobState::Queued, None, |r| {
            r.state = JobState::Cancelled
        })
        .await
        .unwrap();
    assert_eq!(store.get(&kept.id).unwrap(), Some(cancelled));
}

#[tokio::test]
async fn an_evicted_record_is_read_from_sled() {
    let (_dir, store) = open();
    let first = record_at(1, None);
    store.put(&first).await.unwrap();
    for n in 0..crate::store::recent::RECENT_RECORDS {
        let mut r = record_at(10 + n as u64, None);
        r.id = crate::ids::new_job_id();
        store.put(&r).await.unwrap();
    }
    assert_eq!(store.get(&first.id).unwrap(), Some(first));
}

/// Readers race a writer on one job; once the writer is done, a read gives sled's record. A
/// reader whose sled read came before a write must not leave its older copy behind. One
/// record is kept, and the readers alternate between the job and another, so that their
/// reads of the job miss and fill.
#[test]
fn reads_racing_writes_never_leave_an_older_copy() {
    let (_dir, store) = open();
    let store = store.keeping(1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let quiet = record_at(50, None);
    runtime.block_on(store.put(&quiet)).unwrap();
    for round in 0..50u64 {
        let record = record_at(100 + round, None);
        runtime.block_on(async {
            store.put(&record).await.unwrap();
            store
                .cas(&record.id, JobState::Queued, Some(1), |r| {
                    r.state = JobState::Running
                })
                .await
                .unwrap();
        });
        let done = std::sync::atomic::AtomicBool::new(false);
        thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    while !done.load(Ordering::Relaxed) {
                        store.get(&quiet.id).unwrap();
                        store.get(&record.id).unwrap();
                    }
                });
            }
            for step in 1..=200 {
                store.set_progress(&record.id, 1, &progress(step)).unwrap();
            }
            done.store(true, Ordering::Relaxed);
        });
        let read = store.get(&record.id).unwrap().unwrap();
        assert_eq!(read.progress, Some(progress(200)), "round {round}");
        assert_eq!(Some(read), on_disk(&store, &record.id));
    }
}
