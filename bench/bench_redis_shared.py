"""Servers compared at the same moments: all of them at once, sharing one core.

This machine's cores change speed by up to 1.7x, each on its own, every second or so (a
fixed loop timed every 10 ms on both cores shows it), so two servers measured one after
the other differ by +-15 % run to run, more than the differences we look for.  Here every
server runs at once, pinned to CPU 0, each under its own load (redis-benchmark: SETs over 5
clients and GETs over 45, -P 16, 100-byte values, a 1,000,000-key space: the 10 % mix);
the clients and the shadows run on CPU 1.  Every second the script reads each server's
`total_commands_processed` and takes each server's requests in that second over the last
server's: the servers shared the core's speed in that second, so the ratio keeps only how
much work a request costs each of them.  The median over the windows is reported with a
95 % interval.

What it measures is each server's cost per request with the core shared (time slices of a
few milliseconds, so each server finds the caches as the others left them), not the
throughput of one server alone: a server that blocks (on a lock, say) loses its slice to
the others, which the one-at-a-time benchmark would not charge it.  `bench_redis.py` is the
benchmark the targets are judged on; this one tells small differences apart.

    python bench/bench_redis_shared.py [--servers persimmon-persimmon,persimmon-none]
        [--windows 30] [--repeat 3]

A name may appear twice (`persimmon-none,persimmon-none`): the two are then separate
servers, the spread of the method itself.  The ratios are of each server to the last one
named.  `--repeat` starts fresh servers for each repetition, every other one in the reverse
order (a process's hash seed and memory layout, and its place in the order, move its
figure by about 1 %).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_redis import children, free_port, median_interval, start  # noqa: E402
from machine import calibration_line  # noqa: E402

KINDS = ("persimmon-persimmon", "persimmon-none", "redis-noaof", "redis-aof-always")


def processed(port: int) -> int:
    """The server's ``total_commands_processed`` (INFO stats), read over a raw socket."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"INFO stats\r\n")
        data = b""
        while b"total_commands_processed:" not in data or not data.endswith(b"\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    for line in data.split(b"\r\n"):
        if line.startswith(b"total_commands_processed:"):
            return int(line.split(b":")[1])
    raise RuntimeError(f"no total_commands_processed from the server on {port}")


def one_run(kinds: list[str], windows: int, window: float, warmup: float,
            reverse: bool) -> list[list[float]]:
    """Start the servers and their loads (in the reverse order if ``reverse``); per window,
    each server's requests over the last server's."""
    workdir = tempfile.mkdtemp(prefix="bench-shared-", dir=os.path.expanduser("~"))
    procs: list = []
    loads: list = []
    try:
        order = list(range(len(kinds)))[::-1] if reverse else list(range(len(kinds)))
        started: dict = {}
        for i in order:
            wd = os.path.join(workdir, str(i))
            os.makedirs(wd)
            port = free_port()
            started[i] = (start(kinds[i], port, wd), port)
        procs = [started[i] for i in range(len(kinds))]
        time.sleep(1.0)  # (the shadow has been forked by now)
        for p, port in (started[i] for i in order):
            os.sched_setaffinity(p.pid, {0})
            for k in children(p.pid):
                os.sched_setaffinity(k, {1})
            for test, clients in (("set", 5), ("get", 45)):
                loads.append(subprocess.Popen(
                    ["taskset", "-c", "1", "redis-benchmark", "-p", str(port), "-q", "-n",
                     str(10**9), "-c", str(clients), "-d", "100", "-r", "1000000", "-P", "16",
                     "-t", test], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(warmup)
        prev = [processed(port) for _, port in procs]
        out = []
        for _ in range(windows):
            time.sleep(window)
            cur = [processed(port) for _, port in procs]
            d = [c - q for c, q in zip(cur, prev, strict=True)]
            prev = cur
            if d[-1] > 0:
                out.append([x / d[-1] for x in d[:-1]] + [d[-1] / window])
        return out
    finally:
        for x in loads:
            x.kill()
            x.wait()
        for p, _port in procs:
            p.send_signal(signal.SIGTERM)
            p.wait(60)
            if p.pool_dir:  # type: ignore[attr-defined]
                shutil.rmtree(p.pool_dir, ignore_errors=True)  # type: ignore[attr-defined]
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--servers", default="persimmon-persimmon,persimmon-none",
                    help=f"comma-separated, two or more of {', '.join(KINDS)}")
    ap.add_argument("--windows", type=int, default=30, help="one-second windows per run")
    ap.add_argument("--window", type=float, default=1.0, help="seconds")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds before the first")
    ap.add_argument("--repeat", type=int, default=3, help="runs, each with fresh servers")
    args = ap.parse_args()
    kinds = args.servers.split(",")
    if len(kinds) < 2 or any(k not in KINDS for k in kinds):
        ap.error(f"--servers: two or more of {', '.join(KINDS)}")
    if (os.cpu_count() or 1) < 2 or shutil.which("redis-benchmark") is None:
        sys.exit("needs 2 CPUs and redis-benchmark (apt-get install redis-tools)")
    print(calibration_line(), flush=True)
    allw: list[list[float]] = []
    runs: list[list[float]] = []
    for r in range(args.repeat):
        w = one_run(kinds, args.windows, args.window, args.warmup, reverse=r % 2 == 1)
        allw += w
        meds = [statistics.median(x[j] for x in w) for j in range(len(kinds) - 1)]
        runs.append(meds)
        print(f"run {r + 1}: " + ", ".join(
            f"server {j + 1}/{len(kinds)} {m:.4f}" for j, m in enumerate(meds))
            + f" ({statistics.median(x[-1] for x in w):,.0f} requests/s for {kinds[-1]})",
            flush=True)
    print(f"\nall {len(kinds)} servers at once on CPU 0 (clients and shadows on CPU 1), "
          f"redis-benchmark -P 16 10 % mix; {len(allw)} windows of {args.window:g} s over "
          f"{args.repeat} runs")
    for j, k in enumerate(kinds[:-1]):
        rs = [x[j] for x in allw]
        ci = median_interval(rs)
        span = f" (95 % interval {ci[0]:.4f}-{ci[1]:.4f})" if ci else ""
        per = [m[j] for m in runs]
        print(f"server {j + 1} ({k}) / server {len(kinds)} ({kinds[-1]}): median of the "
              f"runs {statistics.median(per):.4f}, runs {min(per):.4f}-{max(per):.4f}; "
              f"median of all windows {statistics.median(rs):.4f}{span}")
    print("(the runs differ more than the windows of one run: judge by the runs)")


if __name__ == "__main__":
    main()
