"""Group commit: operations logged with ``commit=False`` go into the log as one group entry
at the next ``commit()``; the entry format, the foreground's rules, the shadow and
recovery.  (Crash tests of group commit: tests/test_runtime_crash.py.)"""

from __future__ import annotations

import os
import pickle

import pytest

from persimmon import PSM
from persimmon.errors import CorruptPoolError, LogFullError, PersimmonError, UnpersistableError
from persimmon.heap import FAST, Heap
from persimmon.opcodec import GROUP_OVERHEAD, decode, encode, encode_group, split
from persimmon.oplog import OpLog
from persimmon.shadow import Applier
from persimmon.simdevice import SimDevice
from psm_apps import KV


def test_group_payload_round_trip_keeps_every_form_and_the_order():
    ops = [b"raw bytes", ("set", "k", 1), b"", {"a": [1, 2.5, None]}, "text"]
    payloads = [encode(op) for op in ops]
    group = encode_group(payloads)
    assert split(group) == payloads
    assert [decode(p)[0] for p in split(group)] == ops
    # a single payload is not a group; payloads of earlier versions ("P" + pickle) still read
    assert split(payloads[1]) == [payloads[1]]
    assert decode(b"P" + pickle.dumps(("set", "old", 2)))[0] == ("set", "old", 2)
    assert encode(("set", "k", 1))[0] == 0x80  # a pickle is its own tag


@pytest.mark.parametrize("cut", [1, 6, 9, -1])
def test_damaged_group_is_refused_not_misread(cut):
    group = encode_group([encode(b"abc"), encode(("x", 1))])
    bad = group[:cut] if cut > 0 else group + b"!"
    with pytest.raises(CorruptPoolError, match="group entry"):
        split(bad)
    with pytest.raises(CorruptPoolError, match="unknown operation-log entry tag"):
        decode(b"Zjunk")


def _entries(psm: PSM, start: int) -> list[bytes]:
    lg = psm._log
    return [p for _, p in lg.entries(start, lg.head)]


def test_a_commit_writes_the_group_as_one_entry_and_recovery_replays_it(shm_path):
    psm = PSM(KV, shm_path, log_size=1 << 20)
    psm._stop_shadow()  # keep everything in the log tail
    h0 = psm._log.head
    for i in range(100):
        assert psm.invoke_rw(("set", f"k{i}", i), commit=False) == i + 1
    assert psm.stats()["ops_logged"] == 100  # counted when invoked
    assert psm._log.head == h0  # nothing written before the commit
    psm.commit()
    ents = _entries(psm, h0)
    assert len(ents) == 1 and len(split(ents[0])) == 100
    psm.invoke_rw(("set", "alone", 1))  # commit=True: an entry of its own
    assert len(_entries(psm, h0)) == 2 and len(split(_entries(psm, h0)[1])) == 1
    psm.close(drain=False)
    with PSM(KV, shm_path) as again:
        assert again.state.n == 101 and again.state.data["k99"] == 99
        assert again.stats()["recovery_times"]["replayed_ops"] == 101
        again.verify()  # the shadow replayed the group on PM too


def test_groups_are_cut_to_a_bounded_size(shm_path):
    psm = PSM(KV, shm_path, log_size=64 << 10)  # groups of at most 16 KB
    psm._stop_shadow()
    h0 = psm._log.head
    for i in range(400):
        psm.invoke_rw(("set", f"k{i}", b"v" * 100), commit=False)
    psm.commit()
    ents = _entries(psm, h0)
    assert len(ents) >= 3
    assert all(len(e) <= psm._group_max for e in ents)
    assert sum(len(split(e)) for e in ents) == 400
    psm.close(drain=False)
    with PSM(KV, shm_path) as again:
        assert again.state.n == 400


def test_an_operation_that_cannot_be_logged_changes_nothing_in_a_group(shm_path):
    with PSM(KV, shm_path, log_size=64 << 10) as psm:
        psm.invoke_rw(("set", "a", 1), commit=False)
        with pytest.raises(UnpersistableError):
            psm.invoke_rw(("set", "f", lambda: 1), commit=False)
        with pytest.raises(LogFullError):
            psm.invoke_rw(("set", "huge", b"y" * (128 << 10)), commit=False)
        big = b"z" * (20 << 10)  # past the group bound, within the log: its own entry
        psm.invoke_rw(("set", "big", big), commit=False)
        psm.invoke_rw(("set", "b", 2), commit=False)
        psm.commit()
        assert "f" not in psm.state.data and "huge" not in psm.state.data
        assert psm.state.n == 3
    with PSM(KV, shm_path) as again:
        assert again.state.data == {"a": 1, "big": big, "b": 2}


