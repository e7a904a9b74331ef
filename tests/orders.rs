//! Market orders (spec orders-and-payments.md §1.1, §2.1, §2.3, §2.5, §3, §4) and the direct
//! read (§5): the order state machine row by row, creation with its quotes, policies and spend
//! limits (serialised per pairing, across servers), the execution results, the races between
//! actions, open orders blocking archiving and revocation, the sweep of executions a crash cut
//! off, and the audit trail, on every backend.

mod common;

use std::str::FromStr;

use common::fake_mcr::{Behaviour, FakeMcr};
use common::market::{TOKEN_HEADER, merged};
use common::orders::{
    Agent, BLOCKED, DEAD, EUR, FAILING, FLAKY, FREE, HANDOFF, HANDOFF_URL, HELD, NO_ADAPTER, OFF,
    OFF_SKILL, OTHER, OTHER_SKILL, OrderWorld, PAID, PAYEE, PAYWALL, PROVIDER_KEY, SKILL, UNPRICED,
    X402, database_bytes, next_utc_midnight, pairs, tx_hash,
};
use common::process::ServerProcess;
use common::wallet::Wallet;
use common::{TestServer, backends, expect_error, expect_json, rand_u64};
use peaqos_orchestrator::clock::format_ms;
use reqwest::{Method, Response, StatusCode};
use rust_decimal::Decimal;
use serde_json::{Value, json};

const ORDERS: &str = "/api/v1/market/orders";
const DAY_MS: i64 = 86_400_000;

fn id(value: &Value) -> String {
    value["id"].as_str().unwrap().to_string()
}

fn decimal(value: &Value) -> Decimal {
    Decimal::from_str(&value.to_string()).unwrap()
}

/// A recorded wallet proof of 2.5 USDT to the catalogue's payee.
fn proof_body() -> Value {
    json!({"verificationMode": "recorded", "chain": "eip155:3338", "token": "USDT",
           "payerAddress": Wallet::random().address(), "payeeAddress": PAYEE, "amount": "2.5",
           "transactionHash": tx_hash()})
}

/// A valid body for each order action of the state machine.
fn action_body(action: &str) -> Value {
    match action {
        "payment-proof" => proof_body(),
        "dispute" => json!({"reason": "not as described"}),
        _ => json!({}),
    }
}

const ACTIONS: [&str; 7] = [
    "payment-intent",
    "payment-proof",
    "execute",
    "confirm",
    "dispute",
    "cancel",
    "retry",
];

/// What each order status refuses (spec §1.1, §4.4–§4.8, §7.2, §7.4): every action not listed
/// for a status is allowed from it.
fn refusals(status: &str) -> Vec<(&'static str, &'static str)> {
    const CLOSED: &str = "ORDER_CLOSED";
    const NOT_DELIVERED: &str = "ORDER_NOT_DELIVERED";
    match status {
        "created" | "payment_pending" | "ready" => vec![
            ("confirm", NOT_DELIVERED),
            ("dispute", NOT_DELIVERED),
            ("retry", CLOSED),
        ],
        "executing" => vec![
            ("payment-intent", CLOSED),
            ("payment-proof", CLOSED),
            ("execute", CLOSED),
            ("confirm", NOT_DELIVERED),
            ("dispute", NOT_DELIVERED),
            ("cancel", CLOSED),
            ("retry", CLOSED),
        ],
        "delivered" | "handoff" => vec![
            ("payment-intent", CLOSED),
            ("payment-proof", CLOSED),
            ("execute", CLOSED),
            ("cancel", CLOSED),
            ("retry", CLOSED),
        ],
        "confirmed" => vec![
            ("payment-intent", CLOSED),
            ("payment-proof", CLOSED),
            ("execute", CLOSED),
            ("confirm", CLOSED),
            ("cancel", CLOSED),
            ("retry", CLOSED),
        ],
        "failed" => vec![
            ("payment-intent", CLOSED),
            ("payment-proof", CLOSED),
            ("execute", CLOSED),
            ("confirm", CLOSED),
            ("dispute", CLOSED),
            ("cancel", CLOSED),
        ],
        "disputed" | "cancelled" => ACTIONS.iter().map(|a| (*a, CLOSED)).collect(),
        other => panic!("unknown status {other}"),
    }
}

/// Tries every refused action on `order` (in `status`): each gives its code with
/// `details.status`, and the order is left as it was.
async fn assert_refusals(w: &OrderWorld, order: &Value, status: &str) {
    let order_id = id(order);
    for (action, code) in refusals(status) {
        let error = expect_error(
            w.act(&order_id, action, action_body(action)).await,
            StatusCode::CONFLICT,
            code,
        )
        .await;
        assert_eq!(
            error["details"]["status"], status,
            "{action} from {status}: {error}"
        );
    }
    let after = w.get(&order_id).await;
    assert_eq!(after["status"], status);
    assert_eq!(
        after["updatedAt"], order["updatedAt"],
        "refusals change nothing"
    );
}

#[tokio::test]
async fn every_status_allows_its_actions_and_refuses_the_others() {
    for backend in backends() {
        let w = OrderWorld::start(&backend, &[]).await;
        for status in [
            "created",
            "payment_pending",
            "ready",
            "delivered",
            "confirmed",
            "disputed",
            "cancelled",
            "failed",
            "handoff",
        ] {
            let order = w.in_state(status).await;
            assert_refusals(&w, &order, status).await;
        }

        // executing: the provider holds the call open while every action is tried.
        let (order, call) = w.executing(HELD).await;
        assert_refusals(&w, &order, "executing").await;
        w.script.release(1);
        let done = expect_json(call.await.unwrap().unwrap(), StatusCode::OK).await;
        assert_eq!(done["order"]["status"], "delivered");

        // The allowed moves, each from a fresh order: (status, action, service, status after).
        let moves = [
            ("created", "payment-intent", PAID, "payment_pending"),
            ("created", "payment-intent", FREE, "ready"),
            ("created", "payment-proof", PAID, "ready"),
            ("created", "payment/escrow-lock", HANDOFF, "ready"),
            ("created", "execute", PAID, "delivered"),
            ("created", "execute", HANDOFF, "handoff"),
            ("created", "execute", FAILING, "failed"),
            ("created", "cancel", PAID, "cancelled"),
            ("payment_pending", "payment-intent", PAID, "payment_pending"),
            ("payment_pending", "payment-proof", PAID, "ready"),
            ("payment_pending", "execute", PAID, "delivered"),
            ("payment_pending", "cancel", PAID, "cancelled"),
            ("ready", "payment-intent", FREE, "ready"),
            ("ready", "execute", FREE, "delivered"),
            ("ready", "cancel", FREE, "cancelled"),
            ("delivered", "confirm", FREE, "confirmed"),
            ("delivered", "dispute", FREE, "disputed"),
            ("confirmed", "dispute", FREE, "disputed"),
            ("handoff", "confirm", HANDOFF, "confirmed"),
            ("handoff", "dispute", HANDOFF, "disputed"),
            ("failed", "retry", FAILING, "ready"),
        ];
        for (from, action, service_id, to) in moves {
            let order = match from {
                "created" => w.order(service_id).await,
                _ => w.in_state(from).await,
            };
            assert_eq!(order["serviceId"], service_id, "{from} set-up");
            let order_id = id(&order);
            let body = match action {
                "payment/escrow-lock" => OrderWorld::escrow_body(),
                other => action_body(other),
            };
            let response = w.act(&order_id, action, body).await;
            let status = response.status();
            let answer = expect_json(response, status).await;
            assert!(
                status.is_success(),
                "{action} from {from}: {status} {answer}"
            );
            assert_eq!(w.status(&order_id).await, to, "{action} from {from}");
        }
        w.stop().await;
    }
}

