//! Defences against an unlucky network and a hostile client: a silent database answers within a
//! bound, control characters are refused the same way on both backends, slow clients are cut
//! off, network scopes are decided by the address connected to, and request ids are sanitised.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::{Backend, TestDb, TestServer, backends, expect_error, expect_json, json_of};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const DISABLED: (&str, &str) = ("PEAQOS_MACHINE_IDENTITY_VERIFICATION", "disabled");

/// A PostgreSQL test database reached through a proxy the test controls.
async fn postgres_behind_proxy() -> Option<(TestDb, Proxy, String)> {
    let Backend::Postgres(admin_url) = backends()
        .into_iter()
        .find(|b| matches!(b, Backend::Postgres(_)))?
    else {
        unreachable!()
    };
    let db = TestDb::create(&Backend::Postgres(admin_url)).await;
    let mut url = reqwest::Url::parse(&db.url).unwrap();
    let target = tokio::net::lookup_host(format!(
        "{}:{}",
        url.host_str().unwrap(),
        url.port().unwrap_or(5432)
    ))
    .await
    .unwrap()
    .next()
    .unwrap();
    let proxy = Proxy::start(target).await;
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(proxy.addr.port())).unwrap();
    Some((db, proxy, url.to_string()))
}

fn machine_body(name: &str) -> Value {
    json!({"displayName": name, "ownerId": "o", "machineType": "t", "runtimeProfile": "r",
           "identityRef": format!("did:peaq:{}", common::rand_u64())})
}

