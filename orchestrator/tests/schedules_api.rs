//! Schedules through `/api/v1/schedules`: create, list with next fire times in the zone, get,
//! update, pause/resume, run, delete, and the refusals; with API keys, a key sees and changes
//! only its own schedules and the config file's (another key's is a 404, like a missing name);
//! a webhook endpoint checked by the outbound URL guard when the schedule is made or changed;
//! config validation naming the schedule and field. (The scheduler on a controllable clock:
//! `schedules.rs`.)

use crate::support;

use protocol::JobState;
use refrain_orchestrator::schedules::ScheduleSpec;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::TestService;

fn spec(value: Value) -> ScheduleSpec {
    serde_json::from_value(value).unwrap()
}

/// How many jobs `owner` has.
fn jobs_of(s: &TestService, owner: &str) -> usize {
    s.app
        .store()
        .scan()
        .map(|r| r.unwrap())
        .filter(|r| r.owner.as_str() == owner)
        .count()
}

async fn call(
    s: &TestService,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = s.client.request(method, format!("{}{path}", s.base));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let r = request.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// `time` is `hh:mm:ss` in `zone`, written with the zone's offset at that instant (which
/// depends on the date the test runs: daylight saving time or not).
fn assert_local(time: &Value, zone: chrono_tz::Tz, hms: &str) {
    let at = chrono::DateTime::parse_from_rfc3339(time.as_str().unwrap()).unwrap();
    let local = at.with_timezone(&zone);
    assert_eq!(local.format("%H:%M:%S").to_string(), hms, "{time}");
    assert_eq!(local.fixed_offset().offset(), at.offset(), "{time}");
}

#[tokio::test]
async fn the_api_manages_schedules() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.lrc"), "[00:10.00] from a file").unwrap();
    let from_config = spec(
        json!({"name": "nightly", "cron": "0 0 3 * * *", "timezone": "Europe/Berlin",
                                  "items": [{"lrc_dir": dir.path()}]}),
    );
    let s = support::start_with(|c| c.schedules = vec![from_config]).await;
    s.app.set_ready(true);

    let (status, created) = call(&s, Method::POST, "/api/v1/schedules", Some(json!({
        "name": "weekdays", "cron": "30 6 * * MON-FRI", "timezone": "America/New_York",
        "items": [{"lyrics": "[00:10.00] good morning"}], "styles": ["soft piano"], "paused": true
    }))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["origin"], "api");
    assert_eq!(created["owner"], "anonymous");
    assert_eq!(created["paused"], true);
    let next = created["next"].as_array().unwrap();
    assert_eq!(next.len(), 5);
    assert_local(&next[0], chrono_tz::America::New_York, "06:30:00");

    let (status, list) = call(&s, Method::GET, "/api/v1/schedules?next=2", None).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["nightly", "weekdays"]);
    assert_eq!(list[0]["origin"], "config");
    assert_local(&list[0]["next"][0], chrono_tz::Europe::Berlin, "03:00:00");
    assert_eq!(list[0]["next"].as_array().unwrap().len(), 2);

    // Run now, although paused: its jobs appear, in their fire's folder.
    let (status, fired) = call(&s, Method::POST, "/api/v1/schedules/weekdays/run", None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{fired}");
    assert_eq!(fired["jobs"].as_array().unwrap().len(), 1);
    assert!(fired["output_dir"]
        .as_str()
        .unwrap()
        .starts_with("schedules/weekdays/"));
    let (status, fired) = call(&s, Method::POST, "/api/v1/schedules/nightly/run", None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{fired}");
    let id = protocol::JobId::parse(fired["jobs"][0].as_str().unwrap()).unwrap();
    let job = s.app.job(&id).unwrap().unwrap();
    assert_eq!(job.spec.lyrics, "[00:10.00] from a file");
    assert_eq!(job.state, JobState::Queued);

    // Update, pause, resume.
    let (status, updated) = call(
        &s,
        Method::PUT,
        "/api/v1/schedules/weekdays",
        Some(json!({
            "name": "ignored", "cron": "0 12 * * *", "items": [{"lyrics": ""}]
        })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(
        (updated["name"].clone(), updated["cron"].clone()),
        (json!("weekdays"), json!("0 12 * * *"))
    );
    assert_eq!(updated["fires"], 1);
    let (_, resumed) = call(&s, Method::POST, "/api/v1/schedules/weekdays/resume", None).await;
    assert_eq!(resumed["paused"], false);
    let (_, paused) = call(&s, Method::POST, "/api/v1/schedules/nightly/pause", None).await;
    assert_eq!(paused["paused"], true);

    // Refusals, each naming what is wrong.
    let bad = [
        (
            json!({"name": "x", "cron": "61 * * * *", "items": [{"lyrics": ""}]}),
            "invalid cron",
        ),
        (
            json!({"name": "x", "cron": "0 * * * *", "timezone": "Mars/Base", "items": [{"lyrics": ""}]}),
            "unknown time zone",
        ),
        (
            json!({"name": "x", "cron": "0 * * * *", "items": [{"lrc_file": "/etc/passwd"}]}),
            "only for schedules in the config file",
        ),
        (
            json!({"name": "x", "cron": "0 * * * *", "items": []}),
            "at least one item",
        ),
        (
            json!({"name": "X Y", "cron": "0 * * * *", "items": [{"lyrics": ""}]}),
            "name",
        ),
    ];
    for (body, says) in bad {
        let (status, e) = call(&s, Method::POST, "/api/v1/schedules", Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {e}");
        assert_eq!(e["error"]["code"], "invalid_schedule", "{e}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(says),
            "{e}"
        );
    }
    let (status, e) = call(
        &s,
        Method::POST,
        "/api/v1/schedules",
        Some(json!({"name": "weekdays", "cron": "0 * * * *", "items": [{"lyrics": ""}]})),
    )
    .await;
    assert_eq!(
        (status, e["error"]["code"].clone()),
        (StatusCode::CONFLICT, json!("schedule_conflict"))
    );
    let (status, e) = call(&s, Method::DELETE, "/api/v1/schedules/nightly", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{e}");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("config file"));
    let (status, _) = call(&s, Method::GET, "/api/v1/schedules/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, _) = call(&s, Method::DELETE, "/api/v1/schedules/weekdays", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, list) = call(&s, Method::GET, "/api/v1/schedules", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
}

/// `call` with an API key.
async fn call_as(
    s: &TestService,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = s
        .client
        .request(method, format!("{}{path}", s.base))
        .header("x-api-key", key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let r = request.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_key_sees_and_changes_only_its_own_schedules() {
    let from_config = spec(json!({"name": "nightly", "cron": "0 0 3 * * *",
                                  "items": [{"lyrics": "[00:10.00] for everyone"}]}));
    let s = support::start_with(|c| c.schedules = vec![from_config]).await;
    s.app.set_ready(true);
    let keys = s.app.config().api_keys_path();
    let alice = refrain_orchestrator::api::v1::auth::add_key(&keys, "alice").unwrap();
    let bob = refrain_orchestrator::api::v1::auth::add_key(&keys, "bob").unwrap();

    let mine = json!({"name": "alices", "cron": "0 12 * * *",
                      "items": [{"lyrics": "[00:10.00] mine"}], "paused": true});
    let (status, created) = call_as(
        &s,
        &alice,
        Method::POST,
        "/api/v1/schedules",
        Some(mine.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["owner"], "key:alice");

    // Bob lists the config file's schedule only, and every route on Alice's answers as for a
    // name that does not exist.
    let names = |list: &Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (status, list) = call_as(&s, &bob, Method::GET, "/api/v1/schedules", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(names(&list), ["nightly"]);
    let routes = [
        (Method::GET, ""),
        (Method::PUT, ""),
        (Method::DELETE, ""),
        (Method::POST, "/pause"),
        (Method::POST, "/resume"),
        (Method::POST, "/run"),
    ];
    for (method, tail) in &routes {
        let body = (*method == Method::PUT).then(|| mine.clone());
        let theirs = format!("/api/v1/schedules/alices{tail}");
        let (status, e) = call_as(&s, &bob, method.clone(), &theirs, body.clone()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {theirs}: {e}");
        assert_eq!(e["error"]["code"], "not_found", "{e}");
        let none = format!("/api/v1/schedules/nosuch{tail}");
        let (status, n) = call_as(&s, &bob, method.clone(), &none, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {none}: {n}");
        assert_eq!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .replace("alices", "nosuch"),
            n["error"]["message"].as_str().unwrap(),
            "{method} {theirs}"
        );
    }
    // Nothing Bob asked changed it, and he made no job of it.
    let (status, still) = call_as(&s, &alice, Method::GET, "/api/v1/schedules/alices", None).await;
    assert_eq!(status, StatusCode::OK, "{still}");
    assert_eq!(
        (still["paused"].clone(), still["fires"].clone()),
        (json!(true), json!(0))
    );
    assert_eq!(jobs_of(&s, "key:alice"), 0);
    assert_eq!(jobs_of(&s, "key:bob"), 0);

    // The config file's schedule stays everyone's to read, pause and resume.
    let (status, _) = call_as(
        &s,
        &bob,
        Method::POST,
        "/api/v1/schedules/nightly/pause",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call_as(&s, &alice, Method::GET, "/api/v1/schedules/nightly", None).await;
    assert_eq!(status, StatusCode::OK);

    // Alice sees both, changes and deletes hers.
    let (_, list) = call_as(&s, &alice, Method::GET, "/api/v1/schedules", None).await;
    assert_eq!(names(&list), ["alices", "nightly"]);
    let (status, fired) = call_as(
        &s,
        &alice,
        Method::POST,
        "/api/v1/schedules/alices/run",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{fired}");
    assert_eq!(jobs_of(&s, "key:alice"), 1);
    let (status, _) = call_as(&s, &alice, Method::DELETE, "/api/v1/schedules/alices", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_schedules_webhook_is_checked_when_it_is_made() {
    // 127.0.0.0/8 is allow-listed (and its IPv4-mapped spelling); nothing else internal is,
    // so ::1 is refused. Every endpoint is an address
    // literal (no name is looked up) and none is called: the check resolves, never connects.
    let s = support::start_with(|c| c.fetch.allow = vec!["127.0.0.0/8".parse().unwrap()]).await;
    s.app.set_ready(true);
    let with_hook = |name: &str, endpoint: &str, secret: &str| {
        json!({"name": name, "cron": "0 12 * * *", "items": [{"lyrics": "[00:10.00] hook"}],
               "webhook": {"endpoint": endpoint, "secret": secret}})
    };
    let long_secret = "s".repeat(257);
    let refused = [
        (
            "http://[::1]:9/hook",
            "",
            "webhook.endpoint",
            "not a public address",
        ),
        (
            "ftp://127.0.0.1:9/hook",
            "",
            "webhook.endpoint",
            "only http and https",
        ),
        (
            "http://u:p@127.0.0.1:9/hook",
            "",
            "webhook.endpoint",
            "user name or password",
        ),
        ("not a url", "", "webhook.endpoint", "not a valid URL"),
        (
            "http://127.0.0.1:9/hook",
            long_secret.as_str(),
            "webhook.secret",
            "256",
        ),
    ];
    for (endpoint, secret, field, says) in refused {
        let body = with_hook("hooked", endpoint, secret);
        let (status, e) = call(&s, Method::POST, "/api/v1/schedules", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{endpoint}: {e}");
        assert_eq!(e["error"]["code"], "invalid_webhook", "{endpoint}: {e}");
        assert_eq!(e["error"]["field"], field, "{endpoint}: {e}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(says),
            "{endpoint}: {e}"
        );
        let (status, _) = call(&s, Method::GET, "/api/v1/schedules/hooked", None).await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{endpoint}: nothing was made"
        );
    }

    // An allow-listed receiver is taken; changing it to a refused one is refused the same way
    // and leaves the schedule as it was.
    let good = "http://127.0.0.1:9/hook";
    let (status, made) = call(
        &s,
        Method::POST,
        "/api/v1/schedules",
        Some(with_hook("hooked", good, "k")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["webhook"]["endpoint"], good);
    let (status, e) = call(
        &s,
        Method::PUT,
        "/api/v1/schedules/hooked",
        Some(with_hook("hooked", "http://[::1]:9/hook", "k")),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(
        (e["error"]["code"].clone(), e["error"]["field"].clone()),
        (json!("invalid_webhook"), json!("webhook.endpoint"))
    );
    let (_, still) = call(&s, Method::GET, "/api/v1/schedules/hooked", None).await;
    assert_eq!(still["webhook"]["endpoint"], good);
}

#[test]
fn the_config_file_names_the_bad_schedule_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    let cases = [
        ("[[schedules]]\nname = \"a\"\ncron = \"0 25 * * *\"\nitems = [{ lyrics = \"\" }]\n", "schedules[0]: schedule a: invalid cron"),
        ("[[schedules]]\nname = \"a\"\ncron = \"0 2 * * *\"\ntimezone = \"Nowhere/City\"\nitems = [{ lyrics = \"\" }]\n", "unknown time zone"),
        ("[[schedules]]\nname = \"a\"\ncron = \"0 2 * * *\"\nitems = [{ lrc_file = \"/no/such.lrc\" }]\n", "items[0]: lrc_file /no/such.lrc"),
        ("[[schedules]]\nname = \"a\"\ncron = \"0 2 * * *\"\nitems = [{ lyrics = \"\" }]\n[[schedules]]\nname = \"a\"\ncron = \"0 3 * * *\"\nitems = [{ lyrics = \"\" }]\n", "schedules[1]: the name a is used twice"),
    ];
    for (toml, says) in cases {
        std::fs::write(&f, toml).unwrap();
        let e = refrain_orchestrator::Config::load(Some(&f), &Default::default()).unwrap_err();
        assert!(e.contains(says), "{toml}: {e}");
    }
}

/// A config-file schedule's webhook passes the check an API schedule's does, when the service
/// starts: an endpoint the server would refuse to call stops it, naming the schedule. Only
/// loopback addresses, never contacted: the guard refuses before connecting.
#[tokio::test]
async fn a_config_schedule_with_a_webhook_the_guard_refuses_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    for (n, (endpoint, says)) in [
        ("http://127.0.0.1:9/hook", "schedules[0] (nightly): webhook"),
        ("ftp://127.0.0.1/hook", "schedules[0] (nightly): webhook"),
    ]
    .into_iter()
    .enumerate()
    {
        let schedule: ScheduleSpec = serde_json::from_value(json!({
            "name": "nightly", "cron": "0 2 * * *", "items": [{"lyrics": "[00:10.00] la"}],
            "webhook": {"endpoint": endpoint}
        }))
        .unwrap();
        let config = refrain_orchestrator::Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().join(format!("data-{n}")),
            bundle: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/test-bundle"),
            schedules: vec![schedule],
            ..refrain_orchestrator::Config::default()
        };
        let refused = refrain_orchestrator::service::start(config, support::idle_nodes()).await;
        let message = refused.err().expect("refused").to_string();
        assert!(message.contains(says), "{endpoint}: {message}");
    }
}
