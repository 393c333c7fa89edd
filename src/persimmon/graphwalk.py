"""The heap's walk at open: reachability from the root, reference counts, free lists, salvage.

Nothing read from the pool is trusted (docs/heap.md, "Salvage"): damage in the reachable
graph raises :class:`CorruptPoolError`; damaged free space is re-carved into valid free
chunks.  The compiled ``mark_slots`` does the checks of one container's slots when it is
there, and the Python twin names the damage where it declines.

A part of :class:`persimmon.heap.Heap` (which inherits it); its methods use the heap's
state, set up by ``Heap.__init__``.
"""

from __future__ import annotations

import logging
import re
import struct
from typing import Any

from . import layout as L
from .errors import CorruptPoolError, PersimmonError

_hdr_unpack = L.S_HDR.unpack_from
_q_unpack = L.S_q.unpack_from
_Q_unpack = L.S_Q.unpack_from
_NONE, _FALSE, _TRUE, _DUMMY = L.NONE, L.FALSE, L.TRUE, L.DUMMY
_CLASS_SIZES = L.CLASS_SIZES
_LEAVES = L.LEAVES
# Types a reachable slot may refer to, and types of the arrays behind containers
_VALUE_TYPES = L.VALUE_TYPES
_ARRAY_TYPES = frozenset({L.T_ARRAY, L.T_RAW})
_NCLASSES = L.NCLASSES


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


_log = logging.getLogger("persimmon.heap")


class GraphWalk:
    """The heap's walk at open: reachability from the root, reference counts, free lists, salvage.

    State used (set by ``Heap.__init__``): _arena, _ctop, _deferred, _freelists, _logged,
    _meta, _rc, _top, _zero, buf, dev, fast, salvaged, stats."""

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
