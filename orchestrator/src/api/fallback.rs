//! What the router answers when no route matches a path (404) or a route's path is asked with
//! a method it does not serve (405, with `Allow` listing the methods it does), in the error shape
//! of the API the path belongs to: the DiffRhythm API's for `/generate`, `/output/…`, `/status`
//! and `/files`, the task API's for `/api/v1/task…` and `/v1/…`, the Riffusion-style API's for
//! `/riffusion/…`, and Refrain's own for everything else. Every such answer is JSON.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::diffrhythm::DiffRhythmError;
use super::error::ApiError;
use super::riffusion::error::RiffError;
use super::routing::Route;
use super::task::{Spelling, TaskError};
use crate::error::{ErrorCode, Field, OrchestratorError};

/// The message of an answer for a path no route has (tests look for it).
pub const NO_SUCH_ENDPOINT: &str = "No such endpoint.";

enum Api {
    DiffRhythm,
    Task(Spelling),
    Riffusion,
    Refrain,
}

fn api_of(path: &str) -> Api {
    let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
    if under("/generate") || under("/output") || under("/status") || under("/files") {
        Api::DiffRhythm
    } else if under("/api/v1/task") {
        Api::Task(Spelling::Piapi)
    } else if under("/v1") {
        Api::Task(Spelling::Qubico)
    } else if under("/riffusion") {
        Api::Riffusion
    } else {
        Api::Refrain
    }
}

/// 404 for a path no route has.
pub async fn unknown_route(request: Request) -> Response {
    let path = request.uri().path();
    match api_of(path) {
        Api::DiffRhythm => (
            StatusCode::NOT_FOUND,
            Json(json!({"status": "not_found", "message": NO_SUCH_ENDPOINT})),
        )
            .into_response(),
        Api::Task(spelling) => TaskError::own(
            spelling,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            NO_SUCH_ENDPOINT,
            json!({"path": path}),
        )
        .into_response(),
        Api::Riffusion => RiffError(not_found()).into_response(),
        Api::Refrain => ApiError(not_found()).into_response(),
    }
}

fn not_found() -> OrchestratorError {
    OrchestratorError::coded(
        ErrorCode::NotFound,
        Field::Named("path".into()),
        NO_SUCH_ENDPOINT,
    )
}

/// Whether route `template` (`/api/v1/jobs/{id}`, `/output/{*file}`) matches `path`.
fn matches(template: &str, path: &str) -> bool {
    let mut want = template.split('/');
    let mut have = path.split('/');
    loop {
        match (want.next(), have.next()) {
            (None, None) => return true,
            (Some(w), _) if w.starts_with("{*") => return true,
            (Some(w), Some(h)) if w.starts_with('{') => {
                if h.is_empty() {
                    return false;
                }
            }
            (Some(w), Some(h)) if w == h => {}
            _ => return false,
        }
    }
}

/// The 405 handler for `table`: the methods the path has go into `Allow`.
pub fn method_not_allowed(
    table: Arc<Vec<Route>>,
) -> impl Fn(Request) -> std::future::Ready<Response> + Clone + Send + Sync + 'static {
    move |request: Request| {
        let path = request.uri().path().to_string();
        let mut allowed: Vec<&str> = table
            .iter()
            .filter(|r| matches(r.path, &path))
            .flat_map(|r| {
                if r.method == "GET" {
                    vec!["GET", "HEAD"]
                } else {
                    vec![r.method]
                }
            })
            .collect();
        allowed.sort_unstable();
        allowed.dedup();
        let allow = allowed.join(", ");
        let message = format!(
            "{} is not allowed on {path}; this path takes {allow}",
            request.method()
        );
        let error = || {
            OrchestratorError::coded(
                ErrorCode::MethodNotAllowed,
                Field::Named("method".into()),
                message.clone(),
            )
        };
        let mut response = match api_of(&path) {
            Api::DiffRhythm => DiffRhythmError(error()).into_response(),
            Api::Task(spelling) => TaskError::own(
                spelling,
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                message.clone(),
                json!({"allowed": allowed}),
            )
            .into_response(),
            Api::Riffusion => RiffError(error()).into_response(),
            Api::Refrain => ApiError(error()).into_response(),
        };
        if let Ok(value) = HeaderValue::from_str(&allow) {
            response.headers_mut().insert(header::ALLOW, value);
        }
        std::future::ready(response)
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn templates() {
        assert!(matches("/api/v1/jobs/{id}", "/api/v1/jobs/abc"));
        assert!(!matches("/api/v1/jobs/{id}", "/api/v1/jobs/abc/events"));
        assert!(!matches("/api/v1/jobs/{id}", "/api/v1/jobs/"));
        assert!(matches("/output/{*file}", "/output/a/b.wav"));
        assert!(matches("/generate", "/generate"));
        assert!(!matches("/generate", "/generated"));
    }
}
