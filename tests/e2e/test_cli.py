#!/usr/bin/env python3
"""test_cli.py - the admin CLI's contract: bad input is exit 2 with a
message naming what is wrong, and secrets never show."""

import os
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import REPO, FakeNetskope, Workspace, run_tests  # noqa: E402

SECRET = "tok-Sup3rS3cret-0123456789"


def expect(ws, args, rc, *words, stdin=None, env=None):
    got_rc, out, err = ws.run_cli(args, stdin=stdin, env=env)
    assert got_rc == rc, "%s: exit %d, want %d\nstdout: %s\nstderr: %s" % (
        " ".join(map(str, args)), got_rc, rc, out, err)
    for w in words:
        assert w in out + err, "%s: %r not in output:\n%s%s" % (" ".join(map(str, args)), w, out, err)
    return out, err


def init_with_tenant(ws, url="http://127.0.0.1:9"):
    expect(ws, ["init"], 0, "schema version")
    expect(ws, ["tenant", "add", "acme", "--url", url], 0, "added", stdin=SECRET)


def test_usage_errors():
    with Workspace() as ws:
        expect(ws, [], 2, "usage: nscollect")
        expect(ws, ["stauts"], 2, "'stauts' is not a nscollect command", "status")
        expect(ws, ["--bogus"], 2, "unknown option '--bogus'")
        out, _ = expect(ws, ["--help"], 0, "tenant", "status", "run")
        expect(ws, ["tenant"], 2, "subcommand is missing")
        expect(ws, ["tenant", "frobnicate", "x"], 2, "unknown subcommand 'frobnicate'")
        expect(ws, ["run", "--fetch-workers", "0"], 2, "--fetch-workers '0'")
        expect(ws, ["status", "--jsn"], 2, "unknown argument '--jsn'")


def test_options_a_subcommand_does_not_take():
    """An option or NAME a subcommand does not take is refused, naming it,
    and nothing changes (they were ignored: `tenant enable acme --url X`
    said "enabled" and left the URL)."""
    with Workspace() as ws:
        init_with_tenant(ws)
        url = ws.query("SELECT url FROM tenant WHERE name = 'acme'")
        for args, word in ((["enable", "acme", "--url", "https://evil.example.com"], "--url"),
                           (["disable", "acme", "--page-size", "99999"], "--page-size"),
                           (["show", "acme", "--force"], "--force"),
                           (["remove", "acme", "--json"], "--json"),
                           (["import-env", "acme", "--interval", "60"], "--interval"),
                           (["add", "zz", "--url", "https://a.goskope.com", "--state", "/x"],
                            "--state")):
            expect(ws, ["tenant"] + args, 2, "tenant %s does not take %s" % (args[0], word),
                   stdin=SECRET)
        expect(ws, ["tenant", "list", "bogus"], 2, "tenant list takes no NAME")
        assert ws.query("SELECT url FROM tenant WHERE name = 'acme'") == url
        assert ws.query("SELECT enabled FROM tenant WHERE name = 'acme'") == 1
        assert ws.query("SELECT count(*) FROM tenant") == 1
        expect(ws, ["tenant", "list", "--json"], 0, '"acme"')


