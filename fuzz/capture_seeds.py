#!/usr/bin/env python3
"""Captures the fuzzers' seed corpora from real peers, so that fuzzing starts from what servers and
clients really send. Writes fuzz/corpus/http_response and fuzz/corpus/http_request.

Responses: nginx, Python's http.server and Node.js's http server (the test peers in tests/peers), and
flags_server, each asked over a raw socket for a flag, a missing file, a HEAD, a chunked or a
close-delimited body, and a malformed request. Each seed is the flag byte the response fuzzer reads
(bit 0: HEAD) followed by exactly the bytes the peer sent until it closed.

Requests: what duet's own client (bench/http_load), curl, Python's urllib and Node.js send, captured by
a listening socket; plus pipelined and chunked requests written here.

Usage: fuzz/capture_seeds.py BUILD_DIR   (a configured and built preset, e.g. build/release)
"""
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
RESPONSES = HERE / "corpus" / "http_response"
REQUESTS = HERE / "corpus" / "http_request"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, seconds=10):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def ask(port, request):
    """Sends `request`, half-closes, returns every byte the peer sends until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def get(path, method="GET", close=True):
    extra = b"Connection: close\r\n" if close else b""
    return f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n".encode() + extra + b"\r\n"


def save(folder, name, data):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    print(f"{folder.name}/{name}: {len(data)} bytes")


def capture_responses(build):
    flag_root = build / "flag_root"
    procs = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # nginx, serving the flag tree
            nginx_port = free_port()
            conf = pathlib.Path(tmp) / "nginx.conf"
            conf.write_text(
                "daemon off;\nmaster_process off;\nworker_processes 1;\n"
                f"error_log {tmp}/error.log;\npid {tmp}/nginx.pid;\nevents {{ worker_connections 64; }}\n"
                f"http {{ access_log off; client_body_temp_path {tmp}/b; proxy_temp_path {tmp}/p;\n"
                f"  fastcgi_temp_path {tmp}/f; types {{ image/gif gif; application/json json; }}\n"
                f"  server {{ listen 127.0.0.1:{nginx_port}; root {flag_root}; }} }}\n")
            procs.append(subprocess.Popen(["nginx", "-c", str(conf), "-p", tmp, "-e", f"{tmp}/error.log"]))
            # Python's http.server and Node.js's http server: the test peers, which print their port
            python = subprocess.Popen([sys.executable, str(REPO / "tests/peers/python_server.py"), str(flag_root)],
                                      stdout=subprocess.PIPE, text=True)
            procs.append(python)
            node = subprocess.Popen(["node", str(REPO / "tests/peers/node_server.js")], stdout=subprocess.PIPE, text=True)
            procs.append(node)
            python_port, node_port = int(python.stdout.readline()), int(node.stdout.readline())
            flags_port = free_port()
            procs.append(subprocess.Popen([str(build / "tools/flags_server"), "--root", str(flag_root), "--local-port",
                                           str(flags_port), "--delay-port", "0", "--error-port", "0"], stdout=subprocess.DEVNULL))
            for port in (nginx_port, python_port, node_port, flags_port):
                wait_port(port)

            plain, head = b"\0", b"\1"
            seeds = {
                "nginx-flag": (nginx_port, get("/flags/br/br.gif"), plain),
                "nginx-metadata": (nginx_port, get("/flags/br/metadata.json"), plain),
                "nginx-404": (nginx_port, get("/flags/zz/zz.gif"), plain),
                "nginx-head": (nginx_port, get("/flags/jp/jp.gif", "HEAD"), head),
                "nginx-keep-alive-two": (nginx_port, get("/flags/fr/metadata.json", close=False) +
                                         get("/flags/de/metadata.json"), plain),
                "nginx-400": (nginx_port, b"GET /\x01 HTTP/1.1\r\n\r\n", plain),
                "python-flag": (python_port, get("/flags/cn/cn.gif"), plain),
                "python-404": (python_port, get("/nope"), plain),
                "python-head": (python_port, get("/flags/in/in.gif", "HEAD"), head),
                "python-close-delimited": (python_port, get("/close-delimited"), plain),
                "python-400": (python_port, b"BAD\r\n\r\n", plain),
                "node-fixed": (node_port, get("/hello"), plain),
                "node-chunked": (node_port, get("/chunked"), plain),
                "node-head": (node_port, get("/hello", "HEAD"), head),
                "node-400": (node_port, b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n", plain),
                "flags_server-flag": (flags_port, get("/flags/us/us.gif"), plain),
                "flags_server-404": (flags_port, get("/flags/xx/xx.gif"), plain),
                "flags_server-head": (flags_port, get("/flags/id/id.gif", "HEAD"), head),
                "flags_server-405": (flags_port, get("/flags/br/br.gif", "POST"), plain),
            }
            for name, (port, request, flag) in seeds.items():
                save(RESPONSES, name, flag + ask(port, request))
    finally:
        for p in procs:
            p.terminate()
            p.wait()


def capture_requests(build):
    """Listens once per client, answers 204, and saves what each client sent."""
    def listen_once(name, command):
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        got = {}

        def serve():
            conn, _ = srv.accept()
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, rest = data.partition(b"\r\n\r\n")
            length = next((int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")), 0)
            while len(rest) < length:
                rest += conn.recv(65536)
            got["bytes"] = head + b"\r\n\r\n" + rest
            conn.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            conn.close()

        t = threading.Thread(target=serve)
        t.start()
        url = f"http://127.0.0.1:{port}/flags/br/br.gif"
        subprocess.run([part.replace("URL", url).replace("BASE", url.removesuffix("/br/br.gif")) for part in command], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=20)
        t.join()
        srv.close()
        save(REQUESTS, name, got["bytes"])

    listen_once("duet-client", [str(build / "bench/http_load"), "--face", "coroutines", "--url", "BASE",
                                  "--requests", "1", "--concurrency", "1"])
    listen_once("curl", ["curl", "-s", "URL"])
    listen_once("curl-post", ["curl", "-s", "-d", "name=value&x=1", "URL"])
    listen_once("python-urllib", [sys.executable, "-c", "import sys,urllib.request as u; u.urlopen(sys.argv[1])", "URL"])
    listen_once("node-http", ["node", "-e", "require('http').get(process.argv[1], r => r.resume())", "URL"])
    # Written here: what the peers above do not send on their own.
    save(REQUESTS, "pipelined", get("/a", close=False) + get("/bb", "HEAD", close=False) + get("/ccc"))
    save(REQUESTS, "chunked-post", b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                   b"5\r\nhello\r\n6; ext=1\r\n world\r\n0\r\nTrailer: t\r\n\r\n")
    save(REQUESTS, "http10", b"GET /old HTTP/1.0\r\n\r\n")
    save(REQUESTS, "too-large-body", b"PUT /big HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n" + b"x" * 2000)


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    build = pathlib.Path(sys.argv[1]).resolve()
    capture_responses(build)
    capture_requests(build)


if __name__ == "__main__":
    main()
