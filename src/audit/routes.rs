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

async fn list(State(app): State<Arc<App>>, query: QueryParams) -> ApiResult<Response> {
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
