#!/usr/bin/env python3
"""fake_secops.py - a small fake of the Google SecOps (Chronicle) API's
logs.import method, for nscollect's tests. Python 3 standard library only.

It is tests/fake_gcs.py with one more API: the server's Handler and State
subclass fake_gcs's, so Google's OAuth2 /token endpoint (service-account
JWTs checked with openssl), the GCE metadata server, the GCS routes and
fake_gcs's admin routes (/_admin/account, /_admin/bucket, /_admin/revoke,
/_admin/config, /_admin/assertions, ...) all work unchanged; see that
file's docstring. Each issued token also remembers its JWT's "scope" claim
(metadata-server tokens get cloud-platform).

Usage:
    python3 tests/fake_secops.py [--host 127.0.0.1] [--port 0] [--port-file F]
                                 [--no-auth] [--verbose] [--parent PID]

--port 0 picks a free port, written (atomically) to --port-file once the
server listens; with --parent the server exits when process PID is gone.
Point secops.endpoint, gcs.endpoint and the key file's token_uri
(http://127.0.0.1:PORT/token) at it.

SecOps route (errors use Google's {"error":{"code","message","status"}}):
    POST /v1/projects/{P}/locations/{L}/instances/{I}/logTypes/{T}/logs:import
        (also under /v1alpha/ and /v1beta/; ':' may be sent as %3A)
        body {"inlineSource": {"logs": [{"data": base64 of the raw bytes,
              "logEntryTime": RFC3339, "collectionTime": RFC3339}, ...],
              "forwarder": optional string}}
        Checks, in order:
        1. bearer token known and unexpired (401 UNAUTHENTICATED), unless
           auth is off and no token is sent; its scope includes
           https://www.googleapis.com/auth/cloud-platform (403
           PERMISSION_DENIED "Request had insufficient authentication scopes.")
        2. instance P/L/I registered (404 NOT_FOUND)
        3. when the instance has allow_email, the token's account is that
           one (403 PERMISSION_DENIED "Permission 'chronicle.logs.import'
           denied on resource ...")
        4. T among the instance's log types (404 NOT_FOUND "log type ... not found")
        5. injected faults (below)
        6. the body: JSON, inlineSource.logs a non-empty list of at most
           max_entries entries, the body at most max_request_bytes, each
           entry's data standard base64 of non-empty bytes, logEntryTime and
           collectionTime valid RFC3339 (YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|
           -HH:MM), a real date) -> 400 INVALID_ARGUMENT naming the limit, or
           the entry index and the field (Google answers a too-large request
           400, not 413).
        Accepted: every entry is appended, in order, to the instance+log
        type's accepted list with the request's sequence number (1, 2, ...
        over all accepted requests, lost replies included); 200 {}.
        All checking and storing happens under one lock (atomic).

Admin API (JSON bodies and replies; never needs auth), besides fake_gcs's:
    POST /_admin/instance {"project": P, "location": L, "instance": I,
                           "allow_email": E or null, "log_types": [...]}
        register (or update) an instance; log_types defaults to
        ["NETSKOPE_ALERT", "NETSKOPE_ALERT_V2", "NETSKOPE_WEBPROXY"].
    POST /_admin/limits {"max_request_bytes": N (default 4000000),
                         "max_entries": N (default 1000)}   merged; reply: limits
    POST /_admin/faults  fake_gcs's faults (fail_tokens, token_ttl, fail_uploads,
        ...) plus, for imports that passed checks 1-4:
        "fail_imports": N     the next N get fail_status (default 503; 429 adds
                              Retry-After: 1), nothing stored
        "reset_imports": N    the next N: nothing stored, the connection is
                              closed without a reply
        "lost_replies": N     the next N valid imports are stored, then the
                              connection is closed without a reply
        "lost_status": S      when not 0, lost replies are answered with status S
                              instead (stored, then e.g. 503)
        "import_delay_ms": M  sleep M ms before handling each import (no lock held)
        "fail_delay_ms": M    sleep M ms before each injected failure, reset
                              or lost reply
        "upload_lost_replies": N  fake_gcs's lost_replies for GCS uploads
                              (lost_replies here means imports only)
        Keys not given keep their value; reply: the current faults.
    POST /_admin/reset {}  drop accepted logs, stats, faults and tokens (instances,
                           accounts, limits, buckets and config stay)
    GET  /_admin/logs?instance=I&log_type=T   {"logs": [{"data_b64",
        "logEntryTime", "collectionTime", "request"}]} in accepted order (the
        instance id alone names it)
    GET  /_admin/limits   the limits
    GET  /_admin/stats    fake_gcs's stats plus "import_requests" (every import
        POST), "imports_ok" (200 replies), "entries_accepted" (entries stored,
        lost replies included), "imports_failed" (fail_imports answers),
        "resets", "lost_replies", "imports_400", "imports_401", "imports_403",
        "imports_404", "max_entries_seen", "max_bytes_seen" (largest stored
        request: entries, body bytes), "upload_lost_replies" (GCS)
"""
import base64
import binascii
import datetime
import json
import os
import re
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_gcs  # noqa: E402

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
DEFAULT_LOG_TYPES = ["NETSKOPE_ALERT", "NETSKOPE_ALERT_V2", "NETSKOPE_WEBPROXY"]
SECOPS_FAULTS = {"fail_imports": 0, "reset_imports": 0, "lost_replies": 0, "lost_status": 0,
                 "import_delay_ms": 0, "fail_delay_ms": 0, "upload_lost_replies": 0}
