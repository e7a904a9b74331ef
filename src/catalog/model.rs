//! The catalogue's records (spec catalogue-and-search.md §2), as catalogue files write them and
//! as the API answers them. File entries use the wire names; server-computed fields
//! (`authState`, `enabled`, `freshnessSeconds`, `consumption`, `endpoint`) are ignored in files.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::wire::Raw;
use crate::{impl_wire_enum, wire_enum};

wire_enum!(pub ServiceType {
    OraclePriceFeed = "oracle.price-feed",
    ComputeMarketplace = "compute.marketplace",
    StorageObject = "storage.object",
    DataLocation = "data.location",
    NetworkPartnerConsole = "network.partner-console",
    IdentityProofOfPerson = "identity.proof-of-person",
    DeviceControl = "device.control",
    MachineCommerce = "machine.commerce",
});

impl ServiceType {
    /// A canonical value or one of the aliases of §7 (`compute`, `storage`, `gnss`, …).
    pub fn parse_with_alias(value: &str) -> Option<ServiceType> {
        ServiceType::parse(value).or(match value {
            "storage" => Some(ServiceType::StorageObject),
            "compute" => Some(ServiceType::ComputeMarketplace),
            "identity" => Some(ServiceType::IdentityProofOfPerson),
            "location" | "rtk" | "gnss" => Some(ServiceType::DataLocation),
            "defi" => Some(ServiceType::OraclePriceFeed),
            "commerce" => Some(ServiceType::MachineCommerce),
            _ => None,
        })
    }
}

wire_enum!(pub Direction { MachineOffers = "machine-offers", MachineConsumes = "machine-consumes" });
wire_enum!(pub SkillScope {
    CoreProduct = "core-product",
    BootstrapReference = "bootstrap-reference",
    Ecosystem = "ecosystem",
});
wire_enum!(pub SkillSource {
    Peaq = "peaq",
    Partner = "partner",
    Clawhub = "clawhub",
    ExternalMarketplace = "external-marketplace",
});
wire_enum!(pub Kind { Runtime = "runtime", Reference = "reference" });
wire_enum!(pub AuthType {
    None = "none",
    ApiKey = "api-key",
    Bearer = "bearer",
    Wallet = "wallet",
    Local = "local",
});
wire_enum!(pub AuthState {
    Unconfigured = "unconfigured",
    Configured = "configured",
    Expired = "expired",
    Invalid = "invalid",
    Restricted = "restricted",
});
wire_enum!(pub AccessMode {
    Public = "public",
    Credentialed = "credentialed",
    PartnerApproved = "partner-approved",
    Whitelisted = "whitelisted",
    Local = "local",
});
wire_enum!(pub Distribution {
    PeaqNative = "peaq-native",
    Clawhub = "clawhub",
    Openapi = "openapi",
    Mcp = "mcp",
    DocsOnly = "docs-only",
});
wire_enum!(pub Maturity { Reference = "reference", Beta = "beta", Production = "production" });
wire_enum!(pub ExecutionMode { Native = "native", ExternalHandoff = "external-handoff" });
wire_enum!(pub IntegrationStatus {
    Native = "native",
    CredentialsRequired = "credentials-required",
    PartnerRequired = "partner-required",
    LocalConfigRequired = "local-config-required",
    SetupRequired = "setup-required",
    DocsOnly = "docs-only",
});
wire_enum!(pub PricingMode {
    ProviderDefined = "provider-defined",
    Fixed = "fixed",
    QuoteRequired = "quote-required",
});
wire_enum!(pub RailType {
    NotRequired = "not-required",
    Wallet = "wallet",
    X402 = "x402",
    Xvv42 = "xvv42",
    Mpp = "mpp",
    VaultStripe = "vault-stripe",
    WdkUsdtTransfer = "wdk-usdt-transfer",
    Escrow = "escrow",
    OnchainEscrow = "onchain-escrow",
    OffchainRecord = "offchain-record",
    External = "external",
});

