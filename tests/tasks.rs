//! Tasks, routes, outcomes and runs, and the execution engine behind them (spec orchestration.md
//! §2–§3, §5.3; orders-and-payments.md §6), against real loopback fakes, on every backend.
//!
//! Test services live in catalogue files written per test (`PEAQOS_CATALOG_DIR`). They use the
//! service type `device.control`, which no built-in service has, and each has an operation of
//! its own, so a task's `operation` picks exactly one service.

mod common;

use std::time::{Duration, Instant};

use common::fake_provider::{ConnectionCounter, FakeProvider};
use common::fake_runtime::dead_url;
use common::market::{
    CatalogDir, MACHINE_VERIFICATION_OFF, NO_PROBES, all_items, catalog_file, enroll, manifest,
    merged, service, skill, start_server,
};
use common::process::ServerProcess;
use common::{Backend, TestServer, backends, expect_error, expect_json, rand_u64};
use reqwest::StatusCode;
use serde_json::{Value, json};

const DISABLED: (&str, &str) = ("PEAQOS_MACHINE_IDENTITY_VERIFICATION", "disabled");

/// The service type of every test service.
const DEVICE: &str = "device.control";
const HTTP_SKILL: &str = "tests-http";
const HTTP_PROVIDER: &str = "testhttp";

/// A native HTTP service of `skill_key` whose one operation is `operation`, called at `endpoint`
/// (`url`, `path`, `method`; `operation` is added).
fn skill_service(
    id: &str,
    skill_key: &str,
    provider_key: &str,
    operation: &str,
    mut endpoint: Value,
) -> Value {
    endpoint["operation"] = json!(operation);
    merged(
        service(id, skill_key, provider_key, DEVICE),
        json!({"operations": [operation], "endpoints": [endpoint]}),
    )
}

/// A service of the `tests-http` skill.
fn http_service(id: &str, operation: &str, endpoint: Value) -> Value {
    skill_service(id, HTTP_SKILL, HTTP_PROVIDER, operation, endpoint)
}

/// One skill (with its manifest) and `services` of it, as one catalogue file.
fn skill_catalog(skill_key: &str, provider_key: &str, services: Vec<Value>) -> Value {
    catalog_file(
        vec![merged(
            skill(skill_key, provider_key),
            json!({"serviceTypes": [DEVICE]}),
        )],
        vec![manifest(skill_key, provider_key)],
        services,
    )
}

/// The `tests-http` skill with `services`.
fn http_catalog(services: Vec<Value>) -> Value {
    skill_catalog(HTTP_SKILL, HTTP_PROVIDER, services)
}

/// `PEAQOS_RUNTIME_ALLOWED_NETWORK_SCOPES`.
const SCOPES: &str = "PEAQOS_RUNTIME_ALLOWED_NETWORK_SCOPES";

/// A server with catalogue files of its own, and an active machine on it.
struct World {
    srv: TestServer,
    machine: String,
    catalog: CatalogDir,
}

impl World {
    async fn start(backend: &Backend, files: Vec<Value>, env: &[(&str, &str)]) -> World {
        let catalog = CatalogDir::new();
        for (i, file) in files.iter().enumerate() {
            catalog.write(&format!("tests-{i}.json"), file);
        }
        let srv = start_server(backend, Some(&catalog), env).await;
        let machine = srv.unverified_active_machine().await;
        World {
            srv,
            machine,
            catalog,
        }
    }

    /// `/api/v1/machines/{machine}{rest}`.
    fn at(&self, rest: &str) -> String {
        format!("/api/v1/machines/{}{rest}", self.machine)
    }

    /// Creates a task: its record.
    async fn create_task(&self, body: Value) -> Value {
        expect_json(
            self.srv.post_json(&self.at("/tasks"), &body).await,
            StatusCode::CREATED,
        )
        .await["item"]
            .clone()
    }

    /// A `device.control` task for `operation`: its id.
    async fn task_for(&self, operation: &str, input: Value) -> String {
        let task = self
            .create_task(
                json!({"serviceType": DEVICE, "taskType": "test", "operation": operation,
                                "input": input}),
            )
            .await;
        task["id"].as_str().unwrap().to_string()
    }

    async fn discover(&self, task: &str, body: Value) -> Value {
        expect_json(
            self.srv
                .post_json(&self.at(&format!("/tasks/{task}/discover")), &body)
                .await,
            StatusCode::OK,
        )
        .await
    }

    async fn resolve_response(&self, task: &str) -> reqwest::Response {
        self.srv
            .post_json(&self.at(&format!("/tasks/{task}/resolve")), &json!({}))
            .await
    }

    /// Resolves: `{item: RouteRecord, resolution}`.
    async fn resolve(&self, task: &str) -> Value {
        expect_json(self.resolve_response(task).await, StatusCode::CREATED).await
    }

    /// A task for `operation`, resolved to a `selected` route: its id.
    async fn resolved(&self, operation: &str, input: Value) -> String {
        let task = self.task_for(operation, input).await;
        let resolved = self.resolve(&task).await;
        assert_eq!(resolved["item"]["status"], "selected", "{resolved}");
        task
    }

    async fn execute(&self, task: &str, body: Value) -> reqwest::Response {
        self.srv
            .post_json(&self.at(&format!("/tasks/{task}/execute")), &body)
            .await
    }

    /// Creates, resolves and executes a task for `operation` (HTTP 200): `(task id, answer)`.
    async fn executed(&self, operation: &str, input: Value) -> (String, Value) {
        let task = self.resolved(operation, input).await;
        let answer = expect_json(self.execute(&task, json!({})).await, StatusCode::OK).await;
        (task, answer)
    }

    async fn task(&self, id: &str) -> Value {
        expect_json(
            self.srv.get(&self.at(&format!("/tasks/{id}"))).await,
            StatusCode::OK,
        )
        .await["item"]
            .clone()
    }

    async fn route(&self, id: &str) -> Value {
        let routes = all_items(&self.srv, &self.at("/routes")).await;
        routes
            .into_iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("no route {id}"))
    }

    async fn runs(&self) -> Vec<Value> {
        all_items(
            &self.srv,
            &format!("/api/v1/runs?machineId={}", self.machine),
        )
        .await
    }

    async fn outcomes(&self) -> Vec<Value> {
        all_items(&self.srv, &self.at("/outcomes")).await
    }

    /// This machine's audit events of `event_type`, newest first.
    async fn events(&self, event_type: &str) -> Vec<Value> {
        all_items(
            &self.srv,
            &format!(
                "/api/v1/audit-events?type={event_type}&machineId={}",
                self.machine
            ),
        )
        .await
    }

    /// `PATCH /skills/{key}/config` with `credentials`.
    async fn store_credentials(&self, skill_key: &str, credentials: Value) -> Value {
        expect_json(
            self.srv
                .patch_json(
                    &format!("/api/v1/skills/{skill_key}/config"),
                    &json!({ "credentials": credentials }),
                )
                .await,
            StatusCode::OK,
        )
        .await
    }

    /// What a refused execute must leave: the task `resolved` with its `selected` route, and no
    /// run, no outcome and no `task.executed` event for it.
    async fn assert_untouched(&self, task: &str) {
        let record = self.task(task).await;
        assert_eq!(record["status"], "resolved", "{record}");
        assert!(record["outcomeId"].is_null(), "{record}");
        let route = self.route(record["routeId"].as_str().unwrap()).await;
        assert_eq!(route["status"], "selected", "{route}");
        assert!(
            !self.runs().await.iter().any(|r| r["taskId"] == task),
            "a run was written for {task}"
        );
        assert!(
            !self.outcomes().await.iter().any(|o| o["taskId"] == task),
            "an outcome was written for {task}"
        );
        assert!(
            !self
                .events("task.executed")
                .await
                .iter()
                .any(|e| e["resourceId"] == task),
            "task.executed was written for {task}"
        );
    }

    /// Asserts the states an execution left, as `(task, route, run, outcome)`, in the answer and
    /// in what is stored; returns the stored outcome.
    async fn assert_states(&self, task: &str, answer: &Value, states: [&str; 4]) -> Value {
        let [task_status, route_status, run_status, outcome_status] = states;
        assert_eq!(answer["item"]["status"], outcome_status, "{answer}");
        assert_eq!(answer["run"]["status"], run_status, "{answer}");
        let record = self.task(task).await;
        assert_eq!(record["status"], task_status, "{record}");
        assert_eq!(record["outcomeId"], answer["item"]["id"], "{record}");
        let route = self
            .route(answer["item"]["routeId"].as_str().unwrap())
            .await;
        assert_eq!(route["status"], route_status, "{route}");
        let run_id = answer["run"]["id"].as_str().unwrap();
        let detail = expect_json(
            self.srv.get(&format!("/api/v1/runs/{run_id}")).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(
            detail["run"], answer["run"],
            "the stored run is the answered one"
        );
        assert_eq!(
            detail["outcome"], answer["item"],
            "the stored outcome is the answered one"
        );
        assert_eq!(detail["run"]["outcomeId"], answer["item"]["id"]);
        assert_eq!(detail["run"]["routeId"], answer["item"]["routeId"]);
        detail["outcome"].clone()
    }

    async fn stop(self) {
        self.srv.stop().await;
    }
}

