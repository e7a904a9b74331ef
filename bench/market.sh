# bench/market.sh — the market half of the bench, sourced by bench/run.sh (its variables and
# helpers: log, die, wants, start_server, stop_server, run_wrk, run_pgbench, psql_q, record_rss,
# cpu_snapshot, PIDS, ...). See bench/README.md, "The market benches".
#
# 1. Starts the fake runtime (bench/market-tools fake_runtime) and, for `proof`, Anvil with
#    TestToken deployed (tests/evm: install.sh, compile.js, contracts/TestToken.sol).
# 2. Generates BENCH_SERVICES catalogue services (bench/market.py catalog) and seeds the market
#    machines, agents, endpoints and pairings (bench/seed_market.sql).
# 3. Replaces the server by one that loads that catalogue, timing its start-up (BENCH_STARTUP_REPEAT
#    starts each with and without the catalogue) and reading its RSS.
# 4. Checks every seeded path once through the API, creates one task and one paid order through
#    the API and clones them into the consumable pools (bench/seed_market_pools.sql), makes the
#    real transfers.
# 5. Measures search, execute, order, order1, proof, each as REPEAT (server, ceiling) pairs.

MARKET_M=${BENCH_MARKET_M:-16}
SERVICES=${BENCH_SERVICES:-10000}
SEARCH_TYPES=${BENCH_SEARCH_TYPES:-1}
EXEC_TASKS=${BENCH_EXEC_TASKS:-80000}
PROOFS=${BENCH_PROOFS:-80000}
STARTUP_REPEAT=${BENCH_STARTUP_REPEAT:-3}
RUNTIME_PORT=$((PORT + 3))
ANVIL_PORT=$((PORT + 4))
RUNTIME_URL="http://127.0.0.1:$RUNTIME_PORT"
ANVIL_URL="http://127.0.0.1:$ANVIL_PORT"
AGENT=0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed
PAYEE=0x209693bc6afc0c5328ba36faf03c514ef312287c
MARKET_PY="$BENCH_DIR/market.py"
CATALOG_DIR="$RESULTS/catalog"
TOKENS="$RESULTS/pairing-tokens.txt"
TX_HASHES="$RESULTS/tx-hashes.txt"
API="http://127.0.0.1:$PORT"

pad18() { printf '%018d' "$1"; }
# api NAME METHOD PATH [BODY [TOKEN]] -> the HTTP status; the answer in results/verify-NAME.json
api() {
    local name=$1 method=$2 path=$3 body=${4:-} token=${5:-}
    local args=(-sS -o "$RESULTS/verify-$name.json" -w '%{http_code}' --max-time 20 -X "$method")
    [ -n "$body" ] && args+=(-H 'Content-Type: application/json' -d "$body")
    [ -n "$token" ] && args+=(-H "x-agent-pairing-token: $token")
    curl "${args[@]}" "$API$path"
}
expect() { # name status-wanted status-got
    [ "$3" = "$2" ] || die "$1 answered $3 (wanted $2): $(head -c 600 "$RESULTS/verify-$1.json")"
}
jget() { # file python-expression-on-d
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"
}
token_of() { sed -n "${1}p" "$TOKENS"; }
requests_of() { grep '^BENCH_JSON ' "$1" | sed -E 's/.*"requests":([0-9]+).*/\1/'; }

# ---------------------------------------------------------------- 1. fake runtime, Anvil
log "starting the fake runtime on $RUNTIME_URL"
$SERVER_CPUS "$TOOLS_DIR/fake_runtime" "127.0.0.1:$RUNTIME_PORT" >"$RESULTS/fake-runtime.log" 2>&1 &
RUNTIME_PID=$!
PIDS+=("$RUNTIME_PID")
wait_http "$RUNTIME_URL/v1/models" 10 || die "fake runtime did not start"

