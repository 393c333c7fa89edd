"""The heap's write set over the undo log: committed memory is undo-logged before a store.

A 32-byte block that existed at the last commit is saved in the undo log
(:mod:`persimmon.undolog`) once per batch before its first store; ``_nolog`` holds the blocks
already saved (or fresh in the batch), ``_logged`` the blocks to flush at commit, and
``_fresh_big`` the ranges of big chunks fresh in the batch.  The single-word and byte stores
here adjust no reference counts (:mod:`persimmon.refcounts` does).

A part of :class:`persimmon.heap.Heap` (which inherits it); its methods use the heap's
state, set up by ``Heap.__init__``.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

from . import layout as L
from .errors import PersimmonError

_q_pack = L.S_q.pack_into
_Q_pack = L.S_Q.pack_into
_I_pack = L.S_I.pack_into
_MASK64 = (1 << 64) - 1


class WriteSet:
    """The heap's write set over the undo log: committed memory is undo-logged before a store.

    State used (set by ``Heap.__init__``): _ctop, _fresh_big, _logged, _nolog, _writable,
    buf, undo."""

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
