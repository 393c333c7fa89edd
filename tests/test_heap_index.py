"""The heap's DRAM index of hash tables: exact, rebuilt when needed, and never a wrong answer.

The index is volatile (never in the pool), so what matters is that every lookup through it
gives what a probe through PM gives, after every kind of mutation, and that it is dropped or
renumbered whenever the table under it changes shape.
"""

from __future__ import annotations

import random

import pytest

from heap_workload import Account
from persimmon.errors import PersimmonError
from persimmon.heap import Heap
from persimmon.simdevice import SimDevice


def reopen(heap: Heap, pos: int) -> Heap:
    heap.commit(pos)
    return Heap.open(SimDevice.from_image(heap.dev.persisted_image()))


def test_random_dict_ops_agree_with_native_dict():
    rng = random.Random(7)
    heap = Heap.create(SimDevice(16 << 20), {"d": {}})
    d = heap.root["d"]
    native: dict = {}
    # str, bytes and int keys, and float/bool keys equal to ints (1.0 == 1 == True)
    pool = ([f"k{i}" for i in range(300)] + [b"b%d" % i for i in range(300)]
            + list(range(300)))
    for step in range(6000):
        k = rng.choice(pool)
        r = rng.random()
        if r < 0.45:
            v = rng.randbytes(rng.randrange(1, 40)) if rng.random() < 0.7 else step
            d[k] = v
            native[k] = v
        elif r < 0.6:
            assert d.pop(k, None) == native.pop(k, None)
        elif r < 0.65:
            if native:
                assert d.popitem() == native.popitem()
        elif r < 0.67:
            alias = rng.choice([1.0, True, 2.0, False, 0.0])
            assert (alias in d) == (alias in native)
            assert d.get(alias) == native.get(alias)
        elif r < 0.675:
            d.clear()
            native.clear()
        else:
            assert d.get(k) == native.get(k)
            assert (k in d) == (k in native)
        heap.end_op()
        if step % 97 == 0:
            heap.commit(step)
            heap.index_check()
            assert list(d.items()) == list(native.items())
    heap.index_check()
    assert heap.table_indexes.get(d._o) is not None  # the table stayed indexed all along
    assert list(d.items()) == list(native.items())
    heap = reopen(heap, 10**6)
    assert heap.materialize()["d"] == native


def test_index_is_built_after_about_a_sixteenth_of_the_table_in_probes():
    heap = Heap.create(SimDevice(16 << 20), {"d": {b"k%d" % i: i for i in range(400)}})
    heap = reopen(heap, 1)
    d = heap.root["d"]
    assert heap.table_indexes.get(d._o) is None  # an existing table starts without an index
    for i in range(20):
        assert d[b"k%d" % i] == i
    assert heap.table_indexes.get(d._o) is None
    for i in range(20, 30):
        assert d[b"k%d" % i] == i
    assert heap.table_indexes.get(d._o) is not None  # 2 + 400/16 probes
    heap.index_check()
    assert b"nope" not in d and d.get(b"k399") == 399
    d[b"new"] = 1
    del d[b"k0"]
    heap.end_op()
    heap.index_check()
    assert len(d) == 400 and d[b"new"] == 1 and b"k0" not in d


def test_keys_of_other_types_make_a_table_unindexed_until_cleared():
    heap = Heap.create(SimDevice(16 << 20), {"d": {}})
    d = heap.root["d"]
    for i in range(20):
        d[i] = i
    assert heap.table_indexes.get(d._o) is not None
    d[(1, "x")] = "tuple key"
    heap.end_op()
    assert heap.table_indexes.get(d._o) is None
    assert d[(1, "x")] == "tuple key" and d[3] == 3 and d.get(3.0) == 3 and 99 not in d
    for i in range(200):  # probing never rebuilds it
        assert d[i % 20] == i % 20
    assert heap.table_indexes.get(d._o) is None
    d.clear()
    heap.end_op()
    assert heap.table_indexes.get(d._o) == {}
    d["a"] = 1
    assert d["a"] == 1
    heap.index_check()


def test_index_limit_bounds_the_table_size_indexed():
    heap = Heap.create(SimDevice(16 << 20), {"d": {}, "s": set()})
    heap.index_limit = 10
    d, s = heap.root["d"], heap.root["s"]
    for i in range(30):
        d[i] = i
        s.add(f"m{i}")
    heap.end_op()
    assert heap.table_indexes.get(d._o) is None and heap.table_indexes.get(s._o) is None
    assert [d[i] for i in range(30)] == list(range(30))
    assert all(f"m{i}" in s for i in range(30)) and "m30" not in s
    s.discard("m3")
    del d[3]
    heap.end_op()
    assert 3 not in d and "m3" not in s and len(d) == len(s) == 29


