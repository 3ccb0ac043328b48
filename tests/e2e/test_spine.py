#!/usr/bin/env python3
"""test_spine.py - the spine end to end: three tenants over loopback against
the fake Netskope, consecutive runs with new and late alerts, faults that
must not move a cursor, kill -9 in the middle of a run, the daemon picking
up CLI changes and stopping on SIGTERM. Every check compares the records
that arrived with what the fake holds: exactly once, byte for byte, each in
its own tenant's place."""

import collections
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (FakeNetskope, Workspace, cli_env, minify, ndjson_lines, wait_until,  # noqa: E402
                     run_tests)

TENANTS = {"acme": 1500, "globex": 1200, "initech": 800}
FAST = "fetch = { retry_wait_max = 0; };\n"   # every retryable error ends the job at once
SPOOL_ALL = "outbox = { spool_min_bytes = 0; };\n"    # every batch in a spool file


def token(name):
    return "tok-" + name


def db_value(ws, sql, *args):
    return ws.query(sql, *args)


def cursor(ws, name):
    return db_value(ws, "SELECT position FROM cursor c JOIN stream s ON s.id = c.stream_id "
                        "JOIN tenant t ON t.id = s.tenant_id WHERE t.name = ? AND "
                        "s.name = 'alert'", name)


def add_tenants(fake, ws, names, extra=(), pretty=()):
    rc, out, err = ws.run_cli(["init"])
    assert rc == 0, err
    for n in names:
        fake.add_tenant(token(n), n, pretty=n in pretty)
        rc, out, err = ws.run_cli(["tenant", "add", n, "--url", fake.url, "--lookback", 3600,
                                   "--page-size", 500] + list(extra), stdin=token(n))
        assert rc == 0, err


def assert_exactly_once(fake, ws, names):
    """Each tenant's directory holds each of its alerts once, byte-exact."""
    for n in names:
        got = ndjson_lines(os.path.join(ws.out, n)) if os.path.isdir(os.path.join(ws.out, n)) else []
        want = [minify(r) for r in fake.alerts(token(n))]
        dups = [k for k, c in collections.Counter(got).items() if c > 1]
        assert not dups, "%s: %d records delivered twice, e.g. %s" % (n, len(dups), dups[0][:80])
        missing = set(want) - set(got)
        extra = set(got) - set(want)
        assert not missing, "%s: %d of %d alerts missing" % (n, len(missing), len(want))
        assert not extra, "%s: %d records not from this tenant, e.g. %s" % (
            n, len(extra), next(iter(extra))[:80])


def run_once(ws, expect=0):
    rc, out, err = ws.run_cli(["run", "--once"])
    assert rc == expect, "run --once exit %d, want %d\n%s" % (rc, expect, err[-3000:])
    return err


HOSTILE = [
    '{"_id":"h1","_insertion_epoch_timestamp":%d,"timestamp":%d,"big":9007199254740993,'
    '"neg":-12345678901234567890,"f":46.949800000000003,"e":1.5E+300,"z":1.50,'
    '"s":"q\\"uote \\\\ back \\/ slash \\u00e9 \\ud83d\\ude00 tab\\t nl\\n",'
    '"u":"caf\u00e9 \u65e5\u672c","nested":[[1,[2,[3,{"a":[]}]]],{}],"t":true,"n":null}',
    '{"_id":"h2","_insertion_epoch_timestamp":%d,"timestamp":%d,"app_session_id":2374445601068393555,'
    '"sp":"  spaces  inside  ","empty":"","arr":[ 1 , 2 ,3 ]}',
]


def hostile_records(ins):
    return [r % (ins, ins - 5) for r in HOSTILE]


def test_three_tenants_new_and_late_alerts():
    with FakeNetskope() as fake, Workspace() as ws:
        now = int(time.time())
        for i, (n, count) in enumerate(TENANTS.items()):
            fake.add_tenant(token(n), n, pretty=(n == "globex"))
            fake.generate(token(n), count, insertion_start=now - 3000, insertion_end=now - 2,
                          seed=i + 1)
        add_tenants(fake, ws, [], ())
        for n in TENANTS:
            rc, _, err = ws.run_cli(["tenant", "add", n, "--url", fake.url, "--lookback", 3600,
                                     "--page-size", 500], stdin=token(n))
            assert rc == 0, err
        run_once(ws)
        assert_exactly_once(fake, ws, TENANTS)
        first = {n: cursor(ws, n) for n in TENANTS}
        for n in TENANTS:
            assert first[n] >= now, "%s: cursor %r did not reach the run's start" % (n, first[n])

        # New alerts, late alerts inside the overlap, and hostile records.
        for i, n in enumerate(TENANTS):
            c = first[n]
            # new: stored by Netskope at the cursor's second, after the first run read it
            fake.generate(token(n), 200, insertion_start=c, insertion_end=c + 1, seed=100 + i)
            fake.generate(token(n), 50, insertion_start=c - 100, insertion_end=c - 10, seed=200 + i)
        fake.add_raw(token("acme"), hostile_records(first["acme"] - 30))
        wait_until(lambda: int(time.time()) > max(first.values()), what="clock past the cursor")
        run_once(ws)
        assert_exactly_once(fake, ws, TENANTS)
        # The overlap was really re-read (so dedupe was exercised), and
        # the second window started overlap seconds before the cursor.
        for n in TENANTS:
            reqs = fake.served(token(n))["requests"]
            starts = sorted({r["start"] for r in reqs})
            assert first[n] - 120 in starts, "%s: no window starting at cursor-120 in %s" % (
                n, starts)
        lines = ndjson_lines(os.path.join(ws.out, "acme"))
        for h in hostile_records(first["acme"] - 30):
            assert minify(h) in lines, "hostile record not byte-exact: %s" % h[:60]
        assert minify(HOSTILE[0] % (1, 1))  # minify keeps escapes (sanity of the oracle)


