//! The origin written into challenge messages: `PEAQOS_PUBLIC_URL`, else
//! `{scheme}://{Host}` with the scheme from the first `X-Forwarded-Proto` value (this server
//! itself speaks plain HTTP).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use crate::App;
use crate::error::ApiError;

pub struct RequestOrigin(pub String);

impl FromRequestParts<Arc<App>> for RequestOrigin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        if let Some(public) = &app.config.public_url {
            return Ok(RequestOrigin(public.clone()));
        }
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
            .or_else(|| parts.uri.authority().map(|a| a.as_str()))
            .ok_or_else(|| {
                ApiError::validation(
                    "Host",
                    "header",
                    "A Host header is required when PEAQOS_PUBLIC_URL is unset",
                )
            })?;
        let scheme = parts
            .headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .filter(|v| v == "http" || v == "https")
            .unwrap_or_else(|| "http".to_string());
        Ok(RequestOrigin(format!("{scheme}://{host}")))
    }
}
