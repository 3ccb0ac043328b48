#!/usr/bin/env python3
"""test_dedupe.py - the dedupe table is pruned by nscollect's own clock
(issue 17.6): keys of records without _insertion_epoch_timestamp (at = -1)
or with far-future times used to stay for ever; now a key goes once the
time it was stored is older than cursor - overlap - margin, and migration
006 gives the keys of an older database a stored time that prunes them no
earlier than before. A record met again with the _id of one stored before
but other bytes is counted (stream.conflicts), not dropped silently.

    NSCOLLECT_BIN=./nscollect python3 tests/e2e/test_dedupe.py [NAME...]
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import FakeNetskope, Workspace, run_tests, wait_until  # noqa: E402
from test_cli import expect, migrations, old_database  # noqa: E402
from test_spine import cursor, run_once, token  # noqa: E402

CFG = "fetch = { prune_margin = 0; };\n"


def test_keys_without_times_are_pruned_by_own_clock():
    with FakeNetskope() as fake, Workspace(config_extra=CFG) as ws:
        now = int(time.time())
        fake.add_tenant(token("acme"), "acme", mode={"unfiltered": True})
        assert ws.run_cli(["init"])[0] == 0
        rc, _, err = ws.run_cli(["tenant", "add", "acme", "--url", fake.url, "--lookback", 600,
                                 "--overlap", 0], stdin=token("acme"))
        assert rc == 0, err
        fake.add_raw(token("acme"), [{"_id": "none%d" % i, "n": i} for i in range(20)] +
                     [{"_id": "future%d" % i, "_insertion_epoch_timestamp": now + 10 ** 8,
                       "timestamp": now + 10 ** 8} for i in range(20)])
        run_once(ws)
        assert len(ws.lines()) == 40
        assert ws.query("SELECT count(*) FROM seen") == 40
        # the server stops sending them; the cursor moves on past when they were stored
        fake.add_tenant(token("acme"), "acme")
        stored = ws.query("SELECT max(stored_at) FROM seen")
        wait_until(lambda: int(time.time()) > stored, what="clock past the keys' stored time")
        run_once(ws)
        assert cursor(ws, "acme") > stored
        assert ws.query("SELECT count(*) FROM seen") == 0, \
            ws.query_rows("SELECT at, stored_at FROM seen LIMIT 5")
        assert len(ws.lines()) == 40


def test_keys_within_the_overlap_stay():
    with FakeNetskope() as fake, Workspace(config_extra=CFG) as ws:
        now = int(time.time())
        fake.add_tenant(token("acme"), "acme")
        assert ws.run_cli(["init"])[0] == 0
        rc, _, err = ws.run_cli(["tenant", "add", "acme", "--url", fake.url, "--lookback", 600],
                                stdin=token("acme"))
        assert rc == 0, err
        fake.generate(token("acme"), 30, insertion_start=now - 60, insertion_end=now - 1)
        run_once(ws)
        c = cursor(ws, "acme")
        wait_until(lambda: int(time.time()) > c + 1, what="clock past the cursor")
        run_once(ws)
        # the 120 s overlap still covers them: their keys stay, nothing is sent twice
        assert ws.query("SELECT count(*) FROM seen") == 30
        assert len(ws.lines()) == 30


def test_upgrade_gives_old_keys_a_stored_time():
    with Workspace() as ws:
        con = old_database(ws.db, 5, ["old"])
        now = int(time.time())
        rows = [(1, -1), (1, 1700000000), (1, now + 10 ** 8)]
        con.executemany("INSERT INTO seen (tenant_id, at, key) VALUES (?, ?, randomblob(16))", rows)
        con.commit()
        con.close()
        expect(ws, ["init"], 0, "schema version %d" % len(migrations()))
        got = dict(ws.query_rows("SELECT at, stored_at FROM seen"))
        assert got[1700000000] == 1700000000, got
        assert now - 5 <= got[-1] <= now + 60 and now - 5 <= got[now + 10 ** 8] <= now + 60, got
        # no index for them since 017: the first commit looks their oldest up
        assert ws.query("SELECT count(*) FROM sqlite_master WHERE name = 'seen_stored'") == 0
        assert ws.query("SELECT keys_stored_oldest FROM stream") == 0


def test_same_id_other_bytes_is_counted_as_a_conflict():
    with FakeNetskope() as fake, Workspace() as ws:
        now = int(time.time())
        fake.add_tenant(token("acme"), "acme")
        assert ws.run_cli(["init"])[0] == 0
        rc, _, err = ws.run_cli(["tenant", "add", "acme", "--url", fake.url, "--lookback", 600],
                                stdin=token("acme"))
        assert rc == 0, err

        def rec(i, extra=""):
            return ('{"_id":"c%d","_insertion_epoch_timestamp":%d,"timestamp":%d,"n":%d%s}'
                    % (i, now - 30, now - 40, i, extra))
        # the first read: c1, c2 and a record without _id
        first = [rec(1), rec(2), '{"no_id":1,"_insertion_epoch_timestamp":%d}' % (now - 30)]
        fake.add_raw(token("acme"), first)
        run_once(ws)
        c = cursor(ws, "acme")
        wait_until(lambda: int(time.time()) > c + 1, what="clock past the cursor")
        # the overlap is read again: c1 comes back changed, c2 and the record
        # without _id as they were, c3 is new
        fake.reset(token("acme"), alerts=True)
        fake.add_raw(token("acme"), [rec(1, ',"changed":true'), rec(2), first[2], rec(3)])
        err = run_once(ws)
        assert sorted(ws.lines()) == sorted(first + [rec(3)]), ws.lines()
        assert ws.query("SELECT conflicts FROM stream_status") == 1
        assert ws.query("SELECT conflicts FROM tenant_status") == 1
        assert "event=conflict records=1" in err, err[-2000:]
        rc, out, _ = ws.run_cli(["status"])
        assert "conflicts 1: records whose _id was stored before with other bytes" in out, out
        rc, out, _ = ws.run_cli(["status", "--json"])
        st = json.loads(out)[0]
        assert st["conflicts"] == 1 and st["streams"][0]["conflicts"] == 1, st
        # a conflict is counted once per stored record: the next read of the
        # overlap meets c1's other version again, and c2 changed, and counts c2
        c = cursor(ws, "acme")
        wait_until(lambda: int(time.time()) > c + 1, what="clock past the cursor")
        fake.reset(token("acme"), alerts=True)
        fake.add_raw(token("acme"), [rec(1, ',"changed":true'), rec(2, ',"x":0'), rec(3)])
        run_once(ws)
        assert ws.query("SELECT conflicts FROM stream_status") == 2
        assert sorted(ws.lines()) == sorted(first + [rec(3)])


if __name__ == "__main__":
    run_tests(globals())
