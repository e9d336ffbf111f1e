#!/usr/bin/env bash
# Makes a private CA and a server certificate signed by it, for trying duet's TLS on this machine:
#
#   scripts/make_tls_certs.sh DIR
#
# writes DIR/ca.pem (give it to clients: SSL_CERT_FILE=DIR/ca.pem, curl --cacert), DIR/server.pem and
# DIR/server.key (for flags_server --tls-cert/--tls-key, nginx), valid for 30 days for the names
# localhost, 127.0.0.1 and ::1. Existing files that are still valid for a day are kept.
set -euo pipefail
dir=${1:?usage: scripts/make_tls_certs.sh DIR}
mkdir -p "$dir"
cd "$dir"
if [[ -f ca.pem && -f server.pem && -f server.key ]] && openssl x509 -checkend 86400 -noout -in server.pem > /dev/null; then
  exit 0
fi
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 30 -subj "/CN=duet private test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2> /dev/null
openssl req "${ec[@]}" -keyout server.key -out server.csr -subj "/CN=localhost" 2> /dev/null
printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" "basicConstraints=critical,CA:FALSE" \
  "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 30 \
  -extfile server.ext 2> /dev/null
rm -f server.csr server.ext ca.srl
