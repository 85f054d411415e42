//! The bots' only way to the job core: an async client of Refrain's own HTTP API
//! (`docs/api.md`) with the configured API key. Create a job (with an `Idempotency-Key`, so a
//! request sent again after a lost answer never makes a second job), read, list and cancel
//! jobs, open a job's event stream from a sequence number, and download a result file. The
//! bots never touch the store, the queue or a node.

use std::time::Duration;

use protocol::bots::{Secret, UserLimits};
use reqwest::RequestBuilder;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a call to the orchestrator can end in.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API answered with its JSON error.
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        status: u16,
        code: String,
        message: String,
        /// Seconds to wait, from `Retry-After` (429, 503).
        retry_after: Option<u64>,
    },
    /// The server could not be reached, or the connection broke.
    #[error("cannot reach the Refrain server: {0}")]
    Transport(#[from] reqwest::Error),
    /// An event stream that stayed silent past [`STALL_TIMEOUT`] (the server sends a
    /// keep-alive every 15 s): the connection is taken as lost.
    #[error("the event stream went silent")]
    Stalled,
    /// An answer that is not what the API documents.
    #[error("unexpected answer from the Refrain server: {0}")]
    Decode(String),
}

impl ClientError {
    /// Whether trying again later may succeed: transport errors and 5xx answers.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Transport(_) | ClientError::Stalled => true,
            ClientError::Api { status, .. } => *status >= 500,
            ClientError::Decode(_) => false,
        }
    }
}

/// A job as the API shows it: the fields the bots use.
#[derive(Debug, Clone, Deserialize)]
pub struct Job {
    pub id: String,
    pub state: String,
    pub owner: String,
    #[serde(default)]
    pub queue_position: Option<usize>,
    #[serde(default)]
    pub progress: Option<Progress>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub result: Option<JobResult>,
    #[serde(default)]
    pub last_event: u64,
    #[serde(default)]
    pub client_data: Option<String>,
    #[serde(default)]
    pub request: Value,
    /// RFC 3339.
    #[serde(default)]
    pub created_at: Option<String>,
}

impl Job {
    /// Whether the job has ended (succeeded, failed or cancelled).
    pub fn is_finished(&self) -> bool {
        matches!(self.state.as_str(), "succeeded" | "failed" | "cancelled")
    }
}

/// A running job's progress.
#[derive(Debug, Clone, Deserialize)]
pub struct Progress {
    pub stage: String,
    pub step: u32,
    pub total: u32,
    pub percent: f32,
    #[serde(default)]
    pub eta_seconds: Option<f64>,
}

/// The songs of a succeeded job.
#[derive(Debug, Clone, Deserialize)]
pub struct JobResult {
    pub duration_seconds: f64,
    pub files: Vec<ResultFile>,
}

/// One result file: `url` needs the API key, `public_url` (`/output/…`) does not.
#[derive(Debug, Clone, Deserialize)]
pub struct ResultFile {
    pub variant: u32,
    pub format: String,
    pub bytes: u64,
    pub url: String,
    pub public_url: String,
}

/// One event of a job's stream (`GET /api/v1/jobs/{id}/events`): the fields the bots use.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct JobEvent {
    /// Per-job sequence number, from 1 (for `Last-Event-ID`).
    pub seq: u64,
    /// `queued`, `started`, `progress`, `retrying`, `requeued`, `succeeded`, `failed`,
    /// `cancelled` or `expired`.
    pub kind: String,
    pub state: String,
    #[serde(default)]
    pub stage: Option<String>,
    #[serde(default)]
    pub step: Option<u32>,
    #[serde(default)]
    pub total: Option<u32>,
    #[serde(default)]
    pub percent: Option<f32>,
    #[serde(default)]
    pub eta_seconds: Option<f64>,
    #[serde(default)]
    pub queue_position: Option<usize>,
    #[serde(default)]
    pub error: Option<String>,
}

impl JobEvent {
    /// Whether nothing follows this event.
    pub fn is_final(&self) -> bool {
        matches!(
            self.kind.as_str(),
            "succeeded" | "failed" | "cancelled" | "expired"
        )
    }
}

/// A page of `GET /api/v1/jobs`.
#[derive(Debug, Clone, Deserialize)]
pub struct JobPage {
    pub jobs: Vec<Job>,
    pub next_cursor: Option<String>,
}

/// The body of `POST /api/v1/jobs` a bot sends.
#[derive(Debug, Clone, Serialize)]
pub struct NewJob {
    pub lyrics: String,
    pub style: NewStyle,
    pub length_seconds: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    pub format: String,
    pub on_behalf_of: OnBehalfOf,
    pub client_data: String,
}

