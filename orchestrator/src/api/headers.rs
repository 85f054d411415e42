//! Request headers every front end reads the same way. [`idempotency_key`] takes the
//! `Idempotency-Key` header as it is; admission checks its form (printable ASCII, 1–255) and
//! answers a repeated request with the job(s) it made.

use axum::http::HeaderMap;

use crate::error::{Field, OrchestratorError};

/// The `Idempotency-Key` header, if given; a value that is not even text is `invalid_field`.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, OrchestratorError> {
    headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str().map(str::to_string).map_err(|_| {
                OrchestratorError::invalid(Field::IdempotencyKey, "not printable ASCII")
            })
        })
        .transpose()
}
