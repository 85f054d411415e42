//! Store tests: the counters per state and per owner follow every insert, transition and
//! delete; the start-up check rebuilds counters and the owner index that disagree with the
//! records; the owner's creation window; listings filtered by state page through the state
//! index.

use super::*;
use crate::store::list::ListFilter;
use protocol::Owner;

fn owned(created_ms: u64, owner: &Owner) -> JobRecord {
    let mut r = record_at(created_ms, None);
    r.owner = owner.clone();
    r
}

/// Every counter, recomputed by hand from the records.
fn recount(store: &JobStore) -> (Vec<usize>, usize, usize) {
    let records: Vec<JobRecord> = store.scan().map(Result::unwrap).collect();
    let per_state = JobState::ALL
        .iter()
        .map(|s| records.iter().filter(|r| r.state == *s).count())
        .collect();
    let active = |name: &str| {
        records
            .iter()
            .filter(|r| r.owner.as_str() == name && counts::is_active(r.state))
            .count()
    };
    (per_state, active("key:alice"), active("key:bob"))
}

fn counted(store: &JobStore) -> (Vec<usize>, usize, usize) {
    let per_state = JobState::ALL
        .iter()
        .map(|s| store.count(*s).unwrap())
        .collect();
    (
        per_state,
        store.active_of(&Owner::new("key", "alice")).unwrap(),
        store.active_of(&Owner::new("key", "bob")).unwrap(),
    )
}

#[tokio::test]
async fn counters_follow_inserts_transitions_and_deletes() {
    let (_dir, store) = open();
    let (alice, bob) = (Owner::new("key", "alice"), Owner::new("key", "bob"));
    let mut ids = Vec::new();
    for (i, owner) in [&alice, &alice, &alice, &bob, &bob].into_iter().enumerate() {
        let r = owned(1000 + i as u64, owner);
        store.put(&r).await.unwrap();
        ids.push(r.id);
    }
    assert_eq!(store.count(JobState::Queued).unwrap(), 5);
    assert_eq!(store.active_of(&alice).unwrap(), 3);
    assert_eq!(store.active_of(&bob).unwrap(), 2);

    let to = |state| move |r: &mut JobRecord| r.state = state;
    store
        .cas(&ids[0], JobState::Queued, None, to(JobState::Running))
        .await
        .unwrap();
    store
        .cas(&ids[0], JobState::Running, None, to(JobState::Succeeded))
        .await
        .unwrap();
    store
        .cas(&ids[1], JobState::Queued, None, to(JobState::Cancelled))
        .await
        .unwrap();
    store
        .cas(&ids[3], JobState::Queued, None, to(JobState::Running))
        .await
        .unwrap();
    // A lost compare-and-swap changes no counter.
    assert!(store
        .cas(&ids[3], JobState::Queued, None, to(JobState::Failed))
        .await
        .is_err());
    // A progress report keeps the state and the counts.
    assert!(store.set_progress(&ids[3], 1, &progress(1)).unwrap());
    assert_eq!(counted(&store), recount(&store));
    assert_eq!(store.count(JobState::Running).unwrap(), 1);
    assert_eq!(store.active_of(&alice).unwrap(), 1);
    assert_eq!(store.active_of(&bob).unwrap(), 2);

    store.delete(&ids[0]).await.unwrap();
    store.delete(&ids[4]).await.unwrap();
    assert_eq!(counted(&store), recount(&store));
    assert_eq!(store.count(JobState::Succeeded).unwrap(), 0);
    assert_eq!(store.active_of(&bob).unwrap(), 1);
    assert_eq!(store.check_counts().unwrap(), counts::CountCheck::default());

    // A transition may not move a job to another owner (its counters and index hang on it).
    let err = store
        .cas(&ids[2], JobState::Queued, None, |r| {
            r.owner = Owner::new("key", "bob")
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Transaction(_)), "{err}");
}

