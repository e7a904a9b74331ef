//! Machine identity challenges, EIP-191 proofs checked against a fake MCR, and the machine
//! registry (spec identity-and-machines.md), with real signatures, on every backend.

mod common;

use std::time::{Duration, Instant};

use common::fake_mcr::{Behaviour, FakeMcr};
use common::wallet::Wallet;
use common::{Backend, TestServer, backends, expect_error, json_of};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

struct World {
    srv: TestServer,
    mcr: FakeMcr,
}

async fn world(backend: &Backend, env: &[(&str, &str)]) -> World {
    let mcr = FakeMcr::start().await;
    let mut vars: Vec<(&str, &str)> = vec![
        ("PEAQOS_MCR_API_URL", mcr.url.as_str()),
        ("PEAQOS_MCR_TIMEOUT_MS", "500"),
    ];
    vars.extend_from_slice(env);
    let srv = TestServer::start(backend, &vars).await;
    World { srv, mcr }
}

fn machine_body(identity_ref: &str, proof: Option<Value>) -> Value {
    let mut body = json!({
        "displayName": "Forklift 7",
        "ownerId": "owner-1",
        "machineType": "forklift",
        "runtimeProfile": "edge-gpu",
        "identityRef": identity_ref,
        "capabilities": ["lift", "drive", "lift"],
        "labels": {"siteName": "Hall B"},
        "skillKeys": ["vision.detect"],
    });
    if let Some(proof) = proof {
        body["identityProof"] = proof;
    }
    body
}

