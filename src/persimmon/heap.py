"""The persistent object heap: the PM copy of a state machine.

A :class:`Heap` lives in a pool file.  It stores a graph of Python objects (dicts, lists,
sets, deques, tuples, str, bytes, numbers, None, instances of user classes, and anything else
picklable as an opaque value) and hands it out through proxies that behave like the
built-ins (:mod:`persimmon.proxies`), so that an operation written for native objects runs
unchanged on the PM copy.

Every store goes through one write path that first saves the old contents of each touched
32-byte block in the undo log (:mod:`persimmon.undolog`), at most once per batch, skipping
memory allocated fresh in the batch.  :meth:`Heap.commit` makes a batch durable with one
commit record; opening a pool whose last batch did not commit rolls it back.

Typical use (the runtime does this in its shadow process)::

    heap = Heap.create(path, root)      # root: a native object graph
    heap.root.apply(op)                 # mutate through proxies
    heap.end_op()                       # operation boundary
    heap.commit(position)               # durable
    heap.close()
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import re
import struct
import sys
from bisect import bisect_right, insort
from collections import deque
from collections.abc import Iterator
from types import BuiltinFunctionType, FunctionType, GeneratorType, MethodType, ModuleType
from typing import Any

from . import layout as L
from . import native
from . import proxies as px
from .device import Device
from .errors import CorruptPoolError, PersimmonError, PoolFullError, UnpersistableError
from .hashing import INDEX_KEY_TYPES, phash
from .pool import Pool
from .undolog import UndoLog

_hdr_bytes = L.S_HDR.pack
_hdr_unpack = L.S_HDR.unpack_from
_q_pack = L.S_q.pack_into
_q_unpack = L.S_q.unpack_from
_Q_pack = L.S_Q.pack_into
_Q_unpack = L.S_Q.unpack_from
_I_pack = L.S_I.pack_into
_I_unpack = L.S_I.unpack_from
_d_unpack = L.S_d.unpack_from
_d_pack = L.S_d.pack_into
_Qqq_pack = L.S_Qqq.pack_into

_SMALL_MIN = L.SMALL_MIN
_SMALL_MAX = L.SMALL_MAX
_NONE, _FALSE, _TRUE, _DUMMY = L.NONE, L.FALSE, L.TRUE, L.DUMMY
_IX_EMPTY = L.IX_EMPTY
_IX_DUMMY = L.IX_DUMMY
_PERTURB_SHIFT = L.PERTURB_SHIFT
_MASK64 = (1 << 64) - 1

# Container field offsets (layout.py)
_LIST_CAP, _LIST_ITEMS, _LIST_SIZE = L.LIST_CAP, L.LIST_ITEMS, L.LIST_SIZE
_HT_NENT, _HT_ITAB, _HT_ENTS, _HT_SIZE = L.HT_NENT, L.HT_ITAB, L.HT_ENTS, L.HT_SIZE
_DQ_CAP, _DQ_ITEMS, _DQ_HEAD = L.DQ_CAP, L.DQ_ITEMS, L.DQ_HEAD
_DQ_MAXLEN, _DQ_SIZE = L.DQ_MAXLEN, L.DQ_SIZE
_OBJ_CLASS, _OBJ_DICT, _OBJ_SIZE = L.OBJ_CLASS, L.OBJ_DICT, L.OBJ_SIZE
_OPQ_BLOB, _OPQ_SIZE = L.OPQ_BLOB, L.OPQ_SIZE
_CONTAINERS = frozenset({L.T_LIST, L.T_DICT, L.T_SET, L.T_DEQUE, L.T_OBJECT})
_BIG_FRESH = 4096  # fresh chunks at least this big are tracked as ranges, not block sets
_SMALL_TABLE = L._SMALL_TABLE
_CLASS_SIZES = L.CLASS_SIZES
_LEAVES = L.LEAVES
# Types a reachable slot may refer to, and types of the arrays behind containers
_VALUE_TYPES = L.VALUE_TYPES
_ARRAY_TYPES = frozenset({L.T_ARRAY, L.T_RAW})
_NCLASSES = L.NCLASSES
_log = logging.getLogger("persimmon.heap")


_FREE_RUN = re.compile(rb"\x00+")  # a run of blocks no chunk in use covers
_COVER_MAX = 4096
_COVER = memoryview(b"\x02" + b"\x01" * (_COVER_MAX - 1))


def _cover_pattern(n: int) -> Any:
    """What ``Heap._mark_reachable`` writes over a chunk in use of ``n`` blocks."""
    return _COVER[:n] if n <= _COVER_MAX else b"\x02" + b"\x01" * (n - 1)


_COVER_PATTERNS = [bytes(_COVER[:n]) for n in range(256)]


def _overlap(cover: bytearray, buf: Any, arena: int) -> str:
    """Where two chunks in use overlap (``cover`` covers fewer blocks than were written):
    the first chunk start that a chunk before it runs over."""
    sizes = _CLASS_SIZES
    end = 0  # the end (in blocks) of the chunks seen so far
    i = cover.find(2)
    while i >= 0:
        if i < end:
            return f"the chunk in use at {arena + (i << 5)} overlaps the one before it"
        end = max(end, i + (sizes[buf[arena + (i << 5) + 1]] >> 5))
        i = cover.find(2, i + 1)
    return "two chunks in use overlap"


def _hdr_pack(buf: Any, off: int, t: int, cls: int, flags: int, rc: int, aux: int) -> None:
    """Write the 16-byte object header at ``off``.

    The header is packed into a bytes object first and then copied in: every byte of the
    pool goes from its old value straight to its new one.  ``Struct.pack_into`` would
    zero-fill the destination before writing the fields, and a chunk reused from a free list
    is written without undo logging, so a SIGKILL between the two left a free chunk of size
    class 0 that rollback cannot restore (issue 20; docs/heap.md, "Stores that are not
    undo-logged").  ``cls`` is always the chunk's own class, so the class byte never changes.
    """
    buf[off : off + 16] = _hdr_bytes(t, cls, flags, rc, aux)


def _build_index(hashes: list[int], size: int) -> bytes:
    """The packed index table (u32 per slot, 0 = empty) of a hash table of ``size`` slots
    holding entries 1..n with ``hashes``: perturbed linear probing, CPython's dict scheme."""
    mask = size - 1
    idx = [0] * size
    for j, hv in enumerate(hashes):
        h = hv & _MASK64
        i = h & mask
        perturb = h
        while idx[i]:
            perturb >>= _PERTURB_SHIFT
            i = (i * 5 + perturb + 1) & mask
        idx[i] = j + 1
    return L.struct_pack_I(idx)


def _rehash(buf: Any, old: int, nent: int, es: int, ents: int, itab: int, size: int) -> int:
    """Copy the live entries of the ``nent`` at ``old`` (``es`` bytes each; a key slot of
    ``DUMMY`` is a deleted one), in order, to ``ents`` and write the index table of ``size``
    slots for them at ``itab``; return how many were copied.  ``_speedups.rehash`` writes
    the same bytes in place."""
    w = es >> 3
    flat = buf[old : old + es * nent].cast("q").tolist()
    if _DUMMY in flat[1::w]:  # (key slots)
        keep: list[int] = []
        for i in range(0, len(flat), w):
            if flat[i + 1] != _DUMMY:
                keep.extend(flat[i : i + w])
        flat = keep
    if flat:
        buf[ents : ents + 8 * len(flat)] = L.struct_pack_q(flat)
    hashes = flat[0::w]
    buf[itab : itab + 4 * size] = _build_index(hashes, size)
    return len(hashes)


# The compiled module, loaded and checked by persimmon.native (re-exported here for the
# modules and tests that know it by these names)
FAST_API = native.API
_PROBE_OVER = native.PROBE_OVER
pure_python_requested = native.pure_python_requested
_configure_fast_path = native.configure
FAST = native.FAST
_IXT = INDEX_KEY_TYPES  # key types a table's DRAM index holds (hashing.py)
_NEVER = -(1 << 62)  # probe count of a table that is not to be indexed (until cleared)
_NOKEY = object()


def _index_limit() -> int:
    v = os.environ.get("PERSIMMON_INDEX_LIMIT", "")
    if not v:
        return 1 << 20
    try:
        n = int(v)
    except ValueError:
        n = -1
    if n < 0:
        raise PersimmonError(f"PERSIMMON_INDEX_LIMIT must be a whole number >= 0, not {v!r}")
    return n


class ClassNotFoundError(PersimmonError):
    """A class recorded in the pool cannot be imported in this process."""


def _esize(t: int) -> int:
    return L.HT_ENTRY_DICT if t == L.T_DICT else L.HT_ENTRY_SET


def _is_plain_class(cls: type) -> bool:
    """True for classes whose instances are stored field by field (their __dict__)."""
    if cls.__module__ == "builtins" or type(cls) is not type:
        return False
    if cls.__reduce_ex__ is not object.__reduce_ex__ or cls.__reduce__ is not object.__reduce__:
        return False
    if getattr(cls, "__getstate__", None) is not object.__getstate__:
        return False
    if getattr(cls, "__setstate__", None) is not None:
        return False
    for k in cls.__mro__[:-1]:
        # only classes written in Python (heap types); a C type keeps state outside __dict__
        if k.__module__ == "builtins" or not k.__flags__ & _HEAPTYPE:
            return False
        slots = k.__dict__.get("__slots__")
        if slots is not None:
            names = [slots] if isinstance(slots, str) else list(slots)
            if any(n not in ("__dict__", "__weakref__") for n in names):
                return False
    return "<locals>" not in cls.__qualname__


_HEAPTYPE = 1 << 9
_UNPERSISTABLE = (FunctionType, BuiltinFunctionType, MethodType, GeneratorType, ModuleType)


class Heap:
    """A persistent object heap in a pool file.  Create with :meth:`create`, :meth:`open`."""

    # ------------------------------------------------------------------ construction
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.dev = pool.dev
        self.buf = self.dev.buf
        self._meta = pool.arena_off
        self._arena = pool.arena_off
        self._seq = 1
        self.position = 0
        self._ctop = self._top = pool.arena_off
        self._nolog: set[int] = set()
        self._logged: list[int] = []  # blocks to flush at commit (most are undo-logged)
        # free-list chunks reused in this batch, for the flush at commit: kept only on a
        # device that persists (the compiled stores skip it too)
        self._fresh: list[tuple[int, int]] = []
        self._flushes = not self.dev.persists_nothing
        self._fresh_big: list[tuple[int, int]] = []  # sorted (start, end) of big fresh chunks
        self._zero: list[int] = []
        self._deferred: list[int] = []
        self._rc: dict[int, int] = {}
        self._depth = 0
        self._freelists: list[list[int]] = [[] for _ in range(L.NCLASSES)]
        self.live_proxies: dict[int, Any] = {}
        self.proxy_parents: dict[int, tuple[int, Any, bool]] = {}
        self._memo: dict[int, int] = {}
        self._conv: list[tuple[Any, int, Any]] = []
        self._keep: list[Any] = []
        self._opaque: dict[int, tuple[Any, bytes]] = {}
        self._classes: dict[str, type] = {}
        self._classnames: dict[type, bytes] = {}
        self._strhash: dict[str, int] = {}
        # DRAM index of hash tables: table offset -> {key: entry offset}; see table_lookup
        self.table_indexes: dict[int, dict[Any, int]] = {}
        self._ixn: dict[int, int] = {}
        self.index_limit = _index_limit()
        self._ix_budget = 2 * self.index_limit  # keys added to indexes before all are dropped
        self._ix_adds = 0
        self.undo = UndoLog(self.dev, pool.undo_off, pool.undo_size, self._spill_alloc)
        self.commit_threshold = max(64, self.undo.primary_capacity // 2)
        self.stats = {"commits": 0, "undo_entries": 0, "rolled_back": 0, "grows": 0,
                      "salvaged_bytes": 0}
        # damaged free regions re-carved at open: (start, end, what was wrong)
        self.salvaged: list[tuple[int, int, str]] = []
        self._closed = False
        self._writable = True
        self._root_proxy: Any = None
        # The compiled fast paths (of _store_blob, _ht_insert_blobs, _ht_resize's index,
        # PDict.__setitem__ and materialize), or None: tried first, the Python code runs
        # when they decline (docs/heap.md).  Per heap, so tests can run both side by side.
        self.fast: Any = FAST
        # everything the compiled module reads by name is here (a rename fails at once)
        native.check_heap(self)

    @classmethod
    def create(
        cls,
        target: str | Device,
        root: Any,
        *,
        log_size: int = 0,
        undo_size: int = 1 << 20,
        initial_size: int = 4 << 20,
        mode: str = "auto",
    ) -> Heap:
        """Create a pool at ``target`` holding a PM copy of ``root``; commit it at position 0.

        ``log_size`` reserves a region for the runtime's operation log.  The pool is locked
        against other processes until :meth:`close`.
        """
        pool = Pool.create(target, log_size=log_size, undo_size=undo_size,
                           arena_size=initial_size, mode=mode)
        try:
            heap = cls(pool)
            heap._seq = 1
            heap.undo.begin(1)
            heap._ctop = heap._top = pool.arena_off
            m = heap._bump(L.META_SIZE)
            assert m == heap._meta
            buf = heap.buf
            _hdr_pack(buf, m, L.T_META, L.size_class(L.META_SIZE), 0, 1, 0)
            buf[m + L.HDR : m + L.META_SIZE] = bytes(L.META_SIZE - L.HDR)
            # The initial image is written without table indexes: whoever mutates the pool
            # next (the shadow) builds its own, and a big initial state would otherwise leave
            # one behind here (about 120 bytes per key).
            limit = heap.index_limit
            heap.set_index_limit(0)
            heap.store_slot(m + L.META_ROOT, heap.convert(root, "root"))
            heap.end_op()
            heap.commit(0)
            heap.set_index_limit(limit)
        except BaseException:
            pool.close()
            raise
        return heap

    @classmethod
    def open(
        cls,
        target: str | Device,
        *,
        lock: bool = True,
        mode: str = "auto",
        writable: bool = True,
        rollback: bool = True,
        lock_timeout: float = 0.0,
    ) -> Heap:
        """Open an existing pool; roll back a batch that did not commit.

        ``lock=False`` is for a process that shares the pool with the process holding the
        lock (the runtime's shadow and foreground).  ``writable=False`` skips the walk that
        rebuilds reference counts and free lists: enough to read or :meth:`materialize`,
        and any store raises.  ``rollback=False`` (read-only inspection of a pool another
        process is writing) leaves an uncommitted batch alone.
        """
        pool = Pool.open(target, lock=lock, mode=mode, lock_timeout=lock_timeout)
        try:
            rec = pool.read_commit()
            name = pool.dev.path or "<device>"
            if rec is None:
                raise CorruptPoolError(
                    f"{name}: no valid commit record (pool creation did not complete, or the "
                    "header was overwritten); nothing can be recovered from it"
                )
            seq, position, top = rec
            if not pool.arena_off + L.META_SIZE <= top <= pool.dev.size:
                raise CorruptPoolError(
                    f"{name}: the heap top recorded at commit {seq} ({top}) lies outside the "
                    f"file ({pool.dev.size} bytes): the pool is truncated"
                )
            heap = cls(pool)
            meta_type = heap.buf[heap._meta]
            if meta_type != L.T_META:
                raise CorruptPoolError(f"{name}: the heap metadata block is damaged")
            heap._seq = seq + 1
            heap.position = position
            heap._ctop = heap._top = top
            if rollback:  # (a torn record of number seq + 1 must not mix with the next)
                pool.clear_torn_record(seq + 1)
            n = heap.undo.rollback(seq + 1) if rollback else 0
            if n:
                # Make the rolled-back state a commit of its own, so that stale entries of the
                # abandoned batch can never be taken for entries of the next one.
                heap.stats["rolled_back"] = n
                pool.write_commit(seq + 1, position, top)
                heap._seq = seq + 2
            heap.undo.begin(heap._seq)
            if writable:
                heap._rebuild_checked()
            else:
                heap._writable = False
        except BaseException:
            pool.close()
            raise
        return heap

    # ------------------------------------------------------------------ public API
    @property
    def root(self) -> Any:
        """The root object: a proxy for containers and objects, a value otherwise."""
        x = _q_unpack(self.buf, self._meta + L.META_ROOT)[0]
        return self.load(x)

    @root.setter
    def root(self, value: Any) -> None:
        self.store_slot(self._meta + L.META_ROOT, self.convert(value, "root"))

    @property
    def should_commit(self) -> bool:
        """True when the undo log of the batch in progress has grown past its threshold."""
        return self.undo.count >= self.commit_threshold

    @property
    def undo_entries(self) -> int:
        """Undo entries written by the batch in progress."""
        return self.undo.count

    def end_op(self) -> None:
        """Mark an operation boundary.

        Native containers converted during the operation are synchronised again into PM (so
        ``lst = []; d[k] = lst; lst.append(1)`` ends with ``[1]`` in PM), opaque values handed
        out are written back if their pickled form changed, and objects whose reference count
        dropped to zero are freed.  A converted value that cannot be persisted raises
        :class:`UnpersistableError` once, after the rest of the boundary is done (the PM copy
        of its container is left as far as it got).
        """
        # (_speedups.apply_run makes these four tests before it calls end_op: change both
        # together)
        failed = None
        if self._conv:
            try:
                self._resync()
            except Exception as e:  # (the rest of the boundary still happens)
                failed = e
        if self._opaque:
            self._writeback_opaque()
        if self._zero:
            self._reclaim()
        if self._memo:
            self._memo.clear()
            self._keep.clear()
        if failed is not None:
            raise failed

    def commit(self, position: int) -> None:
        """Make everything done since the last commit durable, recording ``position``."""
        self.end_op()
        dev = self.dev
        flush = dev.flush
        logged = self._logged
        if not dev.persists_nothing:
            if logged:
                logged.sort()
                start = prev = logged[0]
                for b in logged:
                    if b > prev + 1:
                        flush(start << 5, (prev - start + 1) << 5)
                        start = b
                    prev = b
                flush(start << 5, (prev - start + 1) << 5)
            for off, n in self._fresh:
                flush(off, n)
            if self._top > self._ctop:
                flush(self._ctop, self._top - self._ctop)
            dev.drain()
        self.pool.write_commit(self._seq, position, self._top)
        st = self.stats
        st["commits"] += 1
        st["undo_entries"] += self.undo.count
        # The batch is durable: start the next one.
        spilled = self.undo.spilled
        self._ctop = self._top
        self._seq += 1
        self.position = position
        logged.clear()
        self._nolog.clear()
        self._fresh.clear()
        self._fresh_big.clear()
        self.undo.begin(self._seq)
        if self._deferred or spilled:
            fls = self._freelists
            buf = self.buf
            for off in self._deferred:
                fls[buf[off + 1]].append(off)
            for off in spilled:
                fls[buf[off + 1]].append(off)
            self._deferred.clear()
        if len(self.live_proxies) > 4096:
            self.live_proxies.clear()
            self.proxy_parents.clear()
            self._root_proxy = None

    def materialize(self) -> Any:
        """A native deep copy of the root (shared references, cycles and dict order kept)."""
        from .materialize import materialize

        return materialize(self)

    def close(self) -> None:
        """Unmap and unlock the pool.  Uncommitted changes are rolled back at the next open."""
        if self._closed:
            return
        self._closed = True
        self.live_proxies.clear()
        self._root_proxy = None
        self.buf = None  # type: ignore[assignment]
        self.pool.close()

    def __enter__(self) -> Heap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def path(self) -> str | None:
        return self.dev.path

    @property
    def size(self) -> int:
        """Bytes of the pool file."""
        return self.dev.size

    @property
    def heap_top(self) -> int:
        return self._top

    @property
    def arena_start(self) -> int:
        """Offset of the first object (the metadata block) in the pool."""
        return self._arena

    @property
    def root_slot(self) -> int:
        """The root's slot value as stored (a reference, or an inline value)."""
        return _q_unpack(self.buf, self._meta + L.META_ROOT)[0]

    @property
    def commit_seq(self) -> int:
        """Number of the commit record in force; the batch in progress will commit as
        ``commit_seq + 1`` (its undo entries carry that number)."""
        return self._seq - 1

    # ------------------------------------------------------------------ allocation
    def _grow_to(self, need: int) -> None:
        size = self.dev.size
        new = max(need, size + size // 2, size + (1 << 20))
        new = (new + L.PAGE - 1) // L.PAGE * L.PAGE
        self.buf = None  # type: ignore[assignment]
        try:
            self.dev.grow(new)
        except OSError as e:
            self.buf = self.dev.buf
            raise PoolFullError(f"cannot grow pool {self.dev.path} to {new} bytes: {e}") from e
        self.buf = self.dev.buf
        self.stats["grows"] += 1

    def _bump(self, nbytes: int) -> int:
        cls = L.size_class(nbytes)
        size = L.CLASS_SIZES[cls]
        off = self._top
        end = off + size
        if end > self.dev.size:
            self._grow_to(end)
        self._top = end
        self.buf[off + 1] = cls
        return off

    def _spill_alloc(self, nbytes: int) -> tuple[int, int]:
        off = self._bump(nbytes)
        size = L.CLASS_SIZES[self.buf[off + 1]]
        _hdr_pack(self.buf, off, L.T_UNDOSEG, self.buf[off + 1], 0, 0, 0)
        return off, size

    def _alloc(self, nbytes: int) -> int:
        """Allocate a chunk; its memory may be written without undo logging.

        Free chunks are kept in DRAM only: a chunk is free when nothing reachable from the
        root refers to it at the last commit, so after a crash the free lists are rebuilt by a
        walk of the graph (:meth:`_rebuild`), and writing into a chunk handed out here never
        needs an undo entry.  (:meth:`_new_owned_blob` repeats the bump and free-list paths
        inline for the hottest store, without the exemption marks: change both together.)
        """
        if not self._writable:
            raise PersimmonError("this heap was opened read-only (writable=False)")
        cls = _SMALL_TABLE[(nbytes + 31) >> 5] if nbytes <= 4096 else L.size_class(nbytes)
        fl = self._freelists[cls]
        if not fl:
            size = L.CLASS_SIZES[cls]
            off = self._top
            end = off + size
            if end > self.dev.size:
                self._grow_to(end)
            self._top = end
            self.buf[off + 1] = cls
            return off
        off = fl.pop()
        size = L.CLASS_SIZES[cls]
        b0 = off >> 5
        if size >= _BIG_FRESH:
            insort(self._fresh_big, (off, off + size))
        else:
            self._nolog.update(range(b0, b0 + (size >> 5)))
        if self._flushes:
            self._fresh.append((off, size))
        return off

    def free_after_commit(self, off: int) -> None:
        """Free a chunk once this batch commits (until then the last commit may refer to it)."""
        self._deferred.append(off)
        if self.live_proxies.pop(off, None) is not None:
            self.proxy_parents.pop(off, None)

    # ------------------------------------------------------------------ write path
    def _log_blocks(self, blocks: list[int]) -> None:
        if len(blocks) == 1:
            b = blocks[0]
            self.undo.log_block(b << 5)
            self._nolog.add(b)
            self._logged.append(b)
            return
        self.undo.log_blocks([b << 5 for b in blocks])
        self._nolog.update(blocks)
        self._logged.extend(blocks)

    def _prepare(self, off: int, n: int) -> None:
        """Undo-log the blocks covering [off, off+n) that need it."""
        ctop = self._ctop
        if off >= ctop:
            return
        if not self._writable:
            raise PersimmonError("this heap was opened read-only (writable=False)")
        end = min(off + n, ctop)
        nolog = self._nolog
        todo = [b for b in range(off >> 5, ((end - 1) >> 5) + 1) if b not in nolog]
        if todo:
            self._log_round(todo)

    def _prepare_spans(self, spans: Any) -> None:
        """:meth:`_prepare` for several ``(off, n)`` spans with a single undo fence."""
        ctop = self._ctop
        nolog = self._nolog
        todo: list[int] = []
        for off, n in spans:
            if off >= ctop:
                continue
            end = min(off + n, ctop)
            for b in range(off >> 5, ((end - 1) >> 5) + 1):
                if b not in nolog and b not in todo:
                    todo.append(b)
        if todo:
            self._log_round(todo)

    def _log_round(self, todo: list[int]) -> None:
        """Undo-log committed blocks ``todo`` (none of them logged yet in this batch) in one
        round, leaving out those inside big chunks fresh in the batch."""
        if not self._writable:
            raise PersimmonError("this heap was opened read-only (writable=False)")
        if self._fresh_big:
            todo = [b for b in todo if not self._in_fresh_big(b << 5)]
        if todo:
            self._log_blocks(todo)

    def _in_fresh_big(self, a: int) -> bool:
        fb = self._fresh_big
        i = bisect_right(fb, (a, _MASK64)) - 1
        return i >= 0 and fb[i][0] <= a < fb[i][1]

    def _log1(self, off: int) -> None:
        """Undo-log the one block holding ``off`` if it needs it (``off`` < committed top).

        :meth:`_store_blob` repeats the last three lines inline (the hottest store): change
        both together."""
        b = off >> 5
        if b in self._nolog or (self._fresh_big and self._in_fresh_big(b << 5)):
            return
        if not self._writable:
            raise PersimmonError("this heap was opened read-only (writable=False)")
        self.undo.log_block(b << 5)
        self._nolog.add(b)
        self._logged.append(b)

    # Single-word stores never straddle a 32-byte block (they are aligned to their size).
    def store_i64(self, off: int, v: int) -> None:
        if off < self._ctop and (off >> 5) not in self._nolog:
            self._log1(off)
        _q_pack(self.buf, off, v)

    def store_u64(self, off: int, v: int) -> None:
        if off < self._ctop and (off >> 5) not in self._nolog:
            self._log1(off)
        _Q_pack(self.buf, off, v)

    def _wI(self, off: int, v: int) -> None:
        if off < self._ctop and (off >> 5) not in self._nolog:
            self._log1(off)
        _I_pack(self.buf, off, v)

    def _wbyte(self, off: int, v: int) -> None:
        if off < self._ctop and (off >> 5) not in self._nolog:
            self._log1(off)
        self.buf[off] = v

    def store_bytes(self, off: int, data: bytes | memoryview) -> None:
        n = len(data)
        if n:
            self._prepare(off, n)
            self.buf[off : off + n] = data

    # ------------------------------------------------------------------ reference counts
    # Reference counts live in DRAM: ``_rc`` maps an object to its count when that count is
    # not 1 (so most objects cost nothing); the walk at open recomputes them.
    def incref(self, x: int) -> None:
        if x > 0 and not x & 7:
            rc = self._rc.get(x, 1) + 1
            if rc == 1:
                del self._rc[x]
            else:
                self._rc[x] = rc

    def decref(self, x: int) -> None:
        if x > 0 and not x & 7:
            rcd = self._rc
            rc = rcd.get(x, 1) - 1
            if rc == 1:
                del rcd[x]
            elif rc == 0 and x not in rcd and self.buf[x] in _LEAVES:
                # A str/bytes/number is never handed out as a proxy nor memoized, so nothing
                # can store it again: free it now (reusable after the commit), not at end_op.
                self._deferred.append(x)
            else:
                if rc < 0:
                    raise CorruptPoolError(f"reference count below zero at {x}")
                rcd[x] = rc
                if rc == 0:
                    self._zero.append(x)

    def _born(self, off: int) -> None:
        """A new object: reference count 0 until stored; freed at end_op if never stored."""
        self._rc[off] = 0
        self._zero.append(off)

    def store_slot(self, off: int, x: int) -> None:
        """Store slot value ``x`` at ``off``, adjusting reference counts."""
        old = _q_unpack(self.buf, off)[0]
        if old == x:
            return
        if x > 0 and not x & 7:
            self.incref(x)
        self.store_i64(off, x)
        if old > 0 and not old & 7:
            self.decref(old)

    def store_blob(self, off: int, t: int, data: bytes) -> None:
        """Store a new bytes/str object holding ``data`` into the slot at ``off``.

        The fused form of ``store_slot(off, _new_blob(t, data))`` for the hottest store (a
        dict value overwritten with bytes): the slot's block is undo-logged first, so nothing
        is allocated if that fails, the new object goes straight to reference count 1, and
        the old value, if it was a leaf held once, is freed without a second call.
        The compiled fast path, when there is one, does the common case.
        """
        fast = self.fast
        if fast is not None and fast.store_blob(self, off, t, data):
            return
        b = off >> 5
        if off < self._ctop and b not in self._nolog:
            if self._fresh_big or not self._writable:
                self._log1(off)
            else:  # _log1 inline, for the common case
                self.undo.log_block(b << 5)
                self._nolog.add(b)
                self._logged.append(b)
        x = self._new_owned_blob(t, data)
        buf = self.buf
        old = _q_unpack(buf, off)[0]
        _q_pack(buf, off, x)
        if old > 0 and not old & 7:
            if old not in self._rc and buf[old] in _LEAVES:
                self._deferred.append(old)  # count 1 -> 0 (see decref)
            else:
                self.decref(old)

    def _reclaim(self) -> None:
        stack = self._zero
        self._zero = []
        rcd = self._rc
        while stack:
            off = stack.pop()
            if rcd.get(off, 1) != 0:
                continue
            del rcd[off]
            buf = self.buf
            t = buf[off]
            if t in _LEAVES:
                self._deferred.append(off)
                continue
            aux = _Q_unpack(buf, off + 8)[0]
            for child in self._children(off, t, aux):
                if child > 0 and not child & 7:
                    crc = rcd.get(child, 1) - 1
                    if crc == 1:
                        del rcd[child]
                    else:
                        rcd[child] = crc
                        if crc == 0:
                            stack.append(child)
            for inner in self._internal(off, t):
                self.free_after_commit(inner)
            self._opaque.pop(off, None)
            self.table_indexes.pop(off, None)
            self._ixn.pop(off, None)
            self.free_after_commit(off)

    def _rebuild(self) -> None:
        """Walk the graph from the root: recompute reference counts and the free lists.

        Everything between the arena start and the committed heap top that is not reachable
        is free (this also reclaims unreachable cycles).  Runs at open, and by
        :meth:`collect`.  Nothing read from the pool is trusted: damage in the reachable
        graph raises :class:`CorruptPoolError`; damaged free space (a run of free chunks
        that does not add up between two chunks in use) is re-carved into valid free chunks
        and reported in :attr:`salvaged` (docs/heap.md, "Salvage").
        """
        cover, rcd = self._mark_reachable()
        fls, damaged = self._walk_free(cover)
        if damaged:
            self._salvage(damaged, fls)
        for fl in fls:
            fl.reverse()  # allocate low addresses first
        self._rc = rcd
        self._freelists = fls
        self._ix_reset()

    def _mark_reachable(self) -> tuple[bytearray, dict[int, int]]:
        """The chunks in use, found by a walk from the root that checks what it reads.

        Returns ``cover`` (a byte per 32-byte block of the arena below the committed top: 2
        at the first block of each chunk in use -- the metadata block, every reachable
        object, the arrays behind containers --, 1 at its other blocks, 0 elsewhere) and the
        reference counts that are not 1.  Raises :class:`CorruptPoolError` naming the first
        damage: a slot value that is no value, a reference outside the heap or into the
        middle of a chunk, a header whose type or size class is invalid or whose chunk
        crosses the committed top, two chunks in use that overlap, an array shared by two
        containers.
        """
        buf = self.buf
        arena = self._arena
        top = self._ctop
        cover = bytearray((top - arena) >> 5)
        rcd: dict[int, int] = {}
        cover[0] = 2  # the metadata block (one block)
        stack: list[int] = []  # containers marked, whose children are still to be marked
        fast = self.fast
        compiled = fast.mark_slots if fast is not None else None
        mark = self._mark_slots
        children = self._children
        internal = self._internal
        sizes = _CLASS_SIZES
        covered = 1 + mark([_q_unpack(buf, self._meta + L.META_ROOT)[0]], cover, rcd, stack)
        x = 0
        try:
            while stack:
                x = stack.pop()
                t = buf[x]
                for inner in internal(x, t):
                    if inner <= arena or inner >= top or (inner - arena) & 31:
                        raise CorruptPoolError(
                            f"object at {x} has a damaged array reference ({inner})")
                    j = (inner - arena) >> 5
                    icls = buf[inner + 1]
                    if cover[j] or buf[inner] not in _ARRAY_TYPES or icls >= _NCLASSES or (
                        inner + sizes[icls] > top
                    ):
                        raise CorruptPoolError(f"the array at {inner} behind the object at {x} "
                                               "is damaged or shared")
                    n = sizes[icls] >> 5
                    cover[j : j + n] = _cover_pattern(n)
                    covered += n
                kids = children(x, t, _Q_unpack(buf, x + 8)[0])
                if compiled is None:
                    covered += mark(kids, cover, rcd, stack)
                    continue
                done = compiled(buf, cover, arena, top, kids, rcd, stack)
                if done is None:  # damaged: the Python twin names it (and must raise)
                    mark(kids, cover, rcd, stack)
                    raise CorruptPoolError(f"the children of the object at {x} are damaged")
                covered += done
        except (IndexError, ValueError, TypeError, struct.error) as e:
            raise CorruptPoolError(f"the object at {x} is damaged ({e})") from None
        if len(cover) - cover.count(0) != covered:
            raise CorruptPoolError(_overlap(cover, buf, arena))
        return cover, rcd

    def _mark_slots(self, slots: list[int], cover: bytearray, rcd: dict[int, int],
                    stack: list[int]) -> int:
        """Check the slot values ``slots`` and mark the objects they refer to in ``cover``
        (see :meth:`_mark_reachable`); count second references in ``rcd``; push containers
        onto ``stack``.  Returns the number of blocks marked.  (The compiled
        ``_speedups.mark_slots`` does the same, and declines where this raises.)"""
        buf = self.buf
        arena = self._arena
        top = self._ctop
        sizes = _CLASS_SIZES
        value_types = _VALUE_TYPES
        leaves = _LEAVES
        patterns = _COVER_PATTERNS
        covered = 0
        for x in slots:
            if x & 7:
                if x & 1 or x == _NONE or x == _TRUE or x == _FALSE:
                    continue
                raise CorruptPoolError(f"invalid slot value {x:#x}")
            if x <= arena or x >= top or (x - arena) & 31:
                if x == 0:
                    continue
                raise CorruptPoolError(f"reference {x} points outside the heap")
            i = (x - arena) >> 5
            t = buf[x]
            c = cover[i]
            if c:
                if c == 1 or t not in value_types:
                    raise CorruptPoolError(f"reference {x} points into a chunk in use that "
                                           "is not a value")
                rcd[x] = rcd.get(x, 1) + 1
                continue
            cls = buf[x + 1]
            if t not in value_types or cls >= _NCLASSES or x + sizes[cls] > top:
                raise CorruptPoolError(
                    f"object at {x} has a damaged header (type {t}, size class {cls})")
            n = sizes[cls] >> 5
            if n == 1:
                cover[i] = 2
            else:
                cover[i : i + n] = patterns[n] if n < 256 else _cover_pattern(n)
            covered += n
            if t not in leaves:
                stack.append(x)
        return covered

    def _walk_free(self, cover: bytearray) -> tuple[list[list[int]], list[tuple[int, int, str]]]:
        """The free lists: every chunk between the chunks in use (``cover``).

        Each gap between two chunks in use (or the last one and the committed top) must be
        tiled exactly by the chunks its size-class bytes describe.  Returns the free lists
        and the damaged regions ``(start, end, what)``: from the first chunk of a gap whose
        class byte is invalid or whose chunk would cross the gap's end, to that end.  A
        tiling that differs from the one the allocator made is harmless (it covers only
        free memory), so it is not damage.
        """
        buf = self.buf
        arena = self._arena
        sizes = _CLASS_SIZES
        fls: list[list[int]] = [[] for _ in range(_NCLASSES)]
        damaged: list[tuple[int, int, str]] = []
        nblocks = len(cover)
        for gap in _FREE_RUN.finditer(cover):
            j, k = gap.span()
            off = arena + (j << 5)
            end = arena + (k << 5)
            while off < end:
                cls = buf[off + 1]
                if cls >= _NCLASSES:
                    damaged.append((off, end, f"the free chunk at {off} has size class {cls}"))
                    break
                nxt = off + sizes[cls]
                if nxt > end:
                    what = "the committed heap top" if k == nblocks else "a chunk in use"
                    damaged.append((off, end, f"the free chunk at {off} (size class {cls}, "
                                    f"{sizes[cls]} bytes) crosses {what} at {end}"))
                    break
                fls[cls].append(off)
                off = nxt
        return fls, damaged

    def _salvage(self, damaged: list[tuple[int, int, str]], fls: list[list[int]]) -> None:
        """Re-carve damaged free regions into valid free chunks (largest classes first).

        Only free memory is written (a region holds no chunk in use), each class byte goes
        straight to its final value, and a crash half-way leaves a region that the next
        open finds damaged again and carves again.
        """
        buf = self.buf
        sizes = _CLASS_SIZES
        dev = self.dev
        for start, end, what in damaged:
            off = start
            while off < end:
                cls = L.size_class(end - off)
                if sizes[cls] > end - off:
                    cls -= 1
                buf[off] = L.T_FREE
                buf[off + 1] = cls
                fls[cls].append(off)
                off += sizes[cls]
            dev.flush(start, end - start)
            self.salvaged.append((start, end, what))
            self.stats["salvaged_bytes"] += end - start
            _log.warning("%s: damaged free space salvaged: %d bytes at [%d, %d) (%s); "
                         "every object reachable from the root is intact",
                         self.dev.path or "<device>", end - start, start, end, what)
        dev.drain()

    def _rebuild_checked(self) -> None:
        try:
            self._rebuild()
        except CorruptPoolError as e:
            raise CorruptPoolError(
                f"{self.dev.path or '<device>'}: the object graph is damaged "
                f"({e}; committed heap top {self._ctop}); the pool cannot be used"
            ) from None

    def verify(self) -> list[str]:
        """Run the checks a writable open runs, changing nothing; return what is salvageable.

        The walk from the root (every reference, header and array; the reference counts)
        and the walk over the free chunks between the chunks in use.  Damage in the
        reachable graph raises :class:`CorruptPoolError` (such a pool cannot be opened for
        writing).  Damaged free space is returned as one message per region: a writable
        open salvages it (:meth:`_rebuild`), no data is lost.
        """
        cover, _rc = self._mark_reachable()
        _fls, damaged = self._walk_free(cover)
        return [f"{end - start} bytes of free space at [{start}, {end}) are damaged ({what})"
                for start, end, what in damaged]

    def check(self) -> None:
        """Walk the whole heap; raise :class:`CorruptPoolError` if anything is damaged."""
        problems = self.verify()
        if problems:
            raise CorruptPoolError("; ".join(problems))

    def collect(self) -> int:
        """Reclaim unreachable objects, cycles included; call between batches.

        Returns the number of bytes on the free lists afterwards.
        """
        if self._logged or self._top != self._ctop or self._zero or self._deferred:
            raise PersimmonError("collect() must be called right after commit()")
        self._rebuild_checked()
        return sum(len(fl) * L.CLASS_SIZES[c] for c, fl in enumerate(self._freelists))

    def _children(self, off: int, t: int, aux: int) -> list[int]:
        buf = self.buf
        if t in (L.T_TUPLE, L.T_FROZENSET):
            return list(buf[off + 16 : off + 16 + 8 * aux].cast("q")) if aux else []
        if t == L.T_LIST:
            items = _q_unpack(buf, off + _LIST_ITEMS)[0]
            return list(buf[items + 16 : items + 16 + 8 * aux].cast("q")) if aux else []
        if t == L.T_DEQUE:
            return [x for x in self._deque_slots(off)]
        if t == L.T_DICT or t == L.T_SET:
            nent = _q_unpack(buf, off + _HT_NENT)[0]
            if not nent:
                return []
            ents = _q_unpack(buf, off + _HT_ENTS)[0] + 16
            es = _esize(t)
            flat = buf[ents : ents + es * nent].cast("q").tolist()
            w = es >> 3
            out = []
            for i in range(0, len(flat), w):
                if flat[i + 1] != _DUMMY:
                    out.extend(flat[i + 1 : i + w])
            return out
        if t == L.T_OBJECT:
            return [_q_unpack(buf, off + _OBJ_CLASS)[0], _q_unpack(buf, off + _OBJ_DICT)[0]]
        if t == L.T_OPAQUE:
            return [_q_unpack(buf, off + _OPQ_BLOB)[0]]
        return []

    def _internal(self, off: int, t: int) -> list[int]:
        buf = self.buf
        if t == L.T_LIST:
            items = _q_unpack(buf, off + _LIST_ITEMS)[0]
            return [items] if items else []
        if t == L.T_DEQUE:
            items = _q_unpack(buf, off + _DQ_ITEMS)[0]
            return [items] if items else []
        if t == L.T_DICT or t == L.T_SET:
            out = []
            for f in (_HT_ITAB, _HT_ENTS):
                r = _q_unpack(buf, off + f)[0]
                if r:
                    out.append(r)
            return out
        return []

    # ------------------------------------------------------------------ loading values
    def load(self, x: int) -> Any:
        """The Python value of slot ``x``: natives for immutables, proxies for containers."""
        if x & 7:
            if x & 1:
                return x >> 3
            if x == _NONE:
                return None
            if x == _TRUE:
                return True
            if x == _FALSE:
                return False
            raise CorruptPoolError(f"invalid slot value {x:#x}")
        if not x:
            raise CorruptPoolError("empty slot read as a value")
        p = self.live_proxies.get(x)
        if p is not None:
            return p
        buf = self.buf
        t = buf[x]
        if t == L.T_BYTES:
            n = _Q_unpack(buf, x + 8)[0]
            return bytes(buf[x + 16 : x + 16 + n])
        if t == L.T_STR:
            n = _Q_unpack(buf, x + 8)[0]
            return str(buf[x + 16 : x + 16 + n], "utf-8", "surrogatepass")
        return self._load_other(x, t)

    def _load_other(self, x: int, t: int) -> Any:
        buf = self.buf
        if t == L.T_FLOAT:
            return _d_unpack(buf, x + 8)[0]
        if t == L.T_INT:
            n = _Q_unpack(buf, x + 8)[0]
            return int.from_bytes(buf[x + 16 : x + 16 + n], "little", signed=True)
        if t == L.T_TUPLE:
            n = _Q_unpack(buf, x + 8)[0]
            return tuple([self.load(y) for y in buf[x + 16 : x + 16 + 8 * n].cast("q")])
        if t == L.T_FROZENSET:
            n = _Q_unpack(buf, x + 8)[0]
            return frozenset([self.load(y) for y in buf[x + 16 : x + 16 + 8 * n].cast("q")])
        if t == L.T_COMPLEX:
            return complex(_d_unpack(buf, x + 8)[0], _d_unpack(buf, x + 16)[0])
        if t == L.T_DICT:
            p = px.PDict(self, x)
        elif t == L.T_LIST:
            p = px.PList(self, x)
        elif t == L.T_SET:
            p = px.PSet(self, x)
        elif t == L.T_DEQUE:
            p = px.PDeque(self, x)
        elif t == L.T_OBJECT:
            cls = self.class_of(x)
            p = px.proxy_class_for(cls)(self, x)
        elif t == L.T_OPAQUE:
            if x in self._opaque:
                return self._opaque[x][0]
            blob = _q_unpack(buf, x + _OPQ_BLOB)[0]
            data = self.load(blob)
            try:
                value = pickle.loads(data)
            except Exception as e:
                raise PersimmonError(
                    f"an opaque (pickled) value in the pool cannot be loaded here: {e}"
                ) from e
            self._opaque[x] = (value, data)
            return value
        else:
            raise CorruptPoolError(f"object at {x} has unknown type {t}")
        self.live_proxies[x] = p
        return p

    def class_of(self, x: int) -> type:
        """The user class of the object at ``x`` (imported on first use)."""
        name_ref = _q_unpack(self.buf, x + _OBJ_CLASS)[0]
        name = self.load(name_ref)
        cls = self._classes.get(name)
        if cls is None:
            cls = self._import_class(name)
            self._classes[name] = cls
        return cls

    @staticmethod
    def _import_class(name: str) -> type:
        mod_name, _, qual = name.partition(":")
        try:
            mod = sys.modules.get(mod_name) or importlib.import_module(mod_name)
            obj: Any = mod
            for part in qual.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as e:
            raise ClassNotFoundError(
                f"the pool holds instances of {mod_name}.{qual}, which cannot be imported in "
                f"this process ({e}); import the module that defines it first"
            ) from None
        return obj

    # ------------------------------------------------------------------ storing values
    def _new_blob(self, t: int, data: bytes) -> int:
        """A new bytes/str/int object, reference count 0 until stored (see :meth:`_born`)."""
        off = self._new_owned_blob(t, data)
        self._born(off)
        return off

    def _to_slot(self, v: Any) -> int:
        """Convert a value to a slot; new objects start with reference count 0.

        Raises :class:`UnpersistableError` whose path is relative to ``v``; callers that know
        where ``v`` is being stored prefix it (:meth:`_convert`).
        """
        t = type(v)
        if t is bytes:
            return self._new_blob(L.T_BYTES, v)
        if t is str:
            return self._new_blob(L.T_STR, v.encode("utf-8", "surrogatepass"))
        if t is int:
            if _SMALL_MIN <= v <= _SMALL_MAX:
                return (v << 3) | 1
            n = (v.bit_length() + 8) // 8
            return self._new_blob(L.T_INT, v.to_bytes(n, "little", signed=True))
        if v is None:
            return _NONE
        if t is bool:
            return _TRUE if v else _FALSE
        if t is float:
            off = self._alloc(16)
            buf = self.buf
            _hdr_pack(buf, off, L.T_FLOAT, buf[off + 1], 0, 0, 0)
            _d_pack(buf, off + 8, v)
            self._born(off)
            return off
        if isinstance(v, px.Proxy):
            if px.heap_of(v) is self:
                return px.offset_of(v)
            v = px.native_copy(v)
            t = type(v)
        memo = self._memo
        if id(v) in memo:
            return memo[id(v)]
        self._depth += 1
        try:
            return self._to_slot_container(v, t)
        finally:
            self._depth -= 1

    def _to_slot_container(self, v: Any, t: type) -> int:
        if t is tuple:
            return self._new_seq(L.T_TUPLE, self._convert_items(v))
        if t is dict:
            return self._convert_dict(v)
        if t is list:
            return self._convert_list(v)
        if t is set:
            return self._convert_set(v)
        if t is deque:
            return self._convert_deque(v)
        if t is frozenset:
            return self._new_seq(L.T_FROZENSET, self._convert_items(v, "{...}"))
        if t is complex:
            off = self._alloc(32)
            buf = self.buf
            _hdr_pack(buf, off, L.T_COMPLEX, buf[off + 1], 0, 0, 0)
            _d_pack(buf, off + 8, v.real)
            _d_pack(buf, off + 16, v.imag)
            self._born(off)
            return off
        if _is_plain_class(t) and hasattr(v, "__dict__"):
            return self._convert_object(v)
        return self._convert_opaque(v)

    def convert(self, v: Any, where: Any, key: Any = None, attr: bool = False) -> int:
        """:meth:`_to_slot` for a store into the object at ``where`` under ``key``."""
        if self._depth:  # inside a conversion: the enclosing container adds the path
            return self._to_slot(v)
        try:
            return self._to_slot(v)
        except UnpersistableError as e:
            base = self.path_of(where) if isinstance(where, int) else str(where)
            if key is not None:
                base += f".{key}" if attr else f"[{key!r}]"
            raise e.prefixed(base) from None

    def _convert_items(self, items: Any, fmt: str | None = None) -> list[int]:
        out = []
        for i, item in enumerate(items):
            try:
                out.append(self._to_slot(item))
            except UnpersistableError as e:
                raise e.prefixed(fmt if fmt is not None else f"[{i}]") from None
        return out

    def _new_seq(self, t: int, slots: list[int]) -> int:
        n = len(slots)
        off = self._alloc(16 + 8 * n)
        buf = self.buf
        _hdr_pack(buf, off, t, buf[off + 1], 0, 0, n)
        if n:
            buf[off + 16 : off + 16 + 8 * n] = L.struct_pack_q(slots)
            for s in slots:
                if s > 0 and not s & 7:
                    self.incref(s)
        self._born(off)
        return off

    def _remember(self, v: Any, off: int, snapshot: Any) -> None:
        self._memo[id(v)] = off
        self._keep.append(v)
        self._conv.append((v, off, snapshot))

    def _convert_list(self, v: list) -> int:
        off = self._new_list(len(v))
        self._remember(v, off, list(v))
        return self._fill_seq(off, px.PList(self, off), v)

    def _fill_seq(self, off: int, p: Any, items: Any) -> int:
        """Append converted ``items`` to the new list or deque at ``off`` (its proxy ``p``);
        return ``off``."""
        self.live_proxies[off] = p
        append = px.slot_appender(p)
        for i, item in enumerate(items):
            try:
                s = self._to_slot(item)
            except UnpersistableError as e:
                raise e.prefixed(f"[{i}]") from None
            append(s)
        return off

    def _new_list(self, cap: int) -> int:
        off = self._alloc(_LIST_SIZE)
        buf = self.buf
        _hdr_pack(buf, off, L.T_LIST, buf[off + 1], 0, 0, 0)
        items = self.new_array(cap) if cap else 0
        buf = self.buf
        _q_pack(buf, off + _LIST_CAP, self.array_capacity(items) if items else 0)
        _q_pack(buf, off + _LIST_ITEMS, items)
        self._born(off)
        return off

    def new_array(self, cap: int) -> int:
        off = self._alloc(16 + 8 * cap)
        buf = self.buf
        size = L.CLASS_SIZES[buf[off + 1]]
        _hdr_pack(buf, off, L.T_ARRAY, buf[off + 1], 0, 1, (size - 16) // 8)
        return off

    def array_capacity(self, arr: int) -> int:
        return _Q_unpack(self.buf, arr + 8)[0]

    def _convert_dict(self, v: dict) -> int:
        off = self._new_table(L.T_DICT, len(v))
        self._remember(v, off, list(v.items()))
        p = px.PDict(self, off)
        self.live_proxies[off] = p
        setitem = px.item_setter(p)
        for k, val in v.items():
            try:
                setitem(k, val)
            except UnpersistableError as e:
                raise e.prefixed(f"[{k!r}]") from None
        return off

    def _convert_set(self, v: set) -> int:
        off = self._new_table(L.T_SET, len(v))
        self._remember(v, off, set(v))
        p = px.PSet(self, off)
        self.live_proxies[off] = p
        add = px.member_adder(p)
        for k in v:
            try:
                add(k)
            except UnpersistableError as e:
                raise e.prefixed("{...}") from None
        return off

    def _convert_deque(self, v: deque) -> int:
        off = self._alloc(_DQ_SIZE)
        buf = self.buf
        _hdr_pack(buf, off, L.T_DEQUE, buf[off + 1], 0, 0, 0)
        cap = max(8, len(v))
        items = self.new_array(cap)
        buf = self.buf
        _q_pack(buf, off + _DQ_CAP, self.array_capacity(items))
        _q_pack(buf, off + _DQ_ITEMS, items)
        _q_pack(buf, off + _DQ_HEAD, 0)
        _q_pack(buf, off + _DQ_MAXLEN, -1 if v.maxlen is None else v.maxlen)
        self._born(off)
        self._remember(v, off, list(v))
        return self._fill_seq(off, px.PDeque(self, off), v)

    def _convert_object(self, v: Any) -> int:
        cls = type(v)
        name = self._classnames.get(cls)
        if name is None:
            name = f"{cls.__module__}:{cls.__qualname__}"
            self._classnames[cls] = name
            self._classes[name] = cls
        off = self._alloc(_OBJ_SIZE)
        buf = self.buf
        _hdr_pack(buf, off, L.T_OBJECT, buf[off + 1], 0, 0, 0)
        _q_pack(buf, off + _OBJ_CLASS, 0)
        _q_pack(buf, off + _OBJ_DICT, 0)
        self._born(off)
        self._memo[id(v)] = off
        self._keep.append(v)
        attrs = vars(v)
        self.store_slot(off + _OBJ_CLASS, self._to_slot(name))
        d = self._new_table(L.T_DICT, len(attrs))
        self.store_slot(off + _OBJ_DICT, d)
        self._conv.append((v, off, list(attrs.items())))
        setitem = px.item_setter(px.PDict(self, d))
        for k, val in attrs.items():
            try:
                setitem(k, val)
            except UnpersistableError as e:
                raise e.prefixed(f".{k}") from None
        return off

    def _convert_opaque(self, v: Any) -> int:
        t = type(v)
        tname = f"{t.__module__}.{t.__qualname__}"
        if isinstance(v, _UNPERSISTABLE) or t.__name__ == "<lambda>":
            raise UnpersistableError(tname, "", "functions, generators and modules cannot be "
                                     "stored; store data and keep code in the class")
        try:
            data = pickle.dumps(v, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:
            raise UnpersistableError(
                tname, "", f"it is neither a supported type nor picklable ({e})"
            ) from None
        off = self._alloc(_OPQ_SIZE)
        buf = self.buf
        _hdr_pack(buf, off, L.T_OPAQUE, buf[off + 1], 0, 0, 0)
        _q_pack(buf, off + _OPQ_BLOB, 0)
        self._born(off)
        self.store_slot(off + _OPQ_BLOB, self._new_blob(L.T_BYTES, data))
        self._opaque[off] = (v, data)
        self._memo[id(v)] = off
        self._keep.append(v)
        return off

    def _writeback_opaque(self) -> None:
        items = list(self._opaque.items())
        self._opaque.clear()
        for off, (value, data) in items:
            if self.buf[off] != L.T_OPAQUE:
                continue
            try:
                now = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as e:
                raise UnpersistableError(
                    type(value).__qualname__, self.path_of(off),
                    f"it can no longer be pickled after this operation ({e})",
                ) from None
            if now != data:
                self.store_slot(off + _OPQ_BLOB, self._new_blob(L.T_BYTES, now))
        self._opaque.clear()

    def _resync(self) -> None:
        """Bring PM copies of native containers converted in this op up to date."""
        conv = self._conv
        try:
            self._resync_each(conv)
        finally:  # (a value that cannot be persisted is reported once, not at every end_op)
            conv.clear()

    def _resync_each(self, conv: list[tuple[Any, int, Any]]) -> None:
        i = 0
        while i < len(conv):
            v, off, snap = conv[i]
            i += 1
            buf = self.buf
            if buf[off] == L.T_FREE:
                continue
            t = type(v)
            if t is list or t is deque:
                if len(v) == len(snap) and all(a is b for a, b in zip(v, snap, strict=True)):
                    continue
                p = self.load(off)
                p.clear()
                append = px.slot_appender(p)
                for j, item in enumerate(v):
                    append(self.convert(item, off, j))
            elif t is dict:
                items = list(v.items())
                if len(items) == len(snap) and all(
                    a[0] is b[0] and a[1] is b[1] for a, b in zip(items, snap, strict=True)
                ):
                    continue
                p = self.load(off)
                p.clear()
                setitem = px.item_setter(p)
                for k, val in items:
                    setitem(k, val)
            elif t is set:
                if v == snap:
                    continue
                p = self.load(off)
                p.clear()
                add = px.member_adder(p)
                for k in v:
                    add(k)
            else:
                items = list(vars(v).items())
                if len(items) == len(snap) and all(
                    a[0] is b[0] and a[1] is b[1] for a, b in zip(items, snap, strict=True)
                ):
                    continue
                d = px.PDict(self, _q_unpack(buf, off + _OBJ_DICT)[0])
                d.clear()
                setitem = px.item_setter(d)
                for k, val in items:
                    setitem(k, val)

    # ------------------------------------------------------------------ hash tables
    def _new_table(self, t: int, n: int) -> int:
        size = 8
        while size * 2 // 3 < n:
            size *= 2
        off = self._alloc(_HT_SIZE)
        buf = self.buf
        _hdr_pack(buf, off, t, buf[off + 1], 0, 0, 0)
        _q_pack(buf, off + _HT_NENT, 0)
        itab, ents = self._new_table_arrays(t, size)
        buf = self.buf
        _q_pack(buf, off + _HT_ITAB, itab)
        _q_pack(buf, off + _HT_ENTS, ents)
        _q_pack(buf, off + 40, 0)
        self._born(off)
        self._ixn.pop(off, None)
        if self.index_limit:
            self.table_indexes[off] = {}
        return off

    def _new_table_arrays(self, t: int, size: int, zero: bool = True) -> tuple[int, int]:
        """A table's index array of ``size`` slots (zeroed unless ``zero`` is False: the
        caller fills all of it) and its entries array."""
        itab = self._alloc(16 + 4 * size)
        buf = self.buf
        _hdr_pack(buf, itab, L.T_RAW, buf[itab + 1], 0, 1, size)
        if zero:
            buf[itab + 16 : itab + 16 + 4 * size] = bytes(4 * size)
        cap = size * 2 // 3
        es = _esize(t)
        ents = self._alloc(16 + es * cap)
        buf = self.buf
        _hdr_pack(buf, ents, L.T_RAW, buf[ents + 1], 0, 1, cap)
        return itab, ents

    def _key_matches(self, x: int, key: Any, kb: bytes | None, kt: int) -> bool:
        """Does stored key slot ``x`` equal ``key``?  ``kb``: encoded str/bytes key."""
        if kb is None:
            return self.load(x) == key
        if x & 7:
            return False
        buf = self.buf
        st = buf[x]
        if st != kt:
            if st == L.T_STR or st == L.T_BYTES:
                return False
            return self.load(x) == key
        n = _Q_unpack(buf, x + 8)[0]
        return n == len(kb) and buf[x + 16 : x + 16 + n] == kb

    def _ht_find(self, d: int, es: int, h: int, key: Any) -> tuple[int, int, int]:
        """Probe for ``key``: (index-table slot, entry offset or -1, first dummy slot or -1)."""
        buf = self.buf
        t = type(key)
        if t is bytes:
            kb, kt = key, L.T_BYTES
        elif t is str:
            kb, kt = key.encode("utf-8", "surrogatepass"), L.T_STR
        else:
            kb, kt = None, 0
        itab = _q_unpack(buf, d + _HT_ITAB)[0]
        mask = _Q_unpack(buf, itab + 8)[0] - 1
        base = itab + 16
        ents = _q_unpack(buf, d + _HT_ENTS)[0] + 16
        i = h & mask
        perturb = h
        free = -1
        while True:
            p = base + 4 * i
            ix = _I_unpack(buf, p)[0]
            if ix == _IX_EMPTY:
                return p, -1, free
            if ix == _IX_DUMMY:
                if free < 0:
                    free = p
            else:
                e = ents + (ix - 1) * es
                if _Q_unpack(buf, e)[0] == h:
                    x = _q_unpack(buf, e + 8)[0]
                    if self._key_matches(x, key, kb, kt):
                        return p, e, free
                    buf = self.buf
            perturb >>= _PERTURB_SHIFT
            i = (i * 5 + perturb + 1) & mask

    # A table's DRAM index maps each key to its entry's offset, so that a lookup is one native
    # dict lookup instead of a hash and a probe through the pool.  It is volatile (rebuilt
    # from PM when needed, never persisted), exact (every live key, in entry order, so a
    # resize can renumber it without a probe), and kept only for tables whose keys are all of
    # the types in _IXT (whose native equality is the table's) and that hold at most
    # ``index_limit`` entries.  Tables made in this process start indexed; an existing table
    # gets its index once it has been probed about len/16 times (docs/heap.md says why).

    def table_lookup(self, d: int, es: int, key: Any) -> int:
        """Offset of ``key``'s entry in table ``d``, or -1."""
        ix = self.table_indexes.get(d)
        if ix is not None and type(key) in _IXT:
            return ix.get(key, -1)
        fast = self.fast
        if fast is not None and (r := fast.ht_seek(self, d, es, key)) is not None:
            e = r[0]
        else:
            e = self._ht_find(d, es, self.key_hash(key), key)[1]
        self._ix_probed(d, es)
        return e

    def table_seek(self, d: int, es: int, key: Any) -> tuple[int, int, int]:
        """``(entry, 0, 0)`` if ``key`` is in table ``d``, else ``(-1, hash, insert slot)``."""
        ix = self.table_indexes.get(d)
        if ix is not None and type(key) in _IXT:
            e = ix.get(key, -1)
            if e >= 0:
                return e, 0, 0
            hv = self.key_hash(key)
            return -1, hv, self.table_free_slot(d, hv)
        fast = self.fast
        if fast is not None and (r := fast.ht_seek(self, d, es, key)) is not None:
            self._ix_probed(d, es)
            return r
        hv = self.key_hash(key)
        p, e, free = self._ht_find(d, es, hv, key)
        self._ix_probed(d, es)
        return e, hv, free if free >= 0 else p

    def _ix_probed(self, d: int, es: int) -> None:
        n = self._ixn.get(d, 0) + 1
        self._ixn[d] = n
        if n > 2 and d not in self.table_indexes:
            used = _Q_unpack(self.buf, d + 8)[0]
            if n >= 2 + (used >> 4):
                self._ix_build(d, es, used)

    def _ix_build(self, d: int, es: int, used: int) -> None:
        if used > self.index_limit:
            self._ixn[d] = _NEVER
            return
        buf = self.buf
        kslots = self.table_entries(d)[1 :: es >> 3]
        base = _q_unpack(buf, d + _HT_ENTS)[0] + 16
        offs: Any = range(base, base + es * len(kslots), es)
        if _DUMMY in kslots:
            live = [(k, e) for k, e in zip(kslots, offs, strict=True) if k != _DUMMY]
            kslots = [k for k, _ in live]
            offs = [e for _, e in live]
        if not any(k & 7 for k in kslots) and set(map(buf.__getitem__, kslots)) == {L.T_BYTES}:
            if self.fast is not None and used > _PROBE_OVER:  # probed in the pool instead
                self._ixn[d] = _NEVER
                return
            # the common table of bytes keys, in bulk: lens[(k + 8) >> 3] is k's length
            lens = buf[: len(buf) & ~7].cast("Q")
            try:
                keys = [bytes(buf[k + 16 : k + 16 + lens[(k + 8) >> 3]]) for k in kslots]
            finally:
                lens.release()
        else:
            keys = [self.load(k) for k in kslots]
            if not all(type(k) in _IXT for k in keys) or self._probed_instead(keys):
                self._ixn[d] = _NEVER
                return
        self._ix_adds += len(keys)
        if self._ix_adds > self._ix_budget:
            self._ix_reset()
            return
        self.table_indexes[d] = dict(zip(keys, offs, strict=True))

    def _probed_instead(self, keys: Any) -> bool:
        """Are these a table's keys that the compiled module probes in the pool rather than
        through a DRAM index (more than ``_PROBE_OVER`` of them, all bytes or str)?"""
        return (self.fast is not None and len(keys) > _PROBE_OVER
                and all(type(k) is bytes or type(k) is str for k in keys))

    def _ix_add(self, d: int, key: Any, e: int) -> None:
        ix = self.table_indexes.get(d)
        if ix is not None:
            if type(key) in _IXT and len(ix) < self.index_limit:
                ix[key] = e
                self._ix_adds += 1
                if self._ix_adds > self._ix_budget:
                    self._ix_reset()
            else:
                del self.table_indexes[d]
                self._ixn[d] = _NEVER

    def _ix_reset(self) -> None:
        """Drop every index (memory bound: see docs/heap.md); hot tables get theirs back."""
        self.table_indexes.clear()
        self._ixn.clear()
        self._ix_adds = 0

    def set_index_limit(self, n: int) -> None:
        """Index hash tables of at most ``n`` entries in DRAM (0: none); drops the indexes
        of larger tables.  The default comes from ``PERSIMMON_INDEX_LIMIT`` (1,048,576)."""
        if n < 0:
            raise ValueError("the index limit must be >= 0")
        self.index_limit = n
        self._ix_budget = 2 * n
        self._ixn.clear()  # tables may be indexed again (or now never, the next time)
        for d in [d for d, ix in self.table_indexes.items() if len(ix) > n]:
            del self.table_indexes[d]

    def index_bytes(self) -> int:
        """DRAM held by the tables' indexes (dicts, keys and offsets), in bytes."""
        seen: set[int] = set()
        total = 0
        for ix in self.table_indexes.values():
            total += sys.getsizeof(ix)
            for k, e in ix.items():
                if id(k) not in seen:
                    seen.add(id(k))
                    total += sys.getsizeof(k)
                total += sys.getsizeof(e)
        return total

    def index_check(self) -> None:
        """Compare every DRAM table index with its table in PM (for tests); raise
        :class:`AssertionError` on any difference."""
        for d, ix in self.table_indexes.items():
            flat = self.table_entries(d)
            es = _esize(self.buf[d])
            base = _q_unpack(self.buf, d + _HT_ENTS)[0] + 16
            w = es >> 3
            want = [(self.load(flat[j]), base + (j - 1) * 8)
                    for j in range(1, len(flat), w) if flat[j] != _DUMMY]
            got = list(ix.items())
            if [(type(k), k, e) for k, e in got] != [(type(k), k, e) for k, e in want]:
                raise AssertionError(f"index of table {d} differs: {got[:5]} != {want[:5]}")

    def key_hash(self, key: Any) -> int:
        if type(key) is str:
            h = self._strhash.get(key)
            if h is None:
                h = phash(key)
                if len(self._strhash) < 65536:
                    self._strhash[key] = h
            return h
        return phash(key)

    def table_insert(self, d: int, es: int, h: int, p: int, kslot: int, vslot: int,
                       key: Any) -> None:
        """Append an entry for ``key``, known to be absent (converted to ``kslot``); ``p`` is
        its index-table slot."""
        e, p, nent = self._ht_make_room(d, es, h, p)
        if kslot > 0 and not kslot & 7:
            self.incref(kslot)
        if vslot > 0 and not vslot & 7:
            self.incref(vslot)
        self._prepare_insert(d, es, e, p)
        self._ht_write_entry(d, es, h, p, e, nent, kslot, vslot)
        self._ix_add(d, key, e)

    def table_insert_blobs(self, d: int, h: int, p: int, kt: int, kdata: bytes,
                         vdata: bytes, key: Any) -> None:
        """:meth:`_ht_insert_new` of a dict entry whose key (bytes or str, encoded in
        ``kdata``) and value (bytes) are new objects: the fused form of the hottest insert.
        Room is made and the undo round done before anything is allocated, so a failure
        leaves nothing behind; the two objects start at reference count 1."""
        fast = self.fast
        if fast is not None:
            e = fast.insert_blobs(self, d, h, p, kt, kdata, vdata)
            if e is not None:
                self._ix_add(d, key, e)
                return
        buf = self.buf
        nent = _q_unpack(buf, d + _HT_NENT)[0]
        ents = _q_unpack(buf, d + _HT_ENTS)[0]
        if nent < _Q_unpack(buf, ents + 8)[0]:
            e = ents + 16 + 24 * nent
        else:
            e, p, nent = self._ht_make_room(d, 24, h, p)
        self._prepare_insert(d, 24, e, p)
        kslot = self._new_owned_blob(kt, kdata)
        vslot = self._new_owned_blob(L.T_BYTES, vdata)
        buf = self.buf
        _Qqq_pack(buf, e, h, kslot, vslot)
        _I_pack(buf, p, nent + 1)
        _q_pack(buf, d + _HT_NENT, nent + 1)
        _Q_pack(buf, d + 8, _Q_unpack(buf, d + 8)[0] + 1)
        self._ix_add(d, key, e)

    def _prepare_insert(self, d: int, es: int, e: int, p: int) -> None:
        """Undo-log, in one round (one fence), what appending entry ``e`` (index slot ``p``)
        to table ``d`` overwrites: the table's header block (the counts) and the index slot.

        The entry itself needs no undo entry (its blocks are only flushed at commit): in a
        batch a table's entry count never goes down within one entries array (a delete
        leaves a dummy, a resize or a clear moves to a new array, fresh in the batch), so an
        appended entry lies past every entry the last commit knew, and rolling back the
        counts hides it.
        """
        ctop = self._ctop
        nolog = self._nolog
        if e < ctop:
            b = e >> 5
            if b not in nolog:
                self._logged.append(b)
            b1 = (e + es - 1) >> 5
            if b1 != b and b1 not in nolog:
                self._logged.append(b1)
        pb = p >> 5
        plog = p < ctop and pb not in nolog
        hb = d >> 5
        if d < ctop and hb not in nolog:
            self._log_round([hb, pb] if plog else [hb])
        elif plog:
            self._log1(p)  # the common case: the counts' block is logged already

    def _new_owned_blob(self, t: int, data: bytes) -> int:
        """A new bytes/str object that the caller stores at once (reference count 1).

        A chunk reused from a free list is not marked as exempt from undo logging, as
        :meth:`_alloc` marks it: nothing writes into a bytes/str object after this, and an
        undo entry for a block that was free at the last commit would only be wasted work.
        """
        n = len(data)
        nb = 16 + n
        fl = self._freelists[_SMALL_TABLE[(nb + 31) >> 5] if nb <= 4096 else L.size_class(nb)]
        if fl and nb < _BIG_FRESH:
            off = fl.pop()
            buf = self.buf
            cls = buf[off + 1]
            if self._flushes:
                self._fresh.append((off, _CLASS_SIZES[cls]))
        elif nb <= 4096 and self._writable:  # bump allocation, inline
            cls = _SMALL_TABLE[(nb + 31) >> 5]
            off = self._top
            end = off + _CLASS_SIZES[cls]
            if end > self.dev.size:
                self._grow_to(end)
            self._top = end
            buf = self.buf
        else:
            off = self._alloc(nb)
            buf = self.buf
            cls = buf[off + 1]
        _hdr_pack(buf, off, t, cls, 0, 0, n)
        buf[off + 16 : off + nb] = data
        return off

    def _ht_make_room(self, d: int, es: int, h: int, p: int) -> tuple[int, int, int]:
        """``(entry offset, index slot, entry count)`` for one more entry, resizing first."""
        buf = self.buf
        nent = _q_unpack(buf, d + _HT_NENT)[0]
        ents = _q_unpack(buf, d + _HT_ENTS)[0]
        cap = _Q_unpack(buf, ents + 8)[0]
        if nent >= cap:
            self._ht_resize(d, es)
            p = self.table_free_slot(d, h)
            buf = self.buf
            nent = _q_unpack(buf, d + _HT_NENT)[0]
            ents = _q_unpack(buf, d + _HT_ENTS)[0]
        return ents + 16 + nent * es, p, nent

    def _ht_write_entry(self, d: int, es: int, h: int, p: int, e: int, nent: int,
                        kslot: int, vslot: int) -> None:
        """Write entry ``nent`` at ``e``, its index slot ``p`` and the counts (undo-logged
        by the caller)."""
        buf = self.buf
        if es == 24:
            L.S_Qqq.pack_into(buf, e, h, kslot, vslot)
        else:
            L.S_Qq.pack_into(buf, e, h, kslot)
        _I_pack(buf, p, nent + 1)
        _q_pack(buf, d + _HT_NENT, nent + 1)
        _Q_pack(buf, d + 8, _Q_unpack(buf, d + 8)[0] + 1)

    def table_free_slot(self, d: int, h: int) -> int:
        buf = self.buf
        itab = _q_unpack(buf, d + _HT_ITAB)[0]
        mask = _Q_unpack(buf, itab + 8)[0] - 1
        base = itab + 16
        i = h & mask
        perturb = h
        while True:
            p = base + 4 * i
            if _I_unpack(buf, p)[0] in (_IX_EMPTY, _IX_DUMMY):
                return p
            perturb >>= _PERTURB_SHIFT
            i = (i * 5 + perturb + 1) & mask

    def _ht_resize(self, d: int, es: int) -> None:
        buf = self.buf
        t = buf[d]
        used = _Q_unpack(buf, d + 8)[0]
        nent = _q_unpack(buf, d + _HT_NENT)[0]
        old_itab = _q_unpack(buf, d + _HT_ITAB)[0]
        old_ents = _q_unpack(buf, d + _HT_ENTS)[0]
        size = 8
        while size < used * 3:
            size *= 2
        itab, ents = self._new_table_arrays(t, size, zero=False)
        rehash = _rehash if self.fast is None else self.fast.rehash
        count = rehash(self.buf, old_ents + 16, nent, es, ents + 16, itab + 16, size)
        self.store_i64(d + _HT_ITAB, itab)
        self.store_i64(d + _HT_ENTS, ents)
        self.store_i64(d + _HT_NENT, count)
        self.free_after_commit(old_itab)
        self.free_after_commit(old_ents)
        ix = self.table_indexes.get(d)
        if ix is not None and self._probed_instead(ix):  # grown past an index's use
            del self.table_indexes[d]
            self._ixn[d] = _NEVER
        elif ix is not None:  # entries kept their order: renumber
            base = ents + 16
            self.table_indexes[d] = dict(zip(ix, range(base, base + es * len(ix), es), strict=True))

    def table_delete(self, d: int, es: int, e: int, key: Any = _NOKEY) -> None:
        """Remove the entry at ``e`` (reference counts dropped); ``key``: a key equal to its
        key (without one, the table's DRAM index is dropped)."""
        p = self._ht_slot_of(d, es, e)
        buf = self.buf
        kslot = _q_unpack(buf, e + 8)[0]
        vslot = _q_unpack(buf, e + 16)[0] if es == 24 else 0
        self._wI(p, _IX_DUMMY)
        self.store_i64(e + 8, _DUMMY)
        if es == 24:
            self.store_i64(e + 16, 0)
        used = _Q_unpack(self.buf, d + 8)[0]
        self.store_u64(d + 8, used - 1)
        if kslot > 0 and not kslot & 7:
            self.decref(kslot)
        if vslot > 0 and not vslot & 7:
            self.decref(vslot)
        ix = self.table_indexes.get(d)
        if ix is not None:
            if key is not _NOKEY and type(key) in _IXT:
                del ix[key]
            else:
                del self.table_indexes[d]

    def _ht_slot_of(self, d: int, es: int, e: int) -> int:
        """The index-table slot that refers to entry ``e``."""
        buf = self.buf
        itab = _q_unpack(buf, d + _HT_ITAB)[0]
        mask = _Q_unpack(buf, itab + 8)[0] - 1
        base = itab + 16
        want = (e - _q_unpack(buf, d + _HT_ENTS)[0] - 16) // es + 1
        h = _Q_unpack(buf, e)[0]
        i = h & mask
        perturb = h
        while True:
            p = base + 4 * i
            ix = _I_unpack(buf, p)[0]
            if ix == want:
                return p
            if ix == _IX_EMPTY:
                raise CorruptPoolError(f"hash table at {d} lost the index of an entry")
            perturb >>= _PERTURB_SHIFT
            i = (i * 5 + perturb + 1) & mask

    def table_clear(self, d: int) -> None:
        buf = self.buf
        t = buf[d]
        for child in self._children(d, t, 0):
            if child > 0 and not child & 7:
                self.decref(child)
        old = self._internal(d, t)
        itab, ents = self._new_table_arrays(t, 8)
        self.store_i64(d + _HT_ITAB, itab)
        self.store_i64(d + _HT_ENTS, ents)
        self.store_i64(d + _HT_NENT, 0)
        self.store_u64(d + 8, 0)
        for r in old:
            self.free_after_commit(r)
        self._ixn.pop(d, None)
        if self.index_limit:
            self.table_indexes[d] = {}

    def table_entries(self, d: int) -> list[int]:
        """Flat list [h, k, (v,) ...] of the live and deleted entries, in order."""
        buf = self.buf
        nent = _q_unpack(buf, d + _HT_NENT)[0]
        if not nent:
            return []
        ents = _q_unpack(buf, d + _HT_ENTS)[0] + 16
        es = _esize(buf[d])
        return buf[ents : ents + es * nent].cast("q").tolist()

    # ------------------------------------------------------------------ deques
    def _deque_slots(self, off: int) -> Iterator[int]:
        buf = self.buf
        n = _Q_unpack(buf, off + 8)[0]
        cap = _q_unpack(buf, off + _DQ_CAP)[0]
        items = _q_unpack(buf, off + _DQ_ITEMS)[0] + 16
        head = _q_unpack(buf, off + _DQ_HEAD)[0]
        for i in range(n):
            yield _q_unpack(buf, items + 8 * ((head + i) % cap))[0]

    # ------------------------------------------------------------------ diagnostics
    def note_parent(self, x: int, parent: int, key: Any, attr: bool = False) -> None:
        """Remember how the container at ``x`` was reached (for error messages)."""
        if x in self.live_proxies and x not in self.proxy_parents:
            self.proxy_parents[x] = (parent, key, attr)

    def path_of(self, off: int) -> str:
        """Best-effort access path of the object at ``off`` (for error messages)."""
        parts = []
        seen = 0
        while off in self.proxy_parents and seen < 64:
            off, key, attr = self.proxy_parents[off]
            parts.append(f".{key}" if attr else f"[{key!r}]")
            seen += 1
        return "root" + "".join(reversed(parts))

    def count_objects(self) -> dict[str, int]:
        """Objects reachable from the root, by type name (walks the whole graph)."""
        counts: dict[str, int] = {}
        seen: set[int] = set()
        stack = [_q_unpack(self.buf, self._meta + L.META_ROOT)[0]]
        buf = self.buf
        while stack:
            x = stack.pop()
            if x <= 0 or x & 7 or x in seen:
                continue
            seen.add(x)
            t, _c, _f, _rc, aux = _hdr_unpack(buf, x)
            name = L.TYPE_NAMES.get(t, str(t))
            counts[name] = counts.get(name, 0) + 1
            stack.extend(self._children(x, t, aux))
        return counts

