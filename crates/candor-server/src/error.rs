//! The API error type: every failure a handler reports, with its HTTP status and the
//! stable machine-readable code of the JSON body `{"error": CODE, "detail": "…"}`
//! (spec/api.md, "Errors"). Client faults map to 4xx and are decided before any state
//! changes; only server faults (storage, shutdown) map to 5xx.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answered to an HTTP client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed (bad path, bad query, bad JSON syntax).
    #[error("{0}")]
    BadRequest(String),
    /// 400: the body is not well-formed JSON.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// 401: the admin bearer token is missing or wrong.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the submitter may not log this entry (unknown company, unknown or revoked key,
    /// reserved entry kind).
    #[error("{detail}")]
    Forbidden { code: &'static str, detail: String },
    /// 404: no such resource (yet).
    #[error("{0}")]
    NotFound(String),
    /// 405: the route exists but not for this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 408: the client was too slow sending its request body.
    #[error("{0}")]
    RequestTimeout(String),
    /// 409: the registry change conflicts with the current registry.
    #[error("{0}")]
    Conflict(String),
    /// 413: body, line count or entry larger than the limits.
    #[error("{0}")]
    TooLarge(String),
    /// 415: wrong `Content-Type`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: well-formed JSON that is not a valid entry, or a registry request whose key
    /// does not fit the name.
    #[error("{0}")]
    InvalidEntry(String),
    /// 422: a company signature does not verify.
    #[error("{0}")]
    BadSignature(String),
    /// 429: per-company rate limit exceeded.
    #[error("{detail}")]
    RateLimited {
        detail: String,
        retry_after_secs: u64,
    },
    /// 429: the sequencing pool is full.
    #[error("{detail}")]
    PoolFull {
        detail: String,
        retry_after_secs: u64,
    },
    /// 503: the log cannot take submissions right now (shutting down, storage failure).
    #[error("{0}")]
    Unavailable(String),
    /// 500: an internal invariant failed (corrupt storage, bug).
    #[error("{0}")]
    Internal(String),
    /// Any of the above, caused by line `line` (1-based) of an NDJSON request.
    #[error("line {line}: {inner}")]
    AtLine { line: usize, inner: Box<ApiError> },
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<usize>,
}

impl ApiError {
    /// Wraps `self` as caused by the 1-based NDJSON line `line`.
    pub fn at_line(self, line: usize) -> ApiError {
        match self {
            already @ ApiError::AtLine { .. } => already,
            inner => ApiError::AtLine {
                line,
                inner: Box::new(inner),
            },
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::MalformedJson(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::InvalidEntry(_) | ApiError::BadSignature(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::RateLimited { .. } | ApiError::PoolFull { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::AtLine { inner, .. } => inner.status(),
        }
    }

    /// The stable error code of the JSON body (spec/api.md lists them all).
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden { code, .. } => code,
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::Conflict(_) => "conflict",
            ApiError::TooLarge(_) => "too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::InvalidEntry(_) => "invalid_entry",
            ApiError::BadSignature(_) => "bad_signature",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::PoolFull { .. } => "pool_full",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
            ApiError::AtLine { inner, .. } => inner.code(),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited {
                retry_after_secs, ..
            }
            | ApiError::PoolFull {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            ApiError::Unavailable(_) => Some(1),
            ApiError::AtLine { inner, .. } => inner.retry_after(),
            _ => None,
        }
    }

    fn line(&self) -> Option<usize> {
        match self {
            ApiError::AtLine { line, .. } => Some(*line),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), "{self}");
        }
        let body = ErrorBody {
            error: self.code(),
            detail: self.to_string(),
            line: self.line(),
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after() {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        resp
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(r: axum::extract::rejection::BytesRejection) -> ApiError {
        let status = r.status();
        let detail = r.body_text();
        // A body cut off by the body time-out (RequestBodyTimeoutLayer) reaches us as
        // an opaque "failed to buffer" error: find the time-out in its causes.
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&r);
        while let Some(c) = cause {
            if c.is::<tower_http::timeout::TimeoutError>() {
                return ApiError::RequestTimeout(format!(
                    "the request body was not received in time: {detail}"
                ));
            }
            cause = c.source();
        }
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(format!(
                "request body is larger than this log accepts: {detail}"
            )),
            StatusCode::REQUEST_TIMEOUT => ApiError::RequestTimeout(detail),
            _ => ApiError::BadRequest(format!("could not read the request body: {detail}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_line_keeps_status_and_code_and_names_the_line() {
        let e = ApiError::BadSignature("signature does not verify".into()).at_line(7);
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.code(), "bad_signature");
        assert_eq!(e.to_string(), "line 7: signature does not verify");
        assert_eq!(e.line(), Some(7));
        // Wrapping twice keeps the innermost (first) line.
        assert_eq!(e.at_line(9).line(), Some(7));
    }

    #[test]
    fn rate_limits_carry_retry_after() {
        let e = ApiError::RateLimited {
            detail: "slow down".into(),
            retry_after_secs: 3,
        };
        let resp = e.into_response();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "3");
    }
}
