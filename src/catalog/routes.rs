use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, patch};
use axum::{Extension, Router};

use super::model::{ExecutionMode, ServiceType, UpdateSkillConfig};
use super::service::{self, ServiceFilters, SkillFilters};
use crate::App;
use crate::error::ErrorCode::*;
use crate::error::sets::TOKEN;
use crate::error::{ApiError, ApiResult, RouteErrors};
use crate::http::Item;
use crate::http::json::ApiJson;
use crate::http::paging::PageRequest;
use crate::http::query::QueryParams;
use crate::pairings::auth::PairingAuth;
use crate::wire::parse_field;

/// Platform routes.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/skills", get(list_skills))
        .route("/skills/{skill_key}", get(read_skill))
        .route("/skills/{skill_key}/manifest", get(read_manifest))
        .route("/skills/{skill_key}/config", patch(update_skill_config))
        .route("/market/adapters", get(list_adapters))
        .route("/market/adapters/{provider_key}", get(read_adapter))
}

/// The API key, or a pairing token that scopes the view to its machine.
pub fn agent_optional_routes() -> Router<Arc<App>> {
    Router::new()
        .route("/market/services", get(list_services))
        .route("/market/services/{service_id}", get(read_service))
}

/// Errors beyond those of every route (`openapi.rs`).
pub(crate) const ERRORS: RouteErrors = &[
    ("GET", "/api/v1/skills/{skillKey}", &[NOT_FOUND]),
    ("GET", "/api/v1/skills/{skillKey}/manifest", &[NOT_FOUND]),
    (
        "PATCH",
        "/api/v1/skills/{skillKey}/config",
        &[NOT_FOUND, IDEMPOTENCY_CONFLICT],
    ),
    ("GET", "/api/v1/market/services", TOKEN),
    ("GET", "/api/v1/market/services", &[NOT_FOUND]),
    ("GET", "/api/v1/market/services/{serviceId}", TOKEN),
    ("GET", "/api/v1/market/services/{serviceId}", &[NOT_FOUND]),
    ("GET", "/api/v1/market/adapters/{providerKey}", &[NOT_FOUND]),
];

fn optional<T: Copy + crate::wire::WireEnum>(
    query: &QueryParams,
    name: &str,
) -> ApiResult<Option<T>> {
    query.get(name).map(|v| parse_field(name, v)).transpose()
}

/// Lists the catalogue's skills, ordered by key.
#[utoipa::path(
    get,
    path = "/api/v1/skills",
    tag = "skills",
    params(
        ("scope" = Option<String>, Query, description = "core-product | bootstrap-reference | ecosystem"),
        ("direction" = Option<String>, Query, description = "machine-offers | machine-consumes"),
        ("source" = Option<String>, Query, description = "peaq | partner | clawhub | external-marketplace"),
        crate::http::paging::PageParams
    ),
    responses((status = 200, description = "Skills, ordered by key", body = crate::http::paging::ListPage<crate::catalog::model::SkillSummary>))
)]
pub(crate) async fn list_skills(
    State(app): State<Arc<App>>,
    query: QueryParams,
) -> ApiResult<Response> {
    let filters = SkillFilters {
        scope: optional(&query, "scope")?,
        direction: optional(&query, "direction")?,
        source: optional(&query, "source")?,
    };
    let page = PageRequest::parse(
        &query,
        &[
            "skills",
            query.get("scope").unwrap_or_default(),
            query.get("direction").unwrap_or_default(),
            query.get("source").unwrap_or_default(),
        ],
    )?;
    let page = service::list_skills(&app, filters, &page).await?;
    Ok(crate::http::json(StatusCode::OK, &page))
}

/// One skill.
#[utoipa::path(
    get,
    path = "/api/v1/skills/{skillKey}",
    tag = "skills",
    params(("skillKey" = String, Path)),
    responses((status = 200, description = "The skill", body = crate::http::Item<crate::catalog::model::SkillSummary>))
)]
pub(crate) async fn read_skill(
    State(app): State<Arc<App>>,
    Path(skill_key): Path<String>,
) -> ApiResult<Response> {
    let skill = service::get_skill(&app, &skill_key).await?;
    Ok(crate::http::json(StatusCode::OK, &Item { item: skill }))
}

/// A skill's manifest: its inputs and outputs.
#[utoipa::path(
    get,
    path = "/api/v1/skills/{skillKey}/manifest",
    tag = "skills",
    params(("skillKey" = String, Path)),
    responses((status = 200, description = "The manifest", body = crate::http::Item<crate::catalog::model::SkillManifest>))
)]
pub(crate) async fn read_manifest(
    State(app): State<Arc<App>>,
    Path(skill_key): Path<String>,
) -> ApiResult<Response> {
    let manifest = service::get_manifest(&app, &skill_key)?;
    Ok(crate::http::json(StatusCode::OK, &Item { item: manifest }))
}

