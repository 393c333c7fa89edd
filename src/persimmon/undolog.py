"""The undo log: old contents of 32-byte blocks, persisted before the block is overwritten.

Each entry is one 64-byte cache line ``[u64 addr][u64 batch][u64 checksum][u64 0][32 bytes]``.
An entry is *valid* for batch ``B`` when its batch field is ``B`` and its checksum matches;
entries are written in order and each is persisted before the store it protects, so the valid
entries of the batch in progress form a prefix of the log.  A commit record for batch ``B``
makes all of them stale at once (the next batch has another number), which is how the log is
"cleared" without touching it.

The primary region lives in the pool header area.  An operation larger than it does not fail:
further entries go to *spill segments* allocated at the top of the heap (memory that is free
as far as the last commit is concerned), chained from the segment before by a link that is
itself tagged with the batch number and a checksum.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xxhash import xxh3_64_intdigest

from . import layout as L
from . import native
from .device import Device

_MASK = (1 << 64) - 1
_GOLD = 0x9E3779B97F4A7C15
_ENT = L.S_UNDOENT
_LINK = L.S_UNDOLINK
_SEG_DATA = 64  # entries start one line into a segment (header/link line first)
_LINK_AT = 16  # in a spill segment the link follows the 16-byte chunk header


class UndoLog:
    """Undo log over a device region; ``spill_alloc(nbytes) -> (offset, size)`` gives segments."""

    def __init__(self, dev: Device, off: int, size: int,
                 spill_alloc: Callable[[int], tuple[int, int]]) -> None:
        self.dev = dev
        self.off = off
        self.size = size
        self.primary_capacity = (size - _SEG_DATA) // 64
        self._spill_alloc = spill_alloc
        self.batch = 0
        self.count = 0
        self.spilled: list[int] = []  # spill segments used by the batch in progress
        self._bmix = 0
        self._pos = off + _SEG_DATA
        self._end = off + size
        self._link_at = off
        self._seg_data = self._pos  # where the current segment's entries start
        self._filled: list[tuple[int, int]] = []  # the batch's segments left full
        self._persists = not dev.persists_nothing
        # Each entry flushed and fenced before the store it covers; not on a device whose
        # write-backs are atomic (Device.atomic_writeback): every write-back there, at
        # whatever moment, takes the batch's entries as they are then (batch_ranges), and
        # with them the blocks they cover, and nothing else needs them
        self._entry_fence = self._persists and not dev.atomic_writeback
        if self._persists and dev.atomic_writeback:
            dev.flushed_late = self.batch_ranges
        # The compiled module (its undo_log_block is log_block's one implementation beside
        # the heap's compiled stores), or None: the pure-Python twin below
        self.fast: Any = native.FAST

    def begin(self, batch: int) -> None:
        """Start logging for ``batch`` (the number its commit record will carry)."""
        self.batch = batch
        self._bmix = (batch * _GOLD) & _MASK
        self.count = 0
        self.spilled = []
        self._pos = self._seg_data = self.off + _SEG_DATA
        self._end = self.off + (self.size // 64) * 64
        self._link_at = self.off
        self._filled = []

    def batch_ranges(self) -> list[tuple[int, int]]:
        """``(offset, length)`` of every entry of the batch in progress (whole segments
        for those it filled): what a write-back on a device of atomic write-backs adds to
        the ranges flushed (``_entry_fence`` false)."""
        out = list(self._filled)
        if self._pos > self._seg_data:
            out.append((self._seg_data, self._pos - self._seg_data))
        return out

    def log_blocks(self, addrs: list[int]) -> None:
        """Persist the current contents of each 32-byte block at ``addrs`` as undo entries.

        Returns only when the entries are durable, so the caller may then overwrite the blocks
        (on a device of atomic write-backs: when every later write-back will carry them).
        """
        dev = self.dev
        buf = dev.buf
        pack = _ENT.pack_into
        batch = self.batch
        bmix = self._bmix
        pos = self._pos
        start = pos
        fence = self._entry_fence  # (else: written with the batch, batch_ranges)
        for a in addrs:
            if pos + 64 > self._end:
                if pos > start and fence:
                    dev.flush(start, pos - start)
                pos = self._spill()
                buf = dev.buf
                start = pos
            pack(buf, pos, a, batch, xxh3_64_intdigest(buf[a : a + 32], a ^ bmix), 0)
            buf[pos + 32 : pos + 64] = buf[a : a + 32]
            pos += 64
        self.count += len(addrs)
        self._pos = pos
        if fence:
            if pos > start:
                dev.flush(start, pos - start)
            dev.drain()

    def log_block(self, a: int) -> None:
        """:meth:`log_blocks` for one block (the common case of a single slot store).

        With the compiled module, its ``undo_log_block`` writes the entry: the same code
        that undo-logs the compiled stores' blocks, so the one entry writer is in C, and
        :meth:`_log_block_python` is its pure-Python twin (``PERSIMMON_PURE_PYTHON=1``,
        ``self.fast = None``, and a full segment, which spills), held to it byte for byte
        by ``tests/test_native_contract.py``."""
        fast = self.fast
        if fast is not None and fast.undo_log_block(self, a):
            return
        self._log_block_python(a)

    def _log_block_python(self, a: int) -> None:
        pos = self._pos
        if pos + 64 > self._end:
            self.log_blocks([a])
            return
        dev = self.dev
        buf = dev.buf
        blk = buf[a : a + 32]
        _ENT.pack_into(buf, pos, a, self.batch, xxh3_64_intdigest(blk, a ^ self._bmix), 0)
        buf[pos + 32 : pos + 64] = blk
        self._pos = pos + 64
        self.count += 1
        if self._entry_fence:
            dev.flush(pos, 64)
            dev.drain()

    def _spill(self) -> int:
        seg, size = self._spill_alloc(max(self.size, 1 << 20))
        buf = self.dev.buf
        link = self._link_at
        _LINK.pack_into(buf, link, L.UNDO_TAG, seg, self.batch,
                        xxh3_64_intdigest(_LINK.pack(L.UNDO_TAG, seg, self.batch, 0)))
        self.dev.persist(link, 32)
        self.spilled.append(seg)
        self._link_at = seg + _LINK_AT
        # invalidate a stale link inside the new segment before it can be followed
        buf[seg + _LINK_AT : seg + _LINK_AT + 32] = bytes(32)
        self.dev.flush(seg + _LINK_AT, 32)
        self._filled.append((self._seg_data, self._end - self._seg_data))
        self._end = seg + size
        self._seg_data = seg + _SEG_DATA
        return seg + _SEG_DATA

    # ------------------------------------------------------------------ recovery
    def valid_entries(self, batch: int) -> list[tuple[int, int]]:
        """``(block address, offset of saved data)`` of every valid entry of ``batch``."""
        buf = self.dev.buf
        out: list[tuple[int, int]] = []
        bmix = (batch * _GOLD) & _MASK
        pos = self.off + _SEG_DATA
        end = self.off + (self.size // 64) * 64
        link_at = self.off
        size_limit = self.dev.size
        while True:
            if pos + 64 > end:
                tag, seg, lbatch, chk = _LINK.unpack_from(buf, link_at)
                if (tag != L.UNDO_TAG or lbatch != batch
                        or chk != xxh3_64_intdigest(_LINK.pack(tag, seg, lbatch, 0))
                        or seg <= 0 or seg + _SEG_DATA > size_limit):
                    break
                cls = buf[seg + 1]
                seg_size = L.CLASS_SIZES[cls] if cls < L.NCLASSES else 0
                if seg_size < _SEG_DATA + 64 or seg + seg_size > size_limit:
                    break
                link_at = seg + _LINK_AT
                pos = seg + _SEG_DATA
                end = seg + seg_size
                continue
            a, b, chk, _ = _ENT.unpack_from(buf, pos)
            if b != batch or a + 32 > size_limit:
                break
            if chk != xxh3_64_intdigest(buf[pos + 32 : pos + 64], a ^ bmix):
                break
            out.append((a, pos + 32))
            pos += 64
        return out

    def rollback(self, batch: int) -> int:
        """Restore every block logged by ``batch`` (newest first); returns the entry count.

        Idempotent: a crash during rollback is repaired by rolling back again.
        """
        entries = self.valid_entries(batch)
        buf = self.dev.buf
        flush = self.dev.flush
        for a, data in reversed(entries):
            buf[a : a + 32] = buf[data : data + 32]
            flush(a, 32)
        self.dev.drain()
        return len(entries)
