"""Issue 20: a SIGKILL must never leave a pool that no process can open.

* The cause, tested deterministically: a chunk reused from a free list is written without
  undo logging, so no store into its header may pass through a value that is neither the
  old nor the new one.  ``Struct.pack_into`` zero-fills before it writes the fields: a kill
  in between left a free chunk of size class 0, and the walk at the next open derailed.
  Here every field of every header written into a reused chunk is an object whose
  ``__index__`` (called while the header is packed) takes the image a SIGKILL at that moment
  would leave (on tmpfs every store made so far survives); each image must open with the
  committed state and no damage at all.
* The walk at open trusts nothing: damaged free space is salvaged (re-carved into valid free
  chunks, reported), damage in the reachable graph refuses the open, and ``persimmon check``
  reports exactly what an open would find, without changing the file.
* The two pools that the SIGKILL test left damaged (``../shared/evidence``) are checked and
  recovered.
"""

from __future__ import annotations

import gzip
import os
import shutil
import sys
from collections import deque

import pytest

from heap_workload import Account, canon
from persimmon import allocator
from persimmon import heap as heap_module
from persimmon import layout as L
from persimmon.cli import check_pool, main
from persimmon.errors import CorruptPoolError
from persimmon.heap import Heap
from persimmon.simdevice import SimDevice

TESTS = os.path.dirname(os.path.abspath(__file__))


def _kinds(i: int) -> dict:
    """One of every kind of object the heap writes a header for."""
    return {
        "bytes": b"\xee" * (20 + i), "str": "s" * (30 + i), "int": 1 << (70 + i),
        "float": i + 0.5, "complex": complex(i, 1), "tuple": (i, b"t"), "list": [i, [i]],
        "dict": {"k": i, b"b": [i]}, "set": {i, i + 1}, "deque": deque([i], maxlen=4),
        "frozenset": frozenset({i}), "object": Account(f"o{i}"), "opaque": range(i),
    }


@pytest.mark.parametrize("paths", ["compiled", "python"])
def test_a_kill_inside_any_header_write_of_a_reused_chunk_leaves_the_pool_whole(
        paths, monkeypatch):
    dev = SimDevice(1 << 20)
    h = Heap.create(dev, {"old": [_kinds(i) for i in range(6)], "keep": _kinds(99)},
                    undo_size=64 << 10, initial_size=128 << 10)
    h.root["old"] = None  # every chunk of the old objects goes to the free lists
    h.end_op()
    h.commit(1)
    committed = canon(h.materialize())
    if paths == "python":
        h.fast = None
    probes: list[tuple[int, int, bytes]] = []  # (chunk, its class, the image at the probe)
    real = allocator.write_header

    def probing(buf, off, *fields):
        if off >= h._ctop:  # bump-allocated: above the committed top, never walked
            return real(buf, off, *fields)
        cls = buf[off + 1]
        seen: list[bytes] = []  # the header at each probe of this write that took an image

        class Probe:
            def __init__(self, v: int) -> None:
                self.v = v

            def __index__(self) -> int:
                header = bytes(dev.buf[off : off + 16])
                if not seen or seen[-1] != header:  # (nothing new since the last image)
                    seen.append(header)
                    probes.append((off, cls, bytes(dev.buf)))  # a SIGKILL here leaves this
                return self.v

        return real(buf, off, *[Probe(f) for f in fields])

    # every module of the heap that writes headers binds the one writer: probe each binding
    writers = [m for m in list(sys.modules.values()) if getattr(m, "__name__", "").startswith(
        "persimmon.") and getattr(m, "write_header", None) is real]
    assert {"persimmon.allocator", "persimmon.convert", "persimmon.hashtable"} <= {
        m.__name__ for m in writers}
    for m in writers:
        monkeypatch.setattr(m, "write_header", probing)
    h.root["new"] = [_kinds(i) for i in range(6)]
    h.end_op()
    monkeypatch.undo()
    assert len({off for off, _c, _i in probes}) >= 40, "too few reused chunks were probed"
    for off, cls, image in probes:
        assert image[off + 1] == cls, (
            f"the class byte of reused chunk {off} was {image[off + 1]}, not {cls}, in the "
            "middle of its header write")
    for image in {image for _o, _c, image in probes}:
        h2 = Heap.open(SimDevice.from_image(image))
        assert h2.salvaged == [], h2.salvaged
        assert canon(h2.materialize()) == committed
        h2.close()
    h.close()


