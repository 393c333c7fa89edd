"""The compiled module's contract (persimmon.native): what ``_speedups`` reads of the heap,
the undo log, the devices and the proxy classes by name is declared once, compared with the
module's own list at load, and checked on every Heap when it is built.  A rename in Python
must fail at once, not silently send every store down the Python path."""

from __future__ import annotations

import types

import pytest

from persimmon import heap as heap_mod
from persimmon import native, proxies
from persimmon.heap import Heap
from persimmon.undolog import UndoLog


def test_the_module_reads_what_is_declared():
    if native.FAST is None:
        pytest.skip("the fast path is not built (PERSIMMON_PURE_PYTHON is set)")
    assert native.FAST.CONTRACT == native.contract()


def test_a_build_that_reads_other_names_is_refused():
    if native.FAST is None:
        pytest.skip("the fast path is not built (PERSIMMON_PURE_PYTHON is set)")
    fake = types.SimpleNamespace(**{k: getattr(native.FAST, k) for k in dir(native.FAST)
                                    if not k.startswith("__")})
    theirs = dict(native.FAST.CONTRACT)
    theirs["heap"] = tuple(n if n != "_nolog" else "_no_log" for n in theirs["heap"])
    fake.CONTRACT = theirs
    with pytest.warns(RuntimeWarning, match="attributes it reads"):
        assert native.configure(fake) is None


def test_a_heap_meets_the_contract(tmp_path):
    heap = Heap.create(str(tmp_path / "p"), {"a": b"x"}, initial_size=1 << 20)
    try:
        native.check_heap(heap)  # (also run by Heap.__init__)
        for name, want in native.HEAP_ATTRS.items():
            assert name in heap.__dict__
            assert want is None or type(heap.__dict__[name]) is want
        for name in native.UNDO_ATTRS:
            assert name in heap.undo.__dict__
        for name in native.PROXY_SLOTS:
            assert any(name in getattr(k, "__slots__", ()) for k in proxies.PObject.__mro__)
    finally:
        heap.close()


def test_renaming_a_heap_attribute_fails_loudly(tmp_path, monkeypatch):
    real_init = Heap.__init__

    def init(self, pool):  # Heap.__init__ with _nolog renamed before its last line, the check
        real_check = native.check_heap

        def renamed_then_checked(heap):
            heap.__dict__["_no_log"] = heap.__dict__.pop("_nolog")
            real_check(heap)

        monkeypatch.setattr(native, "check_heap", renamed_then_checked)
        real_init(self, pool)

    monkeypatch.setattr(Heap, "__init__", init)
    with pytest.raises(native.ContractError, match=r"Heap\._nolog is missing"):
        Heap.create(str(tmp_path / "p"), {}, initial_size=1 << 20)


def test_renaming_an_undo_log_attribute_fails_loudly(tmp_path, monkeypatch):
    class RenamedUndoLog(UndoLog):  # _bmix renamed in a subclass
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            self._mix = self.__dict__.pop("_bmix")

    monkeypatch.setattr(heap_mod, "UndoLog", RenamedUndoLog)
    with pytest.raises(native.ContractError, match=r"RenamedUndoLog\._bmix is missing"):
        Heap.create(str(tmp_path / "p"), {}, initial_size=1 << 20)


def test_a_type_change_fails_loudly(tmp_path, monkeypatch):
    real_init = UndoLog.__init__

    def init(self, *args, **kw):  # an undo log whose position became a float
        real_init(self, *args, **kw)
        self._pos = float(self._pos)

    monkeypatch.setattr(UndoLog, "__init__", init)
    with pytest.raises(native.ContractError, match=r"UndoLog\._pos is a float, not a int"):
        Heap.create(str(tmp_path / "p"), {}, initial_size=1 << 20)


def test_renaming_a_method_fails_loudly(tmp_path, monkeypatch):
    owner = next(k for k in Heap.__mro__ if "_ix_probed" in vars(k))  # (a part of the heap)
    monkeypatch.delattr(owner, "_ix_probed")
    with pytest.raises(native.ContractError, match=r"Heap\._ix_probed is not a method"):
        Heap.create(str(tmp_path / "p"), {}, initial_size=1 << 20)


def test_a_proxy_class_without_its_caches_fails_loudly():
    class Bare:
        pass

    with pytest.raises(native.ContractError, match="_own, _dc"):
        native.check_proxy_class(Bare)
    native.check_proxy_class(proxies.PObject)


def test_heap_re_exports_the_one_loader():
    assert heap_mod.FAST is native.FAST and heap_mod.FAST_API == native.API


def test_the_apply_loop_takes_one_declared_context():
    if native.FAST is None:
        pytest.skip("the fast path is not built (PERSIMMON_PURE_PYTHON is set)")
    ctx_type = native.FAST.ApplyContext
    members = [n for n, v in vars(ctx_type).items() if type(v).__name__ == "member_descriptor"]
    assert sorted(members) == sorted(native.APPLY_CONTEXT)
    fields = dict.fromkeys(native.APPLY_CONTEXT, None)
    fields.update(data=0, cap=64, max_batch=1, threshold=1)
    ctx = ctx_type(**fields)
    ctx.apply = print  # (apply and root change at every commit)
    assert ctx.apply is print and ctx.cap == 64
    with pytest.raises(TypeError):
        ctx_type(**{k: v for k, v in fields.items() if k != "undo"})
    with pytest.raises(TypeError, match="ApplyContext"):  # the old 17 positional arguments
        native.FAST.apply_run(*range(17))
    # nothing to apply below the head: (applied, position, in batch, why)
    assert native.FAST.apply_run(ctx, 5, 5, 10, 0) == (0, 5, 0, 0)


def test_the_undo_entry_writer_and_its_python_twin_write_the_same_bytes():
    # UndoLog.log_block is the compiled undo_log_block (the code that undo-logs the compiled
    # stores too); _log_block_python is its twin.  The same blocks logged each way, through
    # a spill into a second segment, leave the same device (flushed image included), and the
    # compiled writer is taken for every entry but the one that spills.
    import random

    from persimmon.simdevice import SimDevice

    if native.FAST is None:
        pytest.skip("the fast path is not built (PERSIMMON_PURE_PYTHON is set)")
    image = random.Random(5).randbytes(1 << 16)
    taken: list[bool] = []

    class Counting:  # the compiled module, counting what its writer does
        @staticmethod
        def undo_log_block(undo, a):
            r = native.FAST.undo_log_block(undo, a)
            taken.append(r)
            return r

    runs = []
    for fast in (Counting, None):
        dev = SimDevice(image)
        seg = iter([(48 << 10, 8 << 10)])
        undo = UndoLog(dev, 0, 4096, lambda n, seg=seg: next(seg))
        undo.fast = fast
        undo.begin(7)
        rng = random.Random(3)
        for _ in range(90):  # (63 entries fill the 4 KiB segment)
            undo.log_block(rng.randrange(8 << 10, 40 << 10) & ~31)
        runs.append((bytes(dev.buf), dev.persisted_image(), undo.count, undo._pos,
                     undo.spilled, undo.valid_entries(7)))
    assert runs[0] == runs[1]
    assert taken.count(False) == 1 and taken.count(True) == 89, taken  # (False: the spill)
