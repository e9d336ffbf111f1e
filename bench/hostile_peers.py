#!/usr/bin/env python3
"""Hostile peers against flags_server: what each attack costs the server in memory, and whether it
is cut off. Each attack runs against a fresh flags_server on loopback, for a bounded time, and prints
the server's peak RSS (VmHWM) and what happened to the attacking connections.

    bench/hostile_peers.py FLAGS_SERVER [--root TREE] [ATTACK ...]

With --root, flags_server serves that tree (the book's flags, 11 KB for BR, make the pipeline attack's
responses realistic); without, the tree the build made (famfamfam's 16x11 GIFs, under 1 KB).

Attacks:
  pipeline   one socket pipelines GETs for a flag as fast as it can and never reads a byte (6 s)
  fields     one socket sends a request head made of empty header lines `:\\r\\n`, for 6 s
  body       300 sockets each declare a 1 MiB body and send all of it but the last byte, then stall;
             20 more declare a body and send nothing (against --max-connections 20 for the lock-out)
"""
import os
import socket
import subprocess
import sys
import time

FLAG = b"GET /flags/br/br.gif HTTP/1.1\r\nHost: localhost\r\n\r\n"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


ROOT = []


class Server:
    def __init__(self, binary, *extra):
        self.port = free_port()
        args = [binary, "--host", "127.0.0.1", "--local-port", str(self.port), "--delay-port", "0",
                "--error-port", "0", *ROOT, *extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        self.start_rss = rss_kib(self.proc.pid)

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        return s

    def stop(self):
        peak = peak_rss_kib(self.proc.pid)
        self.proc.terminate()
        self.proc.wait(timeout=10)
        return peak


def closed_by_peer(s):
    """True if the server has closed (or reset) this connection."""
    s.setblocking(False)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def flood(s, burst, seconds):
    """Sends `burst` over and over on non-blocking `s` for `seconds`, reading nothing. Returns the bytes
    sent, and after how long the server cut the connection (None if it did not)."""
    sent = 0
    start = time.monotonic()
    while time.monotonic() < start + seconds:
        try:
            sent += s.send(burst)
        except BlockingIOError:
            time.sleep(0.001)
        except OSError:
            return sent, time.monotonic() - start
    return sent, None


def attack_pipeline(binary):
    srv = Server(binary)
    s = srv.connect()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.setblocking(False)
    burst = FLAG * 64
    sent, cut = flood(s, burst, 6)
    requests = sent // len(FLAG)
    peak = srv.stop()
    s.close()
    verdict = f"cut off after {cut:.1f} s" if cut is not None else "still connected after 6 s"
    print(f"pipeline: {requests} requests sent, {verdict}; server RSS {srv.start_rss} KiB at start, peak {peak} KiB")


def attack_fields(binary):
    srv = Server(binary)
    s = srv.connect()
    s.setblocking(False)
    s.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
    burst = b":\r\n" * 4096
    sent, cut = flood(s, burst, 6)
    reply = b""
    try:
        reply = s.recv(200)
    except OSError:
        pass
    peak = srv.stop()
    s.close()
    verdict = f"cut off after {cut:.1f} s" if cut is not None else "still connected after 6 s"
    status = reply.split(b"\r\n", 1)[0].decode(errors="replace") if reply else "no answer"
    print(f"fields: {sent // 3} empty lines sent, {verdict} ({status}); server RSS {srv.start_rss} KiB at start, peak {peak} KiB")


def attack_body(binary):
    srv = Server(binary, "--max-connections", "340", "--header-timeout", "2")
    socks = []
    head = b"POST /flags HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1048576\r\n\r\n"
    chunk = b"x" * 65536
    refused = 0
    for _ in range(300):
        s = srv.connect()
        socks.append(s)
        try:
            s.sendall(head)
            left = 1048576 - 1
            while left > 0:
                left -= s.send(chunk[: min(left, len(chunk))])
        except OSError:  # the server refused the body (413) and closed
            refused += 1
    silent = []
    for _ in range(20):
        s = srv.connect()
        try:
            s.sendall(head)
        except OSError:
            pass
        silent.append(s)
    time.sleep(4)  # the attack holds for twice the server's --header-timeout
    rss_held = rss_kib(srv.proc.pid)
    cut = sum(closed_by_peer(s) for s in socks)
    cut_silent = sum(closed_by_peer(s) for s in silent)
    # Can a well-behaved client still get a flag?
    try:
        c = srv.connect()
        c.sendall(FLAG)
        ok = c.recv(20).startswith(b"HTTP/1.1 200")
        c.close()
    except OSError:
        ok = False
    peak = srv.stop()
    for s in socks + silent:
        s.close()
    print(f"body: {refused}/300 bodies refused while being sent; after 4 s, {cut}/300 stalled bodies and "
          f"{cut_silent}/20 silent bodies cut off; "
          f"a new client {'is served' if ok else 'is NOT served'}; server RSS {srv.start_rss} KiB at start, "
          f"{rss_held} KiB during the attack, peak {peak} KiB")


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    binary = sys.argv[1]
    rest = sys.argv[2:]
    if rest[:1] == ["--root"]:
        ROOT.extend(rest[:2])
        rest = rest[2:]
    attacks = rest or ["pipeline", "fields", "body"]
    for name in attacks:
        {"pipeline": attack_pipeline, "fields": attack_fields, "body": attack_body}[name](binary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