@pytest.mark.parametrize("value,ok", [("", True), ("0", True), ("5000", True),
                                      ("lots", False), ("-1", False)])
def test_index_limit_from_the_environment(monkeypatch, value, ok):
    monkeypatch.setenv("PERSIMMON_INDEX_LIMIT", value)
    if not ok:
        with pytest.raises(PersimmonError, match="PERSIMMON_INDEX_LIMIT"):
            Heap.create(SimDevice(1 << 20), {})
        return
    heap = Heap.create(SimDevice(1 << 20), {"d": {"a": 1}})
    assert heap.index_limit == (int(value) if value else 1 << 20)
    d = heap.root["d"]
    assert heap.table_indexes.get(d._o) is None  # the initial image leaves no index behind
    d["b"] = 2
    assert d["a"] == 1 and d["b"] == 2 and "c" not in d
    assert (heap.table_indexes.get(d._o) is None) == (value == "0")


def test_object_attributes_through_the_index():
    heap = Heap.create(SimDevice(16 << 20), {"acct": Account("ann")})
    heap = reopen(heap, 1)
    a = heap.root["acct"]
    for _ in range(5):
        assert a.owner == "ann" and a.balance == 0
    a.deposit(5)
    a.note = "x"
    del a.note
    heap.end_op()
    heap.index_check()
    with pytest.raises(AttributeError):
        a.note  # noqa: B018
    a.note = "y"
    heap.end_op()
    assert a.note == "y" and a.balance == 5
    heap.index_check()
    assert heap.materialize()["acct"].note == "y"


def test_a_freed_table_leaves_no_index_behind():
    heap = Heap.create(SimDevice(16 << 20), {"d": {}})
    root = heap.root
    for rnd in range(30):
        root["d"] = {f"r{rnd}-{i}": i for i in range(6)}  # the old dict is freed
        heap.end_op()
        heap.commit(rnd + 1)  # its chunk can be reused from now on
        d = root["d"]
        assert d.get(f"r{rnd}-3") == 3 and f"r{rnd - 1}-3" not in d
        assert len(heap.table_indexes) <= 3  # root, the live dict (and nothing that was freed)
        heap.index_check()


def test_set_index_limit_drops_and_allows_indexes_and_index_bytes_counts_them():
    heap = Heap.create(SimDevice(16 << 20), {"d": {b"k%d" % i: i for i in range(100)},
                                             "small": {"a": 1}})
    d, small = heap.root["d"], heap.root["small"]
    assert heap.table_indexes.get(d._o) is None  # the initial image leaves no index behind
    for _ in range(10):
        assert d[b"k1"] == 1 and small["a"] == 1
    assert heap.table_indexes.get(d._o) is not None
    full = heap.index_bytes()
    assert full > 100 * 50  # a dict slot, a key and an offset per entry
    heap.set_index_limit(10)
    assert heap.table_indexes.get(d._o) is None and heap.table_indexes.get(small._o) is not None
    assert heap.index_bytes() < full // 5
    assert [d[b"k%d" % i] for i in range(100)] == list(range(100))  # probes, never built
    assert heap.table_indexes.get(d._o) is None
    heap.set_index_limit(1000)
    for i in range(10):  # about len/16 probes build it again
        assert d[b"k%d" % i] == i
    assert heap.table_indexes.get(d._o) is not None
    heap.index_check()
    with pytest.raises(ValueError):
        heap.set_index_limit(-1)


def test_indexes_of_many_tables_stay_within_the_budget():
    # 1,000 small dicts (Redis hashes, say): the keys held by all indexes together stay under
    # twice the per-table limit, whatever the number of tables; answers never change.
    heap = Heap.create(SimDevice(32 << 20), {"h": {}})
    heap.set_index_limit(40)
    hs = heap.root["h"]
    for i in range(1000):
        hs[i] = {f"f{j}": j for j in range(5)}
        heap.end_op()
        held = sum(len(ix) for ix in heap.table_indexes.values())
        assert held <= 80, (i, held)
    for i in range(0, 1000, 7):
        h = hs[i]
        assert [h[f"f{j}"] for j in range(5)] == list(range(5)) and "f5" not in h
        h["f9"] = i
        heap.end_op()
    heap.index_check()
    assert all(hs[i]["f9"] == i for i in range(0, 1000, 7))
    assert 0 < sum(len(ix) for ix in heap.table_indexes.values()) <= 80


