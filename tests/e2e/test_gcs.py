#!/usr/bin/env python3
"""test_gcs.py - the gs:// sink end to end, over loopback.

    NSCOLLECT_BIN=./nscollect python3 tests/e2e/test_gcs.py [test_name ...]

The real daemon (`nscollect -c CONF -d DB run --once`) pulls alerts from
tests/fake_netskope.py and uploads them to tests/fake_gcs.py, which also
plays Google's OAuth2 token endpoint (service-account JWTs, checked with
openssl) and the GCE metadata server. Every test compares what landed in
the fake's buckets, object by object and byte by byte, with what the fake
Netskope holds: each record exactly once, in objects named
<prefix>/<tenant>/alerts_<yyyymmdd_HHMMSS>_<batch id>.ndjson[.gz].
"""

import collections
import datetime
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import FakeNetskope, Workspace, minify, wait_until  # noqa: E402
from gcs_harness import FakeGCS, db_query, object_lines  # noqa: E402

SMALL_BATCHES = "fetch = { batch_max_bytes = 65536; };\n"   # many objects per run
LEAKS = ("ya29.", "BEGIN PRIVATE KEY", "eyJhbGciOiJSUzI1NiI")  # tokens, keys, JWTs
CLEAN_ENV = {"STORAGE_EMULATOR_HOST": None, "GOOGLE_APPLICATION_CREDENTIALS": None,
             "GCE_METADATA_HOST": None}


# ---- helpers -------------------------------------------------------------------

def generate(fake, token, name, count, seed, end_ago=30):
    """A Netskope tenant with count alerts inserted in the last half hour."""
    now = int(time.time())
    fake.add_tenant(token, name)
    fake.generate(token, count, insertion_start=now - 1800, insertion_end=now - end_ago,
                  seed=seed)


def workspace(gcs, gzip_on=False, extra=""):
    ws = Workspace(gcs.config(gzip_on, extra))
    rc, out, err = ws.run_cli(["init"])
    assert rc == 0, ("init", rc, out, err)
    return ws


def add_tenant(ws, fake, name, token, sink, key=None):
    args = ["tenant", "add", name, "--url", fake.url, "--sink", sink,
            "--lookback", "3600", "--page-size", "1000"]
    if key is not None:
        args += ["--sink-credentials", key.path]
    rc, out, err = ws.run_cli(args, stdin=token)
    assert rc == 0, ("tenant add", name, rc, out, err)


def acme_on_gcs(fake, gcs, ws, count, seed):
    """The usual set-up: tenant acme with count alerts, delivering to
    gs://acme-secops/netskope as acme-writer, the bucket's only writer."""
    key = gcs.service_account(ws.dir, "acme-writer")
    gcs.bucket("acme-secops", allow_email=key.email)
    generate(fake, "tok-acme", "acme", count, seed=seed)
    add_tenant(ws, fake, "acme", "tok-acme", "gs://acme-secops/netskope", key)
    return key


def run_once(ws, env=None, workers=4):
    """`nscollect run --once`; (rc, stderr). Checks that no access token,
    JWT or private key leaks into the output."""
    e = dict(CLEAN_ENV)
    e.update(env or {})
    rc, out, err = ws.run_cli(["run", "--once", "--upload-workers", workers], env=e)
    check_output(out + err)
    return rc, err


def check_output(text):
    """No secret material and no sanitizer report (an ASan build exits 1 on
    an error, which a test expecting exit status 1 would not notice)."""
    for leak in LEAKS:
        assert leak not in text, "secret material (%s...) in nscollect's output:\n%s" % (
            leak, text[-3000:])
    for report in ("Sanitizer", "runtime error:"):
        assert report not in text, "sanitizer report:\n%s" % text[-6000:]


def status(ws):
    """{tenant: row} from `nscollect status --json`, and its exit status."""
    rc, out, err = ws.run_cli(["status", "--json"])
    assert rc in (0, 1), ("status", rc, out, err)
    check_output(out + err)
    return {t["name"]: t for t in json.loads(out)}, rc


def outbox_count(ws, name=None):
    sql = "SELECT count(*) FROM outbox"
    if name:
        sql += " WHERE tenant_id = (SELECT id FROM tenant WHERE name = ?)"
    return db_query(ws.db, sql, (name,) if name else ())[0][0]


