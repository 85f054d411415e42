//! The scheduler: the one task that owns the schedules, fires them and keeps their manifests.
//!
//! [`Scheduler::tick`] does everything due at a given instant, so tests drive it with their own
//! clock; [`Scheduler::spawn`] runs it on the system clock, waking for the next fire time, for
//! API commands ([`super::SchedulerHandle`]) and for job events (manifests, and fires waiting
//! for room under `max_in_flight`).
//!
//! Firing a fire time: its time is recorded as `firing` (flushed), then each item of the batch
//! is admitted through the core with the idempotency key `schedule:<name>:<fire ms>:<item>`,
//! as the schedule's owner, at batch priority, under the quota `max_in_flight`; when the quota
//! is reached the fire waits and goes on as jobs finish. Once every item is admitted the fire
//! time becomes `last_fired` and the manifest is written. A crash at any point resumes the fire
//! at the next start, and the core answers an already-admitted item with its job: each job
//! exists once (as long as the restart comes within `limits.idempotency_hours`). The manifest
//! is rewritten as the fire's jobs end, across restarts too ([`manifests`]).

mod manifests;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use prometheus::{IntCounterVec, Opts};
use protocol::{Priority, Source};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::manifest::{Manifest, Row};
use super::spec::{BatchItem, Origin, ScheduleSpec};
use super::store::{ScheduleState, ScheduleStore};
use super::when::{due, Timing};
use super::{Command, ScheduleError, ScheduleView};
use crate::admission::{Draft, StyleInput};
use crate::app::{App, JobMeta};
use crate::error::OrchestratorError;
use crate::jobs::limits::Quota;
use crate::store::now_ms;

pub(super) struct Entry {
    pub spec: ScheduleSpec,
    pub timing: Timing,
    pub origin: Origin,
    pub state: ScheduleState,
    /// The fire in progress: its time, batch and the next item to admit.
    pub pending: Option<Pending>,
    /// The jobs of the latest completed fire.
    pub last_fire_jobs: Vec<String>,
}

pub(super) struct Pending {
    pub fire: DateTime<Utc>,
    pub batch: Vec<BatchItem>,
    pub next: usize,
    pub rows: Vec<Row>,
}

/// Counters per schedule (`refrain_schedule_*_total{schedule}`), part of the service's
/// [`crate::metrics::Metrics`].
#[derive(Clone)]
pub struct ScheduleCounters {
    fires: IntCounterVec,
    missed: IntCounterVec,
    catch_ups: IntCounterVec,
    jobs: IntCounterVec,
}

impl Default for ScheduleCounters {
    fn default() -> Self {
        Self::new()
    }
}

impl ScheduleCounters {
    pub fn new() -> ScheduleCounters {
        let make = |name: &str, help: &str| {
            IntCounterVec::new(Opts::new(name, help), &["schedule"]).expect("valid metric")
        };
        ScheduleCounters {
            fires: make(
                "refrain_schedule_fires_total",
                "Fire times fired, per schedule.",
            ),
            missed: make(
                "refrain_schedule_missed_total",
                "Fire times dropped by the catch-up policy, per schedule.",
            ),
            catch_ups: make(
                "refrain_schedule_catch_ups_total",
                "Times missed fire times were fired after downtime, per schedule.",
            ),
            jobs: make(
                "refrain_schedule_jobs_total",
                "Jobs created by schedules, per schedule.",
            ),
        }
    }

    /// Registers the counters in `registry`.
    pub fn register(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        for c in [&self.fires, &self.missed, &self.catch_ups, &self.jobs] {
            registry.register(Box::new(c.clone()))?;
        }
        Ok(())
    }
}

/// The scheduler (see the module).
pub struct Scheduler {
    app: App,
    store: ScheduleStore,
    pub(super) entries: BTreeMap<String, Entry>,
    counters: ScheduleCounters,
    inbox: mpsc::Receiver<Command>,
}

