//! Tests of the job store: CAS semantics, indexes, recovery and durability across reopen.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use protocol::{
    JobId, JobRecord, JobResult, JobSpec, JobState, ProgressEvent, Source, Stage, StyleSpec,
};

use super::*;

static NEXT: AtomicU8 = AtomicU8::new(1);

pub(crate) fn spec(subdir: Option<&str>) -> JobSpec {
    JobSpec {
        lyrics: "[00:01.00]hello".into(),
        style: StyleSpec::Prompt("pop".into()),
        seconds: 95,
        seed: 7,
        steps: None,
        cfg_strength: None,
        variants: 1,
        chunked: false,
        edit: None,
        output_subdir: subdir.map(str::to_string),
        format: Default::default(),
    }
}

/// Test shims: the store's raw operations with the signatures these tests were written for.
/// Outside tests only `crate::jobs::Lifecycle` calls `insert` and `transition`.
impl JobStore {
    pub(crate) async fn put(&self, record: &JobRecord) -> Result<(), StoreError> {
        let mut record = record.clone();
        self.insert(&mut record, None).await.map(|_| ())
    }

    pub(crate) async fn cas(
        &self,
        id: &JobId,
        from: JobState,
        attempt: Option<u32>,
        f: impl FnOnce(&mut JobRecord) + Send,
    ) -> Result<JobRecord, StoreError> {
        self.transition(id, from, attempt, JobEventKind::Retrying, None, true, f)
            .await
            .map(|(r, _)| r)
    }

    pub(crate) fn set_progress(
        &self,
        id: &JobId,
        attempt: u32,
        event: &ProgressEvent,
    ) -> Result<bool, StoreError> {
        let event = event.clone();
        let fut = self.transition(
            id,
            JobState::Running,
            Some(attempt),
            JobEventKind::Progress,
            None,
            false,
            move |r| r.progress = Some(event),
        );
        match futures_util::FutureExt::now_or_never(fut) {
            Some(Ok(_)) => Ok(true),
            Some(Err(StoreError::Conflict { .. } | StoreError::NotFound(_))) => Ok(false),
            Some(Err(e)) => Err(e),
            None => unreachable!("an unflushed transition does not wait"),
        }
    }

    pub(crate) async fn recover(&self, max_attempts: u32) -> Result<Vec<JobRecord>, StoreError> {
        let lifecycle = crate::jobs::Lifecycle::new(
            self.clone(),
            crate::jobs::Hub::new(),
            crate::metrics::Metrics::new(),
            max_attempts,
        );
        lifecycle.recover().await
    }
}

pub(crate) fn record_at(created_ms: u64, subdir: Option<&str>) -> JobRecord {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut bytes = [0u8; 16];
    bytes[0] = n;
    bytes[1..9].copy_from_slice(&created_ms.to_be_bytes());
    JobRecord {
        id: JobId::from_bytes(bytes),
        spec: spec(subdir),
        state: JobState::Queued,
        attempt: 1,
        source: Source::Cli,
        created_ms,
        updated_ms: created_ms,
        started_ms: None,
        finished_ms: None,
        progress: None,
        result: None,
        error: None,
        owner: Default::default(),
        priority: Default::default(),
        idempotency_key: None,
        request_hash: None,
        // What `insert` gives a new record (its `queued` event), so stored == local.
        event_seq: 1,
    }
}

fn progress(step: u32) -> ProgressEvent {
    ProgressEvent {
        stage: Stage::Sampling,
        step,
        total: 32,
        percent: step as f32,
        eta_seconds: Some(1.0),
        elapsed_seconds: 0.5,
    }
}