def cursor_of(ws, name):
    rows = db_query(ws.db, "SELECT position FROM cursor WHERE stream_id = "
                           "(SELECT s.id FROM stream s JOIN tenant t ON t.id = s.tenant_id "
                           "WHERE t.name = ? AND s.name = 'alert')", (name,))
    return rows[0][0] if rows else None


def expected_lines(fake, token):
    return [minify(r) for r in fake.alerts(token)]


def check_bucket(gcs, ws, bucket, prefix, tenant, expected, gz=False):
    """Bucket holds exactly the tenant's records, once each, byte for byte,
    in objects named as the design says that match the delivery log.
    Returns the objects."""
    objs = gcs.objects(bucket)
    assert objs, "bucket %s is empty" % bucket
    pat = re.compile(r"^%s/%s/alerts_(\d{8}_\d{6})_([0-9a-f]{12})_(\d+)\.ndjson%s$" % (
        re.escape(prefix), re.escape(tenant), r"\.gz" if gz else ""))
    delivered = {row[0]: row[1:] for row in db_query(
        ws.db, "SELECT d.id, d.location, d.created_at, d.records FROM delivered d "
               "JOIN tenant t ON t.id = d.tenant_id WHERE t.name = ?", (tenant,))}
    db_id = db_query(ws.db, "SELECT db_id FROM identity")[0][0]
    lines = []
    for name, data in sorted(objs.items()):
        m = pat.match(name)
        assert m, "object name %r in %s does not match %s" % (name, bucket, pat.pattern)
        assert m.group(2) == db_id, "object %s does not carry this database's id %s" % (name, db_id)
        batch = int(m.group(3))
        assert batch in delivered, "object %s: batch %d not in the delivery log" % (name, batch)
        location, created, records = delivered[batch]
        assert location == "gs://%s/%s" % (bucket, name), (location, name)
        stamp = datetime.datetime.fromtimestamp(created, datetime.timezone.utc)
        assert m.group(1) == stamp.strftime("%Y%m%d_%H%M%S"), (name, created)
        if gz:
            assert data[:2] == b"\x1f\x8b", "%s is not gzip data" % name
        got = object_lines(data, name)
        assert len(got) == records, (name, len(got), records)
        lines += got
    assert len(objs) == len(delivered), ("objects vs delivered rows", len(objs), len(delivered))
    dups = [line[:80] for line, n in collections.Counter(lines).items() if n > 1]
    assert not dups, "%d records delivered twice to %s, e.g. %s" % (len(dups), bucket, dups[:2])
    missing = set(expected) - set(lines)
    extra = set(lines) - set(expected)
    assert not missing and not extra, "%s: %d records missing, %d foreign or altered" % (
        bucket, len(missing), len(extra))
    assert sorted(lines) == sorted(expected)
    assert outbox_count(ws, tenant) == 0, "batches left in the outbox of %s" % tenant
    return objs


# ---- tests ---------------------------------------------------------------------

def test_two_tenants_two_buckets_two_accounts():
    """3000 alerts each; each bucket only takes its own account's uploads;
    every record lands once, byte for byte, in its own tenant's bucket."""
    with FakeNetskope() as fake, FakeGCS() as gcs, workspace(gcs, extra=SMALL_BATCHES) as ws:
        acme_key = gcs.service_account(ws.dir, "acme-writer")
        globex_key = gcs.service_account(ws.dir, "globex-writer")
        gcs.bucket("acme-secops", allow_email=acme_key.email)
        gcs.bucket("globex-secops", allow_email=globex_key.email)
        generate(fake, "tok-acme", "acme", 3000, seed=1)
        generate(fake, "tok-globex", "globex", 3000, seed=2)
        add_tenant(ws, fake, "acme", "tok-acme", "gs://acme-secops/netskope/alerts", acme_key)
        add_tenant(ws, fake, "globex", "tok-globex", "gs://globex-secops/nsk/", globex_key)
        rc, err = run_once(ws)
        assert rc == 0, "run --once failed (%d):\n%s" % (rc, err[-3000:])
        acme = check_bucket(gcs, ws, "acme-secops", "netskope/alerts", "acme",
                            expected_lines(fake, "tok-acme"))
        globex = check_bucket(gcs, ws, "globex-secops", "nsk", "globex",
                              expected_lines(fake, "tok-globex"))
        assert len(acme) > 20 and len(globex) > 20, (len(acme), len(globex))
        for o in gcs.object_list("acme-secops"):
            assert o["content_type"] == "application/x-ndjson", o["content_type"]
        st = gcs.stats()
        assert st["uploads_403"] == 0 and st["uploads_401"] == 0, st
        assert st["overwrites"] == 0 and st["uploads_412"] == 0, st
        assert st["tokens_issued"] >= 2, st          # one per account at least
        assert st["uploads_ok"] == len(acme) + len(globex), st


