#!/usr/bin/env node
// node_load — Node.js http with a keep-alive agent doing what bench/http_load does, for comparison.
//
//   node node_load.js --url BASE --requests N --concurrency C [--codes every|all] [--warmup W]
//
// Request i fetches {BASE}/{cc}/{cc}.gif for the i-th code, cycling over the codes, with at most C
// requests in flight (the agent's socket limit; the rest queue in the agent). With --warmup, W
// requests are made first, uncounted, and the clock starts once they are done, over the connections
// they opened. An https BASE goes through Node's https module, which trusts its bundled CAs plus
// those in the file NODE_EXTRA_CA_CERTS names (read at start-up). Prints the same line as http_load:
// face=node requests=… ok=… notfound=… errors=… seconds=… req_per_s=… peak_rss_mb=… cpu_us_per_req=…
'use strict';
const http = require('http');
const https = require('https');
const fs = require('fs');

function usage(why) {
  process.stderr.write(`*** Usage error: ${why}\nusage: node_load.js --url BASE --requests N --concurrency C [--codes every|all] [--warmup W]\n`);
  process.exit(2);
}

const opts = { url: '', requests: 100000, concurrency: 100, codes: 'all', warmup: 0 };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const name = argv[i].replace(/^--/, '');
  if (!(name in opts) || i + 1 >= argv.length) usage(`bad option ${argv[i]}`);
  opts[name] = typeof opts[name] === 'number' ? Number(argv[i + 1]) : argv[i + 1];
}
if (!opts.url) usage('--url is required');
if (!(opts.requests >= 1 && opts.concurrency >= 1)) usage('--requests and --concurrency must be at least 1');
if (!(opts.warmup >= 0)) usage('--warmup must be 0 or more');
if (opts.codes !== 'every' && opts.codes !== 'all') usage('--codes must be every or all');

let codes;
if (opts.codes === 'every') {
  const az = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
  codes = [...az].flatMap((a) => [...az].map((b) => a + b));
} else {
  codes = JSON.parse(fs.readFileSync('/usr/share/iso-codes/json/iso_3166-1.json', 'utf8'))['3166-1']
    .map((e) => e.alpha_2).sort();
}
codes = codes.map((cc) => cc.toLowerCase());
const base = opts.url.replace(/\/+$/, '');
const proto = base.startsWith('https:') ? https : http;
const agent = new proto.Agent({ keepAlive: true, maxSockets: opts.concurrency });
let counts, finished, start, cpuStart;

// Starts N requests; calls then() once all have ended.
function batch(n, then) {
  counts = { ok: 0, notfound: 0, errors: 0 };
  finished = 0;
  const done = (key) => {
    counts[key] += 1;
    if (++finished === n) setImmediate(then);  // after the agent has taken the last socket back
  };
  for (let i = 0; i < n; ++i) {
    const cc = codes[i % codes.length];
    proto.get(`${base}/${cc}/${cc}.gif`, { agent }, (res) => {
      res.resume();
      res.on('end', () => done(res.statusCode === 200 ? 'ok' : res.statusCode === 404 ? 'notfound' : 'errors'));
      res.on('error', () => done('errors'));
    }).on('error', () => done('errors'));
  }
}

function measured() {
  start = process.hrtime.bigint();
  cpuStart = process.cpuUsage();
  batch(opts.requests, report);
}

function report() {
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const peak = process.resourceUsage().maxRSS / 1024;
  const cpu = process.cpuUsage(cpuStart);
  process.stdout.write(`face=node requests=${finished} ok=${counts.ok} notfound=${counts.notfound} ` +
    `errors=${counts.errors} seconds=${seconds.toFixed(3)} req_per_s=${(finished / seconds).toFixed(0)} ` +
    `peak_rss_mb=${peak.toFixed(1)} cpu_us_per_req=${((cpu.user + cpu.system) / finished).toFixed(2)}\n`);
  agent.destroy();
  process.exitCode = counts.errors === 0 ? 0 : 1;
}

if (opts.warmup > 0) batch(opts.warmup, measured); else measured();
