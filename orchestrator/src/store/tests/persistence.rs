//! Store tests: recovery of interrupted jobs, data across reopen, the shared writer lock.

use super::*;

/// A crash is not the job's fault: recovery queues every running job again with the same
/// attempt number, even one on its last attempt; only `max_interruptions` crashes in a row
/// fail a job (the guard against a job that crashes its process).
#[tokio::test]
async fn recover_requeues_running_jobs_without_using_up_attempts() {
    let (_dir, store) = open();
    let fresh = record_at(1_000, None);
    let last_try = record_at(2_000, None);
    let queued = record_at(3_000, None);
    let done = record_at(500, None);
    let poison = record_at(4_000, None);
    for r in [&fresh, &last_try, &queued, &done, &poison] {
        store.put(r).await.unwrap();
    }
    // poison was running at the two crashes before this one.
    for _ in 0..2 {
        store
            .cas(&poison.id, JobState::Queued, Some(1), |rec| {
                rec.state = JobState::Running
            })
            .await
            .unwrap();
        assert_eq!(store.recover(2, 3).await.unwrap().len(), 1);
    }
    for r in [&fresh, &last_try, &done, &poison] {
        store
            .cas(&r.id, JobState::Queued, Some(1), |rec| {
                rec.state = JobState::Running
            })
            .await
            .unwrap();
    }
    store.set_progress(&fresh.id, 1, &progress(5)).unwrap();
    store
        .cas(&done.id, JobState::Running, Some(1), |rec| {
            rec.state = JobState::Succeeded
        })
        .await
        .unwrap();
    // last_try is on its last attempt (2 of 2): 1 -> queued 2 -> running 2.
    store
        .cas(&last_try.id, JobState::Running, Some(1), |rec| {
            rec.state = JobState::Queued;
            rec.attempt = 2;
        })
        .await
        .unwrap();
    store
        .cas(&last_try.id, JobState::Queued, Some(2), |rec| {
            rec.state = JobState::Running
        })
        .await
        .unwrap();
    let requeued = store.recover(2, 3).await.unwrap();
    let ids: Vec<_> = requeued.iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids, vec![fresh.id.clone(), last_try.id.clone()]);
    for (r, attempt) in requeued.iter().zip([1, 2]) {
        assert_eq!(r.state, JobState::Queued);
        assert_eq!(r.attempt, attempt, "an interruption uses up no attempt");
        assert_eq!(r.interruptions, 1);
        assert_eq!(r.progress, None);
        assert_eq!(store.get(&r.id).unwrap().unwrap(), *r);
    }

    let failed = store.get(&poison.id).unwrap().unwrap();
    assert_eq!(failed.state, JobState::Failed);
    assert_eq!(failed.interruptions, 3);
    let error = failed.error.as_deref().unwrap_or_default();
    assert!(error.contains("3 crashes in a row"), "{error}");
    assert!(failed.finished_ms.is_some());
    assert_eq!(
        store.get(&done.id).unwrap().unwrap().state,
        JobState::Succeeded
    );

    assert_eq!(store.count(JobState::Running).unwrap(), 0);
    assert_eq!(
        store.ids_in_state(JobState::Queued).unwrap(),
        vec![fresh.id.clone(), last_try.id.clone(), queued.id.clone()]
    );
    assert!(store.recover(2, 3).await.unwrap().is_empty());
}

/// With `max_interruptions = 0` no number of crashes fails a job.
#[tokio::test]
async fn recover_never_gives_up_without_a_limit() {
    let (_dir, store) = open();
    let job = record_at(1_000, None);
    store.put(&job).await.unwrap();
    for round in 1..=25 {
        store
            .cas(&job.id, JobState::Queued, Some(1), |rec| {
                rec.state = JobState::Running
            })
            .await
            .unwrap();
        let requeued = store.recover(1, 0).await.unwrap();
        assert_eq!(requeued.len(), 1);
        assert_eq!(requeued[0].interruptions, round);
        assert_eq!(requeued[0].attempt, 1);
    }
}

#[tokio::test]
async fn data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.sled");
    let a = record_at(1_000, Some("keep/me"));
    let b = record_at(2_000, None);
    let running;
    {
        let store = JobStore::open(&path).unwrap();
        store.put(&a).await.unwrap();
        store.put(&b).await.unwrap();
        running = store
            .cas(&a.id, JobState::Queued, Some(1), |r| {
                r.state = JobState::Running
            })
            .await
            .unwrap();
    }
    let store = JobStore::open(&path).unwrap();
    assert_eq!(store.get(&a.id).unwrap(), Some(running));
    assert_eq!(store.get(&b.id).unwrap(), Some(b.clone()));
    assert_eq!(
        store.ids_in_state(JobState::Queued).unwrap(),
        vec![b.id.clone()]
    );
    assert_eq!(
        store
            .get_by_file(&format!("keep/me/{}", a.id.file_name()))
            .unwrap()
            .unwrap()
            .id,
        a.id
    );
    assert_eq!(store.queue_position(&b.id).unwrap(), Some(0));
}

#[tokio::test]
async fn clones_share_the_writer_lock() {
    let (_dir, store) = open();
    let other = store.clone();
    assert!(Arc::ptr_eq(&store.writer, &other.writer));
}

/// A subscriber may read an event that a crash then loses (progress is not flushed, and any
/// event is readable before its flush ends). After the restart the job's next event must not
/// reuse that number, or the subscriber, resuming after it, would skip the new event.
#[tokio::test]
async fn no_sequence_number_is_given_twice_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.sled");
    let job = record_at(1_000, None);
    let progress = progress(1);
    let seen;
    {
        let store = JobStore::open(&path).unwrap();
        assert_eq!(store.seq_floor(), 0, "a new store numbers from 1");
        store.put(&job).await.unwrap();
        store
            .cas(&job.id, JobState::Queued, Some(1), |r| {
                r.state = JobState::Running
            })
            .await
            .unwrap();
        // Durable up to seq 2; seq 3 is written without a flush, as progress is, and read by a
        // subscriber. Whether the crash then loses it or not, 3 is spent.
        assert!(store.set_progress(&job.id, 1, &progress).unwrap());
        seen = store.events_after(&job.id, 0).unwrap().last().unwrap().seq;
        assert_eq!(seen, 3);
    }
    for boot in 1..=2u64 {
        let store = JobStore::open(&path).unwrap();
        assert_eq!(store.seq_floor(), boot << 32);
        let before = store.get(&job.id).unwrap().unwrap().event_seq;
        assert!(store.set_progress(&job.id, 1, &progress).unwrap());
        let events = store.events_after(&job.id, before).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0].seq,
            (boot << 32) + 1,
            "boot {boot} jumps past boot {}",
            boot - 1
        );
        assert!(events[0].seq > seen);
        // A job created in this boot numbers from the floor too, and counts on by one.
        let new = record_at(2_000 + boot, None);
        store.put(&new).await.unwrap();
        let first = store.events_after(&new.id, 0).unwrap();
        assert_eq!(
            first.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [(boot << 32) + 1]
        );
        store.flush().await.unwrap();
    }
}