def test_bad_tenant_input():
    with Workspace() as ws:
        init_with_tenant(ws)
        expect(ws, ["tenant", "show", "nope"], 2, "no tenant named 'nope'")
        expect(ws, ["tenant", "add", "acme", "--url", "http://127.0.0.1:9"], 2,
               "tenant 'acme' already exists", stdin="tok")
        expect(ws, ["tenant", "add", "Acme!", "--url", "https://a.goskope.com"], 2,
               "invalid tenant name 'Acme!'", stdin="tok")
        expect(ws, ["tenant", "add", "web", "--url", "http://acme.goskope.com"], 2,
               "https://", stdin="tok")
        expect(ws, ["tenant", "add", "web", "--url", "ftp://acme.goskope.com"], 2, "ftp://acme",
               stdin="tok")
        expect(ws, ["tenant", "add", "web"], 2, "--url is required", stdin="tok")
        expect(ws, ["tenant", "add", "web", "--url", "https://a.goskope.com", "--token-file",
                    "/nonexistent/token"], 2, "cannot read token file '/nonexistent/token'")
        expect(ws, ["tenant", "add", "web", "--url", "https://a.goskope.com", "--token-file",
                    ws.dir], 2, "is a directory")
        expect(ws, ["tenant", "add", "web", "--url", "https://a.goskope.com", "--token-env",
                    "NSC_NO_SUCH_VAR"], 2, "NSC_NO_SUCH_VAR is not set")
        expect(ws, ["tenant", "add", "web", "--url", "https://a.goskope.com"], 2,
               "token from stdin is empty", stdin="")
        expect(ws, ["tenant", "add", "web", "--url", "https://a.goskope.com", "--page-size",
                    "20000"], 2, "--page-size '20000'", stdin="tok")
        expect(ws, ["tenant", "add", "web", "--url", "https://a.goskope.com", "--window",
                    "arrival"], 2, "--window 'arrival'", stdin="tok")
        expect(ws, ["tenant", "add", "web", "--url", "https://a.goskope.com", "--sink",
                    "file://relative/dir"], 2, "file://relative/dir", stdin="tok")
        expect(ws, ["tenant", "add", "web", "--url", "https://a.goskope.com", "--sink",
                    "gs://Bad_Bucket!"], 2, "gs://Bad_Bucket!", stdin="tok")
        # a token on the command line is not an option at all
        expect(ws, ["tenant", "add", "web", "--url", "https://a.goskope.com", "--token", "x"], 2,
               "unknown option")
        # nothing half-written by the failed adds
        out, _ = expect(ws, ["tenant", "list"], 0, "acme")
        assert "web" not in out, out


def test_usage_errors_hide_secrets():
    """B8: a token pasted as an option value or a stray argument is not echoed."""
    pasted = "Sup3rSecret-pasted-0123"
    with Workspace() as ws:
        init_with_tenant(ws)
        url = ["--url", "https://a.goskope.com"]
        for args, word in ((["tenant", "add", "acme2"] + url + ["--token=" + pasted], "'--token'"),
                           (["tenant", "add", "acme2", pasted] + url, "unexpected extra argument"),
                           (["tenant", "set", "acme", "--json=" + pasted], "'--json'"),
                           (["tenant", "add", "acme2"] + url + ["-x" + pasted], "'-x'")):
            out, err = expect(ws, args, 2, word, stdin="tok")
            assert pasted not in out + err, "secret echoed by %s:\n%s%s" % (args[:3], out, err)


def test_tenant_url_refused():
    """B3: a URL too long to store is refused, not cut. B4: non-ASCII bytes
    are refused (they made `tenant list --json` invalid UTF-8)."""
    with Workspace() as ws:
        init_with_tenant(ws)
        long_url = "https://" + "a" * 499 + ":8443"
        expect(ws, ["tenant", "add", "long", "--url", long_url], 2, "at most 511 bytes",
               stdin="tok")
        expect(ws, ["tenant", "set", "acme", "--url", "https://" + "a" * 100000], 2,
               "at most 511 bytes")
        cafe = os.fsdecode(b"https://caf\xe9.example.com")
        expect(ws, ["tenant", "add", "cafe", "--url", cafe], 2, "position 12", "punycode",
               stdin="tok")
        expect(ws, ["tenant", "set", "acme", "--url", cafe], 2, "position 12")
        out, _ = expect(ws, ["tenant", "list", "--json"], 0, '"url":"http://127.0.0.1:9"')
        assert "long" not in out and "cafe" not in out, out


