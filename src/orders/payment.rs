//! The payment actions of an order (spec orders-and-payments.md §7): payment-intent (with the
//! x402/MPP challenge capture), the payment read, payment-proof (on-chain transfers, recorded
//! or verified over RPC, and request-scoped headers), escrow-lock, release and refund.
//!
//! Each action checks what it can without the order's lock — gates, body, RPC verification,
//! the provider's challenge — and then decides again under the lock on what it finds, so a
//! concurrent action on the same order (a cancel, another proof) is seen, never overwritten.

use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use super::model::{MarketOrder, OrderStatus};
use super::service::{Locked, closed, gate_c, lock, order_for, write_order};
use crate::App;
use crate::audit::{self, Actor, NewAuditEvent};
use crate::catalog::model::RailType;
use crate::catalog::service::{self as catalog, MachineScope};
use crate::engine::{self, Inputs, PaymentHeaders, Prepared};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::machines::model::Machine;
use crate::machines::service as machines;
use crate::pairings::auth::PairingAuth;
use crate::pairings::model::AgentPairing;
use crate::payments::model::{
    CreatePaymentIntent, LockEscrow, MarketPayment, PaymentStatus, RefundPayment, ReleasePayment,
    SubmitPaymentProof,
};
use crate::payments::service::{
    self as payments, Mode, Proof, RailRequest, Transaction, TransferProof, payment_closed,
};
use crate::payments::verify;
use crate::payments::x402::{self, RequestScoped};
use crate::store::{Staged, Tx};

/// How long payment-intent waits for the provider's challenge (§9.2, Open: 10 s).
const CHALLENGE_TIMEOUT: Duration = Duration::from_secs(10);

/// A payment an action answers with, and whether the action created it.
pub struct Paid {
    pub payment: MarketPayment,
    pub created: bool,
}

fn payment_event(
    payment: &MarketPayment,
    event_type: &'static str,
    payload: Value,
) -> NewAuditEvent {
    NewAuditEvent {
        actor: Actor::Api,
        event_type,
        resource_type: "market-payment",
        resource_id: payment.id.clone(),
        machine_id: Some(payment.machine_id.clone()),
        payload,
    }
}

/// A transition made under the order's lock always happens.
fn moved(moved: bool, payment: &MarketPayment) -> ApiResult<()> {
    if !moved {
        return Err(ApiError::internal(
            "moving a locked payment",
            format!("payment {} changed under its order's lock", payment.id),
        ));
    }
    Ok(())
}

fn no_payment(order_id: &str) -> ApiError {
    ApiError::not_found("payment", order_id)
}

/// The action's answer when nothing changes: the payment as it is.
fn unchanged(tx: Tx, payment: MarketPayment) -> Staged<Paid> {
    Staged {
        tx,
        value: Paid {
            payment,
            created: false,
        },
    }
}

/// The order's status once its payment is set up (`not_required`, `intent_created`) or held.
fn order_status_after(order: &MarketOrder, payment: PaymentStatus) -> OrderStatus {
    match (order.status, payment) {
        (OrderStatus::Created, PaymentStatus::IntentCreated) => OrderStatus::PaymentPending,
        (status, PaymentStatus::IntentCreated) => status,
        _ => OrderStatus::Ready,
    }
}

/// Writes a new or changed payment and the order's status after it, with the
/// `intent-created` event of a new payment, in the locked transaction.
async fn commit_payment(
    locked: &mut Locked,
    payment: &MarketPayment,
    from: Option<PaymentStatus>,
    now: i64,
) -> ApiResult<()> {
    let saved = payments::save(&mut locked.tx, payment, from, now).await?;
    moved(saved, payment)?;
    let order_from = locked.order.status;
    locked.order.status = order_status_after(&locked.order, payment.status);
    locked.order.updated_at = crate::clock::format_ms(now);
    write_order(&mut locked.tx, &locked.order, order_from, now).await?;
    if from.is_none() {
        let payload = json!({"orderId": payment.order_id, "railType": payment.rail.rail_type,
            "amount": payment.amount, "currency": payment.currency, "status": payment.status});
        audit::record(
            &mut locked.tx,
            now,
            payment_event(payment, "market.payment.intent-created", payload),
        )
        .await?;
    }
    Ok(())
}

