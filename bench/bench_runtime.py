"""Runtime benchmark (issue: the Persimmon runtime).

A key-value state machine, 16-byte keys, 100-byte values, one process driving it:
  (a) invoke_rw with a commit per operation vs calling the state machine directly:
      median and p99 latency, ops/s, ratio;
  (b) group commits of 32;
  (c) the shadow's sustained apply rate at 100% writes, and whether it keeps up; its CPU
      per write under a light steady load (a write every 150 us);
  (d) recovery time of a pool of --keys keys with an empty log tail, and with --tail
      operations in the tail.
The foreground, the shadow and nothing else share this machine's 2 cores.

    python bench/bench_runtime.py [--keys 1000000] [--ops 200000] [--tail 100000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from kvmachine import BenchKV  # noqa: E402
from machine import calibration_line, cpu_seconds  # noqa: E402
from persimmon import PSM  # noqa: E402


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def run_ops(fn, ops) -> tuple[list[float], float]:
    lat = []
    perf = time.perf_counter
    t0 = perf()
    for op in ops:
        a = perf()
        fn(op)
        lat.append(perf() - a)
    return lat, perf() - t0


def light_load(psm: PSM, ops: list, gap: float = 150e-6, secs: float = 2.0) -> tuple:
    """A write every ``gap`` seconds for ``secs``: (writes, shadow CPU seconds per write,
    shadow apply seconds per write), the shadow counted until it has caught up."""
    psm.sync()
    pid = psm.shadow_pid
    c0, a0 = cpu_seconds(pid), psm.stats()["shadow_apply_seconds"]
    perf = time.perf_counter
    end = perf() + secs
    nxt = perf()
    n = 0
    while True:
        now = perf()
        if now > end:
            break
        if now >= nxt:
            psm.invoke_rw(ops[n % len(ops)])
            n += 1
            nxt += gap
    psm.sync()
    return n, (cpu_seconds(pid) - c0) / n, (psm.stats()["shadow_apply_seconds"] - a0) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--ops", type=int, default=200_000)
    ap.add_argument("--tail", type=int, default=100_000)
    ap.add_argument("--dir", default="/dev/shm")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--pin", action="store_true", help="pin foreground/shadow to cores 0/1")
    args = ap.parse_args()
    val = os.urandom(100)
    path = os.path.join(args.dir, f"bench-runtime-{os.getpid()}.pool")
    ops = [b"S" + b"key:%012d" % ((i * 7919) % args.keys) + val for i in range(args.ops)]

    print(f"persimmon runtime benchmark: {args.keys:,} keys, 16-byte keys, 100-byte values, "
          f"{args.ops:,} ops; device={args.device}, pin={args.pin}; foreground + shadow share "
          "2 cores", flush=True)
    print(calibration_line(), flush=True)
    t = time.perf_counter()
    psm = PSM(lambda: BenchKV(args.keys, val), path, log_size=256 << 20,
              initial_size=512 << 20, device=args.device, pin_cores=args.pin)
    print(f"pool created with {args.keys:,} keys in {time.perf_counter() - t:.1f} s "
          f"(device {psm.device_info().kind}, is_pmem={psm.device_info().is_pmem})", flush=True)
    try:
        t = time.perf_counter()
        while not psm.stats()["shadow_ready"]:  # (it opens the pool: a walk of 2M objects)
            time.sleep(0.01)
        print(f"shadow ready {time.perf_counter() - t:.1f} s later", flush=True)
        direct = BenchKV(0)
        lat_d, t_d = run_ops(direct.apply, ops)
        psm.sync()
        lat_p, t_p = run_ops(psm.invoke_rw, ops)
        fg_done = time.perf_counter()
        psm.sync()
        shadow_catchup = time.perf_counter() - fg_done
        st = psm.stats()

        def nocommit(op):
            psm.invoke_rw(op, commit=False)

        psm.sync()
        lat_g = []
        perf = time.perf_counter
        t0 = perf()
        for i in range(0, len(ops), 32):
            a = perf()
            for op in ops[i : i + 32]:
                nocommit(op)
            psm.commit()
            lat_g.append((perf() - a) / 32)
        t_g = perf() - t0
        psm.sync()
        st2 = psm.stats()
        apply_s = st2["shadow_apply_seconds"]
        applied = st2["ops_applied_by_shadow"]
        n_light, cpu_light, apply_light = light_load(psm, ops)
    finally:
        psm.close(drain=True)

    us = 1e6
    md, mp, mg = (statistics.median(x) * us for x in (lat_d, lat_p, lat_g))
    print(f"\n(a) per-op commit     median {mp:7.2f} us  p99 {pct(lat_p, .99) * us:7.2f} us  "
          f"{len(ops) / t_p:>10,.0f} ops/s")
    print(f"    direct apply      median {md:7.2f} us  p99 {pct(lat_d, .99) * us:7.2f} us  "
          f"{len(ops) / t_d:>10,.0f} ops/s")
    print(f"    overhead per committed op (median): {mp - md:.2f} us; throughput ratio "
          f"{(len(ops) / t_p) / (len(ops) / t_d):.3f}")
    print(f"(b) group commit 32   median {mg:7.2f} us/op              "
          f"{len(ops) / t_g:>10,.0f} ops/s  (overhead {mg - md:.2f} us/op)")
    rate = applied / apply_s if apply_s else 0
    print(f"(c) shadow apply rate {rate:,.0f} ops/s (busy time, commits excluded); after the "
          f"per-op run it needed {shadow_catchup:.2f} s more to catch up; log full waits "
          f"{st['full_waits']} ({st['full_wait_seconds']:.2f} s); batches {st2['batches']}, "
          f"mean batch {st2['mean_batch_size']:.0f}, undo entries/batch "
          f"{st2['undo_entries_per_batch']:.0f}")
    keeps_up = shadow_catchup < 0.1 * t_p and st["full_waits"] == 0
    print(f"    shadow keeps up with the foreground at 100% writes: {keeps_up}")
    print(f"    light load (a write every 150 us for 2 s, {n_light:,} writes): shadow CPU "
          f"{cpu_light * us:.1f} us per write, of which applying {apply_light * us:.1f} us")

    # (d) recovery: empty tail
    t = time.perf_counter()
    psm = PSM(BenchKV, path, device=args.device)
    t_rec = time.perf_counter() - t
    rt = psm.stats()["recovery_times"]
    print(f"(d) recovery, empty tail: {t_rec:.2f} s  (rollback {rt['rollback']:.2f}, "
          f"materialize {rt['materialize']:.2f}, replay {rt['replay']:.2f} of "
          f"{rt['replayed_ops']:.0f} ops)", flush=True)
    tail_ops = ops[: args.tail]
    psm._stop_shadow()  # keep the ops in the log tail: simulate a lagging, then dead shadow
    for op in tail_ops:
        psm.invoke_rw(op, commit=False)
    psm.commit()
    psm.close(drain=False)
    t = time.perf_counter()
    psm = PSM(BenchKV, path, device=args.device)
    t_rec2 = time.perf_counter() - t
    rt = psm.stats()["recovery_times"]
    print(f"    recovery, {args.tail:,} ops in tail: {t_rec2:.2f} s  (rollback "
          f"{rt['rollback']:.2f}, materialize {rt['materialize']:.2f}, replay "
          f"{rt['replay']:.2f} of {rt['replayed_ops']:.0f} ops)")
    psm.close(drain=False)
    os.unlink(path)


if __name__ == "__main__":
    main()
