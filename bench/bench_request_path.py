"""The server's CPU per request without the kernel's share: the Python request path alone.

    python bench/bench_request_path.py [--baseline-tree DIR] [--shares 0,10,100]

A persimmon-redis ``Server`` with 50 clients whose transports only count what they are
given: every round, each client receives one whole command (``data_received``, the bytes a
socket read would hand over: GET or SET of 100-byte values, keys drawn uniformly from
100k keys, the given write share) and then the round's replies go out (``Server.flush``:
the group commit, then one write per client).  Printed: process CPU per request (the best
of 7 passes of 20,000 requests), for the none mode and for a pool on a disk directory
(``--diskdir``: its commits' synced writes are in the figure, about 1.6 us per request at
10 % writes on this machine's disk, 50 requests a commit), for this tree and, with
``--baseline-tree``, another checkout run the same way in a subprocess (its extensions
built in place).  No socket, no event loop turn, no load generator: what ``bench_disk.py``
and ``evaluate.py`` measure end to end includes all of those, and the cache misses of
sharing two cores with the client, which make the same Python code about twice as slow
there (docs/device.md, "The server's Python per request").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CLIENTS = 50
ROUNDS = 400
KEYS = 100_000


class CountingTransport:
    """What a client's replies are written to: counts the writes, never buffers."""

    def __init__(self) -> None:
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 1) if name == "peername" else None


def measure(mode: str, share: int, diskdir: str) -> float:
    """Best-of-7 process CPU microseconds per request (run in this process)."""
    from persimmon_redis.config import Config
    from persimmon_redis.persistence import NoPersistence, PersimmonPersistence
    from persimmon_redis.server import Client, Server

    cfg = Config()
    cfg.persistence = mode
    pooldir = None
    if mode == "none":
        p = NoPersistence(16)
    else:
        pooldir = tempfile.mkdtemp(prefix="bench-request-path-", dir=diskdir)
        p = PersimmonPersistence(16, pooldir, 64 << 20, "auto", False, True, 0)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = Server(cfg, p)
    server.loop = loop
    clients = []
    for _ in range(CLIENTS):
        c = Client(server)
        c.connection_made(CountingTransport())
        clients.append(c)
    keys = [b"k%07d" % i for i in range(KEYS)]
    value = b"x" * 100
    for k in keys:
        p.execute_rw((0, 0, (b"SET", k, value)))
    p.sync()
    rnd = random.Random(1)
    requests = []
    for _ in range(CLIENTS * ROUNDS):
        k = keys[rnd.randrange(KEYS)]
        if rnd.randrange(100) < share:
            requests.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$100\r\n%b\r\n" % (len(k), k, value))
        else:
            requests.append(b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n" % (len(k), k))

    def one_pass() -> None:
        feed = iter(requests)
        for _ in range(ROUNDS):
            for c in clients:
                c.data_received(next(feed))
            server.flush_scheduled = False  # (the loop never runs: flush by hand)
            server.flush()

    one_pass()  # (warm)
    best = float("inf")
    for _ in range(7):
        t0 = time.process_time()
        one_pass()
        best = min(best, time.process_time() - t0)
    assert sum(c.transport.writes for c in clients) == CLIENTS * ROUNDS * 8  # (8 passes)
    p.close()
    loop.close()
    if pooldir is not None:
        shutil.rmtree(pooldir, ignore_errors=True)
    return best / len(requests) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline-tree", default=None)
    ap.add_argument("--diskdir", default="/var/tmp")
    ap.add_argument("--shares", default="0,10,100")
    ap.add_argument("--one", nargs=2, metavar=("MODE", "SHARE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:  # (a subprocess run from one tree: prints its figure)
        print(measure(args.one[0], int(args.one[1]), args.diskdir))
        return
    trees = {"this tree": ROOT}
    if args.baseline_tree:
        trees["baseline"] = os.path.abspath(args.baseline_tree)
    print(f"process CPU per request, us (best of 7 passes of {CLIENTS * ROUNDS:,} requests, "
          f"{CLIENTS} clients, one command each per round)")
    for mode in ("none", "persimmon"):
        for share in [int(x) for x in args.shares.split(",")]:
            figures = {}
            for name, tree in trees.items():
                env = dict(os.environ, PYTHONPATH=os.path.join(tree, "src"))
                out = subprocess.run(
                    [sys.executable, os.path.abspath(__file__), "--diskdir", args.diskdir,
                     "--one", mode, str(share)],
                    env=env, capture_output=True, text=True, check=True).stdout
                figures[name] = float(out.split()[-1])
            line = ", ".join(f"{n} {v:.2f}" for n, v in figures.items())
            if len(figures) == 2:
                line += f"; this tree / baseline {figures['this tree'] / figures['baseline']:.2f}"
            label = "disk pool" if mode == "persimmon" else "none"
            print(f"  {label:9s} {share:3d} % writes: {line}", flush=True)


if __name__ == "__main__":
    main()
