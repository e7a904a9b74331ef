//! A loopback x402 v2 paywall that checks payments for real, and a test payer that signs them
//! exactly as the official `peaq-os-sdk` 0.12.1 (with `x402` 2.x) does.
//!
//! The paywall answers by path (every path records the request it got):
//!
//! | Path | Unpaid request | Request with a payment header |
//! |---|---|---|
//! | [`V2`] | `402` + `PAYMENT-REQUIRED` (padded standard base64 of the v2 `PaymentRequired`) | verified → `200` JSON + `PAYMENT-RESPONSE` (`SettleResponse`, `success: true`, a made-up mixed-case hash, or the mined `transferWithAuthorization` of a [`Paywall::settling_on`] paywall); not valid → `402` + `PAYMENT-REQUIRED` with `error` |
//! | [`SETTLE_FAILS`] | as [`V2`] | verified → `402` + `PAYMENT-RESPONSE` `success: false` and a `{}` body, as the `x402` package's HTTP server answers a failed settlement |
//! | [`SETTLE_FAILS_200`] | as [`V2`] | verified → `200` JSON + `PAYMENT-RESPONSE` `success: false` |
//! | [`REJECTS`] | as [`V2`] | verified, then refused as the facilitator would for an empty wallet: `402` + `PAYMENT-REQUIRED` with `error: insufficient_funds` |
//! | [`V1`] | `402` with the x402 v1 JSON body (`accepts` with `maxAmountRequired`) | `402` again |
//! | [`MPP`] | `402` + `WWW-Authenticate: Payment id=…` | `Authorization: Payment <credential for an issued id>` → `200` + `Payment-Receipt` (base64url JSON) |
//! | `/plain/{code}` | `{code}` with `{"error": <600 characters>}` ([`long_error`]), or `{"ok": true}` for a 2xx | the same |
//! | `/plain/{code}/bare` | `{code}` with a plain-text body | the same |
//! | [`HANG`] | answers after 60 s | the same |
//!
//! [`refused_url`] is a loopback URL nothing listens on (a transport failure without waiting).
//!
//! A payment is checked the way a facilitator checks an EIP-3009 `exact` payment: the header is
//! strict padded base64 of a v2 `PaymentPayload`; `accepted` is one of the paywall's
//! requirements; the EIP-712 `TransferWithAuthorization` signature (domain: the paywall's token
//! name, version, chain id and asset) recovers to `authorization.from`; `to` is `payTo`, `value`
//! is `amount`; `validAfter <= now < validBefore` by the wall clock; and the nonce was not used
//! before. The signature recovery here is k256's and the typed-data hash alloy's, not the
//! server's code.
#![allow(dead_code)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy_primitives::{Address, B256, U256, keccak256};
use alloy_sol_types::{Eip712Domain, SolStruct, sol};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};
use k256::elliptic_curve::Generate;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::evm::{self, TestToken};
use super::fake_provider::Seen;

pub const V2: &str = "/x402/v2";
pub const SETTLE_FAILS: &str = "/x402/v2/settle-fails";
pub const SETTLE_FAILS_200: &str = "/x402/v2/settle-fails-200";
pub const REJECTS: &str = "/x402/v2/rejects";
pub const V1: &str = "/x402/v1";
pub const MPP: &str = "/mpp";
pub const HANG: &str = "/hang";

/// USDC on Base Sepolia: one of the `x402` package's default assets, the only kind the official
/// SDK's default spend controls let it sign for (at most $1 a payment).
pub const USDC_BASE_SEPOLIA: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
pub const PAY_TO: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
/// The settlement failure reason the paywall reports.
pub const SETTLE_ERROR: &str = "insufficient_funds";

sol! {
    /// EIP-3009's signed message.
    struct TransferWithAuthorization {
        address from;
        address to;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
    }
}

// ---------------------------------------------------------------------------------------------
// The x402 v2 wire types, fields in the order the `x402` package serialises them.

/// One `accepts[]` entry (`PaymentRequirements`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Requirements {
    pub scheme: String,
    pub network: String,
    pub asset: String,
    pub amount: String,
    pub pay_to: String,
    pub max_timeout_seconds: u64,
    #[serde(default)]
    pub extra: Value,
}

/// `ResourceInfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
}

/// The `PAYMENT-REQUIRED` JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequired {
    pub x402_version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
    pub accepts: Vec<Requirements>,
}

