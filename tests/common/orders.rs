//! Shared set-up for the market-order tests: a catalogue of paid, free, failing, paywalled,
//! held-open and handoff services on loopback providers, a server with an active machine and an
//! agent pairing, the order and payment steps that put an order into each state, and a provider
//! that holds requests open until a test lets them go.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode as AxumStatus, Uri};
use axum::response::{IntoResponse, Response as AxumResponse};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::fake_provider::FakeProvider;
use super::market::{
    CatalogDir, MACHINE_VERIFICATION_OFF, NO_PROBES, PAIRING_VERIFICATION_OFF, TOKEN_HEADER,
    catalog_file, manifest, merged, pair, service, skill,
};
use super::{Backend, TestServer, expect_json, rand_u64};

/// Native, wallet rail, payment required, fixed 2.5 USDT; operations `run` and `inspect`.
pub const PAID: &str = "ord-paid";
/// Native and free (rail `not-required`, no price); operations `read` and `list`; capabilities
/// `lidar` and `camera`.
pub const FREE: &str = "ord-free";
/// External handoff, escrow rail, payment required, fixed 5 USDT.
pub const HANDOFF: &str = "ord-handoff";
/// Native and free; the provider answers `500`.
pub const FAILING: &str = "ord-failing";
/// Native and free; the provider answers `402`.
pub const PAYWALL: &str = "ord-paywall";
/// Native and free; the provider holds the request until [`ScriptedProvider::release`].
pub const HELD: &str = "ord-held";
/// Native, wallet rail, payment required, fixed 1 USDT; the provider answers what
/// [`ScriptedProvider::set_flaky`] says (`500` at first).
pub const FLAKY: &str = "ord-flaky";
/// Native, rail `not-required`, fixed 3 EUR.
pub const EUR: &str = "ord-eur";
/// Native and free, pricing `quote-required` with no amount or currency.
pub const UNPRICED: &str = "ord-unpriced";
/// Native, x402 rail, payment required.
pub const X402: &str = "ord-x402";
/// Native and free, its provider URL at a blocked (link-local) address.
pub const BLOCKED: &str = "ord-blocked";
/// Native and free, with no provider endpoint.
pub const NO_ADAPTER: &str = "ord-no-adapter";
/// Native and free, its provider URL on a loopback port where nothing listens.
pub const DEAD: &str = "ord-dead";
/// Native and free, of another skill (`other-skill`).
pub const OTHER: &str = "other-free";
/// Native and free, of a skill tests disable (`off-skill`).
pub const OFF: &str = "off-free";

pub const SKILL: &str = "ord-skill";
pub const PROVIDER_KEY: &str = "ordprov";
pub const OTHER_SKILL: &str = "other-skill";
pub const OFF_SKILL: &str = "off-skill";

pub const PAYEE: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
pub const ESCROW: &str = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
pub const HANDOFF_URL: &str = "https://provider.example/continue";
pub const LOOPBACK: (&str, &str) = ("PEAQOS_RUNTIME_ALLOWED_NETWORK_SCOPES", "public,loopback");

/// A loopback provider whose answers a test controls: `/hold` answers `200` only once the test
/// releases it (and counts the requests waiting), `/flaky` answers the status last set.
pub struct ScriptedProvider {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    shared: Arc<Script>,
}

struct Script {
    arrived: AtomicUsize,
    permits: Semaphore,
    flaky: AtomicU16,
}

async fn scripted(State(script): State<Arc<Script>>, uri: Uri) -> AxumResponse {
    match uri.path() {
        "/hold" => {
            let n = script.arrived.fetch_add(1, Ordering::SeqCst) + 1;
            script.permits.acquire().await.unwrap().forget();
            axum::Json(json!({"released": true, "arrival": n})).into_response()
        }
        "/flaky" => {
            let code = script.flaky.load(Ordering::SeqCst);
            (
                AxumStatus::from_u16(code).unwrap(),
                axum::Json(json!({"flaky": code})),
            )
                .into_response()
        }
        _ => AxumStatus::NOT_FOUND.into_response(),
    }
}

impl ScriptedProvider {
    pub async fn start() -> ScriptedProvider {
        let shared = Arc::new(Script {
            arrived: AtomicUsize::new(0),
            permits: Semaphore::new(0),
            flaky: AtomicU16::new(500),
        });
        let router = axum::Router::new()
            .fallback(scripted)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        ScriptedProvider { url, shared }
    }

