//! The scheduler's answers to the API: list, get, create, update, delete, pause/resume and
//! fire now. They run on the scheduler task, so a schedule never changes while it fires.

use chrono::{DateTime, Utc};

use super::runner::Scheduler;
use super::spec::Origin;
use super::store::ScheduleState;
use super::{Command, Fired, ScheduleError, ScheduleView};

pub(super) async fn serve(s: &mut Scheduler, command: Command, now: DateTime<Utc>) {
    match command {
        Command::List { next, reply } => {
            let names: Vec<String> = s.entries.keys().cloned().collect();
            let views = names.iter().filter_map(|n| s.view(n, next, now)).collect();
            let _ = reply.send(Ok(views));
        }
        Command::Get { name, next, reply } => {
            let _ = reply.send(
                s.view(&name, next, now)
                    .ok_or(ScheduleError::NotFound(name)),
            );
        }
        Command::Create { spec, reply } => {
            let _ = reply.send(create(s, spec, now).await);
        }
        Command::Update { name, spec, reply } => {
            let _ = reply.send(update(s, name, spec, now).await);
        }
        Command::Delete { name, reply } => {
            let _ = reply.send(delete(s, &name).await);
        }
        Command::Pause {
            name,
            paused,
            reply,
        } => {
            let _ = reply.send(pause(s, &name, paused, now).await);
        }
        Command::Run { name, reply } => {
            let _ = reply.send(run(s, &name, now).await);
        }
    }
}

fn api_only(s: &Scheduler, name: &str) -> Result<(), ScheduleError> {
    match s.entries.get(name) {
        None => Err(ScheduleError::NotFound(name.into())),
        Some(e) if e.origin == Origin::Config => Err(ScheduleError::ReadOnly(name.into())),
        Some(_) => Ok(()),
    }
}

async fn create(
    s: &mut Scheduler,
    spec: super::ScheduleSpec,
    now: DateTime<Utc>,
) -> Result<ScheduleView, ScheduleError> {
    if s.entries.contains_key(&spec.name) {
        return Err(ScheduleError::Exists(spec.name));
    }
    spec.check(false).map_err(ScheduleError::Invalid)?;
    let name = spec.name.clone();
    let state = ScheduleState {
        last_fired_ms: now.timestamp_millis() as u64,
        paused: spec.paused,
        ..ScheduleState::default()
    };
    s.schedule_store().put_state(&name, &state).await?;
    s.schedule_store().put_spec(&spec).await?;
    s.load(spec, Origin::Api)?;
    Ok(s.view(&name, 5, now).expect("just added"))
}

async fn update(
    s: &mut Scheduler,
    name: String,
    mut spec: super::ScheduleSpec,
    now: DateTime<Utc>,
) -> Result<ScheduleView, ScheduleError> {
    api_only(s, &name)?;
    spec.name = name.clone();
    spec.check(false).map_err(ScheduleError::Invalid)?;
    let entry = s.entries.get(&name).expect("checked");
    if entry.pending.is_some() {
        return Err(ScheduleError::Invalid(format!(
            "schedule {name} is firing (waiting for room under max_in_flight): change it once \
             the fire is done"
        )));
    }
    s.schedule_store().put_spec(&spec).await?;
    // The state (last fire, pause) stays: the new expression applies from now on.
    s.load(spec, Origin::Api)?;
    Ok(s.view(&name, 5, now).expect("present"))
}

async fn delete(s: &mut Scheduler, name: &str) -> Result<(), ScheduleError> {
    api_only(s, name)?;
    s.schedule_store().remove(name).await?;
    s.entries.remove(name);
    Ok(())
}

async fn pause(
    s: &mut Scheduler,
    name: &str,
    paused: bool,
    now: DateTime<Utc>,
) -> Result<ScheduleView, ScheduleError> {
    let entry = s
        .entries
        .get_mut(name)
        .ok_or_else(|| ScheduleError::NotFound(name.into()))?;
    if entry.state.paused && !paused {
        // Fire times that passed while paused are not caught up: the schedule resumes now.
        entry.state.last_fired_ms = entry.state.last_fired_ms.max(now.timestamp_millis() as u64);
    }
    entry.state.paused = paused;
    let state = entry.state.clone();
    s.schedule_store().put_state(name, &state).await?;
    Ok(s.view(name, 5, now).expect("present"))
}

async fn run(s: &mut Scheduler, name: &str, now: DateTime<Utc>) -> Result<Fired, ScheduleError> {
    let entry = s
        .entries
        .get(name)
        .ok_or_else(|| ScheduleError::NotFound(name.into()))?;
    if entry.pending.is_some() {
        return Err(ScheduleError::Invalid(format!(
            "schedule {name} is already firing (waiting for room under max_in_flight)"
        )));
    }
    let fire_ms = now.timestamp_millis() as u64;
    let output_dir = entry.spec.fire_dir(fire_ms);
    let fire_time = entry.timing.local(now);
    s.start_fire(name, now).await?;
    s.tick_pending(name).await?;
    let jobs = s.jobs_of_fire(name, fire_ms);
    Ok(Fired {
        schedule: name.to_string(),
        fire_time,
        jobs,
        output_dir,
    })
}
