#!/usr/bin/env python3
"""test_shard.py - shards (issue 20 part 2): three instances, each with its
own database, key and config (`shard = "K/3"`), against one fake Netskope
holding many tenants: every tenant is served by exactly one shard and every
record arrives once, byte-exact; then a reshard from 3 to 4 shards done with
the commands `shard plan 4` prints, while alerts keep arriving and faults
are on: nothing lost, nothing doubled, every tenant on the shard its name
hashes to. The hash is recomputed here in Python from its documentation
(SHA-256, jump consistent hash), so the C code is checked against it.

    NSCOLLECT_BIN=./nscollect python3 tests/e2e/test_shard.py [NAME...]

NSCOLLECT_SHARD_TENANTS sets the number of tenants (`make test-shard`: 300;
the default run of the suite: 30, to keep `make test` within its budget).
"""

import hashlib
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (FakeNetskope, Workspace, cli_env, minify, ndjson_lines,  # noqa: E402
                     nscollect_bin, run_tests)
from test_spine import token  # noqa: E402

TENANTS = int(os.environ.get("NSCOLLECT_SHARD_TENANTS", "30"))
PASS = {"NSCOLLECT_PASSPHRASE": "shard move passphrase"}
FAULTS = [{"kind": "status", "code": 500}, {"kind": "truncated"}]


