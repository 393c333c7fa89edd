"""The heap's DRAM index of hash tables: per table a native dict from key to entry.

Never persisted, exact (every live key of its table, in entry order), only for tables whose
keys have native equality (``hashing.INDEX_KEY_TYPES``), bounded in memory
(``index_limit``, a budget of additions), built once a table has been probed about len/16
times.  Why each of these: docs/heap.md, "The DRAM index of hash tables".

A part of :class:`persimmon.heap.Heap` (which inherits it); its methods use the heap's
state, set up by ``Heap.__init__``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from . import layout as L
from . import native
from .errors import PersimmonError
from .hashing import INDEX_KEY_TYPES

_q_unpack = L.S_q.unpack_from
_Q_unpack = L.S_Q.unpack_from
_NONE, _FALSE, _TRUE, _DUMMY = L.NONE, L.FALSE, L.TRUE, L.DUMMY
_HT_NENT, _HT_ITAB, _HT_ENTS, _HT_SIZE = L.HT_NENT, L.HT_ITAB, L.HT_ENTS, L.HT_SIZE
_PROBE_OVER = native.PROBE_OVER
_IXT = INDEX_KEY_TYPES  # key types a table's DRAM index holds (hashing.py)


_NEVER = -(1 << 62)  # probe count of a table that is not to be indexed (until cleared)


NO_KEY = object()


def index_limit_from_env() -> int:
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


class DramIndex:
    """The heap's DRAM index of hash tables: per table a native dict from key to entry.

    State used (set by ``Heap.__init__``): _ix_adds, _ix_budget, _ixn, buf, fast,
    index_limit, table_indexes."""

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

    def _ix_new(self, d: int) -> None:
        """Table ``d`` is new or was just cleared: it starts indexed (empty) when indexes
        are on, and its probe count starts again."""
        self._ixn.pop(d, None)
        if self.index_limit:
            self.table_indexes[d] = {}

    def _ix_forget(self, d: int) -> None:
        """Table ``d``'s chunk is freed (it may become another table after the commit)."""
        self.table_indexes.pop(d, None)
        self._ixn.pop(d, None)

    def _ix_moved(self, d: int, base: int, es: int) -> None:
        """Table ``d``'s live entries were moved, in order, to consecutive entries of ``es``
        bytes from ``base`` (a resize): renumber its index, or drop it when the table has
        grown past an index's use."""
        ix = self.table_indexes.get(d)
        if ix is None:
            return
        if self._probed_instead(ix):
            del self.table_indexes[d]
            self._ixn[d] = _NEVER
        else:
            self.table_indexes[d] = dict(zip(ix, range(base, base + es * len(ix), es),
                                             strict=True))

    def _ix_remove(self, d: int, key: Any) -> None:
        """The entry of ``key`` left table ``d`` (``NO_KEY``: a key not known; the index
        is dropped)."""
        ix = self.table_indexes.get(d)
        if ix is not None:
            if key is not NO_KEY and type(key) in _IXT:
                del ix[key]
            else:
                del self.table_indexes[d]

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
            es = L.entry_size(self.buf[d])
            base = _q_unpack(self.buf, d + _HT_ENTS)[0] + 16
            w = es >> 3
            want = [(self.load(flat[j]), base + (j - 1) * 8)
                    for j in range(1, len(flat), w) if flat[j] != _DUMMY]
            got = list(ix.items())
            if [(type(k), k, e) for k, e in got] != [(type(k), k, e) for k, e in want]:
                raise AssertionError(f"index of table {d} differs: {got[:5]} != {want[:5]}")
