-- Agent pairings, their challenges and sessions (spec pairings-and-auth.md).
-- Pairing tokens are never stored: only the session ids and the token's last four characters.

CREATE TABLE agent_pairing_challenges (
    id                   TEXT PRIMARY KEY,
    machine_id           TEXT NOT NULL REFERENCES machines (id),
    machine_identity_ref TEXT NOT NULL,
    agent_address        TEXT NOT NULL,
    agent_did            TEXT NOT NULL,
    agent_provider       TEXT NOT NULL,
    agent_role           TEXT NOT NULL,
    origin               TEXT NOT NULL,
    nonce                TEXT NOT NULL,
    issued_at            BIGINT NOT NULL,
    expires_at           BIGINT NOT NULL,
    message_hmac         TEXT NOT NULL,
    consumed_at          BIGINT
);

CREATE TABLE agent_pairings (
    id                 TEXT PRIMARY KEY,
    machine_id         TEXT NOT NULL REFERENCES machines (id),
    agent_address      TEXT NOT NULL,
    agent_did          TEXT NOT NULL,
    agent_provider     TEXT NOT NULL,
    agent_role         TEXT NOT NULL,
    description        TEXT,
    status             TEXT NOT NULL CHECK (status IN ('active', 'paused', 'revoked')),
    -- JSON AgentPairingVerification, or NULL when no proof was verified.
    verification       TEXT,
    -- JSON DelegationPolicy (normalised) and its hash, which pairing tokens carry.
    delegation_policy  TEXT NOT NULL,
    policy_hash        TEXT NOT NULL,
    session_id         TEXT,
    session_token_id   TEXT,
    session_issued_at  BIGINT,
    session_expires_at BIGINT,
    token_last_four    TEXT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    -- Bumped by every update; updates are compare-and-set on it.
    revision           BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX agent_pairings_by_machine ON agent_pairings (machine_id, created_at, id);
