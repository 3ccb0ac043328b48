#!/usr/bin/env python3
"""test_crash.py - the short crash test of `make test`: 10 kill -9s, then
10 more with fetch.prefetch (pages fetched ahead, batches committed behind).

    NSCOLLECT_BIN=./nscollect python3 tests/e2e/test_crash.py
    CRASH_SEED=1234 CRASH_KILLS=10 python3 tests/e2e/test_crash.py

tests/crash/crashtest.py with few kills (the long version, `make
crashtest`, delivers 120 and also kills inside an fsync): three tenants
with faults on and alerts arriving, the daemon or `run --once` killed at a
random moment, restarted, ten times; then one clean pass, and every
tenant's delivered records must equal the fake's, byte for byte, none lost,
none doubled, the database intact. The seed is printed; CRASH_SEED replays
the plan.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "crash"))
import crashtest  # noqa: E402


def main():
    seed = os.environ.get("CRASH_SEED")
    kills = int(os.environ.get("CRASH_KILLS", "10"))
    failed = 0
    for name, config in (("test_crash", crashtest.CONFIG),
                         ("test_crash_prefetch", crashtest.PREFETCH_CONFIG)):
        try:
            crashtest.run(kills=kills, seed=int(seed) if seed else None, tenants=3,
                          config=config)
        except crashtest.Failure as e:
            print("FAIL %s: %s" % (name, e))
            failed += 1
            continue
        print("ok   %s" % name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
