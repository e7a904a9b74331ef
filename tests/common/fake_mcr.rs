//! A fake peaqOS MCR API on loopback serving `GET /machine/{did}` in the shape of spec
//! identity-and-machines.md §2. What each DID answers can be changed while it runs; unknown DIDs
//! answer `404`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use peaqos_orchestrator::identity::refs::IdentityRef;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How the fake answers one DID.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// `200` with this whole JSON body.
    Machine(Value),
    /// This status with a small JSON error body.
    Status(u16),
    /// Waits, then answers as the inner behaviour.
    Slow(Duration, Box<Behaviour>),
    /// `200`, `content-type: application/json`, a body that is not JSON.
    Malformed,
    /// `200`, `content-type: application/json`, this exact body text (for numbers a `Value`
    /// cannot hold).
    Raw(String),
}

#[derive(Default)]
struct Shared {
    behaviours: Mutex<HashMap<String, Behaviour>>,
    requests: Mutex<HashMap<String, usize>>,
    accept: Mutex<Option<String>>,
}

pub struct FakeMcr {
    /// Base URL, the value of `PEAQOS_MCR_API_URL`.
    pub url: String,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Drop for FakeMcr {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Hex DIDs are keyed in canonical (lower-case) form, as the orchestrator requests them.
fn key(did: &str) -> String {
    IdentityRef::parse(did).map_or_else(|| did.to_string(), |r| r.to_string())
}

impl FakeMcr {
    pub async fn start() -> FakeMcr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared::default());
        let router = Router::new()
            .route("/machine/{did}", get(machine))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        FakeMcr {
            url,
            shared,
            server,
        }
    }

    pub fn set(&self, did: &str, behaviour: Behaviour) {
        self.shared
            .behaviours
            .lock()
            .unwrap()
            .insert(key(did), behaviour);
    }

    /// Back to `404`.
    pub fn remove(&self, did: &str) {
        self.shared.behaviours.lock().unwrap().remove(&key(did));
    }

    /// A registered machine whose operator is `controller`; `did` goes into the body as given.
    pub fn register(&self, did: &str, machine_id: u64, controller: &str, bonded: bool) {
        self.set(
            did,
            Behaviour::Machine(machine_body(did, machine_id, controller, bonded)),
        );
    }

    /// How many look-ups the fake has received for `did` (counted on arrival).
    pub fn requests(&self, did: &str) -> usize {
        let requests = self.shared.requests.lock().unwrap();
        requests.get(&key(did)).copied().unwrap_or(0)
    }

    /// The `accept` header of the latest look-up.
    pub fn last_accept(&self) -> Option<String> {
        self.shared.accept.lock().unwrap().clone()
    }
}

/// The MCR body of a registered machine.
pub fn machine_body(did: &str, machine_id: u64, controller: &str, bonded: bool) -> Value {
    json!({
        "peaqos": {
            "did": did,
            "machine_id": machine_id,
            "bond_status": if bonded { "bonded" } else { "unbonded" },
            "operator": controller,
        }
    })
}

async fn machine(
    State(shared): State<Arc<Shared>>,
    Path(did): Path<String>,
    headers: HeaderMap,
) -> Response {
    let did = key(&did);
    *shared
        .requests
        .lock()
        .unwrap()
        .entry(did.clone())
        .or_default() += 1;
    *shared.accept.lock().unwrap() = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let behaviour = shared.behaviours.lock().unwrap().get(&did).cloned();
    let Some(mut behaviour) = behaviour else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({ "error": "machine not found" })),
        )
            .into_response();
    };
    while let Behaviour::Slow(delay, inner) = behaviour {
        tokio::time::sleep(delay).await;
        behaviour = *inner;
    }
    match behaviour {
        Behaviour::Machine(body) => axum::Json(body).into_response(),
        Behaviour::Status(code) => (
            StatusCode::from_u16(code).unwrap(),
            axum::Json(json!({ "error": format!("fake status {code}") })),
        )
            .into_response(),
        Behaviour::Raw(text) => {
            ([(header::CONTENT_TYPE, "application/json")], text).into_response()
        }
        Behaviour::Malformed => (
            [(header::CONTENT_TYPE, "application/json")],
            "<html>upstream error</html>",
        )
            .into_response(),
        Behaviour::Slow(..) => unreachable!("unwrapped above"),
    }
}
