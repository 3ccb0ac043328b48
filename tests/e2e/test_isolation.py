#!/usr/bin/env python3
"""test_isolation.py - one tenant's trouble never stalls the others, and a
tenant with a big backlog does not starve small ones.

    NSCOLLECT_BIN=./nscollect python3 tests/e2e/test_isolation.py [NAME...]

Isolation: a tenant stuck in 429s and a tenant whose server hangs share
one `run --once --fetch-workers 4` with 20 healthy tenants; every healthy
tenant gets each of its alerts exactly once, byte for byte, in its own
directory, before the hanging tenant gives up; the pass exits 1; status
shows the rate-limited tenant failing with its next run in the future, and
that tenant was asked only once.

Fairness (--fetch-workers 1): a tenant with a backlog of many pages and
10 small tenants. Every small tenant's first request comes before the big
tenant's last one: the big job yields its worker at a slice boundary when
its fetch.job_budget is used up (and --max-records bounds it the same way).
Order is read from the fake's log of served requests ("t"), never from
sleeps.
"""

import collections
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (FakeNetskope, Workspace, cli_env, minify, ndjson_lines,  # noqa: E402
                     run_tests, wait_until)

HEALTHY = ["h%02d" % i for i in range(20)]
SMALL = ["s%02d" % i for i in range(10)]


def token(name):
    return "tok-iso-" + name


def add_tenant(fake, ws, name, *extra, alerts=0, start=None, end=None, seed=1):
    fake.add_tenant(token(name), name)
    if alerts:
        fake.generate(token(name), alerts, insertion_start=start, insertion_end=end, seed=seed)
    rc, _, err = ws.run_cli(["tenant", "add", name, "--url", fake.url]
                            + [str(e) for e in extra], stdin=token(name))
    assert rc == 0, err


def add_recent(fake, ws, name, alerts, seed, faults=None):
    """A tenant with `alerts` alerts over the last 50 minutes, read back an
    hour; faults, when given, are its first replies."""
    now = int(time.time())
    add_tenant(fake, ws, name, "--lookback", 3600, alerts=alerts, start=now - 3000,
               end=now - 1, seed=seed)
    if faults:
        fake.faults(token(name), faults)


def delivered(ws, names, count):
    """Each tenant's directory holds count lines."""
    return all(os.path.isdir(os.path.join(ws.out, n)) and
               len(ndjson_lines(os.path.join(ws.out, n))) == count for n in names)


def stop(proc):
    """SIGTERM the daemon; its exit status and its log."""
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=30)
    return rc, read(proc.stderr_path)


def assert_exactly_once(fake, ws, names):
    """Each tenant's directory holds each of its alerts once, byte-exact,
    and nothing else."""
    for n in names:
        d = os.path.join(ws.out, n)
        got = ndjson_lines(d) if os.path.isdir(d) else []
        want = [minify(r) for r in fake.alerts(token(n))]
        dups = [k for k, c in collections.Counter(got).items() if c > 1]
        assert not dups, "%s: %d records delivered twice" % (n, len(dups))
        assert sorted(got) == sorted(want), "%s: %d lines delivered, %d alerts at the fake" % (
            n, len(got), len(want))


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def requests(fake, name):
    return fake.served(token(name))["requests"]


def runs_by_tenant(ws):
    rows = ws.query_rows("SELECT t.name, r.status, r.stored FROM run r JOIN tenant t "
                         "ON t.id = r.tenant_id ORDER BY r.id")
    out = collections.defaultdict(list)
    for name, status, stored in rows:
        out[name].append((status, stored))
    return out


