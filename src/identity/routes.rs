use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;

use super::model::CreateChallenge;
use super::refs::IdentityRef;
use super::service;
use crate::App;
use crate::error::{ApiError, ApiResult};
use crate::http::Item;
use crate::http::idempotency::{Idempotency, commit};
use crate::http::json::ApiJson;
use crate::http::origin::RequestOrigin;

pub fn routes() -> Router<Arc<App>> {
    Router::new().route("/machine-identity/challenges", post(create_challenge))
}

async fn create_challenge(
    State(app): State<Arc<App>>,
    idempotency: Idempotency,
    RequestOrigin(origin): RequestOrigin,
    ApiJson(body): ApiJson<CreateChallenge>,
) -> ApiResult<Response> {
    let raw = body.identity_ref.ok_or_else(|| {
        ApiError::validation("identityRef", "required", "identityRef is required")
    })?;
    let identity = IdentityRef::parse_field("identityRef", &raw)?;
    let staged = service::create_challenge(&app, identity, origin).await?;
    commit(
        &app,
        staged.tx,
        &idempotency,
        StatusCode::CREATED,
        &Item { item: staged.value },
    )
    .await
}
