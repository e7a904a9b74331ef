#!/usr/bin/env bash
# bench/run.sh — load-test the orchestrator's hot endpoints against their ceilings, in one run.
#
#   bash bench/run.sh
#
# Builds, installs missing tools (wrk, pgbench), creates a fresh PostgreSQL database, starts a
# fake MCR and the server on loopback, seeds 10,000 machines/agents/endpoints, drives wrk against
# GET /health, GET /api/v1/machines/{id} and POST /api/v1/machine-agents/heartbeat, measures each
# endpoint's ceiling (bare axum for /health, pgbench running the handler's exact SQL for the two
# DB endpoints; GET machine also against bench/peer-axum, a plain axum + sqlx PgPool server for
# the same route), times start-up to a ready /api/v1/readiness on a fresh SQLite file and reads
# the idle RSS. Then the market half (bench/market.sh): a second server with 10,000 generated
# catalogue services (start-up time and RSS), market search and order creation against pgbench
# running their SQL, task execute against a bare reqwest call to the same fake runtime, payment
# proofs (rpc mode, real ERC-20 transfers on Anvil) against Anvil's bare receipt rate. Prints a
# table and writes bench/results/latest.json. Everything it starts is stopped on exit and the
# bench database is dropped. See bench/README.md.
#
# Knobs (environment): BENCH_N (10000), BENCH_DURATION (12 s per measurement), BENCH_WARMUP (3 s),
# BENCH_WRK_THREADS (2), BENCH_CONNECTIONS (16), BENCH_REPEAT (3 server/ceiling pairs per
# endpoint; the pair with the median ratio is reported), BENCH_ONLY (health,machine,heartbeat,
# search,execute,order,order1,proof: a comma-separated subset), BENCH_PIN (1 = server, bare axum,
# fake MCR and fake runtime on CPU 0, wrk, pgbench and the load client on CPU 1, PostgreSQL and
# Anvil unpinned; 0 = no pinning), BENCH_PORT (18080), BENCH_SKIP_BUILD (0), BENCH_REV (unset =
# working tree), BENCH_DEADLINE_S (2400). Market knobs (bench/market.sh): BENCH_SERVICES (10000),
# BENCH_SEARCH_TYPES (1), BENCH_MARKET_M (16), BENCH_EXEC_TASKS (80000), BENCH_PROOFS (80000),
# BENCH_STARTUP_REPEAT (3). BENCH_SQLITE_STARTUP_REPEAT (5 SQLite start-ups; 0 skips them).
# BENCH_PERF (unset; e.g. search,execute: perf record on the server during
# the first server run of those benches).
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
ONLY=${BENCH_ONLY:-health,machine,heartbeat,search,execute,order,order1,proof}
CONNS=${BENCH_CONNECTIONS:-16}
PIN=${BENCH_PIN:-1}
PORT=${BENCH_PORT:-18080}
CEIL_PORT=$((PORT + 1))
MCR_PORT=$((PORT + 2))
# +3 fake runtime, +4 Anvil (bench/market.sh)
PEER_PORT=$((PORT + 5))
SQLITE_REPEAT=${BENCH_SQLITE_STARTUP_REPEAT:-5}
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
PEER_BIN="$BENCH_DIR/peer-axum/target/release/peer-axum"
TOOLS_DIR="$BENCH_DIR/market-tools/target/release"
# The whole run must end: a watchdog terminates it after this many seconds.
DEADLINE_S=${BENCH_DEADLINE_S:-2400}

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- cleanup
PIDS=()
DB_CREATED=0
SQLITE_DIR=""
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
    [ -z "$SQLITE_DIR" ] || rm -rf "$SQLITE_DIR"
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

wants() { case ",$ONLY," in *",$1,"*) return 0 ;; esac; return 1; }
wants_phase_a() { wants health || wants machine || wants heartbeat; }
wants_market() { wants search || wants execute || wants order || wants order1 || wants proof; }

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
    log "cargo build --release (bench/peer-axum)"
    (cd "$BENCH_DIR/peer-axum" && timeout 1800 cargo build --release --quiet) || die "peer-axum build failed"
    if wants_market; then
        log "cargo build --release (bench/market-tools)"
        (cd "$BENCH_DIR/market-tools" && timeout 1800 cargo build --release --quiet) || die "market-tools build failed"
    fi