TOKEN_ADDRESS=0x0000000000000000000000000000000000000001
PAYER=""
ANVIL_PID=""
ANVIL_VERSION=""
if wants proof; then
    command -v node >/dev/null || die "node is required for the proof bench (apt-get install nodejs npm)"
    ANVIL_BIN=$(timeout 600 bash "$ROOT/tests/evm/install.sh" 2>"$RESULTS/evm-install.log") \
        || die "tests/evm/install.sh failed: $(tail -n 5 "$RESULTS/evm-install.log")"
    [ -x "$ANVIL_BIN" ] || die "no Anvil binary at $ANVIL_BIN"
    ANVIL_VERSION=$("$ANVIL_BIN" --version 2>/dev/null | head -n 1)
    [ -f "$ROOT/tests/evm/compile.js" ] && [ -f "$ROOT/tests/evm/contracts/TestToken.sol" ] \
        || die "tests/evm/compile.js or tests/evm/contracts/TestToken.sol missing"
    log "compiling TestToken with solc-js"
    timeout 300 node "$ROOT/tests/evm/compile.js" "$ROOT/tests/evm/contracts/TestToken.sol" TestToken \
        "$RESULTS/TestToken.json" >"$RESULTS/solc.log" 2>&1 || die "solc failed: $(tail -n 5 "$RESULTS/solc.log")"
    log "starting Anvil on $ANVIL_URL ($ANVIL_VERSION)"
    "$ANVIL_BIN" --host 127.0.0.1 --port "$ANVIL_PORT" --silent >"$RESULTS/anvil.log" 2>&1 &
    ANVIL_PID=$!
    PIDS+=("$ANVIL_PID")
    for _ in $(seq 1 100); do
        curl -fsS -o /dev/null --max-time 1 -H 'Content-Type: application/json' \
            -d '{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}' "$ANVIL_URL" 2>/dev/null && break
        sleep 0.1
    done
    TOKEN_ADDRESS=$(timeout 120 python3 "$MARKET_PY" evm deploy "$ANVIL_URL" "$RESULTS/TestToken.json" "$RESULTS/token.json") \
        || die "deploying TestToken failed"
    TOKEN_ADDRESS=$(echo "$TOKEN_ADDRESS" | tr 'A-F' 'a-f')
    PAYER=$(jget "$RESULTS/token.json" 'd["payer"].lower()')
    log "TestToken at $TOKEN_ADDRESS, payer $PAYER"
fi

# ---------------------------------------------------------------- 2. catalogue and seed
log "generating $SERVICES catalogue services ($SEARCH_TYPES service type(s)) in $CATALOG_DIR"
rm -rf "$CATALOG_DIR"
CATALOG_SUMMARY=$(python3 "$MARKET_PY" catalog "$CATALOG_DIR" "$SERVICES" "$SEARCH_TYPES" "$TOKEN_ADDRESS" "$PAYEE") \
    || die "catalogue generation failed"
CATALOG_BYTES=$(du -sb "$CATALOG_DIR" | cut -f1)
timeout 120 "$SERVER_BIN" catalog check "$CATALOG_DIR" >"$RESULTS/catalog-check.log" 2>&1 \
    || die "the generated catalogue is invalid: $(head -n 5 "$RESULTS/catalog-check.log")"
log "catalogue: $CATALOG_SUMMARY; $(head -n 1 "$RESULTS/catalog-check.log")"

IFS=$'\t' read -r POLICY POLICY_HASH < <(python3 "$MARKET_PY" policy)
python3 "$MARKET_PY" tokens "$SESSION_SECRET" "$MARKET_M" "$AGENT" "$TOKENS"
NOW_MS=$(($(date +%s%N) / 1000000))
log "seeding $MARKET_M market machines, agents, endpoints, $((2 * MARKET_M)) pairings"
psql_q -v m="$MARKET_M" -v base_ms="$NOW_MS" -v lease_ms="$((NOW_MS + 86400000))" -v signer="$SIGNER" \
    -v runtime_url="$RUNTIME_URL" -v agent="$AGENT" -v policy="$POLICY" -v policy_hash="$POLICY_HASH" \
    -f "$BENCH_DIR/seed_market.sql" >"$RESULTS/seed-market.log" 2>&1 \
    || die "market seeding failed: $(tail -n 5 "$RESULTS/seed-market.log")"

