#!/usr/bin/env python3
"""test_emulator.py - nscollect's real GCS upload path against Google's own
Cloud Storage emulator (firebase-tools), through STORAGE_EMULATOR_HOST.

    sh tests/google/setup.sh            # once: firebase-tools under tests/google
    NSCOLLECT_BIN=./nscollect python3 tests/google/test_emulator.py [name ...]

The daemon (`run --once`) pulls from tests/fake_netskope.py and uploads to
the emulator with no credentials, as Google's client libraries do with
STORAGE_EMULATOR_HOST. Each test reads the objects back through the
emulator's JSON API and compares them with what the fake Netskope holds.
test_fake_* compare tests/fake_gcs.py with the emulator, request by
request; the differences that remain are asserted (and listed in the
README), so a change on either side fails here.
"""

import gzip
import http.client
import hashlib
import base64
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
sys.path.insert(0, HERE)
from harness import FakeNetskope, Workspace, run_tests  # noqa: E402
from gcs_harness import FakeGCS  # noqa: E402
from emulator import StorageEmulator  # noqa: E402
import test_gcs  # noqa: E402  (check_bucket, generate, run_once, expected_lines)

SMALL_BATCHES = "fetch = { batch_max_bytes = 65536; };\n"
# Every character a prefix may hold that GCS allows in an object name:
# printable ASCII but '/' (a separator here), and UTF-8.
PREFIX_CHARS = "".join(chr(c) for c in range(0x20, 0x7f) if chr(c) != "/") + "é日本"


def workspace(gzip_on=False):
    ws = Workspace("gcs = { gzip = %s; };\n%s" % ("true" if gzip_on else "false",
                                                   SMALL_BATCHES))
    rc, out, err = ws.run_cli(["init"])
    assert rc == 0, ("init", rc, out, err)
    return ws


def add_tenant(ws, fake, name, token, sink):
    rc, out, err = ws.run_cli(["tenant", "add", name, "--url", fake.url, "--sink", sink,
                               "--lookback", "3600", "--page-size", "1000"], stdin=token)
    assert rc == 0, ("tenant add", name, sink, rc, out, err)


def run_once(ws, emu):
    rc, err = test_gcs.run_once(ws, env={"STORAGE_EMULATOR_HOST": emu.url})
    assert rc == 0, "run --once failed (%d):\n%s" % (rc, err[-3000:])
    return err


def md5_b64(data):
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def raw_request(server, method, path, body=None, headers=None):
    """(status, headers, body) of one request with a raw body, to the
    emulator or the fake (FakeServer.request sends JSON bodies only)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def check_resources(emu, ws, bucket, objs, gz=False):
    """The emulator's own record of each object (size, md5Hash computed as
    the bytes arrived) matches the bytes read back and the delivery log."""
    sizes = dict(ws.query_rows("SELECT location, bytes FROM delivered"))
    for name, data in objs.items():
        md = emu.metadata(bucket, name)
        assert md["name"] == name and md["bucket"] == bucket, md
        assert md["size"] == str(len(data)), (name, md["size"], len(data))
        assert md["md5Hash"] == md5_b64(data), (name, md["md5Hash"])
        assert not md.get("contentEncoding"), ("stored with a Content-Encoding", name, md)
        loc = "gs://%s/%s" % (bucket, name)
        plain = gzip.decompress(data) if gz else data   # the log counts uncompressed bytes
        assert sizes.get(loc) == len(plain), ("delivery log bytes", loc, sizes.get(loc), len(plain))


# ---- nscollect against the emulator ---------------------------------------------

def test_one_object_per_batch_exact_bytes():
    """2000 alerts in 64 KiB batches: one object per delivered batch, named
    <prefix>/<tenant>/alerts_<time>_<batch>.ndjson, each record once, byte
    for byte; the emulator's md5 and size of each object match."""
    with FakeNetskope() as fake, StorageEmulator() as emu, workspace() as ws:
        test_gcs.generate(fake, "tok-acme", "acme", 2000, seed=21)
        add_tenant(ws, fake, "acme", "tok-acme", "gs://acme-secops/netskope/alerts")
        run_once(ws, emu)
        objs = test_gcs.check_bucket(emu, ws, "acme-secops", "netskope/alerts", "acme",
                                     test_gcs.expected_lines(fake, "tok-acme"))
        assert len(objs) > 10, "expected many batches, got %d objects" % len(objs)
        check_resources(emu, ws, "acme-secops", objs)
        assert emu.object_list("other-bucket") == [], "objects outside the tenant's bucket"


def test_gzip_objects_are_not_transcoded():
    """gcs.gzip: objects are .ndjson.gz stored as gzip bytes with no
    Content-Encoding, so the emulator serves them as stored (no
    decompressive transcoding) even to a client that does not accept gzip."""
    with FakeNetskope() as fake, StorageEmulator() as emu, workspace(gzip_on=True) as ws:
        test_gcs.generate(fake, "tok-acme", "acme", 1500, seed=22)
        add_tenant(ws, fake, "acme", "tok-acme", "gs://acme-secops/nsk")
        run_once(ws, emu)
        objs = test_gcs.check_bucket(emu, ws, "acme-secops", "nsk", "acme",
                                     test_gcs.expected_lines(fake, "tok-acme"), gz=True)
        check_resources(emu, ws, "acme-secops", objs, gz=True)
        for name, data in objs.items():
            hdrs, plain = emu.media("acme-secops", name, accept_encoding="identity")
            assert plain == data and plain[:2] == b"\x1f\x8b", ("transcoded", name, plain[:20])
            assert not hdrs.get("content-encoding"), (name, hdrs.get("content-encoding"))
            assert gzip.decompress(plain).endswith(b"\n"), name


