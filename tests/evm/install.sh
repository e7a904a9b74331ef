#!/usr/bin/env bash
# Installs the test EVM toolchain pinned in package-lock.json (Anvil's binary and solc-js) into
# tests/evm/node_modules, once; later runs are no-ops. Prints the anvil binary's path.
# Needs node and npm (Debian: apt-get install nodejs npm) and the npm registry.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MARK="$HERE/node_modules/.installed"
if [[ ! -f "$MARK" || "$HERE/package-lock.json" -nt "$MARK" ]]; then
  # --ignore-scripts: the Anvil binary comes from its platform package; no postinstall needed.
  (cd "$HERE" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >&2)
  touch "$MARK"
fi
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) PLATFORM=linux-amd64 ;;
  Linux-aarch64) PLATFORM=linux-arm64 ;;
  Darwin-arm64) PLATFORM=darwin-arm64 ;;
  Darwin-x86_64) PLATFORM=darwin-amd64 ;;
  *) echo "no Anvil build for $(uname -s)-$(uname -m)" >&2; exit 1 ;;
esac
echo "$HERE/node_modules/@foundry-rs/anvil-$PLATFORM/bin/anvil"
