//! The ranking of spec catalogue-and-search.md §9: which services fit a request, and in what
//! order. One pure function, shared by market search and task discovery: everything it depends
//! on (the machine's view, the delegation policy, skill states, available credentials) is passed
//! in, so it is tested factor by factor without a server.

use std::collections::HashSet;

use crate::catalog::model::{
    ExecutionMode, IntegrationStatus, Kind, Maturity, Service, ServiceType,
};
use crate::catalog::service::{MachineScope, SkillStates};
use crate::pairings::policy::DelegationPolicy;

/// Weights of the six score factors (§9.2, **Open** defaults).
pub const WEIGHT_EXECUTION: f64 = 0.35;
pub const WEIGHT_CAPABILITIES: f64 = 0.20;
pub const WEIGHT_REGION: f64 = 0.15;
pub const WEIGHT_SKILL: f64 = 0.10;
pub const WEIGHT_PRICE: f64 = 0.10;
pub const WEIGHT_MATURITY: f64 = 0.10;

/// What is asked for.
#[derive(Debug, Clone, Default)]
pub struct Criteria<'a> {
    pub operation: Option<&'a str>,
    pub required_capabilities: &'a [String],
    pub region: Option<&'a str>,
    pub allow_external_handoff: bool,
    pub require_native_execution: bool,
    pub budget_max: Option<f64>,
    pub budget_currency: Option<&'a str>,
    /// Tasks only.
    pub preferred_skill_keys: &'a [String],
    /// `maxResults` or `maxCandidates`.
    pub limit: usize,
}

/// What the ranking knows of the machine and its agent.
pub struct Context<'a> {
    pub scope: &'a MachineScope,
    /// The pairing's policy (search only).
    pub delegation: Option<&'a DelegationPolicy>,
    pub skills: &'a SkillStates,
    /// Provider keys with credentials in the request, normalised by [`credential_key`].
    pub request_credentials: &'a HashSet<String>,
}

/// One ranked service (`Candidate`, §9.3, before it becomes wire data).
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub service: &'a Service,
    /// Machine-scoped (§3).
    pub integration_status: IntegrationStatus,
    pub score: f64,
    pub reasons: Vec<String>,
    /// Credentials for the provider were found in the request or stored skill config.
    pub credentials_available: bool,
}

