-- Policies, the machine graph, and tasks with their routes, runs and outcomes
-- (spec orchestration.md §1–§4).

CREATE TABLE policies (
    id                    TEXT PRIMARY KEY,
    name                  TEXT NOT NULL,
    allowed_skill_keys    TEXT NOT NULL,
    denied_skill_keys     TEXT NOT NULL,
    -- JSON {currency, amount} or NULL.
    budget_cap            TEXT,
    region_rules          TEXT NOT NULL,
    native_only           BIGINT NOT NULL,
    handoff_allowed       BIGINT NOT NULL,
    required_capabilities TEXT NOT NULL,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    revision              BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX policies_by_creation ON policies (created_at, id);

CREATE TABLE graph_nodes (
    id         TEXT PRIMARY KEY,
    machine_id TEXT NOT NULL REFERENCES machines (id),
    type       TEXT NOT NULL,
    ref_id     TEXT,
    title      TEXT NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('draft', 'active', 'blocked', 'degraded')),
    -- JSON {x, y}.
    position   TEXT NOT NULL,
    data       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX graph_nodes_by_machine ON graph_nodes (machine_id, created_at, id);

CREATE TABLE graph_edges (
    id             TEXT PRIMARY KEY,
    machine_id     TEXT NOT NULL REFERENCES machines (id),
    source_node_id TEXT NOT NULL REFERENCES graph_nodes (id),
    target_node_id TEXT NOT NULL REFERENCES graph_nodes (id),
    type           TEXT NOT NULL,
    label          TEXT,
    data           TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE INDEX graph_edges_by_machine ON graph_edges (machine_id, created_at, id);
CREATE INDEX graph_edges_by_source ON graph_edges (source_node_id);
CREATE INDEX graph_edges_by_target ON graph_edges (target_node_id);

CREATE TABLE tasks (
    id           TEXT PRIMARY KEY,
    machine_id   TEXT NOT NULL REFERENCES machines (id),
    service_type TEXT NOT NULL,
    operation    TEXT,
    task_type    TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('draft', 'queued', 'resolving', 'resolved', 'executing', 'completed', 'failed', 'handed_off')),
    input        TEXT NOT NULL,
    constraints  TEXT NOT NULL,
    discovery    TEXT NOT NULL,
    route_id     TEXT,
    outcome_id   TEXT,
    order_id     TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX tasks_by_machine ON tasks (machine_id, created_at, id);

CREATE TABLE task_routes (
    id                  TEXT PRIMARY KEY,
    machine_id          TEXT NOT NULL REFERENCES machines (id),
    task_id             TEXT NOT NULL REFERENCES tasks (id),
    selected_skill_key  TEXT NOT NULL,
    selected_service_id TEXT NOT NULL,
    execution_mode      TEXT NOT NULL,
    integration_status  TEXT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('selected', 'blocked', 'handed_off', 'failed', 'completed')),
    reason              TEXT NOT NULL,
    score               DOUBLE PRECISION NOT NULL,
    fallback_chain      TEXT NOT NULL,
    handoff             TEXT,
    -- The TaskResolution this route was persisted from, answered again by execute.
    resolution          TEXT NOT NULL,
    order_id            TEXT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE INDEX task_routes_by_machine ON task_routes (machine_id, created_at, id);

CREATE TABLE task_outcomes (
    id             TEXT PRIMARY KEY,
    machine_id     TEXT NOT NULL REFERENCES machines (id),
    task_id        TEXT NOT NULL REFERENCES tasks (id),
    route_id       TEXT NOT NULL REFERENCES task_routes (id),
    status         TEXT NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed', 'external')),
    skill_key      TEXT NOT NULL,
    service_id     TEXT NOT NULL,
    execution_mode TEXT NOT NULL,
    receipt_ref    TEXT,
    logs_ref       TEXT,
    external_ref   TEXT,
    error_code     TEXT,
    error_message  TEXT,
    -- The provider's result, JSON, or NULL.
    result         TEXT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE INDEX task_outcomes_by_machine ON task_outcomes (machine_id, created_at, id);

CREATE TABLE task_runs (
    id             TEXT PRIMARY KEY,
    machine_id     TEXT NOT NULL REFERENCES machines (id),
    task_id        TEXT NOT NULL REFERENCES tasks (id),
    route_id       TEXT,
    outcome_id     TEXT,
    status         TEXT NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed', 'external', 'blocked')),
    execution_mode TEXT,
    skill_key      TEXT,
    service_id     TEXT,
    summary        TEXT,
    order_id       TEXT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE INDEX task_runs_by_machine ON task_runs (machine_id, created_at, id);
