-- Skill config, market searches and their quotes (spec catalogue-and-search.md §4.4, §8).

-- One deployment-wide config per catalogue skill, written by PATCH /skills/{key}/config.
CREATE TABLE skill_configs (
    skill_key   TEXT PRIMARY KEY,
    enabled     BIGINT NOT NULL,
    -- JSON object of string, number or boolean values.
    settings    TEXT NOT NULL,
    -- The credential set, a JSON object sealed with the secrets key (AES-256-GCM); never
    -- returned. NULL when none is stored.
    credentials TEXT,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE market_searches (
    id               TEXT PRIMARY KEY,
    machine_id       TEXT NOT NULL REFERENCES machines (id),
    agent_pairing_id TEXT,
    -- The request body with providerCredentials values replaced by "[REDACTED]".
    request_payload  TEXT NOT NULL,
    normalized_task  TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('completed', 'no_match')),
    created_at       BIGINT NOT NULL
);
CREATE INDEX market_searches_by_machine ON market_searches (machine_id, created_at, id);

-- Quotes are immutable; `position` is the rank in the search (0 = best).
CREATE TABLE market_quotes (
    id         TEXT PRIMARY KEY,
    search_id  TEXT NOT NULL REFERENCES market_searches (id),
    position   BIGINT NOT NULL,
    service_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    -- The MarketQuote as answered.
    body       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX market_quotes_by_search ON market_quotes (search_id, position);
