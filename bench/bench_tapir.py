"""persimmon-tapir, persistent replicas against in-memory ones, and recovery time.

One run on this machine (2 cores shared by the client, every replica process and, in
persistent mode, each replica's shadow process; other sessions may be running too):

1. Throughput and latency, side by side: a cluster of S shards x 3 replicas (UDP on
   loopback) with --persistence persimmon and one with --persistence none, measured at the
   same time (a client process each, started together; the machine's load changes by
   the second, so only simultaneous runs compare) in rounds, with
     * the Retwis transaction mix TAPIR was evaluated with (add-user 5 %, follow 15 %,
       post-tweet 30 %, get-timeline 50 %; keys Zipf 0.75), and
     * a read-write mix (half the transactions read 2 keys and write 2, half read 4;
       keys Zipf 0.75),
   from one client process with C transactions in flight.
2. Time for a SIGKILLed replica to serve again, by state size: persistent (its own pool)
   against in-memory (an empty replica refilled by a view change, i.e. state transfer of
   the record from its peers).  Both are timed the same way, from the SIGKILL to the first
   reply the restarted process sends to a read (interpreter start included), and from
   run_replica's start to status normal (interpreter start excluded).

    python bench/bench_tapir.py [--seconds 6] [--rounds 5] [--shards 1] [--concurrency 16]
                                [--keys 10000] [--sizes 1000,10000,40000,100000]
                                [--repeat 3] [--quick] [--sequential]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
sys.path.insert(0, SRC)

from machine import calibration_line, cpu_seconds  # noqa: E402
from persimmon_tapir import Client  # noqa: E402
from persimmon_tapir.cli import make_config  # noqa: E402
from persimmon_tapir.coordinator import gather  # noqa: E402
from persimmon_tapir.tasks import spawn  # noqa: E402
from tapir_workloads import VALUE, WORKLOADS, Zipf  # noqa: E402

PYC = f"/dev/shm/tapir-bench-pyc-{uuid.uuid4().hex[:8]}"


class Cluster:
    def __init__(self, shards: int, persistence: str) -> None:
        self.dir = f"/dev/shm/tapir-bench-{persistence}-{uuid.uuid4().hex[:8]}"
        self.cfg = make_config(self.dir, shards, 3, persistence, None)
        self.path = os.path.join(self.dir, "cluster.json")
        self.procs: dict = {}
        self.events: dict = {}

    def start(self, s: int, r: int) -> None:
        # Replicas run from cached bytecode, as an installed package does (this machine's
        # environment sets PYTHONDONTWRITEBYTECODE, which made every restart compile the
        # sources again: 0.1-0.2 s more for the persistent replica, which imports persimmon).
        env = dict(os.environ, PYTHONPATH=os.path.abspath(SRC), PYTHONPYCACHEPREFIX=PYC)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        p = subprocess.Popen([sys.executable, "-m", "persimmon_tapir", "replica", "--config",
                              self.path, "--shard", str(s), "--replica", str(r),
                              "--dir", self.dir], stdout=subprocess.PIPE, text=True, env=env)
        self.procs[(s, r)] = p
        evs: list = []
        self.events[(s, r)] = evs

        def read():
            for line in p.stdout:
                try:
                    evs.append(json.loads(line))
                except ValueError:
                    pass
        threading.Thread(target=read, daemon=True).start()

    def start_all(self) -> None:
        for s in range(len(self.cfg.shards)):
            for r in range(3):
                self.start(s, r)
        self.wait_serving()

    def wait_serving(self, keys=None, timeout: float = 600) -> dict:
        end = time.monotonic() + timeout
        for k in keys or list(self.procs):
            while not any(e.get("event") == "serving" for e in self.events[k]):
                if self.procs[k].poll() is not None or time.monotonic() > end:
                    raise RuntimeError(f"replica {k} did not come up: {self.events[k]}")
                time.sleep(0.005)
        return {k: next(e for e in self.events[k] if e["event"] == "serving")
                for k in (keys or list(self.procs))}

    def cpu(self) -> tuple:
        """CPU seconds so far of the replica processes, and of their shadow processes."""
        fg = sh = 0.0
        for p in self.procs.values():
            fg += cpu_seconds(p.pid)
            for child in _children(p.pid):
                sh += cpu_seconds(child)
        return fg, sh

    def close(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            p.wait()
        time.sleep(0.1)
        shutil.rmtree(self.dir, ignore_errors=True)


def drive(path: str, workload, zipf, seconds: float, concurrency: int, seed: int) -> dict:
    c = Client(path, timeout=0.5)
    lat: list = []
    counts = {"commit": 0, "abort": 0}
    end = time.monotonic() + seconds

    async def worker(i):
        rng = random.Random(seed * 1000 + i)
        while time.monotonic() < end:
            t0 = time.perf_counter()
            ok = await workload(c.core, rng, zipf)
            counts["commit" if ok else "abort"] += 1
            if ok:
                lat.append(time.perf_counter() - t0)
    t0 = time.monotonic()
    c.run(spawn(gather([spawn(worker(i)) for i in range(concurrency)])))
    elapsed = time.monotonic() - t0
    c.close()
    lat.sort()
    return {"tps": counts["commit"] / elapsed, "commits": counts["commit"], "abort_rate":
            counts["abort"] / max(1, counts["commit"] + counts["abort"]),
            "p50_ms": 1000 * lat[len(lat) // 2] if lat else float("nan"),
            "p99_ms": 1000 * lat[int(len(lat) * 0.99)] if lat else float("nan")}


def load(path: str, keys: int, batch: int = 200) -> None:
    with Client(path, timeout=1.0) as c:
        for start in range(0, keys, batch):
            t = c.begin()
            for i in range(start, min(keys, start + batch)):
                t.put(b"key-%08d" % i, VALUE)
            assert t.commit()


def _driver(path: str, workload: str, args, seed: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, os.path.abspath(__file__), "--drive", path,
                             "--workload", workload, "--seconds", str(args.seconds),
                             "--concurrency", str(args.concurrency), "--keys", str(args.keys),
                             "--seed", str(seed)], stdout=subprocess.PIPE, text=True)


def throughput(args) -> None:
    print(f"\n== throughput: {args.shards} shard(s) x 3 replicas, {args.keys} keys Zipf 0.75, "
          f"{args.concurrency} transactions in flight per client, {args.seconds:.0f} s rounds ==")
    print("Both clusters run at the same time, each with its own client process, so both see "
          "the same machine\n(one core each would be fair; here all share two). Per round: "
          "committed txn/s of each and their ratio.")
    if args.sequential:
        print("--sequential: per round the persistent cluster runs first, alone, then the "
              "in-memory one;\nthe persistent cluster's round ends when its shadows have "
              "applied its whole log, so their CPU is\ncharged to the transactions of that "
              "round only.")
    clusters = {m: Cluster(args.shards, m) for m in ("persimmon", "none")}
    try:
        for cl in clusters.values():
            cl.start_all()
        for cl in clusters.values():
            load(cl.path, args.keys)
        if args.sequential:
            _settle(clusters["persimmon"])
        for name in WORKLOADS:
            ratios, results = [], {m: [] for m in clusters}
            for rnd in range(args.rounds):
                cpu0 = {m: cl.cpu() for m, cl in clusters.items()}
                if args.sequential:  # one cluster at a time
                    out = {}
                    for m, cl in clusters.items():
                        p = _driver(cl.path, name, args, rnd)
                        out[m] = json.loads(p.communicate()[0])
                        if m == "persimmon":
                            _settle(cl)
                else:
                    procs = {m: _driver(cl.path, name, args, rnd)
                             for m, cl in clusters.items()}
                    out = {m: json.loads(p.communicate()[0]) for m, p in procs.items()}
                for m, cl in clusters.items():
                    out[m]["cpu"] = [a - b for a, b in zip(cl.cpu(), cpu0[m], strict=True)]
                    txns = max(1, out[m]["commits"])
                    out[m]["cpu_ms_per_txn"] = [1000 * x / txns for x in out[m]["cpu"]]
                    results[m].append(out[m])
                ratios.append(out["persimmon"]["tps"] / out["none"]["tps"])
            for m in clusters:
                rs = results[m]
                tps = statistics.median(r["tps"] for r in rs)
                print(f"{name:8} {m:10} {tps:7.0f} txn/s (median)  "
                      f"p50 {statistics.median(r['p50_ms'] for r in rs):6.1f} ms  "
                      f"p99 {statistics.median(r['p99_ms'] for r in rs):6.1f} ms  "
                      f"aborts {100 * statistics.median(r['abort_rate'] for r in rs):4.1f} %  "
                      f"CPU/round: replicas {statistics.median(r['cpu'][0] for r in rs):4.1f} s"
                      f" shadows {statistics.median(r['cpu'][1] for r in rs):4.1f} s  "
                      "(rounds: " + ", ".join(f"{r['tps']:.0f}" for r in rs) + ")")
                print(f"{'':8} {'':10} CPU per committed transaction (median of rounds): "
                      "replicas "
                      f"{statistics.median(r['cpu_ms_per_txn'][0] for r in rs):5.2f} ms, "
                      "their shadows "
                      f"{statistics.median(r['cpu_ms_per_txn'][1] for r in rs):5.2f} ms")
            med = statistics.median(ratios)
            print(f"{name:8} persimmon/none throughput, median of rounds {med:.3f} "
                  f"(overhead {100 * (1 - med):.1f} %; range {min(ratios):.3f}-"
                  f"{max(ratios):.3f}; rounds " + ", ".join(f"{r:.3f}" for r in ratios) + ")")
            # The steadier figure: CPU time per committed transaction, per round, of the
            # replica processes (and separately of the shadows), persistent over in-memory.
            # CPU time a process is charged does not grow with the time it waits for a core.
            per = [(p["cpu_ms_per_txn"][0], p["cpu_ms_per_txn"][1], n["cpu_ms_per_txn"][0])
                   for p, n in zip(results["persimmon"], results["none"], strict=True)]
            rep = [a / c for a, _b, c in per]
            tot = [(a + b) / c for a, b, c in per]
            print(f"{name:8} CPU per committed transaction, persimmon/none, median of rounds: "
                  f"replicas {statistics.median(rep):.3f} (range {min(rep):.3f}-"
                  f"{max(rep):.3f}), replicas + shadows {statistics.median(tot):.3f} "
                  f"(range {min(tot):.3f}-{max(tot):.3f}); ms per txn: persimmon replicas "
                  + ", ".join(f"{a:.2f}" for a, _b, _c in per) + "; shadows "
                  + ", ".join(f"{b:.2f}" for _a, b, _c in per) + "; none replicas "
                  + ", ".join(f"{c:.2f}" for _a, _b, c in per))
    finally:
        for cl in clusters.values():
            cl.close()


def _settle(cl, timeout: float = 300.0) -> None:
    """Wait until the cluster's shadows have applied their whole log: every shadow process
    asleep (a shadow that is behind runs, or waits runnable for a core under SCHED_IDLE;
    one that has caught up sleeps on its doorbell) at ten looks 50 ms apart, using no CPU
    meanwhile."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        kids = [k for p in cl.procs.values() for k in _children(p.pid)]
        cpu0 = cl.cpu()[1]
        quiet = True
        for _ in range(10):
            time.sleep(0.05)
            if any(_proc_state(k) not in ("S", "?") for k in kids):
                quiet = False
                break
        if quiet and cl.cpu()[1] - cpu0 < 0.005:
            return
    print("warning: the shadows did not settle", flush=True)


