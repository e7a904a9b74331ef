//! The payment rules of an order (spec orders-and-payments.md §1.2, §7): which rail a payment
//! uses and how it is filled in, the address rule, the checked forms of a proof and of an
//! escrow lock, and the compare-and-set writes. The order side of each action — its gates and
//! its status — is `orders::payment`'s.

use alloy_primitives::U256;
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use super::model::{
    LockEscrow, MarketPayment, PaymentProof, PaymentRail, PaymentStatus, RailOptions,
    ReleasePayment, SubmitPaymentProof,
};
use super::store;
use super::x402::{self, RequestScoped};
use crate::catalog::model::{PaymentRecommendation, RailType};
use crate::clock::format_ms;
use crate::config::Config;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::http::validate::{MAX_NAME, MAX_TEXT, optional_text, required_text};
use crate::money;
use crate::store::{Store, Tx, is_unique_violation, new_id};
use crate::wire::parse_field;

/// The payment of an order, if it has one.
pub async fn of_order(store: &Store, order_id: &str) -> ApiResult<Option<MarketPayment>> {
    Ok(store::of_order(store, order_id).await?)
}

/// The payment of an order, read in `tx`.
pub async fn of_order_in(tx: &mut Tx, order_id: &str) -> ApiResult<Option<MarketPayment>> {
    Ok(store::of_order_in(tx, order_id).await?)
}

/// Whether another payment is already backed by `key` (a transaction or an authorization).
pub async fn key_in_use(store: &Store, key: &str, order_id: &str) -> ApiResult<bool> {
    Ok(store::key_owner(store, key)
        .await?
        .is_some_and(|owner| owner != order_id))
}

pub fn transaction_already_used() -> ApiError {
    ApiError::new(
        ErrorCode::IDEMPOTENCY_CONFLICT,
        "This transaction already backs another payment",
    )
    .with_reason("transaction-already-used")
}

/// `409 ORDER_CLOSED` for a payment in a status the action does not take.
pub fn payment_closed(payment: &MarketPayment) -> ApiError {
    ApiError::new(
        ErrorCode::ORDER_CLOSED,
        format!(
            "The payment is {}: this action is not allowed",
            payment.status
        ),
    )
    .with("paymentStatus", payment.status.as_str())
}

fn rail_mismatch(field: &str, message: &str) -> ApiError {
    ApiError::validation(field, "a rail this action takes", message).with_reason("rail-mismatch")
}

/// Writes `payment` — a new one (`from: None`) or one still in `from` — in `tx`. `Ok(false)`
/// when the compare-and-set lost; `transaction-already-used` when its key backs another payment.
pub async fn save(
    tx: &mut Tx,
    payment: &MarketPayment,
    from: Option<PaymentStatus>,
    now_ms: i64,
) -> ApiResult<bool> {
    let written = match from {
        None => store::insert(tx, payment, now_ms).await.map(|()| true),
        Some(from) => store::update(tx, payment, from, now_ms).await,
    };
    match written {
        Ok(written) => Ok(written),
        Err(err) if is_unique_violation(&err) && payment.transaction_key.is_some() => {
            Err(transaction_already_used())
        }
        Err(err) => Err(err.into()),
    }
}

/// Moves the payment to `to` if it is in one of `from` (in `tx`); whether it moved.
pub async fn transition(
    tx: &mut Tx,
    payment: &mut MarketPayment,
    from: &[PaymentStatus],
    to: PaymentStatus,
    now_ms: i64,
) -> ApiResult<bool> {
    if !from.contains(&payment.status) {
        return Ok(false);
    }
    let expected = payment.status;
    payment.status = to;
    payment.updated_at = format_ms(now_ms);
    if !save(tx, payment, Some(expected), now_ms).await? {
        payment.status = expected;
        return Ok(false);
    }
    Ok(true)
}

// ---------------------------------------------------------------------------------------------
// Addresses and transactions (§7.1, §7.4)

