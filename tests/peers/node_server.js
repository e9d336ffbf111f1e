// A real peer for duet's HTTP client tests: Node.js's http server (libuv + llhttp, like duet).
// /chunked streams its body in several chunks, a few milliseconds apart (Transfer-Encoding: chunked);
// anything else gets a small fixed body. Prints its port on the first line of stdout.
'use strict';
const http = require('http');

const server = http.createServer((req, res) => {
  if (req.url === '/chunked') {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    let i = 0;
    const next = () => {
      if (i === 10) return res.end();
      res.write(`chunk ${i++};`);
      setTimeout(next, 2);
    };
    return next();
  }
  res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': 5 });
  res.end('hello');
});
server.keepAliveTimeout = 5000;
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
