//! Agent pairings, sessions and pairing-token authentication (spec pairings-and-auth.md), with
//! real signatures and a fake MCR, on every backend.

mod common;

use std::sync::Arc;

use axum::extract::{Extension, Path};
use axum::middleware::from_fn_with_state;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::fake_mcr::{Behaviour, FakeMcr};
use common::wallet::Wallet;
use common::{Backend, TestServer, backends, expect_error, json_of};
use peaqos_orchestrator::App;
use peaqos_orchestrator::pairings::auth::{PairingAuth, require_pairing_token};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

struct World {
    srv: TestServer,
    mcr: FakeMcr,
    owner: Wallet,
    machine_id: String,
    probe: String,
}

/// An agent route for tests: the production middleware plus check 9 on the path's machine.
async fn probe_route(
    Extension(auth): Extension<PairingAuth>,
    Path(machine_id): Path<String>,
) -> axum::response::Response {
    match auth.bind(&[&machine_id], &[]) {
        Ok(()) => axum::Json(json!({"pairingId": auth.pairing.id})).into_response(),
        Err(err) => err.into_response(),
    }
}

use axum::response::IntoResponse;

async fn start_probe(app: Arc<App>) -> String {
    let router = axum::Router::new()
        .route("/probe/{machine_id}", axum::routing::get(probe_route))
        .layer(from_fn_with_state(app, require_pairing_token));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    base
}

const MACHINE_DID: &str = "did:peaq:9001";

async fn world(backend: &Backend, env: &[(&str, &str)]) -> World {
    let mcr = FakeMcr::start().await;
    let mut vars: Vec<(&str, &str)> = vec![
        ("PEAQOS_MCR_API_URL", mcr.url.as_str()),
        ("PEAQOS_MCR_TIMEOUT_MS", "500"),
    ];
    vars.extend_from_slice(env);
    let mut srv = TestServer::start(backend, &vars).await;
    if let Some((_, key)) = env.iter().find(|(name, _)| *name == "PEAQOS_API_KEY") {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-api-key", key.parse().unwrap());
        srv.http = reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .unwrap();
    }
    let owner = Wallet::random();
    mcr.register(MACHINE_DID, 9001, &owner.address(), true);
    let machine_id = active_machine(&srv, &owner, MACHINE_DID).await;
    let probe = start_probe(srv.app.clone()).await;
    World {
        srv,
        mcr,
        owner,
        machine_id,
        probe,
    }
}

