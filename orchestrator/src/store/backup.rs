//! A consistent copy of the data folder — the sled job store and every file beside it (uploads,
//! results, API keys) — for `refrain backup` and for a running service's backup hook.
//!
//! sled lets only one process open a database, and copying its files while it writes gives a
//! torn copy. So the copy is made through the open store: every tree is read into a fresh sled
//! database while the store's writer lock is held, so no state change (a record with its
//! indexes and its outbox event, one transaction) is half in the copy. The files are copied
//! after the store: a result is written before its record says the job succeeded, so every
//! record in the copy finds its files (a file newer than the copy is an orphan the next
//! retention sweep ignores; one retention deleted in between belonged to an expired record).
//! Files still being written (`*.partial`, `*.tmp`) are left out.

use std::path::{Path, PathBuf};

use super::{JobStore, StoreError};

/// The name of the store inside a data folder and inside a backup.
pub const STORE_DIR: &str = "jobs.sled";
/// The description written into every backup.
pub const MANIFEST: &str = "BACKUP.json";
/// Where a running service puts the backups it is asked for (`<data_dir>/backups/`); never
/// part of a backup itself.
pub const BACKUPS_DIR: &str = "backups";

/// What can go wrong making a backup.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("backup destination {0} exists and is not empty")]
    NotEmpty(String),
    #[error("backup: {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What a backup holds.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BackupSummary {
    /// Milliseconds since the epoch when the store was copied.
    pub created_ms: u64,
    /// Entries copied per sled tree.
    pub trees: Vec<(String, usize)>,
    /// Jobs in the copy.
    pub jobs: usize,
    /// Files copied beside the store, and their bytes.
    pub files: usize,
    pub bytes: u64,
}

impl JobStore {
    /// Copies every tree of the store into a new sled database at `dest` (which must not
    /// exist) under the writer lock, and flushes it. Returns the entries per tree.
    pub fn copy_to(&self, dest: &Path) -> Result<Vec<(String, usize)>, StoreError> {
        let copy = sled::Config::new().path(dest).open()?;
        let _writer = self.lock();
        self.db.flush()?;
        let mut trees = Vec::new();
        for name in self.db.tree_names() {
            let from = self.db.open_tree(&name)?;
            let to = copy.open_tree(&name)?;
            let mut n = 0;
            for entry in from.iter() {
                let (k, v) = entry?;
                to.insert(k, v)?;
                n += 1;
            }
            trees.push((String::from_utf8_lossy(&name).into_owned(), n));
        }
        copy.flush()?;
        Ok(trees)
    }
}

/// Backs up the data folder `data_dir` whose store is `store` into `dest` (created; it must
/// not exist or be empty): `dest/jobs.sled`, the other files of `data_dir` under the same
/// names, and `dest/BACKUP.json`. A backup is restored by making it the data folder again.
pub fn backup(
    store: &JobStore,
    data_dir: &Path,
    dest: &Path,
) -> Result<BackupSummary, BackupError> {
    if dest.exists() {
        let mut entries = std::fs::read_dir(dest).map_err(io(dest))?;
        if entries.next().is_some() {
            return Err(BackupError::NotEmpty(dest.display().to_string()));
        }
    }
    std::fs::create_dir_all(dest).map_err(io(dest))?;
    let created_ms = super::now_ms();
    let trees = store.copy_to(&dest.join(STORE_DIR))?;
    let mut summary = BackupSummary {
        created_ms,
        jobs: store.jobs.len(),
        trees,
        ..BackupSummary::default()
    };
    copy_files(data_dir, dest, &mut summary)?;
    let manifest = dest.join(MANIFEST);
    let json = serde_json::to_vec_pretty(&summary).expect("a summary serialises");
    std::fs::write(&manifest, json).map_err(io(&manifest))?;
    Ok(summary)
}