/// An address as the address rule accepts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// `0x` + 40 hex digits, as given.
    Evm(String),
    /// Base58 of 32 bytes.
    Solana(String),
}

impl Address {
    pub fn text(&self) -> &str {
        match self {
            Address::Evm(s) | Address::Solana(s) => s,
        }
    }

    /// Equal addresses: EVM compared ignoring case.
    pub fn same(&self, other: &str) -> bool {
        match self {
            Address::Evm(s) => s.eq_ignore_ascii_case(other),
            Address::Solana(s) => s == other,
        }
    }
}

fn base58_len(value: &str) -> Option<usize> {
    bs58::decode(value).into_vec().ok().map(|bytes| bytes.len())
}

/// The address rule (§7.1): an EVM address, or base58 of 32 bytes.
pub fn address(field: &str, value: &str) -> ApiResult<Address> {
    if crate::identity::refs::evm_address(value).is_some() && value.starts_with("0x") {
        return Ok(Address::Evm(value.to_string()));
    }
    if !value.starts_with("0x") && base58_len(value) == Some(32) {
        return Ok(Address::Solana(value.to_string()));
    }
    Err(ApiError::validation(
        field,
        "EVM address (0x + 40 hex) or Solana address (base58, 32 bytes)",
        format!("{field} must be an EVM or Solana address"),
    ))
}

fn optional_address(field: &str, value: Option<String>) -> ApiResult<Option<Address>> {
    optional_text(field, value, MAX_NAME)?
        .map(|v| address(field, &v))
        .transpose()
}

/// An on-chain transaction a payment rests on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transaction {
    /// Lower-case `0x` + 64 hex.
    Evm(String),
    /// Base58 of 64 bytes.
    Solana(String),
}

impl Transaction {
    /// What the one-payment-per-transaction index holds.
    pub fn key(&self) -> String {
        match self {
            Transaction::Evm(hash) => format!("evm:{hash}"),
            Transaction::Solana(signature) => format!("solana:{signature}"),
        }
    }
}

fn evm_hash(field: &str, value: &str) -> ApiResult<String> {
    let hex = value.strip_prefix("0x").unwrap_or("");
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::validation(
            field,
            "0x + 64 hex digits",
            format!("{field} must be a 0x-prefixed 32-byte hex transaction hash"),
        ));
    }
    Ok(value.to_ascii_lowercase())
}

fn solana_signature(field: &str, value: &str) -> ApiResult<String> {
    if base58_len(value) != Some(64) {
        return Err(ApiError::validation(
            field,
            "base58, 64 bytes",
            format!("{field} must be a base58 Solana transaction signature"),
        ));
    }
    Ok(value.to_string())
}

/// A release or refund reference: an EVM hash or a Solana signature.
fn reference(field: &str, value: Option<String>) -> ApiResult<Option<String>> {
    let Some(value) = optional_text(field, value, MAX_NAME)? else {
        return Ok(None);
    };
    if value.starts_with("0x") {
        return evm_hash(field, &value).map(Some);
    }
    solana_signature(field, &value).map(Some)
}

// ---------------------------------------------------------------------------------------------
// Rails (§7.1, §7.2)

/// `PEAQOS_ENFORCE_SERVICE_PAYMENT_RAILS`: the rail must be one the service supports.
pub fn enforce_rail(
    config: &Config,
    recommendation: &PaymentRecommendation,
    rail: RailType,
) -> ApiResult<()> {
    if config.enforce_service_payment_rails && !recommendation.supported_rails.contains(&rail) {
        let supported: Vec<&str> = recommendation
            .supported_rails
            .iter()
            .map(|r| r.as_str())
            .collect();
        return Err(ApiError::validation(
            "rail.type",
            "one of the service's supportedRails",
            format!(
                "The service takes {} only",
                if supported.is_empty() {
                    "no rail".to_string()
                } else {
                    supported.join(", ")
                }
            ),
        )
        .with_reason("rail-not-supported")
        .with("supportedRails", supported));
    }
    Ok(())
}

