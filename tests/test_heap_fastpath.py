"""The compiled fast paths of the heap's hottest stores (``persimmon._speedups``).

They must leave every byte of the pool exactly as the Python code does: two copies of one
pool, one driven with the fast paths and one without, are compared byte for byte after
every operation of a random workload that reaches each of their fallbacks.  The crash tests
(simulated power failures at every fence, SIGKILLs) run with them on by default.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys

import pytest

from persimmon import heap as heap_mod
from persimmon import layout, native
from persimmon.heap import Heap


def test_the_fast_path_is_built_and_on():
    # The install builds it (setup.py); a missing compiler would only show up here.
    if native.pure_python_requested():
        assert native.FAST is None
    else:
        assert native.FAST is not None
    # one loader: every module with a compiled twin holds the same module object
    from persimmon import opcodec, oplog, proxies, shadow

    assert heap_mod.FAST is native.FAST and proxies._FAST is native.FAST
    assert oplog.FAST is native.FAST and opcodec.FAST is native.FAST
    assert shadow.FAST is native.FAST


def test_a_stale_build_is_ignored_with_a_warning():
    # an editable install keeps the .so it built: after the C source changed, an old build
    # must not be called with arguments it does not know
    import types

    stale = types.SimpleNamespace(API=native.API - 1, configure=None)
    with pytest.warns(RuntimeWarning, match="rebuild it"):
        assert native.configure(stale) is None
    if native.FAST is not None:  # the right API number, but other layout constants
        other = types.SimpleNamespace(**{k: getattr(native.FAST, k) for k in (
            "API", "T_STR", "T_BYTES", "HT_NENT", "HT_ITAB", "HT_ENTS")})
        other.T_STR += 100
        with pytest.warns(RuntimeWarning, match="layout constants"):
            assert native.configure(other) is None
    if native.FAST is not None:
        assert native.FAST.API == native.API


def test_pure_python_switch_turns_it_off():
    code = "from persimmon import heap, native; print(native.FAST is None is heap.FAST)"
    env = dict(os.environ, PERSIMMON_PURE_PYTHON="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "True"


def _step(root, heap, rng: random.Random, i: int) -> None:
    """One operation of the workload: stores of every kind into a dict of 300 keys (bytes
    values of all sizes, the big ones taking the Python path; other values; deletes, which
    fill the free lists; fresh big chunks), and a commit at random points."""
    d = root["d"]
    j = rng.randrange(300)
    # bytes keys, str keys (one with a lone surrogate, which only "surrogatepass" encodes)
    k = b"k%d" % j if j % 3 else (f"s{j}" if j % 2 else f"\udc80{j}")
    r = rng.random()
    if r < 0.55:
        size = rng.choice([0, 1, 15, 16, 17, 100, 100, 100, 240, 1000, 4079, 4080, 5000])
        d[k] = bytes([i & 255]) * size
    elif r < 0.65:
        d[k] = rng.choice([i, f"s{i}", [i, b"x"], 2.5, None])
    elif r < 0.8:
        d.pop(k, None)
    elif r < 0.85:
        root["big"] = b"B" * rng.randrange(5000, 20000)
    heap.end_op()
    if rng.random() < 0.05:
        heap.commit(i + 1)
    return len(d)


@pytest.mark.parametrize(("mode", "size"), [
    ("methods", "small"), ("dict_set", "small"), ("parts", "small"), ("methods", "big"),
    ("parts", "big")])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fast_and_python_paths_leave_identical_pools(tmp_path, monkeypatch, seed, mode,
                                                     size):
    assert heap_mod.FAST is None or heap_mod.FAST.direct_hashes()  # (see below)
    _compare_paths(tmp_path, monkeypatch, seed, mode, size)


@pytest.mark.parametrize(("mode", "size"), [("methods", "small"), ("parts", "big")])
def test_the_same_pools_when_the_hashes_come_from_the_python_functions(
        tmp_path, monkeypatch, mode, size, python_hashes):
    # The compiled module calls the xxHash library's own functions when configure() could
    # bind them (it can wherever the xxhash package's module exports them, which the test
    # above asserts), else the Python functions: the pools come out the same that way too.
    _compare_paths(tmp_path, monkeypatch, 1, mode, size)


def test_library_functions_that_disagree_with_the_python_ones_are_not_bound(python_hashes):
    # configure() checks the library's functions against the Python ones before it uses
    # them, and a library file it cannot open leaves it on the Python functions.
    import xxhash
    from xxhash import xxh3_64_intdigest, xxh32_intdigest

    fast = heap_mod.FAST
    args = (heap_mod._SMALL_TABLE, heap_mod._CLASS_SIZES, heap_mod._LEAVES)
    fast.configure(*args, lambda data, seed=0: 12345, xxh32_intdigest, xxhash._xxhash.__file__)
    assert not fast.direct_hashes()
    fast.configure(*args, xxh3_64_intdigest, lambda data, seed=0: 7, xxhash._xxhash.__file__)
    assert not fast.direct_hashes()
    fast.configure(*args, xxh3_64_intdigest, xxh32_intdigest, "/nonexistent/lib.so")
    assert not fast.direct_hashes()
    fast.configure(*args, xxh3_64_intdigest, xxh32_intdigest, xxhash._xxhash.__file__)
    assert fast.direct_hashes()


def _compare_paths(tmp_path, monkeypatch, seed, mode, size):
    # methods: d[k] = v and len(d) are the compiled proxy methods (PDict.__setitem__ and
    # __len__ in C); dict_set: the Python __setitem__ calls dict_set first; parts: dict_set
    # declines every time, so the Python store reaches store_blob and insert_blobs as it
    # does for a table not indexed.  big: the table starts with more entries than a table
    # of bytes and str keys is indexed for (heap._PROBE_OVER): the compiled code probes it
    # in the pool, the Python heap builds its DRAM index.
    whole = mode != "parts"
    if heap_mod.FAST is None:
        pytest.skip("the fast path is not built (PERSIMMON_PURE_PYTHON is set)")
    a = str(tmp_path / "fast.pool")
    b = str(tmp_path / "python.pool")
    first = {b"p%d" % i: b"v" for i in range(heap_mod._PROBE_OVER + 900)} if size == "big" else {}
    Heap.create(a, {"d": first, "big": b""}, undo_size=64 << 10, initial_size=1 << 20).close()
    shutil.copyfile(a, b)
    ha, hb = Heap.open(a), Heap.open(b)
    hb.fast = None
    calls = {"store": 0, "store declined": 0, "insert": 0, "insert declined": 0,
             "dict_set": 0, "dict_set declined": 0, "dict_set inserts": 0, "seek": 0,
             "seek declined": 0}
    fast = ha.fast

    def counted(fn, name, done):  # fn, counting the calls it did and those it declined
        def call(*args):
            r = fn(*args)
            calls[name if done(r) else name + " declined"] += 1
            return r
        return staticmethod(call)

    class Counting:  # the compiled module, counting what it did and what it declined
        store_blob = counted(fast.store_blob, "store", bool)
        insert_blobs = counted(fast.insert_blobs, "insert", lambda e: e is not None)
        ht_seek = counted(fast.ht_seek, "seek", lambda r: r is not None)

        @staticmethod
        def dict_set(heap, d, key, value):
            new = key not in heap.table_indexes.get(d, ())
            ok = whole and fast.dict_set(heap, d, key, value)
            calls["dict_set" if ok else "dict_set declined"] += 1
            calls["dict_set inserts"] += ok and new
            return ok

        rehash = staticmethod(lambda *a: fast.rehash(*a))
        decode_blobs = staticmethod(lambda buf, slots: fast.decode_blobs(buf, slots))

    if mode == "methods":
        # The proxy methods, built with counting Python fallbacks: hb (no fast path) takes
        # `full` for every store and count, ha takes `rest` only when dict_set declines.
        from persimmon.proxies import PDict, Proxy

        calls.update({"full": 0, "rest": 0, "len full": 0})

        def full(*a):
            calls["full"] += 1
            return PDict._set(*a)

        def rest(*a):
            calls["rest"] += 1
            return PDict._store(*a)

        def full_len(*a):
            calls["len full"] += 1
            return PDict._len(*a)

        monkeypatch.setattr(PDict, "__setitem__",
                            fast.proxy_method(fast.PM_SETITEM, full, rest, Proxy))
        monkeypatch.setattr(PDict, "__len__",
                            fast.proxy_method(fast.PM_LEN, full_len, full_len, Proxy))
    else:
        ha.fast = Counting
    dtab = ha.root["d"]._o  # (a lookup on each heap, which both count towards an index)
    assert hb.root["d"]._o == dtab
    rng_a, rng_b = random.Random(seed), random.Random(seed)
    n = 1500
    for i in range(n):  # op by op on both, so a difference is caught where it starts
        assert _step(ha.root, ha, rng_a, i) == _step(hb.root, hb, rng_b, i), i
        assert ha._top == hb._top and ha.undo.count == hb.undo.count, i
        if size == "small":  # the DRAM indexes too
            assert ha.table_indexes == hb.table_indexes and ha._ix_adds == hb._ix_adds, i
        else:  # the big table is probed, not indexed (and the Python heap indexes it)
            assert dtab not in ha.table_indexes, i
        assert bytes(ha.buf) == bytes(hb.buf), f"the pools differ after operation {i}"
    ha.commit(n + 1)
    hb.commit(n + 1)
    assert bytes(ha.buf) == bytes(hb.buf)
    # both paths were taken many times (big values, and batches with fresh big chunks,
    # take the Python path; so do inserts into a table that must grow, or whose counts'
    # block is not logged yet in the batch)
    if mode == "methods":  # hb's stores all went to `full`; ha's to C, or `rest` after it
        assert calls["full"] - calls["rest"] > 150 and calls["rest"] > 150, calls
        assert calls["len full"] == n, calls  # hb's only: ha's counts were all read in C
    elif whole:
        assert calls["dict_set"] > 150 and calls["dict_set declined"] > 150, calls
        assert 50 < calls["dict_set inserts"] < calls["dict_set"] - 50, calls
    else:
        assert calls["store"] > 150 and calls["store declined"] > 50, calls
        assert calls["insert"] > 50 and calls["insert declined"] > 50, calls
        # the Python store's lookups: probed in C until the table had its index (small),
        # or all along (big)
        assert calls["seek"] > (1000 if size == "big" else 2), calls
    if size == "big":  # (so the two heaps looked the key up two ways)
        assert dtab in hb.table_indexes
    ha.index_check()
    hb.index_check()
    assert ha.materialize() == hb.materialize()
    ha.close()
    hb.close()


def test_the_compiled_proxy_methods_behave_as_methods(tmp_path):
    # PDict.__setitem__ and __len__ are compiled method descriptors (docs/heap.md): they bind
    # like functions, take the Python method for any call that is not their plain form, and
    # fail as the Python methods fail.
    if heap_mod.FAST is None:
        pytest.skip("the fast path is not built (PERSIMMON_PURE_PYTHON is set)")
    from persimmon.proxies import PDict, Proxy

    fast = heap_mod.FAST
    assert type(PDict.__dict__["__setitem__"]).__name__ == "ProxyMethod"
    assert type(PDict.__dict__["__len__"]).__name__ == "ProxyMethod"
    h = Heap.create(str(tmp_path / "m.pool"), {"d": {b"a": b"1"}})
    d = h.root["d"]
    for _ in range(40):  # enough lookups for the table to get its DRAM index
        assert d[b"a"] == b"1"
    d.__setitem__(b"b", b"2")  # a bound method
    PDict.__setitem__(d, b"c", b"3")  # the function, called with the proxy
    d.__setitem__(key=b"e", value=b"5")  # keywords: the Python method
    d[b"f"] = [1, 2]  # not bytes: dict_set declines, the Python store does it
    d["g"] = b"7"
    h.end_op()
    assert len(d) == d.__len__() == PDict.__len__(d) == 6
    assert dict(d) == {b"a": b"1", b"b": b"2", b"c": b"3", b"e": b"5", b"f": [1, 2],
                       "g": b"7"}
    assert bool(d)
    with pytest.raises(TypeError):
        d[[1]] = b"x"  # unhashable, as a dict says
    with pytest.raises(AttributeError):
        PDict.__setitem__(object(), b"k", b"v")  # not a proxy: the Python method's error
    with pytest.raises(ValueError):
        fast.proxy_method(7, len, len, Proxy)  # an unknown kind
    with pytest.raises(TypeError):
        fast.proxy_method(fast.PM_LEN, len, len, int)  # a class without the slots
    h.close()
    with pytest.raises(TypeError) as compiled:
        len(d)  # a closed heap: the Python method's error
    with pytest.raises(TypeError) as python:
        PDict._len(d)
    assert str(compiled.value) == str(python.value)


def test_a_persistent_sets_count_is_read_in_c_and_agrees_with_the_python_method(tmp_path):
    # PSet's table has PDict's header, so its __len__ is the same compiled count (the
    # emptiness check persimmon-redis makes on every SET of its shadow)
    if heap_mod.FAST is None:
        pytest.skip("the fast path is not built (PERSIMMON_PURE_PYTHON is set)")
    from persimmon.proxies import PSet

    assert type(PSet.__dict__["__len__"]).__name__ == "ProxyMethod"
    h = Heap.create(str(tmp_path / "s.pool"), {"s": set()})
    s = h.root["s"]
    assert len(s) == PSet._len(s) == 0 and not s
    for i in range(300):  # past a few table growths
        s.add(b"k%d" % i)
        if i % 3 == 0:
            s.discard(b"k%d" % (i // 2))
        assert len(s) == PSet._len(s), i
    h.end_op()
    assert len(s) == len(set(s)) == PSet._len(s) > 0 and bool(s)
    h.close()
    with pytest.raises(TypeError):
        len(s)  # a closed heap: the Python method's error


class Gadget:
    """A user class whose attributes take each path of PObject.__getattribute__."""

    kind = b"a class attribute"

    def __init__(self) -> None:
        self.items = {b"a": b"1"}
        self.count = 3
        self.name = "g"
        self.kind = b"its own, over the class attribute"

    @property
    def doubled(self) -> int:
        return self.count * 2

    def bump(self) -> int:
        self.count += 1
        return self.count


def test_the_compiled_getattribute_reads_as_the_python_one(tmp_path, monkeypatch):
    # PObject.__getattribute__ in C for a user attribute found through the attribute dict's
    # DRAM index; everything else (properties, methods, the proxy's own names, a missing
    # attribute) through the Python method.  Both modes must read the same values and note
    # the same parents.
    if heap_mod.FAST is None:
        pytest.skip("the fast path is not built (PERSIMMON_PURE_PYTHON is set)")
    from persimmon.proxies import PObject, _py_getattribute

    fast = heap_mod.FAST
    fallbacks = {"n": 0}

    def full(*a):
        fallbacks["n"] += 1
        return _py_getattribute(*a)

    monkeypatch.setattr(PObject, "__getattribute__",
                        fast.proxy_method(fast.PM_GETATTR, full, full, PObject))
    h = Heap.create(str(tmp_path / "g.pool"), {"g": Gadget()})
    g = h.root["g"]
    names = ["items", "count", "name", "kind", "doubled", "bump", "_o", "missing"]

    def read(mode):
        h.fast = mode
        h.proxy_parents.clear()
        fallbacks["n"] = 0
        out = []
        for _ in range(10):  # (the attribute dict is indexed after a few lookups)
            for n in names:
                try:
                    v = getattr(g, n)
                except AttributeError as e:
                    out.append((n, "AttributeError", str(e)))
                    continue
                out.append((n, v() if n == "bump" else repr(v)))
        assert g.items is g.items  # the same proxy each time
        return out, dict(h.proxy_parents), fallbacks["n"]

    compiled, parents_c, fell_c = read(fast)
    g.count = 3  # (bump() counted up in each round)
    python, parents_p, fell_p = read(None)
    assert compiled == python and len(compiled) == 10 * len(names)
    assert parents_c == parents_p and parents_c  # (the items proxy, under g)
    # the four user attributes were read in C once the attribute dict was indexed
    assert fell_p - fell_c >= 4 * 7, (fell_p, fell_c)
    h.fast = fast
    h.proxy_parents.clear()  # the index is built: this read is the compiled one, noting it too
    fallbacks["n"] = 0
    assert g.items is not None and fallbacks["n"] == 0 and h.proxy_parents == parents_p
    g.count = 40
    assert g.count == 40 and g.doubled == 80 and g.bump() == 41 and g.count == 41
    h.close()


def test_rehash_writes_the_python_tables():
    if heap_mod.FAST is None:
        pytest.skip("the fast path is not built (PERSIMMON_PURE_PYTHON is set)")
    rng = random.Random(5)
    for es in (24, 16):
        # (64, 60), (16, 40): more entries than the new table holds (or than it has slots),
        # most of them deleted ones
        for size, n in [(8, 0), (8, 5), (16, 10), (64, 60), (16, 40), (1024, 600),
                        (1 << 15, 10_000)]:
            # full 64-bit hashes, negative ones (the entries store them signed), collisions
            # and deleted entries (a DUMMY key slot), in a buffer with bytes around them
            hashes = [rng.getrandbits(64) - (1 << 63) for _ in range(n // 2)]
            hashes += [rng.choice(hashes) if hashes and rng.random() < 0.3
                       else rng.getrandbits(64) - (1 << 63) for _ in range(n - len(hashes))]
            fields = []
            for j, hv in enumerate(hashes):
                gone = j < n - size * 2 // 3 or rng.random() < 0.2
                key = layout.DUMMY if gone else rng.randrange(8, 1 << 40, 8)
                fields += [hv, key] + ([rng.randrange(1 << 40)] if es == 24 else [])
            cap = size * 2 // 3  # the entries array the heap gives a table of `size`
            old, ents = 64, 64 + es * n + 40
            itab = ents + es * cap + 40
            end = itab + 4 * size + 64
            bufs = [bytearray(rng.randbytes(end)) for _ in range(2)]
            bufs[1][:] = bufs[0]
            for b in bufs:
                b[old : old + es * n] = layout.struct_pack_q(fields)
            got = heap_mod.FAST.rehash(memoryview(bufs[0]), old, n, es, ents, itab, size)
            want = heap_mod._rehash(memoryview(bufs[1]), old, n, es, ents, itab, size)
            assert got == want == sum(k != layout.DUMMY for k in fields[1::es // 8])
            # the Python path leaves the bytes past the copied entries alone, like C
            assert bufs[0] == bufs[1]
    buf = memoryview(bytearray(1024))
    with pytest.raises(ValueError):
        heap_mod.FAST.rehash(buf, 0, 3, 24, 100, 300, 3)  # not a power of two
    with pytest.raises(ValueError):
        heap_mod.FAST.rehash(buf, 0, 4, 24, 1000, 0, 8)  # entries past the buffer
    with pytest.raises(ValueError):
        heap_mod.FAST.rehash(buf, 0, 4, 20, 100, 300, 8)  # not an entry size
    buf[0 : 24 * 12] = layout.struct_pack_q([5, 8, 0] * 12)
    with pytest.raises(ValueError):  # 12 live entries for a table that holds 10
        heap_mod.FAST.rehash(buf, 0, 12, 24, 300, 600, 16)


def test_decode_blobs_reads_what_materialize_reads_or_declines(tmp_path):
    # Recovery's bulk decoder: the bytes and str objects at a list of slots, read out of the
    # pool, or None when any slot is something else (the caller's own path takes it).
    if heap_mod.FAST is None:
        pytest.skip("the fast path is not built (PERSIMMON_PURE_PYTHON is set)")
    from persimmon import layout as L

    fast = heap_mod.FAST
    rng = random.Random(9)
    values = [bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 16, 100, 3000])))
              for _ in range(300)]
    values += ["", "plain", "\udc80 a lone surrogate", "é" * 50]
    rng.shuffle(values)
    h = Heap.create(str(tmp_path / "d.pool"), {"l": values, "o": [1, None, [2], 2.5]})
    buf = h.buf
    items = _list_slots(h, h.root["l"]._o)
    assert fast.decode_blobs(buf, items) == values
    assert fast.decode_blobs(buf, []) == []
    others = _list_slots(h, h.root["o"]._o)  # an int, None, a list, a float
    for odd in others:
        assert fast.decode_blobs(buf, items[:5] + [odd] + items[5:]) is None
    assert fast.decode_blobs(buf, items[:3] + [len(buf) + 64]) is None  # outside the pool
    assert fast.decode_blobs(buf, items[:3] + [items[0] + 4]) is None  # not aligned
    # a str that is not UTF-8 raises as the Python decode does
    s = next(x for x, v in zip(items, values, strict=True) if v == "plain")
    assert buf[s] == L.T_STR
    buf[s + 16] = 0xFF
    with pytest.raises(UnicodeDecodeError):
        fast.decode_blobs(buf, [s])
    h.close()


def _list_slots(h, off):
    """The item slots of the PM list at ``off`` (as materialize reads them)."""
    n = int.from_bytes(h.buf[off + 8 : off + 16], "little")
    items = int.from_bytes(h.buf[off + 24 : off + 32], "little") + 16
    return h.buf[items : items + 8 * n].cast("q").tolist()
