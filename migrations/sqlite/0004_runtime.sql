-- Machine-side runtime agents, runtime endpoints and the background-runner lease
-- (spec agents-and-runtime.md).

CREATE TABLE machine_agents (
    id                    TEXT PRIMARY KEY,
    machine_id            TEXT NOT NULL REFERENCES machines (id),
    label                 TEXT NOT NULL,
    -- JSON array of lower-case provider keys.
    allowed_provider_keys TEXT NOT NULL,
    status                TEXT NOT NULL CHECK (status IN ('provisioned', 'active', 'revoked')),
    -- SHA-256 (hex) of the agent token; the token itself is never stored.
    token_hash            TEXT NOT NULL,
    last_seen_at          BIGINT,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL
);
CREATE INDEX machine_agents_by_machine ON machine_agents (machine_id, created_at, id);

CREATE TABLE runtime_endpoints (
    id                TEXT PRIMARY KEY,
    machine_id        TEXT NOT NULL REFERENCES machines (id),
    provider_key      TEXT NOT NULL,
    source            TEXT NOT NULL CHECK (source IN ('manual', 'agent')),
    agent_id          TEXT,
    label             TEXT NOT NULL,
    endpoint_base_url TEXT NOT NULL,
    auth_type         TEXT NOT NULL CHECK (auth_type IN ('none', 'api-key', 'bearer')),
    -- Encrypted at rest (AES-256-GCM); never returned.
    auth_token        TEXT,
    model_alias       TEXT,
    network_scope     TEXT NOT NULL CHECK (network_scope IN ('loopback', 'lan', 'vpn', 'public')),
    probe_path        TEXT NOT NULL,
    -- Stored status; reads report `unreachable` once the lease has passed.
    status            TEXT NOT NULL CHECK (status IN ('active', 'degraded', 'unreachable')),
    lease_expires_at  BIGINT,
    last_checked_at   BIGINT,
    last_healthy_at   BIGINT,
    health_error      TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    UNIQUE (machine_id, provider_key)
);
CREATE INDEX runtime_endpoints_by_machine ON runtime_endpoints (machine_id, created_at, id);
CREATE INDEX runtime_endpoints_by_agent ON runtime_endpoints (agent_id, provider_key);
CREATE INDEX runtime_endpoints_by_lease ON runtime_endpoints (lease_expires_at);

-- Background work runs on one replica at a time: the holder of this row's unexpired lease.
CREATE TABLE background_leader (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
INSERT INTO background_leader (name, holder, expires_at) VALUES ('machine-markets', '', 0);
