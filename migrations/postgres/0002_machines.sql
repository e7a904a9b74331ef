-- Machine identity challenges and the machine registry (spec identity-and-machines.md).

CREATE TABLE machine_identity_challenges (
    id                   TEXT PRIMARY KEY,
    identity_ref         TEXT NOT NULL,
    origin               TEXT NOT NULL,
    nonce                TEXT NOT NULL,
    issued_at            BIGINT NOT NULL,
    expires_at           BIGINT NOT NULL,
    -- JSON array of lower-case EVM addresses: the controller snapshot at issue time.
    controller_addresses TEXT NOT NULL,
    -- HMAC-SHA256 (hex) of the exact message bytes, keyed with the session secret.
    message_hmac         TEXT NOT NULL,
    consumed_at          BIGINT
);

CREATE TABLE machines (
    id              TEXT PRIMARY KEY,
    display_name    TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('draft', 'active', 'degraded', 'blocked', 'archived')),
    owner_id        TEXT NOT NULL,
    identity_ref    TEXT NOT NULL,
    -- JSON IdentityProof, or NULL until a proof is verified.
    identity_proof  TEXT,
    machine_type    TEXT NOT NULL,
    runtime_profile TEXT NOT NULL,
    capabilities    TEXT NOT NULL,
    labels          TEXT NOT NULL,
    policy_ids      TEXT NOT NULL,
    skill_keys      TEXT NOT NULL,
    -- Bumped by every update; updates are compare-and-set on it.
    revision        BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
-- One live machine per identity; an archived machine's identity may be registered again.
CREATE UNIQUE INDEX machines_live_identity ON machines (identity_ref) WHERE status <> 'archived';
CREATE INDEX machines_by_time ON machines (created_at, id);