/// EIP-3009 authorization fields, as decimal and hex strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Authorization {
    pub from: String,
    pub to: String,
    pub value: String,
    pub valid_after: String,
    pub valid_before: String,
    pub nonce: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExactPayload {
    pub authorization: Authorization,
    pub signature: String,
}

/// The `PAYMENT-SIGNATURE` JSON (`PaymentPayload`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPayload {
    pub x402_version: u64,
    pub payload: ExactPayload,
    pub accepted: Requirements,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
}

/// The `PAYMENT-RESPONSE` JSON (`SettleResponse`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SettleResponse {
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<String>,
    pub payer: String,
    pub transaction: String,
    pub network: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
}

/// What the paywall charges.
#[derive(Debug, Clone)]
pub struct Terms {
    pub chain_id: u64,
    pub asset: String,
    pub pay_to: String,
    /// Base units.
    pub amount: String,
    pub max_timeout_seconds: u64,
    /// The token's EIP-712 domain name and version.
    pub name: String,
    pub version: String,
}

impl Default for Terms {
    /// 0.25 USDC on Base Sepolia to [`PAY_TO`], five minutes to pay.
    fn default() -> Self {
        Terms {
            chain_id: 84532,
            asset: USDC_BASE_SEPOLIA.into(),
            pay_to: PAY_TO.into(),
            amount: "250000".into(),
            max_timeout_seconds: 300,
            name: "USDC".into(),
            version: "2".into(),
        }
    }
}

impl Terms {
    pub fn network(&self) -> String {
        format!("eip155:{}", self.chain_id)
    }

    pub fn requirements(&self) -> Requirements {
        Requirements {
            scheme: "exact".into(),
            network: self.network(),
            asset: self.asset.clone(),
            amount: self.amount.clone(),
            pay_to: self.pay_to.clone(),
            max_timeout_seconds: self.max_timeout_seconds,
            extra: json!({"name": self.name, "version": self.version}),
        }
    }

    fn domain(&self) -> Eip712Domain {
        domain(
            &self.name,
            &self.version,
            self.chain_id,
            address(&self.asset),
        )
    }
}

fn domain(name: &str, version: &str, chain_id: u64, asset: Address) -> Eip712Domain {
    Eip712Domain::new(
        Some(name.to_string().into()),
        Some(version.to_string().into()),
        Some(U256::from(chain_id)),
        Some(asset),
        None,
    )
}