/// A new payment for the order (§7.2 steps 4–6): the rail type checked against the service,
/// the rail filled in from the order's recommendation, the amount and currency.
fn plan_payment(
    app: &App,
    order: &MarketOrder,
    pairing: &AgentPairing,
    rail_type: RailType,
    request: RailRequest,
    amount: Decimal,
    currency: Option<String>,
) -> ApiResult<MarketPayment> {
    payments::enforce_rail(&app.config, &order.payment, rail_type)?;
    if rail_type == RailType::NotRequired && order.payment.required {
        return Err(ApiError::new(
            ErrorCode::PAYMENT_REQUIRED,
            "This service must be paid: choose a rail other than not-required",
        )
        .with_reason("payment-required")
        .with("supportedRails", json!(order.payment.supported_rails)));
    }
    let rail = payments::build_rail(
        &app.config,
        &order.payment,
        rail_type,
        request,
        &pairing.agent_address,
        amount,
    );
    Ok(payments::new_payment(
        &order.id,
        &order.machine_id,
        rail,
        amount,
        currency,
        app.clock.now_ms(),
    ))
}

/// The payment an action on an order without one creates, as an empty payment-intent would.
fn implicit_payment(
    app: &App,
    order: &MarketOrder,
    pairing: &AgentPairing,
    rail_type: RailType,
) -> ApiResult<MarketPayment> {
    plan_payment(
        app,
        order,
        pairing,
        rail_type,
        RailRequest::default(),
        order.exact_amount,
        order.currency.clone(),
    )
}

/// Calls the order's provider without payment and keeps what it answers about paying (§9.2).
async fn capture_challenge(
    app: &App,
    order: &MarketOrder,
    machine: Machine,
) -> ApiResult<Map<String, Value>> {
    let service = app.catalog.service(&order.service_id).ok_or_else(|| {
        ApiError::new(
            ErrorCode::EXECUTION_UNSUPPORTED,
            "The order's service is no longer in the catalogue",
        )
        .with_reason("no-adapter")
    })?;
    let scope = MachineScope::of(app, machine, app.clock.now_ms()).await?;
    let credentials = catalog::stored_credentials(app, &service.skill_key).await?;
    let prepared = engine::prepare(
        app,
        service,
        &scope,
        &Inputs {
            operation: &order.operation,
            input: &order.input,
            credentials: credentials.as_ref(),
            payment: None::<&PaymentHeaders>,
        },
    )
    .await?;
    let Prepared::Call(call) = prepared else {
        // A handoff service is paid outside: there is nothing to ask.
        return Ok(Map::new());
    };
    let url = call.url().to_string();
    match engine::exchange(call.with_timeout(CHALLENGE_TIMEOUT)).await {
        Ok(response) => Ok(x402::capture_challenge(&response, Some(&url))),
        Err(err) => Err(ApiError::new(
            ErrorCode::ENDPOINT_UNREACHABLE,
            "The provider could not be asked for its payment challenge; nothing was stored",
        )
        .with("cause", err.to_string())),
    }
}

