// A real peer for duet's TLS tests: Node.js's https server (keep-alive, chunked bodies, ALPN http/1.1).
//   node https_server.js CERT KEY ROOT
// Serves files from ROOT with Transfer-Encoding: chunked (streamed from disk, no Content-Length);
// /chunked streams its body in several chunks, a few milliseconds apart, as node_server.js does; a
// missing file gets a 404 with a small fixed body. Prints its port on the first line of stdout.
'use strict';
const fs = require('fs');
const https = require('https');
const path = require('path');

const [cert, key, root] = process.argv.slice(2);
const top = path.resolve(root);

const server = https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key), ALPNProtocols: ['http/1.1'] },
  (req, res) => {
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
    const file = path.join(top, decodeURIComponent(req.url.split('?')[0]));
    fs.stat(file, (err, st) => {
      if (err || !st.isFile() || !file.startsWith(top + path.sep)) {
        res.writeHead(404, { 'Content-Type': 'text/plain', 'Content-Length': 10 });
        return res.end('not found\n');
      }
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' });  // no length: chunked
      if (req.method === 'HEAD') return res.end();
      fs.createReadStream(file).pipe(res);
    });
  });
server.keepAliveTimeout = 5000;
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