fn address(text: &str) -> Address {
    text.parse()
        .unwrap_or_else(|_| panic!("not an address: {text}"))
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Padded standard base64 of compact JSON.
pub fn encode<T: Serialize>(value: &T) -> String {
    STANDARD.encode(serde_json::to_string(value).unwrap())
}

/// The JSON in a padded standard base64 value (strict, as the `x402` package decodes).
pub fn decode(value: &str) -> Value {
    serde_json::from_slice(&STANDARD.decode(value).expect("padded standard base64"))
        .expect("base64 of JSON")
}

/// The `error` text of `/plain/{code}`: 600 characters, so a 500-character cut shows.
pub fn long_error() -> String {
    let mut text = String::from("provider says no: ");
    while text.len() < 600 {
        text.push_str("0123456789");
    }
    text.truncate(600);
    text
}

/// The text in a padded standard base64 value.
pub fn decode_text(value: &str) -> String {
    String::from_utf8(STANDARD.decode(value).expect("padded standard base64")).unwrap()
}

/// A loopback URL that refuses connections.
pub fn refused_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

// ---------------------------------------------------------------------------------------------
// Verification

/// A payment the paywall accepted.
#[derive(Debug, Clone)]
pub struct Verified {
    pub path: String,
    /// The `PAYMENT-SIGNATURE` value as received.
    pub header: String,
    /// `authorization.from`, lower-case.
    pub payer: String,
    pub nonce: String,
    pub value: String,
    /// What the paywall answered in `PAYMENT-RESPONSE`.
    pub settlement: SettleResponse,
}

/// Why the paywall refused a payment header (x402 `invalidReason`-style).
fn verify(terms: &Terms, header: &str, now: u64) -> Result<(Authorization, Address), String> {
    let bytes = STANDARD
        .decode(header)
        .map_err(|_| "invalid_payload_encoding")?;
    let payload: PaymentPayload =
        serde_json::from_slice(&bytes).map_err(|_| "invalid_payload".to_string())?;
    if payload.x402_version != 2 {
        return Err("invalid_x402_version".into());
    }
    let ours = terms.requirements();
    let accepted = &payload.accepted;
    let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    if accepted.scheme != ours.scheme
        || accepted.network != ours.network
        || !same(&accepted.asset, &ours.asset)
        || !same(&accepted.pay_to, &ours.pay_to)
        || accepted.amount != ours.amount
    {
        return Err("unmatched_payment_requirements".into());
    }
    let auth = &payload.payload.authorization;
    let uint = |s: &str| U256::from_str_radix(s, 10).map_err(|_| "invalid_authorization");
    let message = TransferWithAuthorization {
        from: auth
            .from
            .parse()
            .map_err(|_| "invalid_authorization_from")?,
        to: auth.to.parse().map_err(|_| "invalid_authorization_to")?,
        value: uint(&auth.value)?,
        validAfter: uint(&auth.valid_after)?,
        validBefore: uint(&auth.valid_before)?,
        nonce: auth
            .nonce
            .parse::<B256>()
            .map_err(|_| "invalid_authorization_nonce")?,
    };
    let digest = message.eip712_signing_hash(&terms.domain());
    if recover(&digest.0, &payload.payload.signature) != Some(message.from) {
        return Err("invalid_exact_evm_payload_signature".into());
    }
    if message.to != address(&terms.pay_to) {
        return Err("invalid_exact_evm_payload_recipient_mismatch".into());
    }
    if message.value != uint(&terms.amount)? {
        return Err("invalid_exact_evm_payload_authorization_value".into());
    }
    if message.validAfter > U256::from(now) {
        return Err("invalid_exact_evm_payload_authorization_valid_after".into());
    }
    if message.validBefore <= U256::from(now) {
        return Err("invalid_exact_evm_payload_authorization_valid_before".into());
    }
    Ok((auth.clone(), message.from))
}

/// The signer of a 65-byte `r ‖ s ‖ v` (v = 27/28) signature over `digest`.
fn recover(digest: &[u8; 32], signature: &str) -> Option<Address> {
    let raw = hex::decode(signature.strip_prefix("0x")?).ok()?;
    if raw.len() != 65 {
        return None;
    }
    let sig = Signature::from_slice(&raw[..64]).ok()?;
    let recovery = RecoveryId::new(raw[64] == 28 || raw[64] == 1, false);
    let key = VerifyingKey::recover_from_prehash(digest, &sig, recovery).ok()?;
    Some(address_of(&key))
}

fn address_of(key: &VerifyingKey) -> Address {
    let point = key.to_sec1_point(false);
    Address::from_slice(&keccak256(&point.as_bytes()[1..])[12..])
}

// ---------------------------------------------------------------------------------------------
// The server

#[derive(Default)]
struct Shared {
    seen: Mutex<Vec<Seen>>,
    verified: Mutex<Vec<Verified>>,
    refused: Mutex<Vec<String>>,
    used_nonces: Mutex<HashSet<String>>,
    mpp_ids: Mutex<Vec<String>>,
    mpp_challenges: Mutex<Vec<String>>,
    receipts: Mutex<Vec<Value>>,
}

pub struct Paywall {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    pub terms: Terms,
    shared: Arc<Shared>,
    settler: Option<TestToken>,
}

#[derive(Clone)]
struct Ctx {
    terms: Terms,
    url: String,
    shared: Arc<Shared>,
    /// The token [`V2`] settles on, on a real chain; else settlements are made up.
    settler: Option<TestToken>,
}

fn header(name: &'static str, value: &str) -> (axum::http::HeaderName, HeaderValue) {
    (
        axum::http::HeaderName::from_static(name),
        HeaderValue::from_str(value).unwrap(),
    )
}

impl Ctx {
    fn payment_required(&self, path: &str, error: Option<&str>) -> String {
        encode(&PaymentRequired {
            x402_version: 2,
            error: error.map(str::to_string),
            resource: Some(Resource {
                url: format!("{}{path}", self.url),
                description: Some("paid run".into()),
                mime_type: Some("application/json".into()),
            }),
            accepts: vec![self.terms.requirements()],
        })
    }

    fn challenge(&self, path: &str, error: Option<&str>) -> Response {
        let mut response = (
            StatusCode::PAYMENT_REQUIRED,
            axum::Json(json!({"error": error.unwrap_or("payment required")})),
        )
            .into_response();
        let (name, value) = header("payment-required", &self.payment_required(path, error));
        response.headers_mut().insert(name, value);
        response
    }

    fn v1_body(&self, path: &str) -> Value {
        json!({"x402Version": 1, "error": "X-PAYMENT header is required",
               "accepts": [{"scheme": "exact", "network": "base-sepolia",
                            "maxAmountRequired": self.terms.amount,
                            "resource": format!("{}{path}", self.url), "description": "paid run",
                            "mimeType": "application/json", "payTo": self.terms.pay_to,
                            "maxTimeoutSeconds": self.terms.max_timeout_seconds,
                            "asset": self.terms.asset,
                            "extra": {"name": self.terms.name, "version": self.terms.version}}]})
    }

    async fn paid(&self, path: &str, signature: &str, request: &Value) -> Response {
        let (authorization, from) = match verify(&self.terms, signature, now_s()) {
            Ok(ok) => ok,
            Err(reason) => {
                self.shared.refused.lock().unwrap().push(reason.clone());
                return self.challenge(path, Some(&reason));
            }
        };
        let nonce_key = format!("{from:#x}:{}", authorization.nonce.to_ascii_lowercase());
        if !self.shared.used_nonces.lock().unwrap().insert(nonce_key) {
            let reason = "invalid_exact_evm_payload_authorization_nonce_used".to_string();
            self.shared.refused.lock().unwrap().push(reason.clone());
            return self.challenge(path, Some(&reason));
        }
        if path == REJECTS {
            self.shared
                .refused
                .lock()
                .unwrap()
                .push(SETTLE_ERROR.into());
            return self.challenge(path, Some(SETTLE_ERROR));
        }
        let payer = from.to_checksum(None);
        let (settled, transaction) = match (&self.settler, path) {
            (Some(token), V2) => settle_on_chain(token, &authorization, signature).await,
            // Mixed-case hex, so the server's lower-casing shows.
            (None, V2) => (
                true,
                format!("0x{}", hex::encode_upper(keccak256(signature.as_bytes()).0)),
            ),
            _ => (false, String::new()),
        };
        let settlement = SettleResponse {
            success: settled,
            error_reason: (!settled).then(|| SETTLE_ERROR.to_string()),
            payer: payer.clone(),
            transaction,
            network: self.terms.network(),
            amount: Some(self.terms.amount.clone()),
        };
        self.shared.verified.lock().unwrap().push(Verified {
            path: path.to_string(),
            header: signature.to_string(),
            payer: format!("{from:#x}"),
            nonce: authorization.nonce.clone(),
            value: authorization.value.clone(),
            settlement: settlement.clone(),
        });
        let mut response = if path == SETTLE_FAILS {
            (StatusCode::PAYMENT_REQUIRED, axum::Json(json!({}))).into_response()
        } else {
            axum::Json(json!({"ok": true, "paidBy": payer, "echo": request})).into_response()
        };
        let (name, value) = header("payment-response", &encode(&settlement));
        response.headers_mut().insert(name, value);
        response
    }

    fn mpp(&self, authorization: Option<&str>) -> Response {
        if let Some(credential) = authorization.and_then(|a| a.strip_prefix("Payment ")) {
            let decoded: Option<Value> = URL_SAFE_NO_PAD
                .decode(credential.trim())
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let id = decoded
                .as_ref()
                .and_then(|c| c["challenge"]["id"].as_str())
                .map(str::to_string);
            if id.is_some_and(|id| self.shared.mpp_ids.lock().unwrap().contains(&id)) {
                let receipt = mpp_receipt(credential);
                self.shared.receipts.lock().unwrap().push(receipt.clone());
                let mut response =
                    axum::Json(json!({"ok": true, "paidWith": "mpp"})).into_response();
                let (name, value) = header(
                    "payment-receipt",
                    &URL_SAFE_NO_PAD.encode(serde_json::to_vec(&receipt).unwrap()),
                );
                response.headers_mut().insert(name, value);
                return response;
            }
        }
        let id = format!(
            "ch_{}",
            hex::encode(peaqos_orchestrator::store::random_bytes::<8>())
        );
        self.shared.mpp_ids.lock().unwrap().push(id.clone());
        let request = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(
                &json!({"amount": self.terms.amount, "currency": self.terms.asset,
                                       "recipient": self.terms.pay_to}),
            )
            .unwrap(),
        );
        let challenge = format!(
            "Payment id=\"{id}\", realm=\"paywall.test\", method=\"tempo\", intent=\"charge\", request=\"{request}\""
        );
        self.shared
            .mpp_challenges
            .lock()
            .unwrap()
            .push(challenge.clone());
        let mut response = (
            StatusCode::PAYMENT_REQUIRED,
            axum::Json(
                json!({"type": "https://paymentauth.org/problems/payment-required",
                              "title": "Payment Required", "status": 402}),
            ),
        )
            .into_response();
        let (name, value) = header("www-authenticate", &challenge);
        response.headers_mut().insert(name, value);
        response
    }
}

