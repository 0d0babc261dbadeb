#!/usr/bin/env bash
# Installs and starts the loopback KMS test peers for cipherdoc-kms:
#   - moto (AWS KMS emulator) in server mode, with request authentication ON
#     (an IAM user with a kms:* policy is created during the first
#     unauthenticated calls; its access key is written to the env file);
#   - pykmip's KMIP server over TLS 1.2 with client-certificate auth
#     (CA, server and client certificates generated here, P-256 keys).
# Writes "$DIR/env" with CIPHERDOC_TEST_* variables for the tests:
#   set -a; . "$DIR/env"; set +a; cargo test -p cipherdoc-kms
# Stop them with teardown.sh. Idempotent: re-running restarts the servers.
set -euo pipefail

DIR="${CIPHERDOC_PEERS_DIR:-target/kms-peers}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-python3}"
VENV="$DIR/venv"
PKI="$DIR/pki"
start=$(date +%s)

# Stop anything a previous run left behind.
bash "$HERE/teardown.sh" >/dev/null 2>&1 || true

if [ ! -x "$VENV/bin/moto_server" ] || [ ! -x "$VENV/bin/pykmip-server" ]; then
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    'moto[server]==5.2.5' 'boto3==1.44.8' \
    'pykmip==0.11.0' 'cryptography==50.0.2' 'SQLAlchemy==2.1.9'
fi

free_port() {
  "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# ---- KMIP PKI (P-256: with RSA keys pykmip offers only non-AEAD TLS 1.2
# suites, which rustls refuses) ----
mkdir -p "$PKI"
if [ ! -f "$PKI/client.crt" ]; then
  ( cd "$PKI"
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
    openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=cipherdoc test CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out ca.crt 2>/dev/null
    for who in server client; do
      openssl ecparam -name prime256v1 -genkey -noout -out "$who.ec.key" 2>/dev/null
      # PKCS#8 for both pykmip and rustls.
      openssl pkcs8 -topk8 -nocrypt -in "$who.ec.key" -out "$who.key"
      rm -f "$who.ec.key"
      openssl req -new -key "$who.key" -subj "/CN=cipherdoc-test-$who" -out "$who.csr" 2>/dev/null
      if [ "$who" = server ]; then
        printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyAgreement\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$who.ext"
      else
        printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyAgreement\nextendedKeyUsage=clientAuth\n' > "$who.ext"
      fi
      openssl x509 -req -in "$who.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -sha256 \
        -extfile "$who.ext" -out "$who.crt" 2>/dev/null
      rm -f "$who.csr" "$who.ext"
    done )
fi

# ---- moto (AWS KMS) with authentication enabled after 3 calls ----
AWS_PORT=$(free_port)
INITIAL_NO_AUTH_ACTION_COUNT=3 nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$AWS_PORT" \
  > "$DIR/moto.log" 2>&1 &
echo $! > "$DIR/moto.pid"

# ---- pykmip ----
KMIP_PORT=$(free_port)
mkdir -p "$DIR/kmip-policies"
rm -f "$DIR/pykmip.db"
cat > "$DIR/server.conf" <<CONF
[server]
hostname=127.0.0.1
port=$KMIP_PORT
certificate_path=$PKI/server.crt
key_path=$PKI/server.key
ca_path=$PKI/ca.crt
auth_suite=TLS1.2
policy_path=$DIR/kmip-policies
enable_tls_client_auth=True
logging_level=INFO
database_path=$DIR/pykmip.db
CONF
nohup "$VENV/bin/pykmip-server" -f "$DIR/server.conf" -l "$DIR/kmip.log" \
  > "$DIR/kmip.out" 2>&1 &
echo $! > "$DIR/kmip.pid"

wait_port() {
  local port=$1 name=$2
  for _ in $(seq 1 100); do
    if "$VENV/bin/python" -c "import socket,sys; s=socket.socket(); s.settimeout(0.2); sys.exit(s.connect_ex(('127.0.0.1',$port)))"; then
      return 0
    fi
    sleep 0.1
  done
  echo "setup.sh: $name did not start on port $port; see $DIR" >&2
  return 1
}
wait_port "$AWS_PORT" moto_server
wait_port "$KMIP_PORT" pykmip-server

# Create the IAM user used by the tests during the 3 unauthenticated calls.
CREDS=$(AWS_PORT=$AWS_PORT "$VENV/bin/python" - <<'PYEOF'
import json, os, boto3
iam = boto3.client("iam", endpoint_url="http://127.0.0.1:%s" % os.environ["AWS_PORT"],
                   region_name="us-east-1", aws_access_key_id="bootstrap",
                   aws_secret_access_key="bootstrap")
iam.create_user(UserName="cipherdoc-test")
iam.put_user_policy(UserName="cipherdoc-test", PolicyName="kms-all", PolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]}))
k = iam.create_access_key(UserName="cipherdoc-test")["AccessKey"]
print(k["AccessKeyId"], k["SecretAccessKey"])
PYEOF
)
read -r AKID SECRET <<< "$CREDS"
if [ -z "${AKID:-}" ] || [ -z "${SECRET:-}" ]; then
  echo "setup.sh: could not create the moto IAM user; see $DIR/moto.log" >&2
  exit 1
fi

# KMIP: a real round trip (TLS handshake with the client certificate) proves
# the server is ready, not just listening.
kmip_ready=0
for _ in $(seq 1 50); do
  if "$VENV/bin/python" - "$KMIP_PORT" "$PKI" >/dev/null 2>&1 <<'PYEOF'
import socket, ssl, sys
port, pki = int(sys.argv[1]), sys.argv[2]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(pki + "/ca.crt")
ctx.load_cert_chain(pki + "/client.crt", pki + "/client.key")
ctx.maximum_version = ssl.TLSVersion.TLSv1_2
with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
    with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
        t.do_handshake()
PYEOF
  then kmip_ready=1; break; fi
  sleep 0.2
done
if [ "$kmip_ready" != 1 ]; then
  echo "setup.sh: pykmip-server does not complete a TLS handshake; see $DIR/kmip.log" >&2
  exit 1
fi

cat > "$DIR/env" <<ENV
CIPHERDOC_TEST_AWS_ENDPOINT=http://127.0.0.1:$AWS_PORT
CIPHERDOC_TEST_AWS_ACCESS_KEY_ID=$AKID
CIPHERDOC_TEST_AWS_SECRET_ACCESS_KEY=$SECRET
CIPHERDOC_TEST_KMIP_ENDPOINT=127.0.0.1:$KMIP_PORT
CIPHERDOC_TEST_KMIP_CA=$PKI/ca.crt
CIPHERDOC_TEST_KMIP_CLIENT_CERT=$PKI/client.crt
CIPHERDOC_TEST_KMIP_CLIENT_KEY=$PKI/client.key
ENV
echo "setup.sh: peers up in $(( $(date +%s) - start ))s; env file: $DIR/env"
