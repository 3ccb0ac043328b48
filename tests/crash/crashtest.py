#!/usr/bin/env python3
"""crashtest.py - kill -9 nscollect at random moments; nothing lost, nothing doubled.

    make crashtest [CRASH_ARGS="--seed S"]          (ASan+UBSan build, 120 kills)
    NSCOLLECT_BIN=./nscollect python3 tests/crash/crashtest.py [--kills N] [--seed S]
        [--tenants T] [--graceful N] [--no-fsync-case] [--keep]

Several tenants on the fake Netskope with faults on (500s, 429s with a short
Retry-After, truncated bodies, slow replies), alerts arriving over time (new
ones and late ones inside the overlap, some without an _id), and nscollect
run either as the daemon (`run`, tenants at --interval 1) or as `run
--once`, chosen at random each cycle. A cycle waits for the process to log
event=start (polled), lets it work for a random 0.05-1.5 s and sends
SIGKILL; a process that finished before that (and the one cycle in twelve
or so that lets `run --once` finish) has its exit status checked instead.
Every log is searched for sanitizer and valgrind reports and for a batch
delivered twice by one process. Every 25 cycles: no record delivered twice
so far, and integrity_check. After the last cycle: faults off, one clean
`run --once`, then per tenant the delivered NDJSON lines must equal
minify(fake.alerts(token)) as a multiset (zero lost, zero duplicated,
byte-exact), the sink holds no temp file, the outbox is empty and
`sqlite3 DB 'pragma integrity_check'` says ok.

Then (unless --no-fsync-case; needs strace) two deterministic kills: strace
holds every fsync and fdatasync for 3 s, and nscollect is killed while it
fsyncs a batch it copies into the file sink, then while it fdatasyncs a
spool file inside a commit; after each a clean pass must deliver every
record once and leave no temp or spool file.

--graceful N replaces the kills by N cycles that stop the daemon with
SIGTERM (it must exit 0) and let `run --once` finish: the non-kill path,
used by `make valgrind`, where every process must exit on its own.

The random choices come from one seed, printed first, so a failure
reproduces with --seed (timing still varies; the seed fixes the plan).
Exit status 0 when every check held, 1 otherwise.
"""

import argparse
import collections
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
from harness import (FakeNetskope, Workspace, cli_env, minify, ndjson_files,  # noqa: E402
                     ndjson_lines, wait_until)

OVERLAP = 120              # the tenants' --overlap; late alerts land well inside it
LOOKBACK = 3600
START_TIMEOUT = float(os.environ.get("CRASH_START_TIMEOUT", "30"))
BASE_CONFIG = """
fetch = { retry_wait_max = 1; slice = 600; };
http = { low_speed_time = 5; total_timeout = 30; };
"""
CONFIG = BASE_CONFIG + "outbox = { spool_min_bytes = 65536; };\n"
# fetch.prefetch: the next page fetched while one is stored, and a full
# batch (128 KB here: most pages fill one) committed behind the job while
# the records after it are taken; the kills also land in those commits.
PREFETCH_CONFIG = CONFIG.replace("slice = 600;",
                                 "slice = 600; prefetch = true; batch_max_bytes = 131072;")
assert "prefetch = true" in PREFETCH_CONFIG, "BASE_CONFIG no longer holds 'slice = 600;'"
# spool_min_bytes: batches here are 10 KB to 600 KB, so kills land both in
# batches kept in the database and in batches spooled to files.
# Words that only a sanitizer writes; valgrind -q writes only "==PID== " lines.
CHECKER_WORDS = ("AddressSanitizer", "LeakSanitizer", "ThreadSanitizer", "runtime error:",
                 "UndefinedBehaviorSanitizer")
VALGRIND_LINE = re.compile(r"^==\d+== ")
DELIVERED = re.compile(r" batch=(\d+) event=delivered ")


def token(name):
    return "tok-crash-" + name


# Tenant i reads LAYOUT[i % len(LAYOUT)]: (api, streams). The iterator
# tenants' pages are committed one by one, so random kills land between a
# page handed out and its commit (counted: iterator_pending_at_kills).
LAYOUT = [("data", ["alert"]), ("dataexport", ["alert", "page"]),
          ("data", ["alert", "page", "network"]), ("dataexport", ["network", "audit"])]


