#!/usr/bin/env python3
"""baseline_recipe.py - what Google's Cloud Run recipe does per alert, as a
benchmark baseline for nscollect (tests/bench/bench.py runs it).

    python3 tests/bench/baseline_recipe.py --url URL --token-env VAR \
        --start S --end E --page-size N --out FILE

The recipe (reference/netskope-alerts-to-secops-guide.txt) fetches pages
with urllib3, json.loads() each page, then json.dumps(r, ensure_ascii=False)
each record and joins them into NDJSON. This script does the same work per
page and per record against the fake Netskope, with two differences that
only make the baseline faster and leaner, never slower:
  - it pages with limit/offset on the insertion-time window (the fake has
    no "operation" iterator), and stops at a short page;
  - it writes each page's NDJSON to a local file as it goes instead of
    holding every record until one GCS upload at the end.
It uses urllib3 (PoolManager, keep-alive) when importable, else
http.client on one kept-alive connection; the client used is printed on
stdout as the last line: "client=urllib3 records=N bytes=B pages=P".
The token comes from an environment variable, never from argv.
"""

import argparse
import json
import os
import sys
from urllib.parse import urlsplit

ALERT_PATH = "/api/v2/events/data/alert"


def client(base):
    """(name, get(path, headers) -> (status, body bytes))."""
    try:
        import urllib3
        http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=5.0, read=120.0),
                                   retries=False)

        def get(path, headers):
            r = http.request("GET", base + path, headers=headers)
            return r.status, r.data
        return "urllib3 %s" % urllib3.__version__, get
    except ImportError:
        import http.client
        u = urlsplit(base)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)

        def get(path, headers):
            conn.request("GET", path, headers=headers)
            r = conn.getresponse()
            return r.status, r.read()
        return "http.client", get


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--token-env", required=True)
    ap.add_argument("--start", type=int, required=True)
    ap.add_argument("--end", type=int, required=True)
    ap.add_argument("--page-size", type=int, default=10000)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    name, get = client(a.url.rstrip("/"))
    headers = {"Netskope-Api-Token": os.environ[a.token_env], "Accept": "application/json",
               "User-Agent": "GoogleSecOps-NetskopeAlertCollector/1.0"}
    records = nbytes = pages = 0
    newest = None
    offset = 0
    with open(a.out, "wb") as out:
        while True:
            path = "%s?insertionstarttime=%d&insertionendtime=%d&limit=%d&offset=%d" % (
                ALERT_PATH, a.start, a.end, a.page_size, offset)
            status, body = get(path, headers)
            pages += 1
            if status != 200:
                print("HTTP error %d: %s" % (status, body[:200]), file=sys.stderr)
                return 1
            data = json.loads(body.decode("utf-8"))
            page = data.get("result", [])
            for event in page:                       # the recipe's newest_time scan
                t = event.get("timestamp")
                if t and (newest is None or t > newest):
                    newest = t
            if page:
                text = "\n".join([json.dumps(r, ensure_ascii=False) for r in page]) + "\n"
                data = text.encode("utf-8")
                out.write(data)
                nbytes += len(data)
                records += len(page)
            if len(page) < a.page_size:
                break
            offset += len(page)
    print("client=%s records=%d bytes=%d pages=%d" % (name.split()[0], records, nbytes, pages))
    return 0


if __name__ == "__main__":
    sys.exit(main())