def test_503_and_lost_replies_exactly_once():
    """Two 503s, then four uploads stored but answered 503: the retries of
    the lost replies get 412, count as delivered (existed=1), and nothing is
    written twice."""
    with FakeNetskope() as fake, FakeGCS() as gcs, workspace(gcs, extra=SMALL_BATCHES) as ws:
        acme_on_gcs(fake, gcs, ws, 1500, seed=3)
        gcs.faults(fail_uploads=2, fail_status=503, lost_replies=4)
        rc, err = run_once(ws)
        assert rc == 0, "run --once failed (%d):\n%s" % (rc, err[-3000:])
        check_bucket(gcs, ws, "acme-secops", "netskope", "acme", expected_lines(fake, "tok-acme"))
        st = gcs.stats()
        assert st["lost_replies"] == 4 and st["uploads_failed"] == 6, st
        assert st["uploads_412"] == 4, "each lost reply is retried into a 412: %s" % st
        assert st["overwrites"] == 0, st
        existed = db_query(ws.db, "SELECT count(*) FROM delivered WHERE existed = 1")[0][0]
        assert existed == 4, "delivery log counts %d existed=1 rows, expected 4" % existed
        assert "existed=1" in err, err[-2000:]


def test_sink_changed_after_lost_replies_goes_where_the_first_try_went():
    """Every upload is stored but its reply lost, so the pass ends with the
    batches waiting. The operator then moves the tenant to another bucket and
    turns gzip on. The waiting batches were pinned at their first attempt:
    they go to the first bucket, uncompressed, under their first names (412,
    existed=1); nothing reaches the new bucket twice. New batches follow the
    new sink."""
    with FakeNetskope() as fake, FakeGCS() as gcs, workspace(gcs, extra=SMALL_BATCHES) as ws:
        key = acme_on_gcs(fake, gcs, ws, 900, seed=31)
        gcs.bucket("acme-new", allow_email=key.email)
        gcs.faults(lost_replies=10 ** 6, lost_412s=10 ** 6)
        rc, err = run_once(ws)
        assert rc == 1, "lost replies must leave the batches waiting (%d):\n%s" % (rc, err[-2000:])
        first = dict(gcs.objects("acme-secops"))
        waiting = outbox_count(ws, "acme")
        assert waiting >= 2 and len(first) == waiting, (waiting, sorted(first))
        pins = db_query(ws.db, "SELECT DISTINCT sink_url, sink_gzip, sink_maybe FROM outbox")
        assert pins == [("gs://acme-secops/netskope", 0, 1)], pins

        gcs.faults(lost_replies=0, lost_412s=0)
        rc, out, err = ws.run_cli(["tenant", "set", "acme", "--sink", "gs://acme-new/netskope"])
        assert rc == 0, (rc, out, err)
        ws.write_config(gcs.config(True, SMALL_BATCHES))
        rc, err = run_once(ws)
        assert rc == 0, "run after the move failed (%d):\n%s" % (rc, err[-3000:])
        assert "event=pinned" in err and 'to="gs://acme-secops/netskope"' in err, err[-2000:]
        assert gcs.objects("acme-new") == {}, "a pinned batch was written a second time"
        assert gcs.objects("acme-secops") == first, "the first bucket's objects changed"
        check_bucket(gcs, ws, "acme-secops", "netskope", "acme", expected_lines(fake, "tok-acme"))
        assert gcs.stats()["uploads_412"] == waiting and gcs.stats()["overwrites"] == 0

        now = int(time.time())               # new alerts: new batches, the new sink
        fake.generate("tok-acme", 50, insertion_start=now - 20, insertion_end=now - 5, seed=32)
        rc, err = run_once(ws)
        assert rc == 0, err[-3000:]
        new = gcs.objects("acme-new")
        assert new and all(n.endswith(".ndjson.gz") for n in new), sorted(new)