/// The checked `rail` of a payment-intent body (addresses have passed the address rule).
#[derive(Debug, Default)]
pub struct RailRequest {
    chain: Option<String>,
    token: Option<String>,
    token_address: Option<String>,
    token_mint: Option<String>,
    escrow_address: Option<String>,
    external_url: Option<String>,
    provider: Option<String>,
    account_id: Option<String>,
    wallet_address: Option<String>,
    payer_address: Option<String>,
    payee_address: Option<String>,
    payment_intent_id: Option<String>,
    metadata: Map<String, Value>,
}

/// The rail type a body names (`rail.type`), checked.
pub fn requested_rail_type(options: Option<&RailOptions>) -> ApiResult<Option<RailType>> {
    options
        .and_then(|o| o.rail_type.as_deref())
        .map(|t| parse_field("rail.type", t))
        .transpose()
}

/// Checks the fields of a payment-intent `rail` (its type is read by
/// [`requested_rail_type`]).
pub fn rail_request(options: Option<RailOptions>) -> ApiResult<RailRequest> {
    let Some(o) = options else {
        return Ok(RailRequest::default());
    };
    let text = |field: &str, value: Option<String>| optional_text(field, value, MAX_TEXT);
    let address = |field: &str, value: Option<String>| {
        optional_address(field, value).map(|a| a.map(|a| a.text().to_string()))
    };
    Ok(RailRequest {
        chain: text("rail.chain", o.chain)?,
        token: text("rail.token", o.token)?,
        token_address: address("rail.tokenAddress", o.token_address)?,
        token_mint: address("rail.tokenMint", o.token_mint)?,
        escrow_address: address("rail.escrowAddress", o.escrow_address)?,
        external_url: text("rail.externalUrl", o.external_url)?,
        provider: text("rail.provider", o.provider)?,
        account_id: text("rail.accountId", o.account_id)?,
        wallet_address: address("rail.walletAddress", o.wallet_address)?,
        payer_address: address("rail.payerAddress", o.payer_address)?,
        payee_address: address("rail.payeeAddress", o.payee_address)?,
        payment_intent_id: text("rail.paymentIntentId", o.payment_intent_id)?,
        metadata: o.metadata.unwrap_or_default(),
    })
}

/// The decimals of the rail's token (§7.2 step 6): the recommendation's, else
/// `PEAQOS_USDT_DECIMALS` for USDT, else 6 for USDC.
fn token_decimals(
    config: &Config,
    recommendation: &PaymentRecommendation,
    token: Option<&str>,
) -> Option<u32> {
    recommendation.token_decimals.or(match token {
        Some(t) if t.eq_ignore_ascii_case("USDT") => Some(config.usdt_decimals),
        Some(t) if t.eq_ignore_ascii_case("USDC") => Some(6),
        _ => None,
    })
}

/// The rail of a new payment (§7.2 step 6): the request's fields, the recommendation's where
/// unset, the payee defaulting to the wallet and the payer to the pairing's agent, and the
/// amount in base units when the token's decimals are known.
pub fn build_rail(
    config: &Config,
    recommendation: &PaymentRecommendation,
    rail_type: RailType,
    request: RailRequest,
    agent_address: &str,
    amount: Decimal,
) -> PaymentRail {
    let r = recommendation;
    let mut metadata = request.metadata;
    let wallet_address = request.wallet_address.or_else(|| r.wallet_address.clone());
    let token = request.token.or_else(|| r.token.clone());
    if let Some(decimals) = token_decimals(config, r, token.as_deref())
        && let Some(raw) = money::to_base_units(amount, decimals)
    {
        metadata.insert("rawAmount".into(), json!(raw.to_string()));
        metadata.insert("tokenDecimals".into(), json!(decimals));
    }
    PaymentRail {
        rail_type,
        chain: request.chain.or_else(|| r.chain.clone()),
        token,
        token_address: request.token_address.or_else(|| r.token_address.clone()),
        token_mint: request.token_mint.or_else(|| r.token_mint.clone()),
        escrow_address: request.escrow_address.or_else(|| r.escrow_address.clone()),
        external_url: request.external_url.or_else(|| r.external_url.clone()),
        provider: request.provider.or_else(|| r.provider.clone()),
        account_id: request.account_id,
        payer_address: request
            .payer_address
            .or_else(|| r.payer_address.clone())
            .or_else(|| Some(agent_address.to_string())),
        payee_address: request
            .payee_address
            .or_else(|| r.payee_address.clone())
            .or_else(|| wallet_address.clone()),
        wallet_address,
        payment_intent_id: request.payment_intent_id,
        metadata,
    }
}

