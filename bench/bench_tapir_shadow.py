"""What a persimmon-tapir replica's shadow costs per operation, in one process.

A simulated cluster (1 shard x 3 replicas, no faults) runs a load of ``--keys`` keys and
then ``--txns`` transactions of each workload (Retwis, the read-write mix; the mixes of
bench_tapir.py); every operation replica 0 hands its persistence layer is recorded.  The
recorded operations are logged into a fresh pool through a PSM whose shadow is stopped (in
groups, as a replica logs them: one group per ``--group`` operations), and then this process
plays the shadow: the shadow's ``Applier`` applies the log to the PM copy, the load
untimed, each workload timed (µs per logged operation, CPU time of this process; the
commits of the shadow's batches included, as the shadow pays them).

    python bench/bench_tapir_shadow.py [--keys 10000] [--txns 3000] [--repeat 3]
                                       [--profile cprofile|none] [--pure]

``--pure`` times the heap without its compiled module (PERSIMMON_PURE_PYTHON=1).
It prints the replica's own cost per operation too (``ReplicaState.apply`` on DRAM).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

if "--pure" in sys.argv:
    os.environ["PERSIMMON_PURE_PYTHON"] = "1"

from machine import calibration_line  # noqa: E402
from persimmon import PSM  # noqa: E402
from persimmon.heap import Heap  # noqa: E402
from persimmon.oplog import OpLog  # noqa: E402
from persimmon.shadow import Applier  # noqa: E402
from persimmon_tapir import state as tstate  # noqa: E402
from persimmon_tapir.simnet import Durable, SimCluster  # noqa: E402
from persimmon_tapir.tasks import spawn  # noqa: E402
from tapir_workloads import VALUE, WORKLOADS, Zipf  # noqa: E402


class Recorder(Durable):
    """Replica 0's persistence: the DRAM state, and every operation it runs, in order."""

    def __init__(self, ident) -> None:
        super().__init__(ident)
        self.ops: list = []
        inner = self.state.apply

        def rw(op):
            self.ops.append(op)
            return inner(op)
        self.rw = rw


def record(keys: int, txns: int, seed: int = 1, concurrency: int = 8) -> tuple:
    """(ident, load ops, {workload: ops}) of replica (0, 0) in a fault-free simulated run."""
    cluster = SimCluster(seed, shards=1, drop=0.0, dup=0.0)
    rec = Recorder(cluster.config.ident(0, 0))
    cluster.sms[(0, 0)] = rec
    cluster.crash(0, 0)  # (boots again with the recorder as its persistence)
    cluster.sms[(0, 0)] = rec
    cluster.restart(0, 0)
    loader = cluster.client()

    async def load():
        for start in range(0, keys, 200):
            t = loader.begin()
            for i in range(start, min(keys, start + 200)):
                t.put(b"key-%08d" % i, VALUE)
            assert await t.commit()
    cluster.run(spawn(load()))
    cluster.net.run_for(1.0)  # (the finalizes)
    out = {"load": rec.ops[:]}
    zipf = Zipf(keys, 0.75)
    for name, workload in WORKLOADS.items():
        rec.ops.clear()
        clients = [cluster.client() for _ in range(concurrency)]
        rng = random.Random(seed)
        left = [txns]

        async def work(c, wl=workload, left=left, rng=rng):
            while left[0] > 0:
                left[0] -= 1
                await wl(c, rng, zipf)
        tasks = [spawn(work(c)) for c in clients]
        cluster.net.run_until(lambda tasks=tasks: all(t.done for t in tasks))
        cluster.net.run_for(1.0)
        out[name] = rec.ops[:]
    return cluster.config.ident(0, 0), out


def build_pool(path: str, ident, phases: dict, group: int) -> dict:
    """Log every phase's operations into a fresh pool (shadow stopped); the log position
    where each phase ends."""
    psm = PSM(lambda: tstate.ReplicaState(ident), path, log_size=256 << 20)
    psm._stop_shadow()
    ends = {}
    for name, ops in phases.items():
        for i, op in enumerate(ops):
            psm.invoke_rw_grouped(op)
            if i % group == group - 1:
                psm.commit()
        psm.commit()
        ends[name] = psm.log_position
    psm.close(drain=False)
    return ends


def shadow_run(path: str, ends: dict, profile: str | None) -> dict:
    """Apply the pool's log as the shadow does; CPU seconds per phase (load untimed)."""
    heap = Heap.open(path, lock=False)
    pool = heap.pool
    ap = Applier(heap, OpLog(heap.dev, pool.oplog_off, pool.oplog_size))
    times = {}
    for name, end in ends.items():
        prof = None
        if profile == "cprofile" and name != "load":
            import cProfile
            prof = cProfile.Profile()
        t0 = time.process_time()
        if prof is not None:
            prof.enable()
        while ap.pos < end:
            if not ap.run(256):
                break
        ap.commit()
        if prof is not None:
            prof.disable()
        times[name] = time.process_time() - t0
        if prof is not None:
            import pstats
            print(f"-- cProfile of the shadow on {name} (top 25 by own time) --")
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    assert ap.c.errors == 0, "an operation raised in the shadow"
    heap.close()
    return times


def dram_apply(ident, phases: dict) -> dict:
    """CPU seconds of ReplicaState.apply on DRAM per phase (the replica's own work)."""
    s = tstate.ReplicaState(ident)
    times = {}
    for name, ops in phases.items():
        t0 = time.process_time()
        for op in ops:
            s.apply(op)
        times[name] = time.process_time() - t0
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=10000)
    ap.add_argument("--txns", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--group", type=int, default=4, help="operations per log group entry")
    ap.add_argument("--profile", choices=("cprofile", "none"), default="none")
    ap.add_argument("--pure", action="store_true")
    ap.add_argument("--dir", default="/dev/shm")
    args = ap.parse_args()
    print(calibration_line())
    t0 = time.monotonic()
    ident, phases = record(args.keys, args.txns)
    print(f"recorded in {time.monotonic() - t0:.1f} s: " + ", ".join(
        f"{n} {len(ops)} ops" for n, ops in phases.items())
        + f"; state layout {tstate.FORMAT}; compiled heap: "
        + ("off" if os.environ.get("PERSIMMON_PURE_PYTHON") else "on"))
    d = os.path.join(args.dir, f"tapir-shadow-bench-{uuid.uuid4().hex[:8]}")
    os.makedirs(d)
    runs: dict = {n: [] for n in phases if n != "load"}
    dram: dict = {n: [] for n in runs}
    try:
        for r in range(args.repeat):
            path = os.path.join(d, f"r{r}.pool")
            ends = build_pool(path, ident, phases, args.group)
            t = shadow_run(path, ends, args.profile if r == 0 else None)
            os.unlink(path)
            dt = dram_apply(ident, phases)
            for n in runs:
                runs[n].append(1e6 * t[n] / len(phases[n]))
                dram[n].append(1e6 * dt[n] / len(phases[n]))
    finally:
        shutil.rmtree(d, ignore_errors=True)
    for n in runs:
        print(f"{n:8} shadow {statistics.median(runs[n]):6.1f} us/op (median of {args.repeat}; "
              + ", ".join(f"{x:.1f}" for x in runs[n]) + f")   replica apply on DRAM "
              f"{statistics.median(dram[n]):5.2f} us/op   ({len(phases[n])} ops)")


if __name__ == "__main__":
    main()