def test_isolation_429_and_hang():
    # The hang ends by low_speed_time (10 s without a byte) and is not tried
    # again in the job: the tenant fails for this pass and backs off.
    cfg = "http = { low_speed_time = 10; total_timeout = 20; };\n"
    with FakeNetskope() as fake, Workspace(config_extra=cfg) as ws:
        now = int(time.time())
        assert ws.run_cli(["init"])[0] == 0
        # Retry-After 600 is longer than a one-shot pass sits out (120 s):
        # the tenant must fail this pass at once, not hold anyone up.
        add_recent(fake, ws, "limited", 50, 7,
                   [{"kind": "status", "code": 429, "retry_after": 600}] * 50)
        add_recent(fake, ws, "hanging", 50, 8, [{"kind": "hang"}] * 10)
        for i, n in enumerate(HEALTHY):
            add_tenant(fake, ws, n, "--lookback", 3600, "--page-size", 100, alerts=150 + 10 * i,
                       start=now - 3000, end=now - 1, seed=100 + i)

        t0 = time.time()
        rc, _, err = ws.run_cli(["run", "--once", "--fetch-workers", 4], timeout=120)
        took = time.time() - t0
        assert rc == 1, "the stuck tenants make the pass exit 1, got %d\n%s" % (rc, err[-3000:])
        assert took < 60, "the pass took %.0f s" % took

        # Every healthy tenant: exactly once, byte for byte, in its own place.
        assert_exactly_once(fake, ws, HEALTHY)
        runs = runs_by_tenant(ws)
        for n in HEALTHY:
            assert [s for s, _ in runs[n]] == ["ok"], (n, runs[n])
        assert not os.path.isdir(os.path.join(ws.out, "limited"))
        assert not os.path.isdir(os.path.join(ws.out, "hanging"))

        # The hang did not hold the others up: every healthy tenant had
        # been served completely before the hanging request was given up.
        hang = requests(fake, "hanging")
        assert len(hang) == 1 and hang[0]["fault"] == "hang", (
            "one attempt on the hanging tenant, not retried in the job", hang)
        last_healthy = max(r["t"] for n in HEALTHY for r in requests(fake, n))
        assert last_healthy < hang[0]["ended"], (
            "healthy tenants were still being fetched %.1f s after the hanging request ended"
            % (last_healthy - hang[0]["ended"]))

        # Not hammered: one request, answered 429, and no retry in this pass.
        limited = requests(fake, "limited")
        assert [r["status"] for r in limited] == [429], limited

        rc, out, _ = ws.run_cli(["status", "--json"])
        assert rc == 1, "status exits 1 while a tenant fails"
        doc = {t["name"]: t for t in json.loads(out)}
        lim = doc["limited"]
        assert lim["state"] == "failing", lim
        assert "429" in lim["last_error"] and "rate limited" in lim["last_error"], lim
        # Retry-After 600, capped at the tenant's interval (300 s by default)
        assert lim["next_run_at"] >= now + 250, ("the 429 tenant's next run honours "
                                                 "Retry-After 600 up to its interval",
                                                 lim["next_run_at"] - now)
        hung = doc["hanging"]
        assert hung["state"] == "failing", hung
        assert "too slow" in hung["last_error"], hung               # curl's low-speed abort
        assert hung["last_error"].endswith("; not retried in this job"), hung
        assert hung["next_run_at"] >= now + 25, ("a hang backs off (30 s after a first "
                                                 "failure)", hung["next_run_at"] - now)
        for n in HEALTHY:
            assert doc[n]["state"] == "ok" and doc[n]["fail_count"] == 0, doc[n]
        assert token("limited") not in out and token("hanging") not in out


def test_hanging_tenants_lend_their_workers():
    """--fetch-workers 1, and the first three tenants in line hang (30 s
    before low_speed_time gives up). A job lends its worker out while it
    waits on Netskope, so spare threads (workers.fetch_spare, 4) serve the
    5 tenants queued behind the hangs: all are delivered while all three
    hanging requests are still open (their runs still 'running'). The job
    budget is an hour, so no job ran out of it; the spares retire when the
    queue is empty."""
    cfg = ("http = { low_speed_time = 30; total_timeout = 60; };\n"
           "fetch = { job_budget = 3600; };\n"
           "log = { level = \"debug\"; };\n")
    hanging = ["hang%d" % i for i in range(3)]
    healthy = HEALTHY[:5]
    with FakeNetskope() as fake, Workspace(config_extra=cfg) as ws:
        assert ws.run_cli(["init"])[0] == 0
        for i, n in enumerate(hanging):
            add_recent(fake, ws, n, 50, 8 + i, [{"kind": "hang"}] * 10)
        for i, n in enumerate(healthy):
            add_recent(fake, ws, n, 100, 200 + i)
        proc = ws.spawn(["run", "--fetch-workers", 1])
        try:
            wait_until(lambda: all(requests(fake, n) for n in hanging), 15, 0.05,
                       "all three hanging requests sent")
            wait_until(lambda: delivered(ws, healthy, 100), 25, 0.1,
                       "the healthy tenants delivered while the hangs last")
            # All three hanging requests are still open (the fake has not
            # seen the client hang up on any) and their runs still going.
            # hang0 was first in line for the only worker, so without
            # lending nothing else could have run before it timed out.
            for n in hanging:
                hang = requests(fake, n)
                assert len(hang) == 1 and hang[0]["fault"] == "hang", (n, hang)
                assert "ended" not in hang[0], "%s's request already ended" % n
            runs = runs_by_tenant(ws)
            assert all(runs[n] == [("running", 0)] for n in hanging), dict(runs)
            wait_until(lambda: "event=spare_retired" in read(proc.stderr_path), 10, 0.1,
                       "the spare threads to retire")
        finally:
            rc, err = stop(proc)
        assert rc == 0, (rc, err[-3000:])
        assert "event=spare_worker" in err, err[-3000:]
        assert_exactly_once(fake, ws, healthy)


