//! A fake provider and OpenAI-compatible runtime on loopback that records every request it gets.
//!
//! | Path | Answer |
//! |---|---|
//! | `POST /v1/chat/completions` | an OpenAI `chat.completion` echoing the model |
//! | `GET /v1/models`, `GET /health` | 200 |
//! | `/json/...` | 200 `{"ok": true, "method", "path", "query", "body"}` |
//! | `/text` | 200 `text/plain` "plain answer" |
//! | `/status/{code}` | that status with a JSON error body |
//! | `/slow` | 200 after 60 s |
//! | `/delay/{ms}` | 200 `{"delayed": ms}` after that many milliseconds |
//! | `/big` | 200 with an 11 MiB body (with a `content-length`) |
//! | `/big-chunked` | 200 with an 11 MiB body streamed in chunks (no `content-length`) |
//! | `/redirect` | 302 to `/json/target` |
//! | anything else | 404 |
//!
//! [`ConnectionCounter`] is a bare loopback listener that only counts the connections it accepts,
//! for tests that prove no connection was made.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }
}

#[derive(Default)]
struct Shared {
    seen: Mutex<Vec<Seen>>,
}

pub struct FakeProvider {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    pub port: u16,
    shared: Arc<Shared>,
}

async fn answer(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    shared.seen.lock().unwrap().push(Seen {
        method: method.to_string(),
        path: path.clone(),
        query: uri.query().map(str::to_string),
        headers,
        body: body.clone(),
    });
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    match path.as_str() {
        "/v1/chat/completions" => axum::Json(json!({
            "id": "chatcmpl-1", "object": "chat.completion",
            "model": request.get("model").cloned().unwrap_or(Value::Null),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello from the fake runtime"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
        }))
        .into_response(),
        "/v1/models" | "/health" => axum::Json(json!({"data": []})).into_response(),
        "/text" => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain")],
            "plain answer",
        )
            .into_response(),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            axum::Json(json!({"late": true})).into_response()
        }
        p if p.starts_with("/delay/") => {
            let ms: u64 = p.trim_start_matches("/delay/").parse().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            axum::Json(json!({"delayed": ms})).into_response()
        }
        "/big" => (StatusCode::OK, vec![b'a'; 11 * 1024 * 1024]).into_response(),
        "/big-chunked" => {
            let chunks = (0..11).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'a'; 1 << 20])));
            Response::new(Body::from_stream(tokio_stream::iter(chunks)))
        }
        "/redirect" => (StatusCode::FOUND, [(header::LOCATION, "/json/target")]).into_response(),
        p if p.starts_with("/json") => axum::Json(json!({
            "ok": true, "method": method.as_str(), "path": p, "query": uri.query(), "body": request,
        }))
        .into_response(),
        p if p.starts_with("/status/") => {
            let code: u16 = p.trim_start_matches("/status/").parse().unwrap_or(500);
            (
                StatusCode::from_u16(code).unwrap(),
                axum::Json(json!({"error": "fake failure", "echo": "provider text"})),
            )
                .into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

impl FakeProvider {
    pub async fn start() -> FakeProvider {
        let shared = Arc::new(Shared::default());
        let router = axum::Router::new()
            .fallback(answer)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        FakeProvider {
            url: format!("http://127.0.0.1:{port}"),
            port,
            shared,
        }
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// Requests to `path`.
    pub fn seen_at(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == path).collect()
    }

    pub fn count(&self) -> usize {
        self.shared.seen.lock().unwrap().len()
    }
}

/// A loopback listener that counts accepted connections. Whoever connects gets a `200 {}` and
/// the connection is closed.
pub struct ConnectionCounter {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    pub port: u16,
    accepted: Arc<AtomicUsize>,
}

impl ConnectionCounter {
    pub async fn start() -> ConnectionCounter {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = stream.read(&mut buf).await;
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                              content-length: 2\r\nconnection: close\r\n\r\n{}",
                        )
                        .await;
                });
            }
        });
        ConnectionCounter {
            url: format!("http://127.0.0.1:{port}"),
            port,
            accepted,
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}
