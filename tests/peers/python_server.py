# A real peer for duet's HTTP client tests: Python's http.server (HTTP/1.0). Serves files from the
# folder given as argv[1]; /close-delimited answers with a body that ends with the connection (no
# Content-Length). POST /upload reads a body of Content-Length bytes in pieces and answers with its
# length and SHA-256 ("LENGTH HEXDIGEST"). Prints its port on the first line of stdout, then serves
# until killed.
import hashlib
import http.server
import socketserver
import sys


class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/close-delimited":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()  # no Content-Length: HTTP/1.0, the body ends with the connection
            self.wfile.write(b"the body ends when the connection does\n" * 100)
            return
        super().do_GET()

    def do_POST(self):
        if self.path != "/upload":
            self.send_error(404)
            return
        remaining = int(self.headers["Content-Length"])
        digest, length = hashlib.sha256(), 0
        while remaining > 0:
            piece = self.rfile.read(min(remaining, 1 << 16))
            if not piece:
                break
            digest.update(piece)
            length += len(piece)
            remaining -= len(piece)
        answer = f"{length} {digest.hexdigest()}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def main():  # (https_server.py imports Handler; only running this file starts the plain server)
    folder = sys.argv[1]
    handler = lambda *a, **kw: Handler(*a, directory=folder, **kw)
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler) as server:
        print(server.server_address[1], flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