impl Scheduler {
    /// The scheduler of `config` schedules (checked again) and of those made through the API,
    /// taking commands from `inbox`.
    pub fn new(
        app: App,
        config: &[ScheduleSpec],
        inbox: mpsc::Receiver<Command>,
    ) -> Result<Scheduler, ScheduleError> {
        let store = ScheduleStore::open(app.store().db())?;
        let mut scheduler = Scheduler {
            counters: app.metrics().schedules.clone(),
            app,
            store,
            entries: BTreeMap::new(),
            inbox,
        };
        for spec in config {
            scheduler.load(spec.clone(), Origin::Config)?;
        }
        for spec in scheduler.store.api_specs()? {
            if scheduler.entries.contains_key(&spec.name) {
                tracing::warn!(schedule = %spec.name, "a schedule of the config file has the name of one made through the API; the config file's is used");
                continue;
            }
            scheduler.load(spec, Origin::Api)?;
        }
        Ok(scheduler)
    }

    pub(super) fn load(&mut self, spec: ScheduleSpec, origin: Origin) -> Result<(), ScheduleError> {
        let timing = spec
            .check(origin == Origin::Config)
            .map_err(ScheduleError::Invalid)?;
        let state = match self.store.state(&spec.name)? {
            Some(state) => state,
            None => {
                // A new schedule (of the config file: the API stores its own) counts from now.
                // Stored at once, so that a restart before its first fire does not move its
                // start and silently drop the fire times in between.
                let state = ScheduleState {
                    last_fired_ms: now_ms(),
                    paused: spec.paused,
                    ..ScheduleState::default()
                };
                self.store.put_state_blocking(&spec.name, &state)?;
                state
            }
        };
        let pending = state.firing_ms.and_then(|ms| {
            let fire = DateTime::from_timestamp_millis(ms as i64)?;
            let batch = spec.batch().ok()?;
            Some(Pending {
                fire,
                batch,
                next: 0,
                rows: Vec::new(),
            })
        });
        self.entries.insert(
            spec.name.clone(),
            Entry {
                spec,
                timing,
                origin,
                state,
                pending,
                last_fire_jobs: Vec::new(),
            },
        );
        Ok(())
    }

