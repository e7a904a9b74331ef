//! The machine graph's rules (spec orchestration.md §1): nodes and edges of one machine, `data`
//! merged shallowly, edges only between the machine's own nodes, deletes that take their edges.

use serde_json::{Map, Value, json};

use super::model::{
    EdgeInput, EdgeType, Graph, GraphEdge, GraphNode, NodeInput, NodeStatus, NodeType, Position,
    PositionInput,
};
use super::store;
use crate::App;
use crate::audit::{self, Actor, NewAuditEvent};
use crate::clock::format_ms;
use crate::error::{ApiError, ApiResult};
use crate::http::validate::{MAX_NAME, MAX_TEXT, optional_text, required_text};
use crate::machines::service as machines;
use crate::store::{Staged, Tx, new_id};
use crate::wire::parse_field;

fn node_not_found(id: &str) -> ApiError {
    ApiError::not_found("graph-node", id)
}

fn edge_not_found(id: &str) -> ApiError {
    ApiError::not_found("graph-edge", id)
}

fn event(
    machine_id: &str,
    resource_type: &'static str,
    resource_id: &str,
    event_type: &'static str,
    payload: Value,
) -> NewAuditEvent {
    NewAuditEvent {
        actor: Actor::Api,
        event_type,
        resource_type,
        resource_id: resource_id.to_string(),
        machine_id: Some(machine_id.to_string()),
        payload,
    }
}

fn coordinate(field: &str, value: Option<f64>) -> ApiResult<Option<f64>> {
    match value {
        Some(v) if !v.is_finite() => Err(ApiError::validation(
            field,
            "finite number",
            format!("{field} must be a finite number"),
        )),
        other => Ok(other),
    }
}

/// `data` merged shallowly: top-level keys of the patch replace the stored ones.
fn merge(stored: &mut Map<String, Value>, patch: Map<String, Value>) -> bool {
    let mut changed = false;
    for (key, value) in patch {
        if stored.get(&key) != Some(&value) {
            stored.insert(key, value);
            changed = true;
        }
    }
    changed
}

pub async fn graph(app: &App, machine_id: &str) -> ApiResult<Graph> {
    machines::gate_b(app, machine_id).await?;
    Ok(Graph {
        nodes: store::nodes(&app.store, machine_id).await?,
        edges: store::edges(&app.store, machine_id).await?,
    })
}

pub async fn create_node(
    app: &App,
    machine_id: &str,
    body: NodeInput,
) -> ApiResult<Staged<GraphNode>> {
    machines::gate_b(app, machine_id).await?;
    let node_type: NodeType = match body.node_type {
        Some(t) => parse_field("type", &t)?,
        None => return Err(ApiError::validation("type", "required", "type is required")),
    };
    let title = required_text("title", body.title, MAX_TEXT)?;
    let ref_id = optional_text("refId", body.ref_id, MAX_NAME)?;
    let position = body.position.unwrap_or_default();
    let now = app.clock.now_ms();
    let node = GraphNode {
        id: new_id("gnd_"),
        machine_id: machine_id.to_string(),
        node_type,
        ref_id,
        title,
        status: NodeStatus::Active,
        position: Position {
            x: coordinate("position.x", position.x)?.unwrap_or(0.0),
            y: coordinate("position.y", position.y)?.unwrap_or(0.0),
        },
        data: body.data.unwrap_or_default(),
        created_at: format_ms(now),
        updated_at: format_ms(now),
        created_at_ms: now,
    };
    let mut tx = app.store.begin().await?;
    store::save_node(&mut tx, &node, now).await?;
    let payload = json!({"type": node.node_type, "title": node.title, "refId": node.ref_id});
    audit::record(
        &mut tx,
        now,
        event(
            machine_id,
            "graph-node",
            &node.id,
            "graph.node.created",
            payload,
        ),
    )
    .await?;
    Ok(Staged { tx, value: node })
}

