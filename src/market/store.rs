//! Searches and quotes (`market_searches`, `market_quotes`).

use super::model::{MarketQuote, MarketSearch, NormalizedTask, SearchStatus};
use crate::clock::format_ms;
use crate::store::{Columns, SqlBuilder, Store, Tx};

const SEARCH_COLUMNS: &str =
    "id, machine_id, agent_pairing_id, request_payload, normalized_task, status, created_at";

fn search_at(cols: &mut Columns<'_>) -> Result<MarketSearch, sqlx::Error> {
    let id = cols.take()?;
    let machine_id = cols.take()?;
    let agent_pairing_id = cols.take()?;
    let request_payload = cols.take_json()?;
    let normalized_task: NormalizedTask = cols.take_json()?;
    let status: &str = cols.take()?;
    let status = SearchStatus::parse(status)
        .ok_or_else(|| sqlx::Error::Decode(format!("unknown search status {status:?}").into()))?;
    let created_at: i64 = cols.take()?;
    Ok(MarketSearch {
        id,
        machine_id,
        agent_pairing_id,
        request_payload,
        normalized_task,
        status,
        quotes: Vec::new(),
        created_at: format_ms(created_at),
        created_at_ms: created_at,
    })
}

fn quote_from(body: &str, expires_at: i64) -> Result<MarketQuote, sqlx::Error> {
    let mut quote: MarketQuote =
        serde_json::from_str(body).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    quote.expires_at_ms = expires_at;
    Ok(quote)
}

/// Inserts the search and all its quotes: two statements, whatever the number of quotes.
pub async fn insert(tx: &mut Tx, search: &MarketSearch) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO market_searches ({SEARCH_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    )))
    .bind(search.id.clone())
    .bind(search.machine_id.clone())
    .bind(search.agent_pairing_id.clone())
    .bind(search.request_payload.to_string())
    .bind(serde_json::to_string(&search.normalized_task).expect("a normalised task serialises"))
    .bind(search.status.as_str())
    .bind(search.created_at_ms)
    .execute(&mut **tx)
    .await?;
    if search.quotes.is_empty() {
        return Ok(());
    }
    let mut sql = SqlBuilder::new(
        "INSERT INTO market_quotes (id, search_id, position, service_id, expires_at, body, created_at) VALUES ",
    );
    for (position, quote) in search.quotes.iter().enumerate() {
        if position > 0 {
            sql.push(", ");
        }
        sql.push("(")
            .bind(quote.id.clone())
            .push(", ")
            .bind(search.id.clone())
            .push(", ")
            .bind(position as i64)
            .push(", ")
            .bind(quote.service_id.clone())
            .push(", ")
            .bind(quote.expires_at_ms)
            .push(", ")
            .bind(serde_json::to_string(quote).expect("a quote serialises"))
            .push(", ")
            .bind(search.created_at_ms)
            .push(")");
    }
    sql.build().execute(&mut **tx).await?;
    Ok(())
}

/// The search with its quotes, in rank order.
pub async fn get(store: &Store, id: &str) -> Result<Option<MarketSearch>, sqlx::Error> {
    let Some(row) = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {SEARCH_COLUMNS} FROM market_searches WHERE id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(store)
    .await?
    else {
        return Ok(None);
    };
    let mut search = search_at(&mut Columns::new(&row))?;
    let quotes = sqlx::query(
        "SELECT body, expires_at FROM market_quotes WHERE search_id = $1 ORDER BY position",
    )
    .bind(id.to_string())
    .fetch_all(store)
    .await?;
    for row in &quotes {
        let mut cols = Columns::new(row);
        let body: &str = cols.take()?;
        search.quotes.push(quote_from(body, cols.take()?)?);
    }
    Ok(Some(search))
}

/// A quote with the machine and pairing of its search.
#[derive(Debug, Clone)]
pub struct QuoteRecord {
    pub quote: MarketQuote,
    pub machine_id: String,
    pub agent_pairing_id: Option<String>,
}

pub async fn get_quote(store: &Store, id: &str) -> Result<Option<QuoteRecord>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT q.body, q.expires_at, s.machine_id, s.agent_pairing_id
         FROM market_quotes q JOIN market_searches s ON s.id = q.search_id WHERE q.id = $1",
    )
    .bind(id.to_string())
    .fetch_optional(store)
    .await?;
    row.map(|row| {
        let mut cols = Columns::new(&row);
        let body: &str = cols.take()?;
        let quote = quote_from(body, cols.take()?)?;
        Ok(QuoteRecord {
            quote,
            machine_id: cols.take()?,
            agent_pairing_id: cols.take()?,
        })
    })
    .transpose()
}
