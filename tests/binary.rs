//! The `peaqos-orchestrator` binary itself: start-up checks, JSON logs without secrets, and
//! graceful shutdown.

mod common;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::fake_mcr::{Behaviour, FakeMcr};
use common::wallet::Wallet;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_peaqos-orchestrator");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

async fn spawn(env: &[(&str, &str)]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("o.db").display());
    spawn_on(dir, &sqlite, env).await
}

async fn spawn_on(dir: tempfile::TempDir, database_url: &str, env: &[(&str, &str)]) -> Server {
    let port = free_port();
    let mut command = Command::new(BIN);
    command
        .current_dir(dir.path())
        .env_clear()
        .env("PEAQOS_LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("DATABASE_URL", database_url)
        .env("PEAQOS_LOG_FORMAT", "json")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if reqwest::get(format!("{base}/health")).await.is_ok() {
            return Server {
                child,
                base,
                _dir: dir,
            };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the server did not start");
}

impl Server {
    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for exit; returns (success, stdout, stderr).
    fn wait(mut self) -> (bool, String, String) {
        let status = self.child.wait().unwrap();
        let mut out = String::new();
        let mut err = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status.success(), out, err)
    }
}

#[test]
fn a_bad_setting_stops_start_up_with_one_line_naming_it() {
    for (name, value) in [
        ("PEAQOS_MAX_BODY_BYTES", "lots"),
        ("DATABASE_URL", "mysql://h/db"),
        ("PEAQOS_REQUIRE_API_AUTH", "true"),
        ("PEAQOS_ENV", "production"),
    ] {
        let output = Command::new(BIN)
            .env_clear()
            .env(name, value)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{name}={value}");
        assert_ne!(output.status.code(), Some(101), "no panic");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains("invalid configuration"), "{stderr}");
        let named = if name == "PEAQOS_ENV" {
            "PEAQOS_AGENT_PAIRING_SESSION_SECRET"
        } else {
            name
        };
        assert!(stderr.contains(named), "{stderr}");
    }
}