/// Registers and activates a machine controlled by `owner`.
async fn active_machine(srv: &TestServer, owner: &Wallet, did: &str) -> String {
    let challenge = json_of(
        srv.post_json(
            "/api/v1/machine-identity/challenges",
            &json!({"identityRef": did}),
        )
        .await,
    )
    .await["item"]
        .clone();
    let body = json!({
        "displayName": "Rover", "ownerId": "o", "machineType": "rover", "runtimeProfile": "edge", "identityRef": did,
        "identityProof": {"challengeId": challenge["challengeId"], "signature": owner.sign_personal(challenge["message"].as_str().unwrap())},
    });
    let response = srv.post_json("/api/v1/machines", &body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let id = json_of(response).await["item"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let activated = srv
        .request(Method::PATCH, &format!("/api/v1/machines/{id}"))
        .json(&json!({"status": "active"}))
        .send()
        .await
        .unwrap();
    assert_eq!(activated.status(), StatusCode::OK);
    id
}

fn agent_fields(agent: &Wallet) -> Value {
    json!({"agentAddress": agent.address(), "agentProvider": "anthropic", "agentRole": "buyer"})
}

impl World {
    fn pairings(&self) -> String {
        format!("/api/v1/machines/{}/agent-pairings", self.machine_id)
    }

    async fn challenge(&self, fields: &Value) -> Value {
        let response = self
            .srv
            .post_json(&format!("{}/challenges", self.pairings()), fields)
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        json_of(response).await["item"].clone()
    }

    async fn proof(&self, fields: &Value, signer: &Wallet) -> Value {
        let challenge = self.challenge(fields).await;
        json!({"challengeId": challenge["challengeId"], "signature": signer.sign_personal(challenge["message"].as_str().unwrap())})
    }

    async fn create(&self, body: &Value) -> reqwest::Response {
        self.srv.post_json(&self.pairings(), body).await
    }

    /// A paired agent: its pairing record (with `pairingToken`).
    async fn pair(&self, agent: &Wallet, policy: Option<Value>) -> Value {
        let fields = agent_fields(agent);
        let mut body = fields.clone();
        body["agentProof"] = self.proof(&fields, agent).await;
        if let Some(policy) = policy {
            body["delegationPolicy"] = policy;
        }
        let response = self.create(&body).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        json_of(response).await["item"].clone()
    }

    async fn rotate(&self, pairing: &Value, agent: &Wallet) -> reqwest::Response {
        let fields = json!({
            "agentAddress": pairing["agentAddress"], "agentProvider": pairing["agentProvider"],
            "agentRole": pairing["agentRole"], "agentDid": pairing["agentDid"],
        });
        let proof = self.proof(&fields, agent).await;
        self.srv
            .post_json(
                &format!(
                    "{}/{}/sessions",
                    self.pairings(),
                    pairing["id"].as_str().unwrap()
                ),
                &json!({"agentProof": proof}),
            )
            .await
    }

    async fn patch(&self, pairing_id: &str, body: Value) -> reqwest::Response {
        self.srv
            .request(Method::PATCH, &format!("{}/{pairing_id}", self.pairings()))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn call_agent_route(&self, token: &str, machine_id: &str) -> reqwest::Response {
        self.srv
            .http
            .get(format!("{}/probe/{machine_id}", self.probe))
            .header("x-agent-pairing-token", token)
            .send()
            .await
            .unwrap()
    }

    async fn expect_token_ok(&self, token: &str) {
        let response = self.call_agent_route(token, &self.machine_id).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{}",
            response.text().await.unwrap()
        );
    }

    async fn expect_token_error(
        &self,
        token: &str,
        status: StatusCode,
        code: &str,
        reason: Option<&str>,
    ) -> Value {
        let error = expect_error(
            self.call_agent_route(token, &self.machine_id).await,
            status,
            code,
        )
        .await;
        if let Some(reason) = reason {
            assert_eq!(error["details"]["reason"], reason, "{error}");
        }
        error
    }

    async fn events(&self, event_type: &str) -> Vec<Value> {
        let body = json_of(
            self.srv
                .get(&format!("/api/v1/audit-events?type={event_type}"))
                .await,
        )
        .await;
        body["items"].as_array().unwrap().clone()
    }

    async fn pairing_rows(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM agent_pairings")
            .fetch_one(&self.srv.app.store)
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn pairing_lifecycle_and_what_each_step_does_to_the_token() {
    for backend in backends() {
        let w = world(&backend, &[]).await;
        let agent = Wallet::random();
        let checksummed = peaqos_orchestrator::crypto::eip55::to_checksum(&agent.address());

        let challenge = w.challenge(&agent_fields(&agent)).await;
        for field in [
            "challengeId",
            "machineId",
            "machineIdentityRef",
            "agentAddress",
            "agentDid",
            "agentProvider",
            "agentRole",
            "message",
            "expiresAt",
            "verificationMethod",
        ] {
            assert!(
                challenge[field].as_str().is_some_and(|v| !v.is_empty()),
                "{field}: {challenge}"
            );
        }
        assert_eq!(challenge["agentAddress"], checksummed.as_str());
        assert_eq!(
            challenge["agentDid"],
            format!("did:pkh:eip155:1:{checksummed}").as_str()
        );
        assert_eq!(challenge["machineIdentityRef"], MACHINE_DID);
        assert!(
            challenge["challengeId"]
                .as_str()
                .unwrap()
                .starts_with("apc_")
        );
        assert!(
            challenge["message"]
                .as_str()
                .unwrap()
                .starts_with("peaqOS machine agent pairing\n\n")
        );

        let policy = json!({"allowedSkillKeys": ["vision.detect"], "deniedSkillKeys": [], "allowedServiceIds": [],
                            "deniedServiceIds": [], "perTransactionLimit": 5.0, "dailySpendLimit": 20.5, "currency": "usdt"});
        let pairing = w.pair(&agent, Some(policy)).await;
        let token = pairing["pairingToken"].as_str().unwrap().to_string();
        let id = pairing["id"].as_str().unwrap().to_string();
        assert!(id.starts_with("apr_"));
        assert_eq!(pairing["status"], "active");
        assert_eq!(pairing["hasAuthToken"], true);
        assert_eq!(pairing["tokenLastFour"], &token[token.len() - 4..]);
        assert!(pairing["sessionId"].as_str().unwrap().starts_with("aps_"));
        assert!(
            pairing["sessionTokenId"]
                .as_str()
                .unwrap()
                .starts_with("apt_")
        );
        assert_eq!(pairing["agentAddress"], checksummed.as_str());
        assert_eq!(pairing["verification"]["method"], "eip191");
        assert_eq!(
            pairing["verification"]["signerAddress"],
            checksummed.as_str()
        );
        assert_eq!(
            pairing["verification"]["challengeId"],
            challenge["challengeId"]
                .as_str()
                .map(|_| pairing["verification"]["challengeId"].clone())
                .unwrap()
        );
        assert_eq!(
            pairing["delegationPolicy"],
            json!({"allowedSkillKeys": ["vision.detect"], "deniedSkillKeys": [], "allowedServiceIds": [], "deniedServiceIds": [],
                   "perTransactionLimit": 5.0, "dailySpendLimit": 20.5, "currency": "USDT"})
        );
        // The JWT: HS256, the spec's claims, exp − iat = the session TTL.
        let parts: Vec<&str> = token.split('.').collect();
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header, json!({"alg": "HS256", "typ": "JWT"}));
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["machineId"], w.machine_id.as_str());
        assert_eq!(claims["pairingId"], id.as_str());
        assert_eq!(claims["sessionId"], pairing["sessionId"]);
        assert_eq!(claims["jti"], pairing["sessionTokenId"]);
        assert_eq!(claims["iss"], "peaqos-orchestrator");
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            3600
        );
        assert_eq!(claims["delegationPolicyHash"].as_str().unwrap().len(), 64);

        w.expect_token_ok(&token).await;

        // Lists never carry the token.
        let list = json_of(w.srv.get(&w.pairings()).await).await;
        assert_eq!(list["items"].as_array().unwrap().len(), 1);
        assert!(list["items"][0].get("pairingToken").is_none());
        assert_eq!(list["items"][0]["hasAuthToken"], true);

        // Rotation: the old token stops at once, the new one works.
        let rotated = json_of(w.rotate(&pairing, &agent).await).await["item"].clone();
        let token2 = rotated["pairingToken"].as_str().unwrap().to_string();
        assert_ne!(rotated["sessionId"], pairing["sessionId"]);
        w.expect_token_error(
            &token,
            StatusCode::UNAUTHORIZED,
            "AGENT_AUTH_INVALID",
            Some("session-rotated"),
        )
        .await;
        w.expect_token_ok(&token2).await;

        // A policy change invalidates the token until the next rotation.
        let changed = w
            .patch(&id, json!({"delegationPolicy": {"perTransactionLimit": 1}}))
            .await;
        assert_eq!(changed.status(), StatusCode::OK);
        let changed = json_of(changed).await["item"].clone();
        assert!(changed.get("pairingToken").is_none());
        assert_eq!(changed["delegationPolicy"]["allowedSkillKeys"], json!([]));
        w.expect_token_error(
            &token2,
            StatusCode::UNAUTHORIZED,
            "AGENT_AUTH_INVALID",
            Some("delegation-policy-changed"),
        )
        .await;
        // Provider and role are not claims: changing them keeps the token.
        let token3 = json_of(w.rotate(&changed, &agent).await).await["item"]["pairingToken"]
            .as_str()
            .unwrap()
            .to_string();
        w.expect_token_ok(&token3).await;
        assert_eq!(
            w.patch(
                &id,
                json!({"agentRole": "ops", "description": "night shift"})
            )
            .await
            .status(),
            StatusCode::OK
        );
        w.expect_token_ok(&token3).await;

        // Pause and resume: the same token works again.
        assert_eq!(
            w.patch(&id, json!({"status": "paused"})).await.status(),
            StatusCode::OK
        );
        let error = w
            .expect_token_error(
                &token3,
                StatusCode::FORBIDDEN,
                "AGENT_PAIRING_INACTIVE",
                None,
            )
            .await;
        assert_eq!(error["details"]["status"], "paused");
        let paused = json_of(w.srv.get(&w.pairings()).await).await["items"][0].clone();
        assert_eq!(paused["hasAuthToken"], false);
        let error = expect_error(
            w.rotate(&paused, &agent).await,
            StatusCode::FORBIDDEN,
            "AGENT_PAIRING_INACTIVE",
        )
        .await;
        assert_eq!(error["details"]["status"], "paused");
        assert_eq!(
            w.patch(&id, json!({"status": "active"})).await.status(),
            StatusCode::OK
        );
        w.expect_token_ok(&token3).await;

        // Revoke: terminal.
        let revoked = w
            .srv
            .request(Method::DELETE, &format!("{}/{id}", w.pairings()))
            .send()
            .await
            .unwrap();
        assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            w.srv
                .request(Method::DELETE, &format!("{}/{id}", w.pairings()))
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::NO_CONTENT
        );
        let error = w
            .expect_token_error(
                &token3,
                StatusCode::FORBIDDEN,
                "AGENT_PAIRING_INACTIVE",
                None,
            )
            .await;
        assert_eq!(error["details"]["status"], "revoked");
        expect_error(
            w.patch(&id, json!({"status": "active"})).await,
            StatusCode::FORBIDDEN,
            "AGENT_PAIRING_INACTIVE",
        )
        .await;
        expect_error(
            w.patch(&id, json!({"agentRole": "x"})).await,
            StatusCode::FORBIDDEN,
            "AGENT_PAIRING_INACTIVE",
        )
        .await;
        let noop = w.patch(&id, json!({"status": "revoked"})).await;
        assert_eq!(noop.status(), StatusCode::OK);
        let listed = json_of(w.srv.get(&w.pairings()).await).await["items"][0].clone();
        assert_eq!(listed["status"], "revoked");
        assert_eq!(listed["hasAuthToken"], false);
        assert!(
            listed["sessionId"].is_string(),
            "session fields are kept for history"
        );

        assert_eq!(w.events("agent-pairing.created").await.len(), 1);
        assert_eq!(w.events("agent-pairing.session-rotated").await.len(), 2);
        assert_eq!(w.events("agent-pairing.updated").await.len(), 4);
        assert_eq!(w.events("agent-pairing.revoked").await.len(), 1);
        let created = &w.events("agent-pairing.created").await[0];
        assert_eq!(created["payload"]["verified"], true);
        assert_eq!(created["payload"]["agentAddress"], checksummed.as_str());

        // No token, signature or tail of one anywhere it should not be.
        let everything = json_of(w.srv.get("/api/v1/audit-events?limit=500").await)
            .await
            .to_string();
        for secret in [&token, &token2, &token3] {
            assert!(!everything.contains(secret.as_str()));
            let parts: Vec<&str> = secret.split('.').collect();
            assert!(!everything.contains(parts[2]));
        }
        w.srv.stop().await;
    }
}

