//! Operator-facing surfaces: Prometheus metrics.

mod common;

use common::{Backend, TestServer, expect_error};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// Checks the text exposition format line by line and returns the sample lines.
fn samples(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix('#') {
            assert!(
                comment.starts_with(" HELP ") || comment.starts_with(" TYPE "),
                "{line}"
            );
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "{line}"
        );
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "{line}");
        }
        out.push(line.to_string());
    }
    out
}

#[tokio::test]
async fn metrics_expose_requests_pool_mcr_heartbeats_and_background_runs() {
    let srv = TestServer::start(
        &Backend::Sqlite,
        &[("PEAQOS_MACHINE_IDENTITY_VERIFICATION", "disabled")],
    )
    .await;
    srv.get("/health").await;
    srv.get("/api/v1/machines/mach_someid").await;
    srv.post_json("/api/v1/machine-agents/heartbeat", &json!({}))
        .await;
    srv.get("/no/such/route").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let response = srv.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    let lines = samples(&text);
    let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
    assert!(
        has(r#"http_requests_total{method="GET",route="/health",status="200"}"#),
        "{text}"
    );
    assert!(
        has(r#"route="/api/v1/machines/{machine_id}",status="404""#),
        "route templates, not raw paths"
    );
    assert!(!text.contains("mach_someid"), "raw ids never become labels");
    assert!(has(r#"route="unmatched""#));
    assert!(has("http_request_duration_seconds_bucket"));
    assert!(
        has(r#"heartbeats_total{result="rejected",code="VALIDATION_ERROR"}"#),
        "{text}"
    );
    for series in [
        "db_pool_connections{state=\"idle\"}",
        "db_pool_max_connections",
        "mcr_cache_hits_total",
        "mcr_cache_misses_total",
        "background_runs_total{job=\"lease-sweep\"}",
        "background_leader",
    ] {
        assert!(has(series), "{series} missing");
    }
    srv.stop().await;
}

#[tokio::test]
async fn metrics_need_the_api_key_on_the_main_port_or_move_to_their_own_listener() {
    let srv = TestServer::start(
        &Backend::Sqlite,
        &[("PEAQOS_REQUIRE_API_AUTH", "true"), ("PEAQOS_API_KEY", "k")],
    )
    .await;
    expect_error(
        srv.get("/metrics").await,
        StatusCode::UNAUTHORIZED,
        "AUTH_REQUIRED",
    )
    .await;
    let keyed = srv
        .request(Method::GET, "/metrics")
        .header("x-api-key", "k")
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), StatusCode::OK);
    srv.stop().await;

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let srv = TestServer::start(&Backend::Sqlite, &[("PEAQOS_METRICS_ADDR", &addr)]).await;
    expect_error(
        srv.get("/metrics").await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
    let separate = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(separate.status(), StatusCode::OK);
    assert!(
        separate
            .text()
            .await
            .unwrap()
            .contains("db_pool_connections")
    );
    srv.stop().await;
}

#[tokio::test]
async fn the_served_openapi_document_is_the_committed_one() {
    let srv = TestServer::start(
        &Backend::Sqlite,
        &[("PEAQOS_REQUIRE_API_AUTH", "true"), ("PEAQOS_API_KEY", "k")],
    )
    .await;
    let response = srv.get("/api/v1/openapi.json").await;
    assert_eq!(response.status(), StatusCode::OK, "open, like health");
    let served: serde_json::Value = response.json().await.unwrap();
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        served, committed,
        "openapi.json is stale: run `cargo run -- openapi > openapi.json`"
    );
    assert_eq!(served["openapi"], "3.1.0");
    // Every documented operation is answered by the server (no 404/405 from the router).
    let mut operations = 0;
    for (path, item) in served["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            operations += 1;
            let concrete = path
                .replace("{machineId}", "mach_x")
                .replace("{pairingId}", "apr_x")
                .replace("{agentId}", "mag_x")
                .replace("{providerKey}", "qvac");
            let response = srv
                .request(
                    Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                    &concrete,
                )
                .header("x-api-key", "k")
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            let status = response.status();
            let body = response.text().await.unwrap();
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(
                !body.contains("No route matches"),
                "{method} {path}: {body}"
            );
        }
    }
    assert_eq!(operations, 72, "every operation of the document");
    srv.stop().await;
}

/// The recorder keeps every histogram sample until an upkeep folds it into its buckets; a server
/// nobody scrapes must still run upkeeps, or it grows without bound (16 bytes a request).
#[tokio::test]
async fn histogram_samples_are_folded_even_when_nobody_scrapes() {
    let srv = TestServer::start(&common::backends()[0], &[]).await;
    assert_eq!(srv.get("/health").await.status(), StatusCode::OK);
    let before = peaqos_orchestrator::metrics::upkeeps();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while peaqos_orchestrator::metrics::upkeeps() <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "an upkeep runs every second"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    srv.stop().await;
}
