//! RPC verification of an EVM transfer proof (spec orders-and-payments.md §8): the receipt is
//! mined and successful, one of its logs is the ERC-20 `Transfer` of exactly the expected
//! amount from the payer to the payee on the token contract, and — when configured — it has
//! enough confirmations. A failing node never changes a payment.

use alloy_primitives::{Address, B256, U256};

use super::service::TransferProof;
use crate::App;
use crate::clients::evm_rpc::{EvmRpc, Log, RpcError};
use crate::error::{ApiError, ApiResult, ErrorCode};

/// `keccak256("Transfer(address,address,uint256)")`.
const TRANSFER_TOPIC: B256 =
    alloy_primitives::b256!("ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef");

/// What a verified transfer adds to the proof.
#[derive(Debug, Clone, Copy)]
pub struct Verified {
    pub block_number: u64,
}

fn evm(field: &str, text: &str) -> ApiResult<Address> {
    crate::identity::refs::evm_address(text)
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| {
            ApiError::validation(
                field,
                "an EVM address",
                format!("{field} must be an EVM address for RPC verification"),
            )
        })
}

/// A 20-byte address left-padded to a 32-byte topic.
fn topic_of(address: Address) -> B256 {
    address.into_word()
}

fn matches(log: &Log, token: Address, payer: B256, payee: B256, amount: U256) -> bool {
    let topic = |i: usize| log.topics.get(i).and_then(|t| t.parse::<B256>().ok());
    let data = log
        .data
        .strip_prefix("0x")
        .filter(|d| d.len() == 64)
        .and_then(|d| U256::from_str_radix(d, 16).ok());
    log.address.parse::<Address>().ok() == Some(token)
        && topic(0) == Some(TRANSFER_TOPIC)
        && topic(1) == Some(payer)
        && topic(2) == Some(payee)
        && data == Some(amount)
}

/// Verifies `proof` (an EVM transaction) against the chain, for `amount` base units of the
/// token at `token_address`.
pub async fn verify(
    app: &App,
    proof: &TransferProof,
    transaction_hash: &str,
    token_address: &str,
    amount: U256,
) -> ApiResult<Verified> {
    let token = evm("tokenAddress", token_address)?;
    let payer = topic_of(evm("payerAddress", proof.payer.text())?);
    let payee = topic_of(evm("payeeAddress", proof.payee.text())?);
    let Some(url) = app.config.payment_rpc_urls.first() else {
        return Err(ApiError::new(
            ErrorCode::PAYMENT_RPC_REQUIRED,
            "RPC verification needs PEAQOS_PAYMENT_RPC_URL (or PEAQ_EVM_RPC_URL)",
        ));
    };
    let url = url
        .parse()
        .map_err(|e| ApiError::internal("parsing the payment RPC URL", e))?;
    let rpc = EvmRpc::new(app.outbound.trusted().clone(), url);

    let receipt = rpc
        .transaction_receipt(transaction_hash)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::PAYMENT_NOT_MINED,
                "The transaction is not mined yet; submit the proof again later",
            )
            .with_reason("no-receipt")
        })?;
    match receipt.status.as_deref() {
        Some("0x1") => {}
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::PAYMENT_TX_FAILED,
                "The transaction failed on chain",
            )
            .with("blockNumber", receipt.block_number));
        }
        None => return Err(RpcError::new("the receipt has no status").into()),
    }
    if !receipt
        .logs
        .iter()
        .any(|log| matches(log, token, payer, payee, amount))
    {
        return Err(ApiError::new(
            ErrorCode::PAYMENT_TRANSFER_NOT_FOUND,
            "The transaction has no Transfer of that amount from the payer to the payee on the token",
        )
        .with("tokenAddress", format!("{token:#x}"))
        .with("rawAmount", amount.to_string()));
    }
    let required = app.config.payment_min_confirmations;
    if required > 0 {
        let head = rpc.block_number().await?;
        let confirmations = (head + 1).saturating_sub(receipt.block_number);
        if confirmations < required {
            return Err(ApiError::new(
                ErrorCode::PAYMENT_NOT_MINED,
                format!("The transaction has {confirmations} of {required} confirmations"),
            )
            .with("confirmations", confirmations)
            .with("required", required));
        }
    }
    Ok(Verified {
        block_number: receipt.block_number,
    })
}

/// The token contract verification reads: the proof's, the rail's, else `PEAQOS_USDT_CONTRACT`.
pub fn token_contract<'a>(
    proof: Option<&'a str>,
    rail: Option<&'a str>,
    configured: Option<&'a str>,
) -> ApiResult<&'a str> {
    proof.or(rail).or(configured).ok_or_else(|| {
        ApiError::validation(
            "tokenAddress",
            "required for rpc verification",
            "RPC verification needs the token contract: send tokenAddress or set PEAQOS_USDT_CONTRACT",
        )
    })
}