#[tokio::test]
async fn forged_and_stale_tokens_are_refused() {
    for backend in backends() {
        let w = world(&backend, &[]).await;
        let agent = Wallet::random();
        let pairing = w.pair(&agent, None).await;
        let token = pairing["pairingToken"].as_str().unwrap().to_string();
        let parts: Vec<String> = token.split('.').map(str::to_string).collect();
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
        let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());

        // alg: none, with and without a signature part.
        let none = format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT"})),
            parts[1]
        );
        w.expect_token_error(
            &none,
            StatusCode::UNAUTHORIZED,
            "AGENT_AUTH_INVALID",
            Some("malformed"),
        )
        .await;
        let none = format!("{}.{}.{}", b64(&json!({"alg": "none"})), parts[1], parts[2]);
        w.expect_token_error(
            &none,
            StatusCode::UNAUTHORIZED,
            "AGENT_AUTH_INVALID",
            Some("alg-not-allowed"),
        )
        .await;
        for alg in ["RS256", "ES256"] {
            let forged = format!(
                "{}.{}.{}",
                b64(&json!({"alg": alg, "typ": "JWT"})),
                parts[1],
                parts[2]
            );
            w.expect_token_error(
                &forged,
                StatusCode::UNAUTHORIZED,
                "AGENT_AUTH_INVALID",
                Some("alg-not-allowed"),
            )
            .await;
        }
        // HS256 under another secret.
        let claims_struct: peaqos_orchestrator::crypto::jwt::PairingClaims =
            serde_json::from_value(claims.clone()).unwrap();
        let other = peaqos_orchestrator::crypto::jwt::sign(
            b"not-the-server-secret-not-the-server",
            &claims_struct,
        );
        w.expect_token_error(
            &other,
            StatusCode::UNAUTHORIZED,
            "AGENT_AUTH_INVALID",
            Some("bad-signature"),
        )
        .await;
        // Edited claims keep the old signature.
        let mut edited = claims.clone();
        edited["exp"] = json!(claims["exp"].as_i64().unwrap() + 86_400);
        let tampered = format!("{}.{}.{}", parts[0], b64(&edited), parts[2]);
        w.expect_token_error(
            &tampered,
            StatusCode::UNAUTHORIZED,
            "AGENT_AUTH_INVALID",
            Some("bad-signature"),
        )
        .await;
        for garbage in ["garbage", "a.b.c", ""] {
            w.expect_token_error(
                garbage,
                StatusCode::UNAUTHORIZED,
                "AGENT_AUTH_INVALID",
                Some("malformed"),
            )
            .await;
        }

        // Another machine's token on this machine's route.
        let other_owner = Wallet::random();
        w.mcr
            .register("did:peaq:9002", 9002, &other_owner.address(), true);
        let other_machine = active_machine(&w.srv, &other_owner, "did:peaq:9002").await;
        let response = w.call_agent_route(&token, &other_machine).await;
        let error = expect_error(response, StatusCode::UNAUTHORIZED, "AGENT_AUTH_INVALID").await;
        assert_eq!(error["details"]["reason"], "machine-mismatch");

        // No token at all.
        let response = w
            .srv
            .http
            .get(format!("{}/probe/{}", w.probe, w.machine_id))
            .send()
            .await
            .unwrap();
        expect_error(response, StatusCode::UNAUTHORIZED, "AGENT_AUTH_REQUIRED").await;

        // Expired: 5 s of leeway, then AGENT_AUTH_EXPIRED.
        w.srv.clock.advance_ms(3_600_000 + 4_000);
        w.expect_token_ok(&token).await;
        w.srv.clock.advance_ms(3_000);
        w.expect_token_error(&token, StatusCode::UNAUTHORIZED, "AGENT_AUTH_EXPIRED", None)
            .await;
        let listed = json_of(w.srv.get(&w.pairings()).await).await["items"][0].clone();
        assert_eq!(listed["hasAuthToken"], false);
        w.srv.stop().await;
    }
}

