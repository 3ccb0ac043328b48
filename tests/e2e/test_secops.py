#!/usr/bin/env python3
"""test_secops.py - the secops:// sink end to end, over loopback.

    NSCOLLECT_BIN=./nscollect python3 tests/e2e/test_secops.py [test_name ...]

The real daemon pulls alerts (and page events) from tests/fake_netskope.py
and sends them to tests/fake_secops.py, which plays the Chronicle API's
logs.import, Google's OAuth2 token endpoint (service-account JWTs checked
with openssl) and records every entry it accepted. Each test compares
those entries, byte for byte after base64, with what the fake Netskope
holds: every record once, except the records of requests counted as
ambiguous retries - and the test checks that count against the requests
the fake saw twice.
"""

import base64
import collections
import datetime
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import FakeNetskope, Workspace, minify, wait_until, nscollect_bin  # noqa: E402
from gcs_harness import db_query  # noqa: E402
from secops_harness import FakeSecOps  # noqa: E402
from test_gcs import check_bucket, check_output, expected_lines, generate, run_once  # noqa: E402

PROJECT = "nscollect-test"
ACME = "0b6f2f3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
GLOBEX = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
SPLIT = "secops = { max_entries = 40; max_request_bytes = 65536; };\n"
SMALL_BATCHES = "fetch = { batch_max_bytes = 262144; };\n"


# ---- helpers -------------------------------------------------------------------

def workspace(secops, extra="", split=True):
    ws = Workspace(secops.config((SPLIT if split else "") + extra))
    rc, out, err = ws.run_cli(["init"])
    assert rc == 0, ("init", rc, out, err)
    return ws


def secops_url(instance, query=""):
    return "secops://us/%s/%s%s" % (PROJECT, instance, query)


def add_tenant(ws, fake, name, token, sink, key, streams=None):
    args = ["tenant", "add", name, "--url", fake.url, "--sink", sink, "--lookback", "3600",
            "--page-size", "500", "--sink-credentials", key.path]
    if streams:
        args += ["--streams", streams]
    rc, out, err = ws.run_cli(args, stdin=token)
    assert rc == 0, ("tenant add", name, rc, out, err)


def run_until_delivered(ws, runs=4, workers=2):
    """`run --once` until the outbox is empty (a once pass gives a batch
    four tries; faults that all land on one batch leave it for the next)."""
    err = ""
    for _ in range(runs):
        rc, err = run_once(ws, workers=workers)
        assert rc in (0, 1), "run --once crashed (%d):\n%s" % (rc, err[-3000:])
        if db_query(ws.db, "SELECT count(*) FROM outbox")[0][0] == 0:
            return err
    raise AssertionError("batches still undelivered after %d runs:\n%s" % (runs, err[-3000:]))


def rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def check_entries(secops, instance, log_type, expected):
    """What the fake accepted for (instance, log_type): every expected
    record at least once, byte for byte, nothing foreign, each entry's
    logEntryTime its record's timestamp. Returns (entries, duplicated
    requests): a request is duplicated when every one of its entries had
    been accepted before, in the same order - a whole resend."""
    logs = secops.logs(instance, log_type)
    got = [e["data"].decode("utf-8") for e in logs]
    assert got, "nothing accepted for %s/%s" % (instance, log_type)
    missing = set(expected) - set(got)
    foreign = set(got) - set(expected)
    assert not missing and not foreign, "%s/%s: %d records missing, %d foreign or altered" % (
        instance, log_type, len(missing), len(foreign))
    for e in logs:
        rec = json.loads(e["data"])
        if isinstance(rec.get("timestamp"), int):
            assert e["logEntryTime"] == rfc3339(rec["timestamp"]), (e["logEntryTime"], rec)
    by_request = collections.OrderedDict()
    for e in logs:
        by_request.setdefault(e["request"], []).append(e["data"])
    seen, dup_requests = set(), 0
    for data in by_request.values():
        if all(d in seen for d in data):
            dup_requests += 1
        else:
            assert not any(d in seen for d in data), "a request mixed new and resent records"
        seen.update(data)
    dup_entries = len(got) - len(set(got))
    return logs, dup_requests, dup_entries


def ambiguous_of(ws, tenant):
    return db_query(ws.db, "SELECT ambiguous_retries FROM tenant_status WHERE name = ?",
                    (tenant,))[0][0]