/// `POST /market/orders/{orderId}/payment-intent`.
pub async fn intent(
    app: &App,
    token: Option<&PairingAuth>,
    order_id: &str,
    body: CreatePaymentIntent,
) -> ApiResult<Staged<Paid>> {
    // 1–3.
    let order = order_for(app, token, order_id).await?;
    let (machine, pairing) = gate_c(app, token, &order).await?;
    if !order.status.is_pending() {
        return Err(closed(order.status));
    }
    if let Some(existing) = payments::of_order(&app.store, order_id).await? {
        return Ok(unchanged(app.store.begin().await?, existing));
    }
    // 4–6.
    let rail_type =
        payments::requested_rail_type(body.rail.as_ref())?.unwrap_or(order.payment.default_rail);
    let request = payments::rail_request(body.rail)?;
    let (amount, currency) = payments::intent_amount(
        body.amount,
        body.currency,
        order.exact_amount,
        order.currency.as_deref(),
    )?;
    let mut payment = plan_payment(app, &order, &pairing, rail_type, request, amount, currency)?;
    // 7.
    if matches!(rail_type, RailType::X402 | RailType::Mpp) {
        let challenge = capture_challenge(app, &order, machine).await?;
        payment.rail.metadata.extend(challenge);
    }
    // 8.
    let mut locked = lock(app, token, order_id).await?;
    if let Some(existing) = locked.payment.take() {
        return Ok(unchanged(locked.tx, existing));
    }
    if !locked.order.status.is_pending() {
        return Err(closed(locked.order.status));
    }
    // Created when written: the challenge capture may have taken a while.
    let now = app.clock.now_ms();
    payment.created_at_ms = now;
    payment.created_at = crate::clock::format_ms(now);
    payment.updated_at = payment.created_at.clone();
    commit_payment(&mut locked, &payment, None, now).await?;
    Ok(Staged {
        tx: locked.tx,
        value: Paid {
            payment,
            created: true,
        },
    })
}

/// `GET /market/orders/{orderId}/payment`.
pub async fn get(app: &App, order_id: &str) -> ApiResult<Option<MarketPayment>> {
    order_for(app, None, order_id).await?;
    payments::of_order(&app.store, order_id).await
}

/// `POST /market/orders/{orderId}/payment-proof`.
pub async fn proof(
    app: &App,
    token: Option<&PairingAuth>,
    order_id: &str,
    body: SubmitPaymentProof,
) -> ApiResult<Staged<Paid>> {
    let order = order_for(app, token, order_id).await?;
    let (_, pairing) = gate_c(app, token, &order).await?;
    if !order.status.is_pending() {
        return Err(closed(order.status));
    }
    let proof = payments::proof_request(body)?;
    let existing = payments::of_order(&app.store, order_id).await?;
    let payment = match existing {
        Some(p) => p,
        None => implicit_payment(app, &order, &pairing, order.payment.default_rail)?,
    };
    match proof {
        Proof::Transfer(transfer) => proof_of_transfer(app, token, &order, payment, transfer).await,
        Proof::RequestScoped(headers) => {
            proof_of_headers(app, token, &order, payment, headers).await
        }
    }
}

/// The payment an action finds under the lock.
enum Found {
    /// The payment to hold (the one found, `intent_created`, else the planned one) and the
    /// status it is written from.
    ToHold(MarketPayment, Option<PaymentStatus>),
    /// A payment in another status.
    Other(MarketPayment),
}

fn payment_to_hold(locked: &mut Locked, planned: MarketPayment) -> Found {
    match locked.payment.take() {
        None => Found::ToHold(planned, None),
        Some(p) if p.status == PaymentStatus::IntentCreated => {
            Found::ToHold(p, Some(PaymentStatus::IntentCreated))
        }
        Some(p) => Found::Other(p),
    }
}