/// A payment not yet written.
pub fn new_payment(
    order_id: &str,
    machine_id: &str,
    rail: PaymentRail,
    amount: Decimal,
    currency: Option<String>,
    now_ms: i64,
) -> MarketPayment {
    let status = if rail.rail_type == RailType::NotRequired {
        PaymentStatus::NotRequired
    } else {
        PaymentStatus::IntentCreated
    };
    MarketPayment {
        id: new_id("pay_"),
        order_id: order_id.to_string(),
        machine_id: machine_id.to_string(),
        status,
        rail,
        amount: Some(money::to_f64(amount)),
        currency,
        notes: Vec::new(),
        proof: None,
        release_transaction_hash: None,
        refund_transaction_hash: None,
        refund_reason: None,
        created_at: format_ms(now_ms),
        updated_at: format_ms(now_ms),
        exact_amount: Some(amount),
        transaction_key: None,
        created_at_ms: now_ms,
    }
}

/// The payment-intent `amount` (≥ 0) and `currency`, defaulting to the order's.
pub fn intent_amount(
    amount: Option<f64>,
    currency: Option<String>,
    order_amount: Decimal,
    order_currency: Option<&str>,
) -> ApiResult<(Decimal, Option<String>)> {
    let amount = match amount {
        None => order_amount,
        Some(a) => money::from_f64(a)
            .filter(|d| !d.is_sign_negative())
            .ok_or_else(|| ApiError::validation("amount", ">= 0", "amount must be >= 0"))?,
    };
    let currency =
        optional_text("currency", currency, MAX_NAME)?.or(order_currency.map(str::to_string));
    Ok((amount, currency))
}

// ---------------------------------------------------------------------------------------------
// Proofs (§7.4)

/// `verificationMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Recorded,
    Rpc,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Recorded => "recorded",
            Mode::Rpc => "rpc",
        }
    }
}

/// A checked Variant A proof: an on-chain transfer.
#[derive(Debug, Clone)]
pub struct TransferProof {
    pub mode: Mode,
    pub chain: String,
    pub token: String,
    pub payer: Address,
    pub payee: Address,
    /// The exact plain decimal of `amount`.
    pub amount: Decimal,
    pub transaction: Transaction,
    pub token_address: Option<Address>,
    pub token_mint: Option<Address>,
    pub token_decimals: Option<u32>,
    pub raw_amount: Option<U256>,
    pub metadata: Map<String, Value>,
}

/// A checked proof: Variant A or B.
#[derive(Debug)]
pub enum Proof {
    Transfer(TransferProof),
    RequestScoped(RequestScoped),
}

fn required_address(field: &str, value: Option<String>) -> ApiResult<Address> {
    address(field, &required_text(field, value, MAX_NAME)?)
}

