-- Foundation: audit trail, idempotency records, server-generated secrets.
-- Timestamps are epoch milliseconds (BIGINT); JSON is stored as TEXT. Same schema as sqlite/.

CREATE TABLE audit_events (
    id            TEXT PRIMARY KEY,
    actor         TEXT NOT NULL,
    type          TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    machine_id    TEXT,
    payload       TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX audit_events_by_time ON audit_events (created_at DESC, id DESC);
CREATE INDEX audit_events_by_machine ON audit_events (machine_id, created_at DESC, id DESC);
CREATE INDEX audit_events_by_resource ON audit_events (resource_id, created_at DESC, id DESC);
CREATE INDEX audit_events_by_type ON audit_events (type, created_at DESC, id DESC);

-- One row per (principal, method, path, Idempotency-Key), hashed into `scope`.
-- `claim` identifies the request that reserved the row; `response_body` is encrypted.
CREATE TABLE idempotency_records (
    scope           TEXT PRIMARY KEY,
    request_hash    TEXT NOT NULL,
    claim           TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('in_progress', 'completed')),
    response_status INTEGER,
    response_body   TEXT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX idempotency_records_by_time ON idempotency_records (created_at);

-- Secrets the server generates once and every replica shares (the pairing session secret).
CREATE TABLE server_secrets (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
