#!/usr/bin/env python3
"""fake_gcs.py - a small fake of Google Cloud Storage, Google's OAuth2 token
endpoint and the GCE metadata server, for nscollect's tests. Python 3
standard library only; JWT signatures are checked with `openssl dgst`.

Usage:
    python3 tests/fake_gcs.py [--host 127.0.0.1] [--port 0] [--port-file F]
                              [--bucket NAME ...] [--no-auth] [--verbose]
                              [--parent PID]

--port 0 picks a free port; the chosen port is written (atomically) to
--port-file once the server listens. With --parent the server exits
when process PID is gone (a crashed test leaves no server behind). Base URL: http://127.0.0.1:PORT.
One server plays all three roles, so point everything at it:
    key file "token_uri":  http://127.0.0.1:PORT/token
    gcs.endpoint:          http://127.0.0.1:PORT
    GCE_METADATA_HOST:     127.0.0.1:PORT
    STORAGE_EMULATOR_HOST: http://127.0.0.1:PORT  (then start with --no-auth
                           or POST /_admin/config {"require_auth": false})

GCS routes (errors use GCS's {"error":{"code","message","errors":[...]}}):
    POST /upload/storage/v1/b/{bucket}/o?uploadType=media&name=N[&ifGenerationMatch=0]
        body = object bytes; Content-Type is stored as the object's type.
        Checks, in order: auth (401: no/unknown/expired/revoked bearer token,
        unless auth is off), bucket exists (404), bucket's allow_email
        matches the token's account (403), injected faults (503), the
        precondition (412 when ifGenerationMatch=0 and the name exists).
        200 with the object resource, the fields Google's Storage emulator
        returns (name, bucket, generation, size, contentType, md5Hash,
        crc32c, etag, ...; tests/google/test_emulator.py compares them). Without ifGenerationMatch an existing object is
        overwritten (counted in stats "overwrites").
    GET /storage/v1/b/{bucket}/o[?prefix=P]     list: {"items":[resource...]}
    GET /storage/v1/b/{bucket}/o/{name}[?alt=media]   resource, or the bytes
POST /token (token_uri): form grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer
        &assertion=JWT. The JWT must be RS256, signed by the key registered for
        its "iss" (and "kid" must match the registered key_id if one was
        given), "aud" must be this server's /token URL, iat within 5 min of
        now, exp > now and exp - iat <= 3600, scope must grant storage write.
        200 {"access_token","expires_in","token_type":"Bearer"}; else 400
        {"error":"invalid_grant","error_description":...}.
GET /computeMetadata/v1/instance/service-accounts/default/token
        needs header "Metadata-Flavor: Google" (else 403); issues a token for
        the metadata account (config "metadata_email"); 404 when disabled.
GET /computeMetadata/v1/instance/service-accounts/default/email   text.

Admin API (JSON bodies and replies; never needs auth):
    POST /_admin/bucket  {"name": B, "allow_email": E (optional), "create_only": bool}
        create bucket B (idempotent; updates allow_email). With allow_email,
        only tokens issued to account E may upload (others get 403). With
        create_only, reading an object's metadata or bytes with a token is 403,
        as for an account granted only Storage Object Creator.
    POST /_admin/object  {"bucket": B, "name": N, "data_b64": D}
        place an object as another writer would (no precondition, no token).
    POST /_admin/account {"email": E, "public_key_pem": PEM, "key_id": K (optional)}
        register a service account whose JWTs /token accepts.
    POST /_admin/faults  any of:
        "fail_uploads": N   the next N uploads get fail_status, nothing stored
        "fail_status": S    status used by fail_uploads (default 503)
        "lost_replies": N   the next N uploads are stored, then answered 503
        "lost_412s": N      the next N 412 answers (a retry onto a stored object) are
                            lost too: answered 503, so the batch stays undecided
        "token_ttl": S      expires_in of tokens issued from now on (default 3600)
        "fail_tokens": N    the next N /token or metadata token requests get 503
        "upload_delay_ms": M  sleep M ms before answering each upload
        Keys not given keep their value. Reply: the current faults.
    POST /_admin/config  {"require_auth": bool (default true),
                          "metadata_email": E, "metadata_enabled": bool}
    POST /_admin/revoke  {}  forget every issued token (next uploads get 401)
    POST /_admin/reset   {}  drop objects, tokens, stats and faults (buckets,
                             accounts and config stay)
    GET  /_admin/assertions  every JWT assertion /token received, in order
    GET  /_admin/stats   {"upload_requests", "uploads" (objects stored,
        lost replies included), "uploads_ok" (200 replies), "uploads_412",
        "uploads_503" (injected: fail_uploads with status 503 and lost
        replies), "uploads_failed" (all injected failures), "lost_replies",
        "uploads_401", "uploads_403", "uploads_404", "uploads_400",
        "overwrites", "token_requests", "tokens_issued" (both routes),
        "metadata_tokens_issued", "token_verify_failed", "metadata_rejected"}
    GET  /_admin/objects?bucket=B  {"bucket": B, "objects": [{"name", "size",
        "content_type", "generation", "base64", "text" (only when UTF-8)}]}
"""
import argparse
import base64
import hashlib
import http.server
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
WRITE_SCOPES = {
    "https://www.googleapis.com/auth/devstorage.read_write",
    "https://www.googleapis.com/auth/devstorage.full_control",
    "https://www.googleapis.com/auth/cloud-platform",
}
DEFAULT_FAULTS = {"fail_uploads": 0, "fail_status": 503, "lost_replies": 0, "lost_412s": 0,
                  "token_ttl": 3600, "fail_tokens": 0, "upload_delay_ms": 0}