def test_refused_pin_follows_the_new_sink():
    """A bucket that does not exist refuses the batch outright (404): nothing
    can be stored there, so the pin is dropped and, after the operator points
    the tenant at the right bucket, the batch goes there."""
    with FakeNetskope() as fake, FakeGCS() as gcs, workspace(gcs) as ws:
        key = gcs.service_account(ws.dir, "acme-writer")
        gcs.bucket("acme-secops", allow_email=key.email)
        generate(fake, "tok-acme", "acme", 300, seed=33)
        add_tenant(ws, fake, "acme", "tok-acme", "gs://acme-typo/netskope", key)
        rc, err = run_once(ws)
        assert rc == 1, err[-2000:]
        assert db_query(ws.db, "SELECT count(*) FROM outbox WHERE sink_url IS NOT NULL")[0][0] == 0
        rc, out, err = ws.run_cli(["tenant", "set", "acme", "--sink", "gs://acme-secops/netskope"])
        assert rc == 0, (rc, out, err)
        rc, err = run_once(ws)
        assert rc == 0, "the corrected sink did not receive the batch (%d):\n%s" % (rc, err[-3000:])
        check_bucket(gcs, ws, "acme-secops", "netskope", "acme", expected_lines(fake, "tok-acme"))


def batch_bytes(ws, batch_id):
    """What batch batch_id holds: its body, or its spool file's bytes."""
    body, spooled = db_query(ws.db, "SELECT body, spooled FROM outbox WHERE id = ?",
                             (batch_id,))[0]
    if not spooled:
        return bytes(body)
    with open("%s.spool/%d.ndjson" % (ws.db, batch_id), "rb") as f:
        return f.read()


def test_an_existing_object_counts_only_with_the_same_bytes():
    """A 412 is not proof: the object already under a batch's name is read
    back (md5Hash) and compared. Another writer's object there leaves the
    batch waiting, the tenant failing with the object named, the object
    untouched; the batch's own bytes there (a lost reply) count delivered.
    An account that may not read objects (Storage Object Creator only) gets
    a 403 on the read: the name, unique to this database, is trusted."""
    with FakeNetskope() as fake, FakeGCS() as gcs, workspace(gcs, extra=SMALL_BATCHES) as ws:
        key = acme_on_gcs(fake, gcs, ws, 400, seed=34)
        gcs.faults(fail_uploads=10 ** 6)
        rc, err = run_once(ws)
        assert rc == 1, err[-2000:]
        batches = db_query(ws.db, "SELECT id, object_name FROM outbox ORDER BY id")
        assert len(batches) >= 3, batches
        (forged_id, forged), (own_id, own) = batches[0], batches[1]
        gcs.put_object("acme-secops", "netskope/" + forged, b'{"forged":1}\n')
        gcs.put_object("acme-secops", "netskope/" + own, batch_bytes(ws, own_id))
        gcs.faults(fail_uploads=0)
        rc, err = run_once(ws)
        assert rc == 1, "a batch under another writer's object must not count delivered"
        left = db_query(ws.db, "SELECT id, last_error FROM outbox")
        assert [r[0] for r in left] == [forged_id], left
        assert "exists with other content" in left[0][1] and forged in left[0][1], left
        assert gcs.objects("acme-secops")["netskope/" + forged] == b'{"forged":1}\n'
        existed = db_query(ws.db, "SELECT id FROM delivered WHERE existed = 1")
        assert existed == [(own_id,)], existed
        rows, _ = status(ws)
        assert rows["acme"]["state"] == "failing", rows
        assert gcs.stats()["reads"] >= 2 and gcs.stats()["overwrites"] == 0

        gcs.bucket("acme-secops", allow_email=key.email, create_only=True)
        rc, err = run_once(ws)
        assert rc == 0, "a create-only account cannot compare: the name is trusted\n" + err
        assert gcs.stats()["reads_403"] >= 1
        assert db_query(ws.db, "SELECT existed FROM delivered WHERE id = ?",
                        (forged_id,)) == [(1,)]