#[tokio::test]
async fn the_startup_check_rebuilds_wrong_counters_and_a_missing_owner_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.sled");
    let alice = Owner::new("key", "alice");
    {
        let store = JobStore::open(&path).unwrap();
        for t in 1..=4u64 {
            store.put(&owned(t * 1000, &alice)).await.unwrap();
        }
        let first = store.ids_in_state(JobState::Queued).unwrap()[0].clone();
        store
            .cas(&first, JobState::Queued, None, |r| {
                r.state = JobState::Failed
            })
            .await
            .unwrap();
        // What an older version (no counters, no owner index) or a bug leaves behind.
        store
            .counts
            .insert(b"s/queued", &99u64.to_be_bytes())
            .unwrap();
        store
            .counts
            .insert(b"s/failed".as_slice(), &[1u8][..])
            .unwrap();
        store.counts.remove(b"a/key:alice").unwrap();
        store
            .counts
            .insert(b"a/key:ghost", &3u64.to_be_bytes())
            .unwrap();
        store.by_owner.clear().unwrap();
        store.flush().await.unwrap();
        assert_eq!(store.count(JobState::Queued).unwrap(), 99);
    }
    let store = JobStore::open(&path).unwrap();
    assert_eq!(store.count(JobState::Queued).unwrap(), 3);
    assert_eq!(store.count(JobState::Failed).unwrap(), 1);
    assert_eq!(store.active_of(&alice).unwrap(), 3);
    assert_eq!(store.active_of(&Owner::new("key", "ghost")).unwrap(), 0);
    let (newest, total) = store.owner_created_since(&alice, 0, 10).unwrap();
    assert_eq!(newest, [4000, 3000, 2000, 1000]);
    assert_eq!(total, 4);
    // Now they agree: nothing to rebuild.
    assert_eq!(store.check_counts().unwrap(), counts::CountCheck::default());
}

#[tokio::test]
async fn an_owners_window_reads_newest_first_and_only_that_owner() {
    let (_dir, store) = open();
    let (alice, bob) = (Owner::new("key", "alice"), Owner::new("key", "alicia"));
    for t in 1..=6u64 {
        store.put(&owned(t * 1000, &alice)).await.unwrap();
        store.put(&owned(t * 1000 + 1, &bob)).await.unwrap();
    }
    let (newest, total) = store.owner_created_since(&alice, 2500, 2).unwrap();
    assert_eq!(newest, [6000, 5000]);
    assert_eq!(total, 4);
    let (newest, total) = store.owner_created_since(&bob, 0, 100).unwrap();
    assert_eq!(newest.len(), 6);
    assert_eq!(total, 6);
    assert_eq!(
        store.owner_created_since(&alice, 7000, 5).unwrap(),
        (vec![], 0)
    );
}

#[tokio::test]
async fn a_listing_filtered_by_state_pages_through_that_state_only() {
    let (_dir, store) = open();
    let mut queued = Vec::new();
    for t in 1..=9u64 {
        let r = record_at(t * 1000, None);
        store.put(&r).await.unwrap();
        if t % 3 == 0 {
            store
                .cas(&r.id, JobState::Queued, None, |r| {
                    r.state = JobState::Cancelled
                })
                .await
                .unwrap();
        } else {
            queued.push(r.id);
        }
    }
    queued.reverse(); // newest first
    let filter = ListFilter {
        state: Some(JobState::Queued),
        ..ListFilter::default()
    };
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store.list(filter, cursor.as_deref(), 4).unwrap().unwrap();
        assert!(page.jobs.iter().all(|r| r.state == JobState::Queued));
        seen.extend(page.jobs.iter().map(|r| r.id.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, queued);
    // A cursor of an unfiltered page continues a filtered listing at the same place.
    let all = store.list(ListFilter::default(), None, 2).unwrap().unwrap();
    let rest = store
        .list(filter, all.next_cursor.as_deref(), 10)
        .unwrap()
        .unwrap();
    let rest: Vec<JobId> = rest.jobs.into_iter().map(|r| r.id).collect();
    assert_eq!(rest, queued[1..]);
}