# ---------------------------------------------------------------- 3. start-up with the catalogue
MARKET_ENV=(PEAQOS_CATALOG_DIR="$CATALOG_DIR")
[ -n "$ANVIL_PID" ] && MARKET_ENV+=(PEAQOS_PAYMENT_RPC_URL="$ANVIL_URL")
log "stopping the first server; timing start-ups ($STARTUP_REPEAT without, $STARTUP_REPEAT with the catalogue)"
stop_server
startup_ms() { # log-file [env...]: one start; STARTUP_LAST = ms until /health answers 200
    local logfile=$1
    shift
    local t0 t1
    t0=$(($(date +%s%N) / 1000000))
    start_server "$logfile" "$@"
    t1=$(python3 "$MARKET_PY" wait "$API/health" 120) || die "server did not start: $(tail -n 5 "$RESULTS/$logfile")"
    STARTUP_LAST=$((t1 - t0))
}
STARTUP_BUILTIN=()
STARTUP_CATALOG=()
for i in $(seq 1 "$STARTUP_REPEAT"); do
    startup_ms server-startup.log
    STARTUP_BUILTIN+=("$STARTUP_LAST")
    RSS_BUILTIN_KIB=$(rss_kib "$SERVER_PID" VmRSS)
    stop_server
done
for i in $(seq 1 "$STARTUP_REPEAT"); do
    startup_ms server-market.log "${MARKET_ENV[@]}"
    STARTUP_CATALOG+=("$STARTUP_LAST")
    RSS_CATALOG_KIB=$(rss_kib "$SERVER_PID" VmRSS)
    HWM_CATALOG_KIB=$(rss_kib "$SERVER_PID" VmHWM)
    [ "$i" = "$STARTUP_REPEAT" ] || stop_server
done
[ "$(readlink "/proc/$SERVER_PID/exe")" = "$(readlink -f "$SERVER_BIN")" ] || die "pid $SERVER_PID is not the server"
CPU_PID=$SERVER_PID
log "start-up to /health: built-in catalogue ${STARTUP_BUILTIN[*]} ms (RSS $RSS_BUILTIN_KIB KiB);" \
    "with $SERVICES services ${STARTUP_CATALOG[*]} ms (RSS $RSS_CATALOG_KIB KiB, peak $HWM_CATALOG_KIB KiB)"

# ---------------------------------------------------------------- 4. check through the API, pools
MCR_BEFORE=$(mcr_lookups)
for i in $(seq 1 "$MARKET_M"); do
    code=$(api machine GET "/api/v1/machines/mach_01JBMRKT$(pad18 "$i")")
    expect machine 200 "$code"
done
MCR_MARKET_WARM=$(mcr_lookups)
[ $((MCR_MARKET_WARM - MCR_BEFORE)) -ge "$MARKET_M" ] || die "MCR cache not warm for the market machines"

# A heartbeat of market agent 1 leases the endpoint the seed wrote (same row, through the API).
code=$(api heartbeat POST /api/v1/machine-agents/heartbeat \
    "{\"machineId\":\"mach_01JBMRKT$(pad18 1)\",\"agentId\":\"mag_01JBMRKT$(pad18 1)\",\"agentToken\":\"mat_benchmrkt$(printf '%030d' 1)\",\"leaseSeconds\":86400,\"endpoints\":[{\"providerKey\":\"qvac\",\"endpointBaseUrl\":\"$RUNTIME_URL\",\"modelAlias\":\"bench-llm\"}]}")
expect heartbeat 200 "$code"
[ "$(psql_q -At -c "SELECT endpoint_base_url || ' ' || status || ' ' || coalesce(model_alias, '-') FROM runtime_endpoints WHERE machine_id = 'mach_01JBMRKT$(pad18 1)'")" = "$RUNTIME_URL active bench-llm" ] \
    || die "the heartbeat's endpoint differs from the seeded one"

SEARCH_BODY='{"serviceType":"device.control","operation":"run","region":"eu","maxResults":10,"budget":{"max":5,"currency":"USDT"}}'
if wants search; then
    code=$(api search POST /api/v1/market/search "$SEARCH_BODY" "$(token_of 1)")
    expect search 201 "$code"
    [ "$(jget "$RESULTS/verify-search.json" 'len(d["item"]["quotes"])')" = 10 ] || die "the search quoted fewer than 10 services"
    python3 "$MARKET_PY" pgvars search "$RESULTS/verify-search.json" >"$RESULTS/search.pgvars" || die "pgvars search"
