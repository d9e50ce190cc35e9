#!/usr/bin/env bash
# Regenerates the locks from the pinned direct requirements: requirements.lock (the app) and
# requirements-dev.lock (the app, the tests and the tools), every transitive package pinned.
# The tool is pip-tools' pip-compile, itself pinned, in a throwaway virtualenv; run it after changing
# requirements.txt or requirements-dev.txt and commit the three files together.
set -euo pipefail
cd "$(dirname "$0")/.."

tools="$(mktemp -d)"
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools"
"$tools/bin/pip" install --quiet --disable-pip-version-check pip-tools==7.7.0

compile() {
  "$tools/bin/pip-compile" --quiet --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links \
    --no-header --annotation-style=line --output-file="$2" "$1"
}
compile requirements.txt requirements.lock
compile requirements-dev.txt requirements-dev.lock
echo "wrote requirements.lock ($(grep -c '==' requirements.lock) packages) and requirements-dev.lock ($(grep -c '==' requirements-dev.lock) packages)"