/// Submits the verified authorization with `transferWithAuthorization` from a dev account (the
/// facilitator pays the gas): `(mined with status 1, transaction hash)`.
async fn settle_on_chain(
    token: &TestToken,
    authorization: &Authorization,
    header: &str,
) -> (bool, String) {
    let payload: PaymentPayload = serde_json::from_value(decode(header)).unwrap();
    let signature = hex::decode(payload.payload.signature.trim_start_matches("0x")).unwrap();
    let seconds = |s: &str| s.parse::<u64>().unwrap();
    let onchain = evm::Authorization {
        from: authorization.from.to_ascii_lowercase(),
        to: authorization.to.to_ascii_lowercase(),
        value: U256::from_str_radix(&authorization.value, 10).unwrap(),
        valid_after: seconds(&authorization.valid_after),
        valid_before: seconds(&authorization.valid_before),
        nonce: authorization.nonce.parse().unwrap(),
    };
    let (hash, ok) = token
        .transfer_with_authorization(&evm::dev_account(0).address, &onchain, &signature)
        .await;
    (ok, hash)
}

/// An MPP receipt whose base64url encoding uses `-` or `_` (so a decoder that knows only the
/// standard alphabet fails on it).
fn mpp_receipt(credential: &str) -> Value {
    let reference = format!("0x{}", hex::encode(keccak256(credential.as_bytes()).0));
    for i in 0.. {
        let receipt = json!({"status": "success", "method": "tempo",
                             "timestamp": "2026-01-01T00:00:00Z", "reference": reference,
                             "externalId": format!("order-{i}?>")});
        let encoded = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&receipt).unwrap());
        if encoded.contains(['-', '_']) {
            return receipt;
        }
    }
    unreachable!()
}