def test_runs_with_nothing_new_store_nothing():
    with FakeNetskope() as fake, Workspace() as ws:
        now = int(time.time())
        add_tenants(fake, ws, ["acme"])
        fake.generate(token("acme"), 300, insertion_start=now - 1000, insertion_end=now - 1, seed=5)
        run_once(ws)
        batches = db_value(ws, "SELECT count(*) FROM delivered")
        wait_until(lambda: int(time.time()) > cursor(ws, "acme"), what="clock past the cursor")
        run_once(ws)
        assert_exactly_once(fake, ws, ["acme"])
        assert db_value(ws, "SELECT count(*) FROM delivered") == batches, \
            "an empty overlap re-read produced a batch"
        assert db_value(ws, "SELECT stored FROM run ORDER BY id DESC LIMIT 1") == 0


def test_clock_behind_the_cursor_waits():
    """The clock stepped back two hours behind acme's cursor (as if the
    cursor were two hours ahead): the run asks Netskope nothing, stores
    nothing, leaves the cursor where it was and says why. Before, it read
    [now - overlap, now) and moved the cursor back two hours, so later runs
    re-read records whose dedupe keys had been pruned: stored twice."""
    with FakeNetskope() as fake, Workspace() as ws:
        now = int(time.time())
        add_tenants(fake, ws, ["acme"])
        fake.generate(token("acme"), 200, insertion_start=now - 1000, insertion_end=now - 1, seed=6)
        run_once(ws)
        ahead = cursor(ws, "acme") + 7200
        con = sqlite3.connect(ws.db, timeout=30)       # as an operator's sqlite3 would
        with con:
            con.execute("UPDATE cursor SET position = ?", (ahead,))
        con.close()
        asked = len(fake.served(token("acme"))["requests"])
        err = run_once(ws)
        assert "tenant=acme event=clock_behind_cursor cursor=%d" % ahead in err, err[-2000:]
        assert len(fake.served(token("acme"))["requests"]) == asked, "Netskope was asked"
        assert cursor(ws, "acme") == ahead, "the cursor moved back"
        assert_exactly_once(fake, ws, ["acme"])


def fault_case(fault, expect_rc, error_words, after=0, config=FAST):
    """One tenant, a first clean run, new alerts, then a run with fault:
    the failing run moves no cursor and stores nothing; the next run
    completes; everything exactly once."""
    with FakeNetskope() as fake, Workspace(config_extra=config) as ws:
        now = int(time.time())
        add_tenants(fake, ws, ["acme"], extra=("--page-size", 100))
        fake.generate(token("acme"), 250, insertion_start=now - 2000, insertion_end=now - 1, seed=7)
        run_once(ws)
        c0 = cursor(ws, "acme")
        delivered0 = len(ws.lines())
        fake.generate(token("acme"), 250, insertion_start=c0, insertion_end=c0 + 1, seed=8)
        wait_until(lambda: int(time.time()) > c0, what="clock past the cursor")
        fake.faults(token("acme"), [dict(fault, after=after)])
        run_once(ws, expect=expect_rc)
        if expect_rc != 0:
            assert cursor(ws, "acme") == c0, "the failing run moved the cursor"
            assert len(ws.lines()) == delivered0, "the failing run delivered records"
            assert db_value(ws, "SELECT count(*) FROM outbox") == 0, "the failing run stored records"
            rc, out, _ = ws.run_cli(["status"])
            assert rc == 1 and "failing" in out, "status should fail:\n" + out
            err = db_value(ws, "SELECT last_error FROM tenant WHERE name = 'acme'")
            assert any(w in err for w in error_words), "last_error %r lacks %s" % (err, error_words)
            run_once(ws)
        assert_exactly_once(fake, ws, ["acme"])
        rc, out, _ = ws.run_cli(["status"])
        assert rc == 0 and "ok" in out, out


