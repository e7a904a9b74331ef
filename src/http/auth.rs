//! Platform API-key auth (spec pairings-and-auth.md §1.1).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::App;
use crate::error::{ApiError, ErrorCode};

/// Who a request acts for, for idempotency scoping. Never holds a credential itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// SHA-256 (hex) of the API key used.
    ApiKey(String),
    /// The pairing id of a valid pairing token.
    Pairing(String),
    Anonymous,
}

impl Principal {
    pub fn scope_label(&self) -> String {
        match self {
            Principal::ApiKey(digest) => format!("api-key:{digest}"),
            Principal::Pairing(id) => format!("pairing:{id}"),
            Principal::Anonymous => "anonymous".to_string(),
        }
    }
}

/// SHA-256 digests of the configured keys, compared in constant time.
#[derive(Clone)]
pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
}

impl ApiKeys {
    pub fn new<'a>(keys: impl IntoIterator<Item = &'a str>) -> Self {
        ApiKeys {
            digests: keys
                .into_iter()
                .map(|k| Sha256::digest(k.as_bytes()).into())
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// The digest of `provided` when it matches a configured key. Every configured key is
    /// compared, with no early exit.
    pub fn matching(&self, provided: &str) -> Option<[u8; 32]> {
        let digest: [u8; 32] = Sha256::digest(provided.as_bytes()).into();
        let mut found = subtle::Choice::from(0);
        for configured in &self.digests {
            found |= configured.ct_eq(&digest);
        }
        bool::from(found).then_some(digest)
    }
}

/// Platform auth: with `PEAQOS_REQUIRE_API_AUTH=true`, `x-api-key` must match a configured key.
pub fn check_api_key(app: &App, provided: Option<&HeaderValue>) -> Result<Principal, ApiError> {
    if !app.config.require_api_auth {
        return Ok(Principal::Anonymous);
    }
    let provided = provided.ok_or_else(|| {
        ApiError::new(
            ErrorCode::AUTH_REQUIRED,
            "An API key is required in x-api-key",
        )
    })?;
    let digest = provided
        .to_str()
        .ok()
        .and_then(|key| app.api_keys.matching(key))
        .ok_or_else(|| ApiError::new(ErrorCode::AUTH_INVALID, "The API key is not valid"))?;
    Ok(Principal::ApiKey(hex::encode(digest)))
}

/// Middleware of platform routes.
pub async fn require_api_key(
    State(app): State<Arc<App>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let principal = check_api_key(&app, req.headers().get("x-api-key"))?;
    req.extensions_mut().insert(principal);
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_any_configured_key() {
        let keys = ApiKeys::new(["alpha", "beta"]);
        assert!(keys.matching("beta").is_some());
        assert!(keys.matching("alpha").is_some());
        assert!(keys.matching("gamma").is_none());
        assert!(keys.matching("").is_none());
        assert!(ApiKeys::new([]).matching("alpha").is_none());
    }
}
