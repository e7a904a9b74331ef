//! Request-scoped payments, x402 and MPP (spec orders-and-payments.md §2.4, §4.4, §7.2 step 7,
//! §7.4 Variant B and §9), against a loopback paywall that checks every payment for real
//! (`tests/common/x402_paywall.rs`) and a payer that signs as the official SDK does.

mod common;

use alloy_primitives::U256;
use common::evm::{Anvil, TokenSpec};
use common::market::{CatalogDir, Market, audit, catalog_file, manifest, merged, service, skill};
use common::process::ServerProcess;
use common::x402_paywall::{
    self as paywall, Draft, HANG, MPP, PAY_TO, Payer, Paywall, REJECTS, SETTLE_ERROR, SETTLE_FAILS,
    SETTLE_FAILS_200, Signed, Terms, USDC_BASE_SEPOLIA, V1, V2,
};
use common::{Backend, TestDb, backends, expect_error, expect_json, json_of, rand_u64};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

const SKILL: &str = "paywall-skill";
const PROVIDER: &str = "paywall";
const LOOPBACK: (&str, &str) = ("PEAQOS_RUNTIME_ALLOWED_NETWORK_SCOPES", "public,loopback");
const TOKEN_HEADER: &str = "x-agent-pairing-token";
const OTHER: &str = "0x1111111111111111111111111111111111111111";

/// The services of the test catalogue, each a provider path of the paywall.
const X402_V2: &str = "x402-v2";
const X402_SETTLE_FAILS: &str = "x402-settle-fails";
const X402_SETTLE_FAILS_200: &str = "x402-settle-fails-200";
const X402_REJECTS: &str = "x402-rejects";
const X402_V1: &str = "x402-v1";
const MPP_SVC: &str = "mpp-svc";
const PLAIN_200: &str = "plain-200";
const PLAIN_404: &str = "plain-404";
const PLAIN_503_BARE: &str = "plain-503-bare";
const PLAIN_402_BARE: &str = "plain-402-bare";
const HANGS: &str = "hangs";
const REFUSED: &str = "refused";
const WALLET: &str = "wallet-svc";

/// One skill whose services each call one paywall path, paid in what the paywall charges
/// (0.25 USDC on its chain, to [`PAY_TO`]).
fn catalog(paywall: &Paywall) -> CatalogDir {
    let url = paywall.url.as_str();
    let terms = &paywall.terms;
    let paid = |id: &str, url: &str, path: &str, rail: &str| {
        merged(
            service(id, SKILL, PROVIDER, "device.control"),
            json!({
                "endpoints": [{"operation": "run", "url": url, "path": path, "method": "POST"}],
                "pricing": {"mode": "fixed", "amount": 0.25, "currency": "USDC"},
                "payment": {"defaultRail": rail, "supportedRails": [rail], "required": true,
                            "chain": terms.network(), "token": "USDC",
                            "tokenAddress": terms.asset, "tokenDecimals": 6,
                            "walletAddress": terms.pay_to},
            }),
        )
    };
    let services = vec![
        paid(X402_V2, url, V2, "x402"),
        paid(X402_SETTLE_FAILS, url, SETTLE_FAILS, "x402"),
        paid(X402_SETTLE_FAILS_200, url, SETTLE_FAILS_200, "x402"),
        paid(X402_REJECTS, url, REJECTS, "x402"),
        paid(X402_V1, url, V1, "x402"),
        paid(MPP_SVC, url, MPP, "mpp"),
        paid(PLAIN_200, url, "/plain/200", "x402"),
        paid(PLAIN_404, url, "/plain/404", "x402"),
        paid(PLAIN_503_BARE, url, "/plain/503/bare", "x402"),
        paid(PLAIN_402_BARE, url, "/plain/402/bare", "x402"),
        paid(HANGS, url, HANG, "x402"),
        paid(REFUSED, &paywall::refused_url(), V2, "x402"),
        paid(WALLET, url, V2, "wallet"),
    ];
    let file = catalog_file(
        vec![merged(
            skill(SKILL, PROVIDER),
            json!({"serviceTypes": ["device.control"]}),
        )],
        vec![manifest(SKILL, PROVIDER)],
        services,
    );
    CatalogDir::with(&[("paywall.json", file)])
}

/// A server whose catalogue points at a paywall, an active machine and a pairing of it.
struct World {
    base: String,
    http: reqwest::Client,
    token: String,
    machine_id: String,
    pairing_id: String,
    paywall: Paywall,
    market: Option<Market>,
}

fn orders(id: &str, action: &str) -> String {
    if action.is_empty() {
        format!("/api/v1/market/orders/{id}")
    } else {
        format!("/api/v1/market/orders/{id}/{action}")
    }
}

impl World {
    async fn start(backend: &Backend) -> World {
        World::start_with(backend, Terms::default()).await
    }

    async fn start_with(backend: &Backend, terms: Terms) -> World {
        World::start_on(backend, Paywall::start_with(terms).await).await
    }

    async fn start_on(backend: &Backend, paywall: Paywall) -> World {
        let m = Market::start(backend, Some(catalog(&paywall)), &[LOOPBACK]).await;
        World {
            base: m.srv.base.clone(),
            http: reqwest::Client::new(),
            token: m.token.clone(),
            machine_id: m.machine_id.clone(),
            pairing_id: m.pairing_id.clone(),
            paywall,
            market: Some(m),
        }
    }

    /// A world on a running binary (no test clock).
    async fn on(base: &str, paywall: Paywall) -> World {
        let http = reqwest::Client::new();
        let machine = json!({"displayName": "m", "ownerId": "o", "machineType": "t",
            "runtimeProfile": "r", "identityRef": format!("did:peaq:{}", rand_u64())});
        let machine = expect_json(
            http.post(format!("{base}/api/v1/machines"))
                .json(&machine)
                .send()
                .await
                .unwrap(),
            StatusCode::CREATED,
        )
        .await;
        let machine_id = machine["item"]["id"].as_str().unwrap().to_string();
        expect_json(
            http.patch(format!("{base}/api/v1/machines/{machine_id}"))
                .json(&json!({"status": "active"}))
                .send()
                .await
                .unwrap(),
            StatusCode::OK,
        )
        .await;
        let pairing = expect_json(
            http.post(format!(
                "{base}/api/v1/machines/{machine_id}/agent-pairings"
            ))
            .json(
                &json!({"agentAddress": Payer::random().address().to_lowercase(),
                              "agentProvider": "anthropic", "agentRole": "buyer"}),
            )
            .send()
            .await
            .unwrap(),
            StatusCode::CREATED,
        )
        .await;
        World {
            base: base.to_string(),
            http,
            token: pairing["item"]["pairingToken"]
                .as_str()
                .unwrap()
                .to_string(),
            machine_id,
            pairing_id: pairing["item"]["id"].as_str().unwrap().to_string(),
            paywall,
            market: None,
        }
    }

