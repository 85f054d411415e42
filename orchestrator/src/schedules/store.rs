//! The durable side of schedules, in the job store's sled database:
//!
//! * `schedule_state`: `<name>` → [`ScheduleState`]: the last fire time done, the fire time
//!   being fired (set, flushed, before its first job is admitted; cleared when its last job
//!   is), pause, counters, the fires whose manifest still shows unfinished jobs. A restart
//!   resumes the fire in progress; the core's idempotency keys make its jobs exactly once.
//! * `schedules`: `<name>` → the [`ScheduleSpec`] of a schedule made through the API (the
//!   config file's are read from the file).

use serde::{Deserialize, Serialize};

use super::spec::ScheduleSpec;

/// Where a schedule stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScheduleState {
    /// The latest fire time fully fired or deliberately skipped (Unix ms); fire times after it
    /// are due. A new schedule starts from its creation.
    pub last_fired_ms: u64,
    /// A fire time whose jobs are being created.
    #[serde(default)]
    pub firing_ms: Option<u64>,
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub fires: u64,
    #[serde(default)]
    pub missed: u64,
    /// Fire times (Unix ms) whose manifest still shows an unfinished job, oldest first: brought
    /// up to date when the scheduler starts, since a job can end while no scheduler listens.
    #[serde(default)]
    pub open_fires: Vec<u64>,
}

#[derive(Clone)]
pub struct ScheduleStore {
    db: sled::Db,
    state: sled::Tree,
    specs: sled::Tree,
}

fn corrupt(name: &[u8], e: serde_json::Error) -> sled::Error {
    sled::Error::Unsupported(format!(
        "schedule entry {} does not decode: {e}",
        String::from_utf8_lossy(name)
    ))
}

impl ScheduleStore {
    pub fn open(db: &sled::Db) -> sled::Result<ScheduleStore> {
        Ok(ScheduleStore {
            db: db.clone(),
            state: db.open_tree("schedule_state")?,
            specs: db.open_tree("schedules")?,
        })
    }

    pub fn state(&self, name: &str) -> sled::Result<Option<ScheduleState>> {
        self.state
            .get(name.as_bytes())?
            .map(|v| serde_json::from_slice(&v).map_err(|e| corrupt(name.as_bytes(), e)))
            .transpose()
    }

    /// Stores `state` and flushes.
    pub async fn put_state(&self, name: &str, state: &ScheduleState) -> sled::Result<()> {
        let bytes = serde_json::to_vec(state).expect("a schedule state encodes");
        self.state.insert(name.as_bytes(), bytes)?;
        self.db.flush_async().await?;
        Ok(())
    }

    /// [`ScheduleStore::put_state`] without an executor, for the scheduler's start.
    pub fn put_state_blocking(&self, name: &str, state: &ScheduleState) -> sled::Result<()> {
        let bytes = serde_json::to_vec(state).expect("a schedule state encodes");
        self.state.insert(name.as_bytes(), bytes)?;
        self.db.flush()?;
        Ok(())
    }

    /// The schedules made through the API.
    pub fn api_specs(&self) -> sled::Result<Vec<ScheduleSpec>> {
        self.specs
            .iter()
            .map(|item| {
                let (k, v) = item?;
                serde_json::from_slice(&v).map_err(|e| corrupt(&k, e))
            })
            .collect()
    }

    /// Stores an API schedule and flushes.
    pub async fn put_spec(&self, spec: &ScheduleSpec) -> sled::Result<()> {
        let bytes = serde_json::to_vec(spec).expect("a schedule encodes");
        self.specs.insert(spec.name.as_bytes(), bytes)?;
        self.db.flush_async().await?;
        Ok(())
    }

    /// Removes an API schedule and its state; flushes.
    pub async fn remove(&self, name: &str) -> sled::Result<()> {
        self.specs.remove(name.as_bytes())?;
        self.state.remove(name.as_bytes())?;
        self.db.flush_async().await?;
        Ok(())
    }
}