/// `PATCH` a node. `None` when nothing changed: no write, no event.
pub async fn update_node(
    app: &App,
    machine_id: &str,
    node_id: &str,
    body: NodeInput,
) -> ApiResult<(Option<Tx>, GraphNode)> {
    machines::gate_b(app, machine_id).await?;
    let node_type: Option<NodeType> = body
        .node_type
        .as_deref()
        .map(|t| parse_field("type", t))
        .transpose()?;
    let status: Option<NodeStatus> = body
        .status
        .as_deref()
        .map(|s| parse_field("status", s))
        .transpose()?;
    let title = optional_text("title", body.title, MAX_TEXT)?;
    // `""` clears refId.
    let ref_id = match body.ref_id {
        Some(r) if r.is_empty() => Some(None),
        other => optional_text("refId", other, MAX_NAME)?.map(Some),
    };
    let PositionInput { x, y } = body.position.unwrap_or_default();
    let (x, y) = (coordinate("position.x", x)?, coordinate("position.y", y)?);

    let mut node = store::node(&app.store, machine_id, node_id)
        .await?
        .ok_or_else(|| node_not_found(node_id))?;
    let mut changed: Vec<&'static str> = Vec::new();
    if let Some(t) = node_type
        && t != node.node_type
    {
        node.node_type = t;
        changed.push("type");
    }
    if let Some(t) = title
        && t != node.title
    {
        node.title = t;
        changed.push("title");
    }
    if let Some(r) = ref_id
        && r != node.ref_id
    {
        node.ref_id = r;
        changed.push("refId");
    }
    if let Some(s) = status
        && s != node.status
    {
        node.status = s;
        changed.push("status");
    }
    let moved = Position {
        x: x.unwrap_or(node.position.x),
        y: y.unwrap_or(node.position.y),
    };
    if moved != node.position {
        node.position = moved;
        changed.push("position");
    }
    if let Some(data) = body.data
        && merge(&mut node.data, data)
    {
        changed.push("data");
    }
    if changed.is_empty() {
        return Ok((None, node));
    }
    let now = app.clock.now_ms();
    node.updated_at = format_ms(now);
    let mut tx = app.store.begin().await?;
    store::save_node(&mut tx, &node, now).await?;
    audit::record(
        &mut tx,
        now,
        event(
            machine_id,
            "graph-node",
            node_id,
            "graph.node.updated",
            json!({"changedFields": changed}),
        ),
    )
    .await?;
    Ok((Some(tx), node))
}

/// `DELETE` a node, with the edges touching it (Gate A).
pub async fn delete_node(app: &App, machine_id: &str, node_id: &str) -> ApiResult<Tx> {
    machines::find(app, machine_id).await?;
    let now = app.clock.now_ms();
    let mut tx = app.store.begin().await?;
    let edges = store::delete_node(&mut tx, machine_id, node_id)
        .await?
        .ok_or_else(|| node_not_found(node_id))?;
    audit::record(
        &mut tx,
        now,
        event(
            machine_id,
            "graph-node",
            node_id,
            "graph.node.deleted",
            json!({"edgesDeleted": edges}),
        ),
    )
    .await?;
    for edge_id in &edges {
        audit::record(
            &mut tx,
            now,
            event(
                machine_id,
                "graph-edge",
                edge_id,
                "graph.edge.deleted",
                json!({"reason": "node-deleted", "nodeId": node_id}),
            ),
        )
        .await?;
    }
    Ok(tx)
}

async fn endpoint_node(tx: &mut Tx, machine_id: &str, field: &str, id: &str) -> ApiResult<()> {
    if store::node_exists(tx, machine_id, id).await? {
        Ok(())
    } else {
        Err(ApiError::validation(
            field,
            "node of this machine",
            format!("{field} must name a node of this machine"),
        )
        .with_reason("unknown-node"))
    }
}

