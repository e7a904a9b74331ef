//! Payments (spec orders-and-payments.md §1.2, §2.2, §7, §8): payment-intent and the rail the
//! clients read, the payment read, on-chain proofs (Variant A) recorded or verified over RPC
//! against a real Anvil node and a real ERC-20, one payment per transaction (also across two
//! servers on one database), escrow lock, release, refund, the dispute freeze, the audit trail,
//! and no secret anywhere it could leak.

mod common;

use std::sync::Arc;

use common::evm::{Anvil, AnvilOptions, Authorization, TestToken, dev_account, units};
use common::fake_provider::FakeProvider;
use common::market::{
    CatalogDir, MACHINE_VERIFICATION_OFF, Market, NO_PROBES, PAIRING_VERIFICATION_OFF,
    TOKEN_HEADER, catalog_file, manifest, merged, ms, service, skill,
};
use common::process::ServerProcess;
use common::{Backend, TestServer, backends, expect_error, expect_json, rand_u64};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use sqlx::{Connection, Row};

/// The wallet the services are paid to (checksummed; proofs may send it in any case).
const PAYEE: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
const OTHER: &str = "0x8ba1f109551bD432803012645Ac136ddd64DBA72";
const ESCROW: &str = "0xE5c0E5c0e5C0e5c0E5C0E5C0e5C0E5C0e5c0E5c0";
/// The token contract of services on a chain the test does not run (recorded proofs only).
const FAR_TOKEN: &str = "0xdAC17F958D2ee523a2206206994597C13D831ec7";
const USDC_MINT: &str = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v";
const SESSION_SECRET: (&str, &str) = (
    "PEAQOS_AGENT_PAIRING_SESSION_SECRET",
    "payments-test-session-secret-0123456789",
);
const LOOPBACK: (&str, &str) = ("PEAQOS_RUNTIME_ALLOWED_NETWORK_SCOPES", "public,loopback");
const ENFORCE_RAILS: (&str, &str) = ("PEAQOS_ENFORCE_SERVICE_PAYMENT_RAILS", "true");
const FORCE_RPC: (&str, &str) = ("PEAQOS_REQUIRE_PAYMENT_RPC_VERIFICATION", "true");

// ---------------------------------------------------------------------------------------------
// Set-up

/// A Solana address: base58 of 32 bytes.
fn sol_address(byte: u8) -> String {
    bs58::encode([byte; 32]).into_string()
}

/// A Solana transaction signature: base58 of 64 random bytes.
fn sol_signature() -> String {
    bs58::encode(peaqos_orchestrator::store::random_bytes::<64>()).into_string()
}

/// A transaction hash no other test uses (lower-case).
fn tx_hash() -> String {
    format!(
        "0x{}",
        hex::encode(peaqos_orchestrator::store::random_bytes::<32>())
    )
}

/// The catalogue of the payment tests: one skill and a service per rail, each calling
/// `provider`. `token` is the wallet services' token contract (a deployed TestToken, or
/// [`FAR_TOKEN`]).
fn shop_catalog(provider: &FakeProvider, token: &str) -> CatalogDir {
    let endpoints =
        json!([{"operation": "run", "url": provider.url, "path": "/json/run", "method": "POST"}]);
    let svc = |id: &str, pricing: Value, payment: Value| {
        merged(
            service(id, "pay-skill", "payprov", "device.control"),
            json!({"endpoints": endpoints, "pricing": pricing, "payment": payment}),
        )
    };
    let usdt = |amount: f64| json!({"mode": "fixed", "amount": amount, "currency": "USDT"});
    let services = vec![
        svc(
            "wallet-svc",
            usdt(2.5),
            json!({"defaultRail": "wallet", "supportedRails": ["wallet", "wdk-usdt-transfer"],
                   "required": true, "chain": "eip155:3338", "token": "USDT",
                   "tokenAddress": token, "walletAddress": PAYEE}),
        ),
        // No token contract in the rail: RPC verification falls back to PEAQOS_USDT_CONTRACT.
        svc(
            "bare-wallet-svc",
            usdt(2.5),
            json!({"defaultRail": "wallet", "supportedRails": ["wallet"], "required": true,
                   "chain": "eip155:3338", "token": "USDT", "walletAddress": PAYEE}),
        ),
        svc(
            "escrow-svc",
            usdt(2.5),
            json!({"defaultRail": "onchain-escrow", "supportedRails": ["onchain-escrow", "escrow"],
                   "required": true, "chain": "eip155:3338", "token": "USDT",
                   "escrowAddress": ESCROW}),
        ),
        svc(
            "solana-svc",
            json!({"mode": "fixed", "amount": 1, "currency": "USDC"}),
            json!({"defaultRail": "wallet", "supportedRails": ["wallet"], "required": true,
                   "chain": "solana:mainnet", "token": "USDC", "tokenMint": USDC_MINT,
                   "walletAddress": sol_address(9)}),
        ),
        svc(
            "peaq-svc",
            json!({"mode": "fixed", "amount": 0.000001, "currency": "PEAQ"}),
            json!({"defaultRail": "wallet", "supportedRails": ["wallet"], "required": true,
                   "chain": "eip155:3338", "token": "PEAQ", "tokenDecimals": 18,
                   "walletAddress": PAYEE}),
        ),
        svc(
            "record-svc",
            json!({"mode": "fixed", "amount": 3, "currency": "USD"}),
            json!({"defaultRail": "offchain-record", "supportedRails": ["offchain-record"],
                   "required": true}),
        ),
        svc(
            "free-svc",
            json!({"mode": "provider-defined"}),
            json!({"defaultRail": "not-required", "supportedRails": ["not-required"],
                   "required": false}),
        ),
    ];
    let file = catalog_file(
        vec![skill("pay-skill", "payprov")],
        vec![manifest("pay-skill", "payprov")],
        services,
    );
    CatalogDir::with(&[("shop.json", file)])
}

/// The environment every payment test server has, plus `env`.
fn shop_env<'a>(catalog: &'a str, env: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut all = vec![
        MACHINE_VERIFICATION_OFF,
        PAIRING_VERIFICATION_OFF,
        NO_PROBES,
        LOOPBACK,
        SESSION_SECRET,
        ("PEAQOS_CATALOG_DIR", catalog),
    ];
    all.extend_from_slice(env);
    all
}

/// A server with the payment catalogue, an active machine and a pairing whose agent is dev
/// account 1 (the payer of the on-chain transfers), and the provider the services call.
struct Shop {
    m: Market,
    provider: FakeProvider,
    pairing_id: String,
    token: String,
    agent_address: String,
    catalog_path: String,
}

/// The agent's payer on chain, and the pairing's `agentAddress`.
fn payer() -> String {
    dev_account(1).address
}

impl Shop {
    async fn start(backend: &Backend, token: &str, env: &[(&str, &str)]) -> Shop {
        let provider = FakeProvider::start().await;
        let catalog = shop_catalog(&provider, token);
        let catalog_path = catalog.path_str();
        let mut vars = vec![LOOPBACK, SESSION_SECRET];
        vars.extend_from_slice(env);
        let m = Market::start(backend, Some(catalog), &vars).await;
        let body =
            json!({"agentAddress": payer(), "agentProvider": "anthropic", "agentRole": "buyer"});
        let pairing = expect_json(
            m.srv
                .post_json(
                    &format!("/api/v1/machines/{}/agent-pairings", m.machine_id),
                    &body,
                )
                .await,
            StatusCode::CREATED,
        )
        .await["item"]
            .clone();
        Shop {
            pairing_id: pairing["id"].as_str().unwrap().to_string(),
            token: pairing["pairingToken"].as_str().unwrap().to_string(),
            agent_address: pairing["agentAddress"].as_str().unwrap().to_string(),
            m,
            provider,
            catalog_path,
        }
    }

    fn srv(&self) -> &TestServer {
        &self.m.srv
    }

    fn agent(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.m
            .srv
            .request(method, path)
            .header(TOKEN_HEADER, &self.token)
    }

    /// A new order of `service_id`: its id.
    async fn order(&self, service_id: &str) -> String {
        let body = json!({"machineId": self.m.machine_id, "agentPairingId": self.pairing_id,
                          "serviceId": service_id, "input": {"x": 1}});
        let order = expect_json(
            self.agent(Method::POST, "/api/v1/market/orders")
                .json(&body)
                .send()
                .await
                .unwrap(),
            StatusCode::CREATED,
        )
        .await;
        order["item"]["id"].as_str().unwrap().to_string()
    }

    /// `POST /market/orders/{order}/{action}` with a JSON body.
    async fn post(&self, order: &str, action: &str, body: &Value) -> Response {
        self.agent(
            Method::POST,
            &format!("/api/v1/market/orders/{order}/{action}"),
        )
        .json(body)
        .send()
        .await
        .unwrap()
    }

    /// The same with no body, with or without a content type.
    async fn post_bare(&self, order: &str, action: &str, content_type: Option<&str>) -> Response {
        let mut request = self.agent(
            Method::POST,
            &format!("/api/v1/market/orders/{order}/{action}"),
        );
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.send().await.unwrap()
    }

    /// An empty payment-intent that creates the payment: the `MarketPayment`.
    async fn intent(&self, order: &str) -> Value {
        self.intent_with(order, &json!({})).await
    }

    async fn intent_with(&self, order: &str, body: &Value) -> Value {
        let response = self.post(order, "payment-intent", body).await;
        expect_json(response, StatusCode::CREATED).await["item"].clone()
    }

    /// A proof that must hold the payment: the `MarketPayment`.
    async fn prove(&self, order: &str, body: &Value) -> Value {
        let response = self.post(order, "payment-proof", body).await;
        expect_json(response, StatusCode::OK).await["item"].clone()
    }

    /// Posts a proof that must be refused with `status`/`code`: the error, after checking the
    /// payment is still `intent` as it was.
    async fn refused_proof(
        &self,
        order: &str,
        intent: &Value,
        body: &Value,
        status: StatusCode,
        code: &str,
    ) -> Value {
        let error = expect_error(self.post(order, "payment-proof", body).await, status, code).await;
        assert_eq!(&self.payment(order).await, intent, "nothing changed");
        error
    }

    /// `GET …/payment`: the item (`null` when there is none).
    async fn payment(&self, order: &str) -> Value {
        let response = self
            .srv()
            .get(&format!("/api/v1/market/orders/{order}/payment"))
            .await;
        expect_json(response, StatusCode::OK).await["item"].clone()
    }

    async fn order_status(&self, order: &str) -> String {
        let response = self
            .srv()
            .get(&format!("/api/v1/market/orders/{order}"))
            .await;
        let order = expect_json(response, StatusCode::OK).await;
        order["item"]["status"].as_str().unwrap().to_string()
    }

    /// An order of `service_id` whose payment is held by a recorded proof: (order, payment).
    async fn held(&self, service_id: &str) -> (String, Value) {
        let order = self.order(service_id).await;
        let intent = self.intent(&order).await;
        let payment = self.prove(&order, &proof_of(&intent, &tx_hash())).await;
        assert_eq!(payment["status"], "held");
        (order, payment)
    }

