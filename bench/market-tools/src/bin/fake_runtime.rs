//! A fast fake machine runtime (QVAC's OpenAI-compatible server) for the task-execute bench:
//! `POST /v1/chat/completions` answers one fixed chat completion, `GET /v1/models` the model
//! list (the runtime probe's path), `GET /stats` how many completions it served. Multi-thread
//! tokio like the server; listens on the address in argv[1].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};

static JSON: HeaderValue = HeaderValue::from_static("application/json");

/// What a small OpenAI-compatible model answers to a one-line prompt (about 300 bytes).
const COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1764547200,"model":"bench-llm","choices":[{"index":0,"message":{"role":"assistant","content":"The last maintenance log reports a routine inspection with no faults found."},"finish_reason":"stop"}],"usage":{"prompt_tokens":18,"completion_tokens":14,"total_tokens":32}}"#;
const MODELS: &str = r#"{"object":"list","data":[{"id":"bench-llm","object":"model","owned_by":"bench"}]}"#;

async fn completion(State(count): State<Arc<AtomicU64>>, body: bytes::Bytes) -> impl IntoResponse {
    count.fetch_add(1, Ordering::Relaxed);
    // The request must be JSON with messages, as the engine builds it (orders §6.2).
    let ok = serde_json::from_slice::<serde_json::Value>(&body)
        .is_ok_and(|v| v.get("messages").is_some_and(|m| m.is_array()));
    if !ok {
        return (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, JSON.clone())], "{}");
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, JSON.clone())], COMPLETION)
}

async fn models() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, JSON.clone())], MODELS)
}

async fn stats(State(count): State<Arc<AtomicU64>>) -> impl IntoResponse {
    let body = format!("{{\"completions\":{}}}", count.load(Ordering::Relaxed));
    ([(header::CONTENT_TYPE, JSON.clone())], body)
}

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18083".to_string());
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    let count = Arc::new(AtomicU64::new(0));
    let app = Router::new()
        .route("/v1/chat/completions", post(completion))
        .route("/v1/models", get(models))
        .route("/stats", get(stats))
        .with_state(count);
    axum::serve(listener, app).await.expect("serve");
}