DEFAULT_LIMITS = {"max_request_bytes": 4000000, "max_entries": 1000}
SECOPS_STATS = ("import_requests", "imports_ok", "entries_accepted", "imports_failed",
                "resets", "lost_replies", "imports_400", "imports_401", "imports_403",
                "imports_404", "max_entries_seen", "max_bytes_seen", "upload_lost_replies")
STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                404: "NOT_FOUND", 409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
                501: "UNIMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
API_VERSIONS = ("v1", "v1alpha", "v1beta")
RFC3339 = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?"
                     r"(Z|[+-](\d{2}):(\d{2}))$")
_NO_SCOPE = object()


class ApiError(Exception):
    """A Google API error: {"error": {"code", "message", "status"}}."""

    def __init__(self, code, message, stat=None, headers=None):
        super().__init__(message)
        self.code, self.message, self.stat = code, message, stat
        self.headers = headers or {}


def valid_rfc3339(s):
    if not isinstance(s, str):
        return False
    m = RFC3339.match(s)
    if not m:
        return False
    y, mo, d, h, mi, sec = (int(g) for g in m.groups()[:6])
    try:
        datetime.datetime(y, mo, d, h, mi, sec)
    except ValueError:
        return False
    if m.group(9) is not None and (int(m.group(9)) > 23 or int(m.group(10)) > 59):
        return False
    return True


class State(fake_gcs.State):
    def __init__(self, require_auth):
        self.instances = {}   # (project, location, instance) -> {"allow_email", "log_types"}
        self.limits = dict(DEFAULT_LIMITS)
        self.local = threading.local()    # the scope of the JWT being exchanged
        super().__init__(require_auth)

    def reset(self):
        super().reset()
        self.faults.update(SECOPS_FAULTS)
        self.stats.update({k: 0 for k in SECOPS_STATS})
        self.accepted = {}    # (instance, log_type) -> [entry]
        self.request_seq = 0

    def issue_token(self, email):
        scope = getattr(self.local, "scope", _NO_SCOPE)
        self.local.scope = _NO_SCOPE
        reply = super().issue_token(email)
        # the metadata server's tokens: the GCE default cloud-platform scope
        self.tokens[reply["access_token"]]["scope"] = (
            CLOUD_PLATFORM if scope is _NO_SCOPE else str(scope or ""))
        return reply