/// The style of a [`NewJob`]: a prompt or an uploaded recording.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NewStyle {
    Prompt(String),
    UploadId(String),
}

/// The chat user a job is for (its owner on the server) and their limits.
#[derive(Debug, Clone, Serialize)]
pub struct OnBehalfOf {
    pub user: String,
    pub limits: UserLimits,
}

/// A client of one orchestrator. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    key: Option<Secret>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("base", &self.base).finish()
    }
}

impl Client {
    /// A client of the server at `base` (`http://host:port`), sending `key` if given.
    pub fn new(base: &str, key: Option<Secret>) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_string(),
            key,
        })
    }

    /// `base` + `path` (a path such as a result file's `url`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn authorized(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.key {
            Some(key) => request.bearer_auth(key.expose()),
            None => request,
        }
    }

    /// Creates a job; the same `idempotency_key` and body return the same job.
    pub async fn create(&self, job: &NewJob, idempotency_key: &str) -> Result<Job, ClientError> {
        let request = self
            .http
            .post(self.url("/api/v1/jobs"))
            .header("idempotency-key", idempotency_key)
            .timeout(Duration::from_secs(60))
            .json(job);
        json(self.authorized(request).send().await?).await
    }

    /// The job `id`.
    pub async fn job(&self, id: &str) -> Result<Job, ClientError> {
        let request = self
            .http
            .get(self.url(&format!("/api/v1/jobs/{id}")))
            .timeout(Duration::from_secs(30));
        json(self.authorized(request).send().await?).await
    }

    /// Cancels the job `id` (409 `job_finished` once it ended).
    pub async fn cancel(&self, id: &str) -> Result<Job, ClientError> {
        let request = self
            .http
            .delete(self.url(&format!("/api/v1/jobs/{id}")))
            .timeout(Duration::from_secs(30));
        json(self.authorized(request).send().await?).await
    }

    /// Replaces the `client_data` of job `id` (`PATCH /api/v1/jobs/{id}`).
    pub async fn set_client_data(&self, id: &str, data: &str) -> Result<Job, ClientError> {
        let request = self
            .http
            .patch(self.url(&format!("/api/v1/jobs/{id}")))
            .timeout(Duration::from_secs(30))
            .json(&serde_json::json!({ "client_data": data }));
        json(self.authorized(request).send().await?).await
    }

    /// The jobs in `state`, newest first, until the first created before `since_ms` (Unix
    /// milliseconds), at most `max`.
    pub async fn list_since(
        &self,
        state: &str,
        since_ms: i64,
        max: usize,
    ) -> Result<Vec<Job>, ClientError> {
        let mut jobs = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.list(state, cursor.as_deref()).await?;
            for job in page.jobs {
                let created = job
                    .created_at
                    .as_deref()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map_or(i64::MAX, |t| t.timestamp_millis());
                if created < since_ms || jobs.len() >= max {
                    return Ok(jobs);
                }
                jobs.push(job);
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(jobs),
            }
        }
    }

    /// One page of jobs in `state`, newest first.
    pub async fn list(&self, state: &str, cursor: Option<&str>) -> Result<JobPage, ClientError> {
        let mut query = vec![("state", state.to_string()), ("limit", "100".into())];
        if let Some(c) = cursor {
            query.push(("cursor", c.to_string()));
        }
        let request = self
            .http
            .get(self.url("/api/v1/jobs"))
            .query(&query)
            .timeout(Duration::from_secs(30));
        json(self.authorized(request).send().await?).await
    }

    /// Every job in `state` (all pages, at most `max`).
    pub async fn list_all(&self, state: &str, max: usize) -> Result<Vec<Job>, ClientError> {
        self.list_since(state, i64::MIN, max).await
    }

    /// Uploads a reference recording (`POST /api/v1/uploads`, the raw bytes); returns its
    /// `upload_id`.
    pub async fn upload(&self, bytes: Vec<u8>, content_type: &str) -> Result<String, ClientError> {
        let request = self
            .http
            .post(self.url("/api/v1/uploads"))
            .header("content-type", content_type)
            .timeout(Duration::from_secs(300))
            .body(bytes);
        let answer: Value = json(self.authorized(request).send().await?).await?;
        answer["upload_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ClientError::Decode("no upload_id in the answer".into()))
    }

    /// Downloads a result file by its `url` (the API's, with the key).
    pub async fn download(&self, url: &str) -> Result<Vec<u8>, ClientError> {
        let request = self
            .http
            .get(self.url(url))
            .timeout(Duration::from_secs(600));
        let response = checked(self.authorized(request).send().await?).await?;
        Ok(response.bytes().await?.to_vec())
    }

    /// A signed download link to variant 1 of job `id` in `format` (at `kbps`, the server's
    /// bitrate when `None`) that works for `seconds` (`POST /api/v1/jobs/{id}/links`): its
    /// absolute URL.
    pub async fn link(
        &self,
        id: &str,
        format: &str,
        kbps: Option<u32>,
        seconds: u64,
    ) -> Result<String, ClientError> {
        let mut body = serde_json::json!({"format": format, "expires_in_seconds": seconds});
        if let Some(kbps) = kbps {
            body["kbps"] = kbps.into();
        }
        let request = self
            .http
            .post(self.url(&format!("/api/v1/jobs/{id}/links")))
            .timeout(Duration::from_secs(30))
            .json(&body);
        let answer: Value = json(self.authorized(request).send().await?).await?;
        answer["url"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ClientError::Decode("no url in the answer".into()))
    }

    /// Opens the event stream of job `id` after sequence number `after`.
    pub async fn events(&self, id: &str, after: u64) -> Result<EventStream, ClientError> {
        let request = self
            .http
            .get(self.url(&format!("/api/v1/jobs/{id}/events")))
            .header("last-event-id", after.to_string())
            .header("accept", "text/event-stream");
        let response = checked(self.authorized(request).send().await?).await?;
        Ok(EventStream {
            response,
            buffer: Vec::new(),
        })
    }
}

