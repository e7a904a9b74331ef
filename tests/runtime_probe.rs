//! The runtime-endpoint prober (spec agents-and-runtime.md §6) and the guarded outbound client
//! (§3) against fake endpoints on loopback. Self-contained: no server, no database.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use peaqos_orchestrator::clients::outbound::{
    GuardedResolver, Outbound, ResolveError, ScopePolicy,
};
use peaqos_orchestrator::clients::runtime::{
    AuthType, ProbeOutcome, ProbeTarget, probe, probe_with_timeout,
};
use peaqos_orchestrator::config::NetworkScope;
use reqwest::dns::{Name, Resolve};
use tokio::net::TcpListener;

const ALL_SCOPES: [NetworkScope; 4] = [
    NetworkScope::Public,
    NetworkScope::Vpn,
    NetworkScope::Lan,
    NetworkScope::Loopback,
];

/// The outbound clients of a server that allows every scope.
fn outbound_client() -> Outbound {
    outbound(&ALL_SCOPES)
}

fn outbound(allowed: &[NetworkScope]) -> Outbound {
    Outbound::new(allowed).unwrap()
}

const SHORT: Duration = Duration::from_millis(300);

/// One request as the fake saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    authorization: Option<String>,
    api_key: Option<String>,
}

/// A fake runtime endpoint that records every request:
/// `/health` 200, `/down` 503, `/redirect` 302 → `/target`, `/target` 200, `/slow` 200 after 10 s.
struct Fake {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    async fn start() -> Fake {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let recorder = seen.clone();
        let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let recorder = recorder.clone();
            async move {
                let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
                recorder.lock().unwrap().push(Seen {
                    path: uri.path().to_owned(),
                    authorization: header("authorization"),
                    api_key: header("x-api-key"),
                });
                respond(uri.path()).await
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Fake { addr, seen }
    }

    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.addr.port())
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn paths(&self) -> Vec<String> {
        self.seen().into_iter().map(|s| s.path).collect()
    }
}

async fn respond(path: &str) -> Response {
    match path {
        "/health" | "/target" | "/v1/models" => (StatusCode::OK, "ok").into_response(),
        "/down" => (StatusCode::SERVICE_UNAVAILABLE, "down").into_response(),
        "/redirect" => (StatusCode::FOUND, [(header::LOCATION, "/target")]).into_response(),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            (StatusCode::OK, "late").into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

fn target<'a>(base_url: &'a str, probe_path: &'a str) -> ProbeTarget<'a> {
    ProbeTarget {
        base_url,
        probe_path,
        auth_type: AuthType::None,
        auth_token: None,
        network_scope: NetworkScope::Loopback,
    }
}

fn unreachable_text(outcome: &ProbeOutcome) -> &str {
    match outcome {
        ProbeOutcome::Unreachable(text) => text,
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

#[tokio::test]
async fn a_2xx_is_healthy() {
    let fake = Fake::start().await;
    let base = fake.base_url();
    let outcome = probe(&outbound_client(), &target(&base, "/health")).await;
    assert_eq!(outcome, ProbeOutcome::Healthy);
    assert_eq!(fake.paths(), ["/health"]);
}

#[tokio::test]
async fn a_host_name_goes_through_the_guarded_resolver_and_keeps_its_port() {
    let fake = Fake::start().await;
    let base = format!("http://localhost:{}", fake.addr.port());
    let outcome = probe(&outbound_client(), &target(&base, "/health")).await;
    assert_eq!(outcome, ProbeOutcome::Healthy);
    assert_eq!(fake.paths(), ["/health"]);
}

#[tokio::test]
async fn another_status_is_degraded() {
    let fake = Fake::start().await;
    let base = fake.base_url();
    let http = outbound_client();
    let outcome = probe(&http, &target(&base, "/down")).await;
    assert_eq!(outcome, ProbeOutcome::Degraded("HTTP 503".into()));
    let outcome = probe(&http, &target(&base, "/missing")).await;
    assert_eq!(outcome, ProbeOutcome::Degraded("HTTP 404".into()));
}

#[tokio::test]
async fn a_redirect_is_degraded_and_never_followed() {
    let fake = Fake::start().await;
    let base = fake.base_url();
    let outcome = probe(&outbound_client(), &target(&base, "/redirect")).await;
    assert_eq!(outcome, ProbeOutcome::Degraded("HTTP 302".into()));
    // Give a (wrongly) followed redirect the time to land before looking.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        fake.paths(),
        ["/redirect"],
        "the redirect target was requested"
    );
}

#[tokio::test]
async fn a_slow_endpoint_times_out() {
    let fake = Fake::start().await;
    let base = fake.base_url();
    let started = Instant::now();
    let outcome = probe_with_timeout(&outbound_client(), &target(&base, "/slow"), SHORT).await;
    assert_eq!(outcome, ProbeOutcome::Unreachable("timeout".into()));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(fake.paths(), ["/slow"]);
}

#[tokio::test]
async fn an_endpoint_that_never_answers_times_out() {
    // Accepts connections and holds them open without ever writing a byte.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let holder = held.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            holder.lock().unwrap().push(socket);
        }
    });
    let base = format!("http://127.0.0.1:{}", addr.port());
    let started = Instant::now();
    let outcome = probe_with_timeout(&outbound_client(), &target(&base, "/health"), SHORT).await;
    assert_eq!(outcome, ProbeOutcome::Unreachable("timeout".into()));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(held.lock().unwrap().len(), 1, "the probe never connected");
}

