"""harness.py - helpers for nscollect's end-to-end tests (stdlib only).

    from harness import FakeNetskope, Workspace, ndjson_lines, minify

    with FakeNetskope() as fake, Workspace() as ws:
        fake.add_tenant("tok-acme", "acme")
        fake.generate("tok-acme", 500, insertion_start=t0, insertion_end=t1, seed=1)
        fake.faults("tok-acme", [{"kind": "status", "code": 429, "retry_after": 1}])
        rc, out, err = ws.run_cli(["tenant", "add", "acme", "--url", fake.url],
                                  stdin="tok-acme")
        rc, out, err = ws.run_cli(["run", "--once"])
        assert sorted(ndjson_lines(ws.out)) == sorted(minify(r) for r in fake.alerts("tok-acme"))

FakeNetskope starts tests/fake_netskope.py on a free loopback port (waits for
its port file, with a deadline) and wraps its admin API; see that file's
docstring for the routes and fault kinds. Workspace is a temporary directory
with a config file (output_dir inside it) and a database path; run_cli()
runs $NSCOLLECT_BIN (default: ./nscollect at the top of the repository) as
`nscollect -c CONF -d DB ARGS...` there. Loopback is added to no_proxy, so
a proxy in the environment never sees the test traffic.
"""

import atexit
import gzip
import http.client
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from urllib.parse import urlencode

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAKE = os.path.join(REPO, "tests", "fake_netskope.py")
ALERT_PATH = "/api/v2/events/data/alert"
LOOPBACK = "127.0.0.1,localhost,::1"


def nscollect_bin():
    """$NSCOLLECT_BIN as an absolute path, else ./nscollect in the repository."""
    b = os.environ.get("NSCOLLECT_BIN")
    return os.path.abspath(b) if b else os.path.join(REPO, "nscollect")


