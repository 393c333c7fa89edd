"""The heap's allocator: chunks from the DRAM free lists or bumped off the heap top.

Free lists live in DRAM only: a chunk is free when nothing reachable from the root refers to
it at the last commit, so the walk at open (:mod:`persimmon.graphwalk`) rebuilds them, and
memory handed out here is written without undo logging (it is marked exempt from the write
set, :mod:`persimmon.writeset`).  Also the header writer every new object goes through.

A part of :class:`persimmon.heap.Heap` (which inherits it); its methods use the heap's
state, set up by ``Heap.__init__``.
"""

from __future__ import annotations

from bisect import insort
from typing import Any

from . import layout as L
from .errors import PersimmonError, PoolFullError

_hdr_bytes = L.S_HDR.pack
_Q_unpack = L.S_Q.unpack_from
_BIG_FRESH = 4096  # fresh chunks at least this big are tracked as ranges, not block sets
_SMALL_TABLE = L._SMALL_TABLE
_CLASS_SIZES = L.CLASS_SIZES


def write_header(buf: Any, off: int, t: int, cls: int, flags: int, rc: int, aux: int) -> None:
    """Write the 16-byte object header at ``off``.

    The header is packed into a bytes object first and then copied in: every byte of the
    pool goes from its old value straight to its new one.  ``Struct.pack_into`` would
    zero-fill the destination before writing the fields, and a chunk reused from a free list
    is written without undo logging, so a SIGKILL between the two left a free chunk of size
    class 0 that rollback cannot restore (issue 20; docs/heap.md, "Stores that are not
    undo-logged").  ``cls`` is always the chunk's own class, so the class byte never changes.
    """
    buf[off : off + 16] = _hdr_bytes(t, cls, flags, rc, aux)


class Allocator:
    """The heap's allocator: chunks from the DRAM free lists or bumped off the heap top.

    State used (set by ``Heap.__init__``): _deferred, _flushes, _freelists, _fresh,
    _fresh_big, _nolog, _top, _writable, buf, dev, live_proxies, proxy_parents, stats."""

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
        write_header(self.buf, off, L.T_UNDOSEG, self.buf[off + 1], 0, 0, 0)
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
        write_header(buf, off, t, cls, 0, 0, n)
        buf[off + 16 : off + nb] = data
        return off

    def new_array(self, cap: int) -> int:
        off = self._alloc(16 + 8 * cap)
        buf = self.buf
        size = L.CLASS_SIZES[buf[off + 1]]
        write_header(buf, off, L.T_ARRAY, buf[off + 1], 0, 1, (size - 16) // 8)
        return off

    def array_capacity(self, arr: int) -> int:
        return _Q_unpack(self.buf, arr + 8)[0]