#[tokio::test]
async fn a_closed_port_is_connection_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let base = format!("http://127.0.0.1:{port}");
    let outcome = probe(&outbound_client(), &target(&base, "/health")).await;
    assert_eq!(
        outcome,
        ProbeOutcome::Unreachable("connection refused".into())
    );
}

#[tokio::test]
async fn bearer_endpoints_get_an_authorization_header() {
    let fake = Fake::start().await;
    let base = fake.base_url();
    let token = "tok-bearer-s3cret-value";
    let probe_target = ProbeTarget {
        auth_type: AuthType::Bearer,
        auth_token: Some(token),
        ..target(&base, "/health")
    };
    let outcome = probe(&outbound_client(), &probe_target).await;
    assert_eq!(outcome, ProbeOutcome::Healthy);
    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(format!("Bearer {token}").as_str())
    );
    assert_eq!(seen[0].api_key, None);
}

#[tokio::test]
async fn api_key_endpoints_get_an_x_api_key_header() {
    let fake = Fake::start().await;
    let base = fake.base_url();
    let token = "tok-apikey-s3cret-value";
    let probe_target = ProbeTarget {
        auth_type: AuthType::ApiKey,
        auth_token: Some(token),
        ..target(&base, "/v1/models")
    };
    let outcome = probe(&outbound_client(), &probe_target).await;
    assert_eq!(outcome, ProbeOutcome::Healthy);
    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/models");
    assert_eq!(seen[0].api_key.as_deref(), Some(token));
    assert_eq!(seen[0].authorization, None);
}

#[tokio::test]
async fn auth_type_none_sends_no_credentials() {
    let fake = Fake::start().await;
    let base = fake.base_url();
    let probe_target = ProbeTarget {
        auth_type: AuthType::None,
        auth_token: Some("left-over-token"),
        ..target(&base, "/health")
    };
    let outcome = probe(&outbound_client(), &probe_target).await;
    assert_eq!(outcome, ProbeOutcome::Healthy);
    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].authorization, None);
    assert_eq!(seen[0].api_key, None);
}

#[tokio::test]
async fn the_token_never_appears_in_an_outcome() {
    let fake = Fake::start().await;
    let base = fake.base_url();
    let refused = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        format!("http://127.0.0.1:{port}")
    };
    let http = outbound_client();
    let token = "tok-never-leak-0123456789";
    for auth_type in [AuthType::Bearer, AuthType::ApiKey] {
        for (base, path) in [
            (base.as_str(), "/down"),
            (base.as_str(), "/slow"),
            (refused.as_str(), "/health"),
            ("http://169.254.169.254", "/latest"),
            ("http://metadata.google.internal", "/"),
        ] {
            let probe_target = ProbeTarget {
                auth_type,
                auth_token: Some(token),
                ..target(base, path)
            };
            let outcome = probe_with_timeout(&http, &probe_target, SHORT).await;
            assert_ne!(outcome, ProbeOutcome::Healthy, "{base}{path}");
            assert!(
                !format!("{outcome:?}").contains(token),
                "{base}{path}: {outcome:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_scope_not_allowed_is_unreachable_without_a_request() {
    let fake = Fake::start().await;
    let base = fake.base_url();
    let outcome = probe(
        &outbound(&[NetworkScope::Public, NetworkScope::Vpn, NetworkScope::Lan]),
        &target(&base, "/health"),
    )
    .await;
    assert_eq!(
        outcome,
        ProbeOutcome::Unreachable("network scope not allowed".into())
    );
    let outcome = probe(&outbound(&[]), &target(&base, "/health")).await;
    assert_eq!(unreachable_text(&outcome), "network scope not allowed");
    assert!(
        fake.paths().is_empty(),
        "a request was sent: {:?}",
        fake.paths()
    );

    // The same endpoint is probed once its scope is allowed.
    let outcome = probe(
        &outbound(&[NetworkScope::Loopback]),
        &target(&base, "/health"),
    )
    .await;
    assert_eq!(outcome, ProbeOutcome::Healthy);
    assert_eq!(fake.paths(), ["/health"]);
}

/// A listener that counts the connections it accepts (and answers none).
async fn counting_listener() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(socket);
        }
    });
    (port, accepted)
}

