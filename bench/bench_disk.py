"""Disk pools against redis-server's AOF on the same disk, with CPU per request.

    python bench/bench_disk.py [--baseline-tree DIR] [--shares 10,100] [--rounds 3]
                               [--overlap no,yes] [--writeback 0.5,5] [--env NAME=VALUE]

Servers, all in one directory of a disk file system (``--diskdir``, /var/tmp):
persimmon-redis with its pool there (``--dir``, its default ``--commit-overlap``), the same
with each ``--overlap`` value of ``--commit-overlap``, with each ``--writeback`` pacing of
its shadow's write-backs (``PERSIMMON_DISK_WRITEBACK_SECONDS``) and with each ``--env``
setting of its environment, the same server from another checkout (``--baseline-tree``, its
extension built in place: ``python setup.py build_ext -i``), and redis-server with
``appendonly yes`` and ``appendfsync always`` and ``everysec``. Each is loaded with
``--keys`` keys, then every round visits the servers in turn (every other round in the
reverse order): resp-benchmark, 50 clients, unpipelined (``-P``), Zipf keys, 100-byte
values, the given write shares. Besides requests/s it reads the CPU time
(``/proc/PID/stat``) of the server process and of its children (persimmon-redis's shadow),
and the load generator's (its rusage), over each run, and prints microseconds of CPU per
request, and the ratio of requests/s that those predict when the cores are saturated.
Client, servers and shadows share this machine's cores: compare rows of the same round, not
runs of different days.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import evaluate as E  # noqa: E402
from machine import calibration_line  # noqa: E402


class TreeServer(E.Server):
    """evaluate.Server, run from ``tree``'s sources."""

    def __init__(self, kind: str, workdir: str, diskdir: str, tree: str,
                 extra: tuple[str, ...] = (), env: dict[str, str] | None = None) -> None:
        super().__init__(kind, workdir, diskdir)
        self.tree = tree
        self.extra = list(extra)
        self.env = env or {}

    def cmd(self, rdb: bool = False) -> list[str]:
        return super().cmd(rdb) + self.extra

    def start(self) -> float:
        env = dict(os.environ, PYTHONPATH=os.path.join(self.tree, "src"), **self.env)
        self.proc = subprocess.Popen(self.cmd(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=env)
        return E.wait_ready(self.port)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline-tree", default=None)
    ap.add_argument("--diskdir", default="/var/tmp")
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--shares", default="10,100")
    ap.add_argument("--pipeline", type=int, default=1)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--overlap", nargs="?", const="yes", default="",
                    help="also run this tree's server with --commit-overlap set to each of "
                         "these values (comma-separated; no value: yes)")
    ap.add_argument("--writeback", default="",
                    help="also run this tree's server with its shadow's write-backs paced "
                         "at each of these seconds (comma-separated; "
                         "PERSIMMON_DISK_WRITEBACK_SECONDS)")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE[,NAME=VALUE]",
                    help="also run this tree's server with these environment settings (the "
                         "option once per variant)")
    ap.add_argument("--no-everysec", action="store_true",
                    help="leave out redis-server appendfsync everysec (shorter runs)")
    args = ap.parse_args()
    print(calibration_line(), "; load average", open("/proc/loadavg").read().split()[:3],
          flush=True)
    diskdir = tempfile.mkdtemp(prefix="bench-disk-", dir=args.diskdir)
    servers: dict[str, E.Server] = {"persimmon-disk": TreeServer("persimmon-disk", diskdir,
                                                                 diskdir, E.ROOT)}
    for value in filter(None, args.overlap.split(",")):
        name = "persimmon-disk+overlap" + ("" if value == "yes" else f"-{value}")
        servers[name] = TreeServer("persimmon-disk", diskdir, diskdir, E.ROOT,
                                   ("--commit-overlap", value))
    for value in filter(None, args.writeback.split(",")):
        servers[f"persimmon-disk+wb{value}"] = TreeServer(
            "persimmon-disk", diskdir, diskdir, E.ROOT,
            env={"PERSIMMON_DISK_WRITEBACK_SECONDS": value})
    for spec in args.env:
        env = dict(kv.split("=", 1) for kv in spec.split(","))
        servers[f"persimmon-disk+{spec}"] = TreeServer("persimmon-disk", diskdir, diskdir,
                                                       E.ROOT, env=env)
    if args.baseline_tree:
        servers["persimmon-disk@baseline"] = TreeServer("persimmon-disk", diskdir, diskdir,
                                                        args.baseline_tree)
    for k in ("redis-aof-always",) if args.no_everysec else ("redis-aof-always",
                                                              "redis-aof-everysec"):
        servers[k] = E.Server(k, diskdir, diskdir)
    rows: dict[tuple[str, int], list[tuple[float, ...]]] = {}
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
                    # (the shadow counted until it has caught up: SAVE)
                    r = E.measured(servers[k], args.keys, share, args.pipeline, args.seconds)
                    rows.setdefault((k, share), []).append(
                        (r["rps"], r["server_us"], r["shadow_us"], r["client_us"],
                         r["busy"], r["queued"]))
                    line.append(f"{k} {r['rps']:,.0f}/s srv {r['server_us']:.1f} "
                                f"shadow {r['shadow_us']:.1f} client {r['client_us']:.1f} "
                                f"us/req, busy {r['busy']:.0%}, queued {r['queued']:.0%}")
                print(f"{share:3d} % writes, round {step}: " + "; ".join(line), flush=True)
    finally:
        for s in servers.values():
            s.remove()
        shutil.rmtree(diskdir, ignore_errors=True)
    print("\nmedians (requests/s; CPU us/req of the server, its shadow, the load generator and"
          " their sum; the cores' busy share; the share of the time the server's event loop"
          " waited for a core) and ratios by round")
    for share in [int(x) for x in args.shares.split(",")]:
        for k in servers:
            rs = rows.get((k, share), [])
            med = [sorted(x[i] for x in rs)[len(rs) // 2] for i in range(6)] if rs else [0] * 6
            print(f"  {share:3d} % {k:26s} {med[0]:9,.0f} {med[1]:6.1f} {med[2]:6.1f} "
                  f"{med[3]:6.1f} {med[1] + med[2] + med[3]:6.1f} {med[4]:5.0%} {med[5]:5.0%}")
        mine = rows.get(("persimmon-disk", share), [])
        for other in [k for k in servers if k != "persimmon-disk"]:
            theirs = rows.get((other, share), [])
            ratios = [a[0] / b[0] for a, b in zip(mine, theirs, strict=False) if b[0]]
            # With the cores saturated, requests/s is the cores over the CPU per request of
            # everything that runs (client, server, shadow): the ratio that CPU predicts
            cpu = [sum(b[1:4]) / sum(a[1:4]) for a, b in zip(mine, theirs, strict=False)
                   if sum(a[1:4])]
            print(f"  {share:3d} % persimmon-disk / {other}: "
                  + ", ".join(f"{r:.2f}" for r in ratios)
                  + "; predicted by CPU per request: " + ", ".join(f"{r:.2f}" for r in cpu))


if __name__ == "__main__":
    main()
