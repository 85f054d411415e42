//! Serving a result file over HTTP for every API: `Range`, `HEAD`, `Content-Length`,
//! `Last-Modified` and conditional requests come from `tower_http::services::ServeFile`; this
//! adds the audio content type and a day of caching (a result never changes): public when the
//! file was asked for without credentials, private (never kept by a shared cache) when the
//! request carried an API key.
//!
//! A `Range` header that does not parse as a byte range set (`bytes=abc`, `items=0-1`, a range
//! whose end is before its start) is ignored and the whole file served, as RFC 9110 allows; a
//! range that starts past the end of the file is the caller API's `416` error
//! (`range_not_satisfiable`), in JSON like every other error.

use std::path::Path;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use protocol::AudioFormat;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::error::io_error;
use crate::error::{ErrorCode, Field, OrchestratorError};

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
    let mut request = request;
    let ignore = request
        .headers()
        .get(header::RANGE)
        .is_some_and(|v| !v.to_str().is_ok_and(is_byte_range_set));
    if ignore {
        request.headers_mut().remove(header::RANGE);
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
    if status == StatusCode::RANGE_NOT_SATISFIABLE {
        let size = tokio::fs::metadata(path)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        return Err(OrchestratorError::coded(
            ErrorCode::RangeNotSatisfiable,
            Field::Named("Range".into()),
            format!("the range starts past the end of the file ({size} bytes)"),
        ));
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

/// Whether `value` is a syntactically valid `bytes=` range set (RFC 9110 §14.1.1): each range
/// `first-`, `first-last` (first <= last) or `-suffix`.
fn is_byte_range_set(value: &str) -> bool {
    let Some(set) = value.trim().strip_prefix("bytes=") else {
        return false;
    };
    let number = |s: &str| !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit());
    set.split(',').all(|range| {
        let Some((first, last)) = range.trim().split_once('-') else {
            return false;
        };
        match (number(first), number(last)) {
            (true, true) => first.parse::<u64>().ok() <= last.parse::<u64>().ok(),
            (true, false) => last.is_empty(),
            (false, true) => first.is_empty(),
            (false, false) => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::is_byte_range_set;

    #[test]
    fn range_sets() {
        for good in [
            "bytes=0-3",
            "bytes=5-",
            "bytes=-10",
            "bytes=0-1, 4-5",
            " bytes=0-0",
        ] {
            assert!(is_byte_range_set(good), "{good}");
        }
        for bad in [
            "bytes=abc",
            "items=0-1",
            "bytes=5-3",
            "bytes=",
            "bytes=-",
            "bytes=1-2-3",
            "0-1",
        ] {
            assert!(!is_byte_range_set(bad), "{bad}");
        }
    }
}
