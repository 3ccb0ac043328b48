#!/usr/bin/env python3
"""parser.py - the page parser alone, on pages of the benchmark's alerts.

    make bench-parser                       # 10,000 alerts a page, compact and pretty
    python3 tests/bench/parser.py BINARY [ALERTS] [REPEATS]

Builds one compact page and one pretty-printed page (the fake's --pretty
transform) of generated alerts, runs BINARY (build/parser_bench) on each
several times and prints the median MB/s and microseconds per record. The
number to watch when changing records.c: the parser was about 60 % of
nscollect's CPU in the 1M-alert throughput benchmark.
"""

import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import fake_netskope  # noqa: E402


def page_bytes(records, pretty):
    """The page exactly as the fake serves it."""
    if pretty:
        return fake_netskope.page_pretty(records, 0)
    return fake_netskope.page_compact(records, 0)


def main():
    binary = sys.argv[1]
    alerts = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    recs = fake_netskope.generate(set(), {
        "count": alerts, "insertion_start": 1700000000, "insertion_end": 1700003600,
        "seed": 1})
    with tempfile.TemporaryDirectory(prefix="nscollect-parser-") as tmp:
        for pretty in (False, True):
            path = os.path.join(tmp, "page.json")
            data = page_bytes(recs, pretty)
            with open(path, "wb") as f:
                f.write(data)
            mbs, us = [], []
            for _ in range(5):
                out = subprocess.run([binary, path, str(repeats)], check=True,
                                     stdout=subprocess.PIPE).stdout.decode().split()
                kv = dict(zip(out[::2], out[1::2]))
                mbs.append(float(kv["MB/s"]))
                us.append(float(kv["us_per_record"]))
            print("parser, %s page of %d alerts (%.1f MB): %.0f MB/s, %.2f us per record "
                  "(median of 5 x %d)" % ("pretty" if pretty else "compact", alerts,
                                         len(data) / 1e6, statistics.median(mbs),
                                         statistics.median(us), repeats))


if __name__ == "__main__":
    main()