fn open() -> (tempfile::TempDir, JobStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = JobStore::open(&dir.path().join("jobs.sled")).unwrap();
    (dir, store)
}

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
async fn counts_positions_and_listings_follow_transitions() {
    let (_dir, store) = open();
    // Created out of order: the indexes order by created_ms.
    let records: Vec<JobRecord> = [5_000, 1_000, 3_000, 4_000, 2_000]
        .into_iter()
        .map(|t| record_at(t, None))
        .collect();
    for r in &records {
        store.put(r).await.unwrap();
    }
    let mut by_age = records.clone();
    by_age.sort_by_key(|r| r.created_ms);
    let ids: Vec<JobId> = by_age.iter().map(|r| r.id.clone()).collect();
    assert_eq!(store.ids_in_state(JobState::Queued).unwrap(), ids);
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(store.queue_position(id).unwrap(), Some(i));
    }
    assert_eq!(
        store
            .queue_position(&JobId::from_bytes([0xee; 16]))
            .unwrap(),
        None
    );

    store
        .cas(&ids[0], JobState::Queued, None, |r| {
            r.state = JobState::Running
        })
        .await
        .unwrap();
    store
        .cas(&ids[2], JobState::Queued, None, |r| {
            r.state = JobState::Cancelled
        })
        .await
        .unwrap();
    assert_eq!(store.count(JobState::Queued).unwrap(), 3);
    assert_eq!(store.count(JobState::Running).unwrap(), 1);
    assert_eq!(store.count(JobState::Cancelled).unwrap(), 1);
    assert_eq!(store.count(JobState::Succeeded).unwrap(), 0);
    assert_eq!(store.queue_position(&ids[0]).unwrap(), None);
    assert_eq!(store.queue_position(&ids[1]).unwrap(), Some(0));
    assert_eq!(store.queue_position(&ids[3]).unwrap(), Some(1));
    assert_eq!(store.queue_position(&ids[4]).unwrap(), Some(2));
    assert_eq!(
        store.ids_in_state(JobState::Queued).unwrap(),
        vec![ids[1].clone(), ids[3].clone(), ids[4].clone()]
    );
    let total: usize = JobState::ALL.iter().map(|s| store.count(*s).unwrap()).sum();
    assert_eq!(total, 5);

    let recent: Vec<JobId> = store.recent(3).unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(recent, vec![ids[4].clone(), ids[3].clone(), ids[2].clone()]);
    assert_eq!(store.recent(100).unwrap().len(), 5);
    assert_eq!(
        store.scan().collect::<Result<Vec<_>, _>>().unwrap().len(),
        5
    );
}

#[tokio::test]
async fn finished_before_lists_old_terminal_jobs() {
    let (_dir, store) = open();
    let old = record_at(1_000, None);
    let queued = record_at(1_000, None);
    let recent = record_at(now_ms(), None);
    for r in [&old, &queued, &recent] {
        store.put(r).await.unwrap();
    }
    store
        .cas(&old.id, JobState::Queued, None, |r| {
            r.state = JobState::Failed;
            r.finished_ms = Some(2_000);
        })
        .await
        .unwrap();
    store
        .cas(&recent.id, JobState::Queued, None, |r| {
            r.state = JobState::Cancelled
        })
        .await
        .unwrap();
    let found: Vec<JobId> = store
        .finished_before(now_ms() - 60_000)
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(found, vec![old.id.clone()]);
    assert!(store.finished_before(1_500).unwrap().is_empty());
}

#[tokio::test]
async fn delete_removes_the_record_and_its_indexes() {
    let (_dir, store) = open();
    let r = record_at(1_000, Some("x"));
    let keep = record_at(2_000, None);
    store.put(&r).await.unwrap();
    store.put(&keep).await.unwrap();
    store.delete(&r.id).await.unwrap();
    assert_eq!(store.get(&r.id).unwrap(), None);
    assert_eq!(
        store
            .get_by_file(&format!("x/{}", r.id.file_name()))
            .unwrap(),
        None
    );
    assert_eq!(
        store.ids_in_state(JobState::Queued).unwrap(),
        vec![keep.id.clone()]
    );
    assert_eq!(store.count(JobState::Queued).unwrap(), 1);
    assert_eq!(store.recent(10).unwrap(), vec![keep.clone()]);
    assert!(matches!(
        store.delete(&r.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.by_state.len() + store.by_created.len() + store.by_file.len(),
        3
    );
    // The id and the file name can be used again.
    store.put(&r).await.unwrap();
    assert_eq!(
        store
            .get_by_file(&format!("x/{}", r.id.file_name()))
            .unwrap(),
        Some(r)
    );
}

#[tokio::test]
async fn undecodable_records_are_reported_and_can_be_deleted() {
    let (_dir, store) = open();
    let r = record_at(1_000, None);
    store.put(&r).await.unwrap();
    store.jobs.insert(r.id.as_str(), &b"{not json"[..]).unwrap();
    assert!(matches!(store.get(&r.id), Err(StoreError::Corrupt { .. })));
    store.delete(&r.id).await.unwrap();
    assert_eq!(store.get(&r.id).unwrap(), None);
    assert_eq!(
        store.by_state.len() + store.by_created.len() + store.by_file.len(),
        0
    );
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
