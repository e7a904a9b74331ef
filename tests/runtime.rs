//! Machine-side agents, heartbeats, runtime endpoints, leases, the prober and the background
//! lease (spec agents-and-runtime.md), over HTTP on every backend.

mod common;

use std::time::Duration;

use common::fake_mcr::{Behaviour, FakeMcr, machine_body};
use common::fake_runtime::{FakeRuntime, dead_url};
use common::{Backend, TestServer, backends, expect_error, json_of};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const DISABLED: (&str, &str) = ("PEAQOS_MACHINE_IDENTITY_VERIFICATION", "disabled");
/// Keeps the prober out of tests that do not look at it.
const NO_PROBES: (&str, &str) = ("PEAQOS_RUNTIME_PROBE_INTERVAL_MS", "0");

async fn active_machine(srv: &TestServer, did: &str) -> String {
    let body = json!({"displayName": "m", "ownerId": "o", "machineType": "t", "runtimeProfile": "r", "identityRef": did});
    let machine = json_of(srv.post_json("/api/v1/machines", &body).await).await["item"].clone();
    let id = machine["id"].as_str().unwrap().to_string();
    let response = srv
        .request(Method::PATCH, &format!("/api/v1/machines/{id}"))
        .json(&json!({"status": "active"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    id
}

async fn enroll(srv: &TestServer, machine_id: &str, body: Value) -> Value {
    let response = srv
        .post_json(
            &format!("/api/v1/machines/{machine_id}/agents/enrollment"),
            &body,
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    json_of(response).await["item"].clone()
}

async fn heartbeat(srv: &TestServer, body: &Value) -> reqwest::Response {
    srv.post_json("/api/v1/machine-agents/heartbeat", body)
        .await
}

fn beat(machine_id: &str, agent: &Value, endpoints: Value) -> Value {
    json!({"machineId": machine_id, "agentId": agent["id"], "agentToken": agent["agentToken"], "endpoints": endpoints})
}

async fn endpoint(srv: &TestServer, machine_id: &str, key: &str) -> Value {
    json_of(
        srv.get(&format!(
            "/api/v1/machines/{machine_id}/runtime-endpoints/{key}"
        ))
        .await,
    )
    .await["item"]
        .clone()
}

async fn events(srv: &TestServer, event_type: &str) -> Vec<Value> {
    json_of(
        srv.get(&format!("/api/v1/audit-events?type={event_type}"))
            .await,
    )
    .await["items"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn enrollment_issues_a_one_time_token() {
    for backend in backends() {
        let srv = TestServer::start(&backend, &[DISABLED, NO_PROBES]).await;
        let machine = active_machine(&srv, "did:peaq:1").await;
        let agent = enroll(&srv, &machine, json!({})).await;
        let token = agent["agentToken"].as_str().unwrap();
        assert!(
            token.starts_with("mat_") && token.len() == 4 + 43,
            "{token}"
        );
        assert_eq!(agent["provisioningToken"], agent["agentToken"]);
        assert!(agent["id"].as_str().unwrap().starts_with("mag_"));
        assert_eq!(agent["status"], "provisioned");
        assert_eq!(agent["label"], "Machine runtime agent");
        assert_eq!(agent["allowedProviderKeys"], json!(["qvac"]));
        assert_eq!(agent["hasAgentToken"], true);
        assert!(agent["lastSeenAt"].is_null());

        let custom = enroll(
            &srv,
            &machine,
            json!({"label": "Edge box", "providerKeys": ["QVAC", "ollama", "qvac"]}),
        )
        .await;
        assert_eq!(custom["allowedProviderKeys"], json!(["qvac", "ollama"]));
        let both = enroll(
            &srv,
            &machine,
            json!({"allowedProviderKeys": ["vllm"], "providerKeys": ["ollama"]}),
        )
        .await;
        assert_eq!(
            both["allowedProviderKeys"],
            json!(["vllm"]),
            "allowedProviderKeys wins"
        );

        for (body, field) in [
            (json!({"allowedProviderKeys": []}), "allowedProviderKeys"),
            (
                json!({"allowedProviderKeys": ["bad key"]}),
                "allowedProviderKeys[0]",
            ),
            (json!({"label": " "}), "label"),
        ] {
            let response = srv
                .post_json(
                    &format!("/api/v1/machines/{machine}/agents/enrollment"),
                    &body,
                )
                .await;
            let error = expect_error(response, StatusCode::BAD_REQUEST, "VALIDATION_ERROR").await;
            assert_eq!(error["details"]["field"], field);
        }

        let list = json_of(srv.get(&format!("/api/v1/machines/{machine}/agents")).await).await;
        let items = list["items"].as_array().unwrap();
        assert_eq!(items.len(), 3);
        assert!(
            items
                .iter()
                .all(|a| a.get("agentToken").is_none() && a.get("provisioningToken").is_none())
        );
        let enrolled = events(&srv, "machine-agent.enrolled").await;
        assert_eq!(enrolled.len(), 3);
        assert_eq!(
            enrolled[2]["payload"],
            json!({"label": "Machine runtime agent", "allowedProviderKeys": ["qvac"]})
        );

        // Gate B: a draft machine takes no agents.
        let draft = json_of(srv.post_json("/api/v1/machines", &json!({"displayName": "d", "ownerId": "o", "machineType": "t", "runtimeProfile": "r", "identityRef": "did:peaq:2"})).await).await["item"]["id"].as_str().unwrap().to_string();
        let error = expect_error(
            srv.post_json(
                &format!("/api/v1/machines/{draft}/agents/enrollment"),
                &json!({}),
            )
            .await,
            StatusCode::CONFLICT,
            "MACHINE_NOT_ACTIVE",
        )
        .await;
        assert_eq!(error["details"]["status"], "draft");
        expect_error(
            srv.get(&format!("/api/v1/machines/{draft}/agents")).await,
            StatusCode::CONFLICT,
            "MACHINE_NOT_ACTIVE",
        )
        .await;
        expect_error(
            srv.get("/api/v1/machines/mach_none/agents").await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;
        srv.stop().await;
    }
}

#[tokio::test]
async fn heartbeats_lease_endpoints_in_the_shape_both_clients_decode() {
    for backend in backends() {
        let srv = TestServer::start(
            &backend,
            &[
                DISABLED,
                NO_PROBES,
                ("PEAQOS_REQUIRE_API_AUTH", "true"),
                ("PEAQOS_API_KEY", "k"),
            ],
        )
        .await;
        let keyed = |r: reqwest::RequestBuilder| r.header("x-api-key", "k");
        let body = json!({"displayName": "m", "ownerId": "o", "machineType": "t", "runtimeProfile": "r", "identityRef": "did:peaq:3"});
        let machine = json_of(
            keyed(srv.request(Method::POST, "/api/v1/machines"))
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await["item"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        keyed(srv.request(Method::PATCH, &format!("/api/v1/machines/{machine}")))
            .json(&json!({"status": "active"}))
            .send()
            .await
            .unwrap();
        let agent = json_of(
            keyed(srv.request(
                Method::POST,
                &format!("/api/v1/machines/{machine}/agents/enrollment"),
            ))
            .json(&json!({"allowedProviderKeys": ["qvac", "ollama"]}))
            .send()
            .await
            .unwrap(),
        )
        .await["item"]
            .clone();

        // What the official clients send: no API key, snake_case keys, explicit nulls.
        let sent = json!({
            "machineId": machine, "agentId": agent["id"], "agentToken": agent["agentToken"], "leaseTtlSeconds": null,
            "endpoints": [{
                "provider_key": "QVAC", "endpoint_base_url": "HTTP://LocalHost:8000/v1/chat?x=1", "label": null,
                "auth_type": "bearer", "auth_token": "planted-runtime-token-5b1e", "model_alias": "llama", "network_scope": null,
                "probe_path": null, "status": null
            }]
        });
        let response = heartbeat(&srv, &sent).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = json_of(response).await;
        let item = &body["item"];
        assert_eq!(item["agentId"], agent["id"]);
        assert_eq!(item["id"], agent["id"]);
        assert_eq!(item["leaseTtlSeconds"], 120);
        assert_eq!(item["status"], "active");
        assert!(item["observedAt"].is_string() && item["lastSeenAt"].is_string());
        assert!(item.get("agentToken").is_none());
        let entry = &item["endpoints"][0];
        assert_eq!(entry["providerKey"], "qvac");
        assert_eq!(entry["endpointBaseUrl"], "http://localhost:8000");
        assert_eq!(entry["status"], "active");
        assert!(entry["leaseExpiresAt"].is_string());
        assert!(entry.get("healthError").is_some());
        assert_eq!(entry["source"], "agent");
        assert_eq!(entry["agentId"], agent["id"]);
        assert_eq!(entry["label"], "QVAC runtime");
        assert_eq!(entry["probePath"], "/v1/models");
        assert_eq!(entry["networkScope"], "loopback");
        assert_eq!(entry["authType"], "bearer");
        assert_eq!(entry["hasAuthToken"], true);
        assert_eq!(body["endpoints"], item["endpoints"]);
        assert!(!body.to_string().contains("planted-runtime-token"));

        // The other token locations, camelCase keys, the lease alias and its precedence.
        let token = agent["agentToken"].as_str().unwrap();
        let mut beat2 = json!({"machineId": machine, "agentId": agent["id"], "leaseSeconds": 300, "leaseTtlSeconds": 60,
                               "endpoints": [{"providerKey": "ollama", "provider_key": "ignored", "endpointBaseUrl": "http://10.0.0.5:11434"}]});
        let response = srv
            .request(Method::POST, "/api/v1/machine-agents/heartbeat")
            .bearer_auth(token)
            .json(&beat2)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = json_of(response).await;
        assert_eq!(body["item"]["leaseTtlSeconds"], 300);
        let keys: Vec<&str> = body["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["providerKey"].as_str().unwrap())
            .collect();
        assert_eq!(
            keys,
            ["ollama", "qvac"],
            "every endpoint the agent owns, by provider key"
        );
        assert_eq!(body["endpoints"][0]["networkScope"], "lan");
        assert_eq!(body["endpoints"][0]["probePath"], "/health");
        beat2.as_object_mut().unwrap().remove("leaseSeconds");
        let response = srv
            .request(Method::POST, "/api/v1/machine-agents/heartbeat")
            .header("x-agent-pairing-token", token)
            .json(&beat2)
            .send()
            .await
            .unwrap();
        assert_eq!(json_of(response).await["item"]["leaseTtlSeconds"], 60);

        // The stored token survives a heartbeat that does not resend it.
        let again = json!({"machineId": machine, "agentId": agent["id"], "agentToken": token,
                           "endpoints": [{"provider_key": "qvac", "endpoint_base_url": "http://localhost:8000", "auth_type": "bearer"}]});
        let body = json_of(heartbeat(&srv, &again).await).await;
        assert_eq!(body["endpoints"][1]["hasAuthToken"], true);

        let audit = keyed(srv.request(
            Method::GET,
            "/api/v1/audit-events?type=machine-agent.heartbeat",
        ))
        .send()
        .await
        .unwrap();
        let heartbeats = json_of(audit).await["items"].as_array().unwrap().clone();
        assert_eq!(heartbeats.len(), 4);
        assert_eq!(
            heartbeats[3]["payload"],
            json!({"leaseSeconds": 120, "endpoints": ["qvac"], "statusFrom": "provisioned"})
        );
        assert_eq!(heartbeats[0]["payload"]["statusFrom"], Value::Null);
        srv.stop().await;
    }
}

#[tokio::test]
async fn heartbeat_errors_follow_the_spec_order() {
    for backend in backends() {
        let srv = TestServer::start(&backend, &[DISABLED, NO_PROBES]).await;
        let machine = active_machine(&srv, "did:peaq:4").await;
        let other_machine = active_machine(&srv, "did:peaq:5").await;
        let agent = enroll(&srv, &machine, json!({})).await;
        let token = agent["agentToken"].as_str().unwrap().to_string();
        let qvac = json!([{"providerKey": "qvac", "endpointBaseUrl": "http://127.0.0.1:9"}]);
        let check = |body: Value, status: StatusCode, code: &'static str| {
            let srv = &srv;
            async move { expect_error(heartbeat(srv, &body).await, status, code).await }
        };

        let error = check(
            json!({"agentId": agent["id"], "agentToken": token}),
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(error["details"]["field"], "machineId");
        let error = check(
            json!({"machineId": machine, "agentId": 7}),
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(error["details"]["field"], "agentId");
        check(
            json!({"machineId": machine, "agentId": agent["id"]}),
            StatusCode::UNAUTHORIZED,
            "AGENT_AUTH_REQUIRED",
        )
        .await;
        let response = srv
            .request(Method::POST, "/api/v1/machine-agents/heartbeat")
            .bearer_auth("mat_other")
            .json(&json!({"machineId": machine, "agentId": agent["id"], "agentToken": token}))
            .send()
            .await
            .unwrap();
        let error = expect_error(response, StatusCode::UNAUTHORIZED, "AGENT_AUTH_INVALID").await;
        assert_eq!(error["details"]["reason"], "conflicting-tokens");
        check(
            json!({"machineId": machine, "agentId": "mag_unknown", "agentToken": token}),
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;
        check(
            json!({"machineId": other_machine, "agentId": agent["id"], "agentToken": token}),
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;
        check(
            json!({"machineId": machine, "agentId": agent["id"], "agentToken": "mat_wrong"}),
            StatusCode::UNAUTHORIZED,
            "AGENT_AUTH_INVALID",
        )
        .await;

        for (lease, field) in [
            (json!({"leaseSeconds": 29}), "leaseSeconds"),
            (json!({"leaseTtlSeconds": 86_401}), "leaseTtlSeconds"),
            (json!({"leaseSeconds": 1.5}), "leaseSeconds"),
        ] {
            let mut body = beat(&machine, &agent, qvac.clone());
            for (k, v) in lease.as_object().unwrap() {
                body[k] = v.clone();
            }
            let error = check(body, StatusCode::BAD_REQUEST, "VALIDATION_ERROR").await;
            assert_eq!(error["details"]["field"], field);
        }
        for (entries, field) in [
            (
                json!([{"providerKey": "qvac"}]),
                "endpoints[0].endpointBaseUrl",
            ),
            (
                json!([{"providerKey": "qvac", "endpointBaseUrl": "ftp://x"}]),
                "endpoints[0].endpointBaseUrl",
            ),
            (
                json!([{"providerKey": "qvac", "endpointBaseUrl": "http://u:p@h"}]),
                "endpoints[0].endpointBaseUrl",
            ),
            (
                json!([{"providerKey": "qvac", "endpointBaseUrl": "http://h", "auth_type": "magic"}]),
                "endpoints[0].authType",
            ),
            (
                json!([{"providerKey": "qvac", "endpointBaseUrl": "http://h", "probePath": "health"}]),
                "endpoints[0].probePath",
            ),
            (
                json!([{"providerKey": "qvac", "endpointBaseUrl": "http://h"}, {"providerKey": "QVAC", "endpointBaseUrl": "http://h"}]),
                "endpoints[1].providerKey",
            ),
            (json!("qvac"), "endpoints"),
        ] {
            let error = check(
                beat(&machine, &agent, entries.clone()),
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
            )
            .await;
            assert_eq!(error["details"]["field"], field, "{entries}");
        }
        let error = check(
            beat(
                &machine,
                &agent,
                json!([{"providerKey": "qvac", "endpointBaseUrl": "http://169.254.169.254"}]),
            ),
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(error["details"]["reason"], "blocked-address");

        // A provider key outside the allow-list: refused, and nothing is applied.
        let error = check(
            beat(&machine, &agent, json!([{"providerKey": "qvac", "endpointBaseUrl": "http://127.0.0.1:9"}, {"providerKey": "ollama", "endpointBaseUrl": "http://127.0.0.1:9"}])),
            StatusCode::FORBIDDEN,
            "AGENT_POLICY_DENIED",
        )
        .await;
        assert_eq!(error["details"]["providerKey"], "ollama");
        let list = json_of(
            srv.get(&format!("/api/v1/machines/{machine}/runtime-endpoints"))
                .await,
        )
        .await;
        assert_eq!(list["items"], json!([]));
        assert!(events(&srv, "machine-agent.heartbeat").await.is_empty());

        // Gate B.
        srv.request(Method::PATCH, &format!("/api/v1/machines/{machine}"))
            .json(&json!({"status": "degraded"}))
            .send()
            .await
            .unwrap();
        check(
            beat(&machine, &agent, qvac.clone()),
            StatusCode::CONFLICT,
            "MACHINE_NOT_ACTIVE",
        )
        .await;
        srv.request(Method::PATCH, &format!("/api/v1/machines/{machine}"))
            .json(&json!({"status": "active"}))
            .send()
            .await
            .unwrap();

        // Revoked: recognised by its token, answered 403; its endpoints read unreachable at once.
        assert_eq!(
            heartbeat(&srv, &beat(&machine, &agent, qvac.clone()))
                .await
                .status(),
            StatusCode::OK
        );
        assert_eq!(endpoint(&srv, &machine, "qvac").await["status"], "active");
        let path = format!(
            "/api/v1/machines/{machine}/agents/{}",
            agent["id"].as_str().unwrap()
        );
        assert_eq!(
            srv.request(Method::DELETE, &path)
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            srv.request(Method::DELETE, &path)
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::NO_CONTENT
        );
        let error = check(
            beat(&machine, &agent, qvac.clone()),
            StatusCode::FORBIDDEN,
            "AGENT_PAIRING_INACTIVE",
        )
        .await;
        assert_eq!(error["details"]["status"], "revoked");
        assert_eq!(
            endpoint(&srv, &machine, "qvac").await["status"],
            "unreachable"
        );
        let revoked = events(&srv, "machine-agent.revoked").await;
        assert_eq!(revoked.len(), 1);
        assert_eq!(revoked[0]["payload"], json!({"endpointsExpired": ["qvac"]}));
        let listed =
            json_of(srv.get(&format!("/api/v1/machines/{machine}/agents")).await).await["items"][0]
                .clone();
        assert_eq!(listed["status"], "revoked");
        assert_eq!(listed["hasAgentToken"], false);
        expect_error(
            srv.request(
                Method::DELETE,
                &format!(
                    "/api/v1/machines/{other_machine}/agents/{}",
                    agent["id"].as_str().unwrap()
                ),
            )
            .send()
            .await
            .unwrap(),
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;
        srv.stop().await;
    }
}

/// Gate B on the heartbeat re-verifies the identity from the MCR cache. On a miss the MCR is
/// asked with no database connection held, so a stalled MCR cannot starve the pool: here more
/// heartbeats than the pool has connections wait on it longer than the pool's acquire timeout
/// (3 s) while another request is served at once.
#[tokio::test]
async fn heartbeats_wait_for_the_mcr_without_holding_database_connections() {
    const DID: &str = "did:peaq:7";
    const CONTROLLER: &str = "0x00000000000000000000000000000000000000c7";
    for backend in backends() {
        let mcr = FakeMcr::start().await;
        mcr.register(DID, 7, CONTROLLER, true);
        let srv = TestServer::start(
            &backend,
            &[
                ("PEAQOS_MACHINE_IDENTITY_VERIFICATION", "optional"),
                ("PEAQOS_MCR_API_URL", mcr.url.as_str()),
                ("PEAQOS_MCR_TIMEOUT_MS", "10000"),
                NO_PROBES,
            ],
        )
        .await;
        let machine = active_machine(&srv, DID).await;
        let agent = enroll(&srv, &machine, json!({})).await;
        let body = beat(&machine, &agent, json!([]));

        // A warm cache answers Gate B.
        let asked = mcr.requests(DID);
        assert_eq!(heartbeat(&srv, &body).await.status(), StatusCode::OK);
        assert_eq!(mcr.requests(DID), asked, "the cache answered");

        // The cache expires and the MCR stalls for 4 s.
        srv.clock.advance_ms(30_001);
        mcr.set(
            DID,
            Behaviour::Slow(
                Duration::from_secs(4),
                Box::new(Behaviour::Machine(machine_body(DID, 7, CONTROLLER, true))),
            ),
        );
        let misses = srv.app.mcr.stats().misses;
        let beats: Vec<_> = (0..24)
            .map(|_| {
                let request = srv
                    .http
                    .post(srv.url("/api/v1/machine-agents/heartbeat"))
                    .json(&body);
                tokio::spawn(async move { request.send().await.unwrap().status() })
            })
            .collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while srv.app.mcr.stats().misses < misses + 24 {
            assert!(
                std::time::Instant::now() < deadline,
                "every heartbeat reaches the MCR look-up; none waits for a database connection"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let started = std::time::Instant::now();
        let response = srv.get("/api/v1/audit-events?limit=1").await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "the database serves others while 24 heartbeats wait on the MCR"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
        for beat in beats {
            assert_eq!(beat.await.unwrap(), StatusCode::OK);
        }
        assert_eq!(
            mcr.requests(DID),
            asked + 1,
            "the waiters shared one look-up"
        );

        // An MCR failure on a miss refuses the heartbeat and writes nothing.
        let agents = format!("/api/v1/machines/{machine}/agents");
        let seen =
            || async { json_of(srv.get(&agents).await).await["items"][0]["lastSeenAt"].clone() };
        let last_seen = seen().await;
        srv.clock.advance_ms(30_001);
        mcr.set(DID, Behaviour::Status(502));
        expect_error(
            heartbeat(&srv, &body).await,
            StatusCode::SERVICE_UNAVAILABLE,
            "PEAQOS_IDENTITY_UNAVAILABLE",
        )
        .await;
        mcr.remove(DID);
        expect_error(
            heartbeat(&srv, &body).await,
            StatusCode::FORBIDDEN,
            "MACHINE_NOT_ACTIVATED",
        )
        .await;
        mcr.register(DID, 7, CONTROLLER, true);
        assert_eq!(seen().await, last_seen, "nothing was written");
        srv.stop().await;
    }
}

#[tokio::test]
async fn unrenewed_leases_read_unreachable_and_the_sweeper_persists_it() {
    for backend in backends() {
        let srv = TestServer::start(&backend, &[DISABLED, NO_PROBES]).await;
        let machine = active_machine(&srv, "did:peaq:6").await;
        let agent = enroll(&srv, &machine, json!({})).await;
        let mut body = beat(
            &machine,
            &agent,
            json!([{"providerKey": "qvac", "endpointBaseUrl": "http://127.0.0.1:9"}]),
        );
        body["leaseSeconds"] = json!(30);
        assert_eq!(heartbeat(&srv, &body).await.status(), StatusCode::OK);
        srv.clock.advance_ms(29_000);
        assert_eq!(endpoint(&srv, &machine, "qvac").await["status"], "active");
        srv.clock.advance_ms(1_001);
        assert_eq!(
            endpoint(&srv, &machine, "qvac").await["status"],
            "unreachable",
            "effective status on read"
        );

        assert_eq!(
            peaqos_orchestrator::worker::sweep(&srv.app).await.unwrap(),
            1
        );
        assert_eq!(
            peaqos_orchestrator::worker::sweep(&srv.app).await.unwrap(),
            0,
            "only status changes are written"
        );
        let stored: String = sqlx::query_scalar("SELECT status FROM runtime_endpoints")
            .fetch_one(&srv.app.store)
            .await
            .unwrap();
        assert_eq!(stored, "unreachable");
        let changes = events(&srv, "runtime-endpoint.upserted").await;
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0]["actor"], "system:machine-markets");
        assert_eq!(changes[0]["payload"]["statusTo"], "unreachable");
        assert_eq!(changes[0]["payload"]["reason"], "lease-expired");

        // A renewal brings it back.
        assert_eq!(heartbeat(&srv, &body).await.status(), StatusCode::OK);
        assert_eq!(endpoint(&srv, &machine, "qvac").await["status"], "active");
        srv.stop().await;
    }
}

#[tokio::test]
async fn manual_runtime_endpoints() {
    for backend in backends() {
        let srv = TestServer::start(&backend, &[DISABLED, NO_PROBES]).await;
        let machine = active_machine(&srv, "did:peaq:7").await;
        let base = format!("/api/v1/machines/{machine}/runtime-endpoints");
        let put = |key: &str, body: Value| {
            srv.request(Method::PUT, &format!("{base}/{key}"))
                .json(&body)
                .send()
        };

        let response = put("QVAC", json!({"endpointBaseUrl": "https://Models.Example.com:8443/v1?q=1", "authType": "api-key", "authToken": "planted-manual-token-9d2c"})).await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let created = json_of(response).await["item"].clone();
        assert!(created["id"].as_str().unwrap().starts_with("rep_"));
        assert_eq!(created["providerKey"], "qvac");
        assert_eq!(
            created["endpointBaseUrl"],
            "https://models.example.com:8443"
        );
        assert_eq!(created["source"], "manual");
        assert!(created["agentId"].is_null());
        assert_eq!(created["label"], "QVAC runtime");
        assert_eq!(created["probePath"], "/v1/models");
        assert_eq!(created["networkScope"], "public");
        assert_eq!(created["status"], "active");
        assert!(created["leaseExpiresAt"].is_null());
        assert_eq!(created["hasAuthToken"], true);
        assert!(!created.to_string().contains("planted-manual-token"));

        // Replaced as a whole; the token kept while the auth type is unchanged, cleared by `none`.
        let response = put("qvac", json!({"endpointBaseUrl": "https://models.example.com:8443", "authType": "api-key", "label": "Main"})).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let updated = json_of(response).await["item"].clone();
        assert_eq!(updated["id"], created["id"]);
        assert_eq!(updated["hasAuthToken"], true);
        assert_eq!(updated["label"], "Main");
        let cleared = json_of(
            put(
                "qvac",
                json!({"endpointBaseUrl": "https://models.example.com:8443"}),
            )
            .await
            .unwrap(),
        )
        .await["item"]
            .clone();
        assert_eq!(cleared["hasAuthToken"], false);
        assert_eq!(cleared["label"], "QVAC runtime");

        let other = json_of(put("ollama", json!({"endpointBaseUrl": "http://192.168.1.20:11434", "leaseExpiresAt": "2030-01-01T01:00:00+01:00", "status": "degraded"})).await.unwrap()).await["item"].clone();
        assert_eq!(other["probePath"], "/health");
        assert_eq!(other["networkScope"], "lan");
        assert_eq!(other["leaseExpiresAt"], "2030-01-01T00:00:00.000Z");
        assert_eq!(other["status"], "degraded");

        let got = endpoint(&srv, &machine, "OLLAMA").await;
        assert_eq!(got["id"], other["id"]);
        let list = json_of(srv.get(&base).await).await;
        assert_eq!(list["items"].as_array().unwrap().len(), 2);
        expect_error(
            srv.get(&format!("{base}/vllm")).await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;

        for (body, field) in [
            (json!({}), "endpointBaseUrl"),
            (json!({"endpointBaseUrl": "not a url"}), "endpointBaseUrl"),
            (
                json!({"endpointBaseUrl": "http://h", "networkScope": "moon"}),
                "networkScope",
            ),
            (
                json!({"endpointBaseUrl": "http://h", "status": "up"}),
                "status",
            ),
            (
                json!({"endpointBaseUrl": "http://h", "leaseExpiresAt": "tomorrow"}),
                "leaseExpiresAt",
            ),
        ] {
            let error = expect_error(
                put("qvac", body.clone()).await.unwrap(),
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
            )
            .await;
            assert_eq!(error["details"]["field"], field, "{body}");
        }
        let error = expect_error(
            put("qvac", json!({"endpointBaseUrl": "http://[fe80::1]:80"}))
                .await
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(error["details"]["reason"], "blocked-address");
        let error = expect_error(
            put("bad key!", json!({"endpointBaseUrl": "http://h"}))
                .await
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(error["details"]["field"], "providerKey");

        // A heartbeat takes a manual endpoint over.
        let agent = enroll(&srv, &machine, json!({"allowedProviderKeys": ["ollama"]})).await;
        let body = json_of(
            heartbeat(
                &srv,
                &beat(
                    &machine,
                    &agent,
                    json!([{"providerKey": "ollama", "endpointBaseUrl": "http://127.0.0.1:11434"}]),
                ),
            )
            .await,
        )
        .await;
        assert_eq!(body["endpoints"][0]["source"], "agent");
        assert_eq!(body["endpoints"][0]["id"], other["id"]);

        assert_eq!(
            srv.request(Method::DELETE, &format!("{base}/QVAC"))
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::NO_CONTENT
        );
        expect_error(
            srv.request(Method::DELETE, &format!("{base}/qvac"))
                .send()
                .await
                .unwrap(),
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;
        let upserted = events(&srv, "runtime-endpoint.upserted").await;
        assert_eq!(upserted.len(), 4);
        assert_eq!(upserted[3]["payload"]["created"], true);
        assert_eq!(upserted[2]["payload"]["created"], false);
        let deleted = events(&srv, "runtime-endpoint.deleted").await;
        assert_eq!(
            deleted[0]["payload"],
            json!({"providerKey": "qvac", "source": "manual"})
        );
        assert_eq!(
            deleted[0]["resourceId"], created["id"],
            "the same resource id as its upserts"
        );
        srv.stop().await;
    }
}

async fn wait_for_status(srv: &TestServer, machine: &str, key: &str, status: &str) -> Value {
    for _ in 0..250 {
        let got = endpoint(srv, machine, key).await;
        if got["status"] == status && got["lastCheckedAt"].is_string() {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{key} never became {status}: {}",
        endpoint(srv, machine, key).await
    );
}

#[tokio::test]
async fn the_prober_finds_healthy_failing_and_dead_endpoints() {
    for backend in backends() {
        let healthy = FakeRuntime::start(200).await;
        let failing = FakeRuntime::start(500).await;
        let silent = FakeRuntime::start(0).await;
        let srv = TestServer::start(
            &backend,
            &[DISABLED, ("PEAQOS_RUNTIME_PROBE_INTERVAL_MS", "200")],
        )
        .await;
        let machine = active_machine(&srv, "did:peaq:8").await;
        let base = format!("/api/v1/machines/{machine}/runtime-endpoints");
        for (key, url, extra) in [
            (
                "healthy",
                healthy.url.clone(),
                json!({"authType": "bearer", "authToken": "planted-probe-token-c3"}),
            ),
            ("failing", failing.url.clone(), json!({})),
            ("dead", dead_url(), json!({})),
        ] {
            let mut body = json!({"endpointBaseUrl": url});
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            let response = srv
                .request(Method::PUT, &format!("{base}/{key}"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::CREATED);
        }
        let ok = wait_for_status(&srv, &machine, "healthy", "active").await;
        assert!(ok["lastHealthyAt"].is_string());
        assert!(ok["healthError"].is_null());
        assert!(
            healthy
                .auth_headers()
                .contains(&"authorization: Bearer planted-probe-token-c3".to_string())
        );
        let degraded = wait_for_status(&srv, &machine, "failing", "degraded").await;
        assert_eq!(degraded["healthError"], "HTTP 500");
        let dead = wait_for_status(&srv, &machine, "dead", "unreachable").await;
        assert!(dead["healthError"].is_string());

        // A failing endpoint recovers.
        failing.set_status(200);
        wait_for_status(&srv, &machine, "failing", "active").await;
        let changes = events(&srv, "runtime-endpoint.upserted").await;
        assert!(
            changes
                .iter()
                .any(|e| e["actor"] == "system:machine-markets"
                    && e["payload"]["statusTo"] == "degraded")
        );
        assert!(
            changes
                .iter()
                .any(|e| e["actor"] == "system:machine-markets"
                    && e["payload"]["statusTo"] == "active"
                    && e["payload"]["statusFrom"] == "degraded")
        );
        assert!(
            !json_of(srv.get("/api/v1/audit-events?limit=500").await)
                .await
                .to_string()
                .contains("planted-probe-token")
        );

        // Never answering: marked once the 5 s probe timeout passes.
        let response = srv
            .request(Method::PUT, &format!("{base}/silent"))
            .json(&json!({"endpointBaseUrl": silent.url}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let mut marked = false;
        for _ in 0..250 {
            if endpoint(&srv, &machine, "silent").await["status"] == "unreachable" {
                marked = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(marked, "a silent endpoint is marked unreachable");
        assert_eq!(
            endpoint(&srv, &machine, "silent").await["healthError"],
            "timeout"
        );
        srv.stop().await;
    }
}

#[tokio::test]
async fn endpoints_in_a_scope_that_is_not_allowed_are_never_called() {
    let runtime = FakeRuntime::start(200).await;
    let srv = TestServer::start(
        &Backend::Sqlite,
        &[
            DISABLED,
            ("PEAQOS_RUNTIME_PROBE_INTERVAL_MS", "200"),
            ("PEAQOS_RUNTIME_ALLOWED_NETWORK_SCOPES", "public,vpn"),
        ],
    )
    .await;
    let machine = active_machine(&srv, "did:peaq:9").await;
    let response = srv
        .request(
            Method::PUT,
            &format!("/api/v1/machines/{machine}/runtime-endpoints/local"),
        )
        .json(&json!({"endpointBaseUrl": runtime.url}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(response).await["item"]["networkScope"], "loopback");
    let got = wait_for_status(&srv, &machine, "local", "unreachable").await;
    assert_eq!(got["healthError"], "network scope not allowed");
    assert_eq!(runtime.requests(), 0);
    srv.stop().await;
}

#[tokio::test]
async fn one_replica_at_a_time_runs_background_work() {
    for backend in backends() {
        let a = TestServer::start(&backend, &[DISABLED, NO_PROBES]).await;
        let b = TestServer::start_on(
            common::TestDb::create(&Backend::Sqlite).await,
            &a.db.url,
            &[DISABLED, NO_PROBES],
        )
        .await;
        use std::sync::atomic::Ordering::Relaxed;
        let leaders = || {
            [
                a.app.worker.leading.load(Relaxed),
                b.app.worker.leading.load(Relaxed),
            ]
        };
        let mut settled = false;
        for _ in 0..40 {
            if leaders().iter().filter(|l| **l).count() == 1 {
                settled = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(settled, "exactly one leader: {:?}", leaders());
        for _ in 0..8 {
            assert!(
                leaders().iter().filter(|l| **l).count() <= 1,
                "never two leaders"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (leader, follower) = if a.app.worker.leading.load(Relaxed) {
            (a, b)
        } else {
            (b, a)
        };
        assert!(leader.app.worker.sweeps.load(Relaxed) >= 1);
        assert_eq!(
            follower.app.worker.sweeps.load(Relaxed),
            0,
            "the follower does no background work"
        );

        // The leader stops: it hands the lease over and the other replica takes it.
        leader.stop_keep_db().await;
        let mut took_over = false;
        for _ in 0..40 {
            if follower.app.worker.leading.load(Relaxed) {
                took_over = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(took_over, "the follower takes the lease over");
        follower.stop().await;
    }
}

#[tokio::test]
async fn planted_tokens_never_appear_in_responses_audit_or_clear_text_storage() {
    for backend in backends() {
        let srv = TestServer::start(&backend, &[DISABLED, NO_PROBES]).await;
        let machine = active_machine(&srv, "did:peaq:10").await;
        let agent = enroll(&srv, &machine, json!({})).await;
        let agent_token = agent["agentToken"].as_str().unwrap().to_string();
        let endpoint_token = "planted-endpoint-secret-41f7e2";
        let body = beat(
            &machine,
            &agent,
            json!([{"providerKey": "qvac", "endpointBaseUrl": "http://127.0.0.1:9", "authType": "bearer", "authToken": endpoint_token}]),
        );
        let mut seen = json_of(heartbeat(&srv, &body).await).await.to_string();
        for path in [
            format!("/api/v1/machines/{machine}/agents"),
            format!("/api/v1/machines/{machine}/runtime-endpoints"),
            format!("/api/v1/machines/{machine}/runtime-endpoints/qvac"),
            "/api/v1/audit-events?limit=500".to_string(),
        ] {
            seen.push_str(&srv.get(&path).await.text().await.unwrap());
        }
        assert!(!seen.contains(&agent_token) && !seen.contains(endpoint_token));

        let dump = match &backend {
            Backend::Sqlite => {
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(&srv.app.store)
                    .await
                    .unwrap();
                let path = srv.db.url.trim_start_matches("sqlite://").to_string();
                let mut bytes = std::fs::read(&path).unwrap();
                bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
                String::from_utf8_lossy(&bytes).into_owned()
            }
            Backend::Postgres(_) => {
                let output = std::process::Command::new("pg_dump")
                    .args(["--data-only", &srv.db.url])
                    .output()
                    .expect("pg_dump runs");
                assert!(
                    output.status.success(),
                    "{}",
                    String::from_utf8_lossy(&output.stderr)
                );
                String::from_utf8_lossy(&output.stdout).into_owned()
            }
        };
        assert!(dump.contains(&machine), "the dump holds the data");
        assert!(
            !dump.contains(&agent_token),
            "the agent token is stored in clear text"
        );
        assert!(
            !dump.contains(endpoint_token),
            "the endpoint token is stored in clear text"
        );
        srv.stop().await;
    }
}
