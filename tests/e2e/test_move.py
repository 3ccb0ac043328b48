#!/usr/bin/env python3
"""test_move.py - `tenant export` / `tenant import` (issue 20 part 1): a
tenant moves from one database to another with its cursor, dedupe keys,
settings, token and undelivered batches, exactly once, while the fake
Netskope keeps adding alerts and answers with faults.

    NSCOLLECT_BIN=./nscollect python3 tests/e2e/test_move.py [NAME...]
"""

import os
import sys
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import FakeNetskope, Workspace, minify, ndjson_lines, run_tests, wait_until  # noqa: E402
from test_cli import old_database  # noqa: E402
from test_spine import cursor, token  # noqa: E402

PASS = {"NSCOLLECT_PASSPHRASE": "correct horse battery staple"}
FAULTS = [{"kind": "status", "code": 500}, {"kind": "truncated"},
          {"kind": "status", "code": 429, "retry_after": 1}]


def run_until_clean(ws, tries=8):
    """run --once until a pass ends 0 (faults make some passes fail)."""
    for _ in range(tries):
        rc, _, err = ws.run_cli(["run", "--once"])
        if rc == 0:
            return
        assert rc == 1, err[-2000:]
    raise AssertionError("run --once never ended clean:\n" + err[-2000:])


def served_count(fake):
    return len(fake.served(token("acme"))["requests"])


def test_move_exactly_once_with_faults_and_new_alerts():
    with FakeNetskope() as fake, Workspace() as a, Workspace() as b:
        sink = os.path.join(a.dir, "sink")
        os.makedirs(sink)
        with open(os.path.join(sink, "acme"), "w"):        # blocks delivery: batches wait
            pass
        now = int(time.time())
        fake.add_tenant(token("acme"), "acme")
        fake.generate(token("acme"), 400, insertion_start=now - 3000, insertion_end=now - 1,
                      seed=1)
        for ws in (a, b):
            assert ws.run_cli(["init"])[0] == 0
        rc, _, err = a.run_cli(["tenant", "add", "acme", "--url", fake.url, "--lookback", 3600,
                                "--page-size", 50, "--sink", "file://" + sink],
                               stdin=token("acme"))
        assert rc == 0, err
        fake.faults(token("acme"), FAULTS)
        for _ in range(4):                                  # fetched, committed, not delivered
            a.run_cli(["run", "--once"])
        assert a.query("SELECT count(*) FROM outbox") > 0
        c = cursor(a, "acme")
        assert c is not None
        wait_until(lambda: int(time.time()) > c + 1, what="clock past the cursor")
        # new alerts, some inside the overlap the next run re-reads
        fake.generate(token("acme"), 150, insertion_start=c - 60, insertion_end=int(time.time()),
                      seed=2)
        out = os.path.join(a.dir, "acme.move")
        rc, msg, err = a.run_cli(["tenant", "export", "acme", "--out", out], env=PASS)
        assert rc == 0, err
        assert PASS["NSCOLLECT_PASSPHRASE"] not in msg + err
        with open(out, "rb") as f:
            raw = f.read()
        assert token("acme").encode() not in raw and b"acme" not in raw[48:]
        assert a.query("SELECT state FROM tenant_status WHERE name = 'acme'") == "moved"
        pending_a = a.query("SELECT count(*) FROM outbox")

        # the source neither fetches nor delivers the moved tenant
        os.unlink(os.path.join(sink, "acme"))
        before = served_count(fake)
        rc, _, err = a.run_cli(["run", "--once"])
        assert rc == 0, err
        assert served_count(fake) == before
        assert a.query("SELECT count(*) FROM outbox") == pending_a
        assert not os.path.exists(os.path.join(sink, "acme"))
        assert a.run_cli(["tenant", "enable", "acme"])[0] == 2

        # wrong passphrase, truncated file: exit 2, nothing written
        rc, _, err = b.run_cli(["tenant", "import", out], env={"NSCOLLECT_PASSPHRASE": "nope"})
        assert rc == 2 and "wrong passphrase" in err, err
        cut = out + ".cut"
        with open(cut, "wb") as f:
            f.write(raw[:-100])
        rc, _, err = b.run_cli(["tenant", "import", cut], env=PASS)
        assert rc == 2 and "truncated" in err, err
        assert b.query("SELECT count(*) FROM tenant") == 0

        rc, _, err = b.run_cli(["tenant", "import", out], env=PASS)
        assert rc == 0, err
        assert b.query("SELECT count(*) FROM outbox") == pending_a
        rc, _, err = b.run_cli(["tenant", "import", out], env=PASS)
        assert rc == 2 and "already imported" in err, err
        assert b.query("SELECT count(*) FROM tenant") == 1

        fake.faults(token("acme"), FAULTS)
        run_until_clean(b)
        wait_until(lambda: int(time.time()) > cursor(b, "acme") + 1, what="clock past cursor")
        fake.generate(token("acme"), 100, insertion_start=cursor(b, "acme") - 30,
                      insertion_end=int(time.time()), seed=3)
        run_until_clean(b)

        got = Counter(ndjson_lines(sink))
        want = Counter(minify(r) for r in fake.alerts(token("acme")))
        assert len(want) == 650
        assert got == want, "missing %d, doubled %d, foreign %d" % (
            len(want - got), sum(n - 1 for n in got.values() if n > 1), len(got - want))
        assert b.query("SELECT count(*) FROM outbox") == 0
        assert b.query("SELECT state FROM tenant_status WHERE name = 'acme'") == "ok"