# ---- tests ---------------------------------------------------------------------

def test_tenants_on_secops_and_gcs_with_faults():
    """Two tenants to two SecOps instances (one with a page stream under its
    own log type), one to GCS, on one fake Google; batches split into
    requests of at most 40 entries and 64 KiB; 429s, 503s, resets before
    an answer and replies lost after SecOps accepted. Every record arrives
    in its tenant's instance and log type; the only doubles are the
    requests whose reply was lost, and ambiguous_retries counts exactly the
    resends of requests that went without an answer."""
    with FakeNetskope() as fake, FakeSecOps() as secops, \
            workspace(secops, SMALL_BATCHES) as ws:
        acme_key = secops.service_account(ws.dir, "acme-secops")
        globex_key = secops.service_account(ws.dir, "globex-secops")
        gcs_key = secops.service_account(ws.dir, "initech-writer")
        secops.instance(PROJECT, "us", ACME, allow_email=acme_key.email)
        secops.instance(PROJECT, "us", GLOBEX, allow_email=globex_key.email)
        secops.bucket("initech-secops", allow_email=gcs_key.email)
        generate(fake, "tok-acme", "acme", 2100, seed=11)
        generate(fake, "tok-globex", "globex", 900, seed=12)
        generate(fake, "tok-initech", "initech", 800, seed=13)
        now = int(time.time())
        fake.generate("tok-globex", 700, now - 1800, now - 30, seed=14, type="page")
        add_tenant(ws, fake, "acme", "tok-acme", secops_url(ACME), acme_key)
        add_tenant(ws, fake, "globex", "tok-globex",
                   secops_url(GLOBEX, "?log_type=NETSKOPE_ALERT_V2&page=NETSKOPE_WEBPROXY"),
                   globex_key, streams="alert,page")
        add_tenant(ws, fake, "initech", "tok-initech", "gs://initech-secops/netskope", gcs_key)
        # first globex and initech through 429s, then acme through the rest
        rc, out, e = ws.run_cli(["tenant", "disable", "acme"])
        assert rc == 0, e
        secops.faults(fail_imports=2, fail_status=429)
        err = run_until_delivered(ws, runs=1)
        assert secops.stats()["imports_failed"] == 2
        rc, out, e = ws.run_cli(["tenant", "enable", "acme"])
        assert rc == 0, e
        secops.faults(fail_imports=1, fail_status=503, lost_replies=3, reset_imports=2)
        err += run_until_delivered(ws)

        _, dup_a, dup_ea = check_entries(secops, ACME, "NETSKOPE_ALERT",
                                         expected_lines(fake, "tok-acme"))
        _, dup_g, dup_eg = check_entries(secops, GLOBEX, "NETSKOPE_ALERT_V2",
                                         expected_lines(fake, "tok-globex"))
        _, dup_p, dup_ep = check_entries(secops, GLOBEX, "NETSKOPE_WEBPROXY",
                                         [minify(r) for r in fake.alerts("tok-globex", type="page")])
        check_bucket(secops, ws, "initech-secops", "netskope", "initech",
                     expected_lines(fake, "tok-initech"))
        st = secops.stats()
        assert st["lost_replies"] == 3 and st["resets"] == 2, st
        assert dup_a + dup_g + dup_p == 3, \
            "each lost reply is one whole request accepted twice: %d %d %d" % (dup_a, dup_g, dup_p)
        ambiguous = sum(ambiguous_of(ws, t) for t in ("acme", "globex", "initech"))
        assert ambiguous == st["lost_replies"] + st["resets"], (ambiguous, st)
        assert ambiguous_of(ws, "initech") == 0
        assert st["max_entries_seen"] <= 40 and st["max_bytes_seen"] <= 65536, st
        assert st["imports_400"] == 0 and st["imports_401"] == 0 and st["imports_403"] == 0, st
        assert "event=ambiguous_retry" in err, err[-2000:]
        rc, out, e2 = ws.run_cli(["status"])
        assert "ambiguous_retries %d" % (ambiguous_of(ws, "acme")) in out or \
            ambiguous_of(ws, "acme") == 0, out
        assert all(t["ambiguous_retries"] == ambiguous_of(ws, t["name"])
                   for t in json.loads(ws.run_cli(["status", "--json"])[1])), "status --json"
        # 0 when nothing was doubled: the 429s and 503 were not counted
        assert dup_ea + dup_eg + dup_ep <= 40 * 3, (dup_ea, dup_eg, dup_ep)