/// Copies everything under `from` but the store (and files being written) into `to`.
fn copy_files(from: &Path, to: &Path, summary: &mut BackupSummary) -> Result<(), BackupError> {
    let mut stack: Vec<PathBuf> = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = from.join(&rel);
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let name = entry.file_name();
            let rel = rel.join(&name);
            if rel == Path::new(STORE_DIR)
                || rel == Path::new(MANIFEST)
                || rel == Path::new(BACKUPS_DIR)
            {
                continue;
            }
            let text = name.to_string_lossy();
            if text.ends_with(".partial") || text.ends_with(".tmp") {
                continue;
            }
            let src = from.join(&rel);
            let kind = entry.file_type().map_err(io(&src))?;
            if kind.is_dir() {
                let dst = to.join(&rel);
                std::fs::create_dir_all(&dst).map_err(io(&dst))?;
                stack.push(rel);
            } else if kind.is_file() {
                let dst = to.join(&rel);
                match std::fs::copy(&src, &dst) {
                    Ok(bytes) => {
                        summary.files += 1;
                        summary.bytes += bytes;
                    }
                    // Deleted since it was listed (retention): nothing to keep.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io(&src)(e)),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_every_tree_and_file_and_refuses_a_used_destination() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("outputs/album")).unwrap();
        std::fs::write(data.join("outputs/album/a.wav"), b"RIFF").unwrap();
        std::fs::write(data.join("outputs/b.wav.partial"), b"half").unwrap();
        std::fs::write(data.join("api-keys.json"), b"{}").unwrap();
        let store = JobStore::open(&data.join(STORE_DIR)).unwrap();
        store
            .db()
            .open_tree("queue")
            .unwrap()
            .insert("k", "v")
            .unwrap();
        store.db().insert("top", "level").unwrap();

        let dest = dir.path().join("backup");
        let summary = backup(&store, &data, &dest).unwrap();
        assert_eq!((summary.files, summary.bytes), (2, 6));
        assert!(dest.join("outputs/album/a.wav").is_file());
        assert!(!dest.join("outputs/b.wav.partial").exists());
        assert!(dest.join(MANIFEST).is_file());
        drop(store);
        let copy = sled::open(dest.join(STORE_DIR)).unwrap();
        assert_eq!(
            copy.open_tree("queue").unwrap().get("k").unwrap().unwrap(),
            "v"
        );
        assert_eq!(copy.get("top").unwrap().unwrap(), "level");
        drop(copy);

        let store = JobStore::open(&data.join(STORE_DIR)).unwrap();
        let e = backup(&store, &data, &dest).unwrap_err();
        assert!(matches!(e, BackupError::NotEmpty(_)), "{e}");
    }

    /// A backup taken while jobs change holds whole state changes only: in the copy every
    /// record has its state index entry and its outbox up to its last event, no further, and
    /// the counters and the lookup index agree with the records (the start-up checks find
    /// nothing to repair). Without the writer lock around the copy, the outbox (copied after
    /// the records) holds events the copied records do not know.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_backup_taken_during_writes_holds_whole_state_changes() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;

        use protocol::JobState;

        use crate::store::tests::{progress, record_at};

        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let store = JobStore::open(&data.join(STORE_DIR)).unwrap();
        // 200 running jobs, half of them cancelled, then step events on the running ones as
        // fast as they go (not flushed, as progress is) while the backup copies.
        let mut running = Vec::new();
        for n in 0..200u64 {
            let r = record_at(1_000_000 + n, None);
            store.put(&r).await.unwrap();
            let start = |r: &mut protocol::JobRecord| r.state = JobState::Running;
            store
                .cas(&r.id, JobState::Queued, Some(1), start)
                .await
                .unwrap();
            if n % 2 == 0 {
                let cancel = |r: &mut protocol::JobRecord| r.state = JobState::Cancelled;
                store
                    .cas(&r.id, JobState::Running, Some(1), cancel)
                    .await
                    .unwrap();
            } else {
                running.push(r.id);
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let id = &running[n as usize % running.len()];
                    let step = (n / running.len() as u64) as u32 + 1;
                    assert!(store.set_progress(id, 1, &progress(step)).unwrap());
                    n += 1;
                }
                n
            })
        };
        while store.events.len() < 1_000 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        let dest = dir.path().join("backup");
        let (s, d, to) = (store.clone(), data.clone(), dest.clone());
        let summary = tokio::task::spawn_blocking(move || backup(&s, &d, &to))
            .await
            .unwrap()
            .unwrap();
        stop.store(true, Ordering::Relaxed);
        let steps = writer.join().unwrap();
        assert!(steps > 0);
        drop(store);

        let copy = JobStore::unchecked(sled::open(dest.join(STORE_DIR)).unwrap()).unwrap();
        let records: Vec<_> = copy.scan().map(|r| r.unwrap()).collect();
        assert_eq!(records.len(), 200);
        assert!(summary
            .trees
            .iter()
            .any(|(name, n)| name == "jobs" && *n == records.len()));
        for state in JobState::ALL {
            let mut want: Vec<_> = records
                .iter()
                .filter(|r| r.state == state)
                .map(|r| r.id.clone())
                .collect();
            want.sort();
            let mut got = copy.ids_in_state(state).unwrap();
            got.sort();
            assert_eq!(got, want, "state index of {state}");
        }
        for r in &records {
            let events = copy.events_after(&r.id, 0).unwrap();
            let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
            assert_eq!(
                seqs,
                (1..=r.event_seq).collect::<Vec<_>>(),
                "outbox of {}",
                r.id
            );
            assert_eq!(
                events.last().unwrap().state,
                r.state,
                "last event of {}",
                r.id
            );
        }
        let counts = copy.check_counts().unwrap();
        assert!(
            !counts.counters_rebuilt && !counts.owner_index_rebuilt,
            "{counts:?}"
        );
        assert!(
            !copy.check_lookup().unwrap(),
            "the lookup index needed a rebuild"
        );
    }
}