    /// Runs on the system clock until `cancel`.
    pub fn spawn(mut self, tracker: &TaskTracker, cancel: CancellationToken) {
        tracker.spawn(async move {
            let mut events = self.app.lifecycle().hub().firehose();
            // Jobs that ended while no scheduler listened (subscribed first: none falls between).
            self.refresh_open_fires().await;
            loop {
                self.tick(Utc::now()).await;
                let wait = self
                    .next_wake()
                    .map(|t| (t - Utc::now()).to_std().unwrap_or_default())
                    .unwrap_or(std::time::Duration::from_secs(60))
                    .min(std::time::Duration::from_secs(60));
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    Some(command) = self.inbox.recv() => self.command(command, Utc::now()).await,
                    event = events.recv() => match event {
                        Ok(e) => self.on_event(&e).await,
                        Err(broadcast::error::RecvError::Lagged(_)) => self.refresh_open_fires().await,
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        });
    }

    /// When something is next due (a fire time, or a waiting fire's retry).
    fn next_wake(&self) -> Option<DateTime<Utc>> {
        self.entries
            .values()
            .filter(|e| !e.state.paused)
            .filter_map(|e| {
                if e.pending.is_some() {
                    return Some(Utc::now() + chrono::Duration::seconds(5));
                }
                let last = DateTime::from_timestamp_millis(e.state.last_fired_ms as i64)?;
                e.timing.next_after(last)
            })
            .min()
    }

    /// Everything due at `now`: fires in progress go on, due fire times start.
    pub async fn tick(&mut self, now: DateTime<Utc>) {
        let names: Vec<String> = self.entries.keys().cloned().collect();
        for name in names {
            if let Err(e) = self.tick_one(&name, now).await {
                tracing::error!(schedule = %name, error = %e, "schedule tick failed");
            }
        }
    }

    async fn tick_one(&mut self, name: &str, now: DateTime<Utc>) -> Result<(), ScheduleError> {
        loop {
            let Some(entry) = self.entries.get(name) else {
                return Ok(());
            };
            if entry.state.paused {
                return Ok(());
            }
            if entry.pending.is_some() {
                if !self.advance(name).await? {
                    return Ok(()); // waiting for room under max_in_flight
                }
                continue;
            }
            let last = DateTime::from_timestamp_millis(entry.state.last_fired_ms as i64)
                .unwrap_or_default();
            let d = due(
                &entry.timing,
                last,
                now,
                entry.spec.catch_up,
                entry.spec.max_catch_up,
            );
            if d.fire.is_empty() && d.missed == 0 {
                return Ok(());
            }
            let label = [name];
            if d.missed > 0 {
                self.counters
                    .missed
                    .with_label_values(&label)
                    .inc_by(d.missed);
                tracing::warn!(schedule = %name, missed = d.missed, "fire times missed while the service was away");
            }
            if d.caught_up {
                self.counters.catch_ups.with_label_values(&label).inc();
            }
            let entry = self.entries.get_mut(name).expect("present");
            entry.state.missed += d.missed;
            match d.fire.first() {
                None => {
                    // Only missed fire times: done with, up to the latest of them.
                    let latest = d.latest.unwrap_or(last);
                    entry.state.last_fired_ms = latest.timestamp_millis() as u64;
                    let state = entry.state.clone();
                    self.store.put_state(name, &state).await?;
                    return Ok(());
                }
                Some(&fire) => self.start_fire(name, fire).await?,
            }
        }
    }

    /// Records `fire` as being fired (durably) and prepares its batch.
    pub(super) async fn start_fire(
        &mut self,
        name: &str,
        fire: DateTime<Utc>,
    ) -> Result<(), ScheduleError> {
        let entry = self
            .entries
            .get_mut(name)
            .ok_or_else(|| ScheduleError::NotFound(name.into()))?;
        let batch = entry.spec.batch().map_err(ScheduleError::Invalid)?;
        entry.state.firing_ms = Some(fire.timestamp_millis() as u64);
        entry.pending = Some(Pending {
            fire,
            batch,
            next: 0,
            rows: Vec::new(),
        });
        let state = entry.state.clone();
        self.store.put_state(name, &state).await?;
        tracing::info!(schedule = %name, fire = %fire, "schedule firing");
        Ok(())
    }

    /// Admits the pending fire's items until done (`true`) or out of room (`false`).
    async fn advance(&mut self, name: &str) -> Result<bool, ScheduleError> {
        loop {
            let entry = self
                .entries
                .get(name)
                .ok_or_else(|| ScheduleError::NotFound(name.into()))?;
            let pending = entry.pending.as_ref().expect("a pending fire");
            let Some(item) = pending.batch.get(pending.next).cloned() else {
                break;
            };
            let fire_ms = pending.fire.timestamp_millis() as u64;
            let spec = entry.spec.clone();
            let seed = spec.seed_of(fire_ms, item.index);
            let (job, state, error) = match self.app.admit(draft(&spec, fire_ms, &item, seed)).await
            {
                Ok(submitted) => {
                    if submitted.created {
                        self.counters.jobs.with_label_values(&[name]).inc();
                    }
                    (
                        Some(submitted.record.id.to_string()),
                        submitted.record.state.to_string(),
                        None,
                    )
                }
                Err(OrchestratorError::IdempotencyConflict(id)) => {
                    // Admitted before the schedule was changed: that job stands.
                    (Some(id.to_string()), "queued".to_string(), None)
                }
                Err(
                    OrchestratorError::OwnerLimit { .. }
                    | OrchestratorError::Busy { .. }
                    | OrchestratorError::NotReady(_),
                ) => return Ok(false),
                Err(e) if e.code() == crate::error::ErrorCode::Internal => return Err(e.into()),
                Err(e) => {
                    tracing::warn!(schedule = %name, item = item.index, error = %e, "a schedule item was refused");
                    (None, "refused".to_string(), Some(e.to_string()))
                }
            };
            let entry = self.entries.get_mut(name).expect("present");
            let pending = entry.pending.as_mut().expect("a pending fire");
            pending.rows.push(Row {
                item: item.index,
                lyrics_file: item.lyrics_file.clone(),
                style: item.style.clone(),
                seconds: item.seconds,
                seed,
                job,
                state,
                error,
                files: Vec::new(),
            });
            pending.next += 1;
        }
        // Every item is admitted: the fire is done.
        let entry = self.entries.get_mut(name).expect("present");
        let pending = entry.pending.take().expect("a pending fire");
        let fire_ms = pending.fire.timestamp_millis() as u64;
        entry.state.last_fired_ms = entry.state.last_fired_ms.max(fire_ms);
        entry.state.firing_ms = None;
        entry.state.fires += 1;
        let manifest = Manifest {
            schedule: name.to_string(),
            fire_time: pending.fire.to_rfc3339(),
            fire_time_local: entry.timing.local(pending.fire),
            rows: pending.rows,
        };
        let dir = entry.spec.fire_dir(fire_ms);
        entry.last_fire_jobs = manifest.rows.iter().filter_map(|r| r.job.clone()).collect();
        let open = self.write_manifest(&dir, manifest).await;
        let entry = self.entries.get_mut(name).expect("present");
        if open {
            manifests::note_open(name, &mut entry.state, fire_ms);
        }
        let state = entry.state.clone();
        self.store.put_state(name, &state).await?;
        self.counters.fires.with_label_values(&[name]).inc();
        tracing::info!(schedule = %name, fire = %pending.fire, "schedule fired");
        Ok(true)
    }

    /// Goes on with the pending fire of `name`, paused or not.
    pub(super) async fn tick_pending(&mut self, name: &str) -> Result<bool, ScheduleError> {
        if self.entries.get(name).is_some_and(|e| e.pending.is_some()) {
            return self.advance(name).await;
        }
        Ok(true)
    }

    /// The jobs created so far by the fire of `name` at `fire_ms`.
    pub(super) fn jobs_of_fire(&self, name: &str, fire_ms: u64) -> Vec<String> {
        let Some(e) = self.entries.get(name) else {
            return Vec::new();
        };
        match &e.pending {
            Some(p) if p.fire.timestamp_millis() as u64 == fire_ms => {
                p.rows.iter().filter_map(|r| r.job.clone()).collect()
            }
            _ => e.last_fire_jobs.clone(),
        }
    }

    /// Serves one API command at `now`.
    pub(super) async fn command(&mut self, command: Command, now: DateTime<Utc>) {
        super::commands::serve(self, command, now).await;
    }

    pub(super) fn schedule_store(&self) -> &ScheduleStore {
        &self.store
    }

    /// The API view of schedule `name` with its next `count` fire times after `now`.
    pub(super) fn view(
        &self,
        name: &str,
        count: usize,
        now: DateTime<Utc>,
    ) -> Option<ScheduleView> {
        let e = self.entries.get(name)?;
        let last =
            DateTime::from_timestamp_millis(e.state.last_fired_ms as i64).unwrap_or_default();
        Some(ScheduleView {
            spec: e.spec.clone(),
            origin: e.origin,
            paused: e.state.paused,
            last_fired: (e.state.fires > 0).then(|| e.timing.local(last)),
            firing: e.pending.as_ref().map(|p| e.timing.local(p.fire)),
            fires: e.state.fires,
            missed: e.state.missed,
            next: e
                .timing
                .upcoming(last.max(now), count)
                .into_iter()
                .map(|t| e.timing.local(t))
                .collect(),
        })
    }
}

/// The draft of one item of a fire.
fn draft(spec: &ScheduleSpec, fire_ms: u64, item: &BatchItem, seed: u64) -> Draft {
    let mut meta = JobMeta::anonymous(Source::Schedule);
    meta.owner = spec.owner();
    meta.priority = Some(spec.priority.unwrap_or(Priority::Batch));
    meta.idempotency_key = Some(format!("schedule:{}:{fire_ms}:{}", spec.name, item.index));
    meta.quota = Some(Quota {
        concurrent: spec.max_in_flight,
        per_minute: 0,
        per_day: 0,
    });
    meta.webhook = spec.webhook.as_ref().map(|w| w.target());
    let mut draft = Draft::new(meta);
    draft.lyrics = item.lyrics.clone();
    draft.style = Some(StyleInput::Prompt(item.style.clone()));
    draft.seconds = Some(item.seconds);
    draft.seed = Some(seed);
    draft.variants = Some(spec.variants);
    draft.format = spec.format;
    draft.output_subdir = Some(spec.fire_dir(fire_ms));
    draft
}