def test_sighup_adds_workers():
    """workers.fetch = 1 and no spares: a hanging tenant first in line
    holds the only thread, and the 3 tenants behind it wait. SIGHUP with
    workers.fetch = 2 starts a second thread at once, which serves them
    while the hang goes on. A daemon started with --fetch-workers keeps
    its number and says why."""
    base = ("http = { low_speed_time = 60; total_timeout = 120; };\n"
            "fetch = { job_budget = 3600; };\n")
    healthy = HEALTHY[:3]
    with FakeNetskope() as fake, Workspace(config_extra=base + "workers = { fetch = 1; "
                                           "fetch_spare = 0; };\n") as ws:
        assert ws.run_cli(["init"])[0] == 0
        add_recent(fake, ws, "hanging", 50, 8, [{"kind": "hang"}])
        for i, n in enumerate(healthy):
            add_recent(fake, ws, n, 100, 400 + i)
        proc = ws.spawn(["run"])
        try:
            wait_until(lambda: requests(fake, "hanging"), 15, 0.05, "the hanging request")
            # One thread, held: the reload is what lets the others in.
            assert not any(requests(fake, n) for n in healthy)
            ws.write_config(base + "workers = { fetch = 2; fetch_spare = 0; };\n")
            proc.send_signal(signal.SIGHUP)
            wait_until(lambda: delivered(ws, healthy, 100), 25, 0.1,
                       "the queued tenants delivered by the second worker")
            assert runs_by_tenant(ws)["hanging"] == [("running", 0)]
        finally:
            rc, err = stop(proc)
        assert rc == 0, (rc, err[-3000:])
        assert "event=reload" in err and "fetch_workers=2" in err, err[-3000:]
        assert_exactly_once(fake, ws, healthy)

        proc = ws.spawn(["run", "--fetch-workers", 1])
        try:
            wait_until(lambda: "event=start" in read(proc.stderr_path), 15, 0.05, "start")
            ws.write_config(base + "workers = { fetch = 3; };\n")
            proc.send_signal(signal.SIGHUP)
            wait_until(lambda: "event=reload" in read(proc.stderr_path), 15, 0.05, "reload")
        finally:
            rc, err = stop(proc)
        assert rc == 0, (rc, err[-3000:])
        assert ('fetch_workers=1 fetch_workers_note="workers.fetch not applied: '
                '--fetch-workers was given"') in err, err[-3000:]


def test_thread_that_cannot_start_is_not_fatal():
    """A fetch thread started after start-up (a spare, or a reload's extra
    worker) that cannot open the database logs fetch_thread_failed and the
    daemon goes on. Made real with the daemon's own file limit: once it is
    ready (every start-up thread has its files open), RLIMIT_NOFILE leaves
    exactly one descriptor free, enough for SIGHUP to read the config file
    but not for a new connection (database, then its WAL). With the limit
    back, the daemon still fetches and delivers, and stops cleanly."""
    with FakeNetskope() as fake, Workspace(config_extra="workers = { fetch = 1; };\n") as ws:
        assert ws.run_cli(["init"])[0] == 0
        proc = ws.spawn(["run"])
        try:
            wait_until(lambda: "event=ready" in read(proc.stderr_path), 15, 0.05, "ready")
            fds = {int(x) for x in os.listdir("/proc/%d/fd" % proc.pid)}
            free = [n for n in range(max(fds) + 3) if n not in fds]
            limit = resource.prlimit(proc.pid, resource.RLIMIT_NOFILE)
            resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (free[1], limit[1]))
            ws.write_config("workers = { fetch = 3; };\n")
            proc.send_signal(signal.SIGHUP)
            wait_until(lambda: read(proc.stderr_path).count("event=fetch_thread_failed") == 2,
                       15, 0.05, "both new threads to fail")
            resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, limit)
            assert proc.poll() is None, "a thread that cannot start must not stop the daemon"
            add_recent(fake, ws, "after", 40, 77)
            wait_until(lambda: delivered(ws, ["after"], 40), 30, 0.1,
                       "a tenant added afterwards delivered")
        finally:
            rc, err = stop(proc)
        assert rc == 0, (rc, err[-3000:])
        assert "cannot open database" in err or "cannot use database" in err, err[-3000:]
        assert_exactly_once(fake, ws, ["after"])


