//! A blocking client of Refrain's own HTTP API (`/api/v1`, contract in `docs/api.md`), the
//! ground under `refrain submit` ([`submit`]) and `refrain jobs` ([`jobs`]): the server address
//! and API key options ([`ServerArgs`]), one [`Client`] that sends every request with the key
//! as `Authorization: Bearer` (the key is never printed: its `Debug` is redacted and the
//! header is marked sensitive) and the error type ([`ClientError`], which carries the API's own
//! `{"error": {code, message, field}}` when there is one). Songs are written by [`download`],
//! events read by [`sse`] and followed by [`watch`].
//!
//! Every request has a connect timeout of 10 s and waits at most 60 s for each answer or each
//! read of a body (the event stream sends a keep-alive every 15 s, so a silent minute means a
//! dead connection); uploads may take 10 minutes.

pub mod download;
pub mod jobs;
pub mod schedules;
pub mod sse;
pub mod submit;
pub mod watch;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use reqwest::blocking::{RequestBuilder, Response};
use reqwest::header::{HeaderValue, AUTHORIZATION};
use serde_json::Value;

/// Where the client talks to when no `--server` or `REFRAIN_SERVER` is given.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8000";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// The server options of every client command.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Base URL of the Refrain server.
    #[arg(long, global = true, env = "REFRAIN_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// API key of the server, sent as `Authorization: Bearer` (never printed).
    #[arg(long, global = true, env = "REFRAIN_API_KEY", hide_env_values = true)]
    pub key: Option<ApiKey>,
}

