#!/usr/bin/env python3
"""fake_netskope.py - a fake Netskope tenant (REST API v2 alerts) for tests.

Python 3 standard library only. Serves every tenant from one process on
127.0.0.1, HTTP/1.1 with keep-alive:

    python3 tests/fake_netskope.py --port 0 --port-file FILE [--pretty] [--verbose]

The chosen port is written to FILE (atomically) once the socket listens;
tests wait for that file. The server runs until SIGTERM or SIGINT.

Data API (what nscollect calls)
-------------------------------
GET /api/v2/events/data/{type}, tenant chosen by the Netskope-Api-Token header
(unknown or missing token: 401 with a JSON error body); type is alert or one
of the event types page, application, network, audit, infrastructure,
incident, endpoint (another: 404). Each type of a tenant is its own store:
its own records (each type's own fields and time fields, see
EVENT_FORMATS), its own fault queue and its own served log. Every admin
call below takes an optional "type" (POST body) or type= (GET query),
default alert.
    insertionstarttime=S&insertionendtime=E   filter on _insertion_epoch_timestamp
    starttime=S&endtime=E                     filter on timestamp
    limit=L (1..10000, larger: 400)  offset=O (>= 0)
Windows are [S, E). Records are kept in (insertion time, _id) order, so
paging by offset is stable. The reply is
    {"ok":1,"result":[<record>,...],"wait_time":0}
with each record spliced in as its stored bytes. With --pretty (or a
tenant's "pretty" flag) the page is indented and each record re-indented by
a whitespace-only transform, like Netskope's own pretty-printed pages.
Every reply of the data API (errors too) carries ratelimit-limit,
ratelimit-remaining and ratelimit-reset; an error's body is Netskope's
{"status":code,"message":"..."}.

Admin API (JSON, no token header)
---------------------------------
POST /_admin/tenant  {"token":T,"name":N[,"pretty":true][,"mode":M]}  create (or update) a
                     tenant; M (all optional):
                       "shuffle":true  records of one insertion second come in a new
                                       order on every request (ties are unordered), so
                                       offset paging across requests is not stable
                       "repeat":true   every offset answers the window's first page
                                       again (a server that never ends a window)
                       "max_limit":L   a larger limit is cut to L without a word
                       "unfiltered":true  every window answers every record, times
                                       or none (a server that ignores the window)
POST /_admin/alerts  {"token":T,"generate":{"count":N,"insertion_start":S,
                      "insertion_end":E[,"event_lag":L][,"seed":X]}}
                     generate N realistic alerts, insertion times in [S, E),
                     event time up to L seconds earlier; answers {"ok":true,"added":N}
POST /_admin/alerts  {"token":T,"raw":["<json text>",...]}   add records verbatim
                     (insertion time from their _insertion_epoch_timestamp)
POST /_admin/faults  {"token":T,"faults":[F,...]}          queue faults, see below
POST /_admin/reset   {"token":T[,"alerts":true]}           forget served log and faults
                                                           (and the records and iterators)
GET  /_admin/served?token=T  {"requests":[{"window","start","end","offset","limit",
                              "status","count","fault","t","peer"}...],
                              "ids":[_id of every record sent in a complete 200 reply]}
                             (fault: null, the fault kind, or "client_gone" when
                             the client left before the reply; t: when the request
                             arrived; peer: the client's port, equal for requests
                             on one kept-alive connection)
GET  /_admin/alerts?token=T  {"records":["<raw json text>",...]} in served order

Dataexport iterator (what nscollect calls with --api dataexport)
----------------------------------------------------------------
GET /api/v2/events/dataexport/events/{type}?index=NAME&operation=OP, type as
above (alert: every alert type). Each (token, type, index name) has its own
server-side index: where it stands in the (insertion time, _id) order, and
the last page it handed out; it walks the records in the order they were
added (a record added late, with an old insertion time, still comes). OP:
    <epoch>  start the index at the first record inserted at or after epoch
             and hand out its first page
    head     start at the first record      tail   start after the last one
    next     hand out the page after the last one (the index moves on)
    resend   the last page handed out, again (the index does not move)
next or resend on an index never started: 400 {"message": ...}. A page holds
up to the tenant's mode "iter_page" records (default 1000); the reply is
    {"ok":1,"result":[...],"wait_time":W,"timestamp_hwm":H}
W: the tenant's mode "iter_wait" (default 0); H: the insertion time of the
last record handed out (the current time for an empty page). Faults apply to
iterator requests too: status and ok0 faults do not move the index;
malformed, truncated, not_array, hang, slow and these do (the page was handed
out, its reply broken or lost):
    {"kind":"lost"}     the index moves on, the connection is closed unanswered
    {"kind":"no_ok"}    the page without its "ok" member
The served log's iterator entries have window "iterator", "op" and "index".

Faults are consumed one per valid data request of that tenant, in order.
"after":K on a fault lets K requests through untouched first.
    {"kind":"status","code":500}                      (also 401, 403, 409, 503...) with
                                                      Netskope's error body
                                                      {"status":code,"message":M}; "message"
                                                      sets M, "body" sends that text instead
    {"kind":"status","code":429,"retry_after":1}      Retry-After header; optional
                                                      "ratelimit_reset":S header (a 429 also
                                                      says ratelimit-remaining: 0)
    {"kind":"ok0"}               200 with {"ok":0,"result":[],"message":...}: a failed
                                 request as the spec's ok enum [0, 1] allows
    {"kind":"ratelimit","reset":S}  the normal page, with ratelimit-remaining: 0 and
                                 ratelimit-reset: S
    {"kind":"malformed"}         200 with a body that is not JSON
    {"kind":"truncated"}         Content-Length of the full page, half of it, close
    {"kind":"not_array"}         200 with "result" an object
    {"kind":"slow","seconds":S}  sleep S, then the normal page
    {"kind":"hang"}              never answer; the served entry gets "ended" (the
                                 time) when the client hangs up
    {"kind":"wait_time","seconds":S}  the normal page with "wait_time":S
"""

