"""Disk pools against redis-server's AOF on the same disk, with CPU per request.

    python bench/bench_disk.py [--baseline-tree DIR] [--shares 10,100] [--rounds 3]

Servers, all in one directory of a disk file system (``--diskdir``, /var/tmp): persimmon-redis
with its pool there (``--dir``), and the same server from another checkout
(``--baseline-tree``, its extension built in place: ``python setup.py build_ext -i``),
redis-server with ``appendonly yes`` and ``appendfsync always`` and ``everysec``.  Each is
loaded with ``--keys`` keys, then every round visits the servers in turn (every other round in
the reverse order): resp-benchmark, 50 clients, unpipelined (``-P``), Zipf keys, 100-byte
values, the given write shares.  Besides requests/s it reads the CPU time
(``/proc/PID/stat``) of the server process and of its children (persimmon-redis's shadow)
over each run, and prints microseconds of CPU per request.  Client, servers and shadows share
this machine's cores: compare rows of the same round, not runs of different days.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import evaluate as E  # noqa: E402
from machine import calibration_line  # noqa: E402

_TICK = os.sysconf("SC_CLK_TCK")
_RUN = re.compile(r"qps: (\d+), conn: \d+, cnt: (\d+)")


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime, all threads


class TreeServer(E.Server):
    """evaluate.Server, run from ``tree``'s sources."""

    def __init__(self, kind: str, workdir: str, diskdir: str, tree: str) -> None:
        super().__init__(kind, workdir, diskdir)
        self.tree = tree

    def start(self) -> float:
        env = dict(os.environ, PYTHONPATH=os.path.join(self.tree, "src"))
        self.proc = subprocess.Popen(self.cmd(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=env)
        return E.wait_ready(self.port)


def run(port: int, keys: int, share: int, pipeline: int, seconds: int) -> tuple[float, int]:
    p = subprocess.run(
        ["resp-benchmark", "-p", str(port), "-c", "50", "-P", str(pipeline), "-s",
         str(seconds), "--lua", E.lua_mix(keys, share)],
        capture_output=True, text=True, timeout=seconds + 120)
    text = (p.stdout + p.stderr).replace("\x1b[F\x1b[2K", "\n")
    m = _RUN.findall(text)
    return (float(m[-1][0]), int(m[-1][1])) if m else (0.0, 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline-tree", default=None)
    ap.add_argument("--diskdir", default="/var/tmp")
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--shares", default="10,100")
    ap.add_argument("--pipeline", type=int, default=1)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(calibration_line(), "; load average", open("/proc/loadavg").read().split()[:3],
          flush=True)
    diskdir = tempfile.mkdtemp(prefix="bench-disk-", dir=args.diskdir)
    servers: dict[str, E.Server] = {"persimmon-disk": TreeServer("persimmon-disk", diskdir,
                                                                 diskdir, E.ROOT)}
    if args.baseline_tree:
        servers["persimmon-disk@baseline"] = TreeServer("persimmon-disk", diskdir, diskdir,
                                                        args.baseline_tree)
    for k in ("redis-aof-always", "redis-aof-everysec"):
        servers[k] = E.Server(k, diskdir, diskdir)
    rows: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    try:
        for k, s in servers.items():
            s.start()
            E.load(s.port, args.keys)
            if k.startswith("persimmon"):
                E.command(s.port, "SAVE")
        step = 0
        for share in [int(x) for x in args.shares.split(",")]:
            for _ in range(args.rounds):
                step += 1
                order = list(servers) if step % 2 else list(servers)[::-1]
                line = []
                for k in order:
                    s = servers[k]
                    assert s.proc is not None
                    kids = s.kids()
                    c0 = cpu_seconds(s.proc.pid)
                    k0 = sum(cpu_seconds(p) for p in kids)
                    rps, cnt = run(s.port, args.keys, share, args.pipeline, args.seconds)
                    c1 = cpu_seconds(s.proc.pid)
                    k1 = sum(cpu_seconds(p) for p in kids)
                    if k.startswith("persimmon"):
                        E.command(s.port, "SAVE")  # (the shadow catches up between runs)
                    us = 1e6 / max(cnt, 1)
                    rows.setdefault((k, share), []).append((rps, (c1 - c0) * us, (k1 - k0) * us))
                    line.append(f"{k} {rps:,.0f}/s srv {(c1 - c0) * us:.1f} "
                                f"shadow {(k1 - k0) * us:.1f} us/req")
                print(f"{share:3d} % writes, round {step}: " + "; ".join(line), flush=True)
    finally:
        for s in servers.values():
            s.remove()
        shutil.rmtree(diskdir, ignore_errors=True)
    print("\nmedians (requests/s, server CPU us/req, shadow CPU us/req) and ratios by round")
    for share in [int(x) for x in args.shares.split(",")]:
        for k in servers:
            rs = rows.get((k, share), [])
            med = [sorted(x[i] for x in rs)[len(rs) // 2] for i in range(3)] if rs else [0] * 3
            print(f"  {share:3d} % {k:26s} {med[0]:9,.0f} {med[1]:6.1f} {med[2]:6.1f}")
        mine = rows.get(("persimmon-disk", share), [])
        for other in [k for k in servers if k != "persimmon-disk"]:
            theirs = rows.get((other, share), [])
            ratios = [a[0] / b[0] for a, b in zip(mine, theirs, strict=False) if b[0]]
            print(f"  {share:3d} % persimmon-disk / {other}: "
                  + ", ".join(f"{r:.2f}" for r in ratios))


if __name__ == "__main__":
    main()
