"""The shadow's compiled apply loop (``_speedups.apply_run``) against its Python loop.

Two copies of one workload, one applied by ``Applier.run`` with the compiled loop and one
with it turned off, leave the same pool byte for byte, the same counters and the same
messages: every form of entry (bytes operations, packed tuples, pickles, groups mixing
them, method calls, padding markers at the log's wrap-around), operations that raise,
operations whose end_op has work to do or fails, pool growth in the middle of the loop, and
commits when the batch is full and when the undo log asks.
"""

from __future__ import annotations

import random

import pytest

from persimmon import PSM, shadow
from persimmon.calls import CALL
from persimmon.errors import CorruptPoolError
from persimmon.heap import Heap
from persimmon.opcodec import encode, encode_group
from persimmon.oplog import OpLog
from persimmon.simdevice import SimDevice
from psm_apps import Mixed

_MAX_BATCH = 30


def _op(rng: random.Random, i: int):
    r = rng.random()
    if r < 0.3:
        return b"S" + b"k%07d" % rng.randrange(300) + bytes([i & 255]) * rng.randrange(120)
    if r < 0.45:  # packed: values either side of the short form's 255 bytes
        return (b"set", b"t%03d" % rng.randrange(100), bytes([i & 255]) * rng.randrange(400), i)
    if r < 0.6:
        return (CALL, "put", (b"m%d" % rng.randrange(50),), {"value": b"v%d" % i})
    if r < 0.7:
        return ("list", f"l{rng.randrange(20)}", rng.randrange(1, 30))
    if r < 0.75:
        return ("boom", i)
    if r < 0.77:
        return ("bad",)
    if r < 0.8:
        return ("big", f"b{rng.randrange(8)}", rng.randrange(2000, 90000))
    if r < 0.83:
        return ("many", rng.randrange(100, 900), i)
    return ("set-nothing", i)


def _new_pool() -> bytes:
    dev = SimDevice(256 << 10)  # (the workload grows it)
    heap = Heap.create(dev, Mixed(), log_size=4 << 10, undo_size=8 << 10,
                       initial_size=256 << 10)
    OpLog.format(dev, heap.pool.oplog_off, heap.pool.oplog_size)
    heap.close()
    return bytes(dev.buf)


def _drive(image: bytes, seed: int, compiled: bool, monkeypatch) -> dict:
    if not compiled:
        monkeypatch.setattr(shadow, "_fast_run", None)
    dev = SimDevice.from_image(image)
    heap = Heap.open(dev)
    pool = heap.pool
    fg = OpLog(dev, pool.oplog_off, pool.oplog_size)
    ap = shadow.Applier(heap, OpLog(dev, pool.oplog_off, pool.oplog_size), max_batch=_MAX_BATCH)
    reasons = {"full": 0, "undo": 0, "idle": 0}  # why each commit came
    real_commit = ap.commit

    def commit() -> None:
        full = ap.in_batch >= _MAX_BATCH
        undo = heap.undo.count >= heap.commit_threshold
        reasons["full" if full else "undo" if undo else "idle"] += 1
        real_commit()

    ap.commit = commit
    errors = {"raised": 0, "end_failed": 0}

    def counting(name):  # the Applier's handler, counting its calls
        real = getattr(ap, "_" + name)

        def handler(e, pos, i, k):
            errors[name] += 1
            real(e, pos, i, k)
        return handler

    for name in errors:
        setattr(ap, "_" + name, counting(name))
    rng = random.Random(seed)
    applied = 0

    def drain() -> None:
        nonlocal applied
        while k := ap.run(rng.randrange(1, 40)):
            applied += k
        ap.commit()

    i = 0
    while i < 900:
        k = rng.choice([1, 1, 1, 2, 5, 9])
        payloads = [encode(_op(rng, j)) for j in range(i, i + k)]
        fg.append(payloads[0] if k == 1 else encode_group(payloads), wait=drain)
        fg.commit()
        i += k
        if rng.random() < 0.3:
            applied += ap.run(rng.randrange(1, 40))
    drain()
    monkeypatch.undo()
    counters = ap.c.snapshot()
    counters["apply_ns"] = 0  # (time)
    out = {"bytes": bytes(dev.buf), "counters": counters, "message": ap.message.value,
           "applied": applied, "submitted": i, "errors": errors, "reasons": reasons,
           "n": heap.root.n, "grows": heap.stats["grows"], "commits": heap.stats["commits"],
           "state": heap.materialize().__dict__}
    heap.close()
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_the_compiled_loop_applies_what_the_python_loop_applies(seed, monkeypatch):
    if shadow._fast_run is None:
        pytest.skip("the fast path is not built (PERSIMMON_PURE_PYTHON is set)")
    stops = {0: 0, 1: 0, 2: 0}
    real = shadow._fast_run

    def counting(*args):
        r = real(*args)
        stops[r[3]] += 1
        return r

    monkeypatch.setattr(shadow, "_fast_run", counting)
    image = _new_pool()
    fast = _drive(image, seed, True, monkeypatch)
    slow = _drive(image, seed, False, monkeypatch)
    assert fast["applied"] == slow["applied"] == fast["n"] == fast["submitted"] >= 900
    for k in ("counters", "message", "errors", "reasons", "n", "grows", "commits", "state"):
        assert fast[k] == slow[k], k
    assert fast["bytes"] == slow["bytes"]
    # every case was reached: errors raised by operations and by end_op, pool growth, both
    # reasons to commit, and entries left to the Python loop (padding markers)
    c = fast["counters"]
    errors = fast["errors"]
    assert errors["raised"] > 20 and errors["end_failed"] > 5 and fast["grows"] >= 1, fast
    assert c["errors"] == errors["raised"] + errors["end_failed"]
    assert b"in the shadow" in fast["message"], fast["message"]
    assert min(fast["reasons"].values()) >= 3, fast["reasons"]
    assert stops[1] > 10 and stops[2] > 5 and stops[0] > 10, stops
    st = fast["state"]
    assert "before-boom" in st["data"] and st["lists"] and b"m1" in st["data"], st