def jump(key, n):
    """Lamping and Veach's jump consistent hash, as README "Shards" gives it."""
    b, j = -1, 0
    while j < n:
        b = j
        key = (key * 2862933555777941757 + 1) & 0xFFFFFFFFFFFFFFFF
        j = int((b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


def shard_of(name, n):
    return jump(int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big"), n)


def shard_config(ws, k, n):
    ws.write_config('database = "%s";\nshard = "%d/%d";\n' % (ws.db, k, n))


def run_until_clean(ws, tries=8):
    for _ in range(tries):
        rc, _, err = ws.run_cli(["run", "--once"])
        if rc == 0:
            return err
        assert rc == 1, err[-2000:]
    raise AssertionError("run --once never ended clean:\n" + err[-2000:])


def owners(shards, names):
    """{name: [shard indexes whose database serves it (present, not moved)]}"""
    got = {n: [] for n in names}
    for k, ws in enumerate(shards):
        if not os.path.exists(ws.db):
            continue
        for (name,) in ws.query_rows("SELECT name FROM tenant WHERE moved_at IS NULL"):
            got[name].append(k)
    return got


def check_exactly_once(fake, sink, names):
    for name in names:
        got = Counter(ndjson_lines(os.path.join(sink, name)))
        want = Counter(minify(r) for r in fake.alerts(token(name)))
        assert got == want, "%s: %d lines, %d distinct, want %d; missing %d, doubled %d" % (
            name, sum(got.values()), len(got), len(want), len(want - got),
            sum(c - 1 for c in got.values() if c > 1))


def run_printed(line, cwd):
    """Run one command line that `shard plan` printed, as an operator would."""
    argv = shlex.split(line)
    assert argv[0] == "nscollect", line
    p = subprocess.run([nscollect_bin()] + argv[1:], cwd=cwd, env=cli_env(PASS),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    assert p.returncode == 0, "%s\n%s" % (line, p.stderr.decode()[-2000:])


def test_shard_of_is_the_documented_hash():
    names = ["acme", "globex", "t-000", "initech_eu"] + ["c%d" % i for i in range(200)]
    with Workspace() as ws:
        rc, out, err = ws.run_cli(["shard", "of", "7"] + names)
        assert rc == 0, err
        assert out.split("\n")[:-1] == ["%s %d" % (n, shard_of(n, 7)) for n in names]
        for bad, what in ((["shard", "of", "0", "a"], "N '0'"),
                          (["run", "--once", "--shard", "3/3"], "--shard '3/3' is not a shard"),
                          (["shard", "plan", "x"], "N2 'x'"),
                          (["shard", "plan", "4", "--to-config", "a%sb"], "must hold %d once")):
            rc, _, err = ws.run_cli(bad)
            assert rc == 2 and what in err, (bad, err)
        ws.write_config('shard = "5/2";\n')
        assert ws.run_cli(["init"])[0] == 0
        rc, _, err = ws.run_cli(["run", "--once"])
        assert rc == 2 and "config key 'shard': '5/2' is not a shard K/N" in err, err


def test_three_shards_then_four_exactly_once():
    names = ["t%03d" % i for i in range(TENANTS)]
    tmp = tempfile.mkdtemp(prefix="nscollect-shards-")
    sink = os.path.join(tmp, "sink")
    os.makedirs(sink)
    shards = [Workspace() for _ in range(4)]
    try:
        with FakeNetskope() as fake:
            now = int(time.time())
            for i, name in enumerate(names):
                fake.add_tenant(token(name), name)
                fake.generate(token(name), 4 + i % 5, insertion_start=now - 3000,
                              insertion_end=now - 60, seed=i + 1)
            for k, ws in enumerate(shards[:3]):
                shard_config(ws, k, 3)
                assert ws.run_cli(["init"])[0] == 0
            for name in names:
                k = shard_of(name, 3)
                rc, _, err = shards[k].run_cli(["tenant", "add", name, "--url", fake.url,
                                                "--lookback", 3600, "--interval", 1,
                                                "--sink", "file://" + sink],
                                               stdin=token(name))
                assert rc == 0, err
            # a tenant of another shard is refused, naming its shard; --any-shard keeps it
            stranger = names[0]
            other = (shard_of(stranger, 3) + 1) % 3
            rc, _, err = shards[other].run_cli(["tenant", "add", stranger, "--url", fake.url],
                                               stdin=token(stranger))
            assert rc == 2 and "belongs to shard %d/3" % shard_of(stranger, 3) in err, err
            assert shards[other].query("SELECT count(*) FROM tenant WHERE name = ?",
                                       stranger) == 0
            rc, _, err = shards[other].run_cli(["tenant", "add", stranger, "--url", fake.url,
                                                "--sink", "file://" + sink, "--any-shard"],
                                               stdin=token(stranger))
            assert rc == 0, err
            for k, ws in enumerate(shards[:3]):
                err = run_until_clean(ws)
                assert ("event=shard_foreign tenants=1 " in err) == (k == other), (k, err[-2000:])
            # the shard that only holds it does not fetch it
            assert shards[other].query("SELECT count(*) FROM cursor c JOIN stream s ON "
                                       "s.id = c.stream_id JOIN tenant t ON t.id = s.tenant_id "
                                       "WHERE t.name = ?", stranger) == 0
            assert shards[other].run_cli(["tenant", "remove", stranger])[0] == 0
            check_exactly_once(fake, sink, names)
            assert all(len(v) == 1 for v in owners(shards, names).values())

            # reshard 3 -> 4: plan on each old shard, a new empty shard 3
            shard_config(shards[3], 3, 4)
            assert shards[3].run_cli(["init"])[0] == 0
            pattern = os.path.join(tmp, "shard-%d.conf")
            for k, ws in enumerate(shards):
                os.symlink(ws.conf, pattern % k)
            plans = []
            for k, ws in enumerate(shards[:3]):
                rc, out, err = ws.run_cli(["shard", "plan", "4", "--to-config", pattern,
                                           "--dir", tmp])
                assert rc == 0, err
                moving = [ln.split()[1:] for ln in out.splitlines() if ln.startswith("move ")]
                want = [[n, str(shard_of(n, 4))] for n in names
                        if shard_of(n, 3) == k and shard_of(n, 4) != k]
                assert moving == want, (k, moving[:5], want[:5])
                plans.append([ln for ln in out.splitlines() if ln.startswith("nscollect ")])
            moved = [n for n in names if shard_of(n, 4) != shard_of(n, 3)]
            assert moved and all(shard_of(n, 4) == 3 for n in moved)   # only to the new shard
            assert sum(len(p) for p in plans) == 2 * len(moved)

            # alerts keep arriving and faults are on while the moves run
            for i, name in enumerate(names):
                fake.generate(token(name), 3, insertion_start=int(time.time()) - 100,
                              insertion_end=int(time.time()), seed=1000 + i)
                if i % 4 == 0:
                    fake.faults(token(name), FAULTS)
            for k, plan in enumerate(plans):
                half = len(plan) // 2 // 2 * 2          # export+import pairs
                for line in plan[:half]:
                    run_printed(line, tmp)
                shards[k].run_cli(["run", "--once"])     # still 3 shards: the rest fetched here
                for line in plan[half:]:
                    run_printed(line, tmp)
            for k, ws in enumerate(shards[:3]):
                shard_config(ws, k, 4)
            t = int(time.time())
            for i, name in enumerate(names):
                fake.generate(token(name), 2, insertion_start=t - 50, insertion_end=t,
                              seed=5000 + i)
            for ws in shards:
                err = run_until_clean(ws)
                assert "event=shard_foreign" not in err, err[-2000:]
            got = owners(shards, names)
            assert got == {n: [shard_of(n, 4)] for n in names}, \
                [(n, v) for n, v in got.items() if v != [shard_of(n, 4)]][:5]
            check_exactly_once(fake, sink, names)
    finally:
        for ws in shards:
            ws.cleanup()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    run_tests(globals())