def test_first_window_start_is_fixed_at_the_first_attempt():
    """A new tenant whose first attempt fails starts, when it succeeds,
    where the first attempt started: records inserted at the very start of
    the first lookback are read, though the clock has moved past it. A
    changed lookback forgets that start (no cursor yet)."""
    with FakeNetskope() as fake, Workspace(config_extra=FAST) as ws:
        rc, _, err = ws.run_cli(["init"])
        assert rc == 0, err
        fake.add_tenant(token("acme"), "acme")
        rc, _, err = ws.run_cli(["tenant", "add", "acme", "--url", fake.url, "--lookback", 60],
                                stdin=token("acme"))
        assert rc == 0, err
        fake.faults(token("acme"), [{"kind": "status", "code": 500}])
        run_once(ws, expect=1)
        start = db_value(ws, "SELECT min(window_start) FROM run")
        fake.generate(token("acme"), 40, insertion_start=start, insertion_end=start + 2, seed=3)
        wait_until(lambda: time.time() >= start + 60 + 3, timeout=70,
                   what="the clock past the first lookback's first seconds")
        run_once(ws)
        assert db_value(ws, "SELECT max(window_start) FROM run") == start, \
            "the second attempt started elsewhere"
        assert_exactly_once(fake, ws, ["acme"])

        fake.add_tenant(token("globex"), "globex")
        rc, _, err = ws.run_cli(["tenant", "add", "globex", "--url", fake.url, "--lookback", 60],
                                stdin=token("globex"))
        assert rc == 0, err
        fake.faults(token("globex"), [{"kind": "status", "code": 500}])
        run_once(ws, expect=1)
        first = "SELECT first_start FROM stream s JOIN tenant t ON t.id = s.tenant_id " \
                "WHERE t.name = 'globex'"
        assert db_value(ws, first) is not None
        rc, _, err = ws.run_cli(["tenant", "set", "globex", "--lookback", 120])
        assert rc == 0, err
        assert db_value(ws, first) is None, "a new lookback kept the old first window"


def test_reply_bodies_are_capped_process_wide():
    """http.max_body_total counts every body the process holds: with
    prefetch a page (~0.95 MB) is held while the next arrives, so a total of
    1 MiB cannot take the second. The run fails naming the key, nothing is
    committed; with room for two the same run delivers everything once."""
    cap = "http = { max_body = 1048576; max_body_total = %d; };\n" + PREFETCH
    with FakeNetskope() as fake, Workspace(config_extra=cap % 1048576) as ws:
        add_tenants(fake, ws, ["acme"], extra=("--page-size", 800))
        now = int(time.time())
        fake.generate(token("acme"), 3200, insertion_start=now - 2000, insertion_end=now - 10,
                      seed=11)
        run_once(ws, expect=1)
        err = db_value(ws, "SELECT last_error FROM tenant WHERE name = 'acme'")
        assert "http.max_body_total (1048576 bytes)" in err, err
        assert cursor(ws, "acme") is None, "a run short of body budget moved the cursor"
        assert db_value(ws, "SELECT count(*) FROM outbox") == 0
        ws.write_config(cap % (4 << 20))
        run_once(ws)
        assert_exactly_once(fake, ws, ["acme"])


def test_fault_malformed_page():
    fault_case({"kind": "malformed"}, 1, ["malformed"])


def test_fault_malformed_second_page():
    fault_case({"kind": "malformed"}, 1, ["malformed"], after=1)


def test_fault_result_not_array():
    fault_case({"kind": "not_array"}, 1, ["not an array"])


def test_fault_truncated_body():
    fault_case({"kind": "truncated"}, 1, ["partial", "ransfer", "truncat"], after=1)


def test_fault_500():
    fault_case({"kind": "status", "code": 500}, 1, ["500"])


PREFETCH = "fetch = { retry_wait_max = 0; prefetch = true; };\n"


def test_fault_500_on_second_page():
    fault_case({"kind": "status", "code": 500}, 1, ["500"], after=1)


def test_fault_500_on_prefetched_page():
    # the second page's first try was sent while the first page was stored
    fault_case({"kind": "status", "code": 500}, 1, ["500"], after=1, config=PREFETCH)


def test_fault_malformed_prefetched_page():
    # ... and parsed on that other thread
    fault_case({"kind": "malformed"}, 1, ["malformed"], after=1, config=PREFETCH)


def test_prefetch_sends_the_next_request_before_storing_the_page():
    # Page 1 is full, so page 2 will be needed: with fetch.prefetch its
    # request goes out before page 1 is stored, which here fails (a record
    # larger than a batch). Without it, page 2 is never asked for.
    now = int(time.time())
    small = lambda i, t: {"_id": "s%d" % i, "_insertion_epoch_timestamp": t, "timestamp": t}
    big = dict(small(2, now - 99), blob="x" * 70000)
    for prefetch, want in (("true", [0, 2]), ("false", [0])):
        cfg = "fetch = { batch_max_bytes = 65536; prefetch = %s; };\n" % prefetch
        with FakeNetskope() as fake, Workspace(config_extra=cfg) as ws:
            add_tenants(fake, ws, ["acme"], extra=("--page-size", 2))
            fake.add_raw(token("acme"), [small(1, now - 100), big, small(3, now - 98),
                                         small(4, now - 97)])
            run_once(ws, expect=1)
            offsets = [r["offset"] for r in fake.served(token("acme"))["requests"]]
            assert offsets == want, "prefetch=%s: offsets %s, want %s" % (prefetch, offsets, want)
            err = db_value(ws, "SELECT last_error FROM tenant WHERE name = 'acme'")
            assert "larger than fetch.batch_max_bytes" in err, err
            assert cursor(ws, "acme") is None, "a failed slice moved the cursor"
            assert [json.loads(l)["_id"] for l in ws.lines()] == ["s1"], ws.lines()


def test_fault_429_short_wait_is_sat_out():
    # Netskope says "wait 1 s": the pass waits and completes (exit 0).
    fault_case({"kind": "status", "code": 429, "retry_after": 1}, 0, [])


