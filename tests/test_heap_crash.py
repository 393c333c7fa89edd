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

import pytest

from crashsim import FenceProbe
from heap_workload import canon, initial, native_state, op
from persimmon.heap import Heap
from persimmon.simdevice import SimDevice

N_OPS = 500
BATCH = 20
SEEDS_BEFORE = 10
SEEDS_AFTER = 2


def _run_batches(heap, n_ops: int, batch: int, step, progress: dict) -> None:
    """Operations 0..n_ops-1 (``step(i)``), a commit after every ``batch``, with
    ``progress`` saying which commit is in flight and which is done."""
    for i in range(n_ops):
        step(i)
        heap.end_op()
        if (i + 1) % batch == 0:
            progress["inflight"] = i + 1
            heap.commit(i + 1)
            progress["committed"] = i + 1
            progress["inflight"] = None


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
            # Lookups probe the recovered index table itself (no DRAM index): a slot
            # that kept its value from the lost batch would find a key that is gone.
            h.set_index_limit(0)
            kv = h.root["kv"]
            present = {k for k, _v in dict(got[1])["kv"][1]}
            for j in range(40):
                assert (f"k{j}" in kv) == (f"k{j}" in present), (when, progress, s, j)
            seen_positions.add(h.position)
            h.close()
            progress["checks"] += 1

    dev.check = check
    _run_batches(heap, N_OPS, BATCH, lambda i: op(heap.root, i), progress)
    dev.check = None
    assert progress["fences"] > N_OPS  # undo entries fence too: many crash points
    assert progress["checks"] >= 10 * progress["fences"] // 2
    assert len(seen_positions) > N_OPS // BATCH // 2
    final = Heap.open(SimDevice.from_image(dev.persisted_image()))
    assert final.position == N_OPS and canon(final.materialize()) == expected[N_OPS]


def _big_op(d, i: int, n0: int) -> None:
    """Operation ``i`` on a big table of bytes keys: overwrites, inserts past the first
    ``n0`` keys, deletes."""
    r = random.Random(i)
    k = b"p%05d" % r.randrange(n0 + 80)
    kind = r.randrange(10)
    if kind < 6:
        d[k] = b"%d:" % i * r.randrange(1, 30)
    elif kind < 8:
        d.pop(k, None)
    else:
        d[k] = b""


def test_crash_at_every_fence_of_a_big_table_probed_in_the_pool():
    # With the compiled module, a table of more than heap._PROBE_OVER entries whose keys are
    # all bytes or str has no DRAM index: its stores probe the pool's index table in C
    # (dict_set: overwrites, inserts; ht_seek: the Python path's lookups).  A crash at every
    # fence of 200 such operations in batches of 10 recovers a committed state, read back
    # through the same probe.
    from persimmon import heap as heap_mod

    if heap_mod.FAST is None:
        pytest.skip("the fast path is not built (PERSIMMON_PURE_PYTHON is set)")
    n0, n_ops, batch = heap_mod._PROBE_OVER + 100, 200, 10
    native = {b"p%05d" % j: b"v" for j in range(n0)}
    touched = sorted({b"p%05d" % j for j in range(n0, n0 + 80)} | {
        b"p%05d" % random.Random(i).randrange(n0 + 80) for i in range(n_ops)})
    expected = {0: {k: native.get(k) for k in touched}}
    sizes = {0: len(native)}
    for i in range(n_ops):
        _big_op(native, i, n0)
        if (i + 1) % batch == 0:
            expected[i + 1] = {k: native.get(k) for k in touched}
            sizes[i + 1] = len(native)
    dev = FenceProbe(1 << 20)
    heap = Heap.create(dev, {"big": {b"p%05d" % j: b"v" for j in range(n0)}},
                       undo_size=64 << 10, initial_size=1 << 20)
    progress = {"committed": 0, "inflight": None, "checks": 0, "fences": 0}
    d = heap.root["big"]
    table = d._o

    def check(dv: SimDevice, when: str) -> None:
        progress["fences"] += 1
        for s in range(3):
            img = dv.crash_image(progress["fences"] * 10 + s)
            h = Heap.open(SimDevice.from_image(img), writable=False)
            allowed = {progress["committed"], progress["inflight"]} - {None}
            assert h.position in allowed, (when, progress, h.position)
            big = h.root["big"]
            assert len(big) == sizes[h.position], (when, progress)
            assert {k: big.get(k) for k in touched} == expected[h.position], (when, progress)
            assert table not in h.table_indexes  # (read through the probe, not an index)
            h.close()
            progress["checks"] += 1

    dev.check = check
    _run_batches(heap, n_ops, batch, lambda i: _big_op(d, i, n0), progress)
    dev.check = None
    assert table not in heap.table_indexes and progress["fences"] > n_ops, progress
    final = Heap.open(SimDevice.from_image(dev.persisted_image()))
    assert final.position == n_ops and dict(final.materialize()["big"]) == native
    final.check()


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


