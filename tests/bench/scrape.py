#!/usr/bin/env python3
"""scrape.py - what a /metrics scrape costs with many tenants (issue 16):
BENCH_TENANTS (10,000) tenants with 10 alerts each are collected by one
`run --once`, so every counter has a value; then the daemon runs with
metrics.listen and BENCH_SCRAPES (20) scrapes are timed (wall, bytes,
samples), each at least a second apart so none is served from the 1-s
cache; promtool checks the last one.

    make bench-scrape            (BENCH_TENANTS=1000 for a quick run)

Scrapes are timed from the client (urllib over loopback), so the time
includes reading the database, formatting and sending the text.
"""

import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench import add_tenants, cli, fake_tenants, log  # noqa: E402
from harness import FakeNetskope, Workspace, wait_until  # noqa: E402

TENANTS = int(os.environ.get("BENCH_TENANTS", "10000"))
SCRAPES = int(os.environ.get("BENCH_SCRAPES", "20"))


def main():
    with FakeNetskope() as fake, Workspace(
            'metrics = { listen = "127.0.0.1:0"; };\n'
            'tenant_defaults = { interval = 86400; };\n') as ws:
        tokens = fake_tenants(fake, TENANTS, "scrape")
        cli(ws, ["init"])
        add_tenants(ws, fake.url, tokens, 3600)
        rc, out, err = ws.run_cli(["run", "--once", "--fetch-workers", "16"], timeout=3600)
        assert rc == 0, err[-2000:]
        proc = ws.spawn(["run"])
        try:
            def bound():
                m = re.search(r"event=metrics_listen listen=(\S+)", open(proc.stderr_path).read())
                return m and m.group(1)
            addr = wait_until(bound, 30, what="metrics_listen")
            times, size, text = [], 0, ""
            for i in range(SCRAPES):
                t0 = time.monotonic()
                with urllib.request.urlopen("http://%s/metrics" % addr, timeout=60) as r:
                    text = r.read()
                times.append(time.monotonic() - t0)
                size = len(text)
                time.sleep(1.05)      # past the 1-s cache: every scrape is built anew
            samples = sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))
            promtool = shutil.which("promtool")
            lint = subprocess.run([promtool, "check", "metrics"], input=text,
                                  capture_output=True) if promtool else None
            log("scrape: %d tenants, %d samples, %.1f MiB; wall median %.0f ms, max %.0f ms "
                "(%d scrapes); promtool %s" %
                (TENANTS, samples, size / 2**20, statistics.median(times) * 1000,
                 max(times) * 1000, len(times),
                 "ok" if lint and lint.returncode == 0 else
                 (lint.stdout + lint.stderr).decode()[:300] if lint else "not installed"))
        finally:
            proc.terminate()
            proc.wait(60)


if __name__ == "__main__":
    main()
