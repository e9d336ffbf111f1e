#!/usr/bin/env bash
# tls_compare.sh — what TLS adds to each HTTP client's CPU per request, and how many new TLS
# connections duet makes per second with and without session resumption; prints a table.
#
#   bench/tls_compare.sh [--runs N] [--connections N] [--out DIR]
#
# Makes a private CA and a certificate for 127.0.0.1 (ECDSA P-256, with the openssl CLI) in DIR/pki,
# and starts nginx as bench/compare.sh does (one worker, keep-alive, the flag tree), listening for
# http on one loopback port and for https on another (TLS 1.2 and 1.3, a shared session cache and
# session tickets). The clients trust the CA through SSL_CERT_FILE (duet, Python's ssl) and
# NODE_EXTRA_CA_CERTS (Node.js). Then, round after round, each client in an order rotated by one each
# round, and for each client its three runs, rotated too:
#
#   plain  20,000 GETs of {cc}.gif over http, at most 100 in flight, after 100 uncounted ones that open
#          the 100 connections (--warmup 100): the figures are for warm connections
#   tls    the same over https: the 100 handshakes are in the warm-up, not in the figures
#   cold   over https with no warm-up: the 100 handshakes are counted in
#
# for the clients callbacks and coroutines (bench/http_load --face …), node (bench/peers/node_load.js)
# and aiohttp (bench/peers/aiohttp_load.py); bench/compare.sh describes them. Then, in the same round,
# bench/tls_handshakes makes --connections new connections one after the other (default 2,000), each
# with one GET and `Connection: close`, four ways: `--resume off` (a full handshake each), `--resume
# on` (each resumes the session the one before was given; each closed with close_notify), the same
# closed without close_notify (`--close abrupt`, `TlsStream::abort`: the session must resume all the
# same), and over http (what is not TLS).
#
# The raw lines go to DIR/runs.txt (default build/release/bench/tls). The table (medians over the
# rounds; TLS ÷ plain is the median of each round's own ratio, its two runs being close in
# time) is printed and saved as DIR/table.md. A run with errors is reported and counts.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

runs=5 connections=2000 out=build/release/bench/tls
usage() { echo "usage: bench/tls_compare.sh [--runs N] [--connections N] [--out DIR]" >&2; exit 2; }
while (($#)); do
  case $1 in
    --runs) runs=${2:?}; shift 2 ;;
    --connections) connections=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    *) usage ;;
  esac
done
[[ $runs =~ ^[1-9][0-9]*$ && $connections =~ ^[1-9][0-9]*$ ]] || usage

source scripts/deps.sh
duet_ensure_packages python3-aiohttp

build=build/release
cmake --preset release > /dev/null
cmake --build --preset release -j"$(nproc)" --target http_load tls_handshakes flags_server > /dev/null
root=$(realpath "$build/flag_root")
mkdir -p "$out/pki"
out=$(realpath "$out")
work=$(mktemp -d)
source bench/lib.sh  # free_port, wait_listening, start_nginx, run_client, logged

# ---- the certificates --------------------------------------------------------------------------------
pki=$out/pki
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -days 2 -subj "/CN=duet bench CA" -keyout "$pki/ca.key" -out "$pki/ca.pem" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2> /dev/null
openssl req "${ec[@]}" -subj "/CN=127.0.0.1" -keyout "$pki/server.key" -out "$work/server.csr" 2> /dev/null
printf '%s\n' subjectAltName=IP:127.0.0.1,DNS:localhost basicConstraints=CA:FALSE keyUsage=digitalSignature \
  extendedKeyUsage=serverAuth authorityKeyIdentifier=keyid subjectKeyIdentifier=hash > "$work/server.ext"
openssl x509 -req -in "$work/server.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial -days 2 \
  -extfile "$work/server.ext" -out "$pki/server.pem" 2> /dev/null
export SSL_CERT_FILE=$pki/ca.pem NODE_EXTRA_CA_CERTS=$pki/ca.pem

# ---- the server ----------------------------------------------------------------------------------
tls_port=$(free_port)
start_nginx "server {
    listen 127.0.0.1:$tls_port ssl backlog=4096; root $root;
    ssl_certificate $pki/server.pem; ssl_certificate_key $pki/server.key;
    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:SSL:10m; ssl_session_timeout 1h; ssl_session_tickets on;
  }"
wait_listening "$tls_port" "$nginx_pid" nginx
http=http://127.0.0.1:$nginx_port/flags https=https://127.0.0.1:$tls_port/flags

# ---- the runs ------------------------------------------------------------------------------------
clients=(callbacks coroutines node aiohttp) modes=(plain tls cold) shakes=(off on abrupt plain)
throughput() {  # CLIENT MODE
  case $2 in
    plain) run_client "$1" "$http" 20000 100 --warmup 100 ;;
    tls) run_client "$1" "$https" 20000 100 --warmup 100 ;;
    cold) run_client "$1" "$https" 20000 100 ;;
  esac
}
handshakes() {  # off | on | abrupt | plain
  local url=$https/ad/ad.gif args
  case $1 in
    off | on) args=(--resume "$1") ;;
    abrupt) args=(--resume on --close abrupt) ;;
    plain) url=$http/ad/ad.gif args=() ;;
  esac
  "$build/bench/tls_handshakes" --url "$url" --connections "$connections" "${args[@]}"
}

: > "$out/runs.txt"
echo "== 20,000 GETs, 100 in flight, nginx http :$nginx_port and https :$tls_port; $connections new connections ($runs rounds)"
for r in $(seq "$runs"); do
  for ((i = 0; i < ${#clients[@]}; ++i)); do
    client=${clients[(i + r) % ${#clients[@]}]}
    for ((j = 0; j < ${#modes[@]}; ++j)); do
      mode=${modes[(j + r) % ${#modes[@]}]}
      logged "$mode" "$r" "$client" throughput "$client" "$mode"
    done
  done
  for ((j = 0; j < ${#shakes[@]}; ++j)); do
    shake=${shakes[(j + r) % ${#shakes[@]}]}
    logged "handshakes-$shake" "$r" handshakes handshakes "$shake"
  done
done

# ---- the table -----------------------------------------------------------------------------------
python3 bench/summarize.py --tls "$out/runs.txt" --table "$out/table.md"
