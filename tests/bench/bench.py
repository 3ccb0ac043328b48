#!/usr/bin/env python3
"""bench.py - nscollect's benchmarks (not timed tests), run by `make bench`.

    NSCOLLECT_BIN=./nscollect BENCH_RUNS=3 python3 tests/bench/bench.py [NAME...]

NAME picks benchmarks (throughput, tenants, backlog, dedupe; default all).
Each number is the median of BENCH_RUNS runs (default 3). The table is
printed and written, with the machine, the commit and the date, to
tests/bench/results.md (BENCH_RESULTS overrides the path).

  throughput  one tenant, BENCH_ALERTS (1,000,000) generated alerts, page size
              10000, `run --once` to the file sink; beside it curl fetching
              the same pages to /dev/null (the fetch limit, which is also the
              fake's own serving rate) and baseline_recipe.py (Google's
              recipe's per-record work in Python).
  tenants     BENCH_TENANTS (10,000) tenants x 10 alerts, one `run --once`.
  backlog     peak RSS of one tenant's run over 10k, 100k and the
              throughput run's 1M alerts.
  dedupe      a second run over a window whose 100k alerts all lie in the
              2-minute overlap: time, CPU, and that it stored nothing.

Everything runs on loopback against tests/fake_netskope.py; CPU time and
peak RSS are the measured command's own (wait4 in GNU time, else in
measure.py), so the fake's work is not counted. Tokens reach nscollect through its CLI (stdin or
--token-env), never argv.
"""

import concurrent.futures
import datetime
import http.client
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
from harness import ALERT_PATH, FakeNetskope, Workspace, cli_env, nscollect_bin  # noqa: E402

RUNS = max(1, int(os.environ.get("BENCH_RUNS", "3")))
ALERTS = int(os.environ.get("BENCH_ALERTS", "1000000"))
TENANTS = int(os.environ.get("BENCH_TENANTS", "10000"))
RESULTS = os.environ.get("BENCH_RESULTS", os.path.join(HERE, "results.md"))

PAGE = 10000                 # the API's largest page
GAP_S = 0.250                # fetch.c MIN_REQUEST_GAP_MS: 4 requests/s per tenant
TPUT_WORKERS = ["--fetch-workers", "1", "--upload-workers", "2"]
MANY_WORKERS = ["--fetch-workers", "16", "--upload-workers", "4"]
MIB = 1024 * 1024
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


FAILED = []                  # labels of runs that did not do what they should


def failed(m, label):
    m["failed"] = True
    FAILED.append(label)


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# ---- measuring a child --------------------------------------------------

