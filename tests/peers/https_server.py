# A real peer for duet's TLS tests: Python's http.server (HTTP/1.0) over Python's ssl module.
#   python3 https_server.py CERT KEY ROOT [--tls1-only] [--truncate]
# Serves what python_server.py serves (its handler, here over TLS): files from ROOT, and
# /close-delimited. Each connection ends with close_notify, then the TCP close.
# --tls1-only: speaks TLS 1.0 and nothing else (a peer that a TLS 1.2 minimum must refuse).
# --truncate: every request is answered with "HTTP/1.1 200 OK", "Connection: close", no Content-Length
# and 1000 bytes of "x", then the connection is closed WITHOUT close_notify (a truncation attack, as
# far as the client can tell). Prints its port on the first line of stdout, then serves until killed.
import argparse
import socket
import socketserver
import ssl
import warnings

import python_server


class Handler(python_server.Handler):
    def setup(self):
        # The handshake runs here, on the connection's own thread: a client that never completes it
        # holds up no one else.
        self.request.settimeout(10)
        self.request = self.server.context.wrap_socket(self.request, server_side=True)
        self.connection = self.request
        super().setup()

    def do_GET(self):
        if self.server.truncate:
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n" + b"x" * 1000)
            self.close_connection = True
            return
        super().do_GET()

    def finish(self):
        super().finish()
        if self.server.truncate:
            close_without_notify(self.request)
        else:
            close_with_notify(self.request)


def close_with_notify(tls):
    """Sends close_notify, waits (briefly) for the client's, then closes the socket."""
    try:
        tls.settimeout(2)
        tls.unwrap().close()
    except (OSError, ValueError):  # the client closed first, or without its close_notify
        tls.close()


def close_without_notify(tls):
    """Ends the TCP connection (FIN) with no close_notify before it, then waits for the client to close,
    so that the close is not turned into a reset by bytes left unread."""
    try:
        tls.shutdown(socket.SHUT_WR)  # drops the TLS state first: nothing more is encrypted or sent
        tls.settimeout(2)
        while tls.recv(4096):
            pass
    except OSError:
        pass
    tls.close()


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # failed handshakes are what some tests are about: no tracebacks on stderr


def make_context(cert, key, tls1_only):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    if tls1_only:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = ssl.TLSVersion.TLSv1
        context.set_ciphers("DEFAULT@SECLEVEL=0")  # OpenSSL 3 allows TLS 1.0 only at level 0
    return context


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("cert")
    parser.add_argument("key")
    parser.add_argument("root")
    parser.add_argument("--tls1-only", action="store_true")
    parser.add_argument("--truncate", action="store_true")
    args = parser.parse_args()
    handler = lambda *a, **kw: Handler(*a, directory=args.root, **kw)
    with Server(("127.0.0.1", 0), handler) as server:
        server.context = make_context(args.cert, args.key, args.tls1_only)
        server.truncate = args.truncate
        print(server.server_address[1], flush=True)
        server.serve_forever()


main()