    /// A held order, executed against the provider: delivered.
    async fn delivered(&self, service_id: &str) -> String {
        let (order, _) = self.held(service_id).await;
        let executed = expect_json(
            self.post(&order, "execute", &json!({})).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(executed["order"]["status"], "delivered", "{executed}");
        order
    }

    /// A delivered order, confirmed: its payment is `release_pending`.
    async fn confirmed(&self, service_id: &str) -> String {
        let order = self.delivered(service_id).await;
        let confirmed = expect_json(
            self.post(&order, "confirm", &json!({})).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(confirmed["payment"]["status"], "release_pending");
        order
    }

    /// The audit events of `event_type` about `resource_id`.
    async fn events(&self, event_type: &str, resource_id: &str) -> Vec<Value> {
        let page = expect_json(
            self.srv()
                .get(&format!(
                    "/api/v1/audit-events?type={event_type}&resourceId={resource_id}&limit=100"
                ))
                .await,
            StatusCode::OK,
        )
        .await;
        page["items"].as_array().unwrap().clone()
    }

    /// The one audit event of `event_type` about `resource_id`.
    async fn event(&self, event_type: &str, resource_id: &str) -> Value {
        let events = self.events(event_type, resource_id).await;
        assert_eq!(events.len(), 1, "{event_type} of {resource_id}: {events:?}");
        let event = events[0].clone();
        assert_eq!(event["resourceType"], "market-payment");
        event
    }

    async fn db(&self) -> sqlx::AnyConnection {
        sqlx::any::install_default_drivers();
        sqlx::AnyConnection::connect(&self.srv().db.url)
            .await
            .unwrap()
    }

    async fn stop(self) {
        self.m.stop().await;
    }
}

/// The decimal text of a payment's `amount`.
fn amount_of(payment: &Value) -> String {
    payment["amount"].to_string()
}

/// A recorded EVM proof of `payment` by `hash`, as the official CLI builds it from the rail.
fn proof_of(payment: &Value, hash: &str) -> Value {
    let rail = &payment["rail"];
    json!({"verificationMode": "recorded", "chain": rail["chain"], "token": rail["token"],
           "payerAddress": rail["payerAddress"], "payeeAddress": rail["payeeAddress"],
           "amount": amount_of(payment), "transactionHash": hash})
}

/// A recorded EVM proof of 2.5 USDT from the payer to [`PAYEE`].
fn evm_proof(hash: &str) -> Value {
    json!({"verificationMode": "recorded", "chain": "eip155:3338", "token": "USDT",
           "payerAddress": payer(), "payeeAddress": PAYEE, "amount": "2.5",
           "transactionHash": hash})
}

/// The same in `rpc` mode.
fn rpc_proof_of(payment: &Value, hash: &str) -> Value {
    merged(proof_of(payment, hash), json!({"verificationMode": "rpc"}))
}

fn detail<'a>(error: &'a Value, key: &str) -> &'a Value {
    &error["details"][key]
}

/// Asserts a `VALIDATION_ERROR` on `field`.
async fn expect_invalid(response: Response, field: &str) -> Value {
    let error = expect_error(response, StatusCode::BAD_REQUEST, "VALIDATION_ERROR").await;
    assert_eq!(detail(&error, "field"), field, "{error}");
    error
}

// ---------------------------------------------------------------------------------------------
// The harness itself

#[tokio::test]
async fn the_test_token_is_a_real_erc20_with_eip3009() {
    let mut node = Anvil::start().await;
    let token = node.deploy_token().await;
    let (alice, bob, facilitator) = (dev_account(1), dev_account(2), dev_account(3));
    token.mint(&alice.address, units("10", 6)).await;
    assert_eq!(token.balance_of(&alice.address).await, units("10", 6));

    // A transfer is mined with its Transfer log.
    let hash = token
        .transfer(&alice.address, PAYEE, token.units("2.5"))
        .await;
    let receipt = node.rpc.receipt(&hash).await.unwrap();
    let log = &receipt["logs"][0];
    assert_eq!(log["address"], json!(token.address));
    assert_eq!(
        log["topics"][0],
        "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
    );
    assert_eq!(
        log["topics"][2],
        json!(format!("0x{:0>64}", PAYEE[2..].to_ascii_lowercase()))
    );
    assert_eq!(token.balance_of(PAYEE).await, units("2.5", 6));

    // More than the balance: mined, status 0, nothing moved.
    let failed = token
        .reverting_transfer(&alice.address, PAYEE, units("100", 6))
        .await;
    let receipt = node.rpc.receipt(&failed).await.unwrap();
    assert_eq!(receipt["status"], "0x0");
    assert_eq!(receipt["logs"], json!([]));
    assert_eq!(token.balance_of(&alice.address).await, units("7.5", 6));

    // EIP-3009: the contract's domain is the one signers use, and the server's digest agrees.
    assert_eq!(
        token.domain_separator().await,
        token.domain().separator(),
        "DOMAIN_SEPARATOR()"
    );
    let authorization = Authorization::new(&alice.address, &bob.address, units("1", 6));
    let server_digest = peaqos_orchestrator::crypto::eip712::transfer_with_authorization_hash(
        &peaqos_orchestrator::crypto::eip712::TokenDomain {
            name: token.spec.name,
            version: token.spec.version,
            chain_id: token.chain_id,
            verifying_contract: token.address.parse().unwrap(),
        },
        &peaqos_orchestrator::crypto::eip712::TransferWithAuthorization {
            from: alice.address.parse().unwrap(),
            to: bob.address.parse().unwrap(),
            value: authorization.value,
            validAfter: alloy_primitives::U256::from(authorization.valid_after),
            validBefore: alloy_primitives::U256::from(authorization.valid_before),
            nonce: authorization.nonce,
        },
    );
    assert_eq!(
        server_digest,
        authorization.digest(&token.domain()).0,
        "the server hashes the authorization as the contract does"
    );
    // Signed by someone else: rejected on chain.
    let forged = authorization.sign(&bob, &token.domain());
    let (_, ok) = token
        .transfer_with_authorization(&facilitator.address, &authorization, &forged)
        .await;
    assert!(!ok, "a signature of another key must not move funds");
    let signature = authorization.sign(&alice, &token.domain());
    let (_, ok) = token
        .transfer_with_authorization(&facilitator.address, &authorization, &signature)
        .await;
    assert!(ok);
    assert_eq!(token.balance_of(&bob.address).await, units("1", 6));
    assert!(
        token
            .authorization_used(&alice.address, authorization.nonce)
            .await
    );
    // The same authorization again: used.
    let (_, ok) = token
        .transfer_with_authorization_vrs(&facilitator.address, &authorization, &signature)
        .await;
    assert!(!ok, "an authorization settles once");
    let second = Authorization::new(&alice.address, &bob.address, units("1", 6));
    let (_, ok) = token
        .transfer_with_authorization_vrs(
            &facilitator.address,
            &second,
            &second.sign(&alice, &token.domain()),
        )
        .await;
    assert!(ok, "the (v, r, s) overload settles too");
    assert_eq!(token.balance_of(&bob.address).await, units("2", 6));

    // Automine off: a submitted transfer stays pending until a block is mined.
    node.set_automine(false).await;
    let pending = token
        .submit_transfer(&alice.address, PAYEE, units("1", 6))
        .await;
    assert!(node.rpc.receipt(&pending).await.is_none());
    let before = node.block_number().await;
    node.mine(2).await;
    assert_eq!(node.block_number().await, before + 2);
    let receipt = node.rpc.receipt(&pending).await.unwrap();
    assert_eq!(receipt["status"], "0x1");
    // The helpers that wait for a receipt mine it themselves while automine is off.
    token.mint(&alice.address, units("1", 6)).await;

    // Stopped: the node refuses calls; restarted, it has the same chain.
    node.stop().await;
    assert!(node.rpc("eth_blockNumber", json!([])).await.is_err());
    node.restart().await;
    assert_eq!(node.rpc.receipt(&pending).await.unwrap()["status"], "0x1");
    assert_eq!(token.balance_of(PAYEE).await, units("3.5", 6));

    // A node started with --no-mining and another chain id.
    let quiet = Anvil::start_with(AnvilOptions {
        chain_id: 31337,
        automine: false,
    })
    .await;
    let other = quiet.deploy_token().await;
    assert_eq!(other.chain_id, 31337);
    let pending = other
        .submit_transfer(&dev_account(0).address, PAYEE, units("0", 6))
        .await;
    assert!(quiet.rpc.receipt(&pending).await.is_none());
    quiet.mine(1).await;
    assert!(quiet.rpc.receipt(&pending).await.is_some());
}

// ---------------------------------------------------------------------------------------------
// §7.2, §7.3: payment-intent and the payment read

