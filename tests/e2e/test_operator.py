#!/usr/bin/env python3
"""test_operator.py - what an operator sees and does: the status table and
JSON for healthy, lagging, failing and disabled tenants, status as a health
check, token rotation and SIGHUP picked up by a running daemon, rekey, JSON
logs, progress lines, and the man page."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import REPO, FakeNetskope, Workspace, minify, ndjson_lines, wait_until, run_tests  # noqa: E402


def db_value(ws, sql, *args):
    return ws.query(sql, *args)


def add(ws, fake, name, tok, *extra, fake_token=None):
    fake.add_tenant(fake_token or tok, name)
    rc, _, err = ws.run_cli(["tenant", "add", name, "--url", fake.url, "--lookback", 3600]
                            + [str(e) for e in extra], stdin=tok)
    assert rc == 0, err


def reading_stdin(pid):
    """Whether process pid is blocked reading its standard input."""
    try:
        with open("/proc/%d/syscall" % pid) as f:
            call = f.read().split()
    except OSError:
        return False
    return len(call) > 1 and call[0] in ("0", "63") and int(call[1], 16) == 0


def read(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def test_status_states_and_exit():
    cfg = "fetch = { slice = 600; };\n"
    with FakeNetskope() as fake, Workspace(config_extra=cfg) as ws:
        now = int(time.time())
        assert ws.run_cli(["init"])[0] == 0
        add(ws, fake, "healthy", "tok-h")
        add(ws, fake, "behind", "tok-b", "--max-records", 10, "--page-size", 10)
        add(ws, fake, "broken", "tok-wrong", fake_token="tok-x")
        add(ws, fake, "paused", "tok-p", "--disabled")
        for tok in ("tok-h", "tok-b", "tok-x", "tok-p"):
            fake.generate(tok, 60, insertion_start=now - 3500, insertion_end=now - 1)
        rc, _, _ = ws.run_cli(["run", "--once"])
        assert rc == 1, "a failing tenant makes the pass exit 1"
        rc, out, _ = ws.run_cli(["status"])
        assert rc == 1, "status is a health check: exit 1 while a tenant fails"
        rows = [l.split()[:2] for l in out.splitlines()[1:]]
        assert rows == [["broken", "failing"], ["behind", "lagging"], ["healthy", "ok"],
                        ["paused", "disabled"]], out
        assert "token rejected" in out
        rc, out, _ = ws.run_cli(["status", "--json"])
        assert rc == 1
        doc = {t["name"]: t for t in json.loads(out)}
        assert doc["healthy"]["state"] == "ok" and doc["healthy"]["alerts_1h"] == 60
        assert doc["healthy"]["pending_batches"] == 0 and doc["healthy"]["lag_s"] < 60
        assert doc["behind"]["state"] == "lagging" and doc["behind"]["lag_s"] > 600
        assert doc["broken"]["state"] == "failing" and "token rejected" in doc["broken"]["last_error"]
        assert doc["broken"]["next_run_at"] > now + 3000
        assert doc["paused"]["state"] == "disabled"
        assert ws.run_cli(["tenant", "disable", "broken"])[0] == 0
        rc, out, _ = ws.run_cli(["status"])
        assert rc == 0, "no enabled tenant fails any more:\n" + out


def test_undeliverable_batches_make_status_fail():
    with FakeNetskope() as fake, Workspace() as ws:
        now = int(time.time())
        assert ws.run_cli(["init"])[0] == 0
        blocker = os.path.join(ws.dir, "not-a-dir")
        with open(blocker, "w") as f:
            f.write("a file where the sink wants a directory\n")
        add(ws, fake, "acme", "tok-a", "--sink", "file://" + blocker)
        fake.generate("tok-a", 40, insertion_start=now - 500, insertion_end=now - 1)
        rc, _, _ = ws.run_cli(["run", "--once"])
        assert rc == 1, "an undeliverable batch fails the pass"
        rc, out, _ = ws.run_cli(["status", "--json"])
        acme = json.loads(out)[0]
        assert rc == 1 and acme["state"] == "failing", out
        assert acme["pending_batches"] == 1 and blocker in acme["last_error"], out
        os.unlink(blocker)
        assert ws.run_cli(["run", "--once"])[0] == 0
        rc, out, _ = ws.run_cli(["status"])
        assert rc == 0 and " ok " in out, out
        assert sorted(ndjson_lines(blocker)) == sorted(minify(r) for r in fake.alerts("tok-a"))


def test_daemon_token_rotation_and_sighup():
    with FakeNetskope() as fake, Workspace() as ws:
        now = int(time.time())
        assert ws.run_cli(["init"])[0] == 0
        add(ws, fake, "acme", "tok-old", "--interval", 1, fake_token="tok-new")
        fake.generate("tok-new", 100, insertion_start=now - 500, insertion_end=now - 1)
        proc = ws.spawn(["run"])
        try:
            wait_until(lambda: "token rejected" in (db_value(
                ws, "SELECT last_error FROM tenant") or ""), timeout=30, what="token rejected")
            tf = os.path.join(ws.dir, "new-token")
            with open(tf, "w") as f:
                f.write("tok-new\n")
            rc, _, err = ws.run_cli(["tenant", "set", "acme", "--token-file", tf])
            assert rc == 0, err
            wait_until(lambda: len(ws.lines()) >= 100, timeout=30,
                       what="the rotated token used without a restart")
            assert sorted(ws.lines()) == sorted(minify(r) for r in fake.alerts("tok-new"))
            # SIGHUP with a broken file: logged, nothing changes
            with open(ws.conf, "a") as f:
                f.write("log = { format = \"jsn\"; };\n")
            proc.send_signal(signal.SIGHUP)
            wait_until(lambda: "reload_failed" in read(proc.stderr_path), timeout=15,
                       what="reload failure logged")
            assert proc.poll() is None, "a bad config on SIGHUP must not stop the daemon"
            ws.write_config('log = { format = "json"; };\n')
            proc.send_signal(signal.SIGHUP)
            wait_until(lambda: '"severity":"INFO","message":"event=reload' in read(proc.stderr_path),
                       timeout=15, what="JSON log line after reload")
            assert "next start" not in read(proc.stderr_path)
            # A setting the running threads were built from: applied at the
            # next start, and the reload says so.
            ws.write_config('log = { format = "json"; };\nworkers = { upload = 3; };\n')
            proc.send_signal(signal.SIGHUP)
            wait_until(lambda: "workers.upload, http.*, gcs.* and metrics.listen changes take "
                       "effect at the next start" in read(proc.stderr_path), timeout=15,
                       what="the reload's restart note")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def test_json_logs_and_progress():
    cfg = 'log = { format = "json"; };\nfetch = { slice = 120; };\n'
    with FakeNetskope() as fake, Workspace(config_extra=cfg) as ws:
        now = int(time.time())
        assert ws.run_cli(["init"])[0] == 0
        add(ws, fake, "acme", "tok-a")
        fake.generate("tok-a", 600, insertion_start=now - 3500, insertion_end=now - 1)
        rc, _, err = ws.run_cli(["run", "--once"])
        assert rc == 0, err
        lines = [json.loads(l) for l in err.splitlines() if l.strip()]
        assert all("severity" in l and "message" in l for l in lines)
        progress = [l["message"] for l in lines if "event=progress" in l["message"]]
        assert progress, "a 30-slice backfill longer than 5 s reports progress"
        assert all("covered=" in m and "eta_s=" in m and "rate=" in m for m in progress)
        assert "tok-a" not in err


def test_rekey():
    with FakeNetskope() as fake, Workspace() as ws:
        now = int(time.time())
        assert ws.run_cli(["init"])[0] == 0
        add(ws, fake, "acme", "tok-a")
        add(ws, fake, "beta", "tok-b")
        fake.generate("tok-a", 30, insertion_start=now - 500, insertion_end=now - 1)
        key = ws.db + ".key"
        old = read(key)
        shutil.copy(key, key + ".old")
        rc, out, err = ws.run_cli(["rekey"])
        assert rc == 0 and "rekeyed 2 tokens" in out, err
        assert read(key) != old and os.stat(key).st_mode & 0o777 == 0o600
        rc, _, err = ws.run_cli(["run", "--once"])
        assert rc == 0, "tokens open under the new key:\n" + err
        assert len(ws.lines()) == 30
        shutil.copy(key, key + ".good")
        shutil.copy(key + ".old", key)
        rc, out, err = ws.run_cli(["run", "--once"])
        assert rc == 2 and "is not the key the tokens" in err, err   # refused at the start
        shutil.copy(key + ".good", key)
        proc = ws.spawn(["run"])
        try:
            wait_until(lambda: "event=start" in read(proc.stderr_path), timeout=15,
                       what="daemon started")
            rc, _, err = ws.run_cli(["rekey"])
            assert rc == 2 and "stop it first" in err, err
        finally:
            proc.terminate()
            proc.wait(timeout=15)


def test_rekey_after_an_interrupted_rekey_keeps_the_working_key():
    """A rekey that committed but stopped before renaming KEY.new over KEY
    leaves the tokens sealed with KEY.new. Running rekey again in that
    state used to overwrite KEY.new with a fresh key, fail to open the
    tokens with KEY, and delete KEY.new: every token lost. Now it fails
    with nothing touched, says what to do, and that advice works."""
    with FakeNetskope() as fake, Workspace() as ws:
        now = int(time.time())
        assert ws.run_cli(["init"])[0] == 0
        add(ws, fake, "acme", "tok-a")
        fake.generate("tok-a", 20, insertion_start=now - 500, insertion_end=now - 1)
        key, new = ws.db + ".key", ws.db + ".key.new"
        shutil.copy(key, key + ".old")
        rc, out, err = ws.run_cli(["rekey"])
        assert rc == 0, err
        os.rename(key, new)                          # as if stopped before the rename
        shutil.copy(key + ".old", key)
        working = read(new)
        rc, out, err = ws.run_cli(["rekey"])
        assert rc == 2 and "nothing changed" in err and new in err, err
        assert os.path.exists(new) and read(new) == working, "the working key was destroyed"
        os.rename(new, key)                          # what the message says to do
        rc, out, err = ws.run_cli(["rekey"])
        assert rc == 0 and "rekeyed 1 tokens" in out, err
        rc, _, err = ws.run_cli(["run", "--once"])
        assert rc == 0 and len(ws.lines()) == 20, err


def test_tenant_added_across_a_rekey_is_refused():
    """`tenant add` loads the key, then waits for its token on stdin; a
    rekey runs meanwhile. The token used to be sealed with the old key, so
    the new tenant could never be read again (and every later rekey
    failed). Now the add stores nothing and says to run it again, which
    then works under the new key."""
    with FakeNetskope() as fake, Workspace() as ws:
        now = int(time.time())
        assert ws.run_cli(["init"])[0] == 0
        add(ws, fake, "acme", "tok-a")
        fake.add_tenant("tok-b", "beta")
        fake.generate("tok-b", 10, insertion_start=now - 500, insertion_end=now - 1)
        argv = ws.argv(["tenant", "add", "beta", "--url", fake.url, "--lookback", 3600])
        proc = subprocess.Popen(argv, cwd=ws.dir, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            # the key is loaded before the token is read: wait until it blocks
            # in read(0, ...) (syscall 0 on x86-64, 63 on arm64)
            wait_until(lambda: reading_stdin(proc.pid) or proc.poll() is not None, 10, 0.01,
                       "tenant add to wait for its token")
            assert proc.poll() is None, proc.communicate()
            rc, out, err = ws.run_cli(["rekey"])
            assert rc == 0, err
            out, err = proc.communicate(b"tok-b", timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 2 and b"run this command again" in err, err
        assert ws.query("SELECT count(*) FROM tenant WHERE name = 'beta'") == 0
        add(ws, fake, "beta", "tok-b")
        rc, _, err = ws.run_cli(["run", "--once"])
        assert rc == 0 and len(ws.lines()) == 10, err
        rc, out, err = ws.run_cli(["rekey"])
        assert rc == 0 and "rekeyed 2 tokens" in out, err


def test_daemon_is_not_dumpable():
    """The daemon holds every token in memory. Run as an ordinary user
    (nobody), it clears PR_SET_DUMPABLE: the kernel then owns its /proc files
    as root, so that user's gcore or ptrace cannot attach and read them."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        print("skipped: needs root and setpriv to run the daemon as nobody")
        return
    with FakeNetskope() as fake, Workspace() as ws:
        assert ws.run_cli(["init"])[0] == 0
        add(ws, fake, "acme", "tok-a")
        for root, dirs, files in os.walk(ws.dir):
            for n in dirs + files + ["."]:
                os.chown(os.path.join(root, n) if n != "." else root, 65534, 65534)
        err = open(os.path.join(ws.dir, "nobody.err"), "wb")
        proc = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
                                + ws.argv(["run"]), cwd=ws.dir, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)
        try:
            wait_until(lambda: "event=start" in read(err.name), timeout=20,
                       what="the daemon (as nobody) to start")
            with open("/proc/%d/status" % proc.pid) as f:
                uid = [l.split()[1] for l in f if l.startswith("Uid:")][0]
            assert uid == "65534", "the daemon does not run as nobody: uid %s" % uid
            owner = os.stat("/proc/%d/status" % proc.pid).st_uid
            assert owner == 0, "a dumpable daemon: /proc files owned by uid %d" % owner
        finally:
            proc.terminate()
            proc.wait(timeout=20)
            err.close()


def test_man_page_renders():
    page = os.path.join(REPO, "etc", "nscollect.1")
    p = subprocess.run(["groff", "-man", "-Tutf8", "-ww", page], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    assert p.returncode == 0 and not p.stderr, p.stderr.decode()
    p = subprocess.run(["man", "-l", page], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=dict(os.environ, MANPAGER="cat", PAGER="cat", COLUMNS="80"))
    text = p.stdout.decode()
    assert p.returncode == 0, p.stderr.decode()
    for w in ("import-env", "tenant_status", "outbox.limit_bytes", "EXIT STATUS", "SIGHUP"):
        assert w in text, "man page lacks %s" % w


if __name__ == "__main__":
    run_tests(globals())