def test_object_names_with_every_character():
    """A prefix holding every printable ASCII character but '/', and UTF-8,
    over two path segments; tenant names using every kind of character a
    name may hold ([a-z0-9_-], a leading digit): the emulator stores each
    object under exactly the name nscollect meant."""
    prefix = "a " + PREFIX_CHARS + "/x" + PREFIX_CHARS[::-1]
    with FakeNetskope() as fake, StorageEmulator() as emu, workspace() as ws:
        for i, (tenant, bucket) in enumerate((("0tenant_a-z9", "b-0.x_y"),
                                              ("t-_-9", "bkt_2"))):
            tok = "tok-%d" % i
            test_gcs.generate(fake, tok, tenant, 300, seed=23 + i)
            add_tenant(ws, fake, tenant, tok, "gs://%s/%s/" % (bucket, prefix))
        run_once(ws, emu)
        for i, (tenant, bucket) in enumerate((("0tenant_a-z9", "b-0.x_y"),
                                              ("t-_-9", "bkt_2"))):
            objs = test_gcs.check_bucket(emu, ws, bucket, prefix, tenant,
                                         test_gcs.expected_lines(fake, "tok-%d" % i))
            check_resources(emu, ws, bucket, objs)


def test_emulator_ignores_if_generation_match():
    """The emulator (13.35.1, and 15.x's source) has no preconditions: a
    second upload with ifGenerationMatch=0 overwrites and answers 200 where
    GCS and tests/fake_gcs.py answer 412. So a lost-reply retry cannot be
    answered 412 here; test_gcs.py's lost-reply test keeps GCS's documented
    behaviour. If this fails, the emulator learnt preconditions: run
    nscollect's retry against it and drop the README's entry."""
    with StorageEmulator() as emu, FakeGCS(no_auth=True) as gcs:
        gcs.bucket("b1")
        for server, expect in ((emu, 200), (gcs, 412)):
            st1, _, body1 = emu_upload(server, "b1", "o/x.ndjson", b"one\n")
            st2, _, body2 = emu_upload(server, "b1", "o/x.ndjson", b"two\n")
            assert st1 == 200, (server, st1, body1)
            assert st2 == expect, ("second create-only upload", type(server).__name__, st2,
                                   body2[:200])
        _, data = emu.media("b1", "o/x.ndjson")
        assert data == b"two\n", data


# ---- tests/fake_gcs.py against the emulator -------------------------------------

def emu_upload(server, bucket, name, data, content_type="application/x-ndjson"):
    """One media upload with ifGenerationMatch=0, as nscollect sends it."""
    from urllib.parse import quote, urlencode
    q = urlencode([("uploadType", "media"), ("ifGenerationMatch", "0"), ("name", name)],
                  quote_via=quote)
    return raw_request(server, "POST", "/upload/storage/v1/b/%s/o?%s" % (bucket, q), data,
                       {"Content-Type": content_type})


def test_fake_upload_resource_matches_emulator():
    """The upload reply: the fake returns the emulator's fields, with the
    same types, and the same md5Hash, crc32c and size for the same bytes."""
    data = b'{"a":1}\n{"b":"\xc3\xa9"}\n'
    with StorageEmulator() as emu, FakeGCS(no_auth=True) as gcs:
        gcs.bucket("b1")
        _, _, e = emu_upload(emu, "b1", "p q/é+%.ndjson", data)
        st, _, f = emu_upload(gcs, "b1", "p q/é+%.ndjson", data)
        assert st == 200, (st, f)
        e, f = json.loads(e), json.loads(f)
        missing = sorted(set(e) - set(f))
        assert not missing, "fake's upload reply lacks the emulator's fields %s" % missing
        for k in ("kind", "name", "bucket", "size", "md5Hash", "crc32c", "metageneration",
                  "storageClass"):
            assert e[k] == f[k], (k, e[k], f[k])
        for k in e:
            assert type(e[k]) is type(f[k]), (k, e[k], f[k])
        assert f["id"] == "b1/p q/é+%.ndjson/" + f["generation"], f["id"]


def test_fake_errors_match_emulator():
    """Statuses of the requests both should refuse the same way: a media
    upload without name (400); a missing object's metadata (404, GCS's error
    shape, reason notFound)."""
    with StorageEmulator() as emu, FakeGCS(no_auth=True) as gcs:
        gcs.bucket("b1")
        for server in (emu, gcs):
            st, _, _ = raw_request(server, "POST", "/upload/storage/v1/b/b1/o?uploadType=media",
                                   b"x", {"Content-Type": "text/plain"})
            assert st == 400, (type(server).__name__, "upload without name", st)
        replies = []
        for server in (emu, gcs):
            st, _, body = server.request("GET", "/storage/v1/b/b1/o/nope")
            assert st == 404, (type(server).__name__, st, body)
            err = json.loads(body)["error"]
            replies.append((err["code"], err["errors"][0]["reason"]))
        assert replies[0] == replies[1], replies


def test_fake_differences_that_remain():
    """What the emulator does not model, where the fake keeps GCS's
    documented behaviour (README: "tests/fake_gcs.py and Google's
    emulator"): a bucket that does not exist (emulator: made on first use;
    fake and GCS: 404) and an upload without credentials (emulator: taken;
    fake with auth on, like GCS: 401)."""
    with StorageEmulator() as emu, FakeGCS() as gcs:
        st_e, _, _ = emu_upload(emu, "nobucket", "x", b"x\n")
        st_f, _, _ = emu_upload(gcs, "nobucket", "x", b"x\n")
        assert (st_e, st_f) == (200, 401), (st_e, st_f)
        gcs.set_config(require_auth=False)
        st_f, _, _ = emu_upload(gcs, "nobucket", "x", b"x\n")
        assert st_f == 404, st_f


if __name__ == "__main__":
    run_tests(globals())
