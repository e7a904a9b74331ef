//! Request ids, request logging and request metrics. An incoming `x-request-id` is echoed when it
//! is a conservative token (letters, digits and `-_.:`, at most 128 characters); otherwise one is
//! generated. Every log line of the request carries it (through the span).

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

pub const HEADER: &str = "x-request-id";

fn acceptable(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

pub async fn middleware(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| acceptable(id))
        .map(str::to_owned)
        .unwrap_or_else(|| crate::store::new_id("req_"));
    let header = HeaderValue::from_str(&id).expect("request ids are visible ASCII");
    req.headers_mut().insert(HEADER, header.clone());

    // The path only: query strings are not logged, and headers and bodies never are.
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path(),
    );
    // The route template, never the raw path (which carries ids).
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let started = Instant::now();
    let mut response = next.run(req).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            // Microseconds as milliseconds: three decimals, no float noise.
            latency_ms = started.elapsed().as_micros() as f64 / 1000.0,
            "request completed"
        );
    });
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    crate::metrics::record_request(&method, route, response.status(), started.elapsed());
    response.headers_mut().insert(HEADER, header);
    response
}

#[cfg(test)]
mod tests {
    use super::acceptable;

    #[test]
    fn only_conservative_ids_are_echoed() {
        for id in ["abc", "req_01J9", "a-b_c.d:e", &"x".repeat(128)] {
            assert!(acceptable(id), "{id}");
        }
        for id in [
            "",
            "abc%0d%0aSet-Cookie:%20x=1",
            "a b",
            "a/b",
            "<script>",
            &"x".repeat(129),
        ] {
            assert!(!acceptable(id), "{id}");
        }
    }
}
