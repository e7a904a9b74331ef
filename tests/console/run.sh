#!/usr/bin/env bash
# The operator console in a real headless Chromium against the real server binary (see
# README.md here). Installs what it needs on first use: Debian's chromium (apt-get, as root) and
# playwright-core + lit-html pinned in package-lock.json (npm ci). Builds the binary unless
# CONSOLE_SERVER_BIN names one. Screenshots go to target/console-screenshots/;
# CONSOLE_UPDATE_DOCS=1 also refreshes docs/console.png, the README's picture.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

if ! command -v chromium >/dev/null 2>&1; then
  echo "console: installing Debian's chromium" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
fi
MARK="$HERE/node_modules/.installed"
if [[ ! -f "$MARK" || "$HERE/package-lock.json" -nt "$MARK" ]]; then
  # --ignore-scripts: playwright-core downloads nothing; the browser is Debian's.
  (cd "$HERE" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >&2)
  touch "$MARK"
fi
if [[ -z "${CONSOLE_SERVER_BIN:-}" ]]; then
  (cd "$REPO" && cargo build --quiet)
fi
export CHROMIUM="${CHROMIUM:-$(command -v chromium)}"
cd "$REPO"
exec node --test --test-reporter=spec "$HERE/console.test.mjs"
