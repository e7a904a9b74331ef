//! The conventions of spec/README.md §3 and the foundation endpoints, over HTTP against the real
//! server, on every backend.

mod common;

use common::{Backend, TestDb, TestServer, backends, expect_error, json_of};
use peaqos_orchestrator::audit::{self, Actor, NewAuditEvent};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test]
async fn health_is_served_at_the_root_and_under_api_v1() {
    for backend in backends() {
        let srv = TestServer::start(&backend, &[]).await;
        for path in ["/health", "/api/v1/health"] {
            let response = srv.get(path).await;
            assert_eq!(response.status(), StatusCode::OK);
            assert!(response.headers().get("x-request-id").is_some());
            assert_eq!(json_of(response).await, json!({"ok": true}));
        }
        srv.stop().await;
    }
}

#[tokio::test]
async fn readiness_reports_each_check() {
    for backend in backends() {
        let srv = TestServer::start(&backend, &[]).await;
        // The first background lease is taken before requests are served: ready at once.
        let response = srv.get("/api/v1/readiness").await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = json_of(response).await;
        assert_eq!(body["status"], "ready");
        let checks = body["checks"].as_array().unwrap();
        for name in ["store", "auth", "runtime"] {
            let check = checks.iter().find(|c| c["name"] == name).unwrap();
            assert_eq!(check["status"], "pass");
            assert!(check.get("message").is_none());
        }
        srv.stop().await;
    }
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let srv = TestServer::start(&Backend::Sqlite, &[]).await;
    let response = srv
        .request(Method::GET, "/health")
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-abc-123");
    let a = srv.get("/health").await.headers()["x-request-id"].clone();
    let b = srv.get("/health").await.headers()["x-request-id"].clone();
    assert_ne!(a, b);
    assert!(a.to_str().unwrap().starts_with("req_"));
    // An unusable incoming id is replaced, not echoed.
    let long = "x".repeat(300);
    let response = srv
        .request(Method::GET, "/health")
        .header("x-request-id", &long)
        .send()
        .await
        .unwrap();
    assert_ne!(response.headers()["x-request-id"], long.as_str());
    srv.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_answer_in_the_envelope() {
    for backend in backends() {
        let srv = TestServer::start(&backend, &[]).await;
        for path in [
            "/nope",
            "/api/v1/nope",
            "/api/v1/purchases",
            "/api/v2/health",
            "/",
        ] {
            let error = expect_error(srv.get(path).await, StatusCode::NOT_FOUND, "NOT_FOUND").await;
            assert!(error["message"].as_str().unwrap().len() > 3);
        }
        for (method, path) in [
            (Method::POST, "/health"),
            (Method::DELETE, "/api/v1/health"),
            (Method::PUT, "/api/v1/readiness"),
            (Method::POST, "/api/v1/audit-events"),
        ] {
            let response = srv.request(method, path).send().await.unwrap();
            let allow = response
                .headers()
                .get("allow")
                .expect("Allow header")
                .to_str()
                .unwrap()
                .to_string();
            assert!(allow.contains("GET"), "{allow}");
            expect_error(
                response,
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
            )
            .await;
        }
        srv.stop().await;
    }
}

#[tokio::test]
async fn empty_json_bodies_are_accepted_on_bodyless_methods() {
    // README C1: 0.2.0 sends content-type: application/json with a 0-byte body on every request.
    let srv = TestServer::start(&Backend::Sqlite, &[]).await;
    for path in [
        "/api/v1/health",
        "/api/v1/readiness",
        "/api/v1/audit-events",
    ] {
        let response = srv
            .request(Method::GET, path)
            .header("content-type", "application/json")
            .body("")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    srv.stop().await;
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    for backend in backends() {
        let srv = TestServer::start(&backend, &[("PEAQOS_MAX_BODY_BYTES", "64")]).await;
        let big = json!({"padding": "x".repeat(200)});
        let response = srv
            .request(Method::GET, "/api/v1/audit-events")
            .json(&big)
            .send()
            .await
            .unwrap();
        expect_error(response, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE").await;
        // A body without a declared length is cut off at the limit as well.
        let stream = futures_stream(vec![vec![b' '; 40], vec![b' '; 40]]);
        let response = srv
            .request(Method::POST, "/api/v1/machine-identity/challenges")
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .unwrap();
        expect_error(response, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE").await;
        // Also when the idempotency layer is the first to read it.
        let stream = futures_stream(vec![vec![b' '; 40], vec![b' '; 40]]);
        let response = srv
            .request(Method::POST, "/api/v1/machine-identity/challenges")
            .header("idempotency-key", "k1")
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .unwrap();
        expect_error(response, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE").await;
        srv.stop().await;
    }
}

fn futures_stream(
    chunks: Vec<Vec<u8>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    tokio_stream::iter(chunks.into_iter().map(Ok))
}

/// Seeds audit events through the library function features use, each one millisecond apart.
async fn seed_events(
    srv: &TestServer,
    events: &[(&'static str, &'static str, &str, Option<&str>)],
) {
    for (event_type, resource_type, resource_id, machine_id) in events {
        let mut tx = srv.app.store.begin().await.unwrap();
        audit::record(
            &mut tx,
            srv.clock.now_ms(),
            NewAuditEvent {
                actor: Actor::Api,
                event_type,
                resource_type,
                resource_id: resource_id.to_string(),
                machine_id: machine_id.map(str::to_string),
                payload: json!({"seq": resource_id}),
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        srv.clock.advance_ms(1);
    }
}

fn ids(body: &Value) -> Vec<String> {
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resourceId"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn audit_events_are_listed_newest_first_with_filters_and_cursors() {
    for backend in backends() {
        let srv = TestServer::start(&backend, &[]).await;
        seed_events(
            &srv,
            &[
                ("machine.created", "machine", "m1", Some("m1")),
                ("machine.updated", "machine", "m1", Some("m1")),
                ("machine.created", "machine", "m2", Some("m2")),
                ("agent-pairing.created", "agent-pairing", "p1", Some("m1")),
                ("policy.created", "policy", "pol1", None),
            ],
        )
        .await;

        let body = json_of(srv.get("/api/v1/audit-events").await).await;
        assert_eq!(ids(&body), ["pol1", "p1", "m2", "m1", "m1"]);
        assert!(body.get("nextCursor").is_none());
        let first = &body["items"][0];
        for field in [
            "id",
            "actor",
            "type",
            "resourceType",
            "resourceId",
            "createdAt",
        ] {
            assert!(first[field].is_string(), "{field}: {first}");
        }
        assert!(first["id"].as_str().unwrap().starts_with("evt_"));
        assert_eq!(first["actor"], "api");
        assert!(first["machineId"].is_null());
        assert_eq!(first["payload"], json!({"seq": "pol1"}));
        let created_at = first["createdAt"].as_str().unwrap();
        assert!(
            created_at.ends_with('Z') && created_at.len() == 24,
            "{created_at}"
        );

        for (query, expected) in [
            ("type=machine.created", vec!["m2", "m1"]),
            ("resourceType=machine", vec!["m2", "m1", "m1"]),
            ("resourceId=m1", vec!["m1", "m1"]),
            ("machineId=m1", vec!["p1", "m1", "m1"]),
            (
                "machineId=m1&resourceType=machine&type=machine.updated",
                vec!["m1"],
            ),
            ("machineId=m1&machineId=m2", vec!["p1", "m1", "m1"]),
            ("type=nothing", vec![]),
            ("unknownParam=1", vec!["pol1", "p1", "m2", "m1", "m1"]),
        ] {
            let body = json_of(srv.get(&format!("/api/v1/audit-events?{query}")).await).await;
            assert_eq!(ids(&body), expected, "{query}");
        }

        // Paging two at a time walks every event once, newest first.
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/audit-events?limit=2&cursor={c}"),
                None => "/api/v1/audit-events?limit=2".to_string(),
            };
            let body = json_of(srv.get(&path).await).await;
            seen.extend(
                body["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["id"].as_str().unwrap().to_string()),
            );
            match body.get("nextCursor") {
                Some(Value::String(c)) => {
                    assert!(!c.is_empty());
                    cursor = Some(c.clone());
                }
                None => break,
                other => panic!("nextCursor must be a string or absent: {other:?}"),
            }
        }
        assert_eq!(seen.len(), 5);
        let all = json_of(srv.get("/api/v1/audit-events").await).await;
        let all_ids: Vec<String> = all["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(seen, all_ids);

        // A cursor from filtered paging with filters.
        let body = json_of(srv.get("/api/v1/audit-events?machineId=m1&limit=1").await).await;
        let cursor = body["nextCursor"].as_str().unwrap().to_string();
        let next = json_of(
            srv.get(&format!(
                "/api/v1/audit-events?machineId=m1&limit=1&cursor={cursor}"
            ))
            .await,
        )
        .await;
        assert_eq!(ids(&next), ["m1"]);
        let error = expect_error(
            srv.get(&format!(
                "/api/v1/audit-events?machineId=m2&limit=1&cursor={cursor}"
            ))
            .await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(error["details"]["field"], "cursor");
        srv.stop().await;
    }
}

#[tokio::test]
async fn bad_limits_and_cursors_are_validation_errors() {
    for backend in backends() {
        let srv = TestServer::start(&backend, &[]).await;
        for query in ["limit=0", "limit=501", "limit=abc", "limit=-5", "limit=2.5"] {
            let error = expect_error(
                srv.get(&format!("/api/v1/audit-events?{query}")).await,
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
            )
            .await;
            assert_eq!(error["details"]["field"], "limit", "{query}");
        }
        for cursor in ["garbage!", "eyJ0IjoxfQ", "bm90LWpzb24", "%00"] {
            let error = expect_error(
                srv.get(&format!("/api/v1/audit-events?cursor={cursor}"))
                    .await,
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
            )
            .await;
            assert_eq!(error["details"]["field"], "cursor", "{cursor}");
        }
        let ok = srv.get("/api/v1/audit-events?limit=500").await;
        assert_eq!(ok.status(), StatusCode::OK);
        srv.stop().await;
    }
}

#[tokio::test]
async fn api_keys_gate_the_api_but_not_health_or_readiness() {
    for backend in backends() {
        let srv = TestServer::start(
            &backend,
            &[
                ("PEAQOS_REQUIRE_API_AUTH", "true"),
                ("PEAQOS_API_KEY", "primary-key"),
                ("PEAQOS_API_KEYS", "second-key, third-key"),
            ],
        )
        .await;
        expect_error(
            srv.get("/api/v1/audit-events").await,
            StatusCode::UNAUTHORIZED,
            "AUTH_REQUIRED",
        )
        .await;
        let wrong = srv
            .request(Method::GET, "/api/v1/audit-events")
            .header("x-api-key", "nope")
            .send()
            .await
            .unwrap();
        expect_error(wrong, StatusCode::UNAUTHORIZED, "AUTH_INVALID").await;
        let prefix = srv
            .request(Method::GET, "/api/v1/audit-events")
            .header("x-api-key", "primary")
            .send()
            .await
            .unwrap();
        expect_error(prefix, StatusCode::UNAUTHORIZED, "AUTH_INVALID").await;
        for key in ["primary-key", "second-key", "third-key"] {
            let ok = srv
                .request(Method::GET, "/api/v1/audit-events")
                .header("x-api-key", key)
                .send()
                .await
                .unwrap();
            assert_eq!(ok.status(), StatusCode::OK, "{key}");
        }
        for path in ["/health", "/api/v1/health", "/api/v1/readiness"] {
            assert_eq!(srv.get(path).await.status(), StatusCode::OK, "{path}");
            let ignored = srv
                .request(Method::GET, path)
                .header("x-api-key", "wrong")
                .send()
                .await
                .unwrap();
            assert_eq!(
                ignored.status(),
                StatusCode::OK,
                "{path} ignores a wrong key"
            );
        }
        srv.stop().await;
    }
}

#[tokio::test]
async fn api_keys_are_ignored_when_auth_is_off() {
    let srv = TestServer::start(&Backend::Sqlite, &[("PEAQOS_API_KEY", "k")]).await;
    let response = srv
        .request(Method::GET, "/api/v1/audit-events")
        .header("x-api-key", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    srv.stop().await;
}

#[tokio::test]
async fn data_and_the_generated_session_secret_survive_a_restart() {
    for backend in backends() {
        let srv = TestServer::start(&backend, &[]).await;
        let secret = srv.app.session_secret.expose().to_string();
        assert!(secret.len() >= 32);
        seed_events(&srv, &[("machine.created", "machine", "persisted", None)]).await;
        let url = srv.db.url.clone();
        let db = srv.stop_keep_db().await;

        let again = TestServer::start_on(db, &url, &[]).await;
        assert_eq!(again.app.session_secret.expose(), secret);
        let body = json_of(again.get("/api/v1/audit-events").await).await;
        assert_eq!(ids(&body), ["persisted"]);
        again.stop().await;
    }
}

#[tokio::test]
async fn a_configured_session_secret_wins_over_the_stored_one() {
    let srv = TestServer::start(
        &Backend::Sqlite,
        &[(
            "PEAQOS_AGENT_PAIRING_SESSION_SECRET",
            "configured-secret-0123456789abcdef",
        )],
    )
    .await;
    assert_eq!(
        srv.app.session_secret.expose(),
        "configured-secret-0123456789abcdef"
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_database_outage_answers_503_and_recovers_without_restart() {
    let Some(Backend::Postgres(admin_url)) = backends()
        .into_iter()
        .find(|b| matches!(b, Backend::Postgres(_)))
    else {
        eprintln!("TEST_DATABASE_URL unset: the PostgreSQL outage test needs PostgreSQL");
        return;
    };
    let db = TestDb::create(&Backend::Postgres(admin_url)).await;
    let mut through_proxy = reqwest::Url::parse(&db.url).unwrap();
    let target = format!(
        "{}:{}",
        through_proxy.host_str().unwrap(),
        through_proxy.port().unwrap_or(5432)
    );
    let target = tokio::net::lookup_host(target)
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = common::proxy::Proxy::start(target).await;
    through_proxy.set_port(Some(proxy.addr.port())).unwrap();
    through_proxy.set_host(Some("127.0.0.1")).unwrap();
    let srv = TestServer::start_on(db, through_proxy.as_str(), &[]).await;
    assert_eq!(
        srv.get("/api/v1/audit-events").await.status(),
        StatusCode::OK
    );

    proxy.take_down();
    let response = srv.get("/api/v1/readiness").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = json_of(response).await;
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["error"]["code"], "SERVICE_UNAVAILABLE");
    let store = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "store")
        .unwrap()
        .clone();
    assert_eq!(store["status"], "fail");
    assert!(!store["message"].as_str().unwrap().contains("127.0.0.1"));
    expect_error(
        srv.get("/api/v1/audit-events").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "SERVICE_UNAVAILABLE",
    )
    .await;
    assert_eq!(
        srv.get("/health").await.status(),
        StatusCode::OK,
        "liveness does not touch the database"
    );

    proxy.bring_up();
    let mut recovered = false;
    for _ in 0..50 {
        if srv.get("/api/v1/readiness").await.status() == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(recovered, "readiness recovers once the database is back");
    assert_eq!(
        srv.get("/api/v1/audit-events").await.status(),
        StatusCode::OK
    );
    srv.stop().await;
}

#[tokio::test]
async fn an_unreachable_database_fails_start_up_with_a_clear_message() {
    use peaqos_orchestrator::config::{DatabaseTarget, Secret};
    use peaqos_orchestrator::store::{Store, StoreStartError};
    // Nothing listens on port 1.
    let target = DatabaseTarget::Postgres(Secret::new("postgres://u:pw@127.0.0.1:1/none"));
    let err = Store::connect(
        &target,
        std::time::Duration::from_millis(600),
        std::time::Duration::from_secs(5),
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(err, StoreStartError::Unreachable { .. }));
    assert!(!err.to_string().contains("pw@"), "{err}");
}

const DISABLED: &[(&str, &str)] = &[("PEAQOS_MACHINE_IDENTITY_VERIFICATION", "disabled")];

async fn post_raw(
    srv: &TestServer,
    path: &str,
    content_type: Option<&str>,
    body: &'static str,
) -> reqwest::Response {
    let mut request = srv.request(Method::POST, path).body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn bad_json_bodies_are_validation_errors_naming_the_field() {
    for backend in backends() {
        let srv = TestServer::start(&backend, DISABLED).await;
        let path = "/api/v1/machine-identity/challenges";
        for body in [
            "{",
            "{\"identityRef\": }",
            "[1,2]",
            "\"did:peaq:1\"",
            "null",
        ] {
            let error = expect_error(
                post_raw(&srv, path, Some("application/json"), body).await,
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
            )
            .await;
            assert_eq!(error["details"]["reason"], "invalid-json", "{body}");
        }
        let error = expect_error(
            post_raw(
                &srv,
                path,
                Some("text/plain"),
                "{\"identityRef\":\"did:peaq:1\"}",
            )
            .await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(error["details"]["reason"], "unsupported-content-type");
        // An empty body, with or without the JSON content type, reads as {}.
        for content_type in [Some("application/json"), None] {
            let error = expect_error(
                post_raw(&srv, path, content_type, "").await,
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
            )
            .await;
            assert_eq!(error["details"]["field"], "identityRef");
            assert_eq!(error["details"]["constraint"], "required");
        }
        // Wrong types name the field, nested ones with their path.
        let error = expect_error(
            srv.post_json(path, &json!({"identityRef": 42})).await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(error["details"]["field"], "identityRef");
        assert!(error["message"].as_str().unwrap().contains("identityRef"));
        let error = expect_error(
            srv.post_json(
                "/api/v1/machines",
                &json!({"displayName": "d", "labels": {"siteName": 7}}),
            )
            .await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(error["details"]["field"], "labels.siteName");
        // Unknown fields are ignored and null means absent.
        let response = srv
            .post_json(
                path,
                &json!({"identityRef": "did:peaq:7", "unknown": [1], "other": null}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let error = expect_error(
            srv.post_json(path, &json!({"identityRef": null})).await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(error["details"]["constraint"], "required");
        srv.stop().await;
    }
}

async fn audit_count(srv: &TestServer, event_type: &str) -> usize {
    let body = json_of(
        srv.get(&format!("/api/v1/audit-events?type={event_type}"))
            .await,
    )
    .await;
    body["items"].as_array().unwrap().len()
}

#[tokio::test]
async fn idempotency_keys_replay_the_first_success_without_new_side_effects() {
    for backend in backends() {
        let srv = TestServer::start(&backend, DISABLED).await;
        let path = "/api/v1/machine-identity/challenges";
        let send = |key: &'static str, body: Value| {
            srv.request(Method::POST, path)
                .header("idempotency-key", key)
                .json(&body)
                .send()
        };

        let first = send("key-1", json!({"identityRef": "did:peaq:1"}))
            .await
            .unwrap();
        assert_eq!(first.status(), StatusCode::CREATED);
        assert!(first.headers().get("idempotent-replayed").is_none());
        let first = json_of(first).await;

        let again = send("key-1", json!({"identityRef": "did:peaq:1"}))
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::CREATED);
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        assert_eq!(json_of(again).await, first);
        assert_eq!(
            audit_count(&srv, "machine-identity.challenge-created").await,
            1
        );

        // Same key, different body.
        let error = expect_error(
            send("key-1", json!({"identityRef": "did:peaq:2"}))
                .await
                .unwrap(),
            StatusCode::CONFLICT,
            "IDEMPOTENCY_CONFLICT",
        )
        .await;
        assert_eq!(error["details"]["reason"], "body-mismatch");

        // The key is per path: another endpoint may use it.
        let other = srv
            .request(Method::POST, "/api/v1/machines")
            .header("idempotency-key", "key-1")
            .json(&json!({"identityRef": "did:peaq:1", "displayName": "m", "ownerId": "o", "machineType": "t", "runtimeProfile": "r"}))
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), StatusCode::CREATED);

        // A failed attempt does not reserve the key.
        let failed = send("key-2", json!({"identityRef": "nope"})).await.unwrap();
        assert_eq!(failed.status(), StatusCode::BAD_REQUEST);
        let retried = send("key-2", json!({"identityRef": "did:peaq:3"}))
            .await
            .unwrap();
        assert_eq!(retried.status(), StatusCode::CREATED);

        // Keys expire after 24 hours.
        srv.clock.advance_ms(24 * 3600 * 1000 + 1);
        let reused = send("key-1", json!({"identityRef": "did:peaq:2"}))
            .await
            .unwrap();
        assert_eq!(reused.status(), StatusCode::CREATED);
        assert!(reused.headers().get("idempotent-replayed").is_none());

        // Bad keys.
        for key in ["", &"k".repeat(256)] {
            let response = srv
                .request(Method::POST, path)
                .header("idempotency-key", key)
                .json(&json!({"identityRef": "did:peaq:1"}))
                .send()
                .await
                .unwrap();
            let error = expect_error(response, StatusCode::BAD_REQUEST, "VALIDATION_ERROR").await;
            assert_eq!(error["details"]["field"], "Idempotency-Key");
        }

        // Stored responses are encrypted at rest.
        let challenge_id = first["item"]["challengeId"].as_str().unwrap();
        let bodies: Vec<String> = sqlx::query_scalar(
            "SELECT response_body FROM idempotency_records WHERE response_body IS NOT NULL",
        )
        .fetch_all(&srv.app.store)
        .await
        .unwrap();
        assert!(!bodies.is_empty());
        assert!(
            bodies
                .iter()
                .all(|b| !b.contains(challenge_id) && !b.contains("identityRef"))
        );
        srv.stop().await;
    }
}

#[tokio::test]
async fn idempotency_keys_are_scoped_by_api_key() {
    let srv = TestServer::start(
        &Backend::Sqlite,
        &[
            ("PEAQOS_MACHINE_IDENTITY_VERIFICATION", "disabled"),
            ("PEAQOS_REQUIRE_API_AUTH", "true"),
            ("PEAQOS_API_KEYS", "alice,bob"),
        ],
    )
    .await;
    let mut ids = Vec::new();
    for api_key in ["alice", "bob", "alice"] {
        let response = srv
            .request(Method::POST, "/api/v1/machine-identity/challenges")
            .header("x-api-key", api_key)
            .header("idempotency-key", "shared")
            .json(&json!({"identityRef": "did:peaq:1"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        ids.push(
            json_of(response).await["item"]["challengeId"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_ne!(ids[0], ids[1], "another principal gets its own result");
    assert_eq!(ids[0], ids[2], "the same principal gets the replay");
    srv.stop().await;
}