/// The key under which `providerCredentials` (or a provider key) is matched: lower-cased, `-`
/// and `_` removed, so the client's `worldId` matches `world-id`.
pub fn credential_key(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

fn round4(value: f64) -> f64 {
    (value * 10_000.0).round() / 10_000.0
}

fn same_currency(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Filters 1–9 of §9.1 (the service type is given by the caller's iterator; it is checked again).
fn passes(
    service: &Service,
    service_type: ServiceType,
    criteria: &Criteria<'_>,
    context: &Context<'_>,
) -> bool {
    // 1. Type.
    if service.service_type != service_type {
        return false;
    }
    // 2. Operation.
    if let Some(operation) = criteria.operation
        && !service.operations.iter().any(|op| op == operation)
    {
        return false;
    }
    // 3. Capabilities.
    if !criteria
        .required_capabilities
        .iter()
        .all(|c| service.capabilities.contains(c))
    {
        return false;
    }
    // 4. Region.
    if let Some(region) = criteria.region
        && !service.region.eq_ignore_ascii_case(region)
        && !service.region.eq_ignore_ascii_case("global")
    {
        return false;
    }
    // 5. Execution mode.
    let handoff = service.execution_mode == ExecutionMode::ExternalHandoff;
    if handoff && (criteria.require_native_execution || !criteria.allow_external_handoff) {
        return false;
    }
    // 6. Delegation policy.
    if let Some(policy) = context.delegation
        && policy.allows(&service.skill_key, &service.id).is_err()
    {
        return false;
    }
    // 7. Machine policies.
    if !context.scope.policies_allow(service) {
        return false;
    }
    // 8. Budget.
    if let (Some(max), Some(price)) = (criteria.budget_max, service.pricing.fixed_amount()) {
        let mismatch = matches!(
            (criteria.budget_currency, service.pricing.currency.as_deref()),
            (Some(a), Some(b)) if !same_currency(a, b)
        );
        if !mismatch && price > max {
            return false;
        }
    }
    // 9. The skill is enabled.
    context.skills.enabled(&service.skill_key)
}

/// A factor's reason, written only when it will be shown: ranking scores every candidate but
/// explains only those it keeps.
fn why(explain: bool, text: impl FnOnce() -> String) -> String {
    if explain { text() } else { String::new() }
}

/// The `execution` factor: its value, the reason, and whether credentials were found.
fn execution(
    service: &Service,
    integration_status: IntegrationStatus,
    context: &Context<'_>,
    explain: bool,
) -> (f64, String, bool) {
    let credentials = (!context.request_credentials.is_empty()
        && context
            .request_credentials
            .contains(&credential_key(&service.provider_key)))
        || context.skills.has_credentials(&service.skill_key);
    let found = if credentials { "found" } else { "not found" };
    if service.execution_mode == ExecutionMode::ExternalHandoff {
        return (
            0.3,
            why(explain, || "execution: external handoff".into()),
            credentials,
        );
    }
    if service.integration_status == IntegrationStatus::DocsOnly {
        return (
            0.3,
            why(explain, || "execution: docs only".into()),
            credentials,
        );
    }
    if service.kind == Kind::Runtime {
        return if context.scope.runtime_active(&service.provider_key) {
            let reason = why(explain, || {
                format!(
                    "execution: native on the machine's {} runtime endpoint (active)",
                    service.provider_key
                )
            });
            (1.0, reason, credentials)
        } else {
            let reason = why(explain, || {
                format!(
                    "execution: the machine's {} runtime endpoint is missing or not healthy",
                    service.provider_key
                )
            });
            (0.5, reason, credentials)
        };
    }
    match integration_status {
        IntegrationStatus::Native => (
            0.8,
            why(explain, || "execution: native, server-side".into()),
            credentials,
        ),
        IntegrationStatus::CredentialsRequired => (
            0.5,
            why(explain, || {
                format!("execution: credentials required (credentials {found})")
            }),
            credentials,
        ),
        other => (
            0.5,
            why(explain, || format!("execution: {other}")),
            credentials,
        ),
    }
}

fn capabilities(
    service: &Service,
    criteria: &Criteria<'_>,
    context: &Context<'_>,
    explain: bool,
) -> (f64, String) {
    if !criteria.required_capabilities.is_empty() {
        return (
            1.0,
            why(explain, || "capabilities: every required capability".into()),
        );
    }
    if service.capabilities.is_empty() {
        return (
            0.5,
            why(explain, || "capabilities: the service lists none".into()),
        );
    }
    let machine = &context.scope.machine.capabilities;
    let shared = service
        .capabilities
        .iter()
        .filter(|c| machine.contains(c))
        .count();
    (
        shared as f64 / service.capabilities.len() as f64,
        why(explain, || {
            format!(
                "capabilities: {shared} of {} shared with the machine",
                service.capabilities.len()
            )
        }),
    )
}

fn region(service: &Service, criteria: &Criteria<'_>, explain: bool) -> (f64, String) {
    match criteria.region {
        Some(region) if service.region.eq_ignore_ascii_case(region) => (
            1.0,
            why(explain, || format!("region: {} matches", service.region)),
        ),
        Some(_) => (0.5, why(explain, || "region: global service".into())),
        None => (0.5, why(explain, || "region: none requested".into())),
    }
}

fn skill(
    service: &Service,
    criteria: &Criteria<'_>,
    context: &Context<'_>,
    explain: bool,
) -> (f64, String) {
    let key = &service.skill_key;
    if criteria.preferred_skill_keys.contains(key) {
        (1.0, why(explain, || format!("skill: {key} is preferred")))
    } else if context.scope.machine.skill_keys.contains(key) {
        (
            1.0,
            why(explain, || {
                format!("skill: {key} is one of the machine's skills")
            }),
        )
    } else {
        (
            0.0,
            why(explain, || {
                format!("skill: {key} is not one of the machine's skills")
            }),
        )
    }
}

fn price(service: &Service, criteria: &Criteria<'_>, explain: bool) -> (f64, String) {
    let Some(price) = service.pricing.fixed_amount() else {
        return (0.5, why(explain, || "price: not fixed".into()));
    };
    if price == 0.0 {
        return (1.0, why(explain, || "price: free".into()));
    }
    match criteria.budget_max {
        None => (0.5, why(explain, || "price: no budget given".into())),
        Some(max) => {
            let mismatch = matches!(
                (criteria.budget_currency, service.pricing.currency.as_deref()),
                (Some(a), Some(b)) if !same_currency(a, b)
            );
            if mismatch {
                (
                    0.5,
                    why(explain, || {
                        "price: in another currency than the budget".into()
                    }),
                )
            } else if price <= max {
                (
                    1.0,
                    why(explain, || {
                        format!("price: {price} within the budget of {max}")
                    }),
                )
            } else {
                (
                    0.0,
                    why(explain, || {
                        format!("price: {price} over the budget of {max}")
                    }),
                )
            }
        }
    }
}

fn maturity(service: &Service, explain: bool) -> (f64, String) {
    let value = match service.maturity {
        Maturity::Production => 1.0,
        Maturity::Beta => 0.6,
        Maturity::Reference => 0.3,
    };
    (
        value,
        why(explain, || format!("maturity: {}", service.maturity)),
    )
}

/// Scores one service that passed the filters; with `explain`, with its six reasons.
fn evaluate<'a>(
    service: &'a Service,
    integration_status: IntegrationStatus,
    criteria: &Criteria<'_>,
    context: &Context<'_>,
    explain: bool,
) -> Candidate<'a> {
    let (execution, execution_reason, credentials_available) =
        execution(service, integration_status, context, explain);
    let factors = [
        (WEIGHT_EXECUTION, (execution, execution_reason)),
        (
            WEIGHT_CAPABILITIES,
            capabilities(service, criteria, context, explain),
        ),
        (WEIGHT_REGION, region(service, criteria, explain)),
        (WEIGHT_SKILL, skill(service, criteria, context, explain)),
        (WEIGHT_PRICE, price(service, criteria, explain)),
        (WEIGHT_MATURITY, maturity(service, explain)),
    ];
    let score = round4(factors.iter().map(|(w, (v, _))| w * v).sum::<f64>());
    Candidate {
        service,
        integration_status,
        score: score.clamp(0.0, 1.0),
        reasons: if explain {
            factors.into_iter().map(|(_, (_, reason))| reason).collect()
        } else {
            Vec::new()
        },
        credentials_available,
    }
}

/// Ranks `services` (the catalogue's services of `service_type`) for `criteria` in `context`:
/// the services passing every filter, by score descending then id ascending, at most
/// `criteria.limit`. Every candidate is scored; only the ones kept are explained.
pub fn rank<'a>(
    services: impl Iterator<Item = &'a Service>,
    service_type: ServiceType,
    criteria: &Criteria<'_>,
    context: &Context<'_>,
) -> Vec<Candidate<'a>> {
    let mut scored: Vec<Candidate<'a>> = services
        .filter(|s| passes(s, service_type, criteria, context))
        .map(|service| {
            let status = context.scope.integration_status(service);
            evaluate(service, status, criteria, context, false)
        })
        .collect();
    let order = |a: &Candidate<'_>, b: &Candidate<'_>| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.service.id.cmp(&b.service.id))
    };
    if scored.len() > criteria.limit {
        scored.select_nth_unstable_by(criteria.limit, order);
        scored.truncate(criteria.limit);
    }
    scored.sort_by(order);
    scored
        .into_iter()
        .map(|c| evaluate(c.service, c.integration_status, criteria, context, true))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::model::{
        AccessMode, AuthType, Distribution, PaymentRecommendation, Pricing, PricingMode,
    };
    use crate::machines::model::{Machine, MachineStatus};
    use crate::runtime::model::{EndpointRow, EndpointStatus};

    fn service(id: &str) -> Service {
        serde_json::from_value(serde_json::json!({
            "id": id, "skillKey": format!("{id}-skill"), "providerKey": "prov",
            "providerId": "prov", "providerLabel": "Prov", "serviceType": "compute.marketplace",
            "name": id, "description": "d", "operations": ["run"], "authType": "none",
            "accessMode": "public", "executionMode": "native", "integrationStatus": "native",
            "distribution": "openapi", "maturity": "production", "kind": "reference",
            "region": "global", "requiresHumanEnablement": false,
        }))
        .unwrap()
    }

    fn machine(capabilities: &[&str], skill_keys: &[&str]) -> Machine {
        Machine {
            id: "mach_1".into(),
            display_name: "m".into(),
            status: MachineStatus::Active,
            owner_id: "o".into(),
            identity_ref: "did:peaq:1".into(),
            identity_proof: None,
            machine_type: "t".into(),
            runtime_profile: "r".into(),
            capabilities: capabilities.iter().map(|s| s.to_string()).collect(),
            labels: Default::default(),
            policy_ids: vec![],
            skill_keys: skill_keys.iter().map(|s| s.to_string()).collect(),
            created_at: String::new(),
            updated_at: String::new(),
            created_at_ms: 0,
            revision: 0,
        }
    }

    fn endpoint(provider_key: &str, status: EndpointStatus, lease: Option<i64>) -> EndpointRow {
        EndpointRow {
            id: "rep_1".into(),
            machine_id: "mach_1".into(),
            provider_key: provider_key.into(),
            source: "manual".into(),
            agent_id: None,
            label: "l".into(),
            endpoint_base_url: "http://127.0.0.1:1".into(),
            auth_type: crate::clients::runtime::AuthType::None,
            sealed_auth_token: None,
            model_alias: None,
            network_scope: crate::config::NetworkScope::Loopback,
            probe_path: "/health".into(),
            status,
            lease_expires_at: lease,
            last_checked_at: None,
            last_healthy_at: None,
            health_error: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    struct World {
        scope: MachineScope,
        skills: SkillStates,
        creds: HashSet<String>,
    }

    impl World {
        fn new(machine: Machine, endpoints: Vec<EndpointRow>) -> World {
            World {
                scope: MachineScope::from_endpoints(machine, endpoints, 1_000),
                skills: SkillStates::default(),
                creds: HashSet::new(),
            }
        }

        fn context(&self) -> Context<'_> {
            Context {
                scope: &self.scope,
                delegation: None,
                skills: &self.skills,
                request_credentials: &self.creds,
            }
        }
    }

    fn criteria() -> Criteria<'static> {
        Criteria {
            allow_external_handoff: true,
            limit: 10,
            ..Criteria::default()
        }
    }

    fn ids<'a>(candidates: &[Candidate<'a>]) -> Vec<&'a str> {
        candidates.iter().map(|c| c.service.id.as_str()).collect()
    }

    const COMPUTE: ServiceType = ServiceType::ComputeMarketplace;

    #[test]
    fn filters_type_operation_capabilities_region_and_mode() {
        let world = World::new(machine(&[], &[]), vec![]);
        let mut storage = service("storage");
        storage.service_type = ServiceType::StorageObject;
        let mut other_op = service("other-op");
        other_op.operations = vec!["else".into()];
        let mut gpu = service("gpu");
        gpu.capabilities = vec!["gpu".into(), "cuda".into()];
        let mut eu = service("eu");
        eu.region = "eu-west".into();
        let mut us = service("us");
        us.region = "US-East".into();
        let mut handoff = service("handoff");
        handoff.execution_mode = ExecutionMode::ExternalHandoff;
        let all = [storage, other_op, gpu, eu, us, handoff, service("plain")];

        let ranked = rank(all.iter(), COMPUTE, &criteria(), &world.context());
        assert!(!ids(&ranked).contains(&"storage"), "filter 1");

        let op = Criteria {
            operation: Some("run"),
            ..criteria()
        };
        assert!(
            !ids(&rank(all.iter(), COMPUTE, &op, &world.context())).contains(&"other-op"),
            "filter 2"
        );

        let caps = vec!["gpu".to_string()];
        let needs_gpu = Criteria {
            required_capabilities: &caps,
            ..criteria()
        };
        assert_eq!(
            ids(&rank(all.iter(), COMPUTE, &needs_gpu, &world.context())),
            ["gpu"],
            "filter 3"
        );

        let in_us = Criteria {
            region: Some("us-east"),
            ..criteria()
        };
        let ranked = ids(&rank(all.iter(), COMPUTE, &in_us, &world.context()));
        assert!(
            ranked.contains(&"us") && !ranked.contains(&"eu") && ranked.contains(&"plain"),
            "filter 4: {ranked:?}"
        );

        let native = Criteria {
            require_native_execution: true,
            ..criteria()
        };
        assert!(
            !ids(&rank(all.iter(), COMPUTE, &native, &world.context())).contains(&"handoff"),
            "filter 5"
        );
        let no_handoff = Criteria {
            allow_external_handoff: false,
            ..criteria()
        };
        assert!(
            !ids(&rank(all.iter(), COMPUTE, &no_handoff, &world.context())).contains(&"handoff"),
            "filter 5"
        );
        assert!(
            ids(&rank(all.iter(), COMPUTE, &criteria(), &world.context())).contains(&"handoff")
        );
    }

    #[test]
    fn filters_delegation_budget_and_disabled_skills() {
        let world = World::new(machine(&[], &[]), vec![]);
        let mut cheap = service("cheap");
        cheap.pricing = Pricing {
            mode: PricingMode::Fixed,
            amount: Some(2.0),
            currency: Some("USDC".into()),
            ..Pricing::default()
        };
        let mut dear = service("dear");
        dear.pricing = Pricing {
            mode: PricingMode::Fixed,
            amount: Some(20.0),
            currency: Some("USDC".into()),
            ..Pricing::default()
        };
        let mut euro = service("euro");
        euro.pricing = Pricing {
            mode: PricingMode::Fixed,
            amount: Some(50.0),
            currency: Some("EUR".into()),
            ..Pricing::default()
        };
        let all = [cheap, dear, euro, service("free-form")];

        let budget = Criteria {
            budget_max: Some(5.0),
            budget_currency: Some("usdc"),
            ..criteria()
        };
        let ranked = ids(&rank(all.iter(), COMPUTE, &budget, &world.context()));
        assert_eq!(ranked.len(), 3, "{ranked:?}");
        assert!(!ranked.contains(&"dear"), "filter 8");
        assert!(
            ranked.contains(&"euro"),
            "a currency mismatch skips the comparison"
        );

        let policy: DelegationPolicy = serde_json::from_value::<crate::pairings::policy::DelegationPolicyInput>(
            serde_json::json!({"deniedServiceIds": ["cheap"], "allowedSkillKeys": ["cheap-skill", "dear-skill"]}),
        )
        .unwrap()
        .normalise()
        .unwrap();
        let context = Context {
            delegation: Some(&policy),
            ..world.context()
        };
        assert_eq!(
            ids(&rank(all.iter(), COMPUTE, &criteria(), &context)),
            ["dear"],
            "filter 6"
        );

        let skills: SkillStates = SkillStates::with_disabled(&["dear-skill"]);
        let context = Context {
            skills: &skills,
            ..world.context()
        };
        assert!(
            !ids(&rank(all.iter(), COMPUTE, &criteria(), &context)).contains(&"dear"),
            "filter 9"
        );
    }

    fn factor<'a>(c: &'a Candidate<'_>, name: &str) -> &'a str {
        c.reasons.iter().find(|r| r.starts_with(name)).unwrap()
    }

    #[test]
    fn the_execution_factor() {
        let mut runtime = service("runtime");
        runtime.kind = Kind::Runtime;
        runtime.provider_key = "qvac".into();
        let mut creds = service("creds");
        creds.integration_status = IntegrationStatus::CredentialsRequired;
        let mut partner = service("partner");
        partner.integration_status = IntegrationStatus::PartnerRequired;
        let mut handoff = service("handoff");
        handoff.execution_mode = ExecutionMode::ExternalHandoff;
        let mut docs = service("docs");
        docs.integration_status = IntegrationStatus::DocsOnly;
        // Everything but execution is fixed: capabilities 0.5, region 0.5, skill 0, price 0.5,
        // maturity 1.
        let base = |_: &Service| {
            WEIGHT_CAPABILITIES * 0.5 + WEIGHT_REGION * 0.5 + WEIGHT_PRICE * 0.5 + WEIGHT_MATURITY
        };
        let all = [
            runtime.clone(),
            creds.clone(),
            partner,
            handoff,
            docs,
            service("server"),
        ];

        let active = World::new(
            machine(&[], &[]),
            vec![endpoint("qvac", EndpointStatus::Active, None)],
        );
        let ranked = rank(all.iter(), COMPUTE, &criteria(), &active.context());
        let score = |id: &str| ranked.iter().find(|c| c.service.id == id).unwrap().score;
        assert_eq!(
            score("runtime"),
            round4(base(&runtime) + WEIGHT_EXECUTION * 1.0)
        );
        assert_eq!(
            score("server"),
            round4(base(&runtime) + WEIGHT_EXECUTION * 0.8)
        );
        assert_eq!(
            score("creds"),
            round4(base(&runtime) + WEIGHT_EXECUTION * 0.5)
        );
        assert_eq!(
            score("partner"),
            round4(base(&runtime) + WEIGHT_EXECUTION * 0.5)
        );
        assert_eq!(
            score("handoff"),
            round4(base(&runtime) + WEIGHT_EXECUTION * 0.3)
        );
        assert_eq!(
            score("docs"),
            round4(base(&runtime) + WEIGHT_EXECUTION * 0.3)
        );
        let runtime_candidate = ranked.iter().find(|c| c.service.id == "runtime").unwrap();
        assert_eq!(
            runtime_candidate.integration_status,
            IntegrationStatus::Native
        );
        assert_eq!(ids(&ranked)[0], "runtime", "highest first");

        // The endpoint's lease has passed: effectively unreachable.
        let expired = World::new(
            machine(&[], &[]),
            vec![endpoint("qvac", EndpointStatus::Active, Some(500))],
        );
        let pool = [runtime.clone()];
        let ranked = rank(pool.iter(), COMPUTE, &criteria(), &expired.context());
        assert_eq!(
            ranked[0].score,
            round4(base(&runtime) + WEIGHT_EXECUTION * 0.5)
        );
        assert_eq!(
            ranked[0].integration_status,
            IntegrationStatus::LocalConfigRequired
        );
        let none = World::new(machine(&[], &[]), vec![]);
        let pool = [runtime];
        let ranked = rank(pool.iter(), COMPUTE, &criteria(), &none.context());
        assert_eq!(
            ranked[0].integration_status,
            IntegrationStatus::LocalConfigRequired
        );

        // Credentials found in the request, matched ignoring case, `-` and `_`.
        let mut world = World::new(machine(&[], &[]), vec![]);
        creds.provider_key = "world-id".into();
        let pool = [creds.clone()];
        let ranked = rank(pool.iter(), COMPUTE, &criteria(), &world.context());
        assert!(!ranked[0].credentials_available);
        assert!(factor(&ranked[0], "execution").contains("not found"));
        world.creds.insert(credential_key("worldId"));
        let pool = [creds];
        let ranked = rank(pool.iter(), COMPUTE, &criteria(), &world.context());
        assert!(ranked[0].credentials_available);
        assert!(factor(&ranked[0], "execution").contains("(credentials found)"));
    }

    #[test]
    fn the_capability_region_skill_price_and_maturity_factors() {
        let world = World::new(machine(&["gpu", "lidar"], &["known-skill"]), vec![]);
        let mut caps = service("caps");
        caps.capabilities = vec!["gpu".into(), "cuda".into(), "lidar".into(), "x".into()];
        let pool = [caps.clone()];
        let ranked = rank(pool.iter(), COMPUTE, &criteria(), &world.context());
        assert_eq!(
            factor(&ranked[0], "capabilities"),
            "capabilities: 2 of 4 shared with the machine"
        );
        let required = vec!["cuda".to_string()];
        let pool = [caps];
        let ranked = rank(
            pool.iter(),
            COMPUTE,
            &Criteria {
                required_capabilities: &required,
                ..criteria()
            },
            &world.context(),
        );
        assert!(factor(&ranked[0], "capabilities").contains("every required"));

        let mut eu = service("eu");
        eu.region = "EU".into();
        let pool = [eu.clone()];
        let exact = rank(
            pool.iter(),
            COMPUTE,
            &Criteria {
                region: Some("eu"),
                ..criteria()
            },
            &world.context(),
        );
        let pool = [service("g")];
        let global = rank(
            pool.iter(),
            COMPUTE,
            &Criteria {
                region: Some("eu"),
                ..criteria()
            },
            &world.context(),
        );
        assert!(exact[0].score - global[0].score - WEIGHT_REGION * 0.5 < 1e-9);

        let mut known = service("known");
        known.skill_key = "known-skill".into();
        let preferred_keys = vec!["pref-skill".to_string()];
        let mut preferred = service("pref");
        preferred.skill_key = "pref-skill".into();
        let pool = [known, preferred, service("unknown")];
        let ranked = rank(
            pool.iter(),
            COMPUTE,
            &Criteria {
                preferred_skill_keys: &preferred_keys,
                ..criteria()
            },
            &world.context(),
        );
        let skill_of = |id: &str| {
            factor(ranked.iter().find(|c| c.service.id == id).unwrap(), "skill").to_string()
        };
        assert!(skill_of("known").contains("machine's skills"));
        assert!(skill_of("pref").contains("preferred"));
        assert!(skill_of("unknown").contains("not one"));

        let mut free = service("free");
        free.pricing = Pricing {
            mode: PricingMode::Fixed,
            amount: Some(0.0),
            ..Pricing::default()
        };
        let mut fixed = service("fixed");
        fixed.pricing = Pricing {
            mode: PricingMode::Fixed,
            amount: Some(3.0),
            ..Pricing::default()
        };
        let pool = [free.clone(), fixed.clone()];
        let ranked = rank(pool.iter(), COMPUTE, &criteria(), &world.context());
        assert_eq!(factor(&ranked[0], "price"), "price: free");
        assert_eq!(factor(&ranked[1], "price"), "price: no budget given");
        let pool = [fixed];
        let ranked = rank(
            pool.iter(),
            COMPUTE,
            &Criteria {
                budget_max: Some(3.0),
                ..criteria()
            },
            &world.context(),
        );
        assert!(factor(&ranked[0], "price").contains("within"));

        let mut beta = service("beta");
        beta.maturity = Maturity::Beta;
        let mut reference = service("reference");
        reference.maturity = Maturity::Reference;
        let pool = [beta, reference, service("prod")];
        let ranked = rank(pool.iter(), COMPUTE, &criteria(), &world.context());
        assert_eq!(ids(&ranked), ["prod", "beta", "reference"]);
        let gap = ranked[0].score - ranked[1].score;
        assert!((gap - WEIGHT_MATURITY * 0.4).abs() < 1e-9, "{gap}");
    }

    #[test]
    fn ties_break_by_id_and_the_limit_applies() {
        let world = World::new(machine(&[], &[]), vec![]);
        let all = [service("c"), service("a"), service("b")];
        let ranked = rank(all.iter(), COMPUTE, &criteria(), &world.context());
        assert_eq!(ids(&ranked), ["a", "b", "c"]);
        let ranked = rank(
            all.iter(),
            COMPUTE,
            &Criteria {
                limit: 2,
                ..criteria()
            },
            &world.context(),
        );
        assert_eq!(ids(&ranked), ["a", "b"]);
        assert_eq!(ranked[0].reasons.len(), 6, "one reason per factor");
        assert!(ranked[0].score >= 0.0 && ranked[0].score <= 1.0);
        let _unused = (
            AccessMode::Public,
            AuthType::None,
            Distribution::Openapi,
            PaymentRecommendation::default(),
        );
    }
}
