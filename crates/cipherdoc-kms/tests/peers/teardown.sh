#!/usr/bin/env bash
# Stops the peers started by setup.sh (by the pids it recorded).
set -uo pipefail
DIR="${CIPHERDOC_PEERS_DIR:-target/kms-peers}"
[ -d "$DIR" ] || exit 0
for name in moto kmip; do
  pidfile="$DIR/$name.pid"
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null
    # pykmip takes several seconds to exit after SIGTERM.
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
done
rm -f "$DIR/env"
