//! Graph rows (`graph_nodes`, `graph_edges`).

use super::model::{EdgeType, GraphEdge, GraphNode, NodeStatus, NodeType};
use crate::clock::format_ms;
use crate::store::{Columns, Store, Tx, json};

const NODE_COLUMNS: &str =
    "id, machine_id, type, ref_id, title, status, position, data, created_at, updated_at";
const EDGE_COLUMNS: &str =
    "id, machine_id, source_node_id, target_node_id, type, label, data, created_at, updated_at";

fn decode_error(what: &str, value: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unknown {what} {value:?}").into())
}

fn node_at(cols: &mut Columns<'_>) -> Result<GraphNode, sqlx::Error> {
    let id = cols.take()?;
    let machine_id = cols.take()?;
    let node_type: &str = cols.take()?;
    let node_type =
        NodeType::parse(node_type).ok_or_else(|| decode_error("node type", node_type))?;
    let ref_id = cols.take()?;
    let title = cols.take()?;
    let status: &str = cols.take()?;
    let status = NodeStatus::parse(status).ok_or_else(|| decode_error("node status", status))?;
    let position = cols.take_json()?;
    let data = cols.take_json()?;
    let created_at: i64 = cols.take()?;
    let updated_at: i64 = cols.take()?;
    Ok(GraphNode {
        id,
        machine_id,
        node_type,
        ref_id,
        title,
        status,
        position,
        data,
        created_at: format_ms(created_at),
        updated_at: format_ms(updated_at),
        created_at_ms: created_at,
    })
}

fn edge_at(cols: &mut Columns<'_>) -> Result<GraphEdge, sqlx::Error> {
    let id = cols.take()?;
    let machine_id = cols.take()?;
    let source_node_id = cols.take()?;
    let target_node_id = cols.take()?;
    let edge_type: &str = cols.take()?;
    let edge_type =
        EdgeType::parse(edge_type).ok_or_else(|| decode_error("edge type", edge_type))?;
    let label = cols.take()?;
    let data = cols.take_json()?;
    let created_at: i64 = cols.take()?;
    let updated_at: i64 = cols.take()?;
    Ok(GraphEdge {
        id,
        machine_id,
        source_node_id,
        target_node_id,
        edge_type,
        label,
        data,
        created_at: format_ms(created_at),
        updated_at: format_ms(updated_at),
        created_at_ms: created_at,
    })
}

/// Inserts or replaces a node (the service read it first, on the same machine).
pub async fn save_node(tx: &mut Tx, n: &GraphNode, updated_at: i64) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO graph_nodes ({NODE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (id) DO UPDATE SET type = excluded.type, ref_id = excluded.ref_id,
             title = excluded.title, status = excluded.status, position = excluded.position,
             data = excluded.data, updated_at = excluded.updated_at"
    )))
    .bind(n.id.clone())
    .bind(n.machine_id.clone())
    .bind(n.node_type.as_str())
    .bind(n.ref_id.clone())
    .bind(n.title.clone())
    .bind(n.status.as_str())
    .bind(json(&n.position))
    .bind(serde_json::Value::Object(n.data.clone()).to_string())
    .bind(n.created_at_ms)
    .bind(updated_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn save_edge(tx: &mut Tx, e: &GraphEdge, updated_at: i64) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO graph_edges ({EDGE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (id) DO UPDATE SET source_node_id = excluded.source_node_id,
             target_node_id = excluded.target_node_id, type = excluded.type,
             label = excluded.label, data = excluded.data, updated_at = excluded.updated_at"
    )))
    .bind(e.id.clone())
    .bind(e.machine_id.clone())
    .bind(e.source_node_id.clone())
    .bind(e.target_node_id.clone())
    .bind(e.edge_type.as_str())
    .bind(e.label.clone())
    .bind(serde_json::Value::Object(e.data.clone()).to_string())
    .bind(e.created_at_ms)
    .bind(updated_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn node(
    store: &Store,
    machine_id: &str,
    id: &str,
) -> Result<Option<GraphNode>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {NODE_COLUMNS} FROM graph_nodes WHERE id = $1 AND machine_id = $2"
    )))
    .bind(id.to_string())
    .bind(machine_id.to_string())
    .fetch_optional(store)
    .await?;
    row.as_ref()
        .map(|r| node_at(&mut Columns::new(r)))
        .transpose()
}

pub async fn edge(
    store: &Store,
    machine_id: &str,
    id: &str,
) -> Result<Option<GraphEdge>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {EDGE_COLUMNS} FROM graph_edges WHERE id = $1 AND machine_id = $2"
    )))
    .bind(id.to_string())
    .bind(machine_id.to_string())
    .fetch_optional(store)
    .await?;
    row.as_ref()
        .map(|r| edge_at(&mut Columns::new(r)))
        .transpose()
}

pub async fn nodes(store: &Store, machine_id: &str) -> Result<Vec<GraphNode>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {NODE_COLUMNS} FROM graph_nodes WHERE machine_id = $1 ORDER BY created_at, id"
    )))
    .bind(machine_id.to_string())
    .fetch_all(store)
    .await?;
    rows.iter().map(|r| node_at(&mut Columns::new(r))).collect()
}

pub async fn edges(store: &Store, machine_id: &str) -> Result<Vec<GraphEdge>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {EDGE_COLUMNS} FROM graph_edges WHERE machine_id = $1 ORDER BY created_at, id"
    )))
    .bind(machine_id.to_string())
    .fetch_all(store)
    .await?;
    rows.iter().map(|r| edge_at(&mut Columns::new(r))).collect()
}

/// Deletes a node and the edges touching it; the ids of those edges, oldest first. `None` when
/// the node was already gone.
pub async fn delete_node(
    tx: &mut Tx,
    machine_id: &str,
    id: &str,
) -> Result<Option<Vec<String>>, sqlx::Error> {
    let edges: Vec<String> = sqlx::query_scalar(
        "DELETE FROM graph_edges WHERE machine_id = $1 AND (source_node_id = $2 OR target_node_id = $2)
         RETURNING id",
    )
    .bind(machine_id.to_string())
    .bind(id.to_string())
    .fetch_all(&mut **tx)
    .await?;
    let deleted = sqlx::query("DELETE FROM graph_nodes WHERE id = $1 AND machine_id = $2")
        .bind(id.to_string())
        .bind(machine_id.to_string())
        .execute(&mut **tx)
        .await?
        .rows_affected();
    let mut edges = edges;
    edges.sort();
    Ok((deleted == 1).then_some(edges))
}

pub async fn delete_edge(tx: &mut Tx, machine_id: &str, id: &str) -> Result<bool, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM graph_edges WHERE id = $1 AND machine_id = $2")
            .bind(id.to_string())
            .bind(machine_id.to_string())
            .execute(&mut **tx)
            .await?
            .rows_affected()
            == 1,
    )
}

/// Whether `id` is a node of the machine (inside `tx`, so an edge never points at a node that a
/// concurrent delete removed).
pub async fn node_exists(tx: &mut Tx, machine_id: &str, id: &str) -> Result<bool, sqlx::Error> {
    let found: Option<String> =
        sqlx::query_scalar("SELECT id FROM graph_nodes WHERE id = $1 AND machine_id = $2")
            .bind(id.to_string())
            .bind(machine_id.to_string())
            .fetch_optional(&mut **tx)
            .await?;
    Ok(found.is_some())
}
