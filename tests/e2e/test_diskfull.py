#!/usr/bin/env python3
"""test_diskfull.py - a full disk under the database or under a file sink.

    NSCOLLECT_BIN=./nscollect python3 tests/e2e/test_diskfull.py

1. The database on a full filesystem (a 3 MiB tmpfs; mounting needs root,
   so without it those cases are skipped with the reason printed): a run
   that cannot commit exits non-zero with a clean error, the daemon keeps
   running and stops on SIGTERM, the database passes integrity_check, and
   once space returns one `run --once` delivers everything exactly once.
   The same with RLIMIT_FSIZE instead of a small disk (no root needed), the
   signal disposition left at its default as systemd leaves it: nscollect
   must get EFBIG, not die of SIGXFSZ.
2. A file sink on a full tmpfs: uploads fail with "disk full" in the logs
   and in status, batches stay in the outbox, fetching goes on, another
   tenant's deliveries are not held up, no temp file is left behind; once
   a filler file is deleted, `run --once` delivers everything exactly once.
"""

import collections
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (FakeNetskope, Workspace, cli_env, minify, ndjson_lines,  # noqa: E402
                     db_value, run_tests, wait_until)

CONFIG = "fetch = { slice = 600; retry_wait_max = 1; };\n"
ALERTS = 5000                  # about 6 MB: more than the 3 MiB database disk holds
NO_SPOOL = "outbox = { spool_min_bytes = 1073741824; };\n"
DISK_FULL = ("database or disk is full", "disk I/O error")   # SQLite's words for it


def token(name):
    return "tok-df-" + name


# ---- helpers ---------------------------------------------------------------

class MountDenied(Exception):
    pass


class Tmpfs:
    """A tmpfs of size_kib mounted on path (made if missing); unmounted on exit."""

    def __init__(self, path, size_kib):
        self.path, self.size = path, size_kib

    def __enter__(self):
        os.makedirs(self.path, exist_ok=True)
        if os.geteuid() != 0:
            raise MountDenied("not root")
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dk,mode=0700" % self.size,
                            "tmpfs", self.path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if p.returncode != 0:
            raise MountDenied(p.stdout.decode("utf-8", "replace").strip() or "mount failed")
        return self

    def resize(self, size_kib):
        subprocess.run(["mount", "-o", "remount,size=%dk" % size_kib, self.path], check=True)

    def __exit__(self, *exc):
        if subprocess.run(["umount", self.path]).returncode != 0:
            subprocess.run(["umount", "-l", self.path])


def fill(dirpath):
    """Fill the filesystem of dirpath to the last byte; returns the filler's path."""
    path = os.path.join(dirpath, "filler")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for chunk in (65536, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"x" * chunk)
            except OSError as e:
                assert e.errno in (28, 27), e      # ENOSPC, EFBIG
    finally:
        os.close(fd)
    return path


