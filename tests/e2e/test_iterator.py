#!/usr/bin/env python3
"""test_iterator.py - `--api dataexport`: streams read Netskope's dataexport
iterator (issue 15 part 2) against the fake's server-side index.

- the first request starts the index at the lookback epoch, then `next`;
  every record once, byte for byte; the index is nscollect's own, one per
  stream, and the iterator row is 'clean' after a committed page;
- a page handed out but not committed (a broken body, a lost reply, a body
  without "ok", a 500 after the index moved, kill -9 between reply and
  commit): the next request is `resend`, decided from the database, and
  nothing is lost or doubled;
- wait_time, 429 with Retry-After: honoured before the next request;
- --api: a bad value exits 2 naming it, nothing written; data -> dataexport
  starts the index at the data cursor minus the overlap (nothing re-sent);
- several tenants with several streams in iterator mode, with faults.
"""

import json
import os
import signal
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (FakeNetskope, Workspace, minify, ndjson_files,  # noqa: E402
                     run_tests, wait_until)


def expect(ws, args, rc, *words, stdin=None):
    got, out, err = ws.run_cli(args, stdin=stdin)
    assert got == rc, "%s: exit %d, want %d\nstdout: %s\nstderr: %s" % (
        " ".join(map(str, args)), got, rc, out, err)
    for w in words:
        assert w in out + err, "%s: %r not in output:\n%s%s" % (" ".join(map(str, args)), w,
                                                                 out, err)
    return out, err


def add_tenant(ws, fake, name, streams="alert", mode=None, extra=()):
    fake.add_tenant("tok-" + name, name, mode=mode)
    expect(ws, ["tenant", "add", name, "--url", fake.url, "--lookback", "3600",
                "--streams", streams, "--api", "dataexport"] + list(extra), 0, "added",
           stdin="tok-" + name)


def due_now(ws):
    """Make every stream due at once (a failed job backs off 30 s)."""
    con = sqlite3.connect(ws.db, timeout=30)
    with con:
        con.execute("UPDATE stream SET next_run_at = 0, not_before = 0")
    con.close()


def lines_of(ws, tenant, stream):
    files = ndjson_files(ws.out)
    pre = "%s/alerts_" % tenant if stream == "alert" else "%s/%s/%s_" % (tenant, stream, stream)
    return [ln for path, lines in files.items() if path.startswith(pre) for ln in lines]


def once_each(got, want, what):
    assert len(got) == len(set(got)), "%s: %d duplicated" % (what, len(got) - len(set(got)))
    missing, extra = set(want) - set(got), set(got) - set(want)
    assert not missing and not extra, "%s: %d missing, %d not expected (of %d)" % (
        what, len(missing), len(extra), len(want))


def check_stream(ws, fake, tenant, stream):
    want = [minify(r) for r in fake.alerts("tok-" + tenant, type=stream)]
    once_each(lines_of(ws, tenant, stream), want, "%s/%s" % (tenant, stream))
    return want


def iter_requests(fake, tenant, stream="alert"):
    return [r for r in fake.served("tok-" + tenant, type=stream)["requests"]
            if r["window"] == "iterator"]


def iterator_row(ws, tenant, stream="alert"):
    return ws.query_rows("SELECT i.index_name, i.state, i.start_epoch, i.pages, i.resends "
                         "FROM iterator i JOIN stream s ON s.id = i.stream_id JOIN tenant t "
                         "ON t.id = s.tenant_id WHERE t.name = ? AND s.name = ?",
                         tenant, stream)[0]