impl_wire_enum!(
    ServiceType,
    Direction,
    SkillScope,
    SkillSource,
    Kind,
    AuthType,
    AccessMode,
    Distribution,
    Maturity,
    ExecutionMode,
    IntegrationStatus,
    PricingMode,
    RailType,
);

fn empty_object() -> Map<String, Value> {
    Map::new()
}

/// `ExternalHandoff`: where the agent continues outside the orchestrator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalHandoff {
    pub label: String,
    pub url: String,
    #[serde(default)]
    pub notes: Vec<String>,
}

/// A skill as a catalogue file declares it (`SkillSummary` without the computed fields).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Skill {
    pub key: String,
    pub provider_key: String,
    pub label: String,
    pub description: String,
    pub direction: Direction,
    pub scope: SkillScope,
    pub source: SkillSource,
    pub listed_by: String,
    #[serde(default)]
    pub last_verified_at: Option<String>,
    pub kind: Kind,
    #[serde(default)]
    pub service_types: Vec<ServiceType>,
    #[serde(default)]
    pub operations: Vec<String>,
    pub auth_type: AuthType,
    pub access_mode: AccessMode,
    pub distribution: Distribution,
    pub maturity: Maturity,
    pub execution_mode: ExecutionMode,
    pub integration_status: IntegrationStatus,
    #[serde(default)]
    pub required_env: Vec<String>,
    pub requires_human_enablement: bool,
    #[serde(default)]
    pub reference_url: Option<String>,
    #[serde(default)]
    pub artifact_url: Option<String>,
    #[serde(default)]
    pub handoff: Option<ExternalHandoff>,
    #[serde(default, skip_serializing)]
    pub updated_at: Option<String>,
    /// `updatedAt` in epoch ms (the file's value, else start-up time).
    #[serde(skip)]
    pub updated_at_ms: i64,
}

/// `SkillSummary` on the wire: the skill plus `authState`, `enabled` and `updatedAt`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SkillSummary {
    pub key: String,
    pub provider_key: String,
    pub label: String,
    pub description: String,
    pub direction: Direction,
    pub scope: SkillScope,
    pub source: SkillSource,
    pub listed_by: String,
    pub last_verified_at: Option<String>,
    pub kind: Kind,
    pub service_types: Vec<ServiceType>,
    pub operations: Vec<String>,
    pub auth_type: AuthType,
    pub auth_state: AuthState,
    pub access_mode: AccessMode,
    pub distribution: Distribution,
    pub maturity: Maturity,
    pub execution_mode: ExecutionMode,
    pub integration_status: IntegrationStatus,
    pub required_env: Vec<String>,
    pub requires_human_enablement: bool,
    pub reference_url: Option<String>,
    pub artifact_url: Option<String>,
    pub handoff: Option<ExternalHandoff>,
    pub enabled: bool,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManifestInput {
    pub key: String,
    #[serde(rename = "type")]
    pub value_type: String,
    pub required: bool,
    pub description: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManifestOutput {
    pub key: String,
    #[serde(rename = "type")]
    pub value_type: String,
    pub description: String,
}

/// `SkillManifest`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SkillManifest {
    pub key: String,
    pub provider_key: String,
    pub label: String,
    pub summary: String,
    pub inputs: Vec<ManifestInput>,
    pub outputs: Vec<ManifestOutput>,
}

/// `Pricing`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pricing {
    pub mode: PricingMode,
    #[serde(default)]
    pub amount: Option<f64>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub rate: Option<String>,
    #[serde(default)]
    pub notes: Vec<String>,
}

impl Default for Pricing {
    fn default() -> Self {
        Pricing {
            mode: PricingMode::ProviderDefined,
            amount: None,
            currency: None,
            rate: None,
            notes: Vec::new(),
        }
    }
}

impl Pricing {
    /// The fixed price, when the service has one.
    pub fn fixed_amount(&self) -> Option<f64> {
        (self.mode == PricingMode::Fixed)
            .then_some(self.amount)
            .flatten()
    }
}

