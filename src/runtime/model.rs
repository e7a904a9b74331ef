use serde::{Deserialize, Serialize};

use crate::clients::runtime::AuthType;
use crate::clock::format_ms;
use crate::config::NetworkScope;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = RuntimeEndpointStatus)]
pub enum EndpointStatus {
    Active,
    Degraded,
    Unreachable,
}

impl EndpointStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointStatus::Active => "active",
            EndpointStatus::Degraded => "degraded",
            EndpointStatus::Unreachable => "unreachable",
        }
    }

    pub fn parse(s: &str) -> Option<EndpointStatus> {
        [
            EndpointStatus::Active,
            EndpointStatus::Degraded,
            EndpointStatus::Unreachable,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }
}

/// A stored endpoint, as the store reads it.
#[derive(Debug, Clone)]
pub struct EndpointRow {
    pub id: String,
    pub machine_id: String,
    pub provider_key: String,
    pub source: String,
    pub agent_id: Option<String>,
    pub label: String,
    pub endpoint_base_url: String,
    pub auth_type: AuthType,
    /// Sealed with the secrets key.
    pub sealed_auth_token: Option<String>,
    pub model_alias: Option<String>,
    pub network_scope: NetworkScope,
    pub probe_path: String,
    pub status: EndpointStatus,
    pub lease_expires_at: Option<i64>,
    pub last_checked_at: Option<i64>,
    pub last_healthy_at: Option<i64>,
    pub health_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl EndpointRow {
    /// `unreachable` whenever the lease has passed; manual endpoints without a lease never expire.
    pub fn effective_status(&self, now_ms: i64) -> EndpointStatus {
        match self.lease_expires_at {
            Some(expires) if expires <= now_ms => EndpointStatus::Unreachable,
            _ => self.status,
        }
    }

    pub fn view(&self, now_ms: i64) -> RuntimeEndpoint {
        RuntimeEndpoint {
            id: self.id.clone(),
            machine_id: self.machine_id.clone(),
            provider_key: self.provider_key.clone(),
            source: self.source.clone(),
            agent_id: self.agent_id.clone(),
            label: self.label.clone(),
            endpoint_base_url: self.endpoint_base_url.clone(),
            auth_type: self.auth_type,
            has_auth_token: self.sealed_auth_token.is_some(),
            model_alias: self.model_alias.clone(),
            network_scope: self.network_scope.as_str(),
            probe_path: self.probe_path.clone(),
            status: self.effective_status(now_ms),
            lease_expires_at: self.lease_expires_at.map(format_ms),
            last_checked_at: self.last_checked_at.map(format_ms),
            last_healthy_at: self.last_healthy_at.map(format_ms),
            health_error: self.health_error.clone(),
            created_at: format_ms(self.created_at),
            updated_at: format_ms(self.updated_at),
            created_at_ms: self.created_at,
        }
    }
}

/// `RuntimeEndpoint` on the wire (spec §1.2), with the heartbeat's `healthError` (§1.3).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeEndpoint {
    pub id: String,
    pub machine_id: String,
    pub provider_key: String,
    pub source: String,
    pub agent_id: Option<String>,
    pub label: String,
    pub endpoint_base_url: String,
    pub auth_type: AuthType,
    pub has_auth_token: bool,
    pub model_alias: Option<String>,
    pub network_scope: &'static str,
    pub probe_path: String,
    pub status: EndpointStatus,
    pub lease_expires_at: Option<String>,
    pub last_checked_at: Option<String>,
    pub last_healthy_at: Option<String>,
    pub health_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip)]
    pub created_at_ms: i64,
}

/// Endpoint settings as sent by `PUT` or in a heartbeat entry.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = RuntimeEndpointInput)]
pub struct EndpointFields {
    pub provider_key: Option<String>,
    pub endpoint_base_url: Option<String>,
    pub label: Option<String>,
    pub auth_type: Option<AuthType>,
    pub auth_token: Option<String>,
    pub model_alias: Option<String>,
    pub network_scope: Option<String>,
    pub probe_path: Option<String>,
    pub status: Option<EndpointStatus>,
    pub lease_expires_at: Option<String>,
}

/// Validated settings, ready to store.
#[derive(Debug, Clone)]
pub struct EndpointSpec {
    pub provider_key: String,
    pub label: String,
    pub endpoint_base_url: String,
    pub auth_type: AuthType,
    /// Plain text until the store seals it; never logged.
    pub auth_token: Option<String>,
    pub model_alias: Option<String>,
    pub network_scope: NetworkScope,
    pub probe_path: String,
    pub status: EndpointStatus,
    pub lease_expires_at: Option<i64>,
}
