# A real client for duet's HTTP server tests: Python's http.client, which sends a request's whole body
# before it reads a byte of the answer, as many clients do. POSTs argv[2] bytes to the URL argv[1]
# (https: trusting the CA file argv[3]) and prints what came back: "status 413", or the error that
# ended the exchange ("error ConnectionResetError").
import http.client
import ssl
import sys
import urllib.parse

url = urllib.parse.urlsplit(sys.argv[1])
if url.scheme == "https":
    context = ssl.create_default_context(cafile=sys.argv[3])
    conn = http.client.HTTPSConnection(url.hostname, url.port, context=context, timeout=20)
else:
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=20)
try:
    conn.request("POST", url.path or "/", body=b"x" * int(sys.argv[2]))
    response = conn.getresponse()
    response.read()
    print("status", response.status)
except Exception as e:  # what the client saw instead of an answer
    print("error", type(e).__name__)
