//! Serving a result file over HTTP for every API: `Range`, `HEAD`, `Content-Length`,
//! `Last-Modified` and conditional requests come from `tower_http::services::ServeFile`; this
//! adds the audio content type and a day of caching (a result never changes): public when the
//! file was asked for without credentials, private (never kept by a shared cache) when the
//! request carried an API key.

use std::path::Path;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use protocol::AudioFormat;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::error::io_error;
use crate::error::OrchestratorError;

/// The file at `path` as `format`; `Ok(None)` when there is no such file (any more).
pub async fn serve(
    path: &Path,
    format: AudioFormat,
    request: Request,
) -> Result<Option<Response>, OrchestratorError> {
    match tokio::fs::metadata(path).await {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(format!("reading {}", path.display()), e)),
    }
    let private = request.headers().contains_key(header::AUTHORIZATION)
        || request.headers().contains_key("x-api-key");
    let mut response = match ServeFile::new(path).oneshot(request).await {
        Ok(r) => r.map(Body::new),
        Err(never) => match never {},
    };
    let status = response.status();
    if status == StatusCode::NOT_FOUND {
        return Ok(None); // deleted between the check and the open
    }
    if status.is_success() || status == StatusCode::NOT_MODIFIED {
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        );
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(if private {
                "private, max-age=86400"
            } else {
                "public, max-age=86400"
            }),
        );
    }
    Ok(Some(response))
}