#[tokio::test]
async fn payment_intent_fills_the_rail_the_clients_read() {
    for backend in backends() {
        let shop = Shop::start(&backend, FAR_TOKEN, &[]).await;
        let order = shop.order("wallet-svc").await;
        assert_eq!(shop.payment(&order).await, Value::Null, "no payment yet");

        let payment = shop.intent(&order).await;
        assert!(payment["id"].as_str().unwrap().starts_with("pay_"));
        assert_eq!(payment["orderId"], json!(order));
        assert_eq!(payment["machineId"], json!(shop.m.machine_id));
        assert_eq!(payment["status"], "intent_created");
        assert_eq!(payment["amount"], json!(2.5));
        assert_eq!(payment["currency"], "USDT");
        assert_eq!(payment["notes"], json!([]));
        assert_eq!(payment["proof"], Value::Null);
        let rail = &payment["rail"];
        assert_eq!(rail["type"], "wallet");
        assert!(rail.get("railType").is_none(), "the server sends type only");
        assert_eq!(rail["chain"], "eip155:3338");
        assert_eq!(rail["token"], "USDT");
        assert_eq!(rail["tokenAddress"], FAR_TOKEN);
        assert_eq!(rail["walletAddress"], PAYEE);
        assert_eq!(
            rail["payeeAddress"], PAYEE,
            "the payee defaults to the wallet"
        );
        assert_eq!(
            rail["payerAddress"],
            json!(shop.agent_address),
            "the payer defaults to the pairing's agent"
        );
        assert_eq!(rail["escrowAddress"], Value::Null);
        assert_eq!(rail["metadata"]["rawAmount"], "2500000");
        assert_eq!(rail["metadata"]["tokenDecimals"], 6);
        assert_eq!(shop.order_status(&order).await, "payment_pending");
        assert_eq!(shop.payment(&order).await, payment, "GET …/payment");

        let event = shop
            .event(
                "market.payment.intent-created",
                payment["id"].as_str().unwrap(),
            )
            .await;
        assert_eq!(
            event["payload"],
            json!({"orderId": order, "railType": "wallet", "amount": 2.5, "currency": "USDT",
                   "status": "intent_created"})
        );
        assert_eq!(event["machineId"], json!(shop.m.machine_id));

        // Idempotent: the existing payment, unchanged, whatever the body says.
        let again = expect_json(
            shop.post(
                &order,
                "payment-intent",
                &json!({"rail": {"type": "escrow", "payeeAddress": OTHER}, "amount": 9}),
            )
            .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(again["item"], payment);
        assert_eq!(
            shop.events(
                "market.payment.intent-created",
                payment["id"].as_str().unwrap()
            )
            .await
            .len(),
            1
        );

        // The request's rail fields win over the recommendation's; the amount scales with it.
        let order = shop.order("wallet-svc").await;
        let chosen = shop
            .intent_with(
                &order,
                &json!({"rail": {"type": "wdk-usdt-transfer", "payerAddress": OTHER,
                                 "payeeAddress": dev_account(4).address, "metadata": {"memo": "m"}},
                        "amount": 1.25, "currency": "USDT"}),
            )
            .await;
        assert_eq!(chosen["rail"]["type"], "wdk-usdt-transfer");
        assert_eq!(chosen["rail"]["payerAddress"], OTHER);
        assert_eq!(
            chosen["rail"]["payeeAddress"],
            json!(dev_account(4).address)
        );
        assert_eq!(chosen["rail"]["walletAddress"], PAYEE);
        assert_eq!(chosen["amount"], json!(1.25));
        assert_eq!(chosen["rail"]["metadata"]["rawAmount"], "1250000");
        assert_eq!(chosen["rail"]["metadata"]["memo"], "m");

        // The escrow rail carries the escrow address.
        let order = shop.order("escrow-svc").await;
        let escrow = shop.intent(&order).await;
        assert_eq!(escrow["rail"]["type"], "onchain-escrow");
        assert_eq!(escrow["rail"]["escrowAddress"], ESCROW);
        assert_eq!(escrow["rail"]["payerAddress"], json!(shop.agent_address));

        // The service's tokenDecimals decide the raw amount.
        let order = shop.order("peaq-svc").await;
        let peaq = shop.intent(&order).await;
        assert_eq!(peaq["rail"]["metadata"]["tokenDecimals"], 18);
        assert_eq!(peaq["rail"]["metadata"]["rawAmount"], "1000000000000");
        // USDC: 6 decimals; a Solana rail keeps its mint and base58 payee.
        let order = shop.order("solana-svc").await;
        let solana = shop.intent(&order).await;
        assert_eq!(solana["rail"]["metadata"]["tokenDecimals"], 6);
        assert_eq!(solana["rail"]["metadata"]["rawAmount"], "1000000");
        assert_eq!(solana["rail"]["tokenMint"], USDC_MINT);
        assert_eq!(solana["rail"]["payeeAddress"], json!(sol_address(9)));
        // A token of unknown decimals: no raw amount.
        let order = shop.order("record-svc").await;
        let record = shop.intent(&order).await;
        assert_eq!(record["rail"]["type"], "offchain-record");
        assert_eq!(record["rail"]["metadata"], json!({}));
        assert_eq!(record["amount"].as_f64(), Some(3.0));

        // not-required: a free service's payment is not_required and its order ready.
        let order = shop.order("free-svc").await;
        let free = shop.intent(&order).await;
        assert_eq!(free["status"], "not_required");
        assert_eq!(free["rail"]["type"], "not-required");
        assert_eq!(shop.order_status(&order).await, "ready");
        let event = shop
            .event(
                "market.payment.intent-created",
                free["id"].as_str().unwrap(),
            )
            .await;
        assert_eq!(event["payload"]["status"], "not_required");
        let again = shop.post(&order, "payment-intent", &json!({})).await;
        assert_eq!(expect_json(again, StatusCode::OK).await["item"], free);

        // A required service cannot be not-required.
        let order = shop.order("wallet-svc").await;
        let error = expect_error(
            shop.post(
                &order,
                "payment-intent",
                &json!({"rail": {"type": "not-required"}}),
            )
            .await,
            StatusCode::PAYMENT_REQUIRED,
            "PAYMENT_REQUIRED",
        )
        .await;
        assert_eq!(
            detail(&error, "supportedRails"),
            &json!(["wallet", "wdk-usdt-transfer"])
        );
        assert_eq!(shop.payment(&order).await, Value::Null, "nothing stored");
        assert_eq!(shop.order_status(&order).await, "created");

        // Invalid bodies store nothing.
        for (body, field) in [
            (json!({"rail": {"type": "bitcoin"}}), "rail.type"),
            (
                json!({"rail": {"payeeAddress": "0x1234"}}),
                "rail.payeeAddress",
            ),
            (
                json!({"rail": {"escrowAddress": "not an address"}}),
                "rail.escrowAddress",
            ),
            (
                json!({"rail": {"tokenMint": bs58::encode([1u8; 31]).into_string()}}),
                "rail.tokenMint",
            ),
            (json!({"amount": -1}), "amount"),
            (json!({"amount": "2.5"}), "amount"),
        ] {
            expect_invalid(shop.post(&order, "payment-intent", &body).await, field).await;
        }
        assert_eq!(shop.payment(&order).await, Value::Null);

        // A closed order takes no intent; an unknown one is not found.
        let cancelled = expect_json(
            shop.post(&order, "cancel", &json!({})).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(cancelled["item"]["status"], "cancelled");
        let error = expect_error(
            shop.post(&order, "payment-intent", &json!({})).await,
            StatusCode::CONFLICT,
            "ORDER_CLOSED",
        )
        .await;
        assert_eq!(detail(&error, "status"), "cancelled");
        let missing = "ord_01JZZZZZZZZZZZZZZZZZZZZZZZ";
        expect_error(
            shop.post(missing, "payment-intent", &json!({})).await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;
        expect_error(
            shop.srv()
                .get(&format!("/api/v1/market/orders/{missing}/payment"))
                .await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;
        shop.stop().await;
    }
}

#[tokio::test]
async fn usdt_decimals_setting_scales_usdt_amounts() {
    for backend in backends() {
        let shop = Shop::start(&backend, FAR_TOKEN, &[("PEAQOS_USDT_DECIMALS", "8")]).await;
        let order = shop.order("wallet-svc").await;
        let payment = shop.intent(&order).await;
        assert_eq!(payment["rail"]["metadata"]["tokenDecimals"], 8);
        assert_eq!(payment["rail"]["metadata"]["rawAmount"], "250000000");
        // The proof is checked against the same scale.
        expect_invalid(
            shop.post(
                &order,
                "payment-proof",
                &merged(
                    proof_of(&payment, &tx_hash()),
                    json!({"rawAmount": "2500000", "tokenDecimals": 8}),
                ),
            )
            .await,
            "rawAmount",
        )
        .await;
        let held = shop
            .prove(
                &order,
                &merged(
                    proof_of(&payment, &tx_hash()),
                    json!({"rawAmount": "250000000"}),
                ),
            )
            .await;
        assert_eq!(held["proof"]["rawAmount"], "250000000");
        shop.stop().await;
    }
}

#[tokio::test]
async fn rail_enforcement_rejects_rails_the_service_does_not_take() {
    for backend in backends() {
        // Off (the default): any rail type is taken.
        let open = Shop::start(&backend, FAR_TOKEN, &[]).await;
        let order = open.order("wallet-svc").await;
        let escrow = open
            .intent_with(&order, &json!({"rail": {"type": "escrow"}}))
            .await;
        assert_eq!(escrow["rail"]["type"], "escrow");
        let order = open.order("wallet-svc").await;
        let locked = expect_json(
            open.post(
                &order,
                "payment/escrow-lock",
                &json!({"transactionHash": tx_hash(), "chain": "eip155:3338",
                        "escrowAddress": ESCROW}),
            )
            .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(locked["item"]["rail"]["type"], "onchain-escrow");
        // An escrow payment of the wallet service, made while enforcement was off.
        let old_order = open.order("wallet-svc").await;
        let old = open
            .intent_with(&old_order, &json!({"rail": {"type": "offchain-record"}}))
            .await;
        let shop_token = open.token.clone();
        let pairing_id = open.pairing_id.clone();
        let catalog_path = open.catalog_path.clone();
        let machine_id = open.m.machine_id.clone();
        let db = open.m.srv.stop_keep_db().await;

        // On: the same database under a server that enforces the service's rails.
        let url = db.url.clone();
        let srv = TestServer::start_on(db, &url, &shop_env(&catalog_path, &[ENFORCE_RAILS])).await;
        let post = |order: String, action: &'static str, body: Value| {
            srv.request(
                Method::POST,
                &format!("/api/v1/market/orders/{order}/{action}"),
            )
            .header(TOKEN_HEADER, &shop_token)
            .json(&body)
            .send()
        };
        let new_order = || async {
            let body = json!({"machineId": machine_id, "agentPairingId": pairing_id,
                              "serviceId": "wallet-svc"});
            let created = expect_json(
                srv.request(Method::POST, "/api/v1/market/orders")
                    .header(TOKEN_HEADER, &shop_token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap(),
                StatusCode::CREATED,
            )
            .await;
            created["item"]["id"].as_str().unwrap().to_string()
        };
        let not_supported = |error: &Value| {
            assert_eq!(detail(error, "reason"), "rail-not-supported", "{error}");
            assert_eq!(
                detail(error, "supportedRails"),
                &json!(["wallet", "wdk-usdt-transfer"])
            );
        };
        // payment-intent.
        let order = new_order().await;
        let error = expect_invalid(
            post(
                order.clone(),
                "payment-intent",
                json!({"rail": {"type": "escrow"}}),
            )
            .await
            .unwrap(),
            "rail.type",
        )
        .await;
        not_supported(&error);
        // escrow-lock of an order without a payment would use onchain-escrow.
        let error = expect_error(
            post(
                order.clone(),
                "payment/escrow-lock",
                json!({"transactionHash": tx_hash(), "chain": "eip155:3338",
                       "escrowAddress": ESCROW}),
            )
            .await
            .unwrap(),
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        not_supported(&error);
        let read = expect_json(
            srv.get(&format!("/api/v1/market/orders/{order}/payment"))
                .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(read["item"], Value::Null, "nothing stored");
        // payment-proof of the payment made before enforcement.
        let error = expect_error(
            post(old_order.clone(), "payment-proof", evm_proof(&tx_hash()))
                .await
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        not_supported(&error);
        let read = expect_json(
            srv.get(&format!("/api/v1/market/orders/{old_order}/payment"))
                .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(read["item"]["status"], "intent_created");
        assert_eq!(read["item"]["id"], old["id"]);
        // A supported rail goes through.
        let created = expect_json(
            post(
                order.clone(),
                "payment-intent",
                json!({"rail": {"type": "wdk-usdt-transfer"}}),
            )
            .await
            .unwrap(),
            StatusCode::CREATED,
        )
        .await;
        assert_eq!(created["item"]["rail"]["type"], "wdk-usdt-transfer");
        srv.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// §7.4 Variant A: recorded proofs

#[tokio::test]
async fn a_recorded_evm_proof_holds_the_payment() {
    for backend in backends() {
        let shop = Shop::start(&backend, FAR_TOKEN, &[]).await;
        let order = shop.order("wallet-svc").await;
        let intent = shop.intent(&order).await;
        let hash = tx_hash();
        // The payee in another case, the hash in upper case: both accepted.
        let body = merged(
            proof_of(&intent, &hash.to_ascii_uppercase().replacen("0X", "0x", 1)),
            json!({"payeeAddress": PAYEE.to_ascii_lowercase(), "metadata": {"cli": "0.12.1"}}),
        );
        let held = shop.prove(&order, &body).await;
        assert_eq!(held["id"], intent["id"]);
        assert_eq!(held["status"], "held");
        assert_eq!(
            held["rail"]["type"], "wdk-usdt-transfer",
            "EVM wallet upgrade"
        );
        let proof = &held["proof"];
        assert_eq!(proof["verificationMode"], "recorded");
        assert_eq!(proof["chain"], "eip155:3338");
        assert_eq!(proof["token"], "USDT");
        assert_eq!(proof["transactionHash"], json!(hash), "stored lower-case");
        assert_eq!(proof["transactionSignature"], Value::Null);
        assert_eq!(proof["payerAddress"], json!(shop.agent_address));
        assert_eq!(proof["payeeAddress"], json!(PAYEE.to_ascii_lowercase()));
        assert_eq!(proof["amount"], "2.5");
        assert_eq!(proof["rawAmount"], "2500000");
        assert_eq!(proof["tokenAddress"], FAR_TOKEN);
        assert_eq!(proof["blockNumber"], Value::Null, "rpc mode only");
        assert_eq!(proof["metadata"], json!({"cli": "0.12.1"}));
        ms(&proof["verifiedAt"]);
        assert_eq!(shop.order_status(&order).await, "ready");
        assert_eq!(shop.payment(&order).await, held);
        let payment_id = held["id"].as_str().unwrap();
        let event = shop
            .event("market.payment.proof-recorded", payment_id)
            .await;
        assert_eq!(
            event["payload"],
            json!({"verificationMode": "recorded", "chain": "eip155:3338", "token": "USDT",
                   "transactionHash": hash, "transactionSignature": null, "amount": "2.5"})
        );

        // The same transaction again: the payment as it is, no new event.
        let again = shop.prove(&order, &body).await;
        assert_eq!(again, held);
        assert_eq!(
            shop.events("market.payment.proof-recorded", payment_id)
                .await
                .len(),
            1
        );
        // Another transaction for a held payment.
        let error = expect_error(
            shop.post(&order, "payment-proof", &proof_of(&intent, &tx_hash()))
                .await,
            StatusCode::CONFLICT,
            "ORDER_CLOSED",
        )
        .await;
        assert_eq!(detail(&error, "paymentStatus"), "held");

        // A proof with no intent creates the payment as an empty intent would.
        let order = shop.order("wallet-svc").await;
        let held = shop.prove(&order, &evm_proof(&tx_hash())).await;
        assert_eq!(held["status"], "held");
        assert_eq!(
            shop.payment(&order).await,
            held,
            "the answer is what was stored"
        );
        assert_eq!(held["rail"]["payeeAddress"], PAYEE);
        assert_eq!(held["rail"]["metadata"]["rawAmount"], "2500000");
        assert_eq!(shop.order_status(&order).await, "ready");
        let payment_id = held["id"].as_str().unwrap();
        shop.event("market.payment.intent-created", payment_id)
            .await;
        shop.event("market.payment.proof-recorded", payment_id)
            .await;

        // Off-chain rails are recorded too, and keep their type.
        let order = shop.order("record-svc").await;
        let intent = shop.intent(&order).await;
        let held = shop
            .prove(
                &order,
                &json!({"verificationMode": "recorded", "chain": "eip155:1", "token": "USD",
                        "payerAddress": payer(), "payeeAddress": OTHER, "amount": "3",
                        "transactionHash": tx_hash()}),
            )
            .await;
        assert_eq!(held["id"], intent["id"]);
        assert_eq!(held["rail"]["type"], "offchain-record");

        // Payments in other states, and closed orders.
        let order = shop.order("free-svc").await;
        shop.intent(&order).await;
        let error = expect_error(
            shop.post(&order, "payment-proof", &evm_proof(&tx_hash()))
                .await,
            StatusCode::CONFLICT,
            "ORDER_CLOSED",
        )
        .await;
        assert_eq!(detail(&error, "paymentStatus"), "not_required");
        let order = shop.order("wallet-svc").await;
        let intent = shop.intent(&order).await;
        expect_json(
            shop.post(&order, "payment/refund", &json!({})).await,
            StatusCode::OK,
        )
        .await;
        let error = expect_error(
            shop.post(&order, "payment-proof", &proof_of(&intent, &tx_hash()))
                .await,
            StatusCode::CONFLICT,
            "ORDER_CLOSED",
        )
        .await;
        assert_eq!(detail(&error, "paymentStatus"), "refunded");
        expect_json(
            shop.post(&order, "cancel", &json!({"reason": "changed my mind"}))
                .await,
            StatusCode::OK,
        )
        .await;
        let error = expect_error(
            shop.post(&order, "payment-proof", &proof_of(&intent, &tx_hash()))
                .await,
            StatusCode::CONFLICT,
            "ORDER_CLOSED",
        )
        .await;
        assert_eq!(detail(&error, "status"), "cancelled");
        shop.stop().await;
    }
}

#[tokio::test]
async fn proof_amounts_are_exact_positive_decimals() {
    for backend in backends() {
        let shop = Shop::start(&backend, FAR_TOKEN, &[]).await;
        // Accepted forms, normalised to a plain decimal, with the raw amount of 6 decimals.
        for (intent_amount, text, plain, raw) in [
            (1.0, "1", "1", "1000000"),
            (1.0, "1.0", "1", "1000000"),
            (0.02, "0.02", "0.02", "20000"),
            (0.00001, "1e-05", "0.00001", "10"),
        ] {
            let order = shop.order("wallet-svc").await;
            let intent = shop
                .intent_with(&order, &json!({"amount": intent_amount}))
                .await;
            let body = merged(proof_of(&intent, &tx_hash()), json!({"amount": text}));
            let held = shop.prove(&order, &body).await;
            assert_eq!(held["proof"]["amount"], plain, "{text}");
            assert_eq!(held["proof"]["rawAmount"], raw, "{text}");
            let event = shop
                .event(
                    "market.payment.proof-recorded",
                    held["id"].as_str().unwrap(),
                )
                .await;
            assert_eq!(event["payload"]["amount"], plain);
        }
        // Rejected forms leave the payment as it was. The payment's amount is 0 here, so no
        // comparison with it can be what rejects them.
        let order = shop.order("wallet-svc").await;
        let unpriced = shop.intent_with(&order, &json!({"amount": 0})).await;
        assert_eq!(unpriced["amount"].as_f64(), Some(0.0));
        for bad in [
            json!("-1"),
            json!("-2.5"),
            json!("0"),
            json!("0.0"),
            json!("0e-3"),
            json!("NaN"),
            json!("nan"),
            json!("inf"),
            json!("Infinity"),
            json!("-inf"),
            json!("two"),
            json!("2,5"),
            json!("0x10"),
            json!(" 2.5"),
            json!("2.5 USDT"),
            json!(""),
            json!("   "),
            json!(2.5),
        ] {
            let body = merged(proof_of(&unpriced, &tx_hash()), json!({"amount": bad}));
            let error =
                expect_invalid(shop.post(&order, "payment-proof", &body).await, "amount").await;
            if bad.as_str().is_some_and(|b| !b.trim().is_empty()) {
                assert_eq!(detail(&error, "constraint"), "decimal string > 0", "{bad}");
            }
        }
        let body = merged(proof_of(&unpriced, &tx_hash()), json!({"amount": null}));
        expect_invalid(shop.post(&order, "payment-proof", &body).await, "amount").await;
        assert_eq!(shop.payment(&order).await, unpriced, "unchanged");
        // A positive amount that is not the payment's.
        let order = shop.order("wallet-svc").await;
        let intent = shop.intent(&order).await;
        let body = merged(proof_of(&intent, &tx_hash()), json!({"amount": "2.4"}));
        let error = expect_invalid(shop.post(&order, "payment-proof", &body).await, "amount").await;
        assert_eq!(detail(&error, "reason"), "amount-mismatch");
        assert_eq!(shop.payment(&order).await, intent, "unchanged");
        shop.stop().await;
    }
}

#[tokio::test]
async fn proof_fields_follow_the_address_and_transaction_rules() {
    for backend in backends() {
        let shop = Shop::start(&backend, FAR_TOKEN, &[]).await;
        let order = shop.order("wallet-svc").await;
        let intent = shop.intent(&order).await;
        let good = proof_of(&intent, &tx_hash());
        let cases = [
            (json!({"verificationMode": "maybe"}), "verificationMode"),
            (json!({"verificationMode": null}), "verificationMode"),
            (json!({"chain": ""}), "chain"),
            (json!({"chain": null}), "chain"),
            (json!({"token": "  "}), "token"),
            (json!({"payerAddress": "0x1234"}), "payerAddress"),
            (json!({"payerAddress": ""}), "payerAddress"),
            (json!({"payeeAddress": "not an address"}), "payeeAddress"),
            (
                json!({"payeeAddress": "0X209693Bc6afc0C5328bA36FaF03C514EF312287C"}),
                "payeeAddress",
            ),
            // A Solana payer for an EVM transaction.
            (json!({"payerAddress": sol_address(3)}), "payerAddress"),
            (json!({"tokenAddress": "0xnothex"}), "tokenAddress"),
            (json!({"tokenMint": "0OIl"}), "tokenMint"),
            (json!({"transactionHash": "0xabc"}), "transactionHash"),
            (
                json!({"transactionHash": format!("0x{}", "g".repeat(64))}),
                "transactionHash",
            ),
            (
                json!({"transactionHash": "ab".repeat(32)}),
                "transactionHash",
            ),
            (json!({"transactionHash": null}), "transactionHash"),
            (
                json!({"transactionSignature": sol_signature()}),
                "transactionHash",
            ),
            (json!({"tokenDecimals": 37}), "tokenDecimals"),
            (json!({"tokenDecimals": -1}), "tokenDecimals"),
            (json!({"rawAmount": "2.5"}), "rawAmount"),
            (json!({"rawAmount": "-2500000"}), "rawAmount"),
            (
                json!({"rawAmount": "2500001", "tokenDecimals": 6}),
                "rawAmount",
            ),
            (json!({"payment": {"xPayment": "e30="}}), "payment"),
        ];
        for (change, field) in cases {
            let body = merged(good.clone(), change.clone());
            let error =
                expect_invalid(shop.post(&order, "payment-proof", &body).await, field).await;
            assert!(
                error["details"]["constraint"].is_string(),
                "{change}: {error}"
            );
        }
        // The rail's payee and token contract must be the proof's.
        let error = expect_invalid(
            shop.post(
                &order,
                "payment-proof",
                &merged(good.clone(), json!({"payeeAddress": OTHER})),
            )
            .await,
            "payeeAddress",
        )
        .await;
        assert_eq!(detail(&error, "reason"), "payee-mismatch");
        let error = expect_invalid(
            shop.post(
                &order,
                "payment-proof",
                &merged(good.clone(), json!({"tokenAddress": OTHER})),
            )
            .await,
            "tokenAddress",
        )
        .await;
        assert_eq!(detail(&error, "reason"), "token-mismatch");
        assert_eq!(shop.payment(&order).await, intent, "nothing changed");
        assert!(
            shop.events(
                "market.payment.proof-recorded",
                intent["id"].as_str().unwrap()
            )
            .await
            .is_empty()
        );
        // The token contract in another case, and matching raw amounts, are fine.
        let held = shop
            .prove(
                &order,
                &merged(
                    good,
                    json!({"tokenAddress": FAR_TOKEN.to_ascii_lowercase(),
                           "rawAmount": "2500000", "tokenDecimals": 6}),
                ),
            )
            .await;
        assert_eq!(held["proof"]["rawAmount"], "2500000");
        assert_eq!(
            held["proof"]["tokenAddress"],
            json!(FAR_TOKEN.to_ascii_lowercase())
        );
        shop.stop().await;
    }
}

#[tokio::test]
async fn solana_proofs_are_recorded_only() {
    for backend in backends() {
        let shop = Shop::start(&backend, FAR_TOKEN, &[]).await;
        let order = shop.order("solana-svc").await;
        let intent = shop.intent(&order).await;
        let signature = sol_signature();
        let body = json!({"verificationMode": "recorded", "chain": "solana:mainnet",
            "token": "USDC", "payerAddress": sol_address(4), "payeeAddress": sol_address(9),
            "amount": "1", "tokenMint": USDC_MINT, "transactionSignature": signature});
        let held = shop.prove(&order, &body).await;
        assert_eq!(held["status"], "held");
        assert_eq!(
            held["rail"]["type"], "wallet",
            "only EVM proofs upgrade a wallet rail"
        );
        assert_eq!(held["proof"]["transactionSignature"], json!(signature));
        assert_eq!(held["proof"]["transactionHash"], Value::Null);
        assert_eq!(held["proof"]["tokenMint"], USDC_MINT);
        assert_eq!(held["proof"]["rawAmount"], "1000000");
        let event = shop
            .event(
                "market.payment.proof-recorded",
                intent["id"].as_str().unwrap(),
            )
            .await;
        assert_eq!(event["payload"]["transactionSignature"], json!(signature));
        assert_eq!(event["payload"]["transactionHash"], Value::Null);
        // Idempotent.
        assert_eq!(shop.prove(&order, &body).await, held);

        // rpc: refused before any RPC URL is looked for.
        let other = shop.order("solana-svc").await;
        let fresh = merged(
            body.clone(),
            json!({"verificationMode": "rpc", "transactionSignature": sol_signature()}),
        );
        let error = expect_invalid(
            shop.post(&other, "payment-proof", &fresh).await,
            "transactionSignature",
        )
        .await;
        assert_eq!(detail(&error, "reason"), "solana-rpc-unsupported");
        // Bad signatures, and an EVM payee for a Solana transaction.
        for (change, field) in [
            (
                json!({"transactionSignature": sol_address(5)}),
                "transactionSignature",
            ),
            (
                json!({"transactionSignature": format!("0x{}", "ab".repeat(64))}),
                "transactionSignature",
            ),
            (json!({"payeeAddress": PAYEE}), "payeeAddress"),
            (
                json!({"transactionHash": tx_hash(), "transactionSignature": sol_signature()}),
                "transactionHash",
            ),
        ] {
            expect_invalid(
                shop.post(&other, "payment-proof", &merged(body.clone(), change))
                    .await,
                field,
            )
            .await;
        }
        // One payment per signature.
        let error = expect_error(
            shop.post(&other, "payment-proof", &body).await,
            StatusCode::CONFLICT,
            "IDEMPOTENCY_CONFLICT",
        )
        .await;
        assert_eq!(detail(&error, "reason"), "transaction-already-used");
        assert_eq!(shop.payment(&other).await, Value::Null);
        shop.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Transaction uniqueness

#[tokio::test]
async fn a_transaction_backs_one_payment() {
    for backend in backends() {
        let shop = Shop::start(&backend, FAR_TOKEN, &[]).await;
        let (first, held) = shop.held("wallet-svc").await;
        let hash = held["proof"]["transactionHash"]
            .as_str()
            .unwrap()
            .to_string();
        let order = shop.order("wallet-svc").await;
        let intent = shop.intent(&order).await;
        let used = |error: Value| {
            assert_eq!(
                detail(&error, "reason"),
                "transaction-already-used",
                "{error}"
            );
        };
        for hash in [
            hash.clone(),
            hash.to_ascii_uppercase().replacen("0X", "0x", 1),
        ] {
            used(
                expect_error(
                    shop.post(&order, "payment-proof", &proof_of(&intent, &hash))
                        .await,
                    StatusCode::CONFLICT,
                    "IDEMPOTENCY_CONFLICT",
                )
                .await,
            );
        }
        assert_eq!(shop.payment(&order).await, intent);
        // Escrow locks share the rule, both ways.
        let escrow_order = shop.order("escrow-svc").await;
        let lock =
            json!({"transactionHash": hash, "chain": "eip155:3338", "escrowAddress": ESCROW});
        used(
            expect_error(
                shop.post(&escrow_order, "payment/escrow-lock", &lock).await,
                StatusCode::CONFLICT,
                "IDEMPOTENCY_CONFLICT",
            )
            .await,
        );
        let lock_hash = tx_hash();
        expect_json(
            shop.post(
                &escrow_order,
                "payment/escrow-lock",
                &merged(lock, json!({"transactionHash": lock_hash})),
            )
            .await,
            StatusCode::OK,
        )
        .await;
        used(
            expect_error(
                shop.post(&order, "payment-proof", &proof_of(&intent, &lock_hash))
                    .await,
                StatusCode::CONFLICT,
                "IDEMPOTENCY_CONFLICT",
            )
            .await,
        );
        // A refunded payment still holds its transaction.
        expect_json(
            shop.post(&first, "payment/refund", &json!({})).await,
            StatusCode::OK,
        )
        .await;
        used(
            expect_error(
                shop.post(&order, "payment-proof", &proof_of(&intent, &hash))
                    .await,
                StatusCode::CONFLICT,
                "IDEMPOTENCY_CONFLICT",
            )
            .await,
        );

        // Two orders racing with one new hash on one server: one wins.
        let (a, b) = (
            shop.order("wallet-svc").await,
            shop.order("wallet-svc").await,
        );
        let (intent_a, intent_b) = (shop.intent(&a).await, shop.intent(&b).await);
        let hash = tx_hash();
        let (body_a, body_b) = (proof_of(&intent_a, &hash), proof_of(&intent_b, &hash));
        let (ra, rb) = tokio::join!(
            shop.post(&a, "payment-proof", &body_a),
            shop.post(&b, "payment-proof", &body_b),
        );
        let statuses = [ra.status(), rb.status()];
        assert!(
            statuses.contains(&StatusCode::OK) && statuses.contains(&StatusCode::CONFLICT),
            "{statuses:?}"
        );
        assert_eq!(held_by(&shop, &hash).await, 1);
        shop.stop().await;
    }
}

/// How many payments `hash` backs.
async fn held_by(shop: &Shop, hash: &str) -> i64 {
    count_held_by(&shop.srv().db.url, hash).await
}

async fn count_held_by(url: &str, hash: &str) -> i64 {
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(url).await.unwrap();
    let count: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM market_payments WHERE transaction_key = $1")
            .bind(format!("evm:{hash}"))
            .fetch_one(&mut db)
            .await
            .unwrap();
    db.close().await.unwrap();
    count
}

#[tokio::test]
async fn one_hash_for_two_orders_on_two_servers_holds_once() {
    for backend in backends() {
        let shop = Shop::start(&backend, FAR_TOKEN, &[]).await;
        // A second server, a process of its own, on the same database.
        let second =
            ServerProcess::spawn(Some(&shop.srv().db.url), &shop_env(&shop.catalog_path, &[]))
                .await;
        let second_post = |order: &str, body: &Value| {
            reqwest::Client::new()
                .post(format!(
                    "{}/api/v1/market/orders/{order}/payment-proof",
                    second.base
                ))
                .header(TOKEN_HEADER, &shop.token)
                .json(body)
                .send()
        };
        for round in 0..8 {
            let (a, b) = (
                shop.order("wallet-svc").await,
                shop.order("wallet-svc").await,
            );
            // Half the rounds hold an existing payment, half create it with the proof.
            let with_intent = round % 2 == 0;
            if with_intent {
                shop.intent(&a).await;
                shop.intent(&b).await;
            }
            let hash = tx_hash();
            let body = evm_proof(&hash);
            let gate = Arc::new(tokio::sync::Barrier::new(2));
            let (ga, gb) = (gate.clone(), gate);
            let (ra, rb) = tokio::join!(
                async {
                    ga.wait().await;
                    shop.post(&a, "payment-proof", &body).await
                },
                async {
                    gb.wait().await;
                    second_post(&b, &body).await.unwrap()
                },
            );
            let (sa, sb) = (ra.status(), rb.status());
            let (winner, loser, loser_response) = match (sa, sb) {
                (StatusCode::OK, _) => (&a, &b, rb),
                (_, StatusCode::OK) => (&b, &a, ra),
                _ => panic!("round {round}: nobody won: {sa} {sb}"),
            };
            let error =
                expect_error(loser_response, StatusCode::CONFLICT, "IDEMPOTENCY_CONFLICT").await;
            assert_eq!(detail(&error, "reason"), "transaction-already-used");
            assert_eq!(held_by(&shop, &hash).await, 1, "round {round}");
            assert_eq!(shop.payment(winner).await["status"], "held");
            let lost = shop.payment(loser).await;
            if with_intent {
                assert_eq!(lost["status"], "intent_created", "round {round}");
                assert_eq!(lost["proof"], Value::Null);
                assert_eq!(shop.order_status(loser).await, "payment_pending");
            } else {
                assert_eq!(lost, Value::Null, "round {round}");
                assert_eq!(shop.order_status(loser).await, "created");
            }
        }
        second.terminate().await;
        shop.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// §8: RPC verification against a real node and token

/// A node with a deployed token and dev account 1 (the payer) funded.
async fn chain() -> (Anvil, TestToken) {
    let node = Anvil::start().await;
    let token = node.deploy_token().await;
    token.mint(&payer(), units("1000", 6)).await;
    (node, token)
}

#[tokio::test]
async fn rpc_verification_finds_the_exact_transfer() {
    let (node, token) = chain().await;
    let decoy = node.deploy_token().await;
    decoy.mint(&payer(), units("1000", 6)).await;
    for backend in backends() {
        let shop = Shop::start(
            &backend,
            &token.address,
            &[
                ("PEAQOS_PAYMENT_RPC_URL", node.url.as_str()),
                ("PEAQOS_USDT_CONTRACT", token.address.as_str()),
            ],
        )
        .await;
        let order = shop.order("wallet-svc").await;
        let intent = shop.intent(&order).await;
        assert!(
            intent["rail"]["payerAddress"]
                .as_str()
                .unwrap()
                .eq_ignore_ascii_case(&payer())
        );
        let amount = token.units("2.5");
        let not_found = |error: &Value| {
            assert_eq!(detail(error, "rawAmount"), "2500000", "{error}");
        };

        // Transfers that are not this payment.
        let wrong_amount = token.transfer(&payer(), PAYEE, token.units("2.4")).await;
        let wrong_payee = token.transfer(&payer(), OTHER, amount).await;
        let wrong_payer = {
            token.mint(&dev_account(2).address, amount).await;
            token.transfer(&dev_account(2).address, PAYEE, amount).await
        };
        let wrong_token = decoy.transfer(&payer(), PAYEE, amount).await;
        for hash in [&wrong_amount, &wrong_payee, &wrong_payer, &wrong_token] {
            let error = expect_error(
                shop.post(&order, "payment-proof", &rpc_proof_of(&intent, hash))
                    .await,
                StatusCode::BAD_REQUEST,
                "PAYMENT_TRANSFER_NOT_FOUND",
            )
            .await;
            not_found(&error);
        }
        // A transaction that failed on chain.
        let reverted = token
            .reverting_transfer(&payer(), PAYEE, units("1000000", 6))
            .await;
        let error = expect_error(
            shop.post(&order, "payment-proof", &rpc_proof_of(&intent, &reverted))
                .await,
            StatusCode::PAYMENT_REQUIRED,
            "PAYMENT_TX_FAILED",
        )
        .await;
        assert!(detail(&error, "blockNumber").is_u64());
        // A transaction the chain has never seen.
        expect_error(
            shop.post(&order, "payment-proof", &rpc_proof_of(&intent, &tx_hash()))
                .await,
            StatusCode::CONFLICT,
            "PAYMENT_NOT_MINED",
        )
        .await;
        // None of that changed the payment.
        assert_eq!(shop.payment(&order).await, intent);
        assert!(
            shop.events(
                "market.payment.proof-recorded",
                intent["id"].as_str().unwrap()
            )
            .await
            .is_empty()
        );

        // The real transfer: held, with its block.
        let paid = token.transfer(&payer(), PAYEE, amount).await;
        let block = node.rpc.receipt(&paid).await.unwrap()["blockNumber"].clone();
        let block =
            u64::from_str_radix(block.as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
        let held = shop.prove(&order, &rpc_proof_of(&intent, &paid)).await;
        assert_eq!(held["status"], "held");
        assert_eq!(held["rail"]["type"], "wdk-usdt-transfer");
        let proof = &held["proof"];
        assert_eq!(proof["verificationMode"], "rpc");
        assert_eq!(proof["blockNumber"], json!(block));
        assert_eq!(proof["rawAmount"], "2500000");
        assert_eq!(proof["tokenAddress"], json!(token.address));
        assert_eq!(proof["transactionHash"], json!(paid));
        ms(&proof["verifiedAt"]);
        let event = shop
            .event(
                "market.payment.proof-recorded",
                held["id"].as_str().unwrap(),
            )
            .await;
        assert_eq!(event["payload"]["verificationMode"], "rpc");
        assert_eq!(event["payload"]["transactionHash"], json!(paid));

        // The token contract: the proof's, else the rail's, else PEAQOS_USDT_CONTRACT.
        let order = shop.order("bare-wallet-svc").await;
        let intent = shop.intent(&order).await;
        assert_eq!(intent["rail"]["tokenAddress"], Value::Null);
        let on_decoy = decoy.transfer(&payer(), PAYEE, amount).await;
        expect_error(
            shop.post(&order, "payment-proof", &rpc_proof_of(&intent, &on_decoy))
                .await,
            StatusCode::BAD_REQUEST,
            "PAYMENT_TRANSFER_NOT_FOUND",
        )
        .await;
        let held = shop
            .prove(
                &order,
                &merged(
                    rpc_proof_of(&intent, &on_decoy),
                    json!({"tokenAddress": decoy.address}),
                ),
            )
            .await;
        assert_eq!(held["proof"]["tokenAddress"], json!(decoy.address));
        // rawAmount and tokenDecimals, when sent, must agree with the transfer too.
        let order = shop.order("bare-wallet-svc").await;
        let intent = shop.intent(&order).await;
        let paid = token.transfer(&payer(), PAYEE, amount).await;
        expect_error(
            shop.post(
                &order,
                "payment-proof",
                &merged(
                    rpc_proof_of(&intent, &paid),
                    json!({"rawAmount": "2500001"}),
                ),
            )
            .await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        let held = shop
            .prove(
                &order,
                &merged(
                    rpc_proof_of(&intent, &paid),
                    json!({"rawAmount": "2500000", "tokenDecimals": 6}),
                ),
            )
            .await;
        assert_eq!(held["proof"]["verificationMode"], "rpc");
        assert_eq!(held["proof"]["rawAmount"], "2500000");
        shop.stop().await;
    }
}

#[tokio::test]
async fn rpc_verification_waits_for_the_block_and_its_confirmations() {
    let (node, token) = chain().await;
    for backend in backends() {
        let shop = Shop::start(
            &backend,
            &token.address,
            &[
                ("PEAQOS_PAYMENT_RPC_URL", node.url.as_str()),
                ("PEAQOS_PAYMENT_MIN_CONFIRMATIONS", "3"),
            ],
        )
        .await;
        let order = shop.order("wallet-svc").await;
        let intent = shop.intent(&order).await;
        node.set_automine(false).await;
        let pending = token
            .submit_transfer(&payer(), PAYEE, token.units("2.5"))
            .await;
        let body = rpc_proof_of(&intent, &pending);
        shop.refused_proof(
            &order,
            &intent,
            &body,
            StatusCode::CONFLICT,
            "PAYMENT_NOT_MINED",
        )
        .await;
        // Mined: one confirmation of three.
        node.mine(1).await;
        let error = expect_error(
            shop.post(&order, "payment-proof", &body).await,
            StatusCode::CONFLICT,
            "PAYMENT_NOT_MINED",
        )
        .await;
        assert_eq!(detail(&error, "confirmations"), 1);
        assert_eq!(detail(&error, "required"), 3);
        node.mine(1).await;
        let error = shop
            .refused_proof(
                &order,
                &intent,
                &body,
                StatusCode::CONFLICT,
                "PAYMENT_NOT_MINED",
            )
            .await;
        assert_eq!(detail(&error, "confirmations"), 2);
        node.mine(1).await;
        let held = shop.prove(&order, &body).await;
        assert_eq!(held["status"], "held");
        let receipt = node.rpc.receipt(&pending).await.unwrap();
        assert_eq!(
            json!(format!(
                "{:#x}",
                held["proof"]["blockNumber"].as_u64().unwrap()
            )),
            receipt["blockNumber"]
        );
        node.set_automine(true).await;
        shop.stop().await;
    }
}

#[tokio::test]
async fn rpc_failures_leave_the_payment_for_a_retry() {
    let (mut node, token) = chain().await;
    let provider = FakeProvider::start().await;
    // An RPC URL with a key in it, as hosted nodes take them.
    let keyed_url = format!("{}/?apikey=rpc-secret-in-the-url", node.url);
    // Something on the URL that is not a node.
    let not_a_node = format!("{}/json/rpc", provider.url);
    for backend in backends() {
        let shop = Shop::start(
            &backend,
            &token.address,
            &[("PEAQOS_PAYMENT_RPC_URL", keyed_url.as_str())],
        )
        .await;
        let order = shop.order("wallet-svc").await;
        let intent = shop.intent(&order).await;
        let paid = token.transfer(&payer(), PAYEE, token.units("2.5")).await;
        node.stop().await;
        let error = expect_error(
            shop.post(&order, "payment-proof", &rpc_proof_of(&intent, &paid))
                .await,
            StatusCode::BAD_GATEWAY,
            "PAYMENT_RPC_ERROR",
        )
        .await;
        assert!(
            !error.to_string().contains("rpc-secret-in-the-url")
                && !error.to_string().contains(&node.url),
            "{error}"
        );
        assert_eq!(shop.payment(&order).await, intent, "still intent_created");
        assert_eq!(shop.order_status(&order).await, "payment_pending");
        // The node is back: the same proof goes through.
        node.restart().await;
        let held = shop.prove(&order, &rpc_proof_of(&intent, &paid)).await;
        assert_eq!(held["proof"]["verificationMode"], "rpc");
        let stored = shop.db().await;
        assert_no_secret(stored, &["rpc-secret-in-the-url"]).await;
        shop.stop().await;

        // An answer that is no JSON-RPC result.
        let shop = Shop::start(
            &backend,
            &token.address,
            &[("PEAQOS_PAYMENT_RPC_URL", not_a_node.as_str())],
        )
        .await;
        let order = shop.order("wallet-svc").await;
        let intent = shop.intent(&order).await;
        shop.refused_proof(
            &order,
            &intent,
            &rpc_proof_of(&intent, &tx_hash()),
            StatusCode::BAD_GATEWAY,
            "PAYMENT_RPC_ERROR",
        )
        .await;
        shop.stop().await;
    }
}

#[tokio::test]
async fn rpc_mode_needs_an_rpc_url() {
    for backend in backends() {
        let shop = Shop::start(&backend, FAR_TOKEN, &[]).await;
        let order = shop.order("wallet-svc").await;
        let intent = shop.intent(&order).await;
        shop.refused_proof(
            &order,
            &intent,
            &rpc_proof_of(&intent, &tx_hash()),
            StatusCode::SERVICE_UNAVAILABLE,
            "PAYMENT_RPC_REQUIRED",
        )
        .await;
        // Without a token contract anywhere, the proof is incomplete first.
        let order = shop.order("bare-wallet-svc").await;
        let intent = shop.intent(&order).await;
        expect_invalid(
            shop.post(&order, "payment-proof", &rpc_proof_of(&intent, &tx_hash()))
                .await,
            "tokenAddress",
        )
        .await;
        shop.stop().await;

        // Forced RPC verification with no URL: a recorded proof cannot be taken either.
        let shop = Shop::start(&backend, FAR_TOKEN, &[FORCE_RPC]).await;
        let order = shop.order("wallet-svc").await;
        let intent = shop.intent(&order).await;
        shop.refused_proof(
            &order,
            &intent,
            &proof_of(&intent, &tx_hash()),
            StatusCode::SERVICE_UNAVAILABLE,
            "PAYMENT_RPC_REQUIRED",
        )
        .await;
        shop.stop().await;
    }
}

#[tokio::test]
async fn forced_rpc_verification_upgrades_recorded_proofs() {
    let (node, token) = chain().await;
    for backend in backends() {
        let shop = Shop::start(
            &backend,
            &token.address,
            &[("PEAQOS_PAYMENT_RPC_URL", node.url.as_str()), FORCE_RPC],
        )
        .await;
        let order = shop.order("wallet-svc").await;
        let intent = shop.intent(&order).await;
        // A recorded proof of a transaction that does not exist is now checked, and refused.
        expect_error(
            shop.post(&order, "payment-proof", &proof_of(&intent, &tx_hash()))
                .await,
            StatusCode::CONFLICT,
            "PAYMENT_NOT_MINED",
        )
        .await;
        let paid = token.transfer(&payer(), PAYEE, token.units("2.5")).await;
        let held = shop.prove(&order, &proof_of(&intent, &paid)).await;
        assert_eq!(held["proof"]["verificationMode"], "rpc");
        assert!(held["proof"]["blockNumber"].is_u64());
        let event = shop
            .event(
                "market.payment.proof-recorded",
                held["id"].as_str().unwrap(),
            )
            .await;
        assert_eq!(event["payload"]["verificationMode"], "rpc");
        // Solana proofs cannot be verified (Open: the forcing flag refuses them).
        let order = shop.order("solana-svc").await;
        let error = expect_invalid(
            shop.post(
                &order,
                "payment-proof",
                &json!({"verificationMode": "recorded", "chain": "solana:mainnet",
                        "token": "USDC", "payerAddress": sol_address(4),
                        "payeeAddress": sol_address(9), "amount": "1",
                        "transactionSignature": sol_signature()}),
            )
            .await,
            "transactionSignature",
        )
        .await;
        assert_eq!(detail(&error, "reason"), "solana-rpc-unsupported");
        shop.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// §7.5: escrow lock

#[tokio::test]
async fn escrow_lock_holds_an_escrow_payment() {
    for backend in backends() {
        let shop = Shop::start(&backend, FAR_TOKEN, &[]).await;
        let order = shop.order("escrow-svc").await;
        let hash = tx_hash();
        let lock = json!({"transactionHash": hash.to_ascii_uppercase().replacen("0X", "0x", 1),
                          "chain": "eip155:3338", "escrowAddress": ESCROW});
        let held = expect_json(
            shop.post(&order, "payment/escrow-lock", &lock).await,
            StatusCode::OK,
        )
        .await["item"]
            .clone();
        assert_eq!(held["status"], "held");
        assert_eq!(held["rail"]["type"], "onchain-escrow");
        assert_eq!(held["rail"]["escrowAddress"], ESCROW);
        assert_eq!(held["rail"]["chain"], "eip155:3338");
        assert_eq!(held["amount"], json!(2.5));
        let proof = &held["proof"];
        assert_eq!(proof["verificationMode"], "recorded");
        assert_eq!(proof["transactionHash"], json!(hash));
        assert_eq!(proof["chain"], "eip155:3338");
        ms(&proof["verifiedAt"]);
        assert_eq!(shop.order_status(&order).await, "ready");
        let payment_id = held["id"].as_str().unwrap();
        let event = shop.event("market.payment.escrow-held", payment_id).await;
        assert_eq!(
            event["payload"],
            json!({"transactionHash": hash, "chain": "eip155:3338", "escrowAddress": ESCROW})
        );
        shop.event("market.payment.intent-created", payment_id)
            .await;
        // Idempotent for the same transaction; another one finds the payment held.
        let again = expect_json(
            shop.post(&order, "payment/escrow-lock", &lock).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(again["item"], held);
        assert_eq!(
            shop.events("market.payment.escrow-held", payment_id)
                .await
                .len(),
            1
        );
        let error = expect_error(
            shop.post(
                &order,
                "payment/escrow-lock",
                &merged(lock.clone(), json!({"transactionHash": tx_hash()})),
            )
            .await,
            StatusCode::CONFLICT,
            "ORDER_CLOSED",
        )
        .await;
        assert_eq!(detail(&error, "reason"), "payment-held");

        // After an intent of the escrow rail: that payment is held, keeping its type.
        let order = shop.order("escrow-svc").await;
        let intent = shop
            .intent_with(&order, &json!({"rail": {"type": "escrow"}}))
            .await;
        let other_escrow = dev_account(6).address;
        let held = expect_json(
            shop.post(
                &order,
                "payment/escrow-lock",
                &json!({"transactionHash": tx_hash(), "chain": "eip155:1",
                        "escrowAddress": other_escrow}),
            )
            .await,
            StatusCode::OK,
        )
        .await["item"]
            .clone();
        assert_eq!(held["id"], intent["id"]);
        assert_eq!(held["rail"]["type"], "escrow");
        assert_eq!(held["rail"]["escrowAddress"], json!(other_escrow));
        assert_eq!(held["rail"]["chain"], "eip155:1");

        // A payment of another rail is not an escrow.
        let order = shop.order("wallet-svc").await;
        shop.intent(&order).await;
        let error = expect_error(
            shop.post(
                &order,
                "payment/escrow-lock",
                &merged(lock.clone(), json!({"transactionHash": tx_hash()})),
            )
            .await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(detail(&error, "reason"), "rail-mismatch");
        // Other payment states.
        let order = shop.order("escrow-svc").await;
        shop.intent(&order).await;
        expect_json(
            shop.post(&order, "payment/refund", &json!({})).await,
            StatusCode::OK,
        )
        .await;
        let error = expect_error(
            shop.post(
                &order,
                "payment/escrow-lock",
                &merged(lock.clone(), json!({"transactionHash": tx_hash()})),
            )
            .await,
            StatusCode::CONFLICT,
            "ORDER_CLOSED",
        )
        .await;
        assert_eq!(detail(&error, "paymentStatus"), "refunded");
        // The body.
        let order = shop.order("escrow-svc").await;
        for (change, field) in [
            (json!({"transactionHash": "0x12"}), "transactionHash"),
            (json!({"transactionHash": null}), "transactionHash"),
            (json!({"chain": " "}), "chain"),
            (json!({"escrowAddress": "0xE5c0"}), "escrowAddress"),
            (json!({"escrowAddress": null}), "escrowAddress"),
        ] {
            expect_invalid(
                shop.post(&order, "payment/escrow-lock", &merged(lock.clone(), change))
                    .await,
                field,
            )
            .await;
        }
        assert_eq!(shop.payment(&order).await, Value::Null);
        // A closed order.
        expect_json(
            shop.post(&order, "cancel", &json!({})).await,
            StatusCode::OK,
        )
        .await;
        expect_error(
            shop.post(
                &order,
                "payment/escrow-lock",
                &merged(lock, json!({"transactionHash": tx_hash()})),
            )
            .await,
            StatusCode::CONFLICT,
            "ORDER_CLOSED",
        )
        .await;
        shop.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// §7.6, §7.7, §4.6: release, refund, the dispute freeze

#[tokio::test]
async fn release_pays_out_a_confirmed_order_only() {
    for backend in backends() {
        let shop = Shop::start(&backend, FAR_TOKEN, &[]).await;
        // 0.2.0 sends no body with a JSON content type; 0.12.1 no body and no content type.
        for content_type in [Some("application/json"), None] {
            let order = shop.confirmed("wallet-svc").await;
            let released = expect_json(
                shop.post_bare(&order, "payment/release", content_type)
                    .await,
                StatusCode::OK,
            )
            .await["item"]
                .clone();
            assert_eq!(released["status"], "released");
            assert_eq!(released["releaseTransactionHash"], Value::Null);
            assert_eq!(shop.payment(&order).await, released);
            let event = shop
                .event("market.payment.released", released["id"].as_str().unwrap())
                .await;
            assert_eq!(event["payload"], json!({"transactionHash": null}));
            // Released again: unchanged.
            let again = expect_json(
                shop.post_bare(&order, "payment/release", content_type)
                    .await,
                StatusCode::OK,
            )
            .await;
            assert_eq!(again["item"], released);
            assert_eq!(
                shop.events("market.payment.released", released["id"].as_str().unwrap())
                    .await
                    .len(),
                1
            );
        }
        // With the payout transaction and a note.
        let order = shop.confirmed("wallet-svc").await;
        let payout = tx_hash();
        let released = expect_json(
            shop.post(
                &order,
                "payment/release",
                &json!({"transactionHash": payout, "notes": "paid out"}),
            )
            .await,
            StatusCode::OK,
        )
        .await["item"]
            .clone();
        assert_eq!(released["releaseTransactionHash"], json!(payout));
        assert_eq!(released["notes"], json!(["paid out"]));
        let event = shop
            .event("market.payment.released", released["id"].as_str().unwrap())
            .await;
        assert_eq!(event["payload"], json!({"transactionHash": payout}));
        // A Solana payout reference is taken too; a malformed one is not.
        let order = shop.confirmed("wallet-svc").await;
        expect_invalid(
            shop.post(
                &order,
                "payment/release",
                &json!({"transactionHash": "0xfeed"}),
            )
            .await,
            "transactionHash",
        )
        .await;
        let signature = sol_signature();
        let released = expect_json(
            shop.post(
                &order,
                "payment/release",
                &json!({"transactionHash": signature}),
            )
            .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(released["item"]["releaseTransactionHash"], json!(signature));

        // Held but not confirmed.
        let (order, _) = shop.held("wallet-svc").await;
        expect_error(
            shop.post_bare(&order, "payment/release", None).await,
            StatusCode::CONFLICT,
            "ORDER_NOT_DELIVERED",
        )
        .await;
        let order = shop.delivered("wallet-svc").await;
        expect_error(
            shop.post_bare(&order, "payment/release", Some("application/json"))
                .await,
            StatusCode::CONFLICT,
            "ORDER_NOT_DELIVERED",
        )
        .await;
        assert_eq!(shop.payment(&order).await["status"], "held");
        // Closed states.
        let intent_order = shop.order("wallet-svc").await;
        shop.intent(&intent_order).await;
        let free_order = shop.order("free-svc").await;
        shop.intent(&free_order).await;
        let refunded_order = shop.order("wallet-svc").await;
        shop.intent(&refunded_order).await;
        expect_json(
            shop.post_bare(&refunded_order, "payment/refund", None)
                .await,
            StatusCode::OK,
        )
        .await;
        for (order, status) in [
            (&intent_order, "intent_created"),
            (&free_order, "not_required"),
            (&refunded_order, "refunded"),
        ] {
            let error = expect_error(
                shop.post_bare(order, "payment/release", None).await,
                StatusCode::CONFLICT,
                "ORDER_CLOSED",
            )
            .await;
            assert_eq!(detail(&error, "paymentStatus"), status);
        }
        // No payment at all.
        let order = shop.order("wallet-svc").await;
        let error = expect_error(
            shop.post_bare(&order, "payment/release", None).await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;
        assert_eq!(detail(&error, "resource"), "payment");
        shop.stop().await;
    }
}

#[tokio::test]
async fn refund_from_every_refundable_status() {
    for backend in backends() {
        let shop = Shop::start(&backend, FAR_TOKEN, &[]).await;
        // intent_created, with the refund transaction and a reason.
        let order = shop.order("wallet-svc").await;
        shop.intent(&order).await;
        let refund_hash = tx_hash();
        let refunded = expect_json(
            shop.post(
                &order,
                "payment/refund",
                &json!({"transactionHash": refund_hash, "reason": "provider offline"}),
            )
            .await,
            StatusCode::OK,
        )
        .await["item"]
            .clone();
        assert_eq!(refunded["status"], "refunded");
        assert_eq!(refunded["refundTransactionHash"], json!(refund_hash));
        assert_eq!(refunded["refundReason"], "provider offline");
        assert_eq!(
            shop.order_status(&order).await,
            "payment_pending",
            "order unchanged"
        );
        let payment_id = refunded["id"].as_str().unwrap().to_string();
        let event = shop.event("market.payment.refunded", &payment_id).await;
        assert_eq!(event["payload"]["transactionHash"], json!(refund_hash));
        assert_eq!(event["payload"]["reason"], "provider offline");
        assert_eq!(event["payload"]["statusFrom"], "intent_created");
        // Refunded again: unchanged, no new event.
        let again = expect_json(
            shop.post_bare(&order, "payment/refund", None).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(again["item"], refunded);
        assert_eq!(
            shop.events("market.payment.refunded", &payment_id)
                .await
                .len(),
            1
        );
        // The order can now be cancelled.
        expect_json(
            shop.post(&order, "cancel", &json!({})).await,
            StatusCode::OK,
        )
        .await;

        // held (bodyless, JSON content type) and release_pending (no content type).
        let (order, _) = shop.held("wallet-svc").await;
        let refunded = expect_json(
            shop.post_bare(&order, "payment/refund", Some("application/json"))
                .await,
            StatusCode::OK,
        )
        .await["item"]
            .clone();
        assert_eq!(refunded["status"], "refunded");
        assert_eq!(refunded["refundTransactionHash"], Value::Null);
        assert_eq!(shop.order_status(&order).await, "ready");
        let event = shop
            .event("market.payment.refunded", refunded["id"].as_str().unwrap())
            .await;
        assert_eq!(event["payload"]["statusFrom"], "held");
        let order = shop.confirmed("wallet-svc").await;
        let refunded = expect_json(
            shop.post_bare(&order, "payment/refund", None).await,
            StatusCode::OK,
        )
        .await["item"]
            .clone();
        assert_eq!(refunded["status"], "refunded");
        assert_eq!(shop.order_status(&order).await, "confirmed");
        let event = shop
            .event("market.payment.refunded", refunded["id"].as_str().unwrap())
            .await;
        assert_eq!(event["payload"]["statusFrom"], "release_pending");

        // released and not_required cannot be refunded.
        let order = shop.confirmed("wallet-svc").await;
        expect_json(
            shop.post_bare(&order, "payment/release", None).await,
            StatusCode::OK,
        )
        .await;
        let error = expect_error(
            shop.post_bare(&order, "payment/refund", None).await,
            StatusCode::CONFLICT,
            "ORDER_CLOSED",
        )
        .await;
        assert_eq!(detail(&error, "paymentStatus"), "released");
        let order = shop.order("free-svc").await;
        shop.intent(&order).await;
        let error = expect_error(
            shop.post(&order, "payment/refund", &json!({"reason": "x"}))
                .await,
            StatusCode::CONFLICT,
            "ORDER_CLOSED",
        )
        .await;
        assert_eq!(detail(&error, "paymentStatus"), "not_required");
        // No payment; a malformed refund transaction.
        let order = shop.order("wallet-svc").await;
        expect_error(
            shop.post_bare(&order, "payment/refund", None).await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;
        shop.intent(&order).await;
        expect_invalid(
            shop.post(&order, "payment/refund", &json!({"transactionHash": "0x0"}))
                .await,
            "transactionHash",
        )
        .await;
        assert_eq!(shop.payment(&order).await["status"], "intent_created");
        shop.stop().await;
    }
}

#[tokio::test]
async fn a_dispute_freezes_the_payment_until_it_is_refunded() {
    for backend in backends() {
        let shop = Shop::start(&backend, FAR_TOKEN, &[]).await;
        // held (delivered, not confirmed) and release_pending (confirmed) both freeze.
        let delivered = shop.delivered("wallet-svc").await;
        let confirmed = shop.confirmed("wallet-svc").await;
        for (order, from) in [(&delivered, "held"), (&confirmed, "release_pending")] {
            let disputed = expect_json(
                shop.post(
                    order,
                    "dispute",
                    &json!({"reason": "wrong answer", "evidence": {"run": 1}}),
                )
                .await,
                StatusCode::OK,
            )
            .await;
            assert_eq!(disputed["order"]["status"], "disputed");
            assert_eq!(disputed["payment"]["status"], "frozen");
            assert_eq!(disputed["dispute"]["status"], "open");
            assert_eq!(shop.payment(order).await["status"], "frozen");
            let events = shop.events("market.order.disputed", order).await;
            assert_eq!(events[0]["payload"]["paymentStatusFrom"], from);
            assert_eq!(events[0]["payload"]["paymentStatusTo"], "frozen");
            // Frozen money is not released.
            let error = expect_error(
                shop.post_bare(order, "payment/release", None).await,
                StatusCode::CONFLICT,
                "ORDER_CLOSED",
            )
            .await;
            assert_eq!(detail(&error, "paymentStatus"), "frozen");
            // The refund resolves the dispute.
            let dispute_id = disputed["dispute"]["id"].as_str().unwrap().to_string();
            assert_eq!(dispute_status(&shop, &dispute_id).await, "open");
            let refunded = expect_json(
                shop.post(
                    order,
                    "payment/refund",
                    &json!({"reason": "dispute upheld"}),
                )
                .await,
                StatusCode::OK,
            )
            .await["item"]
                .clone();
            assert_eq!(refunded["status"], "refunded");
            assert_eq!(dispute_status(&shop, &dispute_id).await, "resolved");
            assert_eq!(
                shop.order_status(order).await,
                "disputed",
                "order unchanged"
            );
            let event = shop
                .event("market.payment.refunded", refunded["id"].as_str().unwrap())
                .await;
            assert_eq!(event["payload"]["statusFrom"], "frozen");
            assert_eq!(event["payload"]["reason"], "dispute upheld");
            assert_eq!(event["payload"]["resolvedDisputeIds"], json!([dispute_id]));
        }
        // A refund of a payment that is not disputed resolves nothing.
        let (order, payment) = shop.held("wallet-svc").await;
        expect_json(
            shop.post_bare(&order, "payment/refund", None).await,
            StatusCode::OK,
        )
        .await;
        let event = shop
            .event("market.payment.refunded", payment["id"].as_str().unwrap())
            .await;
        assert_eq!(event["payload"]["resolvedDisputeIds"], json!([]));
        shop.stop().await;
    }
}

async fn dispute_status(shop: &Shop, dispute_id: &str) -> String {
    let mut db = shop.db().await;
    let status: String = sqlx::query_scalar("SELECT status FROM order_disputes WHERE id = $1")
        .bind(dispute_id.to_string())
        .fetch_one(&mut db)
        .await
        .unwrap();
    db.close().await.unwrap();
    status
}

#[tokio::test]
async fn execute_can_require_a_held_payment() {
    for backend in backends() {
        let shop = Shop::start(
            &backend,
            FAR_TOKEN,
            &[("PEAQOS_REQUIRE_PAYMENT_BEFORE_EXECUTE", "true")],
        )
        .await;
        let order = shop.order("wallet-svc").await;
        let intent = shop.intent(&order).await;
        expect_error(
            shop.post(&order, "execute", &json!({})).await,
            StatusCode::PAYMENT_REQUIRED,
            "PAYMENT_REQUIRED",
        )
        .await;
        assert!(
            shop.provider.seen_at("/json/run").is_empty(),
            "no call made"
        );
        shop.prove(&order, &proof_of(&intent, &tx_hash())).await;
        let executed = expect_json(
            shop.post(&order, "execute", &json!({})).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(executed["order"]["status"], "delivered");
        assert_eq!(shop.provider.seen_at("/json/run").len(), 1);
        // A free service needs no payment at all.
        let order = shop.order("free-svc").await;
        let executed = expect_json(
            shop.post(&order, "execute", &json!({})).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(executed["order"]["status"], "delivered");
        shop.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Secrets

/// Asserts that no `secret` is in any payment or audit row.
async fn assert_no_secret(mut db: sqlx::AnyConnection, secrets: &[&str]) {
    let mut stored = Vec::new();
    for sql in [
        "SELECT id || ' ' || rail || ' ' || COALESCE(proof, '') || ' ' || notes || ' ' ||
                COALESCE(transaction_key, '') || ' ' || COALESCE(release_transaction_hash, '') ||
                ' ' || COALESCE(refund_transaction_hash, '') || ' ' || COALESCE(refund_reason, '')
         FROM market_payments",
        "SELECT type || ' ' || resource_id || ' ' || payload FROM audit_events",
    ] {
        for row in sqlx::query(sql).fetch_all(&mut db).await.unwrap() {
            stored.push(row.get::<String, _>(0));
        }
    }
    db.close().await.unwrap();
    assert!(
        stored.iter().any(|row| row.contains("pay_")),
        "the scan read the payments"
    );
    for row in &stored {
        for secret in secrets {
            assert!(!row.contains(secret), "{secret} stored: {row}");
        }
    }
}

#[tokio::test]
async fn no_secret_reaches_a_response_the_audit_or_the_database() {
    let (mut node, token) = chain().await;
    let api_key = format!("api-key-{}", rand_u64());
    let rpc_key = format!("rpc-key-{}", rand_u64());
    let rpc_url = format!("{}/?key={rpc_key}", node.url);
    for backend in backends() {
        let shop = Shop::start(
            &backend,
            &token.address,
            &[
                ("PEAQOS_API_KEY", api_key.as_str()),
                ("PEAQOS_PAYMENT_RPC_URL", rpc_url.as_str()),
            ],
        )
        .await;
        let secrets = [
            api_key.as_str(),
            rpc_key.as_str(),
            shop.token.as_str(),
            SESSION_SECRET.1,
        ];
        let mut answers = Vec::new();
        let mut keep = |text: String| answers.push(text);
        // Every payment action, succeeding and failing.
        let order = shop.order("wallet-svc").await;
        let intent = shop.intent(&order).await;
        keep(intent.to_string());
        let paid = token.transfer(&payer(), PAYEE, token.units("2.5")).await;
        node.stop().await;
        keep(
            shop.post(&order, "payment-proof", &rpc_proof_of(&intent, &paid))
                .await
                .text()
                .await
                .unwrap(),
        );
        node.restart().await;
        keep(
            shop.post(&order, "payment-proof", &rpc_proof_of(&intent, &tx_hash()))
                .await
                .text()
                .await
                .unwrap(),
        );
        keep(
            shop.prove(&order, &rpc_proof_of(&intent, &paid))
                .await
                .to_string(),
        );
        keep(
            shop.post(&order, "execute", &json!({}))
                .await
                .text()
                .await
                .unwrap(),
        );
        keep(
            shop.post(&order, "confirm", &json!({}))
                .await
                .text()
                .await
                .unwrap(),
        );
        keep(
            shop.post_bare(&order, "payment/release", None)
                .await
                .text()
                .await
                .unwrap(),
        );
        let escrow = shop.order("escrow-svc").await;
        keep(
            shop.post(
                &escrow,
                "payment/escrow-lock",
                &json!({"transactionHash": tx_hash(), "chain": "eip155:3338",
                        "escrowAddress": ESCROW}),
            )
            .await
            .text()
            .await
            .unwrap(),
        );
        keep(
            shop.post(&escrow, "payment/refund", &json!({"reason": "r"}))
                .await
                .text()
                .await
                .unwrap(),
        );
        keep(shop.payment(&escrow).await.to_string());
        let audit = expect_json(
            shop.srv().get("/api/v1/audit-events?limit=500").await,
            StatusCode::OK,
        )
        .await;
        keep(audit.to_string());
        assert!(answers.iter().any(|a| a.contains("PAYMENT_RPC_ERROR")));
        assert!(
            answers
                .iter()
                .any(|a| a.contains("market.payment.refunded"))
        );
        for answer in &answers {
            for secret in secrets {
                assert!(!answer.contains(secret), "{secret} in {answer}");
            }
        }
        assert_no_secret(shop.db().await, &secrets).await;
        shop.stop().await;
    }
}
