#!/usr/bin/env python3
"""test_open_errors.py - issue 17 part 5: `init` and every command that
opens a database say what is wrong, naming the path, exit 2, and change
nothing: a missing directory, a file that is not a database, an SQLite
database that is not nscollect's, a database from a newer release, a
read-only file or directory, a missing key file (and `init` does not make a
new key for a database whose tokens need the old one), a wrong key file.

The read-only cases need a user the file modes apply to: as root they run
the commands as nobody (setpriv), else as the current user.

    NSCOLLECT_BIN=./nscollect python3 tests/e2e/test_open_errors.py [NAME...]
"""

import hashlib
import os
import shutil
import sqlite3
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Workspace, nscollect_bin, run_tests  # noqa: E402
from test_cli import SECRET, expect, init_with_tenant  # noqa: E402

COMMANDS = [["init"], ["status"], ["tenant", "list"], ["tenant", "show", "acme"], ["run", "--once"],
            ["rekey"], ["tenant", "add", "web", "--url", "https://w.goskope.com"]]


def digest(path):
    """What a directory or file holds (names, bytes), to prove nothing changed."""
    h = hashlib.sha256()
    if os.path.isfile(path):
        with open(path, "rb") as f:
            h.update(f.read())
        return h.hexdigest()
    for d, dirs, files in sorted(os.walk(path)):
        dirs.sort()
        for n in sorted(files):
            h.update(os.path.join(d, n).encode())
            with open(os.path.join(d, n), "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def each_command(ws, db, rc, *words, commands=COMMANDS, prefix=()):
    for cmd in commands:
        expect(ws, list(prefix) + ["-d", db] + cmd, rc, *words, stdin="tok")


def test_missing_directory():
    with Workspace() as ws:
        db = os.path.join(ws.dir, "no", "such", "n.db")
        before = digest(ws.dir)
        each_command(ws, db, 2, "its directory '%s' does not exist" % os.path.dirname(db),
                     "mkdir -m 0700")
        assert digest(ws.dir) == before and not os.path.exists(os.path.dirname(db))


def test_not_a_database():
    with Workspace() as ws:
        db = os.path.join(ws.dir, "junk.db")
        with open(db, "wb") as f:
            f.write(os.urandom(8192))
        before = digest(db)
        each_command(ws, db, 2, "'%s' is not a database" % db, "SQLite's header")
        assert digest(db) == before
        assert sorted(os.listdir(ws.dir)) == ["junk.db", "nscollect.conf"]


def test_someone_elses_sqlite_database():
    with Workspace() as ws:
        db = os.path.join(ws.dir, "app.db")
        con = sqlite3.connect(db)
        con.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT)")
        con.commit()
        con.close()
        before = digest(db)
        expect(ws, ["-d", db, "init"], 2, "'%s' is an SQLite database but not nscollect's" % db)
        assert digest(db) == before


def test_a_directory_as_the_database():
    with Workspace() as ws:
        db = os.path.join(ws.dir, "dir.db")
        os.mkdir(db)
        each_command(ws, db, 2, "'%s' is a directory, not a database file" % db)
        assert os.listdir(db) == []


def test_newer_release():
    with Workspace() as ws:
        init_with_tenant(ws)
        con = sqlite3.connect(ws.db)
        con.execute("PRAGMA user_version = 99")
        con.commit()
        con.close()
        before = digest(ws.db)
        each_command(ws, ws.db, 2, "'%s' has schema version 99, newer than this nscollect" % ws.db)
        assert digest(ws.db) == before


def as_other_user():
    """argv prefix and uid to run nscollect as a user file modes apply to."""
    if os.geteuid() != 0:
        return [], os.geteuid()
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to test read-only files as root"
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"], 65534


def run_as(ws, prefix, args):
    import subprocess
    from harness import cli_env
    p = subprocess.run(prefix + [nscollect_bin(), "-c", ws.conf, "-d", ws.db] + args,
                       input=b"tok", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=cli_env(), cwd="/")
    return p.returncode, p.stderr.decode()


def test_read_only_file_and_directory():
    prefix, uid = as_other_user()
    with Workspace() as ws:
        init_with_tenant(ws)
        os.chmod(ws.dir, 0o755)
        for p in (ws.db, ws.db + ".key", ws.conf):
            os.chown(p, uid, -1)
        os.chmod(ws.conf, 0o644)
        os.chmod(ws.db, 0o400)
        before = digest(ws.db)
        for cmd in COMMANDS:
            rc, err = run_as(ws, prefix, cmd)
            assert rc == 2 and "database '%s' is read-only for this user" % ws.db in err, (cmd, rc, err)
        assert digest(ws.db) == before
        os.chmod(ws.db, 0o600)
        os.chmod(ws.dir, 0o555)                  # the -wal and -shm files cannot be made
        try:
            rc, err = run_as(ws, prefix, ["status"])
            assert rc == 2 and "its directory '%s' is not writable" % ws.dir in err, (rc, err)
        finally:
            os.chmod(ws.dir, 0o700)


def test_missing_key_file():
    with Workspace() as ws:
        init_with_tenant(ws)
        key = ws.db + ".key"
        os.rename(key, key + ".away")
        before = digest(ws.db)
        for cmd in (["run", "--once"], ["rekey"], ["tenant", "add", "web", "--url", "https://w.goskope.com"],
                    ["tenant", "set", "acme", "--token-env", "T"]):
            expect(ws, cmd, 2, "key file '%s' does not exist" % key, "restore it",
                   env={"T": "tok2"})
        # init would make a new key that cannot open the stored token: it refuses
        expect(ws, ["init"], 2, "key file '%s' does not exist, and database '%s' holds 1 tokens"
               % (key, ws.db))
        assert not os.path.exists(key) and digest(ws.db) == before


def test_wrong_key_file():
    with Workspace() as ws, Workspace() as other:
        init_with_tenant(ws)
        expect(other, ["init"], 0)
        key = ws.db + ".key"
        shutil.copy(other.db + ".key", key)
        before = digest(ws.db)
        for cmd in (["run", "--once"], ["rekey"], ["tenant", "add", "web", "--url", "https://w.goskope.com"],
                    ["tenant", "set", "acme", "--token-env", "T"]):
            expect(ws, cmd, 2, "key file '%s' is not the key the tokens in database '%s'" % (key, ws.db),
                   "tenant 'acme'", env={"T": "tok2"})
        assert digest(ws.db) == before


if __name__ == "__main__":
    run_tests(globals())