def test_bad_input_and_name_taken():
    with FakeNetskope() as fake, Workspace() as a, Workspace() as b:
        for ws in (a, b):
            assert ws.run_cli(["init"])[0] == 0
            rc, _, err = ws.run_cli(["tenant", "add", "acme", "--url", fake.url],
                                    stdin=token("acme"))
            assert rc == 0, err
        out = os.path.join(a.dir, "x.move")
        rc, _, err = a.run_cli(["tenant", "export", "acme", "--out", out])
        assert rc == 2 and "passphrase" in err, err
        assert a.query("SELECT moved_at FROM tenant") is None
        rc, _, err = a.run_cli(["tenant", "export", "nobody", "--out", out], env=PASS)
        assert rc == 2 and not os.path.exists(out)
        rc, _, err = a.run_cli(["tenant", "export", "acme", "--out", out], env=PASS)
        assert rc == 0, err
        rc, _, err = a.run_cli(["tenant", "export", "acme", "--out", out + "2"], env=PASS)
        assert rc == 2 and "already exported" in err, err
        rc, _, err = b.run_cli(["tenant", "import", out], env=PASS)
        assert rc == 2 and "already exists" in err, err
        assert b.query("SELECT count(*) FROM imported") == 0
        with open(os.path.join(b.dir, "junk"), "wb") as f:
            f.write(b"not an export at all, just bytes" * 4)
        rc, _, err = b.run_cli(["tenant", "import", os.path.join(b.dir, "junk")], env=PASS)
        assert rc == 2 and "not a nscollect export" in err, err


def test_iterator_position_and_settings_move():
    with FakeNetskope() as fake, Workspace() as a, Workspace() as b:
        for ws in (a, b):
            assert ws.run_cli(["init"])[0] == 0
        rc, _, err = a.run_cli(["tenant", "add", "acme", "--url", fake.url, "--streams",
                                "alert,page", "--interval", 77], stdin=token("acme"))
        assert rc == 0, err
        con = __import__("sqlite3").connect(a.db)
        con.execute("INSERT INTO iterator (stream_id, index_name, start_epoch, state, pages, "
                    "updated_at) SELECT id, 'idx-acme-page', 1700000000, 'pending', 9, 5 "
                    "FROM stream WHERE name = 'page'")
        con.commit()
        con.close()
        out = os.path.join(a.dir, "x.move")
        assert a.run_cli(["tenant", "export", "acme", "--out", out], env=PASS)[0] == 0
        rc, _, err = b.run_cli(["tenant", "import", out], env=PASS)
        assert rc == 0, err
        assert b.query_rows("SELECT s.name, i.index_name, i.start_epoch, i.state, i.pages FROM "
                            "iterator i JOIN stream s ON s.id = i.stream_id") == \
            [("page", "idx-acme-page", 1700000000, "pending", 9)]
        assert b.query("SELECT interval_s FROM tenant WHERE name = 'acme'") == 77
        assert b.query("SELECT group_concat(name) FROM (SELECT name FROM stream ORDER BY name)") \
            == "alert,page"
        rc, out_, err = b.run_cli(["tenant", "show", "acme"])
        assert rc == 0 and token("acme") not in out_ + err


def test_upgrade_to_moved_keeps_everything():
    """Migration 011 (moved state) upgrades a database the previous release
    made: tenant, stream, cursor, keys and batch kept; no tenant moved."""
    with Workspace() as ws:
        con = old_database(ws.db, 10, ["old"])
        con.execute("INSERT INTO stream (id, tenant_id, name, created_at) VALUES (1, 1, 'alert', 0)")
        con.execute("INSERT INTO cursor VALUES (1, 1700000000, 1)")
        con.execute("INSERT INTO seen (stream_id, at, key, stored_at) VALUES (1, 5, x'01', 5)")
        con.execute("INSERT INTO outbox (tenant_id, stream_id, object_name, created_at, records, "
                    "bytes, body) VALUES (1, 1, 'old/alerts_x.ndjson', 1, 1, 3, x'7b7d0a')")
        con.commit()
        con.close()
        rc, _, err = ws.run_cli(["init"])
        assert rc == 0, err
        assert ws.query("SELECT count(*) FROM tenant WHERE moved_at IS NULL") == 1
        assert ws.query_rows("SELECT position FROM cursor") == [(1700000000,)]
        assert ws.query("SELECT count(*) FROM seen") == 1
        assert ws.query("SELECT hex(body) FROM outbox") == "7B7D0A"
        assert ws.query("SELECT state FROM tenant_status") == "lagging"
        assert ws.query("SELECT pending_batches FROM stream_status") == 1
        assert ws.query("SELECT count(*) FROM imported") == 0


if __name__ == "__main__":
    run_tests(globals())
