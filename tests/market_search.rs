//! Market search and quotes (spec catalogue-and-search.md §8–§9): agent auth, Gate C and the
//! pairing checks, validation, ranking as the quotes show it, stored searches, and secrets kept
//! out of every response, audit payload and database, on every backend.

mod common;

use common::fake_mcr::{Behaviour, FakeMcr};
use common::market::{
    CatalogDir, Market, SEARCH, TOKEN_HEADER, all_items, enroll, field_of, heartbeat, merged, ms,
    pair, service, skill, skill_file, start_server,
};
use common::wallet::Wallet;
use common::{Backend, TestServer, backends, expect_error, expect_json, json_of, rand_u64};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Ranked `device.control` services (expected order: rank-2-prod and rank-3-prod tie at
/// 0.605, then rank-1-ref at 0.535, then rank-0-handoff at 0.39); a credentials-required
/// service of provider `acme-id` and a priced two-operation service, both
/// `network.partner-console`.
fn fixtures() -> CatalogDir {
    let rank = |id: &str, skill_key: &str, changes: Value| {
        merged(
            service(id, skill_key, "rank-prov", "device.control"),
            changes,
        )
    };
    let ranked = json!({
        "skills": [skill("rank-skill-a", "rank-prov"), skill("rank-skill-b", "rank-prov")],
        "manifests": [common::market::manifest("rank-skill-a", "rank-prov"),
                      common::market::manifest("rank-skill-b", "rank-prov")],
        "services": [
            rank("rank-0-handoff", "rank-skill-a", json!({
                "executionMode": "external-handoff", "integrationStatus": "docs-only", "maturity": "beta",
                "handoff": {"label": "Continue elsewhere", "url": "http://127.0.0.1:9/handoff", "notes": ["n"]}})),
            rank("rank-1-ref", "rank-skill-b", json!({"maturity": "reference"})),
            rank("rank-2-prod", "rank-skill-a", json!({
                "payment": {"defaultRail": "wallet", "supportedRails": ["wallet"], "required": true,
                            "chain": "eip155:8453", "token": "USDC", "tokenDecimals": 6}})),
            rank("rank-3-prod", "rank-skill-a", json!({})),
        ],
    });
    let acme = skill_file(
        "cred-skill",
        "acme-id",
        vec![merged(
            service(
                "acme:verify",
                "cred-skill",
                "acme-id",
                "network.partner-console",
            ),
            json!({"operations": ["verify"], "integrationStatus": "credentials-required",
                   "authType": "api-key", "accessMode": "credentialed"}),
        )],
    );
    let ops = skill_file(
        "ops-skill",
        "ops-prov",
        vec![merged(
            service(
                "ops:two",
                "ops-skill",
                "ops-prov",
                "network.partner-console",
            ),
            json!({"operations": ["first-op", "second-op"],
                   "pricing": {"mode": "fixed", "amount": 3, "currency": "USDC", "rate": "per_request", "notes": []}}),
        )],
    );
    let mut acme_skill = acme;
    acme_skill["skills"][0]["authType"] = json!("api-key");
    CatalogDir::with(&[
        ("ranked.json", ranked),
        ("acme.json", acme_skill),
        ("ops.json", ops),
    ])
}

const RANKED: [&str; 4] = ["rank-2-prod", "rank-3-prod", "rank-1-ref", "rank-0-handoff"];

fn quote_ids(search: &Value) -> Vec<&str> {
    field_of(search["quotes"].as_array().unwrap(), "serviceId")
}

fn quote<'a>(search: &'a Value, service_id: &str) -> &'a Value {
    search["quotes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["serviceId"] == service_id)
        .unwrap_or_else(|| panic!("no quote for {service_id}: {search}"))
}

async fn search_events(srv: &TestServer, search_id: &str) -> Vec<Value> {
    all_items(
        srv,
        &format!("/api/v1/audit-events?type=market.search.created&resourceId={search_id}"),
    )
    .await
}