#[tokio::test]
async fn cancel_needs_a_payment_that_is_not_held() {
    for backend in backends() {
        let w = OrderWorld::start(&backend, &[]).await;
        // No payment.
        let order = w.order(PAID).await;
        let cancelled = w
            .acted(
                &id(&order),
                "cancel",
                json!({"reason": "changed my mind"}),
                StatusCode::OK,
            )
            .await["item"]
            .clone();
        assert_eq!(cancelled["status"], "cancelled");
        assert_eq!(cancelled["cancelReason"], "changed my mind");
        assert_eq!(w.get(&id(&order)).await, cancelled);
        // intent_created: cancelled, the intent left as it is.
        let order = w.in_state("payment_pending").await;
        w.acted(&id(&order), "cancel", json!({}), StatusCode::OK)
            .await;
        assert_eq!(w.payment(&id(&order)).await["status"], "intent_created");
        // not_required, and a bodyless POST (0.12.1 sends no body, no content type).
        let order = w.in_state("ready").await;
        let response = w
            .action_as(&w.me, &id(&order), "cancel", None)
            .send()
            .await
            .unwrap();
        let cancelled = expect_json(response, StatusCode::OK).await["item"].clone();
        assert_eq!(cancelled["status"], "cancelled");
        assert!(cancelled["cancelReason"].is_null());

        // held (a wallet proof, and an escrow lock straight from created): refund first.
        let wallet = w.order(PAID).await;
        w.hold_wallet(&id(&wallet)).await;
        let escrow = w.order(HANDOFF).await;
        w.hold_escrow(&id(&escrow)).await;
        for order in [&wallet, &escrow] {
            let error = expect_error(
                w.act(&id(order), "cancel", json!({})).await,
                StatusCode::CONFLICT,
                "ORDER_CLOSED",
            )
            .await;
            assert_eq!(error["details"]["reason"], "payment-held");
            assert_eq!(error["details"]["paymentStatus"], "held");
            assert_eq!(w.status(&id(order)).await, "ready");
        }
        // refunded: the order is still ready, and now it can be cancelled.
        let refunded = w
            .acted(
                &id(&wallet),
                "payment/refund",
                json!({"reason": "no longer needed"}),
                StatusCode::OK,
            )
            .await["item"]
            .clone();
        assert_eq!(refunded["status"], "refunded");
        assert_eq!(w.status(&id(&wallet)).await, "ready");
        w.acted(&id(&wallet), "cancel", json!({}), StatusCode::OK)
            .await;
        assert_eq!(w.status(&id(&wallet)).await, "cancelled");

        // A blank reason is refused before anything changes.
        let order = w.order(PAID).await;
        let error = expect_error(
            w.act(&id(&order), "cancel", json!({"reason": "  "})).await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(error["details"]["field"], "reason");
        assert_eq!(w.status(&id(&order)).await, "created");
        w.stop().await;
    }
}

#[tokio::test]
async fn retry_reopens_a_failed_order_with_the_same_payment() {
    for backend in backends() {
        let w = OrderWorld::start(&backend, &[]).await;
        let order = w.order(FLAKY).await;
        let order_id = id(&order);
        let held = w.hold_wallet(&order_id).await;
        let failed = w.execute(&order_id, StatusCode::OK).await;
        assert_eq!(failed["execution"]["statusCode"], 200);
        assert_eq!(failed["order"]["status"], "failed");
        assert_eq!(failed["order"]["errorMessage"], "HTTP 500");
        assert_eq!(
            failed["execution"]["outcome"]["errorCode"],
            "PROVIDER_ERROR"
        );
        let first = failed["order"].clone();

        let retried = w.acted(&order_id, "retry", json!({}), StatusCode::OK).await["item"].clone();
        assert_eq!(retried["status"], "ready");
        assert!(retried["errorMessage"].is_null());
        for link in ["routeId", "runId", "outcomeId"] {
            assert_eq!(retried[link], first[link], "{link} stays linked");
        }
        let payment = w.payment(&order_id).await;
        assert_eq!(payment["id"], held["id"], "the same payment");
        assert_eq!(payment["status"], "held");
        // Retry again: the order is ready, not failed.
        let error = expect_error(
            w.act(&order_id, "retry", json!({})).await,
            StatusCode::CONFLICT,
            "ORDER_CLOSED",
        )
        .await;
        assert_eq!(error["details"]["status"], "ready");

        // The next attempt succeeds, with rows of its own.
        w.script.set_flaky(200);
        let delivered = w.execute(&order_id, StatusCode::OK).await;
        assert_eq!(delivered["order"]["status"], "delivered");
        assert_ne!(delivered["order"]["runId"], first["runId"]);
        assert_eq!(
            delivered["execution"]["outcome"]["result"],
            json!({"flaky": 200})
        );
        let runs = common::market::all_items(
            &w.srv,
            &format!("/api/v1/runs?machineId={}", w.me.machine_id),
        )
        .await;
        let statuses: Vec<&str> = runs.iter().map(|r| r["status"].as_str().unwrap()).collect();
        assert_eq!(statuses, ["failed", "completed"]);
        w.stop().await;
    }
}

#[tokio::test]
async fn creation_validates_the_body_and_binds_it_to_the_token() {
    for backend in backends() {
        let w = OrderWorld::start(&backend, &[]).await;
        let body = w.body(PAID);
        let invalid = [
            (json!({"machineId": null}), "machineId"),
            (json!({"agentPairingId": null}), "agentPairingId"),
            (json!({"serviceId": null}), "serviceId"),
            (json!({"serviceId": " "}), "serviceId"),
            (json!({"searchId": ""}), "searchId"),
            (json!({"quoteId": " "}), "quoteId"),
            (json!({"operation": ""}), "operation"),
            (json!({"operation": "nope"}), "operation"),
            (json!({"budget": {"amount": -1}}), "budget.amount"),
            (json!({"budget": {"max": -0.5}}), "budget.max"),
            (json!({"budget": {"currency": ""}}), "budget.currency"),
            (
                json!({"providerCredentials": {"ordprov": "key"}}),
                "providerCredentials.ordprov",
            ),
            (
                json!({"providerCredentials": {"ordprov": {"apiKey": 5}}}),
                "providerCredentials.ordprov.apiKey",
            ),
        ];
        for (changes, field) in invalid {
            let error = expect_error(
                w.create(&merged(body.clone(), changes.clone())).await,
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
            )
            .await;
            assert_eq!(error["details"]["field"], field, "{changes}");
        }
        let error = expect_error(
            w.srv
                .request(Method::POST, ORDERS)
                .header(TOKEN_HEADER, &w.me.token)
                .header("content-type", "application/json")
                .body("{not json")
                .send()
                .await
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(error["details"]["reason"], "invalid-json");

        // The ids must be the token's.
        let other = w.other_machine(None).await;
        let sibling = w.pairing(None).await;
        for (changes, reason) in [
            (json!({"machineId": other.machine_id}), "machine-mismatch"),
            (
                json!({"agentPairingId": sibling.pairing_id}),
                "pairing-mismatch",
            ),
            (
                json!({"agentPairingId": other.pairing_id}),
                "pairing-mismatch",
            ),
        ] {
            let error = expect_error(
                w.create(&merged(body.clone(), changes)).await,
                StatusCode::UNAUTHORIZED,
                "AGENT_AUTH_INVALID",
            )
            .await;
            assert_eq!(error["details"]["reason"], reason);
        }
        expect_error(
            w.srv.post_json(ORDERS, &body).await,
            StatusCode::UNAUTHORIZED,
            "AGENT_AUTH_REQUIRED",
        )
        .await;
        let forged = Agent {
            token: format!("{}x", w.me.token),
            ..w.me.clone()
        };
        expect_error(
            w.create_as(&forged, &body).await,
            StatusCode::UNAUTHORIZED,
            "AGENT_AUTH_INVALID",
        )
        .await;

        // The service must exist and its skill be enabled.
        let error = expect_error(
            w.create(&w.body("no-such-service")).await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;
        assert_eq!(error["details"]["resource"], "service");
        assert_eq!(error["details"]["id"], "no-such-service");
        expect_json(
            w.srv
                .patch_json(
                    &format!("/api/v1/skills/{OFF_SKILL}/config"),
                    &json!({"enabled": false}),
                )
                .await,
            StatusCode::OK,
        )
        .await;
        let error = expect_error(
            w.create(&w.body(OFF)).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "EXECUTION_UNSUPPORTED",
        )
        .await;
        assert_eq!(error["details"]["reason"], "skill-disabled");

        // A paused pairing; a machine that is no longer active.
        let paused = w.pairing(None).await;
        expect_json(
            w.srv
                .patch_json(
                    &format!(
                        "/api/v1/machines/{}/agent-pairings/{}",
                        paused.machine_id, paused.pairing_id
                    ),
                    &json!({"status": "paused"}),
                )
                .await,
            StatusCode::OK,
        )
        .await;
        expect_error(
            w.create_as(&paused, &OrderWorld::body_for(&paused, PAID))
                .await,
            StatusCode::FORBIDDEN,
            "AGENT_PAIRING_INACTIVE",
        )
        .await;
        expect_json(
            w.srv
                .patch_json(
                    &format!("/api/v1/machines/{}", other.machine_id),
                    &json!({"status": "degraded"}),
                )
                .await,
            StatusCode::OK,
        )
        .await;
        let error = expect_error(
            w.create_as(&other, &OrderWorld::body_for(&other, PAID))
                .await,
            StatusCode::CONFLICT,
            "MACHINE_NOT_ACTIVE",
        )
        .await;
        assert_eq!(error["details"]["status"], "degraded");

        assert!(w.orders_of(&w.me.machine_id).await.is_empty());
        let created = common::market::audit(&w.srv, "market.order.created").await;
        assert!(created.is_empty(), "no refused creation left an event");
        w.stop().await;
    }
}

#[tokio::test]
async fn an_order_records_the_service_its_task_and_the_request() {
    for backend in backends() {
        let w = OrderWorld::start(&backend, &[]).await;
        let input = json!({"promptText": "go", "nested": {"snake_key": [1, 2]}});
        let order = w
            .order_with(PAID, json!({"input": input, "budget": {"max": 10}}))
            .await;
        assert!(order["id"].as_str().unwrap().starts_with("ord_"));
        let service = expect_json(
            w.srv.get(&format!("/api/v1/market/services/{PAID}")).await,
            StatusCode::OK,
        )
        .await["item"]
            .clone();
        let task_id = order["taskId"].as_str().unwrap().to_string();
        assert!(task_id.starts_with("tsk_"));
        let expected = json!({
            "id": order["id"], "machineId": w.me.machine_id, "agentPairingId": w.me.pairing_id,
            "searchId": null, "quoteId": null, "serviceId": PAID, "skillKey": SKILL,
            "providerKey": PROVIDER_KEY, "serviceType": "device.control", "operation": "run",
            "executionMode": "native", "integrationStatus": "native", "status": "created",
            "input": input, "budget": {"amount": null, "max": 10.0, "currency": null},
            "amount": 2.5, "currency": "USDT", "payment": service["payment"],
            "serviceSnapshot": order["serviceSnapshot"], "taskId": task_id, "routeId": null,
            "runId": null, "outcomeId": null, "handoff": null, "errorMessage": null,
            "cancelReason": null, "createdAt": order["createdAt"], "updatedAt": order["createdAt"],
        });
        assert_eq!(order, expected);
        assert_eq!(order["payment"]["defaultRail"], "wallet");
        assert_eq!(order["payment"]["required"], true);
        assert_eq!(order["serviceSnapshot"]["id"], PAID);
        assert_eq!(order["serviceSnapshot"]["pricing"], service["pricing"]);
        assert_eq!(w.get(&id(&order)).await, order);

        // Its internal task, without a task.* event of its own.
        let task = expect_json(
            w.srv
                .get(&format!(
                    "/api/v1/machines/{}/tasks/{task_id}",
                    w.me.machine_id
                ))
                .await,
            StatusCode::OK,
        )
        .await["item"]
            .clone();
        assert_eq!(task["taskType"], "market-order");
        assert_eq!(task["status"], "queued");
        assert_eq!(task["orderId"], order["id"]);
        assert_eq!(task["operation"], "run");
        assert_eq!(task["serviceType"], "device.control");
        assert_eq!(task["input"], input);
        assert!(w.events("task.created", &task_id).await.is_empty());

        // Defaults: the first operation, input {}, no budget; a named operation is kept.
        let bare = w.order(FREE).await;
        assert_eq!(bare["operation"], "read");
        assert_eq!(bare["input"], json!({}));
        assert!(bare["budget"].is_null());
        assert_eq!(bare["amount"], 0.0);
        assert!(bare["currency"].is_null());
        assert_eq!(bare["payment"]["required"], false);
        let named = w.order_with(PAID, json!({"operation": "inspect"})).await;
        assert_eq!(named["operation"], "inspect");
        w.stop().await;
    }
}

/// The quote of `service_id` in `search`.
fn quote_of<'a>(search: &'a Value, service_id: &str) -> &'a Value {
    search["quotes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["serviceId"] == service_id)
        .unwrap_or_else(|| panic!("no quote of {service_id} in {search}"))
}

async fn search_as(w: &OrderWorld, agent: &Agent, body: Value) -> Value {
    let response = w
        .as_agent(agent, Method::POST, "/api/v1/market/search")
        .json(&merged(
            json!({"serviceType": "device.control", "maxResults": 25}),
            body,
        ))
        .send()
        .await
        .unwrap();
    expect_json(response, StatusCode::CREATED).await["item"].clone()
}

#[tokio::test]
async fn orders_cite_quotes_by_search_by_quote_or_both() {
    for backend in backends() {
        let w = OrderWorld::start(&backend, &[("PEAQOS_MARKET_QUOTE_TTL_MS", "60000")]).await;
        let search = search_as(&w, &w.me, json!({})).await;
        let search_id = id(&search);
        let quote = quote_of(&search, PAID).clone();
        let quote_id = id(&quote);

        // quoteId alone: its search is the quote's.
        let by_quote = w.order_with(PAID, json!({"quoteId": quote_id})).await;
        assert_eq!(by_quote["quoteId"], quote_id);
        assert_eq!(by_quote["searchId"], search_id);
        assert_eq!(by_quote["amount"], 2.5);
        assert_eq!(by_quote["currency"], "USDT");
        // searchId alone: that search's quote of the service.
        let by_search = w.order_with(PAID, json!({"searchId": search_id})).await;
        assert_eq!(by_search["quoteId"], quote_id);
        assert_eq!(by_search["searchId"], search_id);
        let free_by_search = w.order_with(FREE, json!({"searchId": search_id})).await;
        assert_eq!(free_by_search["quoteId"], id(quote_of(&search, FREE)));
        // Both, agreeing.
        let both = w
            .order_with(PAID, json!({"searchId": search_id, "quoteId": quote_id}))
            .await;
        assert_eq!(both["quoteId"], quote_id);

        // The operation comes from the quote when the body names none.
        let inspect = search_as(&w, &w.me, json!({"operation": "inspect"})).await;
        assert_eq!(inspect["quotes"].as_array().unwrap().len(), 1);
        let quoted = w.order_with(PAID, json!({"searchId": id(&inspect)})).await;
        assert_eq!(quoted["operation"], "inspect");
        let named = w
            .order_with(PAID, json!({"searchId": id(&inspect), "operation": "run"}))
            .await;
        assert_eq!(named["operation"], "run");

        // Quotes that do not fit.
        let later = search_as(&w, &w.me, json!({})).await;
        let other = w.other_machine(None).await;
        let theirs = search_as(&w, &other, json!({})).await;
        let sibling = w.pairing(None).await;
        let siblings = search_as(&w, &sibling, json!({})).await;
        let mismatches = [
            json!({"searchId": id(&later), "quoteId": quote_id}),
            json!({"quoteId": id(quote_of(&search, FREE))}),
            json!({"searchId": id(&inspect), "serviceId": FREE}),
            json!({"quoteId": "quo_nope"}),
            json!({"searchId": "srch_nope"}),
            json!({"quoteId": id(quote_of(&theirs, PAID))}),
            json!({"searchId": id(&theirs)}),
            json!({"quoteId": id(quote_of(&siblings, PAID))}),
            json!({"searchId": id(&siblings)}),
        ];
        for changes in mismatches {
            let error = expect_error(
                w.create(&merged(w.body(PAID), changes.clone())).await,
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
            )
            .await;
            assert_eq!(error["details"]["reason"], "quote-mismatch", "{changes}");
        }
        let before = w.orders_of(&w.me.machine_id).await.len();

        // Expiry, under the test clock.
        w.srv.clock.advance_ms(60_001);
        for changes in [
            json!({"quoteId": quote_id}),
            json!({"searchId": search_id}),
            json!({"searchId": search_id, "quoteId": quote_id}),
        ] {
            let error = expect_error(
                w.create(&merged(w.body(PAID), changes)).await,
                StatusCode::CONFLICT,
                "QUOTE_EXPIRED",
            )
            .await;
            assert_eq!(error["details"]["quoteId"], quote_id);
        }
        assert_eq!(w.orders_of(&w.me.machine_id).await.len(), before);
        // A fresh search quotes again; an order without a quote needs none.
        let fresh = search_as(&w, &w.me, json!({})).await;
        w.order_with(PAID, json!({"quoteId": id(quote_of(&fresh, PAID))}))
            .await;
        w.order(PAID).await;
        w.stop().await;
    }
}

#[tokio::test]
async fn required_quotes_refuse_orders_that_cite_none() {
    for backend in backends() {
        let w = OrderWorld::start(&backend, &[("PEAQOS_REQUIRE_MARKET_QUOTES", "true")]).await;
        let error = expect_error(
            w.create(&w.body(PAID)).await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(error["details"]["field"], "searchId");
        assert_eq!(error["details"]["reason"], "quote-required");
        let search = search_as(&w, &w.me, json!({})).await;
        w.order_with(PAID, json!({"searchId": id(&search)})).await;
        w.order_with(PAID, json!({"quoteId": id(quote_of(&search, PAID))}))
            .await;
        assert_eq!(w.orders_of(&w.me.machine_id).await.len(), 2);
        w.stop().await;
    }
}

/// The body of a response with `status`.
async fn text(response: Response, status: StatusCode) -> String {
    let actual = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(actual, status, "{body}");
    body
}

#[tokio::test]
async fn provider_credentials_are_used_for_the_request_and_never_stored() {
    for backend in backends() {
        let w = OrderWorld::start(&backend, &[]).await;
        let order_secret = format!("order-secret-{}", rand_u64());
        let read_secret = format!("read-secret-{}", rand_u64());
        let mut bodies = Vec::new();
        let body = merged(
            w.body(PAID),
            json!({"providerCredentials": {"ordprov": {"apiKey": order_secret}}}),
        );
        for _ in 0..2 {
            let response = w
                .as_agent(&w.me, Method::POST, ORDERS)
                .header("idempotency-key", "order-with-credentials")
                .json(&body)
                .send()
                .await
                .unwrap();
            bodies.push(text(response, StatusCode::CREATED).await);
        }
        let order: Value = serde_json::from_str(&bodies[0]).unwrap();
        let order = &order["item"];
        assert!(order.get("providerCredentials").is_none());
        assert_eq!(
            serde_json::from_str::<Value>(&bodies[1]).unwrap()["item"],
            *order,
            "the replay answers the stored order"
        );
        assert_eq!(w.orders_of(&w.me.machine_id).await.len(), 1);

        // The direct read calls its provider with the request's credentials.
        let response = w
            .as_agent(
                &w.me,
                Method::POST,
                &format!("/api/v1/market/services/{FREE}/execute"),
            )
            .json(&json!({"machineId": w.me.machine_id, "agentPairingId": w.me.pairing_id,
                          "operation": "read", "providerCredentials": {"ordprov": {"apiKey": read_secret}}}))
            .send()
            .await
            .unwrap();
        bodies.push(text(response, StatusCode::OK).await);
        let seen = w.provider.seen_at("/json/free");
        assert_eq!(seen.len(), 1);
        assert_eq!(
            seen[0].header("x-api-key").as_deref(),
            Some(read_secret.as_str())
        );

        bodies.push(
            text(
                w.srv.get(&format!("{ORDERS}/{}", id(order))).await,
                StatusCode::OK,
            )
            .await,
        );
        bodies.push(
            Value::Array(common::market::all_items(&w.srv, "/api/v1/audit-events").await)
                .to_string(),
        );
        let database = database_bytes(&w.srv).await;
        assert!(database.contains(&id(order)), "the dump holds the order");
        for secret in [&order_secret, &read_secret] {
            for body in &bodies {
                assert!(!body.contains(secret.as_str()), "{secret} in {body}");
            }
            assert!(
                !database.contains(secret.as_str()),
                "{secret} is in the {} database",
                backend.name()
            );
        }
        w.stop().await;
    }
}

#[tokio::test]
async fn the_order_list_needs_a_machine_that_passes_gate_b() {
    for backend in backends() {
        let w = OrderWorld::start(&backend, &[]).await;
        let error = expect_error(
            w.srv.get(ORDERS).await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(error["details"]["field"], "machineId");
        let error = expect_error(
            w.srv.get(&format!("{ORDERS}?machineId=mach_nope")).await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;
        assert_eq!(error["details"]["resource"], "machine");
        expect_error(
            w.srv
                .get(&format!("{ORDERS}?machineId={}&limit=0", w.me.machine_id))
                .await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;

        let mut mine = Vec::new();
        for service_id in [PAID, FREE, HANDOFF] {
            mine.push(id(&w.order(service_id).await));
            w.srv.clock.advance_ms(1);
        }
        let other = w.other_machine(None).await;
        expect_json(
            w.create_as(&other, &OrderWorld::body_for(&other, FREE))
                .await,
            StatusCode::CREATED,
        )
        .await;
        let page = expect_json(
            w.srv
                .get(&format!("{ORDERS}?machineId={}&limit=2", w.me.machine_id))
                .await,
            StatusCode::OK,
        )
        .await;
        let first: Vec<String> = page["items"].as_array().unwrap().iter().map(id).collect();
        assert_eq!(first, mine[..2]);
        let cursor = page["nextCursor"].as_str().unwrap();
        let rest = expect_json(
            w.srv
                .get(&format!(
                    "{ORDERS}?machineId={}&limit=2&cursor={cursor}",
                    w.me.machine_id
                ))
                .await,
            StatusCode::OK,
        )
        .await;
        let rest_ids: Vec<String> = rest["items"].as_array().unwrap().iter().map(id).collect();
        assert_eq!(rest_ids, mine[2..]);
        assert!(rest.get("nextCursor").is_none());
        assert_eq!(w.orders_of(&other.machine_id).await.len(), 1);

        expect_json(
            w.srv
                .patch_json(
                    &format!("/api/v1/machines/{}", w.me.machine_id),
                    &json!({"status": "degraded"}),
                )
                .await,
            StatusCode::OK,
        )
        .await;
        let error = expect_error(
            w.srv
                .get(&format!("{ORDERS}?machineId={}", w.me.machine_id))
                .await,
            StatusCode::CONFLICT,
            "MACHINE_NOT_ACTIVE",
        )
        .await;
        assert_eq!(error["details"]["status"], "degraded");
        w.stop().await;
    }
}

#[tokio::test]
async fn an_order_is_read_with_the_api_key_or_a_token_of_its_machine() {
    for backend in backends() {
        let w = OrderWorld::start(
            &backend,
            &[
                ("PEAQOS_REQUIRE_API_AUTH", "true"),
                ("PEAQOS_API_KEY", "k-orders"),
            ],
        )
        .await;
        let bare = reqwest::Client::new();
        let read = |token: Option<&str>, key: Option<&str>, order_id: &str| {
            let mut request = bare.get(w.srv.url(&format!("{ORDERS}/{order_id}")));
            if let Some(token) = token {
                request = request.header(TOKEN_HEADER, token);
            }
            if let Some(key) = key {
                request = request.header("x-api-key", key);
            }
            request.send()
        };
        // Creation takes the token alone (0.2.0) or with the key (0.12.1).
        let response = bare
            .post(w.srv.url(ORDERS))
            .header(TOKEN_HEADER, &w.me.token)
            .json(&w.body(FREE))
            .send()
            .await
            .unwrap();
        let order = expect_json(response, StatusCode::CREATED).await["item"].clone();
        let order_id = id(&order);
        w.order(PAID).await;

        let sibling = w.pairing(None).await;
        let other = w.other_machine(None).await;
        for (token, key) in [
            (None, Some("k-orders")),
            (Some(w.me.token.as_str()), None),
            (Some(w.me.token.as_str()), Some("k-orders")),
            (Some(sibling.token.as_str()), None),
        ] {
            let got = expect_json(read(token, key, &order_id).await.unwrap(), StatusCode::OK).await;
            assert_eq!(got["item"], order);
        }
        let error = expect_error(
            read(Some(&other.token), None, &order_id).await.unwrap(),
            StatusCode::UNAUTHORIZED,
            "AGENT_AUTH_INVALID",
        )
        .await;
        assert_eq!(error["details"]["reason"], "machine-mismatch");
        expect_error(
            read(Some("not-a-token"), None, &order_id).await.unwrap(),
            StatusCode::UNAUTHORIZED,
            "AGENT_AUTH_INVALID",
        )
        .await;
        expect_error(
            read(None, None, &order_id).await.unwrap(),
            StatusCode::UNAUTHORIZED,
            "AUTH_REQUIRED",
        )
        .await;
        expect_error(
            read(None, Some("wrong"), &order_id).await.unwrap(),
            StatusCode::UNAUTHORIZED,
            "AUTH_INVALID",
        )
        .await;
        expect_error(
            read(Some(&w.me.token), Some("wrong"), &order_id)
                .await
                .unwrap(),
            StatusCode::UNAUTHORIZED,
            "AUTH_INVALID",
        )
        .await;
        for token in [None, Some(w.me.token.as_str())] {
            let error = expect_error(
                read(token, Some("k-orders"), "ord_nope").await.unwrap(),
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
            )
            .await;
            assert_eq!(error["details"]["resource"], "market-order");
            assert_eq!(error["details"]["id"], "ord_nope");
        }
        // The list is a platform route: a token is no API key.
        expect_error(
            bare.get(
                w.srv
                    .url(&format!("{ORDERS}?machineId={}", w.me.machine_id)),
            )
            .header(TOKEN_HEADER, &w.me.token)
            .send()
            .await
            .unwrap(),
            StatusCode::UNAUTHORIZED,
            "AUTH_REQUIRED",
        )
        .await;
        assert_eq!(w.orders_of(&w.me.machine_id).await.len(), 2);
        w.stop().await;
    }
}

/// The machine's record at `path` with `id`.
async fn machine_item(w: &OrderWorld, list: &str, item_id: &Value) -> Value {
    common::market::all_items(
        &w.srv,
        &format!("/api/v1/machines/{}/{list}", w.me.machine_id),
    )
    .await
    .into_iter()
    .find(|item| item["id"] == *item_id)
    .unwrap_or_else(|| panic!("no {list} item {item_id}"))
}

#[tokio::test]
async fn execute_delivers_fails_or_hands_off() {
    for backend in backends() {
        let w = OrderWorld::start(&backend, &[]).await;
        // Native success, with the body's input replacing the stored one.
        let order = w.order_with(FREE, json!({"input": {"q": "old"}})).await;
        let order_id = id(&order);
        let result = w
            .acted(
                &order_id,
                "execute",
                json!({"input": {"q": "new"}}),
                StatusCode::OK,
            )
            .await;
        let execution = &result["execution"];
        assert_eq!(execution["statusCode"], 200);
        assert!(execution.get("handoff").is_none());
        let delivered = &result["order"];
        assert_eq!(delivered["status"], "delivered");
        assert_eq!(delivered["input"], json!({"q": "new"}));
        assert_eq!(delivered["routeId"], execution["route"]["id"]);
        assert_eq!(delivered["runId"], execution["run"]["id"]);
        assert_eq!(delivered["outcomeId"], execution["outcome"]["id"]);
        assert!(delivered["errorMessage"].is_null());
        assert_eq!(w.get(&order_id).await, *delivered);
        let seen = w.provider.seen_at("/json/free");
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].method, "POST");
        assert_eq!(seen[0].json(), json!({"q": "new"}));
        assert_eq!(execution["run"]["status"], "completed");
        assert_eq!(execution["outcome"]["status"], "completed");
        assert_eq!(execution["outcome"]["result"]["ok"], true);
        assert_eq!(execution["outcome"]["result"]["body"], json!({"q": "new"}));
        assert_eq!(execution["route"]["status"], "completed");
        assert_eq!(execution["route"]["orderId"], order_id);
        assert_eq!(execution["route"]["score"], 1.0);
        assert_eq!(execution["route"]["fallbackChain"], json!([]));
        assert_eq!(execution["task"]["id"], order["taskId"]);
        assert_eq!(execution["task"]["status"], "completed");
        assert_eq!(execution["task"]["taskType"], "market-order");
        let run = expect_json(
            w.srv
                .get(&format!(
                    "/api/v1/runs/{}",
                    delivered["runId"].as_str().unwrap()
                ))
                .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(run["run"], execution["run"]);
        assert_eq!(run["outcome"], execution["outcome"]);

        // Native failure: still 200, the outcome says so.
        let failing = w.order(FAILING).await;
        let result = w.execute(&id(&failing), StatusCode::OK).await;
        let execution = &result["execution"];
        assert_eq!(execution["statusCode"], 200);
        assert_eq!(result["order"]["status"], "failed");
        assert_eq!(result["order"]["errorMessage"], "HTTP 500");
        assert_eq!(execution["outcome"]["status"], "failed");
        assert_eq!(execution["outcome"]["errorCode"], "PROVIDER_ERROR");
        assert_eq!(execution["outcome"]["errorMessage"], "HTTP 500");
        assert_eq!(execution["run"]["status"], "failed");
        assert_eq!(execution["route"]["status"], "failed");
        assert_eq!(execution["task"]["status"], "failed");

        // A connection that fails is a failed execution too.
        let dead = w.order(DEAD).await;
        let result = w.execute(&id(&dead), StatusCode::OK).await;
        assert_eq!(result["execution"]["statusCode"], 200);
        assert_eq!(result["order"]["status"], "failed");
        assert_eq!(
            result["execution"]["outcome"]["errorCode"],
            "ENDPOINT_UNREACHABLE"
        );

        // What cannot run is refused before anything changes.
        for (service_id, reason) in [(BLOCKED, "blocked-address"), (NO_ADAPTER, "no-adapter")] {
            let order = w.order(service_id).await;
            let error = expect_error(
                w.act(&id(&order), "execute", json!({})).await,
                StatusCode::UNPROCESSABLE_ENTITY,
                "EXECUTION_UNSUPPORTED",
            )
            .await;
            assert_eq!(error["details"]["reason"], reason);
            assert_eq!(w.get(&id(&order)).await, order, "unchanged");
        }

        // Handoff: 202, nothing called.
        let calls = w.provider.count();
        let handoff = w.order(HANDOFF).await;
        let result = w.execute(&id(&handoff), StatusCode::ACCEPTED).await;
        let execution = &result["execution"];
        assert_eq!(execution["statusCode"], 202);
        let expected =
            json!({"label": "Continue at the provider", "url": HANDOFF_URL, "notes": ["sign in"]});
        assert_eq!(execution["handoff"], expected);
        assert_eq!(result["order"]["handoff"], expected);
        assert_eq!(result["order"]["status"], "handoff");
        assert_eq!(execution["run"]["status"], "external");
        assert_eq!(execution["outcome"]["status"], "external");
        assert_eq!(execution["outcome"]["externalRef"], HANDOFF_URL);
        assert_eq!(execution["route"]["status"], "handed_off");
        assert_eq!(execution["task"]["status"], "handed_off");
        assert_eq!(w.provider.count(), calls);
        assert_eq!(
            machine_item(&w, "routes", &execution["route"]["id"]).await["status"],
            "handed_off"
        );
        let outcome = machine_item(&w, "outcomes", &execution["outcome"]["id"]).await;
        assert_eq!(outcome["externalRef"], HANDOFF_URL);

        // A quoted order's route carries the quote's score.
        let search = search_as(&w, &w.me, json!({})).await;
        let quote = quote_of(&search, FREE).clone();
        let quoted = w.order_with(FREE, json!({"quoteId": id(&quote)})).await;
        let result = w.execute(&id(&quoted), StatusCode::OK).await;
        assert_eq!(result["execution"]["route"]["score"], quote["score"]);

        // Without PEAQOS_REQUIRE_PAYMENT_BEFORE_EXECUTE a paid order runs before it is paid,
        // but a request-scoped rail needs its payment headers.
        let unpaid = w.order(PAID).await;
        let result = w.execute(&id(&unpaid), StatusCode::OK).await;
        assert_eq!(result["order"]["status"], "delivered");
        let per_request = w.order(X402).await;
        let error = expect_error(
            w.act(&id(&per_request), "execute", json!({})).await,
            StatusCode::PAYMENT_REQUIRED,
            "PAYMENT_REQUIRED",
        )
        .await;
        assert_eq!(error["details"]["reason"], "payment-headers-required");
        assert!(error["details"]["challenge"].is_null());
        assert_eq!(w.status(&id(&per_request)).await, "created");
        assert!(w.provider.seen_at("/json/x402").is_empty());

        // Who may execute, and what.
        let error = expect_error(
            w.act("ord_nope", "execute", json!({})).await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;
        assert_eq!(error["details"]["resource"], "market-order");
        let other = w.other_machine(None).await;
        let fresh = w.order(FREE).await;
        expect_error(
            w.action_as(&other, &id(&fresh), "execute", Some(&json!({})))
                .send()
                .await
                .unwrap(),
            StatusCode::UNAUTHORIZED,
            "AGENT_AUTH_INVALID",
        )
        .await;
        expect_error(
            w.act(&id(&fresh), "execute", json!({"input": "text"}))
                .await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(w.status(&id(&fresh)).await, "created");
        w.stop().await;
    }
}

#[tokio::test]
async fn a_provider_402_leaves_the_order_as_it_was() {
    for backend in backends() {
        let w = OrderWorld::start(&backend, &[]).await;
        let created = w.order(PAYWALL).await;
        let ready = w.order(PAYWALL).await;
        assert_eq!(w.intent(&id(&ready)).await["status"], "not_required");
        for (order, status) in [(&created, "created"), (&ready, "ready")] {
            let order_id = id(order);
            for _ in 0..2 {
                let error = expect_error(
                    w.act(&order_id, "execute", json!({})).await,
                    StatusCode::PAYMENT_REQUIRED,
                    "PAYMENT_REQUIRED",
                )
                .await;
                let challenge = &error["details"]["challenge"];
                assert_eq!(challenge["statusCode"], 402, "{error}");
                assert_eq!(challenge["bodyError"], "fake failure", "{error}");
            }
            let after = w.get(&order_id).await;
            assert_eq!(after["status"], status);
            assert!(after["errorMessage"].is_null());
            // The attempt is stored as failed with PAYMENT_REQUIRED.
            let run = expect_json(
                w.srv
                    .get(&format!(
                        "/api/v1/runs/{}",
                        after["runId"].as_str().unwrap()
                    ))
                    .await,
                StatusCode::OK,
            )
            .await;
            assert_eq!(run["run"]["status"], "failed");
            assert_eq!(run["outcome"]["status"], "failed");
            assert_eq!(run["outcome"]["errorCode"], "PAYMENT_REQUIRED");
            assert_eq!(
                machine_item(&w, "routes", &after["routeId"]).await["status"],
                "failed"
            );
            let task = expect_json(
                w.srv
                    .get(&format!(
                        "/api/v1/machines/{}/tasks/{}",
                        w.me.machine_id,
                        after["taskId"].as_str().unwrap()
                    ))
                    .await,
                StatusCode::OK,
            )
            .await;
            assert_eq!(task["item"]["status"], "queued", "the task is unchanged");
            assert!(
                w.events("market.order.executed", &order_id)
                    .await
                    .is_empty()
            );
            assert!(w.events("market.order.failed", &order_id).await.is_empty());
        }
        assert_eq!(w.provider.seen_at("/status/402").len(), 4);
        // Still pending: it can be cancelled.
        w.acted(&id(&created), "cancel", json!({}), StatusCode::OK)
            .await;
        w.stop().await;
    }
}

#[tokio::test]
async fn payment_before_execute_needs_a_held_payment() {
    for backend in backends() {
        let w = OrderWorld::start(
            &backend,
            &[("PEAQOS_REQUIRE_PAYMENT_BEFORE_EXECUTE", "true")],
        )
        .await;
        let unpaid = w.order(PAID).await;
        let pending = w.in_state("payment_pending").await;
        let refunded = w.order(PAID).await;
        w.hold_wallet(&id(&refunded)).await;
        w.acted(&id(&refunded), "payment/refund", json!({}), StatusCode::OK)
            .await;
        for (order, payment_status) in [
            (&unpaid, Value::Null),
            (&pending, json!("intent_created")),
            (&refunded, json!("refunded")),
        ] {
            let before = w.get(&id(order)).await;
            let error = expect_error(
                w.act(&id(order), "execute", json!({})).await,
                StatusCode::PAYMENT_REQUIRED,
                "PAYMENT_REQUIRED",
            )
            .await;
            assert_eq!(error["details"]["paymentStatus"], payment_status);
            assert_eq!(w.get(&id(order)).await, before, "nothing changed");
        }
        assert!(w.provider.seen_at("/json/paid").is_empty(), "no call made");

        // held, not_required, and no payment where none is required.
        let held = w.order(PAID).await;
        w.hold_wallet(&id(&held)).await;
        assert_eq!(
            w.execute(&id(&held), StatusCode::OK).await["order"]["status"],
            "delivered"
        );
        let free = w.order(FREE).await;
        assert_eq!(
            w.execute(&id(&free), StatusCode::OK).await["order"]["status"],
            "delivered"
        );
        let free_ready = w.in_state("ready").await;
        assert_eq!(
            w.execute(&id(&free_ready), StatusCode::OK).await["order"]["status"],
            "delivered"
        );
        let escrowed = w.order(HANDOFF).await;
        w.hold_escrow(&id(&escrowed)).await;
        assert_eq!(
            w.execute(&id(&escrowed), StatusCode::ACCEPTED).await["order"]["status"],
            "handoff"
        );
        assert_eq!(w.provider.seen_at("/json/paid").len(), 1);
        w.stop().await;
    }
}

#[tokio::test]
async fn confirm_and_dispute_settle_the_payment() {
    for backend in backends() {
        let w = OrderWorld::start(&backend, &[]).await;
        // delivered with a held payment → confirmed, release_pending.
        let paid = w.order(PAID).await;
        w.hold_wallet(&id(&paid)).await;
        w.execute(&id(&paid), StatusCode::OK).await;
        // 0.2.0 sends no body with a JSON content type.
        let response = w
            .action_as(&w.me, &id(&paid), "confirm", None)
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap();
        let confirmed = expect_json(response, StatusCode::OK).await;
        assert_eq!(confirmed["order"]["status"], "confirmed");
        assert_eq!(confirmed["payment"]["status"], "release_pending");
        assert_eq!(w.get(&id(&paid)).await, confirmed["order"]);

        // No payment: confirmed with payment null.
        let free = w.in_state("delivered").await;
        let confirmed = w
            .acted(&id(&free), "confirm", json!({}), StatusCode::OK)
            .await;
        assert!(confirmed["payment"].is_null());

        // A handoff order with a held escrow is confirmed once received outside.
        let handoff = w.order(HANDOFF).await;
        w.hold_escrow(&id(&handoff)).await;
        w.execute(&id(&handoff), StatusCode::ACCEPTED).await;
        let confirmed = w
            .acted(&id(&handoff), "confirm", json!({}), StatusCode::OK)
            .await;
        assert_eq!(confirmed["order"]["status"], "confirmed");
        assert_eq!(confirmed["payment"]["status"], "release_pending");

        // Dispute: a reason is required; release_pending and held payments freeze.
        for body in [json!({}), json!({"reason": " "}), json!({"reason": null})] {
            let error = expect_error(
                w.act(&id(&paid), "dispute", body).await,
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
            )
            .await;
            assert_eq!(error["details"]["field"], "reason");
        }
        let disputed = w
            .acted(
                &id(&paid),
                "dispute",
                json!({"reason": "the data was empty", "evidence": {"photoUrl": "https://x.example/p.png"}}),
                StatusCode::OK,
            )
            .await;
        assert_eq!(disputed["order"]["status"], "disputed");
        assert_eq!(disputed["payment"]["status"], "frozen");
        let dispute = &disputed["dispute"];
        assert!(dispute["id"].as_str().unwrap().starts_with("dsp_"));
        assert_eq!(
            *dispute,
            json!({"id": dispute["id"], "orderId": paid["id"], "machineId": w.me.machine_id,
                   "status": "open", "reason": "the data was empty",
                   "evidence": {"photoUrl": "https://x.example/p.png"},
                   "createdAt": dispute["createdAt"], "updatedAt": dispute["createdAt"]})
        );
        let held = w.order(PAID).await;
        w.hold_wallet(&id(&held)).await;
        w.execute(&id(&held), StatusCode::OK).await;
        let disputed = w
            .acted(
                &id(&held),
                "dispute",
                json!({"reason": "late"}),
                StatusCode::OK,
            )
            .await;
        assert_eq!(disputed["payment"]["status"], "frozen");
        assert_eq!(disputed["dispute"]["evidence"], json!({}));
        let bare = w.in_state("handoff").await;
        let disputed = w
            .acted(
                &id(&bare),
                "dispute",
                json!({"reason": "never came"}),
                StatusCode::OK,
            )
            .await;
        assert!(disputed["payment"].is_null());
        assert_eq!(disputed["order"]["status"], "disputed");

        // Another machine's token may not settle this machine's orders.
        let other = w.other_machine(None).await;
        let delivered = w.in_state("delivered").await;
        for action in ["confirm", "dispute", "cancel", "retry"] {
            expect_error(
                w.action_as(&other, &id(&delivered), action, Some(&action_body(action)))
                    .send()
                    .await
                    .unwrap(),
                StatusCode::UNAUTHORIZED,
                "AGENT_AUTH_INVALID",
            )
            .await;
        }
        for action in ["confirm", "dispute", "cancel", "retry"] {
            let error = expect_error(
                w.act("ord_nope", action, action_body(action)).await,
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
            )
            .await;
            assert_eq!(error["details"]["resource"], "market-order");
        }
        assert_eq!(w.status(&id(&delivered)).await, "delivered");
        w.stop().await;
    }
}

/// A machine whose identity MCR verifies, with a pairing; what its MCR record is made of.
struct Verified {
    agent: Agent,
    did: String,
    owner: String,
    mcr_id: u64,
}

async fn verified_machine(srv: &TestServer, mcr: &FakeMcr) -> Verified {
    let owner = Wallet::random();
    let did = format!("did:peaq:{}", rand_u64() % 1_000_000_000);
    let mcr_id = rand_u64() % 100_000;
    mcr.register(&did, mcr_id, &owner.address(), true);
    let challenge = expect_json(
        srv.post_json(
            "/api/v1/machine-identity/challenges",
            &json!({"identityRef": did}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await["item"]
        .clone();
    let signature = owner.sign_personal(challenge["message"].as_str().unwrap());
    let machine = expect_json(
        srv.post_json(
            "/api/v1/machines",
            &json!({"displayName": "Rover", "ownerId": "o", "machineType": "rover",
                    "runtimeProfile": "edge", "identityRef": did,
                    "identityProof": {"challengeId": challenge["challengeId"], "signature": signature}}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await["item"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    expect_json(
        srv.patch_json(
            &format!("/api/v1/machines/{machine}"),
            &json!({"status": "active"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let pairing = common::market::pair(srv, &machine, None).await;
    Verified {
        agent: Agent::of(&pairing),
        did,
        owner: owner.address(),
        mcr_id,
    }
}

/// The direct-read body of `agent` for `operation`.
fn read_body(agent: &Agent, operation: &str) -> Value {
    json!({"machineId": agent.machine_id, "agentPairingId": agent.pairing_id, "operation": operation})
}

async fn direct_read(w: &OrderWorld, agent: &Agent, service_id: &str, body: &Value) -> Response {
    w.as_agent(
        agent,
        Method::POST,
        &format!("/api/v1/market/services/{service_id}/execute"),
    )
    .json(body)
    .send()
    .await
    .unwrap()
}

/// Every spending call (create, payment-intent, execute, retry, direct read) answers `code`
/// with `reason`; none changes its order.
async fn assert_spending_refused(
    w: &OrderWorld,
    orders: (&Value, &Value, &Value),
    status: StatusCode,
    code: &str,
    reason: Option<&str>,
) {
    let (fresh, pending, failed) = orders;
    let responses = vec![
        ("create", w.create(&w.body(FREE)).await),
        (
            "payment-intent",
            w.act(&id(pending), "payment-intent", json!({})).await,
        ),
        ("execute", w.act(&id(fresh), "execute", json!({})).await),
        ("retry", w.act(&id(failed), "retry", json!({})).await),
        (
            "direct read",
            direct_read(w, &w.me, FREE, &read_body(&w.me, "read")).await,
        ),
    ];
    for (call, response) in responses {
        let error = expect_error(response, status, code).await;
        if let Some(reason) = reason {
            assert_eq!(error["details"]["reason"], reason, "{call}: {error}");
        }
    }
    assert_eq!(w.status(&id(fresh)).await, "created");
    assert!(w.payment(&id(pending)).await.is_null());
    assert_eq!(w.status(&id(failed)).await, "failed");
}

#[tokio::test]
async fn spending_needs_gate_c_and_settling_only_gate_a() {
    for backend in backends() {
        let mcr = FakeMcr::start().await;
        let (srv, provider, script, catalog, env) = OrderWorld::server(
            &backend,
            &[
                ("PEAQOS_MACHINE_IDENTITY_VERIFICATION", "required"),
                ("PEAQOS_MCR_API_URL", &mcr.url),
                ("PEAQOS_MCR_CACHE_TTL_MS", "0"),
            ],
        )
        .await;
        let v = verified_machine(&srv, &mcr).await;
        let w = OrderWorld::around(srv, v.agent.clone(), provider, script, catalog, env);
        let list = format!("{ORDERS}?machineId={}", w.me.machine_id);
        let mut delivered = Vec::new();
        let mut created = Vec::new();
        for _ in 0..3 {
            delivered.push(w.in_state("delivered").await);
            created.push(w.order(PAID).await);
        }
        let fresh = w.order(FREE).await;
        let pending = w.order(PAID).await;
        let failed = w.in_state("failed").await;
        let spending = (&fresh, &pending, &failed);

        // Not bonded: Gate C refuses spending, Gate B (the list) passes, settling goes on.
        mcr.register(&v.did, v.mcr_id, &v.owner, false);
        assert_spending_refused(
            &w,
            spending,
            StatusCode::FORBIDDEN,
            "MACHINE_NOT_ACTIVATED",
            Some("not-bonded"),
        )
        .await;
        expect_json(w.srv.get(&list).await, StatusCode::OK).await;
        w.acted(&id(&delivered[0]), "confirm", json!({}), StatusCode::OK)
            .await;
        w.acted(
            &id(&delivered[0]),
            "dispute",
            json!({"reason": "r"}),
            StatusCode::OK,
        )
        .await;
        w.acted(&id(&created[0]), "cancel", json!({}), StatusCode::OK)
            .await;

        // MCR failing: Gate B fails too; confirm and cancel need only Gate A.
        mcr.set(&v.did, Behaviour::Status(500));
        assert_spending_refused(
            &w,
            spending,
            StatusCode::SERVICE_UNAVAILABLE,
            "PEAQOS_IDENTITY_UNAVAILABLE",
            None,
        )
        .await;
        expect_error(
            w.srv.get(&list).await,
            StatusCode::SERVICE_UNAVAILABLE,
            "PEAQOS_IDENTITY_UNAVAILABLE",
        )
        .await;
        w.acted(&id(&delivered[1]), "confirm", json!({}), StatusCode::OK)
            .await;
        w.acted(&id(&created[1]), "cancel", json!({}), StatusCode::OK)
            .await;

        // No longer registered.
        mcr.remove(&v.did);
        assert_spending_refused(
            &w,
            spending,
            StatusCode::FORBIDDEN,
            "MACHINE_NOT_ACTIVATED",
            Some("not-registered"),
        )
        .await;
        let error = expect_error(
            w.srv.get(&list).await,
            StatusCode::FORBIDDEN,
            "MACHINE_NOT_ACTIVATED",
        )
        .await;
        assert_eq!(error["details"]["reason"], "not-registered");

        // Verified again, but no longer active.
        mcr.register(&v.did, v.mcr_id, &v.owner, true);
        expect_json(
            w.srv
                .patch_json(
                    &format!("/api/v1/machines/{}", w.me.machine_id),
                    &json!({"status": "degraded"}),
                )
                .await,
            StatusCode::OK,
        )
        .await;
        assert_spending_refused(
            &w,
            spending,
            StatusCode::CONFLICT,
            "MACHINE_NOT_ACTIVE",
            None,
        )
        .await;
        expect_error(
            w.srv.get(&list).await,
            StatusCode::CONFLICT,
            "MACHINE_NOT_ACTIVE",
        )
        .await;
        w.acted(&id(&delivered[2]), "confirm", json!({}), StatusCode::OK)
            .await;
        w.acted(&id(&created[2]), "cancel", json!({}), StatusCode::OK)
            .await;
        w.stop().await;
    }
}

#[tokio::test]
async fn the_direct_read_runs_free_native_services_only() {
    for backend in backends() {
        let w = OrderWorld::start(&backend, &[]).await;
        let body = merged(
            read_body(&w.me, "read"),
            json!({"input": {"blobId": "b-1"}, "budget": {"max": 1}}),
        );
        let result = expect_json(direct_read(&w, &w.me, FREE, &body).await, StatusCode::OK).await;
        assert!(result.get("order").is_none());
        assert_eq!(result["service"]["id"], FREE);
        let execution = &result["execution"];
        assert_eq!(execution["statusCode"], 200);
        assert!(execution.get("handoff").is_none());
        let task = &execution["task"];
        assert_eq!(task["taskType"], "direct-read");
        assert_eq!(task["status"], "completed");
        assert_eq!(task["operation"], "read");
        assert_eq!(task["input"], json!({"blobId": "b-1"}));
        assert_eq!(task["constraints"]["budget"], 1.0, "the budget is recorded");
        assert!(task["orderId"].is_null());
        assert_eq!(execution["route"]["status"], "completed");
        assert_eq!(execution["route"]["taskId"], task["id"]);
        assert_eq!(execution["run"]["status"], "completed");
        assert_eq!(execution["outcome"]["status"], "completed");
        assert_eq!(
            execution["outcome"]["result"]["body"],
            json!({"blobId": "b-1"})
        );
        let seen = w.provider.seen_at("/json/free");
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].json(), json!({"blobId": "b-1"}));
        let task_id = task["id"].as_str().unwrap();
        let stored = expect_json(
            w.srv
                .get(&format!(
                    "/api/v1/machines/{}/tasks/{task_id}",
                    w.me.machine_id
                ))
                .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(stored["item"]["taskType"], "direct-read");
        assert_eq!(stored["item"]["constraints"]["budget"], 1.0);
        let created = w.event("task.created", task_id).await;
        assert_eq!(created["resourceType"], "task");
        assert_eq!(created["actor"], "api");
        assert_eq!(
            created["payload"],
            json!({"directRead": true, "serviceId": FREE, "operation": "read"})
        );
        let executed = w.event("task.executed", task_id).await;
        assert_eq!(
            executed["payload"],
            json!({"directRead": true, "serviceId": FREE, "operation": "read",
                   "runId": execution["run"]["id"], "outcomeId": execution["outcome"]["id"],
                   "status": "completed"})
        );
        assert!(w.orders_of(&w.me.machine_id).await.is_empty(), "no order");

        // A failed call still answers 200.
        let result = expect_json(
            direct_read(&w, &w.me, FAILING, &read_body(&w.me, "run")).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(result["execution"]["statusCode"], 200);
        assert_eq!(result["execution"]["outcome"]["status"], "failed");
        assert_eq!(
            result["execution"]["outcome"]["errorCode"],
            "PROVIDER_ERROR"
        );
        assert_eq!(result["execution"]["task"]["status"], "failed");

        // Only free native services of enabled skills.
        let calls = w.provider.count();
        for (service_id, operation) in [(PAID, "run"), (HANDOFF, "run"), (X402, "run")] {
            let error = expect_error(
                direct_read(&w, &w.me, service_id, &read_body(&w.me, operation)).await,
                StatusCode::UNPROCESSABLE_ENTITY,
                "EXECUTION_UNSUPPORTED",
            )
            .await;
            assert_eq!(error["details"]["reason"], "order-required", "{service_id}");
        }
        expect_json(
            w.srv
                .patch_json(
                    &format!("/api/v1/skills/{OFF_SKILL}/config"),
                    &json!({"enabled": false}),
                )
                .await,
            StatusCode::OK,
        )
        .await;
        let error = expect_error(
            direct_read(&w, &w.me, OFF, &read_body(&w.me, "run")).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "EXECUTION_UNSUPPORTED",
        )
        .await;
        assert_eq!(error["details"]["reason"], "skill-disabled");
        let error = expect_error(
            direct_read(&w, &w.me, "no-such-service", &read_body(&w.me, "run")).await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;
        assert_eq!(error["details"]["resource"], "service");

        // The body, bound to the token.
        let base = read_body(&w.me, "read");
        for (changes, field) in [
            (json!({"operation": null}), "operation"),
            (json!({"operation": " "}), "operation"),
            (json!({"operation": "write"}), "operation"),
            (json!({"machineId": null}), "machineId"),
            (json!({"agentPairingId": null}), "agentPairingId"),
            (json!({"budget": {"max": -1}}), "budget.max"),
            (
                json!({"providerCredentials": {"ordprov": 1}}),
                "providerCredentials.ordprov",
            ),
        ] {
            let error = expect_error(
                direct_read(&w, &w.me, FREE, &merged(base.clone(), changes.clone())).await,
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
            )
            .await;
            assert_eq!(error["details"]["field"], field, "{changes}");
        }
        let other = w.other_machine(None).await;
        let error = expect_error(
            direct_read(
                &w,
                &w.me,
                FREE,
                &merged(base.clone(), json!({"machineId": other.machine_id})),
            )
            .await,
            StatusCode::UNAUTHORIZED,
            "AGENT_AUTH_INVALID",
        )
        .await;
        assert_eq!(error["details"]["reason"], "machine-mismatch");
        expect_error(
            w.srv
                .post_json(&format!("/api/v1/market/services/{FREE}/execute"), &base)
                .await,
            StatusCode::UNAUTHORIZED,
            "AGENT_AUTH_REQUIRED",
        )
        .await;

        // The delegation lists and machine policies apply.
        let denied = w.pairing(Some(json!({"deniedServiceIds": [FREE]}))).await;
        let error = expect_error(
            direct_read(&w, &denied, FREE, &read_body(&denied, "read")).await,
            StatusCode::FORBIDDEN,
            "AGENT_POLICY_DENIED",
        )
        .await;
        assert_eq!(error["details"]["rule"], "denied-service-id");
        let policy = create_policy(&w, json!({"name": "no ord", "deniedSkillKeys": [SKILL]})).await;
        use_policies(&w, &w.me.machine_id, json!([policy])).await;
        let error = expect_error(
            direct_read(&w, &w.me, FREE, &base).await,
            StatusCode::FORBIDDEN,
            "AGENT_POLICY_DENIED",
        )
        .await;
        assert_eq!(error["details"]["rule"], "denied-skill-key");
        assert_eq!(error["details"]["policyId"], policy);
        assert_eq!(w.provider.count(), calls, "no refused read called out");
        w.stop().await;
    }
}

/// `POST /policies`: the new policy's id.
async fn create_policy(w: &OrderWorld, body: Value) -> String {
    id(&expect_json(
        w.srv.post_json("/api/v1/policies", &body).await,
        StatusCode::CREATED,
    )
    .await["item"])
}

/// Sets the machine's `policyIds`.
async fn use_policies(w: &OrderWorld, machine_id: &str, ids: Value) {
    expect_json(
        w.srv
            .patch_json(
                &format!("/api/v1/machines/{machine_id}"),
                &json!({"policyIds": ids}),
            )
            .await,
        StatusCode::OK,
    )
    .await;
}

#[tokio::test]
async fn delegation_lists_and_machine_policies_decide_what_may_be_ordered() {
    for backend in backends() {
        let w = OrderWorld::start(&backend, &[]).await;
        let mut placed = 0;
        // The pairing's delegation lists (deny beats allow).
        let lists = [
            (
                json!({"deniedServiceIds": [PAID]}),
                PAID,
                "denied-service-id",
                FREE,
            ),
            (
                json!({"deniedSkillKeys": [SKILL]}),
                PAID,
                "denied-skill-key",
                OTHER,
            ),
            (
                json!({"allowedSkillKeys": [OTHER_SKILL]}),
                PAID,
                "skill-key-not-allowed",
                OTHER,
            ),
            (
                json!({"allowedServiceIds": [FREE]}),
                PAID,
                "service-id-not-allowed",
                FREE,
            ),
            (
                json!({"allowedSkillKeys": [SKILL], "deniedServiceIds": [FREE]}),
                FREE,
                "denied-service-id",
                PAID,
            ),
            (
                json!({"allowedSkillKeys": [SKILL, OTHER_SKILL], "deniedSkillKeys": [SKILL]}),
                FREE,
                "denied-skill-key",
                OTHER,
            ),
        ];
        for (policy, refused, rule, allowed) in lists {
            let agent = w.pairing(Some(policy.clone())).await;
            let error = expect_error(
                w.create_as(&agent, &OrderWorld::body_for(&agent, refused))
                    .await,
                StatusCode::FORBIDDEN,
                "AGENT_POLICY_DENIED",
            )
            .await;
            assert_eq!(error["details"]["rule"], rule, "{policy}");
            assert!(error["details"].get("policyId").is_none());
            expect_json(
                w.create_as(&agent, &OrderWorld::body_for(&agent, allowed))
                    .await,
                StatusCode::CREATED,
            )
            .await;
            placed += 1;
        }

        // Machine policies, each alone: (policy, refused, rule, allowed, allowed body changes).
        let cases = [
            (
                json!({"name": "no other", "deniedSkillKeys": [OTHER_SKILL]}),
                OTHER,
                "denied-skill-key",
                PAID,
                json!({}),
            ),
            (
                json!({"name": "ord only", "allowedSkillKeys": [SKILL]}),
                OTHER,
                "skill-key-not-allowed",
                FREE,
                json!({}),
            ),
            (
                json!({"name": "no handoff", "handoffAllowed": false}),
                HANDOFF,
                "handoff-not-allowed",
                PAID,
                json!({}),
            ),
            (
                json!({"name": "native", "nativeOnly": true}),
                HANDOFF,
                "native-only",
                FREE,
                json!({}),
            ),
            (
                json!({"name": "lidar", "requiredCapabilities": ["lidar"]}),
                PAID,
                "required-capabilities",
                FREE,
                json!({"budget": null}),
            ),
            (
                json!({"name": "cap", "budgetCap": {"currency": "USDT", "amount": 2}}),
                PAID,
                "budget-cap",
                PAID,
                json!({"budget": {"amount": 2}}),
            ),
            (
                json!({"name": "cap eur", "budgetCap": {"currency": "USDT", "amount": 5}}),
                EUR,
                "budget-cap",
                FREE,
                json!({}),
            ),
        ];
        for (policy, refused, rule, allowed, changes) in cases {
            let policy_id = create_policy(&w, policy.clone()).await;
            use_policies(&w, &w.me.machine_id, json!([policy_id])).await;
            let error = expect_error(
                w.create(&w.body(refused)).await,
                StatusCode::FORBIDDEN,
                "AGENT_POLICY_DENIED",
            )
            .await;
            assert_eq!(error["details"]["rule"], rule, "{policy}");
            assert_eq!(error["details"]["policyId"], policy_id);
            w.order_with(allowed, changes).await;
            placed += 1;
        }
        // Several policies: the one that refuses is named.
        let first = create_policy(&w, json!({"name": "a", "deniedSkillKeys": ["x"]})).await;
        let second = create_policy(&w, json!({"name": "b", "deniedSkillKeys": [SKILL]})).await;
        use_policies(&w, &w.me.machine_id, json!([first, second])).await;
        let error = expect_error(
            w.create(&w.body(PAID)).await,
            StatusCode::FORBIDDEN,
            "AGENT_POLICY_DENIED",
        )
        .await;
        assert_eq!(error["details"]["policyId"], second);
        w.order(OTHER).await;
        placed += 1;
        use_policies(&w, &w.me.machine_id, json!([])).await;
        w.order(HANDOFF).await;
        placed += 1;
        assert_eq!(w.orders_of(&w.me.machine_id).await.len(), placed);
        w.stop().await;
    }
}

#[tokio::test]
async fn the_spend_is_the_budget_then_the_quote_then_the_fixed_price() {
    for backend in backends() {
        let w = OrderWorld::start(&backend, &[]).await;
        let search = search_as(&w, &w.me, json!({})).await;
        let cases = [
            (
                PAID,
                json!({"budget": {"amount": 1.25, "currency": "EURC"}}),
                json!(1.25),
                json!("EURC"),
            ),
            (
                PAID,
                json!({"budget": {"amount": 0}}),
                json!(0.0),
                json!("USDT"),
            ),
            (
                PAID,
                json!({"budget": {"max": 1}}),
                json!(2.5),
                json!("USDT"),
            ),
            (PAID, json!({}), json!(2.5), json!("USDT")),
            (
                PAID,
                json!({"quoteId": id(quote_of(&search, PAID))}),
                json!(2.5),
                json!("USDT"),
            ),
            (
                EUR,
                json!({"quoteId": id(quote_of(&search, EUR)), "budget": {"currency": "USDT"}}),
                json!(3.0),
                json!("USDT"),
            ),
            (EUR, json!({}), json!(3.0), json!("EUR")),
            (UNPRICED, json!({}), json!(0.0), Value::Null),
            (
                UNPRICED,
                json!({"budget": {"max": 4}}),
                json!(0.0),
                Value::Null,
            ),
            (
                FREE,
                json!({"budget": {"amount": 0.7}}),
                json!(0.7),
                Value::Null,
            ),
        ];
        for (service_id, changes, amount, currency) in cases {
            let order = w.order_with(service_id, changes.clone()).await;
            assert_eq!(order["amount"], amount, "{service_id} {changes}");
            assert_eq!(order["currency"], currency, "{service_id} {changes}");
        }
        // The policy's currency comes last.
        let agent = w.pairing(Some(json!({"currency": "usdt"}))).await;
        for (service_id, currency) in [(UNPRICED, "USDT"), (FREE, "USDT"), (EUR, "EUR")] {
            let order = expect_json(
                w.create_as(&agent, &OrderWorld::body_for(&agent, service_id))
                    .await,
                StatusCode::CREATED,
            )
            .await;
            assert_eq!(order["item"]["currency"], currency, "{service_id}");
        }
        w.stop().await;
    }
}

#[tokio::test]
async fn currency_rules_and_the_per_transaction_limit() {
    for backend in backends() {
        let w = OrderWorld::start(&backend, &[]).await;
        let place = |agent: &Agent, service_id: &str, changes: Value| {
            let body = merged(OrderWorld::body_for(agent, service_id), changes);
            let agent = agent.clone();
            let w = &w;
            async move { w.create_as(&agent, &body).await }
        };
        let usdt = w
            .pairing(Some(
                json!({"perTransactionLimit": 2.5, "currency": "USDT"}),
            ))
            .await;
        expect_json(place(&usdt, PAID, json!({})).await, StatusCode::CREATED).await;
        let error = expect_error(
            place(&usdt, PAID, json!({"budget": {"amount": 2.51}})).await,
            StatusCode::FORBIDDEN,
            "AGENT_SPEND_LIMIT_EXCEEDED",
        )
        .await;
        assert_eq!(
            error["details"],
            json!({"limit": 2.5, "amount": 2.51, "currency": "USDT"})
        );
        // Another currency, with a positive amount, is refused before the limit is looked at.
        let error = expect_error(
            place(&usdt, EUR, json!({})).await,
            StatusCode::FORBIDDEN,
            "AGENT_POLICY_DENIED",
        )
        .await;
        assert_eq!(error["details"]["reason"], "currency-mismatch");
        assert_eq!(error["details"]["rule"], "currency");
        // Currencies compare ignoring case; a zero amount is not checked.
        expect_json(
            place(
                &usdt,
                EUR,
                json!({"budget": {"amount": 1, "currency": "usdt"}}),
            )
            .await,
            StatusCode::CREATED,
        )
        .await;
        expect_json(
            place(&usdt, EUR, json!({"budget": {"amount": 0}})).await,
            StatusCode::CREATED,
        )
        .await;
        expect_json(place(&usdt, FREE, json!({})).await, StatusCode::CREATED).await;
        // With no currency of its own, the spend is in the policy's currency.
        let order = expect_json(
            place(&usdt, FREE, json!({"budget": {"amount": 1}})).await,
            StatusCode::CREATED,
        )
        .await;
        assert_eq!(order["item"]["currency"], "USDT");

        // Limits without a currency compare the amounts as they are.
        let plain = w.pairing(Some(json!({"perTransactionLimit": 5}))).await;
        expect_json(place(&plain, EUR, json!({})).await, StatusCode::CREATED).await;
        let error = expect_error(
            place(&plain, EUR, json!({"budget": {"amount": 6}})).await,
            StatusCode::FORBIDDEN,
            "AGENT_SPEND_LIMIT_EXCEEDED",
        )
        .await;
        assert_eq!(
            error["details"],
            json!({"limit": 5.0, "amount": 6.0, "currency": "EUR"})
        );
        // A currency without limits checks nothing; a daily limit is a limit too.
        let no_limits = w.pairing(Some(json!({"currency": "USDT"}))).await;
        expect_json(place(&no_limits, EUR, json!({})).await, StatusCode::CREATED).await;
        let daily = w
            .pairing(Some(json!({"dailySpendLimit": 100, "currency": "USDT"})))
            .await;
        let error = expect_error(
            place(&daily, EUR, json!({})).await,
            StatusCode::FORBIDDEN,
            "AGENT_POLICY_DENIED",
        )
        .await;
        assert_eq!(error["details"]["reason"], "currency-mismatch");
        assert_eq!(w.orders_of(&w.me.machine_id).await.len(), 7);
        w.stop().await;
    }
}

#[tokio::test]
async fn the_daily_limit_counts_the_utc_day_exactly() {
    for backend in backends() {
        // Sessions outlive the day the test moves into.
        let w = OrderWorld::start(
            &backend,
            &[("PEAQOS_AGENT_PAIRING_SESSION_TTL_MS", "172800000")],
        )
        .await;
        let agent = w
            .pairing(Some(json!({"dailySpendLimit": 1, "currency": "USDT"})))
            .await;
        let tenth = |service_id: &str| {
            merged(
                OrderWorld::body_for(&agent, service_id),
                json!({"budget": {"amount": 0.1}}),
            )
        };
        let mut paid = Vec::new();
        for _ in 0..9 {
            let order =
                expect_json(w.create_as(&agent, &tenth(PAID)).await, StatusCode::CREATED).await;
            paid.push(id(&order["item"]));
        }
        let failing = expect_json(
            w.create_as(&agent, &tenth(FAILING)).await,
            StatusCode::CREATED,
        )
        .await["item"]
            .clone();
        // Ten tenths make exactly 1: the eleventh does not fit.
        let error = expect_error(
            w.create_as(&agent, &tenth(PAID)).await,
            StatusCode::FORBIDDEN,
            "AGENT_DAILY_LIMIT_EXCEEDED",
        )
        .await;
        let details = &error["details"];
        let started = common::market::ms(&details["windowStartedAt"]);
        let now = w.srv.clock.now_ms();
        assert_eq!(started % DAY_MS, 0, "{details}");
        assert!(started <= now && now < started + DAY_MS);
        assert_eq!(
            *details,
            json!({"limit": 1.0, "dailyTotal": 1.1, "amount": 0.1, "currency": "USDT",
                   "windowStartedAt": format_ms(started), "windowEndsAt": format_ms(started + DAY_MS)})
        );
        // Another pairing has a day of its own.
        let sibling = w
            .pairing(Some(json!({"dailySpendLimit": 1, "currency": "USDT"})))
            .await;
        expect_json(
            w.create_as(
                &sibling,
                &merged(
                    OrderWorld::body_for(&sibling, PAID),
                    json!({"budget": {"amount": 1}}),
                ),
            )
            .await,
            StatusCode::CREATED,
        )
        .await;

        // Exact decimals: 0.1 + 0.2 fills a limit of 0.3 (in binary floating point it would
        // not fit).
        let tight = w
            .pairing(Some(json!({"dailySpendLimit": 0.3, "currency": "USDT"})))
            .await;
        let spend = |amount: f64| {
            merged(
                OrderWorld::body_for(&tight, PAID),
                json!({"budget": {"amount": amount}}),
            )
        };
        for amount in [0.1, 0.2] {
            expect_json(
                w.create_as(&tight, &spend(amount)).await,
                StatusCode::CREATED,
            )
            .await;
        }
        let error = expect_error(
            w.create_as(&tight, &spend(0.1)).await,
            StatusCode::FORBIDDEN,
            "AGENT_DAILY_LIMIT_EXCEEDED",
        )
        .await;
        assert_eq!(error["details"]["dailyTotal"], 0.4);

        // A failed order no longer counts, nor does a cancelled one.
        let result = w
            .action_as(&agent, &id(&failing), "execute", Some(&json!({})))
            .send()
            .await
            .unwrap();
        assert_eq!(
            expect_json(result, StatusCode::OK).await["order"]["status"],
            "failed"
        );
        expect_json(w.create_as(&agent, &tenth(PAID)).await, StatusCode::CREATED).await;
        expect_error(
            w.create_as(&agent, &tenth(PAID)).await,
            StatusCode::FORBIDDEN,
            "AGENT_DAILY_LIMIT_EXCEEDED",
        )
        .await;
        let cancel = w
            .action_as(&agent, &paid[0], "cancel", Some(&json!({})))
            .send()
            .await
            .unwrap();
        expect_json(cancel, StatusCode::OK).await;
        expect_json(w.create_as(&agent, &tenth(PAID)).await, StatusCode::CREATED).await;
        expect_error(
            w.create_as(&agent, &tenth(PAID)).await,
            StatusCode::FORBIDDEN,
            "AGENT_DAILY_LIMIT_EXCEEDED",
        )
        .await;

        // The next UTC day starts from nothing.
        let now = w.srv.clock.now_ms();
        w.srv.clock.advance_ms(next_utc_midnight(now) - now + 1);
        let whole = merged(
            OrderWorld::body_for(&agent, PAID),
            json!({"budget": {"amount": 1}}),
        );
        expect_json(w.create_as(&agent, &whole).await, StatusCode::CREATED).await;
        let error = expect_error(
            w.create_as(&agent, &tenth(PAID)).await,
            StatusCode::FORBIDDEN,
            "AGENT_DAILY_LIMIT_EXCEEDED",
        )
        .await;
        assert_eq!(
            common::market::ms(&error["details"]["windowStartedAt"]),
            started + DAY_MS
        );
        w.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_orders_never_exceed_the_daily_limit() {
    for backend in backends() {
        let w = OrderWorld::start(&backend, &[]).await;
        let agent = w
            .pairing(Some(json!({"dailySpendLimit": 10, "currency": "USDT"})))
            .await;
        // PostgreSQL: two server processes on one database (the second is the binary). SQLite:
        // one.
        let second = match backend {
            common::Backend::Postgres(_) => {
                Some(ServerProcess::spawn(Some(&w.srv.db.url), &pairs(&w.env)).await)
            }
            common::Backend::Sqlite => None,
        };
        let mut bases = vec![w.srv.base.clone()];
        bases.extend(second.iter().map(|s| s.base.clone()));
        let client = reqwest::Client::new();
        let body = merged(
            OrderWorld::body_for(&agent, PAID),
            json!({"budget": {"amount": 0.3}}),
        );
        let calls: Vec<_> = (0..100)
            .map(|i| {
                let base = &bases[i % bases.len()];
                tokio::spawn(
                    client
                        .post(format!("{base}{ORDERS}"))
                        .header(TOKEN_HEADER, &agent.token)
                        .json(&body)
                        .send(),
                )
            })
            .collect();
        let mut created = 0;
        for call in calls {
            let response = call.await.unwrap().unwrap();
            if response.status() == StatusCode::CREATED {
                created += 1;
                expect_json(response, StatusCode::CREATED).await;
            } else {
                let error = expect_error(
                    response,
                    StatusCode::FORBIDDEN,
                    "AGENT_DAILY_LIMIT_EXCEEDED",
                )
                .await;
                assert_eq!(error["details"]["limit"], 10.0);
            }
        }
        assert_eq!(created, 33, "floor(10 / 0.3) on {}", backend.name());
        let orders = w.orders_of(&w.me.machine_id).await;
        assert_eq!(orders.len(), 33);
        let total: Decimal = orders.iter().map(|o| decimal(&o["amount"])).sum();
        assert_eq!(total, Decimal::from_str("9.9").unwrap());
        // Exactly 0.1 is left.
        let tenth = merged(body.clone(), json!({"budget": {"amount": 0.1}}));
        expect_json(w.create_as(&agent, &tenth).await, StatusCode::CREATED).await;
        let error = expect_error(
            w.create_as(&agent, &tenth).await,
            StatusCode::FORBIDDEN,
            "AGENT_DAILY_LIMIT_EXCEEDED",
        )
        .await;
        assert_eq!(error["details"]["dailyTotal"], 10.1);
        if let Some(second) = second {
            second.terminate().await;
        }
        w.stop().await;
    }
}

/// Sends `a` and `b` at once: their responses.
async fn race(a: reqwest::RequestBuilder, b: reqwest::RequestBuilder) -> (Response, Response) {
    let (a, b) = (tokio::spawn(a.send()), tokio::spawn(b.send()));
    (a.await.unwrap().unwrap(), b.await.unwrap().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_actions_settle_on_one_outcome() {
    const ROUNDS: usize = 4;
    for backend in backends() {
        let w = OrderWorld::start(&backend, &[]).await;
        let delivered_and_held = || async {
            let order = w.order(PAID).await;
            w.hold_wallet(&id(&order)).await;
            w.execute(&id(&order), StatusCode::OK).await;
            id(&order)
        };
        let post = |order_id: &str, action: &str, body: Value| {
            w.action_as(&w.me, order_id, action, Some(&body))
        };

        // Two confirms: one wins, the other finds the order confirmed.
        for _ in 0..ROUNDS {
            let order_id = delivered_and_held().await;
            let (a, b) = race(
                post(&order_id, "confirm", json!({})),
                post(&order_id, "confirm", json!({})),
            )
            .await;
            let mut won = 0;
            for response in [a, b] {
                if response.status() == StatusCode::OK {
                    won += 1;
                    let body = expect_json(response, StatusCode::OK).await;
                    assert_eq!(body["payment"]["status"], "release_pending");
                } else {
                    let error = expect_error(response, StatusCode::CONFLICT, "ORDER_CLOSED").await;
                    assert_eq!(error["details"]["status"], "confirmed");
                }
            }
            assert_eq!(won, 1);
            assert_eq!(w.status(&order_id).await, "confirmed");
            assert_eq!(w.payment(&order_id).await["status"], "release_pending");
            assert_eq!(w.events("market.order.confirmed", &order_id).await.len(), 1);
        }

        // Confirm against dispute: the dispute always holds (it is allowed from confirmed too).
        for _ in 0..ROUNDS {
            let order_id = delivered_and_held().await;
            let (confirm, dispute) = race(
                post(&order_id, "confirm", json!({})),
                post(&order_id, "dispute", json!({"reason": "race"})),
            )
            .await;
            let disputed = expect_json(dispute, StatusCode::OK).await;
            let confirmed = if confirm.status() == StatusCode::OK {
                expect_json(confirm, StatusCode::OK).await;
                true
            } else {
                let error = expect_error(confirm, StatusCode::CONFLICT, "ORDER_CLOSED").await;
                assert_eq!(error["details"]["status"], "disputed");
                false
            };
            assert_eq!(disputed["payment"]["status"], "frozen");
            assert_eq!(w.status(&order_id).await, "disputed");
            assert_eq!(w.payment(&order_id).await["status"], "frozen");
            let event = w.event("market.order.disputed", &order_id).await;
            let from = if confirmed { "release_pending" } else { "held" };
            assert_eq!(event["payload"]["paymentStatusFrom"], from);
            assert_eq!(
                w.events("market.order.confirmed", &order_id).await.len(),
                usize::from(confirmed)
            );
        }

        // Cancel against payment-proof: exactly one of them happens.
        for _ in 0..ROUNDS {
            let order = w.order(PAID).await;
            let order_id = id(&order);
            let intent = w.intent(&order_id).await;
            let (cancel, proof) = race(
                post(&order_id, "cancel", json!({})),
                post(&order_id, "payment-proof", OrderWorld::proof_for(&intent)),
            )
            .await;
            if cancel.status() == StatusCode::OK {
                expect_json(cancel, StatusCode::OK).await;
                let error = expect_error(proof, StatusCode::CONFLICT, "ORDER_CLOSED").await;
                assert_eq!(error["details"]["status"], "cancelled");
                assert_eq!(w.status(&order_id).await, "cancelled");
                assert_eq!(w.payment(&order_id).await["status"], "intent_created");
            } else {
                expect_json(proof, StatusCode::OK).await;
                let error = expect_error(cancel, StatusCode::CONFLICT, "ORDER_CLOSED").await;
                assert_eq!(error["details"]["reason"], "payment-held");
                assert_eq!(w.status(&order_id).await, "ready");
                assert_eq!(w.payment(&order_id).await["status"], "held");
            }
        }
        w.stop().await;
    }
}

/// Archiving the machine and revoking the pairing of `w.me` both answer `OPEN_MARKET_ORDERS`
/// counting `count` open orders, by PATCH and by DELETE.
async fn assert_blocked(w: &OrderWorld, count: i64) {
    let machine = format!("/api/v1/machines/{}", w.me.machine_id);
    let pairing = format!("{machine}/agent-pairings/{}", w.me.pairing_id);
    let attempts = [
        w.srv.delete(&machine).await,
        w.srv
            .patch_json(&machine, &json!({"status": "archived"}))
            .await,
        w.srv.delete(&pairing).await,
        w.srv
            .patch_json(&pairing, &json!({"status": "revoked"}))
            .await,
    ];
    for response in attempts {
        let error = expect_error(response, StatusCode::CONFLICT, "OPEN_MARKET_ORDERS").await;
        assert_eq!(error["details"]["count"], count, "{error}");
    }
}

/// Revokes the pairing of `w.me` and archives its machine, by PATCH or by DELETE.
async fn revoke_and_archive(w: &OrderWorld, by_patch: bool) {
    let machine = format!("/api/v1/machines/{}", w.me.machine_id);
    let pairing = format!("{machine}/agent-pairings/{}", w.me.pairing_id);
    if by_patch {
        let revoked = expect_json(
            w.srv
                .patch_json(&pairing, &json!({"status": "revoked"}))
                .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(revoked["item"]["status"], "revoked");
        let archived = expect_json(
            w.srv
                .patch_json(&machine, &json!({"status": "archived"}))
                .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(archived["item"]["status"], "archived");
    } else {
        assert_eq!(
            w.srv.delete(&pairing).await.status(),
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            w.srv.delete(&machine).await.status(),
            StatusCode::NO_CONTENT
        );
    }
}

#[tokio::test]
async fn open_orders_block_archiving_and_revocation_until_they_finish() {
    for backend in backends() {
        let mut w = OrderWorld::start(&backend, &[]).await;

        // created, payment_pending and ready block; cancelled, they no longer do.
        let orders = [
            w.order(PAID).await,
            w.in_state("payment_pending").await,
            w.in_state("ready").await,
        ];
        // Finished orders around them do not count.
        w.in_state("cancelled").await;
        w.in_state("failed").await;
        assert_blocked(&w, 3).await;
        for order in &orders {
            w.acted(&id(order), "cancel", json!({}), StatusCode::OK)
                .await;
        }
        revoke_and_archive(&w, true).await;

        // executing and delivered block until confirmed.
        w.me = w.other_machine(None).await;
        let (executing, call) = w.executing(HELD).await;
        let delivered = w.in_state("delivered").await;
        assert_blocked(&w, 2).await;
        w.script.release(1);
        expect_json(call.await.unwrap().unwrap(), StatusCode::OK).await;
        assert_blocked(&w, 2).await;
        for order in [&executing, &delivered] {
            w.acted(&id(order), "confirm", json!({}), StatusCode::OK)
                .await;
        }
        revoke_and_archive(&w, false).await;

        // A ready order with a held escrow blocks, and so does its handoff while the payment is
        // held; a handoff without a payment never does. Confirmed (the payment now release
        // pending), the order is finished.
        w.me = w.other_machine(None).await;
        w.in_state("handoff").await;
        let handoff = w.order(HANDOFF).await;
        w.hold_escrow(&id(&handoff)).await;
        assert_blocked(&w, 1).await;
        w.execute(&id(&handoff), StatusCode::ACCEPTED).await;
        assert_blocked(&w, 1).await;
        let confirmed = w
            .acted(&id(&handoff), "confirm", json!({}), StatusCode::OK)
            .await;
        assert_eq!(confirmed["order"]["status"], "confirmed");
        assert_eq!(confirmed["payment"]["status"], "release_pending");
        revoke_and_archive(&w, true).await;

        // A handoff whose held payment was never confirmed; a disputed order.
        w.me = w.other_machine(None).await;
        let handoff = w.order(HANDOFF).await;
        w.hold_escrow(&id(&handoff)).await;
        w.execute(&id(&handoff), StatusCode::ACCEPTED).await;
        w.in_state("disputed").await;
        assert_blocked(&w, 2).await;
        w.acted(&id(&handoff), "payment/refund", json!({}), StatusCode::OK)
            .await;
        assert_blocked(&w, 1).await;
        w.stop().await;
    }
}

#[tokio::test]
async fn an_execution_cut_off_by_a_crash_fails_after_the_restart() {
    for backend in backends() {
        let w = OrderWorld::start(&backend, &[]).await;
        let order = w.order(HELD).await;
        let order_id = id(&order);
        let OrderWorld {
            srv,
            me,
            provider,
            script,
            catalog,
            env,
        } = w;
        let db = srv.stop_keep_db().await;
        let url = db.url.clone();

        // The binary takes the execute, commits `executing`, calls the provider, and dies.
        let process = ServerProcess::spawn(Some(&url), &pairs(&env)).await;
        let call = tokio::spawn(
            reqwest::Client::new()
                .post(process.url(&format!("{ORDERS}/{order_id}/execute")))
                .header(TOKEN_HEADER, &me.token)
                .json(&json!({}))
                .send(),
        );
        script.wait_for_holds(1).await;
        process.kill().await;
        assert!(
            call.await.unwrap().is_err(),
            "the killed server never answered"
        );

        // Restarted with a shorter timeout. Within it, the sweep leaves the order alone.
        let mut restart = env.clone();
        restart.push(("PEAQOS_ORDER_EXECUTION_TIMEOUT_MS".into(), "20000".into()));
        let srv = TestServer::start_on(db, &url, &pairs(&restart)).await;
        let w = OrderWorld::around(srv, me, provider, script, catalog, env);
        let executing = w.get(&order_id).await;
        assert_eq!(executing["status"], "executing");
        let run_id = executing["runId"].as_str().unwrap().to_string();
        assert_eq!(
            peaqos_orchestrator::orders::service::sweep_interrupted(&w.srv.app)
                .await
                .unwrap(),
            0
        );
        let run = expect_json(
            w.srv.get(&format!("/api/v1/runs/{run_id}")).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(run["run"]["status"], "running");
        assert_eq!(run["outcome"]["status"], "running");

        // Past the timeout (and past the dead server's lease), the background runner fails it.
        w.srv.clock.advance_ms(31_000);
        let mut failed = Value::Null;
        for _ in 0..600 {
            failed = w.get(&order_id).await;
            if failed["status"] != "executing" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(failed["status"], "failed", "{failed}");
        assert_eq!(failed["errorMessage"], "execution interrupted");
        let run = expect_json(
            w.srv.get(&format!("/api/v1/runs/{run_id}")).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(run["run"]["status"], "failed");
        assert_eq!(run["outcome"]["status"], "failed");
        assert_eq!(run["outcome"]["errorCode"], "EXECUTION_INTERRUPTED");
        assert_eq!(run["outcome"]["errorMessage"], "execution interrupted");
        assert_eq!(
            machine_item(&w, "routes", &failed["routeId"]).await["status"],
            "failed"
        );
        let task = expect_json(
            w.srv
                .get(&format!(
                    "/api/v1/machines/{}/tasks/{}",
                    w.me.machine_id,
                    failed["taskId"].as_str().unwrap()
                ))
                .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(task["item"]["status"], "failed");
        let event = w.event("market.order.failed", &order_id).await;
        assert_eq!(event["actor"], "system:machine-markets");
        assert_eq!(event["resourceType"], "market-order");
        assert_eq!(event["machineId"], w.me.machine_id);
        assert_eq!(
            event["payload"],
            json!({"errorCode": "EXECUTION_INTERRUPTED", "errorMessage": "execution interrupted",
                   "runId": run_id, "outcomeId": failed["outcomeId"]})
        );

        // It can be retried and run again.
        w.acted(&order_id, "retry", json!({}), StatusCode::OK).await;
        w.script.release(2);
        let again = w.execute(&order_id, StatusCode::OK).await;
        assert_eq!(again["order"]["status"], "delivered");
        w.stop().await;
    }
}

/// The single `event_type` event of the order: actor `api`, resource the order, its machine.
async fn order_event(w: &OrderWorld, event_type: &str, order_id: &str) -> Value {
    let event = w.event(event_type, order_id).await;
    assert_eq!(event["actor"], "api");
    assert_eq!(event["resourceType"], "market-order");
    assert_eq!(event["machineId"], w.me.machine_id);
    event["payload"].clone()
}

/// `payload` without the keys a request-scoped settlement adds (`paymentSettlement`, null
/// without one).
fn without_settlement(mut payload: Value) -> Value {
    let settlement = payload.as_object_mut().unwrap().remove("paymentSettlement");
    assert!(settlement.is_none_or(|s| s.is_null()), "{payload}");
    payload
}

#[tokio::test]
async fn every_order_action_leaves_its_audit_event() {
    for backend in backends() {
        let w = OrderWorld::start(&backend, &[]).await;
        let search = search_as(&w, &w.me, json!({})).await;
        let quote_id = id(quote_of(&search, PAID));

        // created.
        let order = w.order_with(PAID, json!({"quoteId": quote_id})).await;
        let order_id = id(&order);
        assert_eq!(
            order_event(&w, "market.order.created", &order_id).await,
            json!({"machineId": w.me.machine_id, "agentPairingId": w.me.pairing_id,
                   "serviceId": PAID, "operation": "run", "amount": 2.5, "currency": "USDT",
                   "searchId": id(&search), "quoteId": quote_id, "taskId": order["taskId"]})
        );
        let bare = w.order(FREE).await;
        assert_eq!(
            order_event(&w, "market.order.created", &id(&bare)).await,
            json!({"machineId": w.me.machine_id, "agentPairingId": w.me.pairing_id,
                   "serviceId": FREE, "operation": "read", "amount": 0.0, "currency": null,
                   "searchId": null, "quoteId": null, "taskId": bare["taskId"]})
        );

        // executed (delivered), confirmed, disputed.
        w.hold_wallet(&order_id).await;
        let result = w.execute(&order_id, StatusCode::OK).await;
        let execution = &result["execution"];
        assert_eq!(
            without_settlement(order_event(&w, "market.order.executed", &order_id).await),
            json!({"status": "delivered", "statusCode": 200, "runId": execution["run"]["id"],
                   "outcomeId": execution["outcome"]["id"], "routeId": execution["route"]["id"]})
        );
        w.acted(&order_id, "confirm", json!({}), StatusCode::OK)
            .await;
        assert_eq!(
            order_event(&w, "market.order.confirmed", &order_id).await,
            json!({"paymentStatusFrom": "held", "paymentStatusTo": "release_pending"})
        );
        let disputed = w
            .acted(
                &order_id,
                "dispute",
                json!({"reason": "broken", "evidence": {"log": "l"}}),
                StatusCode::OK,
            )
            .await;
        assert_eq!(
            order_event(&w, "market.order.disputed", &order_id).await,
            json!({"disputeId": disputed["dispute"]["id"], "reason": "broken",
                   "paymentStatusFrom": "release_pending", "paymentStatusTo": "frozen"})
        );
        // Without a payment.
        let free = w.in_state("delivered").await;
        w.acted(&id(&free), "confirm", json!({}), StatusCode::OK)
            .await;
        assert_eq!(
            order_event(&w, "market.order.confirmed", &id(&free)).await,
            json!({"paymentStatusFrom": null, "paymentStatusTo": null})
        );

        // executed (handoff).
        let handoff = w.order(HANDOFF).await;
        let result = w.execute(&id(&handoff), StatusCode::ACCEPTED).await;
        let execution = &result["execution"];
        assert_eq!(
            without_settlement(order_event(&w, "market.order.executed", &id(&handoff)).await),
            json!({"status": "handoff", "statusCode": 202, "runId": execution["run"]["id"],
                   "outcomeId": execution["outcome"]["id"], "routeId": execution["route"]["id"]})
        );

        // failed, retried.
        let failing = w.order(FAILING).await;
        let result = w.execute(&id(&failing), StatusCode::OK).await;
        let execution = &result["execution"];
        assert_eq!(
            order_event(&w, "market.order.failed", &id(&failing)).await,
            json!({"errorCode": "PROVIDER_ERROR", "errorMessage": "HTTP 500",
                   "runId": execution["run"]["id"], "outcomeId": execution["outcome"]["id"]})
        );
        assert!(
            w.events("market.order.executed", &id(&failing))
                .await
                .is_empty()
        );
        w.acted(&id(&failing), "retry", json!({}), StatusCode::OK)
            .await;
        assert_eq!(
            order_event(&w, "market.order.retried", &id(&failing)).await,
            json!({"previousRunId": execution["run"]["id"],
                   "previousOutcomeId": execution["outcome"]["id"]})
        );

        // cancelled.
        let pending = w.in_state("payment_pending").await;
        w.acted(
            &id(&pending),
            "cancel",
            json!({"reason": "too slow"}),
            StatusCode::OK,
        )
        .await;
        assert_eq!(
            order_event(&w, "market.order.cancelled", &id(&pending)).await,
            json!({"reason": "too slow", "statusFrom": "payment_pending"})
        );
        let plain = w.order(PAID).await;
        w.acted(&id(&plain), "cancel", json!({}), StatusCode::OK)
            .await;
        assert_eq!(
            order_event(&w, "market.order.cancelled", &id(&plain)).await,
            json!({"reason": null, "statusFrom": "created"})
        );

        // Refused actions write nothing; order-internal tasks write no task.* events.
        expect_error(
            w.act(&id(&plain), "confirm", json!({})).await,
            StatusCode::CONFLICT,
            "ORDER_CLOSED",
        )
        .await;
        assert!(
            w.events("market.order.confirmed", &id(&plain))
                .await
                .is_empty()
        );
        let events = common::market::all_items(
            &w.srv,
            &format!("/api/v1/audit-events?machineId={}", w.me.machine_id),
        )
        .await;
        assert!(
            !events
                .iter()
                .any(|e| e["type"].as_str().unwrap().starts_with("task.")),
            "{events:?}"
        );
        let mut counts = std::collections::BTreeMap::new();
        for event in &events {
            let kind = event["type"].as_str().unwrap();
            if kind.starts_with("market.order.") {
                *counts.entry(kind.to_string()).or_insert(0) += 1;
            }
        }
        assert_eq!(
            counts,
            [
                ("market.order.cancelled", 2),
                ("market.order.confirmed", 2),
                ("market.order.created", 7),
                ("market.order.disputed", 1),
                ("market.order.executed", 3),
                ("market.order.failed", 1),
                ("market.order.retried", 1),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
        );
        w.stop().await;
    }
}
