//! Runtime endpoints (spec agents-and-runtime.md §3, §5).

use serde_json::json;

use super::model::{EndpointFields, EndpointRow, EndpointSpec, EndpointStatus, RuntimeEndpoint};
use super::store::{self, Owner};
use crate::App;
use crate::audit::{self, Actor, NewAuditEvent};
use crate::clients::runtime::{AuthType, default_network_scope, normalise_base_url, provider_key};
use crate::clock::parse_rfc3339_ms;
use crate::config::NetworkScope;
use crate::error::{ApiError, ApiResult};
use crate::http::paging::{ListPage, PageRequest, Position};
use crate::http::validate::{MAX_NAME, MAX_TEXT, optional_text};
use crate::machines::service as machines;
use crate::store::{Staged, new_id};

/// Validates endpoint settings. `at` prefixes field names (`endpoints[0].` in heartbeats);
/// `provider` is the path's provider key for `PUT`, else the entry's own.
pub fn validate(
    at: &str,
    provider: Option<&str>,
    fields: EndpointFields,
) -> ApiResult<EndpointSpec> {
    let field = |name: &str| format!("{at}{name}");
    let raw_key = match provider {
        Some(key) => key.to_string(),
        None => fields.provider_key.ok_or_else(|| {
            ApiError::validation(
                &field("providerKey"),
                "required",
                format!("{} is required", field("providerKey")),
            )
        })?,
    };
    let provider_key = provider_key(&field("providerKey"), &raw_key)?;
    let base_url = fields.endpoint_base_url.ok_or_else(|| {
        ApiError::validation(
            &field("endpointBaseUrl"),
            "required",
            format!("{} is required", field("endpointBaseUrl")),
        )
    })?;
    let endpoint_base_url = normalise_base_url(&field("endpointBaseUrl"), &base_url)?;
    let network_scope = match fields.network_scope {
        None => default_network_scope(&endpoint_base_url),
        Some(scope) => NetworkScope::parse(&scope).ok_or_else(|| {
            ApiError::validation(
                &field("networkScope"),
                "loopback | lan | vpn | public",
                format!(
                    "{} must be loopback, lan, vpn or public",
                    field("networkScope")
                ),
            )
        })?,
    };
    let probe_path = match fields.probe_path {
        None => if provider_key == "qvac" {
            "/v1/models"
        } else {
            "/health"
        }
        .to_string(),
        Some(path)
            if path.starts_with('/')
                && path.len() <= MAX_TEXT
                && !path.chars().any(char::is_control) =>
        {
            path
        }
        Some(_) => {
            return Err(ApiError::validation(
                &field("probePath"),
                "starts with /",
                format!("{} must start with /", field("probePath")),
            ));
        }
    };
    let lease_expires_at = match fields.lease_expires_at {
        None => None,
        Some(value) => Some(parse_rfc3339_ms(&value).ok_or_else(|| {
            ApiError::validation(
                &field("leaseExpiresAt"),
                "RFC 3339 timestamp",
                format!("{} must be an RFC 3339 timestamp", field("leaseExpiresAt")),
            )
        })?),
    };
    Ok(EndpointSpec {
        label: optional_text(&field("label"), fields.label, MAX_NAME)?
            .unwrap_or_else(|| format!("{} runtime", provider_key.to_uppercase())),
        auth_type: fields.auth_type.unwrap_or(AuthType::None),
        auth_token: optional_text(&field("authToken"), fields.auth_token, MAX_TEXT)?,
        model_alias: optional_text(&field("modelAlias"), fields.model_alias, MAX_NAME)?,
        status: fields.status.unwrap_or(EndpointStatus::Active),
        provider_key,
        endpoint_base_url,
        network_scope,
        probe_path,
        lease_expires_at,
    })
}

pub async fn list(
    app: &App,
    machine_id: &str,
    page: &PageRequest,
) -> ApiResult<ListPage<RuntimeEndpoint>> {
    machines::gate_b(app, machine_id).await?;
    let now = app.clock.now_ms();
    let rows = store::list_for_machine(
        &app.store,
        machine_id,
        page.after.as_ref(),
        page.fetch_limit(),
    )
    .await?;
    let views = rows.iter().map(|r| r.view(now)).collect();
    Ok(page.finish(views, |e| Position {
        t: e.created_at_ms,
        id: e.id.clone(),
    }))
}

fn not_found(provider_key: &str) -> ApiError {
    ApiError::not_found("runtime-endpoint", provider_key)
}

/// Every runtime endpoint of a machine, as stored (the caller has gated the machine). Market
/// views and the execution engine read their effective status from these.
pub async fn machine_endpoints(app: &App, machine_id: &str) -> ApiResult<Vec<EndpointRow>> {
    Ok(store::all_for_machine(&app.store, machine_id).await?)
}

pub async fn get(app: &App, machine_id: &str, provider: &str) -> ApiResult<RuntimeEndpoint> {
    machines::gate_b(app, machine_id).await?;
    let key = provider.to_lowercase();
    let row = store::get(&app.store, machine_id, &key)
        .await?
        .ok_or_else(|| not_found(&key))?;
    Ok(row.view(app.clock.now_ms()))
}

/// `PUT`: returns the endpoint and whether it was created.
pub async fn put(
    app: &App,
    machine_id: &str,
    provider: &str,
    fields: EndpointFields,
) -> ApiResult<Staged<(RuntimeEndpoint, bool)>> {
    machines::gate_b(app, machine_id).await?;
    let spec = validate("", Some(provider), fields)?;
    let sealed = spec
        .auth_token
        .as_deref()
        .map(|t| app.secrets.seal(t.as_bytes()));
    let now = app.clock.now_ms();
    let mut tx = app.store.begin().await?;
    let (row, created) = store::upsert(
        &mut tx,
        machine_id,
        Owner::Manual,
        &spec,
        sealed,
        &new_id("rep_"),
        now,
    )
    .await?;
    let view = row.view(now);
    let event = NewAuditEvent {
        actor: Actor::Api,
        event_type: "runtime-endpoint.upserted",
        resource_type: "runtime-endpoint",
        resource_id: row.id.clone(),
        machine_id: Some(machine_id.to_string()),
        payload: json!({
            "providerKey": view.provider_key, "source": "manual", "endpointBaseUrl": view.endpoint_base_url,
            "networkScope": view.network_scope, "status": view.status, "hasAuthToken": view.has_auth_token,
            "created": created,
        }),
    };
    audit::record(&mut tx, now, event).await?;
    Ok(Staged {
        tx,
        value: (view, created),
    })
}

pub async fn delete(app: &App, machine_id: &str, provider: &str) -> ApiResult<crate::store::Tx> {
    machines::find(app, machine_id).await?;
    let key = provider.to_lowercase();
    let now = app.clock.now_ms();
    let mut tx = app.store.begin().await?;
    let (id, source) = store::delete(&mut tx, machine_id, &key)
        .await?
        .ok_or_else(|| not_found(&key))?;
    let event = NewAuditEvent {
        actor: Actor::Api,
        event_type: "runtime-endpoint.deleted",
        resource_type: "runtime-endpoint",
        resource_id: id,
        machine_id: Some(machine_id.to_string()),
        payload: json!({ "providerKey": key, "source": source }),
    };
    audit::record(&mut tx, now, event).await?;
    Ok(tx)
}