def test_token_expires_mid_run():
    """Tokens that live 2 s, uploads that take a while: the token is
    refreshed before it expires (no 401), every batch is delivered."""
    with FakeNetskope() as fake, FakeGCS() as gcs, workspace(gcs, extra=SMALL_BATCHES) as ws:
        acme_on_gcs(fake, gcs, ws, 1500, seed=4)
        gcs.faults(token_ttl=2, upload_delay_ms=80)
        t0 = time.monotonic()
        rc, err = run_once(ws, workers=1)
        took = time.monotonic() - t0
        assert rc == 0, "run --once failed (%d):\n%s" % (rc, err[-3000:])
        objs = check_bucket(gcs, ws, "acme-secops", "netskope", "acme",
                            expected_lines(fake, "tok-acme"))
        st = gcs.stats()
        assert took > 2.0, "the run (%.1f s, %d objects) did not outlive a token" % (took, len(objs))
        assert st["tokens_issued"] >= 2, "token never refreshed in %.1f s: %s" % (took, st)
        assert st["uploads_401"] == 0, "an expired token was sent: %s" % st
        assert st["uploads_failed"] == 0 and st["uploads_ok"] == len(objs), st


def test_revoked_token_is_replaced():
    """The server forgets every token mid-run: the next upload gets 401,
    the token is dropped, a new one fetched, and the batch still lands."""
    with FakeNetskope() as fake, FakeGCS() as gcs, workspace(gcs, extra=SMALL_BATCHES) as ws:
        acme_on_gcs(fake, gcs, ws, 1500, seed=5)
        gcs.faults(upload_delay_ms=60)
        e = dict(CLEAN_ENV)
        proc = ws.spawn(["run", "--once", "--upload-workers", "1"], env=e)
        try:
            wait_until(lambda: gcs.stats()["uploads_ok"] >= 3 or proc.poll() is not None,
                       30, what="the first uploads")
            assert proc.poll() is None, "run ended before the revocation"
            gcs.revoke()
            rc = proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        with open(proc.stderr_path) as f:
            err = f.read()
        assert rc == 0, "run --once failed (%d):\n%s" % (rc, err[-3000:])
        check_bucket(gcs, ws, "acme-secops", "netskope", "acme", expected_lines(fake, "tok-acme"))
        st = gcs.stats()
        assert st["uploads_401"] >= 1, "no upload saw the revocation: %s" % st
        assert st["tokens_issued"] >= 2, st
        check_output(err)


def test_metadata_server_credentials():
    """No key file anywhere: the token comes from the metadata server
    ($GCE_METADATA_HOST), as on Cloud Run."""
    with FakeNetskope() as fake, FakeGCS() as gcs, workspace(gcs, extra=SMALL_BATCHES) as ws:
        email = "nscollect-run@nscollect-test.iam.gserviceaccount.com"
        gcs.set_config(metadata_email=email)
        gcs.bucket("acme-secops", allow_email=email)
        generate(fake, "tok-acme", "acme", 800, seed=6)
        add_tenant(ws, fake, "acme", "tok-acme", "gs://acme-secops/netskope")
        rc, err = run_once(ws, env={"GCE_METADATA_HOST": gcs.metadata_host})
        assert rc == 0, "run --once failed (%d):\n%s" % (rc, err[-3000:])
        check_bucket(gcs, ws, "acme-secops", "netskope", "acme", expected_lines(fake, "tok-acme"))
        st = gcs.stats()
        assert st["metadata_tokens_issued"] >= 1, st
        assert st["tokens_issued"] == st["metadata_tokens_issued"], st
        assert st["metadata_rejected"] == 0 and st["uploads_403"] == 0, st