def _proc_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "?"


def recovery(args) -> None:
    print("\n== a SIGKILLed replica serving again, by state size (1 shard x 3 replicas) ==")
    print("Both modes measured the same way: 'kill->reply' is wall time from the SIGKILL to "
          "the first reply\nthe restarted replica sends to a read of the last key loaded "
          "(probed every 2 ms; includes\nstarting the interpreter and importing); "
          "'in-process' is from run_replica's start to status\nnormal (excludes them); "
          "'PSM recovery' is rollback + materialize + replay.")
    print("keys     mode        kill->reply   in-process   PSM recovery   record entries")
    for size in args.sizes:
        walls: dict = {}
        for mode in ("persimmon", "none"):
            cl = Cluster(1, mode)
            try:
                cl.start_all()
                load(cl.path, size)
                for _ in range(args.repeat):
                    walls.setdefault(mode, []).append(_kill_and_restart(cl, size, mode))
            finally:
                cl.close()
        a, b = statistics.median(walls["persimmon"]), statistics.median(walls["none"])
        print(f"{size:<8} kill->reply, median of {args.repeat}: persimmon {a:.3f} s, none "
              f"{b:.3f} s, persimmon/none {a / b:.2f}")


def _kill_and_restart(cl, size: int, mode: str) -> float:
    time.sleep(0.5)
    p = cl.procs[(0, 2)]
    # the node crashes: the replica and its shadow die together (a replica
    # killed alone leaves its shadow holding the pool's lock until it notices)
    kids = _children(p.pid)
    p.send_signal(signal.SIGKILL)
    for kid in kids:
        try:
            os.kill(kid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    p.wait()
    t0 = time.monotonic()
    cl.start(0, 2)
    wall = first_reply(tuple(cl.cfg.shards[0][2]), b"key-%08d" % (size - 1), t0)
    ev = cl.wait_serving([(0, 2)])[(0, 2)]
    ready = next(e for e in cl.events[(0, 2)] if e["event"] == "ready")
    print(f"{size:<8} {mode:10}  {wall:8.3f} s      {ev['seconds']:8.3f} s   "
          f"{ready['recovery_seconds']:8.3f} s         "
          f"{ready['record'] if mode == 'persimmon' else '(transferred)'}"
          f"  keys served {ev['keys']}" + (
              f"  (materialize {ready['recovery_materialize']:.3f} s, replay of "
              f"{ready['recovery_replayed_ops']:.0f} ops the shadow had not "
              f"applied {ready['recovery_replay']:.3f} s)"
              if "recovery_replay" in ready else ""), flush=True)
    with Client(cl.path) as c:  # it really has the data
        t = c.begin()
        assert t.get(b"key-%08d" % (size - 1)) == VALUE
        t.commit()
    return wall


def first_reply(addr: tuple, key: bytes, t0: float, timeout: float = 600) -> float:
    """Seconds from ``t0`` until the replica at ``addr`` answers an unlogged read of ``key``
    with a value (a replica without its state does not answer reads)."""
    import select
    import socket

    import msgpack
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((addr[0], 0))
    rid = 0
    try:
        while time.monotonic() - t0 < timeout:
            rid += 1
            sock.sendto(b"M" + msgpack.packb(("U", 1, rid, ("get", key)), use_bin_type=True),
                        addr)
            deadline = time.monotonic() + 0.002
            while (left := deadline - time.monotonic()) > 0:
                if not select.select([sock], [], [], left)[0]:
                    break
                data = sock.recv(65536)
                msg = msgpack.unpackb(data[1:], raw=False, use_list=False)
                if msg[0] == "RU" and msg[2][0] is not None:
                    return time.monotonic() - t0
        raise RuntimeError(f"no reply from {addr} in {timeout} s")
    finally:
        sock.close()


def _children(pid: int) -> list:
    try:
        return [int(x) for x in open(f"/proc/{pid}/task/{pid}/children").read().split()]
    except OSError:
        return []


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--keys", type=int, default=10000)
    ap.add_argument("--sizes", default="1000,10000,40000,100000")
    ap.add_argument("--repeat", type=int, default=3, help="kills per size and mode")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sequential", action="store_true",
                    help="run the persistent and the in-memory cluster one after the other "
                    "(and wait for the shadows), not at the same time")
    ap.add_argument("--only", choices=("throughput", "recovery"), default=None)
    ap.add_argument("--drive", help=argparse.SUPPRESS)  # (one client process of a round)
    ap.add_argument("--workload", default="retwis", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.drive:
        print(json.dumps(drive(args.drive, WORKLOADS[args.workload], Zipf(args.keys, 0.75),
                               args.seconds, args.concurrency, args.seed)))
        return
    args.sizes = [int(x) for x in args.sizes.split(",")]
    if args.quick:
        args.seconds, args.rounds, args.keys, args.sizes = 2.0, 2, 2000, [1000, 5000]
    print(calibration_line())
    print("machine: 2 cores shared by the client, all replicas and their shadows "
          "(and other sessions' work)")
    try:
        if args.only in (None, "throughput"):
            throughput(args)
        if args.only in (None, "recovery"):
            recovery(args)
    finally:
        shutil.rmtree(PYC, ignore_errors=True)


if __name__ == "__main__":
    main()
