//! A fake machine runtime endpoint on loopback whose health answer a test can change.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;

#[derive(Default)]
struct Shared {
    /// 0 = never answer; anything else is the status to answer.
    status: AtomicU16,
    requests: AtomicUsize,
    authorization: Mutex<Vec<String>>,
}

pub struct FakeRuntime {
    pub url: String,
    shared: Arc<Shared>,
}

async fn answer(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> StatusCode {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    for name in ["authorization", "x-api-key"] {
        if let Some(value) = headers.get(name) {
            shared
                .authorization
                .lock()
                .unwrap()
                .push(format!("{name}: {}", value.to_str().unwrap()));
        }
    }
    match shared.status.load(Ordering::SeqCst) {
        0 => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK
        }
        code => StatusCode::from_u16(code).unwrap(),
    }
}

impl FakeRuntime {
    pub async fn start(status: u16) -> FakeRuntime {
        let shared = Arc::new(Shared::default());
        shared.status.store(status, Ordering::SeqCst);
        let router = axum::Router::new()
            .route("/health", get(answer))
            .route("/v1/models", get(answer))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        FakeRuntime { url, shared }
    }

    pub fn set_status(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    pub fn auth_headers(&self) -> Vec<String> {
        self.shared.authorization.lock().unwrap().clone()
    }
}

/// A loopback URL where nothing listens.
pub fn dead_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}")
}