#[tokio::test]
async fn a_declared_scope_never_reaches_an_address_of_another_scope() {
    let (port, accepted) = counting_listener().await;
    // Loopback not allowed; endpoints declared public or lan that are really on loopback, by a
    // literal address or by a name resolving to it.
    let allowed = outbound(&[NetworkScope::Public, NetworkScope::Vpn, NetworkScope::Lan]);
    for base in [
        format!("http://127.0.0.1:{port}"),
        format!("http://[::1]:{port}"),
        format!("http://localhost:{port}"),
    ] {
        for declared in [NetworkScope::Public, NetworkScope::Lan, NetworkScope::Vpn] {
            let mut probe_target = target(&base, "/health");
            probe_target.network_scope = declared;
            let outcome = probe(&allowed, &probe_target).await;
            assert_eq!(
                unreachable_text(&outcome),
                "network scope not allowed",
                "{base} declared {declared:?}"
            );
        }
    }
    // Even with loopback allowed, a declared public endpoint is not connected to on loopback:
    // the declared scope narrows, it never widens.
    for base in [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
    ] {
        let mut probe_target = target(&base, "/health");
        probe_target.network_scope = NetworkScope::Public;
        let outcome = probe(&outbound_client(), &probe_target).await;
        assert_eq!(
            unreachable_text(&outcome),
            "network scope not allowed",
            "{base}"
        );
    }
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a refused endpoint was connected to"
    );
    // The listener does accept connections: declared loopback reaches it.
    let outcome = probe(
        &outbound_client(),
        &target(&format!("http://localhost:{port}"), "/health"),
    )
    .await;
    assert!(matches!(outcome, ProbeOutcome::Unreachable(_)));
    assert!(accepted.load(std::sync::atomic::Ordering::SeqCst) >= 1);
}

#[tokio::test]
async fn a_provider_call_checks_the_address_it_resolves_to() {
    let (port, accepted) = counting_listener().await;
    let outbound = outbound(&[NetworkScope::Public]);
    let url: reqwest::Url = format!("http://localhost:{port}/x").parse().unwrap();
    let err = outbound
        .providers()
        .request(reqwest::Method::GET, url)
        .unwrap()
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .expect_err("loopback is not an allowed scope");
    assert!(
        ResolveError::of(&err).is_some_and(ResolveError::is_scope_refusal),
        "{err:?}"
    );
    let literal: reqwest::Url = format!("http://127.0.0.1:{port}/x").parse().unwrap();
    let refusal = outbound
        .providers()
        .request(reqwest::Method::GET, literal)
        .expect_err("refused before sending");
    assert!(refusal.is_scope_refusal());
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn blocked_literal_hosts_are_never_called() {
    let http = outbound_client();
    for base in [
        "http://169.254.169.254",
        "http://[fe80::1]:8080",
        "http://0.0.0.0:8080",
        "http://[::ffff:a9fe:a9fe]",
        "http://100.100.100.200",
        "http://metadata.google.internal",
        "http://METADATA.google.internal.",
    ] {
        let mut probe_target = target(base, "/health");
        probe_target.network_scope = NetworkScope::Public;
        let started = Instant::now();
        let outcome = probe(&http, &probe_target).await;
        assert_eq!(
            outcome,
            ProbeOutcome::Unreachable("blocked address".into()),
            "{base}"
        );
        // Refused up front, not after a connection attempt timed out.
        assert!(started.elapsed() < Duration::from_secs(1), "{base}");
    }
}

#[tokio::test]
async fn the_guarded_resolver_resolves_ordinary_names() {
    let name: Name = "localhost".parse().unwrap();
    let addrs: Vec<SocketAddr> = GuardedResolver::new(ScopePolicy::trusted())
        .resolve(name)
        .await
        .unwrap()
        .collect();
    assert!(!addrs.is_empty());
    assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
}

#[tokio::test]
async fn the_guarded_resolver_refuses_blocked_names() {
    for host in ["metadata.google.internal", "Metadata.Google.Internal."] {
        let name: Name = host.parse().unwrap();
        let err = match GuardedResolver::new(ScopePolicy::trusted())
            .resolve(name)
            .await
        {
            Ok(addrs) => panic!("{host} resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(err) => err,
        };
        let refusal = err
            .downcast_ref::<ResolveError>()
            .unwrap_or_else(|| panic!("{host}: unexpected error {err}"));
        assert!(refusal.is_blocked(), "{host}: {refusal}");
    }
}

#[tokio::test]
async fn an_endpoint_that_hangs_up_is_unreachable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
    let base = format!("http://127.0.0.1:{}", addr.port());
    let outcome = probe(&outbound_client(), &target(&base, "/health")).await;
    assert!(!unreachable_text(&outcome).is_empty());
}

#[tokio::test]
async fn an_unknown_name_is_a_dns_failure() {
    // `.invalid` never resolves (RFC 6761).
    let mut probe_target = target("http://no-such-host.invalid", "/health");
    probe_target.network_scope = NetworkScope::Public;
    let outcome = probe(&outbound_client(), &probe_target).await;
    assert_eq!(
        outcome,
        ProbeOutcome::Unreachable("DNS lookup failed".into())
    );
}
