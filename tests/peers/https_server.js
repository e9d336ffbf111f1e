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

const { chunked, listen } = require('./node_server');

listen(https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key), ALPNProtocols: ['http/1.1'] },
  (req, res) => {
    if (chunked(req, res)) return;
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
  }));
