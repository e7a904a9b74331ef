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
use crate::error::ErrorCode::*;
use crate::error::{ApiError, ApiResult, RouteErrors};
use crate::http::Item;
use crate::http::idempotency::{Idempotency, commit};
use crate::http::json::ApiJson;
use crate::http::origin::RequestOrigin;

pub fn routes() -> Router<Arc<App>> {
    Router::new().route("/machine-identity/challenges", post(create_challenge))
}

/// Errors beyond those of every route (`openapi.rs`).
pub(crate) const ERRORS: RouteErrors = &[(
    "POST",
    "/api/v1/machine-identity/challenges",
    &[MACHINE_NOT_ACTIVATED, PEAQOS_IDENTITY_UNAVAILABLE],
)];

#[utoipa::path(
    post,
    path = "/api/v1/machine-identity/challenges",
    tag = "machines",
    request_body = crate::identity::model::CreateChallenge,
    responses(
        (status = 201, description = "A single-use challenge for a controller of the identity to sign", body = crate::http::Item<crate::identity::model::ChallengeView>)
    )
)]
pub(crate) async fn create_challenge(
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
