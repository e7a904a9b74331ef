//! The EVM JSON-RPC calls payment verification makes (spec orders-and-payments.md §8):
//! `eth_getTransactionReceipt` and `eth_blockNumber`, JSON-RPC 2.0 over HTTP POST on the
//! operator's RPC URL, each within its own timeout. Every failure of the node — transport,
//! timeout, HTTP status, a JSON-RPC `error`, a result of the wrong shape — is one
//! [`RpcError`], which becomes `502 PAYMENT_RPC_ERROR` and never changes a payment.

use std::time::Duration;

use reqwest::{Method, Url};
use serde::Deserialize;
use serde_json::{Value, json};

use super::outbound::Guarded;
use crate::error::{ApiError, ErrorCode};

/// The timeout of one call (spec §8, Open: 10 s).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest answer read from the node (a receipt with many logs stays far below).
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// Why a call gave no usable answer. The text is for logs only.
#[derive(Debug, thiserror::Error)]
#[error("the payment RPC failed: {0}")]
pub struct RpcError(String);

impl RpcError {
    pub fn new(cause: impl Into<String>) -> RpcError {
        RpcError(cause.into())
    }
}

impl From<RpcError> for ApiError {
    fn from(err: RpcError) -> Self {
        tracing::warn!(cause = %err.0, "payment RPC call failed");
        ApiError::new(
            ErrorCode::PAYMENT_RPC_ERROR,
            "The payment RPC did not answer usably; the payment is unchanged, retry later",
        )
    }
}

/// One log of a receipt.
#[derive(Debug, Clone, Deserialize)]
pub struct Log {
    pub address: String,
    #[serde(default)]
    pub topics: Vec<String>,
    #[serde(default)]
    pub data: String,
}

/// The receipt fields verification reads.
#[derive(Debug, Clone)]
pub struct Receipt {
    /// `0x1` on success.
    pub status: Option<String>,
    pub block_number: u64,
    pub logs: Vec<Log>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireReceipt {
    status: Option<String>,
    block_number: String,
    #[serde(default)]
    logs: Vec<Log>,
}

/// A client of one node.
#[derive(Debug, Clone)]
pub struct EvmRpc {
    http: Guarded,
    url: Url,
    timeout: Duration,
}

/// A hex quantity (`0x1a`) as a number.
fn quantity(text: &str) -> Result<u64, RpcError> {
    let digits = text
        .strip_prefix("0x")
        .ok_or_else(|| RpcError(format!("quantity without 0x: {text:.40}")))?;
    u64::from_str_radix(digits, 16).map_err(|_| RpcError(format!("bad quantity {text:.40}")))
}

impl EvmRpc {
    pub fn new(http: Guarded, url: Url) -> EvmRpc {
        EvmRpc {
            http,
            url,
            timeout: CALL_TIMEOUT,
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> EvmRpc {
        self.timeout = timeout;
        self
    }

    async fn call(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let request = self
            .http
            .request(Method::POST, self.url.clone())
            .map_err(|e| RpcError(format!("{method}: {e}")))?
            .timeout(self.timeout)
            .json(&body);
        let mut response = request
            .send()
            .await
            .map_err(|e| RpcError(format!("{method}: {}", without_url(e))))?;
        if !response.status().is_success() {
            return Err(RpcError(format!("{method}: HTTP {}", response.status())));
        }
        let mut answer = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| RpcError(format!("{method}: {}", without_url(e))))?
        {
            if answer.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(RpcError(format!("{method}: answer too large")));
            }
            answer.extend_from_slice(&chunk);
        }
        let mut answer: Value = serde_json::from_slice(&answer)
            .map_err(|_| RpcError(format!("{method}: the answer is not JSON")))?;
        if let Some(error) = answer.get("error").filter(|e| !e.is_null()) {
            let message = error.get("message").and_then(Value::as_str).unwrap_or("");
            return Err(RpcError(format!("{method}: JSON-RPC error {message:.200}")));
        }
        match answer.get_mut("result") {
            Some(result) => Ok(result.take()),
            None => Err(RpcError(format!("{method}: no result"))),
        }
    }

    /// The receipt of `hash`, or `None` while the transaction is not mined.
    pub async fn transaction_receipt(&self, hash: &str) -> Result<Option<Receipt>, RpcError> {
        let result = self
            .call("eth_getTransactionReceipt", json!([hash]))
            .await?;
        if result.is_null() {
            return Ok(None);
        }
        let wire: WireReceipt = serde_json::from_value(result)
            .map_err(|e| RpcError(format!("malformed receipt: {e}")))?;
        Ok(Some(Receipt {
            status: wire.status,
            block_number: quantity(&wire.block_number)?,
            logs: wire.logs,
        }))
    }

    /// The number of the latest block.
    pub async fn block_number(&self) -> Result<u64, RpcError> {
        let result = self.call("eth_blockNumber", json!([])).await?;
        quantity(
            result
                .as_str()
                .ok_or_else(|| RpcError("eth_blockNumber: not a string".into()))?,
        )
    }
}

/// A reqwest error's text without its URL (an RPC URL may carry an API key).
fn without_url(err: reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timeout"
    } else if err.is_connect() {
        "connection failed"
    } else if err.is_body() || err.is_decode() {
        "answer unreadable"
    } else {
        "request failed"
    };
    match super::outbound::ResolveError::of(&err) {
        Some(refusal) => format!("{kind}: {refusal}"),
        None => kind.to_string(),
    }
}
