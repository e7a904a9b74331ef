//! The skill registry, skill config, the service and adapter catalogues, the machine-scoped
//! views and the catalogue's start-up validation (spec catalogue-and-search.md §1–§7), over
//! HTTP on every backend.

mod common;

use std::process::Command;

use common::market::{
    CatalogDir, Market, TOKEN_HEADER, adapter, all_items, audit, catalog_file, enroll, field_of,
    heartbeat, manifest, merged, ms, service, skill, skill_file, start_server,
};
use common::process::{BIN, Exited, ServerProcess};
use common::{backends, config_with, expect_error, expect_json, rand_u64};
use peaqos_orchestrator::clock::Clock;
use peaqos_orchestrator::{App, StartError};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const DATED: &str = "2026-01-01T00:00:00.000Z";
const QVAC: &str = "qvac-private-inference";

/// The catalogue file most tests here read: three skills with distinct scope, direction and
/// source; four services; one adapter. Server-computed and unknown fields are planted to be
/// ignored.
fn fixtures() -> CatalogDir {
    let beta = merged(
        skill("cat-beta", "cat-prov"),
        json!({"scope": "bootstrap-reference", "direction": "machine-offers", "source": "clawhub",
               "authType": "api-key", "updatedAt": DATED,
               "authState": "invalid", "enabled": false, "unknownField": 1}),
    );
    let gamma = merged(
        skill("cat-gamma", "cat-prov"),
        json!({"source": "external-marketplace"}),
    );
    let detail = merged(
        service("cat:detail", "cat-alpha", "cat-prov", "device.control"),
        json!({
            "operations": ["first-op", "second-op"],
            "endpoints": [
                {"label": "one", "operation": "first-op", "url": "http://127.0.0.1:9/one", "method": "POST",
                 "protocols": ["x402"], "networks": ["base"]},
                {"label": "two", "operation": "second-op", "url": "http://127.0.0.1:9/two", "method": "GET"},
            ],
            "operationContracts": [{
                "operation": "first-op",
                "inputFields": [{"key": "text", "type": "string", "description": "what to do"}],
                "outputFields": [{"key": "result", "type": "string", "description": null}],
                "exampleInput": {"text": "hello"}, "providerRequest": {"method": "POST"},
                "summary": "Does the first thing", "notes": ["a note"],
            }],
            "metadata": {"notes": ["fixture"]},
            "pricing": {"mode": "fixed", "amount": 2.5, "currency": "USDC", "rate": "per_request", "notes": []},
            "updatedAt": DATED,
            "freshnessSeconds": 5, "consumption": {"adapterSetupPath": "/elsewhere"},
            "endpoint": {"url": "http://127.0.0.1:9/ignored"}, "unknownField": true,
        }),
    );
    let handoff = merged(
        service("cat:handoff", "cat-beta", "cat-prov", "device.control"),
        json!({"executionMode": "external-handoff", "integrationStatus": "docs-only",
               "handoff": {"label": "Open the console", "url": "http://127.0.0.1:9/console", "notes": []}}),
    );
    let bare = merged(
        service("cat:no-endpoints", "cat-gamma", "cat-prov", "data.location"),
        json!({"endpoints": []}),
    );
    let creds = merged(
        service(
            "cat:creds",
            "cat-beta",
            "cat-prov",
            "network.partner-console",
        ),
        json!({"integrationStatus": "credentials-required", "authType": "api-key"}),
    );
    let file = json!({
        "skills": [skill("cat-alpha", "cat-prov"), beta, gamma],
        "manifests": [manifest("cat-alpha", "cat-prov"), manifest("cat-beta", "cat-prov"), manifest("cat-gamma", "cat-prov")],
        "services": [detail, handoff, bare, creds],
        "adapters": [merged(adapter("cat-prov"), json!({"credentialKeys": ["apiKey"]}))],
    });
    CatalogDir::with(&[("fixtures.json", file)])
}

fn items(body: &Value) -> Vec<Value> {
    body["items"].as_array().unwrap().clone()
}

fn sorted(keys: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    out.sort();
    out
}

