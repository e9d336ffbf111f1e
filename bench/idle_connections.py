#!/usr/bin/env python3
"""idle_connections.py — what a server holds per idle keep-alive connection.

    bench/idle_connections.py [--connections N] [--server flags_server|nginx|both]

Starts the server (duet's flags_server LOCAL site, or nginx with one worker serving the same flag
tree, keep-alive on), reads its resident set size (VmRSS in /proc/PID/status), then opens N
connections one after the other, sends one GET for a flag on each, reads the whole response, and
leaves the connection open: N idle keep-alive connections. Their RSS is read again, and the
difference divided by N is the memory one idle connection costs the server. Prints one line per
server: `server=… connections=… rss_before_kb=… rss_after_kb=… bytes_per_connection=…`.
Run it from a build with the flag tree (build/release); it raises its own descriptor limit.
"""
import argparse
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build", "release")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def wait_listening(port, proc):
    for _ in range(200):
        if proc.poll() is not None:
            sys.exit(f"the server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


def read_response(sock):
    """Reads one response with a Content-Length body; returns its status."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("the server closed the connection")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("the server closed the connection mid-body")
        body += chunk
    return int(lines[0].split()[1])


def measure(name, proc, port, n):
    wait_listening(port, proc)
    time.sleep(0.2)  # the listener's own start-up settled
    before = rss_kb(proc.pid)
    socks = []
    codes = ["br", "cn", "de", "fr", "in", "jp", "ng", "us"]
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        cc = codes[i % len(codes)]
        s.sendall(f"GET /flags/{cc}/{cc}.gif HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        status = read_response(s)
        if status != 200:
            sys.exit(f"{name}: status {status}")
        socks.append(s)
    time.sleep(0.5)  # let the server finish its writes' completions
    after = rss_kb(proc.pid)
    alive = proc.poll() is None
    for s in socks:
        s.close()
    if not alive:
        sys.exit(f"{name} exited during the run")
    per = (after - before) * 1024 / n
    print(f"server={name} connections={n} rss_before_kb={before} rss_after_kb={after} "
          f"bytes_per_connection={per:.0f}", flush=True)


def run_flags_server(n):
    port = free_port()
    proc = subprocess.Popen([os.path.join(BUILD, "tools", "flags_server"), "--local-port", str(port),
                             "--delay-port", "0", "--error-port", "0", "--max-connections", str(n + 100)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        measure("flags_server", proc, port, n)
    finally:
        proc.terminate()
        proc.wait()


def run_nginx(n):
    if not shutil.which("nginx"):
        sys.exit("nginx is not installed")
    port = free_port()
    work = tempfile.mkdtemp()
    conf = os.path.join(work, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""daemon off; master_process off; worker_processes 1; worker_rlimit_nofile {n + 1000};
error_log {work}/error.log; pid {work}/nginx.pid;
events {{ worker_connections {n + 100}; }}
http {{ access_log off; keepalive_timeout 60s; keepalive_requests 1000000;
  client_body_temp_path {work}/t; proxy_temp_path {work}/t; fastcgi_temp_path {work}/t;
  uwsgi_temp_path {work}/t; scgi_temp_path {work}/t; types {{ image/gif gif; }}
  server {{ listen 127.0.0.1:{port} backlog=4096; root {BUILD}/flag_root; }} }}
""")
    proc = subprocess.Popen(["nginx", "-c", conf, "-p", work], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        measure("nginx", proc, port, n)
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=9000)
    ap.add_argument("--server", choices=["flags_server", "nginx", "both"], default="both")
    a = ap.parse_args()
    if a.connections < 1:
        ap.error("--connections must be positive")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < a.connections + 100:
        sys.exit(f"the descriptor limit ({hard}) is below {a.connections + 100}")
    if a.server in ("flags_server", "both"):
        run_flags_server(a.connections)
    if a.server in ("nginx", "both"):
        run_nginx(a.connections)


if __name__ == "__main__":
    main()