#[tokio::test]
async fn agent_routes_need_only_the_token_and_still_check_a_sent_api_key() {
    let w = world(
        &Backend::Sqlite,
        &[
            ("PEAQOS_REQUIRE_API_AUTH", "true"),
            ("PEAQOS_API_KEY", "platform-key"),
            ("PEAQOS_MACHINE_IDENTITY_VERIFICATION", "disabled"),
        ],
    )
    .await;
    let _ = &w.owner;
    let agent = Wallet::random();
    let token = w.pair(&agent, None).await["pairingToken"]
        .as_str()
        .unwrap()
        .to_string();
    // Platform routes need the key; the agent route takes the token alone (a client without
    // the key), or with the right key beside it, but not with a wrong one.
    let keyless = reqwest::Client::new();
    expect_error(
        keyless.get(w.srv.url(&w.pairings())).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "AUTH_REQUIRED",
    )
    .await;
    let probe = format!("{}/probe/{}", w.probe, w.machine_id);
    let alone = keyless
        .get(&probe)
        .header("x-agent-pairing-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(alone.status(), StatusCode::OK);
    let with_key = keyless
        .get(&probe)
        .header("x-agent-pairing-token", &token)
        .header("x-api-key", "platform-key")
        .send()
        .await
        .unwrap();
    assert_eq!(with_key.status(), StatusCode::OK);
    let wrong_key = keyless
        .get(&probe)
        .header("x-agent-pairing-token", &token)
        .header("x-api-key", "wrong")
        .send()
        .await
        .unwrap();
    expect_error(wrong_key, StatusCode::UNAUTHORIZED, "AUTH_INVALID").await;
    w.srv.stop().await;
}

#[tokio::test]
async fn without_required_pairing_auth_platform_auth_applies() {
    let w = world(
        &Backend::Sqlite,
        &[
            ("PEAQOS_REQUIRE_AGENT_PAIRING_AUTH", "false"),
            ("PEAQOS_REQUIRE_API_AUTH", "true"),
            ("PEAQOS_API_KEY", "k"),
            ("PEAQOS_MACHINE_IDENTITY_VERIFICATION", "disabled"),
        ],
    )
    .await;
    let probe = format!("{}/probe/{}", w.probe, w.machine_id);
    let keyless = reqwest::Client::new();
    expect_error(
        keyless.get(&probe).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "AUTH_REQUIRED",
    )
    .await;
    expect_error(
        keyless
            .get(&probe)
            .header("x-api-key", "nope")
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
        "AUTH_INVALID",
    )
    .await;
    // No token: the API key authorises the request and the middleware lets it through (this
    // probe needs a PairingAuth, so axum rejects it after the middleware: not a 401).
    let response = keyless
        .get(&probe)
        .header("x-api-key", "k")
        .send()
        .await
        .unwrap();
    assert_ne!(response.status(), StatusCode::UNAUTHORIZED);
    // A present token is always validated in full.
    let response = keyless
        .get(&probe)
        .header("x-api-key", "k")
        .header("x-agent-pairing-token", "x.y.z")
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::UNAUTHORIZED, "AGENT_AUTH_INVALID").await;
    w.srv.stop().await;
}

