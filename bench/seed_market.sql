-- Seeds the market benches through the schema the server migrated, like bench/seed.sql.
-- psql variables: m (market machines, 16), base_ms, lease_ms, signer, runtime_url (the fake
-- runtime's base URL), agent (the pairings' agent address), policy (the stored delegation
-- policy JSON) and policy_hash (its hash, which the minted pairing tokens carry).
--
-- Ids are prefix + 01JBMRKT + zero-padded n (ULID length), apart from bench/seed.sql's
-- 01JBENCH ones, so the market rows and the heartbeat/GET-machine rows never meet:
--   * machines mach_01JBMRKT<1..m>: active, identity did:peaq:(500000 + n) proven by the signer
--     (the fake MCR answers it bonded), capabilities and skills the ranking reads;
--   * one agent each (token mat_benchmrkt<n>) and the qvac runtime endpoint it leases, at the
--     fake runtime, lease a day ahead (as src/runtime/service.rs stores a heartbeat's entry);
--   * pairings apr_01JBMRKT<1..2m>: pairing p on machine ((p - 1) % m) + 1, active, one open
--     session aps_01JBMRKT<p> (bench/market.py tokens mints its token). Pairings 1..m are the
--     search and order-creation pairings, m+1..2m own the payment-proof orders, so proofs never
--     add to the daily spend the order benches read.
\set ON_ERROR_STOP on
BEGIN;

INSERT INTO machines (id, display_name, status, owner_id, identity_ref, identity_proof,
                      machine_type, runtime_profile, capabilities, labels, policy_ids,
                      skill_keys, revision, created_at, updated_at)
SELECT 'mach_01JBMRKT' || lpad(g::text, 18, '0'),
       'Bench market machine ' || g,
       'active',
       'owner-market',
       'did:peaq:' || (500000 + g),
       json_build_object(
           'method', 'eip191',
           'identityRef', 'did:peaq:' || (500000 + g),
           'signerAddress', :'signer',
           'challengeId', 'mic_01JBMRKT' || lpad(g::text, 18, '0'),
           'verifiedAt', to_char(to_timestamp((:base_ms - 60000 + g) / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           'challengeExpiresAt', to_char(to_timestamp((:base_ms + 240000 + g) / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           'controllerAddresses', json_build_array(:'signer'),
           'resolutionSource', 'peaqos-mcr')::text,
       'edge-gpu',
       'qvac-local',
       '["telemetry","actuation","inference","mapping"]',
       '{"site":"bench-market"}',
       '[]',
       '["bench-skill-000","bench-skill-001","qvac-private-inference"]',
       1,
       :base_ms - 3600000 + g,
       :base_ms - 3600000 + g
FROM generate_series(1, :m) AS g;

INSERT INTO machine_agents (id, machine_id, label, allowed_provider_keys, status, token_hash,
                            last_seen_at, created_at, updated_at)
SELECT 'mag_01JBMRKT' || lpad(g::text, 18, '0'),
       'mach_01JBMRKT' || lpad(g::text, 18, '0'),
       'Machine runtime agent',
       '["qvac"]',
       'active',
       encode(sha256(convert_to('mat_benchmrkt' || lpad(g::text, 30, '0'), 'UTF8')), 'hex'),
       :base_ms - 60000,
       :base_ms - 3000000 + g,
       :base_ms - 60000
FROM generate_series(1, :m) AS g;

INSERT INTO runtime_endpoints (id, machine_id, provider_key, source, agent_id, label,
                               endpoint_base_url, auth_type, auth_token, model_alias,
                               network_scope, probe_path, status, lease_expires_at,
                               last_checked_at, last_healthy_at, health_error,
                               created_at, updated_at)
SELECT 'rep_01JBMRKT' || lpad(g::text, 18, '0'),
       'mach_01JBMRKT' || lpad(g::text, 18, '0'),
       'qvac', 'agent',
       'mag_01JBMRKT' || lpad(g::text, 18, '0'),
       'QVAC runtime',
       :'runtime_url',
       'none', NULL, 'bench-llm',
       'loopback', '/v1/models', 'active',
       :lease_ms,
       NULL, NULL, NULL,
       :base_ms - 3000000 + g,
       :base_ms - 60000
FROM generate_series(1, :m) AS g;

-- src/pairings/service.rs create + open_session, without a proof (verification: NULL).
INSERT INTO agent_pairings (id, machine_id, agent_address, agent_did, agent_provider, agent_role,
                            description, status, verification, delegation_policy, policy_hash,
                            session_id, session_token_id, session_issued_at, session_expires_at,
                            token_last_four, created_at, updated_at, revision)
SELECT 'apr_01JBMRKT' || lpad(p::text, 18, '0'),
       'mach_01JBMRKT' || lpad((((p - 1) % :m) + 1)::text, 18, '0'),
       :'agent',
       'did:pkh:eip155:1:' || :'agent',
       'anthropic', 'buyer', 'Bench market agent ' || p,
       'active', NULL, :'policy', :'policy_hash',
       'aps_01JBMRKT' || lpad(p::text, 18, '0'),
       'apt_01JBMRKT' || lpad(p::text, 18, '0'),
       :base_ms - 60000, :base_ms + 86400000,
       'xxxx',
       :base_ms - 120000 + p, :base_ms - 120000 + p, 0
FROM generate_series(1, 2 * :m) AS p;

COMMIT;
VACUUM ANALYZE machines;
VACUUM ANALYZE machine_agents;
VACUUM ANALYZE runtime_endpoints;
VACUUM ANALYZE agent_pairings;
