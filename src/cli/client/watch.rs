//! Following a job to its end through `GET /api/v1/jobs/{id}/events` (Server-Sent Events):
//! [`follow`] reads the stream, reconnects with `Last-Event-ID` when the connection drops or
//! the server restarts (so no event is missed or seen twice), and shows the job's way on
//! stderr — a progress bar on a terminal (as `refrain generate`), plain lines otherwise. It
//! returns the final event; the job itself keeps running on the server if the client stops.

use std::io::{BufReader, IsTerminal};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use reqwest::blocking::Response;
use serde_json::Value;

use super::sse::SseReader;
use super::{Client, ClientError};

/// Reconnections in a row without an event before giving up (about a minute of waiting).
const MAX_RECONNECTS: u32 = 12;

/// The job's final event (`succeeded`, `failed`, `cancelled` or `expired`): its kind and JSON.
#[derive(Debug)]
pub struct Final {
    pub kind: String,
    pub data: Value,
}

fn is_final(kind: &str) -> bool {
    matches!(kind, "succeeded" | "failed" | "cancelled" | "expired")
}

/// Follows job `id` until its final event, showing its progress on stderr.
pub fn follow(client: &Client, id: &str) -> Result<Final, ClientError> {
    let mut view = View::new(id);
    let result = follow_with(client, id, &mut view);
    view.finish();
    result
}

fn connect(
    client: &Client,
    id: &str,
    last: Option<&str>,
) -> Result<SseReader<BufReader<Response>>, ClientError> {
    let mut request = client
        .request(reqwest::Method::GET, &format!("/api/v1/jobs/{id}/events"))
        .header(reqwest::header::ACCEPT, "text/event-stream");
    if let Some(last) = last {
        request = request.header("Last-Event-ID", last);
    }
    let response = client.send(request)?;
    Ok(SseReader::new(BufReader::new(response)))
}

fn follow_with(client: &Client, id: &str, view: &mut View) -> Result<Final, ClientError> {
    let mut last_id: Option<String> = None;
    let mut reader = None;
    let mut failures = 0u32;
    loop {
        let stream = match &mut reader {
            Some(r) => r,
            None => match connect(client, id, last_id.as_deref()) {
                Ok(r) => reader.insert(r),
                // The server may be restarting (refused, or 503 while it loads).
                Err(e) if retryable(&e) && failures < MAX_RECONNECTS => {
                    failures += 1;
                    view.notice(&format!("{e}; reconnecting ({failures}/{MAX_RECONNECTS})"));
                    std::thread::sleep(backoff(failures));
                    continue;
                }
                Err(e) => return Err(e),
            },
        };
        let why = match stream.next_event() {
            Ok(Some(event)) => {
                failures = 0;
                if let Some(seq) = &event.id {
                    last_id = Some(seq.clone());
                }
                let data: Value = serde_json::from_str(&event.data).map_err(|e| {
                    ClientError::Protocol(format!("an event that is not JSON ({e})"))
                })?;
                let kind = match event.event.as_str() {
                    "message" => data["kind"].as_str().unwrap_or("message").to_string(),
                    k => k.to_string(),
                };
                view.event(&kind, &data);
                if is_final(&kind) {
                    return Ok(Final { kind, data });
                }
                continue;
            }
            // The server ends the stream only after the final event: anything else is a cut.
            Ok(None) => "the event stream ended early".to_string(),
            Err(e) => format!("the event stream broke off: {}", super::innermost(&e)),
        };
        reader = None;
        failures += 1;
        if failures > MAX_RECONNECTS {
            return Err(ClientError::Unreachable {
                base: client.base().to_string(),
                reason: why,
            });
        }
        view.notice(&format!(
            "{why}; reconnecting ({failures}/{MAX_RECONNECTS})"
        ));
        std::thread::sleep(backoff(failures));
    }
}

