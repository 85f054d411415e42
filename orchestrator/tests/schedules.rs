//! Schedules in process, on a controllable clock ([`Scheduler::tick`] at chosen instants): a
//! fire at its instant with a manifest in its folder; exactly once per fire time when the
//! scheduler stops in the middle of a fire (its state says which fire was in progress) and a
//! new one takes over; each catch-up policy after downtime (and its metrics); a batch of 20
//! does not delay a person's job by more than one job; a 02:30 Europe/Berlin schedule on the
//! daylight-saving days; a config schedule's start survives a restart before its first fire.
//! (The API and config validation: `schedules_api.rs`; the time rules alone:
//! `schedules::when`'s unit tests.)

use crate::support;

use chrono::{DateTime, Utc};
use protocol::{JobEventKind, JobState, Priority, Source};
use refrain_orchestrator::schedules::store::{ScheduleState, ScheduleStore};
use refrain_orchestrator::schedules::{channel, ScheduleSpec, Scheduler};
use serde_json::{json, Value};
use support::node::StandIn;
use support::{start, start_with_nodes, TestService};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn spec(value: Value) -> ScheduleSpec {
    serde_json::from_value(value).unwrap()
}

fn lines(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"lyrics": format!("[00:10.00] song number {i}")}))
        .collect()
}

/// A scheduler of `specs` on `s`, as if each was last fired at `last`.
async fn scheduler(s: &TestService, specs: &[ScheduleSpec], last: DateTime<Utc>) -> Scheduler {
    let store = ScheduleStore::open(s.app.store().db()).unwrap();
    for spec in specs {
        if store.state(&spec.name).unwrap().is_none() {
            let state = ScheduleState {
                last_fired_ms: last.timestamp_millis() as u64,
                ..ScheduleState::default()
            };
            store.put_state(&spec.name, &state).await.unwrap();
        }
    }
    Scheduler::new(s.app.clone(), specs, channel().1).unwrap()
}

/// Jobs of the schedule `owner`, in the order the schedule made them: by fire time, then item.
/// That order is read from each job's idempotency key (`schedule:{name}:{fire_ms}:{item}`), not
/// from `created_ms`: jobs of one fire are often made within the same millisecond.
fn jobs_of(s: &TestService, owner: &str) -> Vec<protocol::JobRecord> {
    let mut jobs: Vec<_> = s
        .app
        .store()
        .scan()
        .map(|r| r.unwrap())
        .filter(|r| r.owner.as_str() == owner)
        .collect();
    jobs.sort_by_key(|r| fire_and_item(r.idempotency_key.as_deref().unwrap()));
    jobs
}

/// `(fire_ms, item)` of a schedule job's idempotency key.
fn fire_and_item(key: &str) -> (u64, usize) {
    let mut parts = key.rsplitn(3, ':');
    let item = parts.next().and_then(|p| p.parse().ok());
    let fire = parts.next().and_then(|p| p.parse().ok());
    match (fire, item) {
        (Some(fire), Some(item)) => (fire, item),
        _ => panic!("not a schedule job's key: {key}"),
    }
}

