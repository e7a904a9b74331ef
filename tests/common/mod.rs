//! Test harness: the real server on 127.0.0.1:0 with its own database, SQLite always and
//! PostgreSQL when `TEST_DATABASE_URL` is set.
#![allow(dead_code)]

pub mod evm;
pub mod fake_mcr;
pub mod fake_provider;
pub mod fake_runtime;
pub mod market;
pub mod orders;
pub mod process;
pub mod proxy;
pub mod wallet;
pub mod x402_paywall;

use std::collections::HashMap;
use std::sync::Arc;

use peaqos_orchestrator::clock::Clock;
use peaqos_orchestrator::config::Config;
use peaqos_orchestrator::{App, serve};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;
use sqlx::Connection;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[derive(Clone, Debug)]
pub enum Backend {
    Sqlite,
    Postgres(String),
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }
}

/// SQLite, plus PostgreSQL when `TEST_DATABASE_URL` is set.
pub fn backends() -> Vec<Backend> {
    let mut all = vec![Backend::Sqlite];
    if let Ok(url) = std::env::var("TEST_DATABASE_URL")
        && !url.is_empty()
    {
        all.push(Backend::Postgres(url));
    }
    all
}

/// A database of its own for one test.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

impl TestDb {
    pub async fn create(backend: &Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("test.db").display());
                TestDb {
                    url,
                    backend: backend.clone(),
                    _dir: Some(dir),
                    pg_name: None,
                }
            }
            Backend::Postgres(admin_url) => {
                sqlx::any::install_default_drivers();
                let name = format!(
                    "peaqos_t_{}",
                    ulid::Ulid::generate().to_string().to_lowercase()
                );
                let mut admin = sqlx::AnyConnection::connect(admin_url).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut admin)
                    .await
                    .unwrap();
                admin.close().await.unwrap();
                let mut url = reqwest::Url::parse(admin_url).unwrap();
                url.set_path(&format!("/{name}"));
                TestDb {
                    url: url.to_string(),
                    backend: backend.clone(),
                    _dir: None,
                    pg_name: Some(name),
                }
            }
        }
    }

    pub async fn drop_database(&self) {
        if let (Backend::Postgres(admin_url), Some(name)) = (&self.backend, &self.pg_name)
            && let Ok(mut admin) = sqlx::AnyConnection::connect(admin_url).await
        {
            {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await;
                let _ = admin.close().await;
            }
        }
    }
}

pub struct TestServer {
    pub base: String,
    pub app: Arc<App>,
    pub clock: Clock,
    pub http: reqwest::Client,
    pub db: TestDb,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

pub fn config_with(database_url: &str, env: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    vars.insert("DATABASE_URL".into(), database_url.to_string());
    vars.entry("PEAQOS_LISTEN_ADDR".into())
        .or_insert("127.0.0.1:0".into());
    Config::from_lookup(|k| vars.get(k).cloned()).expect("test configuration is valid")
}

impl TestServer {
    /// A server on a fresh database of `backend`, configured by `env` on top of the defaults.
    pub async fn start(backend: &Backend, env: &[(&str, &str)]) -> TestServer {
        let db = TestDb::create(backend).await;
        let url = db.url.clone();
        TestServer::start_on(db, &url, env).await
    }

    /// A server on an existing database, reached through `database_url`.
    pub async fn start_on(db: TestDb, database_url: &str, env: &[(&str, &str)]) -> TestServer {
        let config = config_with(database_url, env);
        let clock = Clock::default();
        let app = App::start(config, clock.clone())
            .await
            .expect("server starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let served = app.clone();
        let task = tokio::spawn(async move {
            serve(served, listener, async {
                let _ = rx.await;
            })
            .await
            .expect("server runs");
        });
        TestServer {
            base,
            app,
            clock,
            http: reqwest::Client::builder().build().unwrap(),
            db,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(path))
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).send().await.unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.request(Method::POST, path)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn patch_json(&self, path: &str, body: &Value) -> Response {
        self.request(Method::PATCH, path)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> Response {
        self.request(Method::PUT, path)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.request(Method::DELETE, path).send().await.unwrap()
    }

    /// An `active` machine, on a server started with
    /// `PEAQOS_MACHINE_IDENTITY_VERIFICATION=disabled` (no proof, no MCR).
    pub async fn unverified_active_machine(&self) -> String {
        let did = format!("did:peaq:{}", rand_u64());
        let body = serde_json::json!({"displayName": "m", "ownerId": "o", "machineType": "t",
            "runtimeProfile": "r", "identityRef": did});
        let machine = expect_json(
            self.post_json("/api/v1/machines", &body).await,
            StatusCode::CREATED,
        )
        .await;
        let id = machine["item"]["id"].as_str().unwrap().to_string();
        expect_json(
            self.patch_json(
                &format!("/api/v1/machines/{id}"),
                &serde_json::json!({"status": "active"}),
            )
            .await,
            StatusCode::OK,
        )
        .await;
        id
    }

    /// Stops serving (in-flight requests complete) and keeps the database.
    pub async fn stop_keep_db(mut self) -> TestDb {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
        std::mem::replace(
            &mut self.db,
            TestDb {
                url: String::new(),
                backend: Backend::Sqlite,
                _dir: None,
                pg_name: None,
            },
        )
    }

    /// Stops serving and drops the database.
    pub async fn stop(self) {
        let db = self.stop_keep_db().await;
        db.drop_database().await;
    }
}

/// Reads a JSON body, asserting the JSON content type every response carries.
pub async fn json_of(response: Response) -> Value {
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(
        content_type, "application/json; charset=utf-8",
        "status {status}, body {text}"
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Asserts `status` and returns the JSON body.
pub async fn expect_json(response: Response, status: StatusCode) -> Value {
    let actual = response.status();
    let body = json_of(response).await;
    assert_eq!(actual, status, "body: {body}");
    body
}

/// A random positive integer, for identities and names no other test uses.
pub fn rand_u64() -> u64 {
    u64::from_le_bytes(peaqos_orchestrator::store::random_bytes::<8>()) >> 1
}

/// Asserts an error envelope with `status` and `code`, and returns the `error` object.
pub async fn expect_error(response: Response, status: StatusCode, code: &str) -> Value {
    let actual = response.status();
    let body = json_of(response).await;
    assert_eq!(actual, status, "body: {body}");
    assert_eq!(body["error"]["code"], code, "body: {body}");
    assert!(body["error"]["message"].is_string(), "body: {body}");
    if let Some(details) = body["error"].get("details") {
        assert!(details.is_object(), "details must be an object: {body}");
    }
    body["error"].clone()
}