/// Checks a payment-proof body, Variant A or B, in the order of the spec's table.
pub fn proof_request(body: SubmitPaymentProof) -> ApiResult<Proof> {
    if body.payment.is_some() {
        if body.transaction_hash.is_some() || body.transaction_signature.is_some() {
            return Err(ApiError::validation(
                "payment",
                "either payment headers or an on-chain transaction",
                "A proof carries payment headers or a transaction, not both",
            ));
        }
        let headers = body.payment.unwrap_or_default();
        let reference = optional_text("paymentReference", body.payment_reference, MAX_NAME)?;
        return x402::request_scoped(headers, reference, body.metadata.unwrap_or_default())
            .map(Proof::RequestScoped);
    }
    let mode = match required_text("verificationMode", body.verification_mode, MAX_NAME)?.as_str() {
        "recorded" => Mode::Recorded,
        "rpc" => Mode::Rpc,
        _ => {
            return Err(ApiError::validation(
                "verificationMode",
                "recorded | rpc",
                "verificationMode must be recorded or rpc",
            ));
        }
    };
    let chain = required_text("chain", body.chain, MAX_NAME)?;
    let token = required_text("token", body.token, MAX_NAME)?;
    let payer = required_address("payerAddress", body.payer_address)?;
    let payee = required_address("payeeAddress", body.payee_address)?;
    let amount = required_text("amount", body.amount, MAX_NAME)?;
    let amount = money::parse_decimal_text(&amount)
        .filter(|a| *a > Decimal::ZERO)
        .ok_or_else(|| {
            ApiError::validation(
                "amount",
                "decimal string > 0",
                "amount must be a decimal string greater than 0, such as \"0.02\" or \"1e-05\"",
            )
        })?;
    let transaction = match (body.transaction_hash, body.transaction_signature) {
        (Some(_), Some(_)) => {
            return Err(ApiError::validation(
                "transactionHash",
                "exactly one of transactionHash and transactionSignature",
                "Send transactionHash (EVM) or transactionSignature (Solana), not both",
            ));
        }
        (Some(hash), None) => Transaction::Evm(evm_hash("transactionHash", &hash)?),
        (None, Some(signature)) => {
            Transaction::Solana(solana_signature("transactionSignature", &signature)?)
        }
        (None, None) => {
            return Err(ApiError::validation(
                "transactionHash",
                "exactly one of transactionHash and transactionSignature",
                "transactionHash (EVM) or transactionSignature (Solana) is required",
            ));
        }
    };
    // The transaction and its parties live on one chain family.
    for (field, party) in [("payerAddress", &payer), ("payeeAddress", &payee)] {
        let matches = matches!(
            (&transaction, party),
            (Transaction::Evm(_), Address::Evm(_)) | (Transaction::Solana(_), Address::Solana(_))
        );
        if !matches {
            return Err(ApiError::validation(
                field,
                "an address of the transaction's chain family",
                format!("{field} is not an address of the chain the transaction is on"),
            ));
        }
    }
    let token_address = optional_address("tokenAddress", body.token_address)?;
    let token_mint = optional_address("tokenMint", body.token_mint)?;
    let token_decimals = body
        .token_decimals
        .map(|d| {
            u32::try_from(d).ok().filter(|d| *d <= 36).ok_or_else(|| {
                ApiError::validation("tokenDecimals", "0..36", "tokenDecimals must be 0 to 36")
            })
        })
        .transpose()?;
    let raw_amount = optional_text("rawAmount", body.raw_amount, MAX_NAME)?
        .map(|raw| {
            money::parse_base_units(&raw).ok_or_else(|| {
                ApiError::validation(
                    "rawAmount",
                    "decimal integer string",
                    "rawAmount must be a decimal integer string",
                )
            })
        })
        .transpose()?;
    Ok(Proof::Transfer(TransferProof {
        mode,
        chain,
        token,
        payer,
        payee,
        amount,
        transaction,
        token_address,
        token_mint,
        token_decimals,
        raw_amount,
        metadata: body.metadata.unwrap_or_default(),
    }))
}