#[tokio::test]
async fn a_fire_creates_each_job_once_even_when_the_scheduler_stops_midway() {
    let s = start().await;
    let daily = spec(json!({
        "name": "daily", "cron": "0 11 * * *", "items": lines(5), "styles": ["bright pop"],
        "max_in_flight": 3, "format": "mp3"
    }));
    let mut first = scheduler(&s, std::slice::from_ref(&daily), at("2026-12-02T10:30:00Z")).await;
    first.tick(at("2026-12-02T10:59:59Z")).await;
    assert!(jobs_of(&s, "schedule:daily").is_empty());

    // 11:00: three jobs (max_in_flight), then the fire waits for room.
    first.tick(at("2026-12-02T11:00:00Z")).await;
    let jobs = jobs_of(&s, "schedule:daily");
    assert_eq!(jobs.len(), 3);
    for (i, job) in jobs.iter().enumerate() {
        assert_eq!(job.source, Source::Schedule);
        assert_eq!(job.priority, Priority::Batch);
        let fire_ms = at("2026-12-02T11:00:00Z").timestamp_millis();
        assert_eq!(
            job.idempotency_key.as_deref(),
            Some(format!("schedule:daily:{fire_ms}:{i}").as_str())
        );
        assert_eq!(
            job.spec.output_subdir.as_deref(),
            Some("schedules/daily/20261202T110000Z")
        );
        assert_eq!(job.spec.lyrics, format!("[00:10.00] song number {i}"));
    }
    let store = ScheduleStore::open(s.app.store().db()).unwrap();
    let state = store.state("daily").unwrap().unwrap();
    assert_eq!(
        state.firing_ms,
        Some(at("2026-12-02T11:00:00Z").timestamp_millis() as u64)
    );

    // The scheduler stops here (a crash: nothing else is written); a new one takes over.
    drop(first);
    let mut second = scheduler(&s, std::slice::from_ref(&daily), at("2026-12-02T10:30:00Z")).await;
    second.tick(at("2026-12-02T11:00:05Z")).await;
    assert_eq!(
        jobs_of(&s, "schedule:daily").len(),
        3,
        "no room yet, and nothing twice"
    );
    // Two jobs end: room for the last two items.
    for job in &jobs[..2] {
        s.app.cancel(&job.id).await.unwrap();
    }
    second.tick(at("2026-12-02T11:00:10Z")).await;
    let jobs = jobs_of(&s, "schedule:daily");
    assert_eq!(jobs.len(), 5, "each item of the fire exactly once");
    let keys: std::collections::BTreeSet<_> =
        jobs.iter().map(|j| j.idempotency_key.clone()).collect();
    assert_eq!(keys.len(), 5);
    let state = store.state("daily").unwrap().unwrap();
    assert_eq!((state.firing_ms, state.fires), (None, 1));
    assert_eq!(
        state.last_fired_ms,
        at("2026-12-02T11:00:00Z").timestamp_millis() as u64
    );

    // The manifest lists each item with its job and state.
    let path = s
        .app
        .outputs()
        .resolve("schedules/daily/20261202T110000Z/manifest.json")
        .unwrap();
    let manifest: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let rows = manifest["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[0]["state"], "cancelled");
    assert_eq!(rows[4]["state"], "queued");
    assert_eq!(rows[4]["style"], "bright pop");
    assert_eq!(manifest["fire_time_local"], "2026-12-02T11:00:00+00:00");
    let csv = std::fs::read_to_string(path.with_file_name("manifest.csv")).unwrap();
    assert_eq!(csv.lines().count(), 6);
    assert!(csv.starts_with("item,lyrics_file,style,seconds,seed,job,state,error,files"));

    // Nothing more until the next day.
    second.tick(at("2026-12-03T10:59:59Z")).await;
    assert_eq!(jobs_of(&s, "schedule:daily").len(), 5);
}

/// Cancels a queued job in the store alone, as it records a job's end before anyone is told:
/// no event is published. The event it would have been.
async fn cancel_unheard(s: &TestService, id: &protocol::JobId) -> protocol::JobEvent {
    let cancel = |r: &mut protocol::JobRecord| r.state = JobState::Cancelled;
    let store = s.app.store();
    let (_, event) = store
        .transition(
            id,
            JobState::Queued,
            None,
            JobEventKind::Cancelled,
            None,
            true,
            cancel,
        )
        .await
        .unwrap();
    event
}

/// A job that ends while no scheduler hears it (the process died between the job's durable
/// end and the manifest's rewrite) is in the manifest after the next start; the fire is then
/// closed, and a fire whose jobs all ended is never read again.
#[tokio::test]
async fn a_manifest_catches_up_at_start_with_jobs_that_ended_unheard() {
    let s = start().await;
    let daily = spec(json!({
        "name": "daily", "cron": "0 11 * * *", "items": lines(2), "max_in_flight": 0
    }));
    let mut first = scheduler(&s, std::slice::from_ref(&daily), at("2026-12-02T10:30:00Z")).await;
    first.tick(at("2026-12-02T11:00:00Z")).await;
    drop(first);
    let fire_ms = at("2026-12-02T11:00:00Z").timestamp_millis() as u64;
    let store = ScheduleStore::open(s.app.store().db()).unwrap();
    assert_eq!(store.state("daily").unwrap().unwrap().open_fires, [fire_ms]);
    let path = s
        .app
        .outputs()
        .resolve("schedules/daily/20261202T110000Z/manifest.json")
        .unwrap();
    let states = || -> Vec<String> {
        let manifest: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        manifest["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["state"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(states(), ["queued", "queued"]);

    // Both jobs end, as the store records it before anyone is told: no event is published, so
    // no scheduler (not even the service's own) hears of it.
    for job in jobs_of(&s, "schedule:daily") {
        cancel_unheard(&s, &job.id).await;
    }
    assert_eq!(states(), ["queued", "queued"]);

    let mut second = scheduler(&s, std::slice::from_ref(&daily), at("2026-12-02T10:30:00Z")).await;
    second.refresh_open_fires().await;
    assert_eq!(states(), ["cancelled", "cancelled"]);
    assert!(store.state("daily").unwrap().unwrap().open_fires.is_empty());
    assert!(std::fs::read_to_string(path.with_file_name("manifest.csv"))
        .unwrap()
        .contains(",cancelled,"));

    // The next day's fire, whose jobs end while the scheduler listens: closed by their events.
    second.tick(at("2026-12-03T11:00:00Z")).await;
    let next_ms = at("2026-12-03T11:00:00Z").timestamp_millis() as u64;
    assert_eq!(store.state("daily").unwrap().unwrap().open_fires, [next_ms]);
    for job in jobs_of(&s, "schedule:daily") {
        if job.state == JobState::Queued {
            let event = cancel_unheard(&s, &job.id).await;
            assert_eq!(store.state("daily").unwrap().unwrap().open_fires, [next_ms]);
            second.on_event(&event).await;
        }
    }
    assert!(store.state("daily").unwrap().unwrap().open_fires.is_empty());
}

#[tokio::test]
async fn downtime_is_caught_up_by_policy() {
    let s = start().await;
    let make = |name: &str, policy: &str| {
        spec(json!({"name": name, "cron": "0 * * * *", "items": lines(1),
                    "catch_up": policy, "max_catch_up": 2, "max_in_flight": 0}))
    };
    let specs = [
        make("skip", "skip"),
        make("once", "once"),
        make("all", "all"),
    ];
    // Down from 00:00 to 05:30: 01:00 … 05:00 missed.
    let mut sched = scheduler(&s, &specs, at("2026-12-02T00:00:00Z")).await;
    sched.tick(at("2026-12-02T05:30:00Z")).await;
    let store = ScheduleStore::open(s.app.store().db()).unwrap();
    let dirs = |owner: &str| -> Vec<String> {
        jobs_of(&s, owner)
            .iter()
            .map(|j| j.spec.output_subdir.clone().unwrap())
            .collect()
    };
    assert!(dirs("schedule:skip").is_empty());
    assert_eq!(dirs("schedule:once"), ["schedules/once/20261202T050000Z"]);
    assert_eq!(
        dirs("schedule:all"),
        [
            "schedules/all/20261202T040000Z",
            "schedules/all/20261202T050000Z"
        ]
    );
    for (name, missed) in [("skip", 5), ("once", 4), ("all", 3)] {
        let state = store.state(name).unwrap().unwrap();
        assert_eq!(state.missed, missed, "{name}");
        assert_eq!(
            state.last_fired_ms,
            at("2026-12-02T05:00:00Z").timestamp_millis() as u64,
            "{name}"
        );
    }
    // Back on time: 06:00 fires for every policy.
    sched.tick(at("2026-12-02T06:00:01Z")).await;
    assert_eq!(dirs("schedule:skip"), ["schedules/skip/20261202T060000Z"]);
    let metrics = s.app.metrics().render();
    assert!(
        metrics.contains("refrain_schedule_missed_total{schedule=\"skip\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("refrain_schedule_catch_ups_total{schedule=\"all\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("refrain_schedule_jobs_total{schedule=\"all\"} 3"),
        "{metrics}"
    );
    // Fires: skip only 06:00; once 05:00 and 06:00; all 04:00, 05:00 and 06:00.
    for (name, fires) in [("skip", 1), ("once", 2), ("all", 3)] {
        let line = format!("refrain_schedule_fires_total{{schedule=\"{name}\"}} {fires}\n");
        assert!(metrics.contains(&line), "{line}: {metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_twenty_does_not_hold_up_a_person() {
    let mut node = StandIn::new();
    let s = start_with_nodes(|_| {}, node.runner.clone()).await;
    s.wait_ready().await;
    let batch = spec(
        json!({"name": "playlist", "cron": "0 * * * *", "items": lines(20),
                            "max_in_flight": 0}),
    );
    let mut sched = scheduler(&s, std::slice::from_ref(&batch), at("2026-12-02T00:59:00Z")).await;
    sched.tick(at("2026-12-02T01:00:00Z")).await;
    assert_eq!(jobs_of(&s, "schedule:playlist").len(), 20);
    let first = node.taken().await; // the node is busy with the first song of the batch
    assert_eq!(s.app.job(&first).unwrap().unwrap().source, Source::Schedule);
    // A person asks for a song now.
    let mut meta = refrain_orchestrator::app::JobMeta::anonymous(Source::RefrainApi);
    meta.owner = protocol::Owner::new("key", "alice");
    let mut draft = refrain_orchestrator::admission::Draft::new(meta);
    draft.lyrics = "[00:10.00] me first".into();
    draft.style = Some(refrain_orchestrator::admission::StyleInput::Prompt(
        "pop".into(),
    ));
    draft.seconds = Some(95);
    let person = s.app.admit(draft).await.unwrap().record.id;
    node.release();
    assert_eq!(node.taken().await, person, "after at most one batch job");
    node.release();
}

/// The output folders of `owner`'s jobs (one per fire time), oldest first.
fn fire_dirs(s: &TestService, owner: &str) -> Vec<String> {
    let mut dirs: Vec<String> = jobs_of(s, owner)
        .iter()
        .map(|j| j.spec.output_subdir.clone().unwrap())
        .collect();
    dirs.dedup();
    dirs
}

/// As docs/schedules.md says: 02:30 does not exist in Berlin on the spring-forward day (no
/// fire, nothing missed), and occurs twice on the fall-back day (one fire, at the first).
#[tokio::test]
async fn a_berlin_schedule_on_the_daylight_saving_days() {
    let s = start().await;
    let nightly = |name: &str| {
        spec(json!({
            "name": name, "cron": "30 2 * * *", "timezone": "Europe/Berlin",
            "items": lines(1), "max_in_flight": 0
        }))
    };
    // 29 March 2026: clocks go from 02:00 CET to 03:00 CEST.
    let mut spring = scheduler(&s, &[nightly("spring")], at("2026-03-28T12:00:00Z")).await;
    spring.tick(at("2026-03-29T12:00:00Z")).await;
    assert!(fire_dirs(&s, "schedule:spring").is_empty());
    spring.tick(at("2026-03-30T00:30:00Z")).await; // 02:30 CEST
    assert_eq!(
        fire_dirs(&s, "schedule:spring"),
        ["schedules/spring/20260330T003000Z"]
    );
    // 25 October 2026: 02:30 CEST (00:30 UTC), then 02:30 CET again (01:30 UTC).
    let mut autumn = scheduler(&s, &[nightly("autumn")], at("2026-10-24T12:00:00Z")).await;
    for now in [
        "2026-10-25T00:30:00Z",
        "2026-10-25T01:30:00Z",
        "2026-10-25T23:00:00Z",
        "2026-10-26T01:30:00Z", // 02:30 CET
    ] {
        autumn.tick(at(now)).await;
    }
    assert_eq!(
        fire_dirs(&s, "schedule:autumn"),
        [
            "schedules/autumn/20261025T003000Z",
            "schedules/autumn/20261026T013000Z"
        ]
    );
    let store = ScheduleStore::open(s.app.store().db()).unwrap();
    for name in ["spring", "autumn"] {
        assert_eq!(store.state(name).unwrap().unwrap().missed, 0, "{name}");
    }
}

/// A config-file schedule counts from when it was first loaded, even if the service restarts
/// before its first fire (else the fire times of the downtime would be dropped unseen).
#[tokio::test]
async fn a_config_schedule_keeps_its_start_across_a_restart_before_its_first_fire() {
    let s = start().await;
    let hourly = spec(json!({"name": "hourly", "cron": "0 * * * *", "items": lines(1)}));
    let store = ScheduleStore::open(s.app.store().db()).unwrap();
    assert!(store.state("hourly").unwrap().is_none());
    let first = Scheduler::new(s.app.clone(), std::slice::from_ref(&hourly), channel().1).unwrap();
    let start = store.state("hourly").unwrap().expect("stored when loaded");
    drop(first);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let _again = Scheduler::new(s.app.clone(), std::slice::from_ref(&hourly), channel().1).unwrap();
    assert_eq!(store.state("hourly").unwrap(), Some(start));
}
