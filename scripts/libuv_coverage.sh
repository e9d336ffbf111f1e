#!/usr/bin/env bash
# How much of libuv's I/O surface duet uses: each function of the list below that appears in a call in
# include/ or src/ counts. Prints the functions not used and the share used; fails under 95%.
# The list: libuv's handle and request functions that do I/O (docs/libuv-coverage.md has the table).
# Usage: scripts/libuv_coverage.sh [--all]   (--all: print every function with where it is used)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

functions=(
  # loop, timers, signals, the thread pool, DNS
  uv_timer_init uv_timer_start uv_timer_stop uv_timer_again
  uv_signal_init uv_signal_start
  uv_queue_work uv_cancel uv_getaddrinfo uv_getnameinfo uv_random
  # loop hooks
  uv_idle_init uv_idle_start uv_idle_stop uv_prepare_init uv_prepare_start uv_prepare_stop
  uv_check_init uv_check_start uv_check_stop
  # streams
  uv_listen uv_accept uv_read_start uv_read_stop uv_write uv_try_write uv_shutdown
  uv_stream_get_write_queue_size
  # TCP
  uv_tcp_init uv_tcp_bind uv_tcp_connect uv_tcp_nodelay uv_tcp_getsockname uv_tcp_getpeername
  uv_tcp_keepalive uv_tcp_close_reset uv_tcp_open
  # pipes
  uv_pipe_init uv_pipe_bind uv_pipe_connect uv_pipe_open uv_pipe_getsockname uv_pipe_chmod
  # terminals
  uv_tty_init uv_tty_set_mode uv_tty_get_winsize
  # UDP
  uv_udp_init uv_udp_bind uv_udp_send uv_udp_recv_start uv_udp_connect uv_udp_getsockname
  uv_udp_set_membership uv_udp_set_broadcast uv_udp_set_ttl uv_udp_set_multicast_loop
  # processes
  uv_spawn uv_process_kill uv_kill
  # foreign descriptors and file watching
  uv_poll_init uv_poll_start uv_poll_stop
  uv_fs_event_init uv_fs_event_start uv_fs_event_stop uv_fs_poll_init uv_fs_poll_start uv_fs_poll_stop
  # files
  uv_fs_open uv_fs_read uv_fs_write uv_fs_close uv_fs_fsync uv_fs_mkdir uv_fs_rename uv_fs_stat
  uv_fs_unlink uv_fs_mkdtemp uv_fs_mkstemp uv_fs_rmdir uv_fs_scandir uv_fs_opendir uv_fs_readdir
  uv_fs_closedir uv_fs_fstat uv_fs_lstat uv_fs_statfs uv_fs_fdatasync uv_fs_ftruncate uv_fs_copyfile
  uv_fs_sendfile uv_fs_access uv_fs_chmod uv_fs_fchmod uv_fs_utime uv_fs_futime uv_fs_link
  uv_fs_symlink uv_fs_readlink uv_fs_realpath uv_fs_chown uv_fs_fchown
)

used=0
missing=()
for f in "${functions[@]}"; do
  where=$(grep -rE "\b$f\b" include src 2> /dev/null | grep -vE '^[^:]*:\s*//' | cut -d: -f1 | sort -u | head -3 |
    tr '\n' ' ' || true)
  if [[ -n $where ]]; then
    used=$((used + 1))
    [[ ${1:-} == --all ]] && printf '%-34s %s\n' "$f" "$where"
  else
    missing+=("$f")
  fi
done
total=${#functions[@]}
((${#missing[@]} == 0)) || echo "not used: ${missing[*]}"
percent=$((100 * used / total))
echo "libuv I/O functions used by duet: $used of $total ($percent%)"
((percent >= 95))
