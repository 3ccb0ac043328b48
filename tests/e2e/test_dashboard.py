#!/usr/bin/env python3
"""test_dashboard.py - the Grafana dashboard (etc/grafana/
nscollect-dashboard.json, issue 16 part 3): valid JSON with a current
schemaVersion, a datasource variable that every panel and query uses,
instance/tenant/stream variables from label_values(); every panel query,
with the variables substituted as Grafana does, parses as PromQL
(promtool has no expression check, so each one becomes a recording rule
for `promtool check rules`) and reads only series nscollect serves
(metric_names.py); the panels cover each metric family. Broken copies (a
bad expression, an undocumented name) are shown to be caught.

    python3 tests/e2e/test_dashboard.py [NAME...]
"""

import json
import os
import re
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import run_tests  # noqa: E402
from metric_names import NAMES, series_names  # noqa: E402
from test_rules import promtool  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DASH = os.path.join(HERE, "..", "..", "etc", "grafana", "nscollect-dashboard.json")
# what Grafana puts in place of its variables before a query goes out
SUBST = {"$__rate_interval": "1m", "$__interval": "30s", "$__range": "6h",
         "$instance": ".*", "$tenant": "acme|beta", "$stream": ".*"}


def load():
    with open(DASH) as f:
        return json.load(f)


def panels(dash):
    for p in dash["panels"]:
        yield p
        yield from p.get("panels", [])


def exprs(dash):
    """(panel title, expr) for every query of every panel and variable."""
    out = [(p["title"], t["expr"]) for p in panels(dash) for t in p.get("targets", [])]
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", q)
            assert m, (v["name"], q)
            out.append(("variable " + v["name"], m.group(1)))
    return out


def substitute(expr):
    for k in sorted(SUBST, key=len, reverse=True):
        expr = expr.replace(k, SUBST[k])
    assert "$" not in expr, expr
    return expr


def check_parse(pairs):
    """promtool check rules on one recording rule per expression."""
    rules = [{"record": "dashboard:q%d" % i, "expr": substitute(e)} for i, (_, e) in enumerate(pairs)]
    text = yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]})
    return promtool(["check", "rules", "d.yml"], {"d.yml": text})


def undocumented(pairs):
    return {(t, n) for t, e in pairs for n in series_names(e) if n not in NAMES}


def test_valid_json_and_layout():
    d = load()
    assert d["title"] == "nscollect" and d["uid"] == "nscollect"
    assert 36 <= d["schemaVersion"] <= 41, d["schemaVersion"]
    ids = [p["id"] for p in panels(d)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for p in panels(d):
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24 and g["w"] > 0 and g["h"] > 0, p["title"]
    cells = set()                                   # no two panels overlap
    for p in panels(d):
        g = p["gridPos"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, p["title"]
        cells |= mine


def test_template_variables():
    d = load()
    vs = {v["name"]: v for v in d["templating"]["list"]}
    assert vs["datasource"]["type"] == "datasource" and vs["datasource"]["query"] == "prometheus"
    for name in ("instance", "tenant", "stream"):
        v = vs[name]
        q = v["query"]["query"]
        assert v["type"] == "query" and q.startswith("label_values(") and q.endswith(", %s)" % name), q
        assert v["includeAll"] and v["multi"] and v["datasource"]["uid"] == "${datasource}"
    for p in panels(d):
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", p["title"]
            e = t["expr"]
            if "tenant" in e or re.search(r"nscollect_(records|requests|pending|cursor|stream|last|delivered)", e):
                assert 'tenant=~"$tenant"' in e, (p["title"], e)


def test_every_expression_parses():
    pairs = exprs(load())
    assert len(pairs) >= 25, len(pairs)
    rc, out = check_parse(pairs)
    assert rc == 0 and "SUCCESS: %d rules found" % len(pairs) in out, out
    broken = pairs + [("broken", "sum by (tenant (nscollect_pending_bytes)")]
    rc, out = check_parse(broken)
    assert rc != 0 and "FAILED" in out, out                 # the check can fail


def test_only_documented_names_and_all_families():
    pairs = exprs(load())
    assert undocumented(pairs) == set(), undocumented(pairs)
    assert undocumented(pairs + [("typo", "rate(nscollect_records_fetch_total[5m])")]) \
        == {("typo", "nscollect_records_fetch_total")}
    used = {n for _, e in pairs for n in series_names(e)}
    want = {"nscollect_records_fetched_total", "nscollect_records_stored_total",
            "nscollect_records_delivered_total", "nscollect_records_duplicate_total",
            "nscollect_requests_total", "nscollect_cursor_lag_seconds",
            "nscollect_stream_interval_seconds", "nscollect_pending_bytes",
            "nscollect_outbox_limit_bytes", "nscollect_stream_failing", "nscollect_workers",
            "nscollect_queue_depth", "nscollect_sqlite_commit_seconds_bucket",
            "nscollect_gcs_token_refreshes_total"}
    assert want <= used, want - used
    kinds = {p["type"] for p in panels(load())}
    assert {"heatmap", "timeseries", "stat"} <= kinds, kinds


if __name__ == "__main__":
    run_tests(globals())