/// Variant A (§7.4): an on-chain transfer, recorded or verified over RPC.
async fn proof_of_transfer(
    app: &App,
    token: Option<&PairingAuth>,
    order: &MarketOrder,
    payment: MarketPayment,
    transfer: TransferProof,
) -> ApiResult<Staged<Paid>> {
    let key = transfer.transaction.key();
    let held_by_this = |p: &MarketPayment| {
        p.status == PaymentStatus::Held && p.transaction_key.as_deref() == Some(key.as_str())
    };
    // 1–3.
    if held_by_this(&payment) {
        return Ok(unchanged(app.store.begin().await?, payment));
    }
    if payment.status != PaymentStatus::IntentCreated {
        return Err(payment_closed(&payment));
    }
    payments::enforce_rail(&app.config, &order.payment, payment.rail.rail_type)?;
    transfer.check_against(&payment)?;
    // 4.
    let mode = if app.config.require_payment_rpc_verification {
        Mode::Rpc
    } else {
        transfer.mode
    };
    if mode == Mode::Rpc && matches!(transfer.transaction, Transaction::Solana(_)) {
        return Err(ApiError::validation(
            "transactionSignature",
            "an EVM transaction for rpc verification",
            "Solana proofs are recorded only; RPC verification takes EVM transactions",
        )
        .with_reason("solana-rpc-unsupported"));
    }
    // 5.
    if payments::key_in_use(&app.store, &key, &order.id).await? {
        return Err(payments::transaction_already_used());
    }
    // 6.
    let (raw_amount, block_number) = match (&transfer.transaction, mode) {
        (Transaction::Evm(hash), Mode::Rpc) => {
            let contract = verify::token_contract(
                transfer.token_address.as_ref().map(|a| a.text()),
                payment.rail.token_address.as_deref(),
                app.config.usdt_contract.as_deref(),
            )?;
            let raw = transfer.expected_raw_amount(&app.config, &payment.rail)?;
            let verified = verify::verify(app, &transfer, hash, contract, raw).await?;
            (Some(raw), Some(verified.block_number))
        }
        _ if transfer.raw_amount.is_some() && transfer.token_decimals.is_some() => (
            Some(transfer.expected_raw_amount(&app.config, &payment.rail)?),
            None,
        ),
        _ => (
            transfer
                .expected_raw_amount(&app.config, &payment.rail)
                .ok(),
            None,
        ),
    };
    // 7, under the lock.
    let mut locked = lock(app, token, &order.id).await?;
    if !locked.order.status.is_pending() {
        return Err(closed(locked.order.status));
    }
    let (mut payment, from) = match payment_to_hold(&mut locked, payment) {
        Found::ToHold(payment, from) => (payment, from),
        Found::Other(p) if held_by_this(&p) => return Ok(unchanged(locked.tx, p)),
        Found::Other(p) => return Err(payment_closed(&p)),
    };
    let now = app.clock.now_ms();
    payment.status = PaymentStatus::Held;
    payment.proof = Some(transfer.record(mode, &payment.rail, raw_amount, block_number, now));
    payment.transaction_key = Some(key);
    if payment.rail.rail_type == RailType::Wallet
        && matches!(transfer.transaction, Transaction::Evm(_))
    {
        payment.rail.rail_type = RailType::WdkUsdtTransfer;
    }
    payment.updated_at = crate::clock::format_ms(now);
    commit_payment(&mut locked, &payment, from, now).await?;
    let (hash, signature) = match &transfer.transaction {
        Transaction::Evm(hash) => (Some(hash.as_str()), None),
        Transaction::Solana(signature) => (None, Some(signature.as_str())),
    };
    let payload = json!({"verificationMode": mode.as_str(), "chain": transfer.chain,
        "token": transfer.token, "transactionHash": hash, "transactionSignature": signature,
        "amount": transfer.amount.to_string()});
    audit::record(
        &mut locked.tx,
        now,
        payment_event(&payment, "market.payment.proof-recorded", payload),
    )
    .await?;
    Ok(Staged {
        tx: locked.tx,
        value: Paid {
            payment,
            created: false,
        },
    })
}

/// Variant B (§7.4): request-scoped payment headers, checked and never stored.
async fn proof_of_headers(
    app: &App,
    token: Option<&PairingAuth>,
    order: &MarketOrder,
    payment: MarketPayment,
    headers: RequestScoped,
) -> ApiResult<Staged<Paid>> {
    // 1.
    payments::require_request_scoped_rail(&payment)?;
    if payment.status == PaymentStatus::Held {
        return Ok(unchanged(app.store.begin().await?, payment));
    }
    if payment.status != PaymentStatus::IntentCreated {
        return Err(payment_closed(&payment));
    }
    payments::enforce_rail(&app.config, &order.payment, payment.rail.rail_type)?;
    // 2–2b.
    let now = app.clock.now_ms();
    let challenge = payment.rail.metadata.get("paymentRequest");
    let accepted = headers.check(challenge, (now / 1000).max(0) as u64)?;
    if payments::key_in_use(&app.store, &accepted.key, &order.id).await? {
        return Err(payments::transaction_already_used());
    }
    // 3–4, under the lock.
    let mut locked = lock(app, token, &order.id).await?;
    if !locked.order.status.is_pending() {
        return Err(closed(locked.order.status));
    }
    let (mut payment, from) = match payment_to_hold(&mut locked, payment) {
        Found::ToHold(payment, from) => (payment, from),
        Found::Other(p) if p.status == PaymentStatus::Held => return Ok(unchanged(locked.tx, p)),
        Found::Other(p) => return Err(payment_closed(&p)),
    };
    let now = app.clock.now_ms();
    payment.status = PaymentStatus::Held;
    payment.proof = Some(headers.record(&accepted, payment.rail.token.as_deref(), now));
    payment.transaction_key = Some(accepted.key.clone());
    payment.updated_at = crate::clock::format_ms(now);
    commit_payment(&mut locked, &payment, from, now).await?;
    let payload = json!({"verificationMode": "recorded", "chain": accepted.network,
        "token": payment.rail.token, "paymentReference": headers.reference,
        "amount": payment.amount, "headerName": headers.header_name});
    audit::record(
        &mut locked.tx,
        now,
        payment_event(&payment, "market.payment.proof-recorded", payload),
    )
    .await?;
    Ok(Staged {
        tx: locked.tx,
        value: Paid {
            payment,
            created: false,
        },
    })
}

