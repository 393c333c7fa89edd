"""The heap's object model: every supported type round-trips, proxies behave like built-ins."""

from __future__ import annotations

import os
import pickle
import socket
from collections import deque

import pytest

from heap_workload import Account
from persimmon.errors import (
    CorruptPoolError,
    LayoutVersionError,
    NotAPoolError,
    PoolExistsError,
    PoolInUseError,
    UnpersistableError,
)
from persimmon.heap import Heap
from persimmon.simdevice import SimDevice


def make(root, size=1 << 20):
    return Heap.create(SimDevice(size), root)


def test_every_supported_type_round_trips():
    root = {
        "none": None, "t": True, "f": False, "small": -12345, "big": -(10**40), "fl": 1.5,
        "c": 2 + 3j, "s": "héllo\udcff", "b": b"\x00\xff", "tup": (1, ("x", b"y")),
        "fs": frozenset({1, 2}), "l": [1, [2, [3]]], "d": {1: {"a": 2}}, "set": {1, "a"},
        "dq": deque([1, 2], maxlen=5), "obj": Account("bob"), "opaque": pickle.PicklingError,
        "bytearray": bytearray(b"abc"),
    }
    h = make(root)
    m = h.materialize()
    for k, v in root.items():
        if k == "obj":
            assert vars(m[k]) == vars(v) and type(m[k]) is Account
        else:
            assert m[k] == v, k
            assert type(m[k]) is type(v), k
    assert m["dq"].maxlen == 5
    p = h.root
    assert p["big"] == -(10**40) and p["c"] == 2 + 3j and p["s"] == "héllo\udcff"
    assert isinstance(p, dict) and isinstance(p["l"], list) and isinstance(p["set"], set)
    assert isinstance(p["dq"], deque) and isinstance(p["obj"], Account)
    assert type(p) is not dict


def test_same_object_gives_same_proxy_and_sharing_is_kept():
    shared = [1, 2]
    h = make({"a": shared, "b": shared, "c": {"x": shared}})
    r = h.root
    assert r["a"] is r["b"] is r["c"]["x"]
    r["a"].append(3)
    assert r["b"] == [1, 2, 3]
    m = h.materialize()
    assert m["a"] is m["b"] is m["c"]["x"]


def test_cycles_round_trip():
    d = {"name": "loop"}
    d["self"] = d
    lst = [d]
    d["lst"] = lst
    h = make(d)
    m = h.materialize()
    assert m["self"] is m and m["lst"][0] is m
    assert h.root["self"] is h.root


def test_dict_keys_follow_python_equality():
    h = make({"d": {}})
    d = h.root["d"]
    d[1] = "one"
    assert d[1.0] == "one" and d[True] == "one" and len(d) == 1
    d[1.0] = "uno"
    assert list(d.items()) == [(1, "uno")]
    d["1"] = "s"
    d[b"1"] = "b"
    assert len(d) == 3 and d["1"] == "s" and d[b"1"] == "b"
    d[(1, "a")] = "t"
    assert d[(1.0, "a")] == "t"
    with pytest.raises(TypeError):
        d[[1]] = 2
    with pytest.raises(UnpersistableError):
        d[object()] = 1


def test_dict_order_after_deletes_and_reinserts():
    h = make({"d": {}})
    d = h.root["d"]
    native: dict = {}
    for i in range(200):
        for t in (d, native):
            t[f"k{i % 37}"] = i
            if i % 3 == 0:
                t.pop(f"k{(i * 7) % 37}", None)
    assert list(d.items()) == list(native.items())
    h.commit(1)
    assert list(h.materialize()["d"].items()) == list(native.items())


def test_dict_protocol():
    h = make({"d": {"a": 1, "b": 2}})
    d = h.root["d"]
    n = {"a": 1, "b": 2}
    assert d == n and n == d and d != {"a": 1}
    assert d.get("zz", 5) == 5 and "a" in d and "q" not in d
    assert d.setdefault("c", [3]) == [3] and n.setdefault("c", [3]) == [3]
    assert d.pop("a") == n.pop("a")
    assert d.pop("nope", None) is None
    with pytest.raises(KeyError):
        d.pop("nope")
    with pytest.raises(KeyError):
        d["nope"]
    d.update({"x": 1}, y=2)
    n.update({"x": 1}, y=2)
    d |= {"z": 0}
    n |= {"z": 0}
    assert d.popitem() == n.popitem()
    assert list(d) == list(n) and list(d.values()) == list(n.values())
    assert set(d.keys()) == set(n.keys()) and len(d) == len(n)
    assert (d | {"k": 1}) == (n | {"k": 1})
    assert d.copy() == n and type(d.copy()) is dict
    with pytest.raises(RuntimeError):
        for k in d:
            d[k + "!"] = 1
    d.clear()
    assert len(d) == 0 and d == {}


