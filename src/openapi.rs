//! The OpenAPI 3.1 document, generated from the handlers' annotations and the wire types:
//! served at `GET /api/v1/openapi.json`, printed by `peaqos-orchestrator openapi`, committed as
//! `openapi.json` (CI fails when that file is stale).
//!
//! Handlers annotate only their successes. Error responses come from one place, [`Errors`]: the
//! errors every route can answer (spec README §3.12: 400/413/429/500/503 everywhere, 401 on
//! platform routes, 409 `IDEMPOTENCY_CONFLICT` on every POST) plus each feature's
//! [`RouteErrors`] table, grouped by status, every one with the error envelope as its body.

use axum::http::StatusCode;
use axum::response::Response;
use std::collections::{BTreeMap, BTreeSet};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorCode, ErrorEnvelope, ErrorObject, RouteErrors};

/// Every feature's error table.
const TABLES: &[RouteErrors] = &[
    crate::audit::routes::ERRORS,
    crate::identity::routes::ERRORS,
    crate::machines::routes::ERRORS,
    crate::pairings::routes::ERRORS,
    crate::agents::routes::ERRORS,
    crate::runtime::routes::ERRORS,
    crate::catalog::routes::ERRORS,
    crate::market::routes::ERRORS,
    crate::policies::routes::ERRORS,
    crate::graph::routes::ERRORS,
    crate::tasks::routes::ERRORS,
    crate::orders::routes::ERRORS,
];

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

/// How an operation is authenticated, read from its security requirements.
#[derive(Debug, PartialEq, Eq)]
enum Auth {
    /// `security(())`: no credential.
    Open,
    /// The API key (the document's default).
    Platform,
    /// A pairing token (agent and agent-optional routes list their token errors themselves).
    Agent,
}

fn auth_of(operation: &Operation) -> Auth {
    let Some(requirements) = &operation.security else {
        return Auth::Platform;
    };
    let json = serde_json::to_string(requirements).unwrap_or_default();
    if json.contains("pairingToken") {
        Auth::Agent
    } else if json.contains("apiKey") {
        Auth::Platform
    } else {
        Auth::Open
    }
}

/// The errors every route can answer, beyond its own table.
fn common_errors(method: &str, auth: &Auth) -> Vec<ErrorCode> {
    use ErrorCode::*;
    let mut codes = vec![
        VALIDATION_ERROR,
        PAYLOAD_TOO_LARGE,
        RATE_LIMITED,
        INTERNAL_ERROR,
        SERVICE_UNAVAILABLE,
    ];
    if *auth == Auth::Platform {
        codes.extend([AUTH_REQUIRED, AUTH_INVALID]);
    }
    if method == "post" {
        codes.push(IDEMPOTENCY_CONFLICT);
    }
    codes
}

struct Errors;

impl Modify for Errors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let mut tables: BTreeMap<(String, String), Vec<ErrorCode>> = BTreeMap::new();
        for table in TABLES {
            for (method, path, codes) in table.iter() {
                tables
                    .entry((method.to_ascii_lowercase(), path.to_string()))
                    .or_default()
                    .extend(codes.iter().copied());
            }
        }
        for (path, item) in openapi.paths.paths.iter_mut() {
            for (method, operation) in [
                ("get", &mut item.get),
                ("post", &mut item.post),
                ("put", &mut item.put),
                ("patch", &mut item.patch),
                ("delete", &mut item.delete),
            ] {
                let Some(operation) = operation else { continue };
                let mut codes = common_errors(method, &auth_of(operation));
                if let Some(own) = tables.get(&(method.to_string(), path.clone())) {
                    codes.extend(own.iter().copied());
                }
                add_error_responses(operation, &codes);
            }
        }
    }
}

