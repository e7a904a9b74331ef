//! Pairing-token authentication for agent routes (spec pairings-and-auth.md §1.2). The
//! middleware [`require_pairing_token`] runs checks 1–8 and records the caller; handlers call
//! [`PairingAuth::bind`] for check 9 on the ids their request names.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::model::{AgentPairing, PairingStatus};
use super::store;
use crate::App;
use crate::crypto::jwt::{self, PairingClaims, TokenError};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::http::auth::{Principal, check_api_key};

pub const HEADER: &str = "x-agent-pairing-token";

/// A caller proven by a valid pairing token.
#[derive(Debug, Clone)]
pub struct PairingAuth {
    pub claims: PairingClaims,
    pub pairing: AgentPairing,
}

fn invalid(reason: &str) -> ApiError {
    ApiError::new(
        ErrorCode::AGENT_AUTH_INVALID,
        "The pairing token is not valid",
    )
    .with_reason(reason)
}

/// Checks 1–8 of §1.2, in order; the first failure decides.
pub async fn authenticate(app: &App, token: &str) -> ApiResult<PairingAuth> {
    let now_s = app.clock.now_ms().div_euclid(1000);
    let claims = jwt::verify(app.session_secret.expose().as_bytes(), token, now_s).map_err(
        |err| match err {
            TokenError::Expired => ApiError::new(
                ErrorCode::AGENT_AUTH_EXPIRED,
                "The pairing token has expired; rotate the session",
            ),
            other => invalid(other.reason()),
        },
    )?;
    let pairing = store::get(&app.store, &claims.pairing_id)
        .await?
        .filter(|p| p.machine_id == claims.machine_id)
        .ok_or_else(|| invalid("pairing-not-found"))?;
    if pairing.status != PairingStatus::Active {
        return Err(ApiError::new(
            ErrorCode::AGENT_PAIRING_INACTIVE,
            format!("The pairing is {}", pairing.status.as_str()),
        )
        .with("status", pairing.status.as_str()));
    }
    if pairing.session_id.as_deref() != Some(claims.session_id.as_str()) {
        return Err(invalid("session-rotated"));
    }
    if pairing.policy_hash != claims.delegation_policy_hash {
        return Err(invalid("delegation-policy-changed"));
    }
    Ok(PairingAuth { claims, pairing })
}

impl PairingAuth {
    /// Check 9: every machine and pairing id the request names must be the token's.
    pub fn bind(&self, machine_ids: &[&str], pairing_ids: &[&str]) -> ApiResult<()> {
        if machine_ids.iter().any(|id| *id != self.claims.machine_id) {
            return Err(invalid("machine-mismatch"));
        }
        if pairing_ids.iter().any(|id| *id != self.claims.pairing_id) {
            return Err(invalid("pairing-mismatch"));
        }
        Ok(())
    }
}

/// Agent-optional routes: a pairing token scopes the view (validated in full when present; an
/// `x-api-key` beside it is still checked); without one, platform auth applies.
pub async fn optional_pairing_token(
    State(app): State<Arc<App>>,
    mut req: Request,
    next: Next,
) -> ApiResult<Response> {
    let principal = match req
        .headers()
        .get(HEADER)
        .map(|v| v.to_str().map(str::to_owned))
    {
        Some(token) => {
            let token = token.map_err(|_| invalid("malformed"))?;
            let auth = authenticate(&app, &token).await?;
            if let Some(key) = req.headers().get("x-api-key") {
                check_api_key(&app, Some(key))?;
            }
            let principal = Principal::Pairing(auth.pairing.id.clone());
            req.extensions_mut().insert(auth);
            principal
        }
        None => check_api_key(&app, req.headers().get("x-api-key"))?,
    };
    req.extensions_mut().insert(principal);
    Ok(next.run(req).await)
}

/// Agent routes: a valid `x-agent-pairing-token` is enough (an `x-api-key` sent beside it is
/// still checked). Without the header, `PEAQOS_REQUIRE_AGENT_PAIRING_AUTH=true` answers
/// `AGENT_AUTH_REQUIRED`; otherwise platform auth applies and the pairing is named in the body.
pub async fn require_pairing_token(
    State(app): State<Arc<App>>,
    mut req: Request,
    next: Next,
) -> ApiResult<Response> {
    let token = req
        .headers()
        .get(HEADER)
        .map(|v| v.to_str().map(str::to_owned));
    let principal = match token {
        Some(token) => {
            let token = token.map_err(|_| invalid("malformed"))?;
            let auth = authenticate(&app, &token).await?;
            if let Some(key) = req.headers().get("x-api-key") {
                check_api_key(&app, Some(key))?;
            }
            let principal = Principal::Pairing(auth.pairing.id.clone());
            req.extensions_mut().insert(auth);
            principal
        }
        None if app.config.require_agent_pairing_auth => {
            return Err(ApiError::new(
                ErrorCode::AGENT_AUTH_REQUIRED,
                "This route needs a pairing token in x-agent-pairing-token",
            ));
        }
        None => check_api_key(&app, req.headers().get("x-api-key"))?,
    };
    req.extensions_mut().insert(principal);
    Ok(next.run(req).await)
}
