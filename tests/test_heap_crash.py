"""Crash consistency of the heap.

Simulated power failures: a workload of 500 mutating operations in batches runs on the
crash-simulation device; at every fence (just before it, and just after it) we build PM images
that a power failure could leave (random subsets of the unflushed 8-byte words), reopen each,
and require the state of the last completed commit, or of the batch being committed if its
commit record made it.

Real crashes: a process is SIGKILLed in the middle of batches on a /dev/shm pool; reopening
rolls back to a commit at least as new as the last one it reported.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

from crashsim import FenceProbe
from heap_workload import canon, initial, native_state, op
from persimmon.heap import Heap
from persimmon.simdevice import SimDevice

N_OPS = 500
BATCH = 20
SEEDS_BEFORE = 10
SEEDS_AFTER = 2


def test_crash_at_every_fence_recovers_a_committed_state():
    expected = {0: canon(native_state(0))}
    native = initial()
    for i in range(N_OPS):
        op(native, i)
        if (i + 1) % BATCH == 0:
            expected[i + 1] = canon(native)
    dev = FenceProbe(256 << 10)
    heap = Heap.create(dev, initial(), undo_size=64 << 10, initial_size=256 << 10)
    progress = {"committed": 0, "inflight": None, "checks": 0, "fences": 0}
    seen_positions: set[int] = set()

    def check(d: SimDevice, when: str) -> None:
        progress["fences"] += 1
        seeds = SEEDS_BEFORE if when == "before" else SEEDS_AFTER
        for s in range(seeds):
            img = d.crash_image(progress["fences"] * 100 + s)
            h = Heap.open(SimDevice.from_image(img))
            allowed = {progress["committed"]}
            if progress["inflight"] is not None:
                allowed.add(progress["inflight"])
            assert h.position in allowed, (when, progress, h.position)
            got = canon(h.materialize())
            assert got == expected[h.position], (when, progress, s)
            seen_positions.add(h.position)
            h.close()
            progress["checks"] += 1

    dev.check = check
    for i in range(N_OPS):
        op(heap.root, i)
        heap.end_op()
        if (i + 1) % BATCH == 0:
            progress["inflight"] = i + 1
            heap.commit(i + 1)
            progress["committed"] = i + 1
            progress["inflight"] = None
    dev.check = None
    assert progress["fences"] > N_OPS  # undo entries fence too: many crash points
    assert progress["checks"] >= 10 * progress["fences"] // 2
    assert len(seen_positions) > N_OPS // BATCH // 2
    final = Heap.open(SimDevice.from_image(dev.persisted_image()))
    assert final.position == N_OPS and canon(final.materialize()) == expected[N_OPS]


CHILD = r"""
import sys, os
sys.path.insert(0, {tests!r})
from heap_workload import initial, op
from persimmon.heap import Heap
path = {path!r}
if os.path.exists(path):
    heap = Heap.open(path)
else:
    heap = Heap.create(path, initial(), initial_size=1 << 20)
i = heap.position
print("start", i, flush=True)
while i < {limit}:
    op(heap.root, i)
    heap.end_op()
    i += 1
    if i % {batch} == 0:
        heap.commit(i)
        print("committed", i, flush=True)
print("done", flush=True)
"""


def test_sigkill_mid_batch_rolls_back(shm_path):
    tests = os.path.dirname(os.path.abspath(__file__))
    rng = random.Random(7)
    limit = 4000
    last = 0
    kills = 0
    for _ in range(12):
        code = CHILD.format(tests=tests, path=shm_path, limit=limit, batch=7)
        p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        start = p.stdout.readline().split()
        assert start[0] == "start", start
        deadline = time.monotonic() + rng.uniform(0.02, 0.3)
        while time.monotonic() < deadline:
            line = p.stdout.readline()
            if not line or line.startswith("done"):
                break
            last = int(line.split()[1])
        p.send_signal(signal.SIGKILL)
        p.wait()
        kills += 1
        h = Heap.open(shm_path)
        assert h.position >= last
        assert canon(h.materialize()) == canon(native_state(h.position))
        last = h.position
        h.close()
        if last >= limit:
            break
    assert kills >= 3 and last > 0
