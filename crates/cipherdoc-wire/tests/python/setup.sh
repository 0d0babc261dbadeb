#!/usr/bin/env bash
# Installs the pinned client stack (pymongo + pymongocrypt, which bundles
# libmongocrypt) that the wire server's Python suite runs against, into
#   ${CIPHERDOC_WIRE_PEERS_DIR:-target/wire-peers}/venv
# `cargo test -p cipherdoc-cli --test serve` finds it there (or at
# $CIPHERDOC_WIRE_PEERS_DIR) and runs the suite; without it the suite is
# skipped, unless CIPHERDOC_REQUIRE_PEERS=1. Idempotent.
set -euo pipefail

DIR="${CIPHERDOC_WIRE_PEERS_DIR:-target/wire-peers}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-python3}"
VENV="$DIR/venv"
start=$(date +%s)

if ! "$VENV/bin/python" - "$HERE/requirements.txt" >/dev/null 2>&1 <<'PYEOF'
import sys
from importlib.metadata import version
want = {}
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if line:
        name, v = line.split("==")
        want[name] = v
for name, v in want.items():
    assert version(name) == v, name
import pymongocrypt.binding  # loads the bundled libmongocrypt
PYEOF
then
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$HERE/requirements.txt"
fi
"$VENV/bin/python" -c 'import pymongo, pymongocrypt; from pymongocrypt.binding import libmongocrypt_version; print("wire peers: pymongo", pymongo.version, "pymongocrypt", pymongocrypt.__version__, "libmongocrypt", libmongocrypt_version())'
echo "setup.sh: wire peers ready in $(( $(date +%s) - start ))s: $VENV"