def test_emulator_sends_no_credentials():
    """$STORAGE_EMULATOR_HOST wins over gcs.endpoint and the tenant's key
    file: requests go to the emulator with no Authorization header (any
    header would be an unknown token here, answered 401). Without a scheme,
    http:// is assumed."""
    with FakeNetskope() as fake, FakeGCS(no_auth=True) as gcs, \
            workspace(gcs, extra=SMALL_BATCHES) as ws:
        ws.write_config('gcs = { endpoint = "http://127.0.0.1:9"; };\n' + SMALL_BATCHES)
        unregistered = gcs.service_account(ws.dir, "nobody", register=False)
        gcs.bucket("acme-secops")
        generate(fake, "tok-acme", "acme", 600, seed=7)
        add_tenant(ws, fake, "acme", "tok-acme", "gs://acme-secops/netskope", unregistered)
        rc, err = run_once(ws, env={"STORAGE_EMULATOR_HOST": gcs.url})
        assert rc == 0, "run --once failed (%d):\n%s" % (rc, err[-3000:])
        check_bucket(gcs, ws, "acme-secops", "netskope", "acme", expected_lines(fake, "tok-acme"))
        # more alerts, and the host without its scheme
        now = int(time.time())
        fake.generate("tok-acme", 100, insertion_start=now - 60, insertion_end=now - 5, seed=8)
        rc, err = run_once(ws, env={"STORAGE_EMULATOR_HOST": "127.0.0.1:%d" % gcs.port})
        assert rc == 0, "second run failed (%d):\n%s" % (rc, err[-3000:])
        check_bucket(gcs, ws, "acme-secops", "netskope", "acme", expected_lines(fake, "tok-acme"))
        st = gcs.stats()
        assert st["token_requests"] == 0 and st["tokens_issued"] == 0, st
        assert st["uploads_401"] == 0, "an Authorization header reached the emulator: %s" % st


def test_sink_down_then_back():
    """Every upload fails 503: the pass exits 1, the batch waits in the
    outbox, the cursor has moved. The sink comes back: the next pass
    delivers everything once."""
    with FakeNetskope() as fake, FakeGCS() as gcs, workspace(gcs) as ws:
        acme_on_gcs(fake, gcs, ws, 1000, seed=9)
        gcs.faults(fail_uploads=10 ** 6, fail_status=503)
        rc, err = run_once(ws)
        assert rc == 1, "a pass that could not deliver must exit 1 (%d):\n%s" % (rc, err[-2000:])
        assert outbox_count(ws, "acme") >= 1, "the batch is not in the outbox"
        assert cursor_of(ws, "acme") is not None, "fetching stopped: no cursor"
        assert gcs.objects("acme-secops") == {}
        rows, _ = status(ws)
        assert rows["acme"]["pending_batches"] >= 1, rows
        assert "503" in (rows["acme"]["last_error"] or ""), rows["acme"]
        st = gcs.stats()
        assert st["upload_requests"] >= 2, "a once pass retries a 503 a few times: %s" % st

        gcs.faults(fail_uploads=0)
        rc, err = run_once(ws)
        assert rc == 0, "run after the outage failed (%d):\n%s" % (rc, err[-3000:])
        check_bucket(gcs, ws, "acme-secops", "netskope", "acme", expected_lines(fake, "tok-acme"))
        rows, _ = status(ws)
        assert rows["acme"]["pending_batches"] == 0 and not rows["acme"]["last_error"], rows
        assert gcs.stats()["overwrites"] == 0


def test_outbox_limit_pauses_fetching():
    """outbox.limit_bytes = 1 MiB and the sink down: after one pass fills the
    outbox past the limit, the next pass does not fetch (status says
    "paused"); when the sink is back a few passes deliver everything once."""
    extra = "outbox = { limit_bytes = 1048576; };\n"
    with FakeNetskope() as fake, FakeGCS() as gcs, workspace(gcs, extra=extra) as ws:
        acme_on_gcs(fake, gcs, ws, 3000, seed=10)        # ~3.6 MB
        gcs.faults(fail_uploads=10 ** 6, fail_status=503)
        rc, err = run_once(ws)
        assert rc == 1, (rc, err[-2000:])
        pending = db_query(ws.db, "SELECT coalesce(sum(bytes), 0) FROM outbox")[0][0]
        assert pending > 1048576, "outbox holds only %d bytes" % pending
        cursor = cursor_of(ws, "acme")
        assert cursor is not None
        requests = len(fake.served("tok-acme")["requests"])

        now = int(time.time())                          # more alerts arrive meanwhile
        fake.generate("tok-acme", 300, insertion_start=now - 60, insertion_end=now - 2, seed=11)
        rc, err = run_once(ws)
        assert rc == 1, (rc, err[-2000:])
        rows, src = status(ws)
        assert "paused" in (rows["acme"]["last_error"] or ""), rows["acme"]
        assert "limit_bytes" in rows["acme"]["last_error"], rows["acme"]
        assert src == 1, "a paused tenant counts as failing in `status`"
        rc_t, table, terr = ws.run_cli(["status"])
        check_output(table + terr)
        assert "paused" in table and rc_t == 1, (rc_t, table)
        assert len(fake.served("tok-acme")["requests"]) == requests, "fetched while paused"
        assert cursor_of(ws, "acme") == cursor, "cursor moved while paused"

        gcs.faults(fail_uploads=0)
        passes = []
        for _ in range(4):
            rc, err = run_once(ws)
            passes.append(rc)
            if rc == 0 and outbox_count(ws) == 0 and cursor_of(ws, "acme") > cursor:
                break
        assert passes[-1] == 0, "passes after the outage: %s\n%s" % (passes, err[-3000:])
        check_bucket(gcs, ws, "acme-secops", "netskope", "acme", expected_lines(fake, "tok-acme"))
        rows, src = status(ws)
        assert not rows["acme"]["last_error"] and src == 0, rows