def gnu_time():
    """/usr/bin/time if it is GNU time (it takes -f and -o), else None."""
    t = "/usr/bin/time"
    if not os.access(t, os.X_OK):
        return None
    try:
        with tempfile.NamedTemporaryFile() as f:
            rc = subprocess.run([t, "-f", "%U %S %M", "-o", f.name, "true"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
            return t if rc == 0 and len(open(f.name).read().split()) == 3 else None
    except OSError:
        return None


GNU_TIME = gnu_time()
RSS_BY = ("GNU time (/usr/bin/time -f %M)" if GNU_TIME else
          "tests/bench/measure.py (wait4; its own ~13 MiB is the floor of a child's peak RSS)")


def measure(argv, cwd=None, env=None, stdin_data=None, stdout=None, stderr=None):
    """Run argv to completion: its wall time, user and system CPU and peak
    RSS. CPU and RSS come from wait4 in a small intermediate process (GNU
    time, else measure.py): Linux seeds a child's ru_maxrss with its
    parent's resident size, and this script may be large."""
    argv = [str(a) for a in argv]
    fd, out = tempfile.mkstemp(prefix="nscollect-bench-rusage-")
    os.close(fd)
    if GNU_TIME:
        cmd = [GNU_TIME, "-f", "%U %S %M", "-o", out] + argv
    else:
        cmd = [sys.executable, os.path.join(HERE, "measure.py"), out] + argv
    try:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, cwd=cwd, env=env,
                             stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
                             stdout=stdout if stdout is not None else subprocess.DEVNULL,
                             stderr=stderr if stderr is not None else subprocess.DEVNULL)
        if stdin_data is not None:
            p.stdin.write(stdin_data)
            p.stdin.close()
        rc = p.wait()
        wall = time.monotonic() - t0
        with open(out) as f:
            lines = f.read().strip().splitlines()
    finally:
        os.unlink(out)
    user, sys_, rss = lines[-1].split() if lines else ("nan", "nan", "0")
    return {"wall": wall, "user": float(user), "sys": float(sys_),
            "cpu": float(user) + float(sys_), "rss_mib": int(rss) / 1024.0, "rc": rc}


def proc_cpu(pid):
    """A process's user + system CPU seconds so far, all its threads, from
    /proc/PID/stat (utime and stime, fields 14 and 15); None off Linux."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def with_fake_cpu(fake, run):
    """run() -> m, with m["fake_cpu"]: the CPU the fake spent meanwhile."""
    before = proc_cpu(fake.proc.pid)
    m = run()
    after = proc_cpu(fake.proc.pid)
    m["fake_cpu"] = after - before if before is not None and after is not None else None
    return m


def run_nscollect(ws, args, label):
    """`nscollect ARGS` in workspace ws, measured; its stderr kept in the
    workspace as LABEL.log (and shown if it fails unexpectedly)."""
    errpath = os.path.join(ws.dir, label + ".log")
    with open(errpath, "wb") as err:
        m = measure(ws.argv(args), cwd=ws.dir, env=cli_env(), stderr=err)
    m["log"] = errpath
    return m


def cli(ws, args, stdin=None, env=None):
    rc, out, err = ws.run_cli(args, stdin=stdin, env=env)
    if rc != 0:
        raise RuntimeError("nscollect %s: exit %d: %s" % (" ".join(args[:2]), rc, err.strip()))
    return out


def ndjson_stats(root):
    """(lines, bytes, files) of the NDJSON files under root."""
    lines = nbytes = files = 0
    for d, _, names in os.walk(root):
        for n in names:
            if not n.endswith(".ndjson"):
                continue
            files += 1
            with open(os.path.join(d, n), "rb") as f:
                while True:
                    chunk = f.read(8 * MIB)
                    if not chunk:
                        break
                    nbytes += len(chunk)
                    lines += chunk.count(b"\n")
    return lines, nbytes, files


def runs_table(db):
    """The run rows (tenant, status, pages, fetched, stored) in id order."""
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    try:
        return con.execute("SELECT tenant_id, status, pages, fetched, stored FROM run "
                           "ORDER BY id").fetchall()
    finally:
        con.close()


# ---- the fake's admin API on one kept-alive connection --------------------

class Admin:
    """Many admin calls on one connection (tenants benchmark set-up)."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

    def post(self, path, body):
        data = json.dumps(body).encode()
        self.conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
        r = self.conn.getresponse()
        out = r.read()
        if r.status != 200:
            raise RuntimeError("fake %s: HTTP %d %s" % (path, r.status, out[:200]))
        return json.loads(out)

    def close(self):
        self.conn.close()


def pacing_stats(fake, token):
    """From the fake's log of served requests: pages, the span from first
    to last request, and how many gaps between requests were within 20 ms
    of the 250 ms pacing minimum (pacing-bound) rather than longer (work-bound)."""
    reqs = fake.served(token)["requests"]
    ts = [r["t"] for r in reqs]
    gaps = [b - a for a, b in zip(ts, ts[1:])]
    return {"pages": len(reqs), "span": (ts[-1] - ts[0]) if ts else 0.0,
            "floor": max(0, len(reqs) - 1) * GAP_S,
            "paced_gaps": sum(1 for g in gaps if g < GAP_S + 0.020),
            "gaps": len(gaps), "gap_median": median(gaps) or 0.0}


# ---- 1. throughput --------------------------------------------------------

def curl_config(path, fake, token, start, end, pages):
    with open(path, "w") as f:
        f.write('header = "Netskope-Api-Token: %s"\nsilent\nshow-error\n' % token)
        f.write('write-out = "%{size_download}\\n"\n')
        for k in range(pages):
            f.write('url = "%s%s?insertionstarttime=%d&insertionendtime=%d&limit=%d&offset=%d"\n'
                    'output = "/dev/null"\n' % (fake.url, ALERT_PATH, start, end, PAGE, k * PAGE))


def throughput(fake, res):
    token = "bench-throughput"
    fake.add_tenant(token, "tput")
    now = int(time.time())
    t0 = time.monotonic()
    fake.generate(token, ALERTS, now - 7200, now - 600, seed=1)
    res["gen_s"] = time.monotonic() - t0
    log("throughput: fake generated %d alerts in %.1f s" % (ALERTS, res["gen_s"]))
    lookback = 4 * 3600            # covers the insertion range for the whole benchmark
    pages = ALERTS // PAGE + 1     # nscollect reads until a short page
    tmp = tempfile.mkdtemp(prefix="nscollect-bench-")
    runs = {"nscollect": [], "unpaced": [], "curl": [], "baseline": []}
    res["runs"] = runs
    try:
        for i in range(RUNS):
            # curl: the same pages, kept alive, to /dev/null
            cfg = os.path.join(tmp, "curl.cfg")
            t_end = int(time.time())
            curl_config(cfg, fake, token, t_end - lookback, t_end, pages)
            outp = os.path.join(tmp, "curl.out")
            with open(outp, "wb") as out:
                m = with_fake_cpu(fake, lambda: measure(["curl", "--config", cfg],
                                                        env=cli_env(), stdout=out))
            with open(outp) as f:
                m["bytes"] = sum(int(x) for x in f.read().split())
            if m["rc"] != 0 or m["bytes"] < ALERTS * 500:
                log("curl failed (rc %d, %d bytes)" % (m["rc"], m["bytes"]))
                failed(m, "throughput curl #%d" % (i + 1))
            runs["curl"].append(m)
            log("throughput run %d: curl %.2f s, %.0f MB" % (i + 1, m["wall"], m["bytes"] / 1e6))

            # nscollect at Netskope's 4 requests/s, then unpaced (the engine alone)
            for key, extra in (("nscollect", ""), ("unpaced", "requests_per_second = 1000; prefetch = true;")):
                fake.reset(token)
                with Workspace("fetch = { slice = 86400; %s };\n" % extra) as ws:
                    cli(ws, ["init"])
                    cli(ws, ["tenant", "add", "tput", "--url", fake.url, "--page-size", PAGE,
                             "--lookback", lookback], stdin=token)
                    m = with_fake_cpu(fake, lambda: run_nscollect(
                        ws, ["run", "--once"] + TPUT_WORKERS, "run"))
                    m["lines"], m["bytes"], m["files"] = ndjson_stats(ws.out)
                    m.update(pacing_stats(fake, token))
                    if m["rc"] != 0 or m["lines"] != ALERTS:
                        log("nscollect run failed (rc %d, %d lines): %s" % (m["rc"], m["lines"],
                            open(m["log"]).read()[-2000:]))
                        failed(m, "throughput %s #%d" % (key, i + 1))
                runs[key].append(m)
                log("throughput run %d: %s %.1f s wall, %.1f s CPU, %.0f MiB, %d pages" %
                    (i + 1, key, m["wall"], m["cpu"], m["rss_mib"], m["pages"]))

            # the recipe's work in Python
            outp = os.path.join(tmp, "baseline.ndjson")
            t_end = int(time.time())
            errp = os.path.join(tmp, "baseline.err")
            with open(os.path.join(tmp, "baseline.out"), "wb") as out, open(errp, "wb") as err:
                m = measure([sys.executable, os.path.join(HERE, "baseline_recipe.py"),
                             "--url", fake.url, "--token-env", "BENCH_TOKEN",
                             "--start", str(t_end - lookback), "--end", str(t_end),
                             "--page-size", str(PAGE), "--out", outp],
                            env=cli_env({"BENCH_TOKEN": token}), stdout=out, stderr=err)
            with open(os.path.join(tmp, "baseline.out")) as f:
                summary = f.read().strip().splitlines()
            info = dict(kv.split("=", 1) for kv in (summary[-1].split() if summary else []))
            m["client"] = info.get("client", "?")
            m["lines"] = int(info.get("records", 0))
            m["bytes"] = int(info.get("bytes", 0))
            if m["rc"] != 0 or m["lines"] != ALERTS:
                log("baseline failed (rc %d): %s" % (m["rc"], open(errp).read()[-2000:]))
                failed(m, "throughput baseline #%d" % (i + 1))
            os.unlink(outp)
            runs["baseline"].append(m)
            log("throughput run %d: baseline (%s) %.1f s wall, %.1f s CPU" %
                (i + 1, m["client"], m["wall"], m["cpu"]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---- 2. many tenants ------------------------------------------------------

def add_tenants(ws, fake_url, names_tokens, lookback, jobs=4):
    """`tenant add` for every (name, token), jobs processes at a time; the
    token goes through --token-env like an operator's script would."""
    def one(nt):
        name, token = nt
        rc, out, err = ws.run_cli(["tenant", "add", name, "--url", fake_url,
                                   "--lookback", lookback, "--token-env", "BENCH_TOKEN"],
                                  env={"BENCH_TOKEN": token})
        return name, rc, err
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        for name, rc, err in pool.map(one, names_tokens):
            if rc != 0:
                raise RuntimeError("tenant add %s: exit %d: %s" % (name, rc, err.strip()))


def fake_tenants(fake, n, label, per=10):
    """n tenants on the fake ("m00000"... with tokens "bench-LABEL-00000"...),
    each with per alerts inserted between 50 and 2 minutes ago; returns
    their (name, token) pairs."""
    now = int(time.time())
    tokens = [("m%05d" % i, "bench-%s-%05d" % (label, i)) for i in range(n)]
    admin = Admin(fake.port)
    try:
        for i, (name, token) in enumerate(tokens):
            admin.post("/_admin/tenant", {"token": token, "name": name})
            admin.post("/_admin/alerts", {"token": token, "generate": {
                "count": per, "insertion_start": now - 3000, "insertion_end": now - 120,
                "seed": i}})
    finally:
        admin.close()
    return tokens


def many_tenants(fake, res, n, per=10):
    t0 = time.monotonic()
    tokens = fake_tenants(fake, n, "many", per)
    res["fake_setup_s"] = time.monotonic() - t0
    template = Workspace()
    try:
        cli(template, ["init"])
        t0 = time.monotonic()
        add_tenants(template, fake.url, tokens, 3600)
        res["cli_setup_s"] = time.monotonic() - t0
        log("tenants: %d tenants set up (fake %.0f s, `tenant add` %.0f s)" %
            (n, res["fake_setup_s"], res["cli_setup_s"]))
        runs = res.setdefault("runs", [])
        for i in range(RUNS):
            with Workspace() as ws:
                for suffix in ("", ".key"):
                    shutil.copy2(template.db + suffix, ws.db + suffix)
                m = run_nscollect(ws, ["run", "--once"] + MANY_WORKERS, "run")
                m["lines"], m["bytes"], m["files"] = ndjson_stats(ws.out)
                m["dirs"] = len(os.listdir(ws.out)) if os.path.isdir(ws.out) else 0
                if m["rc"] != 0 or m["lines"] != n * per or m["dirs"] != n:
                    log("tenants run failed (rc %d, %d lines, %d tenant dirs): %s" %
                        (m["rc"], m["lines"], m["dirs"], open(m["log"]).read()[-2000:]))
                    failed(m, "tenants #%d" % (i + 1))
                runs.append(m)
                log("tenants run %d (%d tenants): %.1f s wall, %.1f s CPU, %.0f MiB" %
                    (i + 1, n, m["wall"], m["cpu"], m["rss_mib"]))
    finally:
        template.cleanup()


# ---- 3. backlog -----------------------------------------------------------

def backlog(fake, res, sizes=(10000, 100000)):
    now = int(time.time())
    for count in [s for s in sizes if s < ALERTS]:     # ALERTS itself: the throughput runs
        token = "bench-backlog-%d" % count
        fake.add_tenant(token, "backlog")
        fake.generate(token, count, now - 7200, now - 600, seed=2)
        rows = res.setdefault(count, [])
        for i in range(RUNS):
            with Workspace("fetch = { slice = 86400; };\n") as ws:
                cli(ws, ["init"])
                cli(ws, ["tenant", "add", "backlog", "--url", fake.url, "--page-size", PAGE,
                         "--lookback", 4 * 3600], stdin=token)
                m = run_nscollect(ws, ["run", "--once"] + TPUT_WORKERS, "run")
                m["lines"] = ndjson_stats(ws.out)[0]
                if m["rc"] != 0 or m["lines"] != count:
                    log("backlog run failed (rc %d, %d lines): %s" % (m["rc"], m["lines"],
                        open(m["log"]).read()[-2000:]))
                    failed(m, "backlog %d #%d" % (count, i + 1))
                rows.append(m)
        log("backlog %d: peak RSS %.0f MiB" % (count, median(r["rss_mib"] for r in rows)))


# ---- 4. dedupe ------------------------------------------------------------

def dedupe(fake, res, count=100000):
    for i in range(RUNS):
        token = "bench-dedupe-%d" % i
        fake.add_tenant(token, "dedupe")
        now = int(time.time())
        # Inserted in the last 90 s: the second run's window starts 120 s
        # before the first run's end, so it re-reads every one of them.
        fake.generate(token, count, now - 90, now - 1, seed=3 + i)
        with Workspace() as ws:
            cli(ws, ["init"])
            cli(ws, ["tenant", "add", "dedupe", "--url", fake.url, "--page-size", PAGE,
                     "--lookback", 3600], stdin=token)
            first = run_nscollect(ws, ["run", "--once"] + TPUT_WORKERS, "first")
            first_lines = ndjson_stats(ws.out)[0]
            fake.reset(token)
            second = run_nscollect(ws, ["run", "--once"] + TPUT_WORKERS, "second")
            second.update(pacing_stats(fake, token))
            second["lines_after"] = ndjson_stats(ws.out)[0]
            runs = runs_table(ws.db)
            second["fetched"], second["stored"] = runs[-1][3], runs[-1][4]
            first["stored"] = runs[0][4]
            # 100,000 records in one window are more than fetch.offset_max
            # (50,000) lets one read page through: the first read goes too
            # deep once (its 50,000 are read again), then slices that fit.
            ok = (first["rc"] == 0 and second["rc"] == 0 and first_lines == count and
                  second["lines_after"] == count and second["stored"] == 0 and
                  count <= second["fetched"] <= count + 50000)
            if not ok:
                log("dedupe run %d not as expected: first rc %d lines %d; second rc %d "
                    "fetched %d stored %d lines %d" % (i + 1, first["rc"], first_lines,
                    second["rc"], second["fetched"], second["stored"], second["lines_after"]))
                failed(second, "dedupe #%d" % (i + 1))
            res.setdefault("first", []).append(first)
            res.setdefault("second", []).append(second)
            log("dedupe run %d: first %.1f s (%.1f CPU), re-read %.1f s (%.1f CPU), "
                "fetched %d stored %d" % (i + 1, first["wall"], first["cpu"], second["wall"],
                                          second["cpu"], second["fetched"], second["stored"]))


# ---- the report -----------------------------------------------------------

def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = "%.1f GiB" % (int(line.split()[1]) / 1024.0 / 1024.0)
                    break
    except OSError:
        pass

    def git(*args):
        try:
            return subprocess.run(["git"] + list(args), cwd=REPO, capture_output=True,
                                  text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    commit = git("rev-parse", "--short", "HEAD") or "?"
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += " (with uncommitted changes)"
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return {"nproc": nproc or str(os.cpu_count()), "cpu": cpu, "mem": mem, "commit": commit,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "kernel": platform.release(), "python": platform.python_version()}


def fmt(v, spec="%.1f"):
    return "n/a" if v is None else spec % v


def verdict(ok):
    return "n/a" if ok is None else ("yes" if ok else "**NO**")


def med(rows, key):
    return median(r.get(key) for r in rows if not r.get("failed"))


def build_table(R):
    """Rows of (benchmark, metric, value, target, met)."""
    rows = []
    T = R.get("throughput")
    if T and T.get("runs"):
        ns, cu, bl = T["runs"]["nscollect"], T["runs"]["curl"], T["runs"]["baseline"]
        up = T["runs"].get("unpaced") or []
        u_wall, u_cpu = med(up, "wall"), med(up, "cpu")
        n_wall, n_cpu = med(ns, "wall"), med(ns, "cpu")
        n_bytes = med(ns, "bytes")
        c_wall, c_bytes = med(cu, "wall"), med(cu, "bytes")
        b_wall, b_cpu = med(bl, "wall"), med(bl, "cpu")
        n_per_cpu = ALERTS / n_cpu if n_cpu else None
        b_per_cpu = ALERTS / b_cpu if b_cpu else None
        ratio_cpu = n_per_cpu / b_per_cpu if n_per_cpu and b_per_cpu else None
        ratio_wall = n_wall / c_wall if n_wall and c_wall else None
        floor = med(ns, "floor")
        # The least wall time the unpaced run's work allows: its CPU and the
        # fake's, spread perfectly over every core (each run's, then the median).
        cpu_floor = median((r["cpu"] + r["fake_cpu"]) / CORES for r in up
                           if not r.get("failed") and r.get("fake_cpu") is not None)
        name = "throughput (1 tenant, %s alerts)" % "{:,}".format(ALERTS)
        rows += [
            (name, "nscollect wall", fmt(n_wall, "%.1f s"), "", ""),
            (name, "nscollect user + sys CPU", "%s + %s = %s" % (
                fmt(med(ns, "user"), "%.1f"), fmt(med(ns, "sys"), "%.1f"), fmt(n_cpu, "%.1f s")), "", ""),
            (name, "nscollect alerts/s (wall)", fmt(ALERTS / n_wall if n_wall else None, "%.0f"), "", ""),
            (name, "nscollect MB/s (NDJSON out, wall)", fmt(n_bytes / 1e6 / n_wall if n_wall and n_bytes else None), "", ""),
            (name, "nscollect alerts per CPU second", fmt(n_per_cpu, "%.0f"), "", ""),
            (name, "nscollect peak RSS", fmt(med(ns, "rss_mib"), "%.0f MiB"), "", ""),
            (name, "pages; pacing floor (pages-1) x 250 ms", "%s; %s" % (
                fmt(med(ns, "pages"), "%.0f"), fmt(floor, "%.1f s")), "", ""),
            (name, "fetch phase: first to last request", fmt(med(ns, "span"), "%.1f s"), "", ""),
            (name, "pacing floor as share of nscollect wall", fmt(100 * floor / n_wall if floor and n_wall else None, "%.0f %%"), "", ""),
            (name, "gaps between requests at the 250 ms minimum", "%s of %s (median gap %s)" % (
                fmt(med(ns, "paced_gaps"), "%.0f"), fmt(med(ns, "gaps"), "%.0f"),
                fmt(med(ns, "gap_median"), "%.2f s")), "", ""),
            (name, "unpaced (fetch.requests_per_second = 1000, fetch.prefetch): wall; user + sys CPU", "%s; %s + %s = %s" % (
                fmt(u_wall, "%.2f s"), fmt(med(up, "user"), "%.1f"), fmt(med(up, "sys"), "%.1f"),
                fmt(u_cpu, "%.1f s")), "", ""),
            (name, "unpaced: alerts/s (wall); alerts per CPU second; peak RSS", "%s; %s; %s" % (
                fmt(ALERTS / u_wall if u_wall else None, "%.0f"),
                fmt(ALERTS / u_cpu if u_cpu else None, "%.0f"),
                fmt(med(up, "rss_mib"), "%.0f MiB")), "", ""),
            (name, "curl wall (same pages to /dev/null)", fmt(c_wall, "%.2f s"), "", ""),
            (name, "curl user + sys CPU", fmt(med(cu, "cpu"), "%.2f s"), "", ""),
            (name, "fake serving rate (curl): alerts/s; MB/s", "%s; %s" % (
                fmt(ALERTS / c_wall if c_wall else None, "%.0f"),
                fmt(c_bytes / 1e6 / c_wall if c_wall and c_bytes else None, "%.0f")), "", ""),
            (name, "fake's CPU while serving: curl; unpaced nscollect", "%s; %s" % (
                fmt(med(cu, "fake_cpu"), "%.2f s"), fmt(med(up, "fake_cpu"), "%.2f s")), "", ""),
            (name, "unpaced CPU floor: (nscollect + fake CPU) / %d cores; x curl wall" % CORES,
             "%s; %s" % (fmt(cpu_floor, "%.2f s"),
                         fmt(cpu_floor / c_wall if cpu_floor and c_wall else None, "%.2fx")),
             "(informative)", ""),
            (name, "unpaced wall / its CPU floor", fmt(
                u_wall / cpu_floor if u_wall and cpu_floor else None, "%.2fx"), "(informative)", ""),
            (name, "baseline (%s) wall" % (bl[0].get("client", "?") if bl else "?"), fmt(b_wall, "%.1f s"), "", ""),
            (name, "baseline user + sys CPU", fmt(b_cpu, "%.1f s"), "", ""),
            (name, "baseline alerts per CPU second", fmt(b_per_cpu, "%.0f"), "", ""),
            (name, "baseline peak RSS", fmt(med(bl, "rss_mib"), "%.0f MiB"), "", ""),
            (name, "alerts per CPU second, nscollect / baseline", fmt(ratio_cpu, "%.2fx"), ">= 10x",
             verdict(ratio_cpu >= 10 if ratio_cpu else None)),
            (name, "alerts per CPU second, unpaced nscollect / baseline",
             fmt(b_cpu / u_cpu if u_cpu and b_cpu else None, "%.2fx"), ">= 10x",
             verdict(b_cpu / u_cpu >= 10 if u_cpu and b_cpu else None)),
            (name, "wall, nscollect / curl", fmt(ratio_wall, "%.1fx"), "<= 1.5x",
             verdict(ratio_wall <= 1.5 if ratio_wall else None)),
            (name, "wall, unpaced nscollect / curl", fmt(u_wall / c_wall if u_wall and c_wall else None, "%.1fx"),
             "<= 1.5x", verdict(u_wall / c_wall <= 1.5 if u_wall and c_wall else None)),
            (name, "wall, unpaced / curl, run by run (curl's own wall varies)", ", ".join(
                "%.2fx" % (u["wall"] / c["wall"]) for u, c in zip(up, cu)
                if not u.get("failed") and not c.get("failed")), "(informative)", ""),
            (name, "wall, nscollect / max(curl, pacing floor)", fmt(
                n_wall / max(c_wall, floor) if n_wall and c_wall and floor is not None else None,
                "%.1fx"), "(informative)", ""),
        ]
    M = R.get("tenants")
    if M and M.get("runs"):
        runs = M["runs"]
        n = M["n"]
        wall, rss = med(runs, "wall"), med(runs, "rss_mib")
        name = "many tenants (%s x 10 alerts)" % "{:,}".format(n)
        rows += [
            (name, "wall, one `run --once`", fmt(wall, "%.1f s"), "< 60 s",
             verdict(wall < 60 if wall else None)),
            (name, "user + sys CPU", fmt(med(runs, "cpu"), "%.1f s"), "", ""),
            (name, "peak RSS", fmt(rss, "%.0f MiB"), "< 200 MiB", verdict(rss < 200 if rss else None)),
            (name, "tenants per second", fmt(n / wall if wall else None, "%.0f"), "", ""),
            (name, "set-up (not measured in the run): fake; `tenant add` x%d" % n,
             "%s; %s" % (fmt(M.get("fake_setup_s"), "%.0f s"), fmt(M.get("cli_setup_s"), "%.0f s")), "", ""),
        ]
    B = R.get("backlog")
    if B:
        sizes = sorted(k for k in B if isinstance(k, int))
        rss = {k: med(B[k], "rss_mib") for k in sizes}
        for k in sizes:
            rows.append(("backlog (1 tenant, page 10000)", "peak RSS, %s alerts" % "{:,}".format(k),
                         fmt(rss[k], "%.0f MiB"), "", ""))
        if sizes and rss.get(sizes[0]) and rss.get(sizes[-1]):
            growth = rss[sizes[-1]] / rss[sizes[0]] - 1
            rows.append(("backlog (1 tenant, page 10000)", "RSS growth %s -> %s" % (
                "{:,}".format(sizes[0]), "{:,}".format(sizes[-1])), "%+.1f %%" % (100 * growth),
                "within 10 %", verdict(abs(growth) <= 0.10)))
        if len(sizes) > 2 and rss.get(sizes[-2]) and rss.get(sizes[-1]):
            growth = rss[sizes[-1]] / rss[sizes[-2]] - 1
            rows.append(("backlog (1 tenant, page 10000)", "RSS growth %s -> %s" % (
                "{:,}".format(sizes[-2]), "{:,}".format(sizes[-1])), "%+.1f %%" % (100 * growth),
                "(informative)", ""))
    D = R.get("dedupe")
    if D and D.get("second"):
        f, s = D["first"], D["second"]
        stored = [r.get("stored") for r in s]
        name = "dedupe (100,000 alerts in the overlap)"
        rows += [
            (name, "first run (stores them): wall; CPU", "%s; %s" % (
                fmt(med(f, "wall"), "%.1f s"), fmt(med(f, "cpu"), "%.1f s")), "", ""),
            (name, "second run (re-reads them): wall; CPU", "%s; %s" % (
                fmt(med(s, "wall"), "%.1f s"), fmt(med(s, "cpu"), "%.1f s")), "", ""),
            (name, "second run: pacing floor", fmt(med(s, "floor"), "%.1f s"), "", ""),
            (name, "second run: records fetched (each run)",
             ", ".join(str(r.get("fetched")) for r in s), "100000-150000 (offset_max)", ""),
            (name, "second run: CPU per fetched alert", fmt(
                1e6 * med(s, "cpu") / med(s, "fetched") if med(s, "cpu") else None, "%.1f us"),
             "", ""),
            (name, "second run: records stored (each run)", ", ".join(str(x) for x in stored),
             "0", verdict(all(x == 0 for x in stored) and not any(r.get("failed") for r in s))),
        ]
    return rows


def render(R, mach, elapsed):
    rows = build_table(R)
    out = ["# nscollect benchmarks", ""]
    out.append("Written by `make bench` (tests/bench/bench.py); median of %d runs." % RUNS)
    out.append("")
    out.append("- machine: %s CPUs (`nproc`), %s, %s memory, Linux %s, Python %s" % (
        mach["nproc"], mach["cpu"], mach["mem"], mach["kernel"], mach["python"]))
    out.append("- commit: %s; date: %s; binary: %s" % (mach["commit"], mach["date"],
                                                       os.path.relpath(nscollect_bin(), REPO)))
    out.append("- workers: throughput, backlog and dedupe `run --once %s`; many tenants "
               "`run --once %s`" % (" ".join(TPUT_WORKERS), " ".join(MANY_WORKERS)))
    out.append("- the fake Netskope (tests/fake_netskope.py) serves over loopback; CPU and "
               "peak RSS are the measured command's own, not the fake's, from %s" % RSS_BY)
    out.append("- total time of this benchmark run: %.0f s" % elapsed)
    out.append("")
    out.append("| benchmark | metric | value | target | met |")
    out.append("|---|---|---|---|---|")
    for r in rows:
        out.append("| %s |" % " | ".join(r))
    out.append("")
    out += notes(R)
    out += details(R)
    return "\n".join(out) + "\n"


def notes(R):
    out = ["## Notes", ""]
    T = R.get("throughput")
    if T and T.get("runs"):
        out.append("- Pacing: nscollect sends at most fetch.requests_per_second (default 4, "
                   "Netskope's documented limit) requests per second to a tenant, so at the "
                   "default %d pages cannot take less than the pacing floor above, whatever "
                   "the machine. A gap is counted as paced when it is within 20 ms of 250 ms; "
                   "longer gaps are the time nscollect itself spent on a page (receive, parse, "
                   "commit). The unpaced run sets fetch.requests_per_second = 1000 (the fake "
                   "has no limit) and fetch.prefetch (the next page fetched and parsed on "
                   "a second thread while the last is stored): the same work with nothing "
                   "to wait for, which is what the comparison with curl's wall time "
                   "measures. On 2 cores the fake's own serving (a core for curl's wall "
                   "time) competes with nscollect's two threads." % (ALERTS // PAGE + 1))
        out.append("- curl reads the same pages on one kept-alive connection; its wall time "
                   "is the fake's serving rate, the fetch limit on this machine.")
        out.append("- CPU floor: the fake's CPU is read from /proc/PID/stat around each run. "
                   "The unpaced run's user + system CPU plus the fake's, divided by the %d "
                   "cores, is the least wall time that work could take if both processes "
                   "kept every core busy all the time; a floor above 1.5x curl's wall means "
                   "the wall target is out of reach on this machine without less CPU, "
                   "whatever the pipelining. Its ratio to the unpaced wall is how much of "
                   "the machine the run kept busy." % CORES)
        out.append("- The baseline does the recipe's per-page json.loads and per-record "
                   "json.dumps and writes NDJSON to a local file with no fsync, no "
                   "dedupe and no database; it rewrites records (json.dumps), which "
                   "nscollect must not do.")
    B = R.get("backlog")
    if B:
        out.append("- Backlog: the backlog is the tenant's unread window (records waiting at "
                   "the API). Peak RSS is the fetch worker's fixed buffers (one page, one "
                   "record's tokens, one batch) plus SQLite's page cache (1 MiB per connection), which "
                   "fills as the dedupe table grows, hence the few MiB from 10,000 to "
                   "100,000; batches of 1 MiB and more are spooled to files and a file sink "
                   "links them, so upload workers hold no copy. The second run of the dedupe "
                   "benchmark (fetch and parse only, nothing stored) shows the fetch side "
                   "alone.")
    M = R.get("tenants")
    if M and M.get("runs"):
        out.append("- Many tenants: the %s tenants are added once, through `tenant add "
                   "--token-env`, four processes at a time, into a template database that each "
                   "run copies; only the run is measured." % "{:,}".format(M["n"]))
    out.append("")
    return out


def details(R):
    out = ["## Each run", ""]
    keys = ("wall", "user", "sys", "fake_cpu", "rss_mib", "rc")

    def line(label, runs):
        for i, m in enumerate(runs):
            vals = ", ".join("%s %s" % (k, ("%.2f" % m[k]) if isinstance(m[k], float) else m[k])
                             for k in keys if k in m)
            extra = ", ".join("%s %s" % (k, m[k]) for k in ("pages", "lines", "stored", "fetched")
                              if k in m)
            out.append("- %s #%d: %s%s%s" % (label, i + 1, vals, "; " + extra if extra else "",
                                             " FAILED" if m.get("failed") else ""))
    T = R.get("throughput")
    if T and T.get("runs"):
        for k in ("nscollect", "unpaced", "curl", "baseline"):
            line("throughput " + k, T["runs"].get(k) or [])
    M = R.get("tenants")
    if M and M.get("runs"):
        line("tenants (%d)" % M["n"], M["runs"])
    B = R.get("backlog")
    if B:
        for k in sorted(x for x in B if isinstance(x, int)):
            line("backlog %d" % k, B[k])
    D = R.get("dedupe")
    if D and D.get("second"):
        line("dedupe first", D["first"])
        line("dedupe second", D["second"])
    out.append("")
    return out


def main():
    names = sys.argv[1:] or ["throughput", "tenants", "backlog", "dedupe"]
    bad = [n for n in names if n not in ("throughput", "tenants", "backlog", "dedupe")]
    if bad:
        print("bench.py: unknown benchmark %s (throughput, tenants, backlog, dedupe)" % bad,
              file=sys.stderr)
        return 2
    if not os.access(nscollect_bin(), os.X_OK):
        print("bench.py: no nscollect binary at %s (run `make`)" % nscollect_bin(), file=sys.stderr)
        return 2
    t0 = time.monotonic()
    R = {}
    if "throughput" in names or "backlog" in names:
        with FakeNetskope() as fake:
            if "throughput" in names:
                R["throughput"] = {}
                throughput(fake, R["throughput"])
            if "backlog" in names:
                R["backlog"] = {}
                backlog(fake, R["backlog"])
                if R.get("throughput", {}).get("runs"):
                    R["backlog"][ALERTS] = R["throughput"]["runs"]["nscollect"]
    if "dedupe" in names:
        with FakeNetskope() as fake:
            R["dedupe"] = {}
            dedupe(fake, R["dedupe"])
    if "tenants" in names:
        with FakeNetskope() as fake:
            R["tenants"] = {"n": TENANTS}
            many_tenants(fake, R["tenants"], TENANTS)
    text = render(R, machine(), time.monotonic() - t0)
    with open(RESULTS + ".tmp", "w") as f:
        f.write(text)
    os.replace(RESULTS + ".tmp", RESULTS)
    print(text)
    if FAILED:
        print("bench.py: %d runs did not do what they should (see the log lines above): %s"
              % (len(FAILED), ", ".join(FAILED)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