def test_an_operation_that_raises_in_a_group_is_still_logged(shm_path):
    with PSM(KV, shm_path, log_size=1 << 20) as psm:
        psm.invoke_rw(("set", "a", 1), commit=False)
        with pytest.raises(ValueError, match="boom"):
            psm.invoke_rw(("boom", 7), commit=False)
        psm.invoke_rw(("set", "b", 2), commit=False)
        psm.commit()
        psm.sync()
        st = psm.stats()
        assert st["shadow_errors"] == 1
        assert "operation 2 of the 3 in a group entry" in st["shadow_message"]
        psm.verify()
    with PSM(KV, shm_path) as again:
        assert again.state.data == {"a": 1, "before-boom": 7, "b": 2}


def test_the_shadow_commits_only_between_entries():
    dev = SimDevice(1 << 20)
    heap = Heap.create(dev, KV(), log_size=64 << 10, undo_size=64 << 10,
                       initial_size=256 << 10)
    OpLog.format(dev, heap.pool.oplog_off, heap.pool.oplog_size)
    lg = OpLog(dev, heap.pool.oplog_off, heap.pool.oplog_size)
    bounds = [0]
    for g in range(6):
        lg.append(encode_group([encode(("set", f"k{g}.{j}", j)) for j in range(10)]))
        bounds.append(lg.commit())
    ap = Applier(heap, OpLog(dev, heap.pool.oplog_off, heap.pool.oplog_size), max_batch=3)
    positions = []
    real_commit = heap.commit

    def spy(position):
        positions.append(position)
        real_commit(position)

    heap.commit = spy  # type: ignore[method-assign]
    assert ap.run(4) == 10  # a group is applied whole even past the limit
    while ap.run(100):
        pass
    ap.commit()
    assert positions and set(positions) <= set(bounds)
    assert ap.c.committed_ops == 60 and heap.root.n == 60


def test_invoke_rw_grouped_is_invoke_rw_without_commit(shm_path):
    psm = PSM(KV, shm_path, log_size=1 << 20)
    psm._stop_shadow()
    h0 = psm._log.head
    assert [psm.invoke_rw_grouped(("incr", "c")) for _ in range(5)] == [1, 2, 3, 4, 5]
    assert psm._log.head == h0
    psm.commit()
    assert [len(split(e)) for e in _entries(psm, h0)] == [5]
    psm.close(drain=False)
    with pytest.raises(Exception, match="closed"):
        psm.invoke_rw_grouped(("incr", "c"))
    with PSM(KV, shm_path, verify=True) as psm:  # verify mode: one entry per operation
        assert psm.state.data["c"] == 5
        psm.invoke_rw_grouped(("incr", "c"))
        psm.commit()
        psm.verify()
    with PSM(KV, shm_path) as psm:
        assert psm.state.data["c"] == 6


def _grouped_run(path: str, ops: list, taken: list | None = None) -> tuple[list, list[bytes]]:
    """Results (or exception types) of ``ops`` through invoke_rw_grouped, with a commit
    after every seventh, and the log entries they made.  With ``taken`` (a list), each
    operation is offered to log_rw_grouped first and applied by hand when it was logged
    (what its caller must do), invoke_rw_grouped only when it was not; ``taken`` gets
    which ones log_rw_grouped took."""
    psm = PSM(KV, path, log_size=64 << 10)  # groups of at most 16 KB
    psm._stop_shadow()
    h0 = psm._log.head
    out = []
    for i, op in enumerate(ops):
        try:
            if taken is None:
                out.append(psm.invoke_rw_grouped(op))
            else:
                before = psm._grouper.bytes
                taken.append(psm.log_rw_grouped(op))
                if taken[-1]:
                    out.append(psm.state.apply(op))
                else:
                    assert psm._grouper.bytes == before  # (nothing logged)
                    out.append(psm.invoke_rw_grouped(op))
        except Exception as e:  # noqa: BLE001 (the type is what is compared)
            out.append(type(e))
        if i % 7 == 6:
            psm.commit()
    psm.commit()
    ents = _entries(psm, h0)
    psm.close(drain=False)
    if taken is not None:
        with pytest.raises(PersimmonError, match="closed"):
            psm.invoke_rw_grouped((b"set", b"x", b"1"))
        assert psm.log_rw_grouped((b"set", b"x", b"1")) is False  # closed: nothing logged
    return out, ents