def test_epoch_then_next():
    """A new stream starts its index at now - lookback, then asks next until
    an empty page; every record once, in pages of the fake's size."""
    now = int(time.time())
    with FakeNetskope() as fake, Workspace() as ws:
        expect(ws, ["init"], 0)
        add_tenant(ws, fake, "acme", mode={"iter_page": 70})
        fake.generate("tok-acme", 300, insertion_start=now - 3000, insertion_end=now - 5)
        fake.generate("tok-acme", 20, insertion_start=now - 7200, insertion_end=now - 3700,
                      seed=9)       # before the lookback: not wanted
        t0 = int(time.time())
        rc, out, err = ws.run_cli(["run", "--once"])
        assert rc == 0, err
        reqs = iter_requests(fake, "acme")
        ops = [r["op"] for r in reqs]
        epoch = int(ops[0])
        assert now - 3600 - 2 <= epoch <= t0 - 3600 + 2, (epoch, now)
        assert ops[1:] == ["next"] * (len(ops) - 1), ops
        assert [r["count"] for r in reqs] == [70, 70, 70, 70, 20, 0], reqs
        index = reqs[0]["index"]
        assert all(r["index"] == index for r in reqs)
        name, state, start, pages, resends = iterator_row(ws, "acme")
        assert name == index and name.startswith("nscollect_"), name
        assert (state, start, pages, resends) == ("clean", epoch, 6, 0)
        want = [minify(r) for r in fake.alerts("tok-acme") if json.loads(r)[
            "_insertion_epoch_timestamp"] >= epoch]
        assert len(want) == 300
        once_each(lines_of(ws, "acme", "alert"), want, "acme")
        # a second pass: one next, empty, nothing new
        fake.generate("tok-acme", 15, insertion_start=now - 4, insertion_end=now - 1, seed=3)
        rc, out, err = ws.run_cli(["run", "--once"])
        assert rc == 0, err
        ops = [r["op"] for r in iter_requests(fake, "acme")][6:]
        assert ops == ["next", "next"], ops
        assert len(lines_of(ws, "acme", "alert")) == 315
        doc = json.loads(expect(ws, ["tenant", "show", "acme", "--json"], 0)[0])
        assert doc["api"] == "dataexport"
        assert doc["streams"][0]["iterator"]["state"] == "clean", doc
        expect(ws, ["tenant", "show", "acme"], 0, "api:           dataexport",
               "iterator alert", index)


def test_broken_pages_are_resent():
    """Each page the index handed out but nscollect did not commit - a body
    cut short, not JSON, without "ok", a reply lost with the connection -
    is asked again with resend; a 500 or a 429 (the index did not move) is
    followed by a resend too, whose repeat the dedupe keys drop. Nothing
    is lost, nothing doubled."""
    now = int(time.time())
    with FakeNetskope() as fake, Workspace() as ws:
        expect(ws, ["init"], 0)
        add_tenant(ws, fake, "acme", mode={"iter_page": 50})
        fake.generate("tok-acme", 400, insertion_start=now - 3000, insertion_end=now - 5)
        fake.faults("tok-acme", [{"kind": "truncated", "after": 1}, {"kind": "malformed"},
                                 {"kind": "no_ok", "after": 1}, {"kind": "lost"},
                                 {"kind": "status", "code": 500, "after": 1},
                                 {"kind": "status", "code": 429, "retry_after": 1}])
        for _ in range(8):
            rc, out, err = ws.run_cli(["run", "--once"])
            if ws.query("SELECT count(*) FROM iterator WHERE state = 'clean'") == 1 and \
                    len(lines_of(ws, "acme", "alert")) == 400:
                break
            due_now(ws)                 # a failed job backs off: run it now
        check_stream(ws, fake, "acme", "alert")
        reqs = iter_requests(fake, "acme")
        ops = [(r["op"], r["fault"]) for r in reqs]
        for i, (op, fault) in enumerate(ops):
            if fault in ("truncated", "malformed", "no_ok", "lost", "status"):
                assert ops[i + 1][0] == "resend", (i, ops)
        assert ("resend", None) in ops
        _, state, _, _, resends = iterator_row(ws, "acme")
        assert state == "clean" and resends >= 2, (state, resends, ops)
        served = fake.served("tok-acme")["ids"]
        assert len(served) > len(set(served)), "resends served records twice; sent once"