def integrity(db):
    p = subprocess.run(["sqlite3", db, "pragma integrity_check"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    return p.stdout.decode("utf-8", "replace").strip()


def lines_under(d):
    return ndjson_lines(d) if os.path.isdir(d) else []


def assert_no_duplicates(fake, name, sink_dir):
    got = collections.Counter(lines_under(sink_dir))
    want = collections.Counter(minify(r) for r in fake.alerts(token(name)))
    dup = got - want
    assert not dup, "%s: %d records delivered twice or foreign" % (name, sum(dup.values()))
    return sum(got.values())


def assert_exactly_once(fake, name, sink_dir):
    got = collections.Counter(lines_under(sink_dir))
    want = collections.Counter(minify(r) for r in fake.alerts(token(name)))
    lost, dup = sum((want - got).values()), sum((got - want).values())
    assert not lost and not dup, "%s: %d lost, %d duplicated of %d" % (
        name, lost, dup, sum(want.values()))
    return sum(want.values())


def temp_files(d):
    return [os.path.join(p, f) for p, _, fs in os.walk(d) for f in fs if f.startswith(".tmp")]


def setup_tenant(fake, ws, name, count, extra=()):
    now = int(time.time())
    fake.add_tenant(token(name), name)
    fake.generate(token(name), count, now - 3000, now - 10, event_lag=60, seed=len(name))
    rc, out, err = ws.run_cli(["tenant", "add", name, "--url", fake.url, "--lookback", 3600]
                              + list(extra), stdin=token(name))
    assert rc == 0, (rc, err)


def status(ws, name):
    rc, out, err = ws.run_cli(["status", "--json"])
    assert rc in (0, 1), (rc, err)
    return next(t for t in json.loads(out) if t["name"] == name)


def stop_daemon(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("the daemon did not stop on SIGTERM")
    assert rc == 0, "daemon exit status %s:\n%s" % (rc, read(proc.stderr_path)[-3000:])


def read(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


# ---- 1. the database's disk is full ----------------------------------------

def test_database_disk_full():
    """A 3 MiB tmpfs holds the database: the backlog does not fit. Nothing is
    spooled here (a delivered spool file frees its space at once, so whether
    the disk fills would depend on timing); test_spool_file_size_limit
    covers a spool write that fails."""
    with FakeNetskope() as fake, Workspace(config_extra=CONFIG + NO_SPOOL) as ws:
        try:
            with Tmpfs(os.path.join(ws.dir, "dbfs"), 3072) as fs:
                ws.db = os.path.join(fs.path, "nscollect.db")
                rc, out, err = ws.run_cli(["init"])
                assert rc == 0, err
                setup_tenant(fake, ws, "acme", ALERTS, ["--interval", 1])

                # some slices commit, then the disk is full: exit 1, a clear error
                rc, out, err = ws.run_cli(["run", "--once"])
                assert rc == 1, (rc, err[-2000:])
                assert any(w in err for w in DISK_FULL), err[-2000:]
                assert integrity(ws.db) == "ok"
                st = status(ws, "acme")
                assert st["state"] == "failing" and st["last_error"], st
                assert_no_duplicates(fake, "acme", ws.out)

                # the daemon on a full database: keeps running, stops on SIGTERM
                proc = ws.spawn(["run"])
                wait_until(lambda: proc.poll() is not None or
                           any(w in read(proc.stderr_path) for w in DISK_FULL), 30,
                           what="the daemon to meet the full disk")
                assert proc.poll() is None, "the daemon died: %s\n%s" % (
                    proc.returncode, read(proc.stderr_path)[-3000:])
                stop_daemon(proc)
                assert integrity(ws.db) == "ok"

                # to the last byte: still a clean error that names the database
                filler = fill(fs.path)
                rc, out, err = ws.run_cli(["run", "--once"])
                assert rc in (1, 2), (rc, err[-2000:])
                assert ws.db in err or "disk" in err, err[-2000:]
                os.unlink(filler)
                assert integrity(ws.db) == "ok"
                delivered = assert_no_duplicates(fake, "acme", ws.out)

                # space returns: one pass completes, exactly once
                fs.resize(65536)
                rc, out, err = ws.run_cli(["run", "--once"])
                assert rc == 0, (rc, err[-3000:])
                n = assert_exactly_once(fake, "acme", ws.out)
                assert db_value(ws.db, "SELECT count(*) FROM outbox") == 0
                assert integrity(ws.db) == "ok"
                assert not temp_files(ws.out), temp_files(ws.out)
                print("  database disk full: %d records, %d delivered before space returned, "
                      "then all exactly once" % (n, delivered))
        except MountDenied as e:
            print("  SKIP database on a full tmpfs: cannot mount a tmpfs (%s)" % e)


def limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))


def test_database_file_size_limit():
    """RLIMIT_FSIZE 1 MiB: writes past it must fail with EFBIG (SIGXFSZ ignored).
    Nothing spooled: the database itself meets the limit."""
    database_file_size_limit(CONFIG + NO_SPOOL,
                             ("cannot store batch: disk I/O error",))


def test_spool_file_size_limit():
    """The same with every batch spooled: the spool file's write fails, the
    batch is not committed, nothing is lost or doubled."""
    database_file_size_limit(CONFIG + "outbox = { spool_min_bytes = 0; };\n",
                             ("nscollect.db.spool/", "File too large"))


def test_spool_file_size_limit_behind_the_job():
    """... and with fetch.prefetch, where a slice's commit (its last batch
    and its cursor) runs on another thread while the job reads the next
    slice: that commit's failure fails the job, the cursor stays where the
    last good commit put it, and the next run delivers everything once."""
    database_file_size_limit("fetch = { slice = 600; retry_wait_max = 1; prefetch = true; "
                             "batch_max_bytes = 2097152; };\n"
                             "outbox = { spool_min_bytes = 0; };\n",
                             ("nscollect.db.spool/", "File too large"))


def database_file_size_limit(config, error_words):
    with FakeNetskope() as fake, Workspace(config_extra=config) as ws:
        rc, out, err = ws.run_cli(["init"])
        assert rc == 0, err
        setup_tenant(fake, ws, "acme", ALERTS)
        # restore_signals (the default) gives the child SIGXFSZ at SIG_DFL,
        # as systemd does; Python itself ignores it.
        p = subprocess.run(ws.argv(["run", "--once"]), cwd=ws.dir, env=cli_env(),
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           preexec_fn=limit_file_size, timeout=300)
        err = p.stderr.decode("utf-8", "replace")
        assert p.returncode != -signal.SIGXFSZ, (
            "nscollect was killed by SIGXFSZ when a file reached RLIMIT_FSIZE; main() should "
            "ignore it (signal(SIGXFSZ, SIG_IGN)) so that the write fails with EFBIG")
        assert p.returncode == 1, (p.returncode, err[-2000:])
        assert all(w in err for w in error_words), err[-2000:]
        assert integrity(ws.db) == "ok"
        assert_no_duplicates(fake, "acme", ws.out)
        rc, out, err = ws.run_cli(["run", "--once"])
        assert rc == 0, (rc, err[-3000:])
        n = assert_exactly_once(fake, "acme", ws.out)
        assert db_value(ws.db, "SELECT count(*) FROM outbox") == 0
        assert integrity(ws.db) == "ok"
        spool = ws.db + ".spool"
        assert not os.path.isdir(spool) or os.listdir(spool) == [], os.listdir(spool)
        print("  RLIMIT_FSIZE: clean failure, then %d records exactly once" % n)


# ---- 2. a file sink's disk is full -----------------------------------------

def test_file_sink_disk_full():
    """acme's sink is a full tmpfs; globex's is the default (not full)."""
    with FakeNetskope() as fake, Workspace(config_extra=CONFIG) as ws:
        try:
            with Tmpfs(os.path.join(ws.dir, "sinkfs"), 4096) as fs:
                rc, out, err = ws.run_cli(["init"])
                assert rc == 0, err
                setup_tenant(fake, ws, "acme", 800, ["--interval", 1, "--sink", "file://" + fs.path])
                setup_tenant(fake, ws, "globex", 500, ["--interval", 1])
                filler = fill(fs.path)

                rc, out, err = ws.run_cli(["run", "--once"])
                assert rc == 1, (rc, err[-2000:])
                assert "disk full" in err, err[-2000:]
                assert_exactly_once(fake, "globex", os.path.join(ws.out, "globex"))

                proc = ws.spawn(["run"])
                try:
                    # more alerts while the sink is full: fetching goes on
                    t_new = int(time.time())
                    fake.generate(token("acme"), 200, t_new - 5, t_new, seed=7)
                    fake.generate(token("globex"), 100, t_new - 5, t_new, seed=8)
                    want_acme = len(fake.alerts(token("acme")))
                    wait_until(lambda: db_value(
                        ws.db, "SELECT coalesce(sum(records), 0) FROM outbox JOIN tenant t "
                               "ON t.id = tenant_id WHERE t.name = 'acme'") == want_acme,
                        30, 0.1, "every acme alert to wait in the outbox")
                    wait_until(lambda: len(lines_under(os.path.join(ws.out, "globex"))) == 600,
                               30, 0.1, "globex's new alerts to be delivered")
                    st = status(ws, "acme")
                    assert st["state"] == "failing" and st["pending_batches"] > 0, st
                    assert "disk full" in (st["last_error"] or ""), st
                    assert st["cursor"] >= t_new - 5, st
                    assert "disk full" in read(proc.stderr_path)
                finally:
                    stop_daemon(proc)
                assert lines_under(fs.path) == [], "nothing fits on the full sink"
                assert not temp_files(fs.path), temp_files(fs.path)
                assert integrity(ws.db) == "ok"

                os.unlink(filler)
                rc, out, err = ws.run_cli(["run", "--once"])
                assert rc == 0, (rc, err[-3000:])
                n = assert_exactly_once(fake, "acme", fs.path)
                n += assert_exactly_once(fake, "globex", os.path.join(ws.out, "globex"))
                assert db_value(ws.db, "SELECT count(*) FROM outbox") == 0
                assert status(ws, "acme")["state"] == "ok", status(ws, "acme")
                assert not temp_files(fs.path) and not temp_files(ws.out)
                assert integrity(ws.db) == "ok"
                print("  file sink disk full: %d records exactly once after space returned" % n)
        except MountDenied as e:
            print("  SKIP file sink on a full tmpfs: cannot mount a tmpfs (%s)" % e)


if __name__ == "__main__":
    run_tests(globals())