class Handler(fake_gcs.Handler):
    server_version = "fake-secops/1"

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("fake_secops: " + (fmt % args) + "\n")

    def routes(self, method):
        mine = []
        if method == "POST":
            mine = [("/%s/projects/" % v, self.logs_import) for v in API_VERSIONS]
        return mine + super().routes(method)

    # ---- token scope ----

    def check_claims(self, c):
        problem = super().check_claims(c)
        if problem is None:
            self.st.local.scope = c.get("scope", "")
        return problem

    def token(self, path, body):
        self.st.local.scope = _NO_SCOPE
        try:
            return super().token(path, body)
        finally:
            self.st.local.scope = _NO_SCOPE

    # ---- GCS uploads: their own lost_replies fault ----

    def upload_locked(self, bucket, name, email, body):
        f, s = self.st.faults, self.st.stats
        saved_fault, saved_stat = f["lost_replies"], s["lost_replies"]
        f["lost_replies"] = f["upload_lost_replies"]
        try:
            return super().upload_locked(bucket, name, email, body)
        finally:
            f["upload_lost_replies"], f["lost_replies"] = f["lost_replies"], saved_fault
            s["upload_lost_replies"] += s["lost_replies"] - saved_stat
            s["lost_replies"] = saved_stat

    # ---- logs:import ----

    def reply_api_error(self, e):
        body = json.dumps({"error": {"code": e.code, "message": e.message,
                                     "status": STATUS_NAMES.get(e.code, "UNKNOWN")}}).encode()
        self.send_response(e.code)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        for k, v in e.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def parse_import_path(self, path):
        parts = [urllib.parse.unquote(p) for p in path.split("/")]
        # "", v1, projects, P, locations, L, instances, I, logTypes, T, logs:import
        if (len(parts) != 11 or parts[2] != "projects" or parts[4] != "locations"
                or parts[6] != "instances" or parts[8] != "logTypes"
                or parts[10] != "logs:import" or not all(parts[3:10:2])):
            raise ApiError(404, "no such method: POST %s" % path)
        return parts[3], parts[5], parts[7], parts[9]

    def logs_import(self, path, body):
        st = self.st
        with st.lock:
            st.count("import_requests")
            delay = st.faults["import_delay_ms"]
        if delay:
            time.sleep(delay / 1000.0)
        try:
            project, location, instance, log_type = self.parse_import_path(path)
            with st.lock:
                action, status = self.import_locked(project, location, instance, log_type, body)
                fail_delay = st.faults["fail_delay_ms"]
        except ApiError as e:
            if e.stat:
                with st.lock:
                    st.count(e.stat)
            return self.reply_api_error(e)
        if action == "ok":
            return self.reply(200, {})
        if fail_delay:
            time.sleep(fail_delay / 1000.0)
        if action == "close":               # no reply at all
            self.close_connection = True
            return None
        hdrs = {"Retry-After": "1"} if status == 429 else {}
        msg = "Injected lost reply." if action == "lost" else "Injected failure."
        return self.reply_api_error(ApiError(status, msg, headers=hdrs))

    def import_auth(self):
        """(email or None when auth is off, scope or None), checked."""
        h = self.headers.get("Authorization", "")
        if not h and not self.st.config["require_auth"]:
            return None, None
        tok = self.st.tokens.get(h[7:]) if h.startswith("Bearer ") else None
        if not tok or tok["expires"] <= time.time():
            raise ApiError(401, "Request had invalid authentication credentials. Expected "
                           "OAuth 2 access token, login cookie or other valid authentication "
                           "credential.", "imports_401")
        scope = tok.get("scope", CLOUD_PLATFORM)
        if CLOUD_PLATFORM not in scope.split():
            raise ApiError(403, "Request had insufficient authentication scopes.",
                           "imports_403")
        return tok["email"], scope

    def import_locked(self, project, location, instance, log_type, body):
        """("ok"|"fail"|"close"|"lost", status). Call with the lock held."""
        st = self.st
        email, _ = self.import_auth()
        name = "projects/%s/locations/%s/instances/%s" % (project, location, instance)
        inst = st.instances.get((project, location, instance))
        if inst is None:
            raise ApiError(404, "Instance %s not found." % name, "imports_404")
        if inst["allow_email"] and email is not None and email != inst["allow_email"]:
            raise ApiError(403, "Permission 'chronicle.logs.import' denied on resource "
                           "'//chronicle.googleapis.com/%s/logTypes/%s' (or it may not "
                           "exist)." % (name, log_type), "imports_403")
        if log_type not in inst["log_types"]:
            raise ApiError(404, "log type %s not found in %s." % (log_type, name),
                           "imports_404")
        if st.take_fault("fail_imports"):
            st.count("imports_failed")
            return "fail", int(st.faults["fail_status"])
        if st.take_fault("reset_imports"):
            st.count("resets")
            return "close", 0
        entries = self.check_body(body)
        st.request_seq += 1
        stored = st.accepted.setdefault((instance, log_type), [])
        for data, e in entries:
            stored.append({"data": data, "logEntryTime": e["logEntryTime"],
                           "collectionTime": e["collectionTime"], "request": st.request_seq})
        st.stats["entries_accepted"] += len(entries)
        st.stats["max_entries_seen"] = max(st.stats["max_entries_seen"], len(entries))
        st.stats["max_bytes_seen"] = max(st.stats["max_bytes_seen"], len(body))
        if st.take_fault("lost_replies"):
            st.count("lost_replies")
            status = int(st.faults["lost_status"] or 0)
            return ("lost", status) if status else ("close", 0)
        st.count("imports_ok")
        return "ok", 200

    def check_body(self, body):
        """[(bytes, entry)] of a valid body, else ApiError 400."""
        def bad(msg):
            return ApiError(400, msg, "imports_400")
        lim = self.st.limits
        try:
            req = json.loads(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise bad("Invalid JSON payload received. %s" % e)
        src = req.get("inlineSource") if isinstance(req, dict) else None
        if not isinstance(src, dict):
            raise bad("inlineSource is required.")
        logs = src.get("logs")
        if not isinstance(logs, list) or not logs:
            raise bad("inlineSource.logs must be a non-empty list.")
        if "forwarder" in src and not isinstance(src["forwarder"], str):
            raise bad("inlineSource.forwarder must be a string.")
        if len(logs) > lim["max_entries"]:
            raise bad("too many logs in one request: %d, the limit (max_entries) is %d."
                      % (len(logs), lim["max_entries"]))
        if len(body) > lim["max_request_bytes"]:
            raise bad("request of %d bytes exceeds the limit (max_request_bytes) of %d bytes."
                      % (len(body), lim["max_request_bytes"]))
        out = []
        for i, e in enumerate(logs):
            if not isinstance(e, dict):
                raise bad("inlineSource.logs[%d]: not an object." % i)
            d = e.get("data")
            try:
                data = base64.b64decode(d, validate=True) if isinstance(d, str) else b""
            except (binascii.Error, ValueError):
                raise bad("inlineSource.logs[%d].data: invalid base64." % i)
            if not data:
                raise bad("inlineSource.logs[%d].data: missing or empty." % i)
            for field in ("logEntryTime", "collectionTime"):
                if not valid_rfc3339(e.get(field)):
                    raise bad("inlineSource.logs[%d].%s: missing or not a valid RFC 3339 "
                              "timestamp: %r." % (i, field, e.get(field)))
            out.append((data, e))
        return out

    # ---- admin ----

    def admin_post(self, path, body):
        fn = {"/_admin/instance": self.admin_instance, "/_admin/limits": self.admin_limits,
              "/_admin/faults": self.admin_faults}.get(path)
        if fn is None:
            return super().admin_post(path, body)
        try:
            req = json.loads(body or b"{}")
        except ValueError:
            raise fake_gcs.HttpError(400, "admin bodies are JSON")
        if not isinstance(req, dict):
            raise fake_gcs.HttpError(400, "admin bodies are JSON objects")
        with self.st.lock:
            self.reply(200, fn(req))

    def admin_instance(self, req):
        key = (req.get("project"), req.get("location"), req.get("instance"))
        if not all(isinstance(k, str) and k for k in key):
            raise fake_gcs.HttpError(400, "instance needs project, location and instance")
        log_types = req.get("log_types")
        if log_types is None:
            log_types = list(DEFAULT_LOG_TYPES)
        if not isinstance(log_types, list) or not all(isinstance(t, str) for t in log_types):
            raise fake_gcs.HttpError(400, "log_types is a list of strings")
        self.st.instances[key] = {"allow_email": req.get("allow_email"),
                                  "log_types": list(log_types)}
        return {"project": key[0], "location": key[1], "instance": key[2],
                "allow_email": req.get("allow_email"), "log_types": list(log_types)}

    def admin_limits(self, req):
        for k, v in req.items():
            if k not in DEFAULT_LIMITS or not isinstance(v, int) or v < 1:
                raise fake_gcs.HttpError(400, "unknown limit or not a positive integer: %s" % k)
            self.st.limits[k] = v
        return dict(self.st.limits)

    def admin_faults(self, req):
        for k, v in req.items():
            if k == "lost_status" and v is None:
                v = 0
            if k not in self.st.faults or not isinstance(v, int) or isinstance(v, bool):
                raise fake_gcs.HttpError(400, "unknown fault or not an integer: %s" % k)
        for k, v in req.items():
            self.st.faults[k] = v or 0 if k == "lost_status" else v
        return dict(self.st.faults)

    def admin_get(self, path, body):
        with self.st.lock:
            if path == "/_admin/logs":
                key = (self.query.get("instance", ""), self.query.get("log_type", ""))
                logs = [{"data_b64": base64.b64encode(e["data"]).decode(),
                         "logEntryTime": e["logEntryTime"],
                         "collectionTime": e["collectionTime"], "request": e["request"]}
                        for e in self.st.accepted.get(key, [])]
                return self.reply(200, {"logs": logs})
            if path == "/_admin/limits":
                return self.reply(200, dict(self.st.limits))
        return super().admin_get(path, body)


class Server(fake_gcs.Server):
    request_queue_size = 128     # many upload workers connecting at once


def main():
    fake_gcs.main(Server, Handler, State, name="fake_secops",
                  description="fake SecOps logs.import + OAuth2 token + metadata + GCS server")


if __name__ == "__main__":
    main()
