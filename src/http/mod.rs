//! Router assembly and the HTTP conventions every feature shares (spec README §3).

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
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
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

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain"),
        (status = 401, description = "AUTH_REQUIRED or AUTH_INVALID", body = crate::openapi::ErrorEnvelope)
    ))]
pub(crate) async fn serve_metrics(State(app): State<Arc<App>>) -> Response {
    crate::metrics::render(&app)
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

/// This document, generated from the code.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
pub(crate) async fn serve_openapi() -> Response {
    json(StatusCode::OK, &crate::openapi::document())
}

/// The router of the dedicated metrics listener (`PEAQOS_METRICS_ADDR`).
pub fn metrics_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .fallback(envelope::not_found)
        .layer(from_fn(envelope::ensure_json_errors))
        .with_state(app)
}

pub fn router(app: Arc<App>) -> Router {
    // Routes that need the platform API key (when enabled). Idempotency runs after auth, since
    // its scope includes the principal.
    let platform = Router::new()
        .merge(crate::audit::routes())
        .merge(crate::identity::routes())
        .merge(crate::machines::routes())
        .merge(crate::pairings::routes())
        .merge(crate::agents::routes())
        .merge(crate::runtime::routes())
        .route_layer(from_fn_with_state(app.clone(), idempotency::middleware))
        .route_layer(from_fn_with_state(app.clone(), auth::require_api_key));

    // The heartbeat is authenticated by the machine-agent token, not the API key. It takes no
    // Idempotency-Key: a heartbeat is itself a renewal, and its principal is only known once the
    // token has been checked.
    let api = Router::new()
        .merge(crate::health::api_routes())
        .route("/openapi.json", get(serve_openapi))
        .merge(crate::agents::heartbeat_routes())
        .merge(platform);

    // `/metrics` moves to its own listener when PEAQOS_METRICS_ADDR is set. On the main port it
    // needs the API key like any platform route.
    let metrics = match app.config.metrics_addr {
        Some(_) => Router::new(),
        None => Router::new()
            .route("/metrics", get(serve_metrics))
            .route_layer(from_fn_with_state(app.clone(), auth::require_api_key)),
    };

    Router::new()
        .merge(crate::health::root_routes())
        .merge(metrics)
        .nest("/api/v1", api)
        .route_layer(from_fn(validate::reject_control_characters))
        .fallback(envelope::not_found)
        .layer(from_fn_with_state(app.clone(), body::buffer))
        .layer(CatchPanicLayer::new())
        .layer(from_fn(envelope::ensure_json_errors))
        .layer(from_fn(run_to_completion))
        .layer(from_fn(request_id::middleware))
        .with_state(app)
}
