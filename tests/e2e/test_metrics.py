#!/usr/bin/env python3
"""test_metrics.py - /metrics, /healthz and /readyz (issue 16) scraped from
a live daemon while tenants fetch and fail: the numbers must equal what the
fake Netskope served and what the sink received; promtool (Debian's
prometheus package) must accept the text; a bad metrics.listen is a config
error naming the key; slow, oversized and a thousand concurrent clients
must neither stall collection nor grow the daemon's memory without bound.

    NSCOLLECT_BIN=./nscollect python3 tests/e2e/test_metrics.py [NAME...]
"""

import os
import re
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import REPO, FakeNetskope, Workspace, minify, ndjson_lines, wait_until, run_tests  # noqa: E402
from test_spine import add_tenants, token  # noqa: E402

LISTEN = 'metrics = { listen = "127.0.0.1:0"; };\n'
FAST = "fetch = { retry_wait_max = 0; };\ntenant_defaults = { interval = 1; };\n"
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def start_daemon(ws, env=None):
    """The daemon with metrics on a free port; (proc, "127.0.0.1:PORT")."""
    proc = ws.spawn(["run"], env=env)

    def bound():
        with open(proc.stderr_path) as f:
            m = re.search(r"event=metrics_listen listen=(\S+)", f.read())
        assert proc.poll() is None, "daemon exited: " + open(proc.stderr_path).read()
        return m and m.group(1)
    return proc, wait_until(bound, 20, what="event=metrics_listen")


def get(addr, path, method="GET"):
    """(status, body text) of one request."""
    req = urllib.request.Request("http://%s%s" % (addr, path), method=method)
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def parse(text):
    """{(name, frozenset(labels)): value} of every sample; asserts every
    family has HELP and TYPE before its samples."""
    samples, typed = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if line.startswith("#") or not line:
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        name, labels, value = m.groups()
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in typed or family in typed, "%s before its TYPE line" % name
        lab = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels or ""))
        samples[(name, lab)] = float(value)
    return samples


def value(s, name, **labels):
    return s.get((name, frozenset(labels.items())))


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, open(proc.stderr_path).read()


def outcome_of(req):
    """How nscollect must have counted a request the fake logged."""
    if req["status"] == 200 and req["fault"] in (None, "slow", "ratelimit", "wait_time"):
        return "ok"
    if req["fault"] in ("malformed", "not_array", "no_ok"):
        return "malformed"
    if req["fault"] == "truncated":
        return "error"
    code = req["status"]
    return "429" if code == 429 else "5xx" if code >= 500 else "4xx"


def test_counts_equal_what_was_served_and_delivered():
    names = {"acme": 1200, "globex": 700, "wayne": 300}
    with FakeNetskope() as fake, Workspace(LISTEN + FAST) as ws:
        add_tenants(fake, ws, names)
        now = int(time.time())
        for n, count in names.items():
            fake.generate(token(n), count, now - 1800, now - 60)
        fake.faults(token("globex"), [{"kind": "status", "code": 500},
                                      {"kind": "status", "code": 429, "retry_after": 1},
                                      {"kind": "malformed"}, {"kind": "truncated"},
                                      {"kind": "status", "code": 503}])
        proc, addr = start_daemon(ws)
        try:
            def delivered_all():
                return all(len(ndjson_lines(os.path.join(ws.out, n)) if
                               os.path.isdir(os.path.join(ws.out, n)) else []) == c
                           for n, c in names.items())
            wait_until(delivered_all, 90, 0.1, "every alert delivered")

            def settled():
                """A scrape whose record counts have caught up with the sink
                (a reply is rebuilt at most once a second)."""
                s = parse(get(addr, "/metrics")[1])
                ok = all(value(s, "nscollect_records_delivered_total", tenant=n,
                               stream="alert") == c for n, c in names.items())
                return ok and s
            wait_until(settled, 30, 0.2, "delivered counts in /metrics")
            stop(proc)                 # nothing moves after this: compare exactly
            proc = None
            # A daemon that has stopped cannot be scraped: one more, with the
            # same database, serves the final counts of the database and
            # zero requests of its own - its tenants disabled, or (interval 1)
            # it may re-read the overlap between the fake's log and the scrape.
            for n in names:
                rc, out, err = ws.run_cli(["tenant", "disable", n])
                assert rc == 0, err
            proc, addr = start_daemon(ws)
            served = {n: fake.served(token(n))["requests"] for n in names}
            s = parse(get(addr, "/metrics")[1])
        finally:
            if proc:
                stop(proc)
        for n, count in names.items():
            lab = {"tenant": n, "stream": "alert"}
            got = ndjson_lines(os.path.join(ws.out, n))
            assert Counter(got) == Counter(minify(r) for r in fake.alerts(token(n)))
            ok_pages = [r for r in served[n] if outcome_of(r) == "ok"]
            fetched = sum(r["count"] for r in ok_pages)
            assert value(s, "nscollect_records_fetched_total", **lab) == fetched, \
                (n, value(s, "nscollect_records_fetched_total", **lab), fetched, served[n])
            assert value(s, "nscollect_records_stored_total", **lab) == count, n
            assert value(s, "nscollect_records_duplicate_total", **lab) == fetched - count, n
            assert value(s, "nscollect_records_delivered_total", **lab) == count, n
            d = os.path.join(ws.out, n)
            size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
            assert value(s, "nscollect_delivered_bytes_total", **lab) == size, n
            assert value(s, "nscollect_pending_batches", **lab) == 0
            assert value(s, "nscollect_stream_failing", **lab) == 0
            assert value(s, "nscollect_stream_interval_seconds", **lab) == 1
            lag = value(s, "nscollect_cursor_lag_seconds", **lab)
            assert lag is not None and 0 <= lag < 600, lag
            assert value(s, "nscollect_last_success_timestamp_seconds", **lab) > time.time() - 600