def test_list_protocol():
    h = make({"l": [5, 3, 9]})
    p = h.root["l"]
    n = [5, 3, 9]
    for t in (p, n):
        t.append(1)
        t.extend([7, 7])
        t.insert(0, 0)
        t.insert(-1, 4)
        t.insert(100, 8)
        t[2] = 33
        t[-1] = 88
        t.remove(7)
        t[1:3] = ["a", "b", "c"]
        del t[0]
        del t[::3]
        t += [10]
        t *= 2
    assert p == n and p.pop() == n.pop() and p.pop(0) == n.pop(0)
    assert p.index(n[1]) == n.index(n[1]) and p.count(7) == n.count(7)
    assert p[1:4] == n[1:4] and p[::-1] == n[::-1] and p[-2] == n[-2]
    with pytest.raises(IndexError):
        p[100]
    q = h.root
    q["m"] = [3, 1, 2]
    q["m"].sort()
    assert q["m"] == [1, 2, 3]
    q["m"].sort(key=lambda x: -x, reverse=True)
    assert q["m"] == [1, 2, 3]
    q["m"].sort(reverse=True)
    assert q["m"] == [3, 2, 1] and q["m"] < [4] and q["m"] > [3, 1]
    q["m"].reverse()
    assert q["m"] == [1, 2, 3] and list(reversed(q["m"])) == [3, 2, 1]
    assert 2 in q["m"] and 9 not in q["m"] and q["m"] + [4] == [1, 2, 3, 4]
    q["m"].clear()
    assert q["m"] == [] and len(q["m"]) == 0


def test_set_and_deque_protocol():
    h = make({"s": {1, 2}, "q": deque([1])})
    s = h.root["s"]
    s.add(3)
    s.discard(1)
    s |= {9}
    s -= {2}
    assert s == {3, 9} and 3 in s and 1 not in s
    with pytest.raises(KeyError):
        s.remove(42)
    assert s.pop() in (3, 9) and len(s) == 1
    assert s.union({1}) == set(s) | {1} and s.isdisjoint({100})
    q = h.root["q"]
    n = deque([1])
    for t in (q, n):
        t.append(2)
        t.appendleft(0)
        t.extend(range(3, 20))
        t.rotate(3)
        t.popleft()
        t.pop()
        t[2] = "x"
        t.remove(5)
        t.extendleft([-1, -2])
        t.reverse()
    assert list(q) == list(n) and q == n and q[-1] == n[-1] and len(q) == len(n)
    h.root["bounded"] = deque(maxlen=3)
    b = h.root["bounded"]
    for i in range(10):
        b.append(i)
    assert list(b) == [7, 8, 9] and b.maxlen == 3
    b.appendleft(100)
    assert list(b) == [100, 7, 8]


def test_user_objects_methods_and_attributes():
    h = make({"a": Account("cy")})
    a = h.root["a"]
    assert a.deposit(5) == 5 and a.deposit(7) == 12
    assert a.balance == 12 and a.history == [5, 7] and a.owner == "cy"
    a.nickname = "c"
    del a.nickname
    with pytest.raises(AttributeError):
        _ = a.nickname
    assert isinstance(a, Account)
    m = h.materialize()
    assert type(m["a"]) is Account and m["a"].balance == 12


def test_unpersistable_values_name_type_and_path():
    h = make({"d": {"inner": {}}})
    with pytest.raises(UnpersistableError) as ei:
        h.root["d"]["inner"]["fn"] = lambda: 1
    assert "function" in str(ei.value) and "root['d']['inner']['fn']" in str(ei.value)
    with open(os.devnull) as f, pytest.raises(UnpersistableError) as ei:
        h.root["d"]["x"] = {"deep": [1, f]}
    assert "TextIOWrapper" in str(ei.value) and "root['d']['x']['deep'][1]" in str(ei.value)
    with socket.socket() as sock, pytest.raises(UnpersistableError) as ei:
        h.root["d"]["obj"] = Account("s")
        h.root["d"]["obj"].conn = sock
    assert "socket" in str(ei.value) and "root['d']['obj'].conn" in str(ei.value)
    with pytest.raises(TypeError):
        h.root["d"]["g"] = (i for i in range(3))


