//! Bare axum: `GET /health` -> `{"ok":true}` (application/json), like the orchestrator's
//! liveness route but with no middleware. Listens on the address in argv[1].

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

static JSON: HeaderValue = HeaderValue::from_static("application/json; charset=utf-8");

async fn health() -> impl IntoResponse {
    let body = serde_json::to_vec(&serde_json::json!({ "ok": true })).expect("serialises");
    (StatusCode::OK, [(header::CONTENT_TYPE, JSON.clone())], body)
}

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18081".to_string());
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    let app = Router::new().route("/health", get(health));
    axum::serve(listener, app).await.expect("serve");
}