def stream_lines(files, tenant, stream):
    """The delivered lines of one tenant's stream, from ndjson_files(out)."""
    pre = tenant + ("/alerts_" if stream == "alert" else "/%s/%s_" % (stream, stream))
    return [ln for path, lines in files.items() if path.startswith(pre) for ln in lines]


class Failure(Exception):
    pass


def checker_report(text):
    """The first line of a sanitizer or valgrind report in text, else None."""
    for line in text.splitlines():
        if VALGRIND_LINE.match(line) or any(w in line for w in CHECKER_WORDS):
            return line
    return None


def double_deliveries(log_text):
    """Batch ids that one process logged as delivered more than once: two
    upload workers handed the same batch (the sink's no-overwrite rule
    keeps the data single, but the upload is done twice)."""
    ids = collections.Counter(DELIVERED.findall(log_text))
    return sorted(int(i) for i, c in ids.items() if c > 1)


def sink_leftovers(root):
    """(temp files, other non-object files) under a file sink's root."""
    temps, others = [], []
    for d, _, files in os.walk(root):
        for f in files:
            rel = os.path.relpath(os.path.join(d, f), root)
            if f.startswith(".tmp."):
                temps.append(rel)
            elif not f.endswith(".ndjson"):
                others.append(rel)
    return temps, others


