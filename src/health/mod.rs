//! Liveness and readiness (spec orchestration.md §6). Both are open: no API key.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use serde_json::json;

use crate::App;
use utoipa::ToSchema;

/// `GET /health` at the host root and `GET /api/v1/health`: mounted by `crate::routes` under
/// the light conventions of `http::liveness`.
pub fn liveness_routes() -> Router<Arc<App>> {
    Router::new()
        .route("/health", get(root_health).fallback(not_allowed))
        .route("/api/v1/health", get(health).fallback(not_allowed))
}

/// Another method on a liveness path: the envelope's `405`, as the shared conventions answer it
/// elsewhere.
async fn not_allowed() -> Response {
    let mut response = crate::http::envelope::method_not_allowed().into_response();
    response.headers_mut().insert(
        axum::http::header::ALLOW,
        axum::http::HeaderValue::from_static("GET,HEAD"),
    );
    response
}

/// `GET /api/v1/readiness`.
pub fn api_routes() -> Router<Arc<App>> {
    Router::new().route("/readiness", get(readiness))
}

/// Liveness only, at the host root.
#[utoipa::path(get, path = "/health", tag = "health", security(()),
    responses((status = 200, description = "The process is alive", body = crate::health::Health)))]
pub(crate) async fn root_health() -> Response {
    health().await
}

/// Liveness only: the database is not touched.
#[utoipa::path(get, path = "/api/v1/health", tag = "health", security(()),
    responses((status = 200, description = "The process is alive", body = crate::health::Health)))]
pub(crate) async fn health() -> Response {
    crate::http::json_bytes(StatusCode::OK, br#"{"ok":true}"#.to_vec())
}

const STORE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Serialize)]
struct Check {
    name: &'static str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'static str>,
}

impl Check {
    fn new(name: &'static str, failure: Option<&'static str>) -> Self {
        Check {
            name,
            status: if failure.is_some() { "fail" } else { "pass" },
            message: failure,
        }
    }
}

#[utoipa::path(get, path = "/api/v1/readiness", tag = "health", security(()),
    responses(
        (status = 200, description = "Every check passes", body = crate::health::Readiness),
        (status = 503, description = "A check fails", body = crate::health::Readiness)
    ))]
pub(crate) async fn readiness(State(app): State<Arc<App>>) -> Response {
    let store_failure = match tokio::time::timeout(STORE_TIMEOUT, app.store.ping()).await {
        Ok(Ok(())) => None,
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readiness: database query failed");
            Some("database query failed")
        }
        Err(_) => Some("database did not answer within 2 s"),
    };
    let auth_failure = if app.config.require_api_auth && app.api_keys.is_empty() {
        Some("PEAQOS_REQUIRE_API_AUTH is true but no API key is configured")
    } else if app.session_secret.expose().len() < 32 {
        Some("the pairing session secret is not loaded")
    } else {
        None
    };

    let runtime_failure = match store_failure {
        Some(_) => Some("cannot read the background-runner lease"),
        None => match crate::store::leader::is_held(&app.store, app.clock.now_ms()).await {
            Ok(true) => None,
            Ok(false) => Some("no replica holds the background-runner lease"),
            Err(_) => Some("cannot read the background-runner lease"),
        },
    };

    let catalog_failure =
        (app.catalog.service_count() == 0).then_some("the catalogue has no service");
    let skills_failure = if !app.catalog.skills_have_manifests() {
        Some("a catalogue skill has no manifest")
    } else if store_failure.is_some() {
        Some("cannot read skill configs")
    } else {
        match crate::catalog::service::skill_states(&app).await {
            Ok(_) => None,
            Err(_) => Some("cannot read skill configs"),
        }
    };
    let checks = [
        Check::new("store", store_failure),
        Check::new("catalog", catalog_failure),
        Check::new("auth", auth_failure),
        Check::new("runtime", runtime_failure),
        Check::new("skills", skills_failure),
    ];
    if checks.iter().all(|c| c.message.is_none()) {
        crate::http::json(
            StatusCode::OK,
            &json!({ "status": "ready", "checks": checks }),
        )
    } else {
        crate::http::json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({
                "status": "not_ready",
                "checks": checks,
                "error": { "code": "SERVICE_UNAVAILABLE", "message": "not ready" },
            }),
        )
    }
}

#[derive(ToSchema)]
pub struct Health {
    pub ok: bool,
}

#[derive(ToSchema)]
pub struct ReadinessCheck {
    pub name: String,
    /// `pass` or `fail`.
    pub status: String,
    /// Present only on a failing check.
    pub message: Option<String>,
}

#[derive(ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: String,
    pub checks: Vec<ReadinessCheck>,
    /// Present only on a 503.
    pub error: Option<crate::error::ErrorObject>,
}