def wait_until(pred, timeout=10.0, interval=0.02, what="condition"):
    """Poll pred() until it returns a true value (returned); AssertionError
    after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


# ---- JSON text --------------------------------------------------------------

_STR_OR_WS = re.compile(r'("(?:[^"\\]|\\.)*")|[ \t\n\r]+')
_STR_OR_WS_B = re.compile(rb'("(?:[^"\\]|\\.)*")|[ \t\n\r]+')


def minify(text):
    """JSON text with whitespace outside strings removed, nothing else
    changed (the rule nscollect applies to every record). str or bytes."""
    if isinstance(text, bytes):
        return _STR_OR_WS_B.sub(lambda m: m.group(1) or b"", text)
    return _STR_OR_WS.sub(lambda m: m.group(1) or "", text)


def ndjson_files(root):
    """{path relative to root: [lines]} for every *.ndjson and *.ndjson.gz
    under root. Raises ValueError for a file whose last line has no newline."""
    files = {}
    for d, _, names in os.walk(root):
        for n in sorted(names):
            if not (n.endswith(".ndjson") or n.endswith(".ndjson.gz")):
                continue
            path = os.path.join(d, n)
            with open(path, "rb") as f:
                data = f.read()
            if n.endswith(".gz"):
                data = gzip.decompress(data)
            if data and not data.endswith(b"\n"):
                raise ValueError("%s: last line has no newline" % path)
            files[os.path.relpath(path, root)] = data.decode("utf-8").split("\n")[:-1]
    return dict(sorted(files.items()))


def ndjson_lines(root):
    """Every line of every NDJSON file under root (files in name order)."""
    return [line for lines in ndjson_files(root).values() for line in lines]


# ---- the fake Netskope ------------------------------------------------------

class FakeServer:
    """A fake server script (tests/fake_*.py) in a subprocess on a free
    loopback port, and JSON requests to it. Subclasses name the script
    and its extra arguments."""

    SCRIPT = None
    NAME = "fake"

    def __init__(self, verbose=False, start_timeout=15.0):
        self.verbose, self.start_timeout = verbose, start_timeout
        self.proc = None
        self.port = None
        self.dir = None

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def server_args(self):
        return []

    def start(self):
        self.dir = tempfile.mkdtemp(prefix=self.NAME + "-")
        port_file = os.path.join(self.dir, "port")
        cmd = [sys.executable, self.SCRIPT, "--port", "0", "--port-file", port_file]
        cmd += self.server_args() + (["--verbose"] if self.verbose else [])
        self.log = open(os.path.join(self.dir, "stderr"), "w+")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log,
                                     stdin=subprocess.DEVNULL)
        try:
            wait_until(lambda: self.proc.poll() is not None or os.path.exists(port_file),
                       self.start_timeout, what="%s's port file" % self.NAME)
            if self.proc.poll() is not None:
                raise AssertionError("%s exited (%s): %s" % (self.NAME, self.proc.returncode,
                                                             self.stderr()))
            with open(port_file) as f:
                self.port = int(f.read())
        except BaseException:
            self.stop()
            raise
        return self

    def stderr(self):
        self.log.flush()
        with open(self.log.name) as f:
            return f.read()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.dir:
            self.log.close()
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def request(self, method, path, body=None, headers=None, timeout=600.0):
        """(status, {lower-case header: value}, body bytes) of one request."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            hdrs = dict(headers or {})
            if data is not None:
                hdrs["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def _admin(self, method, path, body=None):
        status, _, data = self.request(method, path, body)
        if status != 200:
            raise AssertionError("%s admin %s %s: HTTP %d %s" % (self.NAME, method, path, status,
                                                                 data[:500]))
        return json.loads(data)


class FakeNetskope(FakeServer):
    """tests/fake_netskope.py in a subprocess, and its admin API."""

    SCRIPT = FAKE
    NAME = "fake-netskope"

    def __init__(self, pretty=False, verbose=False, start_timeout=15.0):
        super().__init__(verbose, start_timeout)
        self.pretty = pretty

    def server_args(self):
        return ["--pretty"] if self.pretty else []

    def page(self, token, start, end, limit=100, offset=0, event=False, timeout=30.0):
        """GET one page of the alert endpoint the way nscollect does."""
        names = ("starttime", "endtime") if event else ("insertionstarttime", "insertionendtime")
        q = urlencode([(names[0], start), (names[1], end), ("limit", limit), ("offset", offset)])
        hdrs = {"Netskope-Api-Token": token} if token is not None else {}
        return self.request("GET", ALERT_PATH + "?" + q, headers=hdrs, timeout=timeout)

    # -- admin API

    def add_tenant(self, token, name="", pretty=False, mode=None):
        """mode: {"shuffle": True, "repeat": True, "max_limit": L} (fake_netskope.py)."""
        body = {"token": token, "name": name, "pretty": pretty}
        if mode:
            body["mode"] = mode
        return self._admin("POST", "/_admin/tenant", body)

    def generate(self, token, count, insertion_start, insertion_end, event_lag=0, seed=1,
                 type="alert"):
        """Generate count alerts (or events of type) with insertion times in
        [insertion_start, insertion_end)."""
        spec = {"count": count, "insertion_start": insertion_start,
                "insertion_end": insertion_end, "event_lag": event_lag, "seed": seed}
        return self._admin("POST", "/_admin/alerts", {"token": token, "generate": spec,
                                                      "type": type})["added"]

    def add_raw(self, token, records):
        """Add records (JSON texts, or dicts serialized here) verbatim."""
        texts = [r if isinstance(r, str) else json.dumps(r) for r in records]
        return self._admin("POST", "/_admin/alerts", {"token": token, "raw": texts})["added"]

    def faults(self, token, faults, type="alert"):
        return self._admin("POST", "/_admin/faults", {"token": token, "faults": list(faults),
                                                      "type": type})["queued"]

    def served(self, token, type="alert"):
        """{"requests": [{window,start,end,offset,limit,status,count,fault,t,peer}...],
        "ids": [...]} for the tenant (its records of type)."""
        return self._admin("GET", "/_admin/served?" + urlencode({"token": token, "type": type}))

    def alerts(self, token, type="alert"):
        """The raw JSON text of every stored record (of type), in served order."""
        return self._admin("GET", "/_admin/alerts?" + urlencode({"token": token,
                                                                  "type": type}))["records"]

    def reset(self, token, alerts=False, type="alert"):
        """Forget the served log and queued faults (and the records if alerts)."""
        return self._admin("POST", "/_admin/reset", {"token": token, "alerts": alerts,
                                                     "type": type})


# ---- the nscollect CLI ------------------------------------------------------

def db_rows(db, sql, *args):
    """The rows of sql on database file db, read only (as an operator's
    sqlite3 would)."""
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=30)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def db_value(db, sql, *args):
    """The first column of the first row of sql on database file db, read
    only, or None without a row."""
    rows = db_rows(db, sql, *args)
    return rows[0][0] if rows else None