def must_have_exited(proc, what):
    """Kill a process that is still running and fail the test for it."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
        raise Failure("%s: did not exit" % what)


def spool_files(ws):
    d = ws.db + ".spool"
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def read(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def sql_value(db, sql):
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=30)
    try:
        row = con.execute(sql).fetchone()
        return row[0] if row else None
    finally:
        con.close()


def integrity(db):
    """`sqlite3 DB 'pragma integrity_check'` output (the CLI, as an operator would)."""
    p = subprocess.run(["sqlite3", db, "pragma integrity_check"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    return p.stdout.decode("utf-8", "replace").strip()


class Crash:
    """One crash test: the fake, the workspace, the plan's random source, counters."""

    def __init__(self, fake, ws, rng, ntenants):
        self.fake, self.ws, self.rng = fake, ws, rng
        self.names = ["t%d" % i for i in range(ntenants)]
        self.layout = {n: LAYOUT[i % len(LAYOUT)] for i, n in enumerate(self.names)}
        self.stats = collections.Counter()
        self.late_serial = 0

    # -- setup and traffic

    def setup(self):
        rc, out, err = self.ws.run_cli(["init"])
        if rc != 0:
            raise Failure("init: rc=%d %s" % (rc, err))
        now = int(time.time())
        sizes = [50, 100, 200, 37, 500]
        for i, n in enumerate(self.names):
            api, streams = self.layout[n]
            self.fake.add_tenant(token(n), n, pretty=(i % 2 == 1),
                                 mode={"iter_page": self.rng.choice((40, 100, 250))})
            for typ in streams:
                self.fake.generate(token(n), 600 + 300 * i, now - LOOKBACK + 300, now - 30,
                                   event_lag=600, seed=self.rng.getrandbits(32), type=typ)
            rc, out, err = self.ws.run_cli(
                ["tenant", "add", n, "--url", self.fake.url, "--interval", 1,
                 "--lookback", LOOKBACK, "--overlap", OVERLAP, "--api", api,
                 "--streams", ",".join(streams),
                 "--page-size", sizes[i % len(sizes)]], stdin=token(n))
            if rc != 0:
                raise Failure("tenant add %s: rc=%d %s" % (n, rc, err))

    def late_record(self, n, ins):
        """A raw record inserted at ins, the past: with an _id, or (one in
        four) without, so that its dedupe key is the hash of its bytes."""
        self.late_serial += 1
        body = ('"_insertion_epoch_timestamp":%d,"timestamp":%d,"alert_type":"late",'
                '"big":9007199254740993,"f":0.10000000000000001,"s":"caf\\u00e9 \\/ %s",'
                '"serial":%d' % (ins, ins - 300, n, self.late_serial))
        if self.rng.random() < 0.25:
            return "{ %s }" % body
        return '{"_id":"late-%s-%08d", %s}' % (n, self.late_serial, body)

    def add_alerts(self):
        """New alerts up to now, and late ones inside the overlap."""
        now = int(time.time())
        for n in self.names:
            for typ in self.layout[n][1]:
                if self.rng.random() < 0.7:
                    k = self.rng.randrange(1, 80)
                    self.stats["alerts_generated"] += self.fake.generate(
                        token(n), k, now - 5, now, event_lag=300, seed=self.rng.getrandbits(32),
                        type=typ)
            if "alert" in self.layout[n][1] and self.rng.random() < 0.5:
                recs = [self.late_record(n, now - self.rng.randrange(2, OVERLAP // 2))
                        for _ in range(self.rng.randrange(1, 6))]
                self.stats["alerts_late"] += self.fake.add_raw(token(n), recs)

    def queue_faults(self):
        """This cycle's faults: the queue is emptied first, so unconsumed
        faults never pile up into a tenant that can make no progress."""
        for n, typ in self.streams():
            self.fake.reset(token(n), type=typ)
            faults = []
            kinds = ("500", "503", "429", "truncated", "slow", "slow")
            if self.layout[n][0] == "dataexport":
                kinds += ("lost", "malformed", "no_ok")       # the index moved, no page here
            for _ in range(self.rng.choice((0, 0, 1, 1, 2))):
                kind = self.rng.choice(kinds)
                after = self.rng.randrange(0, 4)
                if kind == "429":
                    f = {"kind": "status", "code": 429, "retry_after": 1}
                elif kind in ("500", "503"):
                    f = {"kind": "status", "code": int(kind)}
                elif kind == "slow":
                    f = {"kind": "slow", "seconds": round(self.rng.uniform(0.1, 1.2), 2)}
                else:
                    f = {"kind": kind}
                f["after"] = after
                faults.append(f)
                self.stats["faults_queued"] += 1
            if faults:
                self.fake.faults(token(n), faults, type=typ)

    def streams(self):
        """Every (tenant, stream) pair."""
        return [(n, typ) for n in self.names for typ in self.layout[n][1]]

    def compare(self):
        """{(tenant, stream): (wanted, delivered) Counters of lines}."""
        files = ndjson_files(self.ws.out) if os.path.isdir(self.ws.out) else {}
        return {(n, typ): (collections.Counter(minify(r) for r in
                                               self.fake.alerts(token(n), type=typ)),
                           collections.Counter(stream_lines(files, n, typ)))
                for n, typ in self.streams()}

    # -- one process

    def spawn(self, once, workers):
        args = ["run"] + (["--once"] if once else [])
        args += ["--fetch-workers", workers[0], "--upload-workers", workers[1]]
        return self.ws.spawn(args)

    def wait_started(self, proc):
        wait_until(lambda: proc.poll() is not None or "event=start" in read(proc.stderr_path),
                   START_TIMEOUT, 0.005, "nscollect to log event=start")

    def check_log(self, proc, what):
        """Checks on the log of a process however it ended."""
        err = read(proc.stderr_path)
        report = checker_report(err)
        if report:
            raise Failure("%s: checker report: %s\n%s" % (what, report, err[-4000:]))
        doubles = double_deliveries(err)
        if doubles:
            self.stats["double_uploads"] += len(doubles)
            raise Failure("%s: batch %s handed to two upload workers at once"
                          % (what, doubles[0]))

    def check_exit(self, proc, once, what):
        """A process that ended on its own: once mode exits 0 or 1 (a tenant
        failed under faults), the daemon only when told to, with 0."""
        err = read(proc.stderr_path)
        self.check_log(proc, what)
        ok = (0, 1) if once else (0,)
        if proc.returncode not in ok:
            raise Failure("%s: exit status %s\n%s" % (what, proc.returncode, err[-4000:]))

    def kill_cycle(self, i):
        once = self.rng.random() < 0.4
        workers = (self.rng.choice((1, 2, 3)), self.rng.choice((1, 2)))
        delay = self.rng.uniform(0.05, 1.5)
        self.add_alerts()
        self.queue_faults()
        what = "cycle %d (%s, kill after %.2f s)" % (i, "run --once" if once else "run", delay)
        proc = self.spawn(once, workers)
        try:
            self.wait_started(proc)
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            self.stats["spool_files_at_kills"] += len(spool_files(self.ws))
            self.stats["iterator_pending_at_kills"] += sql_value(
                self.ws.db, "SELECT count(*) FROM iterator WHERE state IN ('pending', "
                "'starting')") or 0
            self.stats["kills"] += 1
            self.stats["kills_once" if once else "kills_daemon"] += 1
            self.check_log(proc, what)
            return
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.check_exit(proc, once, what)
        self.stats["finished_once" if once else "daemon_exited"] += 1

    def graceful_cycle(self, i):
        """No kill: the daemon works until every tenant has finished a job
        (polled in its log) and gets SIGTERM, or a `run --once` pass runs
        to its end."""
        once = i % 2 == 1
        self.add_alerts()
        self.queue_faults()
        what = "graceful cycle %d (%s)" % (i, "run --once" if once else "run")
        proc = self.spawn(once, (2, 2))
        try:
            self.wait_started(proc)
            if not once:
                wait_until(lambda: proc.poll() is not None or all(
                    "tenant=%s run=" % n in read(proc.stderr_path) and "event=fetch_done" in
                    read(proc.stderr_path) for n in self.names), 300, 0.05,
                    "every tenant to finish a job")
                proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=300)
        finally:
            must_have_exited(proc, what)
        self.check_exit(proc, once, what)
        self.stats["graceful"] += 1

    def complete_cycle(self, i):
        """A `run --once` left to finish (faults on): exit 0 or 1."""
        self.add_alerts()
        self.queue_faults()
        what = "cycle %d (run --once to its end)" % i
        proc = self.spawn(True, (self.rng.choice((1, 2, 3)), self.rng.choice((1, 2))))
        try:
            proc.wait(timeout=300)
        finally:
            must_have_exited(proc, what)
        self.check_exit(proc, True, what)
        self.stats["finished_once"] += 1

    def check_no_duplicates(self, when):
        """Any time: no record may have arrived twice."""
        for (n, typ), (want, got) in self.compare().items():
            dup = sum((got - want).values())
            if dup:
                raise Failure("%s: %s/%s: %d records delivered twice or foreign"
                              % (when, n, typ, dup))

    # -- the end

    def final_run(self):
        self.stats["delivered_before_final"] = len(ndjson_lines(self.ws.out)) \
            if os.path.isdir(self.ws.out) else 0
        for n, typ in self.streams():
            self.fake.reset(token(n), type=typ)     # faults off (records stay)
        time.sleep(1.1)                             # every alert's insertion second is past
        rc, out, err = self.ws.run_cli(["run", "--once"])
        report = checker_report(err)
        if rc != 0 or report:
            raise Failure("final clean run --once: rc=%d %s\n%s" % (rc, report or "", err[-4000:]))

    def verify(self):
        """Counters of the final comparison; raises Failure on any problem."""
        problems = []
        for (n, typ), (want, got) in self.compare().items():
            lost = sum((want - got).values())
            dup = sum((got - want).values())
            self.stats["records"] += sum(want.values())
            self.stats["delivered"] += sum(got.values())
            self.stats["lost"] += lost
            self.stats["duplicates"] += dup
            if lost or dup:
                example = next(iter((want - got) or (got - want)))
                problems.append("%s/%s: %d lost, %d duplicated or foreign (e.g. %s)"
                                % (n, typ, lost, dup, example[:100]))
        temps, others = sink_leftovers(self.ws.out)
        self.stats["temp_files_left"] = len(temps)
        if others:
            problems.append("%d files in the sink that are not objects, e.g. %s"
                            % (len(others), others[0]))
        pending = sql_value(self.ws.db, "SELECT count(*) FROM outbox")
        if pending:
            problems.append("%d batches still in the outbox" % pending)
        spool = spool_files(self.ws)
        if spool:
            problems.append("%d spool files left after a clean run, e.g. %s"
                            % (len(spool), spool[0]))
        self.stats["spooled_batches"] = sql_value(
            self.ws.db, "SELECT count(*) FROM delivered WHERE bytes >= 65536")
        self.stats["existed"] = sql_value(self.ws.db, "SELECT count(*) FROM delivered WHERE existed")
        self.stats["batches"] = sql_value(self.ws.db, "SELECT count(*) FROM delivered")
        self.stats["iterator_resends"] = sql_value(self.ws.db, "SELECT coalesce(sum(resends), "
                                                   "0) FROM iterator")
        self.stats["runs_abandoned"] = sql_value(
            self.ws.db, "SELECT count(*) FROM run WHERE status = 'abandoned'")
        ic = integrity(self.ws.db)
        if ic != "ok":
            problems.append("pragma integrity_check: %s" % ic)
        if temps:
            problems.append("%d temp files left in the sink after a clean run, e.g. %s"
                            % (len(temps), temps[0]))
        if problems:
            raise Failure("; ".join(problems))


def run(kills=10, seed=None, tenants=4, graceful=0, keep=False, log=print, config=CONFIG):
    """One crash test; returns its counters. Raises Failure (or
    AssertionError from the harness) when a check does not hold."""
    if seed is None:
        seed = random.SystemRandom().getrandbits(32)
    log("crashtest: seed %d (reproduce with --seed %d), %s, %d tenants"
        % (seed, seed, "%d graceful cycles" % graceful if graceful else "%d kills" % kills,
           tenants))
    rng = random.Random(seed)
    t0 = time.monotonic()
    ws = Workspace(config_extra=config, keep=keep)
    try:
        with FakeNetskope() as fake:
            c = Crash(fake, ws, rng, tenants)
            c.setup()
            cycle = 0
            while (c.stats["graceful"] < graceful) if graceful else (c.stats["kills"] < kills):
                if graceful:
                    c.graceful_cycle(cycle)
                elif rng.random() < 0.08:
                    c.complete_cycle(cycle)
                else:
                    c.kill_cycle(cycle)
                cycle += 1
                if cycle % 25 == 0:
                    c.check_no_duplicates("after cycle %d" % cycle)
                    ic = integrity(ws.db)
                    if ic != "ok":
                        raise Failure("after cycle %d: pragma integrity_check: %s" % (cycle, ic))
                    log("crashtest: %d cycles, %d kills, %d records so far"
                        % (cycle, c.stats["kills"], sum(len(fake.alerts(token(n))) for n in c.names)))
            c.stats["cycles"] = cycle
            c.final_run()
            c.verify()
            s = c.stats
            log("crashtest: seed %d: kills survived %d (daemon %d, once %d), passes finished %d, "
                "cycles %d" % (seed, s["kills"], s["kills_daemon"], s["kills_once"],
                               s["finished_once"] + s["graceful"], s["cycles"]))
            log("crashtest: records %d, delivered %d, duplicates found %d, lost found %d, "
                "temp files left %d; %d delivered before the final run, %d batches (%d spooled, "
                "%d spool files found at kills, %d found "
                "already in the sink, %d uploaded twice by one process), %d runs abandoned, "
                "%d faults queued, %d kills with an iterator page handed out and not committed, "
                "%d iterator resends, integrity ok, %.1f s"
                % (s["records"], s["delivered"], s["duplicates"], s["lost"],
                   s["temp_files_left"], s["delivered_before_final"], s["batches"],
                   s["spooled_batches"], s["spool_files_at_kills"], s["existed"],
                   s["double_uploads"], s["runs_abandoned"], s["faults_queued"],
                   s["iterator_pending_at_kills"], s["iterator_resends"], time.monotonic() - t0))
            return s
    except BaseException:
        log("crashtest: FAILED with seed %d; workspace %s%s" % (
            seed, ws.dir, "" if keep else " (removed; --keep keeps it)"))
        raise
    finally:
        ws.cleanup()


def child_pids(pid):
    """The children of process pid (Linux /proc)."""
    kids = []
    try:
        for task in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, task)) as f:
                kids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return kids