def test_wait_time_and_retry_after():
    """wait_time in a page and a 429's Retry-After are waited out before the
    next request."""
    now = int(time.time())
    with FakeNetskope() as fake, Workspace() as ws:
        expect(ws, ["init"], 0)
        add_tenant(ws, fake, "acme", mode={"iter_page": 40})
        fake.generate("tok-acme", 100, insertion_start=now - 3000, insertion_end=now - 5)
        fake.faults("tok-acme", [{"kind": "wait_time", "seconds": 2},
                                 {"kind": "status", "code": 429, "retry_after": 2}])
        rc, out, err = ws.run_cli(["run", "--once"])
        assert rc == 0, err
        reqs = iter_requests(fake, "acme")
        assert reqs[0]["fault"] == "wait_time" and reqs[1]["status"] == 429, reqs
        assert reqs[1]["t"] - reqs[0]["t"] >= 1.9, "wait_time honoured"
        assert reqs[2]["t"] - reqs[1]["t"] >= 1.9, "Retry-After honoured"
        assert reqs[2]["op"] == "resend", reqs
        check_stream(ws, fake, "acme", "alert")


def test_api_option_and_switch():
    """--api: a bad value exits 2 and writes nothing; a tenant that read the
    data API switches to dataexport at its cursor minus the overlap, and its
    overlap is not sent again (its keys, stored without a stored time, are
    given the switch's); back to data forgets the index."""
    now = int(time.time())
    with FakeNetskope() as fake, Workspace() as ws:
        expect(ws, ["init"], 0)
        fake.add_tenant("tok-acme", "acme")
        expect(ws, ["tenant", "add", "acme", "--url", fake.url, "--api", "iterator"], 2,
               "--api 'iterator'", "'data'", "'dataexport'", stdin="tok-acme")
        assert ws.query("SELECT count(*) FROM tenant") == 0
        expect(ws, ["tenant", "add", "acme", "--url", fake.url, "--lookback", "3600",
                    "--streams", "alert,page"], 0, stdin="tok-acme")
        for typ in ("alert", "page"):
            fake.generate("tok-acme", 120, insertion_start=now - 3000, insertion_end=now - 60,
                          type=typ)
        rc, out, err = ws.run_cli(["run", "--once"])
        assert rc == 0, err
        cursors = dict(ws.query_rows("SELECT s.name, c.position FROM cursor c JOIN stream s "
                                     "ON s.id = c.stream_id"))
        # the data API's keys with a time are stored without a stored time
        # (out of the seen_stored index, migration 016); the switch gives
        # them one, since the iterator prunes by nothing else
        assert ws.query("SELECT count(*) FROM seen WHERE stored_at = 0") == 240
        t_switch = int(time.time())
        expect(ws, ["tenant", "set", "acme", "--api", "dataexport"], 0, "updated")
        assert ws.query("SELECT count(*) FROM seen WHERE stored_at = 0") == 0
        assert ws.query("SELECT min(stored_at) FROM seen") >= t_switch
        for typ in ("alert", "page"):
            fake.generate("tok-acme", 30, insertion_start=now - 50, insertion_end=now - 1,
                          type=typ, seed=7)
        rc, out, err = ws.run_cli(["run", "--once"])
        assert rc == 0, err
        for typ in ("alert", "page"):
            first = iter_requests(fake, "acme", typ)[0]
            assert int(first["op"]) == cursors[typ] - 120, (first, cursors)
            check_stream(ws, fake, "acme", typ)
        assert ws.query("SELECT count(*) FROM iterator") == 2
        expect(ws, ["tenant", "set", "acme", "--api", "data"], 0)
        assert ws.query("SELECT count(*) FROM iterator") == 0