/// `POST /market/orders/{orderId}/payment/escrow-lock`.
pub async fn escrow_lock(
    app: &App,
    token: Option<&PairingAuth>,
    order_id: &str,
    body: LockEscrow,
) -> ApiResult<Staged<Paid>> {
    // 1–2.
    let order = order_for(app, token, order_id).await?;
    let (_, pairing) = gate_c(app, token, &order).await?;
    if !order.status.is_pending() {
        return Err(closed(order.status));
    }
    let request = payments::escrow_lock_request(body)?;
    let key = request.transaction.key();
    // 3–4.
    let existing = payments::of_order(&app.store, order_id).await?;
    let rail_type = payments::escrow_rail_type(existing.as_ref(), &order.payment)?;
    payments::enforce_rail(&app.config, &order.payment, rail_type)?;
    let decide = |p: &MarketPayment| -> Option<ApiResult<()>> {
        match p.status {
            PaymentStatus::IntentCreated => None,
            PaymentStatus::Held if p.transaction_key.as_deref() == Some(key.as_str()) => {
                Some(Ok(()))
            }
            PaymentStatus::Held => Some(Err(ApiError::new(
                ErrorCode::ORDER_CLOSED,
                "The payment is already held by another transaction",
            )
            .with_reason("payment-held")
            .with("paymentStatus", p.status.as_str()))),
            _ => Some(Err(payment_closed(p))),
        }
    };
    if let Some(p) = &existing
        && let Some(decided) = decide(p)
    {
        decided?;
        return Ok(unchanged(app.store.begin().await?, p.clone()));
    }
    // 5.
    if payments::key_in_use(&app.store, &key, order_id).await? {
        return Err(payments::transaction_already_used());
    }
    let planned = match existing {
        Some(p) => p,
        None => implicit_payment(app, &order, &pairing, rail_type)?,
    };
    // 6, under the lock.
    let mut locked = lock(app, token, order_id).await?;
    if !locked.order.status.is_pending() {
        return Err(closed(locked.order.status));
    }
    if let Some(p) = &locked.payment
        && let Some(decided) = decide(p)
    {
        decided?;
        let p = locked.payment.take().expect("checked");
        return Ok(unchanged(locked.tx, p));
    }
    let (mut payment, from) = match payment_to_hold(&mut locked, planned) {
        Found::ToHold(payment, from) => (payment, from),
        Found::Other(p) => return Err(payment_closed(&p)),
    };
    let now = app.clock.now_ms();
    payment.rail.escrow_address = Some(request.escrow_address.text().to_string());
    payment.rail.chain = Some(request.chain.clone());
    payment.status = PaymentStatus::Held;
    payment.proof = Some(payments::escrow_proof(&request, now));
    payment.transaction_key = Some(key);
    payment.updated_at = crate::clock::format_ms(now);
    commit_payment(&mut locked, &payment, from, now).await?;
    let payload = json!({"transactionHash": payment.proof.as_ref().and_then(|p| p.transaction_hash.clone()),
        "chain": request.chain, "escrowAddress": request.escrow_address.text()});
    audit::record(
        &mut locked.tx,
        now,
        payment_event(&payment, "market.payment.escrow-held", payload),
    )
    .await?;
    Ok(Staged {
        tx: locked.tx,
        value: Paid {
            payment,
            created: false,
        },
    })
}

