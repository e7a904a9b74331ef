use crate::store::Store;

#[derive(Debug, Clone, Copy)]
pub enum OrdersOf<'a> {
    Machine(&'a str),
    Pairing(&'a str),
}

/// Orders of `of` in `created`, `payment_pending`, `ready`, `executing`, `delivered` or
/// `disputed`. No order can exist before the orders feature adds its table, so none is open;
/// that feature replaces this with its count query.
pub async fn count_open(_store: &Store, _of: OrdersOf<'_>) -> Result<i64, sqlx::Error> {
    Ok(0)
}