fi
[ -x "$SERVER_BIN" ] || die "$SERVER_BIN missing"
[ -x "$CEIL_BIN" ] || die "$CEIL_BIN missing"
[ -x "$PEER_BIN" ] || die "$PEER_BIN missing"
if wants_market; then
    [ -x "$TOOLS_DIR/fake_runtime" ] && [ -x "$TOOLS_DIR/http_load" ] || die "$TOOLS_DIR/{fake_runtime,http_load} missing"
fi

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
    local before perf_pid=""
    # BENCH_PERF=search,execute,...: `perf record -g` on the measured process during the first
    # server run of those benches (results/<bench>-1.perf.data; that run's ratio is not clean).
    if [ -n "${BENCH_PERF:-}" ] && [ -n "$CPU_PID" ] && case ",$BENCH_PERF," in *",${name%-1},"*) [ "${name%-1}" != "$name" ] ;; *) false ;; esac; then
        perf record -e cpu-clock -F 499 -g -p "$CPU_PID" -o "$RESULTS/$name.perf.data" -- sleep "$secs" >"$RESULTS/$name.perf.log" 2>&1 &
        perf_pid=$!
    fi
    before=$(cpu_snapshot "$CPU_PID")
    BENCH_LUA_DIR="$BENCH_DIR/lua" BENCH_N=$N BENCH_WRK_THREADS=$THREADS \
        timeout $((secs + 30)) $LOAD_CPUS wrk -t "$THREADS" -c "$CONNS" -d "${secs}s" --timeout 5s \
        --latency -s "$BENCH_DIR/lua/$script" "$url" >"$RESULTS/$name.wrk.txt" 2>&1 \
        || die "wrk $name failed: $(tail -n 5 "$RESULTS/$name.wrk.txt")"
    grep -q '^BENCH_JSON ' "$RESULTS/$name.wrk.txt" || die "wrk $name printed no result"
    [ -z "$perf_pid" ] || wait "$perf_pid" 2>/dev/null || true
    printf '%s\n%s\n%s\n%s\n' "$CLK_TCK" "$before" "$(cpu_snapshot "$CPU_PID")" "$(cut -d' ' -f1 /proc/loadavg)" >"$RESULTS/$name.cpu"
}

# run_pgbench name script [more pgbench arguments, e.g. -D var=value]
run_pgbench() {
    local name=$1 script=$2
    shift 2
    local before
    before=$(cpu_snapshot "$CPU_PID")
    timeout $((DURATION + 60)) $LOAD_CPUS pgbench -n -M prepared -c "$CONNS" -j "$THREADS" \
        -T "$DURATION" -D n="$N" -D now="$(($(date +%s%N) / 1000000))" "$@" \
        -f "$BENCH_DIR/pgbench/$script" "$DB" >"$RESULTS/$name.pgbench.txt" 2>&1 \
        || die "pgbench $name failed: $(tail -n 5 "$RESULTS/$name.pgbench.txt")"
    printf '%s\n%s\n%s\n%s\n' "$CLK_TCK" "$before" "$(cpu_snapshot "$CPU_PID")" "$(cut -d' ' -f1 /proc/loadavg)" >"$RESULTS/$name.cpu"
}

psql_q() { timeout 120 psql -X -q -v ON_ERROR_STOP=1 -d "$DB" "$@"; }

