#!/usr/bin/env python3
"""test_netskope_api.py - Netskope as its OpenAPI spec and a hostile server
show it (issue 17 parts 4 and 6), end to end over loopback:

- a 200 reply with "ok" other than 1 is a failed request: nothing stored,
  no cursor moved, and the next run gets everything;
- Netskope's error body ("message") reaches last_error and the log;
- 409 is a plain failure, not a rate limit (no source documents it as one);
- ratelimit-remaining: 0 on a successful page holds the next request back
  until ratelimit-reset, and a long one ends the job told to wait;
- every wait a server asks for (Retry-After, wait_time) is capped at the
  tenant's interval, logged, and `tenant set` / `tenant enable` clear it.

    NSCOLLECT_BIN=./nscollect python3 tests/e2e/test_netskope_api.py [NAME...]
"""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import FakeNetskope, Workspace, run_tests  # noqa: E402
from test_spine import FAST, add_tenants, cursor, fault_case, run_once, token  # noqa: E402


def last_error(ws, name="acme"):
    return ws.query("SELECT last_error FROM tenant WHERE name = ?", name) or ""


def next_run_in(ws, name="acme"):
    return ws.query("SELECT max(next_run_at, not_before) - unixepoch() FROM tenant "
                    "WHERE name = ?", name)


def test_ok_0_is_a_failed_request():
    # Before the fix the ok:0 page was an empty page: the window ended, the
    # cursor moved past the 250 new alerts and they were never read again.
    fault_case({"kind": "ok0", "message": "query backend unavailable"}, 1,
               ["query backend unavailable"])


def test_ok_0_on_a_later_page():
    fault_case({"kind": "ok0"}, 1, ['"ok" other than 1'], after=1)


def test_netskope_error_message_in_last_error_and_log():
    with FakeNetskope() as fake, Workspace(config_extra=FAST) as ws:
        now = int(time.time())
        add_tenants(fake, ws, ["acme"])
        fake.generate(token("acme"), 20, insertion_start=now - 600, insertion_end=now - 1)
        fake.faults(token("acme"), [{"kind": "status", "code": 400,
                                     "message": "Invalid limit\n\x1b[2J: must be <= 5000"}])
        err = run_once(ws, expect=1)
        e = last_error(ws)
        assert "HTTP 400 from" in e and "Invalid limit [2J: must be <= 5000" in e, e
        assert "\x1b" not in e and "\n" not in e, repr(e)
        assert "Invalid limit [2J: must be <= 5000" in err, err[-2000:]
        assert cursor(ws, "acme") is None


def test_html_error_body_is_cut_and_cleaned():
    with FakeNetskope() as fake, Workspace(config_extra=FAST) as ws:
        add_tenants(fake, ws, ["acme"])
        body = "<html>\r\n<h1>502 Bad Gateway</h1>\r\n" + "x" * 5000 + "</html>"
        fake.faults(token("acme"), [{"kind": "status", "code": 502, "body": body}])
        run_once(ws, expect=1)
        e = last_error(ws)
        assert "<html> <h1>502 Bad Gateway</h1> xxx" in e and "x...; retrying" in e, e
        assert len(e) < 400, len(e)


def test_409_is_a_failure_not_a_rate_limit():
    with FakeNetskope() as fake, Workspace() as ws:
        add_tenants(fake, ws, ["acme"])
        fake.faults(token("acme"), [{"kind": "status", "code": 409, "message": "conflict"}])
        run_once(ws, expect=1)
        e = last_error(ws)
        assert "HTTP 409" in e and "conflict" in e and "rate limited" not in e, e
        assert len(fake.served(token("acme"))["requests"]) == 1, "409 was retried"


def test_ratelimit_remaining_0_holds_the_next_request():
    with FakeNetskope() as fake, Workspace() as ws:
        now = int(time.time())
        add_tenants(fake, ws, ["acme"], extra=("--page-size", 100))
        fake.generate(token("acme"), 250, insertion_start=now - 2000, insertion_end=now - 1)
        fake.faults(token("acme"), [{"kind": "ratelimit", "reset": 3}])
        err = run_once(ws)
        reqs = fake.served(token("acme"))["requests"]
        assert [r["offset"] for r in reqs] == [0, 100, 200], reqs
        gap = reqs[1]["t"] - reqs[0]["t"]
        assert gap >= 2.9, "the request after ratelimit-remaining: 0 went %.2f s later" % gap
        assert reqs[2]["t"] - reqs[1]["t"] < 2, "only the one request was held back"
        assert "event=ratelimit_pause wait_s=3" in err, err[-2000:]
        assert len(ws.lines()) == 250