def test_token_rejected():
    with FakeNetskope() as fake, Workspace() as ws:
        now = int(time.time())
        add_tenants(fake, ws, [])
        fake.add_tenant(token("acme"), "acme")
        fake.generate(token("acme"), 100, insertion_start=now - 500, insertion_end=now - 1, seed=9)
        rc, _, err = ws.run_cli(["tenant", "add", "acme", "--url", fake.url, "--lookback", 3600],
                                stdin="tok-wrong")
        assert rc == 0, err
        run_once(ws, expect=1)
        rc, out, _ = ws.run_cli(["status"])
        assert rc == 1 and "failing" in out and "token rejected" in out, out
        assert "tok-wrong" not in out
        nb = db_value(ws, "SELECT not_before FROM tenant WHERE name = 'acme'")
        assert nb >= now + 3000, "a rejected token must back off for long, not_before=%s" % nb
        assert len(fake.served(token("acme"))["requests"]) == 0
        tf = os.path.join(ws.dir, "token")
        with open(tf, "w") as f:
            f.write(token("acme") + "\n")
        rc, out, err = ws.run_cli(["tenant", "set", "acme", "--token-file", tf])
        assert rc == 0, err
        assert db_value(ws, "SELECT not_before FROM tenant WHERE name = 'acme'") == 0
        run_once(ws)
        assert_exactly_once(fake, ws, ["acme"])


def test_event_window_and_max_records():
    with FakeNetskope() as fake, Workspace(config_extra="fetch = { slice = 600; };") as ws:
        now = int(time.time())
        add_tenants(fake, ws, ["acme"], extra=("--window", "event", "--max-records", 400,
                                              "--page-size", 200))
        fake.generate(token("acme"), 2000, insertion_start=now - 3500, insertion_end=now - 1,
                      seed=11)
        run_once(ws)
        stored = len(ws.lines())
        assert 400 <= stored < 2000, "max_records 400 should end the run after a slice: %d" % stored
        assert cursor(ws, "acme") < now - 600, "a capped run must not jump the cursor to now"
        reqs = fake.served(token("acme"))["requests"]
        assert reqs and all(r["window"] == "event" for r in reqs), "event window not used"
        for _ in range(20):
            if cursor(ws, "acme") >= now:
                break
            run_once(ws)
        assert cursor(ws, "acme") >= now
        assert_exactly_once(fake, ws, ["acme"])


def test_kill9_mid_run():
    cfg = "fetch = { slice = 600; };\n"
    with FakeNetskope() as fake, Workspace(config_extra=cfg) as ws:
        now = int(time.time())
        add_tenants(fake, ws, list(TENANTS), extra=("--page-size", 100))
        for i, n in enumerate(TENANTS):
            fake.generate(token(n), 1500, insertion_start=now - 3500, insertion_end=now - 1,
                          seed=20 + i)
        for n in TENANTS:   # slow pages keep the run busy long enough to be killed in it
            fake.faults(token(n), [{"kind": "slow", "seconds": 0.2}] * 40)
        proc = ws.spawn(["run", "--once"])
        wait_until(lambda: (db_value(ws, "SELECT count(*) FROM outbox") or 0) +
                   (db_value(ws, "SELECT count(*) FROM delivered") or 0) >= 2,
                   timeout=60, what="first batches committed")
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
        running = db_value(ws, "SELECT count(*) FROM run WHERE status = 'running'")
        assert running >= 1, "the kill should land in the middle of a run"
        run_once(ws)
        assert_exactly_once(fake, ws, TENANTS)
        assert db_value(ws, "PRAGMA integrity_check") == "ok"
        assert db_value(ws, "SELECT count(*) FROM run WHERE status = 'abandoned'") >= 1


def test_daemon_picks_up_new_tenant_and_stops_on_sigterm():
    with FakeNetskope() as fake, Workspace() as ws:
        now = int(time.time())
        add_tenants(fake, ws, ["acme"], extra=("--interval", 1))
        fake.generate(token("acme"), 300, insertion_start=now - 1000, insertion_end=now - 1, seed=30)
        proc = ws.spawn(["run"])
        try:
            wait_until(lambda: len(ws.lines()) >= 300, timeout=60, what="acme delivered")
            fake.add_tenant(token("globex"), "globex")
            fake.generate(token("globex"), 200, insertion_start=now - 1000,
                          insertion_end=now - 1, seed=31)
            rc, _, err = ws.run_cli(["tenant", "add", "globex", "--url", fake.url,
                                     "--lookback", 3600, "--interval", 1], stdin=token("globex"))
            assert rc == 0, err
            wait_until(lambda: os.path.isdir(os.path.join(ws.out, "globex")) and
                       len(ndjson_lines(os.path.join(ws.out, "globex"))) >= 200,
                       timeout=60, what="globex picked up without a restart")
            # new alerts for a running tenant arrive on its next interval
            fake.generate(token("acme"), 50, insertion_start=int(time.time()) - 5,
                          insertion_end=int(time.time()), seed=32)
            wait_until(lambda: len(ndjson_lines(os.path.join(ws.out, "acme"))) >= 350,
                       timeout=60, what="acme's new alerts")
            t0 = time.time()
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=15)
            assert rc == 0, "daemon exit %d on SIGTERM" % rc
            assert time.time() - t0 < 10, "SIGTERM took %.1f s" % (time.time() - t0)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert_exactly_once(fake, ws, ["acme", "globex"])