#[tokio::test]
async fn a_silent_postgresql_answers_503_within_the_deadline_and_recovers() {
    let Some((db, proxy, url)) = postgres_behind_proxy().await else {
        eprintln!("TEST_DATABASE_URL unset: the black-hole test needs PostgreSQL");
        return;
    };
    let srv = Arc::new(
        TestServer::start_on(
            db,
            &url,
            &[DISABLED, ("PEAQOS_DATABASE_TIMEOUT_MS", "1000")],
        )
        .await,
    );
    let machine = srv.unverified_active_machine().await;
    // Warm the pool: several connections are open and idle when the path goes silent.
    let warm: Vec<_> = (0..12)
        .map(|_| {
            let srv = srv.clone();
            let path = format!("/api/v1/machines/{machine}");
            tokio::spawn(async move { srv.get(&path).await.status() })
        })
        .collect();
    for task in warm {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }

    proxy.black_hole();
    // More requests than the pool has connections, reads and writes alike.
    let started = Instant::now();
    let calls: Vec<_> = (0..40)
        .map(|i| {
            let srv = srv.clone();
            let machine = machine.clone();
            tokio::spawn(async move {
                let begun = Instant::now();
                let response = match i % 4 {
                    0 => srv.get(&format!("/api/v1/machines/{machine}")).await,
                    1 => srv.get("/api/v1/machines").await,
                    2 => {
                        srv.post_json("/api/v1/machines", &machine_body("silent"))
                            .await
                    }
                    _ => srv.get("/api/v1/audit-events").await,
                };
                (response, begun.elapsed())
            })
        })
        .collect();
    let mut longest = Duration::ZERO;
    for call in calls {
        let (response, took) = call.await.unwrap();
        expect_error(
            response,
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
        )
        .await;
        longest = longest.max(took);
    }
    eprintln!("black hole: 40 requests answered 503, the longest in {longest:?}");
    assert!(
        longest < Duration::from_millis(3500),
        "a request waited {longest:?} on a silent database (deadline 1 s)"
    );
    assert!(started.elapsed() < Duration::from_secs(6));
    let readiness = srv.get("/api/v1/readiness").await;
    assert_eq!(readiness.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(srv.get("/health").await.status(), StatusCode::OK);

    proxy.restore();
    let mut recovered = false;
    for _ in 0..60 {
        if srv
            .get(&format!("/api/v1/machines/{machine}"))
            .await
            .status()
            == StatusCode::OK
            && srv.get("/api/v1/readiness").await.status() == StatusCode::OK
        {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        recovered,
        "the server recovers by itself once the database answers"
    );
    // No write answered 503 was kept.
    let silent: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM machines WHERE display_name = 'silent'")
            .fetch_one(&srv.app.store)
            .await
            .unwrap();
    assert_eq!(silent, 0, "a write answered 503 was committed");
    Arc::into_inner(srv).unwrap().stop().await;
}

#[tokio::test]
async fn a_locked_sqlite_database_answers_503_within_the_deadline() {
    let srv = TestServer::start(
        &Backend::Sqlite,
        &[DISABLED, ("PEAQOS_DATABASE_TIMEOUT_MS", "800")],
    )
    .await;
    let machine = srv.unverified_active_machine().await;
    // Another process holds the write lock and never lets go (until the test does).
    let path = srv.db.url.trim_start_matches("sqlite://").to_string();
    let mut holder =
        <sqlx::AnyConnection as sqlx::Connection>::connect(&format!("sqlite://{path}"))
            .await
            .unwrap();
    sqlx::raw_sql("BEGIN EXCLUSIVE")
        .execute(&mut holder)
        .await
        .unwrap();

    let started = Instant::now();
    expect_error(
        srv.post_json("/api/v1/machines", &machine_body("locked"))
            .await,
        StatusCode::SERVICE_UNAVAILABLE,
        "SERVICE_UNAVAILABLE",
    )
    .await;
    let took = started.elapsed();
    eprintln!("locked SQLite: a write answered 503 in {took:?}");
    assert!(took < Duration::from_millis(2500), "waited {took:?}");
    // Reads go on (WAL).
    expect_json(
        srv.get(&format!("/api/v1/machines/{machine}")).await,
        StatusCode::OK,
    )
    .await;

    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .unwrap();
    drop(holder);
    expect_json(
        srv.post_json("/api/v1/machines", &machine_body("unlocked"))
            .await,
        StatusCode::CREATED,
    )
    .await;
    let locked: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM machines WHERE display_name = 'locked'")
            .fetch_one(&srv.app.store)
            .await
            .unwrap();
    assert_eq!(locked, 0);
    srv.stop().await;
}

/// The number of rows in `table`.
async fn rows(srv: &TestServer, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(&srv.app.store)
        .await
        .unwrap()
}

async fn refused(response: reqwest::Response, field: &str) {
    let error = expect_error(response, StatusCode::BAD_REQUEST, "VALIDATION_ERROR").await;
    assert_eq!(error["details"]["field"], field, "{error}");
    assert_eq!(error["details"]["reason"], "control-character", "{error}");
}

#[tokio::test]
async fn control_characters_are_refused_alike_on_both_backends() {
    for backend in backends() {
        let srv = TestServer::start(&backend, &[DISABLED]).await;
        let machine = srv.unverified_active_machine().await;
        let machines_before = rows(&srv, "machines").await;
        let events_before = rows(&srv, "audit_events").await;

        let mut nul = machine_body("x\u{0}y");
        refused(srv.post_json("/api/v1/machines", &nul).await, "displayName").await;
        nul["displayName"] = json!("ok");
        nul["labels"] = json!({"site": "hall\u{1b}[31m"});
        refused(srv.post_json("/api/v1/machines", &nul).await, "labels.site").await;
        refused(
            srv.patch_json(
                &format!("/api/v1/machines/{machine}"),
                &json!({"displayName": "a\u{0}"}),
            )
            .await,
            "displayName",
        )
        .await;
        refused(
            srv.post_json(
                &format!("/api/v1/machines/{machine}/agents/enrollment"),
                &json!({"label": "edge\u{0}"}),
            )
            .await,
            "label",
        )
        .await;
        refused(
            srv.put_json(
                &format!("/api/v1/machines/{machine}/runtime-endpoints/qvac"),
                &json!({"endpointBaseUrl": "http://127.0.0.1:9", "modelAlias": "m\u{0}"}),
            )
            .await,
            "modelAlias",
        )
        .await;
        refused(
            srv.post_json(
                "/api/v1/machine-agents/heartbeat",
                &json!({"machineId": machine, "agentId": "mag_x", "agentToken": "t",
                        "endpoints": [{"provider_key": "qvac", "endpoint_base_url": "http://127.0.0.1:9",
                                       "label": "a\u{0}b"}]}),
            )
            .await,
            "endpoints[0].label",
        )
        .await;
        refused(srv.get("/api/v1/machines/%00").await, "machineId").await;
        refused(
            srv.get(&format!("/api/v1/machines/{machine}%00")).await,
            "machineId",
        )
        .await;
        refused(
            srv.get(&format!(
                "/api/v1/machines/{machine}/runtime-endpoints/qv%01ac"
            ))
            .await,
            "providerKey",
        )
        .await;
        refused(srv.get("/api/v1/audit-events?type=%00").await, "type").await;
        refused(
            srv.get("/api/v1/audit-events?machineId=a%1Fb").await,
            "machineId",
        )
        .await;

        assert_eq!(
            rows(&srv, "machines").await,
            machines_before,
            "nothing stored"
        );
        assert_eq!(
            rows(&srv, "audit_events").await,
            events_before,
            "nothing audited"
        );

        // Tab, CR and LF are ordinary text.
        let created = expect_json(
            srv.post_json("/api/v1/machines", &machine_body("line one\r\n\tline two"))
                .await,
            StatusCode::CREATED,
        )
        .await;
        assert_eq!(created["item"]["displayName"], "line one\r\n\tline two");
        srv.stop().await;
    }
}

/// Reads until the server closes the connection; how long that took. Panics after `limit`.
async fn closed_within(socket: &mut TcpStream, limit: Duration) -> (Duration, Vec<u8>) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(
            limit.saturating_sub(started.elapsed()),
            socket.read(&mut buf),
        )
        .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => return (started.elapsed(), received),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the connection was still open after {limit:?}"),
        }
    }
}

