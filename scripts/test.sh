#!/usr/bin/env bash
# Installs what the tests need (a virtualenv from requirements-dev.lock, and Debian's chromium, redis-server
# and wrk when missing) and runs the linters and the whole test suite.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.lock

# Debian packages some tests need: installed when missing (as root), else those tests skip with a note.
install_if_missing() {  # command, package, what needs it
  if command -v "$1" >/dev/null 2>&1; then return; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's $2 for $3…"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
  else
    echo "note: $2 is not installed, so $3 will be skipped (apt-get install $2)"
  fi
}
install_if_missing chromium chromium "the browser tests"
install_if_missing redis-server redis-server "the Redis counter tests"
install_if_missing wrk wrk "the bench's wrk tests"

.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest "$@"