def test_kill_between_requests_resumes_after_the_last_accepted():
    """A batch of 2000 records goes as 50 requests of 40; the daemon is
    killed (kill -9) while they go. The next run starts at the request
    after the last one SecOps accepted, not at the first: at most the one
    request in flight is sent twice, and it is counted."""
    with FakeNetskope() as fake, FakeSecOps() as secops, \
            workspace(secops, "fetch = { batch_max_bytes = 16777216; };\n") as ws:
        key = secops.service_account(ws.dir, "acme-secops")
        secops.instance(PROJECT, "us", ACME, allow_email=key.email)
        generate(fake, "tok-acme", "acme", 2000, seed=21)
        add_tenant(ws, fake, "acme", "tok-acme", secops_url(ACME), key)
        secops.faults(import_delay_ms=40)
        proc = subprocess.Popen([nscollect_bin(), "-c", ws.conf, "-d", ws.db, "run",
                                 "--upload-workers", "1"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        try:
            wait_until(lambda: secops.stats()["imports_ok"] >= 8, timeout=60,
                       what="some requests of the batch accepted")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        accepted_before = secops.stats()["entries_accepted"]
        assert accepted_before < 2000, "the batch was done before the kill"
        secops.faults(import_delay_ms=0)
        run_until_delivered(ws, runs=2, workers=1)
        _, dup_requests, dup_entries = check_entries(secops, ACME, "NETSKOPE_ALERT",
                                                     expected_lines(fake, "tok-acme"))
        ambiguous = ambiguous_of(ws, "acme")
        assert ambiguous <= 1, "one request was in flight at the kill: %d counted" % ambiguous
        assert dup_requests <= ambiguous and dup_entries <= 40 * ambiguous, \
            "resumed from the start: %d entries sent twice, %d counted" % (dup_entries, ambiguous)


def test_refusals_keep_the_batch_and_name_the_fix():
    """403 (the account may not import) and 404 (a log type SecOps does
    not have) leave the batches in the outbox with a last_error that says
    what to grant or fix; once fixed, everything arrives once."""
    with FakeNetskope() as fake, FakeSecOps() as secops, workspace(secops) as ws:
        key = secops.service_account(ws.dir, "acme-secops")
        other = secops.service_account(ws.dir, "someone-else")
        secops.instance(PROJECT, "us", ACME, allow_email=other.email)
        generate(fake, "tok-acme", "acme", 300, seed=31)
        add_tenant(ws, fake, "acme", "tok-acme", secops_url(ACME), key)
        rc, err = run_once(ws)
        assert rc != 0
        row = db_query(ws.db, "SELECT state, last_error, pending_batches FROM tenant_status")[0]
        assert row[0] == "failing" and row[2] > 0, row
        assert "roles/chronicle.editor" in row[1] and key.email in row[1], row[1]
        assert "HTTP 403" in row[1], row[1]

        secops.instance(PROJECT, "us", ACME, allow_email=key.email, log_types=["NETSKOPE_ALERT"])
        rc, out, e = ws.run_cli(["tenant", "set", "acme", "--sink",
                                 secops_url(ACME, "?log_type=NETSKOPE_NOSUCH")])
        assert rc == 0, e
        rc, err = run_once(ws)
        # the batches are pinned where their first attempt went (a 403 there
        # stored nothing, so the pin is dropped and the new URL is used)
        row = db_query(ws.db, "SELECT last_error, pending_batches FROM tenant_status")[0]
        assert rc != 0 and row[1] > 0, (rc, row)
        assert "HTTP 404" in row[0] and "NETSKOPE_NOSUCH" in row[0], row[0]

        rc, out, e = ws.run_cli(["tenant", "set", "acme", "--sink", secops_url(ACME)])
        assert rc == 0, e
        run_until_delivered(ws)
        _, dup_requests, dup_entries = check_entries(secops, ACME, "NETSKOPE_ALERT",
                                                     expected_lines(fake, "tok-acme"))
        assert dup_entries == 0 and ambiguous_of(ws, "acme") == 0


def test_bad_urls_and_streams_exit_2():
    """A malformed secops:// URL, an unknown region, a customer id that is
    not a UUID, a bad log type, an unknown query key, and a stream with no
    SecOps log type: exit 2 at tenant add/set with the reason, and nothing
    added or changed."""
    with FakeNetskope() as fake, FakeSecOps() as secops, workspace(secops) as ws:
        cases = [
            ("secops://us", "expected secops://REGION/PROJECT/CUSTOMER_ID"),
            ("secops://mars/%s/%s" % (PROJECT, ACME), "unknown SecOps region 'mars'"),
            ("secops://eu/%s/not-a-uuid" % PROJECT, "is not a UUID"),
            ("secops://eu/%s/%s?log_type=lower" % (PROJECT, ACME), "log type 'lower'"),
            ("secops://eu/%s/%s?pgae=X" % (PROJECT, ACME), "unknown query key 'pgae'"),
            ("secops://eu/%s/%s/extra" % (PROJECT, ACME), "after the customer id"),
        ]
        for url, why in cases:
            rc, out, err = ws.run_cli(["tenant", "add", "acme", "--url", fake.url,
                                       "--sink", url], stdin="tok-acme")
            assert rc == 2 and why in err, (url, rc, err)
        rc, out, err = ws.run_cli(["tenant", "add", "acme", "--url", fake.url, "--streams",
                                   "alert,network", "--sink", secops_url(ACME)],
                                  stdin="tok-acme")
        assert rc == 2 and "stream 'network' has no SecOps log type" in err, err
        assert db_query(ws.db, "SELECT count(*) FROM tenant")[0][0] == 0
        rc, out, err = ws.run_cli(["tenant", "add", "acme", "--url", fake.url, "--sink",
                                   secops_url(ACME)], stdin="tok-acme")
        assert rc == 0, err
        rc, out, err = ws.run_cli(["tenant", "set", "acme", "--streams", "alert,page"])
        assert rc == 2 and "stream 'page' has no SecOps log type" in err, err
        assert db_query(ws.db, "SELECT group_concat(name) FROM stream")[0][0] == "alert"
        check_output(out + err)


def test_a_record_too_big_for_a_request_stops_after_the_last_accepted():
    """A record larger than secops.max_request_bytes stops its batch there
    (SINK_PERMANENT, the setting named in last_error) after the requests
    before it were accepted. Once the setting is raised, delivery goes on
    from that record: nothing is sent twice and nothing is counted as
    ambiguous (the requests before it were answered)."""
    small = "secops = { max_entries = 40; max_request_bytes = 8192; };\n"
    with FakeNetskope() as fake, FakeSecOps() as secops, \
            Workspace(secops.config(small)) as ws:
        rc, out, err = ws.run_cli(["init"])
        assert rc == 0, err
        key = secops.service_account(ws.dir, "acme-secops")
        secops.instance(PROJECT, "us", ACME, allow_email=key.email)
        now = int(time.time())
        fake.add_tenant("tok-acme", "acme")
        fake.generate("tok-acme", 60, now - 1800, now - 900, seed=41)
        fake.add_raw("tok-acme", [{"_id": "big-one", "timestamp": now - 800,
                                   "_insertion_epoch_timestamp": now - 800, "type": "DLP",
                                   "alert_type": "DLP", "padding": "x" * 12000}])
        fake.generate("tok-acme", 40, now - 700, now - 60, seed=42)
        add_tenant(ws, fake, "acme", "tok-acme", secops_url(ACME), key)
        rc, err = run_once(ws)
        assert rc != 0
        row = db_query(ws.db, "SELECT last_error, pending_batches FROM tenant_status")[0]
        assert "does not fit in one logs.import request" in row[0] and \
            "secops.max_request_bytes" in row[0] and row[1] > 0, row
        accepted = secops.stats()["entries_accepted"]
        assert 0 < accepted < 101, accepted
        ws.write_config(secops.config("secops = { max_entries = 40; };\n"))
        run_until_delivered(ws)
        _, dup_requests, dup_entries = check_entries(secops, ACME, "NETSKOPE_ALERT",
                                                     expected_lines(fake, "tok-acme"))
        assert dup_entries == 0, "%d entries sent twice after the stop" % dup_entries
        assert ambiguous_of(ws, "acme") == 0


if __name__ == "__main__":
    from harness import run_tests
    run_tests(globals())
