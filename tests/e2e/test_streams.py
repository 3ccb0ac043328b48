#!/usr/bin/env python3
"""test_streams.py - a tenant's streams (issue 15): alert and Netskope's
event types, each with its own cursor, keys, schedule and objects.

- the upgrade from the previous release (a database that release's own
  binary, built here from git, made and used): every tenant keeps its
  alert cursor and dedupe keys, its undelivered batch is delivered once,
  no alert is re-sent or skipped, and its objects keep their names;
- `tenant add/set --streams`: bad names exit 2 with the valid list and
  nothing written; removing a stream with undelivered batches is refused
  with the count unless --force;
- several tenants with several streams each, overlapping windows and
  faults on some streams: every record exactly once, byte for byte, in
  its own tenant's own stream's objects;
- status per stream: stream_status, `status --json`, `tenant show`, and
  tenant_status as healthy as the worst stream.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (REPO, FakeNetskope, Workspace, cli_env, minify,  # noqa: E402
                     ndjson_files, run_tests, wait_until)

PREVIOUS_RELEASE = "c2044c8"      # schema version 5, alerts only
EVENT_TYPES = ["page", "application", "network", "audit", "infrastructure", "incident",
               "endpoint"]


def expect(ws, args, rc, *words, stdin=None):
    got, out, err = ws.run_cli(args, stdin=stdin)
    assert got == rc, "%s: exit %d, want %d\nstdout: %s\nstderr: %s" % (
        " ".join(map(str, args)), got, rc, out, err)
    for w in words:
        assert w in out + err, "%s: %r not in output:\n%s%s" % (" ".join(map(str, args)), w,
                                                                 out, err)
    return out, err


_previous = []


def previous_binary():
    """nscollect as the previous release built it (git archive + make, once)."""
    if _previous:
        return _previous[0]
    d = tempfile.mkdtemp(prefix="nsc-prev-")
    archive = subprocess.run(["git", "-C", REPO, "archive", PREVIOUS_RELEASE],
                             stdout=subprocess.PIPE, check=True).stdout
    subprocess.run(["tar", "x", "-C", d], input=archive, check=True)
    subprocess.run(["make", "-s", "-j2", "B=build", "nscollect"], cwd=d, check=True,
                   stdout=subprocess.DEVNULL)
    _previous.append(os.path.join(d, "nscollect"))
    return _previous[0]


def files_of(ws):
    """{relative path: [lines]} of every object the file sink holds."""
    return ndjson_files(ws.out)


def lines_under(files, prefix_re):
    pat = re.compile(prefix_re)
    return [line for path, lines in files.items() if pat.match(path) for line in lines]


def once_each(got, want, what):
    assert len(got) == len(set(got)), "%s: %d duplicated" % (what, len(got) - len(set(got)))
    missing = set(want) - set(got)
    extra = set(got) - set(want)
    assert not missing and not extra, "%s: %d missing, %d not expected (of %d)" % (
        what, len(missing), len(extra), len(want))


def test_upgrade_from_the_previous_release():
    """A database made and used by the previous release (schema 5): after
    the upgrade each tenant has one alert stream with its cursor and keys;
    the overlap re-read sends nothing again, late alerts inside it and new
    ones after it are sent once, a batch left undelivered is delivered once
    under its old name, and alert objects keep today's names."""
    prev = previous_binary()
    now = int(time.time())
    with FakeNetskope() as fake, Workspace() as ws:
        for n in ("acme", "globex"):
            fake.add_tenant("tok-" + n, n)
            fake.generate("tok-" + n, 300, insertion_start=now - 3000, insertion_end=now - 1,
                          seed=len(n))
        old = lambda args, stdin=None: subprocess.run(  # noqa: E731
            [prev] + ws.argv(args)[1:], input=stdin, capture_output=True, text=True,
            env=cli_env(None), cwd=ws.dir)
        assert old(["init"]).returncode == 0
        for n in ("acme", "globex"):
            r = old(["tenant", "add", n, "--url", fake.url, "--lookback", "3600",
                     "--page-size", "100"], stdin="tok-" + n)
            assert r.returncode == 0, r.stderr
        # globex's sink fails in the old run: its batch stays in the outbox
        blocker = os.path.join(ws.dir, "blocker")
        open(blocker, "w").close()
        assert old(["tenant", "set", "globex", "--sink", "file://" + blocker + "/x"]).returncode == 0
        r = old(["run", "--once"])
        assert r.returncode == 1, r.stderr
        assert ws.query("PRAGMA user_version") == 5
        pending = ws.query("SELECT count(*) FROM outbox o JOIN tenant t ON t.id = o.tenant_id "
                           "WHERE t.name = 'globex'")
        assert pending >= 1, pending
        old_names = sorted(r[0] for r in ws.query_rows("SELECT object_name FROM outbox"))
        cursors = dict(ws.query_rows("SELECT t.name, c.position FROM cursor c JOIN tenant t "
                                     "ON t.id = c.tenant_id"))
        keys = dict(ws.query_rows("SELECT t.name, count(*) FROM seen s JOIN tenant t "
                                  "ON t.id = s.tenant_id GROUP BY t.name"))
        assert keys["acme"] == 300 and keys["globex"] == 300, keys

        # after the old run: late alerts inside the overlap, new ones after the cursor
        for n in ("acme", "globex"):
            c = cursors[n]
            fake.generate("tok-" + n, 40, insertion_start=c - 60, insertion_end=c, seed=100)
            fake.generate("tok-" + n, 40, insertion_start=c, insertion_end=c + 2, seed=101)
        os.unlink(blocker)
        os.mkdir(blocker)
        expect(ws, ["init"], 0, "schema version")
        assert ws.query("SELECT count(*) FROM stream") == 2
        assert dict(ws.query_rows("SELECT t.name, c.position FROM cursor c JOIN stream s ON "
                                  "s.id = c.stream_id JOIN tenant t ON t.id = s.tenant_id "
                                  "WHERE s.name = 'alert'")) == cursors
        assert dict(ws.query_rows("SELECT t.name, count(*) FROM seen k JOIN stream s ON "
                                  "s.id = k.stream_id JOIN tenant t ON t.id = s.tenant_id "
                                  "GROUP BY t.name")) == keys
        assert ws.query("SELECT count(*) FROM outbox WHERE stream_id IS NULL") == 0
        out, _ = expect(ws, ["tenant", "show", "acme"], 0, "streams:       alert")

        # the new binary's pass: after each tenant's cursor plus the overlap
        # the window must reach past the newest insertion time (cursor + 1)
        wait_until(lambda: time.time() >= max(cursors.values()) + 3, timeout=10,
                   what="the clock to pass the newest alert")
        rc, out, err = ws.run_cli(["run", "--once"])
        assert rc == 0, err
        files = files_of(ws)
        for n, root in (("acme", ""), ("globex", "")):
            want = [minify(r) for r in fake.alerts("tok-" + n)]
            if n == "acme":
                got = lines_under(files, r"^acme/alerts_\d{8}_\d{6}_(?:[0-9a-f]{12}_)?\d+\.ndjson$")
            else:
                got = [line for path, lines in ndjson_files(blocker).items() for line in lines]
            once_each(got, want, n)
        delivered = sorted(r[0] for r in ws.query_rows("SELECT object_name FROM delivered"))
        assert set(old_names) <= set(delivered), (old_names, delivered)
        assert all(re.match(r"^(acme|globex)/alerts_\d{8}_\d{6}_(?:[0-9a-f]{12}_)?\d+\.ndjson$", n)
                   for n in delivered), delivered