pub async fn create_edge(
    app: &App,
    machine_id: &str,
    body: EdgeInput,
) -> ApiResult<Staged<GraphEdge>> {
    machines::gate_b(app, machine_id).await?;
    let source = required_text("sourceNodeId", body.source_node_id, MAX_NAME)?;
    let target = required_text("targetNodeId", body.target_node_id, MAX_NAME)?;
    let edge_type: EdgeType = match body.edge_type {
        Some(t) => parse_field("type", &t)?,
        None => return Err(ApiError::validation("type", "required", "type is required")),
    };
    let label = optional_text("label", body.label, MAX_TEXT)?;
    let now = app.clock.now_ms();
    let edge = GraphEdge {
        id: new_id("ged_"),
        machine_id: machine_id.to_string(),
        source_node_id: source,
        target_node_id: target,
        edge_type,
        label,
        data: body.data.unwrap_or_default(),
        created_at: format_ms(now),
        updated_at: format_ms(now),
        created_at_ms: now,
    };
    let mut tx = app.store.begin().await?;
    endpoint_node(&mut tx, machine_id, "sourceNodeId", &edge.source_node_id).await?;
    endpoint_node(&mut tx, machine_id, "targetNodeId", &edge.target_node_id).await?;
    store::save_edge(&mut tx, &edge, now).await?;
    let payload = json!({"sourceNodeId": edge.source_node_id, "targetNodeId": edge.target_node_id,
                         "type": edge.edge_type});
    audit::record(
        &mut tx,
        now,
        event(
            machine_id,
            "graph-edge",
            &edge.id,
            "graph.edge.created",
            payload,
        ),
    )
    .await?;
    Ok(Staged { tx, value: edge })
}

/// `PATCH` an edge. `None` when nothing changed.
pub async fn update_edge(
    app: &App,
    machine_id: &str,
    edge_id: &str,
    body: EdgeInput,
) -> ApiResult<(Option<Tx>, GraphEdge)> {
    machines::gate_b(app, machine_id).await?;
    let source = optional_text("sourceNodeId", body.source_node_id, MAX_NAME)?;
    let target = optional_text("targetNodeId", body.target_node_id, MAX_NAME)?;
    let edge_type: Option<EdgeType> = body
        .edge_type
        .as_deref()
        .map(|t| parse_field("type", t))
        .transpose()?;
    // `""` removes the label.
    let label = match body.label {
        Some(l) if l.is_empty() => Some(None),
        other => optional_text("label", other, MAX_TEXT)?.map(Some),
    };
    let mut edge = store::edge(&app.store, machine_id, edge_id)
        .await?
        .ok_or_else(|| edge_not_found(edge_id))?;
    let mut changed: Vec<&'static str> = Vec::new();
    if let Some(s) = &source
        && *s != edge.source_node_id
    {
        edge.source_node_id = s.clone();
        changed.push("sourceNodeId");
    }
    if let Some(t) = &target
        && *t != edge.target_node_id
    {
        edge.target_node_id = t.clone();
        changed.push("targetNodeId");
    }
    if let Some(t) = edge_type
        && t != edge.edge_type
    {
        edge.edge_type = t;
        changed.push("type");
    }
    if let Some(l) = label
        && l != edge.label
    {
        edge.label = l;
        changed.push("label");
    }
    if let Some(data) = body.data
        && merge(&mut edge.data, data)
    {
        changed.push("data");
    }
    if changed.is_empty() {
        return Ok((None, edge));
    }
    let now = app.clock.now_ms();
    edge.updated_at = format_ms(now);
    let mut tx = app.store.begin().await?;
    if changed.contains(&"sourceNodeId") {
        endpoint_node(&mut tx, machine_id, "sourceNodeId", &edge.source_node_id).await?;
    }
    if changed.contains(&"targetNodeId") {
        endpoint_node(&mut tx, machine_id, "targetNodeId", &edge.target_node_id).await?;
    }
    store::save_edge(&mut tx, &edge, now).await?;
    audit::record(
        &mut tx,
        now,
        event(
            machine_id,
            "graph-edge",
            edge_id,
            "graph.edge.updated",
            json!({"changedFields": changed}),
        ),
    )
    .await?;
    Ok((Some(tx), edge))
}

/// `DELETE` an edge (Gate A).
pub async fn delete_edge(app: &App, machine_id: &str, edge_id: &str) -> ApiResult<Tx> {
    machines::find(app, machine_id).await?;
    let now = app.clock.now_ms();
    let mut tx = app.store.begin().await?;
    if !store::delete_edge(&mut tx, machine_id, edge_id).await? {
        return Err(edge_not_found(edge_id));
    }
    audit::record(
        &mut tx,
        now,
        event(
            machine_id,
            "graph-edge",
            edge_id,
            "graph.edge.deleted",
            json!({}),
        ),
    )
    .await?;
    Ok(tx)
}