def hang_open(fake, name):
    """name's one request hangs and the client has not hung up on it."""
    reqs = requests(fake, name)
    return len(reqs) == 1 and reqs[0]["fault"] == "hang" and "ended" not in reqs[0]


def sent(fake, names):
    """Those of names the fake has had a request for."""
    return [n for n in names if requests(fake, n)]


def most_open(reqs, slack=0.25):
    """The most of these hanging requests open at once, from the fake's
    clock: when each arrived and when the client hung up on it. The fake
    notices a hang-up late (its handler thread must get to run: tens of ms
    on a loaded machine), while the client's next request can arrive at
    once; so a request counts as ended slack seconds before the fake saw
    it end. The hangs last seconds: a real excess still shows."""
    edges = sorted([(r["t"], 1) for r in reqs] + [(r["ended"] - slack, -1) for r in reqs])
    most = open_now = 0
    for _, step in edges:
        open_now += step
        most = max(most, open_now)
    return most


def test_concurrent_requests_capped():
    """fetch + fetch_spare threads is the cap on requests open at once:
    with 1 worker and 2 spares, five tenants whose first request hangs
    (until low_speed_time, 3 s) get three requests out at once; the fourth
    can only go when a hang has ended. Each hanging tenant fails its pass;
    the next pass delivers them all."""
    cfg = ("http = { low_speed_time = 3; total_timeout = 30; };\n"
           "workers = { fetch_spare = 2; };\n")
    names = ["cap%d" % i for i in range(5)]
    with FakeNetskope() as fake, Workspace(config_extra=cfg) as ws:
        assert ws.run_cli(["init"])[0] == 0
        for i, n in enumerate(names):
            add_recent(fake, ws, n, 20, 300 + i, [{"kind": "hang"}])
        rc, _, err = ws.run_cli(["run", "--once", "--fetch-workers", 1], timeout=120)
        assert rc == 1, "a timed-out request fails its tenant's pass\n" + err[-3000:]
        rc, _, err = ws.run_cli(["run", "--once", "--fetch-workers", 1], timeout=120)
        assert rc == 0, err[-3000:]
        assert_exactly_once(fake, ws, names)
        hangs = [r for n in names for r in requests(fake, n) if r["fault"] == "hang"]
        assert len(hangs) == 5 and all("ended" in r for r in hangs), hangs
        most = most_open(hangs)
        assert most == 3, "%d requests open at once, fetch + fetch_spare is 3" % most


def test_spare_for_a_job_queued_while_all_are_lent():
    """workers.fetch = 1 with 4 spares, and the only tenant's request hangs
    (8 s): its job lends the worker while nothing is queued. A tenant added
    then is queued while every thread is lent out: a spare starts for it,
    and it is delivered while the hang goes on."""
    cfg = ("http = { low_speed_time = 8; total_timeout = 30; };\n"
           "workers = { fetch = 1; fetch_spare = 4; };\n")
    with FakeNetskope() as fake, Workspace(config_extra=cfg) as ws:
        assert ws.run_cli(["init"])[0] == 0
        add_recent(fake, ws, "hanging", 50, 8, [{"kind": "hang"}])
        proc = ws.spawn(["run"])
        try:
            wait_until(lambda: requests(fake, "hanging"), 15, 0.05, "the hanging request")
            add_recent(fake, ws, "late", 40, 78)
            wait_until(lambda: delivered(ws, ["late"], 40) or not hang_open(fake, "hanging"),
                       30, 0.05, "the late tenant delivered or the hang over")
            assert delivered(ws, ["late"], 40)
            assert hang_open(fake, "hanging"), (
                "the tenant queued while the only worker was lent waited for the hang to end",
                requests(fake, "hanging"))
        finally:
            rc, err = stop(proc)
        assert rc == 0, (rc, err[-3000:])
        assert_exactly_once(fake, ws, ["late"])


