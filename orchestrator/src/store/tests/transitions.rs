//! Store tests: inserts, the compare-and-swap transition and per-attempt progress.

use super::*;

#[tokio::test]
async fn insert_get_and_get_by_file() {
    let (_dir, store) = open();
    let plain = record_at(1_000, None);
    let nested = record_at(2_000, Some("a/b"));
    store.put(&plain).await.unwrap();
    store.put(&nested).await.unwrap();

    assert_eq!(store.get(&plain.id).unwrap(), Some(plain.clone()));
    assert_eq!(
        store.get_by_file(&plain.id.file_name()).unwrap(),
        Some(plain.clone())
    );
    let nested_file = format!("a/b/{}", nested.id.file_name());
    assert_eq!(
        store.get_by_file(&nested_file).unwrap(),
        Some(nested.clone())
    );
    assert_eq!(store.get_by_file(&nested.id.file_name()).unwrap(), None);
    assert_eq!(store.get_by_file("../etc/passwd").unwrap(), None);
    assert_eq!(store.get(&JobId::from_bytes([0xee; 16])).unwrap(), None);

    // Same id again: a conflict, the stored record is untouched.
    let mut again = plain.clone();
    again.spec.lyrics = "other".into();
    assert!(matches!(
        store.put(&again).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(store.get(&plain.id).unwrap(), Some(plain.clone()));

    // Only new queued records with attempt 1 are accepted.
    let mut running = record_at(3_000, None);
    running.state = JobState::Running;
    assert!(matches!(
        store.put(&running).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(store.get(&running.id).unwrap(), None);
    assert_eq!(store.count(JobState::Queued).unwrap(), 2);
}

#[tokio::test]
async fn records_that_would_not_read_back_are_refused() {
    let (_dir, store) = open();
    let r = record_at(1_000, None);
    store.put(&r).await.unwrap();
    store
        .cas(&r.id, JobState::Queued, Some(1), |r| {
            r.state = JobState::Running
        })
        .await
        .unwrap();
    let mut bad = progress(1);
    bad.percent = f32::NAN;
    assert!(matches!(
        store.set_progress(&r.id, 1, &bad),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(store.get(&r.id).unwrap().unwrap().progress.is_none());
}

#[tokio::test]
async fn transition_is_a_compare_and_swap() {
    let (_dir, store) = open();
    let r = record_at(1_000, None);
    store.put(&r).await.unwrap();

    let running = store
        .cas(&r.id, JobState::Queued, Some(1), |rec| {
            rec.state = JobState::Running
        })
        .await
        .unwrap();
    assert_eq!(running.state, JobState::Running);
    assert!(running.started_ms.is_some());
    assert!(running.updated_ms >= r.updated_ms);
    assert_eq!(store.get(&r.id).unwrap(), Some(running.clone()));

    // Wrong state: Conflict, and `f` never ran.
    let e = store
        .cas(&r.id, JobState::Queued, None, |_| panic!("must not run"))
        .await
        .unwrap_err();
    match e {
        StoreError::Conflict {
            expected, found, ..
        } => {
            assert_eq!(expected, "queued");
            assert_eq!(found, "running (attempt 1)");
        }
        other => panic!("{other:?}"),
    }
    // Wrong attempt: Conflict, nothing written.
    let e = store
        .cas(&r.id, JobState::Running, Some(2), |rec| {
            rec.state = JobState::Succeeded
        })
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("expected running (attempt 2), found running (attempt 1)"),
        "{e}"
    );
    assert_eq!(store.get(&r.id).unwrap(), Some(running.clone()));

    // A transition the life cycle does not allow: Conflict, nothing written.
    let e = store
        .cas(&r.id, JobState::Running, Some(1), |rec| {
            rec.state = JobState::Running
        })
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "{e}");
    // Changing the identity: refused.
    let e = store
        .cas(&r.id, JobState::Running, Some(1), |rec| {
            rec.state = JobState::Succeeded;
            rec.created_ms += 1;
        })
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Transaction(_)), "{e}");
    assert_eq!(store.get(&r.id).unwrap(), Some(running.clone()));

    let result = JobResult {
        file: r.id.file_name(),
        bytes: 10,
        duration_seconds: 95.0,
        attempt: 1,
        files: Vec::new(),
    };
    let done = store
        .cas(&r.id, JobState::Running, Some(1), move |rec| {
            rec.state = JobState::Succeeded;
            rec.result = Some(result);
        })
        .await
        .unwrap();
    assert!(done.finished_ms.is_some());
    assert_eq!(done.result.as_ref().unwrap().bytes, 10);
    for to in JobState::ALL {
        let e = store
            .cas(&r.id, JobState::Succeeded, None, |rec| rec.state = to)
            .await;
        assert!(
            matches!(e, Err(StoreError::Conflict { .. })),
            "succeeded -> {to}"
        );
    }
    assert!(matches!(
        store
            .cas(
                &JobId::from_bytes([0xee; 16]),
                JobState::Queued,
                None,
                |_| {}
            )
            .await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn concurrent_transitions_have_one_winner() {
    let (_dir, store) = open();
    for round in 0..5u64 {
        let r = record_at(1_000 + round, None);
        store.put(&r).await.unwrap();
        let mut tasks = Vec::new();
        for worker in 0..16u32 {
            let store = store.clone();
            let id = r.id.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .cas(&id, JobState::Queued, Some(1), move |rec| {
                        rec.state = JobState::Running;
                        rec.error = Some(format!("worker {worker}"));
                    })
                    .await
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok(rec) => winners.push(rec),
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}");
        assert_eq!(store.get(&r.id).unwrap(), Some(winners[0].clone()));
    }
    assert_eq!(store.count(JobState::Running).unwrap(), 5);
    assert_eq!(store.count(JobState::Queued).unwrap(), 0);
}

#[tokio::test]
async fn progress_is_kept_only_for_the_running_attempt() {
    let (_dir, store) = open();
    let r = record_at(1_000, None);
    store.put(&r).await.unwrap();
    assert!(
        !store.set_progress(&r.id, 1, &progress(1)).unwrap(),
        "queued"
    );
    store
        .cas(&r.id, JobState::Queued, Some(1), |rec| {
            rec.state = JobState::Running
        })
        .await
        .unwrap();
    assert!(store.set_progress(&r.id, 1, &progress(2)).unwrap());
    assert!(
        !store.set_progress(&r.id, 2, &progress(3)).unwrap(),
        "other attempt"
    );
    assert!(!store
        .set_progress(&JobId::from_bytes([0xee; 16]), 1, &progress(3))
        .unwrap());
    assert_eq!(
        store.get(&r.id).unwrap().unwrap().progress,
        Some(progress(2))
    );

    // Back to the queue (redelivery): progress cleared.
    let requeued = store
        .cas(&r.id, JobState::Running, Some(1), |rec| {
            rec.state = JobState::Queued;
            rec.attempt += 1;
        })
        .await
        .unwrap();
    assert_eq!(requeued.progress, None);
    assert_eq!(requeued.attempt, 2);
}