#[tokio::test]
async fn a_search_quotes_ranked_services_and_is_stored_as_answered() {
    for backend in backends() {
        let m = Market::start(
            &backend,
            Some(fixtures()),
            &[
                ("PEAQOS_MARKET_QUOTE_TTL_MS", "1500"),
                ("PEAQOS_AGENT_PAIRING_SESSION_TTL_MS", "2592000000"),
            ],
        )
        .await;
        // Timestamps follow the server's clock, not the wall clock.
        m.srv.clock.advance_ms(86_400_000);
        let body =
            json!({"serviceType": "device.control", "maxResults": 10, "unknownField": "kept"});
        let before = m.srv.clock.now_ms();
        let search = m.searched(&body).await;
        let after = m.srv.clock.now_ms();

        assert!(search["id"].as_str().unwrap().starts_with("srch_"));
        assert_eq!(search["machineId"], m.machine_id);
        assert_eq!(search["agentPairingId"], m.pairing_id);
        assert_eq!(search["status"], "completed");
        assert_eq!(search["requestPayload"], body, "the body as received");
        assert_eq!(
            search["normalizedTask"],
            json!({"serviceType": "device.control", "operation": null, "requiredCapabilities": [],
                   "region": null, "allowExternalHandoff": true, "requireNativeExecution": false,
                   "maxResults": 10, "budget": null})
        );
        let created = ms(&search["createdAt"]);
        assert!(before <= created && created <= after, "{search}");

        // Score descending, then id ascending.
        assert_eq!(quote_ids(&search), RANKED);
        let scores: Vec<f64> = search["quotes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["score"].as_f64().unwrap())
            .collect();
        for (score, expected) in scores.iter().zip([0.605, 0.605, 0.535, 0.39]) {
            assert!((score - expected).abs() < 1e-9, "{scores:?}");
        }
        for q in search["quotes"].as_array().unwrap() {
            let id = q["serviceId"].as_str().unwrap();
            assert!(q["id"].as_str().unwrap().starts_with("quo_"));
            assert_eq!(q["searchId"], search["id"]);
            assert_eq!(q["providerKey"], "rank-prov");
            assert_eq!(q["operation"], "run", "the service's first operation");
            assert_eq!(ms(&q["expiresAt"]), created + 1500, "createdAt + TTL");
            let reasons: Vec<&str> = q["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap())
                .collect();
            assert_eq!(reasons.len(), 6, "{reasons:?}");
            for (reason, factor) in reasons.iter().zip([
                "execution: ",
                "capabilities: ",
                "region: ",
                "skill: ",
                "price: ",
                "maturity: ",
            ]) {
                assert!(reason.starts_with(factor), "{reasons:?}");
            }
            let catalogued = expect_json(
                m.srv
                    .get(&format!(
                        "/api/v1/market/services/{id}?machineId={}",
                        m.machine_id
                    ))
                    .await,
                StatusCode::OK,
            )
            .await["item"]
                .clone();
            assert_eq!(q["skillKey"], catalogued["skillKey"]);
            assert_eq!(q["executionMode"], catalogued["executionMode"]);
            assert_eq!(q["integrationStatus"], catalogued["integrationStatus"]);
            assert_eq!(q["pricing"], catalogued["pricing"]);
            assert_eq!(q["payment"], catalogued["payment"]);
            assert_eq!(q["handoff"], catalogued["handoff"]);
        }
        assert_eq!(
            quote(&search, "rank-2-prod")["payment"]["defaultRail"],
            "wallet"
        );
        assert_eq!(
            quote(&search, "rank-0-handoff")["handoff"]["label"],
            "Continue elsewhere"
        );
        assert!(quote(&search, "rank-2-prod")["handoff"].is_null());

        // Stored exactly as answered, also once the quotes have expired.
        let id = search["id"].as_str().unwrap();
        m.srv.clock.advance_ms(60_000);
        let stored = expect_json(
            m.srv.get(&format!("/api/v1/market/searches/{id}")).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(stored["item"], search);
        let error = expect_error(
            m.srv.get("/api/v1/market/searches/srch_nope").await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;
        assert_eq!(error["details"]["resource"], "market-search");

        let events = search_events(&m.srv, id).await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["resourceType"], "market-search");
        assert_eq!(events[0]["machineId"], m.machine_id);
        assert_eq!(
            events[0]["payload"],
            json!({"machineId": m.machine_id, "agentPairingId": m.pairing_id,
                   "serviceType": "device.control", "status": "completed", "quoteCount": 4})
        );

        // A later search: a later createdAt, the same TTL.
        m.srv.clock.advance_ms(3_600_000);
        let later = m.searched(&json!({"serviceType": "device.control"})).await;
        let later_created = ms(&later["createdAt"]);
        assert!(later_created >= created + 3_660_000);
        assert_eq!(ms(&later["quotes"][0]["expiresAt"]), later_created + 1500);
        m.stop().await;
    }
}

#[tokio::test]
async fn quotes_name_the_operation_and_no_match_stores_no_quotes() {
    for backend in backends() {
        let m = Market::start(&backend, Some(fixtures()), &[]).await;
        let search = m
            .searched(&json!({"serviceType": "network.partner-console"}))
            .await;
        assert_eq!(quote_ids(&search).len(), 2, "{search}");
        assert_eq!(quote(&search, "ops:two")["operation"], "first-op");
        assert_eq!(quote(&search, "acme:verify")["operation"], "verify");
        assert_eq!(quote(&search, "ops:two")["pricing"]["amount"], 3.0);

        let second = m
            .searched(&json!({"serviceType": "network.partner-console", "operation": "second-op"}))
            .await;
        assert_eq!(quote_ids(&second), ["ops:two"]);
        assert_eq!(second["quotes"][0]["operation"], "second-op");
        assert_eq!(second["normalizedTask"]["operation"], "second-op");

        for body in [
            json!({"serviceType": "network.partner-console", "operation": "missing-op"}),
            json!({"serviceType": "device.control", "requiredCapabilities": ["teleportation"]}),
            json!({"serviceType": "network.partner-console", "budget": {"max": 1, "currency": "USDC"},
                   "operation": "first-op"}),
        ] {
            let none = m.searched(&body).await;
            assert_eq!(none["status"], "no_match", "{body}");
            assert_eq!(none["quotes"], json!([]));
            let id = none["id"].as_str().unwrap();
            let stored = expect_json(
                m.srv.get(&format!("/api/v1/market/searches/{id}")).await,
                StatusCode::OK,
            )
            .await;
            assert_eq!(stored["item"], none);
            let events = search_events(&m.srv, id).await;
            assert_eq!(events[0]["payload"]["status"], "no_match");
            assert_eq!(events[0]["payload"]["quoteCount"], 0);
        }
        // The budget compares only in the same currency.
        let other_currency = m
            .searched(&json!({"serviceType": "network.partner-console", "budget": {"max": 1, "currency": "EUR"},
                              "operation": "first-op"}))
            .await;
        assert_eq!(quote_ids(&other_currency), ["ops:two"]);
        m.stop().await;
    }
}

#[tokio::test]
async fn aliases_execution_filters_and_the_idempotency_key() {
    for backend in backends() {
        let m = Market::start(&backend, Some(fixtures()), &[]).await;
        let search = m.searched(&json!({"serviceType": "compute"})).await;
        assert_eq!(
            search["normalizedTask"]["serviceType"],
            "compute.marketplace"
        );
        assert_eq!(search["requestPayload"]["serviceType"], "compute");
        assert!(quote_ids(&search).contains(&"qvac-private-inference"));

        for body in [
            json!({"serviceType": "device.control", "requireNativeExecution": true}),
            json!({"serviceType": "device.control", "allowExternalHandoff": false}),
        ] {
            let native = m.searched(&body).await;
            assert_eq!(quote_ids(&native), RANKED[..3], "{body}");
        }

        // A replay answers the stored search and writes nothing.
        let send = || {
            m.agent(Method::POST, SEARCH)
                .header("idempotency-key", "search-once")
                .json(&json!({"serviceType": "device.control"}))
                .send()
        };
        let first = send().await.unwrap();
        assert_eq!(first.status(), StatusCode::CREATED);
        assert!(first.headers().get("idempotent-replayed").is_none());
        let first = json_of(first).await;
        let before = common::market::audit(&m.srv, "market.search.created")
            .await
            .len();
        let again = send().await.unwrap();
        assert_eq!(again.status(), StatusCode::CREATED);
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        assert_eq!(json_of(again).await, first);
        assert_eq!(
            common::market::audit(&m.srv, "market.search.created")
                .await
                .len(),
            before
        );
        let other = m
            .agent(Method::POST, SEARCH)
            .header("idempotency-key", "search-once")
            .json(&json!({"serviceType": "compute"}))
            .send()
            .await
            .unwrap();
        expect_error(other, StatusCode::CONFLICT, "IDEMPOTENCY_CONFLICT").await;
        m.stop().await;
    }
}

#[tokio::test]
async fn a_search_takes_the_token_with_or_without_the_api_key() {
    for backend in backends() {
        let m = Market::start(
            &backend,
            Some(fixtures()),
            &[
                ("PEAQOS_REQUIRE_API_AUTH", "true"),
                ("PEAQOS_API_KEY", "k-search"),
            ],
        )
        .await;
        let body = json!({"serviceType": "device.control"});
        let post = |token: Option<&str>, key: Option<&str>, body: &Value| {
            let mut request = m.anonymous(Method::POST, SEARCH).json(body);
            if let Some(token) = token {
                request = request.header(TOKEN_HEADER, token);
            }
            if let Some(key) = key {
                request = request.header("x-api-key", key);
            }
            request.send()
        };
        let token = m.token.as_str();

        // The token alone (0.2.0), and the token with the key (0.12.1).
        for key in [None, Some("k-search")] {
            let response = post(Some(token), key, &body).await.unwrap();
            let search = expect_json(response, StatusCode::CREATED).await;
            assert_eq!(search["item"]["agentPairingId"], m.pairing_id);
        }
        let refused = [
            (
                post(Some(token), Some("wrong"), &body).await,
                StatusCode::UNAUTHORIZED,
                "AUTH_INVALID",
            ),
            (
                post(None, Some("k-search"), &body).await,
                StatusCode::UNAUTHORIZED,
                "AGENT_AUTH_REQUIRED",
            ),
            (
                post(None, None, &body).await,
                StatusCode::UNAUTHORIZED,
                "AGENT_AUTH_REQUIRED",
            ),
            (
                post(Some("not-a-token"), Some("k-search"), &body).await,
                StatusCode::UNAUTHORIZED,
                "AGENT_AUTH_INVALID",
            ),
        ];
        for (response, status, code) in refused {
            expect_error(response.unwrap(), status, code).await;
        }

        // Body ids must be the token's (check 9).
        let (other_machine, other_pairing) = m.other_machine(None).await;
        let other_pairing = other_pairing["id"].as_str().unwrap();
        for (ids, reason) in [
            (json!({"machineId": other_machine}), "machine-mismatch"),
            (json!({"agentPairingId": other_pairing}), "pairing-mismatch"),
            (
                json!({"machineId": m.machine_id, "agentPairingId": other_pairing}),
                "pairing-mismatch",
            ),
            (json!({"machineId": "mach_nope"}), "machine-mismatch"),
        ] {
            let sent = merged(body.clone(), ids.clone());
            let error = expect_error(
                post(Some(token), None, &sent).await.unwrap(),
                StatusCode::UNAUTHORIZED,
                "AGENT_AUTH_INVALID",
            )
            .await;
            assert_eq!(error["details"]["reason"], reason, "{ids}");
        }
        let own = merged(
            body.clone(),
            json!({"machineId": m.machine_id, "agentPairingId": m.pairing_id}),
        );
        expect_json(
            post(Some(token), None, &own).await.unwrap(),
            StatusCode::CREATED,
        )
        .await;
        // Two searches and the one with its own ids: nothing refused was stored.
        assert_eq!(
            common::market::audit(&m.srv, "market.search.created")
                .await
                .len(),
            3
        );

        // A paused pairing's token.
        expect_json(
            m.srv
                .patch_json(
                    &format!(
                        "/api/v1/machines/{}/agent-pairings/{}",
                        m.machine_id, m.pairing_id
                    ),
                    &json!({"status": "paused"}),
                )
                .await,
            StatusCode::OK,
        )
        .await;
        let error = expect_error(
            post(Some(token), None, &body).await.unwrap(),
            StatusCode::FORBIDDEN,
            "AGENT_PAIRING_INACTIVE",
        )
        .await;
        assert_eq!(error["details"]["status"], "paused");
        m.stop().await;
    }
}

#[tokio::test]
async fn without_pairing_auth_the_body_names_the_pairing() {
    for backend in backends() {
        let m = Market::start(
            &backend,
            Some(fixtures()),
            &[
                ("PEAQOS_REQUIRE_AGENT_PAIRING_AUTH", "false"),
                ("PEAQOS_REQUIRE_API_AUTH", "true"),
                ("PEAQOS_API_KEY", "k-platform"),
            ],
        )
        .await;
        let post = |body: Value| {
            let srv = &m.srv;
            async move { srv.post_json(SEARCH, &body).await }
        };
        let with = |ids: Value| merged(json!({"serviceType": "device.control"}), ids);

        let search = expect_json(
            post(with(
                json!({"machineId": m.machine_id, "agentPairingId": m.pairing_id}),
            ))
            .await,
            StatusCode::CREATED,
        )
        .await;
        assert_eq!(search["item"]["agentPairingId"], m.pairing_id);
        assert_eq!(quote_ids(&search["item"]), RANKED);
        // The named pairing's delegation policy applies.
        let limited = m
            .pair(Some(json!({"deniedServiceIds": ["rank-2-prod"]})))
            .await;
        let search = expect_json(
            post(with(
                json!({"machineId": m.machine_id, "agentPairingId": limited["id"]}),
            ))
            .await,
            StatusCode::CREATED,
        )
        .await;
        assert_eq!(
            quote_ids(&search["item"]),
            ["rank-3-prod", "rank-1-ref", "rank-0-handoff"]
        );
        // Platform auth applies without the token.
        let anonymous = m
            .anonymous(Method::POST, SEARCH)
            .json(&with(
                json!({"machineId": m.machine_id, "agentPairingId": m.pairing_id}),
            ))
            .send()
            .await
            .unwrap();
        expect_error(anonymous, StatusCode::UNAUTHORIZED, "AUTH_REQUIRED").await;
        // A token that is sent is still used, and checked.
        expect_json(
            m.agent(Method::POST, SEARCH)
                .json(&with(json!({})))
                .send()
                .await
                .unwrap(),
            StatusCode::CREATED,
        )
        .await;
        expect_error(
            m.srv
                .request(Method::POST, SEARCH)
                .header(TOKEN_HEADER, "not-a-token")
                .json(&with(
                    json!({"machineId": m.machine_id, "agentPairingId": m.pairing_id}),
                ))
                .send()
                .await
                .unwrap(),
            StatusCode::UNAUTHORIZED,
            "AGENT_AUTH_INVALID",
        )
        .await;

        // The pairing checks.
        let error = expect_error(
            post(with(json!({"agentPairingId": m.pairing_id}))).await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(error["details"]["field"], "machineId");
        let error = expect_error(
            post(with(json!({"machineId": m.machine_id}))).await,
            StatusCode::FORBIDDEN,
            "AGENT_PAIRING_REQUIRED",
        )
        .await;
        assert!(
            error["details"].get("reason").is_none_or(Value::is_null),
            "{error}"
        );
        let (other_machine, other_pairing) = m.other_machine(None).await;
        for pairing in ["apr_nope", other_pairing["id"].as_str().unwrap()] {
            let error = expect_error(
                post(with(
                    json!({"machineId": m.machine_id, "agentPairingId": pairing}),
                ))
                .await,
                StatusCode::FORBIDDEN,
                "AGENT_PAIRING_REQUIRED",
            )
            .await;
            assert_eq!(error["details"]["reason"], "pairing-not-found", "{pairing}");
        }
        expect_json(
            post(with(
                json!({"machineId": other_machine, "agentPairingId": other_pairing["id"]}),
            ))
            .await,
            StatusCode::CREATED,
        )
        .await;
        expect_json(
            m.srv
                .patch_json(
                    &format!(
                        "/api/v1/machines/{}/agent-pairings/{}",
                        m.machine_id, m.pairing_id
                    ),
                    &json!({"status": "paused"}),
                )
                .await,
            StatusCode::OK,
        )
        .await;
        let error = expect_error(
            post(with(
                json!({"machineId": m.machine_id, "agentPairingId": m.pairing_id}),
            ))
            .await,
            StatusCode::FORBIDDEN,
            "AGENT_PAIRING_INACTIVE",
        )
        .await;
        assert_eq!(error["details"]["status"], "paused");

        // Gate C: the machine exists and is active.
        let error = expect_error(
            post(with(
                json!({"machineId": "mach_nope", "agentPairingId": m.pairing_id}),
            ))
            .await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;
        assert_eq!(error["details"]["resource"], "machine");
        let draft = expect_json(
            m.srv
                .post_json(
                    "/api/v1/machines",
                    &json!({"displayName": "d", "ownerId": "o", "machineType": "t", "runtimeProfile": "r",
                            "identityRef": format!("did:peaq:{}", rand_u64())}),
                )
                .await,
            StatusCode::CREATED,
        )
        .await["item"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let error = expect_error(
            post(with(
                json!({"machineId": draft, "agentPairingId": m.pairing_id}),
            ))
            .await,
            StatusCode::CONFLICT,
            "MACHINE_NOT_ACTIVE",
        )
        .await;
        assert_eq!(error["details"]["status"], "draft");
        m.stop().await;
    }
}

#[tokio::test]
async fn gate_c_refuses_a_machine_that_is_not_active_or_not_bonded() {
    for backend in backends() {
        // Not active any more: the token is valid, the machine is not.
        let m = Market::start(&backend, Some(fixtures()), &[]).await;
        expect_json(
            m.srv
                .patch_json(
                    &format!("/api/v1/machines/{}", m.machine_id),
                    &json!({"status": "degraded"}),
                )
                .await,
            StatusCode::OK,
        )
        .await;
        let error = expect_error(
            m.search(&json!({"serviceType": "device.control"})).await,
            StatusCode::CONFLICT,
            "MACHINE_NOT_ACTIVE",
        )
        .await;
        assert_eq!(error["details"]["status"], "degraded");
        m.stop().await;

        // Verified through MCR, activated but not bonded.
        let mcr = FakeMcr::start().await;
        let srv = start_server(
            &backend,
            None,
            &[
                ("PEAQOS_MACHINE_IDENTITY_VERIFICATION", "required"),
                ("PEAQOS_MCR_API_URL", &mcr.url),
                ("PEAQOS_MCR_CACHE_TTL_MS", "0"),
            ],
        )
        .await;
        let owner = Wallet::random();
        let did = format!("did:peaq:{}", rand_u64() % 1_000_000);
        let mcr_id = 4242;
        mcr.register(&did, mcr_id, &owner.address(), false);
        let challenge = expect_json(
            srv.post_json(
                "/api/v1/machine-identity/challenges",
                &json!({"identityRef": did}),
            )
            .await,
            StatusCode::CREATED,
        )
        .await["item"]
            .clone();
        let signature = owner.sign_personal(challenge["message"].as_str().unwrap());
        let machine = expect_json(
            srv.post_json(
                "/api/v1/machines",
                &json!({"displayName": "Rover", "ownerId": "o", "machineType": "rover", "runtimeProfile": "edge",
                        "identityRef": did,
                        "identityProof": {"challengeId": challenge["challengeId"], "signature": signature}}),
            )
            .await,
            StatusCode::CREATED,
        )
        .await["item"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        expect_json(
            srv.patch_json(
                &format!("/api/v1/machines/{machine}"),
                &json!({"status": "active"}),
            )
            .await,
            StatusCode::OK,
        )
        .await;
        let pairing = pair(&srv, &machine, None).await;
        let token = pairing["pairingToken"].as_str().unwrap().to_string();
        let search = || {
            srv.request(Method::POST, SEARCH)
                .header(TOKEN_HEADER, &token)
                .json(&json!({"serviceType": "compute"}))
                .send()
        };
        let error = expect_error(
            search().await.unwrap(),
            StatusCode::FORBIDDEN,
            "MACHINE_NOT_ACTIVATED",
        )
        .await;
        assert_eq!(error["details"]["reason"], "not-bonded");
        // Bonded now: the same search passes.
        mcr.register(&did, mcr_id, &owner.address(), true);
        expect_json(search().await.unwrap(), StatusCode::CREATED).await;
        // Gate B inside Gate C: no longer registered; MCR failing.
        mcr.remove(&did);
        let error = expect_error(
            search().await.unwrap(),
            StatusCode::FORBIDDEN,
            "MACHINE_NOT_ACTIVATED",
        )
        .await;
        assert_eq!(error["details"]["reason"], "not-registered");
        mcr.set(&did, Behaviour::Status(500));
        expect_error(
            search().await.unwrap(),
            StatusCode::SERVICE_UNAVAILABLE,
            "PEAQOS_IDENTITY_UNAVAILABLE",
        )
        .await;
        assert_eq!(
            common::market::audit(&srv, "market.search.created")
                .await
                .len(),
            1,
            "only the bonded search was stored"
        );
        srv.stop().await;
    }
}

#[tokio::test]
async fn invalid_search_bodies_name_the_field() {
    for backend in backends() {
        let m = Market::start(&backend, Some(fixtures()), &[]).await;
        let cases = [
            (json!({}), "serviceType"),
            (json!({"serviceType": "gpu"}), "serviceType"),
            (json!({"serviceType": "Compute"}), "serviceType"),
            (json!({"serviceType": 5}), "serviceType"),
            (
                json!({"serviceType": "compute", "maxResults": 0}),
                "maxResults",
            ),
            (
                json!({"serviceType": "compute", "maxResults": -3}),
                "maxResults",
            ),
            (
                json!({"serviceType": "compute", "maxResults": "ten"}),
                "maxResults",
            ),
            (
                json!({"serviceType": "compute", "budget": {"max": -1}}),
                "budget.max",
            ),
            (
                json!({"serviceType": "compute", "budget": {"amount": -0.5}}),
                "budget.amount",
            ),
            (
                json!({"serviceType": "compute", "budget": {"preferred": -2}}),
                "budget.preferred",
            ),
            (
                json!({"serviceType": "compute", "budget": {"max": "5"}}),
                "budget.max",
            ),
            (
                json!({"serviceType": "compute", "budget": {"currency": " "}}),
                "budget.currency",
            ),
            (
                json!({"serviceType": "compute", "providerCredentials": "secret"}),
                "providerCredentials",
            ),
            (
                json!({"serviceType": "compute", "providerCredentials": ["secret"]}),
                "providerCredentials",
            ),
            (
                json!({"serviceType": "compute", "providerCredentials": {"qvac": "secret"}}),
                "providerCredentials.qvac",
            ),
            (
                json!({"serviceType": "compute", "providerCredentials": {"qvac": {"apiKey": 5}}}),
                "providerCredentials.qvac.apiKey",
            ),
            (
                json!({"serviceType": "compute", "providerCredentials": {"qvac": {"nested": {"a": "b"}}}}),
                "providerCredentials.qvac.nested",
            ),
            (
                json!({"serviceType": "compute", "operation": " "}),
                "operation",
            ),
            (json!({"serviceType": "compute", "region": ""}), "region"),
            (
                json!({"serviceType": "compute", "requiredCapabilities": [" "]}),
                "requiredCapabilities[0]",
            ),
            (
                json!({"serviceType": "compute", "allowExternalHandoff": "yes"}),
                "allowExternalHandoff",
            ),
            (
                json!({"serviceType": "compute", "requireNativeExecution": 1}),
                "requireNativeExecution",
            ),
        ];
        for (body, field) in cases {
            let error = expect_error(
                m.search(&body).await,
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
            )
            .await;
            assert_eq!(error["details"]["field"], field, "{body}: {error}");
        }
        assert!(
            common::market::audit(&m.srv, "market.search.created")
                .await
                .is_empty(),
            "nothing was stored"
        );
        // The edges that are valid.
        let search = m
            .searched(&json!({"serviceType": "compute", "maxResults": 1, "budget": {"max": 0, "currency": "USDC"},
                              "providerCredentials": {}}))
            .await;
        assert_eq!(search["normalizedTask"]["maxResults"], 1);
        assert_eq!(
            search["normalizedTask"]["budget"],
            json!({"max": 0.0, "amount": null, "preferred": null, "currency": "USDC"})
        );
        m.stop().await;
    }
}

#[tokio::test]
async fn max_results_defaults_to_ten_and_is_clamped_to_25() {
    for backend in backends() {
        let services: Vec<Value> = (0..30)
            .map(|i| {
                service(
                    &format!("many-{i:02}"),
                    "many-skill",
                    "many-prov",
                    "device.control",
                )
            })
            .collect();
        let dir =
            CatalogDir::with(&[("many.json", skill_file("many-skill", "many-prov", services))]);
        let m = Market::start(&backend, Some(dir), &[]).await;
        let all: Vec<String> = (0..30).map(|i| format!("many-{i:02}")).collect();

        let clamped = m
            .searched(&json!({"serviceType": "device.control", "maxResults": 100}))
            .await;
        assert_eq!(quote_ids(&clamped), all[..25], "equal scores: id ascending");
        assert_eq!(clamped["normalizedTask"]["maxResults"], 25);
        assert_eq!(clamped["requestPayload"]["maxResults"], 100);
        let exactly = m
            .searched(&json!({"serviceType": "device.control", "maxResults": 25}))
            .await;
        assert_eq!(quote_ids(&exactly).len(), 25);
        let default = m.searched(&json!({"serviceType": "device.control"})).await;
        assert_eq!(quote_ids(&default), all[..10]);
        assert_eq!(default["normalizedTask"]["maxResults"], 10);
        let three = m
            .searched(&json!({"serviceType": "device.control", "maxResults": 3}))
            .await;
        assert_eq!(quote_ids(&three), all[..3]);
        let stored = expect_json(
            m.srv
                .get(&format!(
                    "/api/v1/market/searches/{}",
                    clamped["id"].as_str().unwrap()
                ))
                .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(stored["item"]["quotes"].as_array().unwrap().len(), 25);
        let events = search_events(&m.srv, clamped["id"].as_str().unwrap()).await;
        assert_eq!(events[0]["payload"]["quoteCount"], 25);
        m.stop().await;
    }
}

#[tokio::test]
async fn the_delegation_policy_filters_quotes() {
    for backend in backends() {
        let m = Market::start(&backend, Some(fixtures()), &[]).await;
        let body = json!({"serviceType": "device.control"});
        for (policy, expected) in [
            (
                json!({"deniedServiceIds": ["rank-2-prod"], "allowedSkillKeys": ["rank-skill-a"]}),
                vec!["rank-3-prod", "rank-0-handoff"],
            ),
            (
                json!({"allowedServiceIds": ["rank-1-ref"]}),
                vec!["rank-1-ref"],
            ),
            (
                json!({"deniedSkillKeys": ["rank-skill-a"]}),
                vec!["rank-1-ref"],
            ),
            (
                json!({"allowedSkillKeys": ["rank-skill-a"], "deniedSkillKeys": ["rank-skill-a"]}),
                vec![],
            ),
            (json!({}), RANKED.to_vec()),
        ] {
            let pairing = m.pair(Some(policy.clone())).await;
            let response = m
                .search_as(pairing["pairingToken"].as_str().unwrap(), &body)
                .await;
            let search = expect_json(response, StatusCode::CREATED).await["item"].clone();
            assert_eq!(quote_ids(&search), expected, "{policy}");
            assert_eq!(search["agentPairingId"], pairing["id"]);
            let status = if expected.is_empty() {
                "no_match"
            } else {
                "completed"
            };
            assert_eq!(search["status"], status);
        }
        // The lists do not hide services from the catalogue.
        let listed = all_items(
            &m.srv,
            &format!(
                "/api/v1/market/services?serviceType=device.control&machineId={}",
                m.machine_id
            ),
        )
        .await;
        assert_eq!(listed.len(), 4);
        m.stop().await;
    }
}

#[tokio::test]
async fn disabled_skills_are_left_out_of_search_but_still_listed() {
    for backend in backends() {
        let m = Market::start(&backend, Some(fixtures()), &[]).await;
        let body = json!({"serviceType": "device.control"});
        let config = "/api/v1/skills/rank-skill-b/config";
        expect_json(
            m.srv.patch_json(config, &json!({"enabled": false})).await,
            StatusCode::OK,
        )
        .await;
        let search = m.searched(&body).await;
        assert_eq!(
            quote_ids(&search),
            ["rank-2-prod", "rank-3-prod", "rank-0-handoff"]
        );
        for query in [
            "serviceType=device.control".to_string(),
            format!("serviceType=device.control&machineId={}", m.machine_id),
        ] {
            let listed = all_items(&m.srv, &format!("/api/v1/market/services?{query}")).await;
            assert!(field_of(&listed, "id").contains(&"rank-1-ref"), "{query}");
        }
        let scoped = expect_json(
            m.agent(
                Method::GET,
                "/api/v1/market/services?serviceType=device.control",
            )
            .send()
            .await
            .unwrap(),
            StatusCode::OK,
        )
        .await;
        assert!(field_of(scoped["items"].as_array().unwrap(), "id").contains(&"rank-1-ref"));
        expect_json(
            m.srv.get("/api/v1/market/services/rank-1-ref").await,
            StatusCode::OK,
        )
        .await;

        // Disabling every skill of the type leaves nothing to quote.
        expect_json(
            m.srv
                .patch_json(
                    "/api/v1/skills/rank-skill-a/config",
                    &json!({"enabled": false}),
                )
                .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(m.searched(&body).await["status"], "no_match");
        for key in ["rank-skill-a", "rank-skill-b"] {
            expect_json(
                m.srv
                    .patch_json(
                        &format!("/api/v1/skills/{key}/config"),
                        &json!({"enabled": true}),
                    )
                    .await,
                StatusCode::OK,
            )
            .await;
        }
        assert_eq!(quote_ids(&m.searched(&body).await), RANKED);
        m.stop().await;
    }
}

#[tokio::test]
async fn credentials_count_from_the_request_or_the_skill_config() {
    for backend in backends() {
        let m = Market::start(&backend, Some(fixtures()), &[]).await;
        let execution = |credentials: Option<Value>| {
            let m = &m;
            async move {
                let mut body =
                    json!({"serviceType": "network.partner-console", "operation": "verify"});
                if let Some(credentials) = credentials {
                    body["providerCredentials"] = credentials;
                }
                let search = m.searched(&body).await;
                assert_eq!(quote_ids(&search), ["acme:verify"]);
                assert_eq!(
                    search["quotes"][0]["integrationStatus"],
                    "credentials-required"
                );
                search["quotes"][0]["reasons"][0]
                    .as_str()
                    .unwrap()
                    .to_string()
            }
        };
        const FOUND: &str = "execution: credentials required (credentials found)";
        const MISSING: &str = "execution: credentials required (credentials not found)";

        assert_eq!(execution(None).await, MISSING);
        for key in ["acme-id", "acmeId", "ACME_ID", "AcMe-Id", "acme_id"] {
            let credentials = json!({key: {"appId": "a", "appSecret": "s"}});
            assert_eq!(execution(Some(credentials)).await, FOUND, "{key}");
        }
        for key in ["acme", "acmeIdentity", "ops-prov"] {
            let credentials = json!({key: {"appId": "a"}});
            assert_eq!(execution(Some(credentials)).await, MISSING, "{key}");
        }
        assert_eq!(execution(Some(json!({}))).await, MISSING);

        // Stored skill credentials count too, until they are cleared.
        let config = "/api/v1/skills/cred-skill/config";
        expect_json(
            m.srv
                .patch_json(config, &json!({"credentials": {"appId": "stored"}}))
                .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(execution(None).await, FOUND);
        expect_json(
            m.srv.patch_json(config, &json!({"credentials": {}})).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(execution(None).await, MISSING);
        m.stop().await;
    }
}

#[tokio::test]
async fn quotes_carry_the_machine_scoped_runtime_status() {
    for backend in backends() {
        let m = Market::start(&backend, Some(fixtures()), &[]).await;
        let body = json!({"serviceType": "compute", "operation": "run-private-inference"});
        let qvac = |search: &Value| quote(search, "qvac-private-inference").clone();

        let before = qvac(&m.searched(&body).await);
        assert_eq!(before["integrationStatus"], "local-config-required");
        assert_eq!(
            before["reasons"][0],
            "execution: the machine's qvac runtime endpoint is missing or not healthy"
        );
        let agent = enroll(&m.srv, &m.machine_id, &["qvac"]).await;
        heartbeat(
            &m.srv,
            &m.machine_id,
            &agent,
            "qvac",
            "http://127.0.0.1:11434",
            30,
        )
        .await;
        let leased = qvac(&m.searched(&body).await);
        assert_eq!(leased["integrationStatus"], "native");
        assert_eq!(
            leased["reasons"][0],
            "execution: native on the machine's qvac runtime endpoint (active)"
        );
        let gain = leased["score"].as_f64().unwrap() - before["score"].as_f64().unwrap();
        assert!((gain - 0.35 * 0.5).abs() < 1e-9, "{gain}");
        // Another machine does not see this machine's endpoint.
        let (_, other) = m.other_machine(None).await;
        let theirs = m
            .search_as(other["pairingToken"].as_str().unwrap(), &body)
            .await;
        let theirs = expect_json(theirs, StatusCode::CREATED).await["item"].clone();
        assert_eq!(qvac(&theirs)["integrationStatus"], "local-config-required");
        // The lease ends.
        m.srv.clock.advance_ms(31_000);
        assert_eq!(
            qvac(&m.searched(&body).await)["integrationStatus"],
            "local-config-required"
        );
        m.stop().await;
    }
}

/// The body of a response with `status`.
async fn text(response: reqwest::Response, status: StatusCode) -> String {
    let actual = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(actual, status, "{body}");
    body
}

/// Every byte of the test database: the SQLite file and its WAL after a checkpoint, or a
/// `pg_dump` of the PostgreSQL database.
async fn database_bytes(srv: &TestServer) -> String {
    match srv.db.backend {
        Backend::Sqlite => {
            let path = srv.db.url.trim_start_matches("sqlite://").to_string();
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&srv.app.store)
                .await
                .unwrap();
            let mut bytes = std::fs::read(&path).unwrap();
            if let Ok(wal) = std::fs::read(format!("{path}-wal")) {
                bytes.extend(wal);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Backend::Postgres(_) => {
            let output = std::process::Command::new("pg_dump")
                .arg("--dbname")
                .arg(&srv.db.url)
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "pg_dump: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8(output.stdout).unwrap()
        }
    }
}

#[tokio::test]
async fn secrets_never_reach_responses_audit_events_or_the_database() {
    for backend in backends() {
        let m = Market::start(&backend, Some(fixtures()), &[]).await;
        let skill_secret = format!("planted-skill-secret-{}", rand_u64());
        let provider_secret = format!("planted-provider-secret-{}", rand_u64());
        let provider_id = format!("planted-provider-id-{}", rand_u64());
        let mut bodies: Vec<String> = Vec::new();

        let response = m
            .srv
            .patch_json(
                "/api/v1/skills/cred-skill/config",
                &json!({"credentials": {"appSecret": skill_secret}, "settings": {"region": "eu"}}),
            )
            .await;
        bodies.push(text(response, StatusCode::OK).await);
        let body = json!({"serviceType": "network.partner-console", "operation": "verify",
                          "providerCredentials": {"acmeId": {"appSecret": provider_secret, "appId": provider_id}}});
        for _ in 0..2 {
            let response = m
                .agent(Method::POST, SEARCH)
                .header("idempotency-key", "search-with-secrets")
                .json(&body)
                .send()
                .await
                .unwrap();
            bodies.push(text(response, StatusCode::CREATED).await);
        }
        let refused = merged(body.clone(), json!({"maxResults": 0}));
        bodies.push(text(m.search(&refused).await, StatusCode::BAD_REQUEST).await);

        let search: Value = serde_json::from_str(&bodies[1]).unwrap();
        let search = &search["item"];
        assert_eq!(
            search["requestPayload"]["providerCredentials"],
            json!({"acmeId": {"appSecret": "[REDACTED]", "appId": "[REDACTED]"}}),
            "names kept, values redacted"
        );
        assert_eq!(
            search["quotes"][0]["reasons"][0],
            "execution: credentials required (credentials found)"
        );
        let id = search["id"].as_str().unwrap();
        let replayed: Value = serde_json::from_str(&bodies[2]).unwrap();
        assert_eq!(
            &replayed["item"], search,
            "the replay answers the stored search"
        );
        let stored = expect_json(
            m.srv.get(&format!("/api/v1/market/searches/{id}")).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(
            stored["item"]["requestPayload"],
            merged(
                body.clone(),
                json!({"providerCredentials": {"acmeId": {"appSecret": "[REDACTED]", "appId": "[REDACTED]"}}})
            ),
            "stored with the values redacted"
        );
        for path in [
            format!("/api/v1/market/searches/{id}"),
            "/api/v1/skills/cred-skill".to_string(),
            "/api/v1/skills?limit=500".to_string(),
            "/api/v1/market/services/acme:verify".to_string(),
        ] {
            bodies.push(text(m.srv.get(&path).await, StatusCode::OK).await);
        }
        let events = all_items(&m.srv, "/api/v1/audit-events").await;
        assert!(events.iter().any(|e| e["type"] == "skill.config-updated"));
        assert!(events.iter().any(|e| e["type"] == "market.search.created"));
        bodies.push(Value::Array(events).to_string());

        let database = database_bytes(&m.srv).await;
        assert!(
            database.contains(id),
            "the dump holds the search (the check reads the right database)"
        );
        for secret in [&skill_secret, &provider_secret, &provider_id] {
            for body in &bodies {
                assert!(
                    !body.contains(secret.as_str()),
                    "{secret} in a response: {body}"
                );
            }
            assert!(
                !database.contains(secret.as_str()),
                "{secret} is in the {} database",
                backend.name()
            );
        }
        m.stop().await;
    }
}