/// The answer, or the API's error in it.
async fn checked(response: reqwest::Response) -> Result<reqwest::Response, ClientError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let error = &body["error"];
    Err(ClientError::Api {
        status: status.as_u16(),
        code: error["code"].as_str().unwrap_or("unknown").to_string(),
        message: error["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| {
                status
                    .canonical_reason()
                    .unwrap_or("request failed")
                    .to_string()
            }),
        retry_after,
    })
}

async fn json<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> Result<T, ClientError> {
    let response = checked(response).await?;
    let bytes = response.bytes().await?;
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
}

/// How long an event stream may stay silent (three keep-alive periods) before it is dropped
/// and reopened: a connection whose peer vanished without closing it must not hang a follower.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(45);

/// A job's Server-Sent Events, one [`JobEvent`] at a time.
pub struct EventStream {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl EventStream {
    /// The next event; `Ok(None)` when the server ended the stream.
    pub async fn next(&mut self) -> Result<Option<JobEvent>, ClientError> {
        loop {
            if let Some(block) = take_block(&mut self.buffer) {
                if let Some(event) = parse_block(&block)? {
                    return Ok(Some(event));
                }
                continue;
            }
            let chunk = tokio::time::timeout(STALL_TIMEOUT, self.response.chunk())
                .await
                .map_err(|_| ClientError::Stalled)??;
            match chunk {
                Some(chunk) => self.buffer.extend_from_slice(&chunk),
                None => return Ok(None),
            }
        }
    }
}

/// Removes the first complete SSE block (up to a blank line) from `buffer`.
fn take_block(buffer: &mut Vec<u8>) -> Option<String> {
    let text = buffer;
    let end = (0..text.len()).find_map(|i| {
        if text[i..].starts_with(b"\n\n") {
            Some((i, 2))
        } else if text[i..].starts_with(b"\r\n\r\n") {
            Some((i, 4))
        } else {
            None
        }
    })?;
    let block = String::from_utf8_lossy(&text[..end.0]).into_owned();
    text.drain(..end.0 + end.1);
    Some(block)
}

/// The event of one SSE block; `None` for a comment (keep-alive) or a block without data.
fn parse_block(block: &str) -> Result<Option<JobEvent>, ClientError> {
    let data: Vec<&str> = block
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect();
    if data.is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&data.join("\n"))
        .map(Some)
        .map_err(|e| ClientError::Decode(format!("event: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_blocks_are_split_and_comments_skipped() {
        let mut buffer = b": keep-alive\n\nid: 3\nevent: progress\ndata: {\"job\":\"".to_vec();
        assert_eq!(take_block(&mut buffer).as_deref(), Some(": keep-alive"));
        assert!(take_block(&mut buffer).is_none(), "incomplete block waits");
        assert_eq!(parse_block(": keep-alive").unwrap(), None);
        let job = "ab".repeat(16);
        let data = format!(
            "id: 3\r\nevent: progress\r\ndata: {{\"job\":\"{job}\",\"seq\":3,\"kind\":\"progress\",\
             \"state\":\"running\",\"attempt\":1,\"at_ms\":5,\"percent\":40.0}}\r\n\r\n"
        );
        let mut buffer = data.into_bytes();
        let block = take_block(&mut buffer).unwrap();
        assert!(buffer.is_empty());
        let event = parse_block(&block).unwrap().unwrap();
        assert_eq!(event.seq, 3);
        assert_eq!(event.percent, Some(40.0));
        assert!(parse_block("data: {not json").is_err());
    }
}
