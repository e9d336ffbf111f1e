#!/usr/bin/env python3
"""Line coverage of the files under a folder, from a gcov build: what scripts/test.sh checks for
include/, where most of an operation's logic lives in header templates.

    scripts/line_coverage.py BUILD_DIR FOLDER [--fail-under PERCENT]

Runs gcov (JSON output) on every .gcda file under BUILD_DIR, on all cores, and merges the lines of
the source files under FOLDER: a line counts as run if any translation unit ran it (a header's
template is compiled into many). Prints "FOLDER lines: P% (RUN of TOTAL)" and, with --fail-under,
exits 1 below PERCENT. (gcovr 5.2 stops with an assertion when it merges the headers' coroutine
functions, and lcov 1.16 takes minutes on one core for the same answer.)
"""
import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor


def lines_of(gcda, folder):
    """{(file, line): ran} for the lines of files under `folder` that one .gcda file records."""
    out = subprocess.run(["gcov", "--json-format", "--stdout", "--object-directory", os.path.dirname(gcda), gcda],
                         capture_output=True, text=True, cwd=os.path.dirname(gcda))
    found = {}
    for doc in out.stdout.splitlines():
        if not doc.startswith("{"):
            continue
        for f in json.loads(doc).get("files", []):
            path = os.path.realpath(os.path.join(os.path.dirname(gcda), f["file"]))
            if not path.startswith(folder + os.sep):
                continue
            for line in f["lines"]:
                key = (path, line["line_number"])
                found[key] = found.get(key, False) or line["count"] > 0
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build_dir")
    parser.add_argument("folder")
    parser.add_argument("--fail-under", type=float, default=0)
    args = parser.parse_args()
    folder = os.path.realpath(args.folder)
    build_dir = os.path.realpath(args.build_dir)
    gcdas = [os.path.join(d, n) for d, _, names in os.walk(build_dir) for n in names if n.endswith(".gcda")]
    merged = {}
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for found in pool.map(lambda g: lines_of(g, folder), gcdas):
            for key, ran in found.items():
                merged[key] = merged.get(key, False) or ran
    total = len(merged)
    run = sum(1 for ran in merged.values() if ran)
    percent = 100.0 * run / total if total else 0.0
    print(f"{args.folder} lines: {percent:.1f}% ({run} of {total}) from {len(gcdas)} gcda files")
    if percent < args.fail_under:
        print(f"{args.folder} line coverage under {args.fail_under:g}%")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
