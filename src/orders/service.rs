//! Market orders (spec orders-and-payments.md §1.1, §3, §4) and the direct read (§5): creation
//! with its quote, policy and spend checks (serialised per pairing), execution on the shared
//! engine, and the settlement actions — every transition a compare-and-set on the current
//! status, the loser of a race getting the error of the state it finds.

use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use super::model::{
    CancelOrder, Confirmed, CreateOrder, DirectRead, DirectReadResult, DisputeOrder, DisputeStatus,
    Disputed, ExecuteOrder, ExecutionView, MarketOrder, OrderBudget, OrderDispute, OrderExecuted,
    OrderStatus,
};
use super::store::{self, OrdersOf};
use crate::App;
use crate::audit::{self, Actor, NewAuditEvent};
use crate::catalog::model::{ExecutionMode, RailType, Service};
use crate::catalog::service::{self as catalog, MachineScope};
use crate::clock::format_ms;
use crate::engine::{self, Finished, Inputs, PaymentHeaders, Prepared};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::http::paging::{ListPage, PageRequest, Position};
use crate::http::validate::{MAX_NAME, MAX_TEXT, optional_text, required_text};
use crate::machines::model::Machine;
use crate::machines::service as machines;
use crate::market::model::MarketQuote;
use crate::market::ranking::credential_key;
use crate::market::service as market;
use crate::pairings::auth::PairingAuth;
use crate::pairings::model::AgentPairing;
use crate::pairings::policy::SpendWindow;
use crate::pairings::service as pairings;
use crate::payments::model::{MarketPayment, PaymentStatus};
use crate::payments::service as payments;
use crate::payments::x402;
use crate::policies::service::{self as policies, Spend};
use crate::store::{Staged, Tx, new_id};
use crate::tasks::model::{RouteStatus, TaskRecord, TaskStatus};
use crate::tasks::service::{self as tasks, Execution};

/// The message of an execution the background runner closed (§1.1).
pub const INTERRUPTED: &str = "execution interrupted";

fn not_found(id: &str) -> ApiError {
    ApiError::not_found("market-order", id)
}

pub(super) fn closed(status: OrderStatus) -> ApiError {
    ApiError::new(
        ErrorCode::ORDER_CLOSED,
        format!("The order is {status}: this action is not allowed"),
    )
    .with("status", status.as_str())
}

fn not_delivered(status: OrderStatus) -> ApiError {
    ApiError::new(
        ErrorCode::ORDER_NOT_DELIVERED,
        format!("The order is {status}: it has not been delivered yet"),
    )
    .with("status", status.as_str())
}

fn quote_mismatch(message: &str) -> ApiError {
    ApiError::validation(
        "quoteId",
        "quote of this search, machine and service",
        message,
    )
    .with_reason("quote-mismatch")
}

fn skill_disabled(service: &Service) -> ApiError {
    ApiError::new(
        ErrorCode::EXECUTION_UNSUPPORTED,
        format!("The skill {} is disabled", service.skill_key),
    )
    .with_reason("skill-disabled")
}

fn payment_required(message: &str) -> ApiError {
    ApiError::new(ErrorCode::PAYMENT_REQUIRED, message)
}

fn concurrent() -> ApiError {
    ApiError::new(
        ErrorCode::IDEMPOTENCY_CONFLICT,
        "The order was changed concurrently; retry the request",
    )
    .with_reason("concurrent-update")
}

fn order_event(
    actor: Actor,
    order: &MarketOrder,
    event_type: &'static str,
    payload: Value,
) -> NewAuditEvent {
    NewAuditEvent {
        actor,
        event_type,
        resource_type: "market-order",
        resource_id: order.id.clone(),
        machine_id: Some(order.machine_id.clone()),
        payload,
    }
}

/// `409 OPEN_MARKET_ORDERS` when `of` still has open orders (§1.1).
pub async fn ensure_none_open(app: &App, of: OrdersOf<'_>) -> ApiResult<()> {
    let count = store::count_open(&app.store, of).await?;
    if count > 0 {
        return Err(ApiError::new(
            ErrorCode::OPEN_MARKET_ORDERS,
            "There are market orders that are not finished yet",
        )
        .with("count", count));
    }
    Ok(())
}

