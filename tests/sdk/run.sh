#!/usr/bin/env bash
# SDK conformance suite: drives a real server with the official Python clients.
# See tests/sdk/README.md. Prints "N passed, M failed" last; exits non-zero on failure.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV_ROOT="${SDK_VENV_DIR:-$REPO/target/sdk-venvs}"
read -r -a VERSIONS <<<"${SDK_VERSIONS:-0.2.0 0.12.1}"
CLI_VERSION=0.1.1     # peaq-os-cli, run by the cli:* checks (client versions >= 0.12)
CLI_SDK_VERSION=0.12.1 # the peaq-os-sdk pinned beside it in the CLI's own venv
# One API key per run: the server requires it (PEAQOS_REQUIRE_API_AUTH=true) and the checks get it
# as PEAQOS_API_KEY, so platform calls carry it, while agent calls show what each version sends.
API_KEY="sdk-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"

# Server env for every run, on top of the fixed listen address, the database and
# PEAQOS_MCR_API_URL (the fake MCR started for that run). Add what new checks need here.
# PEAQOS_MACHINE_IDENTITY_VERIFICATION is left at its default, `required`.
# SDK_SERVER_ENV adds "K=V K=V".
SERVER_ENV=(PEAQOS_ENV=development PEAQOS_LOG_FORMAT=text
  PEAQOS_RUNTIME_PROBE_INTERVAL_MS=1000 # prober every second: runtime checks see it work
  PEAQOS_REQUIRE_API_AUTH=true PEAQOS_API_KEY="$API_KEY"
  PEAQOS_CATALOG_DIR="$HERE/catalog") # test services on loopback (catalog/generate.py)
read -r -a EXTRA_ENV <<<"${SDK_SERVER_ENV:-}"
SERVER_ENV+=("${EXTRA_ENV[@]}")

PIDS=()
TMPDIRS=()
cleanup() {
  local p d
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  for d in "${TMPDIRS[@]}"; do rm -rf "$d"; done
}
trap cleanup EXIT

log() { echo "sdk: $*" >&2; }

ensure_venv() { # $1 = version; prints the venv's python
  local ver="$1" venv="$VENV_ROOT/$1" marker="$VENV_ROOT/$1/.sdk-installed"
  if [[ -x "$venv/bin/python" && -f "$marker" && "$(cat "$marker")" == "$ver" ]]; then
    echo "$venv/bin/python"; return
  fi
  log "creating venv for peaq-os-sdk==$ver in $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "peaq-os-sdk==$ver" eth_account >&2
  echo "$ver" >"$marker"
  echo "$venv/bin/python"
}

ensure_cli_venv() { # prints the CLI venv's python
  local venv="$VENV_ROOT/cli-$CLI_VERSION" marker="$VENV_ROOT/cli-$CLI_VERSION/.cli-installed"
  local want="peaq-os-cli==$CLI_VERSION peaq-os-sdk[x402]==$CLI_SDK_VERSION"
  if [[ -x "$venv/bin/python" && -f "$marker" && "$(cat "$marker")" == "$want" ]]; then
    echo "$venv/bin/python"; return
  fi
  log "creating venv for $want in $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "peaq-os-cli==$CLI_VERSION" \
    "peaq-os-sdk[x402]==$CLI_SDK_VERSION" >&2
  echo "$want" >"$marker"
  echo "$venv/bin/python"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# --- build ------------------------------------------------------------------------------
if [[ -z "${PEAQOS_BIN:-}" ]]; then
  log "building server"
  (cd "$REPO" && cargo build --quiet)
  PEAQOS_BIN="${CARGO_TARGET_DIR:-$REPO/target}/debug/peaqos-orchestrator"
fi
[[ "$PEAQOS_BIN" == /* ]] || PEAQOS_BIN="$PWD/$PEAQOS_BIN" # the server runs from a temp dir
[[ -x "$PEAQOS_BIN" ]] || { log "server binary not found: $PEAQOS_BIN"; echo "0 passed, 1 failed"; exit 1; }

# --- run each client version against a fresh server ------------------------------------
total_pass=0
total_fail=0
for ver in "${VERSIONS[@]}"; do
  py="$(ensure_venv "$ver")"
  cli_py=""
  if printf '%s\n' 0.12 "$ver" | sort -V -C; then cli_py="$(ensure_cli_venv)"; fi
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/peaqos-sdk.XXXXXX")"
  TMPDIRS+=("$tmp")

  # Fake MCR (fake_mcr.py): binds a free loopback port and writes its URL to a file.
  python3 "$HERE/fake_mcr.py" --url-file "$tmp/mcr.url" >"$tmp/mcr.log" 2>&1 &
  mcr_pid=$!
  PIDS+=("$mcr_pid")
  mcr_url=""
  for _ in $(seq 50); do # ~10 s
    if [[ -s "$tmp/mcr.url" ]]; then mcr_url="$(cat "$tmp/mcr.url")"; break; fi
    kill -0 "$mcr_pid" 2>/dev/null || break
    sleep 0.2
  done
  if [[ -z "$mcr_url" ]] || ! curl -fs -o /dev/null --max-time 2 "$mcr_url/_admin/health"; then
    log "fake MCR for $ver did not start; its log:"
    cat "$tmp/mcr.log" >&2
    total_fail=$((total_fail + 1))
    continue
  fi

  port="$(free_port)"
  url="http://127.0.0.1:$port"

  (cd "$tmp" && exec env "${SERVER_ENV[@]}" PEAQOS_LISTEN_ADDR="127.0.0.1:$port" \
    DATABASE_URL="sqlite:$tmp/sdk.db" PEAQOS_MCR_API_URL="$mcr_url" \
    "$PEAQOS_BIN" >"$tmp/server.log" 2>&1) &
  pid=$!
  PIDS+=("$pid")

  up=0
  for _ in $(seq 150); do # ~30 s
    if curl -fs -o /dev/null --max-time 1 "$url/health"; then up=1; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if [[ $up -ne 1 ]]; then
    log "server for $ver did not answer GET /health; server log:"
    cat "$tmp/server.log" >&2
    total_fail=$((total_fail + 1))
    continue
  fi

  log "peaq-os-sdk $ver against $url"
  rc=0
  (cd "$HERE" && PEAQOS_ORCHESTRATION_URL="$url" FAKE_MCR_URL="$mcr_url" PEAQOS_API_KEY="$API_KEY" \
    SDK_CLI_PYTHON="$cli_py" DO_NOT_TRACK=1 PEAQOS_TELEMETRY=0 PYTHONDONTWRITEBYTECODE=1 \
    "$py" -u conformance.py) \
    | tee "$tmp/checks.out" || rc=$?
  summary="$(grep -E '^SUMMARY passed=[0-9]+ failed=[0-9]+$' "$tmp/checks.out" | tail -n1 || true)"
  p=0 f=1 # no summary line: the script crashed, count one failure
  if [[ "$summary" =~ passed=([0-9]+)\ failed=([0-9]+) ]]; then
    p=${BASH_REMATCH[1]} f=${BASH_REMATCH[2]}
    [[ $rc -eq 0 || $f -gt 0 ]] || f=1
  fi
  total_pass=$((total_pass + p))
  total_fail=$((total_fail + f))
  if [[ $f -gt 0 ]]; then
    log "failures with $ver; last 40 lines of server log:"
    tail -n 40 "$tmp/server.log" >&2
  fi

  kill "$pid" "$mcr_pid" 2>/dev/null || true
  wait "$pid" "$mcr_pid" 2>/dev/null || true
done

echo "$total_pass passed, $total_fail failed"
[[ $total_fail -eq 0 ]]
