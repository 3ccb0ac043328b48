"""emulator.py - Google's Cloud Storage emulator (firebase-tools, installed
under tests/google/node_modules by tests/google/setup.sh) for nscollect's
tests.

    from emulator import StorageEmulator

    with StorageEmulator() as emu:
        env = {"STORAGE_EMULATOR_HOST": emu.url}   # nscollect's real upload path
        ...
        objs = emu.objects("acme-secops")          # {name: bytes}, as test_gcs's fake

start() writes a private project directory (firebase.json from
tests/google/firebase.json with free loopback ports, storage.rules), then
runs `firebase emulators:start --only storage --project demo-nscollect` in
its own process group (killed with it by stop(); the emulator also gets
SIGTERM when this process dies) and polls the port until the emulator
answers, with a deadline. HOME and the firebase cache are private too, so
nothing is read from or written to the user's firebase configuration.

The rules runtime: the emulator starts Google's cloud-storage-rules-runtime
jar, which it downloads on first use from a host this machine cannot
reach, and no package ships it. Unless $NSCOLLECT_RULES_JAR names the real
jar, the cache holds a marker file in its place and tests/google/bin/java
(first on PATH) runs tests/google/rules_standin.py for it; see that file:
the GCS JSON API never consults rules. Everything nscollect talks to (the
HTTP server, uploads, the storage layer, object metadata) is the emulator's.
"""

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import http.client

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
from harness import wait_until  # noqa: E402

FIREBASE = os.path.join(HERE, "node_modules", ".bin", "firebase")
RULES_JAR = "cloud-storage-rules-runtime-v1.1.3.jar"   # firebase-tools 13.35.1's
STANDIN_MARK = b"nscollect rules stand-in (not Google's jar)\n"
PROJECT = "demo-nscollect"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    """In the child: SIGTERM when the test process dies (Linux prctl)."""
    os.setsid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def installed():
    return os.access(FIREBASE, os.X_OK)


class StorageEmulator:
    def __init__(self, start_timeout=120.0):
        self.start_timeout = start_timeout
        self.proc = None
        self.dir = None
        self.port = None
        self.started_in = None   # seconds from spawn to the first answer

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    # -- life cycle

    def _write_project(self):
        with open(os.path.join(HERE, "firebase.json")) as f:
            conf = json.load(f)
        self.port = free_port()
        emus = conf["emulators"]
        emus["storage"]["port"] = self.port
        emus["hub"]["port"] = free_port()
        emus["logging"]["port"] = free_port()
        with open(os.path.join(self.dir, "firebase.json"), "w") as f:
            json.dump(conf, f, indent=2)
        shutil.copy(os.path.join(HERE, "storage.rules"), self.dir)
        cache = os.path.join(self.dir, "cache")
        os.makedirs(cache)
        os.makedirs(os.path.join(self.dir, "home"))
        real = os.environ.get("NSCOLLECT_RULES_JAR")
        if real:
            os.symlink(os.path.abspath(real), os.path.join(cache, RULES_JAR))
        else:
            with open(os.path.join(cache, RULES_JAR), "wb") as f:
                f.write(STANDIN_MARK)
        return cache

    def _env(self, cache):
        env = dict(os.environ)
        env.update({"PATH": os.path.join(HERE, "bin") + os.pathsep + env.get("PATH", ""),
                    "FIREBASE_EMULATORS_PATH": cache, "HOME": os.path.join(self.dir, "home"),
                    "XDG_CONFIG_HOME": os.path.join(self.dir, "home", ".config"),
                    "NO_UPDATE_NOTIFIER": "1", "FIREBASE_CLI_EXPERIMENTS": ""})
        for k in ("STORAGE_EMULATOR_HOST", "FIREBASE_STORAGE_EMULATOR_HOST",
                  "GOOGLE_APPLICATION_CREDENTIALS"):
            env.pop(k, None)
        return env

    def _answers(self):
        try:
            status, _, _ = self.request("GET", "/b", timeout=2)   # list buckets
            return status == 200
        except OSError:
            return False

    def start(self):
        if not installed():
            raise AssertionError("firebase-tools is not installed: run sh tests/google/setup.sh "
                                 "(make test-google does)")
        self.dir = tempfile.mkdtemp(prefix="nscollect-gcs-emulator-")
        env = self._env(self._write_project())
        self.log = open(os.path.join(self.dir, "emulator.log"), "w+")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [FIREBASE, "emulators:start", "--only", "storage", "--project", PROJECT],
            cwd=self.dir, env=env, stdin=subprocess.DEVNULL, stdout=self.log,
            stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        try:
            wait_until(lambda: self.proc.poll() is not None or self._answers(),
                       self.start_timeout, interval=0.2, what="the Storage emulator's port")
            if self.proc.poll() is not None:
                raise AssertionError("the Storage emulator exited (%s):\n%s" % (
                    self.proc.returncode, self.output()[-3000:]))
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - t0
        return self

    def output(self):
        self.log.flush()
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGINT)     # the CLI's own clean stop
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        if self.proc:
            try:   # the process group's stragglers (the rules runtime)
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.proc = None
        if self.dir:
            self.log.close()
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- the GCS JSON API, as a client would use it

    def request(self, method, path, body=None, headers=None, timeout=60.0):
        """(status, {lower-case header: value}, body bytes)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def upload(self, bucket, name, data, content_type="application/x-ndjson",
               if_generation_match=None):
        q = [("uploadType", "media"), ("name", name)]
        if if_generation_match is not None:
            q.append(("ifGenerationMatch", str(if_generation_match)))
        return self.request("POST", "/upload/storage/v1/b/%s/o?%s" % (
            bucket, urllib.parse.urlencode(q, quote_via=urllib.parse.quote)), data,
            {"Content-Type": content_type})

    def object_list(self, bucket):
        """The object resources of bucket (every page), in name order."""
        items, token = [], None
        while True:
            q = "?pageToken=" + urllib.parse.quote(token, safe="") if token else ""
            status, _, body = self.request("GET", "/storage/v1/b/%s/o%s" % (bucket, q))
            assert status == 200, ("list", bucket, status, body[:300])
            page = json.loads(body)
            items += page.get("items") or []
            token = page.get("nextPageToken")
            if not token:
                return sorted(items, key=lambda o: o["name"])

    def metadata(self, bucket, name):
        status, _, body = self.request("GET", "/storage/v1/b/%s/o/%s" % (
            bucket, urllib.parse.quote(name, safe="")))
        assert status == 200, ("metadata", bucket, name, status, body[:300])
        return json.loads(body)

    def media(self, bucket, name, accept_encoding=None):
        """(headers, bytes) of one object as stored (alt=media)."""
        hdrs = {"Accept-Encoding": accept_encoding} if accept_encoding else {}
        status, h, body = self.request("GET", "/download/storage/v1/b/%s/o/%s?alt=media" % (
            bucket, urllib.parse.quote(name, safe="")), headers=hdrs)
        assert status == 200, ("media", bucket, name, status, body[:300])
        return h, body

    def objects(self, bucket):
        """{object name: bytes} of every object in bucket."""
        return {o["name"]: self.media(bucket, o["name"])[1] for o in self.object_list(bucket)}
