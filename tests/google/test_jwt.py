#!/usr/bin/env python3
"""test_jwt.py - the service-account JWT assertion nscollect signs, verified
by Google's own library (npm google-auth-library: OAuth2Client's
verifySignedJwtWithCertsAsync) and the community's (npm jsonwebtoken)
against the key's public half: header (alg, typ, kid), claims (iss, scope,
aud, iat, exp), signature.

    sh tests/google/setup.sh            # once: the npm packages under tests/google
    NSCOLLECT_BIN=./nscollect python3 tests/google/test_jwt.py [name ...]

The assertion is the one the daemon really sent: `run --once` delivers to
tests/fake_gcs.py, whose /token endpoint keeps every assertion it received.
The key file is written the way `gcloud iam service-accounts keys create`
writes one: private_key as PEM with "\\n" escapes, and every field gcloud
adds, which nscollect must ignore.
"""

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
from harness import FakeNetskope, Workspace, run_tests  # noqa: E402
from gcs_harness import FakeGCS, PROJECT  # noqa: E402
import test_gcs  # noqa: E402  (generate, run_once, check_bucket, expected_lines)

SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"


def gcloud_key(gcs, directory, name):
    """A key file with gcloud's exact field set; its account registered with
    the fake. Returns (path, key dict)."""
    acct = gcs.service_account(directory, name)
    with open(acct.path) as f:
        key = json.load(f)
    email = key["client_email"]
    key.update({
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/" +
                                email.replace("@", "%40"),
        "universe_domain": "googleapis.com"})
    fd = os.open(acct.path, os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(key, f, indent=2)        # json escapes the PEM's newlines as \n
    with open(acct.path) as f:
        assert "\\n" in f.read(), "private_key must be written with \\n escapes"
    return acct.path, key


def verify(jwt, key_path, aud):
    p = subprocess.run(["node", os.path.join(HERE, "verify_jwt.js")], cwd=HERE,
                       input=json.dumps({"jwt": jwt, "key_file": key_path, "aud": aud,
                                         "scope": SCOPE}),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def signed_assertion(fake, gcs, ws):
    """Deliver one tenant's alerts with a gcloud-format key; the assertion
    the daemon sent, and the key."""
    path, key = gcloud_key(gcs, ws.dir, "acme-writer")
    gcs.bucket("acme-secops", allow_email=key["client_email"])
    test_gcs.generate(fake, "tok-acme", "acme", 200, seed=41)
    test_gcs.add_tenant(ws, fake, "acme", "tok-acme", "gs://acme-secops/netskope",
                        type("K", (), {"path": path})())
    rc, err = test_gcs.run_once(ws)
    assert rc == 0, "run --once failed (%d):\n%s" % (rc, err[-3000:])
    test_gcs.check_bucket(gcs, ws, "acme-secops", "netskope", "acme",
                          test_gcs.expected_lines(fake, "tok-acme"))
    sent = gcs._admin("GET", "/_admin/assertions")
    assert len(sent) >= 1, "the daemon sent no assertion"
    return sent[0], path, key


def test_google_and_jsonwebtoken_accept_what_nscollect_signs():
    with FakeNetskope() as fake, FakeGCS() as gcs, test_gcs.workspace(gcs) as ws:
        jwt, path, key = signed_assertion(fake, gcs, ws)
        r = verify(jwt, path, gcs.token_uri)
        assert r["ok"], r["error"]
        assert r["header"] == {"alg": "RS256", "typ": "JWT", "kid": key["private_key_id"]}, r
        c = r["claims"]
        assert c["iss"] == key["client_email"] and c["aud"] == gcs.token_uri, c
        assert c["scope"] == SCOPE and c["exp"] - c["iat"] == 3600, c
        assert PROJECT in c["iss"]


def test_the_verifiers_can_fail():
    """The same check rejects an altered assertion, another key, another
    audience: a pass above means something."""
    with FakeNetskope() as fake, FakeGCS() as gcs, test_gcs.workspace(gcs) as ws:
        jwt, path, key = signed_assertion(fake, gcs, ws)
        h, c, s = jwt.split(".")
        flipped = s[:10] + ("A" if s[10] != "A" else "B") + s[11:]
        r = verify(".".join((h, c, flipped)), path, gcs.token_uri)
        assert not r["ok"] and "signature" in r["error"].lower(), r
        other, _ = gcloud_key(gcs, ws.dir, "someone-else")
        with open(other) as f:
            okey = json.load(f)
        okey["private_key_id"] = key["private_key_id"]        # same kid, other key
        with open(other, "w") as f:
            json.dump(okey, f)
        r = verify(jwt, other, gcs.token_uri)
        assert not r["ok"] and "signature" in r["error"].lower(), r
        r = verify(jwt, path, "https://oauth2.googleapis.com/token")
        assert not r["ok"] and "audience" in r["error"].lower(), r


if __name__ == "__main__":
    run_tests(globals())