fi

if wants order || wants order1; then
    code=$(api order POST /api/v1/market/orders \
        "{\"machineId\":\"mach_01JBMRKT$(pad18 1)\",\"agentPairingId\":\"apr_01JBMRKT$(pad18 1)\",\"serviceId\":\"bench-order-svc\",\"input\":{\"prompt\":\"Summarise the last maintenance log.\"}}" \
        "$(token_of 1)")
    expect order 201 "$code"
    python3 "$MARKET_PY" pgvars order "$RESULTS/verify-order.json" >"$RESULTS/order.pgvars" || die "pgvars order"
    task_id=$(jget "$RESULTS/verify-order.json" 'd["item"]["taskId"]')
    psql_q -At -c "SELECT 'constraints=' || constraints || E'\ndiscovery=' || discovery FROM tasks WHERE id = '$task_id'" >>"$RESULTS/order.pgvars"
    grep -q '^discovery=' "$RESULTS/order.pgvars" || die "the order's task is missing"
fi

TPL_TASK=""
if wants execute; then
    code=$(api task POST "/api/v1/machines/mach_01JBMRKT$(pad18 1)/tasks" \
        '{"serviceType":"compute.marketplace","taskType":"chat","operation":"run-private-inference","input":{"prompt":"Summarise the last maintenance log in one sentence."}}')
    expect task 201 "$code"
    TPL_TASK=$(jget "$RESULTS/verify-task.json" 'd["item"]["id"]')
    code=$(api resolve POST "/api/v1/machines/mach_01JBMRKT$(pad18 1)/tasks/$TPL_TASK/resolve" '{}')
    expect resolve 201 "$code"
    [ "$(jget "$RESULTS/verify-resolve.json" 'd["item"]["selectedServiceId"] + " " + d["item"]["status"]')" = "qvac-private-inference selected" ] \
        || die "the task did not resolve to the qvac runtime: $(head -c 400 "$RESULTS/verify-resolve.json")"
    # The call the engine makes (src/engine/request.rs runtime): the ceiling client sends it too.
    printf '%s' '{"model":"bench-llm","messages":[{"role":"user","content":"Summarise the last maintenance log in one sentence."}]}' >"$RESULTS/runtime-body.json"
fi

TPL_ORDER=""
if wants proof; then
    code=$(api pay-order POST /api/v1/market/orders \
        "{\"machineId\":\"mach_01JBMRKT$(pad18 1)\",\"agentPairingId\":\"apr_01JBMRKT$(pad18 $((MARKET_M + 1)))\",\"serviceId\":\"bench-order-svc\",\"input\":{\"prompt\":\"Summarise the last maintenance log.\"}}" \
        "$(token_of $((MARKET_M + 1)))")
    expect pay-order 201 "$code"
    TPL_ORDER=$(jget "$RESULTS/verify-pay-order.json" 'd["item"]["id"]')
    code=$(api intent POST "/api/v1/market/orders/$TPL_ORDER/payment-intent" '{}' "$(token_of $((MARKET_M + 1)))")
    expect intent 201 "$code"
    [ "$(jget "$RESULTS/verify-intent.json" 'd["item"]["status"] + " " + d["item"]["rail"]["metadata"]["rawAmount"]')" = "intent_created 10000" ] \
        || die "unexpected payment intent: $(head -c 400 "$RESULTS/verify-intent.json")"
fi

log "seeding the pools: ${TPL_TASK:+$EXEC_TASKS resolved tasks }${TPL_ORDER:+$PROOFS payment-pending orders}"
psql_q -v m="$MARKET_M" -v tasks="$([ -n "$TPL_TASK" ] && echo "$EXEC_TASKS" || echo 0)" \
    -v orders="$([ -n "$TPL_ORDER" ] && echo "$PROOFS" || echo 0)" \
    -v tpl_task="${TPL_TASK:-none}" -v tpl_order="${TPL_ORDER:-none}" \
    -f "$BENCH_DIR/seed_market_pools.sql" >"$RESULTS/seed-pools.log" 2>&1 \
    || die "pool seeding failed: $(tail -n 5 "$RESULTS/seed-pools.log")"

