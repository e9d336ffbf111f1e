#!/usr/bin/python3
"""summarize.py — turns bench/compare.sh's raw lines into the table (medians, ratios to duet coroutines)
and the data file its chart is drawn from; with --tls, bench/tls_compare.sh's into its tables.

    summarize.py RUNS.txt [--table FILE.md] [--data FILE.dat]
    summarize.py --tls RUNS.txt [--table FILE.md]

Each line of RUNS.txt is `workload=W round=R face=F key=value ...` (a client's own line, prefixed), or
`workload=W round=R face=F failed: ...` for a run that printed no figures. The table is printed, and
written to --table if given.
"""
import argparse
import statistics
import sys

CLIENTS = ['bare-c', 'callbacks', 'coroutines', 'node', 'aiohttp']
NAMES = {'bare-c': 'bare C (libuv + llhttp)', 'callbacks': 'duet callbacks', 'coroutines': 'duet coroutines',
         'node': 'Node.js http', 'aiohttp': 'Python asyncio + aiohttp'}
FIGURES = [('seconds', 'seconds', '{:.3f}'), ('req_per_s', 'req/s', '{:,.0f}'),
           ('cpu_us_per_req', 'client CPU µs/req', '{:.2f}'), ('peak_rss_mb', 'peak RSS MB', '{:.1f}')]
WORKLOADS = [('throughput', '20,000 GETs, 100 in flight, loopback nginx (1 worker)'),
             ('scale', '10,000 GETs all in flight at once, flags_server DELAY (1 s)')]


def parse(path):
    runs = {}  # (workload, face) -> list of dicts
    failed = {}
    with open(path, encoding='utf-8') as f:
        for line in f:
            words = line.split()
            fields = dict(w.split('=', 1) for w in words if '=' in w)
            key = (fields.get('workload'), fields.get('face'))
            if 'failed:' in words or 'seconds' not in fields:
                failed[key] = failed.get(key, 0) + 1
                continue
            runs.setdefault(key, []).append(fields)
    return runs, failed


def table(runs, failed):
    out = []
    for workload, title in WORKLOADS:
        present = [c for c in CLIENTS if (workload, c) in runs or (workload, c) in failed]
        if not present:
            continue
        base = runs.get((workload, 'coroutines'))
        out.append(f'### {workload}: {title}\n')
        out.append('| client | runs | errors | ' + ' | '.join(f'{h} (median)' for _, h, _ in FIGURES) +
                   ' | ' + ' | '.join(f'{h} ÷ coroutines' for _, h, _ in FIGURES) + ' |')
        out.append('|---' * (3 + 2 * len(FIGURES)) + '|')
        for client in present:
            rows = runs.get((workload, client), [])
            if not rows:
                out.append(f'| {NAMES[client]} | 0 | {failed[(workload, client)]} failed |' + ' – |' * 2 * len(FIGURES))
                continue
            errors = sum(int(r['errors']) for r in rows) + failed.get((workload, client), 0)
            cells = [NAMES[client], str(len(rows)), str(errors)]
            medians = {k: statistics.median(float(r[k]) for r in rows if k in r) for k, _, _ in FIGURES
                       if any(k in r for r in rows)}
            for k, _, fmt in FIGURES:
                cells.append(fmt.format(medians[k]) if k in medians else '–')
            for k, _, _ in FIGURES:
                if base and k in medians:
                    b = statistics.median(float(r[k]) for r in base if k in r)
                    cells.append(f'{medians[k] / b:.2f}')
                else:
                    cells.append('–')
            out.append('| ' + ' | '.join(cells) + ' |')
        out.append('')
    return '\n'.join(out)


def median_of(rows, key):
    return statistics.median(float(r[key]) for r in rows)


