//! Scheduled batch generation: cron schedules that fire exactly once per fire time, across
//! restarts (documented in `docs/schedules.md`).
//!
//! * [`spec`] — what a schedule is (config file `[[schedules]]` and `/api/v1/schedules` share
//!   the shape), its checks, and the batch a fire makes;
//! * [`when`] — cron expressions (crontab's 5 fields too) in IANA time zones, daylight saving,
//!   and the catch-up policy after downtime;
//! * [`runner`] — the scheduler task that owns the schedules and fires them through the core
//!   (idempotency keys `schedule:<name>:<fire ms>:<item>` make each job exactly once);
//! * [`store`] — the durable state (last fire time, fire in progress, pause) and the schedules
//!   made through the API;
//! * [`manifest`] — each fire's `manifest.json` / `manifest.csv`;
//! * [`commands`] — what the API asks of the scheduler ([`SchedulerHandle`]).

mod commands;
pub mod manifest;
pub mod runner;
pub mod spec;
pub mod store;
pub mod when;

use serde::Serialize;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use utoipa::ToSchema;

pub use self::runner::Scheduler;
pub use self::spec::{Item, Origin, ScheduleSpec, WebhookSpec};
pub use self::when::CatchUp;

#[derive(Debug, Error)]
pub enum ScheduleError {
    /// A schedule that cannot be (the message names the schedule and field).
    #[error("{0}")]
    Invalid(String),
    #[error("no schedule {0}")]
    NotFound(String),
    #[error("schedule {0} already exists")]
    Exists(String),
    /// A schedule of the config file cannot be changed through the API.
    #[error("schedule {0} is defined in the config file: change it there")]
    ReadOnly(String),
    #[error("schedule store: {0}")]
    Store(#[from] sled::Error),
    #[error(transparent)]
    Job(#[from] crate::error::OrchestratorError),
    /// The scheduler is not running (the service is stopping).
    #[error("the scheduler is not running")]
    Stopped,
}

/// A schedule as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ScheduleView {
    #[serde(flatten)]
    pub spec: ScheduleSpec,
    pub origin: Origin,
    pub paused: bool,
    /// The latest fire time fired, in the schedule's zone.
    pub last_fired: Option<String>,
    /// A fire time whose jobs are being created (waiting for room under `max_in_flight`).
    pub firing: Option<String>,
    pub fires: u64,
    pub missed: u64,
    /// The next fire times, in the schedule's zone.
    pub next: Vec<String>,
}

/// What a fire asked for through the API made.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Fired {
    pub schedule: String,
    /// The fire time (now), in the schedule's zone.
    pub fire_time: String,
    /// The jobs created so far (the rest follow as room frees under `max_in_flight`).
    pub jobs: Vec<String>,
    /// The output folder of this fire, under the output root.
    pub output_dir: String,
}

type Reply<T> = oneshot::Sender<Result<T, ScheduleError>>;

/// Which schedules an API caller may see and change. A schedule of another owner is answered
/// as if it did not exist ([`ScheduleError::NotFound`]), so names do not leak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Every schedule: no API keys are configured, so every caller is alike (`anonymous`).
    All,
    /// The config file's schedules (read, pause, resume, run) and those made through the API
    /// by this owner (`key:<name>`).
    Owner(String),
}

impl Access {
    /// Whether a schedule of `origin` owned by `owner` is this caller's to see and change.
    pub fn allows(&self, origin: Origin, owner: Option<&str>) -> bool {
        match self {
            Access::All => true,
            Access::Owner(me) => origin == Origin::Config || owner == Some(me.as_str()),
        }
    }
}

/// A request to the scheduler task.
pub enum Command {
    List {
        next: usize,
        access: Access,
        reply: Reply<Vec<ScheduleView>>,
    },
    Get {
        name: String,
        next: usize,
        access: Access,
        reply: Reply<ScheduleView>,
    },
    Create {
        spec: ScheduleSpec,
        reply: Reply<ScheduleView>,
    },
    Update {
        name: String,
        spec: ScheduleSpec,
        access: Access,
        reply: Reply<ScheduleView>,
    },
    Delete {
        name: String,
        access: Access,
        reply: Reply<()>,
    },
    Pause {
        name: String,
        paused: bool,
        access: Access,
        reply: Reply<ScheduleView>,
    },
    Run {
        name: String,
        access: Access,
        reply: Reply<Fired>,
    },
}

/// The API's way to the scheduler task. Cheap to clone.
#[derive(Clone)]
pub struct SchedulerHandle {
    tx: mpsc::Sender<Command>,
}

impl std::fmt::Debug for SchedulerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SchedulerHandle")
    }
}

/// A handle and the inbox of the scheduler that serves it.
pub fn channel() -> (SchedulerHandle, mpsc::Receiver<Command>) {
    let (tx, rx) = mpsc::channel(64);
    (SchedulerHandle { tx }, rx)
}

impl SchedulerHandle {
    /// Sends the command `make` builds and waits for the answer.
    pub async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, ScheduleError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| ScheduleError::Stopped)?;
        answer.await.map_err(|_| ScheduleError::Stopped)?
    }
}
