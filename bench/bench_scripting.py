"""EVALSHA of a small script (two redis.call) against plain SET, per server, side by side.

redis-benchmark, 50 clients, unpipelined, random keys over a 100,000-key space; servers:
persimmon-redis --persistence persimmon, persimmon-redis --persistence none, redis-server
(appendonly no).  Each round visits every server (SET then EVALSHA); the median of the rounds
is printed, with the ratio EVALSHA/SET of the same server (the issue's target: >= 0.5),
and the server process's CPU time per request (user+system, from /proc: on a machine shared
with other work this is the steadier figure; the shadow process is not counted).

    python bench/bench_scripting.py [--n 50000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_redis import free_port, wait_port  # noqa: E402
from machine import cpu_seconds  # noqa: E402

SCRIPT = "redis.call('set', KEYS[1], ARGV[1]) return redis.call('incr', KEYS[2])"




def start(kind: str, port: int, workdir: str) -> subprocess.Popen:
    if kind.startswith("persimmon"):
        mode = kind.split("-")[1]
        src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
        env = dict(os.environ, PYTHONPATH=src)
        p = subprocess.Popen([sys.executable, "-m", "persimmon_redis", "--port", str(port),
                              "--persistence", mode, "--dir", os.path.join(workdir, kind)],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        p = subprocess.Popen(["redis-server", "--port", str(port), "--save", "",
                              "--appendonly", "no", "--bind", "127.0.0.1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return p


def bench(port: int, pid: int, n: int, args: list[str]) -> tuple[float, float]:
    """(requests per second, server CPU microseconds per request)."""
    cpu0 = cpu_seconds(pid)
    out = subprocess.run(["redis-benchmark", "-p", str(port), "-n", str(n), "-c", "50",
                          "-r", "100000", "-q", *args], capture_output=True, text=True,
                         timeout=600).stdout
    m = re.findall(r"([\d.]+) requests per second", out)
    if not m:
        raise RuntimeError(f"no figure in {out!r}")
    return float(m[-1]), (cpu_seconds(pid) - cpu0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--rounds", type=int, default=3)
    opts = ap.parse_args()
    kinds = ["persimmon-persimmon", "persimmon-none", "redis-server"]
    workdir = tempfile.mkdtemp(prefix="bench-scripting-", dir="/dev/shm")
    procs, ports = {}, {}
    figures: dict = {k: {"SET": [], "EVALSHA": [], "SETcpu": [], "EVALSHAcpu": []}
                     for k in kinds}
    try:
        for k in kinds:
            ports[k] = free_port()
            procs[k] = start(k, ports[k], workdir)
        shas = {}
        for k in kinds:
            shas[k] = subprocess.run(["redis-cli", "-p", str(ports[k]), "script", "load",
                                      SCRIPT], capture_output=True, text=True).stdout.strip()
        for _ in range(opts.rounds):
            for k in kinds:
                pid = procs[k].pid
                for what, args in (("SET", ["-t", "set"]),
                                   ("EVALSHA", ["evalsha", shas[k], "2", "key:__rand_int__",
                                                "cnt:__rand_int__", "v"])):
                    rps, cpu = bench(ports[k], pid, opts.n, args)
                    figures[k][what].append(rps)
                    figures[k][what + "cpu"].append(cpu)
        print(f"EVALSHA ({SCRIPT!r}) vs SET; redis-benchmark -c 50 -n {opts.n}, unpipelined, "
              f"median of {opts.rounds} rounds; 2 cores shared by the benchmark, the servers "
              "(and the shadow), and other sessions running on the machine")
        print(f"{'server':22} {'SET/s':>9} {'EVALSHA/s':>10} {'ratio':>6}   "
              f"{'SET cpu us':>10} {'EVALSHA cpu us':>14} {'cpu ratio':>9}")
        for k in kinds:
            f = {w: statistics.median(v) for w, v in figures[k].items()}
            print(f"{k:22} {f['SET']:9.0f} {f['EVALSHA']:10.0f} "
                  f"{f['EVALSHA'] / f['SET']:6.2f}   {f['SETcpu']:10.1f} "
                  f"{f['EVALSHAcpu']:14.1f} {f['SETcpu'] / f['EVALSHAcpu']:9.2f}")
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
