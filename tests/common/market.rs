//! Shared set-up for the catalogue and market tests: catalogue files written into a temp dir,
//! a server with an active machine and an agent pairing, and the machine-agent steps that lease
//! a runtime endpoint.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

use super::wallet::Wallet;
use super::{Backend, TestServer, expect_json};

pub const MACHINE_VERIFICATION_OFF: (&str, &str) =
    ("PEAQOS_MACHINE_IDENTITY_VERIFICATION", "disabled");
pub const PAIRING_VERIFICATION_OFF: (&str, &str) =
    ("PEAQOS_AGENT_PAIRING_VERIFICATION", "disabled");
/// Keeps the runtime prober from changing endpoint statuses under a test.
pub const NO_PROBES: (&str, &str) = ("PEAQOS_RUNTIME_PROBE_INTERVAL_MS", "0");

pub const TOKEN_HEADER: &str = "x-agent-pairing-token";
pub const SEARCH: &str = "/api/v1/market/search";

/// A `PEAQOS_CATALOG_DIR` of its own, in a temp dir.
pub struct CatalogDir {
    dir: tempfile::TempDir,
}

impl CatalogDir {
    pub fn new() -> CatalogDir {
        CatalogDir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A directory holding `files`, each `(file name, catalogue object)`.
    pub fn with(files: &[(&str, Value)]) -> CatalogDir {
        let dir = CatalogDir::new();
        for (name, body) in files {
            dir.write(name, body);
        }
        dir
    }

    pub fn write(&self, name: &str, body: &Value) {
        self.write_raw(name, &serde_json::to_string_pretty(body).unwrap());
    }

    pub fn write_raw(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).unwrap();
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The path of one file, as start-up errors name it.
    pub fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    pub fn path_str(&self) -> String {
        self.dir.path().display().to_string()
    }
}

impl Default for CatalogDir {
    fn default() -> Self {
        CatalogDir::new()
    }
}

/// A catalogue file.
pub fn catalog_file(skills: Vec<Value>, manifests: Vec<Value>, services: Vec<Value>) -> Value {
    json!({"skills": skills, "manifests": manifests, "services": services})
}

/// A valid skill with every required field.
pub fn skill(key: &str, provider_key: &str) -> Value {
    json!({
        "key": key, "providerKey": provider_key, "label": format!("{key} label"),
        "description": format!("{key} description"), "direction": "machine-consumes",
        "scope": "ecosystem", "source": "partner", "listedBy": "tests", "kind": "reference",
        "serviceTypes": ["device.control"], "operations": ["run"], "authType": "none",
        "accessMode": "public", "distribution": "openapi", "maturity": "production",
        "executionMode": "native", "integrationStatus": "native", "requiresHumanEnablement": false,
    })
}

/// The manifest of `skill(key, provider_key)`.
pub fn manifest(key: &str, provider_key: &str) -> Value {
    json!({
        "key": key, "providerKey": provider_key, "label": format!("{key} label"),
        "summary": format!("{key} summary"),
        "inputs": [{"key": "input", "type": "string", "required": true, "description": "in"}],
        "outputs": [{"key": "output", "type": "string", "description": "out"}],
    })
}

/// A valid native, server-side service of `skill_key`, on loopback.
pub fn service(id: &str, skill_key: &str, provider_key: &str, service_type: &str) -> Value {
    json!({
        "id": id, "skillKey": skill_key, "providerKey": provider_key, "providerId": provider_key,
        "providerLabel": format!("{provider_key} label"), "serviceType": service_type,
        "name": format!("{id} name"), "description": format!("{id} description"),
        "operations": ["run"], "capabilities": [], "authType": "none", "accessMode": "public",
        "executionMode": "native", "integrationStatus": "native", "distribution": "openapi",
        "maturity": "production", "kind": "reference", "region": "global",
        "requiresHumanEnablement": false,
        "endpoints": [{"operation": "run", "url": "http://127.0.0.1:9/run", "method": "POST"}],
    })
}

/// A valid adapter.
pub fn adapter(provider_key: &str) -> Value {
    json!({
        "providerKey": provider_key, "label": format!("{provider_key} adapter"),
        "integrationStatus": "native", "executionMode": "native", "credentialKeys": [],
        "runtimeEndpoint": null, "setupSteps": ["nothing to do"], "docsUrl": null,
    })
}

/// One skill, its manifest, and `services` of it, as one catalogue file.
pub fn skill_file(key: &str, provider_key: &str, services: Vec<Value>) -> Value {
    catalog_file(
        vec![skill(key, provider_key)],
        vec![manifest(key, provider_key)],
        services,
    )
}

/// `value` with `changes` merged in (top-level keys; `null` removes the key).
pub fn merged(mut value: Value, changes: Value) -> Value {
    let object = value.as_object_mut().unwrap();
    for (key, change) in changes.as_object().unwrap() {
        if change.is_null() {
            object.remove(key);
        } else {
            object.insert(key.clone(), change.clone());
        }
    }
    value
}

/// Starts a server with machine and pairing verification off and probes stopped (each can be
/// overridden by `env`), reading `catalog` as `PEAQOS_CATALOG_DIR`. With `PEAQOS_API_KEY` in
/// `env`, `srv.http` sends that key on every request.
pub async fn start_server(
    backend: &Backend,
    catalog: Option<&CatalogDir>,
    env: &[(&str, &str)],
) -> TestServer {
    let mut vars: BTreeMap<String, String> = [
        MACHINE_VERIFICATION_OFF,
        PAIRING_VERIFICATION_OFF,
        NO_PROBES,
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Some(dir) = catalog {
        vars.insert("PEAQOS_CATALOG_DIR".into(), dir.path_str());
    }
    for (k, v) in env {
        vars.insert(k.to_string(), v.to_string());
    }
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut srv = TestServer::start(backend, &pairs).await;
    if let Some(key) = vars.get("PEAQOS_API_KEY") {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-api-key", key.parse().unwrap());
        srv.http = reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .unwrap();
    }
    srv
}

/// A server with an active machine and an active pairing of it.
pub struct Market {
    pub srv: TestServer,
    pub machine_id: String,
    pub pairing_id: String,
    pub token: String,
    /// A client without default headers: no API key.
    pub bare: reqwest::Client,
    _catalog: Option<CatalogDir>,
}

impl Market {
    /// [`start_server`], an active machine, and a pairing of it without a delegation policy.
    pub async fn start(
        backend: &Backend,
        catalog: Option<CatalogDir>,
        env: &[(&str, &str)],
    ) -> Market {
        let srv = start_server(backend, catalog.as_ref(), env).await;
        let machine_id = srv.unverified_active_machine().await;
        let pairing = pair(&srv, &machine_id, None).await;
        Market {
            machine_id,
            pairing_id: pairing["id"].as_str().unwrap().to_string(),
            token: pairing["pairingToken"].as_str().unwrap().to_string(),
            srv,
            bare: reqwest::Client::new(),
            _catalog: catalog,
        }
    }

    /// A request carrying the pairing token (and the API key when one is configured).
    pub fn agent(&self, method: Method, path: &str) -> RequestBuilder {
        self.srv
            .request(method, path)
            .header(TOKEN_HEADER, &self.token)
    }

    /// A request with no API key and no token.
    pub fn anonymous(&self, method: Method, path: &str) -> RequestBuilder {
        self.bare.request(method, self.srv.url(path))
    }

    /// `POST /market/search` with the pairing token.
    pub async fn search(&self, body: &Value) -> Response {
        self.search_as(&self.token, body).await
    }

    pub async fn search_as(&self, token: &str, body: &Value) -> Response {
        self.srv
            .request(Method::POST, SEARCH)
            .header(TOKEN_HEADER, token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// A search that must succeed: the `MarketSearch`.
    pub async fn searched(&self, body: &Value) -> Value {
        expect_json(self.search(body).await, StatusCode::CREATED).await["item"].clone()
    }

    /// Another active machine and a pairing of it: `(machine id, pairing record)`.
    pub async fn other_machine(&self, policy: Option<Value>) -> (String, Value) {
        let machine_id = self.srv.unverified_active_machine().await;
        let pairing = pair(&self.srv, &machine_id, policy).await;
        (machine_id, pairing)
    }

    pub async fn pair(&self, policy: Option<Value>) -> Value {
        pair(&self.srv, &self.machine_id, policy).await
    }

    pub async fn audit(&self, event_type: &str) -> Vec<Value> {
        audit(&self.srv, event_type).await
    }

    pub async fn stop(self) {
        self.srv.stop().await;
    }
}

/// A pairing of `machine_id` (pairing verification off: no proof), with `pairingToken`.
pub async fn pair(srv: &TestServer, machine_id: &str, policy: Option<Value>) -> Value {
    let mut body = json!({"agentAddress": Wallet::random().address(), "agentProvider": "anthropic",
                          "agentRole": "buyer"});
    if let Some(policy) = policy {
        body["delegationPolicy"] = policy;
    }
    let response = srv
        .post_json(
            &format!("/api/v1/machines/{machine_id}/agent-pairings"),
            &body,
        )
        .await;
    expect_json(response, StatusCode::CREATED).await["item"].clone()
}

/// Enrols a machine agent for `provider_keys`: its record with `agentToken`.
pub async fn enroll(srv: &TestServer, machine_id: &str, provider_keys: &[&str]) -> Value {
    let response = srv
        .post_json(
            &format!("/api/v1/machines/{machine_id}/agents/enrollment"),
            &json!({"allowedProviderKeys": provider_keys}),
        )
        .await;
    expect_json(response, StatusCode::CREATED).await["item"].clone()
}

/// A heartbeat of `agent` leasing one endpoint of `provider_key` at `base_url` for
/// `lease_seconds`; the heartbeat's answer.
pub async fn heartbeat(
    srv: &TestServer,
    machine_id: &str,
    agent: &Value,
    provider_key: &str,
    base_url: &str,
    lease_seconds: i64,
) -> Value {
    let body = json!({
        "machineId": machine_id, "agentId": agent["id"], "agentToken": agent["agentToken"],
        "leaseSeconds": lease_seconds,
        "endpoints": [{"providerKey": provider_key, "endpointBaseUrl": base_url}],
    });
    let response = srv
        .post_json("/api/v1/machine-agents/heartbeat", &body)
        .await;
    expect_json(response, StatusCode::OK).await
}

/// Every audit event of `event_type`, all pages.
pub async fn audit(srv: &TestServer, event_type: &str) -> Vec<Value> {
    all_items(srv, &format!("/api/v1/audit-events?type={event_type}")).await
}

/// Every item of a list endpoint, following `nextCursor`.
pub async fn all_items(srv: &TestServer, path: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let separator = if path.contains('?') { '&' } else { '?' };
    let mut next = format!("{path}{separator}limit=500");
    loop {
        let page = expect_json(srv.get(&next).await, StatusCode::OK).await;
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page.get("nextCursor").and_then(Value::as_str) {
            Some(cursor) => next = format!("{path}{separator}limit=500&cursor={cursor}"),
            None => return items,
        }
    }
}

/// The `field` of every item, in order.
pub fn field_of<'a>(items: &'a [Value], field: &str) -> Vec<&'a str> {
    items
        .iter()
        .map(|item| item[field].as_str().unwrap())
        .collect()
}

/// Epoch ms of an RFC 3339 field.
pub fn ms(value: &Value) -> i64 {
    peaqos_orchestrator::clock::parse_rfc3339_ms(value.as_str().unwrap())
        .unwrap_or_else(|| panic!("not a timestamp: {value}"))
}
