//! Request-scoped payments, x402 and MPP (spec orders-and-payments.md §9): the provider's
//! challenge captured at payment-intent, the payment headers a proof carries (checked, never
//! stored — for an x402 v2 `exact` payment on an EVM network the EIP-3009 authorization is
//! verified against the challenge), and the settlement a provider reports at execute.

use alloy_primitives::{Address, B256, U256};
use base64::Engine;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use serde_json::{Map, Value, json};

use super::model::PaymentProof;
use crate::clients::provider::ProviderResponse;
use crate::crypto::eip191::recover_prehash;
use crate::crypto::eip712::{
    TokenDomain, TransferWithAuthorization, transfer_with_authorization_hash,
};
use crate::engine::PaymentHeaders;
use crate::error::{ApiError, ApiResult};

/// Standard base64, padded or not (what a header carries is forwarded as received).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Base64url, padded or not: how MPP encodes its `Payment-Receipt`.
const BASE64_URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Longest `bodyError` kept from a provider answer that is not a challenge.
const BODY_ERROR_CHARS: usize = 500;

/// Longest payment header value accepted.
const MAX_HEADER_CHARS: usize = 16 * 1024;

// ---------------------------------------------------------------------------------------------
// Challenge capture (§9.2)

/// What a provider's answer to an unpaid request says about paying (§9.2): an x402 v2
/// challenge (`PAYMENT-REQUIRED` header, kept byte for byte), an x402 v1 challenge (a JSON body
/// with `accepts`), an MPP challenge (`WWW-Authenticate: Payment …`), or neither. The result is
/// `{"paymentRequest": …}` or `{"mpp": …}`, ready for `rail.metadata`.
pub fn capture_challenge(
    response: &ProviderResponse,
    payment_url: Option<&str>,
) -> Map<String, Value> {
    let url = payment_url.map(str::to_string);
    let mut metadata = Map::new();
    if response.status == 402 {
        if let Some(header) = response.header("payment-required") {
            let accepts = decode_json(header.trim())
                .and_then(|d| d.get("accepts").cloned())
                .unwrap_or(json!([]));
            metadata.insert(
                "paymentRequest".into(),
                json!({"paymentRequired": header, "accepts": accepts, "x402Version": 2,
                       "statusCode": 402, "paymentUrl": url}),
            );
            return metadata;
        }
        let body: Option<Value> = serde_json::from_slice(&response.body).ok();
        if let Some(accepts) = body.as_ref().and_then(|b| b.get("accepts")) {
            metadata.insert(
                "paymentRequest".into(),
                json!({"paymentRequired": STANDARD.encode(&response.body), "accepts": accepts,
                       "x402Version": 1, "statusCode": 402, "paymentUrl": url}),
            );
            return metadata;
        }
        if let Some(authenticate) = response
            .header("www-authenticate")
            .filter(|v| v.trim_start().to_ascii_lowercase().starts_with("payment"))
        {
            metadata.insert(
                "mpp".into(),
                json!({"wwwAuthenticate": authenticate, "statusCode": 402, "paymentUrl": url}),
            );
            return metadata;
        }
    }
    metadata.insert(
        "paymentRequest".into(),
        json!({"statusCode": response.status, "bodyError": body_error(response),
               "paymentUrl": url}),
    );
    metadata
}

/// The provider's `error`/`message` text (at most 500 characters), else `"HTTP <code>"`.
fn body_error(response: &ProviderResponse) -> String {
    let body: Option<Value> = serde_json::from_slice(&response.body).ok();
    let text = body.as_ref().and_then(|b| {
        ["error", "message"]
            .iter()
            .find_map(|key| match b.get(*key) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Object(o)) => {
                    o.get("message").and_then(Value::as_str).map(str::to_string)
                }
                _ => None,
            })
    });
    match text {
        Some(text) => text.chars().take(BODY_ERROR_CHARS).collect(),
        None => format!("HTTP {}", response.status),
    }
}