def cli_env(env=None):
    """The environment for nscollect: ours, loopback in no_proxy, then env
    (a None value removes a variable)."""
    e = dict(os.environ)
    for k in ("no_proxy", "NO_PROXY"):
        e[k] = LOOPBACK + ("," + e[k] if e.get(k) else "")
    e.pop("NSCOLLECT_CONFIG", None)
    for k, v in (env or {}).items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = v
    return e


class Workspace:
    """A temporary directory with nscollect.conf, nscollect.db and out/."""

    def __init__(self, config_extra="", keep=False):
        self.dir = tempfile.mkdtemp(prefix="nscollect-e2e-")
        self.conf = os.path.join(self.dir, "nscollect.conf")
        self.db = os.path.join(self.dir, "nscollect.db")
        self.out = os.path.join(self.dir, "out")
        self.keep = keep
        self.write_config(config_extra)

    def write_config(self, extra=""):
        """The config file: output_dir in the workspace, then extra text."""
        with open(self.conf, "w") as f:
            f.write('output_dir = "%s";\n%s\n' % (self.out, extra))

    def argv(self, args):
        return [nscollect_bin(), "-c", self.conf, "-d", self.db] + [str(a) for a in args]

    def run_cli(self, args, stdin=None, env=None, timeout=300):
        """Run nscollect ARGS; returns (rc, stdout, stderr) as text."""
        if isinstance(stdin, str):
            stdin = stdin.encode("utf-8")
        p = subprocess.run(self.argv(args), input=stdin, cwd=self.dir, env=cli_env(env),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                           stdin=None if stdin is not None else subprocess.DEVNULL)
        return (p.returncode, p.stdout.decode("utf-8", "replace"),
                p.stderr.decode("utf-8", "replace"))

    def spawn(self, args, env=None):
        """Start nscollect ARGS in the background (e.g. the daemon); its
        output goes to files in the workspace. Stop it with proc.terminate()
        or proc.kill()."""
        n = len([x for x in os.listdir(self.dir) if x.startswith("spawn")])
        out = open(os.path.join(self.dir, "spawn%d.out" % n), "wb")
        err = open(os.path.join(self.dir, "spawn%d.err" % n), "wb")
        proc = subprocess.Popen(self.argv(args), cwd=self.dir, env=cli_env(env),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        proc.stdout_path, proc.stderr_path = out.name, err.name
        out.close()
        err.close()
        return proc

    def query(self, sql, *args):
        """The first column of the first row of sql on the database (read
        only, as an operator's sqlite3 would), or None without a row."""
        return db_value(self.db, sql, *args)

    def query_rows(self, sql, *args):
        """Every row of sql on the database, read only."""
        return db_rows(self.db, sql, *args)

    def lines(self):
        """Every NDJSON line delivered to the default file sink."""
        return ndjson_lines(self.out) if os.path.isdir(self.out) else []

    def cleanup(self):
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()


_default_ws = None


def run_cli(args, stdin=None, env=None, timeout=300):
    """Workspace.run_cli on one module-wide workspace (made on first use,
    removed at exit)."""
    global _default_ws
    if _default_ws is None:
        _default_ws = Workspace()
        atexit.register(_default_ws.cleanup)
    return _default_ws.run_cli(args, stdin=stdin, env=env, timeout=timeout)


def run_tests(namespace):
    """A test module's main: run its test_*() functions (or those whose
    name contains an argument), print ok/FAIL with timings, exit 1 on any
    failure. Usage: `if __name__ == "__main__": run_tests(globals())`."""
    only = sys.argv[1:]
    tests = [v for k, v in sorted(namespace.items()) if k.startswith("test_") and callable(v)]
    failed = 0
    for test in tests:
        if only and not any(o in test.__name__ for o in only):
            continue
        t0 = time.time()
        try:
            test()
            print("ok   %s (%.1f s)" % (test.__name__, time.time() - t0), flush=True)
        except Exception as e:          # report every failure, then exit 1
            failed += 1
            print("FAIL %s: %s: %s" % (test.__name__, type(e).__name__, e), flush=True)
    sys.exit(1 if failed else 0)