#[tokio::test]
async fn json_logs_carry_request_ids_and_never_secrets_and_sigterm_drains() {
    let mcr = FakeMcr::start().await;
    let server = spawn(&[
        ("PEAQOS_REQUIRE_API_AUTH", "true"),
        ("PEAQOS_API_KEY", "planted-api-key-7f3a9c"),
        ("PEAQOS_MCR_API_URL", &mcr.url),
    ])
    .await;
    let http = reqwest::Client::new();
    let key = "planted-api-key-7f3a9c";
    let post = |path: &str, body: Value| {
        http.post(format!("{}{path}", server.base))
            .header("x-api-key", key)
            .header("x-request-id", "trace-me-123")
            .json(&body)
            .send()
    };

    // A machine and a pairing, with real proofs.
    let owner = Wallet::random();
    mcr.register("did:peaq:77", 77, &owner.address(), true);
    let challenge: Value = post(
        "/api/v1/machine-identity/challenges",
        json!({"identityRef": "did:peaq:77"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let challenge = &challenge["item"];
    let signature = owner.sign_personal(challenge["message"].as_str().unwrap());
    let machine: Value = post(
        "/api/v1/machines",
        json!({"displayName": "m", "ownerId": "o", "machineType": "t", "runtimeProfile": "r", "identityRef": "did:peaq:77",
               "identityProof": {"challengeId": challenge["challengeId"], "signature": signature}}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let machine_id = machine["item"]["id"].as_str().unwrap().to_string();
    let activated = http
        .patch(format!("{}/api/v1/machines/{machine_id}", server.base))
        .header("x-api-key", key)
        .json(&json!({"status": "active"}))
        .send()
        .await
        .unwrap();
    assert_eq!(activated.status(), 200);
    let agent = Wallet::random();
    let fields = json!({"agentAddress": agent.address(), "agentProvider": "p", "agentRole": "r"});
    let pc: Value = post(
        &format!("/api/v1/machines/{machine_id}/agent-pairings/challenges"),
        fields.clone(),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let agent_signature = agent.sign_personal(pc["item"]["message"].as_str().unwrap());
    let mut body = fields.clone();
    body["agentProof"] =
        json!({"challengeId": pc["item"]["challengeId"], "signature": agent_signature});
    let pairing: Value = post(
        &format!("/api/v1/machines/{machine_id}/agent-pairings"),
        body,
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let token = pairing["item"]["pairingToken"]
        .as_str()
        .unwrap()
        .to_string();

    // SIGTERM while a request waits on a slow MCR: the request still completes.
    mcr.set(
        "did:peaq:78",
        Behaviour::Slow(
            Duration::from_millis(800),
            Box::new(Behaviour::Machine(common::fake_mcr::machine_body(
                "did:peaq:78",
                78,
                &owner.address(),
                true,
            ))),
        ),
    );
    let in_flight = tokio::spawn(post(
        "/api/v1/machine-identity/challenges",
        json!({"identityRef": "did:peaq:78"}),
    ));
    // Wait until the request is inside the server (it has reached the slow MCR).
    for _ in 0..100 {
        if mcr.requests("did:peaq:78") > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.terminate();
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(
        response.status(),
        201,
        "in-flight requests complete on SIGTERM"
    );

    let (ok, stdout, _) = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap();
    assert!(ok, "clean exit after SIGTERM");
    let mut saw_request_id = false;
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let parsed: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        saw_request_id |= line.contains("trace-me-123");
        let _ = parsed;
    }
    assert!(saw_request_id, "request ids appear in log lines");
    for secret in [
        key,
        token.as_str(),
        token.split('.').nth(2).unwrap(),
        signature.as_str(),
        agent_signature.as_str(),
    ] {
        assert!(
            !stdout.contains(secret),
            "a secret reached the logs: {secret}"
        );
    }
}

#[tokio::test]
async fn the_healthcheck_subcommand_asks_the_local_server() {
    let server = spawn(&[]).await;
    let port = server.base.rsplit(':').next().unwrap().to_string();
    let run = |port: String| {
        tokio::task::spawn_blocking(move || {
            Command::new(BIN)
                .arg("healthcheck")
                .env_clear()
                .env("PEAQOS_LISTEN_ADDR", format!("0.0.0.0:{port}"))
                .output()
                .unwrap()
        })
    };
    assert!(run(port).await.unwrap().status.success());
    server.terminate();
    let (ok, _, _) = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap();
    assert!(ok);
    let nobody = free_port().to_string();
    let output = run(nobody).await.unwrap();
    assert!(!output.status.success(), "no server, no health");
}

async fn leading(server: &Server) -> bool {
    let text = reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines().any(|l| l == "background_leader 1")
}

#[tokio::test]
async fn two_server_processes_on_one_postgresql_run_background_work_one_at_a_time() {
    let Some(common::Backend::Postgres(admin)) = common::backends()
        .into_iter()
        .find(|b| matches!(b, common::Backend::Postgres(_)))
    else {
        eprintln!("TEST_DATABASE_URL unset: the two-process test needs PostgreSQL");
        return;
    };
    let db = common::TestDb::create(&common::Backend::Postgres(admin)).await;
    let env = [
        ("PEAQOS_RUNTIME_PROBE_INTERVAL_MS", "0"),
        (
            "PEAQOS_AGENT_PAIRING_SESSION_SECRET",
            "shared-secret-shared-secret-0123456789",
        ),
    ];
    let a = spawn_on(tempfile::tempdir().unwrap(), &db.url, &env).await;
    let b = spawn_on(tempfile::tempdir().unwrap(), &db.url, &env).await;
    let mut observed = Vec::new();
    for _ in 0..20 {
        observed.push((leading(&a).await, leading(&b).await));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        observed.iter().all(|(x, y)| !(*x && *y)),
        "never two leaders: {observed:?}"
    );
    let (x, y) = *observed.last().unwrap();
    assert!(x ^ y, "exactly one leader: {observed:?}");

    // SIGTERM the leader: it hands the lease over and the other process takes it.
    let (leader, follower) = if x { (a, b) } else { (b, a) };
    leader.terminate();
    let (ok, _, _) = tokio::task::spawn_blocking(move || leader.wait())
        .await
        .unwrap();
    assert!(ok);
    let mut took_over = false;
    for _ in 0..40 {
        if leading(&follower).await {
            took_over = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(took_over, "the other process takes the lease over");
    follower.terminate();
    tokio::task::spawn_blocking(move || follower.wait())
        .await
        .unwrap();
    db.drop_database().await;
}

#[tokio::test]
async fn piped_logs_have_no_colour_and_round_latencies() {
    for format in ["text", "json"] {
        let server = spawn(&[("PEAQOS_LOG_FORMAT", format)]).await;
        for _ in 0..5 {
            reqwest::get(format!("{}/health", server.base))
                .await
                .unwrap();
        }
        server.terminate();
        let (ok, stdout, _) = tokio::task::spawn_blocking(move || server.wait())
            .await
            .unwrap();
        assert!(ok);
        assert!(
            !stdout.contains('\u{1b}'),
            "{format}: ANSI codes in a pipe:\n{stdout}"
        );
        let latencies: Vec<&str> = stdout
            .split("latency_ms")
            .skip(1)
            .map(|rest| {
                rest.trim_start_matches(['"', ':', '='])
                    .split(|c: char| !(c.is_ascii_digit() || c == '.'))
                    .next()
                    .unwrap()
            })
            .collect();
        assert!(
            !latencies.is_empty(),
            "{format}: no request lines:\n{stdout}"
        );
        for latency in latencies {
            let decimals = latency.split('.').nth(1).map_or(0, str::len);
            assert!(
                decimals <= 3,
                "{format}: latency_ms {latency} is not rounded"
            );
        }
    }
}

#[tokio::test]
async fn start_up_warns_when_listening_beyond_loopback_with_api_auth_off() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sqlite = format!("sqlite://{}", dir.path().join("o.db").display());
    let run = |listen: String, extra: &[(&str, &str)]| {
        let mut command = Command::new(BIN);
        command
            .current_dir(dir.path())
            .env_clear()
            .env("PEAQOS_LISTEN_ADDR", listen)
            .env("DATABASE_URL", &sqlite)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in extra {
            command.env(k, v);
        }
        command.spawn().unwrap()
    };
    for (listen, extra, warned) in [
        (format!("0.0.0.0:{port}"), vec![], true),
        (
            format!("0.0.0.0:{port}"),
            vec![("PEAQOS_REQUIRE_API_AUTH", "true"), ("PEAQOS_API_KEY", "k")],
            false,
        ),
        (format!("127.0.0.1:{port}"), vec![], false),
    ] {
        let mut child = run(listen.clone(), &extra);
        let base = format!("http://127.0.0.1:{port}");
        let mut up = false;
        for _ in 0..100 {
            if reqwest::get(format!("{base}/health")).await.is_ok() {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        child.wait().unwrap();
        assert!(up, "{listen}: the server did not start");
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(
            out.contains("beyond loopback"),
            warned,
            "{listen} {extra:?}:\n{out}"
        );
    }
}

#[test]
fn the_default_listen_address_is_loopback() {
    let config = peaqos_orchestrator::config::Config::from_lookup(|_| None).unwrap();
    assert!(
        config.listen_addr.ip().is_loopback(),
        "{}",
        config.listen_addr
    );
}