def tls_table(runs, failed):
    """Per client: CPU per request over http and https (warm, then cold), the TLS/plain ratio (the
    median of the rounds' own ratios); then the handshake runs."""
    out = ['### 20,000 GETs, 100 in flight, loopback nginx (1 worker): plain http against https\n',
           '| client | runs | errors | plain µs/req | TLS µs/req (warm) | TLS ÷ plain | TLS µs/req (cold) | '
           'plain req/s | TLS req/s (warm) |',
           '|---' * 9 + '|']
    for client in CLIENTS:
        rows = {mode: runs.get((mode, client), []) for mode in ('plain', 'tls', 'cold')}
        if not any(rows.values()):
            continue
        errors = sum(int(r['errors']) for mode in rows for r in rows[mode]) + \
            sum(failed.get((mode, client), 0) for mode in rows)
        if not rows['plain'] or not rows['tls']:
            out.append(f'| {NAMES[client]} | – | {errors} | – | – | – | – | – | – |')
            continue
        plain_by_round = {r['round']: float(r['cpu_us_per_req']) for r in rows['plain']}
        ratios = [float(r['cpu_us_per_req']) / plain_by_round[r['round']] for r in rows['tls']
                  if r['round'] in plain_by_round]
        cold = f"{median_of(rows['cold'], 'cpu_us_per_req'):.2f}" if rows['cold'] else '–'
        out.append(f"| {NAMES[client]} | {len(rows['tls'])} | {errors} | {median_of(rows['plain'], 'cpu_us_per_req'):.2f} | "
                   f"{median_of(rows['tls'], 'cpu_us_per_req'):.2f} | **{statistics.median(ratios):.2f}** | {cold} | "
                   f"{median_of(rows['plain'], 'req_per_s'):,.0f} | {median_of(rows['tls'], 'req_per_s'):,.0f} |")
    out += ['', '### New connections one after the other (bench/tls_handshakes): TCP connect, handshake, one GET, close\n',
            '| handshake | runs | errors | resumed | connections/s | client CPU µs/connection |',
            '|---' * 6 + '|']
    for resume, title in [('off', 'full (--resume off)'), ('on', 'resumed (--resume on)'),
                          ('abrupt', 'resumed, closed without close_notify'), ('plain', 'none (http)')]:
        key = (f'handshakes-{resume}', 'handshakes')
        rows = runs.get(key, [])
        if not rows:
            continue
        errors = sum(int(r['errors']) for r in rows) + failed.get(key, 0)
        reused = sorted(int(r['reused']) for r in rows)
        resumed = f"{reused[0]}{f'–{reused[-1]}' if reused[-1] != reused[0] else ''} of {rows[0]['connections']}"
        out.append(f"| {title} | {len(rows)} | {errors} | {resumed if resume != 'plain' else '–'} | "
                   f"{median_of(rows, 'per_s'):,.0f} | {median_of(rows, 'cpu_us_per_conn'):.1f} |")
    out.append('')
    return '\n'.join(out)


def chart_data(runs):
    """One row per client: its name, then the medians the chart draws (? where missing)."""
    lines = ['# client throughput_seconds throughput_cpu_us_per_req scale_peak_rss_mb scale_seconds']
    for client in CLIENTS:
        cells = []
        for workload, key in [('throughput', 'seconds'), ('throughput', 'cpu_us_per_req'),
                              ('scale', 'peak_rss_mb'), ('scale', 'seconds')]:
            values = [float(r[key]) for r in runs.get((workload, client), []) if key in r]
            cells.append(f'{statistics.median(values):.3f}' if values else '?')
        lines.append(f'"{NAMES[client]}" ' + ' '.join(cells))
    return '\n'.join(lines) + '\n'


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('runs')
    parser.add_argument('--table')
    parser.add_argument('--data')
    parser.add_argument('--tls', action='store_true', help="bench/tls_compare.sh's runs")
    args = parser.parse_args()
    runs, failed = parse(args.runs)
    if not runs:
        sys.exit(f'{args.runs}: no runs with figures')
    text = tls_table(runs, failed) if args.tls else table(runs, failed)
    print(text)
    if args.table:
        with open(args.table, 'w', encoding='utf-8') as f:
            f.write(text)
    if args.data and not args.tls:
        with open(args.data, 'w', encoding='utf-8') as f:
            f.write(chart_data(runs))


if __name__ == '__main__':
    main()