def test_gzip_objects():
    """gcs.gzip = true: objects are *.ndjson.gz, plain objects (no
    transcoding) that decompress to exactly the records."""
    with FakeNetskope() as fake, FakeGCS() as gcs, \
            workspace(gcs, gzip_on=True, extra=SMALL_BATCHES) as ws:
        acme_on_gcs(fake, gcs, ws, 1500, seed=12)
        rc, err = run_once(ws)
        assert rc == 0, "run --once failed (%d):\n%s" % (rc, err[-3000:])
        objs = check_bucket(gcs, ws, "acme-secops", "netskope", "acme",
                            expected_lines(fake, "tok-acme"), gz=True)
        raw = sum(r[0] for r in db_query(ws.db, "SELECT bytes FROM delivered"))
        packed = sum(len(d) for d in objs.values())
        assert packed < raw / 2, "gzip saved little: %d -> %d bytes" % (raw, packed)
        for o in gcs.object_list("acme-secops"):
            assert o["content_type"] == "application/x-ndjson", o


def test_spooled_batches_to_gcs():
    """outbox.spool_min_bytes = 0: batches kept in spool files are mapped
    and uploaded (plain and gzipped) byte-exact, through a 503 and a lost
    reply, and the spool is empty afterwards."""
    spool = SMALL_BATCHES + "outbox = { spool_min_bytes = 0; };\n"
    for gz in (False, True):
        with FakeNetskope() as fake, FakeGCS() as gcs, \
                workspace(gcs, gzip_on=gz, extra=spool) as ws:
            acme_on_gcs(fake, gcs, ws, 1200, seed=13)
            gcs.faults(fail_uploads=1, fail_status=503, lost_replies=1)
            rc, err = run_once(ws)
            assert rc == 0, "run --once failed (%d):\n%s" % (rc, err[-3000:])
            check_bucket(gcs, ws, "acme-secops", "netskope", "acme",
                         expected_lines(fake, "tok-acme"), gz=gz)
            assert db_query(ws.db, "SELECT count(*) FROM delivered")[0][0] >= 2
            assert os.listdir(ws.db + ".spool") == [], os.listdir(ws.db + ".spool")


