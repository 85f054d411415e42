//! Tests of the job store: CAS semantics, indexes, recovery and durability across reopen. This
//! file holds the shared fixtures (records, the raw-operation shims, a store in a temp dir); the
//! tests are split by concern into the submodules.

mod counters;
mod indexes;
mod lookup;
mod persistence;
mod recent;
mod transitions;

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
        init: None,
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

    /// This store with room for `n` records in memory ([`super::recent`]).
    pub(crate) fn keeping(mut self, n: usize) -> JobStore {
        self.recent = Arc::new(super::recent::Recent::new(n));
        self
    }

    pub(crate) async fn recover(
        &self,
        max_attempts: u32,
        max_interruptions: u32,
    ) -> Result<Vec<JobRecord>, StoreError> {
        let lifecycle = crate::jobs::Lifecycle::new(
            self.clone(),
            crate::jobs::Hub::new(),
            crate::metrics::Metrics::new(),
            max_attempts,
        )
        .with_max_interruptions(max_interruptions);
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
        interruptions: 0,
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
        client_data: None,
        title: None,
    }
}

pub(crate) fn progress(step: u32) -> ProgressEvent {
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