impl World {
    async fn challenge(&self, identity_ref: &str) -> Value {
        let response = self
            .srv
            .post_json(
                "/api/v1/machine-identity/challenges",
                &json!({"identityRef": identity_ref}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        json_of(response).await["item"].clone()
    }

    /// A signed proof for `identity_ref` over a fresh challenge.
    async fn proof(&self, identity_ref: &str, wallet: &Wallet) -> Value {
        let challenge = self.challenge(identity_ref).await;
        json!({
            "challengeId": challenge["challengeId"],
            "signature": wallet.sign_personal(challenge["message"].as_str().unwrap()),
        })
    }

    async fn create(&self, identity_ref: &str, proof: Option<Value>) -> reqwest::Response {
        self.srv
            .post_json("/api/v1/machines", &machine_body(identity_ref, proof))
            .await
    }

    async fn register(&self, identity_ref: &str, wallet: &Wallet) -> Value {
        let proof = self.proof(identity_ref, wallet).await;
        let response = self.create(identity_ref, Some(proof)).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        json_of(response).await["item"].clone()
    }

    async fn patch(&self, id: &str, body: Value) -> reqwest::Response {
        self.srv
            .request(Method::PATCH, &format!("/api/v1/machines/{id}"))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn machine_rows(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM machines")
            .fetch_one(&self.srv.app.store)
            .await
            .unwrap()
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

    async fn stop(self) {
        self.srv.stop().await;
    }
}

#[tokio::test]
async fn machine_lifecycle_with_a_verified_identity() {
    for backend in backends() {
        let w = world(&backend, &[]).await;
        let wallet = Wallet::random();
        w.mcr
            .register("did:peaq:1001", 1001, &wallet.address(), true);

        let challenge = w.challenge("peaqos:machine:1001").await;
        assert_eq!(challenge["identityRef"], "did:peaq:1001");
        assert_eq!(challenge["verificationMethod"], "eip191");
        assert_eq!(challenge["controllerAddresses"], json!([wallet.address()]));
        assert!(
            challenge["challengeId"]
                .as_str()
                .unwrap()
                .starts_with("mic_")
        );
        let message = challenge["message"].as_str().unwrap();
        assert!(message.starts_with("peaqOS machine identity proof\n\n"));
        assert!(message.contains(&format!("Orchestrator: {}\n", w.srv.base)));
        assert!(!message.ends_with('\n'));

        let proof = json!({"challengeId": challenge["challengeId"], "signature": wallet.sign_personal(message)});
        let response = w.create("peaqos:machine:1001", Some(proof)).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let machine = json_of(response).await["item"].clone();
        let id = machine["id"].as_str().unwrap().to_string();
        assert!(id.starts_with("mach_"));
        assert_eq!(machine["status"], "draft");
        assert_eq!(machine["identityRef"], "did:peaq:1001");
        assert_eq!(machine["capabilities"], json!(["lift", "drive"]));
        assert_eq!(machine["labels"], json!({"siteName": "Hall B"}));
        assert_eq!(machine["policyIds"], json!([]));
        let proof = &machine["identityProof"];
        assert_eq!(proof["method"], "eip191");
        assert_eq!(proof["identityRef"], "did:peaq:1001");
        assert_eq!(proof["signerAddress"], wallet.address());
        assert_eq!(proof["challengeId"], challenge["challengeId"]);
        assert_eq!(proof["challengeExpiresAt"], challenge["expiresAt"]);
        assert_eq!(proof["resolutionSource"], "peaqos-mcr");
        assert_eq!(proof["controllerAddresses"], json!([wallet.address()]));

        // Activation re-verifies the stored proof (all 0.2.0 can do).
        let active = json_of(w.patch(&id, json!({"status": "active"})).await).await["item"].clone();
        assert_eq!(active["status"], "active");
        let renamed = w
            .patch(
                &id,
                json!({"displayName": "Forklift 8", "labels": {"zone": "4"}}),
            )
            .await;
        assert_eq!(renamed.status(), StatusCode::OK);
        let got = json_of(w.srv.get(&format!("/api/v1/machines/{id}")).await).await["item"].clone();
        assert_eq!(got["displayName"], "Forklift 8");
        assert_eq!(got["labels"], json!({"zone": "4"}));
        assert_eq!(got["status"], "active");
        let list = json_of(w.srv.get("/api/v1/machines").await).await;
        assert_eq!(list["items"].as_array().unwrap().len(), 1);
        // A PATCH that changes nothing writes nothing.
        let same = json_of(
            w.patch(
                &id,
                json!({"displayName": "Forklift 8", "status": "active"}),
            )
            .await,
        )
        .await["item"]
            .clone();
        assert_eq!(same["updatedAt"], got["updatedAt"]);

        let archived = w
            .srv
            .request(Method::DELETE, &format!("/api/v1/machines/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(archived.status(), StatusCode::NO_CONTENT);
        assert!(archived.text().await.unwrap().is_empty());
        let again = w
            .srv
            .request(Method::DELETE, &format!("/api/v1/machines/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NO_CONTENT);
        // Archived machines stay readable by id without MCR, and leave the list.
        w.mcr.set("did:peaq:1001", Behaviour::Status(500));
        let got = json_of(w.srv.get(&format!("/api/v1/machines/{id}")).await).await["item"].clone();
        assert_eq!(got["status"], "archived");
        assert_eq!(
            json_of(w.srv.get("/api/v1/machines").await).await["items"],
            json!([])
        );

        let created = w.events("machine.created").await;
        assert_eq!(created.len(), 1);
        assert_eq!(
            created[0]["payload"],
            json!({"identityRef": "did:peaq:1001", "status": "draft", "verified": true})
        );
        assert_eq!(created[0]["machineId"], id.as_str());
        let updated = w.events("machine.updated").await;
        assert_eq!(updated.len(), 2);
        assert_eq!(updated[1]["payload"]["statusFrom"], "draft");
        assert_eq!(updated[1]["payload"]["statusTo"], "active");
        assert_eq!(
            updated[0]["payload"]["changedFields"],
            json!(["displayName", "labels"])
        );
        let archived = w.events("machine.archived").await;
        assert_eq!(archived.len(), 1, "a second DELETE writes no event");
        assert_eq!(archived[0]["payload"], json!({"statusFrom": "active"}));
        assert_eq!(
            w.events("machine-identity.challenge-created").await.len(),
            1
        );
        w.stop().await;
    }
}

#[tokio::test]
async fn a_hex_identity_is_controlled_by_its_own_address() {
    let w = world(&Backend::Sqlite, &[]).await;
    let wallet = Wallet::random();
    let did = format!(
        "did:peaq:{}",
        wallet.address().to_uppercase().replace("0X", "0x")
    );
    let canonical = format!("did:peaq:{}", wallet.address());
    w.mcr.register(
        &canonical,
        77,
        "7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU",
        false,
    );
    let machine = w.register(&did, &wallet).await;
    assert_eq!(machine["identityRef"], canonical.as_str());
    assert_eq!(
        machine["identityProof"]["controllerAddresses"],
        json!([wallet.address()])
    );
    w.stop().await;
}

#[tokio::test]
async fn identity_proofs_cannot_be_bypassed_and_failures_persist_nothing() {
    for backend in backends() {
        let w = world(&backend, &[]).await;
        let owner = Wallet::random();
        let stranger = Wallet::random();
        w.mcr.register("did:peaq:5", 5, &owner.address(), true);
        w.mcr.register("did:peaq:6", 6, &owner.address(), true);

        let invalid = |reason: &'static str| {
            move |error: Value| assert_eq!(error["details"]["reason"], reason)
        };
        let check = |response: reqwest::Response, status: StatusCode, code: &'static str| {
            expect_error(response, status, code)
        };

        // No proof in required mode.
        check(
            w.create("did:peaq:5", None).await,
            StatusCode::BAD_REQUEST,
            "MACHINE_IDENTITY_PROOF_REQUIRED",
        )
        .await;
        // Wrong signer.
        let proof = w.proof("did:peaq:5", &stranger).await;
        invalid("signer-not-controller")(
            check(
                w.create("did:peaq:5", Some(proof)).await,
                StatusCode::UNAUTHORIZED,
                "MACHINE_IDENTITY_PROOF_INVALID",
            )
            .await,
        );
        // A signature over another challenge.
        let first = w.challenge("did:peaq:5").await;
        let second = w.challenge("did:peaq:5").await;
        let proof = json!({"challengeId": first["challengeId"], "signature": owner.sign_personal(second["message"].as_str().unwrap())});
        invalid("signer-not-controller")(
            check(
                w.create("did:peaq:5", Some(proof)).await,
                StatusCode::UNAUTHORIZED,
                "MACHINE_IDENTITY_PROOF_INVALID",
            )
            .await,
        );
        // A challenge for another identity.
        let proof = w.proof("did:peaq:6", &owner).await;
        invalid("identity-mismatch")(
            check(
                w.create("did:peaq:5", Some(proof)).await,
                StatusCode::UNAUTHORIZED,
                "MACHINE_IDENTITY_PROOF_INVALID",
            )
            .await,
        );
        // Unknown challenge.
        let proof = json!({"challengeId": "mic_nope", "signature": owner.sign_personal("x")});
        invalid("challenge-not-found")(
            check(
                w.create("did:peaq:5", Some(proof)).await,
                StatusCode::UNAUTHORIZED,
                "MACHINE_IDENTITY_PROOF_INVALID",
            )
            .await,
        );
        // Malformed signatures.
        let challenge = w.challenge("did:peaq:5").await;
        let good = owner.sign_personal(challenge["message"].as_str().unwrap());
        let mut bad_v = good.clone();
        bad_v.replace_range(130..132, "1d");
        for signature in [
            "0x1234".to_string(),
            "not-hex".to_string(),
            good[2..].to_string(),
            bad_v,
            format!("0x{}", "0".repeat(130)),
        ] {
            let proof = json!({"challengeId": challenge["challengeId"], "signature": signature});
            invalid("signature-malformed")(
                check(
                    w.create("did:peaq:5", Some(proof)).await,
                    StatusCode::UNAUTHORIZED,
                    "MACHINE_IDENTITY_PROOF_INVALID",
                )
                .await,
            );
        }
        // Blank proof fields.
        let error = check(
            w.create(
                "did:peaq:5",
                Some(json!({"challengeId": " ", "signature": good})),
            )
            .await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(error["details"]["field"], "identityProof.challengeId");
        // Expired.
        let proof = w.proof("did:peaq:5", &owner).await;
        w.srv.clock.advance_ms(600_001);
        check(
            w.create("did:peaq:5", Some(proof)).await,
            StatusCode::UNAUTHORIZED,
            "MACHINE_IDENTITY_PROOF_EXPIRED",
        )
        .await;
        // The controller changed in MCR after the challenge (the cache has expired by now).
        let proof = w.proof("did:peaq:5", &owner).await;
        w.mcr.register("did:peaq:5", 5, &stranger.address(), true);
        w.srv.clock.advance_ms(31_000);
        invalid("signer-not-controller")(
            check(
                w.create("did:peaq:5", Some(proof)).await,
                StatusCode::UNAUTHORIZED,
                "MACHINE_IDENTITY_PROOF_INVALID",
            )
            .await,
        );
        // A tampered challenge row.
        let challenge = w.challenge("did:peaq:5").await;
        let signature = stranger.sign_personal(challenge["message"].as_str().unwrap());
        sqlx::query(
            "UPDATE machine_identity_challenges SET expires_at = expires_at + 1 WHERE id = $1",
        )
        .bind(challenge["challengeId"].as_str().unwrap().to_string())
        .execute(&w.srv.app.store)
        .await
        .unwrap();
        let proof = json!({"challengeId": challenge["challengeId"], "signature": signature});
        invalid("challenge-tampered")(
            check(
                w.create("did:peaq:5", Some(proof)).await,
                StatusCode::UNAUTHORIZED,
                "MACHINE_IDENTITY_PROOF_INVALID",
            )
            .await,
        );

        assert_eq!(w.machine_rows().await, 0, "nothing persisted");
        assert!(w.events("machine.created").await.is_empty());
        let consumed: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM machine_identity_challenges WHERE consumed_at IS NOT NULL",
        )
        .fetch_one(&w.srv.app.store)
        .await
        .unwrap();
        assert_eq!(
            consumed, 0,
            "failed verifications leave challenges unconsumed"
        );

        // A replayed challenge: used once, then refused.
        let proof = w.proof("did:peaq:5", &stranger).await;
        let machine =
            json_of(w.create("did:peaq:5", Some(proof.clone())).await).await["item"].clone();
        let id = machine["id"].as_str().unwrap();
        w.srv
            .request(Method::DELETE, &format!("/api/v1/machines/{id}"))
            .send()
            .await
            .unwrap();
        invalid("challenge-consumed")(
            check(
                w.create("did:peaq:5", Some(proof)).await,
                StatusCode::UNAUTHORIZED,
                "MACHINE_IDENTITY_PROOF_INVALID",
            )
            .await,
        );
        w.stop().await;
    }
}

#[tokio::test]
async fn mcr_answers_map_to_the_spec_codes() {
    for backend in backends() {
        let w = world(&backend, &[]).await;
        let path = "/api/v1/machine-identity/challenges";
        let ask = |did: &'static str| {
            w.srv
                .request(Method::POST, path)
                .json(&json!({"identityRef": did}))
                .send()
        };

        let error = expect_error(
            ask("did:peaq:404").await.unwrap(),
            StatusCode::FORBIDDEN,
            "MACHINE_NOT_ACTIVATED",
        )
        .await;
        assert!(error["message"].is_string());
        w.mcr.set(
            "did:peaq:8",
            Behaviour::Machine(json!({"peaqos": {"did": "did:peaq:9", "machine_id": 9}})),
        );
        expect_error(
            ask("did:peaq:8").await.unwrap(),
            StatusCode::FORBIDDEN,
            "MACHINE_NOT_ACTIVATED",
        )
        .await;
        for behaviour in [
            Behaviour::Status(500),
            Behaviour::Status(429),
            Behaviour::Status(418),
            Behaviour::Malformed,
        ] {
            w.mcr.set("did:peaq:10", behaviour);
            let error = expect_error(
                ask("did:peaq:10").await.unwrap(),
                StatusCode::SERVICE_UNAVAILABLE,
                "PEAQOS_IDENTITY_UNAVAILABLE",
            )
            .await;
            assert!(
                !error["message"].as_str().unwrap().contains("127.0.0.1"),
                "no internals: {error}"
            );
        }
        w.mcr.set(
            "did:peaq:11",
            Behaviour::Machine(json!({"peaqos": {"did": "did:peaq:11"}})),
        );
        expect_error(
            ask("did:peaq:11").await.unwrap(),
            StatusCode::SERVICE_UNAVAILABLE,
            "PEAQOS_IDENTITY_UNAVAILABLE",
        )
        .await;

        // Slow MCR: answered within the configured timeout (500 ms here), never a hang.
        w.mcr.set(
            "did:peaq:12",
            Behaviour::Slow(Duration::from_secs(5), Box::new(Behaviour::Status(404))),
        );
        let started = Instant::now();
        expect_error(
            ask("did:peaq:12").await.unwrap(),
            StatusCode::SERVICE_UNAVAILABLE,
            "PEAQOS_IDENTITY_UNAVAILABLE",
        )
        .await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );

        // Activated but with no EVM controller.
        w.mcr.register(
            "did:peaq:13",
            13,
            "7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU",
            true,
        );
        let error = expect_error(
            ask("did:peaq:13").await.unwrap(),
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(error["details"]["reason"], "no-evm-controller");

        // Bad identity refs never reach MCR.
        for bad in ["did:peaq:007", "did:peaq:0xabc", "machine-1", " did:peaq:1"] {
            let error = expect_error(
                w.srv.post_json(path, &json!({"identityRef": bad})).await,
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
            )
            .await;
            assert_eq!(error["details"]["field"], "identityRef", "{bad}");
        }
        assert!(
            w.events("machine-identity.challenge-created")
                .await
                .is_empty()
        );
        w.stop().await;
    }
}

#[tokio::test]
async fn reads_re_verify_the_identity_and_a_warm_cache_spares_mcr() {
    for backend in backends() {
        let w = world(&backend, &[]).await;
        let owner = Wallet::random();
        w.mcr.register("did:peaq:21", 21, &owner.address(), true);
        let machine = w.register("did:peaq:21", &owner).await;
        let path = format!("/api/v1/machines/{}", machine["id"].as_str().unwrap());

        let before = w.mcr.requests("did:peaq:21");
        for _ in 0..5 {
            assert_eq!(w.srv.get(&path).await.status(), StatusCode::OK);
        }
        assert_eq!(
            w.mcr.requests("did:peaq:21"),
            before,
            "a warm cache answers reads"
        );

        // The controller changes: once the cache expires, reads refuse the machine. (Only positive
        // look-ups are cached, and the cache serves this one until it expires.)
        w.mcr
            .register("did:peaq:21", 21, &Wallet::random().address(), true);
        w.srv.clock.advance_ms(30_001);
        let error = expect_error(
            w.srv.get(&path).await,
            StatusCode::FORBIDDEN,
            "MACHINE_NOT_ACTIVATED",
        )
        .await;
        assert_eq!(error["details"]["reason"], "controller-changed");
        assert_eq!(
            json_of(w.srv.get("/api/v1/machines").await).await["items"],
            json!([]),
            "and the list hides it"
        );
        // The identity disappears from MCR.
        w.mcr.remove("did:peaq:21");
        w.srv.clock.advance_ms(30_001);
        let error = expect_error(
            w.srv.get(&path).await,
            StatusCode::FORBIDDEN,
            "MACHINE_NOT_ACTIVATED",
        )
        .await;
        assert_eq!(error["details"]["reason"], "not-registered");
        // MCR fails: reads and lists answer 503 rather than hiding machines.
        w.mcr.set("did:peaq:21", Behaviour::Status(502));
        w.srv.clock.advance_ms(30_001);
        expect_error(
            w.srv.get(&path).await,
            StatusCode::SERVICE_UNAVAILABLE,
            "PEAQOS_IDENTITY_UNAVAILABLE",
        )
        .await;
        expect_error(
            w.srv.get("/api/v1/machines").await,
            StatusCode::SERVICE_UNAVAILABLE,
            "PEAQOS_IDENTITY_UNAVAILABLE",
        )
        .await;
        expect_error(
            w.srv.get("/api/v1/machines/mach_unknown").await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;
        w.stop().await;
    }
}

#[tokio::test]
async fn identities_are_unique_among_live_machines_and_immutable() {
    for backend in backends() {
        let w = world(&backend, &[]).await;
        let owner = Wallet::random();
        w.mcr.register("did:peaq:31", 31, &owner.address(), true);
        let machine = w.register("did:peaq:31", &owner).await;
        let id = machine["id"].as_str().unwrap().to_string();

        let proof = w.proof("did:peaq:31", &owner).await;
        expect_error(
            w.create("peaqos:machine:31", Some(proof)).await,
            StatusCode::CONFLICT,
            "MACHINE_IDENTITY_EXISTS",
        )
        .await;

        expect_error(
            w.patch(&id, json!({"identityRef": "did:peaq:32"})).await,
            StatusCode::CONFLICT,
            "MACHINE_IDENTITY_IMMUTABLE",
        )
        .await;
        let same = w
            .patch(
                &id,
                json!({"identityRef": "peaqos:machine:31", "ownerId": "owner-2"}),
            )
            .await;
        assert_eq!(
            same.status(),
            StatusCode::OK,
            "an equal identity is ignored"
        );

        // A fresh proof on PATCH replaces the stored one and consumes its challenge.
        let proof = w.proof("did:peaq:31", &owner).await;
        let renewed =
            json_of(w.patch(&id, json!({"identityProof": proof.clone()})).await).await["item"]
                .clone();
        assert_eq!(
            renewed["identityProof"]["challengeId"],
            proof["challengeId"]
        );
        let error = expect_error(
            w.patch(&id, json!({"identityProof": proof})).await,
            StatusCode::UNAUTHORIZED,
            "MACHINE_IDENTITY_PROOF_INVALID",
        )
        .await;
        assert_eq!(error["details"]["reason"], "challenge-consumed");
        let last = &w.events("machine.updated").await[0];
        assert_eq!(last["payload"]["proofRenewed"], true);

        // Archived is terminal, and frees the identity.
        assert_eq!(
            w.patch(&id, json!({"status": "archived"})).await.status(),
            StatusCode::OK
        );
        let error = expect_error(
            w.patch(&id, json!({"displayName": "x"})).await,
            StatusCode::CONFLICT,
            "MACHINE_NOT_ACTIVE",
        )
        .await;
        assert_eq!(error["details"]["status"], "archived");
        assert_eq!(w.events("machine.archived").await.len(), 1);
        let again = w.register("did:peaq:31", &owner).await;
        assert_ne!(again["id"], id.as_str());
        w.stop().await;
    }
}

#[tokio::test]
async fn machine_fields_are_validated() {
    let w = world(
        &Backend::Sqlite,
        &[("PEAQOS_MACHINE_IDENTITY_VERIFICATION", "disabled")],
    )
    .await;
    for (patch, field) in [
        (json!({"displayName": "  "}), "displayName"),
        (
            json!({"ownerId": null, "displayName": "x".repeat(256)}),
            "displayName",
        ),
        (json!({"identityRef": "did:peaq:01"}), "identityRef"),
        (json!({"capabilities": ["ok", ""]}), "capabilities[1]"),
        (json!({"capabilities": "lift"}), "capabilities"),
        (json!({"labels": {"a": 1}}), "labels.a"),
        (json!({"policyIds": ["pol_missing"]}), "policyIds[0]"),
        (json!({"skillKeys": [" "]}), "skillKeys[0]"),
    ] {
        let mut body = machine_body("did:peaq:41", None);
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let error = expect_error(
            w.srv.post_json("/api/v1/machines", &body).await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(error["details"]["field"], field, "{patch}");
    }
    for missing in [
        "displayName",
        "ownerId",
        "machineType",
        "runtimeProfile",
        "identityRef",
    ] {
        let mut body = machine_body("did:peaq:41", None);
        body.as_object_mut().unwrap().remove(missing);
        let error = expect_error(
            w.srv.post_json("/api/v1/machines", &body).await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(error["details"]["field"], missing);
    }
    let response = w.create("did:peaq:41", None).await;
    let id = json_of(response).await["item"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let error = expect_error(
        w.patch(&id, json!({"status": "flying"})).await,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(error["details"]["field"], "status");
    assert_eq!(w.machine_rows().await, 1);
    w.stop().await;
}

#[tokio::test]
async fn verification_modes() {
    // optional: a proof is verified when sent; writes without one are allowed.
    let w = world(
        &Backend::Sqlite,
        &[("PEAQOS_MACHINE_IDENTITY_VERIFICATION", "optional")],
    )
    .await;
    let owner = Wallet::random();
    w.mcr.register("did:peaq:51", 51, &owner.address(), true);
    let bare = json_of(w.create("did:peaq:51", None).await).await["item"].clone();
    assert!(bare["identityProof"].is_null());
    let id = bare["id"].as_str().unwrap();
    assert_eq!(
        w.patch(id, json!({"status": "active"})).await.status(),
        StatusCode::OK,
        "activated in MCR: allowed"
    );
    w.mcr.register("did:peaq:53", 53, &owner.address(), true);
    let stranger_proof = w.proof("did:peaq:53", &Wallet::random()).await;
    expect_error(
        w.create("did:peaq:53", Some(stranger_proof)).await,
        StatusCode::UNAUTHORIZED,
        "MACHINE_IDENTITY_PROOF_INVALID",
    )
    .await;
    assert_eq!(
        json_of(w.srv.get("/api/v1/machines").await).await["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    w.stop().await;

    // required: a draft without a proof cannot be activated.
    // disabled: proofs are ignored and MCR is never called.
    let w = world(
        &Backend::Sqlite,
        &[("PEAQOS_MACHINE_IDENTITY_VERIFICATION", "disabled")],
    )
    .await;
    let machine = json_of(
        w.create(
            "did:peaq:54",
            Some(json!({"challengeId": "mic_x", "signature": "0x"})),
        )
        .await,
    )
    .await["item"]
        .clone();
    assert!(machine["identityProof"].is_null());
    let challenge = w.challenge("did:peaq:54").await;
    assert_eq!(
        challenge["controllerAddresses"],
        json!(["0x0000000000000000000000000000000000000000"])
    );
    let id = machine["id"].as_str().unwrap();
    assert_eq!(
        w.patch(id, json!({"status": "active"})).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        w.srv.get(&format!("/api/v1/machines/{id}")).await.status(),
        StatusCode::OK
    );
    assert_eq!(w.mcr.requests("did:peaq:54"), 0);
    w.stop().await;
}

#[tokio::test]
async fn a_draft_without_a_proof_is_not_activated_in_required_mode() {
    let db = common::TestDb::create(&Backend::Sqlite).await;
    let url = db.url.clone();
    // Registered while verification was optional, then the server moves to required.
    let mcr = FakeMcr::start().await;
    mcr.register("did:peaq:61", 61, &Wallet::random().address(), true);
    let srv = TestServer::start_on(
        db,
        &url,
        &[
            ("PEAQOS_MCR_API_URL", &mcr.url),
            ("PEAQOS_MACHINE_IDENTITY_VERIFICATION", "optional"),
        ],
    )
    .await;
    let machine = json_of(
        srv.post_json("/api/v1/machines", &machine_body("did:peaq:61", None))
            .await,
    )
    .await["item"]
        .clone();
    let id = machine["id"].as_str().unwrap().to_string();
    let db = srv.stop_keep_db().await;
    let srv = TestServer::start_on(db, &url, &[("PEAQOS_MCR_API_URL", &mcr.url)]).await;
    let activate = srv
        .request(Method::PATCH, &format!("/api/v1/machines/{id}"))
        .json(&json!({"status": "active"}))
        .send()
        .await
        .unwrap();
    let error = expect_error(activate, StatusCode::FORBIDDEN, "MACHINE_NOT_ACTIVATED").await;
    assert_eq!(error["details"]["reason"], "unverified");
    let rename = srv
        .request(Method::PATCH, &format!("/api/v1/machines/{id}"))
        .json(&json!({"displayName": "n"}))
        .send()
        .await
        .unwrap();
    expect_error(
        rename,
        StatusCode::BAD_REQUEST,
        "MACHINE_IDENTITY_PROOF_REQUIRED",
    )
    .await;
    let block = srv
        .request(Method::PATCH, &format!("/api/v1/machines/{id}"))
        .json(&json!({"status": "blocked"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        block.status(),
        StatusCode::OK,
        "stopping a machine needs no proof"
    );
    assert_eq!(
        json_of(srv.get("/api/v1/machines").await).await["items"],
        json!([]),
        "unverified drafts are not listed"
    );
    srv.stop().await;
}

#[tokio::test]
async fn lists_page_past_filtered_machines() {
    for backend in backends() {
        let w = world(&backend, &[]).await;
        let owner = Wallet::random();
        let mut ids = Vec::new();
        for n in 71..76 {
            let did = format!("did:peaq:{n}");
            w.mcr.register(&did, n, &owner.address(), true);
            ids.push(
                w.register(&did, &owner).await["id"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
            w.srv.clock.advance_ms(1);
        }
        // Two machines lose their controller: the list skips them and keeps paging.
        for n in [72, 74] {
            w.mcr.register(
                &format!("did:peaq:{n}"),
                n,
                &Wallet::random().address(),
                true,
            );
        }
        w.srv.clock.advance_ms(30_001);
        let mut seen = Vec::new();
        let mut cursor = None::<String>;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/machines?limit=1&cursor={c}"),
                None => "/api/v1/machines?limit=1".into(),
            };
            let page = json_of(w.srv.get(&path).await).await;
            seen.extend(
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m["id"].as_str().unwrap().to_string()),
            );
            match page["nextCursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        assert_eq!(seen, [ids[0].clone(), ids[2].clone(), ids[4].clone()]);
        w.stop().await;
    }
}

#[tokio::test]
async fn one_challenge_creates_one_machine_under_concurrency() {
    for backend in backends() {
        let w = world(&backend, &[]).await;
        let owner = Wallet::random();
        w.mcr.register("did:peaq:81", 81, &owner.address(), true);
        let proof = w.proof("did:peaq:81", &owner).await;
        let body = machine_body("did:peaq:81", Some(proof));
        let requests = (0..20).map(|_| w.srv.post_json("/api/v1/machines", &body));
        let responses = futures_util::future::join_all(requests).await;
        let created = responses
            .iter()
            .filter(|r| r.status() == StatusCode::CREATED)
            .count();
        assert_eq!(
            created,
            1,
            "{:?}",
            responses.iter().map(|r| r.status()).collect::<Vec<_>>()
        );
        for response in responses {
            let status = response.status();
            if status != StatusCode::CREATED {
                let body = json_of(response).await;
                assert!(
                    body["error"]["code"] == "MACHINE_IDENTITY_PROOF_INVALID"
                        || body["error"]["code"] == "MACHINE_IDENTITY_EXISTS",
                    "{status} {body}"
                );
            }
        }
        assert_eq!(w.machine_rows().await, 1);
        assert_eq!(w.events("machine.created").await.len(), 1);
        w.stop().await;
    }
}

#[tokio::test]
async fn one_identity_registers_once_under_concurrency() {
    for backend in backends() {
        let w = world(&backend, &[]).await;
        let owner = Wallet::random();
        w.mcr.register("did:peaq:82", 82, &owner.address(), true);
        let mut bodies = Vec::new();
        for _ in 0..20 {
            bodies.push(machine_body(
                "did:peaq:82",
                Some(w.proof("did:peaq:82", &owner).await),
            ));
        }
        let responses = futures_util::future::join_all(
            bodies
                .iter()
                .map(|b| w.srv.post_json("/api/v1/machines", b)),
        )
        .await;
        let mut created = 0;
        for response in responses {
            if response.status() == StatusCode::CREATED {
                created += 1;
            } else {
                expect_error(response, StatusCode::CONFLICT, "MACHINE_IDENTITY_EXISTS").await;
            }
        }
        assert_eq!(created, 1);
        assert_eq!(w.machine_rows().await, 1);
        let consumed: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM machine_identity_challenges WHERE consumed_at IS NOT NULL",
        )
        .fetch_one(&w.srv.app.store)
        .await
        .unwrap();
        assert_eq!(consumed, 1, "only the winner's challenge is consumed");
        w.stop().await;
    }
}

#[tokio::test]
async fn a_client_that_disconnects_does_not_cancel_its_request() {
    for backend in backends() {
        let w = world(&backend, &[("PEAQOS_MCR_TIMEOUT_MS", "5000")]).await;
        let owner = Wallet::random();
        w.mcr.set(
            "did:peaq:91",
            Behaviour::Slow(
                Duration::from_millis(1500),
                Box::new(Behaviour::Machine(common::fake_mcr::machine_body(
                    "did:peaq:91",
                    91,
                    &owner.address(),
                    true,
                ))),
            ),
        );
        let impatient = reqwest::Client::builder()
            .timeout(Duration::from_millis(400))
            .build()
            .unwrap();
        let gave_up = impatient
            .post(w.srv.url("/api/v1/machine-identity/challenges"))
            .header("idempotency-key", "disconnect-1")
            .json(&json!({"identityRef": "did:peaq:91"}))
            .send()
            .await;
        assert!(gave_up.is_err(), "the client timed out first");
        for _ in 0..100 {
            if !w
                .events("machine-identity.challenge-created")
                .await
                .is_empty()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            w.events("machine-identity.challenge-created").await.len(),
            1,
            "the request ran to completion"
        );
        let retry = w
            .srv
            .request(Method::POST, "/api/v1/machine-identity/challenges")
            .header("idempotency-key", "disconnect-1")
            .json(&json!({"identityRef": "did:peaq:91"}))
            .send()
            .await
            .unwrap();
        assert_eq!(retry.status(), StatusCode::CREATED);
        assert_eq!(
            retry.headers()["idempotent-replayed"],
            "true",
            "its key was completed, not abandoned"
        );
        w.stop().await;
    }
}
