use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;

use super::store::{self, Filters};
use crate::App;
use crate::error::ApiResult;
use crate::http::paging::{PageRequest, Position};
use crate::http::query::QueryParams;

pub fn routes() -> Router<Arc<App>> {
    Router::new().route("/audit-events", get(list))
}

#[utoipa::path(
    get,
    path = "/api/v1/audit-events",
    tag = "audit",
    params(("type" = Option<String>, Query), ("resourceType" = Option<String>, Query), ("resourceId" = Option<String>, Query), ("machineId" = Option<String>, Query), ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "1..500, default 100"), ("cursor" = Option<String>, Query, description = "nextCursor of the previous page")),
    responses(
        (status = 200, description = "Audit events, newest first", body = crate::http::paging::ListPage<crate::audit::model::AuditEvent>),
        (status = 400, description = "VALIDATION_ERROR (or a proof-required code)", body = crate::openapi::ErrorEnvelope),
        (status = 401, description = "AUTH_REQUIRED, AUTH_INVALID, or a proof/token error", body = crate::openapi::ErrorEnvelope),
        (status = 503, description = "SERVICE_UNAVAILABLE or PEAQOS_IDENTITY_UNAVAILABLE", body = crate::openapi::ErrorEnvelope)
    )
)]
pub(crate) async fn list(State(app): State<Arc<App>>, query: QueryParams) -> ApiResult<Response> {
    let filters = Filters {
        event_type: query.get("type"),
        resource_type: query.get("resourceType"),
        resource_id: query.get("resourceId"),
        machine_id: query.get("machineId"),
    };
    let page = PageRequest::parse(
        &query,
        &[
            "audit-events",
            filters.event_type.unwrap_or_default(),
            filters.resource_type.unwrap_or_default(),
            filters.resource_id.unwrap_or_default(),
            filters.machine_id.unwrap_or_default(),
        ],
    )?;
    let events = store::list(&app.store, &filters, &page).await?;
    let page = page.finish(events, |e| Position {
        t: e.created_at_ms,
        id: e.id.clone(),
    });
    Ok(crate::http::json(StatusCode::OK, &page))
}