def test_aliasing_native_container_after_store_is_synced():
    h = make({"d": {}})
    lst: list = []
    h.root["d"]["k"] = lst
    lst.append(1)
    inner = {"a": 1}
    lst.append(inner)
    inner["b"] = 2
    h.end_op()
    assert h.root["d"]["k"] == [1, {"a": 1, "b": 2}]
    obj = Account("z")
    h.root["d"]["o"] = obj
    obj.balance = 99
    h.end_op()
    assert h.root["d"]["o"].balance == 99


def test_opaque_values_written_back_when_changed():
    h = make({"ba": bytearray(b"ab")})
    ba = h.root["ba"]
    assert h.root["ba"] is ba
    ba.extend(b"cd")
    h.end_op()
    h.commit(1)
    assert h.materialize()["ba"] == bytearray(b"abcd")


def test_reclamation_keeps_pool_size_steady_and_moves_are_not_frees():
    dev = SimDevice(1 << 20)
    h = Heap.create(dev, {"d": {}})
    d = h.root["d"]
    for rnd in range(30):
        for i in range(200):
            d[f"k{i}"] = bytes([rnd]) * 300
        h.commit(rnd)
        if rnd == 5:
            top5 = h.heap_top
    assert h.heap_top <= top5 * 1.1
    d["a"] = [1, 2, 3]
    v = d.pop("a")
    d["b"] = v
    h.end_op()
    h.commit(100)
    assert h.materialize()["d"]["b"] == [1, 2, 3]


def test_dict_stores_write_one_undo_entry_each_and_reuse_freed_chunks():
    # The write path's economy, counted rather than timed: an overwrite of a bytes value in
    # a committed dict undo-logs only the slot's block, also when its new object reuses a
    # chunk freed by an earlier batch; an insert logs only its index slot once the table's
    # counts are logged in the batch.  Values stay right throughout.
    h = make({"d": {}}, size=4 << 20)
    d = h.root["d"]
    keys = [b"key:%012d" % i for i in range(400)]
    for k in keys:
        d[k] = b"v" * 100
        h.end_op()
    h.commit(1)
    for rnd in range(4):
        before = h.stats["undo_entries"]
        for j in range(0, 400, 7):  # slots 7 entries apart: 168 bytes, never one block
            d[keys[j]] = bytes([rnd]) * 100
            h.end_op()
        h.commit(2 + rnd)
        assert h.stats["undo_entries"] - before == len(range(0, 400, 7))
        if rnd == 0:
            top = h.heap_top
    assert h.heap_top == top  # rounds 2-4 reused the chunks freed by the rounds before
    ins = [b"new:%012d" % i for i in range(50)]
    before = h.stats["undo_entries"]
    for k in ins:
        d[k] = b"n" * 100
        h.end_op()
    h.commit(10)
    # the counts' block once, then one index slot per insert at most
    assert h.stats["undo_entries"] - before <= 1 + len(ins)
    got = h.materialize()["d"]
    assert got[keys[7]] == bytes([3]) * 100 and got[keys[1]] == b"v" * 100
    assert all(got[k] == b"n" * 100 for k in ins) and len(got) == 450


def test_a_big_chunk_fresh_in_the_batch_needs_no_undo_and_keeps_the_compiled_store(
        monkeypatch):
    # A batch that reuses a big chunk (>= 4 KiB, tracked as a range in Heap._fresh_big, not
    # as blocks) undo-logs none of its blocks, and the dict stores of that batch still log
    # only their slot's block each; with the compiled module they stay compiled (until
    # 2026-12-05 any batch with a fresh big chunk sent every store to Python).
    h = make({"d": {}, "big": None}, size=8 << 20)
    d = h.root["d"]
    keys = [b"key:%012d" % i for i in range(200)]
    for k in keys:
        d[k] = b"v" * 100
        h.end_op()
    h.root["big"] = list(range(1000))  # (a slot array of 8,000 bytes: a big chunk)
    h.end_op()
    h.commit(1)
    h.root["big"] = None
    h.end_op()
    h.commit(2)  # (its chunk is free from here on)
    before = h.stats["undo_entries"]
    h.root["big"] = list(range(1000, 2000))  # reuses the freed chunk: fresh in this batch
    h.end_op()
    assert h._fresh_big, "the big chunk was not reused from its free list"
    python_stores = []
    real = Heap.store_blob
    monkeypatch.setattr(Heap, "store_blob",
                        lambda self, *a: (python_stores.append(a), real(self, *a))[1])
    for j in range(0, 200, 7):  # slots 7 entries apart: never two in one block
        d[keys[j]] = b"w" * 100
        h.end_op()
    if h.fast is not None:
        assert python_stores == []  # every store took the compiled path
    else:
        assert len(python_stores) == len(range(0, 200, 7))
    h.commit(3)
    # the root's slot and one block per store; none of the 8,000 bytes of the fresh chunk
    assert h.stats["undo_entries"] - before == 1 + len(range(0, 200, 7))
    got = h.materialize()
    assert got["big"] == list(range(1000, 2000))
    assert all(got["d"][k] == (b"w" if i % 7 == 0 else b"v") * 100 for i, k in enumerate(keys))


