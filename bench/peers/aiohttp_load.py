#!/usr/bin/python3
"""aiohttp_load — the book's stack (asyncio + aiohttp) doing what bench/http_load does, for comparison.
Runs on Debian's python3 with its python3-aiohttp package.

    aiohttp_load.py --url BASE --requests N --concurrency C [--codes every|all] [--warmup W]

Request i fetches {BASE}/{cc}/{cc}.gif for the i-th code, cycling over the codes; every request is
started at once and an asyncio.Semaphore lets C through at a time, as in the book's flags2_asyncio.
With --warmup, W requests are made first, uncounted, and the clock starts once they are done, over the
connections they opened. An https BASE is verified against OpenSSL's default trust store, as aiohttp
does by default (ssl.create_default_context()), so SSL_CERT_FILE names a private CA.
Prints the same line as http_load:

    face=aiohttp requests=… ok=… notfound=… errors=… seconds=… req_per_s=… peak_rss_mb=… cpu_us_per_req=…
"""
import argparse
import asyncio
import json
import resource
import string
import sys
import time

import aiohttp

ISO_CODES = '/usr/share/iso-codes/json/iso_3166-1.json'


def codes_for(kind):
    if kind == 'every':
        return [a + b for a in string.ascii_uppercase for b in string.ascii_uppercase]
    with open(ISO_CODES, encoding='utf-8') as f:
        return sorted(entry['alpha_2'] for entry in json.load(f)['3166-1'])


async def fetch(session, semaphore, url, counts):
    async with semaphore:
        try:
            async with session.get(url) as resp:
                await resp.read()
                key = 'ok' if resp.status == 200 else 'notfound' if resp.status == 404 else 'errors'
        except (aiohttp.ClientError, asyncio.TimeoutError):
            key = 'errors'
    counts[key] += 1


async def main(args):
    codes = [cc.lower() for cc in codes_for(args.codes)]
    base = args.url.rstrip('/')
    counts = {'ok': 0, 'notfound': 0, 'errors': 0}
    semaphore = asyncio.Semaphore(args.concurrency)
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        def batch(n):
            urls = (f'{base}/{cc}/{cc}.gif' for cc in (codes[i % len(codes)] for i in range(n)))
            return asyncio.gather(*(fetch(session, semaphore, url, counts) for url in urls))
        if args.warmup:
            await batch(args.warmup)
            counts.update(ok=0, notfound=0, errors=0)
        start, cpu_start = time.perf_counter(), time.process_time()
        await batch(args.requests)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    done = sum(counts.values())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"face=aiohttp requests={done} ok={counts['ok']} notfound={counts['notfound']} "
          f"errors={counts['errors']} seconds={seconds:.3f} req_per_s={done / seconds:.0f} peak_rss_mb={peak:.1f} "
          f"cpu_us_per_req={cpu * 1e6 / max(done, 1):.2f}")
    return 0 if counts['errors'] == 0 else 1


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--url', required=True)
    parser.add_argument('--requests', type=int, default=100_000)
    parser.add_argument('--concurrency', type=int, default=100)
    parser.add_argument('--codes', choices=['every', 'all'], default='all')
    parser.add_argument('--warmup', type=int, default=0)
    parsed = parser.parse_args()
    if parsed.requests < 1 or parsed.concurrency < 1 or parsed.warmup < 0:
        parser.error('--requests and --concurrency must be at least 1, --warmup at least 0')
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sys.exit(asyncio.run(main(parsed)))