class _Crash(Exception):
    pass


def _initial_big() -> dict:
    s = initial()
    s["big"] = list(range(5000))
    return s


def _op_big(state, i: int) -> None:
    """The heap workload, plus every 25th operation rewriting a committed 5,000-slot list:
    about 1,250 blocks in one operation, more than the 64 KiB undo log holds (a spill)."""
    op(state, i)
    if i % 25 == 0:
        big = state["big"]
        big[:] = [x + 1 for x in big]


def test_repeated_crashes_each_recovered_and_continued():
    """Crash, recover, continue, crash again, forty times: a process kill (everything stored
    so far) or a power failure (random unflushed words) at a random fence, with batches of
    1 to 700 operations and operations that spill out of the undo log.  Every open must succeed
    (rollback, then the walk of the whole graph) and give a committed state, and the run
    goes on from there; the batch numbering after a rollback, spills and growth are all
    crossed many times."""
    rng = random.Random(11)
    cache: dict[int, object] = {}

    nat = {"s": _initial_big(), "n": 0}  # the native state, advanced as positions grow

    def expected(n: int) -> object:
        if n not in cache:
            if n < nat["n"]:
                nat["s"], nat["n"] = _initial_big(), 0
            while nat["n"] < n:
                _op_big(nat["s"], nat["n"])
                nat["n"] += 1
            cache[n] = canon(nat["s"])
        return cache[n]

    img = None
    allowed = {0}
    opened = []
    for cycle in range(40):
        if img is None:
            dev = SimDevice(128 << 10)
            heap = Heap.create(dev, _initial_big(), undo_size=64 << 10, initial_size=128 << 10)
        else:
            dev = SimDevice.from_image(img)
            heap = Heap.open(dev)
            assert heap.position in allowed, (cycle, heap.position, allowed)
            assert canon(heap.materialize()) == expected(heap.position), cycle
        opened.append(heap.position)
        start = heap.position
        kill = cycle % 2 == 0
        batch = rng.choice([1, 3, 7, 20, 60, 700])
        crash_at = dev.fences + rng.randrange(3, 300 if batch < 700 else 2500)
        caught: dict[str, bytes] = {}

        def on_fence(d: SimDevice, crash_at=crash_at, kill=kill, caught=caught,
                     cycle=cycle) -> None:
            if d.fences >= crash_at:
                caught["img"] = bytes(d.buf) if kill else d.crash_image(cycle)
                raise _Crash

        dev.on_fence = on_fence
        committed, inflight, i = start, None, start
        try:
            while True:
                _op_big(heap.root, i)
                heap.end_op()
                i += 1
                if (i - start) % batch == 0:
                    inflight = i
                    heap.commit(i)
                    committed, inflight = i, None
        except _Crash:
            pass
        allowed = {committed} if inflight is None else {committed, inflight}
        img = caught["img"]
    final = Heap.open(SimDevice.from_image(img))
    assert final.position in allowed
    assert canon(final.materialize()) == expected(final.position)
    assert max(opened) > 300  # the run made progress across the crashes
