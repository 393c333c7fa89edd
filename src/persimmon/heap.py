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

``Heap`` is a facade over the modules it is assembled from, one concern each (it inherits
their classes; all of them share the one instance and its state, set up here):
:mod:`~persimmon.allocator` (chunks), :mod:`~persimmon.writeset` (undo-logged stores),
:mod:`~persimmon.refcounts` (reference counts, slot stores, reclamation),
:mod:`~persimmon.graphwalk` (the walk at open, salvage), :mod:`~persimmon.loading` (slots
to Python values), :mod:`~persimmon.convert` (Python values to PM),
:mod:`~persimmon.hashtable` (dicts and sets) and :mod:`~persimmon.dramindex` (their DRAM
index).  The proxies use the heap through :class:`persimmon.proxyheap.ProxyHeap`.
"""

from __future__ import annotations

from typing import Any

from . import layout as L
from . import native
from .allocator import Allocator, write_header
from .convert import Conversion
from .device import Device
from .dramindex import DramIndex, index_limit_from_env
from .errors import CorruptPoolError
from .graphwalk import GraphWalk
from .hashtable import (
    HashTables,
    _rehash,  # noqa: F401  (re-exported: the tests compare it with C)
)
from .loading import ClassNotFoundError, Loading
from .pool import Pool
from .refcounts import RefCounts
from .undolog import UndoLog
from .writeset import WriteSet

_q_unpack = L.S_q.unpack_from

# The compiled module, loaded and checked by persimmon.native, and layout tables
# (re-exported here for the modules and tests that know them by these names)
FAST_API = native.API
_PROBE_OVER = native.PROBE_OVER
pure_python_requested = native.pure_python_requested
_configure_fast_path = native.configure
FAST = native.FAST
_SMALL_TABLE = L._SMALL_TABLE
_CLASS_SIZES = L.CLASS_SIZES
_LEAVES = L.LEAVES

__all__ = ["FAST", "ClassNotFoundError", "Heap"]


class Heap(Allocator, WriteSet, RefCounts, GraphWalk, Loading, Conversion, HashTables,
           DramIndex):
    """A persistent object heap in a pool file.  Create with :meth:`create`, :meth:`open`."""

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
        self.index_limit = index_limit_from_env()
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
            write_header(buf, m, L.T_META, L.size_class(L.META_SIZE), 0, 1, 0)
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

    @property
    def root(self) -> Any:
        """The root object: a proxy for containers and objects, a value otherwise."""
        x = _q_unpack(self.buf, self._meta + L.META_ROOT)[0]
        return self.load(x)

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
        logged = self._logged
        if not dev.persists_nothing:
            runs = []
            if logged:
                logged.sort()
                start = prev = logged[0]
                for b in logged:
                    if b > prev + 1:
                        runs.append((start << 5, (prev - start + 1) << 5))
                        start = b
                    prev = b
                runs.append((start << 5, (prev - start + 1) << 5))
            if self._top > self._ctop:
                runs.append((self._ctop, self._top - self._ctop))
            flush_ranges = dev.flush_ranges
            flush_ranges(runs)
            flush_ranges(self._fresh)
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
