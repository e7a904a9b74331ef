-- Ceiling for GET /api/v1/machines/{id}: exactly the SQL the handler runs, nothing else.
--
-- Handler path: src/machines/routes.rs read -> src/machines/service.rs get
--   -> find -> src/machines/store.rs get   (one SELECT on the pool, autocommit)
--   -> identity::reverify (src/identity/service.rs) -> app.mcr.resolve: in-process cache,
--      no SQL (the bench warms the cache and sets PEAQOS_MCR_CACHE_TTL_MS=3600000).
-- The server's pool additionally sends a Sync round trip on every acquire
-- (sqlx test_before_acquire, default true); that is not SQL and is not reproduced here.
--
-- Run with: pgbench -M prepared -n -c <wrk connections> -j 2 -T <secs> -D n=<machines>
-- The id is built from a random integer in SQL because pgbench \set only makes numbers;
-- the concatenation happens once per execution and costs microseconds.
\set i random(1, :n)
-- src/machines/store.rs get (COLUMNS)
SELECT id, display_name, status, owner_id, identity_ref, identity_proof, machine_type,
     runtime_profile, capabilities, labels, policy_ids, skill_keys, created_at, updated_at, revision FROM machines WHERE id = ('mach_01JBENCH' || lpad(:i::text, 18, '0'));
