# A real peer for duet's HTTP client tests: Python's http.server (HTTP/1.0). Serves files from the
# folder given as argv[1]; /close-delimited answers with a body that ends with the connection (no
# Content-Length). Prints its port on the first line of stdout, then serves until killed.
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
