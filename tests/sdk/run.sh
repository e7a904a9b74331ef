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
# The x402 package behind peaq-os-sdk[x402] (0.12 and later; the SDK asks for x402>=2.14), pinned
# for reproducible venvs. From 2.20 on it signs only for assets on its built-in list, so the
# suite does not pin an older one: its test token sits at Base USDC's address on an Anvil node
# with Base's chain id (shop.py, evm.py setup), what a fresh `pip install peaq-os-cli` pays with.
X402_VERSION=2.25.0
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
  # Every transfer proof is verified on the suite's Anvil node (PEAQOS_PAYMENT_RPC_URL, added per
  # run), even the CLI's, which sends verificationMode "recorded".
  PEAQOS_REQUIRE_PAYMENT_RPC_VERIFICATION=true)
# PEAQOS_CATALOG_DIR is per run: a copy of catalog/*.json plus the order services on that run's
# fake provider (catalog/generate.py --orders).
read -r -a EXTRA_ENV <<<"${SDK_SERVER_ENV:-}"
SERVER_ENV+=("${EXTRA_ENV[@]}")

PIDS=()
TMPDIRS=()
cleanup() {
  local p d
  if [[ -n "${EVM_TMP:-}" && -s "$EVM_TMP/anvil.pid" ]]; then
    PIDS+=("$(cat "$EVM_TMP/anvil.pid")")
  fi
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  for d in "${TMPDIRS[@]}"; do rm -rf "$d"; done
}
trap cleanup EXIT

log() { echo "sdk: $*" >&2; }

ensure_venv() { # $1 = version; prints the venv's python
  local ver="$1" venv="$VENV_ROOT/$1" marker="$VENV_ROOT/$1/.sdk-installed"
  local want=("peaq-os-sdk==$ver" eth_account)
  # 0.12 and later sign x402 payments with the optional x402 package (the [x402] extra).
  if printf '%s\n' 0.12 "$ver" | sort -V -C; then
    want=("peaq-os-sdk[x402]==$ver" "x402==$X402_VERSION" eth_account)
  fi
  if [[ -x "$venv/bin/python" && -f "$marker" && "$(cat "$marker")" == "${want[*]}" ]]; then
    echo "$venv/bin/python"; return
  fi
  log "creating venv for ${want[*]} in $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${want[@]}" >&2
  echo "${want[*]}" >"$marker"
  echo "$venv/bin/python"
}

ensure_cli_venv() { # prints the CLI venv's python
  local venv="$VENV_ROOT/cli-$CLI_VERSION" marker="$VENV_ROOT/cli-$CLI_VERSION/.cli-installed"
  local want="peaq-os-cli==$CLI_VERSION peaq-os-sdk[x402]==$CLI_SDK_VERSION x402==$X402_VERSION"
  if [[ -x "$venv/bin/python" && -f "$marker" && "$(cat "$marker")" == "$want" ]]; then
    echo "$venv/bin/python"; return
  fi
  log "creating venv for $want in $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "peaq-os-cli==$CLI_VERSION" \
    "peaq-os-sdk[x402]==$CLI_SDK_VERSION" "x402==$X402_VERSION" >&2
  echo "$want" >"$marker"
  echo "$venv/bin/python"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# The suite's EVM chain: Anvil (tests/evm/install.sh) on $EVM_PORT with shop.py's chain id, and
# the test token (tests/evm/contracts/TestToken.sol, compiled once per source by
# tests/evm/compile.js, cached under target/) moved to Base USDC's address (evm.py setup).
# $1 = a venv python. Runs in the background while the first server starts; see evm_ready.
evm_setup() {
  local py="$1" anvil src art sum up=0
  anvil="$(bash "$REPO/tests/evm/install.sh")" || { log "tests/evm/install.sh failed"; return 1; }
  "$anvil" --host 127.0.0.1 --port "$EVM_PORT" --chain-id "$CHAIN_ID" --silent \
    >"$EVM_TMP/anvil.log" 2>&1 &
  echo "$!" >"$EVM_TMP/anvil.pid"
  local probe='{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}'
  for _ in $(seq 100); do # ~10 s
    if curl -fs -o /dev/null --max-time 1 -H 'content-type: application/json' -d "$probe" \
      "$ANVIL_URL"; then up=1; break; fi
    sleep 0.1
  done
  if [[ $up -ne 1 ]]; then
    log "Anvil did not start; its log:"; cat "$EVM_TMP/anvil.log" >&2; return 1
  fi
  src="$REPO/tests/evm/contracts/TestToken.sol"
  sum="$(cat "$src" "$REPO/tests/evm/compile.js" "$REPO/tests/evm/package-lock.json" |
    sha256sum | cut -c1-16)"
  art="${CARGO_TARGET_DIR:-$REPO/target}/sdk-evm/TestToken-$sum.json"
  if [[ ! -s "$art" ]]; then
    node "$REPO/tests/evm/compile.js" "$src" TestToken "$art" >&2 ||
      { log "compile.js failed"; return 1; }
  fi
  "$py" "$HERE/evm.py" setup --rpc-url "$ANVIL_URL" --artifact "$art" >/dev/null ||
    { log "evm.py setup failed"; return 1; }
}

