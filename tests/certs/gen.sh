#!/usr/bin/env bash
# Test certificates for the TLS and mutual-TLS tests (tests/distributed_e2e.rs): a CA, an agent
# certificate for localhost and 127.0.0.1, and a controller client certificate, valid for a
# century so the tests never expire. Regenerate with: bash tests/certs/gen.sh
# Test material only: never use these keys for anything else.
set -euo pipefail
cd "$(dirname "$0")"
days=36500
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key
openssl req -x509 -new -key ca.key -sha256 -days $days -subj "/CN=stampede test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out ca.pem
issue() { # name, subject, extensions
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key"
  openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
  printf '%s\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 -days $days \
    -extfile "$1.ext" -out "$1.pem"
  rm -f "$1.csr" "$1.ext"
}
issue agent "/CN=stampede test agent" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1"
issue controller "/CN=stampede test controller" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
# A second CA whose client certificate the agent must refuse.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out other-ca.key
openssl req -x509 -new -key other-ca.key -sha256 -days $days -subj "/CN=another CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out other-ca.pem
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out stranger.key
openssl req -new -key stranger.key -subj "/CN=stranger" -out stranger.csr
printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' > stranger.ext
openssl x509 -req -in stranger.csr -CA other-ca.pem -CAkey other-ca.key -CAcreateserial -sha256 \
  -days $days -extfile stranger.ext -out stranger.pem
rm -f stranger.csr stranger.ext ./*.srl other-ca.key ca.key