def test_tenant_files_refused():
    """B5: an oversized token file or stdin says so (it said "No such file").
    B9: --sink-credentials must be a regular file, not a directory."""
    with Workspace() as ws:
        init_with_tenant(ws)
        url = ["--url", "https://a.goskope.com"]
        big = os.path.join(ws.dir, "big.tok")
        with open(big, "w") as f:
            f.write("x" * 10000)
        expect(ws, ["tenant", "add", "web"] + url + ["--token-file", big], 2,
               "token file '%s' is larger than 8 KiB" % big)
        expect(ws, ["tenant", "add", "web"] + url, 2, "token on stdin is larger than 8 KiB",
               stdin="x" * 10000)
        expect(ws, ["tenant", "add", "web"] + url + ["--sink-credentials", ws.dir], 2,
               "'%s' is not a regular file" % ws.dir, stdin="tok")
        expect(ws, ["tenant", "set", "acme", "--sink-credentials", ws.dir], 2, ws.dir)
        out, _ = expect(ws, ["tenant", "list"], 0, "acme")
        assert "web" not in out, out


def test_bad_config_and_database():
    with Workspace() as ws:
        expect(ws, ["-c", "/nonexistent/nscollect.conf", "status"], 2,
               "cannot read config file '/nonexistent/nscollect.conf'")
        bad = os.path.join(ws.dir, "bad.conf")
        with open(bad, "w") as f:
            f.write('output_dir = "/tmp";\nworkers = { fetch = 2; uplaod = 3; };\n')
        expect(ws, ["-c", bad, "status"], 2, "bad.conf:2", "workers.uplaod", "workers.upload")
        with open(bad, "w") as f:
            f.write('tenant_defaults = { page_size = "big"; };\n')
        expect(ws, ["-c", bad, "init"], 2, "bad.conf:1", "tenant_defaults.page_size")
        expect(ws, ["status"], 2, "does not exist", "init")
        with open(ws.db, "wb") as f:
            f.write(b"this is not a database, just some text\n" * 100)
        expect(ws, ["status"], 2, ws.db)
        expect(ws, ["init"], 2, ws.db)
    with Workspace() as ws:
        expect(ws, ["init"], 0)
        expect(ws, ["init"], 0)                      # idempotent
        con = sqlite3.connect(ws.db)
        con.execute("PRAGMA user_version = 99")
        con.commit()
        con.close()
        expect(ws, ["init"], 2, "newer than this nscollect")
        expect(ws, ["status"], 2, "newer than this nscollect")


def migrations():
    """The migration files, in the order they apply."""
    d = os.path.join(REPO, "migrations")
    return [os.path.join(d, f) for f in sorted(os.listdir(d)) if f.endswith(".sql")]


def old_database(path, version, tenants):
    """A database as an older nscollect left it: migrations up to version,
    and a tenant row for each name (ids 1, 2, ... in order). Returns the
    open connection for the caller to add rows, commit and close."""
    con = sqlite3.connect(path)
    for f in migrations()[:version]:
        with open(f) as sql:
            con.executescript(sql.read())
    for name in tenants:
        con.execute("INSERT INTO tenant (name, url, token, token_fp, interval_s, lookback_s, "
                    "overlap_s, page_size, max_records, window, created_at, updated_at) "
                    "VALUES (?, 'https://old.goskope.com', x'00', 'sha256:x', 300, 3600, "
                    "120, 1000, 0, 'insertion', 0, 0)", (name,))
    con.execute("PRAGMA user_version = %d" % version)
    # the key file that release's init made (init refuses to make a new one
    # for a database that holds tokens)
    fd = os.open(path + ".key", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, b"ab" * 32 + b"\n")
    os.close(fd)
    return con


def test_upgrade_from_schema_1():
    """A database made by the first schema is refused until `init`
    migrates it, in place, keeping its tenants."""
    with Workspace() as ws:
        con = old_database(ws.db, 1, ["old"])
        con.commit()
        con.close()
        expect(ws, ["status"], 2, "schema version 1", "init")
        expect(ws, ["init"], 0, "schema version %d" % len(migrations()))
        out, _ = expect(ws, ["status", "--json"], 0, '"name":"old"', "newest_alert_age_s")