def add_tenant(ws, fake, name, streams, extra=()):
    fake.add_tenant("tok-" + name, name)
    args = ["tenant", "add", name, "--url", fake.url, "--lookback", "3600", "--page-size", "50"]
    if streams:
        args += ["--streams", streams]
    expect(ws, args + list(extra), 0, "added", stdin="tok-" + name)


def test_streams_option():
    """--streams: unknown, empty or repeated names exit 2 with the valid list
    and write nothing; the default is alert; set changes the set; a stream
    with undelivered batches is only removed with --force."""
    with FakeNetskope() as fake, Workspace() as ws:
        expect(ws, ["init"], 0)
        valid = "valid streams: alert,page,application,network,audit,infrastructure," \
                "incident,endpoint"
        for bad, why in (("alert,pages", "unknown stream 'pages'"),
                         ("", "empty stream name"), ("alert,,page", "empty stream name"),
                         ("page,page", "stream named twice 'page'"),
                         ("Alert", "unknown stream 'Alert'")):
            fake.add_tenant("tok-bad", "bad")
            expect(ws, ["tenant", "add", "bad", "--url", fake.url, "--streams", bad], 2, why,
                   valid, stdin="tok-bad")
        assert ws.query("SELECT count(*) FROM tenant") == 0
        assert ws.query("SELECT count(*) FROM stream") == 0
        add_tenant(ws, fake, "plain", None)
        add_tenant(ws, fake, "multi", "page,alert,network")
        assert ws.query_rows("SELECT s.name FROM stream s JOIN tenant t ON t.id = s.tenant_id "
                             "WHERE t.name = 'plain'") == [("alert",)]
        out, _ = expect(ws, ["tenant", "show", "multi"], 0, "streams:       alert,page,network")
        doc = json.loads(expect(ws, ["tenant", "show", "multi", "--json"], 0)[0])
        assert [s["stream"] for s in doc["streams"]] == ["page", "alert", "network"] or \
            sorted(s["stream"] for s in doc["streams"]) == ["alert", "network", "page"], doc
        expect(ws, ["tenant", "set", "multi", "--streams", "alert,dns"], 2, "unknown stream 'dns'",
               valid)
        expect(ws, ["tenant", "enable", "multi", "--streams", "page"], 2, "does not take --streams")
        assert ws.query("SELECT count(*) FROM stream") == 4

        # an undelivered batch of the page stream: refused without --force
        now = int(time.time())
        fake.generate("tok-multi", 30, insertion_start=now - 600, insertion_end=now - 10,
                      type="page")
        blocker = os.path.join(ws.dir, "blocker")
        open(blocker, "w").close()
        expect(ws, ["tenant", "set", "multi", "--sink", "file://" + blocker + "/x"], 0)
        rc, _, err = ws.run_cli(["run", "--once"])
        assert rc == 1, err
        pending = ws.query("SELECT count(*) FROM outbox o JOIN stream s ON s.id = o.stream_id "
                           "WHERE s.name = 'page'")
        assert pending >= 1
        expect(ws, ["tenant", "set", "multi", "--streams", "alert", "--interval", "77"], 2,
               "stream 'page' still has %d undelivered batch" % pending, "--force")
        assert ws.query("SELECT interval_s FROM tenant WHERE name = 'multi'") == 300, \
            "a refused set changed nothing"
        assert ws.query("SELECT count(*) FROM stream s JOIN tenant t ON t.id = s.tenant_id "
                        "WHERE t.name = 'multi'") == 3
        expect(ws, ["tenant", "set", "multi", "--streams", "alert", "--force"], 0, "updated")
        assert ws.query_rows("SELECT s.name FROM stream s JOIN tenant t ON t.id = s.tenant_id "
                             "WHERE t.name = 'multi' ORDER BY s.id") == [("alert",)]
        assert ws.query("SELECT count(*) FROM outbox o JOIN stream s ON s.id = o.stream_id "
                        "WHERE s.name = 'page'") == 0
        assert ws.query("SELECT count(*) FROM seen WHERE stream_id NOT IN "
                        "(SELECT id FROM stream)") == 0, "a removed stream's keys go with it"
        expect(ws, ["tenant", "remove", "multi", "--force"], 0)
        assert ws.query("SELECT count(*) FROM stream WHERE tenant_id NOT IN "
                        "(SELECT id FROM tenant)") == 0


