//! The scheduler's answers to the API: list, get, create, update, delete, pause/resume and
//! fire now. They run on the scheduler task, so a schedule never changes while it fires.
//! Each command but create carries the caller's [`Access`]: a schedule the caller may not see
//! is answered [`ScheduleError::NotFound`], like one that does not exist.

use chrono::{DateTime, Utc};

use super::runner::Scheduler;
use super::spec::Origin;
use super::store::ScheduleState;
use super::{Access, Command, Fired, ScheduleError, ScheduleView};

pub(super) async fn serve(s: &mut Scheduler, command: Command, now: DateTime<Utc>) {
    match command {
        Command::List {
            next,
            access,
            reply,
        } => {
            let names: Vec<String> = s
                .entries
                .iter()
                .filter(|(_, e)| access.allows(e.origin, e.spec.owner.as_deref()))
                .map(|(n, _)| n.clone())
                .collect();
            let views = names.iter().filter_map(|n| s.view(n, next, now)).collect();
            let _ = reply.send(Ok(views));
        }
        Command::Get {
            name,
            next,
            access,
            reply,
        } => {
            let _ = reply.send(visible(s, &name, &access).and_then(|()| {
                s.view(&name, next, now)
                    .ok_or(ScheduleError::NotFound(name))
            }));
        }
        Command::Create { spec, reply } => {
            let _ = reply.send(create(s, spec, now).await);
        }
        Command::Update {
            name,
            spec,
            access,
            reply,
        } => {
            let _ = reply.send(update(s, name, spec, &access, now).await);
        }
        Command::Delete {
            name,
            access,
            reply,
        } => {
            let _ = reply.send(delete(s, &name, &access).await);
        }
        Command::Pause {
            name,
            paused,
            access,
            reply,
        } => {
            let _ = reply.send(pause(s, &name, paused, &access, now).await);
        }
        Command::Run {
            name,
            access,
            reply,
        } => {
            let _ = reply.send(run(s, &name, &access, now).await);
        }
    }
}

/// Schedule `name` exists and is the caller's to see (another owner's is not found).
fn visible(s: &Scheduler, name: &str, access: &Access) -> Result<(), ScheduleError> {
    match s.entries.get(name) {
        Some(e) if access.allows(e.origin, e.spec.owner.as_deref()) => Ok(()),
        _ => Err(ScheduleError::NotFound(name.into())),
    }
}

/// Schedule `name` is the caller's and was made through the API.
fn api_only(s: &Scheduler, name: &str, access: &Access) -> Result<(), ScheduleError> {
    visible(s, name, access)?;
    match s.entries.get(name) {
        Some(e) if e.origin == Origin::Config => Err(ScheduleError::ReadOnly(name.into())),
        _ => Ok(()),
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
    access: &Access,
    now: DateTime<Utc>,
) -> Result<ScheduleView, ScheduleError> {
    api_only(s, &name, access)?;
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

async fn delete(s: &mut Scheduler, name: &str, access: &Access) -> Result<(), ScheduleError> {
    api_only(s, name, access)?;
    s.schedule_store().remove(name).await?;
    s.entries.remove(name);
    Ok(())
}

async fn pause(
    s: &mut Scheduler,
    name: &str,
    paused: bool,
    access: &Access,
    now: DateTime<Utc>,
) -> Result<ScheduleView, ScheduleError> {
    visible(s, name, access)?;
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

async fn run(
    s: &mut Scheduler,
    name: &str,
    access: &Access,
    now: DateTime<Utc>,
) -> Result<Fired, ScheduleError> {
    visible(s, name, access)?;
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