STAT_KEYS = ("upload_requests", "uploads", "uploads_ok", "uploads_412", "uploads_503",
             "uploads_failed", "lost_replies", "uploads_401", "uploads_403",
             "uploads_404", "uploads_400", "overwrites", "token_requests",
             "tokens_issued", "metadata_tokens_issued", "token_verify_failed",
             "metadata_rejected", "reads", "reads_403")
MAX_BODY = 512 * 1024 * 1024


class HttpError(Exception):
    def __init__(self, status, message, reason="invalid"):
        super().__init__(message)
        self.status, self.message, self.reason = status, message, reason


class State:
    def __init__(self, require_auth):
        self.lock = threading.Lock()
        self.buckets = {}    # name -> {"allow_email": str|None, "objects": {name: obj}}
        self.accounts = {}   # email -> {"pem": str, "key_id": str|None}
        self.tokens = {}     # token -> {"email": str, "expires": float}
        self.config = {"require_auth": require_auth,
                       "metadata_email": "default@fake-project.iam.gserviceaccount.com",
                       "metadata_enabled": True}
        self.reset()

    def reset(self):
        self.faults = dict(DEFAULT_FAULTS)
        self.stats = {k: 0 for k in STAT_KEYS}
        self.tokens = {}
        self.assertions = []       # every JWT assertion /token received, for other verifiers
        self.generation = 1000
        for b in self.buckets.values():
            b["objects"] = {}

    def count(self, key):
        self.stats[key] += 1

    def take_fault(self, key):
        """Consume one unit of a countdown fault; True if it fired."""
        if self.faults.get(key, 0) > 0:
            self.faults[key] -= 1
            return True
        return False

    def issue_token(self, email):
        tok = "ya29.fake-" + secrets.token_urlsafe(32)
        ttl = int(self.faults["token_ttl"])
        self.tokens[tok] = {"email": email, "expires": time.time() + ttl}
        self.count("tokens_issued")
        return {"access_token": tok, "expires_in": ttl, "token_type": "Bearer"}


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def openssl_verify(pub_pem, data, sig):
    with tempfile.TemporaryDirectory(prefix="fake_gcs_") as d:
        paths = {n: os.path.join(d, n) for n in ("pub.pem", "data", "sig")}
        for name, content in (("pub.pem", pub_pem.encode()), ("data", data), ("sig", sig)):
            with open(paths[name], "wb") as f:
                f.write(content)
        r = subprocess.run(["openssl", "dgst", "-sha256", "-verify", paths["pub.pem"],
                            "-signature", paths["sig"], paths["data"]],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return r.returncode == 0


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


CRC32C_TABLE = _crc32c_table()


def crc32c(data):
    """CRC-32C (Castagnoli), as GCS's crc32c field holds it."""
    c = 0xFFFFFFFF
    for b in data:
        c = CRC32C_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def object_resource(base, bucket, name, obj):
    """The object resource with the fields Google's Storage emulator
    returns (tests/google/test_emulator.py compares them)."""
    q = urllib.parse.quote(name, safe="")
    gen = str(obj["generation"])
    return {"kind": "storage#object", "name": name, "bucket": bucket,
            "generation": gen, "metageneration": "1",
            "contentType": obj["content_type"],
            "timeCreated": obj["created"], "updated": obj["created"],
            "storageClass": "STANDARD", "size": str(len(obj["data"])),
            "md5Hash": base64.b64encode(hashlib.md5(obj["data"]).digest()).decode(),
            "etag": base64.b64encode(hashlib.sha1(obj["data"] + gen.encode()).digest()
                                     ).decode().rstrip("="),
            "crc32c": base64.b64encode(crc32c(obj["data"]).to_bytes(4, "big")).decode(),
            "timeStorageClassUpdated": obj["created"],
            "id": "%s/%s/%s" % (bucket, name, gen),
            "selfLink": "%s/storage/v1/b/%s/o/%s" % (base, bucket, q),
            "mediaLink": "%s/download/storage/v1/b/%s/o/%s?generation=%s&alt=media" % (
                base, bucket, q, gen)}


def now_rfc3339():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % (int(t * 1000) % 1000)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-gcs/1"

    # ---- plumbing ----

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("fake_gcs: " + (fmt % args) + "\n")

    @property
    def st(self):
        return self.server.state

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise HttpError(411, "chunked request bodies are not supported")
        n = int(self.headers.get("Content-Length") or 0)
        if n < 0 or n > MAX_BODY:
            raise HttpError(413, "request body too large")
        return self.rfile.read(n) if n else b""

    def reply(self, status, body=b"", ctype="application/json"):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def reply_gcs_error(self, e):
        self.reply(e.status, {"error": {"code": e.status, "message": e.message, "errors": [
            {"message": e.message, "domain": "global", "reason": e.reason}]}})

    def dispatch(self, method):
        url = urllib.parse.urlsplit(self.path)
        self.query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        raw_path = url.path
        try:
            body = self.read_body()
            for prefix, fn in self.routes(method):
                if raw_path == prefix or (prefix.endswith("/") and raw_path.startswith(prefix)):
                    return fn(raw_path, body)
            raise HttpError(404, "no route for %s %s" % (method, raw_path), "notFound")
        except HttpError as e:
            self.reply_gcs_error(e)

    def routes(self, method):
        if method == "POST":
            return [("/upload/storage/v1/b/", self.upload), ("/token", self.token),
                    ("/_admin/", self.admin_post)]
        return [("/storage/v1/b/", self.read), ("/computeMetadata/v1/", self.metadata),
                ("/_admin/", self.admin_get)]

    def base_url(self):
        host, port = self.server.server_address[:2]
        return "http://%s:%d" % (host, port)

    def do_POST(self):
        self.dispatch("POST")

    def do_GET(self):
        self.dispatch("GET")

    # ---- auth ----

    def bearer_email(self, status_key=None):
        """The account of the request's bearer token; None when auth is off."""
        h = self.headers.get("Authorization", "")
        with self.st.lock:
            if not h and not self.st.config["require_auth"]:
                return None
            tok = self.st.tokens.get(h[7:]) if h.startswith("Bearer ") else None
            if tok and tok["expires"] > time.time():
                return tok["email"]
            if status_key:
                self.st.count(status_key)
        raise HttpError(401, "Invalid Credentials", "authError")

    def bucket_for(self, name, email, status_prefix=""):
        """The bucket, checked for existence and access. Call with the lock held."""
        b = self.st.buckets.get(name)
        if b is None:
            if status_prefix:
                self.st.count(status_prefix + "404")
            raise HttpError(404, "The specified bucket does not exist.", "notFound")
        if b["allow_email"] and email is not None and email != b["allow_email"]:
            if status_prefix:
                self.st.count(status_prefix + "403")
            raise HttpError(403, "%s does not have storage.objects.create access to the "
                            "Google Cloud Storage object." % email, "forbidden")
        return b

    # ---- GCS ----

    def upload(self, path, body):
        with self.st.lock:
            self.st.count("upload_requests")
        parts = path[len("/upload/storage/v1/b/"):].split("/")
        if len(parts) != 2 or parts[1] != "o":
            raise HttpError(404, "no such upload route", "notFound")
        email = self.bearer_email("uploads_401")
        name = self.query.get("name", "")
        if self.query.get("uploadType") != "media" or not name:
            with self.st.lock:
                self.st.count("uploads_400")
            raise HttpError(400, "uploadType=media and a name are required", "required")
        self.upload_delay()
        with self.st.lock:
            status, reply = self.upload_locked(urllib.parse.unquote(parts[0]), name, email, body)
        if isinstance(reply, HttpError):
            raise reply
        self.reply(status, reply)

    def upload_delay(self):
        with self.st.lock:
            delay = self.st.faults["upload_delay_ms"]
        if delay:
            time.sleep(delay / 1000.0)

    def upload_locked(self, bucket, name, email, body):
        st = self.st
        b = self.bucket_for(bucket, email, "uploads_")
        if st.take_fault("fail_uploads"):
            status = int(st.faults["fail_status"])
            st.count("uploads_failed")
            if status == 503:
                st.count("uploads_503")
            return status, HttpError(status, "Injected failure.", "backendError")
        exists = name in b["objects"]
        if self.query.get("ifGenerationMatch") == "0" and exists:
            if st.take_fault("lost_412s"):
                st.count("uploads_failed")
                return 503, HttpError(503, "Injected lost reply.", "backendError")
            st.count("uploads_412")
            return 412, HttpError(412, "At least one of the pre-conditions you specified "
                                  "did not hold.", "conditionNotMet")
        if exists:
            st.count("overwrites")
        st.generation = max(st.generation + 1, int(time.time() * 1000))   # as the emulator
        obj = {"data": body, "generation": st.generation,
               "content_type": self.headers.get("Content-Type", "application/octet-stream"),
               "created": now_rfc3339()}
        b["objects"][name] = obj
        st.count("uploads")
        if st.take_fault("lost_replies"):
            st.count("lost_replies")
            st.count("uploads_503")
            st.count("uploads_failed")
            return 503, HttpError(503, "Injected lost reply.", "backendError")
        st.count("uploads_ok")
        return 200, object_resource(self.base_url(), bucket, name, obj)

    def read(self, path, body):
        rest = path[len("/storage/v1/b/"):]
        bucket, _, tail = rest.partition("/")
        email = self.bearer_email()
        with self.st.lock:
            b = self.bucket_for(urllib.parse.unquote(bucket), email)
            if tail == "o":
                prefix = self.query.get("prefix", "")
                items = [object_resource(self.base_url(), bucket, n, o)
                         for n, o in sorted(b["objects"].items()) if n.startswith(prefix)]
                listing = {"kind": "storage#objects"}
                if items:                        # GCS and the emulator omit an empty list
                    listing["items"] = items
                return self.reply(200, listing)
            if not tail.startswith("o/"):
                raise HttpError(404, "no such route", "notFound")
            name = urllib.parse.unquote(tail[2:])
            if b.get("create_only") and email is not None:
                self.st.count("reads_403")
                raise HttpError(403, "%s does not have storage.objects.get access to the "
                                "Google Cloud Storage object." % email, "forbidden")
            self.st.count("reads")
            obj = b["objects"].get(name)
            if obj is None and self.query.get("alt") == "media":   # as the emulator: text
                return self.reply(404, "No such object: %s/%s" % (bucket, name), "text/html")
            if obj is None:
                raise HttpError(404, "No such object: %s/%s" % (bucket, name), "notFound")
            if self.query.get("alt") == "media":
                return self.reply(200, obj["data"], obj["content_type"])
            return self.reply(200, object_resource(self.base_url(), bucket, name, obj))

    # ---- tokens ----

    def token_error(self, description):
        with self.st.lock:
            self.st.count("token_verify_failed")
        self.reply(400, {"error": "invalid_grant", "error_description": description})

    def token(self, path, body):
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode("latin-1")).items()}
        with self.st.lock:
            self.st.count("token_requests")
            if self.st.take_fault("fail_tokens"):
                return self.reply(503, {"error": "internal_failure",
                                        "error_description": "Injected failure."})
        if form.get("grant_type") != JWT_BEARER:
            return self.reply(400, {"error": "unsupported_grant_type",
                                    "error_description": "Invalid grant_type."})
        with self.st.lock:
            self.st.assertions.append(form.get("assertion", ""))
        problem, email = self.verify_jwt(form.get("assertion", ""))
        if problem:
            return self.token_error(problem)
        with self.st.lock:
            self.reply(200, self.st.issue_token(email))

    def token_urls(self):
        port = self.server.server_address[1]
        urls = {"http://127.0.0.1:%d/token" % port, "http://localhost:%d/token" % port}
        if self.headers.get("Host"):
            urls.add("http://%s/token" % self.headers["Host"])
        return urls

    def verify_jwt(self, jwt):
        """(problem or None, email)."""
        try:
            h64, c64, s64 = jwt.split(".")
            header = json.loads(b64url_decode(h64))
            claims = json.loads(b64url_decode(c64))
            sig = b64url_decode(s64)
        except (ValueError, TypeError):
            return "Invalid JWT: not three base64url JSON parts.", None
        email = claims.get("iss")
        with self.st.lock:
            acct = self.st.accounts.get(email)
        if header.get("alg") != "RS256":
            return "Invalid JWT: alg must be RS256.", None
        if acct is None:
            return "Invalid email or User ID", None
        if acct["key_id"] and header.get("kid") != acct["key_id"]:
            return "Invalid JWT Signature: unknown kid.", None
        if not openssl_verify(acct["pem"], (h64 + "." + c64).encode(), sig):
            return "Invalid JWT Signature.", None
        return self.check_claims(claims), email

    def check_claims(self, c):
        now = time.time()
        if c.get("aud") not in self.token_urls():
            return "Invalid JWT: aud %r is not this token URL." % c.get("aud")
        iat, exp = c.get("iat"), c.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int):
            return "Invalid JWT: iat and exp must be integers."
        if abs(iat - now) > 300 or exp <= now or exp - iat > 3600:
            return "Invalid JWT: Token must be a short-lived token (60 minutes) and in a " \
                   "reasonable timeframe."
        if not set(str(c.get("scope", "")).split()) & WRITE_SCOPES:
            return "Invalid JWT: scope does not grant storage write access."
        return None

    def metadata(self, path, body):
        base = "/computeMetadata/v1/instance/service-accounts/default/"
        with self.st.lock:
            if self.headers.get("Metadata-Flavor") != "Google":
                self.st.count("metadata_rejected")
                raise HttpError(403, "Missing Metadata-Flavor: Google header.", "forbidden")
            if not self.st.config["metadata_enabled"] or not path.startswith(base):
                raise HttpError(404, "not found", "notFound")
            what = path[len(base):]
            if what == "email":
                return self.reply(200, self.st.config["metadata_email"], "text/plain")
            if what != "token":
                raise HttpError(404, "not found", "notFound")
            self.st.count("token_requests")
            if self.st.take_fault("fail_tokens"):
                raise HttpError(503, "Injected failure.", "backendError")
            self.st.count("metadata_tokens_issued")
            self.reply(200, self.st.issue_token(self.st.config["metadata_email"]))

    # ---- admin ----

    def admin_post(self, path, body):
        try:
            req = json.loads(body or b"{}")
        except ValueError:
            raise HttpError(400, "admin bodies are JSON")
        fn = {"/_admin/bucket": self.admin_bucket, "/_admin/account": self.admin_account,
              "/_admin/faults": self.admin_faults, "/_admin/config": self.admin_config,
              "/_admin/revoke": self.admin_revoke, "/_admin/reset": self.admin_reset,
              "/_admin/object": self.admin_object}.get(path)
        if fn is None:
            raise HttpError(404, "no admin route %s" % path, "notFound")
        with self.st.lock:
            self.reply(200, fn(req))

    def admin_bucket(self, req):
        if not req.get("name"):
            raise HttpError(400, "bucket needs a name")
        b = self.st.buckets.setdefault(req["name"], {"allow_email": None, "objects": {}})
        b["allow_email"] = req.get("allow_email")
        b["create_only"] = bool(req.get("create_only"))
        return {"name": req["name"], "allow_email": b["allow_email"]}

    def admin_object(self, req):
        """Place an object as another writer would (no preconditions)."""
        b = self.st.buckets.get(req.get("bucket"))
        if b is None or not req.get("name"):
            raise HttpError(400, "object needs an existing bucket and a name")
        self.st.generation = max(self.st.generation + 1, int(time.time() * 1000))
        b["objects"][req["name"]] = {"data": base64.b64decode(req.get("data_b64", "")),
                                     "generation": self.st.generation,
                                     "content_type": "application/octet-stream",
                                     "created": now_rfc3339()}
        return {"name": req["name"]}

    def admin_account(self, req):
        if not req.get("email") or "BEGIN PUBLIC KEY" not in req.get("public_key_pem", ""):
            raise HttpError(400, "account needs email and public_key_pem")
        self.st.accounts[req["email"]] = {"pem": req["public_key_pem"],
                                          "key_id": req.get("key_id")}
        return {"email": req["email"]}

    def admin_faults(self, req):
        for k, v in req.items():
            if k not in DEFAULT_FAULTS or not isinstance(v, int):
                raise HttpError(400, "unknown fault or not an integer: %s" % k)
            self.st.faults[k] = v
        return dict(self.st.faults)

    def admin_config(self, req):
        for k, v in req.items():
            if k not in self.st.config:
                raise HttpError(400, "unknown config key %s" % k)
            self.st.config[k] = v
        return dict(self.st.config)

    def admin_revoke(self, req):
        n = len(self.st.tokens)
        self.st.tokens.clear()
        return {"revoked": n}

    def admin_reset(self, req):
        self.st.reset()
        return {"reset": True}

    def admin_get(self, path, body):
        with self.st.lock:
            if path == "/_admin/stats":
                return self.reply(200, dict(self.st.stats))
            if path == "/_admin/assertions":
                return self.reply(200, list(self.st.assertions))
            if path == "/_admin/objects":
                return self.reply(200, self.admin_objects(self.query.get("bucket", "")))
        raise HttpError(404, "no admin route %s" % path, "notFound")

    def admin_objects(self, bucket):
        b = self.st.buckets.get(bucket)
        if b is None:
            raise HttpError(404, "no bucket %r" % bucket, "notFound")
        out = []
        for name, o in sorted(b["objects"].items()):
            item = {"name": name, "size": len(o["data"]), "content_type": o["content_type"],
                    "generation": o["generation"],
                    "base64": base64.b64encode(o["data"]).decode()}
            try:
                item["text"] = o["data"].decode("utf-8")
            except UnicodeDecodeError:
                pass
            out.append(item)
        return {"bucket": bucket, "objects": out}


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def write_port_file(path, port):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.replace(tmp, path)


def watch_parent(srv, pid):
    while True:
        time.sleep(0.5)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            srv.shutdown()
            return
        except PermissionError:
            pass


def main(server_cls=None, handler_cls=None, state_cls=None, name="fake_gcs",
         description="fake GCS + OAuth2 token + metadata server"):
    """Parse the command line and serve; fake_secops.py passes its own classes."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--bucket", action="append", default=[], help="create a bucket (repeatable)")
    ap.add_argument("--no-auth", action="store_true", help="accept requests without a token")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--parent", type=int, help="exit when this process is gone")
    args = ap.parse_args()

    srv = (server_cls or Server)((args.host, args.port), handler_cls or Handler)
    srv.state = (state_cls or State)(require_auth=not args.no_auth)
    srv.verbose = args.verbose
    for b in args.bucket:
        srv.state.buckets[b] = {"allow_email": None, "objects": {}}
    port = srv.server_address[1]
    if args.port_file:
        write_port_file(args.port_file, port)
    if args.parent:
        threading.Thread(target=watch_parent, args=(srv, args.parent), daemon=True).start()
    if args.verbose:
        sys.stderr.write("%s: listening on http://%s:%d\n" % (name, args.host, port))
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()


if __name__ == "__main__":
    main()