/// The challenge of a provider `402`, as execute answers it in `details.challenge`.
pub fn challenge_of(response: &ProviderResponse, payment_url: Option<&str>) -> Value {
    let captured = capture_challenge(response, payment_url);
    captured
        .get("paymentRequest")
        .or_else(|| captured.get("mpp"))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Base64 of a JSON value, decoded.
fn decode_json(text: &str) -> Option<Value> {
    BASE64
        .decode(text.trim())
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
}

// ---------------------------------------------------------------------------------------------
// Proof headers (§7.4 Variant B)

/// A checked Variant B proof. The header values stay in memory only for the checks.
#[derive(Debug)]
pub struct RequestScoped {
    /// The header that will be forwarded (`PAYMENT-SIGNATURE`, `X-PAYMENT`, …).
    pub header_name: &'static str,
    /// The decoded `PAYMENT-SIGNATURE` / `X-PAYMENT` value.
    decoded: Option<Value>,
    /// SHA-256 of the forwarded value: the payment's key when no authorization identifies it.
    fingerprint: String,
    pub reference: Option<String>,
    pub metadata: Map<String, Value>,
}

/// What the checks learnt from the headers.
#[derive(Debug)]
pub struct Accepted {
    pub payer: Option<String>,
    pub network: Option<String>,
    /// One payment per authorization (or per header value) in the deployment.
    pub key: String,
}

fn header_invalid(field: &str, message: &str) -> ApiError {
    ApiError::validation(field, "base64 of a JSON object", message)
        .with_reason("invalid-payment-header")
}

/// Checks the `payment` headers of a proof (§7.4 Variant B steps 2).
pub fn request_scoped(
    headers: PaymentHeaders,
    reference: Option<String>,
    metadata: Map<String, Value>,
) -> ApiResult<RequestScoped> {
    let present = headers.headers();
    let Some((name, value)) = present.first().copied() else {
        return Err(ApiError::validation(
            "payment",
            "at least one non-blank header",
            "payment must carry paymentSignature, xPayment, authorization or signInWithX",
        ));
    };
    let fields = [
        ("payment-signature", "payment.paymentSignature"),
        ("x-payment", "payment.xPayment"),
        ("authorization", "payment.authorization"),
        ("sign-in-with-x", "payment.signInWithX"),
    ];
    let field_of = |header: &str| {
        fields
            .iter()
            .find(|(h, _)| *h == header)
            .map_or("payment", |(_, f)| *f)
    };
    let mut decoded = None;
    for (header, value) in &present {
        let field = field_of(header);
        if value.chars().count() > MAX_HEADER_CHARS
            || !value.bytes().all(|b| (0x20..0x7f).contains(&b))
        {
            return Err(ApiError::validation(
                field,
                &format!("visible ASCII, at most {MAX_HEADER_CHARS} characters"),
                format!("{field} is not a header value that can be forwarded"),
            ));
        }
        if matches!(*header, "payment-signature" | "x-payment") {
            match decode_json(value) {
                Some(v @ Value::Object(_)) => {
                    decoded.get_or_insert(v);
                }
                _ => {
                    return Err(header_invalid(
                        field,
                        &format!("{field} must be base64 of a JSON object"),
                    ));
                }
            }
        }
    }
    let header_name = match name {
        "payment-signature" => "PAYMENT-SIGNATURE",
        "x-payment" => "X-PAYMENT",
        "authorization" => "Authorization",
        _ => "SIGN-IN-WITH-X",
    };
    Ok(RequestScoped {
        header_name,
        decoded,
        fingerprint: crate::crypto::sha256_hex(value.as_bytes()),
        reference,
        metadata,
    })
}

fn signature_invalid(rule: &str, message: impl Into<String>) -> ApiError {
    ApiError::validation(
        "payment.paymentSignature",
        "an x402 payment that matches the challenge",
        message,
    )
    .with_reason("payment-signature-invalid")
    .with("rule", rule)
}

fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// A uint256 given as a decimal string (or a JSON integer).
fn uint(value: Option<&Value>) -> Option<U256> {
    match value? {
        Value::String(s) => crate::money::parse_base_units(s),
        Value::Number(n) => n.as_u64().map(U256::from),
        _ => None,
    }
}

fn evm(value: Option<&str>) -> Option<Address> {
    let value = value?;
    crate::identity::refs::evm_address(value)?.parse().ok()
}

fn chain_id(network: &str) -> Option<u64> {
    network.strip_prefix("eip155:")?.parse().ok()
}

impl RequestScoped {
    /// The checks of §7.4 Variant B step 2a: for an x402 v2 `exact` payment on an `eip155:*`
    /// network, the EIP-3009 authorization is signed by its `from`, pays the captured
    /// challenge exactly and is valid at `now_s`. Other payments are recorded as they are.
    pub fn check(&self, challenge: Option<&Value>, now_s: u64) -> ApiResult<Accepted> {
        let fallback = Accepted {
            payer: None,
            network: self
                .decoded
                .as_ref()
                .and_then(|d| {
                    d.get("accepted")
                        .and_then(|a| text(a, "network"))
                        .or_else(|| text(d, "network"))
                })
                .map(str::to_string),
            key: format!("header:{}", self.fingerprint),
        };
        let Some(decoded) = self.decoded.as_ref() else {
            return Ok(fallback);
        };
        let accepted = decoded.get("accepted").unwrap_or(&Value::Null);
        let network = text(accepted, "network").unwrap_or_default();
        let is_v2_exact_evm = decoded.get("x402Version").and_then(Value::as_u64) == Some(2)
            && text(accepted, "scheme") == Some("exact")
            && network.starts_with("eip155:");
        let payload = decoded.get("payload").unwrap_or(&Value::Null);
        let authorization = payload.get("authorization");
        if !is_v2_exact_evm
            || (authorization.is_none() && payload.get("permit2Authorization").is_some())
        {
            return Ok(fallback);
        }
        let authorization = authorization.unwrap_or(&Value::Null);

        // The signed message.
        let field = |key: &str| authorization.get(key);
        let (Some(from), Some(to), Some(value), Some(valid_after), Some(valid_before), Some(nonce)) = (
            evm(field("from").and_then(Value::as_str)),
            evm(field("to").and_then(Value::as_str)),
            uint(field("value")),
            uint(field("validAfter")),
            uint(field("validBefore")),
            field("nonce")
                .and_then(Value::as_str)
                .and_then(|n| n.parse::<B256>().ok()),
        ) else {
            return Err(signature_invalid(
                "authorization",
                "payload.authorization must carry from, to, value, validAfter, validBefore and nonce",
            ));
        };
        let extra = accepted.get("extra").unwrap_or(&Value::Null);
        let (Some(name), Some(version), Some(chain), Some(asset)) = (
            text(extra, "name"),
            text(extra, "version"),
            chain_id(network),
            evm(text(accepted, "asset")),
        ) else {
            return Err(signature_invalid(
                "domain",
                "accepted must name the token's EIP-712 domain (extra.name, extra.version), an eip155 network and the asset",
            ));
        };
        let message = TransferWithAuthorization {
            from,
            to,
            value,
            validAfter: valid_after,
            validBefore: valid_before,
            nonce,
        };
        let digest = transfer_with_authorization_hash(
            &TokenDomain {
                name,
                version,
                chain_id: chain,
                verifying_contract: asset,
            },
            &message,
        );
        let signer = text(payload, "signature")
            .and_then(|s| recover_prehash(&digest, s).ok())
            .and_then(|s| s.parse::<Address>().ok());
        if signer != Some(from) {
            return Err(signature_invalid(
                "signature",
                "The EIP-3009 signature is not authorization.from's",
            ));
        }

        // What it pays, against the captured challenge (else what it says it accepted).
        let pay_to = evm(text(accepted, "payTo"));
        let offered = challenge
            .and_then(|c| c.get("accepts"))
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty());
        let amount = match offered {
            Some(entries) => {
                let entry = entries.iter().find(|e| {
                    text(e, "network") == Some(network)
                        && evm(text(e, "asset")) == Some(asset)
                        && evm(text(e, "payTo")).is_some_and(|p| Some(p) == pay_to)
                });
                let Some(entry) = entry else {
                    return Err(signature_invalid(
                        "challenge",
                        "accepted.network, asset and payTo are not those the provider asked for",
                    ));
                };
                uint(
                    entry
                        .get("amount")
                        .or_else(|| entry.get("maxAmountRequired")),
                )
            }
            None => uint(accepted.get("amount")),
        };
        if pay_to != Some(to) {
            return Err(signature_invalid(
                "to",
                "authorization.to is not the payee (payTo)",
            ));
        }
        if amount != Some(value) {
            return Err(signature_invalid(
                "value",
                "authorization.value is not the amount the provider asked for",
            ));
        }
        let now = U256::from(now_s);
        if valid_after > now {
            return Err(signature_invalid(
                "validAfter",
                "The authorization is not valid yet",
            ));
        }
        if now >= valid_before {
            return Err(signature_invalid(
                "validBefore",
                "The authorization has expired",
            ));
        }
        Ok(Accepted {
            payer: Some(format!("{from:#x}")),
            network: Some(network.to_string()),
            key: format!("eip3009:{chain}:{asset:#x}:{from:#x}:{nonce:#x}"),
        })
    }

    /// The stored proof: the header's name and non-secret facts, never its value.
    pub fn record(&self, accepted: &Accepted, token: Option<&str>, now_ms: i64) -> PaymentProof {
        let mut metadata = self.metadata.clone();
        metadata.insert("headerName".into(), json!(self.header_name));
        if let Some(network) = accepted
            .network
            .clone()
            .or_else(|| text(&Value::Object(self.metadata.clone()), "network").map(str::to_string))
        {
            metadata.insert("network".into(), json!(network));
        }
        PaymentProof {
            verification_mode: "recorded".into(),
            chain: accepted.network.clone(),
            token: token.map(str::to_string),
            transaction_hash: None,
            transaction_signature: None,
            payer_address: accepted.payer.clone(),
            payee_address: None,
            amount: None,
            raw_amount: None,
            token_address: None,
            token_mint: None,
            block_number: None,
            payment_reference: self.reference.clone(),
            verified_at: crate::clock::format_ms(now_ms),
            metadata,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Settlement (§9.5)

/// What a provider reported about settling a request-scoped payment.
#[derive(Debug, Clone)]
pub struct Settlement {
    pub settled: bool,
    pub response: Value,
    pub payer: Option<String>,
    pub transaction: Option<String>,
    pub network: Option<String>,
}

/// The settlement in a provider answer: `PAYMENT-RESPONSE` / `X-PAYMENT-RESPONSE` (x402
/// `SettleResponse`, base64 JSON) or MPP's `Payment-Receipt`.
pub fn settlement(response: &ProviderResponse) -> Option<Settlement> {
    if let Some(header) = response
        .header("payment-response")
        .or_else(|| response.header("x-payment-response"))
    {
        let decoded = decode_json(header).filter(Value::is_object);
        let Some(decoded) = decoded else {
            return Some(Settlement {
                settled: false,
                response: Value::Null,
                payer: None,
                transaction: None,
                network: None,
            });
        };
        return Some(Settlement {
            settled: decoded.get("success").and_then(Value::as_bool) == Some(true),
            payer: text(&decoded, "payer").map(str::to_string),
            // A failed settlement names no transaction (`""`).
            transaction: text(&decoded, "transaction")
                .filter(|t| !t.is_empty())
                .map(|t| {
                    if t.starts_with("0x") {
                        t.to_ascii_lowercase()
                    } else {
                        t.to_string()
                    }
                }),
            network: text(&decoded, "network").map(str::to_string),
            response: decoded,
        });
    }
    let receipt = response.header("payment-receipt")?;
    let decoded = decode_json(receipt)
        .or_else(|| {
            BASE64_URL
                .decode(receipt.trim())
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        })
        .unwrap_or_else(|| json!(receipt));
    let settled = decoded.get("success").and_then(Value::as_bool) == Some(true)
        || text(&decoded, "status") == Some("success");
    Some(Settlement {
        settled,
        payer: None,
        transaction: text(&decoded, "reference").map(str::to_string),
        network: None,
        response: decoded,
    })
}

impl Settlement {
    /// `settled` or `failed`.
    pub fn status(&self) -> &'static str {
        if self.settled { "settled" } else { "failed" }
    }

    /// Writes the settlement into the payment's proof (§9.5).
    pub fn apply(&self, proof: &mut PaymentProof) {
        proof.metadata.insert(
            "paymentSettlement".into(),
            json!({"status": self.status(), "response": self.response,
                   "payerAddress": self.payer}),
        );
        if let Some(transaction) = &self.transaction {
            proof.transaction_hash = Some(transaction.clone());
        }
        if let Some(payer) = &self.payer {
            proof.payer_address = Some(payer.clone());
        }
        if let Some(network) = &self.network {
            proof.metadata.insert("network".into(), json!(network));
        }
    }
}
