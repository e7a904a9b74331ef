//! The execution engine (spec orders-and-payments.md §6), shared by task execute, order execute
//! and the direct read: which executor runs a service (§6.1), the request it makes (§6.2) and
//! what its answer means (§6.3).
//!
//! It is split so that nothing is written before every check that can fail without calling has
//! passed: [`prepare`] selects the executor and builds the request (placeholders, credentials,
//! payment headers, network checks) and answers `422`/`502`/`400` with no state change; the
//! caller then commits its `running` rows, [`send`] makes the one call, and the caller commits
//! the [`Finished`] result. Persistence is the caller's (tasks and orders own their rows).

pub mod request;

use std::fmt;

use bytes::Bytes;
use reqwest::Url;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::App;
use crate::catalog::model::{ExecutionMode, ExternalHandoff, Kind, Service, ServiceEndpoint};
use crate::catalog::service::MachineScope;
use crate::clients::outbound::{Guarded, ResolveError};
use crate::clients::provider::{self, CallError, ProviderRequest, ProviderResponse};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::runtime::model::{EndpointRow, EndpointStatus};

/// Request-scoped payment headers (spec §2.4). Never stored or logged: `Debug` shows only which
/// are present.
#[derive(Default, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentHeaders {
    /// → `PAYMENT-SIGNATURE` (x402 v2).
    pub payment_signature: Option<String>,
    /// → `X-PAYMENT` (x402 v1).
    pub x_payment: Option<String>,
    /// → `Authorization` (MPP); wins over a credential's `Authorization: Bearer`.
    pub authorization: Option<String>,
    /// → `SIGN-IN-WITH-X`.
    pub sign_in_with_x: Option<String>,
}

impl fmt::Debug for PaymentHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let present = |v: &Option<String>| v.as_ref().map(|_| "[REDACTED]");
        f.debug_struct("PaymentHeaders")
            .field("payment_signature", &present(&self.payment_signature))
            .field("x_payment", &present(&self.x_payment))
            .field("authorization", &present(&self.authorization))
            .field("sign_in_with_x", &present(&self.sign_in_with_x))
            .finish()
    }
}

impl PaymentHeaders {
    /// `(header name, value)` of each header present and non-blank.
    pub fn headers(&self) -> Vec<(&'static str, &str)> {
        [
            ("payment-signature", &self.payment_signature),
            ("x-payment", &self.x_payment),
            ("authorization", &self.authorization),
            ("sign-in-with-x", &self.sign_in_with_x),
        ]
        .into_iter()
        .filter_map(|(name, value)| {
            value
                .as_deref()
                .filter(|v| !v.trim().is_empty())
                .map(|v| (name, v))
        })
        .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.headers().is_empty()
    }
}

/// Which executor runs a service (§6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutorKind {
    Handoff,
    Runtime,
    Http,
}

/// What to run, decided before anything is written.
pub enum Prepared {
    /// Nothing is called: the service's handoff is the result.
    Handoff(ExternalHandoff),
    /// One call to make.
    Call(Box<PreparedCall>),
}

/// A request ready to send on the client its destination is allowed on.
pub struct PreparedCall {
    pub kind: ExecutorKind,
    client: Guarded,
    request: ProviderRequest,
}

impl fmt::Debug for PreparedCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedCall")
            .field("kind", &self.kind)
            .field("method", &self.request.method)
            .finish()
    }
}

/// What one execution may use.
pub struct Inputs<'a> {
    pub operation: &'a str,
    pub input: &'a Map<String, Value>,
    /// The provider's credentials (stored skill config, or the request's `providerCredentials`).
    pub credentials: Option<&'a Map<String, Value>>,
    pub payment: Option<&'a PaymentHeaders>,
}

fn unsupported(reason: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::EXECUTION_UNSUPPORTED, message).with_reason(reason)
}

fn unreachable_endpoint(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::ENDPOINT_UNREACHABLE, message)
}

/// A connection refused by the network rules, found before any call.
fn refused(refusal: ResolveError) -> ApiError {
    if refusal.is_blocked() {
        unsupported(
            "blocked-address",
            "The endpoint is at a blocked (link-local or metadata) address",
        )
    } else if refusal.is_scope_refusal() {
        unsupported(
            "network-scope-not-allowed",
            "The endpoint's address is outside the allowed network scopes",
        )
    } else {
        unreachable_endpoint("The endpoint's host name does not resolve")
    }
}