rm -f "$RESULTS"/*.wrk.txt "$RESULTS"/*.pgbench.txt "$RESULTS"/*.load.txt "$RESULTS"/*.rss "$RESULTS"/*.cpu "$RESULTS"/*.log "$RESULTS"/facts.json \
    "$RESULTS"/*.perf.data "$RESULTS"/*.pgvars "$RESULTS"/verify-*.json
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
# Share of time some task waited on I/O over 5 minutes (PSI), when the kernel reports it: on a
# shared box the commit-heavy benches are bound by fsync latency long before CPU.
io_pressure() { awk '/^some/ { sub("avg300=", "", $4); print $4; exit }' /proc/pressure/io 2>/dev/null || true; }
IO_START=$(io_pressure)

# ---------------------------------------------------------------- 2. database, fake MCR, server
# A port someone else listens on would make every "is it up?" check answer for the wrong process.
for p in $(seq "$PORT" $((PORT + 5))); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        die "127.0.0.1:$p is already in use (by another server?): pick another BENCH_PORT"
    fi
done
log "creating database $DB"
timeout 30 dropdb --if-exists --force "$DB"
timeout 30 createdb "$DB"
DB_CREATED=1

log "starting fake MCR on 127.0.0.1:$MCR_PORT"
$SERVER_CPUS python3 "$BENCH_DIR/fake_mcr.py" "$MCR_PORT" "$SIGNER" >"$RESULTS/fake-mcr.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$MCR_PORT/stats" 10 || die "fake MCR did not start"

# start_server LOG [VAR=value...]: the release server on $PORT with the bench settings (plus the
# given ones) in a clean environment, appending to results/LOG; sets SERVER_PID (the caller waits
# for /health).
start_server() {
    local logfile=$1
    shift
    (cd "$RESULTS" && exec env -i PATH="$PATH" HOME="$HOME" \
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB" \
        PEAQOS_LISTEN_ADDR="127.0.0.1:$PORT" \
        PEAQOS_LOG_FORMAT=json \
        RUST_LOG=warn \
        PEAQOS_RUNTIME_PROBE_INTERVAL_MS=0 \
        PEAQOS_AGENT_PAIRING_SESSION_SECRET="$SESSION_SECRET" \
        PEAQOS_MCR_API_URL="http://127.0.0.1:$MCR_PORT" \
        PEAQOS_MCR_CACHE_TTL_MS=3600000 \
        "$@" \
        $SERVER_CPUS "$SERVER_BIN" serve) >>"$RESULTS/$logfile" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
}
stop_server() {
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
}

# ---------------------------------------------------------------- 2a. start-up on SQLite, idle RSS
# SQLITE_REPEAT starts of the server (bench settings) on a fresh SQLite file each, timed from
# spawn to the first 200 of /api/v1/readiness (store, lease, catalogue and skills all ready; the
# poller is loaded before the clock starts and asks every 5 ms); the last one is left idle for
# 2 s and its VmRSS read. Nothing else runs on $PORT yet (checked above).
ready_poller() { # url limit_s marker-file: prints the epoch ms of the first 200
    python3 - "$@" <<'PY'
import sys, time, urllib.request, urllib.error
url, limit, marker = sys.argv[1], float(sys.argv[2]), sys.argv[3]
open(marker, "w").close()
end = time.monotonic() + limit
while time.monotonic() < end:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            if r.status == 200:
                print(time.time_ns() // 1_000_000)
                sys.exit(0)
    except (urllib.error.URLError, OSError):
        pass
    time.sleep(0.005)
sys.exit(1)
PY
}
SQLITE_STARTUP_MS=()
SQLITE_IDLE_RSS_KIB=null
SQLITE_IDLE_HWM_KIB=null
if [ "$SQLITE_REPEAT" -gt 0 ]; then
    SQLITE_DIR=$(mktemp -d /tmp/peaqos-bench-sqlite.XXXXXX)
    log "timing $SQLITE_REPEAT start-ups to a ready /api/v1/readiness on a fresh SQLite file"
    for i in $(seq 1 "$SQLITE_REPEAT"); do
        rm -rf "${SQLITE_DIR:?}"/* "$SQLITE_DIR/ready"
        ready_poller "http://127.0.0.1:$PORT/api/v1/readiness" 60 "$SQLITE_DIR/ready" >"$SQLITE_DIR/t1" &
        poller=$!
        for _ in $(seq 1 500); do [ -e "$SQLITE_DIR/ready" ] && break; sleep 0.01; done
        t0=$(($(date +%s%N) / 1000000))
        start_server server-sqlite.log DATABASE_URL="sqlite://$SQLITE_DIR/bench.db"
        wait "$poller" || die "SQLite server not ready within 60 s: $(tail -n 5 "$RESULTS/server-sqlite.log")"
        SQLITE_STARTUP_MS+=($(($(cat "$SQLITE_DIR/t1") - t0)))
        [ "$(readlink "/proc/$SERVER_PID/exe")" = "$(readlink -f "$SERVER_BIN")" ] || die "pid $SERVER_PID is not the server"
        if [ "$i" = "$SQLITE_REPEAT" ]; then
            sleep 2
            SQLITE_IDLE_RSS_KIB=$(rss_kib "$SERVER_PID" VmRSS)
            SQLITE_IDLE_HWM_KIB=$(rss_kib "$SERVER_PID" VmHWM)
        fi
        stop_server
    done
    rm -rf "$SQLITE_DIR"
    SQLITE_DIR=""
    log "SQLite start-up to readiness: ${SQLITE_STARTUP_MS[*]} ms; idle RSS after 2 s $SQLITE_IDLE_RSS_KIB KiB"
fi

log "starting the server on 127.0.0.1:$PORT"
start_server server.log
wait_http "http://127.0.0.1:$PORT/health" 60 || die "server did not start: $(tail -n 5 "$RESULTS/server.log")"
[ "$(readlink "/proc/$SERVER_PID/exe")" = "$(readlink -f "$SERVER_BIN")" ] || die "pid $SERVER_PID is not the server"
CPU_PID=$SERVER_PID
# Idle RSS on PostgreSQL: 2 s after start, before any request but the /health probe.
sleep 2
PG_IDLE_RSS_KIB=$(rss_kib "$SERVER_PID" VmRSS)
log "server up (pid $SERVER_PID, idle RSS after 2 s $PG_IDLE_RSS_KIB KiB)"

# ---------------------------------------------------------------- 3. seed and verify
mcr_lookups() { curl -fsS --max-time 5 "http://127.0.0.1:$MCR_PORT/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["lookups"])'; }
MCR_WARM=0
if wants_phase_a; then
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
for pass in 1 2 3; do
    log "warming the MCR cache (pass $pass)"
    run_wrk "warm-$pass" machine_get.lua "http://127.0.0.1:$PORT" 8
    [ "$(mcr_lookups)" -ge "$N" ] && break
done
MCR_WARM=$(mcr_lookups)
[ "$MCR_WARM" -ge "$N" ] || die "MCR cache not warm: $MCR_WARM look-ups for $N machines"
log "MCR cache warm ($MCR_WARM look-ups)"
fi

# ---------------------------------------------------------------- 5. measure
record_rss() { # name
    printf '{"vmhwm_kib":%s,"vmrss_kib":%s}\n' "$(rss_kib "$SERVER_PID" VmHWM)" "$(rss_kib "$SERVER_PID" VmRSS)" >"$RESULTS/$1.rss"
}

# Each endpoint: one warm-up, then REPEAT pairs of (server, ceiling) measurements back to back;
# the report takes the pair with the median ratio and lists every pair's ratio.

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
    # GET machine: warm MCR cache, so the handler is one SELECT. Each repeat: the server, its
    # pgbench ceiling, then the peer (bench/peer-axum: plain axum + a native sqlx PgPool of 16,
    # same route, table and JSON, no identity re-verification) with the identical wrk command,
    # on the server's CPU like bare axum.
    log "starting the peer (bench/peer-axum) on 127.0.0.1:$PEER_PORT"
    $SERVER_CPUS "$PEER_BIN" "127.0.0.1:$PEER_PORT" "postgres://postgres@127.0.0.1:5432/$DB" >"$RESULTS/peer-axum.log" 2>&1 &
    PEER_PID=$!
    PIDS+=("$PEER_PID")
    probe_id=$(printf '%018d' "$N")
    wait_http "http://127.0.0.1:$PEER_PORT/api/v1/machines/mach_01JBENCH$probe_id" 20 \
        || die "the peer did not start: $(tail -n 5 "$RESULTS/peer-axum.log")"
    # Same body: the server's and the peer's answers for a few seeded ids, byte for byte.
    for i in 1 $((N / 2)) "$N"; do
        id="mach_01JBENCH$(printf '%018d' "$i")"
        curl -fsS --max-time 10 "http://127.0.0.1:$PORT/api/v1/machines/$id" >"$RESULTS/verify-machine-server.json"
        curl -fsS --max-time 10 "http://127.0.0.1:$PEER_PORT/api/v1/machines/$id" >"$RESULTS/verify-machine-peer.json"
        cmp -s "$RESULTS/verify-machine-server.json" "$RESULTS/verify-machine-peer.json" \
            || die "the peer's body for $id differs from the server's (results/verify-machine-{server,peer}.json)"
    done
    log "the peer answers the same bytes as the server"
    run_wrk machine-warmup machine_get.lua "http://127.0.0.1:$PORT" "$WARMUP"
    CPU_PID=$PEER_PID
    run_wrk machine-peer-warmup machine_get.lua "http://127.0.0.1:$PEER_PORT" "$WARMUP"
    for rep in $(seq 1 "$REPEAT"); do
        log "GET /api/v1/machines/{id} ($rep/$REPEAT): server ${DURATION}s, pgbench machine_get.sql ${DURATION}s, peer ${DURATION}s"
        CPU_PID=$SERVER_PID
        run_wrk "machine-$rep" machine_get.lua "http://127.0.0.1:$PORT"
        record_rss "machine-$rep"
        run_pgbench "machine-ceiling-$rep" machine_get.sql
        CPU_PID=$PEER_PID
        run_wrk "machine-peer-$rep" machine_get.lua "http://127.0.0.1:$PEER_PORT"
    done
    printf '{"vmhwm_kib":%s,"vmrss_kib":%s}\n' "$(rss_kib "$PEER_PID" VmHWM)" "$(rss_kib "$PEER_PID" VmRSS)" >"$RESULTS/machine-peer.rss"
    kill -TERM "$PEER_PID"; wait "$PEER_PID" 2>/dev/null || true
    CPU_PID=$SERVER_PID
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

# ---------------------------------------------------------------- 5b. the market half
rm -f "$RESULTS/market.json"
MCR_MARKET_WARM=0
MCR_MARKET_AFTER=0
if wants_market; then
    # shellcheck source=bench/market.sh
    source "$BENCH_DIR/market.sh"
fi

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
 "pinning": "$( [ "$PIN" = 1 ] && echo 'server, bare axum, fake MCR, fake runtime on CPU 0; wrk, pgbench, load client on CPU 1; PostgreSQL, Anvil unpinned' || echo 'none')",
 "load_average_start": "$LOAD_START", "load_average_end": "$(cut -d' ' -f1-3 /proc/loadavg)",
 "io_pressure_some_avg300_pct_start": "${IO_START:-n/a}", "io_pressure_some_avg300_pct_end": "$(io_pressure)",
 "server_pool_max_connections": 16,
 "mcr_lookups_after_warmup": $MCR_WARM, "mcr_lookups_after_measurements": $MCR_AFTER,
 "mcr_lookups_market_after_warmup": $MCR_MARKET_WARM, "mcr_lookups_market_after_measurements": $MCR_MARKET_AFTER,
 "heartbeat_audit_rows": $HEARTBEAT_ROWS,
 "sqlite_startup_to_readiness_ms": [$(IFS=,; echo "${SQLITE_STARTUP_MS[*]}")],
 "sqlite_idle_rss_kib": $SQLITE_IDLE_RSS_KIB, "sqlite_idle_hwm_kib": $SQLITE_IDLE_HWM_KIB,
 "postgres_idle_rss_kib": $PG_IDLE_RSS_KIB}
EOF
python3 "$BENCH_DIR/report.py" "$RESULTS"
log "done; results in $RESULTS/latest.json"