/// Worth reconnecting: no answer, or the server busy or starting.
fn retryable(e: &ClientError) -> bool {
    match e {
        ClientError::Unreachable { .. } => true,
        ClientError::Api { status, .. } | ClientError::Http { status, .. } => {
            matches!(status, 502..=504)
        }
        _ => false,
    }
}

/// 0.5 s, 1 s, 2 s, then 5 s.
fn backoff(failures: u32) -> Duration {
    Duration::from_millis((250u64 << failures.min(5)).min(5000))
}

/// What the user sees: a bar on a terminal, else a line per change (progress every 10 %).
struct View {
    id: String,
    bar: Option<ProgressBar>,
    /// The stage and tenth of the last plain progress line.
    last_plain: Option<(String, u32)>,
}

impl View {
    fn new(id: &str) -> View {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(1000);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:40} {percent:>3}% {msg}",
                )
                .expect("valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar.set_message("waiting for the server");
            bar
        });
        View {
            id: id.to_string(),
            bar,
            last_plain: None,
        }
    }

    fn notice(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("job {}: {text}", self.id),
        }
    }

    fn event(&mut self, kind: &str, data: &Value) {
        let text = describe(kind, data);
        match &self.bar {
            Some(bar) => {
                if let Some(p) = data["percent"].as_f64() {
                    bar.set_position((p * 10.0).round() as u64);
                }
                if kind == "succeeded" {
                    bar.set_position(1000);
                }
                bar.set_message(text);
            }
            None => {
                if kind == "progress" {
                    let stage = data["stage"].as_str().unwrap_or("").to_string();
                    let tenth = (data["percent"].as_f64().unwrap_or(0.0) / 10.0) as u32;
                    let key = Some((stage, tenth));
                    if key == self.last_plain {
                        return;
                    }
                    self.last_plain = key;
                } else {
                    self.last_plain = None;
                }
                eprintln!("job {}: {text}", self.id);
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// One event in words.
fn describe(kind: &str, data: &Value) -> String {
    let attempt = data["attempt"].as_u64().unwrap_or(1);
    match kind {
        "queued" => match data["queue_position"].as_u64() {
            Some(p) => format!("queued (position {p})"),
            None => "queued".into(),
        },
        "started" if attempt > 1 => format!("started (attempt {attempt})"),
        "started" => "started".into(),
        "progress" => {
            let step = data["step"].as_u64().unwrap_or(0);
            let total = data["total"].as_u64().unwrap_or(0);
            let what = match data["stage"].as_str().unwrap_or("working") {
                "sampling" => format!("sampling step {step}/{total}"),
                "decode" | "decoding" => format!("decoding {step}/{total}"),
                other => other.to_string(),
            };
            let percent = data["percent"]
                .as_f64()
                .map(|p| format!(" {p:.0}%"))
                .unwrap_or_default();
            let eta = data["eta_seconds"]
                .as_f64()
                .map(|s| format!(", ETA {s:.1} s"))
                .unwrap_or_default();
            format!("{what}{percent}{eta}")
        }
        "retrying" => match data["error"].as_str() {
            Some(e) => format!("attempt {attempt} failed ({e}); waiting for a retry"),
            None => format!("attempt {attempt} failed; waiting for a retry"),
        },
        "requeued" => "given back to the queue (the server is stopping)".into(),
        "failed" => match data["error"].as_str() {
            Some(e) => format!("failed: {e}"),
            None => "failed".into(),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_in_words() {
        assert_eq!(
            describe("queued", &json!({"queue_position": 2})),
            "queued (position 2)"
        );
        assert_eq!(
            describe(
                "progress",
                &json!({"stage": "sampling", "step": 3, "total": 31, "percent": 9.7, "eta_seconds": 4.26})
            ),
            "sampling step 3/31 10%, ETA 4.3 s"
        );
        assert_eq!(
            describe("retrying", &json!({"attempt": 1, "error": "node lost"})),
            "attempt 1 failed (node lost); waiting for a retry"
        );
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(9), Duration::from_millis(5000));
    }
}