#[tokio::test]
async fn skills_are_listed_by_key_filtered_and_paged() {
    for backend in backends() {
        let dir = fixtures();
        let srv = start_server(&backend, Some(&dir), &[]).await;
        let all = all_items(&srv, "/api/v1/skills").await;
        let keys = field_of(&all, "key");
        assert_eq!(keys, sorted(&keys), "ordered by key");
        for key in [QVAC, "cat-alpha", "cat-beta", "cat-gamma"] {
            assert!(keys.contains(&key), "{key} in {keys:?}");
        }

        for (param, value) in [
            ("scope", "bootstrap-reference"),
            ("scope", "ecosystem"),
            ("direction", "machine-offers"),
            ("direction", "machine-consumes"),
            ("source", "clawhub"),
            ("source", "external-marketplace"),
        ] {
            let expected: Vec<&str> = all
                .iter()
                .filter(|s| s[param] == value)
                .map(|s| s["key"].as_str().unwrap())
                .collect();
            assert!(
                !expected.is_empty() && expected.len() < all.len(),
                "{param}={value} must select some skills, not all"
            );
            let page = expect_json(
                srv.get(&format!("/api/v1/skills?{param}={value}")).await,
                StatusCode::OK,
            )
            .await;
            assert_eq!(field_of(&items(&page), "key"), expected, "{param}={value}");
        }
        let both = expect_json(
            srv.get(
                "/api/v1/skills?scope=bootstrap-reference&source=clawhub&direction=machine-offers",
            )
            .await,
            StatusCode::OK,
        )
        .await;
        assert!(field_of(&items(&both), "key").contains(&"cat-beta"));
        let none = expect_json(
            srv.get("/api/v1/skills?scope=bootstrap-reference&source=external-marketplace")
                .await,
            StatusCode::OK,
        )
        .await;
        assert!(
            !field_of(&items(&none), "key").contains(&"cat-beta")
                && !field_of(&items(&none), "key").contains(&"cat-gamma"),
            "filters combine"
        );
        for param in ["scope", "direction", "source"] {
            let error = expect_error(
                srv.get(&format!("/api/v1/skills?{param}=bogus")).await,
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
            )
            .await;
            assert_eq!(error["details"]["field"], param);
        }

        // Pages of three, following nextCursor; the last page has none.
        let mut seen: Vec<String> = Vec::new();
        let mut path = "/api/v1/skills?limit=3".to_string();
        let mut pages = 0;
        loop {
            let page = expect_json(srv.get(&path).await, StatusCode::OK).await;
            pages += 1;
            let page_items = items(&page);
            seen.extend(field_of(&page_items, "key").iter().map(|k| k.to_string()));
            match page.get("nextCursor") {
                Some(cursor) => {
                    assert_eq!(page_items.len(), 3);
                    path = format!("/api/v1/skills?limit=3&cursor={}", cursor.as_str().unwrap());
                }
                None => break,
            }
        }
        assert_eq!(seen, keys);
        assert_eq!(pages, keys.len().div_ceil(3));
        let whole = expect_json(
            srv.get(&format!("/api/v1/skills?limit={}", keys.len()))
                .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(items(&whole).len(), keys.len());
        assert!(whole.get("nextCursor").is_none(), "{whole}");

        // A cursor only goes with the filters it was issued for.
        let first = expect_json(srv.get("/api/v1/skills?limit=1").await, StatusCode::OK).await;
        let cursor = first["nextCursor"].as_str().unwrap();
        let error = expect_error(
            srv.get(&format!(
                "/api/v1/skills?limit=1&cursor={cursor}&scope=ecosystem"
            ))
            .await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(error["details"]["field"], "cursor");
        let next = expect_json(
            srv.get(&format!("/api/v1/skills?limit=1&cursor={cursor}"))
                .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(items(&next)[0]["key"], keys[1]);
        srv.stop().await;
    }
}

#[tokio::test]
async fn a_skill_and_its_manifest_are_read_by_key() {
    for backend in backends() {
        let dir = fixtures();
        let started = Clock::default().now_ms();
        let srv = start_server(&backend, Some(&dir), &[]).await;
        let ready = Clock::default().now_ms();

        let beta =
            expect_json(srv.get("/api/v1/skills/cat-beta").await, StatusCode::OK).await["item"]
                .clone();
        let mut expected = merged(
            skill("cat-beta", "cat-prov"),
            json!({"scope": "bootstrap-reference", "direction": "machine-offers", "source": "clawhub",
                   "authType": "api-key", "authState": "unconfigured", "enabled": true, "updatedAt": DATED,
                   "requiredEnv": []}),
        );
        for absent in ["lastVerifiedAt", "referenceUrl", "artifactUrl", "handoff"] {
            expected[absent] = Value::Null;
        }
        assert_eq!(beta, expected, "computed fields of the file are ignored");

        // No updatedAt in the file: the server's start-up time.
        let alpha =
            expect_json(srv.get("/api/v1/skills/cat-alpha").await, StatusCode::OK).await["item"]
                .clone();
        let at = ms(&alpha["updatedAt"]);
        assert!(started <= at && at <= ready, "{alpha}");
        assert_eq!(alpha["authState"], "configured", "authType none");
        let qvac = expect_json(
            srv.get(&format!("/api/v1/skills/{QVAC}")).await,
            StatusCode::OK,
        )
        .await["item"]
            .clone();
        assert_eq!(qvac["authType"], "local");
        assert_eq!(qvac["authState"], "configured", "authType local");

        let read = expect_json(
            srv.get("/api/v1/skills/cat-beta/manifest").await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(read["item"], manifest("cat-beta", "cat-prov"));

        for path in ["/api/v1/skills/nope", "/api/v1/skills/nope/manifest"] {
            let error = expect_error(srv.get(path).await, StatusCode::NOT_FOUND, "NOT_FOUND").await;
            assert_eq!(error["details"]["resource"], "skill", "{path}");
            assert_eq!(error["details"]["id"], "nope", "{path}");
        }
        srv.stop().await;
    }
}

/// Every `skill.config-updated` event of skill `key`, newest first.
async fn config_events(srv: &common::TestServer, key: &str) -> Vec<Value> {
    all_items(
        srv,
        &format!("/api/v1/audit-events?type=skill.config-updated&resourceId={key}"),
    )
    .await
}

#[tokio::test]
async fn skill_config_sets_enabled_settings_and_write_only_credentials() {
    for backend in backends() {
        let dir = fixtures();
        let srv = start_server(&backend, Some(&dir), &[]).await;
        let path = "/api/v1/skills/cat-beta/config";
        let patch = |body: Value| {
            srv.clock.advance_ms(1_000);
            let srv = &srv;
            async move { srv.patch_json(path, &body).await }
        };
        let summary = |key: &'static str| {
            let srv = &srv;
            async move {
                let one = expect_json(
                    srv.get(&format!("/api/v1/skills/{key}")).await,
                    StatusCode::OK,
                )
                .await["item"]
                    .clone();
                let listed = all_items(srv, "/api/v1/skills").await;
                let entry = listed.iter().find(|s| s["key"] == key).unwrap().clone();
                assert_eq!(one, entry, "list and detail agree");
                one
            }
        };

        // Never written: the defaults and the catalogue's updatedAt; a no-op writes nothing.
        let defaults = json!({"skillKey": "cat-beta", "providerKey": "cat-prov", "enabled": true,
                              "settings": {}, "hasCredentials": false, "updatedAt": DATED});
        for body in [
            json!({}),
            json!({"enabled": true}),
            json!({"settings": {}, "credentials": {}}),
        ] {
            let config = expect_json(patch(body.clone()).await, StatusCode::OK).await;
            assert_eq!(config["item"], defaults, "{body}");
        }
        assert!(config_events(&srv, "cat-beta").await.is_empty());

        // Settings: strings, numbers and booleans.
        let settings = json!({"model": "m1", "maxTokens": 512, "temperature": 0.5, "stream": true});
        let before = srv.clock.now_ms() + 1_000;
        let config = expect_json(patch(json!({"settings": settings})).await, StatusCode::OK).await
            ["item"]
            .clone();
        assert_eq!(config["settings"], settings);
        assert_eq!(config["enabled"], true);
        assert_eq!(config["hasCredentials"], false);
        assert!(ms(&config["updatedAt"]) >= before, "{config}");
        let events = config_events(&srv, "cat-beta").await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["resourceType"], "skill");
        assert_eq!(events[0]["resourceId"], "cat-beta");
        assert_eq!(
            events[0]["payload"],
            json!({"enabled": true, "settingsKeys": ["maxTokens", "model", "stream", "temperature"],
                   "credentialKeys": [], "hasCredentials": false})
        );

        // Nested values, and credentials that are not non-blank strings, are refused.
        for (body, field) in [
            (json!({"settings": {"nested": {"a": 1}}}), "settings.nested"),
            (json!({"settings": {"list": [1, 2]}}), "settings.list"),
            (
                json!({"credentials": {"apiKey": "   "}}),
                "credentials.apiKey",
            ),
            (json!({"credentials": {"apiKey": 7}}), "credentials.apiKey"),
            (
                json!({"credentials": {"apiKey": {"v": "x"}}}),
                "credentials.apiKey",
            ),
        ] {
            let error = expect_error(
                patch(body.clone()).await,
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
            )
            .await;
            assert_eq!(error["details"]["field"], field, "{body}");
        }
        assert_eq!(config_events(&srv, "cat-beta").await.len(), 1);
        assert_eq!(summary("cat-beta").await["authState"], "unconfigured");

        // Credentials: stored, never returned.
        let secret = format!("planted-skill-credential-{}", rand_u64());
        let response =
            patch(json!({"credentials": {"apiKey": secret, "apiSecret": "s2-value"}})).await;
        assert_eq!(response.status(), StatusCode::OK);
        let text = response.text().await.unwrap();
        assert!(
            !text.contains(&secret) && !text.contains("s2-value"),
            "{text}"
        );
        let config: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(config["item"]["hasCredentials"], true);
        assert_eq!(config["item"]["settings"], settings, "settings untouched");
        assert!(config["item"].get("credentials").is_none());
        assert_eq!(summary("cat-beta").await["authState"], "configured");
        let events = config_events(&srv, "cat-beta").await;
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[0]["payload"],
            json!({"enabled": true, "settingsKeys": ["maxTokens", "model", "stream", "temperature"],
                   "credentialKeys": ["apiKey", "apiSecret"], "hasCredentials": true})
        );
        assert!(!events[0].to_string().contains(&secret));
        // The same credentials again change nothing.
        expect_json(
            patch(json!({"credentials": {"apiKey": secret, "apiSecret": "s2-value"}})).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(config_events(&srv, "cat-beta").await.len(), 2);

        // Settings are replaced, not merged; credentials stay.
        let config = expect_json(
            patch(json!({"settings": {"only": "x"}})).await,
            StatusCode::OK,
        )
        .await["item"]
            .clone();
        assert_eq!(config["settings"], json!({"only": "x"}));
        assert_eq!(config["hasCredentials"], true);

        // `{}` clears the credentials.
        let config =
            expect_json(patch(json!({"credentials": {}})).await, StatusCode::OK).await["item"]
                .clone();
        assert_eq!(config["hasCredentials"], false);
        assert_eq!(summary("cat-beta").await["authState"], "unconfigured");
        let events = config_events(&srv, "cat-beta").await;
        assert_eq!(events.len(), 4);
        assert_eq!(
            events[0]["payload"],
            json!({"enabled": true, "settingsKeys": ["only"], "credentialKeys": [], "hasCredentials": false})
        );

        // Disabling shows in the skill's summary; doing it twice writes one event.
        let config =
            expect_json(patch(json!({"enabled": false})).await, StatusCode::OK).await["item"]
                .clone();
        assert_eq!(config["enabled"], false);
        assert_eq!(summary("cat-beta").await["enabled"], false);
        assert_eq!(summary("cat-alpha").await["enabled"], true);
        expect_json(patch(json!({"enabled": false})).await, StatusCode::OK).await;
        let events = config_events(&srv, "cat-beta").await;
        assert_eq!(events.len(), 5);
        assert_eq!(events[0]["payload"]["enabled"], false);

        // A skill with authType none is configured whatever its config.
        expect_json(
            srv.patch_json(
                "/api/v1/skills/cat-alpha/config",
                &json!({"credentials": {"token": "t-value"}}),
            )
            .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(summary("cat-alpha").await["authState"], "configured");

        let error = expect_error(
            srv.patch_json("/api/v1/skills/nope/config", &json!({"enabled": false}))
                .await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;
        assert_eq!(error["details"]["resource"], "skill");
        srv.stop().await;
    }
}

#[tokio::test]
async fn services_are_listed_by_id_with_filters() {
    for backend in backends() {
        let dir = fixtures();
        let srv = start_server(&backend, Some(&dir), &[]).await;
        let all = all_items(&srv, "/api/v1/market/services").await;
        let ids = field_of(&all, "id");
        assert_eq!(ids, sorted(&ids), "ordered by id");
        for id in [
            QVAC,
            "cat:detail",
            "cat:handoff",
            "cat:no-endpoints",
            "cat:creds",
        ] {
            assert!(ids.contains(&id), "{id}");
        }
        let list = |query: String| {
            let srv = &srv;
            async move {
                let page = expect_json(
                    srv.get(&format!("/api/v1/market/services?{query}")).await,
                    StatusCode::OK,
                )
                .await;
                items(&page)
            }
        };
        let of_type = |t: &str| -> Vec<String> {
            all.iter()
                .filter(|s| s["serviceType"] == t)
                .map(|s| s["id"].as_str().unwrap().to_string())
                .collect()
        };

        // Canonical types and their aliases.
        assert_eq!(
            field_of(&list("serviceType=device.control".into()).await, "id"),
            ["cat:detail", "cat:handoff"]
        );
        for (alias, canonical) in [
            ("compute", "compute.marketplace"),
            ("storage", "storage.object"),
            ("identity", "identity.proof-of-person"),
            ("location", "data.location"),
            ("rtk", "data.location"),
            ("gnss", "data.location"),
            ("defi", "oracle.price-feed"),
            ("commerce", "machine.commerce"),
        ] {
            let expected = of_type(canonical);
            assert!(!expected.is_empty(), "{canonical}");
            assert_eq!(
                field_of(&list(format!("serviceType={canonical}")).await, "id"),
                expected
            );
            assert_eq!(
                field_of(&list(format!("serviceType={alias}")).await, "id"),
                expected,
                "{alias}"
            );
        }
        assert!(of_type("data.location").contains(&"cat:no-endpoints".to_string()));
        for bad in ["gpu", "Compute", "device"] {
            let error = expect_error(
                srv.get(&format!("/api/v1/market/services?serviceType={bad}"))
                    .await,
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
            )
            .await;
            assert_eq!(error["details"]["field"], "serviceType");
        }

        // Execution mode.
        for mode in ["native", "external-handoff"] {
            let expected: Vec<&str> = all
                .iter()
                .filter(|s| s["executionMode"] == mode)
                .map(|s| s["id"].as_str().unwrap())
                .collect();
            assert!(!expected.is_empty() && expected.len() < all.len());
            assert_eq!(
                field_of(&list(format!("executionMode={mode}")).await, "id"),
                expected
            );
        }
        assert_eq!(
            field_of(
                &list("executionMode=external-handoff&serviceType=device.control".into()).await,
                "id"
            ),
            ["cat:handoff"]
        );
        let error = expect_error(
            srv.get("/api/v1/market/services?executionMode=teleport")
                .await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(error["details"]["field"], "executionMode");

        // Provider keys are lower-cased; an unknown one lists nothing.
        let cat: Vec<&str> = all
            .iter()
            .filter(|s| s["providerKey"] == "cat-prov")
            .map(|s| s["id"].as_str().unwrap())
            .collect();
        assert_eq!(cat.len(), 4);
        assert_eq!(
            field_of(&list("providerKey=cat-prov".into()).await, "id"),
            cat
        );
        assert_eq!(
            field_of(&list("providerKey=CAT-Prov".into()).await, "id"),
            cat
        );
        assert_eq!(
            field_of(&list("providerKey=QVAC".into()).await, "id"),
            [QVAC]
        );
        for unknown in ["onem2m", "nobody"] {
            assert!(list(format!("providerKey={unknown}")).await.is_empty());
        }

        // Pages.
        let first = expect_json(
            srv.get("/api/v1/market/services?limit=2").await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(field_of(&items(&first), "id"), ids[..2]);
        let cursor = first["nextCursor"].as_str().unwrap();
        let second = list(format!("limit=2&cursor={cursor}")).await;
        assert_eq!(field_of(&second, "id"), ids[2..4]);
        expect_error(
            srv.get(&format!(
                "/api/v1/market/services?limit=2&cursor={cursor}&providerKey=qvac"
            ))
            .await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;

        // Gate A on machineId.
        let error = expect_error(
            srv.get("/api/v1/market/services?machineId=mach_nope").await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;
        assert_eq!(error["details"]["resource"], "machine");
        let error = expect_error(
            srv.get(&format!(
                "/api/v1/market/services/{QVAC}?machineId=mach_nope"
            ))
            .await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;
        assert_eq!(error["details"]["resource"], "machine");
        srv.stop().await;
    }
}

#[tokio::test]
async fn one_service_with_computed_freshness_paths_and_legacy_endpoint() {
    for backend in backends() {
        let dir = fixtures();
        let srv = start_server(&backend, Some(&dir), &[]).await;
        let read = |id: &'static str| {
            let srv = &srv;
            async move {
                expect_json(
                    srv.get(&format!("/api/v1/market/services/{id}")).await,
                    StatusCode::OK,
                )
                .await["item"]
                    .clone()
            }
        };
        let detail = read("cat:detail").await;
        let listed = all_items(&srv, "/api/v1/market/services").await;
        assert_eq!(
            listed.iter().find(|s| s["id"] == "cat:detail").unwrap(),
            &detail,
            "list and detail agree"
        );
        assert_eq!(detail["skillKey"], "cat-alpha");
        assert_eq!(detail["operations"], json!(["first-op", "second-op"]));
        assert_eq!(detail["endpoints"].as_array().unwrap().len(), 2);
        assert_eq!(detail["endpoints"][0]["url"], "http://127.0.0.1:9/one");
        assert_eq!(
            detail["endpoint"], detail["endpoints"][0],
            "legacy endpoint"
        );
        assert_eq!(detail["endpoints"][0]["protocols"], json!(["x402"]));
        assert_eq!(
            detail["consumption"],
            json!({"adapterSetupPath": "/api/v1/market/adapters/cat-prov",
                   "serviceDetailPath": "/api/v1/market/services/cat:detail",
                   "marketSearchPath": "/api/v1/market/search"})
        );
        assert_eq!(
            detail["operationContracts"],
            json!([{
                "operation": "first-op",
                "inputFields": [{"key": "text", "type": "string", "description": "what to do"}],
                "outputFields": [{"key": "result", "type": "string", "description": null}],
                "exampleInput": {"text": "hello"}, "providerRequest": {"method": "POST"},
                "summary": "Does the first thing", "notes": ["a note"],
            }])
        );
        assert_eq!(detail["metadata"], json!({"notes": ["fixture"]}));
        assert_eq!(detail["pricing"]["amount"], 2.5);
        assert_eq!(detail["updatedAt"], DATED);
        assert!(detail.get("unknownField").is_none());
        let expected = (srv.clock.now_ms() - ms(&json!(DATED))) / 1000;
        let freshness = detail["freshnessSeconds"].as_i64().unwrap();
        assert!(
            (expected - 2..=expected).contains(&freshness),
            "{freshness} vs {expected}"
        );

        let none = read("cat:no-endpoints").await;
        assert_eq!(none["endpoints"], json!([]));
        assert!(none["endpoint"].is_null(), "{none}");
        assert_eq!(none["metadata"], json!({}));
        assert_eq!(none["operationContracts"], json!([]));
        // No updatedAt in the file: the start-up time, the same as the skills'.
        let gamma = expect_json(srv.get("/api/v1/skills/cat-gamma").await, StatusCode::OK).await;
        assert_eq!(none["updatedAt"], gamma["item"]["updatedAt"]);
        let young = none["freshnessSeconds"].as_i64().unwrap();
        let age = (srv.clock.now_ms() - ms(&none["updatedAt"])) / 1000;
        assert!((age - 1..=age).contains(&young), "{young} vs {age}");
        srv.clock.advance_ms(90_500);
        let old = read("cat:no-endpoints").await["freshnessSeconds"]
            .as_i64()
            .unwrap();
        assert!(
            (young + 90..=young + 92).contains(&old),
            "{old} after {young}"
        );
        let later = read("cat:detail").await["freshnessSeconds"]
            .as_i64()
            .unwrap();
        assert!(
            (freshness + 89..=freshness + 92).contains(&later),
            "{later}"
        );

        let handoff = read("cat:handoff").await;
        assert_eq!(handoff["executionMode"], "external-handoff");
        assert_eq!(
            handoff["handoff"],
            json!({"label": "Open the console", "url": "http://127.0.0.1:9/console", "notes": []})
        );

        let qvac = read(QVAC).await;
        assert_eq!(qvac["kind"], "runtime");
        assert_eq!(qvac["integrationStatus"], "native", "the catalogue's value");
        assert_eq!(qvac["region"], "global");
        assert_eq!(qvac["pricing"]["mode"], "fixed");
        assert_eq!(qvac["pricing"]["amount"], 0.0);
        assert_eq!(qvac["payment"]["defaultRail"], "not-required");
        assert_eq!(qvac["payment"]["required"], false);

        let error = expect_error(
            srv.get("/api/v1/market/services/nope").await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;
        assert_eq!(error["details"]["resource"], "service");
        srv.stop().await;
    }
}

#[tokio::test]
async fn a_runtime_service_is_native_only_while_the_machine_leases_an_active_endpoint() {
    for backend in backends() {
        let dir = fixtures();
        let srv = start_server(&backend, Some(&dir), &[]).await;
        let machine = srv.unverified_active_machine().await;
        let other = srv.unverified_active_machine().await;
        let status_of = |machine: Option<String>| {
            let srv = &srv;
            async move {
                let query = machine
                    .map(|m| format!("?machineId={m}"))
                    .unwrap_or_default();
                let one = expect_json(
                    srv.get(&format!("/api/v1/market/services/{QVAC}{query}"))
                        .await,
                    StatusCode::OK,
                )
                .await["item"]
                    .clone();
                let separator = if query.is_empty() { "?" } else { "&" };
                let listed = expect_json(
                    srv.get(&format!(
                        "/api/v1/market/services{query}{separator}providerKey=qvac"
                    ))
                    .await,
                    StatusCode::OK,
                )
                .await;
                assert_eq!(listed["items"][0], one, "list and detail agree");
                let creds = expect_json(
                    srv.get(&format!("/api/v1/market/services/cat:creds{query}"))
                        .await,
                    StatusCode::OK,
                )
                .await;
                assert_eq!(
                    creds["item"]["integrationStatus"], "credentials-required",
                    "reference services keep the catalogue's status"
                );
                one["integrationStatus"].as_str().unwrap().to_string()
            }
        };

        assert_eq!(status_of(None).await, "native");
        assert_eq!(
            status_of(Some(machine.clone())).await,
            "local-config-required"
        );

        // A real lease through the machine agent's heartbeat.
        let agent = enroll(&srv, &machine, &["qvac", "ollama"]).await;
        let beat = heartbeat(&srv, &machine, &agent, "qvac", "http://127.0.0.1:11434", 30).await;
        assert_eq!(beat["endpoints"][0]["status"], "active");
        assert_eq!(status_of(Some(machine.clone())).await, "native");
        assert_eq!(
            status_of(Some(other.clone())).await,
            "local-config-required"
        );
        assert_eq!(status_of(None).await, "native");

        // Another provider's endpoint does not count.
        let other_agent = enroll(&srv, &other, &["ollama"]).await;
        heartbeat(
            &srv,
            &other,
            &other_agent,
            "ollama",
            "http://127.0.0.1:11435",
            30,
        )
        .await;
        assert_eq!(
            status_of(Some(other.clone())).await,
            "local-config-required"
        );

        // The lease runs out.
        srv.clock.advance_ms(25_000);
        assert_eq!(status_of(Some(machine.clone())).await, "native");
        srv.clock.advance_ms(6_000);
        assert_eq!(
            status_of(Some(machine.clone())).await,
            "local-config-required"
        );
        assert_eq!(status_of(None).await, "native");
        // A new heartbeat renews it.
        heartbeat(&srv, &machine, &agent, "qvac", "http://127.0.0.1:11434", 30).await;
        assert_eq!(status_of(Some(machine.clone())).await, "native");
        srv.stop().await;
    }
}

#[tokio::test]
async fn a_pairing_token_scopes_the_service_views_to_its_machine() {
    for backend in backends() {
        let m = Market::start(&backend, Some(fixtures()), &[]).await;
        let (other, _) = m.other_machine(None).await;
        // Only the other machine runs qvac.
        let agent = enroll(&m.srv, &other, &["qvac"]).await;
        heartbeat(&m.srv, &other, &agent, "qvac", "http://127.0.0.1:11434", 30).await;
        let read = |path: String| m.agent(Method::GET, &path).send();

        let detail = format!("/api/v1/market/services/{QVAC}");
        let one = expect_json(read(detail.clone()).await.unwrap(), StatusCode::OK).await;
        assert_eq!(
            one["item"]["integrationStatus"], "local-config-required",
            "scoped to the token's machine"
        );
        let listed = expect_json(
            read("/api/v1/market/services?providerKey=qvac".into())
                .await
                .unwrap(),
            StatusCode::OK,
        )
        .await;
        assert_eq!(
            listed["items"][0]["integrationStatus"],
            "local-config-required"
        );
        let own = expect_json(
            read(format!("{detail}?machineId={}", m.machine_id))
                .await
                .unwrap(),
            StatusCode::OK,
        )
        .await;
        assert_eq!(own["item"], one["item"]);
        // Without the token, another machine's view or the catalogue's.
        let theirs = expect_json(
            m.srv.get(&format!("{detail}?machineId={other}")).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(theirs["item"]["integrationStatus"], "native");
        let plain = expect_json(m.srv.get(&detail).await, StatusCode::OK).await;
        assert_eq!(plain["item"]["integrationStatus"], "native");

        // Check 9: the token's machine only.
        for path in [
            format!("{detail}?machineId={other}"),
            format!("/api/v1/market/services?machineId={other}"),
        ] {
            let error = expect_error(
                read(path.clone()).await.unwrap(),
                StatusCode::UNAUTHORIZED,
                "AGENT_AUTH_INVALID",
            )
            .await;
            assert_eq!(error["details"]["reason"], "machine-mismatch", "{path}");
        }
        // A bad token is never ignored.
        for path in [detail.clone(), "/api/v1/market/services".to_string()] {
            let response = m
                .srv
                .request(Method::GET, &path)
                .header(TOKEN_HEADER, "not-a-token")
                .send()
                .await
                .unwrap();
            expect_error(response, StatusCode::UNAUTHORIZED, "AGENT_AUTH_INVALID").await;
        }
        m.stop().await;
    }
}

#[tokio::test]
async fn with_api_auth_the_service_views_take_a_key_or_a_valid_token() {
    for backend in backends() {
        let m = Market::start(
            &backend,
            Some(fixtures()),
            &[
                ("PEAQOS_REQUIRE_API_AUTH", "true"),
                ("PEAQOS_API_KEY", "k-catalog"),
            ],
        )
        .await;
        for path in [
            format!("/api/v1/market/services/{QVAC}"),
            "/api/v1/market/services".to_string(),
        ] {
            expect_error(
                m.anonymous(Method::GET, &path).send().await.unwrap(),
                StatusCode::UNAUTHORIZED,
                "AUTH_REQUIRED",
            )
            .await;
            expect_error(
                m.anonymous(Method::GET, &path)
                    .header("x-api-key", "wrong")
                    .send()
                    .await
                    .unwrap(),
                StatusCode::UNAUTHORIZED,
                "AUTH_INVALID",
            )
            .await;
            // A valid token alone is enough, and scopes the view.
            let alone = expect_json(
                m.anonymous(Method::GET, &path)
                    .header(TOKEN_HEADER, &m.token)
                    .send()
                    .await
                    .unwrap(),
                StatusCode::OK,
            )
            .await;
            let status = if path.ends_with("services") {
                alone["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|s| s["id"] == QVAC)
                    .unwrap()["integrationStatus"]
                    .clone()
            } else {
                alone["item"]["integrationStatus"].clone()
            };
            assert_eq!(status, "local-config-required", "{path}");
            // Token and the right key; token and a wrong key.
            expect_json(
                m.agent(Method::GET, &path).send().await.unwrap(),
                StatusCode::OK,
            )
            .await;
            expect_error(
                m.anonymous(Method::GET, &path)
                    .header(TOKEN_HEADER, &m.token)
                    .header("x-api-key", "wrong")
                    .send()
                    .await
                    .unwrap(),
                StatusCode::UNAUTHORIZED,
                "AUTH_INVALID",
            )
            .await;
            // An invalid token with a valid key is still refused.
            expect_error(
                m.srv
                    .request(Method::GET, &path)
                    .header(TOKEN_HEADER, "not-a-token")
                    .send()
                    .await
                    .unwrap(),
                StatusCode::UNAUTHORIZED,
                "AGENT_AUTH_INVALID",
            )
            .await;
            // The key alone: the catalogue's view.
            expect_json(m.srv.get(&path).await, StatusCode::OK).await;
        }
        m.stop().await;
    }
}

#[tokio::test]
async fn adapters_are_listed_by_provider_key_and_read_case_insensitively() {
    for backend in backends() {
        let dir = fixtures();
        let srv = start_server(&backend, Some(&dir), &[]).await;
        let all = all_items(&srv, "/api/v1/market/adapters").await;
        let keys = field_of(&all, "providerKey");
        assert_eq!(keys, sorted(&keys), "ordered by providerKey");
        assert!(keys.contains(&"qvac") && keys.contains(&"cat-prov"));

        let first = expect_json(
            srv.get("/api/v1/market/adapters?limit=1").await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(first["items"][0]["providerKey"], keys[0]);
        let cursor = first["nextCursor"].as_str().unwrap();
        let second = expect_json(
            srv.get(&format!("/api/v1/market/adapters?limit=1&cursor={cursor}"))
                .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(second["items"][0]["providerKey"], keys[1]);

        let qvac = expect_json(
            srv.get("/api/v1/market/adapters/QVAC").await,
            StatusCode::OK,
        )
        .await["item"]
            .clone();
        assert_eq!(qvac["providerKey"], "qvac");
        assert_eq!(
            qvac["runtimeEndpoint"],
            json!({"required": true, "probePath": "/v1/models"})
        );
        assert_eq!(qvac["credentialKeys"], json!([]));
        assert_eq!(qvac["docsUrl"], "https://robotic.sh/services/qvac");
        assert_eq!(
            &qvac,
            all.iter().find(|a| a["providerKey"] == "qvac").unwrap()
        );
        let cat = expect_json(
            srv.get("/api/v1/market/adapters/Cat-Prov").await,
            StatusCode::OK,
        )
        .await["item"]
            .clone();
        assert_eq!(
            cat,
            merged(adapter("cat-prov"), json!({"credentialKeys": ["apiKey"]}))
        );

        let error = expect_error(
            srv.get("/api/v1/market/adapters/nobody").await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;
        assert_eq!(error["details"]["resource"], "adapter");
        srv.stop().await;
    }
}

/// A valid catalogue file: one skill, its manifest, one service, one adapter.
fn valid_file() -> Value {
    let mut file = skill_file(
        "ok-skill",
        "ok-prov",
        vec![service(
            "ok:service",
            "ok-skill",
            "ok-prov",
            "device.control",
        )],
    );
    file["adapters"] = json!([adapter("ok-prov")]);
    file
}

/// `valid_file()` with `change` applied.
fn changed(change: impl FnOnce(&mut Value)) -> Value {
    let mut file = valid_file();
    change(&mut file);
    file
}

/// Starts the app on `dir`; the catalogue problems it refused with, as displayed.
async fn refusal(case: &str, dir: &CatalogDir) -> String {
    let db = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", db.path().join("t.db").display());
    let config = config_with(&url, &[("PEAQOS_CATALOG_DIR", &dir.path_str())]);
    match App::start(config, Clock::default()).await {
        Err(err @ StartError::Catalog(_)) => err.to_string(),
        Err(other) => panic!("{case}: refused for another reason: {other}"),
        Ok(_) => panic!("{case}: started on an invalid catalogue"),
    }
}

#[tokio::test]
async fn each_catalogue_rule_stops_start_up_naming_the_file_and_the_entry() {
    // The base file is valid: every refusal below comes from its one change.
    let dir = CatalogDir::with(&[("ok.json", valid_file())]);
    let db = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", db.path().join("t.db").display());
    let app = App::start(
        config_with(&url, &[("PEAQOS_CATALOG_DIR", &dir.path_str())]),
        Clock::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("the base file is valid: {e}"));
    assert!(app.catalog.service("ok:service").is_some());
    drop(app);

    let reserved: Vec<(String, Value, String, &str)> =
        ["status", "list", "received", "dispute", "execute"]
            .into_iter()
            .map(|id| {
                (
                    format!("reserved id {id}"),
                    changed(|f| f["services"][0]["id"] = json!(id)),
                    format!("services[0] ({id})"),
                    "reserved",
                )
            })
            .collect();
    let mut cases: Vec<(String, Value, String, &str)> = vec![
        (
            "skill without label".into(),
            changed(|f| {
                f["skills"][0].as_object_mut().unwrap().remove("label");
            }),
            "skills[0] (ok-skill)".into(),
            "missing field `label`",
        ),
        (
            "service without region".into(),
            changed(|f| {
                f["services"][0].as_object_mut().unwrap().remove("region");
            }),
            "services[0] (ok:service)".into(),
            "missing field `region`",
        ),
        (
            "service without operations".into(),
            changed(|f| {
                f["services"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("operations");
            }),
            "services[0] (ok:service)".into(),
            "missing field `operations`",
        ),
        (
            "manifest without summary".into(),
            changed(|f| {
                f["manifests"][0].as_object_mut().unwrap().remove("summary");
            }),
            "manifests[0] (ok-skill)".into(),
            "missing field `summary`",
        ),
        (
            "adapter without label".into(),
            changed(|f| {
                f["adapters"][0].as_object_mut().unwrap().remove("label");
            }),
            "adapters[0] (ok-prov)".into(),
            "missing field `label`",
        ),
        (
            "unknown executionMode".into(),
            changed(|f| f["services"][0]["executionMode"] = json!("teleport")),
            "services[0] (ok:service)".into(),
            "executionMode: unknown variant `teleport`",
        ),
        (
            "unknown serviceType".into(),
            changed(|f| f["services"][0]["serviceType"] = json!("gpu")),
            "services[0] (ok:service)".into(),
            "serviceType: unknown variant `gpu`",
        ),
        (
            "unknown scope".into(),
            changed(|f| f["skills"][0]["scope"] = json!("galaxy")),
            "skills[0] (ok-skill)".into(),
            "scope: unknown variant `galaxy`",
        ),
        (
            "unknown pricing mode".into(),
            changed(|f| f["services"][0]["pricing"] = json!({"mode": "free-ish"})),
            "services[0] (ok:service)".into(),
            "pricing.mode: unknown variant",
        ),
        (
            "duplicate skill key".into(),
            changed(|f| {
                let again = f["skills"][0].clone();
                f["skills"].as_array_mut().unwrap().push(again);
            }),
            "skills[1] (ok-skill)".into(),
            "duplicate skill key",
        ),
        (
            "duplicate service id".into(),
            changed(|f| {
                let again = f["services"][0].clone();
                f["services"].as_array_mut().unwrap().push(again);
            }),
            "services[1] (ok:service)".into(),
            "duplicate service id",
        ),
        (
            "built-in service id".into(),
            changed(|f| f["services"][0]["id"] = json!(QVAC)),
            format!("services[0] ({QVAC})"),
            "duplicate service id",
        ),
        (
            "built-in skill key".into(),
            changed(|f| {
                f["skills"]
                    .as_array_mut()
                    .unwrap()
                    .push(skill(QVAC, "ok-prov"));
            }),
            format!("skills[1] ({QVAC})"),
            "duplicate skill key",
        ),
        (
            "built-in adapter".into(),
            changed(|f| f["adapters"][0] = adapter("qvac")),
            "adapters[0] (qvac)".into(),
            "duplicate adapter",
        ),
        (
            "unknown skill".into(),
            changed(|f| f["services"][0]["skillKey"] = json!("no-such-skill")),
            "services[0] (ok:service)".into(),
            "unknown skillKey",
        ),
        (
            "no operations".into(),
            changed(|f| f["services"][0]["operations"] = json!([])),
            "services[0] (ok:service)".into(),
            "at least one operation",
        ),
        (
            "skill without manifest".into(),
            changed(|f| f["manifests"] = json!([])),
            "skills[0] (ok-skill)".into(),
            "no manifest",
        ),
        (
            "service of provider onem2m".into(),
            changed(|f| f["services"][0]["providerKey"] = json!("onem2m")),
            "services[0] (ok:service)".into(),
            "onem2m",
        ),
        (
            "skill of provider onem2m".into(),
            changed(|f| f["skills"][0]["providerKey"] = json!("onem2m")),
            "skills[0] (ok-skill)".into(),
            "onem2m",
        ),
        (
            "adapter onem2m".into(),
            changed(|f| f["adapters"][0]["providerKey"] = json!("onem2m")),
            "adapters[0] (onem2m)".into(),
            "onem2m",
        ),
        (
            "service id with a slash".into(),
            changed(|f| f["services"][0]["id"] = json!("ok/service")),
            "services[0] (ok/service)".into(),
            "may only contain",
        ),
        (
            "service id with a space".into(),
            changed(|f| f["services"][0]["id"] = json!("ok service")),
            "services[0] (ok service)".into(),
            "may only contain",
        ),
        (
            "service id with a question mark".into(),
            changed(|f| f["services"][0]["id"] = json!("ok?service")),
            "services[0] (ok?service)".into(),
            "may only contain",
        ),
        (
            "skill key with a hash".into(),
            changed(|f| {
                f["skills"][0]["key"] = json!("ok#skill");
                f["manifests"][0]["key"] = json!("ok#skill");
                f["services"][0]["skillKey"] = json!("ok#skill");
            }),
            "skills[0] (ok#skill)".into(),
            "may only contain",
        ),
        (
            "external handoff without handoff".into(),
            changed(|f| f["services"][0]["executionMode"] = json!("external-handoff")),
            "services[0] (ok:service)".into(),
            "needs a handoff",
        ),
    ];
    cases.extend(reserved);

    for (name, file, entry, message) in cases {
        let dir = CatalogDir::with(&[("case.json", file)]);
        let text = refusal(&name, &dir).await;
        let at = format!("{}: {entry}: ", dir.file("case.json"));
        let line = text
            .lines()
            .find(|l| l.contains(&at))
            .unwrap_or_else(|| panic!("{name}: no problem names {at:?}:\n{text}"));
        assert!(line.contains(message), "{name}: {line}");
    }

    // A duplicate across two files names the second file.
    let second = CatalogDir::with(&[("a.json", valid_file())]);
    second.write(
        "b.json",
        &catalog_file(
            vec![],
            vec![],
            vec![service(
                "ok:service",
                "ok-skill",
                "ok-prov",
                "device.control",
            )],
        ),
    );
    let text = refusal("duplicate across files", &second).await;
    assert!(
        text.contains(&format!(
            "{}: services[0] (ok:service): duplicate service id",
            second.file("b.json")
        )),
        "{text}"
    );
    assert!(
        text.contains(&second.file("a.json")),
        "names the first: {text}"
    );

    // A file that is not JSON, or not one object.
    for (raw, message) in [
        ("{ \"skills\": [", "not valid JSON"),
        ("[]", "must be one JSON object"),
    ] {
        let dir = CatalogDir::new();
        dir.write_raw("broken.json", raw);
        let text = refusal(raw, &dir).await;
        assert!(
            text.contains(&format!("{}: {message}", dir.file("broken.json"))),
            "{text}"
        );
    }
    // Only *.json files directly in the directory are read.
    let ignored = CatalogDir::with(&[("ok.json", valid_file())]);
    ignored.write_raw("notes.txt", "{ not json");
    std::fs::create_dir(ignored.path().join("nested")).unwrap();
    std::fs::write(ignored.path().join("nested/bad.json"), "{").unwrap();
    let app = App::start(
        config_with(&url, &[("PEAQOS_CATALOG_DIR", &ignored.path_str())]),
        Clock::default(),
    )
    .await;
    assert!(app.is_ok(), "other files are ignored");
}

/// The numbers of `catalogue valid: F files: S skills, M manifests, V services, A adapters`.
fn counts(stdout: &str) -> Vec<u64> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("catalogue valid: "))
        .unwrap_or_else(|| panic!("{stdout}"));
    line.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect()
}

fn catalog_check(arg: Option<&str>, env_dir: Option<&str>) -> std::process::Output {
    let cwd = tempfile::tempdir().unwrap();
    let mut command = Command::new(BIN);
    command
        .current_dir(cwd.path())
        .env_clear()
        .args(["catalog", "check"]);
    if let Some(dir) = arg {
        command.arg(dir);
    }
    if let Some(dir) = env_dir {
        command.env("PEAQOS_CATALOG_DIR", dir);
    }
    command.output().unwrap()
}

#[test]
fn catalog_check_prints_counts_or_every_problem() {
    let empty = CatalogDir::new();
    let output = catalog_check(Some(&empty.path_str()), None);
    assert!(output.status.success());
    let built_in = counts(&String::from_utf8(output.stdout).unwrap());
    assert_eq!(built_in.len(), 5);
    assert!(built_in.iter().all(|n| *n >= 1), "{built_in:?}");

    let dir = fixtures();
    for output in [
        catalog_check(Some(&dir.path_str()), None),
        catalog_check(None, Some(&dir.path_str())),
    ] {
        assert!(output.status.success());
        let with_fixtures = counts(&String::from_utf8(output.stdout).unwrap());
        let added: Vec<u64> = with_fixtures
            .iter()
            .zip(&built_in)
            .map(|(a, b)| a - b)
            .collect();
        assert_eq!(
            added,
            [1, 3, 3, 4, 1],
            "files, skills, manifests, services, adapters"
        );
    }

    let bad = CatalogDir::with(&[(
        "bad.json",
        changed(|f| {
            f["services"][0]["id"] = json!("status");
            f["adapters"][0]["providerKey"] = json!("onem2m");
        }),
    )]);
    bad.write_raw("worse.json", "not json");
    let output = catalog_check(Some(&bad.path_str()), None);
    assert!(!output.status.success());
    assert_ne!(output.status.code(), Some(101), "no panic");
    let stdout = String::from_utf8(output.stdout).unwrap();
    for expected in [
        format!("{}: services[0] (status): ", bad.file("bad.json")),
        format!("{}: adapters[0] (onem2m): ", bad.file("bad.json")),
        format!("{}: not valid JSON", bad.file("worse.json")),
        "catalogue invalid: 3 problem(s)".to_string(),
    ] {
        assert!(stdout.contains(&expected), "{expected:?} in:\n{stdout}");
    }
}

#[tokio::test]
async fn json_logs_never_carry_skill_or_provider_credentials() {
    let dir = fixtures();
    let server = ServerProcess::spawn(
        None,
        &[
            ("PEAQOS_MACHINE_IDENTITY_VERIFICATION", "disabled"),
            ("PEAQOS_AGENT_PAIRING_VERIFICATION", "disabled"),
            ("PEAQOS_RUNTIME_PROBE_INTERVAL_MS", "0"),
            ("PEAQOS_CATALOG_DIR", &dir.path_str()),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", server.base);
    let skill_secret = format!("planted-log-skill-secret-{}", rand_u64());
    let provider_secret = format!("planted-log-provider-secret-{}", rand_u64());

    let config = http
        .patch(url("/api/v1/skills/cat-beta/config"))
        .json(&json!({"credentials": {"apiKey": skill_secret}, "settings": {"mode": "x"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(config.status(), 200);
    let machine: Value = http
        .post(url("/api/v1/machines"))
        .json(
            &json!({"displayName": "m", "ownerId": "o", "machineType": "t", "runtimeProfile": "r",
                      "identityRef": format!("did:peaq:{}", rand_u64())}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let machine_id = machine["item"]["id"].as_str().unwrap().to_string();
    let activated = http
        .patch(url(&format!("/api/v1/machines/{machine_id}")))
        .json(&json!({"status": "active"}))
        .send()
        .await
        .unwrap();
    assert_eq!(activated.status(), 200);
    let pairing: Value = http
        .post(url(&format!(
            "/api/v1/machines/{machine_id}/agent-pairings"
        )))
        .json(
            &json!({"agentAddress": common::wallet::Wallet::random().address(),
                      "agentProvider": "p", "agentRole": "r"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = pairing["item"]["pairingToken"]
        .as_str()
        .unwrap()
        .to_string();
    let search = http
        .post(url("/api/v1/market/search"))
        .header(TOKEN_HEADER, &token)
        .json(&json!({"serviceType": "network.partner-console",
                      "providerCredentials": {"catProv": {"apiKey": provider_secret}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(search.status(), 201);
    let body: Value = search.json().await.unwrap();
    assert_eq!(body["item"]["quotes"][0]["serviceId"], "cat:creds");
    // A refused search with credentials in it.
    let refused = http
        .post(url("/api/v1/market/search"))
        .header(TOKEN_HEADER, &token)
        .json(&json!({"serviceType": "nope", "providerCredentials": {"catProv": {"apiKey": provider_secret}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);

    let Exited {
        status: exit,
        stdout,
        stderr,
    } = server.terminate().await;
    assert!(exit.success(), "clean exit on SIGTERM: {stderr}");
    assert!(
        stdout.lines().filter(|l| !l.trim().is_empty()).count() > 5,
        "the server logged: {stdout}"
    );
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
    }
    for secret in [&skill_secret, &provider_secret] {
        assert!(
            !stdout.contains(secret.as_str()),
            "{secret} reached the log"
        );
        assert!(!stderr.contains(secret.as_str()), "{secret} reached stderr");
    }
}

#[tokio::test]
async fn catalogue_reads_and_skill_config_need_the_api_key() {
    for backend in backends() {
        let srv = start_server(
            &backend,
            None,
            &[
                ("PEAQOS_REQUIRE_API_AUTH", "true"),
                ("PEAQOS_API_KEY", "k-platform"),
            ],
        )
        .await;
        let bare = reqwest::Client::new();
        for path in [
            "/api/v1/skills",
            "/api/v1/skills/qvac-private-inference",
            "/api/v1/skills/qvac-private-inference/manifest",
            "/api/v1/market/adapters",
            "/api/v1/market/adapters/qvac",
        ] {
            expect_error(
                bare.get(srv.url(path)).send().await.unwrap(),
                StatusCode::UNAUTHORIZED,
                "AUTH_REQUIRED",
            )
            .await;
            expect_json(srv.get(path).await, StatusCode::OK).await;
        }
        expect_error(
            bare.patch(srv.url("/api/v1/skills/qvac-private-inference/config"))
                .json(&json!({"enabled": false}))
                .send()
                .await
                .unwrap(),
            StatusCode::UNAUTHORIZED,
            "AUTH_REQUIRED",
        )
        .await;
        assert!(audit(&srv, "skill.config-updated").await.is_empty());
        srv.stop().await;
    }
}

/// 32 bytes of base64 for `PEAQOS_SECRETS_KEY`.
fn secrets_key(byte: u8) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

#[tokio::test]
async fn credentials_that_no_longer_open_can_still_be_replaced_or_cleared() {
    for backend in backends() {
        let dir = fixtures();
        let old_key = secrets_key(1);
        let srv = start_server(&backend, Some(&dir), &[("PEAQOS_SECRETS_KEY", &old_key)]).await;
        let path = "/api/v1/skills/cat-beta/config";
        let set = srv
            .patch_json(path, &json!({"credentials": {"apiKey": "old-secret"}}))
            .await;
        assert_eq!(
            expect_json(set, StatusCode::OK).await["item"]["hasCredentials"],
            true
        );
        let url = srv.db.url.clone();
        let db = srv.stop_keep_db().await;

        // The operator changed PEAQOS_SECRETS_KEY: the stored set no longer opens.
        let new_key = secrets_key(2);
        let srv = common::TestServer::start_on(
            db,
            &url,
            &[
                ("PEAQOS_SECRETS_KEY", new_key.as_str()),
                ("PEAQOS_CATALOG_DIR", dir.path_str().as_str()),
            ],
        )
        .await;
        let enabled = expect_json(
            srv.patch_json(path, &json!({"enabled": false})).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(enabled["item"]["enabled"], false);
        assert_eq!(enabled["item"]["hasCredentials"], true, "kept as sealed");
        let replaced = srv
            .patch_json(path, &json!({"credentials": {"apiKey": "new-secret"}}))
            .await;
        assert_eq!(
            expect_json(replaced, StatusCode::OK).await["item"]["hasCredentials"],
            true
        );
        let cleared = srv.patch_json(path, &json!({"credentials": {}})).await;
        assert_eq!(
            expect_json(cleared, StatusCode::OK).await["item"]["hasCredentials"],
            false
        );
        srv.stop().await;
    }
}

#[tokio::test]
async fn concurrent_config_changes_of_one_skill_are_all_kept() {
    for backend in backends() {
        let dir = fixtures();
        let srv = start_server(&backend, Some(&dir), &[]).await;
        let path = "/api/v1/skills/cat-beta/config";
        // Round 0 races on the first insert; later rounds on the stored row.
        for round in 0..6 {
            let on = round % 2 == 0;
            let credentials = if on {
                json!({"apiKey": format!("k{round}")})
            } else {
                json!({})
            };
            let bodies = [
                json!({"enabled": on}),
                json!({"settings": {"round": round}}),
                json!({"credentials": credentials}),
            ];
            let answers = futures_util::future::join_all(
                bodies.iter().map(|body| srv.patch_json(path, body)),
            )
            .await;
            for (body, answer) in bodies.iter().zip(answers) {
                match answer.status() {
                    StatusCode::OK => {}
                    // The loser of a first-insert race is told to retry.
                    StatusCode::CONFLICT => {
                        expect_json(srv.patch_json(path, body).await, StatusCode::OK).await;
                    }
                    other => panic!("round {round}: {other}"),
                }
            }
            // An empty PATCH changes nothing and answers the stored config.
            let item =
                expect_json(srv.patch_json(path, &json!({})).await, StatusCode::OK).await["item"]
                    .clone();
            assert_eq!(item["enabled"], on, "round {round}: {item}");
            assert_eq!(item["settings"]["round"], round, "round {round}: {item}");
            assert_eq!(item["hasCredentials"], on, "round {round}: {item}");
        }
        srv.stop().await;
    }
}