/// Gate A and the locked order with its payment, for release and refund.
async fn locked_payment(
    app: &App,
    token: Option<&PairingAuth>,
    order_id: &str,
) -> ApiResult<(Locked, MarketPayment)> {
    machines::find(app, &order_for(app, token, order_id).await?.machine_id).await?;
    let mut locked = lock(app, token, order_id).await?;
    let payment = locked.payment.take().ok_or_else(|| no_payment(order_id))?;
    Ok((locked, payment))
}

/// `POST /market/orders/{orderId}/payment/release`.
pub async fn release(
    app: &App,
    token: Option<&PairingAuth>,
    order_id: &str,
    body: ReleasePayment,
) -> ApiResult<Staged<Paid>> {
    let (transaction_hash, notes) = payments::release_request(body)?;
    let (mut locked, mut payment) = locked_payment(app, token, order_id).await?;
    match payment.status {
        PaymentStatus::ReleasePending => {}
        PaymentStatus::Released => return Ok(unchanged(locked.tx, payment)),
        PaymentStatus::Held => {
            return Err(ApiError::new(
                ErrorCode::ORDER_NOT_DELIVERED,
                "The order is not confirmed yet: its payment cannot be released",
            )
            .with("status", locked.order.status.as_str())
            .with("paymentStatus", payment.status.as_str()));
        }
        _ => return Err(payment_closed(&payment)),
    }
    let now = app.clock.now_ms();
    payment.release_transaction_hash = transaction_hash.clone();
    payment.notes.extend(notes);
    let released = payments::transition(
        &mut locked.tx,
        &mut payment,
        &[PaymentStatus::ReleasePending],
        PaymentStatus::Released,
        now,
    )
    .await?;
    moved(released, &payment)?;
    audit::record(
        &mut locked.tx,
        now,
        payment_event(
            &payment,
            "market.payment.released",
            json!({"transactionHash": transaction_hash}),
        ),
    )
    .await?;
    Ok(unchanged(locked.tx, payment))
}

/// `POST /market/orders/{orderId}/payment/refund`. A disputed order's open dispute is resolved.
pub async fn refund(
    app: &App,
    token: Option<&PairingAuth>,
    order_id: &str,
    body: RefundPayment,
) -> ApiResult<Staged<Paid>> {
    let (transaction_hash, reason) = payments::refund_request(body.transaction_hash, body.reason)?;
    let (mut locked, mut payment) = locked_payment(app, token, order_id).await?;
    const REFUNDABLE: [PaymentStatus; 4] = [
        PaymentStatus::IntentCreated,
        PaymentStatus::Held,
        PaymentStatus::ReleasePending,
        PaymentStatus::Frozen,
    ];
    match payment.status {
        PaymentStatus::Refunded => return Ok(unchanged(locked.tx, payment)),
        s if REFUNDABLE.contains(&s) => {}
        _ => return Err(payment_closed(&payment)),
    }
    let now = app.clock.now_ms();
    let status_from = payment.status;
    payment.refund_transaction_hash = transaction_hash.clone();
    payment.refund_reason = reason.clone();
    let refunded = payments::transition(
        &mut locked.tx,
        &mut payment,
        &REFUNDABLE,
        PaymentStatus::Refunded,
        now,
    )
    .await?;
    moved(refunded, &payment)?;
    let resolved = if locked.order.status == OrderStatus::Disputed {
        super::service::resolve_disputes(&mut locked.tx, order_id, now).await?
    } else {
        Vec::new()
    };
    let payload = json!({"transactionHash": transaction_hash, "reason": reason,
        "statusFrom": status_from, "resolvedDisputeIds": resolved});
    audit::record(
        &mut locked.tx,
        now,
        payment_event(&payment, "market.payment.refunded", payload),
    )
    .await?;
    Ok(unchanged(locked.tx, payment))
}
