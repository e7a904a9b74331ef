-- Market orders, their payments and disputes (spec orders-and-payments.md §1–§2).

CREATE TABLE market_orders (
    id                 TEXT PRIMARY KEY,
    machine_id         TEXT NOT NULL REFERENCES machines (id),
    agent_pairing_id   TEXT NOT NULL REFERENCES agent_pairings (id),
    search_id          TEXT,
    quote_id           TEXT,
    service_id         TEXT NOT NULL,
    skill_key          TEXT NOT NULL,
    provider_key       TEXT NOT NULL,
    service_type       TEXT NOT NULL,
    operation          TEXT NOT NULL,
    execution_mode     TEXT NOT NULL,
    integration_status TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('created', 'payment_pending', 'ready', 'executing',
                           'delivered', 'confirmed', 'disputed', 'cancelled', 'failed', 'handoff')),
    input              TEXT NOT NULL,
    -- JSON {amount, max, currency} as requested, or NULL.
    budget             TEXT,
    -- The spend amount as an exact decimal string, and its currency.
    amount             TEXT NOT NULL,
    currency           TEXT,
    -- The service's PaymentRailRecommendation, copied at creation.
    payment            TEXT NOT NULL,
    service_snapshot   TEXT NOT NULL,
    task_id            TEXT,
    route_id           TEXT,
    run_id             TEXT,
    outcome_id         TEXT,
    handoff            TEXT,
    error_message      TEXT,
    cancel_reason      TEXT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE INDEX market_orders_by_machine ON market_orders (machine_id, created_at, id);
-- The daily spend of a pairing is summed over its orders of the UTC day.
CREATE INDEX market_orders_by_pairing ON market_orders (agent_pairing_id, created_at);
-- The interrupted-execution sweep.
CREATE INDEX market_orders_by_status ON market_orders (status, updated_at);

CREATE TABLE market_payments (
    id                       TEXT PRIMARY KEY,
    order_id                 TEXT NOT NULL UNIQUE REFERENCES market_orders (id),
    machine_id               TEXT NOT NULL REFERENCES machines (id),
    status                   TEXT NOT NULL CHECK (status IN ('not_required', 'intent_created', 'held',
                                 'release_pending', 'released', 'frozen', 'refunded')),
    rail                     TEXT NOT NULL,
    amount                   TEXT,
    currency                 TEXT,
    notes                    TEXT NOT NULL,
    proof                    TEXT,
    -- The on-chain transaction (lower-case EVM hash, Solana signature) or EIP-3009 authorization
    -- that backs the payment: one payment per transaction in the whole deployment.
    transaction_key          TEXT UNIQUE,
    release_transaction_hash TEXT,
    refund_transaction_hash  TEXT,
    refund_reason            TEXT,
    created_at               BIGINT NOT NULL,
    updated_at               BIGINT NOT NULL
);

CREATE TABLE order_disputes (
    id         TEXT PRIMARY KEY,
    order_id   TEXT NOT NULL REFERENCES market_orders (id),
    machine_id TEXT NOT NULL REFERENCES machines (id),
    status     TEXT NOT NULL CHECK (status IN ('open', 'resolved')),
    reason     TEXT NOT NULL,
    evidence   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX order_disputes_by_order ON order_disputes (order_id, created_at);