#[tokio::test]
async fn agent_proofs_are_checked_and_failures_persist_nothing() {
    for backend in backends() {
        let w = world(&backend, &[]).await;
        let agent = Wallet::random();
        let stranger = Wallet::random();
        let fields = agent_fields(&agent);
        let invalid =
            |error: Value, reason: &str| assert_eq!(error["details"]["reason"], reason, "{error}");

        expect_error(
            w.create(&fields).await,
            StatusCode::BAD_REQUEST,
            "AGENT_PAIRING_PROOF_REQUIRED",
        )
        .await;

        let mut body = fields.clone();
        body["agentProof"] = w.proof(&fields, &stranger).await;
        invalid(
            expect_error(
                w.create(&body).await,
                StatusCode::UNAUTHORIZED,
                "AGENT_PAIRING_PROOF_INVALID",
            )
            .await,
            "signer-mismatch",
        );

        // The challenge was issued for other bindings.
        let mut other_role = fields.clone();
        other_role["agentRole"] = json!("ops");
        body["agentProof"] = w.proof(&other_role, &agent).await;
        let error = expect_error(
            w.create(&body).await,
            StatusCode::UNAUTHORIZED,
            "AGENT_PAIRING_PROOF_INVALID",
        )
        .await;
        invalid(error.clone(), "binding-mismatch");
        assert_eq!(error["details"]["field"], "agentRole");
        let mut other_did = fields.clone();
        other_did["agentDid"] = json!(format!("did:pkh:eip155:137:{}", agent.address()));
        body["agentProof"] = w.proof(&other_did, &agent).await;
        let mut explicit = body.clone();
        explicit["agentDid"] = json!(format!("did:pkh:eip155:1:{}", agent.address()));
        let error = expect_error(
            w.create(&explicit).await,
            StatusCode::UNAUTHORIZED,
            "AGENT_PAIRING_PROOF_INVALID",
        )
        .await;
        assert_eq!(error["details"]["field"], "agentDid");

        // A challenge of another machine.
        let other_owner = Wallet::random();
        w.mcr
            .register("did:peaq:9003", 9003, &other_owner.address(), true);
        let other_machine = active_machine(&w.srv, &other_owner, "did:peaq:9003").await;
        let foreign = json_of(
            w.srv
                .post_json(
                    &format!("/api/v1/machines/{other_machine}/agent-pairings/challenges"),
                    &fields,
                )
                .await,
        )
        .await["item"]
            .clone();
        body["agentProof"] = json!({"challengeId": foreign["challengeId"], "signature": agent.sign_personal(foreign["message"].as_str().unwrap())});
        let error = expect_error(
            w.create(&body).await,
            StatusCode::UNAUTHORIZED,
            "AGENT_PAIRING_PROOF_INVALID",
        )
        .await;
        assert_eq!(error["details"]["field"], "machineId");

        body["agentProof"] =
            json!({"challengeId": "apc_missing", "signature": agent.sign_personal("x")});
        invalid(
            expect_error(
                w.create(&body).await,
                StatusCode::UNAUTHORIZED,
                "AGENT_PAIRING_PROOF_INVALID",
            )
            .await,
            "challenge-not-found",
        );

        let challenge = w.challenge(&fields).await;
        for signature in ["0x00", "zz", &format!("0x{}", "ab".repeat(65))] {
            body["agentProof"] =
                json!({"challengeId": challenge["challengeId"], "signature": signature});
            invalid(
                expect_error(
                    w.create(&body).await,
                    StatusCode::UNAUTHORIZED,
                    "AGENT_PAIRING_PROOF_INVALID",
                )
                .await,
                "signature-malformed",
            );
        }
        sqlx::query("UPDATE agent_pairing_challenges SET agent_role = 'admin' WHERE id = $1")
            .bind(challenge["challengeId"].as_str().unwrap().to_string())
            .execute(&w.srv.app.store)
            .await
            .unwrap();
        body["agentProof"] = json!({"challengeId": challenge["challengeId"], "signature": agent.sign_personal(challenge["message"].as_str().unwrap())});
        invalid(
            expect_error(
                w.create(&body).await,
                StatusCode::UNAUTHORIZED,
                "AGENT_PAIRING_PROOF_INVALID",
            )
            .await,
            "challenge-tampered",
        );

        body["agentProof"] = w.proof(&fields, &agent).await;
        w.srv.clock.advance_ms(600_001);
        expect_error(
            w.create(&body).await,
            StatusCode::UNAUTHORIZED,
            "AGENT_PAIRING_PROOF_EXPIRED",
        )
        .await;

        assert_eq!(w.pairing_rows().await, 0, "nothing persisted");
        assert!(w.events("agent-pairing.created").await.is_empty());

        // Used once, then refused.
        body["agentProof"] = w.proof(&fields, &agent).await;
        assert_eq!(w.create(&body).await.status(), StatusCode::CREATED);
        invalid(
            expect_error(
                w.create(&body).await,
                StatusCode::UNAUTHORIZED,
                "AGENT_PAIRING_PROOF_INVALID",
            )
            .await,
            "challenge-consumed",
        );
        w.srv.stop().await;
    }
}

