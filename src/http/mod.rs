//! The HTTP conventions every feature shares (spec README §3): JSON bodies and answers, paging,
//! auth, idempotency, request ids, limits. The features' routes are mounted by `crate::routes`.

pub mod auth;
pub mod body;
pub mod envelope;
pub mod idempotency;
pub mod json;
pub mod origin;
pub mod paging;
pub mod query;
pub mod request_id;
pub mod server;
pub mod validate;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tower_http::catch_panic::CatchPanicLayer;

use crate::App;

pub static JSON_CONTENT_TYPE: HeaderValue =
    HeaderValue::from_static("application/json; charset=utf-8");

/// A JSON response from already serialised bytes.
pub fn json_bytes(status: StatusCode, bytes: Vec<u8>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, JSON_CONTENT_TYPE.clone())],
        bytes,
    )
        .into_response()
}

/// A JSON response: `{"item": …}`, a list envelope or a raw object, as the endpoint specifies.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => json_bytes(status, bytes),
        Err(err) => crate::error::ApiError::internal("serialising a response", err).into_response(),
    }
}

/// `{"item": T}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Item<T> {
    pub item: T,
}

/// Runs each request in its own task, so a client that disconnects cannot cancel it halfway: a
/// write either finishes (and commits) or fails on its own terms, never with a transaction or an
/// idempotency reservation abandoned mid-flight (a cancelled `BEGIN` can even return an open
/// transaction to sqlx's pool; sqlx issue 4393).
async fn run_to_completion(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use tracing::Instrument;
    match tokio::spawn(next.run(req).in_current_span()).await {
        Ok(response) => response,
        Err(err) => crate::error::ApiError::internal("request task failed", err).into_response(),
    }
}

/// The conventions every route shares (spec README §3), around `routes`: request ids and
/// logging, run-to-completion, the JSON error envelope for every error (framework ones
/// included), panics as `INTERNAL_ERROR`, and bodies read whole under the size and time limits.
pub fn conventions(routes: Router<Arc<App>>, app: Arc<App>) -> Router {
    routes
        .route_layer(from_fn(validate::reject_control_characters))
        .fallback(envelope::not_found)
        .layer(from_fn_with_state(app.clone(), body::buffer))
        .layer(CatchPanicLayer::new())
        .layer(from_fn(envelope::ensure_json_errors))
        .layer(from_fn(run_to_completion))
        .layer(from_fn(request_id::middleware))
        .with_state(app)
}

/// The conventions of the liveness routes, which read no input and touch nothing: request ids,
/// logging and metrics. Nothing else: no body to buffer, no write to protect with a request
/// task, no input to scan; their routes answer other methods with the envelope themselves.
pub fn liveness(routes: Router<Arc<App>>, app: Arc<App>) -> Router {
    routes
        .layer(from_fn(request_id::middleware))
        .with_state(app)
}