async fn answer(
    State(ctx): State<Ctx>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    ctx.shared.seen.lock().unwrap().push(Seen {
        method: method.to_string(),
        path: path.clone(),
        query: uri.query().map(str::to_string),
        headers: headers.clone(),
        body: body.clone(),
    });
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let signature = headers
        .get("payment-signature")
        .and_then(|v| v.to_str().ok());
    match path.as_str() {
        V2 | SETTLE_FAILS | SETTLE_FAILS_200 | REJECTS => match signature {
            Some(signature) => ctx.paid(&path, signature, &request).await,
            None => ctx.challenge(&path, None),
        },
        V1 => (StatusCode::PAYMENT_REQUIRED, axum::Json(ctx.v1_body(&path))).into_response(),
        MPP => ctx.mpp(headers.get("authorization").and_then(|v| v.to_str().ok())),
        HANG => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            axum::Json(json!({"late": true})).into_response()
        }
        p if p.starts_with("/plain/") => {
            let rest = p.trim_start_matches("/plain/");
            let (code, bare) = match rest.strip_suffix("/bare") {
                Some(code) => (code, true),
                None => (rest, false),
            };
            let status = StatusCode::from_u16(code.parse().unwrap()).unwrap();
            if bare {
                (status, "not json").into_response()
            } else if status.is_success() {
                (status, axum::Json(json!({"ok": true}))).into_response()
            } else {
                (status, axum::Json(json!({"error": long_error()}))).into_response()
            }
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

impl Paywall {
    pub async fn start() -> Paywall {
        Paywall::start_with(Terms::default()).await
    }

    pub async fn start_with(terms: Terms) -> Paywall {
        Paywall::serve(terms, None).await
    }

    /// A paywall that charges in `token` on its chain and settles [`V2`] payments there for
    /// real; the `PAYMENT-RESPONSE` carries the mined transaction.
    pub async fn settling_on(token: &TestToken, amount: &str) -> Paywall {
        let terms = Terms {
            chain_id: token.chain_id,
            asset: token.address.clone(),
            amount: amount.into(),
            name: token.spec.name.into(),
            version: token.spec.version.into(),
            ..Terms::default()
        };
        Paywall::serve(terms, Some(token.clone())).await
    }

    async fn serve(terms: Terms, settler: Option<TestToken>) -> Paywall {
        let shared = Arc::new(Shared::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let ctx = Ctx {
            terms: terms.clone(),
            url: url.clone(),
            shared: shared.clone(),
            settler: settler.clone(),
        };
        let router = axum::Router::new().fallback(answer).with_state(ctx);
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Paywall {
            url,
            terms,
            shared,
            settler,
        }
    }

    fn ctx(&self) -> Ctx {
        Ctx {
            terms: self.terms.clone(),
            url: self.url.clone(),
            shared: self.shared.clone(),
            settler: self.settler.clone(),
        }
    }

    /// The `PAYMENT-REQUIRED` value the paywall sends for `path` (it is the same every time).
    pub fn payment_required(&self, path: &str) -> String {
        self.ctx().payment_required(path, None)
    }

    /// The x402 v1 body of [`V1`].
    pub fn v1_body(&self) -> Value {
        self.ctx().v1_body(V1)
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// The last request.
    pub fn last(&self) -> Seen {
        self.seen().pop().expect("the paywall was called")
    }

    pub fn count(&self) -> usize {
        self.shared.seen.lock().unwrap().len()
    }

    /// Every payment accepted so far.
    pub fn verified(&self) -> Vec<Verified> {
        self.shared.verified.lock().unwrap().clone()
    }

    /// Why each refused payment was refused.
    pub fn refused(&self) -> Vec<String> {
        self.shared.refused.lock().unwrap().clone()
    }

    /// The `WWW-Authenticate` values of the MPP challenges sent so far.
    pub fn mpp_challenges(&self) -> Vec<String> {
        self.shared.mpp_challenges.lock().unwrap().clone()
    }

    /// The MPP receipts sent so far.
    pub fn receipts(&self) -> Vec<Value> {
        self.shared.receipts.lock().unwrap().clone()
    }
}

/// An MPP `Authorization` value answering the challenge in `www_authenticate`, with a payload
/// that carries `secret`.
pub fn mpp_credential(www_authenticate: &str, secret: &str) -> String {
    let id = www_authenticate
        .split("id=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("an MPP challenge id");
    let credential = json!({"challenge": {"id": id, "realm": "paywall.test", "method": "tempo",
                                          "intent": "charge"},
                            "payload": {"type": "transaction", "signature": secret}});
    format!(
        "Payment {}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&credential).unwrap())
    )
}

// ---------------------------------------------------------------------------------------------
// The payer

/// An x402 `exact` EVM payer: what `peaq_os_sdk.orchestration.x402.sign_x402_payment` does, with
/// every step open so a test can break one.
pub struct Payer {
    key: SigningKey,
}

/// A payment about to be signed: `accepts[0]` of the challenge, its resource, and the
/// authorization the SDK would sign. Change any field, then [`Payer::sign`].
#[derive(Debug, Clone)]
pub struct Draft {
    pub accepted: Requirements,
    pub resource: Option<Resource>,
    pub authorization: Authorization,
}

/// A signed payment.
#[derive(Debug, Clone)]
pub struct Signed {
    /// The `PAYMENT-SIGNATURE` value.
    pub header: String,
    pub payload: PaymentPayload,
    /// `x402:<network>:<first 24 hex of sha256(header)>`, as the SDK names it.
    pub reference: String,
}

impl Signed {
    /// The Variant B proof body the SDK's CLI sends.
    pub fn proof(&self) -> Value {
        json!({"payment": {"paymentSignature": self.header},
               "paymentReference": self.reference,
               "metadata": {"headerName": "PAYMENT-SIGNATURE",
                            "network": self.payload.accepted.network,
                            "asset": self.payload.accepted.asset,
                            "amount": self.payload.accepted.amount}})
    }

    /// The same payload serialised again with `f`, as another header value.
    pub fn reencoded(&self, f: impl Fn(&PaymentPayload) -> String) -> Signed {
        let header = STANDARD.encode(f(&self.payload));
        Signed {
            reference: reference(&self.payload.accepted.network, &header),
            header,
            payload: self.payload.clone(),
        }
    }
}

fn reference(network: &str, header: &str) -> String {
    let digest = hex::encode(Sha256::digest(header.as_bytes()));
    format!("x402:{network}:{}", &digest[..24])
}

impl Payer {
    pub fn random() -> Payer {
        Payer {
            key: SigningKey::generate(),
        }
    }

    /// A key from `0x` + 64 hex digits.
    pub fn from_hex(hex_key: &str) -> Payer {
        let bytes = hex::decode(hex_key.trim_start_matches("0x")).unwrap();
        Payer {
            key: SigningKey::from_slice(&bytes).unwrap(),
        }
    }

    /// EIP-55 checksummed, as the SDK puts it in `authorization.from`.
    pub fn address(&self) -> String {
        address_of(self.key.verifying_key()).to_checksum(None)
    }

    /// The SDK's authorization for `accepts[0]` of a `PAYMENT-REQUIRED` value: `from` = this
    /// payer, `to` = `payTo`, `value` = `amount`, `validAfter` 0, `validBefore` now +
    /// `maxTimeoutSeconds`, a random nonce.
    pub fn draft(&self, payment_required: &str) -> Draft {
        let challenge: PaymentRequired =
            serde_json::from_value(decode(payment_required)).expect("a v2 PaymentRequired");
        assert_eq!(challenge.x402_version, 2, "the SDK signs x402 v2 only");
        let accepted = challenge.accepts.into_iter().next().expect("accepts[0]");
        let timeout = match accepted.max_timeout_seconds {
            0 => 3600,
            t => t,
        };
        Draft {
            authorization: Authorization {
                from: self.address(),
                to: accepted.pay_to.clone(),
                value: accepted.amount.clone(),
                valid_after: "0".into(),
                valid_before: (now_s() + timeout).to_string(),
                nonce: format!(
                    "0x{}",
                    hex::encode(peaqos_orchestrator::store::random_bytes::<32>())
                ),
            },
            accepted,
            resource: challenge.resource,
        }
    }

    /// Signs `draft.authorization` under the domain `draft.accepted` names (`extra.name`,
    /// `extra.version`, the chain of `network`, `asset`), whoever `from` says it is.
    pub fn sign(&self, draft: &Draft) -> Signed {
        let accepted = &draft.accepted;
        let chain_id: u64 = accepted
            .network
            .strip_prefix("eip155:")
            .and_then(|n| n.parse().ok())
            .expect("an eip155 network");
        let auth = &draft.authorization;
        let uint = |s: &str| U256::from_str_radix(s, 10).unwrap();
        let message = TransferWithAuthorization {
            from: address(&auth.from),
            to: address(&auth.to),
            value: uint(&auth.value),
            validAfter: uint(&auth.valid_after),
            validBefore: uint(&auth.valid_before),
            nonce: auth.nonce.parse().unwrap(),
        };
        let digest = message.eip712_signing_hash(&domain(
            accepted.extra["name"].as_str().unwrap(),
            accepted.extra["version"].as_str().unwrap(),
            chain_id,
            address(&accepted.asset),
        ));
        let (signature, recovery) = self.key.sign_prehash_recoverable(&digest.0);
        assert!(!recovery.is_x_reduced(), "unrepresentable recovery id");
        let mut raw = signature.to_bytes().to_vec();
        raw.push(27 + u8::from(recovery.is_y_odd()));
        let payload = PaymentPayload {
            x402_version: 2,
            payload: ExactPayload {
                authorization: auth.clone(),
                signature: format!("0x{}", hex::encode(raw)),
            },
            accepted: accepted.clone(),
            resource: draft.resource.clone(),
        };
        let header = encode(&payload);
        Signed {
            reference: reference(&accepted.network, &header),
            header,
            payload,
        }
    }

    /// Signs `accepts[0]` of a `PAYMENT-REQUIRED` value as the SDK does.
    pub fn pay(&self, payment_required: &str) -> Signed {
        self.sign(&self.draft(payment_required))
    }
}
