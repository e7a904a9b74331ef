#!/usr/bin/env bash
# bench/run.sh — load-test the orchestrator's hot endpoints against their ceilings, in one run.
#
#   bash bench/run.sh
#
# Builds, installs missing tools (wrk, pgbench), creates a fresh PostgreSQL database, starts a
# fake MCR and the server on loopback, seeds 10,000 machines/agents/endpoints, drives wrk against
# GET /health, GET /api/v1/machines/{id} and POST /api/v1/machine-agents/heartbeat, measures each
# endpoint's ceiling (bare axum for /health, pgbench running the handler's exact SQL for the two
# DB endpoints), prints a table and writes bench/results/latest.json. Everything it starts is
# stopped on exit and the bench database is dropped. See bench/README.md.
#
# Knobs (environment): BENCH_N (10000), BENCH_DURATION (12 s per measurement), BENCH_WARMUP (3 s),
# BENCH_WRK_THREADS (2), BENCH_CONNECTIONS (16), BENCH_REPEAT (3 server/ceiling pairs per
# endpoint; the pair with the median ratio is reported), BENCH_ONLY (health,machine,heartbeat:
# a comma-separated subset), BENCH_PIN (1 = server, bare axum and fake MCR
# on CPU 0, wrk and pgbench on CPU 1, PostgreSQL unpinned; 0 = no pinning), BENCH_PORT (18080),
# BENCH_SKIP_BUILD (0), BENCH_REV (unset = working tree), BENCH_DEADLINE_S (1800).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
RESULTS="$BENCH_DIR/results"
mkdir -p "$RESULTS"

N=${BENCH_N:-10000}
DURATION=${BENCH_DURATION:-12}
WARMUP=${BENCH_WARMUP:-3}
THREADS=${BENCH_WRK_THREADS:-2}
REPEAT=${BENCH_REPEAT:-3}
ONLY=${BENCH_ONLY:-health,machine,heartbeat}
CONNS=${BENCH_CONNECTIONS:-16}
PIN=${BENCH_PIN:-1}
PORT=${BENCH_PORT:-18080}
CEIL_PORT=$((PORT + 1))
MCR_PORT=$((PORT + 2))
PGHOST=127.0.0.1
PGPORT=5432
PGUSER=postgres
export PGHOST PGPORT PGUSER
DB=peaqos_bench
SIGNER=0x8ba1f109551bd432803012645ac136ddd64dba72
SESSION_SECRET=bench-fixed-pairing-session-secret-0123456789abcdef
# BENCH_REV=<git rev> benches a committed revision (extracted with git archive into
# bench/.snapshot/) instead of the working tree, e.g. while others have src/ mid-edit.
REV=${BENCH_REV:-}
if [ -n "$REV" ]; then
    COMMIT=$(git -C "$ROOT" rev-parse --verify "$REV^{commit}")
    SRC="$BENCH_DIR/.snapshot/src-$COMMIT"
    TARGET_DIR="$BENCH_DIR/.snapshot/target"
    DIRTY=false
else
    COMMIT=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
    SRC="$ROOT"
    TARGET_DIR="$ROOT/target"
    DIRTY=$( [ -n "$(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock migrations 2>/dev/null)" ] && echo true || echo false)
fi
SERVER_BIN="$TARGET_DIR/release/peaqos-orchestrator"
CEIL_BIN="$BENCH_DIR/ceiling-axum/target/release/ceiling-axum"
# The whole run must end: a watchdog terminates it after this many seconds.
DEADLINE_S=${BENCH_DEADLINE_S:-1800}

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- cleanup
PIDS=()
DB_CREATED=0
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "$DB_CREATED" = 1 ]; then
        timeout 30 dropdb --if-exists --force "$DB" 2>/dev/null || log "could not drop $DB"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

( trap 'kill "$sp" 2>/dev/null; exit 0' TERM
  sleep "$DEADLINE_S" & sp=$!
  wait "$sp" && kill -TERM $$ 2>/dev/null ) &