# Waits for evm_setup once. Without the chain the payment checks fail and say so (ANVIL_URL is
# not passed to them); the others still run.
EVM_STATE=""
evm_ready() {
  if [[ -z "$EVM_STATE" ]]; then
    if wait "$EVM_JOB"; then EVM_STATE=ok; else
      EVM_STATE=failed
      log "the EVM chain could not be set up: the payment checks will fail"
      total_fail=$((total_fail + 1))
    fi
  fi
  [[ $EVM_STATE == ok ]]
}

# --- build ------------------------------------------------------------------------------
if [[ -z "${PEAQOS_BIN:-}" ]]; then
  log "building server"
  (cd "$REPO" && cargo build --quiet)
  PEAQOS_BIN="${CARGO_TARGET_DIR:-$REPO/target}/debug/peaqos-orchestrator"
fi
[[ "$PEAQOS_BIN" == /* ]] || PEAQOS_BIN="$PWD/$PEAQOS_BIN" # the server runs from a temp dir
[[ -x "$PEAQOS_BIN" ]] || { log "server binary not found: $PEAQOS_BIN"; echo "0 passed, 1 failed"; exit 1; }

# --- venvs, and the EVM chain shared by every run ---------------------------------------
total_pass=0
total_fail=0
declare -A PY CLI_PY
for ver in "${VERSIONS[@]}"; do
  PY[$ver]="$(ensure_venv "$ver")"
  CLI_PY[$ver]=""
  if printf '%s\n' 0.12 "$ver" | sort -V -C; then CLI_PY[$ver]="$(ensure_cli_venv)"; fi
done
CHAIN_ID="$(cd "$HERE" && python3 -c 'import shop; print(shop.CHAIN_ID)')"
EVM_TMP="$(mktemp -d "${TMPDIR:-/tmp}/peaqos-sdk-evm.XXXXXX")"
TMPDIRS+=("$EVM_TMP")
EVM_PORT="$(free_port)"
ANVIL_URL="http://127.0.0.1:$EVM_PORT" # the servers and fake providers get it from the start
evm_setup "${PY[${VERSIONS[0]}]}" &
EVM_JOB=$!
PIDS+=("$EVM_JOB")

# --- run each client version against a fresh server ------------------------------------
for ver in "${VERSIONS[@]}"; do
  py="${PY[$ver]}"
  cli_py="${CLI_PY[$ver]}"
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

  # Fake provider and x402 paywall (fake_provider.py, needs the venv's eth_account): settles
  # x402 payments on the Anvil node. On a port picked now, so the order catalogue can point at
  # it while it starts; checked before the checks run.
  provider_url="http://127.0.0.1:$(free_port)"
  "$py" "$HERE/fake_provider.py" --port "${provider_url##*:}" --rpc-url "$ANVIL_URL" \
    >"$tmp/provider.log" 2>&1 &
  provider_pid=$!
  PIDS+=("$provider_pid")
  mkdir "$tmp/catalog"
  cp "$HERE"/catalog/*.json "$tmp/catalog/"
  python3 "$HERE/catalog/generate.py" --orders "$tmp/catalog/sdk-orders.json" \
    --provider-url "$provider_url" >/dev/null

  port="$(free_port)"
  url="http://127.0.0.1:$port"

  (cd "$tmp" && exec env PEAQOS_CATALOG_DIR="$tmp/catalog" PEAQOS_PAYMENT_RPC_URL="$ANVIL_URL" \
    "${SERVER_ENV[@]}" PEAQOS_LISTEN_ADDR="127.0.0.1:$port" \
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

  provider_up=0
  for _ in $(seq 100); do # ~20 s
    if curl -fs -o /dev/null --max-time 1 "$provider_url/_admin/health"; then
      provider_up=1; break
    fi
    kill -0 "$provider_pid" 2>/dev/null || break
    sleep 0.2
  done
  if [[ $provider_up -ne 1 ]]; then
    log "fake provider for $ver did not start; its log:"
    cat "$tmp/provider.log" >&2
    total_fail=$((total_fail + 1))
    continue
  fi
  checks_anvil=""
  if evm_ready; then checks_anvil="$ANVIL_URL"; fi

  log "peaq-os-sdk $ver against $url"
  rc=0
  (cd "$HERE" && PEAQOS_ORCHESTRATION_URL="$url" FAKE_MCR_URL="$mcr_url" PEAQOS_API_KEY="$API_KEY" \
    FAKE_PROVIDER_URL="$provider_url" ANVIL_URL="$checks_anvil" SDK_CATALOG_DIR="$tmp/catalog" \
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

  kill "$pid" "$mcr_pid" "$provider_pid" 2>/dev/null || true
  wait "$pid" "$mcr_pid" "$provider_pid" 2>/dev/null || true
done

echo "$total_pass passed, $total_fail failed"
[[ $total_fail -eq 0 ]]