def test_cycles_reclaimed_by_collect():
    h = make({"d": {}})
    for i in range(50):
        a: dict = {"pad": b"p" * 500}
        a["me"] = a
        h.root["d"][i] = a
    h.commit(1)
    h.root["d"].clear()
    h.commit(2)
    before = h.heap_top
    free = h.collect()
    assert free >= 50 * 500
    for i in range(50):
        h.root["d"][i] = b"q" * 500
    h.commit(3)
    assert h.heap_top == before


def test_reopen_and_large_single_operation_spills_undo_log():
    dev = SimDevice(1 << 20)
    h = Heap.create(dev, {"d": {i: i for i in range(3000)}}, undo_size=64 << 10)
    h.commit(1)
    d = h.root["d"]
    for i in range(3000):
        d[i] = -i  # touches far more blocks than the 64 KiB undo log holds
    h.end_op()
    assert h.undo.spilled, "the batch should have spilled past the primary undo log"
    img = dev.crash_image(1)
    h2 = Heap.open(SimDevice.from_image(img))
    assert h2.position == 1 and h2.materialize()["d"] == {i: i for i in range(3000)}
    h.commit(2)
    h3 = Heap.open(SimDevice.from_image(dev.persisted_image()))
    assert h3.position == 2 and h3.materialize()["d"] == {i: -i for i in range(3000)}


def test_pool_errors(shm_path, tmp_path):
    h = Heap.create(shm_path, {"x": 1})
    with pytest.raises(PoolExistsError):
        Heap.create(shm_path, {})
    with pytest.raises(PoolInUseError):
        Heap.open(shm_path)
    h.close()
    h = Heap.open(shm_path)
    assert h.root["x"] == 1
    top = h.heap_top
    h.close()
    junk = tmp_path / "junk"
    junk.write_bytes(b"hello world" * 1000)
    with pytest.raises(NotAPoolError):
        Heap.open(str(junk))
    short = tmp_path / "short"
    short.write_bytes(b"x")
    with pytest.raises(NotAPoolError):
        Heap.open(str(short))
    with pytest.raises(FileNotFoundError):
        Heap.open(str(tmp_path / "missing"))
    data = bytearray(open(shm_path, "rb").read())
    bad = tmp_path / "badver"
    d2 = bytearray(data)
    d2[8] = 99
    bad.write_bytes(bytes(d2))
    with pytest.raises(LayoutVersionError):
        Heap.open(str(bad))
    d3 = bytearray(data)
    d3[20] ^= 1
    bad.write_bytes(bytes(d3))
    with pytest.raises(CorruptPoolError):
        Heap.open(str(bad))
    trunc = tmp_path / "trunc"
    trunc.write_bytes(bytes(data[: top - 64]))
    with pytest.raises(CorruptPoolError, match="truncated"):
        Heap.open(str(trunc))
    trunc.write_bytes(bytes(data[:5000]))
    with pytest.raises(CorruptPoolError, match="truncated"):
        Heap.open(str(trunc))


def test_pool_grows_when_full(shm_path):
    h = Heap.create(shm_path, {"d": {}}, initial_size=64 << 10)
    size0 = h.size
    for i in range(3000):
        h.root["d"][i] = b"v" * 200
    h.commit(7)
    assert h.size > size0 and h.stats["grows"] > 0
    h.close()
    h = Heap.open(shm_path)
    assert h.position == 7 and len(h.root["d"]) == 3000 and h.root["d"][2999] == b"v" * 200
    h.close()