/// The provider endpoint for `operation`: the one naming it with a `url`, else the first with a
/// `url`.
pub fn http_endpoint<'a>(service: &'a Service, operation: &str) -> Option<&'a ServiceEndpoint> {
    service
        .endpoints
        .iter()
        .find(|e| e.url.is_some() && e.operation.as_deref() == Some(operation))
        .or_else(|| service.endpoints.iter().find(|e| e.url.is_some()))
}

/// §6.1 without building a request: whether an executor is available now (task discovery walks
/// candidates with this). Runtime endpoints must be present, allowed and not effectively
/// unreachable; HTTP services need an endpoint with a `url`. A destination the network rules
/// refuse on its face — a blocked host, a literal address outside the allowed scopes — makes
/// the executor unavailable too (host names are resolved and checked when a call is prepared).
pub fn executor_available(
    app: &App,
    service: &Service,
    operation: &str,
    scope: &MachineScope,
) -> Result<ExecutorKind, ApiError> {
    match (service.execution_mode, service.kind) {
        (ExecutionMode::ExternalHandoff, _) => Ok(ExecutorKind::Handoff),
        (ExecutionMode::Native, Kind::Runtime) => {
            let (endpoint, client) = runtime_endpoint(app, service, scope, app.clock.now_ms())?;
            allowed_on_its_face(&client, &endpoint.endpoint_base_url)?;
            Ok(ExecutorKind::Runtime)
        }
        (ExecutionMode::Native, Kind::Reference) => {
            let endpoint = http_endpoint(service, operation).ok_or_else(|| no_adapter(service))?;
            // A URL still holding placeholders is checked once they are filled.
            if let Some(url) = endpoint.url.as_deref().filter(|u| !u.contains('{')) {
                allowed_on_its_face(app.outbound.providers(), url)?;
            }
            Ok(ExecutorKind::Http)
        }
    }
}

/// The checks of a URL's host that need no DNS look-up.
fn allowed_on_its_face(client: &Guarded, url: &str) -> ApiResult<()> {
    let Some(host) = Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
    else {
        return Ok(());
    };
    client.policy().check_host(&host).map_err(refused)
}

fn no_adapter(service: &Service) -> ApiError {
    unsupported(
        "no-adapter",
        format!(
            "Nothing can execute service {} here: it has no provider endpoint",
            service.id
        ),
    )
}

fn runtime_endpoint<'s>(
    app: &App,
    service: &Service,
    scope: &'s MachineScope,
    now_ms: i64,
) -> ApiResult<(&'s EndpointRow, Guarded)> {
    let endpoint = scope.endpoints.get(&service.provider_key).ok_or_else(|| {
        unsupported(
            "no-runtime-endpoint",
            format!(
                "The machine has no runtime endpoint for {}",
                service.provider_key
            ),
        )
    })?;
    let client = app
        .outbound
        .endpoint(endpoint.network_scope)
        .ok_or_else(|| {
            unsupported(
                "network-scope-not-allowed",
                format!(
                    "The runtime endpoint's network scope {} is not allowed",
                    endpoint.network_scope.as_str()
                ),
            )
        })?;
    if endpoint.effective_status(now_ms) == EndpointStatus::Unreachable {
        return Err(unreachable_endpoint(format!(
            "The machine's runtime endpoint for {} is unreachable",
            service.provider_key
        ))
        .with("providerKey", service.provider_key.clone()));
    }
    Ok((endpoint, client.clone()))
}

