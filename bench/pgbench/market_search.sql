-- Ceiling for POST /api/v1/market/search (pairing token, 10 quotes): every statement of the
-- handler path, in its autocommit/BEGIN…COMMIT shape. The ranking of the catalogue is in memory
-- (no SQL) and is what the server adds on top, with HTTP, JSON and the pool.
--
-- Run with: pgbench -M prepared -n -c <clients> -j 2 -T <secs> -D pairings=<m> -D now=<epoch ms>
--             -D expires=<now + quote TTL> -D payload=… -D task=… -D s0..s9=… -D q0..q9=… -D audit=…
-- The JSON texts (request payload, normalised task, the ten quote bodies, the audit payload) are
-- those of a search the server answered in the same run (bench/market.py pgvars search), so the
-- rows written here are the sizes the server writes; ids are built from a random integer.
\set p random(1, :pairings)
\set r random(1, 9223372036854775806)
-- src/pairings/auth.rs authenticate -> src/pairings/store.rs get (checks 5-8 of the token)
SELECT id, machine_id, agent_address, agent_did, agent_provider, agent_role, description,
     status, verification, delegation_policy, policy_hash, session_id, session_token_id,
     session_issued_at, session_expires_at, token_last_four, created_at, updated_at, revision FROM agent_pairings WHERE id = ('apr_01JBMRKT' || lpad(:p::text, 18, '0'));
-- src/machines/service.rs gate_c -> find -> src/machines/store.rs get (Gate B/C: the MCR cache, no SQL)
SELECT id, display_name, status, owner_id, identity_ref, identity_proof, machine_type,
     runtime_profile, capabilities, labels, policy_ids, skill_keys, created_at, updated_at, revision FROM machines WHERE id = ('mach_01JBMRKT' || lpad(:p::text, 18, '0'));
-- pairings::market_pairing: the token's pairing (no SQL)
-- src/catalog/service.rs MachineScope::of -> src/runtime/store.rs all_for_machine
SELECT id, machine_id, provider_key, source, agent_id, label, endpoint_base_url, auth_type,
     auth_token, model_alias, network_scope, probe_path, status, lease_expires_at, last_checked_at,
     last_healthy_at, health_error, created_at, updated_at FROM runtime_endpoints WHERE machine_id = ('mach_01JBMRKT' || lpad(:p::text, 18, '0')) ORDER BY provider_key;
-- src/catalog/service.rs skill_states -> src/catalog/store.rs all
SELECT skill_key, enabled, settings, credentials, updated_at FROM skill_configs ORDER BY skill_key;
-- src/market/service.rs search: app.store.begin()
BEGIN;
-- src/market/store.rs insert: the search
INSERT INTO market_searches (id, machine_id, agent_pairing_id, request_payload, normalized_task, status, created_at) VALUES ('srch_b' || :r, ('mach_01JBMRKT' || lpad(:p::text, 18, '0')), ('apr_01JBMRKT' || lpad(:p::text, 18, '0')), :payload, :task, 'completed', :now);
-- src/market/store.rs insert: all quotes in one statement
INSERT INTO market_quotes (id, search_id, position, service_id, expires_at, body, created_at) VALUES ('quo_b' || :r || '_0', 'srch_b' || :r, 0, :s0, :expires, :q0, :now), ('quo_b' || :r || '_1', 'srch_b' || :r, 1, :s1, :expires, :q1, :now), ('quo_b' || :r || '_2', 'srch_b' || :r, 2, :s2, :expires, :q2, :now), ('quo_b' || :r || '_3', 'srch_b' || :r, 3, :s3, :expires, :q3, :now), ('quo_b' || :r || '_4', 'srch_b' || :r, 4, :s4, :expires, :q4, :now), ('quo_b' || :r || '_5', 'srch_b' || :r, 5, :s5, :expires, :q5, :now), ('quo_b' || :r || '_6', 'srch_b' || :r, 6, :s6, :expires, :q6, :now), ('quo_b' || :r || '_7', 'srch_b' || :r, 7, :s7, :expires, :q7, :now), ('quo_b' || :r || '_8', 'srch_b' || :r, 8, :s8, :expires, :q8, :now), ('quo_b' || :r || '_9', 'srch_b' || :r, 9, :s9, :expires, :q9, :now);
-- src/audit/store.rs insert (via audit::record)
INSERT INTO audit_events
             (id, actor, type, resource_type, resource_id, machine_id, payload, created_at)
         VALUES ('evt_s' || :r, 'api', 'market.search.created', 'market-search', 'srch_b' || :r, ('mach_01JBMRKT' || lpad(:p::text, 18, '0')), :audit, :now);
-- src/http/idempotency.rs commit -> tx.commit() (no Idempotency-Key)
COMMIT;