def test_permission_and_missing_bucket_errors():
    """403 (bucket restricted to another account), 404 (no such bucket) and
    a key the token endpoint refuses: the batches stay in the outbox, the
    status names the bucket or key and what is missing; once fixed, the
    next pass delivers them once."""
    with FakeNetskope() as fake, FakeGCS() as gcs, workspace(gcs) as ws:
        acme_key = gcs.service_account(ws.dir, "acme-writer")
        other = gcs.service_account(ws.dir, "someone-else")
        stray = gcs.service_account(ws.dir, "deleted-account", register=False)
        gcs.bucket("acme-secops", allow_email=other.email)
        gcs.bucket("initech-secops")
        for name, seed in (("acme", 13), ("globex", 14), ("initech", 15)):
            generate(fake, "tok-" + name, name, 300, seed=seed)
        add_tenant(ws, fake, "acme", "tok-acme", "gs://acme-secops/netskope", acme_key)
        add_tenant(ws, fake, "globex", "tok-globex", "gs://globex-missing/netskope", acme_key)
        add_tenant(ws, fake, "initech", "tok-initech", "gs://initech-secops/netskope", stray)
        rc, err = run_once(ws)
        assert rc == 1, (rc, err[-2000:])
        for name in ("acme", "globex", "initech"):
            assert outbox_count(ws, name) >= 1, "%s: batch not kept" % name
        rows, src = status(ws)
        assert src == 1 and all(rows[n]["state"] == "failing" for n in rows), \
            "undeliverable batches make a tenant failing: %s" % rows
        e = rows["acme"]["last_error"] or ""
        assert "storage.objects.create" in e and "acme-secops" in e and "403" in e, e
        assert acme_key.email in e, "the error should name the account: %s" % e
        e = rows["globex"]["last_error"] or ""
        assert "not found" in e and "globex-missing" in e, e
        e = rows["initech"]["last_error"] or ""
        assert "token" in e and stray.path in e and "invalid_grant" in e, e
        rc_t, table, terr = ws.run_cli(["status"])
        check_output(table + terr)
        assert rc_t == 1, "status is a health check: exit 1 while batches fail"
        assert "storage.objects.create" in table and "not found" in table, table
        st = gcs.stats()
        assert st["uploads_403"] == 1 and st["uploads_404"] == 1, \
            "permanent errors are not retried within a pass: %s" % st

        gcs.bucket("acme-secops", allow_email=acme_key.email)     # the operator's fixes
        gcs.bucket("globex-missing")
        gcs.account(stray.email, open_public_key(stray), stray.key_id)
        rc, err = run_once(ws)
        assert rc == 0, "run after the fixes failed (%d):\n%s" % (rc, err[-3000:])
        check_bucket(gcs, ws, "acme-secops", "netskope", "acme", expected_lines(fake, "tok-acme"))
        check_bucket(gcs, ws, "globex-missing", "netskope", "globex",
                     expected_lines(fake, "tok-globex"))
        check_bucket(gcs, ws, "initech-secops", "netskope", "initech",
                     expected_lines(fake, "tok-initech"))


def test_bucket_naming_rules_at_add_and_set():
    """tenant add and tenant set refuse a gs:// bucket that breaks GCS's
    naming rules: exit 2, the rule named, nothing written or changed."""
    cases = (("gs://goog-alerts/p", 'it may not begin with "goog"'),
             ("gs://acme-g00gle", 'it may not contain "google" or a close misspelling'),
             ("gs://192.168.5.4/x", "it may not be an IP address"),
             ("gs://a..b/x", "it may not hold two dots in a row"),
             ("gs://" + "a" * 64, "it must be 3-63 characters long"),
             ("gs://Acme", "it may hold only lowercase letters"))
    with Workspace() as ws:
        rc, out, err = ws.run_cli(["init"])
        assert rc == 0, (rc, out, err)
        rc, out, err = ws.run_cli(["tenant", "add", "acme", "--url", "https://a.goskope.com",
                                   "--sink", "gs://acme-secops/nsk"], stdin="tok")
        assert rc == 0, (rc, out, err)
        for url, rule in cases:
            rc, out, err = ws.run_cli(["tenant", "add", "web", "--url", "https://a.goskope.com",
                                       "--sink", url], stdin="tok")
            assert rc == 2 and rule in err and "GCS bucket naming rules" in err, (url, rc, err)
            rc, out, err = ws.run_cli(["tenant", "set", "acme", "--sink", url])
            assert rc == 2 and rule in err, ("set", url, rc, err)
        rc, out, err = ws.run_cli(["tenant", "list"])
        assert "web" not in out, out
        assert ws.query("SELECT sink FROM tenant WHERE name = 'acme'") == "gs://acme-secops/nsk"


def open_public_key(account):
    """The public key of an account's key file (for registering it late)."""
    with open(account.path) as f:
        pem = json.load(f)["private_key"]
    return subprocess.run(["openssl", "pkey", "-pubout"], input=pem.encode(), check=True,
                          stdout=subprocess.PIPE).stdout.decode()


TESTS = [v for k, v in sorted(globals().items()) if k.startswith("test_") and callable(v)]


if __name__ == "__main__":
    only = sys.argv[1:]
    failed = 0
    for test in TESTS:
        if only and test.__name__ not in only:
            continue
        t0 = time.monotonic()
        try:
            test()
            print("ok   %s (%.1f s)" % (test.__name__, time.monotonic() - t0))
        except Exception as e:          # report every failure, then exit 1
            failed += 1
            print("FAIL %s (%.1f s): %s" % (test.__name__, time.monotonic() - t0, e))
        sys.stdout.flush()
    sys.exit(1 if failed else 0)