PIDS+=($!)

# Pinning: on 2 cores the load generator competes with the server (see README).
if [ "$PIN" = 1 ]; then
    SERVER_CPUS="taskset -c 0"
    LOAD_CPUS="taskset -c 1"
else
    SERVER_CPUS=""
    LOAD_CPUS=""
fi

# ---------------------------------------------------------------- 1. tools and builds
apt_install() {
    log "installing $*"
    if ! timeout 300 apt-get install -y "$@" >"$RESULTS/apt.log" 2>&1; then
        timeout 300 apt-get update >>"$RESULTS/apt.log" 2>&1 || true
        timeout 300 apt-get install -y "$@" >>"$RESULTS/apt.log" 2>&1 || die "apt-get install $* failed (see $RESULTS/apt.log)"
    fi
}
command -v wrk >/dev/null || apt_install wrk
command -v pgbench >/dev/null || apt_install postgresql-contrib
command -v pgbench >/dev/null || die "pgbench not found after installing postgresql-contrib"
for tool in psql createdb dropdb pg_isready curl python3 taskset; do
    command -v "$tool" >/dev/null || die "$tool is required"
done

if ! timeout 5 pg_isready -q; then
    log "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
    for _ in $(seq 1 60); do timeout 5 pg_isready -q && break; sleep 0.5; done
    timeout 5 pg_isready -q || die "PostgreSQL is not reachable on $PGHOST:$PGPORT"
fi

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
    if [ -n "$REV" ] && [ ! -f "$SRC/Cargo.toml" ]; then
        log "extracting $COMMIT into $SRC"
        mkdir -p "$SRC.tmp" && git -C "$ROOT" archive "$COMMIT" | tar -x -C "$SRC.tmp" && mv "$SRC.tmp" "$SRC"
    fi
    log "cargo build --release (orchestrator at $SRC, commit ${COMMIT:0:12}${REV:+ via BENCH_REV=$REV})"
    (cd "$SRC" && CARGO_TARGET_DIR="$TARGET_DIR" timeout 1800 cargo build --release --quiet) \
        || die "release build failed (if src/ is mid-edit, BENCH_REV=HEAD benches the last commit)"
    log "cargo build --release (bench/ceiling-axum)"
    (cd "$BENCH_DIR/ceiling-axum" && timeout 1800 cargo build --release --quiet) || die "ceiling-axum build failed"
fi
[ -x "$SERVER_BIN" ] || die "$SERVER_BIN missing"
[ -x "$CEIL_BIN" ] || die "$CEIL_BIN missing"

