//! Store tests: recovery of interrupted jobs, data across reopen, the shared writer lock.

use super::*;

#[tokio::test]
async fn recover_requeues_running_jobs_or_gives_up() {
    let (_dir, store) = open();
    let fresh = record_at(1_000, None);
    let last_try = record_at(2_000, None);
    let queued = record_at(3_000, None);
    let done = record_at(500, None);
    for r in [&fresh, &last_try, &queued, &done] {
        store.put(r).await.unwrap();
    }
    for r in [&fresh, &last_try, &done] {
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
    // last_try has used up its attempts: 1 -> queued 2 -> running 2.
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

    let requeued = store.recover(2).await.unwrap();
    assert_eq!(requeued.len(), 1);
    assert_eq!(requeued[0].id, fresh.id);
    assert_eq!(requeued[0].state, JobState::Queued);
    assert_eq!(requeued[0].attempt, 2);
    assert_eq!(requeued[0].progress, None);
    assert_eq!(store.get(&fresh.id).unwrap().unwrap(), requeued[0]);

    let failed = store.get(&last_try.id).unwrap().unwrap();
    assert_eq!(failed.state, JobState::Failed);
    assert!(failed
        .error
        .as_deref()
        .is_some_and(|e| e.ends_with("(gave up after 2 attempts)")));
    assert!(failed.finished_ms.is_some());
    assert_eq!(
        store.get(&done.id).unwrap().unwrap().state,
        JobState::Succeeded
    );

    assert_eq!(store.count(JobState::Running).unwrap(), 0);
    assert_eq!(
        store.ids_in_state(JobState::Queued).unwrap(),
        vec![fresh.id.clone(), queued.id.clone()]
    );
    assert!(store.recover(2).await.unwrap().is_empty());
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
