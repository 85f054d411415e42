//! Retention: finished jobs do not pile up forever. A sweeper deletes terminal jobs older than
//! the configured age — their result file, their uploads, then their record — so that the data
//! directory stays bounded without an operator.
//!
//! Order matters for crashes: files go first and the record last, so a sweep interrupted
//! half-way leaves a record whose files are (partly) gone, and the next sweep finishes the job
//! (deleting a missing file is fine). A job is kept, for a later sweep, when a file of it could
//! not be deleted, when a queued or running edit job still starts from its result, and an
//! upload is kept while any job that stays refers to it.
//!
//! A sweep costs what it deletes, not what the store holds: the candidates are one range of
//! the store's finish-time index, and who else uses a candidate's uploads or result is one
//! range each of the same lookup index (`crate::store::JobStore::finished_before`,
//! `upload_users`, `output_users`).

use std::collections::HashSet;
use std::time::Duration;

use protocol::{JobId, JobRecord, SongRef, StyleSpec};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::blobs::{BlobError, BlobStore};
use crate::jobs::Lifecycle;
use crate::outputs::{OutputError, OutputStore};
use crate::store::{now_ms, StoreError};

/// Deletes terminal jobs that finished more than `max_age` ago, with their result file and
/// uploads. Returns how many jobs were deleted. Problems with single jobs are logged and those
/// jobs kept for the next sweep; only failing to list the jobs is an error.
pub async fn sweep(
    lifecycle: &Lifecycle,
    blobs: &BlobStore,
    outputs: &OutputStore,
    max_age: Duration,
) -> Result<usize, StoreError> {
    let store = lifecycle.store();
    let max_age_ms = u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX);
    let before = now_ms().saturating_sub(max_age_ms);
    let candidates = store.finished_before(before)?;
    if candidates.is_empty() {
        return Ok(0);
    }
    let doomed: HashSet<JobId> = candidates.iter().map(|r| r.id.clone()).collect();

    // What the jobs that stay still need, from the lookup index: of each candidate's uploads,
    // those another job that stays uses; and the candidates whose result a job that is not
    // finished starts from. Only the candidates' own entries are read, never every job.
    let mut kept_uploads = HashSet::new();
    let mut needed_outputs = HashSet::new();
    for record in &candidates {
        for blob in uploads(record) {
            if kept_uploads.contains(blob) {
                continue;
            }
            if store
                .upload_users(blob)?
                .iter()
                .any(|user| !doomed.contains(user))
            {
                kept_uploads.insert(blob.to_string());
            }
        }
        for user in store.output_users(&record.id)? {
            let pending = match store.get(&user) {
                Ok(Some(r)) => !r.state.is_terminal(),
                Ok(None) => false,
                Err(e) => {
                    tracing::warn!(job = %user, error = %e, "retention: an unreadable job uses a result; keeping it");
                    true
                }
            };
            if pending {
                needed_outputs.insert(record.id.clone());
                break;
            }
        }
    }

    let mut deleted = 0;
    for record in &candidates {
        if needed_outputs.contains(&record.id) {
            tracing::debug!(job = %record.id, "retention: kept, a pending edit or init job starts from its result");
            continue;
        }
        if !delete_files(record, blobs, outputs, &kept_uploads).await {
            continue;
        }
        match lifecycle.expire(record).await {
            Ok(()) | Err(StoreError::NotFound(_)) => deleted += 1,
            Err(e) => {
                tracing::warn!(job = %record.id, error = %e, "retention: could not delete the job record")
            }
        }
    }
    Ok(deleted)
}

/// The upload blobs a job refers to.
fn uploads(record: &JobRecord) -> impl Iterator<Item = &str> {
    let style = match &record.spec.style {
        StyleSpec::Upload(blob) => Some(blob.as_str()),
        StyleSpec::Prompt(_) => None,
    };
    let songs = record.spec.songs().filter_map(|song| match song {
        SongRef::Upload(blob) => Some(blob.as_str()),
        SongRef::Output(_) => None,
    });
    style.into_iter().chain(songs)
}