def fsync_in_progress(strace_log, file_re):
    """1 when the traced process sits in an fsync or fdatasync of a file
    whose path matches file_re: strace -y writes the call's start at once
    and its result when the (delayed) call returns."""
    try:
        lines = read(strace_log).splitlines()
    except OSError:
        return 0
    pat = re.compile(r"f(data)?sync\(\d+<%s>" % file_re)
    return any(pat.search(l) and " = " not in l for l in lines[-8:])


# Where kill_in_fsync kills: the file sink's fsync of a batch it copies (no
# spooling), or the spool file's fdatasync inside the commit (every batch
# spooled): after either, a clean pass must deliver everything once.
FSYNC_CASES = {
    "sink": ("outbox = { spool_min_bytes = 1073741824; };",
             lambda ws: r"%s/[^/>]+/[^>]+" % re.escape(ws.out)),
    "spool": ("outbox = { spool_min_bytes = 0; };",
              lambda ws: r"%s/\d+\.ndjson" % re.escape(ws.db + ".spool")),
}


def kill_in_fsync(log=print, case="sink"):
    """kill -9 while a batch is fsynced (strace holds every fsync and
    fdatasync for 3 s), then a clean `run --once`: the batch is delivered
    exactly once and the kill left no temp or spool file behind."""
    outbox_config, file_re = FSYNC_CASES[case]
    if not _have("strace") or subprocess.run(["strace", "-o", "/dev/null", "true"],
                                             stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL).returncode != 0:
        log("crashtest: SKIP kill inside fsync: strace is missing or cannot trace here")
        return None
    with FakeNetskope() as fake, Workspace(config_extra=BASE_CONFIG + outbox_config) as ws:
        c = Crash(fake, ws, random.Random(1), 1)
        c.setup()
        trace = os.path.join(ws.dir, "strace.out")
        cmd = ["strace", "-f", "-y", "-o", trace, "-e", "trace=fsync,fdatasync",
               "-e", "inject=fsync,fdatasync:delay_enter=3000000"] + ws.argv(["run", "--once"])
        tracer = subprocess.Popen(cmd, cwd=ws.dir, env=cli_env(), stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: tracer.poll() is not None or
                       fsync_in_progress(trace, file_re(ws)),
                       60, 0.01, "nscollect to fsync a batch (%s)" % case)
            if tracer.poll() is not None:
                raise Failure("kill inside fsync (%s): nscollect ended before it synced a batch"
                              % case)
            for pid in child_pids(tracer.pid):
                os.kill(pid, signal.SIGKILL)
            tracer.wait(30)
        finally:
            if tracer.poll() is None:
                tracer.kill()
                tracer.wait()
        left_by_kill = sink_leftovers(ws.out)[0] + spool_files(ws)
        c.final_run()
        c.verify()
        log("crashtest: kill inside fsync (%s): the kill left %d temp or spool file(s); after "
            "a clean run %d records exactly once, %d temp file(s) left"
            % (case, len(left_by_kill), c.stats["records"], c.stats["temp_files_left"]))
        return c.stats


def _have(prog):
    return any(os.access(os.path.join(d, prog), os.X_OK)
               for d in os.environ.get("PATH", "").split(os.pathsep) if d)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kills", type=int, default=120, help="SIGKILLs to deliver (default 120)")
    ap.add_argument("--seed", type=int, help="the plan's random seed (default: random, printed)")
    ap.add_argument("--tenants", type=int, default=4)
    ap.add_argument("--graceful", type=int, default=0,
                    help="instead of kills, N cycles of SIGTERM / finished passes")
    ap.add_argument("--no-fsync-case", action="store_true",
                    help="skip the kill inside an fsync (needs strace)")
    ap.add_argument("--keep", action="store_true", help="keep the workspace")
    ap.add_argument("--prefetch", action="store_true",
                    help="with fetch.prefetch (pages ahead, batches committed behind)")
    args = ap.parse_args()
    try:
        run(args.kills, args.seed, args.tenants, args.graceful, args.keep,
            config=PREFETCH_CONFIG if args.prefetch else CONFIG)
        if not args.graceful and not args.no_fsync_case:
            for case in FSYNC_CASES:
                kill_in_fsync(case=case)
    except Failure as e:
        print("crashtest: FAIL: %s" % e)
        return 1
    print("crashtest: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
