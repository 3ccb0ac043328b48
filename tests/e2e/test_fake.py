#!/usr/bin/env python3
"""test_fake.py - self-test of tests/fake_netskope.py and harness.py.

    python3 tests/e2e/test_fake.py

Proves the fake's window and offset semantics, tenant isolation, pretty
pages, and every fault kind, so that end-to-end failures can be trusted to
be nscollect's.
"""

import http.client
import json
import os
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import FakeNetskope, minify, ndjson_lines  # noqa: E402

T = "tok-acme"
T0 = 1700000000


def rec(rid, ins, ts=None, extra=""):
    """A record's JSON text with the fields the fake filters on."""
    return ('{"_id":"%s","_insertion_epoch_timestamp":%d,"timestamp":%d,'
            '"big":9007199254740993,"f":46.949800000000003,"tz":"America\\/New_York",'
            '"name":"Ren\\u00e9e \u00e9t\u00e9"%s}' % (rid, ins, ins if ts is None else ts, extra))


def ids_of(body):
    return [r["_id"] for r in json.loads(body)["result"]]


def get_ok(fake, *a, **kw):
    status, hdrs, body = fake.page(*a, **kw)
    assert status == 200, (status, body[:200])
    return hdrs, body


def test_windows(fake):
    """[start, end) on insertion time and on event time; stable offset paging."""
    fake.add_tenant(T, "acme")
    raw = [rec("a1", T0, T0 - 50), rec("a3", T0 + 10, T0 - 5), rec("a2", T0 + 10, T0 + 1),
           rec("a4", T0 + 20, T0 + 20), rec("a5", T0 + 30)]
    assert fake.add_raw(T, raw) == 5
    _, body = get_ok(fake, T, T0, T0 + 30)
    assert ids_of(body) == ["a1", "a2", "a3", "a4"], body           # end excluded, (ins, _id) order
    _, body = get_ok(fake, T, T0 + 10, T0 + 11)
    assert ids_of(body) == ["a2", "a3"]                              # start included
    _, body = get_ok(fake, T, T0, T0 + 31, limit=2, offset=0)
    assert ids_of(body) == ["a1", "a2"]
    _, body = get_ok(fake, T, T0, T0 + 31, limit=2, offset=2)
    assert ids_of(body) == ["a3", "a4"]
    _, body = get_ok(fake, T, T0, T0 + 31, limit=2, offset=4)
    assert ids_of(body) == ["a5"]
    _, body = get_ok(fake, T, T0, T0 + 31, limit=2, offset=99)
    assert ids_of(body) == []
    _, body = get_ok(fake, T, T0 - 5, T0 + 2, event=True)
    assert ids_of(body) == ["a2", "a3"]                              # timestamp in [T0-5, T0+2)
    _, body = get_ok(fake, T, T0 - 100, T0 + 100, event=True, limit=1, offset=1)
    assert ids_of(body) == ["a2"]

    # records are spliced in byte for byte, in a compact page
    hdrs, body = get_ok(fake, T, T0, T0 + 1)
    assert body == b'{"ok":1,"result":[' + raw[0].encode() + b'],"wait_time":0}', body
    assert hdrs["ratelimit-limit"] and hdrs["ratelimit-remaining"] and hdrs["ratelimit-reset"]
    assert fake.alerts(T) == [raw[0], raw[2], raw[1], raw[3], raw[4]]

    # bad requests
    assert fake.page(T, T0, T0 + 1, limit=10001)[0] == 400
    assert fake.page(T, T0, T0 + 1, limit=0)[0] == 400
    assert fake.page(T, T0, T0 + 1, offset=-1)[0] == 400
    assert fake.request("GET", "/api/v2/events/data/alert?limit=5", headers={"Netskope-Api-Token": T})[0] == 400
    status, _, body = fake.page("wrong-token", T0, T0 + 1)
    assert status == 401 and json.loads(body)
    assert fake.page(None, T0, T0 + 1)[0] == 401
    assert fake.page(T, T0, T0 + 1, limit=10000)[0] == 200

    # the served log
    served = fake.served(T)
    first = served["requests"][0]
    assert (first["window"], first["start"], first["end"], first["offset"], first["limit"],
            first["status"], first["count"]) == ("insertion", T0, T0 + 30, 0, 100, 200, 4), first
    assert served["ids"][:4] == ["a1", "a2", "a3", "a4"]