def test_sighup_fewer_workers_caps_requests():
    """workers.fetch = 3, no spares: three tenants whose request hangs (3 s)
    hold the three threads and two more hanging tenants are queued. SIGHUP
    lowers workers.fetch to 1: the threads above fetch + fetch_spare retire
    as their jobs end, though jobs are queued, so the two requests sent
    after the reload go one at a time."""
    base = "http = { low_speed_time = 3; total_timeout = 30; };\n"
    names = ["low%d" % i for i in range(5)]
    with FakeNetskope() as fake, Workspace(config_extra=base + "workers = { fetch = 3; "
                                           "fetch_spare = 0; };\n") as ws:
        assert ws.run_cli(["init"])[0] == 0
        for i, n in enumerate(names):
            add_recent(fake, ws, n, 20, 500 + i, [{"kind": "hang"}])
        proc = ws.spawn(["run"])
        try:
            wait_until(lambda: len(sent(fake, names)) == 3, 15, 0.02, "three hanging requests")
            first = sent(fake, names)                  # a fourth waits for a hang to end
            ws.write_config(base + "workers = { fetch = 1; fetch_spare = 0; };\n")
            proc.send_signal(signal.SIGHUP)
            wait_until(lambda: "event=reload" in read(proc.stderr_path), 15, 0.02, "reload")
            # The daemon's own order, not the fake's (which notices a hang-up late):
            # no job had ended, so no thread had taken a fourth tenant at the old size.
            before = read(proc.stderr_path).split("event=reload", 1)[0]
            assert "event=fetch_done" not in before, "a hang ended before the reload: " + before
            wait_until(lambda: len(sent(fake, names)) == 5 and not any(
                hang_open(fake, n) for n in names), 30, 0.1, "all five hangs over")
        finally:
            rc, err = stop(proc)
        assert rc == 0, (rc, err[-3000:])
        later = [r for n in names if n not in first for r in requests(fake, n)]
        assert len(later) == 2 and all(r["fault"] == "hang" for r in later), later
        most = most_open(later)
        assert most == 1, "%d requests open at once after the reload, fetch + fetch_spare is 1" % most


def test_sighup_fewer_workers_retires_idle_threads():
    """Nothing due and 4 idle fetch threads: SIGHUP with workers.fetch = 1
    wakes them, and the three above it retire at once (logged at debug
    level), not at the next job or at shutdown."""
    cfg = "log = { level = \"debug\"; };\n"
    with Workspace(config_extra=cfg + "workers = { fetch = 4; };\n") as ws:
        assert ws.run_cli(["init"])[0] == 0
        proc = ws.spawn(["run"])
        try:
            wait_until(lambda: "event=ready" in read(proc.stderr_path), 15, 0.05, "ready")
            ws.write_config(cfg + "workers = { fetch = 1; };\n")
            proc.send_signal(signal.SIGHUP)
            wait_until(lambda: "event=spare_retired fetch_threads=1" in read(proc.stderr_path),
                       5, 0.05, "the three threads above workers.fetch = 1 to retire")
            assert read(proc.stderr_path).count("event=spare_retired") == 3
        finally:
            rc, err = stop(proc)
        assert rc == 0, (rc, err[-3000:])


