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