def test_upgrade_keeps_dedupe_keys():
    """Migration 005 rebuilds the dedupe table without its foreign key: the
    keys a schema-4 database holds survive it (else the first run after the
    upgrade would send its overlap again), and removing a tenant still
    removes its keys."""
    with Workspace() as ws:
        con = old_database(ws.db, 4, ["old", "other"])
        con.executemany("INSERT INTO seen (tenant_id, at, key) VALUES (?, ?, randomblob(16))",
                        [(t, 1700000000 + i) for t in (1, 2) for i in range(50)])
        con.commit()
        before = con.execute("SELECT tenant_id, at, hex(key) FROM seen ORDER BY 1, 2").fetchall()
        con.close()
        expect(ws, ["init"], 0, "schema version %d" % len(migrations()))
        # migration 006: keys belong to the tenant's alert stream, whose id is the tenant's
        assert ws.query_rows("SELECT stream_id, at, hex(key) FROM seen ORDER BY 1, 2") == before
        assert "REFERENCES" not in ws.query("SELECT sql FROM sqlite_master WHERE name = 'seen'")
        expect(ws, ["tenant", "remove", "old"], 0, "removed")
        assert ws.query_rows("SELECT DISTINCT stream_id FROM seen") == [(2,)]


def test_key_file_problems():
    with Workspace() as ws:
        init_with_tenant(ws)
        key = ws.db + ".key"
        assert os.stat(key).st_mode & 0o777 == 0o600
        assert os.stat(ws.db).st_mode & 0o077 == 0, "database readable by others"
        os.rename(key, key + ".away")
        expect(ws, ["run", "--once"], 2, key)
        expect(ws, ["tenant", "add", "web", "--url", "https://a.goskope.com"], 2, key, stdin="t")
        with open(key, "w") as f:
            f.write("00" * 32 + "\n")                # a valid key, but the wrong one
        os.chmod(key, 0o600)
        # a wrong key is refused before anything runs (exit 2), naming both files
        expect(ws, ["run", "--once"], 2, key, ws.db, "is not the key")
        os.replace(key + ".away", key)


def test_secrets_never_shown():
    with FakeNetskope() as fake, Workspace() as ws:
        fake.add_tenant(SECRET, "acme")
        now = int(time.time())
        fake.generate(SECRET, 20, insertion_start=now - 100, insertion_end=now - 1)
        init_with_tenant(ws, fake.url)
        outputs = []
        for args in (["tenant", "list"], ["tenant", "list", "--json"], ["tenant", "show", "acme"],
                     ["tenant", "show", "acme", "--json"], ["status"], ["status", "--json"],
                     ["run", "--once"]):
            rc, out, err = ws.run_cli(args)
            outputs.append(out + err)
        assert all(SECRET not in o for o in outputs), "token printed"
        assert "sha256:" in outputs[2], "tenant show should print a fingerprint"
        with open(ws.db, "rb") as f:
            assert SECRET.encode() not in f.read(), "token stored in clear"
        wal = ws.db + "-wal"
        if os.path.exists(wal):
            with open(wal, "rb") as f:
                assert SECRET.encode() not in f.read(), "token in clear in the WAL"
        assert len(ws.lines()) == 20


def test_tenant_lifecycle():
    with Workspace() as ws:
        init_with_tenant(ws)
        expect(ws, ["tenant", "set", "acme", "--interval", "60", "--sink", "file:///tmp/x"], 0)
        out, _ = expect(ws, ["tenant", "show", "acme", "--json"], 0, '"interval_s":60',
                        '"sink":"file:///tmp/x"')
        expect(ws, ["tenant", "disable", "acme"], 0)
        out, _ = expect(ws, ["status"], 0, "disabled")
        expect(ws, ["tenant", "enable", "acme"], 0)
        con = sqlite3.connect(ws.db)
        con.execute("INSERT INTO outbox (tenant_id, object_name, created_at, records, bytes, body)"
                    " VALUES (1, 'acme/x.ndjson', 0, 1, 3, x'7b7d0a')")
        con.commit()
        con.close()
        expect(ws, ["tenant", "remove", "acme"], 2, "1 undelivered batches", "--force")
        expect(ws, ["tenant", "remove", "acme", "--force"], 0, "removed")
        out, _ = expect(ws, ["tenant", "list", "--json"], 0)
        assert out.strip() == "[]", out


if __name__ == "__main__":
    run_tests(globals())