def test_the_compiled_probe_finds_what_the_python_probe_finds():
    # ht_seek (the compiled probe of a table's index table in the pool) against Heap._ht_find
    # on dicts and sets holding bytes, str (the same text as some bytes), int and tuple keys,
    # with deletes leaving dummies and re-inserts: the same entry, or the same insert slot.
    from persimmon import heap as heap_mod

    fast = heap_mod.FAST
    if fast is None:
        pytest.skip("the fast path is not built (PERSIMMON_PURE_PYTHON is set)")
    rng = random.Random(7)
    heap = Heap.create(SimDevice(32 << 20), {"d": {}, "s": set()})
    d, s = heap.root["d"], heap.root["s"]
    pool = [b"k%d" % i for i in range(300)] + [f"k{i}" for i in range(150)] + \
        ["\udc80lone"] + list(range(100)) + [(1, "t"), b"", ""]
    checked = found = 0
    for step in range(3000):
        k = rng.choice(pool)
        r = rng.random()
        if r < 0.5:
            d[k] = step
            s.add(k)
        elif r < 0.8:
            d.pop(k, None)
            s.discard(k)
        heap.end_op()
        if step % 10 == 0:
            for tab, es in ((d._o, 24), (s._o, 16)):
                for q in rng.sample(pool, 20) + [b"absent", "absent"]:
                    if type(q) not in (bytes, str):
                        assert fast.ht_seek(heap, tab, es, q) is None  # (not its kind)
                        continue
                    hv = heap.key_hash(q)
                    p, e, free = heap._ht_find(tab, es, hv, q)
                    got = fast.ht_seek(heap, tab, es, q)
                    if e >= 0:
                        assert got[:2] == (e, hv), (q, got, e)
                        found += 1
                    else:
                        assert got == (-1, hv, free if free >= 0 else p), (q, got, p, free)
                    checked += 1
    assert checked > 5000 and found > 1000
    # a table that is not one, and a bad entry size: declined, never a wrong answer
    assert fast.ht_seek(heap, 0, 24, b"k1") is None
    assert fast.ht_seek(heap, d._o, 40, b"k1") is None
    with pytest.raises(TypeError):
        fast.ht_seek(heap, d._o, 24)


def test_big_tables_of_bytes_and_str_keys_are_probed_not_indexed():
    # With the compiled module, a table of more than _PROBE_OVER bytes/str keys has no DRAM
    # index (the shadow's biggest working set after the data); a smaller one, or one with
    # keys of other types, keeps it.  Without the module, the big table is indexed as before.
    from persimmon import heap as heap_mod

    n = heap_mod._PROBE_OVER + 100
    image = {"big": {b"k%d" % i: b"v" for i in range(n)}, "small": {b"k%d" % i: 1 for i in
             range(100)}, "mixed": {**{b"k%d" % i: 1 for i in range(n)}, 7: 7}}
    for fast in (heap_mod.FAST, None):
        if fast is None and heap_mod.FAST is None:
            continue
        heap = reopen(Heap.create(SimDevice(64 << 20), image), 1)
        heap.fast = fast
        big, small, mixed = (heap.root[k] for k in ("big", "small", "mixed"))
        for i in range(n // 8):  # far more probes than any of them needs for its index
            assert big[b"k%d" % (i * 7 % n)] == b"v" and small[b"k%d" % (i % 100)] == 1
            assert mixed[b"k%d" % i] == 1
            big[b"k%d" % (i * 3 % n)] = b"w%d" % i
            heap.end_op()
        assert (heap.table_indexes.get(big._o) is None) == (fast is not None)
        assert heap.table_indexes.get(small._o) is not None
        assert heap.table_indexes.get(mixed._o) is not None
        heap.index_check()
        # a table made in this process starts indexed, and drops the index at its first
        # resize past _PROBE_OVER entries
        heap.root["new"] = {}
        new = heap.root["new"]
        m = 3 * heap_mod._PROBE_OVER
        for i in range(m):
            new[b"n%d" % i] = b"x"
            heap.end_op()
            if i == 100:
                assert heap.table_indexes.get(new._o) is not None
        assert (heap.table_indexes.get(new._o) is None) == (fast is not None)
        assert [new[b"n%d" % i] for i in range(0, m, 97)] == [b"x"] * len(range(0, m, 97))
        assert len(new) == m and big[b"k3"] == b"w1" and b"k%d" % n not in big
        heap.index_check()
        assert heap.materialize()["new"] == {b"n%d" % i: b"x" for i in range(m)}
