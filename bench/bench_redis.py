"""persimmon-redis against itself without persistence and against Debian's redis-server.

One run, side by side on this machine (2 cores shared by redis-benchmark, the server and,
in persimmon mode, the shadow process): redis-benchmark with 50 clients, 100-byte values,
a 1,000,000-key space,
  * SET and GET separately, and
  * a 10%-writes mix (two redis-benchmark processes started together: n/10 SETs over 5
    clients and 9n/10 GETs over 45, so exactly 10 % of the requests are writes; throughput
    is all the requests over the longer of the two runs),
each without and with -P 16 pipelining, in rounds that visit every server in turn (the
median is reported), against
  persimmon-redis --persistence persimmon, persimmon-redis --persistence none,
  redis-server (appendonly no), and redis-server (appendonly yes, appendfsync always,
  AOF on the root file system); ``persimmon-disk`` and ``persimmon-disk-overlap`` (not run
  unless named in --servers) are persimmon-redis with its pool on that same disk, the
  second with ``--commit-overlap yes`` (``persimmon-disk-overlapN``: ``--commit-overlap N``,
  N commits in flight at once).

    python bench/bench_redis.py [--n 100000] [--rounds 3] [--servers a,b] [--quick]

With ``--baseline-tree DIR`` (a checkout of another commit, its extension built in place),
the two persimmon-redis servers of that tree run beside this tree's in the same rounds
(named ``...@baseline``), and the summary compares each tree's persimmon/none and the
two trees' throughput and CPU per request, round by round:

    git worktree add /tmp/base <commit> && (cd /tmp/base && python setup.py build_ext -i)
    python bench/bench_redis.py --tests mix --rounds 7 --baseline-tree /tmp/base
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from machine import calibration_line, cpu_seconds  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on {port} did not come up")


BASELINE = "@baseline"
PERSISTENT = ("persimmon-persimmon", "persimmon-disk")  # (they have a shadow to settle)


def start(kind: str, port: int, workdir: str, shadow_priority: str | None = None,
          baseline_tree: str | None = None) -> subprocess.Popen:
    env = None
    if kind.endswith(BASELINE):
        # the same server from another source tree
        env = dict(os.environ, PYTHONPATH=os.path.join(baseline_tree or "", "src"))
        kind = kind[:-len(BASELINE)]
    if kind.startswith("persimmon"):
        mode = kind.split("-")[1]
        # persimmon-disk: the pool in the work directory, on the root file system's disk
        # (where redis-server's AOF goes), instead of /dev/shm
        where = workdir if mode == "disk" else "/dev/shm"
        cmd = [sys.executable, "-m", "persimmon_redis", "--port", str(port), "--persistence",
               "persimmon" if mode == "disk" else mode]
        if shadow_priority is not None:
            cmd += ["--shadow-priority", shadow_priority]
        if kind.startswith("persimmon-disk-overlap"):  # (-overlapN: N commits in flight)
            cmd += ["--commit-overlap", kind[len("persimmon-disk-overlap"):] or "yes"]
        cmd += ["--dir", os.path.join(where, f"bench-{uuid.uuid4().hex}")]
    elif kind == "redis-noaof":
        cmd = ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no",
               "--bind", "127.0.0.1", "--dir", workdir]
    else:
        cmd = ["redis-server", "--port", str(port), "--save", "", "--appendonly", "yes",
               "--appendfsync", "always", "--bind", "127.0.0.1", "--dir", workdir]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    p.pool_dir = cmd[-1] if kind.startswith("persimmon") else None  # type: ignore[attr-defined]
    wait_port(port)
    return p


def bench(port: int, test: str, n: int, clients: int, pipeline: int) -> subprocess.Popen:
    return subprocess.Popen(
        ["redis-benchmark", "-p", str(port), "-q", "-n", str(n), "-c", str(clients), "-d",
         "100", "-r", "1000000", "-P", str(pipeline), "-t", test],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def rps(out: str) -> float:
    m = re.findall(r"([\d.]+) requests per second", out.replace("\r", "\n"))
    return float(m[-1]) if m else 0.0


def settle(port: int, persistent: bool) -> None:
    # Let the shadow catch up before the next run, so one run's backlog does not eat the
    # next run's CPU (SAVE returns when the PM copy has reached the log head).
    if persistent:
        subprocess.run(["redis-cli", "-p", str(port), "SAVE"], capture_output=True, timeout=600)


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def run_test(port: int, test: str, n: int, pipeline: int, persistent: bool,
             pid: int) -> tuple:
    """One test ("set", "get" or "mix") against the server ``pid``: requests/s, the overlap
    of the mix's two runs (the shorter one's duration over the longer one's), and CPU
    seconds per request of the server and of its shadow.  The shadow's CPU is counted until
    it has caught up after the run (its work for these requests)."""
    settle(port, persistent)
    kids = children(pid)
    s0, k0 = cpu_seconds(pid), sum(cpu_seconds(k) for k in kids)
    if test != "mix":
        rate, share, reqs = rps(bench(port, test, n, 50, pipeline).communicate()[0]), 0.0, n
    else:
        # Exactly 10 % writes: n/10 SETs over 5 clients and 9n/10 GETs over 45, started
        # together, so every client makes the same number of requests and the two finish
        # at about the same time.  Throughput: all requests over the longer of the two
        # runs (each run's own duration, requests / its requests per second, which leaves
        # out redis-benchmark's start-up).
        nw = max(n // 10, 1000)
        nr = 9 * nw
        w = bench(port, "set", nw, 5, pipeline)
        r = bench(port, "get", nr, 45, pipeline)
        wr, rr = rps(w.communicate()[0]), rps(r.communicate()[0])
        reqs = nw + nr
        dw, dr = (nw / wr, nr / rr) if wr and rr else (1.0, float("inf"))
        rate, share = reqs / max(dw, dr), min(dw, dr) / max(dw, dr)
    s1 = cpu_seconds(pid)
    settle(port, persistent)
    k1 = sum(cpu_seconds(k) for k in kids)
    return rate, share, (s1 - s0) / reqs, (k1 - k0) / reqs


def paired_median(xs: list[float], ys: list[float]) -> float:
    """The median of ``x / y`` over rounds (pairs measured side by side)."""
    rs = [x / y for x, y in zip(xs, ys, strict=True) if y]
    return statistics.median(rs) if rs else 0.0


def median_interval(xs: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """A distribution-free confidence interval of the median of ``xs`` (order statistics:
    the k-th smallest and k-th largest, k the largest with P(Binomial(n, 1/2) < k) <= (1 -
    level) / 2); None when there are too few values for one."""
    n = len(xs)
    xs = sorted(xs)
    k, cum = 0, 0.0
    while True:  # cum = P(B < k + 1)
        cum += math.comb(n, k) / 2**n
        if cum > (1 - level) / 2:
            break
        k += 1
    return (xs[k - 1], xs[n - k]) if k >= 1 else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="fewer requests (smoke run)")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each test per server")
    ap.add_argument("--tests", default="set,get,mix",
                    help="comma-separated subset of set,get,mix")
    ap.add_argument("--pipelines", default="1,16", help="comma-separated -P values")
    ap.add_argument("--servers", default="persimmon-persimmon,persimmon-none,redis-noaof,"
                    "redis-aof-always", help="comma-separated subset of the servers")
    ap.add_argument("--shadow-priority", choices=["idle", "normal"], default=None,
                    help="--shadow-nice passed to persimmon-redis (default: its own)")
    ap.add_argument("--baseline-tree", default=None,
                    help="another checkout whose persimmon-redis servers run beside these")
    args = ap.parse_args()
    n = 5000 if args.quick else args.n
    if shutil.which("redis-benchmark") is None or shutil.which("redis-server") is None:
        sys.exit("needs redis-tools and redis-server (apt-get install redis-tools redis-server)")
    kinds = args.servers.split(",")
    tests = args.tests.split(",")
    if not tests or any(t not in ("set", "get", "mix") for t in tests):
        ap.error("--tests: a comma-separated subset of set,get,mix")
    try:
        pipelines = [int(x) for x in args.pipelines.split(",")]
    except ValueError:
        ap.error("--pipelines: comma-separated integers")
    known = ("persimmon-persimmon", "persimmon-none", "persimmon-disk",
             "persimmon-disk-overlap", "redis-noaof", "redis-aof-always")
    unknown = [k for k in kinds if k not in known
               and not re.fullmatch(r"persimmon-disk-overlap[1-9][0-9]?", k)]
    if unknown:
        ap.error(f"unknown server(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    if args.baseline_tree:
        if not os.path.isdir(os.path.join(args.baseline_tree, "src", "persimmon_redis")):
            ap.error(f"--baseline-tree: no src/persimmon_redis under {args.baseline_tree}")
        kinds += [k + BASELINE for k in kinds if k.startswith("persimmon")]
    print(calibration_line(), flush=True)
    results: dict = {}
    workroot = tempfile.mkdtemp(prefix="bench-redis-", dir=os.path.expanduser("~"))
    procs: dict = {}
    try:
        # Every server runs for the whole benchmark (idle ones take no CPU); each test is
        # repeated in rounds that visit the servers in turn, so the machine's drift over
        # the run is shared by all of them, and the median of the rounds is reported.
        for kind in kinds:
            port = free_port()
            wd = os.path.join(workroot, kind)
            os.makedirs(wd, exist_ok=True)
            procs[kind] = (start(kind, port, wd, args.shadow_priority, args.baseline_tree),
                           port)
        for pl in pipelines:
            nn = n * (4 if pl > 1 else 1)
            for test in tests:
                runs: dict = {k: [] for k in kinds}
                for rnd in range(args.rounds):
                    # every other round visits the servers in the reverse order, so that
                    # none of them is always measured first after the machine's drift
                    for kind in (kinds if rnd % 2 == 0 else kinds[::-1]):
                        runs[kind].append(run_test(procs[kind][1], test, nn, pl,
                                                   kind.startswith(PERSISTENT),
                                                   procs[kind][0].pid))
                for kind in kinds:
                    vals = sorted(runs[kind])
                    med = vals[len(vals) // 2]
                    r = results.setdefault((kind, pl), {})
                    r[test] = med[0]
                    if test == "mix":
                        r["mix_overlap"] = med[1]
                    srv = sorted(v[2] for v in runs[kind])
                    shd = sorted(v[3] for v in runs[kind])
                    r.setdefault("cpu", {})[test] = (srv[len(srv) // 2], shd[len(shd) // 2])
                    r.setdefault("all", {})[test] = [round(v[0]) for v in runs[kind]]
                print(f"P={pl} {test}: " + ", ".join(
                    f"{k} {results[(k, pl)][test]:,.0f} {results[(k, pl)]['all'][test]}"
                    for k in kinds), flush=True)
    finally:
        for p, _port in procs.values():
            p.send_signal(signal.SIGTERM)
            p.wait(60)
            if p.pool_dir:  # type: ignore[attr-defined]
                shutil.rmtree(p.pool_dir, ignore_errors=True)  # type: ignore[attr-defined]
        shutil.rmtree(workroot, ignore_errors=True)
    print("\nrequests/s, median of the rounds (redis-benchmark -c 50 -d 100 -r 1000000; client, "
          f"server and shadow share 2 cores; n={n}, rounds={args.rounds})")
    def cell(v: dict, t: str, fmt: str, width: int) -> str:
        return f"{v[t]:>{width}{fmt}}" if t in v else f"{'-':>{width}}"

    print(f"{'server':30}{'P':>3}{'SET':>11}{'GET':>11}{'10% mix':>11}{'(overlap)':>10}")
    for (kind, pl), v in results.items():
        print(f"{kind:30}{pl:>3}{cell(v, 'set', ',.0f', 11)}{cell(v, 'get', ',.0f', 11)}"
              f"{cell(v, 'mix', ',.0f', 11)}{cell(v, 'mix_overlap', '.0%', 10)}")
    print("\nCPU per request, us (median of the rounds; server process + its shadow, the "
          "shadow counted until it has caught up)")
    print(f"{'server':30}{'P':>3}{'SET':>15}{'GET':>15}{'10% mix':>15}")
    for (kind, pl), v in results.items():
        cells = "".join(f"{v['cpu'][t][0] * 1e6:>9.2f}+{v['cpu'][t][1] * 1e6:<5.2f}"
                        if t in v["cpu"] else f"{'-':>15}" for t in ("set", "get", "mix"))
        print(f"{kind:30}{pl:>3}{cells}")
    for pl in pipelines:
        red = results.get(("redis-noaof", pl))
        compare_modes(results, pl, tests, "")
        if args.baseline_tree:
            compare_modes(results, pl, tests, BASELINE)
            compare_trees(results, pl, tests)
        none = results.get(("persimmon-none", pl))
        if none and red:
            print(f"P={pl}: none/redis-server: " + ", ".join(
                f"{t} {none[t] / red[t]:.3f}" for t in tests))
        disk, aof = results.get(("persimmon-disk", pl)), results.get(("redis-aof-always", pl))
        if disk and aof:
            print(f"P={pl}: persimmon-disk/redis-aof-always, median of the paired rounds: "
                  + ", ".join(f"{t} {paired_median(disk['all'][t], aof['all'][t]):.3f}"
                              for t in tests))


def compare_modes(results: dict, pl: int, tests: list[str], tree: str) -> None:
    """persimmon/none of one tree (``tree`` is "" for this one, BASELINE for the other)."""
    pm = results.get(("persimmon-persimmon" + tree, pl))
    none = results.get(("persimmon-none" + tree, pl))
    label = f"P={pl}{tree}"
    if pm and none:
        print(f"{label}: persimmon/none, ratio of the medians: " + "; ".join(
            f"{t} {pm[t] / none[t]:.3f}" for t in tests))
        # Each round measures the two servers one right after the other: the median of
        # those paired ratios is less exposed to the machine's drift than the ratio of
        # the two medians.  Its 95 % interval says how far the noise leaves it open.
        for t in tests:
            ratios = [a / b for a, b in zip(pm["all"][t], none["all"][t], strict=True)
                      if b]
            ci = median_interval(ratios)
            span = f", 95 % interval {ci[0]:.3f}-{ci[1]:.3f}" if ci else ""
            shown = ", ".join(f"{r:.3f}" for r in ratios) if t == "mix" else ""
            print(f"{label}: persimmon/none {t}, median of the rounds' paired ratios "
                  f"{paired_median(pm['all'][t], none['all'][t]):.3f}{span}"
                  + (f" (rounds: {shown})" if shown else ""))
        srv = {t: none["cpu"][t][0] / pm["cpu"][t][0] for t in tests}
        tot = {t: none["cpu"][t][0] / sum(pm["cpu"][t]) for t in tests}
        print(f"{label}: server CPU per request, none/persimmon: " + ", ".join(
            f"{t} {srv[t]:.3f}" for t in tests) + "; counting the shadow too: " + ", ".join(
            f"{t} {tot[t]:.3f}" for t in tests))


def compare_trees(results: dict, pl: int, tests: list[str]) -> None:
    """This tree against the baseline tree, mode by mode, paired round by round."""
    for mode in ("persimmon-persimmon", "persimmon-none"):
        new, old = results.get((mode, pl)), results.get((mode + BASELINE, pl))
        if not (new and old):
            continue
        for t in tests:
            cpu = new["cpu"][t][0] / old["cpu"][t][0]
            shadow = (f", shadow {new['cpu'][t][1] * 1e6:.2f} vs {old['cpu'][t][1] * 1e6:.2f} us"
                      if mode == "persimmon-persimmon" else "")
            print(f"P={pl}: {mode} this tree / baseline {t}: throughput, median of the paired "
                  f"rounds {paired_median(new['all'][t], old['all'][t]):.3f}; server CPU per "
                  f"request {cpu:.3f} ({new['cpu'][t][0] * 1e6:.2f} vs "
                  f"{old['cpu'][t][0] * 1e6:.2f} us){shadow}")


if __name__ == "__main__":
    main()
