//! Every error answers in the JSON envelope (README C6), including the ones the framework
//! produces itself: unknown routes, wrong methods, rejected extractors, panics.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::json::payload_too_large;
use crate::error::{ApiError, ErrorCode};

pub async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NOT_FOUND, "No route matches this path")
}

/// `405 METHOD_NOT_ALLOWED`: the router's answer for a known path, also given by routes that
/// answer other methods themselves.
pub fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::METHOD_NOT_ALLOWED,
        "This method is not allowed on this path",
    )
}

/// Rewrites an error response that is not already JSON into the envelope, keeping its headers
/// (the `Allow` header of a 405, for one).
pub async fn ensure_json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let error = match status {
        StatusCode::NOT_FOUND => ApiError::new(ErrorCode::NOT_FOUND, "No route matches this path"),
        StatusCode::METHOD_NOT_ALLOWED => method_not_allowed(),
        StatusCode::PAYLOAD_TOO_LARGE => payload_too_large(),
        s if s.is_server_error() => {
            tracing::error!(status = s.as_u16(), "unhandled server error");
            ApiError::new(ErrorCode::INTERNAL_ERROR, "Internal server error")
        }
        _ => ApiError::new(ErrorCode::VALIDATION_ERROR, "The request is not valid")
            .with_reason("invalid-request"),
    };
    let (mut parts, _) = response.into_parts();
    let fresh = error.into_response();
    parts.status = fresh.status();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::CONTENT_TYPE, super::JSON_CONTENT_TYPE.clone());
    let (_, body) = fresh.into_parts();
    Response::from_parts(parts, Body::new(body))
}
