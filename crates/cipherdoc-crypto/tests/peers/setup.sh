#!/usr/bin/env bash
# Installs the test peers of cipherdoc-crypto's text search:
#   - libmongocrypt itself, through pymongocrypt 1.21.2 (which bundles
#     libmongocrypt 1.21) and pymongo's bson, in a venv;
#   - the Unicode Character Database 13.0.0 as the npm package
#     @unicode/unicode-13.0.0@2.0.7, which tools/gen-fold-tables.mjs reads.
# Writes "$DIR/env" with the CIPHERDOC_TEST_* variables the tests read:
#   set -a; . "$DIR/env"; set +a; cargo test -p cipherdoc-crypto --test text_peer
# Idempotent; nothing keeps running.
set -euo pipefail

DIR="${CIPHERDOC_CRYPTO_PEERS_DIR:-target/crypto-peers}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-python3}"
VENV="$DIR/venv"
start=$(date +%s)

if ! "$VENV/bin/python" -c 'import pymongocrypt, bson' 2>/dev/null; then
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    'pymongocrypt==1.21.2' 'pymongo==4.20.1'
fi
version=$("$VENV/bin/python" -c 'from pymongocrypt.binding import libmongocrypt_version as v; print(v())')
case "$version" in
  1.21.*) ;;
  *) echo "setup.sh: pymongocrypt loaded libmongocrypt $version, not 1.21" >&2; exit 1 ;;
esac

UCD="$DIR/ucd"
if [ ! -f "$UCD/package/package.json" ]; then
  rm -rf "$UCD" && mkdir -p "$UCD"
  ( cd "$UCD" && npm pack --silent '@unicode/unicode-13.0.0@2.0.7' >/dev/null && tar xzf unicode-unicode-13.0.0-2.0.7.tgz )
fi

cat > "$DIR/env" <<ENV
CIPHERDOC_TEST_MONGOCRYPT_PYTHON=$VENV/bin/python
CIPHERDOC_TEST_MONGOCRYPT_SCRIPT=$HERE/mongocrypt_text.py
CIPHERDOC_TEST_UCD_DIR=$UCD/package
ENV
echo "setup.sh: libmongocrypt $version and UCD 13.0.0 ready in $(( $(date +%s) - start ))s; env file: $DIR/env"