export BENCH_TOKENS="$TOKENS" BENCH_MARKET_M="$MARKET_M"
EXEC_USED=0
PROOF_USED=0
TRANSFER_S=0
if wants execute; then
    before=$(curl -fsS "$RUNTIME_URL/stats" | jget /dev/stdin 'd["completions"]')
    code=$(api execute POST "/api/v1/machines/mach_01JBMRKT$(pad18 1)/tasks/tsk_01JBMRKT$(pad18 1)/execute" '{}')
    expect execute 200 "$code"
    after=$(curl -fsS "$RUNTIME_URL/stats" | jget /dev/stdin 'd["completions"]')
    [ "$(jget "$RESULTS/verify-execute.json" 'd["item"]["status"]')" = completed ] && [ "$after" = $((before + 1)) ] \
        || die "task execute did not complete against the fake runtime: $(head -c 400 "$RESULTS/verify-execute.json")"
    EXEC_USED=1
fi
if wants proof; then
    log "making $PROOFS real ERC-20 transfers on Anvil"
    t0=$(date +%s)
    timeout 1200 python3 "$MARKET_PY" evm transfers "$ANVIL_URL" "$TOKEN_ADDRESS" "$PAYEE" 10000 "$PROOFS" "$TX_HASHES" \
        >"$RESULTS/transfers.log" 2>&1 || die "transfers failed: $(tail -n 5 "$RESULTS/transfers.log")"
    TRANSFER_S=$(($(date +%s) - t0))
    log "$(wc -l <"$TX_HASHES") transfers mined in ${TRANSFER_S}s"
    hash1=$(sed -n 1p "$TX_HASHES")
    code=$(api proof POST "/api/v1/market/orders/ord_01JBMRKT$(pad18 1)/payment-proof" \
        "{\"verificationMode\":\"rpc\",\"chain\":\"eip155:31337\",\"token\":\"USDT\",\"payerAddress\":\"$PAYER\",\"payeeAddress\":\"$PAYEE\",\"amount\":\"0.01\",\"tokenAddress\":\"$TOKEN_ADDRESS\",\"transactionHash\":\"$hash1\"}" \
        "$(token_of $((MARKET_M + 1)))")
    expect proof 200 "$code"
    [ "$(jget "$RESULTS/verify-proof.json" 'd["item"]["status"] + " " + d["item"]["proof"]["verificationMode"]')" = "held rpc" ] \
        || die "the proof did not hold the payment: $(head -c 400 "$RESULTS/verify-proof.json")"
    PROOF_USED=1
    export BENCH_TX_HASHES="$TX_HASHES" BENCH_PAYER="$PAYER" BENCH_PAYEE="$PAYEE" BENCH_TOKEN_ADDRESS="$TOKEN_ADDRESS"
fi
log "market paths verified through the API (machines, heartbeat${TPL_TASK:+, task create/resolve/execute}$(wants search && echo ', search')$(wants order || wants order1 && echo ', order')${TPL_ORDER:+, payment-intent, rpc payment proof})"

