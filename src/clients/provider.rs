//! One call to a provider or a machine's runtime endpoint (spec orders-and-payments.md §6.2):
//! a request built by the execution engine, sent on a [`Guarded`] client (blocked addresses and
//! network scopes checked by the address connected to, redirects never followed), within a
//! timeout, reading at most [`MAX_RESPONSE_BYTES`] of the answer.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};

use super::outbound::{Guarded, ResolveError};

/// The call timeout (below the official clients' 60 s).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(45);

/// The largest answer read from a provider.
pub const MAX_RESPONSE_BYTES: usize = 10 * 1024 * 1024;

/// A request ready to send. Header values marked sensitive never reach a log line.
#[derive(Debug)]
pub struct ProviderRequest {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    /// A JSON body; `None` sends none.
    pub body: Option<serde_json::Value>,
    pub timeout: Duration,
}

impl ProviderRequest {
    /// Adds a header whose value is secret (a credential or a payment value).
    pub fn secret_header(&mut self, name: HeaderName, value: &str) -> Result<(), CallError> {
        let mut value = HeaderValue::from_str(value).map_err(|_| CallError::InvalidHeader)?;
        value.set_sensitive(true);
        self.headers.insert(name, value);
        Ok(())
    }
}

/// What a provider answered.
#[derive(Debug, Clone)]
pub struct ProviderResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl ProviderResponse {
    /// A header's value as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Why no answer came. The texts are fixed and never carry the URL, a header or a credential.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("the address is blocked")]
    Blocked,
    #[error("the address is outside the allowed network scopes")]
    ScopeNotAllowed,
    #[error("timeout")]
    Timeout,
    #[error("{0}")]
    Unreachable(&'static str),
    #[error("response too large")]
    TooLarge,
    #[error("a header value is not valid")]
    InvalidHeader,
}

fn refusal(refusal: &ResolveError) -> CallError {
    if refusal.is_blocked() {
        CallError::Blocked
    } else if refusal.is_scope_refusal() {
        CallError::ScopeNotAllowed
    } else {
        CallError::Unreachable("DNS lookup failed")
    }
}

fn transport(err: &reqwest::Error) -> CallError {
    if let Some(refused) = ResolveError::of(err) {
        return refusal(refused);
    }
    if err.is_timeout() {
        return CallError::Timeout;
    }
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    return CallError::Unreachable("connection refused");
                }
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted => {
                    return CallError::Unreachable("connection reset");
                }
                std::io::ErrorKind::TimedOut => return CallError::Timeout,
                _ => {}
            }
        }
        source = cause.source();
    }
    if err.is_connect() {
        CallError::Unreachable("connection failed")
    } else {
        CallError::Unreachable("request failed")
    }
}

/// Sends `request` on `client` and reads the answer, at most [`MAX_RESPONSE_BYTES`] of it.
pub async fn call(
    client: &Guarded,
    request: ProviderRequest,
) -> Result<ProviderResponse, CallError> {
    let deadline = tokio::time::Instant::now() + request.timeout;
    let mut builder = client
        .request(request.method, request.url)
        .map_err(|r| refusal(&r))?
        .headers(request.headers)
        .timeout(request.timeout);
    if let Some(body) = &request.body {
        builder = builder.json(body);
    }
    let mut response = builder.send().await.map_err(|e| transport(&e))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    if response
        .content_length()
        .is_some_and(|len| len > MAX_RESPONSE_BYTES as u64)
    {
        return Err(CallError::TooLarge);
    }
    let mut body: Vec<u8> = Vec::new();
    loop {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .map_err(|_| CallError::Timeout)?
            .map_err(|e| transport(&e))?;
        let Some(chunk) = chunk else { break };
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(CallError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(ProviderResponse {
        status,
        headers,
        body: Bytes::from(body),
    })
}