/// `PaymentRailRecommendation` (also `MarketOrder.payment` and `MarketQuote.payment`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRecommendation {
    pub default_rail: RailType,
    #[serde(default)]
    pub supported_rails: Vec<RailType>,
    pub required: bool,
    #[serde(default)]
    pub notes: Vec<String>,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub chain: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub token_address: Option<String>,
    #[serde(default)]
    pub token_mint: Option<String>,
    #[serde(default)]
    pub wallet_address: Option<String>,
    #[serde(default)]
    pub escrow_address: Option<String>,
    #[serde(default)]
    pub external_url: Option<String>,
    #[serde(default)]
    pub payer_address: Option<String>,
    #[serde(default)]
    pub payee_address: Option<String>,
    #[serde(default)]
    pub token_decimals: Option<u32>,
}

impl Default for PaymentRecommendation {
    fn default() -> Self {
        PaymentRecommendation {
            default_rail: RailType::NotRequired,
            supported_rails: vec![RailType::NotRequired],
            required: false,
            notes: Vec::new(),
            provider: None,
            chain: None,
            token: None,
            token_address: None,
            token_mint: None,
            wallet_address: None,
            escrow_address: None,
            external_url: None,
            payer_address: None,
            payee_address: None,
            token_decimals: None,
        }
    }
}

/// `ServiceEndpoint`: one HTTP endpoint of the provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEndpoint {
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub operation: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub provider_name: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub protocols: Vec<String>,
    #[serde(default)]
    pub networks: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContractField {
    pub key: String,
    #[serde(rename = "type")]
    pub value_type: String,
    #[serde(default)]
    pub description: Option<String>,
}

/// `OperationContract`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationContract {
    pub operation: String,
    #[serde(default)]
    pub input_fields: Vec<ContractField>,
    #[serde(default)]
    pub output_fields: Vec<ContractField>,
    #[serde(default = "empty_object")]
    pub example_input: Map<String, Value>,
    #[serde(default)]
    pub provider_request: Option<Map<String, Value>>,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub notes: Vec<String>,
}

/// A service as a catalogue file declares it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub id: String,
    pub skill_key: String,
    pub provider_key: String,
    pub provider_id: String,
    pub provider_label: String,
    #[serde(default)]
    pub company_name: Option<String>,
    pub service_type: ServiceType,
    pub name: String,
    pub description: String,
    pub operations: Vec<String>,
    #[serde(default)]
    pub capabilities: Vec<String>,
    pub auth_type: AuthType,
    pub access_mode: AccessMode,
    pub execution_mode: ExecutionMode,
    pub integration_status: IntegrationStatus,
    pub distribution: Distribution,
    pub maturity: Maturity,
    pub kind: Kind,
    pub region: String,
    pub requires_human_enablement: bool,
    /// Read where it matters (`credentialHeaders`); kept as text.
    #[serde(default)]
    pub metadata: Raw<Map<String, Value>>,
    #[serde(default)]
    pub pricing: Pricing,
    #[serde(default)]
    pub payment: PaymentRecommendation,
    #[serde(default)]
    pub endpoints: Vec<ServiceEndpoint>,
    #[serde(default)]
    pub operation_contracts: Raw<Vec<OperationContract>>,
    #[serde(default)]
    pub reference_url: Option<String>,
    #[serde(default)]
    pub artifact_url: Option<String>,
    #[serde(default)]
    pub handoff: Option<ExternalHandoff>,
    #[serde(default, skip_serializing)]
    pub updated_at: Option<String>,
    #[serde(skip)]
    pub updated_at_ms: i64,
}

/// `Consumption`: the canonical paths for using a service.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Consumption {
    pub adapter_setup_path: String,
    pub service_detail_path: String,
    pub market_search_path: String,
}

