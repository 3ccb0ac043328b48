"""secops_harness.py - the fake Google SecOps for nscollect's end-to-end tests
(stdlib only).

    from secops_harness import FakeSecOps

    with FakeSecOps() as secops, Workspace(secops.config()) as ws:
        key = secops.service_account(ws.dir, "acme-secops")     # key file + account
        secops.instance("nscollect-test", "us", CUSTOMER_ID, allow_email=key.email)
        secops.limits(max_entries=40)
        secops.faults(fail_imports=2, fail_status=429, lost_replies=1)
        ...
        for e in secops.logs(CUSTOMER_ID, "NETSKOPE_ALERT"):   # in accepted order
            e["data"], e["logEntryTime"], e["collectionTime"], e["request"]
        records = secops.records(CUSTOMER_ID, "NETSKOPE_ALERT")  # [bytes]
        assert secops.stats()["lost_replies"] == 1

FakeSecOps starts tests/fake_secops.py (the Chronicle API's logs.import on
top of tests/fake_gcs.py: the OAuth2 token endpoint, the metadata server
and GCS stay available) on a free loopback port; see that file's
docstring for the routes, faults and stats. Everything FakeGCS has works:
service_account() (token_uri points at this server), bucket(), objects(),
faults(), revoke(), reset(), set_config(), stats().
"""

import base64
import os
import re
from urllib.parse import urlencode

from harness import REPO
from gcs_harness import FakeGCS

FAKE_SECOPS = os.path.join(REPO, "tests", "fake_secops.py")


def _group(text, name):
    """(settings inside the first simple `name = { ... };` group of text,
    text without it); ("", text) when there is none."""
    m = re.search(r"(?m)^[ \t]*%s[ \t]*[=:][ \t]*\{([^{}]*)\}[ \t]*;?[ \t]*\n?" % name, text)
    if not m:
        return "", text
    return m.group(1).strip(), text[:m.start()] + text[m.end():]


class FakeSecOps(FakeGCS):
    """tests/fake_secops.py in a subprocess, and its admin API. Its url is
    the base URL for secops.endpoint (and gcs.endpoint)."""

    SCRIPT = FAKE_SECOPS
    NAME = "fake-secops"

    def config(self, extra=""):
        """libconfig text pointing the secops sink at this fake:
        'secops = { endpoint = "URL"; };' then extra. A `secops = {...};`
        group in extra is merged into that one (libconfig refuses a setting
        given twice). A `gcs = { endpoint = "URL"; };` group follows (a
        `gcs = {...};` group in extra merged into it), so gs:// tenants
        use this same server."""
        secops_more, rest = _group(extra, "secops")
        gcs_more, rest = _group(rest, "gcs")
        text = 'secops = { endpoint = "%s"; %s};\n' % (
            self.url, secops_more + " " if secops_more else "")
        if "endpoint" not in gcs_more:
            gcs_more = ('endpoint = "%s"; ' % self.url) + gcs_more
        text += "gcs = { %s };\n" % gcs_more.strip()
        return text + rest

    # -- admin API

    def instance(self, project, location, instance, allow_email=None, log_types=None):
        """Register (or update) SecOps instance projects/P/locations/L/instances/I;
        only allow_email's tokens may import when given; log_types default to
        NETSKOPE_ALERT, NETSKOPE_ALERT_V2 and NETSKOPE_WEBPROXY."""
        body = {"project": project, "location": location, "instance": instance,
                "allow_email": allow_email}
        if log_types is not None:
            body["log_types"] = list(log_types)
        return self._admin("POST", "/_admin/instance", body)

    def limits(self, **limits):
        """max_request_bytes, max_entries; returns the current limits."""
        return self._admin("POST", "/_admin/limits", limits)

    def faults(self, **faults):
        """fail_imports, fail_status, reset_imports, lost_replies, lost_status,
        import_delay_ms, fail_delay_ms, and fake_gcs's (token_ttl, fail_tokens,
        fail_uploads, upload_lost_replies, ...); returns the current faults."""
        return self._admin("POST", "/_admin/faults", faults)

    def logs(self, instance, log_type):
        """[{data (bytes), logEntryTime, collectionTime, request}] accepted for
        instance + log_type, in order."""
        logs = self._admin("GET", "/_admin/logs?" + urlencode(
            {"instance": instance, "log_type": log_type}))["logs"]
        for e in logs:
            e["data"] = base64.b64decode(e.pop("data_b64"))
        return logs

    def records(self, instance, log_type):
        """The raw bytes of every accepted entry, in order."""
        return [e["data"] for e in self.logs(instance, log_type)]

    def stats(self):
        return self._admin("GET", "/_admin/stats")
