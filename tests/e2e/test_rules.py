#!/usr/bin/env python3
"""test_rules.py - the Prometheus alerting rules (etc/prometheus/
nscollect.rules.yml, issue 16 part 3) checked with Prometheus' own promtool
(Debian's `prometheus` package): `promtool check rules` accepts the file
and rejects broken copies; `promtool test rules` on tests/e2e/rules_test.yml
shows every alert firing on the series that should fire it (with its
labels and its annotations naming the tenant, the stream and the command
to run) and silent on the series beside them; a copy with a weakened
expression fails those unit tests, so they can fail. Every series a rule
reads is one nscollect serves (metric_names.py).

    python3 tests/e2e/test_rules.py [NAME...]
"""

import os
import shutil
import subprocess
import sys
import tempfile

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import run_tests  # noqa: E402
from metric_names import NAMES, series_names  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RULES = os.path.join(HERE, "..", "..", "etc", "prometheus", "nscollect.rules.yml")
UNIT = os.path.join(HERE, "rules_test.yml")
ALERTS = {"NscollectDown", "NscollectNotReady", "NscollectStreamFailing",
          "NscollectStreamLagging", "NscollectOutboxNearLimit", "NscollectNoSuccessfulFetch",
          "NscollectNeverFetched"}


def rules_text():
    with open(RULES) as f:
        return f.read()


def promtool(args, files):
    """promtool ARGS in a fresh directory holding files {name: text};
    (rc, output)."""
    d = tempfile.mkdtemp(prefix="nscollect-rules-")
    try:
        for name, text in files.items():
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
        p = subprocess.run(["promtool"] + args, cwd=d, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=120)
        return p.returncode, p.stdout.decode("utf-8", "replace")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def unit_test(rules):
    with open(UNIT) as f:
        return promtool(["test", "rules", "rules_test.yml"],
                        {"nscollect.rules.yml": rules, "rules_test.yml": f.read()})


def test_check_rules_accepts_the_file():
    rc, out = promtool(["check", "rules", "nscollect.rules.yml"],
                       {"nscollect.rules.yml": rules_text()})
    assert rc == 0 and "SUCCESS: 7 rules found" in out, out


def test_check_rules_rejects_broken_copies():
    text = rules_text()
    broken = {
        "bad PromQL": text.replace("nscollect_stream_failing == 1", "nscollect_stream_failing == ="),
        "bad duration": text.replace("for: 15m", "for: fifteen"),
        "bad template": text.replace("{{ $labels.tenant }} stream {{ $labels.stream }} is failing",
                                     "{{ $labels.tenant stream is failing"),
    }
    for what, t in broken.items():
        assert t != text, what
        rc, out = promtool(["check", "rules", "nscollect.rules.yml"], {"nscollect.rules.yml": t})
        assert rc != 0 and "FAILED" in out, (what, rc, out)


def test_every_alert_has_severity_summary_description_runbook():
    doc = yaml.safe_load(rules_text())
    rules = [r for g in doc["groups"] for r in g["rules"]]
    assert {r["alert"] for r in rules} == ALERTS
    for r in rules:
        assert r["labels"]["severity"] in ("warning", "critical"), r["alert"]
        a = r["annotations"]
        assert a["summary"] and "`nscollect " in a["description"], r["alert"]
        if "tenant" in r["expr"] or "nscollect_stream" in r["expr"] or "lag" in r["expr"]:
            assert "$labels.tenant" in a["summary"], r["alert"]
        names = series_names(r["expr"])
        assert names and names <= NAMES, (r["alert"], names - NAMES)


def test_unit_tests_fire_and_stay_silent():
    rc, out = unit_test(rules_text())
    assert rc == 0 and "SUCCESS" in out, out
    with open(UNIT) as f:
        doc = yaml.safe_load(f)
    tested = {t["alertname"] for g in doc["tests"] for t in g["alert_rule_test"] if t["exp_alerts"]}
    silent = {t["alertname"] for g in doc["tests"] for t in g["alert_rule_test"]
              if not t["exp_alerts"]}
    assert tested == ALERTS, ALERTS - tested            # every alert shown firing
    assert len(silent) >= 5, silent


def test_unit_tests_catch_weakened_rules():
    """Each change below keeps the file valid but changes what fires; the
    unit tests must notice every one."""
    text = rules_text()
    weakened = {
        "3 x interval -> 2 x": ("> 3 * nscollect_stream_interval_seconds",
                                "> 2 * nscollect_stream_interval_seconds"),
        "80 % -> 90 %": ("0.8 * nscollect_outbox_limit_bytes", "0.9 * nscollect_outbox_limit_bytes"),
        "sum per tenant dropped": ("sum by (instance, job, tenant) (nscollect_pending_bytes)",
                                   "nscollect_pending_bytes"),
        "enabled check dropped": ("""(time() - nscollect_last_success_timestamp_seconds > 3600)
            and on (instance, job, tenant, stream)
          nscollect_stream_enabled == 1""",
                                  "time() - nscollect_last_success_timestamp_seconds > 3600"),
        "1 h -> 2 h": ("> 3600", "> 7200"),
        "failing for 15m -> 5m": ("expr: nscollect_stream_failing == 1\n        for: 15m",
                                  "expr: nscollect_stream_failing == 1\n        for: 5m"),
        "down: no for": ("expr: up{job=\"nscollect\"} == 0\n        for: 5m",
                         "expr: up{job=\"nscollect\"} == 0\n        for: 0m"),
        "runbook lost": ("Runbook: `nscollect tenant show {{ $labels.tenant }}` (last error)",
                         "Runbook: `nscollect status` (last error)"),
    }
    for what, (old, new) in weakened.items():
        assert old in text, what
        rc, out = unit_test(text.replace(old, new))
        assert rc != 0 and "FAILED" in out, (what, out)


if __name__ == "__main__":
    run_tests(globals())
