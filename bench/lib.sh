# bench/lib.sh — sourced by bench/compare.sh, bench/tls_compare.sh and bench/memory_at_scale.sh: the
# loopback nginx they measure against, the clients they run, the raw-line log they keep, and the
# scale workload.
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

# The scale workload: flags_server's DELAY site (a fixed 1 s delay) on port 8001, and one client
# making 10,000 GETs all in flight at once (`scale_once CLIENT`). `isolated_setup` defines
# `isolated CLIENT`, which runs it in a network namespace of its own when this is root (its own
# loopback, with the listen queue raised to 16,384: on the machine's own network 10,000 connects at
# once overflow the default queue of 4,096 and wait out SYN retries, and the ports the previous run
# left in TIME_WAIT slow the kernel's port search), and on the shared network otherwise; it sets
# $isolation to say which.
scale_once() {  # CLIENT
  if [[ $DUET_NETNS == 1 ]]; then
    ip link set lo up
    sysctl -qw net.core.somaxconn=16384
  fi
  "$build/tools/flags_server" --local-port 0 --delay-port 8001 --error-port 0 --delay 1 \
    > /dev/null 2> "$work/flags_server.log" &
  local pid=$!
  wait_listening 8001 $pid flags_server > /dev/null
  run_client "$1" http://127.0.0.1:8001/flags 10000 10000
  local status=$?
  kill -INT $pid
  wait $pid > /dev/null 2>&1
  return $status
}
isolated_setup() {
  export -f scale_once run_client wait_listening
  if [[ $(id -u) -eq 0 ]] && unshare --net true 2> /dev/null; then
    export build work DUET_NETNS=1
    isolated() { unshare --net bash -c 'scale_once "$0"' "$1"; }
    isolation="a network namespace per run"
  else
    export build work DUET_NETNS=0
    isolated() { bash -c 'scale_once "$0"' "$1"; }
    isolation="not root, so on this machine's network: listen queue $(cat /proc/sys/net/core/somaxconn), TIME_WAIT sockets from one run slow the next"
  fi
}