def test_isolation_and_generate(fake):
    """Tenants by token; generated records are unique, realistic, in range."""
    fake.add_tenant("tok-beta", "beta")
    assert fake.generate("tok-beta", 300, T0, T0 + 600, event_lag=120, seed=5) == 300
    recs = [json.loads(r) for r in fake.alerts("tok-beta")]
    assert len(recs) == 300 and len({r["_id"] for r in recs}) == 300
    assert all(len(r["_id"]) == 24 and int(r["_id"], 16) >= 0 for r in recs)
    assert all(T0 <= r["_insertion_epoch_timestamp"] < T0 + 600 for r in recs)
    assert all(0 <= r["_insertion_epoch_timestamp"] - r["timestamp"] <= 120 for r in recs)
    assert len({r["alert_type"] for r in recs}) >= 6
    assert all(r["app_session_id"] > 2 ** 53 for r in recs)
    texts = fake.alerts("tok-beta")
    assert all("\\/" in t and "\\u00e9" in t for t in texts)
    assert any("46.949800000000003" in t for t in texts)
    assert any(not t.isascii() for t in texts)
    assert 800 <= sum(len(t.encode()) for t in texts) / len(texts) <= 1600
    # paging the whole window returns every record once, in stored order
    got = []
    for off in range(0, 400, 64):
        _, body = get_ok(fake, "tok-beta", T0, T0 + 600, limit=64, offset=off)
        got += [r.decode() for r in split_records(body)]
    assert got == texts
    # the same seed gives the same records
    fake.add_tenant("tok-gamma", "gamma")
    fake.generate("tok-gamma", 300, T0, T0 + 600, event_lag=120, seed=5)
    assert fake.alerts("tok-gamma") == texts
    # acme's records are not beta's
    _, body = get_ok(fake, "tok-beta", T0, T0 + 31)
    assert not set(ids_of(body)) & {"a1", "a2", "a3", "a4", "a5"}


def split_records(body):
    """The raw bytes of each element of a compact page's result."""
    prefix, suffix = b'{"ok":1,"result":[', b'],"wait_time":0}'
    assert body.startswith(prefix) and body.endswith(suffix)
    inner = body[len(prefix):-len(suffix)]
    out, depth, start, in_str, esc = [], 0, 0, False, False
    for i, ch in enumerate(inner):
        if in_str:
            esc, in_str = (False, in_str) if esc else (ch == 0x5C, ch != 0x22)
        elif ch == 0x22:
            in_str = True
        elif ch == 0x7B:
            depth += 1
            start = i if depth == 1 else start
        elif ch == 0x7D:
            depth -= 1
            if depth == 0:
                out.append(inner[start:i + 1])
    return out


def test_pretty(fake):
    """A pretty tenant's page differs from the stored records only by whitespace."""
    fake.add_tenant("tok-pretty", "pretty", pretty=True)
    raw = [rec("p1", T0, extra=',"e":{},"l":[],"n":[1,[2,{"x":" a : b , "}]]'), rec("p2", T0 + 1)]
    fake.add_raw("tok-pretty", raw)
    _, body = get_ok(fake, "tok-pretty", T0, T0 + 2)
    text = body.decode()
    assert "\n        {\n            \"_id\": \"p1\"," in text, text
    page = json.loads(text)
    assert [r["_id"] for r in page["result"]] == ["p1", "p2"]
    assert minify(text) == '{"ok":1,"result":[%s],"wait_time":0}' % ",".join(raw)
    assert minify(body) == minify(text).encode()
    assert fake.alerts("tok-pretty") == raw


def faults_ok(fake, token, faults):
    fake.reset(token)
    assert fake.faults(token, faults) == len(faults)


FT = "tok-faults"


def test_status_faults(fake):
    """Status faults, consumed one per request, in order."""
    tok = FT
    fake.add_tenant(tok, "faults")
    fake.generate(tok, 50, T0, T0 + 100, seed=9)
    faults_ok(fake, tok, [{"kind": "status", "code": 500}, {"kind": "status", "code": 429, "retry_after": 1},
                          {"kind": "status", "code": 429, "ratelimit_reset": 7},
                          {"kind": "status", "code": 401}, {"kind": "status", "code": 403},
                          {"kind": "status", "code": 409}])
    s, h, _ = fake.page(tok, T0, T0 + 100)
    assert s == 500
    s, h, _ = fake.page(tok, T0, T0 + 100)
    assert s == 429 and h["retry-after"] == "1"
    s, h, _ = fake.page(tok, T0, T0 + 100)
    assert s == 429 and h["ratelimit-reset"] == "7" and "retry-after" not in h
    assert [fake.page(tok, T0, T0 + 100)[0] for _ in range(4)] == [401, 403, 409, 200]


