//! Request bodies are read once, whole, before any handler sees them: at most
//! `PEAQOS_MAX_BODY_BYTES` (else `413 PAYLOAD_TOO_LARGE`), within `PEAQOS_BODY_READ_TIMEOUT_MS`
//! (else `400 VALIDATION_ERROR`, reason `body-read-timeout`, and the connection closes), so a
//! client that trickles its body cannot hold a request open.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use super::json::payload_too_large;
use crate::App;
use crate::error::{ApiError, ErrorCode};

fn read_timeout() -> ApiError {
    ApiError::new(
        ErrorCode::VALIDATION_ERROR,
        "The request body did not arrive within PEAQOS_BODY_READ_TIMEOUT_MS",
    )
    .with_reason("body-read-timeout")
}

fn unreadable() -> ApiError {
    ApiError::new(
        ErrorCode::VALIDATION_ERROR,
        "The request body could not be read",
    )
    .with_reason("invalid-body")
}

pub async fn buffer(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let limit = app.config.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return payload_too_large().into_response();
    }
    let (parts, body) = req.into_parts();
    let limited = http_body_util::Limited::new(body, limit);
    let deadline = std::time::Duration::from_millis(app.config.body_read_timeout_ms);
    let bytes = match tokio::time::timeout(deadline, limited.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => {
            return payload_too_large().into_response();
        }
        Ok(Err(_)) => return unreadable().into_response(),
        Err(_) => {
            let mut response = read_timeout().into_response();
            response.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            return response;
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
