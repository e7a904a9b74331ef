//! Market orders. Only the open-orders rule exists so far: machines and pairings with
//! non-terminal orders cannot be archived or revoked (spec identity-and-machines.md §7.5,
//! pairings-and-auth.md §8.6).

mod store;

use crate::App;
use crate::error::{ApiError, ApiResult, ErrorCode};

pub use store::OrdersOf;

/// `409 OPEN_MARKET_ORDERS` when `of` still has orders in a non-terminal state.
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