def paced_run(cfg, alerts, workers, min_gap, seed):
    """One tenant's backlog (pages of 100) read by `run --once` with workers
    fetch workers: no two requests closer than min_gap (20 ms of slack for
    the fake's clock), everything exactly once. Returns the run's log."""
    with FakeNetskope() as fake, Workspace(config_extra=cfg) as ws:
        now = int(time.time())
        add_tenants(fake, ws, ["acme"], extra=("--page-size", 100))
        fake.generate(token("acme"), alerts, insertion_start=now - 3500, insertion_end=now - 1,
                      seed=seed)
        rc, _, err = ws.run_cli(["run", "--once", "--fetch-workers", workers])
        assert rc == 0, err
        times = sorted(r["t"] for r in fake.served(token("acme"))["requests"])
        assert len(times) >= 5, times
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert min(gaps) >= min_gap - 0.02, "requests %.3f s apart (min gap %.2f s)" % (
            min(gaps), min_gap)
        assert_exactly_once(fake, ws, ["acme"])
        return err


def test_request_rate_holds_across_jobs():
    """4 requests/s per tenant, also when a job yields (job_budget 1 s) and
    the tenant's next job starts at once on another worker."""
    err = paced_run("fetch = { slice = 600; job_budget = 1; };\n", 1500, 4, 0.25, seed=50)
    assert err.count("status=yield") >= 2, "the job should have yielded several times"


def test_request_rate_is_configurable():
    """fetch.requests_per_second = 2: half a second between requests, where
    the default would allow a quarter."""
    paced_run("fetch = { requests_per_second = 2; };\n", 450, 2, 0.5, seed=51)


def test_request_rate_per_tenant():
    """--requests-per-second is the tenant's own rate: acme at 2/s keeps
    half a second between its requests while globex, on the config's 50/s,
    goes faster in the same run; `tenant show` and its JSON say which rate
    applies; a rate out of range is refused, naming the option (exit 2)."""
    with FakeNetskope() as fake, Workspace("fetch = { requests_per_second = 50; };\n") as ws:
        now = int(time.time())
        add_tenants(fake, ws, ["acme", "globex"], extra=("--page-size", 100))
        rc, out, err = ws.run_cli(["tenant", "set", "acme", "--requests-per-second", "2"])
        assert rc == 0, err
        for n, seed in (("acme", 52), ("globex", 53)):
            fake.generate(token(n), 600, insertion_start=now - 3500, insertion_end=now - 1,
                          seed=seed)
        rc, _, err = ws.run_cli(["run", "--once", "--fetch-workers", 2])
        assert rc == 0, err
        gaps = {}
        for n in ("acme", "globex"):
            times = sorted(r["t"] for r in fake.served(token(n))["requests"])
            assert len(times) >= 6, (n, times)
            gaps[n] = min(b - a for a, b in zip(times, times[1:]))
        assert gaps["acme"] >= 0.5 - 0.02, "acme's requests %.3f s apart at 2/s" % gaps["acme"]
        assert gaps["globex"] < 0.25, "globex was held to acme's rate: %.3f s" % gaps["globex"]
        assert_exactly_once(fake, ws, ["acme", "globex"])
        rc, out, _ = ws.run_cli(["tenant", "show", "acme"])
        assert "requests/s:    2\n" in out, out
        rc, out, _ = ws.run_cli(["tenant", "show", "globex"])
        assert "requests/s:    50 (fetch.requests_per_second)" in out, out
        rc, out, _ = ws.run_cli(["tenant", "show", "acme", "--json"])
        assert json.loads(out)["requests_per_second"] == 2, out
        for bad in ("0", "-1", "fast", "1e9"):
            rc, out, err = ws.run_cli(["tenant", "set", "acme", "--requests-per-second", bad])
            assert rc == 2 and "--requests-per-second '%s'" % bad in err, (bad, rc, err)
        assert ws.query("SELECT requests_per_second FROM tenant WHERE name = 'acme'") == 2
        rc, out, err = ws.run_cli(["tenant", "set", "acme", "--requests-per-second", "8"])
        assert rc == 0 and "above 4" in err, err


