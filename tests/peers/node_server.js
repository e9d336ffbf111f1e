// A real peer for duet's HTTP client tests: Node.js's http server (libuv + llhttp, like duet).
// /chunked streams its body in several chunks, a few milliseconds apart (Transfer-Encoding: chunked);
// anything else gets a small fixed body. Prints its port on the first line of stdout.
'use strict';
const http = require('http');

/// Answers /chunked (true), or leaves the request to the caller (false). https_server.js uses it too.
function chunked(req, res) {
  if (req.url !== '/chunked') return false;
  res.writeHead(200, { 'Content-Type': 'text/plain' });
  let i = 0;
  const next = () => {
    if (i === 10) return res.end();
    res.write(`chunk ${i++};`);
    setTimeout(next, 2);
  };
  next();
  return true;
}

/// Listens on a free loopback port and prints it.
function listen(server) {
  server.keepAliveTimeout = 5000;
  server.listen(0, '127.0.0.1', () => console.log(server.address().port));
}

module.exports = { chunked, listen };

if (require.main === module) {
  listen(http.createServer((req, res) => {
    if (chunked(req, res)) return;
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': 5 });
    res.end('hello');
  }));
}
