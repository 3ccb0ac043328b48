#!/usr/bin/env python3
"""slowdisk.py - many tenants' one-shot run on a disk with slow flushes
(`make bench-slowdisk`): BENCH_TENANTS (1,000) tenants x 10 alerts, one
`run --once` to the file sink, with every fsync/fdatasync of nscollect
taking BENCH_SYNC_US (2000) microseconds longer (tests/bench/slowsync.c, an
LD_PRELOAD shim). It shows what holding SQLite's write lock through a sync
costs where a flush is slow, which this VM's fast flush hides. With
NSCOLLECT_OLD set, that binary runs too, interleaved with NSCOLLECT_BIN,
each BENCH_RUNS (3) times on copies of one database: a side-by-side ratio.
"""

import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench import (FakeNetskope, MANY_WORKERS, RUNS, Workspace, add_tenants, cli, cli_env,  # noqa: E402
                   fake_tenants, log, measure, median, ndjson_stats, nscollect_bin)

TENANTS = int(os.environ.get("BENCH_TENANTS", "1000"))
SYNC_US = int(os.environ.get("BENCH_SYNC_US", "2000"))
SHIM = os.environ.get("BENCH_SLOWSYNC", "")
PER = 10


def main():
    if not os.path.isfile(SHIM):
        print("slowdisk.py: BENCH_SLOWSYNC must name slowsync.so (make bench-slowdisk builds it)",
              file=sys.stderr)
        return 2
    bins = [("new", nscollect_bin())]
    if os.environ.get("NSCOLLECT_OLD"):
        bins.insert(0, ("old", os.path.abspath(os.environ["NSCOLLECT_OLD"])))
    walls = {k: [] for k, _ in bins}
    ok = True
    with FakeNetskope() as fake:
        tokens = fake_tenants(fake, TENANTS, "slow", PER)
        template = Workspace()
        kept = []
        try:
            cli(template, ["init"])
            add_tenants(template, fake.url, tokens, 3600)
            env = cli_env({"LD_PRELOAD": SHIM, "SLOWSYNC_US": str(SYNC_US)})
            for r in range(RUNS):
                for key, binary in bins:
                    ws = Workspace()
                    kept.append(ws)            # removed at the end: a removal's inodes
                    for suffix in ("", ".key"):  # slow the next run's file creations
                        shutil.copy2(template.db + suffix, ws.db + suffix)
                    argv = [binary] + ws.argv(["run", "--once"] + MANY_WORKERS)[1:]
                    with open(os.path.join(ws.dir, "run.log"), "wb") as err:
                        m = measure(argv, cwd=ws.dir, env=env, stderr=err)
                    lines = ndjson_stats(ws.out)[0]
                    if m["rc"] != 0 or lines != TENANTS * PER:
                        log("slowdisk %s run %d failed: rc %d, %d lines" % (key, r + 1, m["rc"], lines))
                        ok = False
                    walls[key].append(m["wall"])
                    log("slowdisk %s run %d: %.2f s wall, %.2f s CPU" % (key, r + 1, m["wall"], m["cpu"]))
        finally:
            template.cleanup()
            for ws in kept:
                ws.cleanup()
    for key, _ in bins:
        print("%s: %d tenants x %d alerts, flush +%d us: median %.2f s wall (%s)" % (
            key, TENANTS, PER, SYNC_US, median(walls[key]),
            ", ".join("%.2f" % w for w in walls[key])))
    if len(bins) == 2:
        print("new / old: %.2f" % (median(walls["new"]) / median(walls["old"])))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
