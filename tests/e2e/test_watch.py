#!/usr/bin/env python3
"""test_watch.py - the operator's live views (issue 16 part 4):
`nscollect status --watch [S]` redraws the status table every S seconds
until SIGINT or SIGTERM (exit 0), clearing the screen only on a terminal;
a bad S is exit status 2 with a message. Frames are awaited by reading the
output (a deadline, no sleep): the second frame must appear, then the
signal ends it. `run --once` with stderr on a pty shows a progress line per
tenant stream, redrawn in place (cursor up, erase) while a slow backfill
runs, and its summary at the end; with stderr on a pipe the output is the
plain log lines, without a progress line or an escape.

    NSCOLLECT_BIN=./nscollect python3 tests/e2e/test_watch.py [NAME...]
"""

import fcntl
import os
import pty
import re
import select
import signal
import subprocess
import struct
import sys
import termios
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import FakeNetskope, Workspace, cli_env, minify, run_tests  # noqa: E402

HEADING = b"nscollect status every "
CLEAR = b"\x1b[H\x1b[2J"


def read_until(fd, pred, timeout=20.0):
    """Bytes read from fd until pred(bytes so far) holds; AssertionError
    with what was read after timeout seconds or at end of file."""
    got = b""
    deadline = time.monotonic() + timeout
    while not pred(got):
        left = deadline - time.monotonic()
        assert left > 0, "timed out; read %r" % got[-2000:]
        r, _, _ = select.select([fd], [], [], left)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:             # a pty reads EIO once the child has gone
                chunk = b""
            assert chunk, "end of output; read %r" % got[-2000:]
            got += chunk
    return got


def workspace_with_tenant():
    ws = Workspace()
    assert ws.run_cli(["init"])[0] == 0
    rc, out, err = ws.run_cli(["tenant", "add", "acme", "--url", "https://127.0.0.1:9/",
                               "--token-env", "TOK"], env={"TOK": "tok-acme"})
    assert rc == 0, err
    return ws


def watch(ws, args, sig, tty):
    """Run status --watch ARGS on a pipe or a pty; read two frames, send
    sig; (rc, output)."""
    if tty:
        master, slave = pty.openpty()
        out_fd, child_out = master, slave
    else:
        out_fd, child_out = os.pipe()
    p = subprocess.Popen(ws.argv(["status", "--watch"] + args), cwd=ws.dir, env=cli_env(),
                         stdin=subprocess.DEVNULL, stdout=child_out, stderr=subprocess.PIPE)
    os.close(child_out)
    try:
        got = read_until(out_fd, lambda b: b.count(HEADING) >= 2 and b"acme" in b.rsplit(HEADING, 1)[1])
        p.send_signal(sig)
        rc = p.wait(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
        os.close(out_fd)
    return rc, got, p.stderr.read().decode()


def test_watch_redraws_until_sigint_on_a_pipe():
    with workspace_with_tenant() as ws:
        rc, got, err = watch(ws, ["0.2"], signal.SIGINT, tty=False)
        assert rc == 0, (rc, err)
        assert got.count(b"TENANT") >= 2 and got.count(b"acme") >= 2, got
        assert CLEAR not in got and b"\x1b" not in got, got        # no escapes on a pipe
        assert b"every 0.2s" in got


def test_watch_clears_the_screen_on_a_terminal_and_stops_on_sigterm():
    with workspace_with_tenant() as ws:
        rc, got, err = watch(ws, [], signal.SIGTERM, tty=True)      # default 2 s
        assert rc == 0, (rc, err)
        assert got.count(CLEAR) >= 2 and b"every 2s" in got, got
        frames = got.split(CLEAR)[1:]
        assert all(f.startswith(HEADING) for f in frames), frames


def test_watch_json_frames():
    with workspace_with_tenant() as ws:
        out_r, out_w = os.pipe()
        p = subprocess.Popen(ws.argv(["status", "--json", "--watch=0.1"]), cwd=ws.dir,
                             env=cli_env(), stdin=subprocess.DEVNULL, stdout=out_w)
        os.close(out_w)
        got = read_until(out_r, lambda b: b.count(b"\n") >= 2)
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=20) == 0
        os.close(out_r)
        import json
        docs = [json.loads(line) for line in got.splitlines()[:2]]
        assert all(d[0]["name"] == "acme" for d in docs), docs


