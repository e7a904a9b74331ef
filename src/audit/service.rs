//! The audit trail's queries (spec orchestration.md §5.2).

use super::model::{AuditEvent, Filters};
use super::store;
use crate::App;
use crate::error::ApiResult;
use crate::http::paging::{ListPage, PageRequest, Position};

/// Events matching `filters`, newest first.
pub async fn list(
    app: &App,
    filters: &Filters<'_>,
    page: &PageRequest,
) -> ApiResult<ListPage<AuditEvent>> {
    let events = store::list(&app.store, filters, page.after.as_ref(), page.fetch_limit()).await?;
    Ok(page.finish(events, |e| Position {
        t: e.created_at_ms,
        id: e.id.clone(),
    }))
}