def _pool_with_free_chunks() -> tuple[bytes, dict, list[int]]:
    dev = SimDevice(1 << 20)
    h = Heap.create(dev, {"d": {b"k%d" % i: b"v" * 40 for i in range(60)}, "l": list(range(50))})
    d = h.root["d"]
    for i in range(0, 60, 2):
        del d[b"k%d" % i]
    h.end_op()
    h.commit(1)
    state = h.materialize()
    free = sorted(off for fl in h._freelists for off in fl)
    image = dev.persisted_image()
    h.close()
    return image, state, free


def test_a_free_chunk_with_an_invalid_class_is_salvaged_and_reported(tmp_path):
    image, state, free = _pool_with_free_chunks()
    bad = bytearray(image)
    bad[free[3] + 1] = 200
    probe = Heap.open(SimDevice.from_image(bytes(bad)), writable=False)
    problems = probe.verify()
    assert len(problems) == 1 and f"free chunk at {free[3]} has size class 200" in problems[0]
    with pytest.raises(CorruptPoolError, match="size class 200"):
        probe.check()
    probe.close()

    dev = SimDevice.from_image(bytes(bad))
    h = Heap.open(dev)
    assert [(s, what) for s, _e, what in h.salvaged] == [
        (free[3], f"the free chunk at {free[3]} has size class 200")]
    assert h.stats["salvaged_bytes"] == h.salvaged[0][1] - free[3] > 0
    assert h.materialize() == state
    h.close()
    again = Heap.open(SimDevice.from_image(dev.persisted_image()))  # the repair was persisted
    assert again.salvaged == [] and again.materialize() == state
    again.close()


@pytest.mark.parametrize("paths", ["compiled", "python"])
def test_a_misleading_valid_class_never_hands_out_memory_in_use(paths):
    """A garbage class byte that happens to be valid: the chunk it describes runs over
    chunks in use.  The walk of old trusted it and put live objects on the free lists (then
    overwrote them); now the region is salvaged and every allocation after it leaves the
    data alone."""
    image, state, free = _pool_with_free_chunks()
    bad = bytearray(image)
    bad[free[0] + 1] = L.size_class(4096)  # 4 KiB from a 96-byte hole: over live objects
    h = Heap.open(SimDevice.from_image(bytes(bad)))
    if paths == "python":
        h.fast = None
    assert h.salvaged and "crosses a chunk in use" in h.salvaged[0][2]
    root = h.root
    for i in range(300):  # use up the free lists, every class
        root[f"n{i}"] = b"n" * (i % 200) if i % 3 else [i] * (i % 40)
        h.end_op()
    h.commit(2)
    got = h.materialize()
    assert got["d"] == state["d"] and got["l"] == state["l"]
    h.close()


def test_damage_in_the_reachable_graph_refuses_the_open_and_check_names_it(tmp_path):
    image, _state, _free = _pool_with_free_chunks()
    probe = Heap.open(SimDevice.from_image(image), writable=False)
    meta, top = probe._meta, probe.heap_top
    d = probe.root["d"]._o
    probe.close()

    bad = bytearray(image)
    L.S_q.pack_into(bad, meta + L.META_ROOT, top + 64)
    with pytest.raises(CorruptPoolError, match=rf"{top + 64} points outside the heap"):
        Heap.open(SimDevice.from_image(bytes(bad)))

    bad = bytearray(image)
    bad[d + 1] = 250  # the dict's own size class
    with pytest.raises(CorruptPoolError, match=rf"object at {d} has a damaged header"):
        Heap.open(SimDevice.from_image(bytes(bad)))
    path = tmp_path / "damaged.pool"
    path.write_bytes(bytes(bad))
    problems = check_pool(str(path))
    assert len(problems) == 1
    assert f"object at {d} has a damaged header" in problems[0]
    assert "cannot be opened" in problems[0]


def test_check_rolls_back_on_a_private_view_and_never_changes_the_file(tmp_path):
    """``persimmon check`` sees what an open would see after rolling back an uncommitted
    batch, and leaves the file byte for byte as it was (the batch is still there)."""
    path = str(tmp_path / "p.pool")
    h = Heap.create(path, {"d": {i: b"v" * 40 for i in range(50)}})
    for i in range(25):
        del h.root["d"][i]
    h.end_op()
    h.commit(1)
    h.root["d"][7] = b"uncommitted"  # undo-logged, never committed
    free = sorted(off for fl in h._freelists for off in fl)
    h.pool.dev.buf[free[2] + 1] = 222  # and free space damaged
    before = bytes(h.pool.dev.buf)
    h.pool.dev.drain()
    problems = check_pool(path)
    assert len(problems) == 2 and "salvageable" in problems[0]
    assert f"free chunk at {free[2]} has size class 222" in problems[0]
    with open(path, "rb") as f:
        assert f.read() == before
    assert check_pool(path)[-1].startswith("the pool is in use by a running process")
    h.close()
    assert len(check_pool(path)) == 1  # (the lock is gone: no such caveat)


