//! The peer: `GET /api/v1/machines/{id}` → `{"item": Machine}` from the orchestrator's own
//! `machines` table, with the same JSON fields, on a native sqlx `PgPool` of 16 connections (the
//! orchestrator's PostgreSQL pool size) and sqlx's defaults otherwise. Unknown id → 404.
//! The statement is the orchestrator's (`src/machines/store.rs` get: the same columns, `revision`
//! read and unused), so the two sides differ only in what surrounds it.
//! `peer-axum <listen addr> <postgres url>`.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgPool, PgPoolOptions};

static JSON: HeaderValue = HeaderValue::from_static("application/json; charset=utf-8");

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Machine {
    id: String,
    display_name: String,
    status: String,
    owner_id: String,
    identity_ref: String,
    identity_proof: Option<IdentityProof>,
    machine_type: String,
    runtime_profile: String,
    capabilities: Vec<String>,
    labels: BTreeMap<String, String>,
    policy_ids: Vec<String>,
    skill_keys: Vec<String>,
    created_at: String,
    updated_at: String,
}

/// The stored identity proof, parsed and written back like the orchestrator's
/// `IdentityProof` (`src/identity/model.rs`), so the two bodies are byte for byte the same.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdentityProof {
    method: String,
    identity_ref: String,
    signer_address: String,
    challenge_id: String,
    verified_at: String,
    challenge_expires_at: String,
    controller_addresses: Vec<String>,
    resolution_source: String,
}

#[derive(Serialize)]
struct Item<T> {
    item: T,
}

type Row = (
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    i64,
);

fn format_ms(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .expect("formats")
}

fn json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, serde_json::Error> {
    serde_json::from_str(text)
}

async fn machine(State(pool): State<PgPool>, Path(id): Path<String>) -> Response {
    let row: Option<Row> = match sqlx::query_as(
        "SELECT id, display_name, status, owner_id, identity_ref, identity_proof, machine_type,
             runtime_profile, capabilities, labels, policy_ids, skill_keys, created_at, updated_at,
             revision
         FROM machines WHERE id = $1",
    )
    .bind(&id)
    .fetch_optional(&pool)
    .await
    {
        Ok(row) => row,
        Err(_) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
    };
    let Some(r) = row else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let decoded = (|| -> Result<Machine, serde_json::Error> {
        Ok(Machine {
            id: r.0,
            display_name: r.1,
            status: r.2,
            owner_id: r.3,
            identity_ref: r.4,
            identity_proof: r.5.as_deref().map(json).transpose()?,
            machine_type: r.6,
            runtime_profile: r.7,
            capabilities: json(&r.8)?,
            labels: json(&r.9)?,
            policy_ids: json(&r.10)?,
            skill_keys: json(&r.11)?,
            created_at: format_ms(r.12),
            updated_at: format_ms(r.13),
        })
    })();
    match decoded.and_then(|m| serde_json::to_vec(&Item { item: m })) {
        Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, JSON.clone())], body).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18083".to_string());
    let url = args.next().expect("a postgres:// URL");
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .connect(&url)
        .await
        .expect("connect");
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    let app = Router::new()
        .route("/api/v1/machines/{id}", get(machine))
        .with_state(pool);
    axum::serve(listener, app).await.expect("serve");
}
