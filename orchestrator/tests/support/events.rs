//! A client of a job's event stream over HTTP, `GET /api/v1/jobs/{id}/events` (Server-Sent
//! Events, one JSON `data:` per event), for the orchestrator's in-process tests: they wait on
//! it for a job to start or finish instead of polling.

use std::time::Duration;

use serde_json::Value;

use super::TestService;

/// Only against hangs: how long one wait on a stream may take.
const WAIT_TIMEOUT: Duration = Duration::from_secs(60);

impl TestService {
    /// Reads the events of `job` from the first until one of `kind`; returns its data.
    pub async fn wait_event(&self, job: &str, kind: &str) -> Value {
        let read = async {
            let mut response = self
                .client
                .get(format!("{}/api/v1/jobs/{job}/events", self.base))
                .send()
                .await
                .expect("GET events");
            assert_eq!(response.status().as_u16(), 200, "events of {job}");
            let mut buffer = String::new();
            let mut kinds = Vec::new();
            loop {
                while let Some(end) = buffer.find("\n\n") {
                    let block: String = buffer.drain(..end + 2).collect();
                    let mut name = String::new();
                    let mut data = String::new();
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("event:") {
                            name = v.trim().to_string();
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.trim_start());
                        }
                    }
                    if name.is_empty() {
                        continue; // a keep-alive comment
                    }
                    if name == kind {
                        return serde_json::from_str(&data).expect("event JSON");
                    }
                    kinds.push(name);
                }
                let chunk = response.chunk().await.expect("the stream reads");
                let Some(chunk) = chunk else {
                    panic!("the events of {job} ended before {kind}: {kinds:?}");
                };
                buffer.push_str(std::str::from_utf8(&chunk).expect("UTF-8 events"));
            }
        };
        tokio::time::timeout(WAIT_TIMEOUT, read)
            .await
            .unwrap_or_else(|_| panic!("no {kind} event of {job}"))
    }
}