LAYOUT = {
    "acme": ["alert", "page", "network"],
    "globex": ["page", "audit", "application", "infrastructure"],
    "initech": ["alert", "incident", "endpoint", "page"],
}
FAULTS = {   # (tenant, stream): faults its first pass meets
    ("acme", "page"): [{"kind": "status", "code": 500}, {"kind": "truncated", "after": 1}],
    ("globex", "audit"): [{"kind": "status", "code": 429, "retry_after": 1}],
    ("initech", "incident"): [{"kind": "malformed"}] * 8,
    ("initech", "page"): [{"kind": "wait_time", "seconds": 1, "after": 2}],
}


def check_objects(ws, fake):
    """Every tenant's every stream: its objects hold exactly its records,
    once, byte for byte, under <tenant>/<stream>/ (alert: <tenant>/alerts_*)."""
    files = files_of(ws)
    named = set()
    for tenant, streams in LAYOUT.items():
        for s in streams:
            pat = (r"^%s/alerts_\d{8}_\d{6}_[0-9a-f]{12}_\d+\.ndjson$" % tenant if s == "alert" else
                   r"^%s/%s/%s_\d{8}_\d{6}_[0-9a-f]{12}_\d+\.ndjson$" % (tenant, s, s))
            named |= {p for p in files if re.match(pat, p)}
            got = lines_under(files, pat)
            want = [minify(r) for r in fake.alerts("tok-" + tenant, type=s)]
            assert want, (tenant, s)
            once_each(got, want, "%s/%s" % (tenant, s))
    assert named == set(files), "objects outside the layout: %s" % sorted(set(files) - named)


