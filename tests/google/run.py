#!/usr/bin/env python3
"""run.py - run every tests/google/test_*.py (each a script that exits
non-zero on failure), one at a time (each starts Google's emulator or
node), and report. `make test-google` runs it after tests/google/setup.sh.

    NSCOLLECT_BIN=build/nscollect python3 tests/google/run.py [NAME...]
"""
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    names = sys.argv[1:]
    files = sorted(f for f in os.listdir(HERE) if f.startswith("test_") and f.endswith(".py")
                   and (not names or any(n in f for n in names)))
    failed, t0 = [], time.time()
    for f in files:
        t = time.time()
        p = subprocess.run([sys.executable, os.path.join(HERE, f)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, cwd=os.path.dirname(os.path.dirname(HERE)))
        out = p.stdout.decode("utf-8", "replace")
        print("== %s (%.1f s) %s" % (f, time.time() - t, "ok" if p.returncode == 0 else
                                     "FAILED rc=%d" % p.returncode))
        if p.returncode != 0 or os.environ.get("E2E_VERBOSE"):
            print(out)
        if p.returncode != 0:
            failed.append(f)
    print("test-google: %d files, %.1f s" % (len(files), time.time() - t0))
    print("%d passed, %d failed" % (len(files) - len(failed), len(failed)))
    sys.exit(1 if failed or not files else 0)


if __name__ == "__main__":
    main()
