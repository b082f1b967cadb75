#!/usr/bin/env bash
# A throwaway CA and a server certificate for localhost/127.0.0.1 (and any
# further DNS names given), for the TLS tests (PostgreSQL with ssl=on, the
# local Key Vault stand-in):
#   make-test-certs.sh DIR [DNS_NAME...]  ->  DIR/ca.crt DIR/server.crt DIR/server.key
set -euo pipefail
dir=$1
shift
names="DNS:localhost,IP:127.0.0.1"
for name in "$@"; do names="$names,DNS:$name"; done
mkdir -p "$dir"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=amplifier test CA" \
  -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
  -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$names" > "$dir/ext.cnf"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
  -CAcreateserial -days 2 -extfile "$dir/ext.cnf" -out "$dir/server.crt" 2>/dev/null
chmod 600 "$dir/server.key"