/// Enables or disables a skill and sets its settings and credentials (write-only).
#[utoipa::path(
    patch,
    path = "/api/v1/skills/{skillKey}/config",
    tag = "skills",
    params(("skillKey" = String, Path)),
    request_body = crate::catalog::model::UpdateSkillConfig,
    responses((status = 200, description = "The config; credentials are never returned", body = crate::http::Item<crate::catalog::model::SkillConfig>))
)]
pub(crate) async fn update_skill_config(
    State(app): State<Arc<App>>,
    Path(skill_key): Path<String>,
    ApiJson(body): ApiJson<UpdateSkillConfig>,
) -> ApiResult<Response> {
    let (tx, config) = service::update_config(&app, &skill_key, body).await?;
    if let Some(tx) = tx {
        tx.commit().await?;
    }
    Ok(crate::http::json(StatusCode::OK, &Item { item: config }))
}

/// Lists the service catalogue, ordered by id; machine-scoped with `machineId` or a pairing
/// token.
#[utoipa::path(
    get,
    path = "/api/v1/market/services",
    tag = "market",
    security(("apiKey" = []), ("pairingToken" = [])),
    params(
        ("machineId" = Option<String>, Query, description = "Scope the view to this machine (default: the pairing token's)"),
        ("serviceType" = Option<String>, Query, description = "A ServiceType or an alias (compute, storage, identity, location, rtk, gnss, defi, commerce)"),
        ("executionMode" = Option<String>, Query, description = "native | external-handoff"),
        ("providerKey" = Option<String>, Query, description = "Lower-cased; an unknown key lists nothing"),
        crate::http::paging::PageParams
    ),
    responses((status = 200, description = "Services, ordered by id", body = crate::http::paging::ListPage<crate::catalog::model::MarketService>))
)]
pub(crate) async fn list_services(
    State(app): State<Arc<App>>,
    auth: Option<Extension<PairingAuth>>,
    query: QueryParams,
) -> ApiResult<Response> {
    let service_type = query
        .get("serviceType")
        .map(|v| {
            ServiceType::parse_with_alias(v).ok_or_else(|| {
                ApiError::validation(
                    "serviceType",
                    "ServiceType or alias",
                    format!(
                        "serviceType must be one of {} or an alias (storage, compute, identity, location, rtk, gnss, defi, commerce)",
                        ServiceType::allowed()
                    ),
                )
            })
        })
        .transpose()?;
    let filters = ServiceFilters {
        machine_id: query.get("machineId").map(str::to_string),
        service_type,
        execution_mode: optional::<ExecutionMode>(&query, "executionMode")?,
        provider_key: query.get("providerKey").map(str::to_lowercase),
    };
    let page = PageRequest::parse(
        &query,
        &[
            "market-services",
            filters.machine_id.as_deref().unwrap_or_default(),
            service_type.map_or("", ServiceType::as_str),
            query.get("executionMode").unwrap_or_default(),
            filters.provider_key.as_deref().unwrap_or_default(),
        ],
    )?;
    let auth = auth.as_ref().map(|Extension(a)| a);
    let page = service::list_services(&app, auth, &filters, &page).await?;
    Ok(crate::http::json(StatusCode::OK, &page))
}

/// One service, machine-scoped with `machineId` or a pairing token.
#[utoipa::path(
    get,
    path = "/api/v1/market/services/{serviceId}",
    tag = "market",
    security(("apiKey" = []), ("pairingToken" = [])),
    params(("serviceId" = String, Path), ("machineId" = Option<String>, Query)),
    responses((status = 200, description = "The service", body = crate::http::Item<crate::catalog::model::MarketService>))
)]
pub(crate) async fn read_service(
    State(app): State<Arc<App>>,
    auth: Option<Extension<PairingAuth>>,
    Path(service_id): Path<String>,
    query: QueryParams,
) -> ApiResult<Response> {
    let auth = auth.as_ref().map(|Extension(a)| a);
    let service = service::get_service(&app, auth, &service_id, query.get("machineId")).await?;
    Ok(crate::http::json(StatusCode::OK, &Item { item: service }))
}

/// Lists the adapter setup catalogue, ordered by provider key.
#[utoipa::path(
    get,
    path = "/api/v1/market/adapters",
    tag = "market",
    params(crate::http::paging::PageParams),
    responses((status = 200, description = "Adapters, ordered by providerKey", body = crate::http::paging::ListPage<crate::catalog::model::AdapterSetup>))
)]
pub(crate) async fn list_adapters(
    State(app): State<Arc<App>>,
    query: QueryParams,
) -> ApiResult<Response> {
    let page = PageRequest::parse(&query, &["market-adapters"])?;
    Ok(crate::http::json(
        StatusCode::OK,
        &service::list_adapters(&app, &page),
    ))
}

/// How to set up one provider.
#[utoipa::path(
    get,
    path = "/api/v1/market/adapters/{providerKey}",
    tag = "market",
    params(("providerKey" = String, Path)),
    responses((status = 200, description = "The adapter", body = crate::http::Item<crate::catalog::model::AdapterSetup>))
)]
pub(crate) async fn read_adapter(
    State(app): State<Arc<App>>,
    Path(provider_key): Path<String>,
) -> ApiResult<Response> {
    let adapter = service::get_adapter(&app, &provider_key)?;
    Ok(crate::http::json(StatusCode::OK, &Item { item: adapter }))
}
