//! The OpenAPI 3.1 document, generated from the handlers' annotations and the wire types:
//! served at `GET /api/v1/openapi.json`, printed by `peaqos-orchestrator openapi`, committed as
//! `openapi.json` (CI fails when that file is stale).

use std::collections::BTreeMap;

use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// The error envelope every error answers with.
#[derive(ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorObject,
}

#[derive(ToSchema)]
pub struct ErrorObject {
    /// One of the codes of the spec's code table, e.g. `NOT_FOUND`.
    pub code: String,
    pub message: String,
    /// `field`, `constraint`, `reason`, `resource`, `id`, `status`, … when they apply.
    pub details: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(ToSchema)]
pub struct Health {
    pub ok: bool,
}

#[derive(ToSchema)]
pub struct ReadinessCheck {
    pub name: String,
    /// `pass` or `fail`.
    pub status: String,
    /// Present only on a failing check.
    pub message: Option<String>,
}

#[derive(ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: String,
    pub checks: Vec<ReadinessCheck>,
    /// Present only on a 503.
    pub error: Option<ErrorObject>,
}

/// `POST /machine-agents/heartbeat`. Endpoint keys may also be sent in snake_case; `null` means
/// absent; `leaseTtlSeconds` is an alias of `leaseSeconds`.
#[derive(ToSchema)]
#[allow(non_snake_case)]
pub struct HeartbeatRequest {
    pub machineId: String,
    pub agentId: String,
    /// Or `Authorization: Bearer …`, or `x-agent-pairing-token`.
    pub agentToken: Option<String>,
    #[schema(minimum = 30, maximum = 86400)]
    pub leaseSeconds: Option<i64>,
    #[schema(minimum = 30, maximum = 86400)]
    pub leaseTtlSeconds: Option<i64>,
    pub endpoints: Option<Vec<crate::runtime::model::EndpointFields>>,
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))),
        );
        components.add_security_scheme(
            "pairingToken",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-agent-pairing-token"))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "peaqOS Machine Markets orchestrator", description = "Machines, agent pairings, runtime agents and the audit trail of the Machine Markets API."),
    modifiers(&Security),
    security(("apiKey" = [])),
    paths(
        crate::health::root_health,
        crate::health::health,
        crate::health::readiness,
        crate::http::serve_openapi,
        crate::http::serve_metrics,
        crate::audit::routes::list,
        crate::identity::routes::create_challenge,
        crate::machines::routes::list,
        crate::machines::routes::create,
        crate::machines::routes::read,
        crate::machines::routes::update,
        crate::machines::routes::archive,
        crate::pairings::routes::list,
        crate::pairings::routes::create_challenge,
        crate::pairings::routes::create,
        crate::pairings::routes::rotate_session,
        crate::pairings::routes::update,
        crate::pairings::routes::revoke,
        crate::agents::routes::list,
        crate::agents::routes::enroll,
        crate::agents::routes::revoke,
        crate::agents::routes::heartbeat,
        crate::runtime::routes::list,
        crate::runtime::routes::read,
        crate::runtime::routes::put,
        crate::runtime::routes::delete,
    ),
    components(schemas(ErrorEnvelope, ErrorObject, Health, Readiness, ReadinessCheck, HeartbeatRequest))
)]
pub struct ApiDoc;

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The committed form: pretty JSON with a trailing newline.
pub fn pretty_json() -> String {
    let mut text = document()
        .to_pretty_json()
        .expect("the OpenAPI document serialises");
    text.push('\n');
    text
}