/// Deletes a job's result file(s) and its uploads that no remaining job uses. False if
/// something that exists could not be deleted (the job is then kept).
async fn delete_files(
    record: &JobRecord,
    blobs: &BlobStore,
    outputs: &OutputStore,
    kept_uploads: &HashSet<String>,
) -> bool {
    let mut ok = true;
    // Every name the job's files can have (variants × formats, transcoded copies included),
    // then whatever its result lists besides.
    let mut files = crate::jobs::results::all_file_names(record);
    if let Some(result) = &record.result {
        let all = std::iter::once(&result.file).chain(result.files.iter().map(|f| &f.file));
        for file in all {
            if !files.contains(file) {
                files.push(file.clone());
            }
        }
    }
    for file in &files {
        match outputs.delete(file).await {
            Ok(()) => {}
            // A name the output store refuses cannot be a file it wrote: nothing to delete.
            Err(e @ (OutputError::BadName(_) | OutputError::BadSubdir(_))) => {
                tracing::warn!(job = %record.id, file = %file, error = %e, "retention: ignoring an invalid result name");
            }
            Err(e) => {
                tracing::warn!(job = %record.id, file = %file, error = %e, "retention: could not delete a result file");
                ok = false;
            }
        }
    }
    for blob in uploads(record).filter(|b| !kept_uploads.contains(*b)) {
        match blobs.delete(blob).await {
            Ok(()) | Err(BlobError::NotFound(_)) => {}
            Err(e @ BlobError::BadId(_)) => {
                tracing::warn!(job = %record.id, blob, error = %e, "retention: ignoring an invalid upload id");
            }
            Err(e) => {
                tracing::warn!(job = %record.id, blob, error = %e, "retention: could not delete an upload");
                ok = false;
            }
        }
    }
    ok
}

/// Runs [`sweep`] now and then every `interval` until `cancel` fires, logging what it did and
/// any error.
pub fn spawn(
    tracker: &TaskTracker,
    cancel: CancellationToken,
    lifecycle: Lifecycle,
    blobs: BlobStore,
    outputs: OutputStore,
    max_age: Duration,
    interval: Duration,
) {
    spawn_every(tracker, cancel, interval, move || {
        let (lifecycle, blobs, outputs) = (lifecycle.clone(), blobs.clone(), outputs.clone());
        async move {
            // Every step of a sweep can be interrupted safely (files first, record last).
            match sweep(&lifecycle, &blobs, &outputs, max_age).await {
                Ok(0) => tracing::debug!("retention sweep: nothing to delete"),
                Ok(n) => tracing::info!(deleted = n, "retention sweep deleted old jobs"),
                Err(e) => tracing::warn!(error = %e, "retention sweep failed"),
            }
        }
    });
}

/// The periodic clean-up loop: runs `round` now and then every `interval` (a late round
/// delays the next, none is skipped or doubled) until `cancel` fires, which also stops a
/// round in progress, so a round must be safe to interrupt at any await.
pub fn spawn_every<F, Fut>(
    tracker: &TaskTracker,
    cancel: CancellationToken,
    interval: Duration,
    mut round: F,
) where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tracker.spawn(async move {
        let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(1)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = ticks.tick() => {}
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                () = round() => {}
            }
        }
        tracing::debug!("periodic clean-up stopped");
    });
}

#[cfg(test)]
mod tests {
    use protocol::{EditSpec, JobResult, JobState};

    use super::*;
    use crate::store::tests::record_at;
    use crate::store::JobStore;

    struct Fixture {
        _dir: tempfile::TempDir,
        store: JobStore,
        blobs: BlobStore,
        outputs: OutputStore,
    }

    fn lifecycle(f: &Fixture) -> Lifecycle {
        Lifecycle::new(
            f.store.clone(),
            crate::jobs::Hub::new(),
            crate::metrics::Metrics::new(),
            3,
        )
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        Fixture {
            store: JobStore::open(&dir.path().join("jobs.sled")).unwrap(),
            blobs: BlobStore::open(&dir.path().join("uploads")).unwrap(),
            outputs: OutputStore::open(&dir.path().join("outputs")).unwrap(),
            _dir: dir,
        }
    }

    /// Inserts a record and moves it to `state`; terminal ones finish at `finished_ms`.
    async fn job(f: &Fixture, record: JobRecord, state: JobState, finished_ms: u64) -> JobRecord {
        f.store.put(&record).await.unwrap();
        let id = record.id.clone();
        if state != JobState::Queued {
            f.store
                .cas(&id, JobState::Queued, None, |r| r.state = JobState::Running)
                .await
                .unwrap();
        }
        if state.is_terminal() {
            let file = OutputStore::relative(record.spec.output_subdir.as_deref(), &id);
            if state == JobState::Succeeded {
                f.outputs.write(&file, b"wav").await.unwrap();
            }
            f.store
                .cas(&id, JobState::Running, None, move |r| {
                    r.state = state;
                    r.finished_ms = Some(finished_ms);
                    if state == JobState::Succeeded {
                        r.result = Some(JobResult {
                            file,
                            bytes: 3,
                            duration_seconds: 95.0,
                            attempt: 1,
                            files: Vec::new(),
                        });
                    }
                })
                .await
                .unwrap();
        }
        f.store.get(&id).unwrap().unwrap()
    }

