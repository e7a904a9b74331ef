use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;

use super::model::Filters;
use super::service;
use crate::App;
use crate::error::ApiResult;
use crate::error::RouteErrors;
use crate::http::paging::PageRequest;
use crate::http::query::QueryParams;

pub fn routes() -> Router<Arc<App>> {
    Router::new().route("/audit-events", get(list))
}

/// Errors beyond those of every route (`openapi.rs`).
pub(crate) const ERRORS: RouteErrors = &[];

#[utoipa::path(
    get,
    path = "/api/v1/audit-events",
    tag = "audit",
    params(("type" = Option<String>, Query), ("resourceType" = Option<String>, Query), ("resourceId" = Option<String>, Query), ("machineId" = Option<String>, Query), crate::http::paging::PageParams),
    responses(
        (status = 200, description = "Audit events, newest first", body = crate::http::paging::ListPage<crate::audit::model::AuditEvent>)
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
    let page = service::list(&app, &filters, &page).await?;
    Ok(crate::http::json(StatusCode::OK, &page))
}