# ---------------------------------------------------------------- 5. measure
pgvars_args() { # file -> -D arguments
    PGVARS=()
    while IFS= read -r line; do PGVARS+=(-D "$line"); done <"$1"
}
# The orders the order benches made (server or pgbench) and their tasks, so both sides start from
# the same rows. Those tasks never ran, so nothing references them; the foreign-key checks are
# skipped (session_replication_role) because task_routes/task_outcomes/task_runs have no index on
# task_id and each check would scan them.
reset_orders() {
    psql_q -q -c "SET session_replication_role = replica" \
        -c "DELETE FROM tasks WHERE task_type = 'market-order' AND order_id IN (SELECT id FROM market_orders WHERE agent_pairing_id LIKE 'apr_01JBMRKT%' AND agent_pairing_id <= 'apr_01JBMRKT$(pad18 "$MARKET_M")')" \
        -c "DELETE FROM market_orders WHERE agent_pairing_id LIKE 'apr_01JBMRKT%' AND agent_pairing_id <= 'apr_01JBMRKT$(pad18 "$MARKET_M")'" \
        -c 'VACUUM ANALYZE market_orders, tasks' >/dev/null
}
# run a wrk measurement on a pool, then count what it used (completed + in flight at the end)
run_pool_wrk() { # name script used-var pool
    local name=$1 script=$2 var=$3 pool=$4
    export BENCH_START=${!var} BENCH_POOL=$pool
    run_wrk "$name" "$script" "$API"
    printf -v "$var" '%s' $(( ${!var} + $(requests_of "$RESULTS/$name.wrk.txt") + 2 * CONNS ))
}
run_load() { # name url [http_load arguments...]
    local name=$1 url=$2
    shift 2
    local before
    before=$(cpu_snapshot "$CPU_PID")
    timeout $((DURATION + 30)) $LOAD_CPUS "$TOOLS_DIR/http_load" --url "$url" --connections "$CONNS" \
        --threads "$THREADS" --duration "$DURATION" "$@" >"$RESULTS/$name.load.txt" 2>&1 \
        || die "http_load $name failed: $(tail -n 5 "$RESULTS/$name.load.txt")"
    grep -q '^BENCH_JSON ' "$RESULTS/$name.load.txt" || die "http_load $name printed no result"
    printf '%s\n%s\n%s\n%s\n' "$CLK_TCK" "$before" "$(cpu_snapshot "$CPU_PID")" "$(cut -d' ' -f1 /proc/loadavg)" >"$RESULTS/$name.cpu"
}

if wants search; then
    pgvars_args "$RESULTS/search.pgvars"
    SEARCH_ARGS=(-D pairings="$MARKET_M" -D expires="$(( $(date +%s%3N) + 300000 ))" "${PGVARS[@]}")
    run_wrk search-warmup market_search.lua "$API" "$WARMUP"
    for rep in $(seq 1 "$REPEAT"); do
        log "POST /api/v1/market/search ($rep/$REPEAT): server ${DURATION}s, then pgbench market_search.sql ${DURATION}s"
        psql_q -c 'VACUUM ANALYZE market_searches, market_quotes, audit_events' >/dev/null
        run_wrk "search-$rep" market_search.lua "$API"
        record_rss "search-$rep"
        psql_q -c 'VACUUM ANALYZE market_searches, market_quotes, audit_events' >/dev/null
        run_pgbench "search-ceiling-$rep" market_search.sql "${SEARCH_ARGS[@]}"
    done
fi

# execute and proof: their ceilings do not touch the database, so the tables are vacuumed once,
# before the warm-up, not before every pair (on a busy disk that vacuum takes a minute).
if wants execute; then
    psql_q -c 'VACUUM ANALYZE tasks, task_routes, task_runs, task_outcomes, audit_events' >/dev/null
    CPU_PID=$SERVER_PID
    run_pool_wrk execute-warmup task_execute.lua EXEC_USED "$EXEC_TASKS"
    CPU_PID=$RUNTIME_PID
    run_load execute-ceiling-warmup "$RUNTIME_URL/v1/chat/completions" --body-file "$RESULTS/runtime-body.json"
    for rep in $(seq 1 "$REPEAT"); do
        log "POST …/tasks/{id}/execute ($rep/$REPEAT): server ${DURATION}s, then bare reqwest -> fake runtime ${DURATION}s"
        CPU_PID=$SERVER_PID
        run_pool_wrk "execute-$rep" task_execute.lua EXEC_USED "$EXEC_TASKS"
        record_rss "execute-$rep"
        CPU_PID=$RUNTIME_PID
        run_load "execute-ceiling-$rep" "$RUNTIME_URL/v1/chat/completions" --body-file "$RESULTS/runtime-body.json"
    done
    CPU_PID=$SERVER_PID
    [ "$EXEC_USED" -le "$EXEC_TASKS" ] || log "WARNING: the task pool ran out ($EXEC_USED of $EXEC_TASKS): raise BENCH_EXEC_TASKS"
