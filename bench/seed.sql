-- Seeds the bench database through the schema the server migrated (migrations/postgres/*.sql).
-- psql variables: n (machines), base_ms (epoch ms "now"), lease_ms (lease end for seeded
-- endpoints), signer (lower-case 0x address MCR reports as operator).
--
-- Conventions copied from src/*/store.rs:
--   * timestamps are BIGINT epoch ms; JSON columns are TEXT (serde_json::to_string output);
--   * ids are prefix + 26 chars (ULID length); here 01JBENCH + zero-padded n, so ids are
--     predictable for the wrk Lua scripts and the pgbench scripts;
--   * machines.identity_proof is the serialised IdentityProof (src/identity/model.rs, camelCase);
--   * machine_agents.token_hash is sha256 hex of the agent token (src/agents/service.rs enroll);
--     token n is 'mat_bench' || lpad(n, 34, '0') (43 chars after mat_, like a real one);
--   * runtime_endpoints rows look exactly like what a heartbeat with
--     {"providerKey":"qvac","endpointBaseUrl":"http://127.0.0.1:9"} stores
--     (src/runtime/service.rs validate, src/clients/runtime.rs normalise_base_url).
\set ON_ERROR_STOP on
BEGIN;

INSERT INTO machines (id, display_name, status, owner_id, identity_ref, identity_proof,
                      machine_type, runtime_profile, capabilities, labels, policy_ids,
                      skill_keys, revision, created_at, updated_at)
SELECT 'mach_01JBENCH' || lpad(g::text, 18, '0'),
       'Bench machine ' || g,
       'active',
       'owner-' || (g % 97),
       'did:peaq:' || g,
       json_build_object(
           'method', 'eip191',
           'identityRef', 'did:peaq:' || g,
           'signerAddress', :'signer',
           'challengeId', 'mic_01JBENCH' || lpad(g::text, 18, '0'),
           'verifiedAt', to_char(to_timestamp((:base_ms - 60000 + g) / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           'challengeExpiresAt', to_char(to_timestamp((:base_ms + 240000 + g) / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           'controllerAddresses', json_build_array(:'signer'),
           'resolutionSource', 'peaqos-mcr')::text,
       'edge-gpu',
       'qvac-local',
       '["inference","chat"]',
       '{"rack":"r' || (g % 20) || '","site":"bench"}',
       '[]',
       '["llm.chat"]',
       1,
       :base_ms - 3600000 + g,
       :base_ms - 3600000 + g
FROM generate_series(1, :n) AS g;

INSERT INTO machine_agents (id, machine_id, label, allowed_provider_keys, status, token_hash,
                            last_seen_at, created_at, updated_at)
SELECT 'mag_01JBENCH' || lpad(g::text, 18, '0'),
       'mach_01JBENCH' || lpad(g::text, 18, '0'),
       'Machine runtime agent',
       '["qvac"]',
       'active',
       encode(sha256(convert_to('mat_bench' || lpad(g::text, 34, '0'), 'UTF8')), 'hex'),
       :base_ms - 60000,
       :base_ms - 3000000 + g,
       :base_ms - 60000
FROM generate_series(1, :n) AS g;

INSERT INTO runtime_endpoints (id, machine_id, provider_key, source, agent_id, label,
                               endpoint_base_url, auth_type, auth_token, model_alias,
                               network_scope, probe_path, status, lease_expires_at,
                               last_checked_at, last_healthy_at, health_error,
                               created_at, updated_at)
SELECT 'rep_01JBENCH' || lpad(g::text, 18, '0'),
       'mach_01JBENCH' || lpad(g::text, 18, '0'),
       'qvac', 'agent',
       'mag_01JBENCH' || lpad(g::text, 18, '0'),
       'QVAC runtime',
       'http://127.0.0.1:9',
       'none', NULL, NULL,
       'loopback', '/v1/models', 'active',
       :lease_ms,
       NULL, NULL, NULL,
       :base_ms - 3000000 + g,
       :base_ms - 60000
FROM generate_series(1, :n) AS g;

-- Some audit history, so the audit insert does not land in an empty table and indexes.
INSERT INTO audit_events (id, actor, type, resource_type, resource_id, machine_id, payload, created_at)
SELECT 'evt_01JBENCH' || lpad(g::text, 18, '0'),
       'api', 'machine-agent.enrolled', 'machine-agent',
       'mag_01JBENCH' || lpad(g::text, 18, '0'),
       'mach_01JBENCH' || lpad(g::text, 18, '0'),
       '{"label":"Machine runtime agent","allowedProviderKeys":["qvac"]}',
       :base_ms - 3000000 + g
FROM generate_series(1, :n) AS g;

COMMIT;
VACUUM ANALYZE machines;
VACUUM ANALYZE machine_agents;
VACUUM ANALYZE runtime_endpoints;
VACUUM ANALYZE audit_events;