    fn with_upload(mut record: JobRecord, blob: &str) -> JobRecord {
        record.spec.style = StyleSpec::Upload(blob.to_string());
        record
    }

    #[tokio::test]
    async fn deletes_old_finished_jobs_and_their_files() {
        let f = fixture();
        let day = 24 * 3600 * 1000;
        let old = now_ms() - 10 * day;
        let blob_old = f.blobs.put(b"ref", "wav").await.unwrap();
        let blob_shared = f.blobs.put(b"ref2", "mp3").await.unwrap();
        let blob_song = f.blobs.put(b"song", "flac").await.unwrap();

        let old_done = job(
            &f,
            with_upload(record_at(old, Some("a/b")), &blob_old),
            JobState::Succeeded,
            old + 1,
        )
        .await;
        let mut edit = record_at(old, None);
        edit.spec.edit = Some(EditSpec {
            song: SongRef::Upload(blob_song.clone()),
            segments: vec![(0.0, 10.0)],
        });
        let old_failed = job(&f, edit, JobState::Failed, old + 2).await;
        let old_cancelled = job(
            &f,
            with_upload(record_at(old, None), &blob_shared),
            JobState::Cancelled,
            old + 3,
        )
        .await;
        // Kept: still queued / running although created long ago, recently finished.
        let queued = job(
            &f,
            with_upload(record_at(old, None), &blob_shared),
            JobState::Queued,
            0,
        )
        .await;
        let running = job(&f, record_at(old, None), JobState::Running, 0).await;
        let recent = job(&f, record_at(old, None), JobState::Succeeded, now_ms()).await;
        // Kept: an old result a queued edit job starts from.
        let source = job(&f, record_at(old, None), JobState::Succeeded, old + 4).await;
        let mut pending_edit = record_at(now_ms(), None);
        pending_edit.spec.edit = Some(EditSpec {
            song: SongRef::Output(source.id.clone()),
            segments: vec![(0.0, 1.0)],
        });
        let pending_edit = job(&f, pending_edit, JobState::Queued, 0).await;

        let n = sweep(
            &lifecycle(&f),
            &f.blobs,
            &f.outputs,
            Duration::from_secs(24 * 3600),
        )
        .await
        .unwrap();
        assert_eq!(n, 3);
        for gone in [&old_done, &old_failed, &old_cancelled] {
            assert_eq!(f.store.get(&gone.id).unwrap(), None);
        }
        for kept in [&queued, &running, &recent, &source, &pending_edit] {
            assert!(f.store.get(&kept.id).unwrap().is_some(), "{}", kept.id);
        }
        let files: Vec<String> = f
            .outputs
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(files.len(), 2);
        assert!(files.contains(&recent.id.file_name()) && files.contains(&source.id.file_name()));
        assert!(matches!(
            f.blobs.read(&blob_old).await,
            Err(BlobError::NotFound(_))
        ));
        assert!(matches!(
            f.blobs.read(&blob_song).await,
            Err(BlobError::NotFound(_))
        ));
        assert_eq!(
            f.blobs.read(&blob_shared).await.unwrap(),
            b"ref2",
            "still used by a queued job"
        );

        // Nothing more to do; and a job whose last reference goes away is swept later.
        assert_eq!(
            sweep(
                &lifecycle(&f),
                &f.blobs,
                &f.outputs,
                Duration::from_secs(24 * 3600)
            )
            .await
            .unwrap(),
            0
        );
        f.store
            .cas(&pending_edit.id, JobState::Queued, None, |r| {
                r.state = JobState::Cancelled
            })
            .await
            .unwrap();
        assert_eq!(
            sweep(
                &lifecycle(&f),
                &f.blobs,
                &f.outputs,
                Duration::from_secs(24 * 3600)
            )
            .await
            .unwrap(),
            1
        );
        assert_eq!(f.store.get(&source.id).unwrap(), None);
    }

    #[tokio::test]
    async fn the_sweeper_runs_until_cancelled() {
        let f = fixture();
        let old = now_ms() - 1_000_000;
        let done = job(&f, record_at(old, None), JobState::Failed, old).await;
        let tracker = TaskTracker::new();
        let cancel = CancellationToken::new();
        spawn(
            &tracker,
            cancel.clone(),
            lifecycle(&f),
            f.blobs.clone(),
            f.outputs.clone(),
            Duration::from_secs(1),
            Duration::from_millis(10),
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while f.store.get(&done.id).unwrap().is_some() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the sweeper never ran"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cancel.cancel();
        tracker.close();
        tokio::time::timeout(Duration::from_secs(5), tracker.wait())
            .await
            .unwrap();
    }
}