def test_upgrade_starts_the_counters_from_the_history():
    """Migration 014 fills the new counters from the run and delivered rows
    a database already holds: a scrape after the upgrade counts what was
    collected before it."""
    with FakeNetskope() as fake, Workspace(LISTEN + FAST) as ws:
        add_tenants(fake, ws, ["acme"])
        now = int(time.time())
        fake.generate(token("acme"), 400, now - 1800, now - 60)
        rc, out, err = ws.run_cli(["run", "--once"])
        assert rc == 0, err
        # The database as release 13 left it: no counters, no triggers, and
        # nothing of the later migrations (015's columns, its views; 016's
        # and 017's index of keys by stored time, 017's columns).
        con = sqlite3.connect(ws.db)
        with open(os.path.join(REPO, "migrations", "013_conflicts.sql")) as f:
            views13 = f.read()
        con.executescript(views13[views13.index("DROP VIEW tenant_status;"):])
        con.executescript("ALTER TABLE outbox DROP COLUMN sent_bytes;"
                          "ALTER TABLE outbox DROP COLUMN in_flight;"
                          "ALTER TABLE stream DROP COLUMN ambiguous_retries;"
                          "ALTER TABLE stream DROP COLUMN keys_stored_oldest;"
                          "ALTER TABLE stream DROP COLUMN keys_scanned_at;"
                          "CREATE INDEX seen_stored ON seen (stream_id, stored_at);")
        con.executescript("DROP TRIGGER run_counts_stream; DROP TRIGGER delivered_counts_stream;"
                          "ALTER TABLE stream DROP COLUMN fetched_total;"
                          "ALTER TABLE stream DROP COLUMN stored_total;"
                          "ALTER TABLE stream DROP COLUMN delivered_records_total;"
                          "ALTER TABLE stream DROP COLUMN delivered_bytes_total;"
                          "PRAGMA user_version = 13;")
        con.close()
        rc, out, err = ws.run_cli(["init"])
        assert rc == 0, err
        # disabled, so that the daemon fetches nothing between the scrape and
        # reading the fake's log (with interval 1 it did, now and then)
        rc, out, err = ws.run_cli(["tenant", "disable", "acme"])
        assert rc == 0, err
        proc, addr = start_daemon(ws)
        try:
            s = parse(get(addr, "/metrics")[1])
        finally:
            stop(proc)
        lab = {"tenant": "acme", "stream": "alert"}
        assert value(s, "nscollect_records_stored_total", **lab) == 400
        assert value(s, "nscollect_records_delivered_total", **lab) == 400
        served = sum(r["count"] for r in fake.served(token("acme"))["requests"])
        assert value(s, "nscollect_records_fetched_total", **lab) == served, \
            (value(s, "nscollect_records_fetched_total", **lab), served)