def _grouper_ops() -> list:
    big = b"v" * 5000
    return [
        (b"set", b"k1", b"v1"),  # packed
        ("set", "k2", 2),  # str: pickled, by the Python rules
        b"raw",  # a bytes operation: tag B
        (b"set", b"four", None, 7),  # a 4-tuple: maybe a method call, the Python rules
        (b"set", b"n", -(1 << 63)),
        (b"set", b"big", 1 << 70),  # a big int: pickled
        ("boom", 3),  # apply raises: logged all the same
        ("set", "f", lambda: 1),  # cannot be logged: refused, the state untouched
        *[(b"set", b"b%d" % i, big) for i in range(8)],  # groups cut at 16 KB
        (b"set", b"c", 1),
    ]


@pytest.mark.skipif(FAST is None, reason="the fast path is not built (PERSIMMON_PURE_PYTHON)")
def test_the_compiled_grouper_logs_and_answers_as_the_python_rules_do(shm_path, monkeypatch):
    import persimmon.psm as psm_mod

    ops = _grouper_ops()
    compiled = _grouped_run(shm_path, ops)
    monkeypatch.setattr(psm_mod, "FAST", None)  # a PSM opened now has no compiled grouper
    python = _grouped_run(shm_path + ".py", ops)
    os.unlink(shm_path + ".py")
    assert compiled == python
    results, ents = compiled
    assert results[6] is ValueError and results[7] is UnpersistableError
    assert len(ents) >= 4 and sum(len(split(e)) for e in ents) == len(ops) - 1
    with PSM(KV, shm_path) as again:
        assert again.state.data[b"k1"] == b"v1" and again.state.data[b"c"] == 1
        assert again.state.data[b"four"] is None and again.state.n == len(ops) - 2  # (boom, f)
        assert "f" not in again.state.data and again.state.data[b"big"] == 1 << 70


@pytest.mark.skipif(FAST is None, reason="the fast path is not built (PERSIMMON_PURE_PYTHON)")
def test_a_psm_s_grouped_call_is_the_compiled_grouper_until_it_closes(shm_path):
    psm = PSM(KV, shm_path, log_size=1 << 20)
    g = psm.invoke_rw_grouped
    assert isinstance(g, FAST.Grouper)  # the server's per-write call runs no Python frame
    assert g((b"set", b"a", b"1")) == 1 and g.bytes > GROUP_OVERHEAD
    with pytest.raises(TypeError, match="one positional argument"):
        g()
    with pytest.raises(TypeError, match="one positional argument"):
        g((b"set", b"a", b"1"), op=1)
    psm.commit()
    assert g.bytes == GROUP_OVERHEAD and not psm._group
    psm.close()
    with pytest.raises(PersimmonError, match="closed"):
        g((b"set", b"b", b"2"))
    with pytest.raises(TypeError):
        FAST.Grouper([], 5, 100, 3, print)  # apply must be callable (or None)
    with PSM(KV, shm_path) as again:
        assert again.state.data == {b"a": b"1"}


@pytest.mark.parametrize("compiled", [
    pytest.param(True, marks=pytest.mark.skipif(
        FAST is None, reason="the fast path is not built (PERSIMMON_PURE_PYTHON)")),
    False])
def test_log_rw_grouped_logs_what_invoke_rw_grouped_logs_without_applying(
        shm_path, monkeypatch, compiled):
    import persimmon.psm as psm_mod

    ops = _grouper_ops()
    expected = _grouped_run(shm_path + ".ref", ops)
    os.unlink(shm_path + ".ref")
    if not compiled:
        monkeypatch.setattr(psm_mod, "FAST", None)  # the pure-Python twin
    taken: list[bool] = []
    results, ents = _grouped_run(shm_path, ops, taken)
    assert (results, ents) == expected  # the same entries, byte for byte, and results
    # the T form only, as the compiled grouper's common case: not a str operation (pickled),
    # a bytes one, a 4-tuple, a big int, one that cannot be logged at all
    assert taken[0] and taken[4] and taken[-1]
    assert not any(taken[i] for i in (1, 2, 3, 5, 6, 7))
    assert not all(taken[8:-1])  # a full group: False, and invoke_rw_grouped flushes it
    with PSM(KV, shm_path) as again:  # what the shadow replays: the state applied by hand
        assert again.state.data[b"k1"] == b"v1" and again.state.n == len(ops) - 2
    with PSM(KV, shm_path, verify=True) as verifying:  # verify mode: no groups
        assert verifying.log_rw_grouped((b"set", b"v", b"1")) is False