def test_watch_bad_interval_is_exit_2():
    with workspace_with_tenant() as ws:
        for bad in ("0", "abc", "-1", "1e9", "nan", "2s", "0.05"):
            rc, out, err = ws.run_cli(["status", "--watch", bad], timeout=20)
            assert rc == 2, (bad, rc, out, err)
            assert "--watch '%s': expected seconds between frames, a number from 0.1 to 86400" % bad \
                in err, (bad, err)
            assert out == "", (bad, out)
        rc, out, err = ws.run_cli(["status", "--watch=x"], timeout=20)
        assert rc == 2 and "--watch 'x'" in err, err
        rc, out, err = ws.run_cli(["status", "--help"])
        assert rc == 0 and "--watch [S]" in out


REDRAW = re.compile(rb"\r\x1b\[\d+A\x1b\[J")
LINE = re.compile(rb"acme/alert +\d\d-\d\d \d\d:\d\d -> (\d\d-\d\d \d\d:\d\d|\(no slice yet\)) +"
                  rb"[\d.]+%  \d+ records  \d+/s  (ETA [\dhms-]+|done|failed)")


def backfill_run(tty):
    """run --once over a 1-day backfill of 400 alerts in pages of 100,
    three of them answered 1.5 s late (the fake's "slow" fault, so that the
    pass outlives a few frames); stderr on a pty or a pipe. (rc, stderr
    bytes, the records delivered equal the fake's)."""
    with FakeNetskope() as fake, Workspace() as ws:
        now = int(time.time())
        fake.add_tenant("tok-acme", "acme")
        fake.generate("tok-acme", 400, insertion_start=now - 86000, insertion_end=now - 10)
        fake.faults("tok-acme", [{"kind": "slow", "seconds": 1.5}] * 3)
        assert ws.run_cli(["init"])[0] == 0
        rc, _, err = ws.run_cli(["tenant", "add", "acme", "--url", fake.url, "--lookback", 86400,
                                 "--page-size", 100], stdin="tok-acme")
        assert rc == 0, err
        if tty:
            master, slave = pty.openpty()
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
            err_fd, child_err = master, slave
        else:
            err_fd, child_err = os.pipe()
        p = subprocess.Popen(ws.argv(["run", "--once"]), cwd=ws.dir, env=cli_env(),
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=child_err)
        os.close(child_err)
        got = b""
        try:
            while True:                     # to the end of the output (EIO on a pty)
                r, _, _ = select.select([err_fd], [], [], 60)
                assert r, "run --once silent for 60 s; read %r" % got[-2000:]
                try:
                    chunk = os.read(err_fd, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                got += chunk
            rc = p.wait(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
            os.close(err_fd)
        assert sorted(ws.lines()) == sorted(minify(r) for r in fake.alerts("tok-acme"))
        return rc, got


def test_run_once_progress_on_a_terminal():
    rc, got = backfill_run(tty=True)
    assert rc == 0, got[-3000:]
    assert REDRAW.search(got), got[-3000:]                      # redrawn in place
    lines = [m.group(0) for m in LINE.finditer(got)]
    assert any(b"ETA " in l for l in lines), got[-3000:]        # while it ran
    last = got[got.rfind(b"acme/alert"):]
    assert LINE.match(last) and b"100.0%  400 records" in last and b"done" in last, last
    assert b"event=" in got                                     # the log goes on above


def test_run_once_plain_log_without_a_terminal():
    rc, got = backfill_run(tty=False)
    assert rc == 0, got[-3000:]
    assert b"\x1b" not in got and b"\r" not in got, got[-3000:]
    assert not LINE.search(got) and b"acme/alert " not in got
    assert all(l.startswith(b"20") and b" level=" in l for l in got.splitlines()), got[-3000:]


if __name__ == "__main__":
    run_tests(globals())