def test_spooled_batches_are_linked_into_the_file_sink():
    """outbox.spool_min_bytes = 0: every batch goes through a spool file.
    While acme's sink is blocked its batches wait there; once it is back,
    each object is the spool file itself (hard-linked, same inode), byte-
    exact, and the spool is empty. A file no row names is swept at start;
    a file that is not nscollect's is left alone."""
    cfg = SPOOL_ALL
    with FakeNetskope() as fake, Workspace(config_extra=cfg) as ws:
        now = int(time.time())
        add_tenants(fake, ws, ["globex"], pretty=["globex"])
        blocker = os.path.join(ws.dir, "acme-sink")
        with open(blocker, "w") as f:
            f.write("a file where acme's sink wants a directory\n")
        fake.add_tenant(token("acme"), "acme")
        rc, _, err = ws.run_cli(["tenant", "add", "acme", "--url", fake.url, "--lookback", 3600,
                                 "--page-size", 200, "--sink", "file://" + blocker],
                                stdin=token("acme"))
        assert rc == 0, err
        for i, n in enumerate(["acme", "globex"]):
            fake.generate(token(n), 900, insertion_start=now - 3000, insertion_end=now - 60,
                          seed=60 + i)
        fake.add_raw(token("acme"), hostile_records(now - 30))
        spool = ws.db + ".spool"
        os.makedirs(spool, mode=0o700)
        for name, text in (("987654.ndjson", "{\"orphan\":1}\n"), ("NOTES", "mine\n")):
            with open(os.path.join(spool, name), "w") as f:
                f.write(text)

        err = run_once(ws, expect=1)                 # acme's batches cannot be delivered
        assert "event=spool_sweep removed=1" in err, err[-2000:]
        assert_exactly_once(fake, ws, ["globex"])
        waiting = ws.query("SELECT group_concat(id || '.ndjson') FROM outbox WHERE spooled").split(",")
        assert waiting and sorted(os.listdir(spool)) == sorted(waiting + ["NOTES"]), \
            (waiting, os.listdir(spool))
        inodes = {os.stat(os.path.join(spool, f)).st_ino for f in waiting}

        os.unlink(blocker)
        run_once(ws)
        got = ndjson_lines(blocker)
        want = [minify(r) for r in fake.alerts(token("acme"))]
        assert sorted(got) == sorted(want), "acme: %d lines, want %d" % (len(got), len(want))
        objects = [os.path.join(blocker, "acme", f) for f in os.listdir(os.path.join(blocker, "acme"))]
        assert {os.stat(o).st_ino for o in objects} >= inodes, "objects were copied, not linked"
        assert os.listdir(spool) == ["NOTES"], os.listdir(spool)
        assert db_value(ws, "SELECT count(*) FROM outbox") == 0
        assert db_value(ws, "SELECT count(*) FROM delivered WHERE existed") == 0


def traced_syscalls(path):
    """strace -f -y output as (index of the line where the call returned,
    index where it began, name, its arguments' text, return value), in the
    order the calls returned; a call cut by another thread's line is
    joined with its "resumed" half."""
    call = re.compile(r"^(\d+) +(\w+)\((.*)$")
    resumed = re.compile(r"^(\d+) +<\.\.\. (\w+) resumed>(.*)$")
    pending, calls = {}, []
    with open(path) as f:
        for i, line in enumerate(f):
            m = resumed.match(line)
            if m:
                began, name, args = pending.pop((m.group(1), m.group(2)))
                text = args + m.group(3)
            else:
                m = call.match(line)
                if not m:
                    continue                       # signals, exits
                began, name, text = i, m.group(2), m.group(3)
                if text.endswith("<unfinished ...>"):
                    pending[(m.group(1), name)] = (i, name, text[:-len("<unfinished ...>")])
                    continue
            calls.append((i, began, name, text, text.rsplit("= ", 1)[-1].split()[0]))
    return calls


