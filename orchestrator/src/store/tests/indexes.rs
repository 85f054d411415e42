//! Store tests: the secondary indexes (state, creation time, file name) through transitions
//! and deletes, and records that no longer decode.

use super::*;

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

    let recent: Vec<JobId> = store
        .list(Default::default(), None, 3)
        .unwrap()
        .unwrap()
        .jobs
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(recent, vec![ids[4].clone(), ids[3].clone(), ids[2].clone()]);
    assert_eq!(
        store
            .list(Default::default(), None, 100)
            .unwrap()
            .unwrap()
            .jobs
            .len(),
        5
    );
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
    assert_eq!(store.events_after(&r.id, 0).unwrap().len(), 1);
    store.delete(&r.id).await.unwrap();
    assert_eq!(store.get(&r.id).unwrap(), None);
    // Its outbox goes with it; the other job's stays.
    assert!(store.events_after(&r.id, 0).unwrap().is_empty());
    assert_eq!(store.events_after(&keep.id, 0).unwrap().len(), 1);
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
    assert_eq!(
        store
            .list(Default::default(), None, 10)
            .unwrap()
            .unwrap()
            .jobs,
        vec![keep.clone()]
    );
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
    // As a store finds it on disk, without a copy in memory (the raw write bypassed it).
    let store = store.keeping(crate::store::recent::RECENT_RECORDS);
    assert!(matches!(store.get(&r.id), Err(StoreError::Corrupt { .. })));
    store.delete(&r.id).await.unwrap();
    assert_eq!(store.get(&r.id).unwrap(), None);
    assert_eq!(
        store.by_state.len() + store.by_created.len() + store.by_file.len(),
        0
    );
}