fn host_port(srv: &TestServer) -> String {
    srv.base.trim_start_matches("http://").to_string()
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    let srv = TestServer::start(
        &Backend::Sqlite,
        &[
            ("PEAQOS_HEADER_READ_TIMEOUT_MS", "1000"),
            ("PEAQOS_KEEP_ALIVE_TIMEOUT_MS", "1500"),
            ("PEAQOS_BODY_READ_TIMEOUT_MS", "1000"),
        ],
    )
    .await;
    let addr = host_port(&srv);
    let limit = Duration::from_secs(8);

    // Sends nothing at all.
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let (took, _) = closed_within(&mut silent, limit).await;
    eprintln!("silent connection closed after {took:?}");
    assert!(took >= Duration::from_millis(900), "{took:?}");

    // Sends its headers a byte at a time, every 200 ms.
    let request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let (mut read_half, mut write_half) = TcpStream::connect(&addr).await.unwrap().into_split();
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        for byte in request {
            if write_half.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut buf = [0u8; 1024];
    let mut answered = Vec::new();
    loop {
        match tokio::time::timeout(limit, read_half.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answered.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the dribbling connection was still open after {limit:?}"),
        }
    }
    let took = started.elapsed();
    writer.abort();
    eprintln!("header dribble closed after {took:?}");
    assert!(answered.is_empty(), "the dribbled request was served");
    assert!(took < Duration::from_secs(3), "{took:?}");

    // Declares a body and sends it a byte at a time.
    let mut body = TcpStream::connect(&addr).await.unwrap();
    body.write_all(
        b"POST /api/v1/machines HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .await
    .unwrap();
    let (mut read_half, mut write_half) = body.into_split();
    let writer = tokio::spawn(async move {
        for _ in 0..100 {
            if write_half.write_all(b" ").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let started = Instant::now();
    let mut answered = Vec::new();
    loop {
        match tokio::time::timeout(limit, read_half.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answered.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the slow-body connection was still open after {limit:?}"),
        }
    }
    let took = started.elapsed();
    writer.abort();
    eprintln!("slow body answered and closed after {took:?}");
    let text = String::from_utf8_lossy(&answered);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("body-read-timeout"), "{text}");
    assert!(took < Duration::from_secs(3), "{took:?}");

    // An idle keep-alive connection is closed after the keep-alive timeout, not before.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 512];
    let n = idle.read(&mut first).await.unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    let (took, _) = closed_within(&mut idle, limit).await;
    eprintln!("idle keep-alive connection closed after {took:?}");
    assert!(
        took >= Duration::from_millis(1300) && took < Duration::from_secs(4),
        "{took:?}"
    );

    // Requests within the keep-alive time keep the connection.
    let mut busy = TcpStream::connect(&addr).await.unwrap();
    for _ in 0..4 {
        busy.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let n = busy.read(&mut first).await.unwrap();
        assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    srv.stop().await;
}

#[tokio::test]
async fn connections_are_capped() {
    let srv = TestServer::start(
        &Backend::Sqlite,
        &[
            ("PEAQOS_MAX_CONNECTIONS", "4"),
            ("PEAQOS_HEADER_READ_TIMEOUT_MS", "1000"),
        ],
    )
    .await;
    let addr = host_port(&srv);
    // Four sockets that send nothing hold every slot.
    let mut squatters = Vec::new();
    for _ in 0..4 {
        squatters.push(TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let mut fifth = TcpStream::connect(&addr).await.unwrap();
    fifth
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(8), fifth.read(&mut buf))
        .await
        .expect("served once a slot is free")
        .unwrap();
    let waited = started.elapsed();
    eprintln!("the fifth connection was served after {waited:?}");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(
        waited >= Duration::from_millis(700),
        "served before any slot was free ({waited:?})"
    );
    for mut squatter in squatters {
        let (took, _) = closed_within(&mut squatter, Duration::from_secs(4)).await;
        assert!(took < Duration::from_secs(4));
    }
    srv.stop().await;
}

/// A listener that counts the connections made to it.
async fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    (port, accepted)
}

async fn wait_for_probe_rounds(srv: &TestServer, rounds: u64) {
    let start = srv.app.worker.probe_rounds.load(Ordering::SeqCst);
    for _ in 0..200 {
        if srv.app.worker.probe_rounds.load(Ordering::SeqCst) >= start + rounds {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the prober did not run");
}

#[tokio::test]
async fn network_scopes_are_decided_by_the_address_connected_to() {
    for backend in backends() {
        for allowed in ["public,vpn,lan", "public,vpn,lan,loopback"] {
            let srv = TestServer::start(
                &backend,
                &[
                    DISABLED,
                    ("PEAQOS_RUNTIME_ALLOWED_NETWORK_SCOPES", allowed),
                    ("PEAQOS_RUNTIME_PROBE_INTERVAL_MS", "100"),
                ],
            )
            .await;
            let (port, accepted) = counting_listener().await;
            let machine = srv.unverified_active_machine().await;
            // By PUT: a loopback address declared public.
            expect_json(
                srv.put_json(
                    &format!("/api/v1/machines/{machine}/runtime-endpoints/qvac"),
                    &json!({"endpointBaseUrl": format!("http://127.0.0.1:{port}"), "networkScope": "public"}),
                )
                .await,
                StatusCode::CREATED,
            )
            .await;
            // By heartbeat: a name that resolves to loopback, declared lan.
            let agent = expect_json(
                srv.post_json(
                    &format!("/api/v1/machines/{machine}/agents/enrollment"),
                    &json!({"allowedProviderKeys": ["ollama"]}),
                )
                .await,
                StatusCode::CREATED,
            )
            .await["item"]
                .clone();
            expect_json(
                srv.post_json(
                    "/api/v1/machine-agents/heartbeat",
                    &json!({"machineId": machine, "agentId": agent["id"], "agentToken": agent["agentToken"],
                            "endpoints": [{"providerKey": "ollama", "endpointBaseUrl": format!("http://localhost:{port}"),
                                           "networkScope": "lan"}]}),
                )
                .await,
                StatusCode::OK,
            )
            .await;
            wait_for_probe_rounds(&srv, 3).await;
            assert_eq!(
                accepted.load(Ordering::SeqCst),
                0,
                "{allowed}: the prober connected to a loopback address declared public or lan"
            );
            for key in ["qvac", "ollama"] {
                let endpoint = expect_json(
                    srv.get(&format!(
                        "/api/v1/machines/{machine}/runtime-endpoints/{key}"
                    ))
                    .await,
                    StatusCode::OK,
                )
                .await["item"]
                    .clone();
                assert_eq!(endpoint["status"], "unreachable", "{key}: {endpoint}");
                assert_eq!(
                    endpoint["healthError"], "network scope not allowed",
                    "{key}"
                );
            }
            srv.stop().await;
        }
    }
}

#[tokio::test]
async fn request_ids_are_echoed_only_when_conservative() {
    let srv = TestServer::start(&Backend::Sqlite, &[]).await;
    let echo = |id: &'static str| {
        let srv = &srv;
        async move {
            srv.request(Method::GET, "/health")
                .header("x-request-id", id)
                .send()
                .await
                .unwrap()
                .headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_string()
        }
    };
    assert_eq!(echo("trace-1.a:b_c").await, "trace-1.a:b_c");
    let generated = echo("abc%0d%0aSet-Cookie:%20x=1").await;
    assert!(generated.starts_with("req_"), "{generated}");
    assert!(echo("a b").await.starts_with("req_"));
    let body = json_of(srv.get("/health").await).await;
    assert_eq!(body, json!({"ok": true}));
    srv.stop().await;
}