@pytest.mark.parametrize("paths", ["compiled", "python"])
@pytest.mark.parametrize("where", ["sim", "msync", "libpmem"])
def test_materialize_bulk_runs_mixed_values_and_a_grown_pool(where, paths, shm_path):
    """Materialize decodes runs of bytes in bulk; a chunk holding anything else (str, int,
    None, containers, shared references) takes the per-object path, on every device, with
    the compiled decoder of runs (heap.fast) and without it."""
    native: dict = {b"k%05d" % i: b"v" * (i % 300) for i in range(5000)}
    shared = [1, 2]
    for i in range(0, 5000, 737):
        native[b"k%05d" % i] = [shared, "s%d" % i, i, None]
    native["str-key"] = b"x"
    native[7] = b"int-key"
    root = {"d": native, "shared": shared, "l": [b"a" * i for i in range(1500)] + ["z"]}
    if where == "sim":
        h = Heap.create(SimDevice(1 << 16), root)  # too small: the pool grows while creating
    else:
        h = Heap.create(shm_path, root, initial_size=1 << 16, mode=where)
    h.commit(1)
    if paths == "python":
        h.fast = None
    for _ in range(2):  # the second time reads through a fresh view of the grown pool
        m = h.materialize()
        assert m == root and list(m["d"]) == list(native)
        assert all(type(v) is bytes for v in m["l"][:-1])
        assert m["d"][b"k00000"][0] is m["shared"]
    h.close()


@pytest.mark.parametrize("paths", ["compiled", "python"])
def test_materialize_evenly_spaced_bytes_and_the_chunks_that_break_the_pattern(paths):
    """Keys and values inserted one after another lie at one stride and are sliced out by
    one struct call per chunk; an overwritten value of another length, a deleted entry, a
    value of the same length at another place, or a shared object breaks the pattern for
    its chunk only.  Every variant decodes to the native dict, in order (with the compiled
    decoder of runs and without it: the stride path is the Python one)."""
    h = make({"d": {}}, size=8 << 20)
    d = h.root["d"]
    native = {}
    for i in range(3000):
        k, v = b"key:%08d" % i, b"%07d" % i * 10
        d[k] = v
        native[k] = v
    h.commit(1)
    for i in range(0, 3000, 611):  # another length inside a run
        d[b"key:%08d" % i] = native[b"key:%08d" % i] = b"short"
    for i in range(5, 3000, 997):  # same length, a chunk elsewhere
        d[b"key:%08d" % i] = native[b"key:%08d" % i] = b"%070d" % i
    for i in range(7, 3000, 1201):
        del d[b"key:%08d" % i]
        del native[b"key:%08d" % i]
    # lengths that differ within one size class: the same stride, not the same length
    h.root["e"] = {}
    e = h.root["e"]
    native_e = {}
    for i in range(2000):
        k, v = b"e%08d" % i, b"w" * (60 + i % 7)
        e[k] = native_e[k] = v
    h.end_op()
    h.commit(2)
    if paths == "python":
        h.fast = None
    got = h.materialize()
    m = got["d"]
    assert m == native and list(m) == list(native)
    assert all(type(v) is bytes for v in m.values())
    assert got["e"] == native_e and list(got["e"]) == list(native_e)
    h.close()


def test_a_damaged_graph_is_reported_with_where_and_what():
    """Opening a pool whose committed graph is damaged names the damage: a reference past
    the committed heap top refuses the open; an unreachable chunk whose size class is
    garbage is salvaged, and named."""
    from persimmon import layout as L

    dev = SimDevice(1 << 20)
    h = Heap.create(dev, {"d": {b"k%d" % i: b"v" * 40 for i in range(50)}})
    d = h.root["d"]
    for i in range(0, 50, 2):
        del d[b"k%d" % i]
    h.end_op()
    h.commit(1)
    free = next(off for fl in h._freelists for off in fl)
    top, meta = h.heap_top, h._meta
    image = bytearray(dev.persisted_image())
    h.close()

    bad = bytearray(image)
    bad[free + 1] = 200  # unreachable: salvaged, named (tests/test_heap_salvage.py)
    salvaged = Heap.open(SimDevice.from_image(bad))
    assert [what for _s, _e, what in salvaged.salvaged] == [
        f"the free chunk at {free} has size class 200"]
    salvaged.close()

    bad = bytearray(image)
    L.S_q.pack_into(bad, meta + L.META_ROOT, top + 64)
    with pytest.raises(CorruptPoolError, match=rf"{top + 64} points outside the heap"):
        Heap.open(SimDevice.from_image(bad))