def test_several_tenants_several_streams():
    """Three tenants, eleven streams, faults on some: a first pass (the
    failing stream does not hold the others back), new and late records
    inside the overlap, a second pass: every record exactly once in its own
    tenant's own stream, and a stream's failure shows as the tenant's."""
    now = int(time.time())
    with FakeNetskope() as fake, Workspace() as ws:
        expect(ws, ["init"], 0)
        for i, (tenant, streams) in enumerate(LAYOUT.items()):
            add_tenant(ws, fake, tenant, ",".join(streams), ["--overlap", "300"])
            for j, s in enumerate(streams):
                fake.generate("tok-" + tenant, 120 + 37 * j, insertion_start=now - 1800,
                              insertion_end=now - 30, seed=10 * i + j, type=s)
        for (tenant, s), faults in FAULTS.items():
            fake.faults("tok-" + tenant, faults, type=s)
        rc, _, err = ws.run_cli(["run", "--once"])
        assert rc == 1, "initech/incident keeps failing: " + err
        st = {(r[0], r[1]): r[2:] for r in ws.query_rows(
            "SELECT tenant, stream, state, cursor, last_error FROM stream_status")}
        assert st[("initech", "incident")][0] == "failing", st
        assert "malformed" in st[("initech", "incident")][2], st
        assert st[("initech", "incident")][1] is None, "a failing stream's cursor never moves"
        assert all(v[0] == "ok" for k, v in st.items() if k != ("initech", "incident")), st
        ts = dict(ws.query_rows("SELECT name, state FROM tenant_status"))
        assert ts == {"acme": "ok", "globex": "ok", "initech": "failing"}, ts
        doc = {t["name"]: t for t in json.loads(expect(ws, ["status", "--json"], 1)[0])}
        assert {s["stream"]: s["state"] for s in doc["initech"]["streams"]}["incident"] == "failing"
        assert "malformed" in doc["initech"]["last_error"], doc["initech"]
        assert len(doc["globex"]["streams"]) == 4

        # more records: late ones inside the overlap, new ones after the cursors
        later = int(time.time())
        for i, (tenant, streams) in enumerate(LAYOUT.items()):
            for j, s in enumerate(streams):
                fake.generate("tok-" + tenant, 25, insertion_start=later - 200,
                              insertion_end=later - 1, seed=500 + 10 * i + j, type=s)
        fake.reset("tok-initech", type="incident")            # its faults are over
        rc, _, err = ws.run_cli(["run", "--once"])
        assert rc == 0, err
        check_objects(ws, fake)
        assert dict(ws.query_rows("SELECT name, state FROM tenant_status")) == \
            {"acme": "ok", "globex": "ok", "initech": "ok"}
        out, _ = expect(ws, ["status"], 0)
        assert re.search(r"(?m)^initech .*\n(  stream .*\n)*  stream incident +ok ", out), out
        assert ws.query("SELECT count(DISTINCT stream) FROM recent_runs") == 8


def test_fake_types_differ():
    """The fake's event types each have their own fields (a test of the
    fake: the end-to-end tests above rely on it)."""
    now = int(time.time())
    with FakeNetskope() as fake:
        fake.add_tenant("tok", "t")
        seen = {}
        for s in ["alert"] + EVENT_TYPES:
            fake.generate("tok", 3, insertion_start=now - 100, insertion_end=now, type=s)
            recs = [json.loads(r) for r in fake.alerts("tok", type=s)]
            assert len(recs) == 3, (s, len(recs))
            for r in recs:
                assert {"_id", "timestamp", "_insertion_epoch_timestamp"} <= set(r), (s, r)
            seen[s] = frozenset(recs[0])
        assert len(set(seen.values())) == len(seen), "every type has its own fields"
        assert fake.request("GET", "/api/v2/events/data/dns?limit=1",
                            headers={"Netskope-Api-Token": "tok"})[0] == 404


if __name__ == "__main__":
    run_tests(globals())