def _evidence_dir() -> str | None:
    here = os.path.dirname(TESTS)
    for up in ("..", os.path.join("..", "..")):
        d = os.path.normpath(os.path.join(here, up, "shared", "evidence"))
        if os.path.isfile(os.path.join(d, "sigkill-damaged-a.pool.gz")):
            return d
    return None


@pytest.mark.parametrize(("name", "app"), [("a", "KV"), ("b", "BigKV")])
def test_the_pools_a_sigkill_damaged_open_and_keep_every_logged_operation(name, app, tmp_path,
                                                                          shm_path, capsys):
    evidence = _evidence_dir()
    if evidence is None:
        pytest.skip("../shared/evidence is not beside this checkout")
    import psm_apps
    from persimmon import PSM

    with gzip.open(os.path.join(evidence, f"sigkill-damaged-{name}.pool.gz")) as src, \
            open(shm_path, "wb") as dst:
        shutil.copyfileobj(src, dst)
    problems = check_pool(shm_path)
    assert len(problems) == 1 and "salvageable" in problems[0], problems
    assert main(["check", shm_path]) == 1
    assert "damaged" in capsys.readouterr().err

    cls = getattr(psm_apps, app)
    expected = psm_apps.expected_state if app == "KV" else psm_apps.big_expected
    p = PSM(cls, shm_path, lock_timeout=10)
    try:
        n = p.state.n
        assert type(p.state) is cls and n > 100_000
        assert {"data": p.state.data, "n": n} == expected(n)  # a prefix, whole
        assert p.recovery_times["replayed_ops"] > 0  # the log's tail is in it too
        p.sync(timeout=60)
        st = p.stats()
        assert st["salvaged_bytes"] > 0 and st["shadow_errors"] == 0
    finally:
        p.close()
    assert check_pool(shm_path) == []
    p = PSM(cls, shm_path, lock_timeout=10)
    try:
        assert p.state.n == n and p.stats()["salvaged_bytes"] == 0
    finally:
        p.close()


def test_the_compiled_walk_and_its_python_twin_agree_and_name_the_same_damage():
    fast = heap_module.FAST
    if fast is None:
        pytest.skip("the fast path is not built (PERSIMMON_PURE_PYTHON is set)")
    shared = [b"shared", 7]
    state = {"a": shared, "b": (shared, shared), "c": [_kinds(i) for i in range(20)],
             "d": {b"k%d" % i: b"v" * (i % 300) for i in range(500)}}
    dev = SimDevice(1 << 20)
    h = Heap.create(dev, state)
    image = dev.persisted_image()
    views = {}
    for name, paths in (("compiled", fast), ("python", None)):
        h.fast = paths
        views[name] = h._mark_reachable()
    assert views["compiled"] == views["python"]
    cover, rc = views["python"]
    assert rc == {h.root["a"]._o: 3} and cover.count(2) > 1000
    value = h._children(h.root["d"]._o, L.T_DICT, 0)[1]  # the first entry's value
    h.close()
    damages = {
        "a leaf's size class": (value + 1, bytes([250])),
        "a leaf's type": (value, bytes([L.T_RAW])),
        "a slot that is no value": (None, None),
    }
    for what, (at, data) in damages.items():
        bad = bytearray(image)
        if at is None:  # the root's slot: an even value that is no immediate
            probe = Heap.open(SimDevice.from_image(image), writable=False)
            at, data = probe._meta + L.META_ROOT, (42).to_bytes(8, "little")
            probe.close()
        bad[at : at + len(data)] = data
        errors = []
        for paths in (fast, None):
            h2 = Heap.open(SimDevice.from_image(bytes(bad)), writable=False)
            h2.fast = paths
            with pytest.raises(CorruptPoolError) as e:
                h2._mark_reachable()
            errors.append(str(e.value))
            h2.close()
        assert errors[0] == errors[1], (what, errors)