/// An API key: printable ASCII, shown by `Debug` only as `ApiKey(<redacted>)`.
#[derive(Clone)]
pub struct ApiKey(String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl FromStr for ApiKey {
    type Err = String;

    /// The error never repeats the key.
    fn from_str(s: &str) -> Result<Self, String> {
        let key = s.trim();
        if key.is_empty() {
            return Err("the API key is empty".into());
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("an API key is printable ASCII without spaces".into());
        }
        Ok(ApiKey(key.to_string()))
    }
}

/// Why a request of the client failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid server URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    /// No HTTP answer: refused, unresolvable, timed out or cut off.
    #[error("cannot reach the Refrain server at {base}: {reason}")]
    Unreachable { base: String, reason: String },
    /// The API's own error body.
    #[error("{message} ({code}{}, HTTP {status})", field.as_deref().map(|f| format!(", field {f}")).unwrap_or_default())]
    Api {
        status: u16,
        code: String,
        message: String,
        field: Option<String>,
    },
    /// An error answer that is not the API's (a proxy, an old server).
    #[error("the server answered HTTP {status}: {body}")]
    Http { status: u16, body: String },
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    #[error("{context} {}: {source}", path.display())]
    File {
        context: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The job ended without a song.
    #[error("job {id} {state}{}", error.as_deref().map(|e| format!(": {e}")).unwrap_or_default())]
    JobEnded {
        id: String,
        state: String,
        error: Option<String>,
    },
}

impl ClientError {
    /// Whether the request may have failed before the server answered (worth a retry).
    pub fn is_transport(&self) -> bool {
        matches!(self, ClientError::Unreachable { .. })
    }
}

/// A blocking client of one server. `Debug` leaves the key out.
pub struct Client {
    http: reqwest::blocking::Client,
    base: String,
    key: Option<ApiKey>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Client {
    pub fn new(args: &ServerArgs) -> Result<Client, ClientError> {
        let raw = args.server.trim();
        let bad = |reason: &str| ClientError::BadUrl {
            url: raw.to_string(),
            reason: reason.to_string(),
        };
        let url = reqwest::Url::parse(raw).map_err(|e| bad(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("expected http:// or https://"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("a base URL has no query or fragment"));
        }
        let http = reqwest::blocking::Client::builder()
            .user_agent(concat!("refrain/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(READ_TIMEOUT)
            .build()
            .map_err(|e| bad(&e.to_string()))?;
        Ok(Client {
            http,
            base: url.as_str().trim_end_matches('/').to_string(),
            key: args.key.clone(),
        })
    }

    /// The server's base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// A request of `path` (from `/api/v1/…`) with the key.
    pub fn request(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        let builder = self.http.request(method, format!("{}{path}", self.base));
        match &self.key {
            Some(ApiKey(key)) => match HeaderValue::from_str(&format!("Bearer {key}")) {
                Ok(mut value) => {
                    value.set_sensitive(true);
                    builder.header(AUTHORIZATION, value)
                }
                Err(_) => builder,
            },
            None => builder,
        }
    }

    /// Sends `request`: a transport failure is [`ClientError::Unreachable`], an error status
    /// the API's error (or [`ClientError::Http`]).
    pub fn send(&self, request: RequestBuilder) -> Result<Response, ClientError> {
        let response = request.send().map_err(|e| self.unreachable(&e))?;
        check(response)
    }

    /// The JSON body of an answer.
    pub fn json(&self, response: Response) -> Result<Value, ClientError> {
        let text = response.text().map_err(|e| self.unreachable(&e))?;
        serde_json::from_str(&text)
            .map_err(|e| ClientError::Protocol(format!("not JSON ({e}): {}", excerpt(&text))))
    }

    /// `GET path` as JSON.
    pub fn get_json(&self, path: &str) -> Result<Value, ClientError> {
        let response = self.send(self.request(reqwest::Method::GET, path))?;
        self.json(response)
    }

    /// `DELETE path` as JSON.
    pub fn delete_json(&self, path: &str) -> Result<Value, ClientError> {
        let response = self.send(self.request(reqwest::Method::DELETE, path))?;
        self.json(response)
    }

    /// `POST /api/v1/uploads` of a recording (a multipart `file` part): the upload's JSON.
    pub fn upload(&self, file: &Path) -> Result<Value, ClientError> {
        let form = reqwest::blocking::multipart::Form::new()
            .file("file", file)
            .map_err(|source| ClientError::File {
                context: "cannot read",
                path: file.to_path_buf(),
                source,
            })?;
        let request = self
            .request(reqwest::Method::POST, "/api/v1/uploads")
            .timeout(UPLOAD_TIMEOUT)
            .multipart(form);
        let response = self.send(request)?;
        self.json(response)
    }

    /// The error of a request that got no (whole) answer, with its innermost cause.
    pub fn unreachable(&self, e: &reqwest::Error) -> ClientError {
        let mut reason = innermost(e);
        if e.is_timeout() && !reason.contains("timed out") {
            reason = format!("timed out ({reason})");
        }
        ClientError::Unreachable {
            base: self.base.clone(),
            reason,
        }
    }
}

/// The text of the last cause in `e`'s chain (the one that says what happened, e.g.
/// "Connection refused (os error 111)").
pub fn innermost(e: &dyn std::error::Error) -> String {
    let mut reason = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        reason = c.to_string();
        cause = c.source();
    }
    reason
}

/// `response` if its status is a success, else the API's error from its body.
fn check(response: Response) -> Result<Response, ClientError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let text = response.text().unwrap_or_default();
    Err(api_error(status.as_u16(), &text))
}

/// The API's `{"error": {code, message, field}}`, or the status and an excerpt of the body.
pub fn api_error(status: u16, body: &str) -> ClientError {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let error = parsed.as_ref().map(|v| &v["error"]);
    match error.and_then(|e| Some((e, e["message"].as_str()?))) {
        Some((e, message)) => ClientError::Api {
            status,
            code: e["code"].as_str().unwrap_or("error").to_string(),
            message: message.to_string(),
            field: e["field"].as_str().map(str::to_string),
        },
        None => ClientError::Http {
            status,
            body: excerpt(body),
        },
    }
}

/// At most 300 characters of `text` on one line.
fn excerpt(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 300 {
        format!("{}…", one_line.chars().take(300).collect::<String>())
    } else if one_line.is_empty() {
        "(empty body)".into()
    } else {
        one_line
    }
}

/// Rejects anything but a job id's characters before it goes into a URL path.
pub fn job_id(raw: &str) -> Result<&str, ClientError> {
    let id = raw.trim();
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ClientError::Protocol(format!(
            "{id:?} is not a job id (letters and digits)"
        )));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_carry_the_message_code_and_field() {
        let e = api_error(
            400,
            r#"{"error":{"code":"invalid_length","message":"length must be 95","field":"length_seconds"}}"#,
        );
        assert_eq!(
            e.to_string(),
            "length must be 95 (invalid_length, field length_seconds, HTTP 400)"
        );
        let e = api_error(502, "<html>\n bad gateway </html>");
        assert_eq!(
            e.to_string(),
            "the server answered HTTP 502: <html> bad gateway </html>"
        );
    }

    #[test]
    fn keys_are_never_shown() {
        let key: ApiKey = "rf_secret".parse().unwrap();
        assert_eq!(format!("{key:?}"), "ApiKey(<redacted>)");
        let args = ServerArgs {
            server: "http://127.0.0.1:1/".into(),
            key: Some(key),
        };
        assert!(!format!("{args:?}").contains("rf_secret"));
        let client = Client::new(&args).unwrap();
        assert!(!format!("{client:?}").contains("rf_secret"));
        assert_eq!(client.base(), "http://127.0.0.1:1");
        let err = "rf secret".parse::<ApiKey>().unwrap_err();
        assert!(!err.contains("secret"));
    }

    #[test]
    fn urls_and_ids_are_checked() {
        assert!(job_id("../x").is_err());
        assert_eq!(job_id(" ab12 ").unwrap(), "ab12");
        for bad in ["ftp://x", "http://x/?a=1", "not a url"] {
            let args = ServerArgs {
                server: bad.into(),
                key: None,
            };
            assert!(Client::new(&args).is_err(), "{bad}");
        }
    }
}
