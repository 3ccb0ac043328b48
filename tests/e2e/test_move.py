#!/usr/bin/env python3
"""test_move.py - `tenant export` / `tenant import` (issue 20 part 1): a
tenant moves from one database to another with its cursor, dedupe keys,
settings, token and undelivered batches, exactly once, while the fake
Netskope keeps adding alerts and answers with faults.

    NSCOLLECT_BIN=./nscollect python3 tests/e2e/test_move.py [NAME...]
"""

import os
import re
import sqlite3
import subprocess
import sys
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import FakeNetskope, Workspace, minify, ndjson_lines, run_tests, wait_until  # noqa: E402
from test_cli import old_database  # noqa: E402
from harness import cli_env  # noqa: E402
from test_spine import (SPOOL_ALL, cursor, spooled_batches_waiting, token,  # noqa: E402
                        traced_syscalls)

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


def traced_cli(ws, args, env):
    """nscollect ARGS under strace -f -y (WAL writes, syncs, renames), while
    another connection holds the database open as a running daemon would
    (the last connection to close checkpoints, syncing what it finds);
    it must succeed."""
    trace = os.path.join(ws.dir, "cli.strace")
    asan = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"), "detect_leaks=0"]))
    daemon = sqlite3.connect(ws.db)
    try:
        daemon.execute("SELECT count(*) FROM tenant").fetchall()
        p = subprocess.run(["strace", "-f", "-y", "-o", trace, "-e",
                            "trace=pwrite64,fsync,fdatasync,rename,renameat,renameat2,"
                            "unlink,unlinkat"] +
                           ws.argv(args), cwd=ws.dir, env=cli_env(dict(env, ASAN_OPTIONS=asan)),
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=120)
    finally:
        daemon.close()
    assert p.returncode == 0, p.stderr.decode()[-2000:]
    return traced_syscalls(trace)


def synced_after_last_write(calls, db, before):
    """Whether the WAL's last write before line `before` is followed, still
    before it, by a sync of the WAL (a commit's frames on disk)."""
    wal = re.compile(r"\d+<%s-wal>" % re.escape(db))
    writes = [end for end, _, name, args, _ in calls
              if name == "pwrite64" and wal.match(args) and end < before]
    syncs = [(began, end) for end, began, name, args, _ in calls
             if name in ("fsync", "fdatasync") and wal.match(args)]
    return bool(writes) and any(b > writes[-1] and e < before for b, e in syncs)


def test_export_and_import_are_on_disk_when_they_return():
    """The commit that marks a tenant moved is synced before the export
    file gets its name, and an import's commit before the command returns:
    a running daemon acts on an import at once (its db_sync() knows only
    its own commits), and a power loss after an export's rename must not
    leave the tenant collecting here as well. The CLI's commits are
    synchronous=FULL; with NORMAL neither command synced its commit."""
    with FakeNetskope() as fake, Workspace() as a, Workspace() as b:
        for ws in (a, b):
            assert ws.run_cli(["init"])[0] == 0
        rc, _, err = a.run_cli(["tenant", "add", "acme", "--url", fake.url], stdin=token("acme"))
        assert rc == 0, err
        out = os.path.join(a.dir, "acme.move")
        calls = traced_cli(a, ["tenant", "export", "acme", "--out", out], PASS)
        named = [end for end, _, name, args, ret in calls
                 if name.startswith("rename") and "acme.move" in args and ret == "0"]
        assert len(named) == 1, calls
        assert synced_after_last_write(calls, a.db, named[0]), \
            "the export file was named before the commit marking acme moved was synced"
        calls = traced_cli(b, ["tenant", "import", out], PASS)
        assert synced_after_last_write(calls, b.db, len(calls) + 10**9), \
            "the import's commit was not synced before the command returned"
        assert b.query("SELECT count(*) FROM tenant WHERE name = 'acme'") == 1


def test_a_removed_tenants_spool_files_go_once_its_removal_is_on_disk():
    """`tenant remove --force` of a tenant whose batches wait, spooled:
    their files are removed, and only after the WAL is synced following
    the removal's commit (a power loss must not bring back rows whose
    files are gone)."""
    with FakeNetskope() as fake, Workspace(config_extra=SPOOL_ALL) as ws:
        spooled_batches_waiting(fake, ws, seed=73)
        spool = ws.db + ".spool"
        files = sorted(f for f in os.listdir(spool) if f.endswith(".ndjson"))
        assert files, "no spooled batch waits"
        calls = traced_cli(ws, ["tenant", "remove", "acme", "--force"], {})
        assert not [f for f in os.listdir(spool) if f.endswith(".ndjson")], os.listdir(spool)
        unlinks = [end for end, _, name, args, ret in calls
                   if name.startswith("unlink") and ".ndjson" in args and ret == "0"]
        assert len(unlinks) == len(files), (unlinks, files)
        assert synced_after_last_write(calls, ws.db, unlinks[0]), \
            "a spool file was removed before the tenant's removal was synced"


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