# ---------------------------------------------------------------- helpers
wait_http() { # url seconds
    local url=$1 limit=$2 i
    for i in $(seq 1 $((limit * 10))); do
        curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

rss_kib() { # pid field
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

# CPU accounting around each measurement: "<pid ticks> <postgres ticks> <busy jiffies> <all jiffies>".
# PostgreSQL = every process named postgres, own time plus reaped children (the postmaster's
# cutime holds backends that exited, e.g. pgbench's at its end). Ticks are 1/CLK_TCK s.
cpu_snapshot() { # [pid]
    local own=0
    if [ -n "${1:-}" ] && [ -r "/proc/$1/stat" ]; then
        own=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat")
    fi
    local pg
    pg=$(cat /proc/[0-9]*/stat 2>/dev/null | awk '/^[0-9]+ \(postgres\) / { sub(/^.*\) /, ""); t += $12 + $13 + $14 + $15 } END { print t + 0 }')
    local sys
    sys=$(awk '/^cpu / { all = 0; for (i = 2; i <= NF; i++) all += $i; print all - $5 - $6, all }' /proc/stat)
    echo "$own ${pg:-0} $sys"
}
CLK_TCK=$(getconf CLK_TCK)
CPU_PID=""

# run_wrk name script url [duration]
run_wrk() {
    local name=$1 script=$2 url=$3 secs=${4:-$DURATION}
    local before
    before=$(cpu_snapshot "$CPU_PID")
    BENCH_LUA_DIR="$BENCH_DIR/lua" BENCH_N=$N BENCH_WRK_THREADS=$THREADS \
        timeout $((secs + 30)) $LOAD_CPUS wrk -t "$THREADS" -c "$CONNS" -d "${secs}s" --timeout 5s \
        --latency -s "$BENCH_DIR/lua/$script" "$url" >"$RESULTS/$name.wrk.txt" 2>&1 \
        || die "wrk $name failed: $(tail -n 5 "$RESULTS/$name.wrk.txt")"
    grep -q '^BENCH_JSON ' "$RESULTS/$name.wrk.txt" || die "wrk $name printed no result"
    printf '%s\n%s\n%s\n' "$CLK_TCK" "$before" "$(cpu_snapshot "$CPU_PID")" >"$RESULTS/$name.cpu"
}

# run_pgbench name script
run_pgbench() {
    local name=$1 script=$2
    local before
    before=$(cpu_snapshot "$CPU_PID")
    timeout $((DURATION + 60)) $LOAD_CPUS pgbench -n -M prepared -c "$CONNS" -j "$THREADS" \
        -T "$DURATION" -D n="$N" -D now="$(($(date +%s%N) / 1000000))" \
        -f "$BENCH_DIR/pgbench/$script" "$DB" >"$RESULTS/$name.pgbench.txt" 2>&1 \
        || die "pgbench $name failed: $(tail -n 5 "$RESULTS/$name.pgbench.txt")"
    printf '%s\n%s\n%s\n' "$CLK_TCK" "$before" "$(cpu_snapshot "$CPU_PID")" >"$RESULTS/$name.cpu"
}

psql_q() { timeout 120 psql -X -q -v ON_ERROR_STOP=1 -d "$DB" "$@"; }

rm -f "$RESULTS"/*.wrk.txt "$RESULTS"/*.pgbench.txt "$RESULTS"/*.rss "$RESULTS"/*.cpu "$RESULTS"/*.log "$RESULTS"/facts.json

# ---------------------------------------------------------------- 2. database, fake MCR, server
log "creating database $DB"
timeout 30 dropdb --if-exists --force "$DB"
timeout 30 createdb "$DB"
DB_CREATED=1

log "starting fake MCR on 127.0.0.1:$MCR_PORT"
$SERVER_CPUS python3 "$BENCH_DIR/fake_mcr.py" "$MCR_PORT" "$SIGNER" >"$RESULTS/fake-mcr.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$MCR_PORT/stats" 10 || die "fake MCR did not start"

log "starting the server on 127.0.0.1:$PORT"
(cd "$RESULTS" && exec env -i PATH="$PATH" HOME="$HOME" \
    DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB" \
    PEAQOS_LISTEN_ADDR="127.0.0.1:$PORT" \
    PEAQOS_LOG_FORMAT=json \
    RUST_LOG=warn \
    PEAQOS_RUNTIME_PROBE_INTERVAL_MS=0 \
    PEAQOS_AGENT_PAIRING_SESSION_SECRET="$SESSION_SECRET" \
    PEAQOS_MCR_API_URL="http://127.0.0.1:$MCR_PORT" \
    PEAQOS_MCR_CACHE_TTL_MS=3600000 \
    $SERVER_CPUS "$SERVER_BIN" serve) >"$RESULTS/server.log" 2>&1 &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
wait_http "http://127.0.0.1:$PORT/health" 60 || die "server did not start: $(tail -n 5 "$RESULTS/server.log")"
[ "$(readlink "/proc/$SERVER_PID/exe")" = "$(readlink -f "$SERVER_BIN")" ] || die "pid $SERVER_PID is not the server"
CPU_PID=$SERVER_PID
log "server up (pid $SERVER_PID, RSS $(rss_kib "$SERVER_PID" VmRSS) KiB)"

# ---------------------------------------------------------------- 3. seed and verify
log "seeding $N machines, agents, endpoints"
NOW_MS=$(($(date +%s%N) / 1000000))
psql_q -v n="$N" -v base_ms="$NOW_MS" -v lease_ms="$((NOW_MS + 86400000))" -v signer="$SIGNER" \
    -f "$BENCH_DIR/seed.sql" >"$RESULTS/seed.log" 2>&1 || die "seeding failed: $(tail -n 5 "$RESULTS/seed.log")"

probe_id=$(printf '%018d' "$N")
code=$(curl -sS -o "$RESULTS/verify-get.json" -w '%{http_code}' --max-time 10 \
    "http://127.0.0.1:$PORT/api/v1/machines/mach_01JBENCH$probe_id")
[ "$code" = 200 ] || die "GET seeded machine answered $code: $(cat "$RESULTS/verify-get.json")"
token="mat_bench$(printf '%034d' "$N")"
code=$(curl -sS -o "$RESULTS/verify-heartbeat.json" -w '%{http_code}' --max-time 10 \
    -H 'Content-Type: application/json' \
    -d "{\"machineId\":\"mach_01JBENCH$probe_id\",\"agentId\":\"mag_01JBENCH$probe_id\",\"agentToken\":\"$token\",\"leaseSeconds\":120,\"endpoints\":[{\"providerKey\":\"qvac\",\"endpointBaseUrl\":\"http://127.0.0.1:9\"}]}" \
    "http://127.0.0.1:$PORT/api/v1/machine-agents/heartbeat")
[ "$code" = 200 ] || die "heartbeat of a seeded agent answered $code: $(cat "$RESULTS/verify-heartbeat.json")"
log "seed verified through the API (GET machine 200, heartbeat 200)"

# ---------------------------------------------------------------- 4. warm the MCR cache
mcr_lookups() { curl -fsS --max-time 5 "http://127.0.0.1:$MCR_PORT/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["lookups"])'; }
for pass in 1 2 3; do
    log "warming the MCR cache (pass $pass)"
    run_wrk "warm-$pass" machine_get.lua "http://127.0.0.1:$PORT" 8
    [ "$(mcr_lookups)" -ge "$N" ] && break
done
MCR_WARM=$(mcr_lookups)
[ "$MCR_WARM" -ge "$N" ] || die "MCR cache not warm: $MCR_WARM look-ups for $N machines"
log "MCR cache warm ($MCR_WARM look-ups)"

# ---------------------------------------------------------------- 5. measure
record_rss() { # name
    printf '{"vmhwm_kib":%s,"vmrss_kib":%s}\n' "$(rss_kib "$SERVER_PID" VmHWM)" "$(rss_kib "$SERVER_PID" VmRSS)" >"$RESULTS/$1.rss"
}

# Each endpoint: one warm-up, then REPEAT pairs of (server, ceiling) measurements back to back;
# the report takes the pair with the median ratio and lists every pair's ratio.
wants() { case ",$ONLY," in *",$1,"*) return 0 ;; esac; return 1; }

if wants health; then
    # /health: the server, then bare axum with identical wrk settings.
    log "starting bare axum (the /health ceiling)"
    $SERVER_CPUS "$CEIL_BIN" "127.0.0.1:$CEIL_PORT" >"$RESULTS/ceiling-axum.log" 2>&1 &
    CEIL_PID=$!
    PIDS+=("$CEIL_PID")
    wait_http "http://127.0.0.1:$CEIL_PORT/health" 10 || die "bare axum did not start"
    CPU_PID=$SERVER_PID
    run_wrk health-warmup health.lua "http://127.0.0.1:$PORT" "$WARMUP"
    CPU_PID=$CEIL_PID
    run_wrk health-ceiling-warmup health.lua "http://127.0.0.1:$CEIL_PORT" "$WARMUP"
    for rep in $(seq 1 "$REPEAT"); do
        log "GET /health ($rep/$REPEAT): server ${DURATION}s, then bare axum ${DURATION}s"
        CPU_PID=$SERVER_PID
        run_wrk "health-$rep" health.lua "http://127.0.0.1:$PORT"
        record_rss "health-$rep"
        CPU_PID=$CEIL_PID
        run_wrk "health-ceiling-$rep" health.lua "http://127.0.0.1:$CEIL_PORT"
    done
    printf '{"vmhwm_kib":%s,"vmrss_kib":%s}\n' "$(rss_kib "$CEIL_PID" VmHWM)" "$(rss_kib "$CEIL_PID" VmRSS)" >"$RESULTS/health-ceiling.rss"
    kill -TERM "$CEIL_PID"; wait "$CEIL_PID" 2>/dev/null || true
    CPU_PID=$SERVER_PID
fi

if wants machine; then
    # GET machine: warm MCR cache, so the handler is one SELECT.
    run_wrk machine-warmup machine_get.lua "http://127.0.0.1:$PORT" "$WARMUP"
    for rep in $(seq 1 "$REPEAT"); do
        log "GET /api/v1/machines/{id} ($rep/$REPEAT): server ${DURATION}s, then pgbench machine_get.sql ${DURATION}s"
        run_wrk "machine-$rep" machine_get.lua "http://127.0.0.1:$PORT"
        record_rss "machine-$rep"
        run_pgbench "machine-ceiling-$rep" machine_get.sql
    done
fi

if wants heartbeat; then
    # Heartbeat: distinct agents; each side starts from a freshly vacuumed table.
    run_wrk heartbeat-warmup heartbeat.lua "http://127.0.0.1:$PORT" "$WARMUP"
    for rep in $(seq 1 "$REPEAT"); do
        log "POST /api/v1/machine-agents/heartbeat ($rep/$REPEAT): server ${DURATION}s, then pgbench heartbeat.sql ${DURATION}s"
        psql_q -c 'VACUUM ANALYZE machine_agents, runtime_endpoints, audit_events'
        run_wrk "heartbeat-$rep" heartbeat.lua "http://127.0.0.1:$PORT"
        record_rss "heartbeat-$rep"
        psql_q -c 'VACUUM ANALYZE machine_agents, runtime_endpoints, audit_events'
        run_pgbench "heartbeat-ceiling-$rep" heartbeat.sql
    done
fi

MCR_AFTER=$(mcr_lookups)
HEARTBEAT_ROWS=$(psql_q -At -c "SELECT count(*) FROM audit_events WHERE type = 'machine-agent.heartbeat'")

# ---------------------------------------------------------------- 6. report
cat >"$RESULTS/facts.json" <<EOF
{"nproc": $(nproc), "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
 "git_commit": "$COMMIT", "git_dirty": $DIRTY, "built_from": "${REV:+git archive $REV}${REV:-working tree}",
 "cpu_model": "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo | tr -d '"')",
 "mem_total_kib": $(awk '/^MemTotal/ {print $2}' /proc/meminfo),
 "kernel": "$(uname -r)",
 "postgres": "$(psql_q -At -c 'SHOW server_version')",
 "wrk": "$(wrk --version 2>&1 | head -n 1 | awk '{print $2}')",
 "pgbench": "$(pgbench --version | awk '{print $3}')",
 "seeded_machines": $N, "duration_s": $DURATION, "warmup_s": $WARMUP,
 "repeats": $REPEAT, "endpoints_run": "$ONLY",
 "wrk_threads": $THREADS, "connections": $CONNS, "pinned": $( [ "$PIN" = 1 ] && echo true || echo false),
 "pinning": "$( [ "$PIN" = 1 ] && echo 'server, bare axum, fake MCR on CPU 0; wrk and pgbench on CPU 1; PostgreSQL unpinned' || echo 'none')",
 "server_pool_max_connections": 16,
 "mcr_lookups_after_warmup": $MCR_WARM, "mcr_lookups_after_measurements": $MCR_AFTER,
 "heartbeat_audit_rows": $HEARTBEAT_ROWS}
EOF
python3 "$BENCH_DIR/report.py" "$RESULTS"
log "done; results in $RESULTS/latest.json"