    /// Lets `n` held requests answer.
    pub fn release(&self, n: usize) {
        self.shared.permits.add_permits(n);
    }

    /// Requests `/hold` has received so far.
    pub fn holds(&self) -> usize {
        self.shared.arrived.load(Ordering::SeqCst)
    }

    /// Waits (at most 30 s) until `/hold` has received `n` requests.
    pub async fn wait_for_holds(&self, n: usize) {
        for _ in 0..3000 {
            if self.holds() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the held provider got {} of {n} requests", self.holds());
    }

    pub fn set_flaky(&self, status: u16) {
        self.shared.flaky.store(status, Ordering::SeqCst);
    }
}

/// A pairing's view: the machine, the pairing and its token.
#[derive(Clone, Debug)]
pub struct Agent {
    pub machine_id: String,
    pub pairing_id: String,
    pub token: String,
}

impl Agent {
    /// From a pairing record with its `pairingToken`.
    pub fn of(pairing: &Value) -> Agent {
        Agent {
            machine_id: pairing["machineId"].as_str().unwrap().to_string(),
            pairing_id: pairing["id"].as_str().unwrap().to_string(),
            token: pairing["pairingToken"].as_str().unwrap().to_string(),
        }
    }
}

fn endpoint(operation: &str, url: &str, path: &str) -> Value {
    json!({"operation": operation, "url": url, "path": path, "method": "POST"})
}

fn wallet_rail(required: bool) -> Value {
    json!({"defaultRail": "wallet", "supportedRails": ["wallet", "wdk-usdt-transfer"],
           "required": required, "chain": "eip155:3338", "token": "USDT", "walletAddress": PAYEE})
}

/// The catalogue of the order tests, its services pointing at `provider` and `script`.
pub fn catalogue(provider: &str, script: &str) -> CatalogDir {
    let svc = |id: &str, changes: Value| {
        merged(service(id, SKILL, PROVIDER_KEY, "device.control"), changes)
    };
    let services = vec![
        svc(
            PAID,
            json!({"operations": ["run", "inspect"],
                "endpoints": [endpoint("run", provider, "/json/paid"), endpoint("inspect", provider, "/json/inspect")],
                "pricing": {"mode": "fixed", "amount": 2.5, "currency": "USDT"},
                "payment": wallet_rail(true)}),
        ),
        svc(
            FREE,
            json!({"operations": ["read", "list"], "capabilities": ["lidar", "camera"],
                   "endpoints": [endpoint("read", provider, "/json/free")]}),
        ),
        svc(
            HANDOFF,
            json!({"executionMode": "external-handoff", "integrationStatus": "docs-only",
                "endpoints": [],
                "handoff": {"label": "Continue at the provider", "url": HANDOFF_URL, "notes": ["sign in"]},
                "pricing": {"mode": "fixed", "amount": 5, "currency": "USDT"},
                "payment": {"defaultRail": "escrow", "supportedRails": ["escrow"], "required": true,
                            "chain": "eip155:3338", "token": "USDT", "escrowAddress": ESCROW}}),
        ),
        svc(
            FAILING,
            json!({"endpoints": [endpoint("run", provider, "/status/500")]}),
        ),
        svc(
            PAYWALL,
            json!({"endpoints": [endpoint("run", provider, "/status/402")]}),
        ),
        svc(
            HELD,
            json!({"endpoints": [endpoint("run", script, "/hold")]}),
        ),
        svc(
            FLAKY,
            json!({"endpoints": [endpoint("run", script, "/flaky")],
                   "pricing": {"mode": "fixed", "amount": 1, "currency": "USDT"},
                   "payment": wallet_rail(true)}),
        ),
        svc(
            EUR,
            json!({"endpoints": [endpoint("run", provider, "/json/eur")],
                   "pricing": {"mode": "fixed", "amount": 3, "currency": "EUR"}}),
        ),
        svc(
            UNPRICED,
            json!({"endpoints": [endpoint("run", provider, "/json/unpriced")],
                   "pricing": {"mode": "quote-required"}}),
        ),
        svc(
            X402,
            json!({"endpoints": [endpoint("run", provider, "/json/x402")],
                   "payment": {"defaultRail": "x402", "supportedRails": ["x402"], "required": true,
                               "chain": "eip155:8453", "token": "USDC"}}),
        ),
        svc(
            BLOCKED,
            json!({"endpoints": [endpoint("run", "http://169.254.169.254", "/latest")]}),
        ),
        svc(NO_ADAPTER, json!({"endpoints": []})),
        svc(
            DEAD,
            json!({"endpoints": [endpoint("run", &super::fake_runtime::dead_url(), "/run")]}),
        ),
    ];
    let other = |id: &str, skill_key: &str, provider_key: &str| {
        merged(
            service(id, skill_key, provider_key, "device.control"),
            json!({"endpoints": [endpoint("run", provider, &format!("/json/{id}"))]}),
        )
    };
    let file = catalog_file(
        vec![
            skill(SKILL, PROVIDER_KEY),
            skill(OTHER_SKILL, "otherprov"),
            skill(OFF_SKILL, "offprov"),
        ],
        vec![
            manifest(SKILL, PROVIDER_KEY),
            manifest(OTHER_SKILL, "otherprov"),
            manifest(OFF_SKILL, "offprov"),
        ],
        services
            .into_iter()
            .chain([
                other(OTHER, OTHER_SKILL, "otherprov"),
                other(OFF, OFF_SKILL, "offprov"),
            ])
            .collect(),
    );
    CatalogDir::with(&[("orders.json", file)])
}

/// The environment of an order-test server: verification and probes off, loopback providers
/// allowed, a generous database timeout, the catalogue, then `env` on top.
pub fn server_env(catalog: &CatalogDir, env: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut vars: BTreeMap<String, String> = [
        MACHINE_VERIFICATION_OFF,
        PAIRING_VERIFICATION_OFF,
        NO_PROBES,
        LOOPBACK,
        // A loaded CI machine can take seconds to sync a SQLite write.
        ("PEAQOS_DATABASE_TIMEOUT_MS", "30000"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    vars.insert("PEAQOS_CATALOG_DIR".into(), catalog.path_str());
    for (k, v) in env {
        vars.insert(k.to_string(), v.to_string());
    }
    vars.into_iter().collect()
}

pub fn pairs(vars: &[(String, String)]) -> Vec<(&str, &str)> {
    vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// A random EVM transaction hash.
pub fn tx_hash() -> String {
    format!(
        "0x{:016x}{:016x}{:016x}{:016x}",
        rand_u64(),
        rand_u64(),
        rand_u64(),
        rand_u64()
    )
}

/// Epoch ms of the next 00:00:00.000 UTC after `now_ms`.
pub fn next_utc_midnight(now_ms: i64) -> i64 {
    const DAY_MS: i64 = 86_400_000;
    (now_ms.div_euclid(DAY_MS) + 1) * DAY_MS
}

/// A server on the order catalogue with an active machine and a pairing of it, and the providers
/// its services call.
pub struct OrderWorld {
    pub srv: TestServer,
    /// The first pairing of the machine.
    pub me: Agent,
    pub provider: FakeProvider,
    pub script: ScriptedProvider,
    pub catalog: CatalogDir,
    /// What the server was started with (for a second server on the same database).
    pub env: Vec<(String, String)>,
}

impl OrderWorld {
    pub async fn start(backend: &Backend, env: &[(&str, &str)]) -> OrderWorld {
        let (srv, provider, script, catalog, vars) = Self::server(backend, env).await;
        let machine_id = srv.unverified_active_machine().await;
        let me = Agent::of(&pair(&srv, &machine_id, None).await);
        OrderWorld {
            srv,
            me,
            provider,
            script,
            catalog,
            env: vars,
        }
    }

    /// The server alone, for set-ups that make their own machine.
    pub async fn server(
        backend: &Backend,
        env: &[(&str, &str)],
    ) -> (
        TestServer,
        FakeProvider,
        ScriptedProvider,
        CatalogDir,
        Vec<(String, String)>,
    ) {
        let provider = FakeProvider::start().await;
        let script = ScriptedProvider::start().await;
        let catalog = catalogue(&provider.url, &script.url);
        let vars = server_env(&catalog, env);
        let mut srv = TestServer::start(backend, &pairs(&vars)).await;
        if let Some((_, key)) = vars.iter().find(|(k, _)| k == "PEAQOS_API_KEY") {
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert("x-api-key", key.parse().unwrap());
            srv.http = reqwest::Client::builder()
                .default_headers(headers)
                .build()
                .unwrap();
        }
        (srv, provider, script, catalog, vars)
    }

    /// A world around a machine made elsewhere (for example a verified one).
    pub fn around(
        srv: TestServer,
        me: Agent,
        provider: FakeProvider,
        script: ScriptedProvider,
        catalog: CatalogDir,
        env: Vec<(String, String)>,
    ) -> OrderWorld {
        OrderWorld {
            srv,
            me,
            provider,
            script,
            catalog,
            env,
        }
    }

    /// Another pairing of the machine, with `policy`.
    pub async fn pairing(&self, policy: Option<Value>) -> Agent {
        Agent::of(&pair(&self.srv, &self.me.machine_id, policy).await)
    }

    /// Another active machine and a pairing of it.
    pub async fn other_machine(&self, policy: Option<Value>) -> Agent {
        let machine_id = self.srv.unverified_active_machine().await;
        Agent::of(&pair(&self.srv, &machine_id, policy).await)
    }

    /// A request with `agent`'s token.
    pub fn as_agent(&self, agent: &Agent, method: Method, path: &str) -> RequestBuilder {
        self.srv
            .request(method, path)
            .header(TOKEN_HEADER, &agent.token)
    }

    /// The body of an order of `service_id` by `agent`.
    pub fn body_for(agent: &Agent, service_id: &str) -> Value {
        json!({"machineId": agent.machine_id, "agentPairingId": agent.pairing_id,
               "serviceId": service_id})
    }

    pub fn body(&self, service_id: &str) -> Value {
        Self::body_for(&self.me, service_id)
    }

    /// `POST /market/orders` as `agent`.
    pub async fn create_as(&self, agent: &Agent, body: &Value) -> Response {
        self.as_agent(agent, Method::POST, "/api/v1/market/orders")
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn create(&self, body: &Value) -> Response {
        self.create_as(&self.me, body).await
    }

    /// A created order of `service_id` with `changes` merged into the body.
    pub async fn order_with(&self, service_id: &str, changes: Value) -> Value {
        let body = merged(self.body(service_id), changes);
        expect_json(self.create(&body).await, StatusCode::CREATED).await["item"].clone()
    }

    pub async fn order(&self, service_id: &str) -> Value {
        self.order_with(service_id, json!({})).await
    }

    /// `POST /market/orders/{id}/{action}` as `agent`, with `body` (none when `None`).
    pub fn action_as(
        &self,
        agent: &Agent,
        id: &str,
        action: &str,
        body: Option<&Value>,
    ) -> RequestBuilder {
        let request = self.as_agent(
            agent,
            Method::POST,
            &format!("/api/v1/market/orders/{id}/{action}"),
        );
        match body {
            Some(body) => request.json(body),
            None => request,
        }
    }

    pub async fn act(&self, id: &str, action: &str, body: Value) -> Response {
        self.action_as(&self.me, id, action, Some(&body))
            .send()
            .await
            .unwrap()
    }

    /// An action that must answer `status`: its body.
    pub async fn acted(&self, id: &str, action: &str, body: Value, status: StatusCode) -> Value {
        expect_json(self.act(id, action, body).await, status).await
    }

    /// `GET /market/orders/{id}` with the API key (if any): the order.
    pub async fn get(&self, id: &str) -> Value {
        expect_json(
            self.srv.get(&format!("/api/v1/market/orders/{id}")).await,
            StatusCode::OK,
        )
        .await["item"]
            .clone()
    }

    /// The order's payment, or `null`.
    pub async fn payment(&self, id: &str) -> Value {
        expect_json(
            self.srv
                .get(&format!("/api/v1/market/orders/{id}/payment"))
                .await,
            StatusCode::OK,
        )
        .await["item"]
            .clone()
    }

    pub async fn status(&self, id: &str) -> String {
        self.get(id).await["status"].as_str().unwrap().to_string()
    }

    /// payment-intent with an empty body: the payment (`201`).
    pub async fn intent(&self, id: &str) -> Value {
        self.acted(id, "payment-intent", json!({}), StatusCode::CREATED)
            .await["item"]
            .clone()
    }

    /// A recorded wallet proof for `payment` (its payer, payee and amount).
    pub fn proof_for(payment: &Value) -> Value {
        json!({"verificationMode": "recorded", "chain": "eip155:3338", "token": "USDT",
               "payerAddress": payment["rail"]["payerAddress"], "payeeAddress": PAYEE,
               "amount": payment["amount"].to_string(), "transactionHash": tx_hash()})
    }

    /// payment-intent and a recorded proof: the held payment.
    pub async fn hold_wallet(&self, id: &str) -> Value {
        let intent = self.intent(id).await;
        let held = self
            .acted(
                id,
                "payment-proof",
                Self::proof_for(&intent),
                StatusCode::OK,
            )
            .await["item"]
            .clone();
        assert_eq!(held["status"], "held", "{held}");
        held
    }

    pub fn escrow_body() -> Value {
        json!({"transactionHash": tx_hash(), "chain": "eip155:3338", "escrowAddress": ESCROW})
    }

    /// escrow-lock: the held payment.
    pub async fn hold_escrow(&self, id: &str) -> Value {
        let held = self
            .acted(
                id,
                "payment/escrow-lock",
                Self::escrow_body(),
                StatusCode::OK,
            )
            .await["item"]
            .clone();
        assert_eq!(held["status"], "held", "{held}");
        held
    }

    /// An execute that must answer `status`: the execution result.
    pub async fn execute(&self, id: &str, status: StatusCode) -> Value {
        self.acted(id, "execute", json!({}), status).await
    }

    /// An order of `service_id` executing: the provider holds the call open until
    /// `self.script.release`. Returns the order and the pending execute.
    pub async fn executing(
        &self,
        service_id: &str,
    ) -> (Value, tokio::task::JoinHandle<reqwest::Result<Response>>) {
        let order = self.order(service_id).await;
        let id = order["id"].as_str().unwrap();
        let before = self.script.holds();
        let call = tokio::spawn(
            self.action_as(&self.me, id, "execute", Some(&json!({})))
                .send(),
        );
        self.script.wait_for_holds(before + 1).await;
        assert_eq!(self.status(id).await, "executing");
        (self.get(id).await, call)
    }

    /// A fresh order in `status` (not `executing`: see [`OrderWorld::executing`]). `ready` is a
    /// free order with a `not_required` payment.
    pub async fn in_state(&self, status: &str) -> Value {
        let order = match status {
            "created" | "payment_pending" | "cancelled" => self.order(PAID).await,
            "ready" | "delivered" | "confirmed" | "disputed" => self.order(FREE).await,
            "failed" => self.order(FAILING).await,
            "handoff" => self.order(HANDOFF).await,
            other => panic!("no set-up for {other}"),
        };
        let id = order["id"].as_str().unwrap();
        match status {
            "payment_pending" => {
                assert_eq!(self.intent(id).await["status"], "intent_created");
            }
            "ready" => {
                assert_eq!(self.intent(id).await["status"], "not_required");
            }
            "cancelled" => {
                self.acted(id, "cancel", json!({}), StatusCode::OK).await;
            }
            "delivered" | "confirmed" | "disputed" | "failed" => {
                self.execute(id, StatusCode::OK).await;
            }
            "handoff" => {
                self.execute(id, StatusCode::ACCEPTED).await;
            }
            _ => {}
        }
        match status {
            "confirmed" => {
                self.acted(id, "confirm", json!({}), StatusCode::OK).await;
            }
            "disputed" => {
                self.acted(id, "dispute", json!({"reason": "wrong"}), StatusCode::OK)
                    .await;
            }
            _ => {}
        }
        let order = self.get(id).await;
        assert_eq!(order["status"], status, "{order}");
        order
    }

    /// Audit events of `event_type` about `resource_id`, newest first.
    pub async fn events(&self, event_type: &str, resource_id: &str) -> Vec<Value> {
        super::market::all_items(
            &self.srv,
            &format!("/api/v1/audit-events?type={event_type}&resourceId={resource_id}"),
        )
        .await
    }

    /// The single audit event of `event_type` about `resource_id`.
    pub async fn event(&self, event_type: &str, resource_id: &str) -> Value {
        let events = self.events(event_type, resource_id).await;
        assert_eq!(events.len(), 1, "{event_type} of {resource_id}: {events:?}");
        events[0].clone()
    }

    /// The machine's orders, all pages.
    pub async fn orders_of(&self, machine_id: &str) -> Vec<Value> {
        super::market::all_items(
            &self.srv,
            &format!("/api/v1/market/orders?machineId={machine_id}"),
        )
        .await
    }

    pub async fn stop(self) {
        self.srv.stop().await;
    }
}

/// Every byte of the test database: the SQLite file and its WAL after a checkpoint, or a
/// `pg_dump` of the PostgreSQL database.
pub async fn database_bytes(srv: &TestServer) -> String {
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
            let output = Command::new("pg_dump")
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
