#!/usr/bin/env python3
"""demo.py - `make demo`: nscollect end to end on embedded defaults.

Starts the fake Netskope on a free loopback port with three tenants' worth
of alerts, registers the tenants with ./nscollect (tokens on stdin), runs
one pass, prints the status table and where the NDJSON files are, and
stops the fake. Everything lands in ./demo/ (removed and recreated)."""

import os
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
from harness import FakeNetskope, cli_env, ndjson_files  # noqa: E402

DEMO = os.path.join(REPO, "demo")
BIN = os.path.join(REPO, "nscollect")
TENANTS = {"acme": 1200, "globex": 800, "initech": 400}


def nscollect(*args, stdin=None):
    cmd = [BIN, "-d", os.path.join(DEMO, "nscollect.db")] + [str(a) for a in args]
    print("$ nscollect " + " ".join(str(a) for a in args), flush=True)
    p = subprocess.run(cmd, input=stdin.encode() if stdin else None, cwd=DEMO, env=cli_env(),
                       stdin=None if stdin else subprocess.DEVNULL)
    return p.returncode


def main():
    shutil.rmtree(DEMO, ignore_errors=True)
    os.makedirs(DEMO)
    t0 = time.time()
    with FakeNetskope() as fake:
        now = int(time.time())
        print("fake Netskope listening on %s" % fake.url)
        for i, (name, count) in enumerate(TENANTS.items()):
            fake.add_tenant("demo-token-" + name, name, pretty=(i == 1))
            fake.generate("demo-token-" + name, count, insertion_start=now - 3500,
                          insertion_end=now - 1, seed=i + 1)
        if nscollect("init") != 0:
            return 1
        for name in TENANTS:
            if nscollect("tenant", "add", name, "--url", fake.url, "--lookback", 3600,
                         "--page-size", 500, stdin="demo-token-" + name) != 0:
                return 1
        rc = nscollect("run", "--once")
        print()
        nscollect("status")
        files = ndjson_files(os.path.join(DEMO, "nscollect-out"))
        print("\nNDJSON objects (one alert per line) under %s/nscollect-out:" % DEMO)
        for path, lines in sorted(files.items()):
            print("  %-50s %5d alerts" % (path, len(lines)))
        total = sum(len(v) for v in files.values())
        print("\n%d alerts delivered for %d tenants (the fake served %d) in %.1f s." % (
            total, len(TENANTS), sum(TENANTS.values()), time.time() - t0))
        print("Try: sqlite3 %s/nscollect.db 'select * from tenant_status'" % DEMO)
        return rc


if __name__ == "__main__":
    sys.exit(main())