def test_requests_by_outcome_equal_the_fakes_log():
    """Request counts live in memory (they start at 0 with the process):
    checked on the daemon that made them, while it runs."""
    with FakeNetskope() as fake, Workspace(LISTEN + FAST) as ws:
        add_tenants(fake, ws, ["acme", "globex"])
        now = int(time.time())
        fake.generate(token("acme"), 900, now - 1800, now - 60)
        fake.generate(token("globex"), 900, now - 1800, now - 60)
        fake.faults(token("globex"), [{"kind": "status", "code": 500},
                                      {"kind": "status", "code": 429, "retry_after": 1},
                                      {"kind": "malformed"}, {"kind": "truncated"},
                                      {"kind": "status", "code": 404}])
        proc, addr = start_daemon(ws)
        try:
            wait_until(lambda: len(ws.lines()) == 1800, 60, 0.1, "every alert delivered")

            def matches():
                served = {n: Counter(outcome_of(r) for r in fake.served(token(n))["requests"])
                          for n in ("acme", "globex")}
                s = parse(get(addr, "/metrics")[1])
                for n, want in served.items():
                    got = Counter({o: int(value(s, "nscollect_requests_total", tenant=n,
                                                stream="alert", outcome=o) or 0)
                                   for o in ("ok", "429", "4xx", "5xx", "timeout",
                                             "malformed", "error")})
                    if +got != want or sum(want.values()) == 0:
                        return None
                return served
            # Counted as the replies arrive; the fake logs a request before
            # it answers, so the two agree once the daemon is between requests.
            served = wait_until(matches, 60, 0.3, "requests_total equal to the fake's log")
            assert served["globex"]["5xx"] == 1 and served["globex"]["429"] == 1
            assert served["globex"]["malformed"] == 1 and served["globex"]["error"] == 1
            assert served["globex"]["4xx"] == 1
        finally:
            stop(proc)


