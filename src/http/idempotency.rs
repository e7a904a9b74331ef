//! `Idempotency-Key` on POSTs (spec README §3.11). The middleware reserves the key before the
//! handler runs; a handler that changes state records its response inside the same transaction
//! as the change ([`commit`]), so a stored response and its side effects exist together or not
//! at all. Stored responses are encrypted, since some carry one-time secrets.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::auth::Principal;
use super::json::payload_too_large;
use crate::App;
use crate::crypto::sha256_hex;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::store::idempotency::{self as records, Reservation};
use crate::store::{Tx, new_id};

pub const HEADER: &str = "idempotency-key";
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

struct Slot {
    scope: String,
    claim: String,
    recorded: AtomicBool,
}

/// The reserved key of this request, if it carried one. Handlers pass it to [`commit`].
#[derive(Clone, Default)]
pub struct Idempotency(Option<Arc<Slot>>);

impl<S: Send + Sync> FromRequestParts<S> for Idempotency {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Idempotency>()
            .cloned()
            .unwrap_or_default())
    }
}

/// Commits `tx` together with the idempotency record of `response`, and answers it.
pub async fn commit<T: Serialize>(
    app: &App,
    mut tx: Tx,
    idempotency: &Idempotency,
    status: StatusCode,
    body: &T,
) -> ApiResult<Response> {
    let bytes =
        serde_json::to_vec(body).map_err(|e| ApiError::internal("serialising a response", e))?;
    if let Some(slot) = &idempotency.0 {
        records::complete_in(
            &mut tx,
            &slot.scope,
            &slot.claim,
            status.as_u16(),
            &app.secrets.seal(&bytes),
        )
        .await?;
    }
    tx.commit().await?;
    if let Some(slot) = &idempotency.0 {
        slot.recorded.store(true, Ordering::Release);
    }
    Ok(super::json_bytes(status, bytes))
}

fn valid_key(key: &str) -> bool {
    (1..=255).contains(&key.len()) && key.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

pub async fn middleware(
    State(app): State<Arc<App>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if req.method() != Method::POST {
        return Ok(next.run(req).await);
    }
    let Some(raw_key) = req.headers().get(HEADER) else {
        return Ok(next.run(req).await);
    };
    let key = raw_key
        .to_str()
        .ok()
        .filter(|k| valid_key(k))
        .ok_or_else(|| {
            ApiError::validation(
                "Idempotency-Key",
                "1..255 printable ASCII",
                "Idempotency-Key must be 1 to 255 printable ASCII characters",
            )
        })?;
    let principal = req
        .extensions()
        .get::<Principal>()
        .cloned()
        .unwrap_or(Principal::Anonymous);
    let scope = sha256_hex(
        format!(
            "{}\n{}\n{}\n{}",
            principal.scope_label(),
            req.method(),
            req.uri().path(),
            key
        )
        .as_bytes(),
    );

    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, app.config.max_body_bytes)
        .await
        .map_err(|_| payload_too_large())?;
    let claim = new_id("idk_");
    let reservation = records::reserve(
        &app.store,
        &scope,
        &sha256_hex(&body),
        &claim,
        app.clock.now_ms(),
    )
    .await?;

    match reservation {
        Reservation::Owned => {}
        Reservation::Replay {
            status,
            sealed_body,
        } => {
            let bytes = app
                .secrets
                .open(&sealed_body)
                .map_err(|e| ApiError::internal("opening a stored idempotent response", e))?;
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut response = super::json_bytes(status, bytes);
            response
                .headers_mut()
                .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
            return Ok(response);
        }
        Reservation::BodyMismatch => {
            return Err(ApiError::new(
                ErrorCode::IDEMPOTENCY_CONFLICT,
                "This Idempotency-Key was already used with a different request body",
            )
            .with_reason("body-mismatch"));
        }
        Reservation::InProgress => {
            return Err(ApiError::new(
                ErrorCode::IDEMPOTENCY_CONFLICT,
                "A request with this Idempotency-Key is still in progress",
            )
            .with_reason("in-progress"));
        }
    }

    let slot = Arc::new(Slot {
        scope,
        claim,
        recorded: AtomicBool::new(false),
    });
    let mut req = Request::from_parts(parts, Body::from(body));
    req.extensions_mut().insert(Idempotency(Some(slot.clone())));
    let response = next.run(req).await;

    if !response.status().is_success() {
        // Only successes are kept: a failed attempt does not reserve the key.
        if let Err(err) = records::release(&app.store, &slot.scope, &slot.claim).await {
            tracing::warn!(error = %err, "could not release an idempotency key");
        }
        return Ok(response);
    }
    if slot.recorded.load(Ordering::Acquire) {
        return Ok(response);
    }
    // A success that changed no state: record it now.
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| ApiError::internal("buffering a response", e))?;
    let sealed = app.secrets.seal(&bytes);
    if let Err(err) = records::complete(
        &app.store,
        &slot.scope,
        &slot.claim,
        parts.status.as_u16(),
        &sealed,
    )
    .await
    {
        tracing::warn!(error = %err, "could not record an idempotent response");
        let _ = records::release(&app.store, &slot.scope, &slot.claim).await;
    }
    Ok(Response::from_parts(parts, Body::from(bytes)).into_response())
}

#[cfg(test)]
mod tests {
    use super::valid_key;

    #[test]
    fn key_rules() {
        assert!(valid_key("order-1"));
        assert!(valid_key(&"k".repeat(255)));
        assert!(!valid_key(""));
        assert!(!valid_key(&"k".repeat(256)));
        assert!(!valid_key("tab\there"));
        assert!(!valid_key("naïve"));
    }
}
