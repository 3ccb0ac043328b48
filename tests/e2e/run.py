#!/usr/bin/env python3
"""run.py - run every tests/e2e/test_*.py (each a script that exits non-zero
on failure), E2E_JOBS at a time (default 2), and report.

    NSCOLLECT_BIN=build-asan/nscollect python3 tests/e2e/run.py [NAME...]

NAME selects files by substring (e.g. `spine`)."""

import concurrent.futures
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def run_one(path):
    t0 = time.time()
    p = subprocess.run([sys.executable, path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       cwd=os.path.dirname(os.path.dirname(HERE)))
    return path, p.returncode, p.stdout.decode("utf-8", "replace"), time.time() - t0


def main():
    names = sys.argv[1:]
    files = sorted(os.path.join(HERE, f) for f in os.listdir(HERE)
                   if f.startswith("test_") and f.endswith(".py")
                   and (not names or any(n in f for n in names)))
    jobs = int(os.environ.get("E2E_JOBS", "2"))
    failed = []
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        for path, rc, out, secs in pool.map(run_one, files):
            name = os.path.basename(path)
            print("== %s (%.1f s) %s" % (name, secs, "ok" if rc == 0 else "FAILED rc=%d" % rc))
            if rc != 0 or os.environ.get("E2E_VERBOSE"):
                print(out)
                failed += [name] if rc != 0 else []
    print("e2e: %d files, %d failed, %.1f s" % (len(files), len(failed), time.time() - t0))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