    fn market(&self) -> &Market {
        self.market.as_ref().expect("an in-process server")
    }

    fn agent(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header(TOKEN_HEADER, &self.token)
    }

    async fn get(&self, path: &str) -> Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    async fn post(&self, id: &str, action: &str, body: &Value) -> Response {
        self.agent(Method::POST, &orders(id, action))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// A new order for `service_id`: its id.
    async fn order(&self, service_id: &str) -> String {
        let body = json!({"machineId": self.machine_id, "agentPairingId": self.pairing_id,
                          "serviceId": service_id, "input": {"prompt": "hello"}});
        let response = self
            .agent(Method::POST, "/api/v1/market/orders")
            .json(&body)
            .send()
            .await
            .unwrap();
        let order = expect_json(response, StatusCode::CREATED).await;
        order["item"]["id"].as_str().unwrap().to_string()
    }

    /// Payment-intent with `body`, which must create the payment.
    async fn intent_with(&self, id: &str, body: &Value) -> Value {
        let response = self.post(id, "payment-intent", body).await;
        expect_json(response, StatusCode::CREATED).await["item"].clone()
    }

    async fn intent(&self, id: &str) -> Value {
        self.intent_with(id, &json!({})).await
    }

    async fn proof(&self, id: &str, body: &Value) -> Response {
        self.post(id, "payment-proof", body).await
    }

    /// A proof that must hold the payment.
    async fn held(&self, id: &str, signed: &Signed) -> Value {
        let held = expect_json(self.proof(id, &signed.proof()).await, StatusCode::OK).await;
        assert_eq!(held["item"]["status"], "held", "{held}");
        held["item"].clone()
    }

    async fn execute(&self, id: &str, body: &Value) -> Response {
        self.post(id, "execute", body).await
    }

    /// `GET …/payment`: the payment, or `null`.
    async fn payment(&self, id: &str) -> Value {
        expect_json(self.get(&orders(id, "payment")).await, StatusCode::OK).await["item"].clone()
    }

    async fn read_order(&self, id: &str) -> Value {
        expect_json(self.get(&orders(id, "")).await, StatusCode::OK).await["item"].clone()
    }

    /// An order of `service_id` with its intent made: `(order id, payment)`.
    async fn ordered(&self, service_id: &str) -> (String, Value) {
        let id = self.order(service_id).await;
        let payment = self.intent(&id).await;
        (id, payment)
    }

    async fn audit(&self, event_type: &str) -> Vec<Value> {
        audit(&self.market().srv, event_type).await
    }

    async fn stop(self) {
        if let Some(m) = self.market {
            m.stop().await;
        }
    }
}

/// The `PAYMENT-REQUIRED` value the intent captured.
fn captured(payment: &Value) -> &str {
    payment["rail"]["metadata"]["paymentRequest"]["paymentRequired"]
        .as_str()
        .unwrap_or_else(|| panic!("no captured challenge: {payment}"))
}

fn execute_body(signed: &Signed) -> Value {
    json!({"input": {"prompt": "paid"}, "payment": {"paymentSignature": signed.header}})
}

// ---------------------------------------------------------------------------------------------
// The test payer against the official SDK

/// `sign_x402_payment(payment, "0x" + "11" * 32)` of peaq-os-sdk 0.12.1 with x402 2.25.0, for
/// the challenge of [`sdk_terms`] (resource `http://127.0.0.1:1/x402/v2`, "paid run").
const SDK_HEADER: &str = "eyJ4NDAyVmVyc2lvbiI6MiwicGF5bG9hZCI6eyJhdXRob3JpemF0aW9uIjp7ImZyb20iOiIweDE5RTdFMzc2RTdDMjEzQjdFN2U3ZTQ2Y2M3MEE1ZEQwODZEQWZmMkEiLCJ0byI6IjB4MjA5NjkzQmM2YWZjMEM1MzI4YkEzNkZhRjAzQzUxNEVGMzEyMjg3QyIsInZhbHVlIjoiMjUwMDAwIiwidmFsaWRBZnRlciI6IjAiLCJ2YWxpZEJlZm9yZSI6IjIxMTE1MjAwNzUiLCJub25jZSI6IjB4ODFiOGFiNDU0NWNjMTg0MjkxZmExODZlMDBiNTc2NzE1ZWZjOTI2OTAxZDQyOTFjOTdkM2FjOWZmMGI2ZGVhZiJ9LCJzaWduYXR1cmUiOiIweGExMzM0OTAzMzJmYjIyMjdlZDRlMDE1OTI5NmZhMjU3OGYyMDcyN2YyYmY3ODY0N2E2Mzc1MzNhNTJkYzBlYWY1YzUxZGU0ZDdlZWU4ZjdkM2RjZDA5MGViZTUxYmI3ZDM3ZTBmMTRlNmZlNTUxYzUzZGEwOWQ4ZmJmNDI0YjdkMWIifSwiYWNjZXB0ZWQiOnsic2NoZW1lIjoiZXhhY3QiLCJuZXR3b3JrIjoiZWlwMTU1Ojg0NTMyIiwiYXNzZXQiOiIweDAzNkNiRDUzODQyYzU0MjY2MzRlNzkyOTU0MWVDMjMxOGYzZENGN2UiLCJhbW91bnQiOiIyNTAwMDAiLCJwYXlUbyI6IjB4MjA5NjkzQmM2YWZjMEM1MzI4YkEzNkZhRjAzQzUxNEVGMzEyMjg3QyIsIm1heFRpbWVvdXRTZWNvbmRzIjozMTUzNjAwMDAsImV4dHJhIjp7Im5hbWUiOiJVU0RDIiwidmVyc2lvbiI6IjIifX0sInJlc291cmNlIjp7InVybCI6Imh0dHA6Ly8xMjcuMC4wLjE6MS94NDAyL3YyIiwiZGVzY3JpcHRpb24iOiJwYWlkIHJ1biIsIm1pbWVUeXBlIjoiYXBwbGljYXRpb24vanNvbiJ9fQ==";
const SDK_REFERENCE: &str = "x402:eip155:84532:9ef01e7fa82f2c15f74d9793";
const SDK_KEY: &str = "0x1111111111111111111111111111111111111111111111111111111111111111";

/// The vector's terms: the defaults, with ten years to pay (so it stays valid until 2036).
fn sdk_terms() -> Terms {
    Terms {
        max_timeout_seconds: 315_360_000,
        ..Terms::default()
    }
}

#[test]
fn the_test_payer_signs_byte_for_byte_like_the_official_sdk() {
    let sdk = paywall::decode(SDK_HEADER);
    let draft = Draft {
        accepted: serde_json::from_value(sdk["accepted"].clone()).unwrap(),
        resource: serde_json::from_value(sdk["resource"].clone()).unwrap(),
        authorization: serde_json::from_value(sdk["payload"]["authorization"].clone()).unwrap(),
    };
    assert_eq!(draft.accepted, sdk_terms().requirements());
    let payer = Payer::from_hex(SDK_KEY);
    assert_eq!(draft.authorization.from, payer.address());
    let signed = payer.sign(&draft);
    assert_eq!(signed.header, SDK_HEADER);
    assert_eq!(signed.reference, SDK_REFERENCE);
    // A fresh draft has the SDK's shape: validAfter 0, validBefore now + maxTimeoutSeconds.
    let challenge = paywall::encode(&paywall::PaymentRequired {
        x402_version: 2,
        error: None,
        resource: None,
        accepts: vec![Terms::default().requirements()],
    });
    let fresh = payer.draft(&challenge);
    assert_eq!(fresh.authorization.valid_after, "0");
    let before: u64 = fresh.authorization.valid_before.parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        (now + 299..=now + 301).contains(&before),
        "{before} vs {now}"
    );
    assert_eq!(fresh.authorization.to, PAY_TO);
    assert_eq!(fresh.authorization.value, "250000");
    assert_eq!(fresh.authorization.nonce.len(), 66);
}

