#!/usr/bin/env python3
"""sinks.py - issue 18's benchmark: one tenant, BENCH_ALERTS (1,000,000)
alerts unpaced, delivered to each sink in turn: the file sink, the GCS
sink (tests/fake_gcs.py) and the secops:// sink (tests/fake_secops.py).
Prints wall time, nscollect's own CPU per alert, peak RSS and the
requests each sink made.

    make bench-sinks                          (BENCH_ALERTS, BENCH_RUNS=1)
    BENCH_ALERTS=100000 python3 tests/bench/sinks.py

CPU and peak RSS are the nscollect process's own (GNU time, as bench.py
measures); the fakes run in their own processes and are not counted, but
they bound the wall time: a Python fake decoding and storing every entry
is slower than Google. Every run must deliver every alert (the delivery
log's record count, and the fake's own count of what it accepted); exit 1
otherwise. Not a test.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
from bench import FakeNetskope, Workspace, cli, log, median  # noqa: E402
from gcs_harness import FakeGCS  # noqa: E402
from secops_harness import FakeSecOps  # noqa: E402

ALERTS = int(os.environ.get("BENCH_ALERTS", "1000000"))
RUNS = max(1, int(os.environ.get("BENCH_RUNS", "1")))
UNPACED = "fetch = { slice = 86400; requests_per_second = 1000; prefetch = true; };\n"
PROJECT = "nscollect-bench"
CUSTOMER = "0b6f2f3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"


def delivered(ws):
    rows = bench.sqlite3.connect(ws.db).execute(
        "SELECT coalesce(sum(records), 0), count(*) FROM delivered").fetchone()
    left = bench.sqlite3.connect(ws.db).execute("SELECT count(*) FROM outbox").fetchone()[0]
    return rows[0], rows[1], left


def one_run(fake, token, kind, google):
    conf = UNPACED + (google.config() if google else "")
    with Workspace(conf) as ws:
        cli(ws, ["init"])
        args = ["tenant", "add", "b", "--url", fake.url, "--page-size", bench.PAGE,
                "--lookback", 4 * 3600]
        if kind == "gcs":
            key = google.service_account(ws.dir, "bench-gcs")
            google.bucket("bench-bucket", allow_email=key.email)
            args += ["--sink", "gs://bench-bucket/netskope", "--sink-credentials", key.path]
        elif kind == "secops":
            key = google.service_account(ws.dir, "bench-secops")
            google.instance(PROJECT, "us", CUSTOMER, allow_email=key.email)
            args += ["--sink", "secops://us/%s/%s" % (PROJECT, CUSTOMER),
                     "--sink-credentials", key.path]
        cli(ws, args, stdin=token)
        before = google.stats() if google else {}
        m = bench.run_nscollect(ws, ["run", "--once"] + bench.TPUT_WORKERS, "run")
        after = google.stats() if google else {}
        m["records"], m["batches"], left = delivered(ws)
        if kind == "gcs":
            m["requests"] = after["upload_requests"] - before.get("upload_requests", 0)
        elif kind == "secops":
            m["requests"] = after["import_requests"] - before.get("import_requests", 0)
            accepted = after["entries_accepted"] - before.get("entries_accepted", 0)
            if accepted != ALERTS:
                m["rc"] = m["rc"] or 99
                log("secops: the fake accepted %d entries of %d" % (accepted, ALERTS))
        else:
            m["requests"] = m["batches"]
        if m["rc"] != 0 or m["records"] != ALERTS or left:
            log("%s: rc %d, %d records delivered, %d batches left: %s" % (
                kind, m["rc"], m["records"], left, open(m["log"]).read()[-1500:]))
            bench.FAILED.append(kind)
        if google:
            google.reset()
    return m


def main():
    now = int(time.time())
    rows = []
    with FakeNetskope() as fake, FakeGCS() as gcs, FakeSecOps() as secops:
        token = "bench-sinks"
        fake.add_tenant(token, "sinks")
        t0 = time.monotonic()
        fake.generate(token, ALERTS, now - 7200, now - 600, seed=1)
        log("sinks: fake generated %d alerts in %.1f s" % (ALERTS, time.monotonic() - t0))
        for kind, google in (("file", None), ("gcs", gcs), ("secops", secops)):
            ms = []
            for i in range(RUNS):
                fake.reset(token)
                ms.append(one_run(fake, token, kind, google))
                log("sinks: %s run %d: %.1f s wall, %.2f s CPU, %.0f MiB, %d requests"
                    % (kind, i + 1, ms[-1]["wall"], ms[-1]["cpu"], ms[-1]["rss_mib"],
                       ms[-1]["requests"]))
            rows.append((kind, median([m["wall"] for m in ms]), median([m["cpu"] for m in ms]),
                         median([m["rss_mib"] for m in ms]), median([m["requests"] for m in ms])))
    base = {r[0]: r for r in rows}
    print("| sink | alerts | wall s | CPU s | us CPU per alert | x file | x gcs | "
          "peak RSS MiB | requests |")
    print("|---|---|---|---|---|---|---|---|---|")
    for kind, wall, cpu, rss, reqs in rows:
        print("| %s | %d | %.1f | %.2f | %.2f | %.2fx | %.2fx | %.0f | %d |"
              % (kind, ALERTS, wall, cpu, 1e6 * cpu / ALERTS, cpu / base["file"][2],
                 cpu / base["gcs"][2], rss, reqs))
    return 1 if bench.FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
