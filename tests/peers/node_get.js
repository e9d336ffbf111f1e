// A real peer for duet's HTTP server tests: Node.js's http client. GETs argv[2] and prints
// "STATUS LENGTH SHA256" of the body it read (chunked, by length, or to the close, as Node decides).
'use strict';
const http = require('http');
const crypto = require('crypto');

http.get(process.argv[2], (res) => {
  const hash = crypto.createHash('sha256');
  let length = 0;
  res.on('data', (piece) => {
    hash.update(piece);
    length += piece.length;
  });
  res.on('end', () => console.log(`${res.statusCode} ${length} ${hash.digest('hex')}`));
  res.on('error', (e) => { console.error(e.message); process.exit(1); });
}).on('error', (e) => { console.error(e.message); process.exit(1); });
