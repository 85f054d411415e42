//! The task API on the real binary with real ONNX Runtime: a Qubico-style client creates a task
//! with a webhook, polls it to `completed` and downloads the MP3; the webhook receiver (on
//! loopback, allow-listed) fails the first two deliveries, and the service is killed (-9) and
//! restarted between the first failure and its retry (the retry is shown to arrive after the
//! kill, from the restarted service): every status change still arrives, and
//! each signature verifies with an independent verifier, the Python `standardwebhooks`
//! package (`.venv-ci`, installed by the setup script).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::app::TestApp;
use support::http::local_client;
use support::prereq::workspace;

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: Vec<(String, String)>,
    body: String,
    answered: u16,
    /// When it arrived.
    at: Instant,
}

/// A webhook receiver on 127.0.0.2 (plain HTTP/1.1, one request per connection) that answers
/// 500 to its first `fail` requests and 200 after.
fn receiver(fail: usize) -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    let addr = listener.local_addr().unwrap();
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let seen = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut headers = Vec::new();
            let mut length = 0usize;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.trim_end().split_once(':') {
                    let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
                    if k == "content-length" {
                        length = v.parse().unwrap_or(0);
                    }
                    headers.push((k, v));
                }
            }
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let answered = {
                let mut seen = seen.lock().unwrap();
                let answered = if seen.len() < fail { 500 } else { 200 };
                seen.push(Received {
                    headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                    answered,
                    at: Instant::now(),
                });
                answered
            };
            let reason = if answered == 200 {
                "OK"
            } else {
                "Internal Server Error"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {answered} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    (format!("http://{addr}/hook"), got)
}

fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "waited in vain for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The Python that has `standardwebhooks`, if any (in CI there must be one).
fn verifier_python() -> Option<PathBuf> {
    let python = workspace().join(".venv-ci/bin/python");
    let ok = python.exists()
        && std::process::Command::new(&python)
            .args(["-c", "import standardwebhooks"])
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI verifies webhook signatures with the standardwebhooks package in .venv-ci"
        );
        eprintln!(
            "standardwebhooks is not installed in .venv-ci: signatures not verified independently"
        );
        return None;
    }
    Some(python)
}

const VERIFY: &str = r#"
import json, sys
from standardwebhooks import Webhook
secret, path = sys.argv[1], sys.argv[2]
hook = Webhook(secret)
for r in json.load(open(path)):
    headers = dict(r["headers"])
    payload = hook.verify(r["body"], headers)
    assert headers["x-webhook-secret"] == secret
    assert payload["data"]["task_id"], payload
print("verified")
"#;

#[test]
fn a_qubico_client_gets_its_song_and_every_webhook_across_a_restart() {
    let (endpoint, got) = receiver(2);
    let Some(mut app) = TestApp::embedded()
        .steps(2)
        .env("REFRAIN_FETCH__ALLOW", "[\"127.0.0.2/32\"]")
        // The first retry comes 4 to 8 s after the first failure (back-off with jitter in the
        // second half): long after the kill below, so the retry is the restarted service's.
        .env("REFRAIN_WEBHOOKS__FIRST_RETRY_MS", 8000)
        .start()
    else {
        return;
    };
    let key = refrain_orchestrator::api::v1::auth::add_key(
        &app.data_dir().join("api-keys.json"),
        "qubico-client",
    )
    .expect("an API key");
    let secret = "whsec_c2VjcmV0LW9mLXRoZS1yZWNlaXZlci0xMjM0NTY=";
    let http = local_client();
    let created = http
        .post(app.url("/v1/inference"))
        .header("x-api-key", &key)
        .json(&json!({
            "model": "Qubico/diffrhythm",
            "task_type": "txt2audio-base",
            "input": {"lyrics": "[00:10.00] Walking down the street, feeling the beat",
                      "style_prompt": "upbeat pop with electronic elements"},
            "config": {"webhook_config": {"endpoint": endpoint, "secret": secret}},
        }))
        .send()
        .unwrap();
    assert_eq!(created.status().as_u16(), 202);
    let created: Value = created.json().unwrap();
    assert_eq!(created["status"], "pending", "{created}");
    let task = created["task_id"].as_str().unwrap().to_string();

    // The first delivery fails; the service dies before its retry.
    wait_until("the first delivery", Duration::from_secs(60), || {
        (!got.lock().unwrap().is_empty()).then_some(())
    });
    app.server.kill(); // returns once the process is gone
    let killed = Instant::now();
    let before_kill = got.lock().unwrap().len();
    app.server.restart();

    // A client polls to completed and downloads the MP3.
    let done = wait_until("the completed task", Duration::from_secs(120), || {
        let r = http
            .get(app.url(&format!("/v1/tasks/{task}")))
            .header("x-api-key", &key)
            .send()
            .ok()?;
        let v: Value = r.json().ok()?;
        (v["status"] == "completed").then_some(v)
    });
    let result = &done["results"][0];
    assert_eq!(result["format"], "mp3");
    assert!(
        (result["duration"].as_f64().unwrap() - 95.0).abs() < 1.0,
        "{done}"
    );
    let url = result["url"].as_str().unwrap();
    assert!(url.starts_with(app.base()), "{url} on {}", app.base());
    let mp3 = http.get(url).send().unwrap();
    assert_eq!(mp3.headers()["content-type"], "audio/mpeg");
    let bytes = mp3.bytes().unwrap();
    assert!(bytes.starts_with(b"ID3") || (bytes[0] == 0xFF && bytes[1] & 0xE0 == 0xE0));

    // Every status change arrived, the first after two failures and a restart.
    let all = wait_until("the completed delivery", Duration::from_secs(120), || {
        let got = got.lock().unwrap();
        got.iter()
            .any(|r| r.answered == 200 && r.body.contains("\"completed\""))
            .then(|| got.clone())
    });
    assert_eq!(
        &all.iter().map(|r| r.answered).collect::<Vec<_>>()[..3],
        [500, 500, 200]
    );
    // Only the first attempt reached the receiver before the kill: the retries (the same
    // delivery, by its webhook-id) came from the restarted service.
    assert_eq!(before_kill, 1, "{all:?}");
    assert!(all[0].at < killed);
    assert!(all[1].at > killed, "the retry arrived before the kill");
    let id = |r: &Received| {
        r.headers
            .iter()
            .find(|(k, _)| k == "webhook-id")
            .map(|(_, v)| v.clone())
    };
    assert_eq!(id(&all[0]), id(&all[1]));
    assert_eq!(id(&all[0]), id(&all[2]));
    let delivered: Vec<String> = all
        .iter()
        .filter(|r| r.answered == 200)
        .map(|r| {
            serde_json::from_str::<Value>(&r.body).unwrap()["data"]["status"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        delivered.first().map(String::as_str),
        Some("pending"),
        "{delivered:?}"
    );
    assert!(delivered.iter().any(|s| s == "processing"), "{delivered:?}");
    assert_eq!(
        delivered.last().map(String::as_str),
        Some("completed"),
        "{delivered:?}"
    );
    let log = app.server.all_logs();
    assert!(!log.contains(secret), "the webhook secret is never logged");

    if let Some(python) = verifier_python() {
        let file = app.dir().join("deliveries.json");
        let all: Vec<Value> = all
            .iter()
            .map(|r| json!({"headers": r.headers, "body": r.body}))
            .collect();
        std::fs::write(&file, serde_json::to_vec(&all).unwrap()).unwrap();
        let out = std::process::Command::new(python)
            .args(["-c", VERIFY, secret])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "standardwebhooks refused a signature:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
