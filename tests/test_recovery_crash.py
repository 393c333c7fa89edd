"""Crashes during recovery, and during the recovery from such a crash.

The fence-by-fence tests (test_heap_crash.py, test_runtime_crash.py) crash a workload and
recover each image once, on a device that never fails again.  Here the recovery itself runs on
the crash simulator: every fence it makes (the rollback's, the commit record that makes the
rolled-back state a commit of its own, the replay's tail update, the shadow's first batch
after recovery and its commit) is a crash point too, and the images taken there are recovered
the same way, recursively, to a depth of ``DEPTH`` crashes in a row.  Both crash models of
``SimDevice`` run: each unflushed 8-byte word kept or not, and a prefix of each cache line.

Every image, at every depth, must recover to a state that is the result of a prefix of the
submitted operations containing every acknowledged one (for the bare heap: the last commit,
or the one in flight), and a crash during an ``open`` must give back the very state that
``open`` gave.  Removing the fence at the end of ``UndoLog.rollback`` fails this test (the
restored blocks are no longer ordered before the commit record ``open`` writes next).

The crash points are sampled deterministically (seeded); ``PERSIMMON_CRASH_FULL=1`` explores
every fence at every depth (minutes, not for CI).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field

import pytest

from crashsim import FenceProbe
from heap_workload import canon, initial, op
from persimmon.heap import Heap
from persimmon.opcodec import encode, encode_group
from persimmon.oplog import OpLog
from persimmon.psm import recover_state
from persimmon.shadow import Applier
from persimmon.simdevice import CRASH_MODELS, SimDevice
from psm_apps import KV, workload_op

FULL = os.environ.get("PERSIMMON_CRASH_FULL") == "1"
DEPTH = int(os.environ.get("PERSIMMON_CRASH_DEPTH", "2"))


@dataclass
class Shot:
    """A crash image and what it must recover to."""

    img: bytes
    lo: int  # every acknowledged operation (committed, for the bare heap)
    hi: int  # at most the submitted ones
    where: str  # which fence of which phase (for the failure message)
    exact: bool = False  # a crash inside an open: the position open found, exactly


@dataclass
class Recorder:
    """Collects crash images at the fences of a device (before and after each fence), with
    bounds the driver updates as it goes; ``seeds`` images per point."""

    model: str
    seeds: int
    lo: int = 0
    hi: int = 0
    phase: str = ""
    exact: bool = False
    shots: list[Shot] = field(default_factory=list)
    fences: int = 0

    def __call__(self, dev: SimDevice, when: str) -> None:
        if when == "before":
            self.fences += 1
        # the fences of an open (rollback, its commit record) are few: more images of each
        seeds = self.seeds * 4 if self.exact or self.phase == "open+replay" else self.seeds
        for s in range(seeds):
            img = dev.crash_image(self.fences * 1000 + s * 7 + (when == "after"), self.model)
            self.shots.append(Shot(img, self.lo, self.hi,
                                   f"{self.phase} fence {self.fences} {when} (seed {s})",
                                   self.exact))


def _pick(shots: list[Shot], rng: random.Random, k: int, must: str = "open") -> list[Shot]:
    """Every shot of the ``must`` phase (the rollback and its commit record: few and the
    likeliest to hide a bug) and ``k`` of the others, chosen by ``rng``."""
    if FULL:
        return shots
    first = [s for s in shots if s.where.startswith(must)]
    rest = [s for s in shots if not s.where.startswith(must)]
    return first + rng.sample(rest, min(k, len(rest)))


# ---------------------------------------------------------------------------- the bare heap
N_OPS, BATCH, AFTER = 240, 20, 6
_EXPECTED: dict[int, object] = {}


def _expected(n: int) -> object:
    if not _EXPECTED:
        s = initial()
        _EXPECTED[0] = canon(s)
        for i in range(N_OPS + 10 * AFTER * (DEPTH + 2)):
            op(s, i)
            _EXPECTED[i + 1] = canon(s)
    return _EXPECTED[n]


def _heap_recover(shot: Shot, depth: int, model: str, rng: random.Random,
                  stats: dict) -> None:
    """Open ``shot``'s image (rollback, commit record, walk), check it, run the first batch
    after recovery and commit it; at depth < DEPTH, crash at the fences of all that and
    recover those images too."""
    rec = Recorder(model, 1 if depth >= DEPTH else 3)
    dev = FenceProbe(shot.img)
    dev.check = rec if depth < DEPTH else None
    rec.lo, rec.hi, rec.phase, rec.exact = shot.lo, shot.hi, "open", True
    heap = Heap.open(dev)
    p = heap.position
    msg = f"depth {depth}: {shot.where}"
    assert shot.lo <= p <= shot.hi, (msg, p)
    assert canon(heap.materialize()) == _expected(p), msg
    stats["recoveries"] += 1
    stats["depth"] = max(stats["depth"], depth)
    heap.check()
    # crash images taken inside open recover to what open found, exactly
    for s in rec.shots:
        s.lo = s.hi = p
    rec.lo = rec.hi = p
    rec.phase, rec.exact = "batch", False
    k = 1 + rng.randrange(AFTER)
    for i in range(p, p + k):
        op(heap.root, i)
        heap.end_op()
    rec.phase, rec.hi = "commit", p + k
    heap.commit(p + k)
    dev.check = None
    heap.close()
    again = Heap.open(SimDevice.from_image(dev.persisted_image()), writable=False)
    assert again.position == p + k and canon(again.materialize()) == _expected(p + k), msg
    if depth >= DEPTH:
        return
    stats["images"] += len(rec.shots)
    for s in _pick(rec.shots, rng, 4 if depth == 1 else 6):
        _heap_recover(s, depth + 1, model, rng, stats)


@pytest.mark.parametrize("model", CRASH_MODELS)
def test_crash_during_heap_recovery(model):
    rng = random.Random(f"heap-{model}")
    dev = FenceProbe(256 << 10)
    heap = Heap.create(dev, initial(), undo_size=64 << 10, initial_size=256 << 10)
    top: list[Shot] = []
    prog = {"committed": 0, "inflight": 0, "fences": 0}
    # top-level crash points: mid-batch fences with undo entries to roll back (sampled),
    # and the fences of commits
    every = 1 if FULL else 23

    def check(d: SimDevice, when: str) -> None:
        prog["fences"] += 1
        if when == "before" and (prog["fences"] % every == 0 or prog["inflight"] > prog[
                "committed"]):
            seed = prog["fences"]
            top.append(Shot(d.crash_image(seed, model), prog["committed"], prog["inflight"],
                            f"workload fence {prog['fences']} (seed {seed})"))

    dev.check = check
    for i in range(N_OPS):
        op(heap.root, i)
        heap.end_op()
        if (i + 1) % BATCH == 0:
            prog["inflight"] = i + 1
            heap.commit(i + 1)
            prog["committed"] = i + 1
    dev.check = None
    stats = {"recoveries": 0, "images": 0, "depth": 0}
    chosen = top if FULL else rng.sample(top, 16)
    rolled = 0
    for shot in chosen:
        probe = Heap.open(SimDevice.from_image(shot.img), writable=False)
        rolled += probe.stats["rolled_back"] > 0
        probe.close()
        _heap_recover(shot, 1, model, rng, stats)
    assert rolled >= 8, rolled  # most start with a batch to roll back
    assert stats["depth"] == DEPTH and stats["recoveries"] > 10 * len(chosen), stats


# ---------------------------------------------------------------------------- the runtime
R_OPS = 120


def _kv_expected(n: int) -> object:
    kv = KV()
    for i in range(n):
        kv.apply(workload_op(i))
    return canon({"data": kv.data, "n": kv.n})


_KV: dict[int, object] = {}


def _kv(n: int) -> object:
    if n not in _KV:
        _KV[n] = _kv_expected(n)
    return _KV[n]


def _runtime_recover(shot: Shot, depth: int, model: str, rng: random.Random,
                     stats: dict) -> None:
    """The runtime's recovery of ``shot``'s image: the foreground's (rollback and its commit
    record, materialize, replay of the log tail), then a new shadow's (open, apply the tail,
    its first commit and the tail update), each fence a crash point below depth DEPTH."""
    rec = Recorder(model, 1 if depth >= DEPTH else 2)
    dev = FenceProbe(shot.img)
    dev.check = rec if depth < DEPTH else None
    rec.lo, rec.hi, rec.phase = shot.lo, shot.hi, "open+replay"
    state, _ = recover_state(dev)
    n = state.n
    msg = f"depth {depth}: {shot.where}"
    assert shot.lo <= n <= shot.hi, (msg, n)
    assert canon({"data": state.data, "n": state.n}) == _kv(n), msg
    stats["recoveries"] += 1
    stats["depth"] = max(stats["depth"], depth)
    # The log head is durable in the image: every crash from here recovers exactly n.
    for s in rec.shots:
        s.lo = s.hi = n
    rec.lo = rec.hi = n
    rec.phase = "shadow"
    heap = Heap.open(dev, lock=False)
    ap = Applier(heap, OpLog(dev, heap.pool.oplog_off, heap.pool.oplog_size), max_batch=9)
    while ap.step():
        pass
    ap.commit()
    dev.check = None
    heap.close()
    st2, _ = recover_state(SimDevice.from_image(dev.persisted_image()))
    assert canon({"data": st2.data, "n": st2.n}) == _kv(n), msg
    if depth >= DEPTH:
        return
    stats["images"] += len(rec.shots)
    for s in _pick(rec.shots, rng, 5 if depth == 1 else 6, must="open+replay"):
        _runtime_recover(s, depth + 1, model, rng, stats)


@pytest.mark.parametrize("model", CRASH_MODELS)
def test_crash_during_runtime_recovery(model):
    """The foreground logs groups of 1-5 operations; the shadow lags behind in batches of up
    to 9; power fails at sampled fences, and each image's recovery is crashed in turn."""
    rng = random.Random(f"runtime-{model}")
    dev = FenceProbe(512 << 10)
    heap = Heap.create(dev, KV(), log_size=4 << 10, undo_size=64 << 10,
                       initial_size=256 << 10)
    pool = heap.pool
    OpLog.format(dev, pool.oplog_off, pool.oplog_size)
    fg = OpLog(dev, pool.oplog_off, pool.oplog_size)
    ap = Applier(heap, OpLog(dev, pool.oplog_off, pool.oplog_size), max_batch=9)
    prog = {"acked": 0, "submitted": 0, "fences": 0}
    top: list[Shot] = []
    every = 1 if FULL else 11

    def check(d: SimDevice, when: str) -> None:
        prog["fences"] += 1
        if when == "before" and prog["fences"] % every == 0:
            seed = prog["fences"]
            top.append(Shot(d.crash_image(seed, model), prog["acked"], prog["submitted"],
                            f"workload fence {prog['fences']} (seed {seed})"))

    def drive_shadow() -> None:
        if not ap.step():
            ap.commit()

    dev.check = check
    i = 0
    while i < R_OPS:
        k = min(rng.randrange(1, 6), R_OPS - i)
        payloads = [encode(workload_op(j)) for j in range(i, i + k)]
        prog["submitted"] = i + k
        if k == 1:
            fg.append(payloads[0], wait=drive_shadow)
        else:  # written in place by the compiled module when it is there (as PSM.commit does)
            fg.append_group(payloads, len(encode_group(payloads)), wait=drive_shadow)
        fg.commit()
        i += k
        prog["acked"] = i
        for _ in range(rng.randrange(3)):
            drive_shadow()
    dev.check = None
    stats = {"recoveries": 0, "images": 0, "depth": 0}
    chosen = top if FULL else rng.sample(top, 12)
    for shot in chosen:
        _runtime_recover(shot, 1, model, rng, stats)
    assert stats["depth"] == DEPTH and stats["recoveries"] > 8 * len(chosen), stats