/// The order addressed by an agent route: it exists, and a token names its machine and pairing
/// (check 9).
pub(super) async fn order_for(
    app: &App,
    token: Option<&PairingAuth>,
    id: &str,
) -> ApiResult<MarketOrder> {
    let order = store::get(&app.store, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    if let Some(token) = token {
        token.bind(&[&order.machine_id], &[&order.agent_pairing_id])?;
    }
    Ok(order)
}

/// Gate C on the order's machine, with the pairing checks on its pairing.
pub(super) async fn gate_c(
    app: &App,
    token: Option<&PairingAuth>,
    order: &MarketOrder,
) -> ApiResult<(Machine, AgentPairing)> {
    let machine = machines::gate_c(app, &order.machine_id).await?;
    let pairing =
        pairings::market_pairing(app, token, &order.machine_id, Some(&order.agent_pairing_id))
            .await?;
    Ok((machine, pairing))
}

fn amount(value: Option<f64>) -> Option<Decimal> {
    value.and_then(crate::money::from_f64)
}

/// The quote an order cites (§4.2 step 5): `quoteId` alone, `searchId` alone (that search's
/// quote for the service), or both (they must agree).
async fn cited_quote(
    app: &App,
    search_id: Option<&str>,
    quote_id: Option<&str>,
    machine_id: &str,
    pairing_id: &str,
    service_id: &str,
) -> ApiResult<Option<MarketQuote>> {
    let belongs = |machine: &str, pairing: Option<&str>| {
        machine == machine_id && pairing.is_none_or(|p| p == pairing_id)
    };
    let quote = match (search_id, quote_id) {
        (None, None) => return Ok(None),
        (_, Some(quote_id)) => {
            let record = market::find_quote(app, quote_id)
                .await?
                .ok_or_else(|| quote_mismatch("The quote does not exist"))?;
            if !belongs(&record.machine_id, record.agent_pairing_id.as_deref()) {
                return Err(quote_mismatch(
                    "The quote belongs to another machine or pairing",
                ));
            }
            if search_id.is_some_and(|s| s != record.quote.search_id) {
                return Err(quote_mismatch("The quote belongs to another search"));
            }
            record.quote
        }
        (Some(search_id), None) => {
            let search = market::get_search(app, search_id)
                .await
                .map_err(|_| quote_mismatch("The search does not exist"))?;
            if !belongs(&search.machine_id, search.agent_pairing_id.as_deref()) {
                return Err(quote_mismatch(
                    "The search belongs to another machine or pairing",
                ));
            }
            search
                .quotes
                .into_iter()
                .find(|q| q.service_id == service_id)
                .ok_or_else(|| quote_mismatch("The search quoted no such service"))?
        }
    };
    if quote.service_id != service_id {
        return Err(quote_mismatch("The quote is for another service"));
    }
    if app.clock.now_ms() > quote.expires_at_ms {
        return Err(ApiError::new(
            ErrorCode::QUOTE_EXPIRED,
            "The quote has expired; search again",
        )
        .with("quoteId", quote.id.clone())
        .with("expiresAt", quote.expires_at.clone()));
    }
    Ok(Some(quote))
}

/// `POST /market/orders`.
pub async fn create(
    app: &App,
    token: Option<&PairingAuth>,
    body: CreateOrder,
) -> ApiResult<Staged<MarketOrder>> {
    // 1–2. The ids, bound to the token, and the body.
    let machine_id = required_text("machineId", body.machine_id, MAX_NAME)?;
    let pairing_id = required_text("agentPairingId", body.agent_pairing_id, MAX_NAME)?;
    let service_id = required_text("serviceId", body.service_id, MAX_NAME)?;
    if let Some(token) = token {
        token.bind(&[&machine_id], &[&pairing_id])?;
    }
    let search_id = optional_text("searchId", body.search_id, MAX_NAME)?;
    let quote_id = optional_text("quoteId", body.quote_id, MAX_NAME)?;
    let operation = optional_text("operation", body.operation, MAX_NAME)?;
    let budget = market::budget("budget", body.budget)?;
    market::provider_credentials(body.provider_credentials)?;
    if app.config.require_market_quotes && search_id.is_none() && quote_id.is_none() {
        return Err(ApiError::validation(
            "searchId",
            "required",
            "searchId or quoteId is required: orders must cite a quote (PEAQOS_REQUIRE_MARKET_QUOTES)",
        )
        .with_reason("quote-required"));
    }

    // 3. Gate C and the pairing.
    let machine = machines::gate_c(app, &machine_id).await?;
    let pairing = pairings::market_pairing(app, token, &machine_id, Some(&pairing_id)).await?;

    // 4. The service and its skill.
    let service = app
        .catalog
        .service(&service_id)
        .ok_or_else(|| ApiError::not_found("service", &service_id))?;
    if !catalog::skill_states(app)
        .await?
        .enabled(&service.skill_key)
    {
        return Err(skill_disabled(service));
    }

    // 5–6. The quote and the operation.
    let quote = cited_quote(
        app,
        search_id.as_deref(),
        quote_id.as_deref(),
        &machine_id,
        &pairing.id,
        &service_id,
    )
    .await?;
    let operation = operation
        .or_else(|| quote.as_ref().map(|q| q.operation.clone()))
        .unwrap_or_else(|| service.operations[0].clone());
    if !service.operations.contains(&operation) {
        return Err(ApiError::validation(
            "operation",
            "one of the service's operations",
            format!("operation must be one of {}", service.operations.join(", ")),
        ));
    }

    // 8. Policies and spend (§3).
    let policy = &pairing.delegation_policy;
    let spend = budget
        .as_ref()
        .and_then(|b| amount(b.amount))
        .or_else(|| quote.as_ref().and_then(|q| amount(q.pricing.amount)))
        .or_else(|| amount(service.pricing.fixed_amount()))
        .unwrap_or(Decimal::ZERO);
    let currency = budget
        .as_ref()
        .and_then(|b| b.currency.clone())
        .or_else(|| quote.as_ref().and_then(|q| q.pricing.currency.clone()))
        .or_else(|| service.pricing.currency.clone())
        .or_else(|| policy.currency.clone());
    policy.require_allowed(&service.skill_key, &service.id)?;
    let now = app.clock.now_ms();
    let scope = MachineScope::of(app, machine, now).await?;
    policies::require_allowed(
        &scope.policies,
        service,
        Spend::Amount {
            amount: crate::money::to_f64(spend),
            currency: currency.as_deref(),
        },
    )?;

    let order_id = new_id("ord_");
    let mut order = MarketOrder {
        id: order_id.clone(),
        machine_id: machine_id.clone(),
        agent_pairing_id: pairing.id.clone(),
        search_id: quote.as_ref().map(|q| q.search_id.clone()).or(search_id),
        quote_id: quote.as_ref().map(|q| q.id.clone()),
        service_id: service.id.clone(),
        skill_key: service.skill_key.clone(),
        provider_key: service.provider_key.clone(),
        service_type: service.service_type,
        operation: operation.clone(),
        execution_mode: service.execution_mode,
        integration_status: scope.integration_status(service),
        status: OrderStatus::Created,
        input: body.input.unwrap_or_default(),
        budget: budget.map(|b| OrderBudget {
            amount: b.amount,
            max: b.max,
            currency: b.currency,
        }),
        amount: crate::money::to_f64(spend),
        currency: currency.clone(),
        payment: service.payment.clone(),
        service_snapshot: catalog::view(service, Some(&scope), now),
        task_id: None,
        route_id: None,
        run_id: None,
        outcome_id: None,
        handoff: None,
        error_message: None,
        cancel_reason: None,
        created_at: format_ms(now),
        updated_at: format_ms(now),
        exact_amount: spend,
        created_at_ms: now,
        updated_at_ms: now,
    };
    let task = tasks::internal_task(
        &machine_id,
        service,
        &operation,
        "market-order",
        order.input.clone(),
        Some(order_id.clone()),
        now,
    );
    order.task_id = Some(task.id.clone());

    // 9. One transaction, serialised per pairing: the daily total and the insert.
    let mut tx = app.store.begin().await?;
    app.store
        .lock_row(&mut tx, "agent_pairings", &pairing.id)
        .await?;
    let window = SpendWindow::containing(now);
    let spent: Decimal = store::spent_since(&mut tx, &pairing.id, window.started_at_ms)
        .await?
        .into_iter()
        .sum();
    policy.check_spend(spend, currency.as_deref(), spent, &window)?;
    store::insert(&mut tx, &order).await?;
    tasks::insert_internal(&mut tx, &task).await?;
    let payload = json!({
        "machineId": order.machine_id, "agentPairingId": order.agent_pairing_id,
        "serviceId": order.service_id, "operation": order.operation, "amount": order.amount,
        "currency": order.currency, "searchId": order.search_id, "quoteId": order.quote_id,
        "taskId": order.task_id,
    });
    audit::record(
        &mut tx,
        now,
        order_event(Actor::Api, &order, "market.order.created", payload),
    )
    .await?;
    Ok(Staged { tx, value: order })
}

pub async fn list(
    app: &App,
    machine_id: &str,
    page: &PageRequest,
) -> ApiResult<ListPage<MarketOrder>> {
    machines::gate_b(app, machine_id).await?;
    let rows = store::list_for_machine(
        &app.store,
        machine_id,
        page.after.as_ref(),
        page.fetch_limit(),
    )
    .await?;
    Ok(page.finish(rows, |o| Position {
        t: o.created_at_ms,
        id: o.id.clone(),
    }))
}

/// `GET /market/orders/{orderId}` (agent-optional: a token of another machine is refused).
pub async fn get(app: &App, token: Option<&PairingAuth>, id: &str) -> ApiResult<MarketOrder> {
    let order = store::get(&app.store, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    if let Some(token) = token {
        token.bind(&[&order.machine_id], &[])?;
    }
    Ok(order)
}

/// The order's effective payment status for the execute gate (§4.4 step 4).
fn effective_payment(
    order: &MarketOrder,
    payment: Option<&MarketPayment>,
) -> Option<PaymentStatus> {
    match payment {
        Some(p) => Some(p.status),
        None if !order.payment.required => Some(PaymentStatus::NotRequired),
        None => None,
    }
}

/// The provider challenge stored on the payment (x402 `paymentRequest`, or MPP).
fn stored_challenge(payment: Option<&MarketPayment>) -> Value {
    payment
        .and_then(|p| {
            p.rail
                .metadata
                .get("paymentRequest")
                .or_else(|| p.rail.metadata.get("mpp"))
                .cloned()
        })
        .unwrap_or(Value::Null)
}

fn execution_view(execution: &Execution, status_code: u16) -> ExecutionView {
    ExecutionView {
        status_code,
        run: execution.run.clone(),
        outcome: execution.outcome.clone(),
        task: execution.task.clone(),
        route: execution.route.clone(),
        handoff: (status_code == 202)
            .then(|| execution.route.handoff.clone())
            .flatten(),
    }
}

/// A new attempt's route for an order (score: the quote's, else 1).
fn order_route(
    order: &MarketOrder,
    task: &TaskRecord,
    service: &Service,
    score: f64,
    now_ms: i64,
) -> crate::tasks::model::RouteRecord {
    tasks::new_route(
        task,
        service,
        order.integration_status,
        RouteStatus::Selected,
        score,
        format!("market order {}", order.id),
        Vec::new(),
        json!({"kind": "order", "orderId": order.id}),
        now_ms,
    )
}

/// `POST /market/orders/{orderId}/execute`. A native call commits the `executing` order and the
/// `running` rows itself; the final transaction is returned staged. A provider `402` commits
/// the failed attempt and answers `402 PAYMENT_REQUIRED`.
pub async fn execute(
    app: &App,
    token: Option<&PairingAuth>,
    order_id: &str,
    body: ExecuteOrder,
) -> ApiResult<Staged<OrderExecuted>> {
    // 1–3.
    let mut order = order_for(app, token, order_id).await?;
    let (machine, _) = gate_c(app, token, &order).await?;
    if !order.status.is_pending() {
        return Err(closed(order.status));
    }
    // 4. The payment gate.
    let payment = payments::of_order(&app.store, order_id).await?;
    let effective = effective_payment(&order, payment.as_ref());
    if app.config.require_payment_before_execute
        && !effective.is_some_and(|s| {
            matches!(
                s,
                PaymentStatus::Held
                    | PaymentStatus::ReleasePending
                    | PaymentStatus::Released
                    | PaymentStatus::NotRequired
            )
        })
    {
        return Err(
            payment_required("The order's payment must be held before it executes")
                .with_reason("payment-not-held")
                .with("paymentStatus", effective.map(PaymentStatus::as_str)),
        );
    }
    let rail = payment
        .as_ref()
        .map_or(order.payment.default_rail, |p| p.rail.rail_type);
    let headers = body.payment.unwrap_or_default();
    if matches!(rail, RailType::X402 | RailType::Mpp)
        && order.payment.required
        && headers.is_empty()
    {
        return Err(payment_required(
            "This order is paid per request: send the payment headers with execute",
        )
        .with_reason("payment-headers-required")
        .with("challenge", stored_challenge(payment.as_ref())));
    }

    // 5. Plan the execution: nothing changes when it cannot run.
    let service = app.catalog.service(&order.service_id).ok_or_else(|| {
        ApiError::new(
            ErrorCode::EXECUTION_UNSUPPORTED,
            "The order's service is no longer in the catalogue",
        )
        .with_reason("no-adapter")
    })?;
    if let Some(input) = body.input {
        order.input = input;
    }
    let now = app.clock.now_ms();
    let scope = MachineScope::of(app, machine, now).await?;
    let credentials = catalog::stored_credentials(app, &service.skill_key).await?;
    let prepared = engine::prepare(
        app,
        service,
        &scope,
        &Inputs {
            operation: &order.operation,
            input: &order.input,
            credentials: credentials.as_ref(),
            payment: Some(&headers),
        },
    )
    .await?;

    let task = tasks::find_internal(app, order.task_id.as_deref().unwrap_or_default()).await?;
    let task_status = task.status;
    let score = match &order.quote_id {
        Some(quote_id) => market::find_quote(app, quote_id)
            .await?
            .map_or(1.0, |record| record.quote.score),
        None => 1.0,
    };
    let route = order_route(&order, &task, service, score, now);
    let status_before = order.status;

    // The start, decided again under the order's lock: the order and its payment are as the
    // checks saw them (a cancel or a refund in between wins).
    let locked = lock(app, token, order_id).await?;
    if locked.order.status != status_before {
        return Err(closed(locked.order.status));
    }
    if locked.payment.as_ref().map(|p| p.status) != payment.as_ref().map(|p| p.status) {
        return Err(concurrent());
    }
    let mut tx = locked.tx;

    match prepared {
        Prepared::Handoff(handoff) => {
            let execution = tasks::hand_off(&mut tx, task, route, &handoff, task_status, now)
                .await?
                .ok_or_else(concurrent)?;
            order.status = OrderStatus::Handoff;
            order.handoff = Some(handoff);
            link(&mut order, &execution, now);
            write_order(&mut tx, &order, status_before, now).await?;
            let payload = json!({"status": order.status, "statusCode": 202,
                "runId": execution.run.id, "outcomeId": execution.outcome.id, "routeId": execution.route.id});
            audit::record(
                &mut tx,
                now,
                order_event(Actor::Api, &order, "market.order.executed", payload),
            )
            .await?;
            let view = execution_view(&execution, 202);
            Ok(Staged {
                tx,
                value: OrderExecuted {
                    order,
                    execution: view,
                },
            })
        }
        Prepared::Call(call) => {
            let mut execution = tasks::start(&mut tx, task, route, task_status, now)
                .await?
                .ok_or_else(concurrent)?;
            order.status = OrderStatus::Executing;
            link(&mut order, &execution, now);
            write_order(&mut tx, &order, status_before, now).await?;
            tx.commit().await?;

            let finished = engine::send(call).await;
            let done = app.clock.now_ms();
            let mut tx = app.store.begin().await?;
            app.store
                .lock_row(&mut tx, "market_orders", order_id)
                .await?;
            tasks::finish(&mut tx, &mut execution, &finished, task_status, done).await?;
            let (status, event) = match &finished {
                Finished::Completed { .. } => {
                    (OrderStatus::Delivered, Some("market.order.executed"))
                }
                Finished::PaymentRequired { .. } => (status_before, None),
                _ => (OrderStatus::Failed, Some("market.order.failed")),
            };
            order.status = status;
            order.error_message = finished.error().map(|(_, message)| message);
            if status == status_before {
                order.error_message = None;
            }
            link(&mut order, &execution, done);
            if !store::update(&mut tx, &order, OrderStatus::Executing, done).await? {
                // The background runner closed it as interrupted while the call ran.
                return Err(closed(OrderStatus::Failed).with_reason("execution-interrupted"));
            }
            let settlement = match &finished {
                Finished::Completed { response, .. } if !headers.is_empty() => {
                    settle(&mut tx, order_id, response, true, done).await?
                }
                // A provider `402` can still report a settlement that failed (the x402 server's
                // answer to one): it is kept, and the payment stays held (§9.5).
                Finished::PaymentRequired { response } if !headers.is_empty() => {
                    settle(&mut tx, order_id, response, false, done).await?
                }
                _ => None,
            };
            match (event, &finished) {
                (Some("market.order.executed"), _) => {
                    let payload = json!({"status": order.status, "statusCode": 200,
                        "runId": execution.run.id, "outcomeId": execution.outcome.id,
                        "routeId": execution.route.id,
                        "paymentSettlement": settlement.as_ref().map(|(s, _)| s.status())});
                    audit::record(
                        &mut tx,
                        done,
                        order_event(Actor::Api, &order, "market.order.executed", payload),
                    )
                    .await?;
                    if let Some((settled, payment)) = &settlement
                        && settled.settled
                    {
                        let payload = json!({"transactionHash": settled.transaction,
                                             "settlement": settled.status()});
                        audit::record(
                            &mut tx,
                            done,
                            NewAuditEvent {
                                actor: Actor::Api,
                                event_type: "market.payment.released",
                                resource_type: "market-payment",
                                resource_id: payment.id.clone(),
                                machine_id: Some(payment.machine_id.clone()),
                                payload,
                            },
                        )
                        .await?;
                    }
                }
                (Some(_), _) => {
                    let (code, message) = finished.error().expect("a failure");
                    let payload = json!({"errorCode": code, "errorMessage": message,
                        "runId": execution.run.id, "outcomeId": execution.outcome.id});
                    audit::record(
                        &mut tx,
                        done,
                        order_event(Actor::Api, &order, "market.order.failed", payload),
                    )
                    .await?;
                }
                (None, Finished::PaymentRequired { response }) => {
                    tx.commit().await?;
                    return Err(payment_required("The provider asks for payment")
                        .with_reason("provider-payment-required")
                        .with("challenge", x402::challenge_of(response, None)));
                }
                (None, _) => {}
            }
            let view = execution_view(&execution, 200);
            Ok(Staged {
                tx,
                value: OrderExecuted {
                    order,
                    execution: view,
                },
            })
        }
    }
}

/// A request-scoped payment's settlement (§9.5), written into the held payment: `released`
/// when it settled and the provider answered `2xx` (`may_release`), else still `held`.
async fn settle(
    tx: &mut Tx,
    order_id: &str,
    response: &crate::clients::provider::ProviderResponse,
    may_release: bool,
    now_ms: i64,
) -> ApiResult<Option<(x402::Settlement, MarketPayment)>> {
    let Some(settlement) = x402::settlement(response) else {
        return Ok(None);
    };
    let Some(mut payment) = payments::of_order_in(tx, order_id).await? else {
        return Ok(None);
    };
    if payment.status != PaymentStatus::Held
        || !matches!(payment.rail.rail_type, RailType::X402 | RailType::Mpp)
    {
        return Ok(None);
    }
    let Some(proof) = payment.proof.as_mut() else {
        return Ok(None);
    };
    settlement.apply(proof);
    let to = if settlement.settled && may_release {
        PaymentStatus::Released
    } else {
        PaymentStatus::Held
    };
    payment.status = to;
    payment.updated_at = format_ms(now_ms);
    payments::save(tx, &payment, Some(PaymentStatus::Held), now_ms).await?;
    Ok(Some((settlement, payment)))
}

/// Links the order to the attempt's rows.
fn link(order: &mut MarketOrder, execution: &Execution, now_ms: i64) {
    order.route_id = Some(execution.route.id.clone());
    order.run_id = Some(execution.run.id.clone());
    order.outcome_id = Some(execution.outcome.id.clone());
    order.updated_at = format_ms(now_ms);
    order.updated_at_ms = now_ms;
}

/// An action's transaction on one order. Every writer of an order and its payment takes the
/// order's row lock first (`FOR UPDATE` on PostgreSQL; SQLite's write transactions are
/// serialised already), so each action decides on the order and payment it finds under it.
pub(super) struct Locked {
    pub tx: Tx,
    pub order: MarketOrder,
    pub payment: Option<MarketPayment>,
}

/// Opens the locked transaction on the order (`404` when it does not exist; a token must
/// name its machine and pairing).
pub(super) async fn lock(
    app: &App,
    token: Option<&PairingAuth>,
    order_id: &str,
) -> ApiResult<Locked> {
    let mut tx = app.store.begin().await?;
    let order = match app
        .store
        .lock_row(&mut tx, "market_orders", order_id)
        .await?
    {
        true => store::get_in(&mut tx, order_id).await?,
        false => None,
    }
    .ok_or_else(|| not_found(order_id))?;
    if let Some(token) = token {
        token.bind(&[&order.machine_id], &[&order.agent_pairing_id])?;
    }
    let payment = payments::of_order_in(&mut tx, order_id).await?;
    Ok(Locked { tx, order, payment })
}

/// Writes a locked order whose status was `from` when read.
pub(super) async fn write_order(
    tx: &mut Tx,
    order: &MarketOrder,
    from: OrderStatus,
    now_ms: i64,
) -> ApiResult<()> {
    if !store::update(tx, order, from, now_ms).await? {
        return Err(ApiError::internal(
            "writing a locked order",
            format!("order {} changed under its lock", order.id),
        ));
    }
    Ok(())
}

/// Resolves the order's open disputes (a refund settles them); their ids.
pub(super) async fn resolve_disputes(
    tx: &mut Tx,
    order_id: &str,
    now_ms: i64,
) -> ApiResult<Vec<String>> {
    Ok(store::resolve_disputes(tx, order_id, now_ms).await?)
}

/// `POST /market/orders/{orderId}/confirm`.
pub async fn confirm(
    app: &App,
    token: Option<&PairingAuth>,
    order_id: &str,
) -> ApiResult<Staged<Confirmed>> {
    machines::find(app, &order_for(app, token, order_id).await?.machine_id).await?;
    let Locked {
        mut tx,
        mut order,
        mut payment,
    } = lock(app, token, order_id).await?;
    match order.status {
        OrderStatus::Delivered | OrderStatus::Handoff => {}
        s if s.is_pending() || s == OrderStatus::Executing => return Err(not_delivered(s)),
        s => return Err(closed(s)),
    }
    let now = app.clock.now_ms();
    let from = order.status;
    let payment_from = payment.as_ref().map(|p| p.status);
    if let Some(p) = payment.as_mut() {
        payments::transition(
            &mut tx,
            p,
            &[PaymentStatus::Held],
            PaymentStatus::ReleasePending,
            now,
        )
        .await?;
    }
    order.status = OrderStatus::Confirmed;
    order.updated_at = format_ms(now);
    write_order(&mut tx, &order, from, now).await?;
    let payload = json!({"paymentStatusFrom": payment_from,
                         "paymentStatusTo": payment.as_ref().map(|p| p.status)});
    audit::record(
        &mut tx,
        now,
        order_event(Actor::Api, &order, "market.order.confirmed", payload),
    )
    .await?;
    Ok(Staged {
        tx,
        value: Confirmed { order, payment },
    })
}

/// `POST /market/orders/{orderId}/dispute`.
pub async fn dispute(
    app: &App,
    token: Option<&PairingAuth>,
    order_id: &str,
    body: DisputeOrder,
) -> ApiResult<Staged<Disputed>> {
    let reason = required_text("reason", body.reason, MAX_TEXT)?;
    let evidence = body.evidence.unwrap_or_default();
    machines::find(app, &order_for(app, token, order_id).await?.machine_id).await?;
    let Locked {
        mut tx,
        mut order,
        mut payment,
    } = lock(app, token, order_id).await?;
    match order.status {
        OrderStatus::Delivered | OrderStatus::Handoff | OrderStatus::Confirmed => {}
        s if s.is_pending() || s == OrderStatus::Executing => return Err(not_delivered(s)),
        s => return Err(closed(s)),
    }
    let now = app.clock.now_ms();
    let from = order.status;
    let payment_from = payment.as_ref().map(|p| p.status);
    if let Some(p) = payment.as_mut() {
        payments::transition(
            &mut tx,
            p,
            &[PaymentStatus::Held, PaymentStatus::ReleasePending],
            PaymentStatus::Frozen,
            now,
        )
        .await?;
    }
    order.status = OrderStatus::Disputed;
    order.updated_at = format_ms(now);
    write_order(&mut tx, &order, from, now).await?;
    let dispute = OrderDispute {
        id: new_id("dsp_"),
        order_id: order.id.clone(),
        machine_id: order.machine_id.clone(),
        status: DisputeStatus::Open,
        reason,
        evidence,
        created_at: format_ms(now),
        updated_at: format_ms(now),
        created_at_ms: now,
    };
    store::insert_dispute(&mut tx, &dispute).await?;
    let payload = json!({"disputeId": dispute.id, "reason": dispute.reason,
        "paymentStatusFrom": payment_from, "paymentStatusTo": payment.as_ref().map(|p| p.status)});
    audit::record(
        &mut tx,
        now,
        order_event(Actor::Api, &order, "market.order.disputed", payload),
    )
    .await?;
    Ok(Staged {
        tx,
        value: Disputed {
            order,
            payment,
            dispute,
        },
    })
}

/// `POST /market/orders/{orderId}/cancel`.
pub async fn cancel(
    app: &App,
    token: Option<&PairingAuth>,
    order_id: &str,
    body: CancelOrder,
) -> ApiResult<Staged<MarketOrder>> {
    let reason = optional_text("reason", body.reason, MAX_TEXT)?;
    machines::find(app, &order_for(app, token, order_id).await?.machine_id).await?;
    let Locked {
        mut tx,
        mut order,
        payment,
    } = lock(app, token, order_id).await?;
    if !order.status.is_pending() {
        return Err(closed(order.status));
    }
    if let Some(p) = &payment
        && !matches!(
            p.status,
            PaymentStatus::NotRequired | PaymentStatus::IntentCreated | PaymentStatus::Refunded
        )
    {
        return Err(ApiError::new(
            ErrorCode::ORDER_CLOSED,
            "The order's payment is held: refund it before cancelling",
        )
        .with_reason("payment-held")
        .with("paymentStatus", p.status.as_str()));
    }
    let now = app.clock.now_ms();
    let from = order.status;
    order.status = OrderStatus::Cancelled;
    order.cancel_reason = reason;
    order.updated_at = format_ms(now);
    write_order(&mut tx, &order, from, now).await?;
    let payload = json!({"reason": order.cancel_reason, "statusFrom": from});
    audit::record(
        &mut tx,
        now,
        order_event(Actor::Api, &order, "market.order.cancelled", payload),
    )
    .await?;
    Ok(Staged { tx, value: order })
}

/// `POST /market/orders/{orderId}/retry`.
pub async fn retry(
    app: &App,
    token: Option<&PairingAuth>,
    order_id: &str,
) -> ApiResult<Staged<MarketOrder>> {
    let order = order_for(app, token, order_id).await?;
    gate_c(app, token, &order).await?;
    let Locked {
        mut tx, mut order, ..
    } = lock(app, token, order_id).await?;
    if order.status != OrderStatus::Failed {
        return Err(closed(order.status));
    }
    let now = app.clock.now_ms();
    order.status = OrderStatus::Ready;
    order.error_message = None;
    order.updated_at = format_ms(now);
    write_order(&mut tx, &order, OrderStatus::Failed, now).await?;
    let payload = json!({"previousRunId": order.run_id, "previousOutcomeId": order.outcome_id});
    audit::record(
        &mut tx,
        now,
        order_event(Actor::Api, &order, "market.order.retried", payload),
    )
    .await?;
    Ok(Staged { tx, value: order })
}

/// The background runner's sweep (§1.1): orders left `executing` longer than
/// `PEAQOS_ORDER_EXECUTION_TIMEOUT_MS` (a crash mid-call) fail with "execution interrupted", and
/// their running route, run and outcome are closed. Returns how many were closed.
pub async fn sweep_interrupted(app: &App) -> ApiResult<usize> {
    let now = app.clock.now_ms();
    let before = now - app.config.order_execution_timeout_ms as i64;
    let mut closed_count = 0;
    for mut order in store::interrupted(&app.store, before).await? {
        let mut tx = app.store.begin().await?;
        order.status = OrderStatus::Failed;
        order.error_message = Some(INTERRUPTED.to_string());
        order.updated_at = format_ms(now);
        if !store::update(&mut tx, &order, OrderStatus::Executing, now).await? {
            continue;
        }
        if let Some(task_id) = &order.task_id {
            tasks::fail_interrupted(&mut tx, task_id, INTERRUPTED, now).await?;
        }
        let payload = json!({"errorCode": "EXECUTION_INTERRUPTED", "errorMessage": INTERRUPTED,
                             "runId": order.run_id, "outcomeId": order.outcome_id});
        audit::record(
            &mut tx,
            now,
            order_event(Actor::System, &order, "market.order.failed", payload),
        )
        .await?;
        tx.commit().await?;
        closed_count += 1;
    }
    Ok(closed_count)
}

/// The credentials a direct read calls its provider with: the request's entry for the
/// provider (matched ignoring case, `-` and `_`), else the skill's stored credentials.
async fn read_credentials(
    app: &App,
    service: &Service,
    request: &Map<String, Value>,
) -> ApiResult<Option<Map<String, Value>>> {
    let key = credential_key(&service.provider_key);
    if let Some(Value::Object(set)) = request
        .iter()
        .find(|(k, _)| credential_key(k) == key)
        .map(|(_, v)| v)
    {
        return Ok(Some(set.clone()));
    }
    catalog::stored_credentials(app, &service.skill_key).await
}

/// `POST /market/services/{serviceId}/execute`: one operation of a free native service, now,
/// with its own task, route, run and outcome.
pub async fn direct_read(
    app: &App,
    token: Option<&PairingAuth>,
    service_id: &str,
    body: DirectRead,
) -> ApiResult<Staged<DirectReadResult>> {
    let machine_id = required_text("machineId", body.machine_id, MAX_NAME)?;
    let pairing_id = required_text("agentPairingId", body.agent_pairing_id, MAX_NAME)?;
    if let Some(token) = token {
        token.bind(&[&machine_id], &[&pairing_id])?;
    }
    let operation = required_text("operation", body.operation, MAX_NAME)?;
    let budget = market::budget("budget", body.budget)?;
    let credentials = market::provider_credentials(body.provider_credentials)?;
    let input = body.input.unwrap_or_default();

    let machine = machines::gate_c(app, &machine_id).await?;
    let pairing = pairings::market_pairing(app, token, &machine_id, Some(&pairing_id)).await?;
    let service = app
        .catalog
        .service(service_id)
        .ok_or_else(|| ApiError::not_found("service", service_id))?;
    let now = app.clock.now_ms();
    let scope = MachineScope::of(app, machine, now).await?;
    pairing
        .delegation_policy
        .require_allowed(&service.skill_key, &service.id)?;
    policies::require_allowed(
        &scope.policies,
        service,
        Spend::Amount {
            amount: 0.0,
            currency: None,
        },
    )?;
    if service.execution_mode != ExecutionMode::Native || service.payment.required {
        return Err(ApiError::new(
            ErrorCode::EXECUTION_UNSUPPORTED,
            "Only free native services can be read directly: place an order instead",
        )
        .with_reason("order-required"));
    }
    if !catalog::skill_states(app)
        .await?
        .enabled(&service.skill_key)
    {
        return Err(skill_disabled(service));
    }
    if !service.operations.contains(&operation) {
        return Err(ApiError::validation(
            "operation",
            "one of the service's operations",
            format!("operation must be one of {}", service.operations.join(", ")),
        ));
    }
    let credentials = read_credentials(app, service, &credentials).await?;
    let prepared = engine::prepare(
        app,
        service,
        &scope,
        &Inputs {
            operation: &operation,
            input: &input,
            credentials: credentials.as_ref(),
            payment: None::<&PaymentHeaders>,
        },
    )
    .await?;
    let Prepared::Call(call) = prepared else {
        return Err(ApiError::new(
            ErrorCode::EXECUTION_UNSUPPORTED,
            "Only free native services can be read directly",
        )
        .with_reason("order-required"));
    };

    let mut task = tasks::internal_task(
        &machine_id,
        service,
        &operation,
        "direct-read",
        input,
        None,
        now,
    );
    // §5.1: the budget is recorded on the task constraints (its cap, as in ranking).
    task.constraints.budget = budget.and_then(|b| b.max.or(b.amount));
    let route = tasks::new_route(
        &task,
        service,
        scope.integration_status(service),
        RouteStatus::Selected,
        1.0,
        "direct read".into(),
        Vec::new(),
        json!({"kind": "direct-read"}),
        now,
    );
    let task_event = |task: &TaskRecord, event_type: &'static str, payload: Value| NewAuditEvent {
        actor: Actor::Api,
        event_type,
        resource_type: "task",
        resource_id: task.id.clone(),
        machine_id: Some(task.machine_id.clone()),
        payload,
    };
    let mut tx = app.store.begin().await?;
    tasks::insert_internal(&mut tx, &task).await?;
    audit::record(
        &mut tx,
        now,
        task_event(
            &task,
            "task.created",
            json!({"directRead": true, "serviceId": service.id, "operation": operation}),
        ),
    )
    .await?;
    let mut execution = tasks::start(&mut tx, task, route, TaskStatus::Queued, now)
        .await?
        .ok_or_else(concurrent)?;
    tx.commit().await?;
    let finished = engine::send(call).await;
    let done = app.clock.now_ms();
    let mut tx = app.store.begin().await?;
    tasks::finish(&mut tx, &mut execution, &finished, TaskStatus::Failed, done).await?;
    let payload = json!({"directRead": true, "serviceId": service.id, "operation": operation,
        "runId": execution.run.id, "outcomeId": execution.outcome.id, "status": execution.outcome.status});
    audit::record(
        &mut tx,
        done,
        task_event(&execution.task, "task.executed", payload),
    )
    .await?;
    Ok(Staged {
        tx,
        value: DirectReadResult {
            service: catalog::view(service, Some(&scope), done),
            execution: execution_view(&execution, 200),
        },
    })
}