def test_body_faults(fake):
    """Bodies that are not a usable page."""
    tok = FT
    faults_ok(fake, tok, [{"kind": "malformed"}])
    s, _, body = fake.page(tok, T0, T0 + 100)
    assert s == 200
    try:
        json.loads(body)
        raise AssertionError("malformed body parsed")
    except ValueError:
        pass

    faults_ok(fake, tok, [{"kind": "not_array"}])
    s, _, body = fake.page(tok, T0, T0 + 100)
    assert s == 200 and isinstance(json.loads(body)["result"], dict)

    faults_ok(fake, tok, [{"kind": "wait_time", "seconds": 3}])
    _, body = get_ok(fake, tok, T0, T0 + 100)
    page = json.loads(body)
    assert page["wait_time"] == 3 and len(page["result"]) == 50

    faults_ok(fake, tok, [{"kind": "truncated"}])
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    conn.request("GET", "/api/v2/events/data/alert?insertionstarttime=%d&insertionendtime=%d&limit=50"
                 % (T0, T0 + 100), headers={"Netskope-Api-Token": tok})
    resp = conn.getresponse()
    length = int(resp.getheader("Content-Length"))
    try:
        resp.read()
        raise AssertionError("truncated body read in full")
    except http.client.IncompleteRead as e:
        assert 0 < len(e.partial) < length
    conn.close()


def test_time_faults(fake):
    """slow, hang, and "after" letting requests through first."""
    tok = FT
    faults_ok(fake, tok, [{"kind": "slow", "seconds": 1}])
    t = time.monotonic()
    get_ok(fake, tok, T0, T0 + 100)
    assert time.monotonic() - t >= 1.0

    faults_ok(fake, tok, [{"kind": "hang"}])
    t = time.monotonic()
    try:
        fake.page(tok, T0, T0 + 100, timeout=1.0)
        raise AssertionError("hang answered")
    except (socket.timeout, TimeoutError):
        pass
    assert time.monotonic() - t >= 1.0
    get_ok(fake, tok, T0, T0 + 100)                       # the next request is fine

    faults_ok(fake, tok, [{"kind": "status", "code": 503, "after": 2}, {"kind": "status", "code": 502}])
    assert [fake.page(tok, T0, T0 + 100)[0] for _ in range(5)] == [200, 200, 503, 502, 200]

    served = fake.served(tok)
    assert [r["status"] for r in served["requests"]] == [200, 200, 503, 502, 200], served["requests"]
    assert [r["fault"] for r in served["requests"]] == [None, None, "status", "status", None]
    assert len(served["ids"]) == 150                       # only complete 200 replies
    status, _, _ = fake.request("POST", "/_admin/faults", {"token": tok, "faults": [{"kind": "nope"}]})
    assert status == 400


def test_keepalive(fake):
    """Several pages over one connection."""
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    for off in (0, 10, 20):
        conn.request("GET", "/api/v2/events/data/alert?insertionstarttime=%d&insertionendtime=%d"
                     "&limit=10&offset=%d" % (T0, T0 + 100, off), headers={"Netskope-Api-Token": FT})
        resp = conn.getresponse()
        assert resp.status == 200 and len(json.loads(resp.read())["result"]) == 10
    conn.close()
    reqs = fake.served("tok-faults")["requests"][-3:]
    assert len({r["peer"] for r in reqs}) == 1, reqs


def test_helpers():
    assert minify(' { "a" : [ 1 , "x y\\" z" ] ,\n\t"b":{ } } ') == '{"a":[1,"x y\\" z"],"b":{}}'
    assert minify(b'[ "\\\\" , 2 ]') == b'["\\\\",2]'
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, "acme"))
        with open(os.path.join(d, "acme", "b.ndjson"), "w") as f:
            f.write('{"b":1}\n{"b":2}\n')
        with open(os.path.join(d, "a.ndjson"), "w") as f:
            f.write('{"a":1}\n')
        with open(os.path.join(d, "a.ndjson.tmp"), "w") as f:
            f.write('partial')
        assert ndjson_lines(d) == ['{"a":1}', '{"b":1}', '{"b":2}']


def main():
    test_helpers()
    with FakeNetskope() as fake:
        for t in (test_windows, test_isolation_and_generate, test_pretty, test_status_faults,
                  test_body_faults, test_time_faults, test_keepalive):
            t(fake)
            print("ok", t.__name__)
    with FakeNetskope(pretty=True) as fake:                # --pretty for every tenant
        fake.add_tenant(T, "acme")
        fake.add_raw(T, [rec("z1", T0)])
        _, body = get_ok(fake, T, T0, T0 + 1)
        assert body.startswith(b'{\n    "ok": 1,') and minify(body) == (
            b'{"ok":1,"result":[' + rec("z1", T0).encode() + b'],"wait_time":0}')
        print("ok --pretty")
    print("test_fake: all passed")


if __name__ == "__main__":
    main()