# ------------------------------------------------------------- each store path, one per batch
def _store_paths() -> list:
    """Single operations, one per batch, each taking one store path of the proxies (slices
    inside one 32-byte block and across blocks, reorderings, deletes, table and deque
    stores, attributes): what a crash right after its commit must keep."""
    return [
        lambda s: s["l"].__setitem__(slice(-2, None), [7, 8]),   # two slots of one block
        lambda s: s["l"].__setitem__(slice(10, 12), [1, 2]),
        lambda s: s["l"].__delitem__(slice(20, 60, 3)),
        lambda s: s["l"].reverse(),
        lambda s: s["l"].sort(),
        lambda s: s["l"].insert(5, 99),
        lambda s: s["l"].__delitem__(0),
        lambda s: s["l"].__setitem__(3, "three"),
        lambda s: s["l"].pop(),
        lambda s: s["l"].extend(range(40)),
        lambda s: s["d"].__setitem__("k7", b"new"),
        lambda s: s["d"].pop("k3"),
        lambda s: s["d"].__setitem__("k99", [1, 2]),
        lambda s: s["t"].add("x"),
        lambda s: s["t"].discard("m1"),
        lambda s: s["q"].appendleft(-1),
        lambda s: s["q"].pop(),
        lambda s: s["a"].deposit(5),
        lambda s: s["l"].clear(),
        lambda s: s["d"].clear(),
    ]


def _store_initial() -> dict:
    from collections import deque

    from heap_workload import Account

    return {"l": list(range(64)), "d": {f"k{j}": j for j in range(30)},
            "t": {f"m{j}" for j in range(20)}, "q": deque(range(10)), "a": Account("bo")}


@pytest.mark.parametrize("model", CRASH_MODELS)
def test_each_store_path_is_flushed_by_its_commit(model):
    native = _store_initial()
    dev = FenceProbe(256 << 10)
    heap = Heap.create(dev, _store_initial(), undo_size=64 << 10, initial_size=256 << 10)
    for n, step in enumerate(_store_paths(), 1):
        step(native)
        step(heap.root)
        heap.end_op()
        heap.commit(n)
        want = canon(native)
        for s in range(6):
            h = Heap.open(SimDevice.from_image(dev.crash_image(n * 100 + s, model)),
                          writable=False)
            assert h.position == n and canon(h.materialize()) == want, (n, s)
            h.close()
