"""gcs_harness.py - the fake GCS for nscollect's end-to-end tests (stdlib only).

    from gcs_harness import FakeGCS, service_account_key, bucket_alerts

    with FakeGCS() as gcs, Workspace(gcs.config()) as ws:
        key = gcs.service_account(ws.dir, "acme-writer")     # key file + account
        gcs.bucket("acme-secops", allow_email=key.email)
        ...
        objs = gcs.objects("acme-secops")                      # {name: bytes}

FakeGCS starts tests/fake_gcs.py on a free loopback port (waits for its
port file, with a deadline; the fake exits by itself when this process is
gone) and wraps its admin API; see that file's docstring for the routes,
faults and stats. One server plays GCS, the OAuth2 token endpoint and the
metadata server. service_account() makes a real RSA key with
`openssl genpkey`, writes a Google-style JSON key file (mode 0600) whose
token_uri points at the fake, and registers the public key with it.
"""

import collections
import base64
import gzip
import json
import os
import subprocess
from urllib.parse import urlencode

from harness import REPO, FakeServer, db_rows

FAKE_GCS = os.path.join(REPO, "tests", "fake_gcs.py")
PROJECT = "nscollect-test"

ServiceAccount = collections.namedtuple("ServiceAccount", "email key_id path")


class FakeGCS(FakeServer):
    """tests/fake_gcs.py in a subprocess, and its admin API. Its url is
    the base URL for gcs.endpoint and STORAGE_EMULATOR_HOST."""

    SCRIPT = FAKE_GCS
    NAME = "fake-gcs"

    def __init__(self, no_auth=False, verbose=False, start_timeout=15.0):
        super().__init__(verbose, start_timeout)
        self.no_auth = no_auth

    @property
    def token_uri(self):
        return self.url + "/token"

    @property
    def metadata_host(self):
        """The value for GCE_METADATA_HOST."""
        return "127.0.0.1:%d" % self.port

    def config(self, gzip_on=False, extra=""):
        """libconfig text pointing the GCS sink at this fake."""
        return 'gcs = { endpoint = "%s"; gzip = %s; };\n%s' % (
            self.url, "true" if gzip_on else "false", extra)

    def server_args(self):
        return ["--parent", str(os.getpid())] + (["--no-auth"] if self.no_auth else [])

    # -- admin API

    def bucket(self, name, allow_email=None, create_only=False):
        """Create bucket name (only allow_email's tokens may upload when given;
        create_only: tokens may not read objects back)."""
        return self._admin("POST", "/_admin/bucket", {"name": name, "allow_email": allow_email,
                                                      "create_only": create_only})

    def put_object(self, bucket, name, data):
        """Place an object as another writer would."""
        return self._admin("POST", "/_admin/object", {
            "bucket": bucket, "name": name, "data_b64": base64.b64encode(data).decode()})

    def account(self, email, public_key_pem, key_id=None):
        return self._admin("POST", "/_admin/account", {"email": email,
                                                       "public_key_pem": public_key_pem,
                                                       "key_id": key_id})

    def faults(self, **faults):
        """fail_uploads, fail_status, lost_replies, token_ttl, fail_tokens,
        upload_delay_ms; returns the current faults."""
        return self._admin("POST", "/_admin/faults", faults)

    def set_config(self, **config):
        """require_auth, metadata_email, metadata_enabled."""
        return self._admin("POST", "/_admin/config", config)

    def revoke(self):
        return self._admin("POST", "/_admin/revoke", {})

    def reset(self):
        return self._admin("POST", "/_admin/reset", {})

    def stats(self):
        return self._admin("GET", "/_admin/stats")

    def object_list(self, bucket):
        """[{name, size, content_type, generation, data (bytes)}] in name order."""
        objs = self._admin("GET", "/_admin/objects?" + urlencode({"bucket": bucket}))["objects"]
        for o in objs:
            o["data"] = base64.b64decode(o.pop("base64"))
            o.pop("text", None)
        return objs

    def objects(self, bucket):
        """{object name: bytes} of every object in bucket."""
        return {o["name"]: o["data"] for o in self.object_list(bucket)}

    # -- service accounts

    def service_account(self, directory, name, register=True):
        """A service account NAME@PROJECT.iam.gserviceaccount.com with a fresh
        RSA key: its JSON key file written to directory (mode 0600) and, when
        register, its public key registered with the fake."""
        email = "%s@%s.iam.gserviceaccount.com" % (name, PROJECT)
        key_id = "kid-" + name
        priv = os.path.join(directory, name + ".pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                        "rsa_keygen_bits:2048", "-out", priv], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        pub = subprocess.run(["openssl", "pkey", "-in", priv, "-pubout"], check=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE).stdout.decode()
        with open(priv) as f:
            pem = f.read()
        os.unlink(priv)
        path = os.path.join(directory, name + ".json")
        key = {"type": "service_account", "project_id": PROJECT, "private_key_id": key_id,
               "private_key": pem, "client_email": email, "client_id": "1234567890",
               "auth_uri": "https://accounts.google.com/o/oauth2/auth",
               "token_uri": self.token_uri}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(key, f, indent=2)
        if register:
            self.account(email, pub, key_id)
        return ServiceAccount(email, key_id, path)


# ---- checking what arrived ----------------------------------------------------

def object_lines(data, name):
    """The NDJSON lines of one object (gunzipped when name ends in .gz)."""
    if name.endswith(".gz"):
        data = gzip.decompress(data)
    assert data.endswith(b"\n"), "%s: last line has no newline" % name
    return data.decode("utf-8").split("\n")[:-1]


def db_query(db_path, sql, args=()):
    """Rows of a read-only query on the daemon's database."""
    return db_rows(db_path, sql, *args)