fi

for kind in order order1; do
    wants "$kind" || continue
    pairings=$([ "$kind" = order ] && echo "$MARKET_M" || echo 1)
    pgvars_args "$RESULTS/order.pgvars"
    ORDER_ARGS=(-D pairings="$pairings" -D day="$(( $(date +%s%3N) / 86400000 * 86400000 ))" "${PGVARS[@]}")
    export BENCH_ORDER_PAIRINGS=$pairings
    reset_orders
    run_wrk "$kind-warmup" order_create.lua "$API" "$WARMUP"
    for rep in $(seq 1 "$REPEAT"); do
        log "POST /api/v1/market/orders on $pairings pairing(s) ($rep/$REPEAT): server ${DURATION}s, then pgbench order_create.sql ${DURATION}s"
        reset_orders
        run_wrk "$kind-$rep" order_create.lua "$API"
        record_rss "$kind-$rep"
        reset_orders
        run_pgbench "$kind-ceiling-$rep" order_create.sql "${ORDER_ARGS[@]}"
    done
    reset_orders
done

if wants proof; then
    psql_q -c 'VACUUM ANALYZE market_orders, market_payments, audit_events' >/dev/null
    CPU_PID=$SERVER_PID
    run_pool_wrk proof-warmup payment_proof.lua PROOF_USED "$PROOFS"
    CPU_PID=$ANVIL_PID
    run_load proof-ceiling-warmup "$ANVIL_URL" --rpc-hashes "$TX_HASHES"
    for rep in $(seq 1 "$REPEAT"); do
        log "POST …/payment-proof rpc ($rep/$REPEAT): server ${DURATION}s, then bare eth_getTransactionReceipt -> Anvil ${DURATION}s"
        CPU_PID=$SERVER_PID
        run_pool_wrk "proof-$rep" payment_proof.lua PROOF_USED "$PROOFS"
        record_rss "proof-$rep"
        CPU_PID=$ANVIL_PID
        run_load "proof-ceiling-$rep" "$ANVIL_URL" --rpc-hashes "$TX_HASHES"
    done
    CPU_PID=$SERVER_PID
    [ "$PROOF_USED" -le "$PROOFS" ] || log "WARNING: the transfer pool ran out ($PROOF_USED of $PROOFS): raise BENCH_PROOFS"
fi

MCR_MARKET_AFTER=$(mcr_lookups)
HELD=$(psql_q -At -c "SELECT count(*) FROM market_payments WHERE status = 'held' AND id LIKE 'pay_01JBMRKT%'")
COMPLETIONS=$(curl -fsS "$RUNTIME_URL/stats" | jget /dev/stdin 'd["completions"]')
json_list() { local IFS=,; echo "[$*]"; }
cat >"$RESULTS/market.json" <<EOF
{"services": $SERVICES, "search_service_types": $SEARCH_TYPES, "catalog_summary": "$CATALOG_SUMMARY",
 "catalog_bytes": $CATALOG_BYTES, "market_machines": $MARKET_M,
 "startup_ms_builtin": $(json_list "${STARTUP_BUILTIN[@]}"), "startup_ms_catalog": $(json_list "${STARTUP_CATALOG[@]}"),
 "rss_after_start_builtin_kib": $RSS_BUILTIN_KIB, "rss_after_start_catalog_kib": $RSS_CATALOG_KIB,
 "hwm_after_start_catalog_kib": $HWM_CATALOG_KIB, "server_rss_end_kib": $(rss_kib "$SERVER_PID" VmRSS),
 "server_hwm_end_kib": $(rss_kib "$SERVER_PID" VmHWM),
 "exec_tasks_pool": $EXEC_TASKS, "exec_tasks_used": $EXEC_USED, "fake_runtime_completions": $COMPLETIONS,
 "proof_pool": $PROOFS, "proof_pool_used": $PROOF_USED, "payments_held": $HELD,
 "transfer_seconds": $TRANSFER_S, "anvil": "$ANVIL_VERSION", "token_address": "$TOKEN_ADDRESS"}
EOF
