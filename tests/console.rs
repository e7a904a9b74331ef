//! The operator console's HTTP side (`src/console`): served with its security headers inside the
//! API's conventions, kept out of the OpenAPI document, and off when PEAQOS_CONSOLE_ENABLED=false.
//! The console itself is driven in a real browser by `tests/console/run.sh`.

mod common;

use common::{Backend, TestServer, expect_error, json_of};
use reqwest::StatusCode;

#[tokio::test]
async fn serves_the_embedded_console_with_its_security_headers() {
    let server = TestServer::start(
        &Backend::Sqlite,
        &[("PEAQOS_REQUIRE_API_AUTH", "true"), ("PEAQOS_API_KEY", "k")],
    )
    .await;
    // No key needed for the page itself: the browser sends the key to /api/v1.
    let index = server.get("/console").await;
    assert_eq!(index.status(), StatusCode::OK);
    let headers = index.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(
        headers["content-security-policy"],
        peaqos_orchestrator::console::CONTENT_SECURITY_POLICY
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(headers.contains_key("x-request-id"));
    assert!(index.text().await.unwrap().contains("/console/app.js"));
    assert_eq!(server.get("/console/").await.status(), StatusCode::OK);

    let script = server.get("/console/views/graph.js").await;
    assert_eq!(script.status(), StatusCode::OK);
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let etag = script.headers()["etag"].clone();
    let again = server
        .request(reqwest::Method::GET, "/console/views/graph.js")
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);

    let missing = server.get("/console/no-such-file.js").await;
    assert!(missing.headers().contains_key("content-security-policy"));
    expect_error(missing, StatusCode::NOT_FOUND, "NOT_FOUND").await;

    // The API stays behind its key, and the console is not part of its document.
    let api = server.get("/api/v1/machines").await;
    expect_error(api, StatusCode::UNAUTHORIZED, "AUTH_REQUIRED").await;
    let openapi = json_of(server.get("/api/v1/openapi.json").await).await;
    let paths = openapi["paths"].as_object().unwrap();
    assert!(paths.keys().all(|p| !p.contains("console")), "{paths:?}");
    server.stop().await;
}

#[tokio::test]
async fn can_be_turned_off() {
    let server = TestServer::start(&Backend::Sqlite, &[("PEAQOS_CONSOLE_ENABLED", "false")]).await;
    for path in ["/console", "/console/", "/console/app.js"] {
        expect_error(server.get(path).await, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    }
    assert_eq!(server.get("/health").await.status(), StatusCode::OK);
    server.stop().await;
}
