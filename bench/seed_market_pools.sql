-- The consumable pools of the market benches, cloned from rows the server itself wrote through
-- the API (run.sh creates them first), so every column is in exactly the server's format:
--   * tasks tsk_01JBMRKT<1..tasks> (status resolved) with their selected routes
--     rte_01JBMRKT<n>, on machine ((n - 1) % m) + 1: one task execute consumes one (a route
--     runs once). Template: :tpl_task, resolved through the API on machine 1.
--   * orders ord_01JBMRKT<1..orders> (payment_pending) with their intent_created payments
--     pay_01JBMRKT<n>, on payment pairing m + ((n - 1) % m) + 1: one payment proof consumes one
--     (its own order and its own transfer). Template: :tpl_order with its payment-intent,
--     created through the API on pairing m + 1.
-- psql variables: m, tasks, orders, tpl_task, tpl_order.
\set ON_ERROR_STOP on
BEGIN;

INSERT INTO tasks (id, machine_id, service_type, operation, task_type, status, input,
                   constraints, discovery, route_id, outcome_id, order_id, created_at, updated_at)
SELECT 'tsk_01JBMRKT' || lpad(g::text, 18, '0'),
       'mach_01JBMRKT' || lpad((((g - 1) % :m) + 1)::text, 18, '0'),
       t.service_type, t.operation, t.task_type, t.status, t.input, t.constraints, t.discovery,
       'rte_01JBMRKT' || lpad(g::text, 18, '0'), t.outcome_id, t.order_id,
       t.created_at + g, t.updated_at + g
FROM tasks t, generate_series(1, :tasks) AS g
WHERE t.id = :'tpl_task';

INSERT INTO task_routes (id, machine_id, task_id, selected_skill_key, selected_service_id,
                         execution_mode, integration_status, status, reason, score,
                         fallback_chain, handoff, resolution, order_id, created_at, updated_at)
SELECT 'rte_01JBMRKT' || lpad(g::text, 18, '0'),
       'mach_01JBMRKT' || lpad((((g - 1) % :m) + 1)::text, 18, '0'),
       'tsk_01JBMRKT' || lpad(g::text, 18, '0'),
       r.selected_skill_key, r.selected_service_id, r.execution_mode, r.integration_status,
       r.status, r.reason, r.score, r.fallback_chain, r.handoff, r.resolution, r.order_id,
       r.created_at + g, r.updated_at + g
FROM tasks t JOIN task_routes r ON r.id = t.route_id, generate_series(1, :tasks) AS g
WHERE t.id = :'tpl_task';

INSERT INTO market_orders (id, machine_id, agent_pairing_id, search_id, quote_id, service_id,
                           skill_key, provider_key, service_type, operation, execution_mode,
                           integration_status, status, input, budget, amount, currency, payment,
                           service_snapshot, task_id, route_id, run_id, outcome_id, handoff,
                           error_message, cancel_reason, created_at, updated_at)
SELECT 'ord_01JBMRKT' || lpad(g::text, 18, '0'),
       'mach_01JBMRKT' || lpad((((g - 1) % :m) + 1)::text, 18, '0'),
       'apr_01JBMRKT' || lpad((:m + ((g - 1) % :m) + 1)::text, 18, '0'),
       o.search_id, o.quote_id, o.service_id, o.skill_key, o.provider_key, o.service_type,
       o.operation, o.execution_mode, o.integration_status, o.status, o.input, o.budget,
       o.amount, o.currency, o.payment, o.service_snapshot, o.task_id, o.route_id, o.run_id,
       o.outcome_id, o.handoff, o.error_message, o.cancel_reason,
       o.created_at + g, o.updated_at + g
FROM market_orders o, generate_series(1, :orders) AS g
WHERE o.id = :'tpl_order';

INSERT INTO market_payments (id, order_id, machine_id, status, rail, amount, currency, notes,
                             proof, transaction_key, release_transaction_hash,
                             refund_transaction_hash, refund_reason, created_at, updated_at)
SELECT 'pay_01JBMRKT' || lpad(g::text, 18, '0'),
       'ord_01JBMRKT' || lpad(g::text, 18, '0'),
       'mach_01JBMRKT' || lpad((((g - 1) % :m) + 1)::text, 18, '0'),
       p.status, p.rail, p.amount, p.currency, p.notes, p.proof, p.transaction_key,
       p.release_transaction_hash, p.refund_transaction_hash, p.refund_reason,
       p.created_at + g, p.updated_at + g
FROM market_payments p, generate_series(1, :orders) AS g
WHERE p.order_id = :'tpl_order';

COMMIT;
VACUUM ANALYZE tasks;
VACUUM ANALYZE task_routes;
VACUUM ANALYZE market_orders;
VACUUM ANALYZE market_payments;
