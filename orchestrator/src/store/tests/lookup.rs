//! Store tests: the lookup index (by source, finish time, upload, referenced result) through
//! inserts, transitions and deletes, and its rebuild at start-up.

use protocol::{EditSpec, SongRef};

use super::*;

/// Moves a queued job to running, then to `state` finishing at `finished_ms`.
async fn finish(store: &JobStore, id: &JobId, state: JobState, finished_ms: u64) {
    store
        .cas(id, JobState::Queued, None, |r| r.state = JobState::Running)
        .await
        .unwrap();
    store
        .cas(id, JobState::Running, None, move |r| {
            r.state = state;
            r.finished_ms = Some(finished_ms);
        })
        .await
        .unwrap();
}

fn ids(records: &[JobRecord]) -> Vec<JobId> {
    records.iter().map(|r| r.id.clone()).collect()
}

#[tokio::test]
async fn finish_times_uploads_and_results_are_ranges_that_follow_the_jobs() {
    let (dir, store) = open();
    let mut a = record_at(1_000, None);
    a.spec.style = StyleSpec::Upload("blob-a.wav".into());
    let b = record_at(2_000, None);
    let mut c = record_at(3_000, None);
    c.spec.style = StyleSpec::Upload("blob-a.wav".into());
    c.spec.edit = Some(EditSpec {
        song: SongRef::Output(b.id.clone()),
        segments: vec![(0.0, 1.0)],
    });
    for r in [&a, &b, &c] {
        store.put(r).await.unwrap();
    }
    assert!(store.finished_before(u64::MAX).unwrap().is_empty());
    assert_eq!(store.upload_users("blob-a.wav").unwrap().len(), 2);
    assert_eq!(store.output_users(&b.id).unwrap(), vec![c.id.clone()]);

    // Finished out of creation order: the index orders by finish time.
    finish(&store, &b.id, JobState::Succeeded, 50_000).await;
    finish(&store, &a.id, JobState::Failed, 40_000).await;
    assert_eq!(
        ids(&store.finished_before(u64::MAX).unwrap()),
        vec![a.id.clone(), b.id.clone()]
    );
    assert_eq!(
        ids(&store.finished_before(45_000).unwrap()),
        vec![a.id.clone()]
    );
    assert!(store.finished_before(40_000).unwrap().is_empty());

    store.delete(&a.id).await.unwrap();
    assert_eq!(
        store.upload_users("blob-a.wav").unwrap(),
        vec![c.id.clone()]
    );
    assert_eq!(
        ids(&store.finished_before(u64::MAX).unwrap()),
        vec![b.id.clone()]
    );
    store.delete(&c.id).await.unwrap();
    assert!(store.upload_users("blob-a.wav").unwrap().is_empty());
    assert!(store.output_users(&b.id).unwrap().is_empty());
    drop(store);

    // A store whose lookup index is gone (written before it existed) gets it back at open.
    let db = sled::Config::new()
        .path(dir.path().join("jobs.sled"))
        .open()
        .unwrap();
    db.open_tree(LOOKUP).unwrap().clear().unwrap();
    let store = JobStore::with_db(db).unwrap();
    assert_eq!(
        ids(&store.finished_before(u64::MAX).unwrap()),
        vec![b.id.clone()]
    );
    let cli = list::ListFilter {
        source: Some(Source::Cli),
        state: None,
    };
    assert_eq!(store.list(cli, None, 10).unwrap().unwrap().jobs.len(), 1);
    assert!(!store.check_lookup().unwrap(), "a sound index is kept");

    // One entry lost: the counters tell, and the check rebuilds it.
    let finished_key = store
        .lookup
        .scan_prefix(b"f")
        .keys()
        .next()
        .unwrap()
        .unwrap();
    store.lookup.remove(finished_key).unwrap();
    assert!(store.finished_before(u64::MAX).unwrap().is_empty());
    assert!(store.check_lookup().unwrap());
    assert_eq!(
        ids(&store.finished_before(u64::MAX).unwrap()),
        vec![b.id.clone()]
    );
}