impl TransferProof {
    /// The raw amount the transfer must carry (§8): `rawAmount`, else `amount × 10^decimals`
    /// with the proof's decimals, else the rail's (set at intent), else `PEAQOS_USDT_DECIMALS`.
    /// Both given → they must agree.
    pub fn expected_raw_amount(&self, config: &Config, rail: &PaymentRail) -> ApiResult<U256> {
        let decimals = self
            .token_decimals
            .or_else(|| {
                rail.metadata
                    .get("tokenDecimals")
                    .and_then(Value::as_u64)
                    .and_then(|d| u32::try_from(d).ok())
            })
            .unwrap_or(config.usdt_decimals);
        let scaled = money::to_base_units(self.amount, decimals);
        match (self.raw_amount, scaled) {
            (Some(raw), Some(scaled)) if raw == scaled => Ok(raw),
            (Some(raw), None) if self.token_decimals.is_none() => Ok(raw),
            (Some(_), _) => Err(ApiError::validation(
                "rawAmount",
                "amount × 10^tokenDecimals",
                "rawAmount does not agree with amount and tokenDecimals",
            )),
            (None, Some(scaled)) => Ok(scaled),
            (None, None) => Err(ApiError::validation(
                "amount",
                &format!("at most {decimals} fractional digits"),
                format!("amount has more fractional digits than the token's {decimals} decimals"),
            )),
        }
    }

    /// The rail's recorded fields the proof must match (§7.4 step 3, and the amount).
    pub fn check_against(&self, payment: &MarketPayment) -> ApiResult<()> {
        let rail = &payment.rail;
        if let Some(payee) = &rail.payee_address
            && !self.payee.same(payee)
        {
            return Err(ApiError::validation(
                "payeeAddress",
                "the payment's payeeAddress",
                "payeeAddress is not the payee of this payment",
            )
            .with_reason("payee-mismatch"));
        }
        if let (Some(expected), Some(given)) = (&rail.token_address, &self.token_address)
            && !given.same(expected)
        {
            return Err(ApiError::validation(
                "tokenAddress",
                "the payment's tokenAddress",
                "tokenAddress is not the token of this payment",
            )
            .with_reason("token-mismatch"));
        }
        if let Some(expected) = payment.exact_amount.filter(|a| *a > Decimal::ZERO)
            && expected != self.amount
        {
            return Err(ApiError::validation(
                "amount",
                "the payment's amount",
                format!("amount must be the payment's amount, {expected}"),
            )
            .with_reason("amount-mismatch"));
        }
        Ok(())
    }

    /// The stored proof.
    pub fn record(
        &self,
        mode: Mode,
        rail: &PaymentRail,
        raw_amount: Option<U256>,
        block_number: Option<u64>,
        now_ms: i64,
    ) -> PaymentProof {
        let (hash, signature) = match &self.transaction {
            Transaction::Evm(hash) => (Some(hash.clone()), None),
            Transaction::Solana(signature) => (None, Some(signature.clone())),
        };
        PaymentProof {
            verification_mode: mode.as_str().into(),
            chain: Some(self.chain.clone()),
            token: Some(self.token.clone()),
            transaction_hash: hash,
            transaction_signature: signature,
            payer_address: Some(self.payer.text().to_string()),
            payee_address: Some(self.payee.text().to_string()),
            amount: Some(self.amount.to_string()),
            raw_amount: raw_amount.or(self.raw_amount).map(|r| r.to_string()),
            token_address: self
                .token_address
                .as_ref()
                .map(|a| a.text().to_string())
                .or_else(|| rail.token_address.clone()),
            token_mint: self
                .token_mint
                .as_ref()
                .map(|a| a.text().to_string())
                .or_else(|| rail.token_mint.clone()),
            block_number,
            payment_reference: None,
            verified_at: format_ms(now_ms),
            metadata: self.metadata.clone(),
        }
    }
}

/// A checked escrow-lock body.
#[derive(Debug)]
pub struct EscrowLockRequest {
    pub transaction: Transaction,
    pub chain: String,
    pub escrow_address: Address,
}

