"""Heap benchmark (issue: the persistent object heap).

Single process on this machine (2 cores; nothing else of ours runs during it):
  (a) PDict sets of 16-byte keys and 100-byte values into a 1,000,000-entry dict, undo logging
      on, commit every 64 operations: inserts, then overwrites in random order;
  (b) the same on a native dict, for the ratio;
  (c) materialize of that dict;
  (d) pool bytes per entry against the native dict's memory;
  and what the table's DRAM index costs (bytes per entry) and buys (overwrites with and
  without it, side by side).

    python bench/bench_heap.py [--n 1000000] [--device auto|libpmem|msync] [--dir /dev/shm]
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import subprocess
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from machine import calibration_line  # noqa: E402
from persimmon.heap import Heap  # noqa: E402


def fmt(x: float) -> str:
    return f"{x:,.0f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dir", default="/dev/shm")
    args = ap.parse_args()
    n, batch = args.n, args.batch
    keys = [b"key:%012d" % i for i in range(n)]  # 16 bytes
    val = os.urandom(100)
    order = list(range(n))
    random.Random(1).shuffle(order)

    # (b) native; memory measured separately with distinct keys and values, like the pool
    gc.collect()
    tracemalloc.start()
    sample = min(n, 200_000)
    probe = {b"key:%012d" % i: bytes(val) + b"" for i in range(sample)}
    for k in probe:
        probe[k] = val[:99] + bytes([len(k) % 256])
    native_bytes = tracemalloc.get_traced_memory()[0] * n / sample
    tracemalloc.stop()
    del probe
    native: dict = {}
    t = time.perf_counter()
    for k in keys:
        native[k] = val
    t_nat_ins = time.perf_counter() - t
    vals = [bytes([i % 256]) * 100 for i in range(256)]
    t = time.perf_counter()
    for i in order:
        native[keys[i]] = vals[i & 255]
    t_nat_ovw = time.perf_counter() - t
    del native

    path = os.path.join(args.dir, f"bench-heap-{os.getpid()}.pool")
    heap = Heap.create(path, {"d": {}}, initial_size=64 << 20, mode=args.device)
    try:
        d = heap.root["d"]
        end_op = heap.end_op
        commit = heap.commit
        t = time.perf_counter()
        for j, k in enumerate(keys):
            d[k] = val
            end_op()
            if j % batch == batch - 1:
                commit(j)
        commit(n)
        t_pm_ins = time.perf_counter() - t
        undo0 = heap.stats["undo_entries"]
        t = time.perf_counter()
        for j, i in enumerate(order):
            d[keys[i]] = vals[i & 255]
            end_op()
            if j % batch == batch - 1:
                commit(n + j)
        commit(2 * n)
        t_pm_ovw = time.perf_counter() - t
        undo_ovw = heap.stats["undo_entries"] - undo0
        ix_bytes = heap.index_bytes()
        # side by side: the same overwrites without the DRAM index of the table
        m = min(n, 200_000)
        t_pm_ix = t_pm_noix = 0.0
        for rnd in (1, 2):
            if rnd == 2:
                heap.set_index_limit(0)
            t = time.perf_counter()
            for j, i in enumerate(order[:m]):
                d[keys[i]] = vals[(i + rnd) & 255]
                end_op()
                if j % batch == batch - 1:
                    commit(rnd * 2 * n + j)
            commit(rnd * 2 * n + m)
            if rnd == 1:
                t_pm_ix = time.perf_counter() - t
            else:
                t_pm_noix = time.perf_counter() - t
        heap_bytes = heap.heap_top - heap.pool.arena_off
        dev = f"{heap.dev.kind} (is_pmem={heap.dev.is_pmem})"
        heap.close()
        # (c) in a fresh process, as recovery does it
        code = (
            "import time; from persimmon.heap import Heap\n"
            f"h = Heap.open({path!r}, writable=False)\n"
            "t = time.perf_counter(); m = h.materialize(); t = time.perf_counter() - t\n"
            f"assert len(m['d']) == {n}\n"
            "print(t)\n"
        )
        t_mats = []
        for _ in range(3):
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True)
            t_mats.append(float(out.stdout.split()[-1]))
        t_mat = sorted(t_mats)[1]
    finally:
        heap.close()
        os.unlink(path)
    print(f"persimmon heap benchmark: n={n:,}, commit every {batch}, device {dev}, "
          f"python {sys.version.split()[0]}; single process, 2-core machine")
    print(calibration_line())
    print(f"{'':38}{'ops/s':>14}{'vs native':>12}")
    print(f"{'native dict insert':38}{fmt(n / t_nat_ins):>14}{'1.00x':>12}")
    print(f"{'PDict insert (undo on)':38}{fmt(n / t_pm_ins):>14}"
          f"{t_nat_ins / t_pm_ins:>11.3f}x")
    print(f"{'native dict overwrite (random)':38}{fmt(n / t_nat_ovw):>14}{'1.00x':>12}")
    print(f"{'PDict overwrite (random, undo on)':38}{fmt(n / t_pm_ovw):>14}"
          f"{t_nat_ovw / t_pm_ovw:>11.3f}x")
    print(f"undo entries per overwrite: {undo_ovw / n:.2f}")
    print(f"DRAM index of the table: {ix_bytes / n:.0f} bytes/entry in the writing process; "
          f"{m:,} more overwrites with it {m / t_pm_ix:,.0f}/s, without it "
          f"{m / t_pm_noix:,.0f}/s (ratio {t_pm_noix / t_pm_ix:.2f})")
    print(f"materialize {n:,} entries (fresh process, as in recovery): median {t_mat:.3f} s "
          f"of {', '.join(f'{t:.3f}' for t in t_mats)}")
    print(f"pool bytes per entry: {heap_bytes / n:.1f}  (native dict incl. keys+values: "
          f"{native_bytes / n:.1f} bytes/entry; ratio {heap_bytes / native_bytes:.2f})")


if __name__ == "__main__":
    main()
