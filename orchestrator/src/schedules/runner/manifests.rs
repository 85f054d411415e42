//! Keeping each fire's manifest up to date as its jobs end, across restarts.
//!
//! The scheduler hears of a job's end through the core's in-process event stream. A job can
//! also end while no scheduler hears it: the process dies between the job's durable state
//! change and the manifest's rewrite, or the scheduler lags behind the stream and loses
//! events. So each schedule's stored state lists its open fires, those whose manifest still
//! shows an unfinished job, and the scheduler brings them up to date when it starts and
//! whenever it lagged. A fire is closed, and no longer read, once every row is final.

use protocol::{JobEvent, JobId, JobRecord, Source, StyleSpec};

use super::Scheduler;
use crate::schedules::manifest::{Manifest, Row};
use crate::schedules::store::ScheduleState;

/// The most open fires a schedule keeps (a schedule whose jobs never run, say with no node,
/// would otherwise add one per fire). Beyond it the oldest is dropped with a warning: its
/// manifest is then only brought up to date by the events of a running scheduler.
pub(super) const MAX_OPEN_FIRES: usize = 1_000;

/// Notes the fire at `fire_ms` of schedule `name` as open in `state` (the caller stores it).
pub(super) fn note_open(name: &str, state: &mut ScheduleState, fire_ms: u64) {
    if state.open_fires.contains(&fire_ms) {
        return;
    }
    state.open_fires.push(fire_ms);
    if state.open_fires.len() > MAX_OPEN_FIRES {
        let dropped = state.open_fires.remove(0);
        tracing::warn!(schedule = %name, fire_ms = dropped, "too many fires with unfinished jobs: the oldest one's manifest is no longer refreshed at start-up");
    }
}

impl Scheduler {
    /// Writes a manifest with each row's job as it is now; whether a job of it is unfinished.
    /// A row whose job is gone (deleted by retention) keeps what it said last.
    pub(super) async fn write_manifest(&self, dir: &str, mut manifest: Manifest) -> bool {
        let mut open = false;
        for row in &mut manifest.rows {
            let Some(id) = row.job.as_deref().and_then(JobId::parse) else {
                continue;
            };
            if let Ok(Some(record)) = self.app.job(&id) {
                fill(row, &record);
                open |= !record.state.is_terminal();
            }
        }
        let outputs = self.app.outputs();
        for (file, bytes) in [
            ("manifest.json", manifest.json()),
            ("manifest.csv", manifest.csv()),
        ] {
            if let Err(e) = outputs.write(&format!("{dir}/{file}"), &bytes).await {
                tracing::error!(dir, error = %e, "cannot write a schedule manifest");
            }
        }
        open
    }

    /// The manifest in `dir`, if one was written and reads back.
    async fn read_manifest(&self, dir: &str) -> Option<Manifest> {
        let path = self
            .app
            .outputs()
            .resolve(&format!("{dir}/manifest.json"))
            .ok()?;
        let bytes = tokio::fs::read(&path).await.ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// A job event as [`Scheduler::spawn`]'s loop hears it: when a schedule's job finished, its
    /// fire's manifest is brought up to date, and the fire closed once none of its jobs is
    /// unfinished.
    pub async fn on_event(&mut self, event: &JobEvent) {
        if !event.kind.is_final() {
            return;
        }
        let Ok(Some(record)) = self.app.job(&event.job) else {
            return;
        };
        if record.source != Source::Schedule {
            return;
        }
        let Some(dir) = record.spec.output_subdir.clone() else {
            return;
        };
        // The fire may still be creating its jobs (no manifest yet): written when it is done.
        let Some(manifest) = self.read_manifest(&dir).await else {
            return;
        };
        if self.write_manifest(&dir, manifest).await {
            return;
        }
        let closed = self.entries.iter_mut().find_map(|(name, e)| {
            let at = e
                .state
                .open_fires
                .iter()
                .position(|ms| e.spec.fire_dir(*ms) == dir)?;
            e.state.open_fires.remove(at);
            Some((name.clone(), e.state.clone()))
        });
        if let Some((name, state)) = closed {
            if let Err(e) = self.store.put_state(&name, &state).await {
                tracing::error!(schedule = %name, error = %e, "cannot store a schedule's state");
            }
        }
    }

    /// Brings every open fire's manifest up to date from its jobs, and closes the fires whose
    /// jobs have all ended: at start-up, and after the scheduler lagged behind the events.
    pub async fn refresh_open_fires(&mut self) {
        let names: Vec<String> = self.entries.keys().cloned().collect();
        for name in names {
            let entry = &self.entries[&name];
            if entry.state.open_fires.is_empty() {
                continue;
            }
            let mut still_open = Vec::new();
            for &fire_ms in &entry.state.open_fires {
                let dir = entry.spec.fire_dir(fire_ms);
                match self.read_manifest(&dir).await {
                    Some(manifest) => {
                        if self.write_manifest(&dir, manifest).await {
                            still_open.push(fire_ms);
                        }
                    }
                    None => {
                        tracing::warn!(schedule = %name, dir, "an open fire's manifest is missing or unreadable: no longer refreshed");
                    }
                }
            }
            let entry = self.entries.get_mut(&name).expect("present");
            if entry.state.open_fires != still_open {
                entry.state.open_fires = still_open;
                let state = entry.state.clone();
                if let Err(e) = self.store.put_state(&name, &state).await {
                    tracing::error!(schedule = %name, error = %e, "cannot store a schedule's state");
                }
            }
        }
    }
}

/// A manifest row brought up to date from its job.
fn fill(row: &mut Row, record: &JobRecord) {
    row.state = record.state.to_string();
    row.error = record.error.clone().filter(|_| record.state.is_terminal());
    row.files = record
        .result
        .as_ref()
        .map(|r| r.files.iter().map(|f| f.file.clone()).collect())
        .unwrap_or_default();
    if let StyleSpec::Prompt(p) = &record.spec.style {
        row.style = p.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_fires_are_noted_once_and_capped_dropping_the_oldest() {
        let mut state = ScheduleState::default();
        note_open("s", &mut state, 5);
        note_open("s", &mut state, 5);
        assert_eq!(state.open_fires, [5]);
        for ms in 6..6 + MAX_OPEN_FIRES as u64 {
            note_open("s", &mut state, ms);
        }
        assert_eq!(state.open_fires.len(), MAX_OPEN_FIRES);
        assert_eq!(state.open_fires[0], 6, "the oldest was dropped");
    }
}