pub fn escrow_lock_request(body: LockEscrow) -> ApiResult<EscrowLockRequest> {
    let hash = required_text("transactionHash", body.transaction_hash, MAX_NAME)?;
    Ok(EscrowLockRequest {
        transaction: Transaction::Evm(evm_hash("transactionHash", &hash)?),
        chain: required_text("chain", body.chain, MAX_NAME)?,
        escrow_address: required_address("escrowAddress", body.escrow_address)?,
    })
}

/// The rail type an escrow lock uses (§7.5 step 3).
pub fn escrow_rail_type(
    existing: Option<&MarketPayment>,
    recommendation: &PaymentRecommendation,
) -> ApiResult<RailType> {
    let rail = match existing {
        Some(p) => p.rail.rail_type,
        None if matches!(
            recommendation.default_rail,
            RailType::Escrow | RailType::OnchainEscrow
        ) =>
        {
            recommendation.default_rail
        }
        None => RailType::OnchainEscrow,
    };
    if !matches!(rail, RailType::Escrow | RailType::OnchainEscrow) {
        return Err(rail_mismatch(
            "escrowAddress",
            &format!("The payment's rail is {rail}, not an escrow"),
        ));
    }
    Ok(rail)
}

/// The rail a request-scoped proof needs (§7.4 Variant B step 1).
pub fn require_request_scoped_rail(payment: &MarketPayment) -> ApiResult<()> {
    if !matches!(payment.rail.rail_type, RailType::X402 | RailType::Mpp) {
        return Err(rail_mismatch(
            "payment",
            &format!(
                "Payment headers prove x402 or MPP payments; this payment's rail is {}",
                payment.rail.rail_type
            ),
        ));
    }
    Ok(())
}

/// The escrow lock's stored proof.
pub fn escrow_proof(lock: &EscrowLockRequest, now_ms: i64) -> PaymentProof {
    let Transaction::Evm(hash) = &lock.transaction else {
        unreachable!("escrow locks are EVM transactions")
    };
    PaymentProof {
        verification_mode: Mode::Recorded.as_str().into(),
        chain: Some(lock.chain.clone()),
        token: None,
        transaction_hash: Some(hash.clone()),
        transaction_signature: None,
        payer_address: None,
        payee_address: None,
        amount: None,
        raw_amount: None,
        token_address: None,
        token_mint: None,
        block_number: None,
        payment_reference: None,
        verified_at: format_ms(now_ms),
        metadata: Map::new(),
    }
}

/// A checked release body: the transaction reference and the note.
pub fn release_request(body: ReleasePayment) -> ApiResult<(Option<String>, Option<String>)> {
    Ok((
        reference("transactionHash", body.transaction_hash)?,
        optional_text("notes", body.notes, MAX_TEXT)?,
    ))
}

/// A checked refund body: the transaction reference and the reason.
pub fn refund_request(
    transaction_hash: Option<String>,
    reason: Option<String>,
) -> ApiResult<(Option<String>, Option<String>)> {
    Ok((
        reference("transactionHash", transaction_hash)?,
        optional_text("reason", reason, MAX_TEXT)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_rule() {
        assert!(matches!(
            address("a", "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A"),
            Ok(Address::Evm(_))
        ));
        // The System Program id: 32 zero bytes.
        assert!(matches!(
            address("a", "11111111111111111111111111111111"),
            Ok(Address::Solana(_))
        ));
        for bad in [
            "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2",
            "19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A",
            "0X19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A",
            "1111111111111111111111111111111",
            "not an address",
        ] {
            assert!(address("a", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn transactions_are_one_family() {
        let evm = "0x".to_string() + &"ab".repeat(32);
        assert_eq!(
            evm_hash("t", &evm.to_ascii_uppercase().replace("0X", "0x")).unwrap(),
            evm
        );
        assert!(evm_hash("t", "0xabc").is_err());
        let signature = bs58::encode([7u8; 64]).into_string();
        assert_eq!(solana_signature("t", &signature).unwrap(), signature);
        assert!(solana_signature("t", &bs58::encode([7u8; 32]).into_string()).is_err());
    }
}
