"""What the benchmarks measure the machine with: how fast it runs Python right now (printed
beside every benchmark's figures), and the CPU time a process has used.

The machines we measure on are shared virtual machines whose speed changes from day to day
(the same code has run 3x slower on one day than on another).  Absolute figures are only
comparable between runs with a similar calibration figure; ratios taken side by side in one
run are what the targets are judged on.
"""

from __future__ import annotations

import os
import time


def python_loop_seconds() -> float:
    """Seconds for a fixed pure-Python loop of 10 million additions (best of 3)."""
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        s = 0
        for i in range(10_000_000):
            s += i
        best = min(best, time.perf_counter() - t)
    return best


def calibration_line() -> str:
    return (f"machine speed: a 10M-iteration pure-Python loop takes {python_loop_seconds():.2f} s "
            f"(best of 3; lower is faster)")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, in clock ticks (/proc/stat: idle
    and iowait are not busy): the share of the cores in use between two readings."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v) - idle, sum(v)


def queued_ns(pid: int) -> int:
    """Nanoseconds the main thread of ``pid`` has waited on a run queue (runnable but not
    running) since it started, from /proc's schedstat; 0 where it is absent."""
    try:
        with open(f"/proc/{pid}/task/{pid}/schedstat") as f:
            return int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