def test_a_value_end_op_cannot_persist_is_reported_once_and_the_shadow_goes_on(shm_path):
    # The shadow's end_op fails on a native list holding a function: the failure is counted
    # and reported, the pending conversion is dropped (not retried at every later end_op,
    # nor at the commit, which would kill the shadow in a loop of restarts), and later
    # operations reach PM as usual.
    with PSM(Mixed, shm_path, log_size=1 << 20) as psm:
        psm.invoke_rw(("bad",))
        for j in range(50):
            psm.invoke_rw(b"S" + b"key%05d" % j + b"value")
        psm.sync()
        st = psm.stats()
        assert st["shadow_errors"] == 1 and st["shadow_restarts"] == 0, st
        assert "end of the operation at log position 0 failed" in st["shadow_message"]
        assert "builtins.function" in st["shadow_message"]
    with PSM(Mixed, shm_path) as again:
        assert again.state.n == 51 and again.state.data[b"key00049"] == b"value"


def test_the_compiled_loop_reads_packed_operations_and_leaves_a_damaged_one_to_python(
        monkeypatch):
    if shadow._fast_run is None:
        pytest.skip("the fast path is not built (PERSIMMON_PURE_PYTHON is set)")
    stops = []
    real = shadow._fast_run

    def counting(*args):
        r = real(*args)
        stops.append(r[3])
        return r

    monkeypatch.setattr(shadow, "_fast_run", counting)
    dev = SimDevice.from_image(_new_pool())
    heap = Heap.open(dev)
    pool = heap.pool
    fg = OpLog(dev, pool.oplog_off, pool.oplog_size)
    ap = shadow.Applier(heap, OpLog(dev, pool.oplog_off, pool.oplog_size), max_batch=1000)
    ops = [(b"set", b"t%03d" % i, b"v" * (i * 13 % 300), i) for i in range(12)]
    payloads = [encode(op) for op in ops]
    assert {p[:1] for p in payloads} == {b"T"}
    fg.append(payloads[0])
    fg.append(encode_group(payloads[1:]))
    fg.commit()
    assert ap.run(100) == 12
    assert stops and set(stops) == {0}, stops  # read in C: never left to the Python loop
    ap.commit()
    assert {k: v for k, v in heap.materialize().data.items()} == {
        op[1]: op[2] for op in ops}
    # a damaged packed operation in a group whose checksum holds: the compiled loop leaves
    # the entry to the Python loop, which names the damage
    # (the first entry is read by the Python loop, which loads the head: the compiled loop
    # then gets the second)
    bad = payloads[5][:-1]
    fg.append(payloads[6])
    fg.append(encode_group([encode((b"set", b"ok", b"v", 0)), bad]))
    fg.commit()
    stops.clear()
    with pytest.raises(CorruptPoolError, match="packed operation"):
        ap.run(100)
    assert stops == [2]
    heap.close()