/// The query string's pairs, sorted.
fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = query
        .map(|q| {
            reqwest::Url::parse(&format!("http://x/?{q}"))
                .unwrap()
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    pairs.sort();
    pairs
}

/// A heartbeat of `agent` leasing the `qvac` endpoint at `base_url` with a bearer token.
async fn lease_qvac(
    srv: &TestServer,
    machine: &str,
    agent: &Value,
    base_url: &str,
    token: &str,
    lease_seconds: i64,
) -> Value {
    let body = json!({
        "machineId": machine, "agentId": agent["id"], "agentToken": agent["agentToken"],
        "leaseSeconds": lease_seconds,
        "endpoints": [{"providerKey": "qvac", "endpointBaseUrl": base_url, "authType": "bearer",
                       "authToken": token, "modelAlias": "alias-7b"}],
    });
    expect_json(
        srv.post_json("/api/v1/machine-agents/heartbeat", &body)
            .await,
        StatusCode::OK,
    )
    .await
}

/// A task for the built-in `qvac` service (`run-private-inference`), native only.
fn qvac_task(input: Value) -> Value {
    json!({"serviceType": "compute", "taskType": "chat", "operation": "run-private-inference",
           "input": input, "constraints": {"requireNativeExecution": true}})
}

#[tokio::test]
async fn a_task_runs_on_the_machine_runtime_endpoint() {
    for backend in backends() {
        let srv = TestServer::start(&backend, &[DISABLED]).await;
        let runtime = FakeProvider::start().await;
        let machine = srv.unverified_active_machine().await;
        expect_json(
            srv.put_json(
                &format!("/api/v1/machines/{machine}/runtime-endpoints/qvac"),
                &json!({"endpointBaseUrl": runtime.url, "authType": "bearer", "authToken": "rt-secret-1", "modelAlias": "m1"}),
            )
            .await,
            StatusCode::CREATED,
        )
        .await;
        let task = expect_json(
            srv.post_json(
                &format!("/api/v1/machines/{machine}/tasks"),
                &json!({"serviceType": "compute", "taskType": "chat", "operation": "run-private-inference",
                        "input": {"prompt": "hi"}, "constraints": {"requireNativeExecution": true}}),
            )
            .await,
            StatusCode::CREATED,
        )
        .await["item"]
            .clone();
        let id = task["id"].as_str().unwrap();
        let discovered = expect_json(
            srv.post_json(
                &format!("/api/v1/machines/{machine}/tasks/{id}/discover"),
                &json!({}),
            )
            .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(discovered["resolution"]["kind"], "native", "{discovered}");
        let resolved = expect_json(
            srv.post_json(
                &format!("/api/v1/machines/{machine}/tasks/{id}/resolve"),
                &json!({}),
            )
            .await,
            StatusCode::CREATED,
        )
        .await;
        assert_eq!(resolved["item"]["status"], "selected");
        let executed = expect_json(
            srv.post_json(
                &format!("/api/v1/machines/{machine}/tasks/{id}/execute"),
                &json!({}),
            )
            .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(executed["item"]["status"], "completed", "{executed}");
        assert_eq!(executed["run"]["status"], "completed");
        assert_eq!(
            executed["item"]["result"]["choices"][0]["message"]["content"],
            "hello from the fake runtime"
        );
        let calls = runtime.seen_at("/v1/chat/completions");
        assert_eq!(calls.len(), 1);
        assert_eq!(
            calls[0].json(),
            json!({"model": "m1", "messages": [{"role": "user", "content": "hi"}]})
        );
        assert_eq!(
            calls[0].header("authorization").as_deref(),
            Some("Bearer rt-secret-1")
        );
        expect_error(
            srv.post_json(
                &format!("/api/v1/machines/{machine}/tasks/{id}/execute"),
                &json!({}),
            )
            .await,
            StatusCode::CONFLICT,
            "ROUTE_REQUIRED",
        )
        .await;
        srv.stop().await;
    }
}

/// orders-and-payments.md §6.2 (runtime `qvac`), through an endpoint leased by a heartbeat
/// (agents-and-runtime.md §4.4), and the audit events of enrolment and heartbeat (§5.3).
#[tokio::test]
async fn a_heartbeat_leased_runtime_gets_an_openai_chat_completion() {
    for backend in backends() {
        let w = World::start(&backend, vec![], &[]).await;
        let runtime = FakeProvider::start().await;
        let agent = enroll(&w.srv, &w.machine, &["qvac"]).await;
        let token = format!("hb-token-{}", rand_u64());
        let beat = lease_qvac(&w.srv, &w.machine, &agent, &runtime.url, &token, 120).await;
        assert_eq!(beat["item"]["endpoints"][0]["source"], "agent", "{beat}");
        assert!(!beat.to_string().contains(&token), "{beat}");

        // The prompt becomes the messages; the 0.2.0 camelCased OpenAI keys go back to
        // snake_case; every other key passes through.
        let task = w
            .create_task(qvac_task(
                json!({"prompt": "What is peaq?", "maxTokens": 64,
                "topP": 0.5, "temperature": 0.2, "stop": ["\n"], "user": "robot-7"}),
            ))
            .await;
        let id = task["id"].as_str().unwrap();
        let resolved = w.resolve(id).await;
        assert_eq!(resolved["resolution"]["kind"], "native", "{resolved}");
        assert_eq!(
            resolved["item"]["selectedServiceId"],
            "qvac-private-inference"
        );
        assert_eq!(resolved["item"]["integrationStatus"], "native");
        let answer = expect_json(w.execute(id, json!({})).await, StatusCode::OK).await;
        w.assert_states(
            id,
            &answer,
            ["completed", "completed", "completed", "completed"],
        )
        .await;
        assert_eq!(answer["item"]["result"]["object"], "chat.completion");
        assert_eq!(answer["item"]["result"]["model"], "alias-7b");
        let calls = runtime.seen_at("/v1/chat/completions");
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(calls[0].method, "POST");
        assert_eq!(
            calls[0].json(),
            json!({"model": "alias-7b", "messages": [{"role": "user", "content": "What is peaq?"}],
                   "max_tokens": 64, "top_p": 0.5, "temperature": 0.2, "stop": ["\n"],
                   "user": "robot-7"})
        );
        assert_eq!(
            calls[0].header("authorization"),
            Some(format!("Bearer {token}"))
        );
        assert!(
            calls[0]
                .header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{:?}",
            calls[0].headers
        );

        // input.model and input.messages win over the alias and the prompt.
        let messages = json!([{"role": "system", "content": "be brief"},
                              {"role": "user", "content": "hi"}]);
        let task = w
            .create_task(qvac_task(
                json!({"model": "explicit-model", "messages": messages, "prompt": "ignored"}),
            ))
            .await;
        let id = task["id"].as_str().unwrap();
        w.resolve(id).await;
        let answer = expect_json(w.execute(id, json!({})).await, StatusCode::OK).await;
        assert_eq!(answer["item"]["status"], "completed", "{answer}");
        let calls = runtime.seen_at("/v1/chat/completions");
        assert_eq!(calls.len(), 2);
        assert_eq!(
            calls[1].json(),
            json!({"model": "explicit-model", "messages": messages})
        );

        // Neither prompt nor messages: 400 before any call, nothing written.
        let task = w.create_task(qvac_task(json!({"temperature": 1}))).await;
        let id = task["id"].as_str().unwrap();
        w.resolve(id).await;
        let err = expect_error(
            w.execute(id, json!({})).await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(err["details"]["field"], "input.prompt", "{err}");
        w.assert_untouched(id).await;
        assert_eq!(runtime.seen_at("/v1/chat/completions").len(), 2);

        // Audit: enrolment and heartbeat, with no token in their payloads.
        let agent_id = agent["id"].as_str().unwrap();
        let enrolled = w.events("machine-agent.enrolled").await;
        assert_eq!(enrolled.len(), 1, "{enrolled:?}");
        assert_eq!(enrolled[0]["resourceType"], "machine-agent");
        assert_eq!(enrolled[0]["resourceId"], agent_id);
        let beats = w.events("machine-agent.heartbeat").await;
        assert_eq!(beats.len(), 1, "{beats:?}");
        assert_eq!(beats[0]["resourceType"], "machine-agent");
        assert_eq!(beats[0]["resourceId"], agent_id);
        assert_eq!(beats[0]["payload"]["leaseSeconds"], 120, "{}", beats[0]);
        assert_eq!(beats[0]["payload"]["endpoints"], json!(["qvac"]));
        for event in enrolled.iter().chain(&beats) {
            let text = event.to_string();
            assert!(!text.contains(&token), "{text}");
            assert!(
                !text.contains(agent["agentToken"].as_str().unwrap()),
                "{text}"
            );
        }
        w.stop().await;
    }
}

/// §2.8 step 4: an endpoint whose lease ran out after resolve is `unreachable`: `502` before
/// any call, with no state change; a renewed lease lets the same route run.
#[tokio::test]
async fn a_lease_that_expires_after_resolve_fails_execute_with_no_state_change() {
    for backend in backends() {
        let w = World::start(&backend, vec![], &[]).await;
        let runtime = FakeProvider::start().await;
        let agent = enroll(&w.srv, &w.machine, &["qvac"]).await;
        lease_qvac(&w.srv, &w.machine, &agent, &runtime.url, "lease-token", 30).await;
        let task = w.create_task(qvac_task(json!({"prompt": "hi"}))).await;
        let id = task["id"].as_str().unwrap();
        let resolved = w.resolve(id).await;
        assert_eq!(resolved["item"]["status"], "selected", "{resolved}");

        w.srv.clock.advance_ms(31_000);
        let err = expect_error(
            w.execute(id, json!({})).await,
            StatusCode::BAD_GATEWAY,
            "ENDPOINT_UNREACHABLE",
        )
        .await;
        assert_eq!(err["details"]["providerKey"], "qvac", "{err}");
        w.assert_untouched(id).await;
        assert!(runtime.seen_at("/v1/chat/completions").is_empty());

        lease_qvac(&w.srv, &w.machine, &agent, &runtime.url, "lease-token", 30).await;
        let answer = expect_json(w.execute(id, json!({})).await, StatusCode::OK).await;
        assert_eq!(answer["item"]["status"], "completed", "{answer}");
        assert_eq!(answer["item"]["routeId"], resolved["item"]["id"]);
        assert_eq!(runtime.seen_at("/v1/chat/completions").len(), 1);
        w.stop().await;
    }
}

/// orders-and-payments.md §6.3: every kind of provider answer, and what it leaves.
#[tokio::test]
async fn http_provider_answers_map_to_outcomes() {
    for backend in backends() {
        let fake = FakeProvider::start().await;
        let at =
            |path: &str, method: &str| json!({"url": fake.url, "path": path, "method": method});
        let services = vec![
            http_service("t:json", "json", at("/json/answer", "POST")),
            http_service("t:text", "text", at("/text", "GET")),
            http_service("t:402", "pay", at("/status/402", "POST")),
            http_service("t:404", "missing", at("/status/404", "POST")),
            http_service("t:429", "limited", at("/status/429", "GET")),
            http_service("t:500", "broken", at("/status/500", "POST")),
            http_service("t:503", "down", at("/status/503", "POST")),
            http_service("t:big", "big", at("/big", "GET")),
            http_service("t:chunked", "chunked", at("/big-chunked", "GET")),
            http_service("t:redirect", "redirect", at("/redirect", "GET")),
            http_service(
                "t:refused",
                "refused",
                json!({"url": dead_url(), "path": "/json/x", "method": "POST"}),
            ),
        ];
        let w = World::start(&backend, vec![http_catalog(services)], &[]).await;

        // 2xx JSON: the result is the JSON body.
        let (task, answer) = w.executed("json", json!({"a": 1, "b": "two"})).await;
        let outcome = w.assert_states(&task, &answer, ["completed"; 4]).await;
        assert_eq!(
            outcome["result"],
            json!({"ok": true, "method": "POST", "path": "/json/answer", "query": null,
                   "body": {"a": 1, "b": "two"}})
        );
        assert!(outcome["errorCode"].is_null() && outcome["errorMessage"].is_null());
        assert_eq!(outcome["serviceId"], "t:json");
        assert_eq!(outcome["skillKey"], HTTP_SKILL);
        assert_eq!(outcome["executionMode"], "native");
        assert_eq!(answer["run"]["summary"], "completed (HTTP 200)");
        assert_eq!(answer["resolution"]["kind"], "native", "{answer}");
        assert_eq!(answer["resolution"]["candidate"]["service"]["id"], "t:json");

        // 2xx text: {"text": body}.
        let (task, answer) = w.executed("text", json!({})).await;
        let outcome = w.assert_states(&task, &answer, ["completed"; 4]).await;
        assert_eq!(outcome["result"], json!({"text": "plain answer"}));

        // 402: the attempt failed, the task is back to resolved and can be resolved again.
        let (task, answer) = w.executed("pay", json!({})).await;
        let outcome = w
            .assert_states(&task, &answer, ["resolved", "failed", "failed", "failed"])
            .await;
        assert_eq!(outcome["errorCode"], "PAYMENT_REQUIRED", "{outcome}");
        assert!(outcome["result"].is_null(), "{outcome}");
        expect_error(
            w.execute(&task, json!({})).await,
            StatusCode::CONFLICT,
            "ROUTE_REQUIRED",
        )
        .await;
        let again = w.resolve(&task).await;
        assert_eq!(again["item"]["status"], "selected", "{again}");
        assert_ne!(again["item"]["id"], answer["item"]["routeId"]);

        // Other non-2xx: PROVIDER_ERROR "HTTP <code>", everything failed.
        for (operation, code) in [
            ("missing", 404),
            ("limited", 429),
            ("broken", 500),
            ("down", 503),
        ] {
            let (task, answer) = w.executed(operation, json!({})).await;
            let outcome = w.assert_states(&task, &answer, ["failed"; 4]).await;
            assert_eq!(outcome["errorCode"], "PROVIDER_ERROR", "{outcome}");
            assert_eq!(outcome["errorMessage"], format!("HTTP {code}"), "{outcome}");
            assert!(outcome["result"].is_null(), "{outcome}");
            assert_eq!(answer["run"]["summary"], format!("failed: HTTP {code}"));
            assert!(
                !outcome.to_string().contains("provider text"),
                "the provider's error body is not the message: {outcome}"
            );
        }

        // Connection refused: ENDPOINT_UNREACHABLE.
        let (task, answer) = w.executed("refused", json!({})).await;
        let outcome = w.assert_states(&task, &answer, ["failed"; 4]).await;
        assert_eq!(outcome["errorCode"], "ENDPOINT_UNREACHABLE", "{outcome}");
        assert_eq!(outcome["errorMessage"], "connection refused", "{outcome}");

        // Over 10 MiB, announced or streamed: PROVIDER_ERROR "response too large", no result.
        for operation in ["big", "chunked"] {
            let (task, answer) = w.executed(operation, json!({})).await;
            let outcome = w.assert_states(&task, &answer, ["failed"; 4]).await;
            assert_eq!(
                outcome["errorCode"], "PROVIDER_ERROR",
                "{operation}: {outcome}"
            );
            assert_eq!(outcome["errorMessage"], "response too large", "{operation}");
            assert!(outcome["result"].is_null(), "{operation}: {outcome}");
        }

        // A redirect is not followed.
        let (task, answer) = w.executed("redirect", json!({})).await;
        let outcome = w.assert_states(&task, &answer, ["failed"; 4]).await;
        assert_eq!(outcome["errorCode"], "PROVIDER_ERROR", "{outcome}");
        assert_eq!(outcome["errorMessage"], "HTTP 302", "{outcome}");
        assert_eq!(fake.seen_at("/redirect").len(), 1);
        assert!(
            fake.seen_at("/json/target").is_empty(),
            "the redirect was followed"
        );

        // Every call was made exactly once.
        for path in [
            "/json/answer",
            "/text",
            "/status/402",
            "/status/500",
            "/big",
        ] {
            assert_eq!(fake.seen_at(path).len(), 1, "{path}");
        }
        w.stop().await;
    }
}

/// §6.2 limits: a provider that answers after the 45 s call timeout is `ENDPOINT_UNREACHABLE`.
/// The backends run side by side so the test waits the timeout once.
#[tokio::test]
async fn a_provider_slower_than_the_call_timeout_is_unreachable() {
    let backends = backends();
    futures_util::future::join_all(backends.iter().map(slow_provider_times_out)).await;
}

async fn slow_provider_times_out(backend: &Backend) {
    let fake = FakeProvider::start().await;
    let services = vec![http_service(
        "t:slow",
        "slow",
        json!({"url": fake.url, "path": "/slow", "method": "POST"}),
    )];
    let w = World::start(backend, vec![http_catalog(services)], &[]).await;
    let task = w.resolved("slow", json!({})).await;
    let started = Instant::now();
    let answer = expect_json(w.execute(&task, json!({})).await, StatusCode::OK).await;
    let took = started.elapsed();
    assert!(
        (Duration::from_secs(44)..Duration::from_secs(59)).contains(&took),
        "{}: the call took {took:?}",
        backend.name()
    );
    let outcome = w.assert_states(&task, &answer, ["failed"; 4]).await;
    assert_eq!(outcome["errorCode"], "ENDPOINT_UNREACHABLE", "{outcome}");
    assert_eq!(outcome["errorMessage"], "timeout", "{outcome}");
    assert_eq!(fake.seen_at("/slow").len(), 1);
    w.stop().await;
}

/// §6.2 HTTP: GET input goes in the query, POST input in the body; `{placeholders}` are filled
/// from the input, percent-encoded, and left out of the query or body; an execute `input`
/// replaces the task's and is stored.
#[tokio::test]
async fn input_fills_placeholders_then_the_query_or_the_body() {
    for backend in backends() {
        let fake = FakeProvider::start().await;
        let services = vec![
            http_service(
                "p:get",
                "get",
                json!({"url": fake.url, "path": "/json/{thing}", "method": "GET"}),
            ),
            http_service(
                "p:post",
                "post",
                json!({"url": format!("{}/json/{{kind}}", fake.url), "path": "/items/{id}"}),
            ),
        ];
        let w = World::start(&backend, vec![http_catalog(services)], &[]).await;

        let (_, answer) = w
            .executed(
                "get",
                json!({"thing": "a b/c?d#e", "q": "x y", "n": 5, "flag": true, "tags": ["t1", "t2"]}),
            )
            .await;
        assert_eq!(answer["item"]["status"], "completed", "{answer}");
        let calls = fake.seen_at("/json/a%20b%2Fc%3Fd%23e");
        assert_eq!(calls.len(), 1, "{:?}", fake.seen());
        assert_eq!(calls[0].method, "GET");
        assert!(calls[0].body.is_empty(), "a GET has no body");
        assert_eq!(
            query_pairs(calls[0].query.as_deref()),
            [
                ("flag", "true"),
                ("n", "5"),
                ("q", "x y"),
                ("tags", "t1"),
                ("tags", "t2")
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );

        // POST (the default method): placeholders in url and path, the rest is the JSON body.
        let task = w.resolved("post", json!({"kind": "first"})).await;
        let answer = expect_json(
            w.execute(
                &task,
                json!({"input": {"kind": "k/1", "id": 42, "payload": {"a": [1, 2]}, "note": "n"}}),
            )
            .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(answer["item"]["status"], "completed", "{answer}");
        let calls = fake.seen_at("/json/k%2F1/items/42");
        assert_eq!(calls.len(), 1, "{:?}", fake.seen());
        assert_eq!(calls[0].method, "POST");
        assert!(calls[0].query.is_none());
        assert_eq!(
            calls[0].json(),
            json!({"payload": {"a": [1, 2]}, "note": "n"})
        );
        assert_eq!(
            w.task(&task).await["input"],
            json!({"kind": "k/1", "id": 42, "payload": {"a": [1, 2]}, "note": "n"}),
            "the execute input replaced the task's"
        );
        w.stop().await;
    }
}

/// §6.2: a placeholder with no value is `400 VALIDATION_ERROR` `input.<name>` before any call,
/// and nothing is written (not even the execute `input`).
#[tokio::test]
async fn a_missing_placeholder_is_a_validation_error_with_nothing_written() {
    for backend in backends() {
        let fake = FakeProvider::start().await;
        let services = vec![
            http_service(
                "m:path",
                "path",
                json!({"url": fake.url, "path": "/json/{thing}", "method": "GET"}),
            ),
            http_service(
                "m:base",
                "base",
                json!({"url": "{providerBase}", "path": "/json/x"}),
            ),
        ];
        let w = World::start(&backend, vec![http_catalog(services)], &[]).await;
        let task = w.resolved("path", json!({"other": 1})).await;
        for body in [json!({}), json!({"input": {"nothing": "here"}})] {
            let err = expect_error(
                w.execute(&task, body).await,
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
            )
            .await;
            assert_eq!(err["details"]["field"], "input.thing", "{err}");
        }
        // A null or object value does not fill a placeholder either.
        let err = expect_error(
            w.execute(&task, json!({"input": {"thing": {"a": 1}}}))
                .await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(err["details"]["field"], "input.thing", "{err}");
        w.assert_untouched(&task).await;
        assert_eq!(w.task(&task).await["input"], json!({"other": 1}));

        let task = w.resolved("base", json!({})).await;
        let err = expect_error(
            w.execute(&task, json!({})).await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(err["details"]["field"], "input.providerBase", "{err}");
        w.assert_untouched(&task).await;
        assert_eq!(fake.count(), 0, "{:?}", fake.seen());
        w.stop().await;
    }
}

/// §6.2: stored skill credentials fill placeholders (as they are, and an input cannot take the
/// placeholder over) and become headers: `apiKey` → `x-api-key`, `token` → `Authorization:
/// Bearer`, and `metadata.credentialHeaders` entries.
#[tokio::test]
async fn stored_credentials_fill_placeholders_and_become_headers() {
    for backend in backends() {
        let fake = FakeProvider::start().await;
        let mut headers = skill_service(
            "c:headers",
            "tests-cred",
            "testcred",
            "headers",
            json!({"url": "{baseUrl}", "path": "/json/headers/{item}", "method": "POST"}),
        );
        headers["metadata"] = json!({"credentialHeaders": [
            {"credentialKey": "partnerSecret", "header": "X-Partner-Secret", "valuePrefix": "Key "},
            {"credentialKey": "tenant", "header": "X-Tenant"}]});
        let files = vec![skill_catalog("tests-cred", "testcred", vec![headers])];
        let w = World::start(&backend, files, &[]).await;

        // Before the credentials are stored, the placeholder has no value.
        let task = w.resolved("headers", json!({"item": "i1", "q": 1})).await;
        let err = expect_error(
            w.execute(&task, json!({})).await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(err["details"]["field"], "input.baseUrl", "{err}");
        w.assert_untouched(&task).await;

        let config = w
            .store_credentials(
                "tests-cred",
                json!({"baseUrl": format!("{}/", fake.url), "apiKey": "key-123",
                       "token": "tok-456", "partnerSecret": "ps-789", "tenant": "acme"}),
            )
            .await;
        assert_eq!(config["item"]["hasCredentials"], true, "{config}");
        let answer = expect_json(
            w.execute(
                &task,
                json!({"input": {"item": "i 2", "baseUrl": "http://169.254.169.254", "q": 1}}),
            )
            .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(answer["item"]["status"], "completed", "{answer}");
        let calls = fake.seen_at("/json/headers/i%202");
        assert_eq!(calls.len(), 1, "{:?}", fake.seen());
        let call = &calls[0];
        assert_eq!(call.header("x-api-key").as_deref(), Some("key-123"));
        assert_eq!(
            call.header("authorization").as_deref(),
            Some("Bearer tok-456")
        );
        assert_eq!(
            call.header("x-partner-secret").as_deref(),
            Some("Key ps-789")
        );
        assert_eq!(call.header("x-tenant").as_deref(), Some("acme"));
        assert!(call.header("basurl").is_none() && call.header("baseurl").is_none());
        assert!(
            !call.json().as_object().unwrap().contains_key("item"),
            "{}",
            call.json()
        );
        w.stop().await;
    }
}

/// agents-and-runtime.md §3 and orders-and-payments.md §6.1: blocked addresses are refused with
/// `422 blocked-address` before anything is written or sent; runtime endpoints at them cannot
/// even be registered.
#[tokio::test]
async fn blocked_addresses_are_refused_before_any_call() {
    for backend in backends() {
        let services = vec![
            http_service(
                "b:metadata-ip",
                "metadata-ip",
                json!({"url": "http://169.254.169.254", "path": "/latest/meta-data/", "method": "GET"}),
            ),
            http_service(
                "b:metadata-name",
                "metadata-name",
                json!({"url": "http://metadata.google.internal", "path": "/computeMetadata/v1/"}),
            ),
            http_service(
                "b:mapped",
                "mapped",
                json!({"url": "http://[::ffff:169.254.169.254]:8080", "path": "/"}),
            ),
            http_service(
                "b:link-local",
                "link-local",
                json!({"url": "http://169.254.3.4:9000/x"}),
            ),
            http_service("b:zero", "zero", json!({"url": "http://0.0.0.0:9000/x"})),
            skill_service(
                "b:credential",
                "tests-blocked",
                "testblocked",
                "credential-url",
                json!({"url": "{targetUrl}", "path": "/x"}),
            ),
        ];
        let (blocked, others): (Vec<Value>, Vec<Value>) = services
            .into_iter()
            .partition(|s| s["skillKey"] == "tests-blocked");
        let files = vec![
            http_catalog(others),
            skill_catalog("tests-blocked", "testblocked", blocked),
        ];
        let w = World::start(&backend, files, &[]).await;
        w.store_credentials(
            "tests-blocked",
            json!({"targetUrl": "http://169.254.169.254"}),
        )
        .await;
        for operation in [
            "metadata-ip",
            "metadata-name",
            "mapped",
            "link-local",
            "zero",
            "credential-url",
        ] {
            if operation != "credential-url" {
                // Refused on its face: discovery never selects it, and nothing can run.
                let task = w.task_for(operation, json!({})).await;
                let resolved = w.resolve(&task).await;
                assert_eq!(
                    resolved["item"]["status"], "blocked",
                    "{operation}: {resolved}"
                );
                assert_eq!(resolved["resolution"]["kind"], "unavailable", "{operation}");
                expect_error(
                    w.execute(&task, json!({})).await,
                    StatusCode::CONFLICT,
                    "ROUTE_REQUIRED",
                )
                .await;
                continue;
            }
            // The address is known only once the credential fills the URL: execute refuses it.
            let task = w.resolved(operation, json!({})).await;
            let err = expect_error(
                w.execute(&task, json!({})).await,
                StatusCode::UNPROCESSABLE_ENTITY,
                "EXECUTION_UNSUPPORTED",
            )
            .await;
            assert_eq!(
                err["details"]["reason"], "blocked-address",
                "{operation}: {err}"
            );
            w.assert_untouched(&task).await;
        }
        for url in [
            "http://169.254.169.254",
            "http://metadata.google.internal",
            "http://[fe80::1]:8080",
        ] {
            let err = expect_error(
                w.srv
                    .put_json(
                        &w.at("/runtime-endpoints/qvac"),
                        &json!({ "endpointBaseUrl": url }),
                    )
                    .await,
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
            )
            .await;
            assert_eq!(err["details"]["reason"], "blocked-address", "{url}: {err}");
        }
        w.stop().await;
    }
}

/// agents-and-runtime.md §3: scopes are decided by the address connected to. A loopback
/// provider when loopback is not allowed, and a runtime endpoint declared `public` at
/// 127.0.0.1, are refused with `422 network-scope-not-allowed` and no connection at all.
#[tokio::test]
async fn disallowed_network_scopes_are_refused_before_any_connection() {
    for backend in backends() {
        let counter = ConnectionCounter::start().await;
        // By name, so only the address it resolves to (checked when the call is prepared) is
        // outside the scopes; the literal address is refused already at discovery.
        let by_name = counter.url.replace("127.0.0.1", "localhost");
        let services = vec![
            http_service(
                "s:loopback",
                "loopback",
                json!({"url": by_name, "path": "/json/x", "method": "POST"}),
            ),
            http_service(
                "s:loopback-literal",
                "loopback-literal",
                json!({"url": counter.url, "path": "/json/x", "method": "POST"}),
            ),
        ];

        // Loopback not allowed: the provider and a loopback runtime endpoint.
        let w = World::start(
            &backend,
            vec![http_catalog(services.clone())],
            &[(SCOPES, "public,vpn,lan")],
        )
        .await;
        let task = w.resolved("loopback", json!({})).await;
        let err = expect_error(
            w.execute(&task, json!({})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "EXECUTION_UNSUPPORTED",
        )
        .await;
        assert_eq!(
            err["details"]["reason"], "network-scope-not-allowed",
            "{err}"
        );
        w.assert_untouched(&task).await;
        let literal = w.task_for("loopback-literal", json!({})).await;
        let resolved = w.resolve(&literal).await;
        assert_eq!(resolved["item"]["status"], "blocked", "{resolved}");

        let endpoint = expect_json(
            w.srv
                .put_json(
                    &w.at("/runtime-endpoints/qvac"),
                    &json!({"endpointBaseUrl": counter.url}),
                )
                .await,
            StatusCode::CREATED,
        )
        .await;
        assert_eq!(endpoint["item"]["networkScope"], "loopback", "{endpoint}");
        let task = w.create_task(qvac_task(json!({"prompt": "hi"}))).await;
        let id = task["id"].as_str().unwrap();
        let resolved = w.resolve(id).await;
        assert_eq!(resolved["item"]["status"], "blocked", "{resolved}");
        assert_eq!(resolved["resolution"]["kind"], "unavailable");
        assert!(
            resolved["item"]["reason"]
                .as_str()
                .unwrap()
                .contains("not allowed"),
            "{resolved}"
        );
        expect_error(
            w.execute(id, json!({})).await,
            StatusCode::CONFLICT,
            "ROUTE_REQUIRED",
        )
        .await;
        w.stop().await;
        assert_eq!(counter.accepted(), 0, "a connection was made");

        // Every scope allowed, but the runtime endpoint is declared public at 127.0.0.1.
        let w = World::start(&backend, vec![http_catalog(services)], &[]).await;
        let endpoint = expect_json(
            w.srv
                .put_json(
                    &w.at("/runtime-endpoints/qvac"),
                    &json!({"endpointBaseUrl": by_name, "networkScope": "public"}),
                )
                .await,
            StatusCode::CREATED,
        )
        .await;
        assert_eq!(endpoint["item"]["networkScope"], "public", "{endpoint}");
        let task = w.create_task(qvac_task(json!({"prompt": "hi"}))).await;
        let id = task["id"].as_str().unwrap();
        let resolved = w.resolve(id).await;
        assert_eq!(resolved["item"]["status"], "selected", "{resolved}");
        let err = expect_error(
            w.execute(id, json!({})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "EXECUTION_UNSUPPORTED",
        )
        .await;
        assert_eq!(
            err["details"]["reason"], "network-scope-not-allowed",
            "{err}"
        );
        w.assert_untouched(id).await;
        assert_eq!(counter.accepted(), 0, "a connection was made");

        // The control: the loopback provider, allowed here, is connected to.
        let (_, answer) = w.executed("loopback", json!({})).await;
        assert_eq!(answer["item"]["status"], "completed", "{answer}");
        assert_eq!(counter.accepted(), 1);
        w.stop().await;
    }
}

/// §2.2, §2.7 and orders §6.1: a service nothing can execute (no provider endpoint, no runtime
/// endpoint) is not a usable candidate: resolve stores a `blocked` route and execute needs a
/// route; an endpoint removed after resolve gives `422 no-runtime-endpoint` with no change.
#[tokio::test]
async fn services_nothing_can_execute_are_refused() {
    for backend in backends() {
        let fake = FakeProvider::start().await;
        let services = vec![
            merged(
                http_service("n:none", "no-endpoint", json!({})),
                json!({"endpoints": []}),
            ),
            http_service("n:no-url", "no-url", json!({"path": "/json/x"})),
        ];
        let w = World::start(&backend, vec![http_catalog(services)], &[]).await;
        for (operation, service) in [("no-endpoint", "n:none"), ("no-url", "n:no-url")] {
            let task = w.task_for(operation, json!({})).await;
            let discovered = w.discover(&task, json!({})).await;
            assert_eq!(
                discovered["resolution"]["kind"], "unavailable",
                "{discovered}"
            );
            let reason = discovered["resolution"]["reason"].as_str().unwrap();
            assert!(reason.contains("no provider endpoint"), "{reason}");
            assert_eq!(
                discovered["resolution"]["candidates"][0]["service"]["id"],
                service
            );
            let resolved = w.resolve(&task).await;
            assert_eq!(resolved["item"]["status"], "blocked", "{resolved}");
            assert_eq!(resolved["item"]["selectedServiceId"], service);
            assert_eq!(resolved["item"]["reason"], reason);
            let record = w.task(&task).await;
            assert_eq!(record["status"], "resolving", "{record}");
            assert_eq!(record["routeId"], resolved["item"]["id"]);
            expect_error(
                w.execute(&task, json!({})).await,
                StatusCode::CONFLICT,
                "ROUTE_REQUIRED",
            )
            .await;
        }

        // No runtime endpoint for qvac.
        let task = w.create_task(qvac_task(json!({"prompt": "hi"}))).await;
        let id = task["id"].as_str().unwrap();
        let resolved = w.resolve(id).await;
        assert_eq!(resolved["item"]["status"], "blocked", "{resolved}");
        assert_eq!(
            resolved["item"]["reason"],
            "The machine has no runtime endpoint for qvac"
        );
        assert_eq!(
            resolved["item"]["integrationStatus"],
            "local-config-required"
        );

        // An endpoint deleted between resolve and execute.
        expect_json(
            w.srv
                .put_json(
                    &w.at("/runtime-endpoints/qvac"),
                    &json!({"endpointBaseUrl": fake.url}),
                )
                .await,
            StatusCode::CREATED,
        )
        .await;
        let resolved = w.resolve(id).await;
        assert_eq!(resolved["item"]["status"], "selected", "{resolved}");
        let response = w.srv.delete(&w.at("/runtime-endpoints/qvac")).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let err = expect_error(
            w.execute(id, json!({})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "EXECUTION_UNSUPPORTED",
        )
        .await;
        assert_eq!(err["details"]["reason"], "no-runtime-endpoint", "{err}");
        w.assert_untouched(id).await;
        assert_eq!(fake.count(), 0, "{:?}", fake.seen());

        // The endpoint's own audit events (§5.3).
        let upserted = w.events("runtime-endpoint.upserted").await;
        assert_eq!(upserted.len(), 1, "{upserted:?}");
        assert_eq!(upserted[0]["resourceType"], "runtime-endpoint");
        assert_eq!(
            upserted[0]["payload"],
            json!({"providerKey": "qvac", "source": "manual", "endpointBaseUrl": fake.url,
                   "networkScope": "loopback", "status": "active", "hasAuthToken": false,
                   "created": true})
        );
        let deleted = w.events("runtime-endpoint.deleted").await;
        assert_eq!(deleted.len(), 1, "{deleted:?}");
        assert_eq!(deleted[0]["resourceId"], upserted[0]["resourceId"]);
        assert_eq!(
            deleted[0]["payload"],
            json!({"providerKey": "qvac", "source": "manual"})
        );
        w.stop().await;
    }
}

/// §2.8 step 3: a service whose payment is required cannot run as a bare task.
#[tokio::test]
async fn a_paid_service_needs_an_order() {
    for backend in backends() {
        let fake = FakeProvider::start().await;
        let paid = merged(
            http_service(
                "o:paid",
                "paid",
                json!({"url": fake.url, "path": "/json/paid"}),
            ),
            json!({"pricing": {"mode": "fixed", "amount": 1, "currency": "USDC"},
                   "payment": {"defaultRail": "wallet", "supportedRails": ["wallet"], "required": true}}),
        );
        let w = World::start(&backend, vec![http_catalog(vec![paid])], &[]).await;
        let task = w.resolved("paid", json!({})).await;
        let err = expect_error(
            w.execute(&task, json!({})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "EXECUTION_UNSUPPORTED",
        )
        .await;
        assert_eq!(err["details"]["reason"], "order-required", "{err}");
        w.assert_untouched(&task).await;
        assert_eq!(fake.count(), 0);
        w.stop().await;
    }
}

/// §2.8 step 5 and orders §6.3: a handoff is `202`, calls nothing, and records an `external`
/// outcome whose `externalRef` is the handoff URL.
#[tokio::test]
async fn a_handoff_service_executes_as_202_external() {
    for backend in backends() {
        let handoff = json!({"label": "Open the partner console", "url": "https://partner.example/start",
                             "notes": ["needs an account"]});
        let service = merged(
            http_service("h:partner", "partner", json!({})),
            json!({"executionMode": "external-handoff", "integrationStatus": "partner-required",
                   "endpoints": [], "handoff": handoff}),
        );
        let w = World::start(&backend, vec![http_catalog(vec![service])], &[]).await;
        let task = w.task_for("partner", json!({"x": 1})).await;
        let resolved = w.resolve(&task).await;
        assert_eq!(resolved["resolution"]["kind"], "handoff", "{resolved}");
        assert_eq!(resolved["resolution"]["handoff"], handoff);
        assert_eq!(resolved["item"]["status"], "selected");
        assert_eq!(resolved["item"]["executionMode"], "external-handoff");
        assert_eq!(resolved["item"]["handoff"], handoff);
        let answer = expect_json(w.execute(&task, json!({})).await, StatusCode::ACCEPTED).await;
        let outcome = w
            .assert_states(
                &task,
                &answer,
                ["handed_off", "handed_off", "external", "external"],
            )
            .await;
        assert_eq!(outcome["externalRef"], "https://partner.example/start");
        assert!(outcome["result"].is_null() && outcome["errorCode"].is_null());
        assert_eq!(answer["resolution"]["kind"], "handoff");
        let executed = w.events("task.executed").await;
        assert_eq!(executed[0]["payload"]["status"], "external");
        assert_eq!(executed[0]["payload"]["statusCode"], 202);
        expect_error(
            w.execute(&task, json!({})).await,
            StatusCode::CONFLICT,
            "ROUTE_REQUIRED",
        )
        .await;
        w.stop().await;
    }
}

/// §2.4 and the Gate B: every validation rule of task creation, the defaults, and that a
/// refused request writes nothing.
#[tokio::test]
async fn task_requests_are_validated() {
    for backend in backends() {
        let w = World::start(&backend, vec![http_catalog(vec![])], &[]).await;
        let base = json!({"serviceType": DEVICE, "taskType": "t"});
        for (body, field) in [
            (json!({}), "serviceType"),
            (json!({"taskType": "t"}), "serviceType"),
            (
                json!({"serviceType": "teleportation", "taskType": "t"}),
                "serviceType",
            ),
            (json!({"serviceType": DEVICE}), "taskType"),
            (json!({"serviceType": DEVICE, "taskType": "  "}), "taskType"),
            (merged(base.clone(), json!({"operation": ""})), "operation"),
            (
                merged(base.clone(), json!({"constraints": {"budget": -1}})),
                "constraints.budget",
            ),
            (
                merged(
                    base.clone(),
                    json!({"constraints": {"preferredSkillKeys": [HTTP_SKILL, "no-such-skill"]}}),
                ),
                "constraints.preferredSkillKeys[1]",
            ),
            (
                merged(base.clone(), json!({"discovery": {"maxCandidates": 0}})),
                "discovery.maxCandidates",
            ),
            (
                merged(base.clone(), json!({"discovery": {"maxCandidates": 26}})),
                "discovery.maxCandidates",
            ),
            (
                merged(base.clone(), json!({"discovery": {"maxCandidates": -3}})),
                "discovery.maxCandidates",
            ),
        ] {
            let err = expect_error(
                w.srv.post_json(&w.at("/tasks"), &body).await,
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
            )
            .await;
            assert_eq!(err["details"]["field"], field, "{body}: {err}");
        }
        let err = expect_error(
            w.srv
                .post_json(
                    &w.at("/tasks"),
                    &merged(
                        base.clone(),
                        json!({"constraints": {"preferredSkillKeys": ["no-such-skill"]}}),
                    ),
                )
                .await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(err["details"]["reason"], "unknown-skill", "{err}");
        for body in [
            merged(base.clone(), json!({"input": "text"})),
            merged(
                base.clone(),
                json!({"constraints": {"requiredCapabilities": "gpu"}}),
            ),
            merged(base.clone(), json!({"discovery": {"maxCandidates": 2.5}})),
        ] {
            expect_error(
                w.srv.post_json(&w.at("/tasks"), &body).await,
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
            )
            .await;
        }
        assert!(all_items(&w.srv, &w.at("/tasks")).await.is_empty());
        assert!(w.events("task.created").await.is_empty());

        // Defaults, an alias, and the bounds of maxCandidates.
        let task = w
            .create_task(json!({"serviceType": "compute", "taskType": "chat"}))
            .await;
        assert_eq!(task["serviceType"], "compute.marketplace");
        assert_eq!(task["status"], "queued");
        assert!(task["id"].as_str().unwrap().starts_with("tsk_"));
        assert_eq!(task["input"], json!({}));
        assert!(task["operation"].is_null() && task["routeId"].is_null());
        assert!(task["outcomeId"].is_null());
        assert_eq!(
            task["constraints"],
            json!({"region": null, "budget": null, "allowExternalHandoff": true,
                   "requireNativeExecution": false, "requiredCapabilities": [],
                   "preferredSkillKeys": []})
        );
        assert_eq!(task["discovery"], json!({"maxCandidates": 10}));
        for max in [1, 25] {
            let task = w
                .create_task(merged(
                    base.clone(),
                    json!({"discovery": {"maxCandidates": max}}),
                ))
                .await;
            assert_eq!(task["discovery"]["maxCandidates"], max);
        }
        let listed = all_items(&w.srv, &w.at("/tasks")).await;
        assert_eq!(listed.len(), 3);
        assert_eq!(listed[0]["id"], task["id"], "oldest first");

        // Discover's own maxCandidates.
        let id = task["id"].as_str().unwrap();
        for max in [0, 26] {
            let err = expect_error(
                w.srv
                    .post_json(
                        &w.at(&format!("/tasks/{id}/discover")),
                        &json!({ "maxCandidates": max }),
                    )
                    .await,
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
            )
            .await;
            assert_eq!(err["details"]["field"], "maxCandidates", "{err}");
        }

        // 404s: unknown task, another machine's task, unknown machine.
        let other = w.srv.unverified_active_machine().await;
        for path in [
            w.at("/tasks/tsk_nope"),
            format!("/api/v1/machines/{other}/tasks/{id}"),
        ] {
            expect_error(w.srv.get(&path).await, StatusCode::NOT_FOUND, "NOT_FOUND").await;
        }
        for action in ["discover", "resolve", "execute"] {
            expect_error(
                w.srv
                    .post_json(
                        &format!("/api/v1/machines/{other}/tasks/{id}/{action}"),
                        &json!({}),
                    )
                    .await,
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
            )
            .await;
        }
        expect_error(
            w.srv
                .post_json("/api/v1/machines/mach_nope/tasks", &base)
                .await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;

        // Gate B: a machine that is not active.
        let draft = expect_json(
            w.srv
                .post_json(
                    "/api/v1/machines",
                    &json!({"displayName": "d", "ownerId": "o", "machineType": "t",
                            "runtimeProfile": "r", "identityRef": format!("did:peaq:{}", rand_u64())}),
                )
                .await,
            StatusCode::CREATED,
        )
        .await["item"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let at = |rest: &str| format!("/api/v1/machines/{draft}{rest}");
        expect_error(
            w.srv.post_json(&at("/tasks"), &base).await,
            StatusCode::CONFLICT,
            "MACHINE_NOT_ACTIVE",
        )
        .await;
        for path in [at("/tasks"), at("/routes"), at("/outcomes")] {
            expect_error(
                w.srv.get(&path).await,
                StatusCode::CONFLICT,
                "MACHINE_NOT_ACTIVE",
            )
            .await;
        }
        expect_error(
            w.srv.get(&format!("/api/v1/runs?machineId={draft}")).await,
            StatusCode::CONFLICT,
            "MACHINE_NOT_ACTIVE",
        )
        .await;
        w.stop().await;
    }
}

/// §2.1, §2.6–§2.8: the task life cycle: overrides saved by discover, the route resolve
/// stores, `ROUTE_REQUIRED` before resolve and after a route ran, `task-closed` after execution,
/// `422` with `details.resolution` when no candidate exists.
#[tokio::test]
async fn discover_resolve_and_execute_follow_the_task_life_cycle() {
    for backend in backends() {
        let fake = FakeProvider::start().await;
        let first = http_service(
            "l:json",
            "json",
            json!({"url": fake.url, "path": "/json/first"}),
        );
        let second = skill_service(
            "l:json-alt",
            "tests-alt",
            "testalt",
            "json",
            json!({"url": fake.url, "path": "/json/second"}),
        );
        let handoff = merged(
            http_service("l:handoff", "handoff-only", json!({})),
            json!({"executionMode": "external-handoff", "integrationStatus": "partner-required",
                   "endpoints": [], "handoff": {"label": "Go", "url": "https://partner.example"}}),
        );
        let files = vec![
            http_catalog(vec![first, handoff]),
            skill_catalog("tests-alt", "testalt", vec![second]),
        ];
        let w = World::start(&backend, files, &[]).await;
        let task = w.task_for("json", json!({"v": 1})).await;
        expect_error(
            w.execute(&task, json!({})).await,
            StatusCode::CONFLICT,
            "ROUTE_REQUIRED",
        )
        .await;

        // Discover: overrides are saved into the task; the status becomes resolving.
        let discovered = w
            .discover(
                &task,
                json!({"maxCandidates": 1, "requireNativeExecution": true, "allowExternalHandoff": false}),
            )
            .await;
        assert_eq!(discovered["taskId"], task.as_str());
        assert_eq!(discovered["machineId"], w.machine.as_str());
        assert_eq!(discovered["candidates"].as_array().unwrap().len(), 1);
        assert_eq!(discovered["candidates"][0]["service"]["id"], "l:json");
        assert!(discovered["candidates"][0]["score"].is_number());
        assert!(discovered["candidates"][0]["reasons"].is_array());
        assert_eq!(discovered["resolution"]["kind"], "native");
        assert_eq!(
            discovered["resolution"]["candidate"]["service"]["id"],
            "l:json"
        );
        let record = w.task(&task).await;
        assert_eq!(record["status"], "resolving");
        assert_eq!(record["discovery"]["maxCandidates"], 1);
        assert_eq!(record["constraints"]["requireNativeExecution"], true);
        assert_eq!(record["constraints"]["allowExternalHandoff"], false);
        let discovered = w.discover(&task, json!({})).await;
        assert_eq!(
            discovered["candidates"].as_array().unwrap().len(),
            1,
            "saved"
        );
        let discovered = w.discover(&task, json!({"maxCandidates": 5})).await;
        let ids: Vec<&Value> = discovered["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| &c["service"]["id"])
            .collect();
        assert_eq!(ids, [&json!("l:json"), &json!("l:json-alt")]);

        // Resolve: a selected route, the rest as the fallback chain; resolving again replaces it.
        let resolved = w.resolve(&task).await;
        let route = &resolved["item"];
        assert!(route["id"].as_str().unwrap().starts_with("rte_"));
        assert_eq!(route["status"], "selected");
        assert_eq!(route["taskId"], task.as_str());
        assert_eq!(route["machineId"], w.machine.as_str());
        assert_eq!(route["selectedServiceId"], "l:json");
        assert_eq!(route["selectedSkillKey"], HTTP_SKILL);
        assert_eq!(route["executionMode"], "native");
        assert_eq!(route["integrationStatus"], "native");
        assert!(route["score"].as_f64().unwrap() > 0.0);
        assert!(route["reason"].as_str().unwrap().starts_with("native"));
        assert_eq!(
            route["fallbackChain"],
            json!([{"skillKey": "tests-alt", "serviceId": "l:json-alt", "executionMode": "native"}])
        );
        assert!(route["handoff"].is_null());
        assert_eq!(resolved["resolution"]["kind"], "native");
        let record = w.task(&task).await;
        assert_eq!(record["status"], "resolved");
        assert_eq!(record["routeId"], route["id"]);
        let again = w.resolve(&task).await;
        assert_ne!(again["item"]["id"], route["id"]);
        assert_eq!(w.task(&task).await["routeId"], again["item"]["id"]);

        // Execute once; then the route is spent and the task closed.
        let answer = expect_json(w.execute(&task, json!({})).await, StatusCode::OK).await;
        assert_eq!(answer["item"]["routeId"], again["item"]["id"]);
        assert_eq!(answer["item"]["status"], "completed", "{answer}");
        assert_eq!(fake.seen_at("/json/first").len(), 1);
        expect_error(
            w.execute(&task, json!({})).await,
            StatusCode::CONFLICT,
            "ROUTE_REQUIRED",
        )
        .await;
        for action in ["discover", "resolve"] {
            let err = expect_error(
                w.srv
                    .post_json(&w.at(&format!("/tasks/{task}/{action}")), &json!({}))
                    .await,
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
            )
            .await;
            assert_eq!(err["details"]["reason"], "task-closed", "{action}: {err}");
            assert_eq!(err["details"]["status"], "completed", "{action}: {err}");
        }
        assert_eq!(w.task(&task).await["status"], "completed");

        // preferredSkillKeys lifts a candidate above its tie.
        let preferred = w
            .create_task(
                json!({"serviceType": DEVICE, "taskType": "t", "operation": "json",
                                "constraints": {"preferredSkillKeys": ["tests-alt"]}}),
            )
            .await;
        let discovered = w
            .discover(preferred["id"].as_str().unwrap(), json!({}))
            .await;
        assert_eq!(discovered["candidates"][0]["service"]["id"], "l:json-alt");
        assert_eq!(
            discovered["resolution"]["candidate"]["service"]["id"],
            "l:json-alt"
        );
        assert!(
            discovered["candidates"][0]["score"].as_f64().unwrap()
                > discovered["candidates"][1]["score"].as_f64().unwrap()
        );

        // No candidate: 422 with the resolution, and the task keeps its status and no route.
        let handoff_task = w.task_for("handoff-only", json!({})).await;
        let discovered = w
            .discover(&handoff_task, json!({"allowExternalHandoff": false}))
            .await;
        assert_eq!(discovered["resolution"]["kind"], "unavailable");
        assert_eq!(discovered["candidates"], json!([]));
        for id in [
            handoff_task.clone(),
            w.task_for("nothing-offers-this", json!({})).await,
        ] {
            let before = w.task(&id).await;
            let err = expect_error(
                w.resolve_response(&id).await,
                StatusCode::UNPROCESSABLE_ENTITY,
                "EXECUTION_UNSUPPORTED",
            )
            .await;
            let resolution = &err["details"]["resolution"];
            assert_eq!(resolution["kind"], "unavailable", "{err}");
            assert_eq!(resolution["candidates"], json!([]), "{err}");
            assert_eq!(
                resolution["reason"], "no candidate matches the constraints",
                "{err}"
            );
            let after = w.task(&id).await;
            assert_eq!(after["status"], before["status"]);
            assert!(after["routeId"].is_null(), "{after}");
        }
        assert_eq!(w.task(&handoff_task).await["status"], "resolving");
        // With handoff allowed again, the same task resolves to the handoff.
        let discovered = w
            .discover(&handoff_task, json!({"allowExternalHandoff": true}))
            .await;
        assert_eq!(discovered["resolution"]["kind"], "handoff");
        w.stop().await;
    }
}

/// §3.2–§3.5: routes and outcomes lists, runs filtered by status, skill, service and execution
/// mode, and one run with its outcome.
#[tokio::test]
async fn routes_outcomes_and_runs_are_listed_and_filtered() {
    for backend in backends() {
        let fake = FakeProvider::start().await;
        let services = vec![
            http_service("r:ok", "ok", json!({"url": fake.url, "path": "/json/ok"})),
            http_service(
                "r:fail",
                "fail",
                json!({"url": fake.url, "path": "/status/500"}),
            ),
            merged(
                http_service("r:handoff", "handoff", json!({})),
                json!({"executionMode": "external-handoff", "integrationStatus": "partner-required",
                       "endpoints": [], "handoff": {"label": "Go", "url": "https://partner.example"}}),
            ),
        ];
        let w = World::start(&backend, vec![http_catalog(services)], &[]).await;
        let (ok_task, ok) = w.executed("ok", json!({})).await;
        let (_, failed) = w.executed("fail", json!({})).await;
        let handoff_task = w.resolved("handoff", json!({})).await;
        let handed = expect_json(
            w.execute(&handoff_task, json!({})).await,
            StatusCode::ACCEPTED,
        )
        .await;
        // Another machine's executions are not listed.
        let other = w.srv.unverified_active_machine().await;
        let other_task = expect_json(
            w.srv
                .post_json(
                    &format!("/api/v1/machines/{other}/tasks"),
                    &json!({"serviceType": DEVICE, "taskType": "t", "operation": "ok"}),
                )
                .await,
            StatusCode::CREATED,
        )
        .await["item"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        for action in ["resolve", "execute"] {
            let response = w
                .srv
                .post_json(
                    &format!("/api/v1/machines/{other}/tasks/{other_task}/{action}"),
                    &json!({}),
                )
                .await;
            assert!(response.status().is_success(), "{action}");
        }

        let run_ids = |runs: &[Value]| -> Vec<String> {
            runs.iter()
                .map(|r| r["id"].as_str().unwrap().to_string())
                .collect()
        };
        let ids = [&ok, &failed, &handed].map(|a| a["run"]["id"].as_str().unwrap().to_string());
        let runs = w.runs().await;
        assert_eq!(run_ids(&runs), ids, "oldest first, this machine only");
        assert!(runs.iter().all(|r| r["machineId"] == w.machine.as_str()));
        let outcomes = w.outcomes().await;
        assert_eq!(
            outcomes.iter().map(|o| &o["id"]).collect::<Vec<_>>(),
            [
                &ok["item"]["id"],
                &failed["item"]["id"],
                &handed["item"]["id"]
            ]
        );
        let routes = all_items(&w.srv, &w.at("/routes")).await;
        assert_eq!(
            routes.iter().map(|r| &r["status"]).collect::<Vec<_>>(),
            [&json!("completed"), &json!("failed"), &json!("handed_off")]
        );
        // Pages of one.
        let page = expect_json(w.srv.get(&w.at("/routes?limit=1")).await, StatusCode::OK).await;
        assert_eq!(page["items"].as_array().unwrap().len(), 1);
        let cursor = page["nextCursor"].as_str().unwrap();
        let next = expect_json(
            w.srv
                .get(&w.at(&format!("/routes?limit=1&cursor={cursor}")))
                .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(next["items"][0]["id"], routes[1]["id"]);

        let machine = &w.machine;
        for (filter, expected) in [
            ("status=completed", vec![ids[0].clone()]),
            ("status=failed", vec![ids[1].clone()]),
            ("status=external", vec![ids[2].clone()]),
            ("status=running", vec![]),
            ("serviceId=r:fail", vec![ids[1].clone()]),
            ("skillKey=tests-http", ids.to_vec()),
            ("skillKey=qvac-private-inference", vec![]),
            ("executionMode=native", vec![ids[0].clone(), ids[1].clone()]),
            ("executionMode=external-handoff", vec![ids[2].clone()]),
            ("status=failed&serviceId=r:ok", vec![]),
            (
                "status=completed&executionMode=native&skillKey=tests-http&serviceId=r:ok",
                vec![ids[0].clone()],
            ),
        ] {
            let runs = all_items(
                &w.srv,
                &format!("/api/v1/runs?machineId={machine}&{filter}"),
            )
            .await;
            assert_eq!(run_ids(&runs), expected, "{filter}");
        }
        for (query, field) in [
            (String::new(), "machineId"),
            ("status=completed".to_string(), "machineId"),
            (format!("machineId={machine}&status=done"), "status"),
            (
                format!("machineId={machine}&executionMode=remote"),
                "executionMode",
            ),
            (format!("machineId={machine}&limit=0"), "limit"),
        ] {
            let err = expect_error(
                w.srv.get(&format!("/api/v1/runs?{query}")).await,
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
            )
            .await;
            assert_eq!(err["details"]["field"], field, "{query}: {err}");
        }
        expect_error(
            w.srv.get("/api/v1/runs?machineId=mach_nope").await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;

        // One run with its outcome.
        let detail = expect_json(
            w.srv.get(&format!("/api/v1/runs/{}", ids[0])).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(detail["run"], ok["run"]);
        assert_eq!(detail["outcome"], ok["item"]);
        let run = &detail["run"];
        assert_eq!(run["taskId"], ok_task.as_str());
        assert_eq!(run["skillKey"], HTTP_SKILL);
        assert_eq!(run["serviceId"], "r:ok");
        assert_eq!(run["executionMode"], "native");
        assert!(run["id"].as_str().unwrap().starts_with("run_"));
        assert!(
            detail["outcome"]["id"]
                .as_str()
                .unwrap()
                .starts_with("out_")
        );
        assert!(run["createdAt"].is_string() && run["updatedAt"].is_string());
        expect_error(
            w.srv.get("/api/v1/runs/run_nope").await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;

        // Gate B applies to the run's machine.
        expect_json(
            w.srv
                .patch_json(
                    &format!("/api/v1/machines/{machine}"),
                    &json!({"status": "degraded"}),
                )
                .await,
            StatusCode::OK,
        )
        .await;
        for path in [
            format!("/api/v1/runs/{}", ids[0]),
            format!("/api/v1/runs?machineId={machine}"),
            w.at("/routes"),
            w.at("/outcomes"),
        ] {
            let err = expect_error(
                w.srv.get(&path).await,
                StatusCode::CONFLICT,
                "MACHINE_NOT_ACTIVE",
            )
            .await;
            assert_eq!(err["details"]["status"], "degraded", "{path}: {err}");
        }
        w.stop().await;
    }
}

/// §5.3: the task events with their payloads, skill config events, and the filters of
/// `GET /audit-events` (§5.2), newest first.
#[tokio::test]
async fn task_features_write_their_audit_events() {
    for backend in backends() {
        let fake = FakeProvider::start().await;
        let services = vec![
            http_service("a:ok", "ok", json!({"url": fake.url, "path": "/json/ok"})),
            http_service("a:none", "none", json!({"path": "/x"})),
        ];
        let w = World::start(&backend, vec![http_catalog(services)], &[]).await;
        let task = w.task_for("ok", json!({})).await;
        w.srv.clock.advance_ms(5);
        w.discover(&task, json!({})).await;
        w.srv.clock.advance_ms(5);
        let resolved = w.resolve(&task).await;
        w.srv.clock.advance_ms(5);
        let answer = expect_json(w.execute(&task, json!({})).await, StatusCode::OK).await;

        let events = all_items(
            &w.srv,
            &format!("/api/v1/audit-events?resourceType=task&resourceId={task}"),
        )
        .await;
        let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            [
                "task.executed",
                "task.resolved",
                "task.discovered",
                "task.created"
            ],
            "newest first"
        );
        for event in &events {
            assert_eq!(event["resourceType"], "task");
            assert_eq!(event["resourceId"], task.as_str());
            assert_eq!(event["machineId"], w.machine.as_str());
            assert_eq!(event["actor"], "api");
            assert!(event["id"].as_str().unwrap().starts_with("evt_"));
        }
        assert_eq!(
            events[3]["payload"],
            json!({"serviceType": DEVICE, "taskType": "test", "operation": "ok"})
        );
        assert_eq!(
            events[2]["payload"],
            json!({"candidateCount": 1, "resolutionKind": "native"})
        );
        assert_eq!(
            events[1]["payload"],
            json!({"routeId": resolved["item"]["id"], "routeStatus": "selected",
                   "resolutionKind": "native"})
        );
        assert_eq!(
            events[0]["payload"],
            json!({"routeId": resolved["item"]["id"], "runId": answer["run"]["id"],
                   "outcomeId": answer["item"]["id"], "status": "completed", "statusCode": 200})
        );

        // A blocked route's resolve event.
        let blocked = w.task_for("none", json!({})).await;
        let route = w.resolve(&blocked).await;
        let events = all_items(
            &w.srv,
            &format!("/api/v1/audit-events?type=task.resolved&resourceId={blocked}"),
        )
        .await;
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0]["payload"],
            json!({"routeId": route["item"]["id"], "routeStatus": "blocked",
                   "resolutionKind": "unavailable"})
        );

        // The filters combine with AND.
        let other = w.srv.unverified_active_machine().await;
        expect_json(
            w.srv
                .post_json(
                    &format!("/api/v1/machines/{other}/tasks"),
                    &json!({"serviceType": DEVICE, "taskType": "other"}),
                )
                .await,
            StatusCode::CREATED,
        )
        .await;
        let created =
            |machine: &str| format!("/api/v1/audit-events?type=task.created&machineId={machine}");
        let mine = all_items(&w.srv, &created(&w.machine)).await;
        assert_eq!(mine.len(), 2, "{mine:?}");
        assert_eq!(mine[0]["resourceId"], blocked.as_str(), "newest first");
        let theirs = all_items(&w.srv, &created(&other)).await;
        assert_eq!(theirs.len(), 1);
        assert_eq!(theirs[0]["payload"]["taskType"], "other");
        assert_eq!(theirs[0]["payload"]["operation"], Value::Null);
        let none = all_items(
            &w.srv,
            &format!("/api/v1/audit-events?type=task.created&machineId={other}&resourceId={task}"),
        )
        .await;
        assert!(none.is_empty(), "{none:?}");
        let wrong_type = all_items(
            &w.srv,
            &format!("/api/v1/audit-events?resourceType=graph-node&resourceId={task}"),
        )
        .await;
        assert!(wrong_type.is_empty());

        // Skill config: keys, never values.
        w.store_credentials(HTTP_SKILL, json!({"apiKey": "audit-secret-value"}))
            .await;
        let config = all_items(
            &w.srv,
            &format!("/api/v1/audit-events?type=skill.config-updated&resourceId={HTTP_SKILL}"),
        )
        .await;
        assert_eq!(config.len(), 1, "{config:?}");
        assert_eq!(config[0]["resourceType"], "skill");
        assert_eq!(config[0]["payload"]["credentialKeys"], json!(["apiKey"]));
        assert_eq!(config[0]["payload"]["hasCredentials"], true);
        assert!(!config[0].to_string().contains("audit-secret-value"));
        w.stop().await;
    }
}

/// README §3.13 and orchestration §5.1: planted credentials (a runtime token, skill
/// credentials) reach the provider but never an outcome, a run, a route, a task, an audit
/// payload, or the database (the SQLite file and WAL after a checkpoint; a `pg_dump`).
#[tokio::test]
async fn credentials_never_reach_records_audit_or_the_database() {
    for backend in backends() {
        let fake = FakeProvider::start().await;
        let mut cred = skill_service(
            "k:cred",
            "tests-cred",
            "testcred",
            "cred",
            json!({"url": "{baseUrl}", "path": "/json/cred", "method": "POST"}),
        );
        cred["metadata"] = json!({"credentialHeaders": [
            {"credentialKey": "partnerSecret", "header": "x-partner-secret"}]});
        let failing = skill_service(
            "k:fail",
            "tests-cred",
            "testcred",
            "cred-fail",
            json!({"url": "{baseUrl}", "path": "/status/500"}),
        );
        let files = vec![skill_catalog("tests-cred", "testcred", vec![cred, failing])];
        let w = World::start(&backend, files, &[]).await;
        let n = rand_u64();
        let mut secrets = vec![
            format!("plantedRuntimeToken{n}"),
            format!("plantedApiKey{n}"),
            format!("plantedBearer{n}"),
            format!("plantedPartner{n}"),
        ];
        // With an Idempotency-Key, the enrolment answer (it carries the agent token) is stored.
        let enrolment = w
            .srv
            .request(reqwest::Method::POST, &w.at("/agents/enrollment"))
            .header("idempotency-key", format!("enrol-{n}"))
            .json(&json!({"allowedProviderKeys": ["qvac"]}))
            .send()
            .await
            .unwrap();
        let agent = expect_json(enrolment, StatusCode::CREATED).await["item"].clone();
        let agent_token = agent["agentToken"].as_str().unwrap().to_string();
        let beat = lease_qvac(&w.srv, &w.machine, &agent, &fake.url, &secrets[0], 300).await;
        let replayed_beat = w
            .srv
            .request(reqwest::Method::POST, "/api/v1/machine-agents/heartbeat")
            .header("idempotency-key", format!("beat-{n}"))
            .json(
                &json!({"machineId": w.machine, "agentId": agent["id"], "agentToken": agent_token,
                          "leaseSeconds": 300,
                          "endpoints": [{"providerKey": "qvac", "endpointBaseUrl": fake.url,
                                         "authType": "bearer", "authToken": secrets[0],
                                         "modelAlias": "alias-7b"}]}),
            )
            .send()
            .await
            .unwrap();
        let replayed_beat = expect_json(replayed_beat, StatusCode::OK).await;
        let config = w
            .store_credentials(
                "tests-cred",
                json!({"baseUrl": fake.url, "apiKey": secrets[1], "token": secrets[2],
                       "partnerSecret": secrets[3]}),
            )
            .await;

        let qvac = w.create_task(qvac_task(json!({"prompt": "hi"}))).await;
        let qvac = qvac["id"].as_str().unwrap();
        w.resolve(qvac).await;
        let runtime_answer = expect_json(w.execute(qvac, json!({})).await, StatusCode::OK).await;
        assert_eq!(runtime_answer["item"]["status"], "completed");
        let (_, cred_answer) = w.executed("cred", json!({"x": 1})).await;
        assert_eq!(cred_answer["item"]["status"], "completed", "{cred_answer}");
        let (_, fail_answer) = w.executed("cred-fail", json!({})).await;
        assert_eq!(fail_answer["item"]["status"], "failed");

        // The provider got them.
        let chat = &fake.seen_at("/v1/chat/completions")[0];
        assert_eq!(
            chat.header("authorization"),
            Some(format!("Bearer {}", secrets[0]))
        );
        let call = &fake.seen_at("/json/cred")[0];
        assert_eq!(call.header("x-api-key").as_ref(), Some(&secrets[1]));
        assert_eq!(
            call.header("authorization"),
            Some(format!("Bearer {}", secrets[2]))
        );
        assert_eq!(call.header("x-partner-secret").as_ref(), Some(&secrets[3]));

        // No API answer carries them.
        let mut seen = vec![
            beat,
            replayed_beat,
            config,
            runtime_answer,
            cred_answer,
            fail_answer,
        ];
        for path in [
            w.at("/tasks"),
            w.at("/routes"),
            w.at("/outcomes"),
            w.at("/runtime-endpoints"),
            w.at("/agents"),
            format!("/api/v1/runs?machineId={}", w.machine),
            "/api/v1/audit-events".to_string(),
        ] {
            seen.extend(all_items(&w.srv, &path).await);
        }
        for run in w.runs().await {
            seen.push(
                expect_json(
                    w.srv
                        .get(&format!("/api/v1/runs/{}", run["id"].as_str().unwrap()))
                        .await,
                    StatusCode::OK,
                )
                .await,
            );
        }
        seen.push(expect_json(w.srv.get("/api/v1/skills/tests-cred").await, StatusCode::OK).await);
        let text = serde_json::to_string(&seen).unwrap();
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "{secret} in an API answer");
        }

        // Nor the database; nor the agent token (only its hash is kept, and the stored
        // enrolment answer is sealed).
        secrets.push(agent_token);
        let stored = database_text(&w.srv).await;
        assert!(
            stored.len() > 10_000,
            "the dump is empty: {} bytes",
            stored.len()
        );
        assert!(
            stored.contains(w.machine.as_str()),
            "the dump misses the data"
        );
        for secret in &secrets {
            assert!(
                !stored.contains(secret.as_str()),
                "{secret} stored in the clear"
            );
        }
        w.stop().await;
    }
}

/// Everything the database holds, as (lossy) text: the SQLite file and its WAL, read before
/// and after a checkpoint; on PostgreSQL a `pg_dump`.
async fn database_text(srv: &TestServer) -> String {
    use sqlx::Connection;
    match &srv.db.backend {
        Backend::Sqlite => {
            let path = srv.db.url.trim_start_matches("sqlite://").to_string();
            let read = |suffix: &str| {
                std::fs::read(format!("{path}{suffix}"))
                    .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                    .unwrap_or_default()
            };
            let mut text = read("") + &read("-wal");
            let mut conn = sqlx::SqliteConnection::connect(&srv.db.url).await.unwrap();
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&mut conn)
                .await
                .unwrap();
            conn.close().await.unwrap();
            text.push_str(&read(""));
            text.push_str(&read("-wal"));
            text
        }
        Backend::Postgres(_) => {
            let output = std::process::Command::new("pg_dump")
                .arg("--no-owner")
                .arg(&srv.db.url)
                .output()
                .expect("pg_dump runs");
            assert!(
                output.status.success(),
                "pg_dump: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8_lossy(&output.stdout).into_owned()
        }
    }
}

/// A client that goes away mid-call does not stop the execution: the call finishes and its
/// result is committed (with the idempotency record), so the rows never stay `running` and a
/// retry with the same key gets the stored answer, without a second call.
#[tokio::test]
async fn a_client_that_goes_away_mid_call_still_gets_its_execution_recorded() {
    for backend in backends() {
        let fake = FakeProvider::start().await;
        let services = vec![http_service(
            "x:delayed",
            "delayed",
            json!({"url": fake.url, "path": "/delay/700"}),
        )];
        let w = World::start(&backend, vec![http_catalog(services)], &[]).await;
        let task = w.resolved("delayed", json!({})).await;
        let execute = || {
            w.srv
                .request(
                    reqwest::Method::POST,
                    &w.at(&format!("/tasks/{task}/execute")),
                )
                .header("idempotency-key", "gone-1")
                .json(&json!({}))
        };
        let request = execute();
        let call = tokio::spawn(async move { request.send().await });
        let waited = Instant::now();
        while fake.seen_at("/delay/700").is_empty() {
            assert!(
                waited.elapsed() < Duration::from_secs(10),
                "the call never came"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        call.abort();
        let _ = call.await;
        // The execution goes on without its client.
        let waited = Instant::now();
        loop {
            let record = w.task(&task).await;
            if record["status"] != "executing" {
                assert_eq!(record["status"], "completed", "{record}");
                break;
            }
            assert!(
                waited.elapsed() < Duration::from_secs(20),
                "still executing"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let runs = w.runs().await;
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0]["status"], "completed", "{runs:?}");
        assert_eq!(w.events("task.executed").await.len(), 1);
        let replay = execute().send().await.unwrap();
        assert_eq!(
            replay
                .headers()
                .get("idempotent-replayed")
                .map(|v| v.to_str().unwrap()),
            Some("true")
        );
        let answer = expect_json(replay, StatusCode::OK).await;
        assert_eq!(answer["item"]["status"], "completed", "{answer}");
        assert_eq!(answer["item"]["result"]["delayed"], 700, "{answer}");
        assert_eq!(fake.seen_at("/delay/700").len(), 1);
        w.stop().await;
    }
}

/// orders §6.3 last line: the `executing` task and the `running` run and outcome are committed
/// before the call. When the server process dies mid-call (SIGKILL), a restart on the same
/// database finds exactly those rows and nothing half-written.
#[tokio::test]
async fn a_crash_during_the_call_leaves_the_running_rows() {
    for backend in backends() {
        let fake = FakeProvider::start().await;
        let services = vec![http_service(
            "x:slow",
            "slow",
            json!({"url": fake.url, "path": "/slow"}),
        )];
        let w = World::start(&backend, vec![http_catalog(services)], &[]).await;
        let task = w.resolved("slow", json!({"n": 1})).await;
        let route_id = w.task(&task).await["routeId"].as_str().unwrap().to_string();
        let World {
            srv,
            machine,
            catalog,
        } = w;
        let db = srv.stop_keep_db().await;
        let url = db.url.clone();
        let dir = catalog.path_str();
        let env = [
            MACHINE_VERIFICATION_OFF,
            NO_PROBES,
            ("PEAQOS_CATALOG_DIR", dir.as_str()),
        ];

        // The same database served by the real binary, killed in the middle of the call.
        let process = ServerProcess::spawn(Some(&url), &env).await;
        let request = reqwest::Client::new()
            .post(process.url(&format!("/api/v1/machines/{machine}/tasks/{task}/execute")))
            .header("idempotency-key", "crash-1")
            .json(&json!({}));
        let call = tokio::spawn(async move { request.send().await });
        let waited = Instant::now();
        while fake.seen_at("/slow").is_empty() {
            assert!(
                waited.elapsed() < Duration::from_secs(10),
                "the call never came"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let exited = process.kill().await;
        assert!(!exited.status.success());
        assert!(
            call.await.unwrap().is_err(),
            "the connection died with the server"
        );

        let srv = TestServer::start_on(db, &url, &env).await;
        let w = World {
            srv,
            machine,
            catalog,
        };

        let record = w.task(&task).await;
        assert_eq!(record["status"], "executing", "{record}");
        assert_eq!(record["routeId"], route_id.as_str());
        let runs = w.runs().await;
        assert_eq!(runs.len(), 1, "{runs:?}");
        let run = &runs[0];
        assert_eq!(run["status"], "running", "{run}");
        assert!(run["summary"].is_null(), "{run}");
        assert_eq!(run["routeId"], route_id.as_str());
        let outcomes = w.outcomes().await;
        assert_eq!(outcomes.len(), 1, "{outcomes:?}");
        let outcome = &outcomes[0];
        assert_eq!(outcome["status"], "running", "{outcome}");
        assert_eq!(record["outcomeId"], outcome["id"]);
        assert_eq!(run["outcomeId"], outcome["id"]);
        for field in ["result", "errorCode", "errorMessage", "externalRef"] {
            assert!(outcome[field].is_null(), "{field}: {outcome}");
        }
        let route = w.route(&route_id).await;
        assert_eq!(route["status"], "selected", "{route}");
        assert!(w.events("task.executed").await.is_empty());
        assert_eq!(w.events("task.resolved").await.len(), 1);

        // The task cannot run again or be re-resolved.
        expect_error(
            w.execute(&task, json!({})).await,
            StatusCode::CONFLICT,
            "ROUTE_REQUIRED",
        )
        .await;
        let err = expect_error(
            w.resolve_response(&task).await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(err["details"]["status"], "executing", "{err}");
        // The key of the interrupted request stays reserved for a while, then a retry runs
        // afresh (and finds no route): never a second call.
        let retry = |w: &World| {
            w.srv
                .request(
                    reqwest::Method::POST,
                    &w.at(&format!("/tasks/{task}/execute")),
                )
                .header("idempotency-key", "crash-1")
                .json(&json!({}))
                .send()
        };
        let err = expect_error(
            retry(&w).await.unwrap(),
            StatusCode::CONFLICT,
            "IDEMPOTENCY_CONFLICT",
        )
        .await;
        assert_eq!(err["details"]["reason"], "in-progress", "{err}");
        w.srv.clock.advance_ms(6 * 60 * 1000);
        expect_error(
            retry(&w).await.unwrap(),
            StatusCode::CONFLICT,
            "ROUTE_REQUIRED",
        )
        .await;
        assert_eq!(fake.seen_at("/slow").len(), 1);
        w.stop().await;
    }
}

/// §2.2 step 2 and orders §6.1: a candidate is usable only when its executor is available, and
/// a blocked address or a refused network scope makes it unavailable ("no call made"). So
/// discovery should not pick a service whose provider URL is a metadata address, nor a runtime
/// endpoint declared `public` at a loopback address: the resolution should be `unavailable`
/// and resolve should store a `blocked` route.
#[tokio::test]
async fn discovery_skips_candidates_whose_address_is_refused() {
    for backend in backends() {
        let services = vec![http_service(
            "b:metadata",
            "metadata",
            json!({"url": "http://169.254.169.254", "path": "/latest/meta-data/"}),
        )];
        let w = World::start(&backend, vec![http_catalog(services)], &[]).await;
        let task = w.task_for("metadata", json!({})).await;
        let discovered = w.discover(&task, json!({})).await;
        assert_eq!(
            discovered["resolution"]["kind"], "unavailable",
            "{discovered}"
        );
        let resolved = w.resolve(&task).await;
        assert_eq!(resolved["item"]["status"], "blocked", "{resolved}");

        let counter = ConnectionCounter::start().await;
        expect_json(
            w.srv
                .put_json(
                    &w.at("/runtime-endpoints/qvac"),
                    &json!({"endpointBaseUrl": counter.url, "networkScope": "public"}),
                )
                .await,
            StatusCode::CREATED,
        )
        .await;
        let task = w.create_task(qvac_task(json!({"prompt": "hi"}))).await;
        let resolved = w.resolve(task["id"].as_str().unwrap()).await;
        assert_eq!(resolved["item"]["status"], "blocked", "{resolved}");
        assert_eq!(counter.accepted(), 0);
        w.stop().await;
    }
}

/// README §3.11 on task execute: a repeat with the same key and body replays the first answer
/// with no second call; another body is a conflict.
#[tokio::test]
async fn an_idempotent_execute_is_replayed_without_a_second_call() {
    for backend in backends() {
        let fake = FakeProvider::start().await;
        let services = vec![http_service(
            "i:once",
            "once",
            json!({"url": fake.url, "path": "/json/once"}),
        )];
        let w = World::start(&backend, vec![http_catalog(services)], &[]).await;
        let task = w.resolved("once", json!({})).await;
        let send = |body: Value| {
            w.srv
                .request(
                    reqwest::Method::POST,
                    &w.at(&format!("/tasks/{task}/execute")),
                )
                .header("idempotency-key", "execute-once")
                .json(&body)
                .send()
        };
        let first = expect_json(send(json!({})).await.unwrap(), StatusCode::OK).await;
        assert_eq!(first["item"]["status"], "completed", "{first}");
        let response = send(json!({})).await.unwrap();
        assert_eq!(
            response
                .headers()
                .get("idempotent-replayed")
                .map(|v| v.to_str().unwrap()),
            Some("true")
        );
        let replayed = expect_json(response, StatusCode::OK).await;
        assert_eq!(replayed, first);
        assert_eq!(fake.seen_at("/json/once").len(), 1);
        assert_eq!(w.runs().await.len(), 1);
        assert_eq!(w.events("task.executed").await.len(), 1);
        let err = expect_error(
            send(json!({"input": {"other": 1}})).await.unwrap(),
            StatusCode::CONFLICT,
            "IDEMPOTENCY_CONFLICT",
        )
        .await;
        assert_eq!(err["details"]["reason"], "body-mismatch", "{err}");
        w.stop().await;
    }
}

/// §2.2 step 1: the task's constraints filter the candidates like search criteria do
/// (catalogue-and-search.md §9.1: region, capabilities, budget, execution mode, enabled skill).
#[tokio::test]
async fn task_constraints_filter_the_candidates() {
    for backend in backends() {
        let at = json!({"url": "http://127.0.0.1:9", "path": "/never"});
        let services = vec![
            merged(
                http_service("f:eu", "filter", at.clone()),
                json!({"region": "eu", "capabilities": ["gpu", "gps"],
                       "pricing": {"mode": "fixed", "amount": 5}}),
            ),
            merged(
                http_service("f:us", "filter", at.clone()),
                json!({"region": "us", "capabilities": ["gpu"],
                       "pricing": {"mode": "fixed", "amount": 20}}),
            ),
            merged(
                http_service("f:global", "filter", at),
                json!({"region": "global", "pricing": {"mode": "quote-required"}}),
            ),
        ];
        let handoff = merged(
            skill_service("f:handoff", "tests-alt", "testalt", "filter", json!({})),
            json!({"executionMode": "external-handoff", "integrationStatus": "partner-required",
                   "endpoints": [], "handoff": {"label": "Go", "url": "https://partner.example"}}),
        );
        let files = vec![
            http_catalog(services),
            skill_catalog("tests-alt", "testalt", vec![handoff]),
        ];
        let w = World::start(&backend, files, &[]).await;
        for (constraints, expected) in [
            (json!({}), vec!["f:eu", "f:global", "f:handoff", "f:us"]),
            (
                json!({"region": "EU"}),
                vec!["f:eu", "f:global", "f:handoff"],
            ),
            (
                json!({"requiredCapabilities": ["gpu"]}),
                vec!["f:eu", "f:us"],
            ),
            (
                json!({"requiredCapabilities": ["gps", "gpu"]}),
                vec!["f:eu"],
            ),
            (json!({"budget": 10}), vec!["f:eu", "f:global", "f:handoff"]),
            (json!({"budget": 0}), vec!["f:global", "f:handoff"]),
            (
                json!({"requireNativeExecution": true}),
                vec!["f:eu", "f:global", "f:us"],
            ),
            (
                json!({"allowExternalHandoff": false}),
                vec!["f:eu", "f:global", "f:us"],
            ),
            (
                json!({"region": "apac", "budget": 100}),
                vec!["f:global", "f:handoff"],
            ),
        ] {
            assert_eq!(
                candidates(&w, &constraints).await,
                expected,
                "{constraints}"
            );
        }
        // A disabled skill's services are not candidates.
        expect_json(
            w.srv
                .patch_json(
                    "/api/v1/skills/tests-alt/config",
                    &json!({"enabled": false}),
                )
                .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(
            candidates(&w, &json!({})).await,
            ["f:eu", "f:global", "f:us"]
        );
        w.stop().await;
    }
}

/// The sorted service ids discovery finds for a `filter` task with `constraints`.
async fn candidates(w: &World, constraints: &Value) -> Vec<String> {
    let task = w
        .create_task(
            json!({"serviceType": DEVICE, "taskType": "t", "operation": "filter",
                            "constraints": constraints, "discovery": {"maxCandidates": 25}}),
        )
        .await;
    let discovered = w.discover(task["id"].as_str().unwrap(), json!({})).await;
    let mut ids: Vec<String> = discovered["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["service"]["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}
