#!/usr/bin/env python3
"""run.py - run every tests/e2e/test_*.py (each a script that exits non-zero
on failure), E2E_JOBS at a time (default 4), and report.

Most of a file's time is spent waiting (retry back-off, daemons' deadlines,
kill -9 and restart), not computing: on 2 cores the ASan suite uses 108 s
of CPU in 147 s of wall at 4 jobs, and took 224 s at 2. The longest files
start first so that none of them begins last and sets the wall time alone.

    NSCOLLECT_BIN=build-asan/nscollect python3 tests/e2e/run.py [NAME...]

NAME selects files by substring (e.g. `spine`)."""

import concurrent.futures
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# The files that take 40-130 s each under the sanitizers (the rest take
# under 50 s); test_crash has two passes since it also kills with prefetch.
LONGEST_FIRST = ["test_spine.py", "test_gcs.py", "test_isolation.py", "test_crash.py",
                 "test_iterator.py"]


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
    files.sort(key=lambda f: (os.path.basename(f) not in LONGEST_FIRST,
                              LONGEST_FIRST.index(os.path.basename(f))
                              if os.path.basename(f) in LONGEST_FIRST else 0, f))
    jobs = int(os.environ.get("E2E_JOBS", "4"))
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