/// §6.1 and §6.2: selects the executor and builds its request. Every refusal that needs no call
/// happens here, before the caller writes anything.
pub async fn prepare(
    app: &App,
    service: &Service,
    scope: &MachineScope,
    inputs: &Inputs<'_>,
) -> ApiResult<Prepared> {
    match (service.execution_mode, service.kind) {
        (ExecutionMode::ExternalHandoff, _) => {
            let handoff = service.handoff.clone().ok_or_else(|| no_adapter(service))?;
            Ok(Prepared::Handoff(handoff))
        }
        (ExecutionMode::Native, Kind::Runtime) => {
            let (endpoint, client) = runtime_endpoint(app, service, scope, app.clock.now_ms())?;
            let token = match endpoint.sealed_auth_token.as_deref() {
                None => None,
                Some(sealed) => Some(
                    app.secrets
                        .open(sealed)
                        .map_err(|e| ApiError::internal("opening a runtime endpoint token", e))
                        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())?,
                ),
            };
            let request = request::runtime(service, endpoint, token.as_deref(), inputs)?;
            client.preflight(&request.url).await.map_err(refused)?;
            Ok(Prepared::Call(Box::new(PreparedCall {
                kind: ExecutorKind::Runtime,
                client,
                request,
            })))
        }
        (ExecutionMode::Native, Kind::Reference) => {
            let endpoint =
                http_endpoint(service, inputs.operation).ok_or_else(|| no_adapter(service))?;
            let request = request::http(service, endpoint, inputs)?;
            let client = app.outbound.providers().clone();
            client.preflight(&request.url).await.map_err(refused)?;
            Ok(Prepared::Call(Box::new(PreparedCall {
                kind: ExecutorKind::Http,
                client,
                request,
            })))
        }
    }
}

/// The result of one call, classified by §6.3.
#[derive(Debug, Clone)]
pub enum Finished {
    /// 2xx: `result` is the JSON body, or `{"text": body}`.
    Completed {
        result: Value,
        response: ProviderResponse,
    },
    /// The provider answered `402`: its challenge is in the response.
    PaymentRequired { response: ProviderResponse },
    /// Any other HTTP status.
    ProviderError { status: u16 },
    /// The answer was over the size limit.
    TooLarge,
    /// Timeout or connection error (including a connection refused at connect time).
    Unreachable { message: &'static str },
}

impl Finished {
    /// `(errorCode, errorMessage)` of a failure (§6.3); texts never carry request values.
    pub fn error(&self) -> Option<(&'static str, String)> {
        match self {
            Finished::Completed { .. } => None,
            Finished::PaymentRequired { .. } => {
                Some(("PAYMENT_REQUIRED", "HTTP 402: payment required".into()))
            }
            Finished::ProviderError { status } => {
                Some(("PROVIDER_ERROR", format!("HTTP {status}")))
            }
            Finished::TooLarge => Some(("PROVIDER_ERROR", "response too large".into())),
            Finished::Unreachable { message } => Some(("ENDPOINT_UNREACHABLE", (*message).into())),
        }
    }

    /// A short human-readable summary for runs.
    pub fn summary(&self) -> String {
        match self {
            Finished::Completed { response, .. } => format!("completed (HTTP {})", response.status),
            other => {
                let (_, message) = other.error().expect("a failure");
                format!("failed: {message}")
            }
        }
    }
}

/// The provider's result: the JSON body, or `{"text": …}` when it is not JSON.
pub fn result_of(body: &Bytes) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|_| json!({"text": String::from_utf8_lossy(body)}))
}

/// Makes the call and returns the provider's answer as it came (challenge capture reads any
/// status).
pub async fn exchange(call: Box<PreparedCall>) -> Result<ProviderResponse, CallError> {
    let PreparedCall {
        client, request, ..
    } = *call;
    provider::call(&client, request).await
}

/// Makes the call.
pub async fn send(call: Box<PreparedCall>) -> Finished {
    match exchange(call).await {
        Ok(response) if (200..300).contains(&response.status) => Finished::Completed {
            result: result_of(&response.body),
            response,
        },
        Ok(response) if response.status == 402 => Finished::PaymentRequired { response },
        Ok(response) => Finished::ProviderError {
            status: response.status,
        },
        Err(CallError::TooLarge) => Finished::TooLarge,
        Err(CallError::Timeout) => Finished::Unreachable { message: "timeout" },
        Err(CallError::Blocked) => Finished::Unreachable {
            message: "blocked address",
        },
        Err(CallError::ScopeNotAllowed) => Finished::Unreachable {
            message: "network scope not allowed",
        },
        Err(CallError::InvalidHeader) => Finished::Unreachable {
            message: "invalid request header",
        },
        Err(CallError::Unreachable(message)) => Finished::Unreachable { message },
    }
}

impl PreparedCall {
    /// The URL the call goes to (x402 challenge capture records it as `paymentUrl`).
    pub fn url(&self) -> &Url {
        &self.request.url
    }

    /// The call with another timeout (challenge capture waits less than an execution).
    pub fn with_timeout(mut self: Box<Self>, timeout: std::time::Duration) -> Box<PreparedCall> {
        self.request.timeout = timeout;
        self
    }
}