def test_kill_between_reply_and_commit():
    """kill -9 of the daemon while pages arrive, several times: each start
    resends what was not committed; every record once."""
    now = int(time.time())
    with FakeNetskope() as fake, Workspace() as ws:
        expect(ws, ["init"], 0)
        add_tenant(ws, fake, "acme", streams="alert,page", mode={"iter_page": 25})
        for typ in ("alert", "page"):
            fake.generate("tok-acme", 600, insertion_start=now - 3000, insertion_end=now - 5,
                          type=typ)
        for k in range(4):
            p = ws.spawn(["run"])
            served = lambda: sum(len(iter_requests(fake, "acme", t))  # noqa: E731
                                 for t in ("alert", "page"))
            before = served()
            wait_until(lambda: served() >= before + 3 + 2 * k, timeout=20,
                       what="pages to be asked for")
            p.send_signal(signal.SIGKILL)
            p.wait()
        rc, out, err = ws.run_cli(["run", "--once"])
        assert rc == 0, err
        for typ in ("alert", "page"):
            check_stream(ws, fake, "acme", typ)


def test_resent_empty_page_is_not_the_end():
    """Killed after 'pending' was written but before the next went out, the
    stream resends the last page, an empty one: that is not "caught up" -
    the next request follows and the records after it come (a bug the crash
    test found: the pass ended there and left them behind)."""
    now = int(time.time())
    with FakeNetskope() as fake, Workspace() as ws:
        expect(ws, ["init"], 0)
        add_tenant(ws, fake, "acme", mode={"iter_page": 50})
        fake.generate("tok-acme", 60, insertion_start=now - 3000, insertion_end=now - 100)
        rc, out, err = ws.run_cli(["run", "--once"])
        assert rc == 0, err
        assert iter_requests(fake, "acme")[-1]["count"] == 0      # ended on an empty page
        fake.generate("tok-acme", 70, insertion_start=now - 90, insertion_end=now - 5, seed=4)
        con = sqlite3.connect(ws.db, timeout=30)
        with con:            # what a kill between the 'pending' write and the request leaves
            con.execute("UPDATE iterator SET state = 'pending'")
        con.close()
        due_now(ws)
        rc, out, err = ws.run_cli(["run", "--once"])
        assert rc == 0, err
        ops = [(r["op"], r["count"]) for r in iter_requests(fake, "acme")][-4:]
        assert ops == [("resend", 0), ("next", 50), ("next", 20), ("next", 0)], ops
        check_stream(ws, fake, "acme", "alert")


def test_several_tenants_and_streams():
    """Three tenants, several streams each, iterator mode, faults on some:
    every record once, byte for byte, in its own tenant's own stream."""
    now = int(time.time())
    layout = {"acme": "alert,page,network", "globex": "page,audit,application",
              "initech": "alert,incident,endpoint"}
    faults = {("acme", "page"): [{"kind": "lost", "after": 1}],
              ("globex", "audit"): [{"kind": "status", "code": 429, "retry_after": 1}],
              ("initech", "incident"): [{"kind": "malformed"}, {"kind": "truncated"}]}
    with FakeNetskope() as fake, Workspace() as ws:
        expect(ws, ["init"], 0)
        for n, streams in layout.items():
            add_tenant(ws, fake, n, streams=streams, mode={"iter_page": 30})
            for i, typ in enumerate(streams.split(",")):
                fake.generate("tok-" + n, 90 + 10 * i, insertion_start=now - 3000,
                              insertion_end=now - 5, type=typ, seed=len(n) * 10 + i)
        for (n, typ), fl in faults.items():
            fake.faults("tok-" + n, fl, type=typ)
        for _ in range(5):
            ws.run_cli(["run", "--once"])
            due_now(ws)
        for n, streams in layout.items():
            for typ in streams.split(","):
                check_stream(ws, fake, n, typ)
        assert ws.query("SELECT count(*) FROM iterator WHERE state = 'clean'") == 9
        names = [r[0] for r in ws.query_rows("SELECT index_name FROM iterator")]
        assert len(set(names)) == 9


if __name__ == "__main__":
    run_tests(globals())