import argparse
import bisect
import collections
import json
import os
import random
import re
import select
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

ALERT_PATH = "/api/v2/events/data/alert"
DATA_PREFIX = "/api/v2/events/data/"
EXPORT_PREFIX = "/api/v2/events/dataexport/events/"
ITER_PAGE = 1000
# The types /api/v2/events/data/{type} serves: "alert" (every alert type)
# and the event types, each with its own record layout (EVENT_FORMATS).
DATA_TYPES = ("alert", "page", "application", "network", "audit", "infrastructure",
              "incident", "endpoint")
MAX_LIMIT = 10000
FAULT_KINDS = {"status", "malformed", "truncated", "not_array", "slow", "hang", "wait_time",
               "ok0", "ratelimit", "lost", "no_ok"}
RATELIMIT_HEADERS = (("ratelimit-limit", "4"), ("ratelimit-remaining", "3"),
                     ("ratelimit-reset", "1"))
EVENT_CACHE_MAX = 16

# JSON tokens: a string, a structural character, or a run of anything else
# (numbers, true/false/null). Whitespace between tokens is skipped.
JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\],:]|[^"{}\[\],:\s]+')
INDENT = b"    "


# ---- records ---------------------------------------------------------------

class Record:
    """One stored alert: its raw bytes and the keys the API filters on."""
    __slots__ = ("ins", "ts", "id", "raw", "_pretty")

    def __init__(self, ins, ts, rid, raw):
        self.ins, self.ts, self.id, self.raw = ins, ts, rid, raw
        self._pretty = None

    def pretty(self):
        """The record indented for its place in a pretty page (cached)."""
        if self._pretty is None:
            self._pretty = reindent(self.raw, 2)
        return self._pretty


def reindent(raw, level):
    """Pretty-print JSON text by changing whitespace only; the first line
    is not indented, inner lines start at level+1."""
    toks = JSON_TOKEN.findall(raw)
    out = []
    for i, t in enumerate(toks):
        if t in (b"{", b"["):
            if i + 1 < len(toks) and toks[i + 1] in (b"}", b"]"):
                out.append(t)
            else:
                level += 1
                out.append(t + b"\n" + INDENT * level)
        elif t in (b"}", b"]"):
            if i > 0 and toks[i - 1] in (b"{", b"["):
                out.append(t)
            else:
                level -= 1
                out.append(b"\n" + INDENT * level + t)
        elif t == b",":
            out.append(b",\n" + INDENT * level)
        elif t == b":":
            out.append(b": ")
        else:
            out.append(t)
    return b"".join(out)


def minify(raw):
    """JSON text without whitespace outside strings."""
    return b"".join(JSON_TOKEN.findall(raw))


def record_from_text(text):
    """A Record from given JSON text; ValueError when it is not an object."""
    obj = json.loads(text)
    if not isinstance(obj, dict):
        raise ValueError("a record must be a JSON object")
    ins, ts = obj.get("_insertion_epoch_timestamp"), obj.get("timestamp")
    ins = ins if isinstance(ins, int) else -1
    ts = ts if isinstance(ts, int) else -1
    rid = obj.get("_id")
    return Record(ins, ts, rid if isinstance(rid, str) else "", text.encode("utf-8"))


# ---- generated alerts ------------------------------------------------------

# Values are JSON text fragments (already escaped): \/ and \u00e9 escapes and
# raw UTF-8 appear as Netskope sends them.
USERS = ["alice@example.com", "bob.smith@example.com", "ren\\u00e9e.dupont@example.fr",
         "j\\u00fcrgen.m\\u00fcller@example.de", "\u5c71\u7530.\u592a\u90ce@example.jp",
         "support@test.com", "o'brien@example.ie", "zo\u00eb@example.co.uk"]
APPS = [("Microsoft Office 365 Outlook.com", "Webmail", 85), ("Google Drive", "Cloud Storage", 79),
        ("Dropbox", "Cloud Storage", 71), ("Box", "Cloud Storage", 86),
        ("Slack", "Collaboration", 82), ("GitHub", "Development Tools", 80),
        ("Salesforce", "CRM", 90), ("WeTransfer", "Cloud Storage", 42)]
PLACES = [("US", "Olympia", "Washington", "America\\/Los_Angeles", 46.9498, -123.0212),
          ("US", "Willow Grove", "Pennsylvania", "America\\/New_York", 40.1578, -75.1236),
          ("FR", "Montr\\u00e9al-la-Cluse", "Auvergne-Rh\\u00f4ne-Alpes", "Europe\\/Paris",
           46.1833, 5.5833),
          ("DE", "M\u00fcnchen", "Bayern", "Europe\\/Berlin", 48.1372, 11.5756),
          ("JP", "\u6771\u4eac", "Tokyo", "Asia\\/Tokyo", 35.6895, 139.6917),
          ("BR", "S\u00e3o Paulo", "S\u00e3o Paulo", "America\\/Sao_Paulo", -23.5475, -46.6361)]
BROWSERS = ["Chrome", "Firefox", "Edge", "Safari", "Native"]
OSES = ["Windows 10", "Windows 11", "Mac OS X 14.1", "iOS 17.1", "Ubuntu 22.04"]
ACTIVITIES = ["Upload", "Download", "Share", "Create", "Edit", "Delete", "Browse", "Login Successful"]
SEVERITIES = ["low", "medium", "high", "critical", "unknown"]


def extra_dlp(r):
    return ('"dlp_profile":"PCI-DSS","dlp_rule":"Credit Card Number","dlp_rule_count":%d,'
            '"dlp_incident_id":%d,"file_type":"application\\/pdf","file_size":%d,'
            '"object":"Q3 r\\u00e9sultats \\"final\\".pdf","dlp_rule_severity":"High"'
            % (r & 15, (1 << 62) | (r >> 3), r & 0xFFFFF))


def extra_malware(r):
    return ('"malware_name":"Trojan.GenericKD.%d","malware_type":"Trojan","malware_id":"%032x",'
            '"severity_level":%d,"local_sha256":"%064x","file_path":"C:\\\\Users\\\\me\\\\Downloads\\\\setup.exe",'
            '"detection_engine":"Netskope AV"' % (r & 0xFFFFFF, r, r & 3, r * 0x9E3779B97F4A7C15))


def extra_policy(r):
    return ('"policy_name":"Block Unsanctioned Storage","policy_actions":["Upload","Share"],'
            '"action":"block","policy_version":%d' % (r & 255))


def extra_compromised(r):
    return ('"breach_id":"%016x","breach_date":%d,"breach_score":%d,'
            '"matched_username":"leaked.user%d@example.com","breach_media_references":[],'
            '"breach_target_references":["https:\\/\\/haveibeenpwned.com\\/"]'
            % (r, 1500000000 + (r & 0xFFFFFF), r & 100, r & 999))


def extra_uba(r):
    return ('"risk_level":"high","risk_level_id":2,"threshold_time":86400,'
            '"shared_credential_user":"test@user.com","_mladc":["ur"],"ur_score":%d.%d'
            % (r & 99, (r >> 7) & 9))


def extra_watchlist(r):
    return ('"watchlist_name":"Departing employees","watchlist_id":%d,"watched":true,'
            '"notes":null' % (r & 4095))


def extra_other(r):
    return ('"alert_source":"cloud","sa_rule_id":"%08x","sa_profile":{"name":"CIS 1.4",'
            '"labels":{},"rules":[%d,%d]}' % (r & 0xFFFFFFFF, r & 63, (r >> 6) & 63))


# alert_type values as Netskope's OpenAPI spec spells them (events/alert.yaml,
# the type enum), and the newer types the issue lists (ctep, Device, Content).
ALERT_TYPES = [("DLP", "DLP-PCI", "nspolicy", extra_dlp),
               ("Malware", "Trojan detected", "nspolicy", extra_malware),
               ("policy", "Block Unsanctioned Storage", "nspolicy", extra_policy),
               ("Compromised Credential", "Credential leak", "breach", extra_compromised),
               ("anomaly", "Data exfiltration", "anomaly", extra_uba),
               ("uba", "user_shared_credentials", "anomaly", extra_uba),
               ("watchlist", "Watchlist user activity", "nspolicy", extra_watchlist),
               ("Security Assessment", "S3 bucket public", "security_assessment", extra_other),
               ("malsite", "Known phishing site", "nspolicy", extra_other),
               ("quarantine", "File quarantined", "nspolicy", extra_other),
               ("Legal Hold", "Legal hold on file", "nspolicy", extra_other),
               ("Remediation", "File remediated", "nspolicy", extra_other),
               ("ctep", "IPS signature match", "nspolicy", extra_other),
               ("Device", "Device classification", "nspolicy", extra_other),
               ("Content", "Content scan", "nspolicy", extra_other)]

RECORD_FMT = (
    '{"_id":"%s","_insertion_epoch_timestamp":%d,"timestamp":%d,'
    '"alert":"yes","alert_type":"%s","alert_name":"%s","type":"%s","acked":"false",'
    '"activity":"%s","app":"%s","appcategory":"%s","cci":%d,"ccl":"high","user":"%s",'
    '"userip":"10.%d.%d.%d","srcip":"198.51.100.%d","dstip":"203.0.113.%d",'
    '"src_country":"%s","src_location":"%s","src_region":"%s","src_timezone":"%s",'
    '"src_latitude":%s,"src_longitude":%s,'
    '"dst_latitude":46.949800000000003,"dst_longitude":-123.02119999999999,'
    '"app_session_id":%d,"browser_session_id":%d,"connection_id":%d,"incident_id":%d,'
    '"request_id":%d,"browser":"%s","os":"%s","hostname":"HOST-%04X",'
    '"url":"https:\\/\\/%s\\/path\\/%d?q=1&r=\\u00e9","policy":"Global Policy %d","severity":"%s",'
    '"count":%d,"_notify":"{\\"interval\\": \\"-1\\"}",%s}')


def float_text(x):
    """A float as Netskope writes it: 17 significant digits, so text such
    as 46.949800000000003 that a parse-then-print would shorten."""
    return format(x, ".17g")


def generate_one(rng, rid, ins, ts):
    """The JSON text of one generated alert (about 1 KB)."""
    b = rng.getrandbits(64)
    c = rng.getrandbits(64)
    atype, aname, typ, extra = ALERT_TYPES[b % len(ALERT_TYPES)]
    app, appcat, cci = APPS[(b >> 8) % len(APPS)]
    user = USERS[(b >> 16) % len(USERS)]
    country, loc, region, tz, lat, lon = PLACES[(b >> 24) % len(PLACES)]
    big = 1 << 60        # 19-digit ids like Netskope's, far beyond 2^53
    text = RECORD_FMT % (
        rid, ins, ts, atype, aname, typ, ACTIVITIES[(b >> 32) % len(ACTIVITIES)],
        app, appcat, cci, user,
        (b >> 8) & 255, (b >> 16) & 255, (b >> 24) & 255, c & 255, (c >> 8) & 255,
        country, loc, region, tz,
        float_text(lat + ((c >> 16) & 255) / 10000.0), float_text(lon - ((c >> 24) & 255) / 10000.0),
        big + (c >> 4), big + (b >> 4), big + (c >> 5), big + ((b ^ c) >> 4), big + (b >> 5),
        BROWSERS[(c >> 36) % len(BROWSERS)], OSES[(c >> 44) % len(OSES)], (c >> 48) & 0xFFFF,
        app.replace(" ", "").lower() + ".example.com", c & 0xFFFF, (b >> 40) & 15,
        SEVERITIES[(b >> 44) % len(SEVERITIES)], 1 + (c & 3), extra(c ^ b))
    return text.encode("utf-8")


# Event records: the fields Netskope's event types carry (its REST API v2
# events pages and the Cloud Exchange / Splunk field lists), each type with
# its own fields and its own time fields beside the two every record has
# (timestamp: the event time; _insertion_epoch_timestamp: when stored).
EVENT_HEAD = '{"_id":"%s","_insertion_epoch_timestamp":%d,"timestamp":%d,'
EVENT_FORMATS = {
    "page": ('"type":"connection","access_method":"Client","traffic_type":"CloudApp",'
             '"page":"%(host)s\\/index.html","page_id":%(big)d,"page_starttime":%(t0)d,'
             '"page_endtime":%(t1)d,"page_duration":%(dur)d,"url":"https:\\/\\/%(host)s\\/'
             'p\\/%(n)d?utm_source=mail&lang=fr&q=r\\u00e9sum\\u00e9&session=%(hex)s",'
             '"domain":"%(host)s","app":"%(app)s","appcategory":"%(cat)s","cci":%(cci)d,'
             '"ccl":"high","user":"%(user)s","userip":"10.%(a)d.%(b)d.%(c)d",'
             '"srcip":"198.51.100.%(a)d","dstip":"203.0.113.%(b)d","dst_country":"US",'
             '"src_country":"%(country)s","src_location":"%(loc)s","src_latitude":%(lat)s,'
             '"src_longitude":%(lon)s,"numbytes":%(bytes)d,"client_bytes":%(cb)d,'
             '"server_bytes":%(sb)d,"req_cnt":%(a)d,"resp_cnt":%(b)d,'
             '"useragent":"Mozilla\\/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit\\/537.36 '
             '(KHTML, like Gecko) Chrome\\/119.0.0.0 Safari\\/537.36","browser":"%(browser)s",'
             '"os":"%(os)s","hostname":"HOST-%(h)04X","connection_id":%(big)d,'
             '"app_session_id":%(big2)d,"transaction_id":%(big3)d,"policy":"Web Default",'
             '"site":"%(app)s","ssl_decrypt_policy":"yes","http_status":"200",'
             '"request_id":%(big3)d,"organization_unit":"Sales\\/EMEA","notes":"%(pad)s"'),
    "application": ('"type":"nspolicy","activity":"%(activity)s","app":"%(app)s",'
                    '"appcategory":"%(cat)s","object":"Q3 r\\u00e9sultats \\"final\\".xlsx",'
                    '"object_type":"File","object_id":"%(hex)s","instance_id":"tenant-%(a)d",'
                    '"user":"%(user)s","from_user":"%(user)s","to_user":"support@test.com",'
                    '"file_size":%(bytes)d,"md5":"%(hex)s","access_method":"API Connector",'
                    '"app_activity_time":%(t0)d,"cci":%(cci)d,"policy":"Global Policy"'),
    "network": ('"type":"network","network_session_id":%(big)d,"srcip":"10.%(a)d.%(b)d.%(c)d",'
                '"dstip":"203.0.113.%(b)d","srcport":%(port)d,"dstport":443,"protocol":"TCP",'
                '"action":"allow","client_bytes":%(cb)d,"server_bytes":%(sb)d,'
                '"client_packets":%(a)d,"server_packets":%(b)d,"session_duration":%(dur)d,'
                '"session_start_time":%(t0)d,"session_end_time":%(t1)d,"tunnel_id":"%(hex)s",'
                '"tunnel_type":"IPSec","publisher_name":"pub-%(c)d","user":"%(user)s"'),
    "audit": ('"type":"admin_audit_logs","audit_log_event":"%(activity)s","user":"%(user)s",'
              '"severity_level":%(sev)d,"organization_unit":"IT","ur_normalized":"%(user)s",'
              '"supporting_data":{"data_type":"user","data_values":["%(user)s",%(a)d]},'
              '"audit_type":"admin","category":"Settings"'),
    "infrastructure": ('"type":"infrastructure","alarm_name":"Tunnel down","alarm_type":"tunnel",'
                       '"device":"ns-dp-%(c)d","serial":"%(hex)s","severity":"%(sevname)s",'
                       '"metric_value":%(dur)d.%(a)d,"alarm_description":"IPSec tunnel '
                       '%(hex)s went down","supporting_data":{"pop":"FR-PAR1","since":%(t0)d}'),
    "incident": ('"type":"incident","incident_id":%(big)d,"dlp_incident_id":%(big2)d,'
                 '"object_id":"%(hex)s","status":"new","assignee":"","severity":"%(sevname)s",'
                 '"dlp_profile":"PCI-DSS","user":"%(user)s","app":"%(app)s",'
                 '"original_incident_time":%(t0)d,"status_change_time":%(t1)d'),
    "endpoint": ('"type":"endpoint","event_type":"Device Control","device_id":"%(hex)s",'
                 '"hostname":"HOST-%(h)04X","os_version":"%(os)s","user":"%(user)s",'
                 '"device_classification":"managed","usb_vendor":"Kingston",'
                 '"usb_product_id":%(port)d,"action":"block","client_install_time":%(t0)d'),
}


def generate_event(rng, typ, rid, ins, ts):
    """The JSON text of one generated event of type typ (page: about 2 KB)."""
    b, c = rng.getrandbits(64), rng.getrandbits(64)
    app, cat, cci = APPS[(b >> 8) % len(APPS)]
    country, loc, _region, _tz, lat, lon = PLACES[(b >> 24) % len(PLACES)]
    big = 1 << 60
    v = {"host": app.replace(" ", "").lower() + ".example.com", "app": app, "cat": cat,
         "cci": cci, "user": USERS[(b >> 16) % len(USERS)], "a": b & 255, "b": (b >> 8) & 255,
         "c": (b >> 16) & 255, "country": country, "loc": loc,
         "lat": float_text(lat + (c & 255) / 10000.0), "lon": float_text(lon - (c & 255) / 10000.0),
         "bytes": c & 0xFFFFF, "cb": c & 0xFFFF, "sb": (c >> 16) & 0xFFFFF, "n": c & 0xFFFF,
         "big": big + (c >> 4), "big2": big + (b >> 4), "big3": big + ((b ^ c) >> 4),
         "hex": "%016x%016x" % (b, c), "t0": ts - (c & 63), "t1": ts, "dur": c & 63,
         "browser": BROWSERS[(c >> 36) % len(BROWSERS)], "os": OSES[(c >> 44) % len(OSES)],
         "h": (c >> 48) & 0xFFFF, "port": 1024 + (c & 0x7FFF),
         "activity": ACTIVITIES[(b >> 32) % len(ACTIVITIES)], "sev": b & 3,
         "sevname": SEVERITIES[(b >> 44) % len(SEVERITIES)],
         "pad": ("tab\\tnewline\\n caf\u00e9 " * 24)}
    text = EVENT_HEAD % (rid, ins, ts) + EVENT_FORMATS[typ] % v + "}"
    return text.encode("utf-8")


def generate(tenant_ids, spec, typ="alert"):
    """Records from a "generate" spec; ids are unique within the tenant (and type)."""
    count = int(spec["count"])
    start, end = int(spec["insertion_start"]), int(spec["insertion_end"])
    lag, seed = int(spec.get("event_lag", 0)), spec.get("seed", 1)
    if count < 0 or end <= start or lag < 0:
        raise ValueError("need count >= 0, insertion_start < insertion_end, event_lag >= 0")
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        rid = "%024x" % rng.getrandbits(96)
        while rid in tenant_ids:
            rid = "%024x" % rng.getrandbits(96)
        tenant_ids.add(rid)
        ins = start + rng.randrange(end - start)
        ts = ins - rng.randrange(lag + 1) if lag else ins
        raw = (generate_one(rng, rid, ins, ts) if typ == "alert"
               else generate_event(rng, typ, rid, ins, ts))
        out.append(Record(ins, ts, rid, raw))
    return out


# ---- tenants ---------------------------------------------------------------

class Tenant:
    """One tenant's records, fault queue and log of served requests."""

    def __init__(self, token, name, pretty):
        self.token, self.name, self.pretty = token, name, pretty
        self.mode = {}
        self.nreq = 0
        self.lock = threading.Lock()
        self.records = []          # sorted by (ins, id) unless dirty
        self.ins_keys = []         # records' insertion times, for bisect
        self.dirty = False
        self.gen_ids = set()
        self.event_cache = collections.OrderedDict()
        self.faults = collections.deque()
        self.requests = []         # (entry, ids of the records it served)
        self.types = {}            # type other than alert -> its own Tenant (records,
                                   # faults, served log), same token
        self.iterators = {}        # index name -> {"pos", "epoch", "last": [...]}
        self.arrived = []          # every record in the order it was added

    def of_type(self, typ):
        """The store of data type typ: self for alert, else its own, created on first use."""
        if typ == "alert":
            return self
        with self.lock:
            t = self.types.get(typ)
            if t is None:
                t = self.types[typ] = Tenant(self.token, self.name, self.pretty)
            t.name, t.pretty, t.mode = self.name, self.pretty, self.mode
            return t

    def add(self, records):
        with self.lock:
            self.records.extend(records)
            # what the iterator walks: records as they arrived (each batch in
            # insertion order), so one added late is still handed out
            self.arrived.extend(sorted(records, key=lambda r: (r.ins, r.id)))
            self.dirty = True
            self._sort()            # now, so that the first page is not slow

    def _sort(self):
        if self.dirty:
            self.records.sort(key=lambda r: (r.ins, r.id))
            self.ins_keys = [r.ins for r in self.records]
            self.event_cache.clear()
            self.dirty = False

    def _event_window(self, start, end):
        key = (start, end)
        hit = self.event_cache.get(key)
        if hit is None:
            hit = [r for r in self.records if start <= r.ts < end]
            self.event_cache[key] = hit
            if len(self.event_cache) > EVENT_CACHE_MAX:
                self.event_cache.popitem(last=False)
        return hit

    def select(self, q):
        """The records of one page for a parsed query."""
        q = dict(q, limit=min(q["limit"], self.mode.get("max_limit", q["limit"])))
        if self.mode.get("repeat"):
            q["offset"] = 0
        if self.mode.get("shuffle"):
            return self._select_shuffled(q)
        if self.mode.get("unfiltered"):
            with self.lock:
                self._sort()
                return self.records[q["offset"]:q["offset"] + q["limit"]]
        with self.lock:
            self._sort()
            if q["window"] == "event":
                return self._event_window(q["start"], q["end"])[q["offset"]:q["offset"] + q["limit"]]
            lo = bisect.bisect_left(self.ins_keys, q["start"])
            hi = bisect.bisect_left(self.ins_keys, q["end"])
            first = lo + q["offset"]
            return self.records[first:min(first + q["limit"], hi)] if first < hi else []

    def _select_shuffled(self, q):
        """select() with the records of each second in a fresh order."""
        with self.lock:
            self._sort()
            self.nreq += 1
            rng = random.Random(self.nreq)
            key = (lambda r: r.ts) if q["window"] == "event" else (lambda r: r.ins)
            recs = [r for r in self.records if q["start"] <= key(r) < q["end"]]
            recs.sort(key=lambda r: (key(r), rng.random()))
            return recs[q["offset"]:q["offset"] + q["limit"]]

    def iterate(self, index, op):
        """The records an iterator request hands out, or a str error. An
        index walks the records in the order they arrived, skipping those
        inserted before its start epoch; it moves on (and remembers its page)
        unless op is resend."""
        with self.lock:
            it = self.iterators.get(index)
            if op == "resend":
                return it["last"] if it and it["last"] is not None else \
                    "resend: index %r has handed out no page" % index
            if op == "next" and it is None:
                return "next: index %r was never started (use an epoch, head or tail)" % index
            if op in ("head", "tail"):
                it = self.iterators[index] = {"pos": 0 if op == "head" else len(self.arrived),
                                              "epoch": -1, "last": None}
            elif op != "next":
                it = self.iterators[index] = {"pos": 0, "epoch": int(op), "last": None}
            size, page, pos = int(self.mode.get("iter_page", ITER_PAGE)), [], it["pos"]
            while pos < len(self.arrived) and len(page) < size:
                if self.arrived[pos].ins >= it["epoch"]:
                    page.append(self.arrived[pos])
                pos += 1
            it["pos"], it["last"] = pos, page
            return page

    def all_records(self):
        with self.lock:
            self._sort()
            return list(self.records)

    def queue_faults(self, faults):
        with self.lock:
            self.faults.extend(dict(f) for f in faults)

    def next_fault(self):
        """The fault for this request, or None; honours "after"."""
        with self.lock:
            if not self.faults:
                return None
            f = self.faults[0]
            if f.get("after", 0) > 0:
                f["after"] -= 1
                return None
            return self.faults.popleft()

    def log(self, q, status, count, fault, peer, ids=None, t=None):
        """Record a request before its reply is sent (so a test that has
        read the reply always finds it); returns the entry. t: when the
        request arrived (what pacing tests measure), not when its reply was
        ready, which varies with the fake's own work."""
        entry = {"window": q["window"], "start": q["start"], "end": q["end"],
                 "offset": q["offset"], "limit": q["limit"], "status": status,
                 "count": count, "fault": fault, "t": t if t is not None else time.time(),
                 "peer": peer}
        if q["window"] == "iterator":
            entry.update(op=q["op"], index=q["index"])
        with self.lock:
            self.requests.append((entry, ids or []))
        return entry

    def unlog_ids(self, entry):
        """The reply of entry never reached the client: no records were served."""
        with self.lock:
            for i, (e, _) in enumerate(self.requests):
                if e is entry:
                    e.update(count=0, fault="client_gone")
                    self.requests[i] = (e, [])

    def served(self):
        with self.lock:
            return {"requests": [dict(e) for e, _ in self.requests],
                    "ids": [i for _, ids in self.requests for i in ids]}

    def reset(self, alerts):
        with self.lock:
            self.faults.clear()
            self.requests.clear()
            if alerts:
                self.records, self.ins_keys, self.dirty = [], [], False
                self.arrived = []
                self.gen_ids.clear()
                self.iterators.clear()
                self.event_cache.clear()


class State:
    """Every tenant, by token."""

    def __init__(self, pretty):
        self.pretty = pretty
        self.lock = threading.Lock()
        self.tenants = {}
        self.stop = threading.Event()

    def tenant(self, token):
        with self.lock:
            return self.tenants.get(token) if token else None

    def put_tenant(self, token, name, pretty, mode=None):
        with self.lock:
            t = self.tenants.get(token)
            if t is None:
                self.tenants[token] = t = Tenant(token, name, pretty)
            t.name, t.pretty, t.mode = name, pretty, dict(mode or {})
            return t


# ---- pages -----------------------------------------------------------------

def page_compact(records, wait_time, result=None):
    if result is None:
        result = b"[" + b",".join([r.raw for r in records]) + b"]"
    return b'{"ok":1,"result":%s,"wait_time":%d}' % (result, wait_time)


def page_pretty(records, wait_time):
    if not records:
        return b'{\n    "ok": 1,\n    "result": [],\n    "wait_time": %d\n}\n' % wait_time
    items = b",\n".join([INDENT * 2 + r.pretty() for r in records])
    return (b'{\n    "ok": 1,\n    "result": [\n' + items +
            b'\n    ],\n    "wait_time": %d\n}\n' % wait_time)


def parse_query(query):
    """The window, offset and limit of a data request, or a str error."""
    qs = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    if "insertionstarttime" in qs or "insertionendtime" in qs:
        window, names = "insertion", ("insertionstarttime", "insertionendtime")
    elif "starttime" in qs or "endtime" in qs:
        window, names = "event", ("starttime", "endtime")
    else:
        return "need insertionstarttime/insertionendtime or starttime/endtime"
    try:
        q = {"window": window, "start": int(qs[names[0]]), "end": int(qs[names[1]]),
             "limit": int(qs.get("limit", "100")), "offset": int(qs.get("offset", "0"))}
    except (KeyError, ValueError):
        return "%s and %s must both be integers; limit and offset too" % names
    if not 1 <= q["limit"] <= MAX_LIMIT:
        return "limit must be between 1 and %d" % MAX_LIMIT
    if q["offset"] < 0:
        return "offset must not be negative"
    return q


def check_faults(faults):
    if not isinstance(faults, list):
        raise ValueError("faults must be a list")
    for f in faults:
        if not isinstance(f, dict) or f.get("kind") not in FAULT_KINDS:
            raise ValueError("unknown fault %r; kinds: %s" % (f, ", ".join(sorted(FAULT_KINDS))))
        if f["kind"] == "status" and not isinstance(f.get("code"), int):
            raise ValueError("a status fault needs an integer code")


# ---- HTTP ------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-netskope/1"
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("fake_netskope: " + (fmt % args) + "\n")

    def peer(self):
        """The client's port: requests with the same peer shared a connection."""
        return self.client_address[1]

    # -- replies

    def send_body(self, code, body, headers=(), length=None):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, code, obj, headers=()):
        self.send_body(code, json.dumps(obj).encode("utf-8"), headers)

    def read_json(self):
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"{}")

    # -- routing

    def do_GET(self):
        self.arrived = time.time()
        url = urlsplit(self.path)
        if url.path.startswith("/_admin/"):
            return self.admin_get(url)
        if url.path.startswith(EXPORT_PREFIX) and url.path[len(EXPORT_PREFIX):] in DATA_TYPES:
            return self.export_get(url, url.path[len(EXPORT_PREFIX):])
        typ = url.path[len(DATA_PREFIX):] if url.path.startswith(DATA_PREFIX) else None
        if typ not in DATA_TYPES:
            return self.send_json(404, {"status": 404, "message": "no such endpoint: " + url.path})
        self.data_get(url, typ)

    def do_POST(self):
        url = urlsplit(self.path)
        if not url.path.startswith("/_admin/"):
            return self.send_json(405, {"status": 405, "message": "method not allowed"})
        try:
            self.admin_post(url.path, self.read_json())
        except (ValueError, KeyError, TypeError) as e:
            self.send_json(400, {"error": "%s: %s" % (type(e).__name__, e)})

    # -- the data API

    def data_get(self, url, typ="alert"):
        state = self.server.state
        tenant = state.tenant(self.headers.get("Netskope-Api-Token"))
        if tenant is None:
            return self.send_json(401, {"status": 401, "message": "Unauthorized: invalid token"},
                                  RATELIMIT_HEADERS)
        tenant = tenant.of_type(typ)
        q = parse_query(url.query)
        if isinstance(q, str):
            return self.send_json(400, {"status": 400, "message": q}, RATELIMIT_HEADERS)
        fault = tenant.next_fault()
        if fault is None:
            return self.serve_page(tenant, q, 0)
        getattr(self, "fault_" + fault["kind"])(tenant, q, fault)

    # -- the dataexport iterator

    def export_get(self, url, typ):
        tenant = self.server.state.tenant(self.headers.get("Netskope-Api-Token"))
        if tenant is None:
            return self.send_json(401, {"status": 401, "message": "Unauthorized: invalid token"},
                                  RATELIMIT_HEADERS)
        tenant = tenant.of_type(typ)
        qs = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        op, index = qs.get("operation", ""), qs.get("index", "")
        q = {"window": "iterator", "start": None, "end": None, "offset": 0, "limit": 0,
             "op": op, "index": index}
        if not (op in ("next", "head", "tail", "resend") or op.isdigit()):
            return self.send_json(400, {"message": "operation must be next, head, tail, "
                                        "resend or an epoch timestamp"}, RATELIMIT_HEADERS)
        fault = tenant.next_fault()
        kind = fault["kind"] if fault else None
        if kind in ("status", "ok0"):         # refused: the index does not move
            return getattr(self, "fault_" + kind)(tenant, q, fault)
        recs = tenant.iterate(index, op)
        if isinstance(recs, str):
            tenant.log(q, 400, 0, kind, self.peer(), t=self.arrived)
            return self.send_json(400, {"message": recs}, RATELIMIT_HEADERS)
        self.export_reply(tenant, q, recs, fault)

    def export_reply(self, tenant, q, recs, fault):
        kind = fault["kind"] if fault else None
        if kind == "slow":
            self.server.state.stop.wait(float(fault.get("seconds", 1)))
        wait = int(fault.get("seconds", 1)) if kind == "wait_time" else \
            int(tenant.mode.get("iter_wait", 0))
        hwm = recs[-1].ins if recs else int(time.time())
        body = b'{"ok":1,"result":[' + b",".join(r.raw for r in recs) + \
            b'],"wait_time":%d,"timestamp_hwm":%d}' % (wait, hwm)
        if kind == "no_ok":
            body = b'{' + body[len(b'{"ok":1,'):]
        elif kind == "not_array":
            body = b'{"ok":1,"result":{"message":"result is not a list"},"wait_time":0}'
        elif kind == "malformed":
            body = body[:len(body) // 2] + b"<html>502 Bad Gateway</html>"
        if kind in ("lost", "hang"):
            tenant.log(q, None, 0, kind, self.peer(), t=self.arrived)
            if kind == "hang":
                return self.fault_hang(tenant, q, fault, log=False)
            self.close_connection = True
            return
        ids = [r.id for r in recs] if kind in (None, "slow", "wait_time", "ratelimit") else []
        entry = tenant.log(q, 200, len(recs), kind, self.peer(), ids, t=self.arrived)
        headers = RATELIMIT_HEADERS
        if kind == "ratelimit":
            headers = (("ratelimit-limit", "4"), ("ratelimit-remaining", "0"),
                       ("ratelimit-reset", str(fault.get("reset", 1))))
        length = None
        if kind == "truncated":
            self.close_connection = True
            length, body = len(body), body[:len(body) // 2]
        try:
            self.send_body(200, body, headers, length=length)
        except OSError:
            tenant.unlog_ids(entry)
            raise

    def serve_page(self, tenant, q, wait_time, fault=None, headers=RATELIMIT_HEADERS):
        recs = tenant.select(q)
        if tenant.pretty or self.server.state.pretty:
            body = page_pretty(recs, wait_time)
        else:
            body = page_compact(recs, wait_time)
        entry = tenant.log(q, 200, len(recs), fault, self.peer(), [r.id for r in recs], t=self.arrived)
        try:
            self.send_body(200, body, headers)
        except OSError:             # the client gave up (a timeout): nothing was served
            tenant.unlog_ids(entry)
            raise

    # -- faults, one method per kind

    def fault_status(self, tenant, q, f):
        code = f["code"]
        headers = [h for h in RATELIMIT_HEADERS if code != 429 or h[0] == "ratelimit-limit"]
        if code == 429:
            headers.append(("ratelimit-remaining", "0"))
            if "ratelimit_reset" not in f:
                headers.append(("ratelimit-reset", "1"))
        if "retry_after" in f:
            headers.append(("Retry-After", str(f["retry_after"])))
        if "ratelimit_reset" in f:
            headers = [h for h in headers if h[0] != "ratelimit-reset"]
            headers.append(("ratelimit-reset", str(f["ratelimit_reset"])))
        tenant.log(q, code, 0, "status", self.peer(), t=self.arrived)
        if "body" in f:
            return self.send_body(code, f["body"].encode("utf-8"), headers)
        default = "Too many requests" if code == 429 else "injected fault"
        self.send_json(code, {"status": code, "message": f.get("message", default)}, headers)

    def fault_ok0(self, tenant, q, f):
        tenant.log(q, 200, 0, "ok0", self.peer(), t=self.arrived)
        body = {"ok": 0, "result": [], "message": f.get("message", "query failed")}
        self.send_json(200, body, RATELIMIT_HEADERS)

    def fault_ratelimit(self, tenant, q, f):
        headers = (("ratelimit-limit", "4"), ("ratelimit-remaining", "0"),
                   ("ratelimit-reset", str(f.get("reset", 1))))
        self.serve_page(tenant, q, 0, "ratelimit", headers)

    def fault_malformed(self, tenant, q, f):
        recs = tenant.select(q)
        page = page_compact(recs, 0)
        tenant.log(q, 200, 0, "malformed", self.peer(), t=self.arrived)
        self.send_body(200, page[:len(page) // 2] + b"<html>502 Bad Gateway</html>", RATELIMIT_HEADERS)

    def fault_truncated(self, tenant, q, f):
        recs = tenant.select(q)
        page = page_compact(recs, 0)
        tenant.log(q, 200, len(recs), "truncated", self.peer(), t=self.arrived)
        self.close_connection = True
        self.send_body(200, page[:len(page) // 2], RATELIMIT_HEADERS, length=len(page))

    def fault_not_array(self, tenant, q, f):
        tenant.log(q, 200, 0, "not_array", self.peer(), t=self.arrived)
        self.send_body(200, page_compact([], 0, b'{"message":"result is not a list"}'), RATELIMIT_HEADERS)

    def fault_slow(self, tenant, q, f):
        self.server.state.stop.wait(float(f.get("seconds", 1)))
        self.serve_page(tenant, q, 0, "slow")

    def fault_hang(self, tenant, q, f, log=True):
        entry = tenant.log(q, None, 0, "hang", self.peer(), t=self.arrived) if log else \
            tenant.requests[-1][0]
        # The client sent its whole request: the socket turns readable
        # only when it hangs up (EOF or reset).
        while not self.server.state.stop.is_set():
            if select.select([self.connection], [], [], 0.05)[0]:
                with tenant.lock:
                    entry["ended"] = time.time()
                break
        self.close_connection = True

    def fault_wait_time(self, tenant, q, f):
        self.serve_page(tenant, q, int(f.get("seconds", 1)), "wait_time")

    # -- the admin API

    def admin_tenant(self, args):
        if not isinstance(args.get("token"), str) or not args["token"]:
            raise ValueError("token must be a non-empty string")
        mode = args.get("mode") or {}
        if not isinstance(mode, dict) or set(mode) - {"shuffle", "repeat", "max_limit", "unfiltered",
                                                      "iter_page", "iter_wait"}:
            raise ValueError("mode: an object with shuffle, repeat, max_limit, unfiltered, "
                             "iter_page, iter_wait")
        self.server.state.put_tenant(args["token"], str(args.get("name", "")),
                                     bool(args.get("pretty")), mode)
        return {"ok": True}

    def admin_alerts(self, tenant, args):
        if "generate" in args:
            recs = generate(tenant.gen_ids, args["generate"], args.get("type", "alert"))
        elif isinstance(args.get("raw"), list):
            recs = [record_from_text(t) for t in args["raw"]]
        else:
            raise ValueError('need "generate" or "raw"')
        tenant.add(recs)
        return {"ok": True, "added": len(recs)}

    def admin_faults(self, tenant, args):
        check_faults(args.get("faults"))
        tenant.queue_faults(args["faults"])
        return {"ok": True, "queued": len(args["faults"])}

    def admin_reset(self, tenant, args):
        tenant.reset(bool(args.get("alerts")))
        return {"ok": True}

    def admin_post(self, path, args):
        if path == "/_admin/tenant":
            return self.send_json(200, self.admin_tenant(args))
        handlers = {"/_admin/alerts": self.admin_alerts, "/_admin/faults": self.admin_faults,
                    "/_admin/reset": self.admin_reset}
        if path not in handlers:
            return self.send_json(404, {"error": "no such admin endpoint: " + path})
        tenant = self.server.state.tenant(args.get("token"))
        if tenant is None:
            return self.send_json(404, {"error": "no tenant with that token"})
        if args.get("type", "alert") not in DATA_TYPES:
            raise ValueError("type must be one of " + ", ".join(DATA_TYPES))
        self.send_json(200, handlers[path](tenant.of_type(args.get("type", "alert")), args))

    def admin_get(self, url):
        token = parse_qs(url.query).get("token", [None])[-1]
        typ = parse_qs(url.query).get("type", ["alert"])[-1]
        tenant = self.server.state.tenant(token)
        if tenant is None or typ not in DATA_TYPES:
            return self.send_json(404, {"error": "no tenant with that token (or no such type)"})
        tenant = tenant.of_type(typ)
        if url.path == "/_admin/served":
            return self.send_json(200, tenant.served())
        if url.path == "/_admin/alerts":
            return self.send_json(200, {"records": [r.raw.decode("utf-8") for r in tenant.all_records()]})
        self.send_json(404, {"error": "no such admin endpoint: " + url.path})


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], OSError) or self.verbose:
            super().handle_error(request, client_address)

    def __init__(self, addr, pretty, verbose):
        self.state = State(pretty)
        self.verbose = verbose
        super().__init__(addr, Handler)


def write_port_file(path, port):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.replace(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", help="write the listening port here")
    ap.add_argument("--pretty", action="store_true", help="pretty-print every page")
    ap.add_argument("--verbose", action="store_true", help="log each request to stderr")
    args = ap.parse_args(argv)

    server = FakeServer(("127.0.0.1", args.port), args.pretty, args.verbose)

    def stop(signum, frame):
        server.state.stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    port = server.server_address[1]
    if args.port_file:
        write_port_file(args.port_file, port)
    else:
        print("fake_netskope: listening on http://127.0.0.1:%d" % port, flush=True)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