def test_worker_that_cannot_start_exits_2():
    """A start-up worker that cannot open its database connection stops
    the run, which exits 2 ("could not start") and says which worker and
    why, in a one-shot pass and as a daemon. Made real with the file limit:
    raised from 4 until the process gets as far as its event=start line, it
    then has no descriptor to spare for any worker's connection. Below that
    limit the run also exits 2, and never claims that another `nscollect
    run` holds the database (it did when its lock file could not be
    opened for want of a descriptor)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    with Workspace() as ws:
        assert ws.run_cli(["init"])[0] == 0
        for args in (["run", "--once", "--fetch-workers", 4], ["run", "--fetch-workers", 4]):
            for limit in range(4, 32):
                p = subprocess.run(ws.argv(args), cwd=ws.dir, env=cli_env(), timeout=60,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE,
                                   preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE,
                                                                         (limit, hard)))
                err = p.stderr.decode("utf-8", "replace")
                assert p.returncode == 2, (args, limit, p.returncode, err[-3000:])
                assert "another `nscollect run`" not in err, (args, limit, err[-3000:])
                if "event=start" in err:
                    break
            assert "event=start" in err, (args, "never started", err[-3000:])
            assert re.search(r"event=(fetch|upload)_worker_failed", err), err[-3000:]
            assert "event=ready" not in err, err[-3000:]
            assert re.search(r"nscollect: cannot start (fetch|upload) worker: cannot", err), (
                err[-3000:])


def fairness_setup(fake, ws, big_extra):
    """The big tenant first (lowest id, so first in the queue), then the
    small ones; returns the big tenant's alert count."""
    now = int(time.time())
    assert ws.run_cli(["init"])[0] == 0
    big = 12000
    # 12000 alerts over the last 2 h: with 10-minute slices, 13 slices of
    # about 1000 alerts, 2 pages of 1000 each (26 requests, 6.5 s at 4/s).
    add_tenant(fake, ws, "big", "--lookback", 7300, "--page-size", 1000, *big_extra,
               alerts=big, start=now - 7200, end=now - 1, seed=1)
    # The small ones fit in one slice: one request each.
    for i, n in enumerate(SMALL):
        add_tenant(fake, ws, n, "--lookback", 590, alerts=30, start=now - 500, end=now - 1,
                   seed=50 + i)
    return big


def assert_small_not_starved(fake):
    big_reqs = requests(fake, "big")
    last_big = max(r["t"] for r in big_reqs)
    first_small = {n: min(r["t"] for r in requests(fake, n)) for n in SMALL}
    late = {n: round(t - last_big, 2) for n, t in first_small.items() if t > last_big}
    assert not late, ("small tenants first asked %s s after the big tenant's last request "
                      "(%d requests over %.1f s): starved" % (
                          late, len(big_reqs), last_big - min(r["t"] for r in big_reqs)))
    return big_reqs


def test_fairness_job_budget():
    # A 1 s budget: the big job yields at the first slice boundary after 1 s.
    # No spare threads: the big job lends its worker while it waits, but
    # with one thread only a yield lets the small ones in.
    cfg = "fetch = { slice = 600; job_budget = 1; };\nworkers = { fetch_spare = 0; };\n"
    with FakeNetskope() as fake, Workspace(config_extra=cfg) as ws:
        fairness_setup(fake, ws, [])
        rc, _, err = ws.run_cli(["run", "--once", "--fetch-workers", 1], timeout=120)
        assert rc == 0, err[-3000:]
        assert_small_not_starved(fake)
        # ... and the big tenant still finished its whole window in the pass.
        assert_exactly_once(fake, ws, ["big"] + SMALL)
        assert "status=yield" in err, "the big job never yielded"


def test_fairness_max_records():
    # --max-records ends the big tenant's job after the slice that reaches
    # it; the small tenants run, and the next pass continues the backlog.
    cfg = "fetch = { slice = 600; job_budget = 3600; };\nworkers = { fetch_spare = 0; };\n"
    with FakeNetskope() as fake, Workspace(config_extra=cfg) as ws:
        big = fairness_setup(fake, ws, ["--max-records", 3000])
        rc, _, err = ws.run_cli(["run", "--once", "--fetch-workers", 1], timeout=120)
        assert rc == 0, err[-3000:]
        assert_exactly_once(fake, ws, SMALL)
        stored = sum(s for _, s in runs_by_tenant(ws)["big"])
        assert 3000 <= stored < big, "the big tenant stored %d of %d in one pass" % (stored, big)
        for _ in range(10):                  # later passes finish the backlog
            if len(ndjson_lines(os.path.join(ws.out, "big"))) >= big:
                break
            rc, _, err = ws.run_cli(["run", "--once", "--fetch-workers", 1], timeout=120)
            assert rc == 0, err[-3000:]
        assert_small_not_starved(fake)
        assert_exactly_once(fake, ws, ["big"] + SMALL)


if __name__ == "__main__":
    run_tests(globals())