def test_long_ratelimit_pause_ends_the_job_told_to_wait():
    with FakeNetskope() as fake, Workspace(config_extra=FAST) as ws:
        now = int(time.time())
        add_tenants(fake, ws, ["acme"], extra=("--page-size", 100, "--interval", 900))
        fake.generate(token("acme"), 250, insertion_start=now - 2000, insertion_end=now - 1)
        fake.faults(token("acme"), [{"kind": "ratelimit", "reset": 99999999}])
        err = run_once(ws, expect=1)
        assert len(fake.served(token("acme"))["requests"]) == 1
        assert "asked_s=99999999 wait_s=900" in err, err[-2000:]
        assert 800 < next_run_in(ws) <= 900, next_run_in(ws)
        assert "ratelimit-remaining: 0" in last_error(ws), last_error(ws)
        assert cursor(ws, "acme") is None and ws.lines() == []


def test_huge_retry_after_is_capped_and_cleared_by_tenant_set():
    # Retry-After: 999999999 used to park the tenant for 31 years.
    with FakeNetskope() as fake, Workspace() as ws:
        now = int(time.time())
        add_tenants(fake, ws, ["acme"], extra=("--interval", 600))
        fake.generate(token("acme"), 30, insertion_start=now - 600, insertion_end=now - 1)
        fake.faults(token("acme"), [{"kind": "status", "code": 429, "retry_after": 999999999}])
        err = run_once(ws, expect=1)
        assert "event=wait_capped source=retry_after asked_s=999999999 wait_s=600" in err, \
            err[-2000:]
        assert 500 < next_run_in(ws) <= 600, next_run_in(ws)
        rc, out, err = ws.run_cli(["tenant", "set", "acme", "--interval", 300])
        assert rc == 0, err
        assert next_run_in(ws) <= 0, "tenant set did not clear the wait"
        run_once(ws)
        assert len(ws.lines()) == 30


def test_enable_clears_a_wait():
    with FakeNetskope() as fake, Workspace() as ws:
        add_tenants(fake, ws, ["acme"])
        fake.faults(token("acme"), [{"kind": "status", "code": 429, "retry_after": 3000}])
        run_once(ws, expect=1)
        assert next_run_in(ws) > 200
        for cmd in (["tenant", "disable", "acme"], ["tenant", "enable", "acme"]):
            rc, _, err = ws.run_cli(cmd)
            assert rc == 0, err
        assert next_run_in(ws) <= 0, "enable did not clear the wait"


def test_huge_wait_time_is_capped():
    with FakeNetskope() as fake, Workspace() as ws:
        now = int(time.time())
        add_tenants(fake, ws, ["acme"], extra=("--page-size", 10, "--interval", 300))
        fake.generate(token("acme"), 25, insertion_start=now - 600, insertion_end=now - 1)
        fake.faults(token("acme"), [{"kind": "wait_time", "seconds": 10 ** 12}])
        err = run_once(ws, expect=1)
        assert "source=wait_time asked_s=1000000000000 wait_s=300" in err, err[-2000:]
        assert 200 < next_run_in(ws) <= 300, next_run_in(ws)


KV = re.compile(r'(\w+)=(?:"((?:[^"\\]|\\.)*)"|(\S*))')


def kv_fields(line):
    """The fields of one kv log line, as a log parser reads them."""
    return {m.group(1): m.group(2) if m.group(2) is not None else m.group(3)
            for m in KV.finditer(line)}


def test_quotes_in_server_text_cannot_forge_log_fields():
    with FakeNetskope() as fake, Workspace(config_extra=FAST) as ws:
        add_tenants(fake, ws, ["acme"])
        fake.faults(token("acme"), [{"kind": "status", "code": 500,
                                     "message": 'q" injected=1 status="ok \\'}])
        err = run_once(ws, expect=1)
        lines = [l for l in err.splitlines() if "event=fetch_done" in l]
        assert len(lines) == 1, err[-2000:]
        f = kv_fields(lines[0])
        assert "injected" not in f and f["status"] == "wait", f
        assert f["error"].endswith('q\\" injected=1 status=\\"ok \\\\; retrying in 1 s'), f["error"]


def test_cli_escapes_a_rejected_tenant_name():
    with Workspace() as ws:
        assert ws.run_cli(["init"])[0] == 0
        for cmd in (["tenant", "add", "ev\x1b[2Jil\nx", "--url", "https://a.example"],
                    ["tenant", "show", "ev\x1b[2Jil\nx"]):
            rc, out, err = ws.run_cli(cmd, stdin="tok")
            assert rc == 2 if cmd[1] == "add" else rc != 0, (rc, err)
            assert "\x1b" not in err and err.count("\n") == 1, repr(err)
            assert "ev\\x1b[2Jil\\x0ax" in err, repr(err)


if __name__ == "__main__":
    run_tests(globals())
