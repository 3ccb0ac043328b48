#!/usr/bin/env python3
"""test_import.py - `nscollect tenant import-env NAME [--state FILE]`.

    NSCOLLECT_BIN=./nscollect python3 tests/e2e/test_import.py

Moves a tenant over from Google's Cloud Run recipe: its environment
variables become the tenant's settings and its state.json becomes the
tenant's cursor, so the first run resumes at last_event_time - overlap.
A bad variable or state file is exit status 2 and leaves no tenant behind.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import FakeNetskope, Workspace, run_tests  # noqa: E402

RECIPE_VARS = ("NETSKOPE_TENANT", "NETSKOPE_API_TOKEN", "GCS_BUCKET", "GCS_PREFIX",
               "STATE_KEY", "MAX_RECORDS", "PAGE_SIZE", "LOOKBACK_HOURS")
TOKEN = "tok-import-0123456789abcdef"
T_2025 = 1735689600                       # 2025-01-01T00:00:00Z


def recipe_env(**over):
    """The Cloud Run function's variables (those not given are removed)."""
    env = {k: None for k in RECIPE_VARS}
    env.update({"NETSKOPE_TENANT": "https://acme.goskope.com",
                "NETSKOPE_API_TOKEN": TOKEN, "GCS_BUCKET": "acme-alerts",
                "GCS_PREFIX": "netskope/alerts", "MAX_RECORDS": "7000",
                "PAGE_SIZE": "500", "LOOKBACK_HOURS": "48"})
    env.update(over)
    return env


def workspace():
    ws = Workspace()
    rc, out, err = ws.run_cli(["init"])
    assert rc == 0, (rc, out, err)
    return ws


def write_state(ws, text, name="state.json"):
    path = os.path.join(ws.dir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def show(ws, name):
    rc, out, err = ws.run_cli(["tenant", "show", name, "--json"])
    assert rc == 0, (rc, out, err)
    return json.loads(out)


def tenant_exists(ws, name):
    rc, out, err = ws.run_cli(["tenant", "list", "--json"])
    assert rc == 0, (rc, out, err)
    return name in [t["name"] for t in json.loads(out)]


def import_env(ws, name, env, state=None):
    args = ["tenant", "import-env", name] + (["--state", state] if state else [])
    return ws.run_cli(args, env=env)


def test_import_with_epoch_state():
    """Every variable lands in the tenant; the cursor is last_event_time."""
    with workspace() as ws:
        state = write_state(ws, '{\n  "last_event_time": %d\n}' % T_2025)
        rc, out, err = import_env(ws, "acme", recipe_env(), state)
        assert rc == 0, (rc, out, err)
        assert TOKEN not in out + err
        assert "--window insertion" in err and "sent once more" in err, err
        t = show(ws, "acme")
        assert t["url"] == "https://acme.goskope.com", t
        assert t["sink"] == "gs://acme-alerts/netskope/alerts", t
        assert t["page_size"] == 500 and t["max_records"] == 7000, t
        assert t["lookback_s"] == 48 * 3600, t
        assert t["window"] == "event", t
        assert t["enabled"] is True, t
        assert t["cursor"] == T_2025, t
        assert TOKEN not in json.dumps(t)


def test_import_defaults_without_state():
    """The recipe's defaults: GCS_PREFIX netskope/alerts, MAX_RECORDS 5000,
    PAGE_SIZE 1000, LOOKBACK_HOURS 24; no cursor without --state."""
    with workspace() as ws:
        env = recipe_env(GCS_PREFIX=None, MAX_RECORDS=None, PAGE_SIZE=None, LOOKBACK_HOURS=None)
        rc, out, err = import_env(ws, "acme", env)
        assert rc == 0, (rc, out, err)
        t = show(ws, "acme")
        assert t["sink"] == "gs://acme-alerts/netskope/alerts", t
        assert (t["max_records"], t["page_size"], t["lookback_s"]) == (5000, 1000, 86400), t
        assert t["window"] == "event" and t["cursor"] is None, t


def test_import_iso_state():
    """ISO 8601 strings, with Z, +00:00, another offset and a fraction; a float."""
    cases = ['"2025-01-01T00:00:00Z"', '"2025-01-01T00:00:00+00:00"',
             '"2025-01-01T01:00:00.250+01:00"', '%d.75' % T_2025]
    with workspace() as ws:
        for i, value in enumerate(cases):
            state = write_state(ws, '{"last_event_time": %s}' % value, "s%d.json" % i)
            name = "iso%d" % i
            rc, out, err = import_env(ws, name, recipe_env(), state)
            assert rc == 0, (value, rc, out, err)
            assert show(ws, name)["cursor"] == T_2025, value


def test_missing_token():
    """No NETSKOPE_API_TOKEN: exit 2, the variable named, no tenant."""
    with workspace() as ws:
        rc, out, err = import_env(ws, "acme", recipe_env(NETSKOPE_API_TOKEN=None))
        assert rc == 2, (rc, out, err)
        assert "NETSKOPE_API_TOKEN is not set" in err, err
        assert not tenant_exists(ws, "acme")


def test_bad_variables():
    """A bad value is exit 2 with the variable named; nothing is written."""
    bad = {"NETSKOPE_TENANT": "http://acme.goskope.com", "PAGE_SIZE": "0",
           "MAX_RECORDS": "lots", "LOOKBACK_HOURS": "10000", "GCS_BUCKET": "No_Such!"}
    with workspace() as ws:
        for var, value in bad.items():
            rc, out, err = import_env(ws, "acme", recipe_env(**{var: value}))
            assert rc == 2, (var, rc, out, err)
            assert var in err, (var, err)
            assert not tenant_exists(ws, "acme"), var


def test_bad_state_file():
    """A state file that is not the recipe's: exit 2, the file named, no tenant."""
    bad = ['{"last_event_time": ', '{}', '[]', '{"last_event_time": null}',
           '{"last_event_time": "yesterday"}', '{"last_event_time": %d000}' % T_2025,
           '{"last_event_time": "2025-02-30T00:00:00Z"}', '']
    with workspace() as ws:
        for i, text in enumerate(bad):
            state = write_state(ws, text, "bad%d.json" % i)
            rc, out, err = import_env(ws, "acme", recipe_env(), state)
            assert rc == 2, (text, rc, out, err)
            assert "bad%d.json" % i in err, (text, err)
            assert not tenant_exists(ws, "acme"), text
        rc, out, err = import_env(ws, "acme", recipe_env(), os.path.join(ws.dir, "missing.json"))
        assert rc == 2 and "missing.json" in err, (rc, err)
        assert not tenant_exists(ws, "acme")


def test_first_run_resumes_at_state():
    """The first run asks for event time from last_event_time - overlap."""
    cursor = int(time.time()) - 600
    with FakeNetskope() as fake, workspace() as ws:
        fake.add_tenant(TOKEN, "acme")
        state = write_state(ws, '{"last_event_time": %d}' % cursor)
        env = recipe_env(NETSKOPE_TENANT=fake.url, GCS_BUCKET=None)
        rc, out, err = import_env(ws, "acme", env, state)
        assert rc == 0, (rc, out, err)
        rc, out, err = ws.run_cli(["run", "--once"])
        assert rc == 0, (rc, out, err)
        reqs = fake.served(TOKEN)["requests"]
        assert reqs, err
        assert reqs[0]["window"] == "event", reqs[0]
        assert reqs[0]["start"] == cursor - 120, (reqs[0], cursor)


if __name__ == "__main__":
    run_tests(globals())