fn add_error_responses(operation: &mut Operation, codes: &[ErrorCode]) {
    let mut by_status: BTreeMap<u16, BTreeSet<&'static str>> = BTreeMap::new();
    for code in codes {
        by_status
            .entry(code.status().as_u16())
            .or_default()
            .insert(code.as_str());
    }
    for (status, names) in by_status {
        let listed = names.into_iter().collect::<Vec<_>>().join(", ");
        let responses = &mut operation.responses.responses;
        match responses.get_mut(&status.to_string()) {
            // A status the route documents itself (readiness's 503): name the codes too.
            Some(RefOr::T(response)) => {
                response.description = format!("{} ({listed})", response.description);
            }
            _ => {
                let envelope = ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorEnvelope")))
                    .build();
                responses.insert(
                    status.to_string(),
                    RefOr::T(
                        ResponseBuilder::new()
                            .description(listed)
                            .content("application/json", envelope)
                            .build(),
                    ),
                );
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "peaqOS Machine Markets orchestrator", description = "Machines and their identity, agent pairings, runtime agents, the service catalogue and market search, and the audit trail of the Machine Markets API."),
    modifiers(&Security, &Errors),
    security(("apiKey" = [])),
    paths(
        crate::health::root_health,
        crate::health::health,
        crate::health::readiness,
        serve,
        crate::metrics::serve,
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
        crate::catalog::routes::list_skills,
        crate::catalog::routes::read_skill,
        crate::catalog::routes::read_manifest,
        crate::catalog::routes::update_skill_config,
        crate::catalog::routes::list_services,
        crate::catalog::routes::read_service,
        crate::catalog::routes::list_adapters,
        crate::catalog::routes::read_adapter,
        crate::market::routes::search,
        crate::market::routes::read_search,
        crate::policies::routes::list,
        crate::policies::routes::create,
        crate::policies::routes::read,
        crate::policies::routes::update,
        crate::graph::routes::read,
        crate::graph::routes::create_node,
        crate::graph::routes::update_node,
        crate::graph::routes::delete_node,
        crate::graph::routes::create_edge,
        crate::graph::routes::update_edge,
        crate::graph::routes::delete_edge,
        crate::tasks::routes::list,
        crate::tasks::routes::create,
        crate::tasks::routes::read,
        crate::tasks::routes::discover,
        crate::tasks::routes::resolve,
        crate::tasks::routes::execute,
        crate::tasks::routes::list_routes,
        crate::tasks::routes::list_outcomes,
        crate::tasks::routes::list_runs,
        crate::tasks::routes::read_run,
        crate::orders::routes::list,
        crate::orders::routes::create,
        crate::orders::routes::read,
        crate::orders::routes::execute,
        crate::orders::routes::confirm,
        crate::orders::routes::dispute,
        crate::orders::routes::cancel,
        crate::orders::routes::retry,
        crate::orders::routes::direct_read,
        crate::orders::routes::read_payment,
        crate::orders::routes::payment_intent,
        crate::orders::routes::payment_proof,
        crate::orders::routes::escrow_lock,
        crate::orders::routes::release,
        crate::orders::routes::refund,
    ),
    components(schemas(ErrorEnvelope, ErrorObject, crate::health::Health, crate::health::Readiness, crate::health::ReadinessCheck, crate::agents::model::HeartbeatRequest))
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

/// This document, generated from the code.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
pub(crate) async fn serve() -> Response {
    crate::http::json(StatusCode::OK, &document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_table_names_a_documented_operation() {
        let doc = document();
        for table in TABLES {
            for (method, path, _) in table.iter() {
                let item = doc
                    .paths
                    .paths
                    .get(*path)
                    .unwrap_or_else(|| panic!("{path} is not documented"));
                let operation = match *method {
                    "GET" => &item.get,
                    "POST" => &item.post,
                    "PUT" => &item.put,
                    "PATCH" => &item.patch,
                    "DELETE" => &item.delete,
                    other => panic!("unknown method {other}"),
                };
                assert!(operation.is_some(), "{method} {path} is not documented");
            }
        }
    }

    #[test]
    fn errors_are_grouped_by_status_with_the_envelope() {
        let doc = serde_json::to_value(document()).unwrap();
        let create = &doc["paths"]["/api/v1/machines"]["post"]["responses"];
        let conflict = create["409"]["description"].as_str().unwrap();
        assert!(conflict.contains("IDEMPOTENCY_CONFLICT"), "{conflict}");
        assert!(conflict.contains("MACHINE_IDENTITY_EXISTS"), "{conflict}");
        assert!(
            create["401"]["description"]
                .as_str()
                .unwrap()
                .contains("AUTH_REQUIRED")
        );
        assert_eq!(
            create["400"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorEnvelope"
        );
        let health = &doc["paths"]["/health"]["get"]["responses"];
        assert!(health.get("401").is_none(), "open routes need no key");
    }

    #[test]
    fn wire_enumerations_are_documented_with_their_wire_values() {
        use crate::catalog::model::IntegrationStatus;
        use crate::orders::model::OrderStatus;
        let doc = serde_json::to_value(document()).unwrap();
        let schemas = &doc["components"]["schemas"];
        let wire = |all: Vec<&str>| serde_json::json!(all);
        assert_eq!(
            schemas["IntegrationStatus"]["enum"],
            wire(IntegrationStatus::ALL.iter().map(|v| v.as_str()).collect())
        );
        assert_eq!(
            schemas["OrderStatus"]["enum"],
            wire(OrderStatus::ALL.iter().map(|v| v.as_str()).collect())
        );
        assert_eq!(schemas["OrderStatus"]["enum"][1], "payment_pending");
    }
}
