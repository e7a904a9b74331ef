//! Policies (spec orchestration.md §4): CRUD and validation, machines' `policyIds`, the
//! `policy.*` audit events (§5.3), and enforcement: every rule changes what task discovery,
//! market search and the machine-scoped services list return (§4.3; catalogue-and-search.md §3,
//! §9.1 filter 7), on every backend.

mod common;

use common::market::{
    CatalogDir, Market, all_items, catalog_file, manifest, merged, service, skill,
};
use common::{TestServer, backends, expect_error, expect_json, rand_u64};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

const DISABLED: (&str, &str) = ("PEAQOS_MACHINE_IDENTITY_VERIFICATION", "disabled");
const POLICIES: &str = "/api/v1/policies";

async fn create(srv: &TestServer, body: Value) -> Value {
    expect_json(srv.post_json(POLICIES, &body).await, StatusCode::CREATED).await["item"].clone()
}

async fn patch(srv: &TestServer, id: &str, body: Value) -> Response {
    srv.patch_json(&format!("{POLICIES}/{id}"), &body).await
}

async fn events(srv: &TestServer, query: &str) -> Vec<Value> {
    all_items(srv, &format!("/api/v1/audit-events?{query}")).await
}

fn machine_body(policy_ids: Value) -> Value {
    json!({"displayName": "m", "ownerId": "o", "machineType": "t", "runtimeProfile": "r",
           "identityRef": format!("did:peaq:{}", rand_u64()), "policyIds": policy_ids})
}