def test_promtool_accepts_the_text():
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: `make deps` installs Debian's prometheus package"
    with FakeNetskope() as fake, Workspace(LISTEN + FAST) as ws:
        add_tenants(fake, ws, ["acme", "globex"])
        now = int(time.time())
        fake.generate(token("acme"), 300, now - 1800, now - 60)
        fake.faults(token("globex"), [{"kind": "status", "code": 500}] * 3)
        proc, addr = start_daemon(ws)
        try:
            wait_until(lambda: len(ws.lines()) == 300, 60, 0.1, "alerts delivered")
            code, text = get(addr, "/metrics")
            assert code == 200
            p = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            assert p.returncode == 0, p.stdout.decode()
            assert p.stdout.decode().strip() == "", p.stdout.decode()
            s = parse(text)
            assert value(s, "nscollect_build_info", version=re.search(
                r'version="([^"]+)"', text).group(1)) == 1
            assert value(s, "nscollect_ready") == 1
            assert value(s, "nscollect_sqlite_commit_seconds_count") > 0
            assert value(s, "nscollect_sqlite_commit_seconds_bucket", le="+Inf") == \
                value(s, "nscollect_sqlite_commit_seconds_count")
            busy = sum(v for (n, _), v in s.items() if n == "nscollect_workers")
            assert busy >= 2, "a fetch and an upload worker at least"
            # a broken copy is rejected: the check can fail
            bad = text.replace("# TYPE nscollect_pending_bytes gauge",
                               "# TYPE nscollect_pending_bytes counter")
            p = subprocess.run([promtool, "check", "metrics"], input=bad.encode(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            assert p.returncode != 0
        finally:
            stop(proc)


def test_health_and_readiness():
    with FakeNetskope() as fake, Workspace(LISTEN + FAST) as ws:
        add_tenants(fake, ws, ["acme"])
        proc, addr = start_daemon(ws)
        try:
            wait_until(lambda: get(addr, "/readyz") == (200, "ready\n"), 20, 0.05,
                       "/readyz 200 once every thread has its connection")
            assert get(addr, "/healthz") == (200, "ok\n")
            assert get(addr, "/nope")[0] == 404
            assert get(addr, "/metrics", method="POST")[0] == 405
            assert get(addr, "/metrics", method="HEAD")[0] == 200
            stop(proc)
            proc = None
            # /readyz while starting and stopping, and /healthz with a
            # scheduler that stopped ticking: tests/unit/test_metrics.c,
            # where the pool's state is set, not raced for.
        finally:
            if proc:
                stop(proc)


def test_bad_listen_is_a_config_error():
    with Workspace() as ws:
        assert ws.run_cli(["init"])[0] == 0
        for listen, words in (("nonsense", "metrics.listen: 'nonsense': no port"),
                              ("127.0.0.1:99999", "port '99999' is not a number"),
                              ("::1:9464", "write an IPv6 address in brackets"),
                              ("localhost:9464", "not a numeric IPv4 or IPv6 address")):
            ws.write_config('metrics = { listen = "%s"; };' % listen)
            rc, out, err = ws.run_cli(["run", "--once"])
            assert rc == 2, (listen, rc, err)
            assert words in err, (listen, err)
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        ws.write_config('metrics = { listen = "127.0.0.1:%d"; };' % port)
        rc, out, err = ws.run_cli(["run", "--once"])
        taken.close()
        assert rc == 2, err
        assert "metrics.listen: cannot listen on 127.0.0.1:%d: Address already in use" % port \
            in err, err


def test_sighup_with_a_bad_listen_changes_nothing():
    with FakeNetskope() as fake, Workspace(LISTEN + FAST) as ws:
        add_tenants(fake, ws, ["acme"])
        proc, addr = start_daemon(ws)
        try:
            ws.write_config('metrics = { listen = "127.0.0.1"; };\n' + FAST)
            proc.send_signal(signal.SIGHUP)
            wait_until(lambda: "event=reload_failed" in open(proc.stderr_path).read(), 20,
                       what="event=reload_failed")
            log = open(proc.stderr_path).read()
            assert "metrics.listen: '127.0.0.1': no port" in log, log
            assert get(addr, "/healthz")[0] == 200
        finally:
            stop(proc)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def hostile_round(fake, ws, addr, alerts, total, seed):
    """One flood: a slowloris, a megabyte of headers and 1,000 held
    connections while `alerts` more arrive; returns once `total` are
    delivered, both bad clients were answered or dropped, and the endpoint
    serves again."""
    host, port = addr.rsplit(":", 1)
    socks = []
    try:
        # A slowloris: half a request, then silence.
        slow = socket.create_connection((host, int(port)))
        socks.append(slow)
        slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        # A request with a megabyte of headers.
        huge = socket.create_connection((host, int(port)))
        socks.append(huge)
        huge.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (1 << 20))
        # A thousand connections, held open.
        for _ in range(1000):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex((host, int(port)))
            socks.append(s)
        # Collection goes on meanwhile.
        if alerts:
            now = int(time.time())
            fake.generate(token("acme"), alerts, now - 50, now - 5, seed=seed)
        wait_until(lambda: len(ws.lines()) == total, 60, 0.1, "alerts delivered under the flood")
        huge.settimeout(20)
        try:
            reply = huge.recv(200)
        except (ConnectionResetError, BrokenPipeError):
            reply = b""
        assert reply == b"" or reply.split(b" ")[1] in (b"413", b"431", b"400"), reply
        # the slow client is dropped after METRICS_IDLE_S of silence
        slow.settimeout(30)
        t0 = time.monotonic()
        assert slow.recv(100) == b""
        assert time.monotonic() - t0 < 25
    finally:
        for s in socks:
            s.close()
    wait_until(lambda: get(addr, "/healthz")[0] == 200, 30, 0.2, "served again")


def test_hostile_clients_do_not_stall_collection_or_grow_memory():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    with FakeNetskope() as fake, Workspace(LISTEN + FAST) as ws:
        add_tenants(fake, ws, ["acme"])
        now = int(time.time())
        fake.generate(token("acme"), 200, now - 600, now - 60)
        # Under ASan freed memory sits in its quarantine (256 MiB by default)
        # and counts as RSS: kept small so growth means what it says.
        proc, addr = start_daemon(ws, env={"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") +
                                             ":quarantine_size_mb=4"})
        try:
            wait_until(lambda: len(ws.lines()) == 200, 60, 0.1, "first alerts delivered")
            get(addr, "/metrics")
            hostile_round(fake, ws, addr, 300, 500, 2)
            # Memory is measured over floods without new alerts: collecting
            # grows SQLite's page caches and the workers' malloc arenas up to
            # their bounds (~70 MiB measured after 12,000 alerts, flat after),
            # which would hide what the clients cost; so does what a young
            # process grows once (under TSan ~35 MiB of shadow and thread
            # state over its first ~10 s). Bounded means a flood soon costs
            # next to nothing: memory kept per connection (1,000 of them) or
            # per header byte (a megabyte) would grow by more every time.
            grown = []
            for _ in range(6):
                base = rss_kib(proc.pid)
                hostile_round(fake, ws, addr, 0, 500, 0)
                grown.append(rss_kib(proc.pid) - base)
                if grown[-1] < 512:
                    break
            assert grown[-1] < 512, "RSS grew in every flood of hostile clients (KiB): %s" % grown
        finally:
            stop(proc)


if __name__ == "__main__":
    run_tests(globals())
