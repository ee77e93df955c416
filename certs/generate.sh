#!/usr/bin/env bash
# Regenerates the development/test TLS material in this directory:
#   ca.crt / ca.key          a private CA ("enforcer development CA")
#   server.crt / server.key  a server certificate signed by it, for localhost,
#                            127.0.0.1 and ::1 (the shipped config uses these)
# Valid for 100 years so tests never hit an expiry. FOR DEVELOPMENT AND TESTS ONLY:
# the private keys are public in this repository.
set -euo pipefail
cd "$(dirname "$0")"
days=36500
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout ca.key -out ca.crt -days "$days" \
  -subj "/CN=enforcer development CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign"

openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout server.key -out "$tmp/server.csr" -subj "/CN=localhost"

cat > "$tmp/ext.cnf" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1
EXT
openssl x509 -req -in "$tmp/server.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
  -out server.crt -days "$days" -extfile "$tmp/ext.cnf"
rm -f ca.srl
# PKCS#8 keys, the form rustls reads for every key type.
for k in ca.key server.key; do
  openssl pkcs8 -topk8 -nocrypt -in "$k" -out "$tmp/k" && mv "$tmp/k" "$k"
done
chmod 600 ca.key server.key
echo "wrote ca.crt ca.key server.crt server.key in $(pwd)"
