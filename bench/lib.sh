# bench/lib.sh — sourced by bench/compare.sh and bench/tls_compare.sh: the loopback nginx they both
# measure against, the clients they both run, and the raw-line log they both keep.
#
# The sourcing script sets, before calling these:
#   build  the release build directory (build/release)
#   work   a scratch directory, removed when the script exits
#   root   the flag tree nginx serves
#   out    where runs.txt (the raw lines) goes

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_listening() {  # PORT PID NAME
  for _ in $(seq 100); do
    if (echo > "/dev/tcp/127.0.0.1/$1") 2> /dev/null; then return 0; fi
    kill -0 "$2" 2> /dev/null || { echo "$3 did not start:" >&2; cat "$work/$3.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "$3 is not listening on port $1 after 10 s" >&2
  exit 1
}

# start_nginx [SERVER-BLOCK...]: nginx, one worker, serving the flag tree with keep-alive on a free
# loopback port ($nginx_port), and any further server blocks given (each must `listen` on a port the
# caller picked). Stopped, and $work removed, when the script exits.
start_nginx() {
  nginx_port=$(free_port)
  cat > "$work/nginx.conf" << EOF
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 65536;
error_log $work/nginx.log;
pid $work/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/t; proxy_temp_path $work/t; fastcgi_temp_path $work/t;
  uwsgi_temp_path $work/t; scgi_temp_path $work/t;
  types { image/gif gif; application/json json; }
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$nginx_port backlog=4096; root $root; }
$(printf '  %s\n' "$@")
}
EOF
  nginx -c "$work/nginx.conf" -p "$work" > "$work/nginx.log" 2>&1 &
  nginx_pid=$!
  trap 'kill $nginx_pid 2> /dev/null; wait 2> /dev/null; rm -rf "$work"' EXIT
  wait_listening "$nginx_port" $nginx_pid nginx
}

# run_client CLIENT URL REQUESTS CONCURRENCY [MORE OPTIONS...]: one run of one client; it prints its line.
run_client() {
  local args=(--url "$2" --requests "$3" --concurrency "$4" "${@:5}")
  case $1 in
    bare-c) "$build/bench/bare_client" "${args[@]}" ;;
    callbacks | coroutines) "$build/bench/http_load" --face "$1" "${args[@]}" ;;
    node) node bench/peers/node_load.js "${args[@]}" ;;
    aiohttp) /usr/bin/python3 bench/peers/aiohttp_load.py "${args[@]}" ;;
  esac
}

# logged WORKLOAD ROUND CLIENT COMMAND...: runs COMMAND, whose last line is a client's line
# (face=…), and appends it to $out/runs.txt prefixed with the workload and round; a run that prints
# no such line is logged as `face=CLIENT failed: <its stderr>`. Counts, but does not stop the script.
logged() {
  local line
  line=$("${@:4}" 2> "$work/client.err" | tail -n 1) || true
  [[ $line == face=* ]] || line="face=$3 failed: $(head -c 300 "$work/client.err" | tr '\n' ' ')"
  echo "workload=$1 round=$2 $line" | tee -a "$out/runs.txt"
}