/// `MarketService` on the wire: the catalogue entry, machine-scoped where a machine applies.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MarketService {
    pub id: String,
    pub skill_key: String,
    pub provider_key: String,
    pub provider_id: String,
    pub provider_label: String,
    pub company_name: Option<String>,
    pub service_type: ServiceType,
    pub name: String,
    pub description: String,
    pub operations: Vec<String>,
    pub capabilities: Vec<String>,
    pub auth_type: AuthType,
    pub access_mode: AccessMode,
    pub execution_mode: ExecutionMode,
    pub integration_status: IntegrationStatus,
    pub distribution: Distribution,
    pub maturity: Maturity,
    pub kind: Kind,
    pub region: String,
    pub freshness_seconds: i64,
    pub requires_human_enablement: bool,
    #[schema(value_type = Object)]
    pub metadata: Raw<Map<String, Value>>,
    pub pricing: Pricing,
    pub payment: PaymentRecommendation,
    pub endpoints: Vec<ServiceEndpoint>,
    /// Legacy alias of `endpoints[0]`.
    pub endpoint: Option<ServiceEndpoint>,
    pub consumption: Consumption,
    #[schema(value_type = Vec<OperationContract>)]
    pub operation_contracts: Raw<Vec<OperationContract>>,
    pub reference_url: Option<String>,
    pub artifact_url: Option<String>,
    pub handoff: Option<ExternalHandoff>,
    pub updated_at: String,
}

/// `runtimeEndpoint` of an adapter.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdapterRuntimeEndpoint {
    pub required: bool,
    pub probe_path: String,
}

/// `AdapterSetup`: how to set up one provider.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdapterSetup {
    pub provider_key: String,
    pub label: String,
    pub integration_status: IntegrationStatus,
    pub execution_mode: ExecutionMode,
    #[serde(default)]
    pub credential_keys: Vec<String>,
    #[serde(default)]
    pub runtime_endpoint: Option<AdapterRuntimeEndpoint>,
    #[serde(default)]
    pub setup_steps: Vec<String>,
    #[serde(default)]
    pub docs_url: Option<String>,
}

/// `SkillConfig`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SkillConfig {
    pub skill_key: String,
    pub provider_key: String,
    pub enabled: bool,
    #[schema(value_type = Object)]
    pub settings: Map<String, Value>,
    pub has_credentials: bool,
    pub updated_at: String,
}

/// `PATCH /skills/{skillKey}/config`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateSkillConfig {
    pub enabled: Option<bool>,
    #[schema(value_type = Option<Object>)]
    pub credentials: Option<Map<String, Value>>,
    #[schema(value_type = Option<Object>)]
    pub settings: Option<Map<String, Value>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_type_aliases() {
        for (value, expected) in [
            ("compute", ServiceType::ComputeMarketplace),
            ("compute.marketplace", ServiceType::ComputeMarketplace),
            ("storage", ServiceType::StorageObject),
            ("identity", ServiceType::IdentityProofOfPerson),
            ("location", ServiceType::DataLocation),
            ("rtk", ServiceType::DataLocation),
            ("gnss", ServiceType::DataLocation),
            ("defi", ServiceType::OraclePriceFeed),
            ("commerce", ServiceType::MachineCommerce),
            ("device.control", ServiceType::DeviceControl),
        ] {
            assert_eq!(
                ServiceType::parse_with_alias(value),
                Some(expected),
                "{value}"
            );
        }
        for bad in ["", "Compute", "gpu", "oracle", "storage.objects"] {
            assert_eq!(ServiceType::parse_with_alias(bad), None, "{bad}");
        }
    }

    #[test]
    fn enums_use_their_wire_values() {
        assert_eq!(
            serde_json::to_value(RailType::NotRequired).unwrap(),
            "not-required"
        );
        assert_eq!(
            serde_json::to_value(ServiceType::OraclePriceFeed).unwrap(),
            "oracle.price-feed"
        );
        assert_eq!(
            RailType::parse("onchain-escrow"),
            Some(RailType::OnchainEscrow)
        );
        assert!(IntegrationStatus::allowed().contains("local-config-required"));
    }
}