#[tokio::test]
async fn policies_are_created_read_and_listed() {
    for backend in backends() {
        let srv = TestServer::start(&backend, &[DISABLED]).await;
        let bare = create(&srv, json!({"name": "default"})).await;
        assert!(bare["id"].as_str().unwrap().starts_with("pol_"), "{bare}");
        assert_eq!(bare["name"], "default");
        assert_eq!(bare["allowedSkillKeys"], json!([]));
        assert_eq!(bare["deniedSkillKeys"], json!([]));
        assert!(bare["budgetCap"].is_null(), "{bare}");
        assert_eq!(bare["regionRules"], json!([]));
        assert_eq!(bare["nativeOnly"], false);
        assert_eq!(bare["handoffAllowed"], true);
        assert_eq!(bare["requiredCapabilities"], json!([]));
        assert!(bare["createdAt"].is_string() && bare["updatedAt"].is_string());

        let full = create(
            &srv,
            json!({"name": "strict", "allowedSkillKeys": ["a", "b"], "deniedSkillKeys": ["c"],
                   "budgetCap": {"currency": "USDC", "amount": 12.5}, "regionRules": ["eu", "us"],
                   "nativeOnly": true, "handoffAllowed": false, "requiredCapabilities": ["gpu"]}),
        )
        .await;
        assert_eq!(full["allowedSkillKeys"], json!(["a", "b"]));
        assert_eq!(full["deniedSkillKeys"], json!(["c"]));
        assert_eq!(
            full["budgetCap"],
            json!({"currency": "USDC", "amount": 12.5})
        );
        assert_eq!(full["regionRules"], json!(["eu", "us"]));
        assert_eq!(full["nativeOnly"], true);
        assert_eq!(full["handoffAllowed"], false);
        assert_eq!(full["requiredCapabilities"], json!(["gpu"]));
        // Names are not unique; null is the same as absent.
        let twin = create(
            &srv,
            json!({"name": "default", "budgetCap": null, "regionRules": null}),
        )
        .await;
        assert!(twin["budgetCap"].is_null() && twin["regionRules"] == json!([]));

        let id = full["id"].as_str().unwrap();
        let read = expect_json(srv.get(&format!("{POLICIES}/{id}")).await, StatusCode::OK).await;
        assert_eq!(read["item"], full);
        let listed = all_items(&srv, POLICIES).await;
        assert_eq!(
            listed,
            [bare.clone(), full.clone(), twin.clone()],
            "oldest first"
        );
        let page = expect_json(
            srv.get(&format!("{POLICIES}?limit=2")).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(page["items"].as_array().unwrap().len(), 2);
        let cursor = page["nextCursor"].as_str().unwrap();
        let rest = expect_json(
            srv.get(&format!("{POLICIES}?limit=2&cursor={cursor}"))
                .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(rest["items"], json!([twin]));
        expect_error(
            srv.get(&format!("{POLICIES}?limit=0")).await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        expect_error(
            srv.get(&format!("{POLICIES}/pol_nope")).await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;

        let created = events(&srv, &format!("type=policy.created&resourceId={id}")).await;
        assert_eq!(created.len(), 1);
        assert_eq!(created[0]["resourceType"], "policy");
        assert_eq!(created[0]["actor"], "api");
        assert_eq!(created[0]["payload"], json!({"name": "strict"}));
        assert!(created[0]["machineId"].is_null(), "{}", created[0]);
        assert_eq!(
            events(&srv, "type=policy.created&resourceType=policy")
                .await
                .len(),
            3
        );
        srv.stop().await;
    }
}

#[tokio::test]
async fn policy_requests_are_validated() {
    for backend in backends() {
        let srv = TestServer::start(&backend, &[DISABLED]).await;
        for (body, field) in [
            (json!({}), "name"),
            (json!({"name": ""}), "name"),
            (json!({"name": "   "}), "name"),
            (json!({"name": 7}), "name"),
            (
                json!({"name": "p", "budgetCap": {"amount": 1}}),
                "budgetCap.currency",
            ),
            (
                json!({"name": "p", "budgetCap": {"currency": "USDC"}}),
                "budgetCap.amount",
            ),
            (
                json!({"name": "p", "budgetCap": {"currency": "USDC", "amount": -1}}),
                "budgetCap.amount",
            ),
            (
                json!({"name": "p", "budgetCap": {"currency": " ", "amount": 1}}),
                "budgetCap.currency",
            ),
        ] {
            let err = expect_error(
                srv.post_json(POLICIES, &body).await,
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
            )
            .await;
            assert_eq!(err["details"]["field"], field, "{body}: {err}");
        }
        for (body, field) in [
            (
                json!({"name": "p", "allowedSkillKeys": ["ok", ""]}),
                "allowedSkillKeys",
            ),
            (
                json!({"name": "p", "deniedSkillKeys": [" "]}),
                "deniedSkillKeys",
            ),
            (json!({"name": "p", "regionRules": [""]}), "regionRules"),
            (
                json!({"name": "p", "requiredCapabilities": ["  "]}),
                "requiredCapabilities",
            ),
            (
                json!({"name": "p", "allowedSkillKeys": "a"}),
                "allowedSkillKeys",
            ),
            (json!({"name": "p", "nativeOnly": "yes"}), "nativeOnly"),
            (json!({"name": "p", "handoffAllowed": 1}), "handoffAllowed"),
            (json!({"name": "p", "budgetCap": 5}), "budgetCap"),
            (
                json!({"name": "p", "budgetCap": {"currency": "USDC", "amount": "5"}}),
                "budgetCap.amount",
            ),
        ] {
            let err = expect_error(
                srv.post_json(POLICIES, &body).await,
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
            )
            .await;
            let named = err["details"]["field"].as_str().unwrap_or_default();
            assert!(named.starts_with(field), "{body}: {err}");
        }
        assert!(
            all_items(&srv, POLICIES).await.is_empty(),
            "nothing written"
        );
        assert!(events(&srv, "type=policy.created").await.is_empty());
        srv.stop().await;
    }
}

/// §4.2: `budgetCap` needs both fields; only a PATCH may send `{}` (to clear the cap).
#[tokio::test]
async fn an_empty_budget_cap_is_refused_on_create() {
    for backend in backends() {
        let srv = TestServer::start(&backend, &[DISABLED]).await;
        let err = expect_error(
            srv.post_json(POLICIES, &json!({"name": "p", "budgetCap": {}}))
                .await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert!(
            err["details"]["field"]
                .as_str()
                .unwrap()
                .starts_with("budgetCap"),
            "{err}"
        );
        srv.stop().await;
    }
}

#[tokio::test]
async fn policies_are_patched() {
    for backend in backends() {
        let srv = TestServer::start(&backend, &[DISABLED]).await;
        let policy = create(
            &srv,
            json!({"name": "p", "allowedSkillKeys": ["a", "b"], "regionRules": ["eu"],
                   "budgetCap": {"currency": "USDC", "amount": 10}}),
        )
        .await;
        let id = policy["id"].as_str().unwrap();
        srv.clock.advance_ms(10);

        // Lists replace the stored value as a whole; omitted fields stay.
        let patched = expect_json(
            patch(
                &srv,
                id,
                json!({"allowedSkillKeys": ["c"], "nativeOnly": true, "handoffAllowed": false,
                       "requiredCapabilities": ["gpu", "gps"], "budgetCap": {"currency": "EUR", "amount": 3}}),
            )
            .await,
            StatusCode::OK,
        )
        .await["item"]
            .clone();
        assert_eq!(patched["allowedSkillKeys"], json!(["c"]));
        assert_eq!(patched["regionRules"], json!(["eu"]));
        assert_eq!(patched["name"], "p");
        assert_eq!(patched["nativeOnly"], true);
        assert_eq!(patched["handoffAllowed"], false);
        assert_eq!(patched["requiredCapabilities"], json!(["gpu", "gps"]));
        assert_eq!(
            patched["budgetCap"],
            json!({"currency": "EUR", "amount": 3.0})
        );
        assert_eq!(patched["createdAt"], policy["createdAt"]);
        assert_ne!(patched["updatedAt"], policy["updatedAt"]);

        // null means unchanged; {} clears the cap; [] empties a list.
        let cleared = expect_json(
            patch(
                &srv,
                id,
                json!({"budgetCap": {}, "regionRules": [], "name": null, "nativeOnly": null}),
            )
            .await,
            StatusCode::OK,
        )
        .await["item"]
            .clone();
        assert!(cleared["budgetCap"].is_null(), "{cleared}");
        assert_eq!(cleared["regionRules"], json!([]));
        assert_eq!(cleared["name"], "p");
        assert_eq!(cleared["nativeOnly"], true);
        let stored = expect_json(srv.get(&format!("{POLICIES}/{id}")).await, StatusCode::OK).await;
        assert_eq!(stored["item"], cleared);

        // Refused patches change nothing.
        for (body, field) in [
            (json!({"name": ""}), "name"),
            (json!({"budgetCap": {"amount": 2}}), "budgetCap.currency"),
            (
                json!({"budgetCap": {"currency": "USDC"}}),
                "budgetCap.amount",
            ),
            (
                json!({"budgetCap": {"currency": "USDC", "amount": -0.5}}),
                "budgetCap.amount",
            ),
        ] {
            let err = expect_error(
                patch(&srv, id, body.clone()).await,
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
            )
            .await;
            assert_eq!(err["details"]["field"], field, "{body}: {err}");
        }
        expect_error(
            patch(&srv, id, json!({"deniedSkillKeys": [""], "name": "q"})).await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        let stored = expect_json(srv.get(&format!("{POLICIES}/{id}")).await, StatusCode::OK).await;
        assert_eq!(stored["item"], cleared);
        expect_error(
            patch(&srv, "pol_nope", json!({"name": "x"})).await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;

        // A patch that changes nothing writes no event.
        let unchanged = expect_json(
            patch(&srv, id, json!({"name": "p", "allowedSkillKeys": ["c"]})).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(unchanged["item"], cleared);

        let updated = events(&srv, &format!("type=policy.updated&resourceId={id}")).await;
        assert_eq!(updated.len(), 2, "{updated:?}");
        assert_eq!(updated[0]["resourceType"], "policy");
        assert_eq!(
            updated[0]["payload"],
            json!({"changedFields": ["budgetCap", "regionRules"]})
        );
        let mut fields: Vec<&str> = updated[1]["payload"]["changedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            [
                "allowedSkillKeys",
                "budgetCap",
                "handoffAllowed",
                "nativeOnly",
                "requiredCapabilities"
            ]
        );
        srv.stop().await;
    }
}

/// `policyIds` of machine writes must name existing policies.
#[tokio::test]
async fn machines_reference_existing_policies() {
    for backend in backends() {
        let srv = TestServer::start(&backend, &[DISABLED]).await;
        let policy = create(&srv, json!({"name": "p"})).await;
        let id = policy["id"].as_str().unwrap();
        let err = expect_error(
            srv.post_json("/api/v1/machines", &machine_body(json!([id, "pol_nope"])))
                .await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(err["details"]["field"], "policyIds[1]", "{err}");
        assert_eq!(err["details"]["reason"], "policy-not-found", "{err}");
        assert!(
            all_items(&srv, "/api/v1/machines").await.is_empty(),
            "nothing written"
        );

        let machine = expect_json(
            srv.post_json("/api/v1/machines", &machine_body(json!([id])))
                .await,
            StatusCode::CREATED,
        )
        .await["item"]
            .clone();
        assert_eq!(machine["policyIds"], json!([id]));
        let machine_id = machine["id"].as_str().unwrap();
        let path = format!("/api/v1/machines/{machine_id}");
        let err = expect_error(
            srv.patch_json(&path, &json!({"policyIds": ["pol_nope"]}))
                .await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(err["details"]["field"], "policyIds[0]", "{err}");
        assert_eq!(err["details"]["reason"], "policy-not-found", "{err}");
        let read = expect_json(srv.get(&path).await, StatusCode::OK).await;
        assert_eq!(read["item"]["policyIds"], json!([id]));
        let emptied = expect_json(
            srv.patch_json(&path, &json!({"policyIds": []})).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(emptied["item"]["policyIds"], json!([]));
        srv.stop().await;
    }
}

/// Three `device.control` services (no built-in service has this type):
/// - `p:alpha`: native, region `eu`, capability `gpu`, fixed 5 USDC;
/// - `p:beta`: native, region `us`, capability `cpu`, fixed 50 USDC;
/// - `p:handoff`: external handoff, region `global`, provider-defined price.
fn policy_catalog() -> CatalogDir {
    let svc = |id: &str, skill_key: &str, provider: &str, changes: Value| {
        merged(service(id, skill_key, provider, "device.control"), changes)
    };
    let skills = [
        ("pol-alpha", "polalpha"),
        ("pol-beta", "polbeta"),
        ("pol-handoff", "polhandoff"),
    ];
    let services = vec![
        svc(
            "p:alpha",
            "pol-alpha",
            "polalpha",
            json!({"region": "eu", "capabilities": ["gpu"],
                   "pricing": {"mode": "fixed", "amount": 5, "currency": "USDC"}}),
        ),
        svc(
            "p:beta",
            "pol-beta",
            "polbeta",
            json!({"region": "us", "capabilities": ["cpu"],
                   "pricing": {"mode": "fixed", "amount": 50, "currency": "USDC"}}),
        ),
        svc(
            "p:handoff",
            "pol-handoff",
            "polhandoff",
            json!({"executionMode": "external-handoff", "integrationStatus": "partner-required",
                   "endpoints": [], "pricing": {"mode": "provider-defined"},
                   "handoff": {"label": "Go", "url": "https://partner.example"}}),
        ),
    ];
    CatalogDir::with(&[(
        "policies.json",
        catalog_file(
            skills
                .iter()
                .map(|(k, p)| merged(skill(k, p), json!({"serviceTypes": ["device.control"]})))
                .collect(),
            skills.iter().map(|(k, p)| manifest(k, p)).collect(),
            services,
        ),
    )])
}

/// The sorted service ids each view returns for the market's machine:
/// `[task discovery, market search, GET /market/services?machineId=]`.
async fn views(m: &Market) -> [Vec<String>; 3] {
    let srv = &m.srv;
    let task = expect_json(
        srv.post_json(
            &format!("/api/v1/machines/{}/tasks", m.machine_id),
            &json!({"serviceType": "device.control", "taskType": "policy-check",
                    "discovery": {"maxCandidates": 25}}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await["item"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let discovered = expect_json(
        srv.post_json(
            &format!("/api/v1/machines/{}/tasks/{task}/discover", m.machine_id),
            &json!({}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let mut discovery: Vec<String> = discovered["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["service"]["id"].as_str().unwrap().to_string())
        .collect();
    let search = m
        .searched(&json!({"serviceType": "device.control", "maxResults": 25}))
        .await;
    let mut quoted: Vec<String> = search["quotes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["serviceId"].as_str().unwrap().to_string())
        .collect();
    let mut listed: Vec<String> = all_items(
        srv,
        &format!(
            "/api/v1/market/services?machineId={}&serviceType=device.control",
            m.machine_id
        ),
    )
    .await
    .iter()
    .map(|s| s["id"].as_str().unwrap().to_string())
    .collect();
    for ids in [&mut discovery, &mut quoted, &mut listed] {
        ids.sort();
    }
    [discovery, quoted, listed]
}

async fn use_policies(m: &Market, policy_ids: &[&str]) {
    expect_json(
        m.srv
            .patch_json(
                &format!("/api/v1/machines/{}", m.machine_id),
                &json!({ "policyIds": policy_ids }),
            )
            .await,
        StatusCode::OK,
    )
    .await;
}

fn assert_views(views: &[Vec<String>; 3], expected: &[&str], rule: &Value) {
    for (view, ids) in ["discovery", "search", "services list"].iter().zip(views) {
        assert_eq!(ids, expected, "{view} under {rule}");
    }
}

#[tokio::test]
async fn each_policy_rule_filters_discovery_search_and_listings() {
    for backend in backends() {
        let m = Market::start(&backend, Some(policy_catalog()), &[]).await;
        let all = ["p:alpha", "p:beta", "p:handoff"];
        assert_views(&views(&m).await, &all, &json!("no policy"));
        // Without a machine, the list is the catalogue's.
        let unscoped =
            all_items(&m.srv, "/api/v1/market/services?serviceType=device.control").await;
        assert_eq!(unscoped.len(), 3);

        for (rules, expected) in [
            (
                json!({"deniedSkillKeys": ["pol-alpha"]}),
                vec!["p:beta", "p:handoff"],
            ),
            (json!({"allowedSkillKeys": ["pol-beta"]}), vec!["p:beta"]),
            (
                json!({"allowedSkillKeys": ["pol-alpha", "pol-beta"], "deniedSkillKeys": ["pol-beta"]}),
                vec!["p:alpha"],
            ),
            (json!({"nativeOnly": true}), vec!["p:alpha", "p:beta"]),
            (json!({"handoffAllowed": false}), vec!["p:alpha", "p:beta"]),
            (json!({"regionRules": ["EU"]}), vec!["p:alpha", "p:handoff"]),
            (json!({"regionRules": ["apac"]}), vec!["p:handoff"]),
            (json!({"requiredCapabilities": ["gpu"]}), vec!["p:alpha"]),
            (json!({"requiredCapabilities": ["gpu", "cpu"]}), vec![]),
            (
                json!({"budgetCap": {"currency": "USDC", "amount": 10}}),
                vec!["p:alpha", "p:handoff"],
            ),
            (
                json!({"budgetCap": {"currency": "usdc", "amount": 50}}),
                all.to_vec(),
            ),
            (
                json!({"budgetCap": {"currency": "EUR", "amount": 100}}),
                vec!["p:handoff"],
            ),
        ] {
            let mut body = rules.clone();
            body["name"] = json!(format!("rule {rules}"));
            let policy = create(&m.srv, body).await;
            use_policies(&m, &[policy["id"].as_str().unwrap()]).await;
            assert_views(&views(&m).await, &expected, &rules);
        }

        // Every policy of the machine applies.
        let deny_alpha = create(
            &m.srv,
            json!({"name": "a", "deniedSkillKeys": ["pol-alpha"]}),
        )
        .await;
        let native = create(&m.srv, json!({"name": "b", "nativeOnly": true})).await;
        let ids = [
            deny_alpha["id"].as_str().unwrap(),
            native["id"].as_str().unwrap(),
        ];
        use_policies(&m, &ids).await;
        assert_views(&views(&m).await, &["p:beta"], &json!("two policies"));

        // No policy again: everything is back.
        use_policies(&m, &[]).await;
        assert_views(&views(&m).await, &all, &json!("no policy"));
        m.stop().await;
    }
}

/// §4.7: a policy change takes effect on the next search and discovery.
#[tokio::test]
async fn a_policy_patch_takes_effect_on_the_next_search_and_discovery() {
    for backend in backends() {
        let m = Market::start(&backend, Some(policy_catalog()), &[]).await;
        let policy = create(&m.srv, json!({"name": "regions", "regionRules": ["eu"]})).await;
        let id = policy["id"].as_str().unwrap();
        use_policies(&m, &[id]).await;
        assert_views(
            &views(&m).await,
            &["p:alpha", "p:handoff"],
            &json!("regionRules [eu]"),
        );
        expect_json(
            patch(
                &m.srv,
                id,
                json!({"regionRules": ["us"], "handoffAllowed": false}),
            )
            .await,
            StatusCode::OK,
        )
        .await;
        assert_views(
            &views(&m).await,
            &["p:beta"],
            &json!("regionRules [us], no handoff"),
        );
        expect_json(
            patch(
                &m.srv,
                id,
                json!({"regionRules": [], "handoffAllowed": true}),
            )
            .await,
            StatusCode::OK,
        )
        .await;
        assert_views(
            &views(&m).await,
            &["p:alpha", "p:beta", "p:handoff"],
            &json!("no rule left"),
        );
        m.stop().await;
    }
}
