-- Ceiling for POST /api/v1/machine-agents/heartbeat (one endpoint entry, leaseSeconds 120):
-- exactly the statements and transaction shape of src/agents/service.rs heartbeat.
--
-- Run with: pgbench -M prepared -n -c <wrk connections> -j 2 -T <secs>
--             -D n=<machines> -D now=<epoch ms>
-- Ids are built from a random integer in SQL because pgbench \set only makes numbers.
-- `now` is fixed for the run (the server binds app.clock.now_ms(); the value does not change
-- the plan or the work). Distinct-agent semantics: random ids over 10,000 agents with ~16-32
-- clients rarely collide, as in the wrk script that walks the agents in order.
\set i random(1, :n)
\set r random(1, 9223372036854775806)
\set lease :now + 120000
-- 3-6. src/agents/store.rs get_with_machine: the agent and its machine in one SELECT, on the
--      connection the transaction then uses (no autocommit round trip of its own); Gate B's
--      identity re-verification is the in-process MCR cache (no SQL)
SELECT a.id, a.machine_id, a.label, a.allowed_provider_keys, a.status, a.token_hash, a.last_seen_at,
     a.created_at, a.updated_at, m.id, m.display_name, m.status, m.owner_id, m.identity_ref,
     m.identity_proof, m.machine_type, m.runtime_profile, m.capabilities, m.labels, m.policy_ids,
     m.skill_keys, m.created_at, m.updated_at, m.revision
     FROM machine_agents a JOIN machines m ON m.id = a.machine_id
     WHERE a.id = ('mag_01JBENCH' || lpad(:i::text, 18, '0'));
-- 9. src/store/mod.rs Store::begin_on (sqlx sends BEGIN)
BEGIN;
-- src/agents/store.rs touch
UPDATE machine_agents SET status = 'active', last_seen_at = :now, updated_at = :now
         WHERE id = ('mag_01JBENCH' || lpad(:i::text, 18, '0')) AND status <> 'revoked';
-- src/runtime/store.rs upsert (Owner::Agent; spec from the entry: label 'QVAC runtime', auth none,
-- loopback, probe /v1/models, status active; new id 'rep_' + ULID, here 'rep_' + random)
INSERT INTO runtime_endpoints
             (id, machine_id, provider_key, source, agent_id, label, endpoint_base_url, auth_type,
              auth_token, model_alias, network_scope, probe_path, status, lease_expires_at,
              created_at, updated_at)
         VALUES ('rep_' || :r, ('mach_01JBENCH' || lpad(:i::text, 18, '0')), 'qvac', 'agent', ('mag_01JBENCH' || lpad(:i::text, 18, '0')), 'QVAC runtime', 'http://127.0.0.1:9', 'none', NULL, NULL, 'loopback', '/v1/models', 'active', :lease, :now, :now)
         ON CONFLICT (machine_id, provider_key) DO UPDATE SET
             source = excluded.source, agent_id = excluded.agent_id, label = excluded.label,
             endpoint_base_url = excluded.endpoint_base_url,
             auth_token = CASE
                 WHEN excluded.auth_type = 'none' THEN NULL
                 WHEN excluded.auth_token IS NOT NULL THEN excluded.auth_token
                 WHEN runtime_endpoints.auth_type = excluded.auth_type THEN runtime_endpoints.auth_token
                 ELSE NULL END,
             auth_type = excluded.auth_type, model_alias = excluded.model_alias,
             network_scope = excluded.network_scope, probe_path = excluded.probe_path,
             status = excluded.status, lease_expires_at = excluded.lease_expires_at,
             updated_at = excluded.updated_at
         RETURNING id, machine_id, provider_key, source, agent_id, label, endpoint_base_url, auth_type,
     auth_token, model_alias, network_scope, probe_path, status, lease_expires_at, last_checked_at,
     last_healthy_at, health_error, created_at, updated_at;
-- src/audit/store.rs insert (via audit::record; id 'evt_' + ULID, here 'evt_' + random)
INSERT INTO audit_events
             (id, actor, type, resource_type, resource_id, machine_id, payload, created_at)
         VALUES ('evt_' || :r, 'api', 'machine-agent.heartbeat', 'machine-agent', ('mag_01JBENCH' || lpad(:i::text, 18, '0')), ('mach_01JBENCH' || lpad(:i::text, 18, '0')), '{"endpoints":["qvac"],"leaseSeconds":120}', :now);
-- src/runtime/store.rs list_for_agent
SELECT id, machine_id, provider_key, source, agent_id, label, endpoint_base_url, auth_type,
     auth_token, model_alias, network_scope, probe_path, status, lease_expires_at, last_checked_at,
     last_healthy_at, health_error, created_at, updated_at FROM runtime_endpoints WHERE agent_id = ('mag_01JBENCH' || lpad(:i::text, 18, '0')) ORDER BY provider_key;
-- src/http/idempotency.rs commit -> tx.commit() (no Idempotency-Key on heartbeats)
COMMIT;