#[tokio::test]
async fn pairing_fields_are_validated() {
    let w = world(
        &Backend::Sqlite,
        &[("PEAQOS_AGENT_PAIRING_VERIFICATION", "disabled")],
    )
    .await;
    let agent = Wallet::random();
    let lower = agent.address();
    let checksummed = peaqos_orchestrator::crypto::eip55::to_checksum(&lower);
    let mut bad_checksum = checksummed.clone();
    let flip = bad_checksum
        .char_indices()
        .skip(2)
        .find(|(_, c)| c.is_ascii_alphabetic())
        .map(|(i, _)| i)
        .unwrap();
    let flipped: String = bad_checksum[flip..flip + 1]
        .chars()
        .map(|c| {
            if c.is_ascii_uppercase() {
                c.to_ascii_lowercase()
            } else {
                c.to_ascii_uppercase()
            }
        })
        .collect();
    bad_checksum.replace_range(flip..flip + 1, &flipped);
    let has_mixed = bad_checksum[2..].chars().any(|c| c.is_ascii_uppercase())
        && bad_checksum[2..].chars().any(|c| c.is_ascii_lowercase());
    let mut cases = vec![
        (json!({"agentAddress": "0x123"}), "agentAddress"),
        (json!({"agentProvider": " "}), "agentProvider"),
        (json!({"agentRole": "buyer\nIdentity: forged"}), "agentRole"),
        (
            json!({"agentDid": format!("did:pkh:eip155:01:{lower}")}),
            "agentDid",
        ),
        (
            json!({"agentDid": format!("did:pkh:eip155:1:{}", Wallet::random().address())}),
            "agentDid",
        ),
        (json!({"agentDid": format!("did:key:{lower}")}), "agentDid"),
        (json!({"description": "a\u{7f}b"}), "description"),
        (
            json!({"delegationPolicy": {"perTransactionLimit": "5"}}),
            "delegationPolicy.perTransactionLimit",
        ),
        (
            json!({"delegationPolicy": {"dailySpendLimit": -1}}),
            "delegationPolicy.dailySpendLimit",
        ),
        (
            json!({"delegationPolicy": {"allowedSkillKeys": [""]}}),
            "delegationPolicy.allowedSkillKeys[0]",
        ),
        (json!({"delegationPolicy": "open"}), "delegationPolicy"),
    ];
    if has_mixed {
        cases.push((json!({"agentAddress": bad_checksum}), "agentAddress"));
    }
    for (patch, field) in cases {
        let mut body = agent_fields(&agent);
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let error = expect_error(
            w.create(&body).await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(error["details"]["field"], field, "{patch}");
    }
    // Upper-case hex is accepted and stored in EIP-55 form; a given DID keeps its chain.
    let mut body = agent_fields(&agent);
    body["agentAddress"] = json!(format!("0x{}", lower[2..].to_uppercase()));
    body["agentDid"] = json!(format!("did:pkh:eip155:137:{lower}"));
    let pairing = json_of(w.create(&body).await).await["item"].clone();
    assert_eq!(pairing["agentAddress"], checksummed.as_str());
    assert_eq!(
        pairing["agentDid"],
        format!("did:pkh:eip155:137:{checksummed}").as_str()
    );
    assert!(
        pairing["verification"].is_null(),
        "disabled mode verifies nothing"
    );
    assert_eq!(
        pairing["delegationPolicy"]["perTransactionLimit"],
        Value::Null
    );
    assert_eq!(w.pairing_rows().await, 1);
    w.srv.stop().await;
}

#[tokio::test]
async fn pairing_needs_an_active_verified_machine() {
    for backend in backends() {
        let w = world(&backend, &[]).await;
        let agent = Wallet::random();
        let fields = agent_fields(&agent);
        let challenges = format!("{}/challenges", w.pairings());

        expect_error(
            w.srv
                .post_json(
                    "/api/v1/machines/mach_nope/agent-pairings/challenges",
                    &fields,
                )
                .await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;
        expect_error(
            w.srv.get("/api/v1/machines/mach_nope/agent-pairings").await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;

        let blocked = w
            .srv
            .request(Method::PATCH, &format!("/api/v1/machines/{}", w.machine_id))
            .json(&json!({"status": "blocked"}))
            .send()
            .await
            .unwrap();
        assert_eq!(blocked.status(), StatusCode::OK);
        let error = expect_error(
            w.srv.post_json(&challenges, &fields).await,
            StatusCode::CONFLICT,
            "MACHINE_NOT_ACTIVE",
        )
        .await;
        assert_eq!(error["details"]["status"], "blocked");
        let active = w
            .srv
            .request(Method::PATCH, &format!("/api/v1/machines/{}", w.machine_id))
            .json(&json!({"status": "active"}))
            .send()
            .await
            .unwrap();
        assert_eq!(active.status(), StatusCode::OK);

        w.mcr
            .register(MACHINE_DID, 9001, &Wallet::random().address(), true);
        w.srv.clock.advance_ms(30_001);
        let error = expect_error(
            w.srv.post_json(&challenges, &fields).await,
            StatusCode::FORBIDDEN,
            "MACHINE_NOT_ACTIVATED",
        )
        .await;
        assert_eq!(error["details"]["reason"], "controller-changed");
        w.mcr.set(MACHINE_DID, Behaviour::Status(503));
        w.srv.clock.advance_ms(30_001);
        expect_error(
            w.srv.post_json(&challenges, &fields).await,
            StatusCode::SERVICE_UNAVAILABLE,
            "PEAQOS_IDENTITY_UNAVAILABLE",
        )
        .await;
        w.mcr.remove(MACHINE_DID);
        w.srv.clock.advance_ms(30_001);
        let error = expect_error(
            w.srv.post_json(&challenges, &fields).await,
            StatusCode::FORBIDDEN,
            "MACHINE_NOT_ACTIVATED",
        )
        .await;
        assert_eq!(error["details"]["reason"], "not-registered");
        let _ = &w.owner;
        w.srv.stop().await;
    }
}

#[tokio::test]
async fn pairings_belong_to_their_machine() {
    let w = world(&Backend::Sqlite, &[]).await;
    let agent = Wallet::random();
    let pairing = w.pair(&agent, None).await;
    let id = pairing["id"].as_str().unwrap();
    let other_owner = Wallet::random();
    w.mcr
        .register("did:peaq:9004", 9004, &other_owner.address(), true);
    let other = active_machine(&w.srv, &other_owner, "did:peaq:9004").await;
    let path = format!("/api/v1/machines/{other}/agent-pairings/{id}");
    let error = expect_error(
        w.srv
            .request(Method::PATCH, &path)
            .json(&json!({"status": "paused"}))
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
    assert_eq!(error["details"]["resource"], "agent-pairing");
    expect_error(
        w.srv.request(Method::DELETE, &path).send().await.unwrap(),
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
    expect_error(
        w.srv
            .post_json(&format!("{path}/sessions"), &json!({}))
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
    assert_eq!(
        json_of(
            w.srv
                .get(&format!("/api/v1/machines/{other}/agent-pairings"))
                .await
        )
        .await["items"],
        json!([])
    );
    w.srv.stop().await;
}

#[tokio::test]
async fn one_challenge_creates_one_pairing_under_concurrency() {
    for backend in backends() {
        let w = world(&backend, &[]).await;
        let agent = Wallet::random();
        let mut body = agent_fields(&agent);
        body["agentProof"] = w.proof(&body.clone(), &agent).await;
        let responses = futures_util::future::join_all((0..20).map(|_| w.create(&body))).await;
        let mut created = 0;
        for response in responses {
            if response.status() == StatusCode::CREATED {
                created += 1;
            } else {
                let error = expect_error(
                    response,
                    StatusCode::UNAUTHORIZED,
                    "AGENT_PAIRING_PROOF_INVALID",
                )
                .await;
                assert_eq!(error["details"]["reason"], "challenge-consumed");
            }
        }
        assert_eq!(created, 1);
        assert_eq!(w.pairing_rows().await, 1);
        assert_eq!(w.events("agent-pairing.created").await.len(), 1);
        w.srv.stop().await;
    }
}

#[tokio::test]
async fn replicas_sharing_a_database_accept_each_others_tokens() {
    for backend in backends() {
        let w = world(&backend, &[]).await;
        let agent = Wallet::random();
        let token = w.pair(&agent, None).await["pairingToken"]
            .as_str()
            .unwrap()
            .to_string();
        let replica = TestServer::start_on(
            common::TestDb::create(&Backend::Sqlite).await,
            &w.srv.db.url,
            &[("PEAQOS_MCR_API_URL", w.mcr.url.as_str())],
        )
        .await;
        assert_eq!(
            replica.app.session_secret.expose(),
            w.srv.app.session_secret.expose()
        );
        let probe = start_probe(replica.app.clone()).await;
        let response = w
            .srv
            .http
            .get(format!("{probe}/probe/{}", w.machine_id))
            .header("x-agent-pairing-token", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        replica.stop_keep_db().await;
        w.srv.stop().await;
    }
}

#[tokio::test]
async fn pairing_tokens_are_not_stored() {
    let w = world(&Backend::Sqlite, &[]).await;
    let agent = Wallet::random();
    let pairing = w.pair(&agent, None).await;
    let token = pairing["pairingToken"].as_str().unwrap();
    let signature = token.split('.').nth(2).unwrap();
    let path = w.srv.db.url.trim_start_matches("sqlite://").to_string();
    let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&w.srv.app.store)
        .await;
    let mut bytes = std::fs::read(&path).unwrap();
    if let Ok(wal) = std::fs::read(format!("{path}-wal")) {
        bytes.extend(wal);
    }
    let haystack = String::from_utf8_lossy(&bytes);
    assert!(
        !haystack.contains(signature),
        "the token's signature is in the database file"
    );
    w.srv.stop().await;
}