#[tokio::test]
async fn a_payment_signed_by_the_official_sdk_is_held_and_settles() {
    for backend in backends() {
        let w = World::start_with(&backend, sdk_terms()).await;
        let (id, _) = w.ordered(X402_V2).await;
        let body = json!({"payment": {"paymentSignature": SDK_HEADER},
                          "paymentReference": SDK_REFERENCE,
                          "metadata": {"headerName": "PAYMENT-SIGNATURE", "network": "eip155:84532"}});
        let held = expect_json(w.proof(&id, &body).await, StatusCode::OK).await["item"].clone();
        assert_eq!(held["status"], "held", "{held}");
        assert_eq!(
            held["proof"]["payerAddress"],
            "0x19e7e376e7c213b7e7e7e46cc70a5dd086daff2a"
        );
        let executed = expect_json(
            w.execute(&id, &json!({"payment": {"paymentSignature": SDK_HEADER}}))
                .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(executed["order"]["status"], "delivered", "{executed}");
        let verified = w.paywall.verified();
        assert_eq!(verified.len(), 1, "the paywall accepted the SDK's payment");
        assert_eq!(verified[0].header, SDK_HEADER);
        assert_eq!(w.payment(&id).await["status"], "released");
        w.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Challenge capture at payment-intent (§9.2)

#[tokio::test]
async fn intent_keeps_an_x402_v2_challenge_byte_for_byte() {
    for backend in backends() {
        let w = World::start(&backend).await;
        let id = w.order(X402_V2).await;
        let response = w.post(&id, "payment-intent", &json!({})).await;
        let payment = expect_json(response, StatusCode::CREATED).await["item"].clone();
        assert_eq!(payment["status"], "intent_created");
        assert_eq!(payment["rail"]["type"], "x402");
        let request = &payment["rail"]["metadata"]["paymentRequest"];
        let sent = w.paywall.payment_required(V2);
        // The paywall's JSON is not in serde_json's key order, so a re-encoding would differ.
        assert_ne!(
            paywall::decode_text(&sent),
            paywall::decode(&sent).to_string()
        );
        assert_eq!(
            request["paymentRequired"],
            sent.as_str(),
            "kept as received"
        );
        assert_eq!(
            request["accepts"],
            json!([serde_json::to_value(w.paywall.terms.requirements()).unwrap()])
        );
        assert_eq!(request["x402Version"], 2);
        assert_eq!(request["statusCode"], 402);
        assert_eq!(request["paymentUrl"], format!("{}{V2}", w.paywall.url));
        assert!(payment["rail"]["metadata"].get("mpp").is_none());
        // The rest of the rail as payment-intent builds it.
        assert_eq!(payment["rail"]["chain"], "eip155:84532");
        assert_eq!(payment["rail"]["tokenAddress"], USDC_BASE_SEPOLIA);
        assert_eq!(payment["rail"]["metadata"]["rawAmount"], "250000");
        // The provider was asked once, without payment headers.
        let seen = w.paywall.seen();
        assert_eq!(seen.len(), 1);
        for name in [
            "payment-signature",
            "x-payment",
            "authorization",
            "sign-in-with-x",
        ] {
            assert_eq!(seen[0].header(name), None, "{name}");
        }
        assert_eq!(seen[0].path, V2);
        assert_eq!(w.read_order(&id).await["status"], "payment_pending");
        assert_eq!(w.payment(&id).await, payment, "stored as answered");
        let events = w.audit("market.payment.intent-created").await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["payload"]["railType"], "x402");
        // Payment-intent is idempotent: the provider is not asked again.
        let again = expect_json(
            w.post(&id, "payment-intent", &json!({})).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(again["item"], payment);
        assert_eq!(w.paywall.count(), 1);
        w.stop().await;
    }
}

#[tokio::test]
async fn intent_keeps_an_x402_v1_body_challenge() {
    for backend in backends() {
        let w = World::start(&backend).await;
        let (_, payment) = w.ordered(X402_V1).await;
        let request = &payment["rail"]["metadata"]["paymentRequest"];
        let body = w.paywall.v1_body();
        assert_eq!(paywall::decode(captured(&payment)), body);
        assert_eq!(request["accepts"], body["accepts"]);
        assert_eq!(request["accepts"][0]["maxAmountRequired"], "250000");
        assert_eq!(request["x402Version"], 1);
        assert_eq!(request["statusCode"], 402);
        assert_eq!(request["paymentUrl"], format!("{}{V1}", w.paywall.url));
        assert_eq!(payment["status"], "intent_created");
        w.stop().await;
    }
}

#[tokio::test]
async fn intent_keeps_an_mpp_challenge_and_no_payment_request() {
    for backend in backends() {
        let w = World::start(&backend).await;
        let (id, payment) = w.ordered(MPP_SVC).await;
        assert_eq!(payment["rail"]["type"], "mpp");
        let metadata = &payment["rail"]["metadata"];
        assert!(metadata.get("paymentRequest").is_none(), "{metadata}");
        let challenges = w.paywall.mpp_challenges();
        assert_eq!(challenges.len(), 1);
        assert_eq!(
            metadata["mpp"],
            json!({"wwwAuthenticate": challenges[0], "statusCode": 402,
                   "paymentUrl": format!("{}{MPP}", w.paywall.url)})
        );
        // Execute without the credential answers the MPP challenge.
        let error = expect_error(
            w.execute(&id, &json!({})).await,
            StatusCode::PAYMENT_REQUIRED,
            "PAYMENT_REQUIRED",
        )
        .await;
        assert_eq!(error["details"]["challenge"], metadata["mpp"]);
        w.stop().await;
    }
}

#[tokio::test]
async fn intent_records_any_other_answer_as_a_diagnostic() {
    for backend in backends() {
        let w = World::start(&backend).await;
        let long = paywall::long_error();
        let cases = [
            (PLAIN_200, "/plain/200", 200, "HTTP 200".to_string()),
            (
                PLAIN_404,
                "/plain/404",
                404,
                long.chars().take(500).collect(),
            ),
            (
                PLAIN_503_BARE,
                "/plain/503/bare",
                503,
                "HTTP 503".to_string(),
            ),
            (
                PLAIN_402_BARE,
                "/plain/402/bare",
                402,
                "HTTP 402".to_string(),
            ),
        ];
        for (service_id, path, status, body_error) in cases {
            let (id, payment) = w.ordered(service_id).await;
            assert_eq!(payment["status"], "intent_created", "{service_id}");
            assert_eq!(
                payment["rail"]["metadata"]["paymentRequest"],
                json!({"statusCode": status, "bodyError": body_error,
                       "paymentUrl": format!("{}{path}", w.paywall.url)}),
                "{service_id}"
            );
            assert!(payment["rail"]["metadata"].get("mpp").is_none());
            assert_eq!(w.read_order(&id).await["status"], "payment_pending");
        }
        assert_eq!(long.len(), 600, "the cut is visible");
        w.stop().await;
    }
}

#[tokio::test]
async fn intent_stores_nothing_when_the_provider_cannot_be_reached() {
    for backend in backends() {
        let w = World::start(&backend).await;
        let id = w.order(REFUSED).await;
        expect_error(
            w.post(&id, "payment-intent", &json!({})).await,
            StatusCode::BAD_GATEWAY,
            "ENDPOINT_UNREACHABLE",
        )
        .await;
        assert_eq!(w.payment(&id).await, Value::Null);
        assert_eq!(w.read_order(&id).await["status"], "created");
        assert!(w.audit("market.payment.intent-created").await.is_empty());
        w.stop().await;
    }
}

/// The one test that waits out a real timeout (10 s per backend).
#[tokio::test]
async fn intent_gives_up_on_a_silent_provider_after_ten_seconds() {
    for backend in backends() {
        let w = World::start(&backend).await;
        let id = w.order(HANGS).await;
        let started = std::time::Instant::now();
        expect_error(
            w.post(&id, "payment-intent", &json!({})).await,
            StatusCode::BAD_GATEWAY,
            "ENDPOINT_UNREACHABLE",
        )
        .await;
        let waited = started.elapsed().as_secs_f64();
        assert!((9.5..20.0).contains(&waited), "waited {waited} s");
        assert_eq!(w.paywall.count(), 1, "the provider was called");
        assert_eq!(w.payment(&id).await, Value::Null);
        assert_eq!(w.read_order(&id).await["status"], "created");
        w.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Payment-proof, Variant B (§7.4)

#[tokio::test]
async fn headers_prove_only_request_scoped_rails() {
    for backend in backends() {
        let w = World::start(&backend).await;
        let (id, payment) = w.ordered(WALLET).await;
        assert_eq!(payment["rail"]["type"], "wallet");
        let signed = Payer::random().pay(&w.paywall.payment_required(V2));
        let error = expect_error(
            w.proof(&id, &signed.proof()).await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(error["details"]["reason"], "rail-mismatch", "{error}");
        assert_eq!(w.payment(&id).await, payment, "unchanged");
        // Without a payment yet, the implicit one is on the service's rail: still a mismatch.
        let fresh = w.order(WALLET).await;
        let error = expect_error(
            w.proof(&fresh, &signed.proof()).await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(error["details"]["reason"], "rail-mismatch");
        assert_eq!(w.payment(&fresh).await, Value::Null);
        w.stop().await;
    }
}

#[tokio::test]
async fn undecodable_or_mixed_headers_are_refused() {
    for backend in backends() {
        let w = World::start(&backend).await;
        let (id, payment) = w.ordered(X402_V2).await;
        let signed = Payer::random().pay(captured(&payment));
        let b64 =
            |text: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, text);
        let hash = format!("0x{}", "ab".repeat(32));
        let cases = [
            (
                json!({"payment": {"paymentSignature": signed.header}, "transactionHash": hash}),
                "payment",
            ),
            (
                json!({"payment": {"paymentSignature": signed.header},
                       "transactionSignature": "5".repeat(88)}),
                "payment",
            ),
            (
                json!({"payment": {"paymentSignature": "not base64 at all!"}}),
                "payment.paymentSignature",
            ),
            (
                json!({"payment": {"paymentSignature": b64("not json")}}),
                "payment.paymentSignature",
            ),
            (
                json!({"payment": {"paymentSignature": b64("[1, 2]")}}),
                "payment.paymentSignature",
            ),
            (
                json!({"payment": {"xPayment": b64("\"a string\"")}}),
                "payment.xPayment",
            ),
            (json!({"payment": {}}), "payment"),
            (json!({"payment": {"paymentSignature": "  "}}), "payment"),
        ];
        for (body, field) in cases {
            let error = expect_error(
                w.proof(&id, &body).await,
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
            )
            .await;
            assert_eq!(error["details"]["field"], field, "{body}: {error}");
        }
        assert_eq!(w.payment(&id).await, payment, "unchanged");
        // The refused bodies did not spend the authorization.
        w.held(&id, &signed).await;
        w.stop().await;
    }
}

#[tokio::test]
async fn a_valid_signature_holds_the_payment_without_storing_the_header() {
    for backend in backends() {
        let w = World::start(&backend).await;
        let (id, payment) = w.ordered(X402_V2).await;
        let payer = Payer::random();
        let signed = payer.pay(captured(&payment));
        let mut body = signed.proof();
        body["metadata"]["serviceId"] = json!(X402_V2);
        let response = w.proof(&id, &body).await;
        let text = response.text().await.unwrap();
        assert!(!text.contains(&signed.header), "the header is not echoed");
        let held: Value = serde_json::from_str::<Value>(&text).unwrap()["item"].clone();
        assert_eq!(held["status"], "held", "{held}");
        assert_eq!(held["id"], payment["id"]);
        let proof = &held["proof"];
        assert_eq!(proof["verificationMode"], "recorded");
        assert_eq!(
            proof["payerAddress"],
            payer.address().to_lowercase(),
            "authorization.from"
        );
        assert_eq!(proof["paymentReference"], signed.reference.as_str());
        assert_eq!(
            proof["metadata"],
            json!({"headerName": "PAYMENT-SIGNATURE", "network": "eip155:84532",
                   "asset": USDC_BASE_SEPOLIA, "amount": "250000", "serviceId": X402_V2}),
            "the client's metadata, the header name and the network"
        );
        assert!(proof["verifiedAt"].is_string());
        assert_eq!(proof["transactionHash"], Value::Null);
        assert_eq!(
            held["rail"], payment["rail"],
            "the rail keeps its challenge"
        );
        assert_eq!(w.read_order(&id).await["status"], "ready");
        let read = w.get(&orders(&id, "payment")).await.text().await.unwrap();
        assert!(!read.contains(&signed.header));
        assert!(!read.contains(&signed.payload.payload.signature));
        let events = w.audit("market.payment.proof-recorded").await;
        assert_eq!(events.len(), 1);
        let event = &events[0]["payload"];
        assert_eq!(event["paymentReference"], signed.reference.as_str());
        assert_eq!(event["headerName"], "PAYMENT-SIGNATURE");
        assert_eq!(event["verificationMode"], "recorded");
        assert!(!event.to_string().contains(&signed.header));
        assert_eq!(w.paywall.count(), 1, "a proof does not call the provider");
        w.stop().await;
    }
}

/// `(rule, what breaks it)`: each signature the payer makes is otherwise valid.
fn broken(payer: &Payer, intruder: &Payer, challenge: &str) -> Vec<(&'static str, Signed)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let with = |f: &dyn Fn(&mut Draft)| {
        let mut draft = payer.draft(challenge);
        f(&mut draft);
        payer.sign(&draft)
    };
    vec![
        ("signature", intruder.sign(&payer.draft(challenge))),
        (
            "challenge",
            with(&|d| {
                d.accepted.pay_to = OTHER.into();
                d.authorization.to = OTHER.into();
            }),
        ),
        (
            "challenge",
            with(&|d| d.accepted.asset = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".into()),
        ),
        (
            "challenge",
            with(&|d| d.accepted.network = "eip155:8453".into()),
        ),
        ("to", with(&|d| d.authorization.to = OTHER.into())),
        ("value", with(&|d| d.authorization.value = "250001".into())),
        (
            "value",
            with(&|d| {
                d.accepted.amount = "1".into();
                d.authorization.value = "1".into();
            }),
        ),
        (
            "validAfter",
            with(&|d| d.authorization.valid_after = (now + 3600).to_string()),
        ),
        (
            "validBefore",
            with(&|d| d.authorization.valid_before = (now - 1).to_string()),
        ),
    ]
}

#[tokio::test]
async fn every_broken_signature_is_refused_with_the_rule_it_breaks() {
    for backend in backends() {
        let w = World::start(&backend).await;
        let (id, payment) = w.ordered(X402_V2).await;
        let payer = Payer::random();
        for (rule, signed) in broken(&payer, &Payer::random(), captured(&payment)) {
            let error = expect_error(
                w.proof(&id, &signed.proof()).await,
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
            )
            .await;
            assert_eq!(error["details"]["reason"], "payment-signature-invalid");
            assert_eq!(error["details"]["field"], "payment.paymentSignature");
            assert_eq!(error["details"]["rule"], rule, "{error}");
            assert!(!error.to_string().contains(&signed.header));
            assert_eq!(w.payment(&id).await, payment, "unchanged after {rule}");
        }
        assert_eq!(w.read_order(&id).await["status"], "payment_pending");
        assert!(w.audit("market.payment.proof-recorded").await.is_empty());
        // The same payer's honest signature holds it.
        w.held(&id, &payer.pay(captured(&payment))).await;
        w.stop().await;
    }
}

#[tokio::test]
async fn the_server_clock_decides_when_an_authorization_expires() {
    for backend in backends() {
        let w = World::start(&backend).await;
        let (id, payment) = w.ordered(X402_V2).await;
        let signed = Payer::random().pay(captured(&payment));
        // Valid for 300 s by the wall clock; the server's clock is 301 s ahead.
        w.market().srv.clock.advance_ms(301_000);
        let error = expect_error(
            w.proof(&id, &signed.proof()).await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(error["details"]["rule"], "validBefore", "{error}");
        assert_eq!(w.payment(&id).await, payment);
        w.stop().await;
    }
}

#[tokio::test]
async fn one_authorization_backs_one_payment() {
    for backend in backends() {
        let w = World::start(&backend).await;
        let (first, payment) = w.ordered(X402_V2).await;
        let (second, other) = w.ordered(X402_V2).await;
        let payer = Payer::random();
        let signed = payer.pay(captured(&payment));
        w.held(&first, &signed).await;
        // The same authorization, as the same header and as another encoding of it.
        let pretty = signed.reencoded(|p| serde_json::to_string_pretty(p).unwrap());
        assert_ne!(pretty.header, signed.header);
        for reused in [&signed, &pretty] {
            let error = expect_error(
                w.proof(&second, &reused.proof()).await,
                StatusCode::CONFLICT,
                "IDEMPOTENCY_CONFLICT",
            )
            .await;
            assert_eq!(error["details"]["reason"], "transaction-already-used");
            assert_eq!(w.payment(&second).await, other, "unchanged");
        }
        // Another authorization of the same payer is another payment.
        w.held(&second, &payer.pay(captured(&other))).await;
        w.stop().await;
    }
}

#[tokio::test]
async fn a_proof_on_a_held_payment_changes_nothing() {
    for backend in backends() {
        let w = World::start(&backend).await;
        let (id, payment) = w.ordered(X402_V2).await;
        let signed = Payer::random().pay(captured(&payment));
        let held = w.held(&id, &signed).await;
        let again = Payer::random().pay(captured(&payment));
        for body in [signed.proof(), again.proof()] {
            let answer = expect_json(w.proof(&id, &body).await, StatusCode::OK).await;
            assert_eq!(answer["item"], held);
        }
        assert_eq!(w.payment(&id).await, held);
        assert_eq!(w.audit("market.payment.proof-recorded").await.len(), 1);
        w.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Execute and settlement (§4.4, §9.4, §9.5)

#[tokio::test]
async fn execute_without_headers_answers_the_captured_challenge() {
    for backend in backends() {
        let w = World::start(&backend).await;
        let (id, payment) = w.ordered(X402_V2).await;
        let challenge = payment["rail"]["metadata"]["paymentRequest"].clone();
        let signed = Payer::random().pay(captured(&payment));
        for held in [false, true] {
            if held {
                w.held(&id, &signed).await;
            }
            let status = w.read_order(&id).await["status"].clone();
            for body in [
                json!({}),
                json!({"payment": {}}),
                json!({"payment": {"paymentSignature": " "}}),
            ] {
                let error = expect_error(
                    w.execute(&id, &body).await,
                    StatusCode::PAYMENT_REQUIRED,
                    "PAYMENT_REQUIRED",
                )
                .await;
                assert_eq!(error["details"]["challenge"], challenge, "{body}");
                assert_eq!(w.read_order(&id).await["status"], status);
            }
        }
        assert_eq!(w.paywall.count(), 1, "execute did not call the provider");
        assert_eq!(w.payment(&id).await["status"], "held");
        w.stop().await;
    }
}

#[tokio::test]
async fn execute_forwards_the_signature_and_a_settlement_releases_the_payment() {
    for backend in backends() {
        let w = World::start(&backend).await;
        let (id, payment) = w.ordered(X402_V2).await;
        let payer = Payer::random();
        let signed = payer.pay(captured(&payment));
        w.held(&id, &signed).await;
        let executed =
            expect_json(w.execute(&id, &execute_body(&signed)).await, StatusCode::OK).await;
        assert_eq!(executed["execution"]["statusCode"], 200);
        assert_eq!(executed["order"]["status"], "delivered", "{executed}");
        assert_eq!(executed["execution"]["outcome"]["status"], "completed");
        assert_eq!(
            executed["execution"]["outcome"]["result"]["paidBy"],
            payer.address()
        );
        // The provider got exactly the agent's header, and nothing else to pay with.
        let call = w.paywall.last();
        assert_eq!(call.path, V2);
        let values: Vec<_> = call.headers.get_all("payment-signature").iter().collect();
        assert_eq!(values.len(), 1);
        assert_eq!(values[0].to_str().unwrap(), signed.header);
        assert_eq!(call.header("x-payment"), None);
        assert_eq!(call.header("authorization"), None);
        assert_eq!(call.json(), json!({"prompt": "paid"}));
        let verified = w.paywall.verified();
        assert_eq!(verified.len(), 1);
        assert_eq!(verified[0].payer, payer.address().to_lowercase());
        let settlement = &verified[0].settlement;

        let released = w.payment(&id).await;
        assert_eq!(released["status"], "released", "{released}");
        let proof = &released["proof"];
        assert_eq!(
            proof["metadata"]["paymentSettlement"],
            json!({"status": "settled",
                   "response": serde_json::to_value(settlement).unwrap(),
                   "payerAddress": payer.address()})
        );
        assert!(
            settlement
                .transaction
                .chars()
                .any(|c| c.is_ascii_uppercase())
        );
        assert_eq!(
            proof["transactionHash"],
            settlement.transaction.to_lowercase()
        );
        assert_eq!(proof["payerAddress"], payer.address());
        assert_eq!(proof["metadata"]["network"], "eip155:84532");
        assert_eq!(proof["paymentReference"], signed.reference.as_str());
        // One transaction: the order's delivery and the release carry the same instant.
        let order = w.read_order(&id).await;
        assert_eq!(order["status"], "delivered");
        assert_eq!(order["updatedAt"], released["updatedAt"]);
        let delivered = w.audit("market.order.executed").await;
        let release = w.audit("market.payment.released").await;
        assert_eq!((delivered.len(), release.len()), (1, 1));
        assert_eq!(delivered[0]["createdAt"], release[0]["createdAt"]);
        assert_eq!(delivered[0]["payload"]["paymentSettlement"], "settled");
        assert_eq!(
            release[0]["payload"]["transactionHash"],
            settlement.transaction.to_lowercase()
        );
        // Confirm closes the order; the payment stays released.
        let confirmed = expect_json(w.post(&id, "confirm", &json!({})).await, StatusCode::OK).await;
        assert_eq!(confirmed["order"]["status"], "confirmed", "{confirmed}");
        assert_eq!(w.payment(&id).await["status"], "released");
        w.stop().await;
    }
}

#[tokio::test]
async fn a_payment_settles_on_a_real_chain() {
    let node = Anvil::start().await;
    let token = node
        .deploy_token_with(TokenSpec {
            name: "USD Coin",
            version: "2",
            symbol: "USDC",
            decimals: 6,
        })
        .await;
    for backend in backends() {
        let w = World::start_on(&backend, Paywall::settling_on(&token, "250000").await).await;
        let payer = Payer::random();
        token.mint(&payer.address(), U256::from(1_000_000)).await;
        let payee_before = token.balance_of(PAY_TO).await;
        let (id, payment) = w.ordered(X402_V2).await;
        assert_eq!(
            payment["rail"]["chain"],
            format!("eip155:{}", node.chain_id)
        );
        let signed = payer.pay(captured(&payment));
        w.held(&id, &signed).await;
        let executed =
            expect_json(w.execute(&id, &execute_body(&signed)).await, StatusCode::OK).await;
        assert_eq!(executed["order"]["status"], "delivered", "{executed}");
        let released = w.payment(&id).await;
        assert_eq!(released["status"], "released", "{released}");
        let hash = released["proof"]["transactionHash"].as_str().unwrap();
        let receipt = node
            .rpc
            .receipt(hash)
            .await
            .expect("the settlement is mined");
        assert_eq!(receipt["status"], "0x1");
        assert_eq!(
            token.balance_of(PAY_TO).await - payee_before,
            U256::from(250_000)
        );
        assert_eq!(
            token.balance_of(&payer.address()).await,
            U256::from(750_000)
        );
        let nonce = signed.payload.payload.authorization.nonce.parse().unwrap();
        assert!(token.authorization_used(&payer.address(), nonce).await);
        w.stop().await;
    }
}

#[tokio::test]
async fn a_failed_settlement_on_a_200_keeps_the_payment_held() {
    for backend in backends() {
        let w = World::start(&backend).await;
        let (id, payment) = w.ordered(X402_SETTLE_FAILS_200).await;
        let signed = Payer::random().pay(captured(&payment));
        w.held(&id, &signed).await;
        let executed =
            expect_json(w.execute(&id, &execute_body(&signed)).await, StatusCode::OK).await;
        assert_eq!(
            executed["order"]["status"], "delivered",
            "the HTTP status decides"
        );
        let held = w.payment(&id).await;
        assert_eq!(held["status"], "held", "{held}");
        let settlement = &held["proof"]["metadata"]["paymentSettlement"];
        assert_eq!(settlement["status"], "failed");
        assert_eq!(settlement["response"]["success"], false);
        assert_eq!(settlement["response"]["errorReason"], SETTLE_ERROR);
        assert_eq!(settlement["response"]["transaction"], "");
        assert_eq!(
            held["proof"]["transactionHash"],
            Value::Null,
            "no transaction"
        );
        assert!(w.audit("market.payment.released").await.is_empty());
        // The agent can take it back.
        let refunded = expect_json(
            w.post(&id, "payment/refund", &json!({"reason": "not settled"}))
                .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(refunded["item"]["status"], "refunded");
        w.stop().await;
    }
}

#[tokio::test]
async fn a_failed_settlement_on_a_402_keeps_the_payment_held_with_its_reason() {
    for backend in backends() {
        let w = World::start(&backend).await;
        let (id, payment) = w.ordered(X402_SETTLE_FAILS).await;
        let signed = Payer::random().pay(captured(&payment));
        w.held(&id, &signed).await;
        expect_error(
            w.execute(&id, &execute_body(&signed)).await,
            StatusCode::PAYMENT_REQUIRED,
            "PAYMENT_REQUIRED",
        )
        .await;
        assert_eq!(
            w.paywall.verified().len(),
            1,
            "the paywall took the payment"
        );
        assert_eq!(w.read_order(&id).await["status"], "ready");
        let held = w.payment(&id).await;
        assert_eq!(held["status"], "held", "{held}");
        let settlement = &held["proof"]["metadata"]["paymentSettlement"];
        assert_eq!(settlement["status"], "failed", "{held}");
        assert_eq!(settlement["response"]["errorReason"], SETTLE_ERROR);
        w.stop().await;
    }
}

#[tokio::test]
async fn a_provider_402_at_execute_leaves_the_payment_held() {
    for backend in backends() {
        let w = World::start(&backend).await;
        let (id, payment) = w.ordered(X402_REJECTS).await;
        let signed = Payer::random().pay(captured(&payment));
        let held = w.held(&id, &signed).await;
        let error = expect_error(
            w.execute(&id, &execute_body(&signed)).await,
            StatusCode::PAYMENT_REQUIRED,
            "PAYMENT_REQUIRED",
        )
        .await;
        let challenge = &error["details"]["challenge"];
        assert_eq!(challenge["x402Version"], 2, "{error}");
        assert_eq!(
            paywall::decode(challenge["paymentRequired"].as_str().unwrap())["error"],
            SETTLE_ERROR
        );
        assert_eq!(w.paywall.refused(), vec![SETTLE_ERROR.to_string()]);
        assert_eq!(
            w.paywall.last().header("payment-signature").as_deref(),
            Some(signed.header.as_str())
        );
        let order = w.read_order(&id).await;
        assert_eq!(order["status"], "ready", "back to where it was");
        assert_eq!(w.payment(&id).await, held, "still held, unchanged");
        let outcomes = expect_json(
            w.get(&format!("/api/v1/machines/{}/outcomes", w.machine_id))
                .await,
            StatusCode::OK,
        )
        .await;
        let outcome = outcomes["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["id"] == order["outcomeId"])
            .unwrap_or_else(|| panic!("the attempt's outcome: {outcomes}"));
        assert_eq!(outcome["status"], "failed");
        assert_eq!(outcome["errorCode"], "PAYMENT_REQUIRED");
        w.stop().await;
    }
}

#[tokio::test]
async fn an_mpp_authorization_replaces_the_credential_bearer_and_its_receipt_settles() {
    for backend in backends() {
        let w = World::start(&backend).await;
        let bearer = format!("planted-bearer-{}", rand_u64());
        let api_key = format!("planted-api-key-{}", rand_u64());
        expect_json(
            w.market()
                .srv
                .patch_json(
                    &format!("/api/v1/skills/{SKILL}/config"),
                    &json!({"credentials": {"token": bearer, "apiKey": api_key}}),
                )
                .await,
            StatusCode::OK,
        )
        .await;
        let (id, payment) = w.ordered(MPP_SVC).await;
        // Without a payment, the credential's bearer goes.
        let unpaid = w.paywall.last();
        assert_eq!(
            unpaid.header("authorization"),
            Some(format!("Bearer {bearer}"))
        );
        let challenge = payment["rail"]["metadata"]["mpp"]["wwwAuthenticate"]
            .as_str()
            .unwrap();
        let credential = paywall::mpp_credential(challenge, "0xfeed");
        let held = expect_json(
            w.proof(&id, &json!({"payment": {"authorization": credential}}))
                .await,
            StatusCode::OK,
        )
        .await["item"]
            .clone();
        assert_eq!(held["status"], "held", "{held}");
        assert_eq!(held["proof"]["metadata"]["headerName"], "Authorization");
        assert_eq!(held["proof"]["payerAddress"], Value::Null);
        let executed = expect_json(
            w.execute(&id, &json!({"payment": {"authorization": credential}}))
                .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(executed["order"]["status"], "delivered", "{executed}");
        let call = w.paywall.last();
        let values: Vec<_> = call.headers.get_all("authorization").iter().collect();
        assert_eq!(values.len(), 1, "one Authorization: the payment's");
        assert_eq!(values[0].to_str().unwrap(), credential);
        assert_eq!(call.header("x-api-key"), Some(api_key));
        assert_eq!(call.header("payment-signature"), None);
        // The receipt (base64url JSON) is the settlement.
        let receipts = w.paywall.receipts();
        assert_eq!(receipts.len(), 1);
        let released = w.payment(&id).await;
        assert_eq!(released["status"], "released", "{released}");
        let settlement = &released["proof"]["metadata"]["paymentSettlement"];
        assert_eq!(settlement["status"], "settled");
        assert_eq!(settlement["response"], receipts[0]);
        assert_eq!(
            released["proof"]["transactionHash"],
            receipts[0]["reference"]
        );
        w.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Secrets (DESIGN.md "Rules of the house")

/// Every byte of a database the binary used: the SQLite file and its WAL, or a `pg_dump`.
async fn database_bytes(db: &TestDb) -> String {
    match &db.backend {
        Backend::Sqlite => {
            let path = db.url.trim_start_matches("sqlite://").to_string();
            let mut bytes = std::fs::read(&path).unwrap();
            if let Ok(wal) = std::fs::read(format!("{path}-wal")) {
                bytes.extend(wal);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Backend::Postgres(_) => {
            let output = std::process::Command::new("pg_dump")
                .arg("--dbname")
                .arg(&db.url)
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

async fn text_of(response: Response) -> (StatusCode, String) {
    let status = response.status();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn payment_headers_never_reach_responses_audit_idempotency_logs_or_the_database() {
    for backend in backends() {
        let paywall = Paywall::start().await;
        let catalog = catalog(&paywall);
        let db = TestDb::create(&backend).await;
        let server = ServerProcess::spawn(
            Some(&db.url),
            &[
                ("PEAQOS_MACHINE_IDENTITY_VERIFICATION", "disabled"),
                ("PEAQOS_AGENT_PAIRING_VERIFICATION", "disabled"),
                ("PEAQOS_RUNTIME_PROBE_INTERVAL_MS", "0"),
                ("PEAQOS_CATALOG_DIR", &catalog.path_str()),
                LOOPBACK,
            ],
        )
        .await;
        let w = World::on(&server.base, paywall).await;
        let mut bodies: Vec<String> = Vec::new();
        let mut keep = |(status, body): (StatusCode, String), expected: StatusCode| {
            assert_eq!(status, expected, "{body}");
            bodies.push(body);
        };

        // x402: refused proofs, a held proof (replayed by its idempotency key), execute.
        let (x402, payment) = w.ordered(X402_V2).await;
        let payer = Payer::random();
        let signed = payer.pay(captured(&payment));
        let forged = Payer::random().sign(&payer.draft(captured(&payment)));
        let garbage = format!("planted-garbage-{}", rand_u64());
        keep(
            text_of(
                w.proof(&x402, &json!({"payment": {"paymentSignature": garbage}}))
                    .await,
            )
            .await,
            StatusCode::BAD_REQUEST,
        );
        keep(
            text_of(w.proof(&x402, &forged.proof()).await).await,
            StatusCode::BAD_REQUEST,
        );
        for _ in 0..2 {
            let response = w
                .agent(Method::POST, &orders(&x402, "payment-proof"))
                .header("idempotency-key", "proof-with-a-signature")
                .json(&signed.proof())
                .send()
                .await
                .unwrap();
            keep(text_of(response).await, StatusCode::OK);
        }
        keep(
            text_of(w.execute(&x402, &execute_body(&signed)).await).await,
            StatusCode::OK,
        );
        assert_eq!(w.paywall.verified().len(), 1);

        // MPP with sign-in-with-X beside it.
        let (mpp, payment) = w.ordered(MPP_SVC).await;
        let mpp_secret = format!("planted-mpp-secret-{}", rand_u64());
        let credential = paywall::mpp_credential(
            payment["rail"]["metadata"]["mpp"]["wwwAuthenticate"]
                .as_str()
                .unwrap(),
            &mpp_secret,
        );
        let siwx = format!("planted-siwx-{}", rand_u64());
        let headers = json!({"authorization": credential, "signInWithX": siwx});
        keep(
            text_of(w.proof(&mpp, &json!({"payment": headers})).await).await,
            StatusCode::OK,
        );
        let calls = w.paywall.count();
        for _ in 0..2 {
            let response = w
                .agent(Method::POST, &orders(&mpp, "execute"))
                .header("idempotency-key", "execute-with-a-credential")
                .json(&json!({"payment": headers}))
                .send()
                .await
                .unwrap();
            keep(text_of(response).await, StatusCode::OK);
        }
        assert_eq!(
            w.paywall.count(),
            calls + 1,
            "the replay is the stored answer"
        );
        let forwarded = w.paywall.last();
        assert_eq!(forwarded.header("authorization"), Some(credential.clone()));
        assert_eq!(forwarded.header("sign-in-with-x"), Some(siwx.clone()));

        for id in [&x402, &mpp] {
            keep(text_of(w.get(&orders(id, "")).await).await, StatusCode::OK);
            keep(
                text_of(w.get(&orders(id, "payment")).await).await,
                StatusCode::OK,
            );
        }
        let released: Value = serde_json::from_str(bodies.last().unwrap()).unwrap();
        assert_eq!(released["item"]["status"], "released");
        let events = json_of(w.get("/api/v1/audit-events?limit=500").await).await;
        let types: Vec<&str> = events["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap())
            .collect();
        assert!(
            types.contains(&"market.payment.proof-recorded"),
            "{types:?}"
        );
        assert!(types.contains(&"market.payment.released"), "{types:?}");
        bodies.push(events.to_string());

        let exited = server.terminate().await;
        assert!(exited.status.success(), "clean exit: {}", exited.stderr);
        let lines: Vec<&str> = exited
            .stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert!(
            lines.iter().any(|l| l.contains("\"DEBUG\"")),
            "debug logs were on"
        );
        assert!(
            exited
                .stdout
                .contains(&format!("/api/v1/market/orders/{x402}/execute")),
            "the log has the requests"
        );
        for line in &lines {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        }
        let database = database_bytes(&db).await;
        assert!(database.contains(&x402), "the dump holds the orders");
        let header = &signed.header;
        let secrets = [
            header.clone(),
            header[header.len() / 3..header.len() / 3 + 48].to_string(),
            signed.payload.payload.signature.clone(),
            forged.header.clone(),
            forged.payload.payload.signature.clone(),
            garbage,
            credential.clone(),
            credential["Payment ".len()..].to_string(),
            mpp_secret,
            siwx,
        ];
        for secret in &secrets {
            for body in &bodies {
                assert!(
                    !body.contains(secret.as_str()),
                    "{secret} in a response: {body}"
                );
            }
            assert!(
                !exited.stdout.contains(secret.as_str()),
                "{secret} in the log"
            );
            assert!(
                !exited.stderr.contains(secret.as_str()),
                "{secret} on stderr"
            );
            assert!(
                !database.contains(secret.as_str()),
                "{secret} in the {} database",
                backend.name()
            );
        }
        db.drop_database().await;
    }
}
