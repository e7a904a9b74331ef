-- Ceiling for POST /api/v1/market/orders (pairing token, no quote cited, the 0.01 USDT bench
-- service): every statement of src/orders/service.rs create, in its autocommit/BEGIN…COMMIT
-- shape, including the pairing's row lock that serialises its orders.
--
-- Run with: pgbench -M prepared -n -c <clients> -j 2 -T <secs> -D pairings=<16 or 1>
--             -D now=<epoch ms> -D day=<start of the UTC day, ms> -D input=… -D payment=…
--             -D snapshot=… -D amount=… -D audit=… -D constraints=… -D discovery=…
-- pairings=16: each transaction on a random one of the 16 order pairings (the spread case);
-- pairings=1: all on pairing 1, so every transaction waits for the one lock (the serialised
-- case). The JSON texts are those of an order the server created in the same run
-- (bench/market.py pgvars order; the task's constraints and discovery as the
-- server stored them). Between measurements run.sh deletes the orders made, so the
-- daily-spend read starts from the same rows on both sides.
\set p random(1, :pairings)
\set r random(1, 9223372036854775806)
-- src/pairings/auth.rs authenticate -> src/pairings/store.rs get
SELECT id, machine_id, agent_address, agent_did, agent_provider, agent_role, description,
     status, verification, delegation_policy, policy_hash, session_id, session_token_id,
     session_issued_at, session_expires_at, token_last_four, created_at, updated_at, revision FROM agent_pairings WHERE id = ('apr_01JBMRKT' || lpad(:p::text, 18, '0'));
-- 3. src/machines/service.rs gate_c -> src/machines/store.rs get (MCR: the warm cache)
SELECT id, display_name, status, owner_id, identity_ref, identity_proof, machine_type,
     runtime_profile, capabilities, labels, policy_ids, skill_keys, created_at, updated_at, revision FROM machines WHERE id = ('mach_01JBMRKT' || lpad(:p::text, 18, '0'));
-- 4. src/catalog/service.rs skill_states -> src/catalog/store.rs all
SELECT skill_key, enabled, settings, credentials, updated_at FROM skill_configs ORDER BY skill_key;
-- 8. src/catalog/service.rs MachineScope::of -> src/runtime/store.rs all_for_machine
SELECT id, machine_id, provider_key, source, agent_id, label, endpoint_base_url, auth_type,
     auth_token, model_alias, network_scope, probe_path, status, lease_expires_at, last_checked_at,
     last_healthy_at, health_error, created_at, updated_at FROM runtime_endpoints WHERE machine_id = ('mach_01JBMRKT' || lpad(:p::text, 18, '0')) ORDER BY provider_key;
-- 9. app.store.begin()
BEGIN;
-- src/store/mod.rs lock_row (PostgreSQL: FOR UPDATE)
SELECT id FROM agent_pairings WHERE id = ('apr_01JBMRKT' || lpad(:p::text, 18, '0')) FOR UPDATE;
-- src/orders/store.rs spent_since
SELECT amount FROM market_orders
         WHERE agent_pairing_id = ('apr_01JBMRKT' || lpad(:p::text, 18, '0')) AND created_at >= :day AND status NOT IN ('cancelled', 'failed');
-- src/orders/store.rs insert
INSERT INTO market_orders (id, machine_id, agent_pairing_id, search_id, quote_id, service_id,
     skill_key, provider_key, service_type, operation, execution_mode, integration_status, status,
     input, budget, amount, currency, payment, service_snapshot, task_id, route_id, run_id,
     outcome_id, handoff, error_message, cancel_reason, created_at, updated_at)
         VALUES ('ord_b' || :r, ('mach_01JBMRKT' || lpad(:p::text, 18, '0')), ('apr_01JBMRKT' || lpad(:p::text, 18, '0')), NULL, NULL, 'bench-order-svc', 'bench-order-skill', 'benchpay', 'machine.commerce', 'run', 'native', 'native', 'created',
                 :input, NULL, :amount, 'USDT', :payment, :snapshot, 'tsk_b' || :r, NULL, NULL,
                 NULL, NULL, NULL, NULL, :now, :now);
-- src/tasks/store.rs insert_task (via tasks::insert_internal)
INSERT INTO tasks (id, machine_id, service_type, operation, task_type, status, input,
     constraints, discovery, route_id, outcome_id, order_id, created_at, updated_at)
         VALUES ('tsk_b' || :r, ('mach_01JBMRKT' || lpad(:p::text, 18, '0')), 'machine.commerce', 'run', 'market-order', 'queued', :input, :constraints, :discovery, NULL, NULL, 'ord_b' || :r, :now, :now);
-- src/audit/store.rs insert (via audit::record)
INSERT INTO audit_events
             (id, actor, type, resource_type, resource_id, machine_id, payload, created_at)
         VALUES ('evt_o' || :r, 'api', 'market.order.created', 'market-order', 'ord_b' || :r, ('mach_01JBMRKT' || lpad(:p::text, 18, '0')), :audit, :now);
-- src/http/idempotency.rs commit -> tx.commit()
COMMIT;