def traced_run_once(ws):
    """`run --once` under strace -f -y, tracing syncs, links and unlinks;
    it must succeed. Returns the trace file's path."""
    trace = os.path.join(ws.dir, "strace.out")
    # LeakSanitizer cannot run under ptrace (make test's ASan build)
    asan = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"), "detect_leaks=0"]))
    p = subprocess.run(["strace", "-f", "-y", "-o", trace, "-e",
                        "trace=fsync,fdatasync,link,linkat,unlink,unlinkat"] +
                       ws.argv(["run", "--once"]),
                       cwd=ws.dir, env=cli_env({"ASAN_OPTIONS": asan}), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    assert p.returncode == 0, p.stderr.decode()[-3000:]
    return trace


def test_a_batch_is_on_disk_before_it_is_delivered():
    """Between the fsync of each batch's spool file (inside the batch's
    transaction) and the link(2) that delivers it, the database's WAL is
    synced: the commit that stores the batch and moves the cursor is
    durable before anything leaves. Likewise between the link and the
    unlink of the spool file: the commit that records the delivery is
    durable before the file goes. With synchronous=NORMAL neither was: a
    power loss after a delivery could drop the batch's commit, and the next
    run fetched the records again into a new batch under a new object name,
    delivering them twice; or drop the delivery's, leaving a row whose
    spool file was gone. strace (-y: descriptors with their paths) records
    the order of the calls."""
    probe = subprocess.run(["strace", "-o", "/dev/null", "true"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    assert probe.returncode == 0, "strace cannot trace here (make deps installs it)"
    cfg = SPOOL_ALL
    names = ["acme", "globex", "initech"]
    with FakeNetskope() as fake, Workspace(config_extra=cfg) as ws:
        now = int(time.time())
        add_tenants(fake, ws, names)
        for i, n in enumerate(names):
            fake.generate(token(n), 300, insertion_start=now - 3000, insertion_end=now - 60,
                          seed=70 + i)
        trace = traced_run_once(ws)
        assert_exactly_once(fake, ws, names)
        spool = re.escape(ws.db + ".spool/")
        spool_synced, wal_syncs, delivered, removed = {}, [], {}, {}
        for end, began, name, args, ret in traced_syscalls(trace):
            if name in ("fsync", "fdatasync"):
                m = re.match(r"\d+<%s(\d+)\.ndjson>" % spool, args)
                if m:
                    spool_synced[m.group(1)] = end
                elif re.match(r"\d+<%s-wal>" % re.escape(ws.db), args):
                    wal_syncs.append((began, end))
            elif ret == "0":
                m = re.search(r'"%s(\d+)\.ndjson"' % spool, args)
                m = m or re.search(r'\d+<%s>, "(\d+)\.ndjson"' % spool[:-1], args)  # unlinkat
                if m:
                    (removed if name.startswith("unlink") else delivered)[m.group(1)] = end
        batches = ws.query("SELECT count(*) FROM delivered")
        assert batches >= len(names) and len(delivered) == batches, (batches, delivered)
        assert sorted(removed) == sorted(delivered), (removed, delivered)
        for batch, linked in sorted(delivered.items()):
            assert any(linked < b and e < removed[batch] for b, e in wal_syncs), \
                "batch %s's spool file was removed before the WAL was synced after its " \
                "delivery (linked at line %d, removed at line %d; WAL syncs: %s)" % (
                    batch, linked, removed[batch], wal_syncs[:10])
            synced = spool_synced[batch]
            assert any(synced < b and e < linked for b, e in wal_syncs), \
                "batch %s was linked into the sink before the WAL was synced after its " \
                "commit (spool file synced at line %d, linked at line %d; WAL syncs: %s)" % (
                    batch, synced, linked, wal_syncs[:10])


def spooled_batches_waiting(fake, ws, seed):
    """acme (500 alerts) run once into a sink that cannot take them (a file
    where its directory goes): its batches wait, spooled when ws's config
    is SPOOL_ALL. Returns the blocking file's path."""
    now = int(time.time())
    sink = os.path.join(ws.dir, "acme-sink")
    with open(sink, "w") as f:
        f.write("a file where acme's sink wants a directory\n")
    assert ws.run_cli(["init"])[0] == 0
    fake.add_tenant(token("acme"), "acme")
    rc, _, err = ws.run_cli(["tenant", "add", "acme", "--url", fake.url, "--lookback", 3600,
                             "--page-size", 200, "--sink", "file://" + sink],
                            stdin=token("acme"))
    assert rc == 0, err
    fake.generate(token("acme"), 500, insertion_start=now - 3000, insertion_end=now - 60,
                  seed=seed)
    run_once(ws, expect=1)
    return sink


def test_an_object_found_in_place_is_synced():
    """A batch whose object is already in the sink (an earlier try linked
    it and was killed before it synced the directory and recorded the
    delivery) counts as delivered only after the object's directory is
    synced: before, EEXIST returned at once, the spool file was removed,
    and a power loss could then lose an object the database called
    delivered."""
    with FakeNetskope() as fake, Workspace(config_extra=SPOOL_ALL) as ws:
        sink = spooled_batches_waiting(fake, ws, seed=72)
        os.unlink(sink)
        batches = ws.query_rows("SELECT id, object_name FROM outbox WHERE spooled")
        assert batches, "no spooled batch waits"
        for batch, name in batches:                  # what the killed try left
            os.makedirs(os.path.dirname(os.path.join(sink, name)), exist_ok=True)
            os.link("%s.spool/%d.ndjson" % (ws.db, batch), os.path.join(sink, name))
        trace = traced_run_once(ws)
        assert sorted(ndjson_lines(sink)) == sorted(minify(r) for r in fake.alerts(token("acme")))
        assert ws.query("SELECT count(*) FROM delivered WHERE existed") == len(batches)
        spool = re.escape(ws.db + ".spool/")
        acme_dir = re.escape(os.path.join(sink, "acme"))
        found, dir_syncs, removed = {}, [], {}
        for end, began, name, args, ret in traced_syscalls(trace):
            if name in ("fsync", "fdatasync") and re.match(r"\d+<%s>" % acme_dir, args):
                dir_syncs.append(began)
            m = re.search(r'"%s(\d+)\.ndjson"' % spool, args)
            m = m or re.search(r'\d+<%s>, "(\d+)\.ndjson"' % spool[:-1], args)   # unlinkat
            if m and name.startswith("link") and "EEXIST" in args + ret:
                found[m.group(1)] = end
            elif m and name.startswith("unlink") and ret == "0":
                removed[m.group(1)] = end
        assert sorted(found) == sorted(str(b) for b, _ in batches), (found, batches)
        for batch, at in found.items():
            assert any(at < s < removed[batch] for s in dir_syncs), \
                "batch %s: found in place at line %d, spool file removed at line %d, and the " \
                "object's directory not synced in between (syncs at %s)" % (
                    batch, at, removed[batch], dir_syncs[:10])


def test_removing_a_tenant_removes_its_spool_files():
    """tenant remove --force drops the tenant's undelivered batches, and with
    them their spool files and its dedupe keys; another tenant's stay."""
    cfg = SPOOL_ALL
    with FakeNetskope() as fake, Workspace(config_extra=cfg) as ws:
        now = int(time.time())
        assert ws.run_cli(["init"])[0] == 0
        for n in ("acme", "globex"):
            blocker = os.path.join(ws.dir, n + "-sink")
            with open(blocker, "w") as f:
                f.write("a file where the sink wants a directory\n")
            fake.add_tenant(token(n), n)
            rc, _, err = ws.run_cli(["tenant", "add", n, "--url", fake.url, "--lookback", 3600,
                                     "--page-size", 100, "--sink", "file://" + blocker],
                                    stdin=token(n))
            assert rc == 0, err
            fake.generate(token(n), 300, insertion_start=now - 2000, insertion_end=now - 60,
                          seed=70 + len(n))
        run_once(ws, expect=1)
        files = lambda n: sorted(ws.query(  # noqa: E731
            "SELECT group_concat(o.id || '.ndjson') FROM outbox o JOIN tenant t "
            "ON t.id = o.tenant_id WHERE t.name = ? AND o.spooled", n).split(","))
        acme, globex = files("acme"), files("globex")
        assert sorted(os.listdir(ws.db + ".spool")) == sorted(acme + globex)
        keys = lambda: dict(ws.query_rows(  # noqa: E731
            "SELECT t.name, count(*) FROM seen k LEFT JOIN stream s ON s.id = k.stream_id "
            "LEFT JOIN tenant t ON t.id = s.tenant_id GROUP BY k.stream_id"))
        before = keys()
        assert before.get("acme", 0) > 0 and before.get("globex", 0) > 0, before
        rc, out, err = ws.run_cli(["tenant", "remove", "acme", "--force"])
        assert rc == 0 and "with its undelivered batches" in out, (rc, out, err)
        assert sorted(os.listdir(ws.db + ".spool")) == globex, os.listdir(ws.db + ".spool")
        assert keys() == {"globex": before["globex"]}, keys()


def test_missing_spool_file_is_named():
    """A spool file deleted by hand: the batch cannot be delivered, the
    pass fails, status names the missing file; the other batches arrive."""
    cfg = "outbox = { spool_min_bytes = 0; };\nfetch = { batch_max_bytes = 65536; };\n"
    with FakeNetskope() as fake, Workspace(config_extra=cfg) as ws:
        now = int(time.time())
        assert ws.run_cli(["init"])[0] == 0
        blocker = os.path.join(ws.dir, "acme-sink")
        with open(blocker, "w") as f:
            f.write("a file where the sink wants a directory\n")
        fake.add_tenant(token("acme"), "acme")
        rc, _, err = ws.run_cli(["tenant", "add", "acme", "--url", fake.url, "--lookback", 3600,
                                 "--sink", "file://" + blocker], stdin=token("acme"))
        assert rc == 0, err
        fake.generate(token("acme"), 300, insertion_start=now - 2000, insertion_end=now - 60,
                      seed=80)
        run_once(ws, expect=1)
        first = ws.query("SELECT min(id) FROM outbox")
        gone = os.path.join(ws.db + ".spool", "%d.ndjson" % first)
        with open(gone) as f:
            lost = f.read().splitlines()
        os.unlink(gone)
        os.unlink(blocker)
        err = run_once(ws, expect=1)
        assert "cannot read spool file %s" % gone in err, err[-2000:]
        rc, out, _ = ws.run_cli(["status", "--json"])
        acme = json.loads(out)[0]
        assert rc == 1 and acme["state"] == "failing", out
        assert gone in acme["last_error"] and "delete its outbox row" in acme["last_error"], out
        got = ndjson_lines(blocker)
        want = [minify(r) for r in fake.alerts(token("acme"))]
        assert sorted(got + lost) == sorted(want), "the other batches must all arrive"
        assert ws.query("SELECT count(*) FROM outbox") == 1


def sigterm_during_hang(fake, ws, what):
    """Start the daemon, SIGTERM it once acme's hanging request is out: it
    must exit 0 within 5 s, not wait for the server."""
    proc = ws.spawn(["run"])
    try:
        wait_until(lambda: any(r["fault"] == "hang" for r in
                               fake.served(token("acme"))["requests"]), timeout=30, what=what)
        t0 = time.time()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert time.time() - t0 < 5, "SIGTERM waited %.1f s for the server" % (time.time() - t0)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_sigterm_does_not_wait_for_a_hanging_server():
    cfg = "http = { low_speed_time = 600; total_timeout = 3600; };\n"   # the hang would last
    with FakeNetskope() as fake, Workspace(config_extra=cfg) as ws:
        now = int(time.time())
        add_tenants(fake, ws, ["acme"])
        fake.generate(token("acme"), 50, insertion_start=now - 500, insertion_end=now - 1, seed=40)
        fake.faults(token("acme"), [{"kind": "hang"}])
        sigterm_during_hang(fake, ws, "the daemon waiting on a hanging request")
        assert cursor(ws, "acme") is None, "an abandoned window must not move the cursor"
        assert db_value(ws, "SELECT fail_count FROM tenant") == 0, \
            "a shutdown is not the tenant's failure"
        assert db_value(ws, "SELECT status FROM run") == "abandoned"


def test_sigterm_while_the_next_page_hangs():
    # The second page's request hangs while the first page is being stored:
    # the shutdown does not wait for it either, and the half-read slice
    # moves no cursor.
    cfg = ("http = { low_speed_time = 600; total_timeout = 3600; };\n"
           "fetch = { prefetch = true; };\n")
    with FakeNetskope() as fake, Workspace(config_extra=cfg) as ws:
        now = int(time.time())
        add_tenants(fake, ws, ["acme"], extra=("--page-size", 20))
        fake.generate(token("acme"), 50, insertion_start=now - 500, insertion_end=now - 1, seed=41)
        fake.faults(token("acme"), [{"kind": "hang", "after": 1}])
        sigterm_during_hang(fake, ws, "the daemon waiting on the hanging second page")
        offsets = [r["offset"] for r in fake.served(token("acme"))["requests"]]
        assert offsets == [0, 20], "requests sent: offsets %s" % offsets
        assert cursor(ws, "acme") is None, "an abandoned window must not move the cursor"
        assert db_value(ws, "SELECT status FROM run") == "abandoned"


if __name__ == "__main__":
    run_tests(globals())
