//! A schedule in the config file, on the real binary with real ONNX Runtime: it fires every 3
//! seconds, its songs and manifest appear in each fire's folder, and across a kill -9 (with a
//! fire time passing while the service is down, caught up by `catch_up = "all"`) no fire time is
//! lost and no job is made twice; `refrain schedules next` shows the coming fire times.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::app::TestApp;
use support::process::refrain_command;

/// Each fire folder of the schedule and its manifest, once every row has finished.
fn finished_fires(data: &Path) -> BTreeMap<String, Value> {
    let root = data.join("outputs/schedules/every3");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        let Ok(bytes) = std::fs::read(entry.path().join("manifest.json")) else {
            continue;
        };
        let Ok(manifest) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        let done = manifest["rows"]
            .as_array()
            .is_some_and(|rows| rows.iter().all(|r| r["state"] == "succeeded"));
        if done {
            out.insert(entry.file_name().to_string_lossy().into_owned(), manifest);
        }
    }
    out
}

fn wait_fires(data: &Path, at_least: usize) -> BTreeMap<String, Value> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let fires = finished_fires(data);
        if fires.len() >= at_least {
            return fires;
        }
        assert!(
            Instant::now() < deadline,
            "only {} fires finished",
            fires.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_config_schedule_fires_on_time_across_a_kill() {
    let lyrics = tempfile::tempdir().unwrap();
    std::fs::write(
        lyrics.path().join("a.lrc"),
        "[00:10.00] every three seconds",
    )
    .unwrap();
    std::fs::write(lyrics.path().join("b.lrc"), "[00:10.00] another song").unwrap();
    let config = lyrics.path().join("refrain.toml");
    std::fs::write(
        &config,
        format!(
            "[[schedules]]\nname = \"every3\"\ncron = \"*/3 * * * * *\"\nitems = [{{ lrc_dir = \
             {:?} }}]\nstyles = [\"bright pop\"]\nmax_in_flight = 0\ncatch_up = \"all\"\n\
             max_catch_up = 100\n",
            lyrics.path().display().to_string()
        ),
    )
    .unwrap();
    let Some(mut app) = TestApp::embedded()
        .steps(2)
        .config(&config.display().to_string())
        .start()
    else {
        return;
    };
    let data = app.data_dir();
    let before = wait_fires(&data, 2);

    // The service dies; at least one fire time passes while it is down.
    app.server.kill();
    std::thread::sleep(Duration::from_secs(4));
    app.server.restart();
    let after = wait_fires(&data, before.len() + 3);

    // Every 3-second fire time from the first to the last has its folder: none lost.
    let stamps: Vec<&String> = after.keys().collect();
    let parse = |s: &str| chrono_like(s);
    let first = parse(stamps[0]);
    let last = parse(stamps[stamps.len() - 1]);
    assert_eq!(
        ((last - first) / 3 + 1) as usize,
        stamps.len(),
        "a fire time is missing: {stamps:?}"
    );
    // Each fire has its two songs, each job once.
    let mut jobs = BTreeSet::new();
    for (dir, manifest) in &after {
        let rows = manifest["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 2, "{dir}: {manifest}");
        for row in rows {
            assert!(
                jobs.insert(row["job"].as_str().unwrap().to_string()),
                "a job twice: {row}"
            );
            let files = row["files"].as_array().unwrap();
            assert!(
                files.iter().any(|f| f.as_str().unwrap().ends_with(".wav")),
                "{row}"
            );
            let wav = data.join("outputs").join(files[0].as_str().unwrap());
            assert!(wav.is_file(), "{}", wav.display());
        }
        let csv = std::fs::read_to_string(
            data.join("outputs/schedules/every3")
                .join(dir)
                .join("manifest.csv"),
        )
        .unwrap();
        assert_eq!(csv.lines().count(), 3, "{csv}");
    }
    // The server made no other scheduled job: every `source=schedule` job it holds, in any
    // state, counted per fire time (known by its seed, derived from the fire time and the
    // item), is exactly the fire's rows: a repeat of an item would be one more.
    let mut fire_of_seed = BTreeMap::new();
    for (dir, manifest) in &after {
        for row in manifest["rows"].as_array().unwrap() {
            let seed = row["seed"].as_u64().unwrap();
            assert!(fire_of_seed.insert(seed, dir.clone()).is_none(), "{row}");
        }
    }
    let mut per_fire: BTreeMap<String, usize> = BTreeMap::new();
    for job in schedule_jobs(&app) {
        let seed = job["request"]["seed"].as_u64().unwrap();
        if let Some(dir) = fire_of_seed.get(&seed) {
            *per_fire.entry(dir.clone()).or_default() += 1;
            assert!(jobs.contains(job["id"].as_str().unwrap()), "{dir}: {job}");
        }
    }
    let expected: BTreeMap<String, usize> = after
        .iter()
        .map(|(dir, m)| (dir.clone(), m["rows"].as_array().unwrap().len()))
        .collect();
    assert_eq!(per_fire, expected, "jobs per fire time");

    let out = refrain_command(&[])
        .args([
            "schedules",
            "next",
            "every3",
            "--count",
            "3",
            "--server",
            app.base(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text.lines().filter(|l| l.starts_with("  20")).count(),
        3,
        "{text}"
    );
}

/// Every job of `source=schedule` the server lists, in any state (all pages).
fn schedule_jobs(app: &TestApp) -> Vec<Value> {
    let mut jobs = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/api/v1/jobs?source=schedule&limit=100".to_string();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page: Value = app.api().get_json(&path);
        jobs.extend(page["jobs"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return jobs,
        }
    }
}

/// Seconds since the epoch of a fire folder's name (`YYYYMMDDTHHMMSSZ`), for differences.
fn chrono_like(stamp: &str) -> i64 {
    let n = |a: usize, b: usize| stamp[a..b].parse::<i64>().unwrap();
    let (y, mo, d) = (n(0, 4), n(4, 6), n(6, 8));
    let (h, mi, s) = (n(9, 11), n(11, 13), n(13, 15));
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + h * 3600 + mi * 60 + s
}
