"""The operation log: a circular buffer in a region of the pool file.

Layout of the region (each line 64 bytes, so head and tail never share a cache line)::

    line 0   magic "PSMOPLOG", u32 version, u32 0, u64 capacity, u64 checksum
    line 1   u64 head   (written by the producer: end of the last committed entry),
             u64 epoch  (written by the producer when it starts: see OpLog.begin_epoch)
    line 2   u64 tail   (written by the consumer: end of what the PM copy has committed)
    data     capacity bytes of entries

Positions are logical byte counts that only grow; an entry at position ``p`` lives at
``p % capacity``.  An entry is 64-byte aligned: ``[u32 length][u32 checksum][u64 tagged position]``
then the payload.  The checksum is xxh32 of the payload seeded with the position, so a stale
entry from an earlier lap never passes for a new one.  The tagged position is the position
(below 2**48) with the writer's epoch (mod 2**15) in bits 48-62: every process that writes
the log starts a new epoch (:meth:`OpLog.begin_epoch`), so after a crash on a disk pool an
entry written before it, beyond the first torn one, is never read as one written after it
(see :meth:`OpLog.recover_end`).  An entry that would not fit before the
end of the buffer leaves a padding marker (length ``0xFFFFFFFF``) and goes to the start.

The producer appends entries (flushing each) and commits a group with one fence and one
persist of the head; the log never overwrites bytes between the tail and the head.  The
consumer reads entries below the head and advances the tail once it has committed them.
"""

from __future__ import annotations

import os
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from xxhash import xxh3_64_intdigest, xxh32_intdigest

from .device import Device
from .errors import CorruptPoolError, LogFullError
from .native import FAST
from .opcodec import encode_group

MAGIC = b"PSMOPLOG"
VERSION = 2  # (1: made before epochs; its epoch word 0 until its first begin_epoch)
_HDR = struct.Struct("<8sIIQ")  # magic, version, 0, capacity; checksum at +24
_POS_BITS = 48
_POS_MASK = (1 << _POS_BITS) - 1
_EPOCH_TAGS = 1 << 15  # (bits 48-62 of an entry's position word: the epoch mod 2**15)
_POSITIONS_USED_UP = (
    "the operation log's positions are used up (2**48 bytes logged over the pool's life): "
    "the pool takes no more writes; copy its data into a new pool")
_ENT = struct.Struct("<IIQ")
_Q = struct.Struct("<Q")


# Head and tail are read by one process while the other writes them.  struct.pack_into
# zero-fills its field before writing it (and the "<" formats go byte by byte), so a reader
# could see a torn value such as 0; an 8-byte slice copy is one aligned load or store.
def _load64(buf: memoryview, off: int) -> int:
    return int.from_bytes(buf[off : off + 8], "little")


def _store64(buf: memoryview, off: int, v: int) -> None:
    buf[off : off + 8] = v.to_bytes(8, "little")


_PAD = 0xFFFFFFFF
# the compiled reader of an entry that passes its checks (None: every read in Python)
_fast_read = getattr(FAST, "log_read", None)
_put_group = getattr(FAST, "log_put_group", None)  # (None: groups are joined, then appended)
_HEAD = 64
_TAIL = 128
_DATA = 192


class CommitTicket:
    """One commit of a disk pool's log being written (see :meth:`OpLog.commit_begin`)."""

    __slots__ = ("runs", "res", "written", "error", "writer")

    def __init__(self, runs: list[tuple[int, bytes]], res: int, writer: Any = None) -> None:
        self.runs = runs
        self.res = res  # the head once it is written
        # written by commit_write (any thread), or by the background writer it was handed
        self.writer = writer
        self.written = threading.Event() if writer is None else None
        self.error: BaseException | None = None


class OpLog:
    """The operation log in ``[base, base+size)`` of ``dev``."""

    def __init__(self, dev: Device, base: int, size: int) -> None:
        self.dev = dev
        self.base = base
        buf = dev.buf
        if size < _DATA + 64 or base + size > dev.size:
            raise CorruptPoolError(f"operation log region [{base}, +{size}) does not fit")
        magic, version, _z, capacity = _HDR.unpack_from(buf, base)
        chk = _Q.unpack_from(buf, base + 24)[0]
        if magic != MAGIC:
            raise CorruptPoolError("the operation log has not been formatted (bad magic)")
        if version not in (1, VERSION) or chk != xxh3_64_intdigest(buf[base : base + 24]):
            raise CorruptPoolError("the operation log header is damaged or of another version")
        if capacity != (size - _DATA) // 64 * 64:
            raise CorruptPoolError("the operation log header does not match its region")
        self.capacity = capacity
        self._head_at = base + _HEAD
        self._epoch_at = base + _HEAD + 8
        self.epoch = _load64(buf, self._epoch_at)
        self._tag = (self.epoch % _EPOCH_TAGS) << _POS_BITS
        self._tail_at = base + _TAIL
        self._data = base + _DATA
        # On a disk pool (dev.writes_through) the entries go to the file at the commit, with
        # one synced write, and the head is written after that, unsynced: it is made
        # durable by the next commit's sync, so after a power loss it may lag the durable
        # entries (recover_end finds them).  Nothing is stored into the mapping there.
        self._through = dev.writes_through
        self._runs: list[list] = []  # (disk pools) entries staged until the commit
        # (disk pools) the commits being written, oldest first; see background_commits()
        self._inflight: deque[CommitTicket] = deque()
        self.in_flight = 1  # how many may be
        self._free_writers: list[Any] = []  # compiled writers with nothing in flight
        self._signal: int | None = None  # the eventfd they share
        head = self.head
        if self.tail > head and not self._through:
            raise CorruptPoolError(f"operation log tail {self.tail} is beyond its head {head}")
        self._res = head  # end of appended (possibly uncommitted) entries
        self._committed = head  # the head as this process last wrote it (one producer)
        self._begun = head  # the end of what the last commit begun covers
        self._head_seen = head  # the head as a reader last loaded it (it only grows)
        # a tmpfs pool that persists by no flush at all (docs/device.md): skip the calls
        self._persists = not dev.persists_nothing
        self._tail_seen = self.tail  # the tail only grows: a stale copy errs on the safe side
        self.full_waits = 0
        self.full_wait_seconds = 0.0

    @staticmethod
    def format(dev: Device, base: int, size: int) -> None:
        """Write an empty log into the region (persisted)."""
        capacity = (size - _DATA) // 64 * 64
        if capacity < 64:
            raise ValueError("operation log region too small")
        buf = dev.buf
        buf[base : base + _DATA] = bytes(_DATA)
        _HDR.pack_into(buf, base, MAGIC, VERSION, 0, capacity)
        _Q.pack_into(buf, base + 24, xxh3_64_intdigest(buf[base : base + 24]))
        dev.persist(base, _DATA)

    def begin_epoch(self) -> int:
        """Start this process's epoch (the producer calls it once, after any recovery and
        before its first append): the log's epoch word goes up by one and is made durable
        (one aligned 8-byte store: a crash leaves the old epoch or the new, never a torn
        header), and every entry appended from now on carries it.  Returns the new epoch.

        Why: on a disk pool the synced writes of a commit (several commits, when they
        overlap) may reach the disk in any order, so a power loss can leave a torn entry
        with whole, valid entries after it.  Recovery ends the log at the torn one; the
        valid ones after it were never acknowledged, and must never be read later, when
        new entries happen to end exactly where one of them starts.  They carry the old
        epoch, and :meth:`recover_end` reads on only over entries of the log's."""
        if self._inflight:
            raise ValueError("begin_epoch with a commit in flight")
        epoch = self.epoch + 1
        dev = self.dev
        if self._through:
            dev.write(self._epoch_at, epoch.to_bytes(8, "little"))
            dev.sync()
        else:
            _store64(dev.buf, self._epoch_at, epoch)
            dev.persist(self._epoch_at, 8)
        self.epoch = epoch
        self._tag = (epoch % _EPOCH_TAGS) << _POS_BITS
        return epoch

    # ------------------------------------------------------------------ positions
    @property
    def head(self) -> int:
        """Position after the last committed entry (persisted)."""
        return _load64(self.dev.buf, self._head_at)

    @property
    def tail(self) -> int:
        """Position up to which the consumer has committed (persisted)."""
        return _load64(self.dev.buf, self._tail_at)

    @property
    def committed_head(self) -> int:
        """The head as this process (the one producer) last committed it: the position
        after the last entry this process made durable (no read of the pool)."""
        return self._committed

    @property
    def head_seen(self) -> int:
        """The head as a reader of this log last loaded it (it only grows): entries below
        it are committed."""
        return self._head_seen

    @property
    def data_start(self) -> int:
        """Offset in the device of the first byte of the log's entry area."""
        return self._data

    @property
    def writes_through(self) -> bool:
        """True on a disk pool: entries go to the file at the commit (docs/device.md)."""
        return self._through

    @property
    def pending(self) -> int:
        """Bytes appended but not yet committed."""
        return self._res - self._committed  # (the head as this producer wrote it last)

    def used(self) -> int:
        """Bytes between tail and head."""
        return self.head - self.tail

    # ------------------------------------------------------------------ producer
    def _wait_free(self, need: int, wait: Callable[[], None] | None) -> None:
        cap = self.capacity
        self._tail_seen = tail = self.tail
        if cap - (self._res - tail) >= need:
            return
        if wait is None:
            raise LogFullError(
                f"the operation log is full ({cap} bytes; {self._res - self.tail} in use)"
            )
        t0 = time.perf_counter()
        self.full_waits += 1
        while cap - (self._res - self.tail) < need:
            wait()
        self._tail_seen = self.tail
        self.full_wait_seconds += time.perf_counter() - t0

    def append(self, payload: bytes, *, wait: Callable[[], None] | None = None) -> int:
        """Append one entry (flushed, not yet committed); returns the position after it.

        When the log is full, ``wait()`` is called until the consumer frees space; without
        ``wait``, :class:`LogFullError` is raised.  An entry larger than the whole log raises
        :class:`LogFullError` at once.
        """
        if self._through:
            return self._append_through(payload, wait)
        ln = len(payload)
        n = (16 + ln + 63) & ~63
        cap = self.capacity
        pos = self._res
        off = pos % cap
        if off + n <= cap and pos + n - self._tail_seen <= cap:
            # fast path: no wrap, and room even by the last tail we saw
            dev = self.dev
            buf = dev.buf
            a = self._data + off
            _ENT.pack_into(buf, a, ln, xxh32_intdigest(payload, pos & 0xFFFFFFFF),
                           pos | self._tag)
            buf[a + 16 : a + 16 + ln] = payload
            if self._persists:
                dev.flush(a, 16 + ln)
            self._res = pos = pos + n
            return pos
        if n > cap:
            raise LogFullError(
                f"an operation of {ln} bytes does not fit in the {cap}-byte operation log "
                "(create the pool with a larger log_size)"
            )
        pos = self._res
        off = pos % cap
        dev = self.dev
        if off + n > cap:
            pad = cap - off
            self._wait_free(pad, wait)
            a = self._data + off
            _ENT.pack_into(dev.buf, a, _PAD, 0, pos | self._tag)
            dev.flush(a, 16)
            pos += pad
            self._res = pos
            off = 0
        self._wait_free(n, wait)
        buf = dev.buf
        a = self._data + off
        _ENT.pack_into(buf, a, ln, xxh32_intdigest(payload, pos & 0xFFFFFFFF), pos | self._tag)
        buf[a + 16 : a + 16 + ln] = payload
        dev.flush(a, 16 + ln)
        self._res = pos + n
        return self._res

    def _append_through(self, payload: bytes, wait: Callable[[], None] | None) -> int:
        # append() on a disk pool: the entry (and a padding marker) is staged here and
        # written at the commit, with one synced write of the range (see commit())
        ln = len(payload)
        n = (16 + ln + 63) & ~63
        cap = self.capacity
        if n > cap:
            raise LogFullError(
                f"an operation of {ln} bytes does not fit in the {cap}-byte operation log "
                "(create the pool with a larger log_size)"
            )
        pos = self._res
        off = pos % cap
        if off + n > cap:
            pad = cap - off
            self._wait_free(pad, wait)
            self._stage(self._data + off, _ENT.pack(_PAD, 0, pos | self._tag))
            pos += pad
            self._res = pos
            off = 0
        if pos + n - self._tail_seen > cap:
            self._wait_free(n, wait)
        self._stage(self._data + off,
                    _ENT.pack(ln, xxh32_intdigest(payload, pos & 0xFFFFFFFF), pos | self._tag)
                    + payload
                    + bytes(n - 16 - ln))
        self._res = pos = pos + n
        return pos

    def _stage(self, a: int, data: bytes) -> None:
        runs = self._runs
        if runs and runs[-1][0] + runs[-1][1] == a:
            runs[-1][1] += len(data)
            runs[-1][2].append(data)
        else:
            runs.append([a, len(data), [data]])

    def append_group(self, payloads: list[bytes], ln: int, *,
                     wait: Callable[[], None] | None = None) -> int:
        """``append(encode_group(payloads))``, ``ln`` being that group's length in bytes.
        With the compiled module the group is written straight into the log (no payload of
        the whole group is built and copied); the bytes in the log are the same."""
        n = (16 + ln + 63) & ~63
        cap = self.capacity
        pos = self._res
        off = pos % cap
        if (_put_group is not None and off + n <= cap and pos + n - self._tail_seen <= cap
                and not self._through):
            a = self._data + off
            if _put_group(self.dev.buf, a, pos | self._tag, payloads, ln):
                if self._persists:
                    self.dev.flush(a, 16 + ln)
                self._res = pos = pos + n
                return pos
        return self.append(encode_group(payloads), wait=wait)

    def commit(self) -> int:
        """Make every appended entry durable and publish it: one fence, one head persist."""
        if self._inflight:
            self.commit_end(self._inflight[-1])
        res = self._res
        if res == self._committed:
            return res
        if res > _POS_MASK:
            raise LogFullError(_POSITIONS_USED_UP)
        dev = self.dev
        if self._through:  # (no ticket: its Event cost more than the rest of a commit)
            runs = self._staged()
            self._runs = []
            self._write_through(runs, res)
            self._committed = self._begun = res
            return res
        if self._persists:
            dev.drain()
        _store64(dev.buf, self._head_at, res)
        if self._persists:
            dev.persist(self._head_at, 8)
        self._committed = self._begun = res
        return res

    # ---------------------------------------------------- overlapped commits (disk)
    # On a disk pool the commit is a synced write that takes the disk's time (0.1-0.5 ms
    # here); a server can overlap it with more requests: ``commit_begin`` (the producer's
    # thread) stages everything appended so far, ``commit_write`` (any thread: I/O only)
    # makes it durable, ``commit_end`` (the producer's thread: it waits) publishes the head
    # and records it.  Up to ``in_flight`` commits are written at once (the disk serves
    # several synced writes together: docs/device.md); they end in the order they began,
    # each ``commit_end`` ending every earlier one first, so the head only ever covers
    # entries whose writes are over.  ``commit`` ends every one in flight first.

    def commit_begin(self) -> CommitTicket | None:
        """Stage every entry appended since the last commit began for
        :meth:`commit_write` (disk pools only); None when there is none.  With
        :attr:`in_flight` commits already in flight, the oldest is ended first (waited
        for)."""
        if not self._through:
            raise ValueError("overlapped commits are for disk pools (writes_through)")
        inflight = self._inflight
        while len(inflight) >= self.in_flight:
            self.commit_end(inflight[0])
        res = self._res
        if res == self._begun:
            return None
        if res > _POS_MASK:
            raise LogFullError(_POSITIONS_USED_UP)
        writer = None
        if self._signal is not None:
            free = self._free_writers
            writer = free.pop() if free else self.dev.background_writer(self._signal)
        ticket = CommitTicket(self._staged(), res, writer)
        self._runs = []
        self._begun = res
        inflight.append(ticket)
        if writer is not None:  # the ranges of _write_through, in its thread (no head)
            writer.submit(ticket.runs, -1, b"")
        return ticket

    def background_commits(self, in_flight: int = 1) -> int | None:
        """Let up to ``in_flight`` commits started by :meth:`commit_begin` be written at
        once, and have threads that never take the GIL write them
        (``persimmon._commitio``: on a disk pool, when it was built).  Returns a
        descriptor that becomes readable when one of them is written (then
        :meth:`clear_signal`, and :meth:`commit_end` those :meth:`commit_written` says
        are), or None when there are no such threads: call :meth:`commit_write` from
        threads of your own (up to ``in_flight`` at once)."""
        if in_flight < 1:
            raise ValueError("in_flight must be at least 1")
        if self._inflight:
            self.commit_end(self._inflight[-1])
        self.in_flight = in_flight
        if self._signal is None and self._through:
            make = getattr(self.dev, "background_writer", None)
            if make is not None:
                efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
                writer = make(efd)
                if writer is None:
                    os.close(efd)
                else:
                    self._signal = efd
                    self._free_writers.append(writer)
        return self._signal

    def clear_signal(self) -> None:
        """Empty the descriptor :meth:`background_commits` returned (call it when it is
        readable, before asking :meth:`commit_written`: a commit written after this call
        makes it readable again)."""
        try:
            os.eventfd_read(self._signal)  # type: ignore[arg-type]
        except BlockingIOError:
            pass

    @property
    def background(self) -> bool:
        """True once :meth:`background_commits` has threads writing the commits."""
        return self._signal is not None

    def commit_written(self, ticket: CommitTicket) -> bool:
        """True once ``ticket``'s writes are over (:meth:`commit_end` will not wait for
        them; it may still wait for an earlier commit's)."""
        if ticket.writer is not None:
            return ticket.writer.done()
        return ticket.written is None or ticket.written.is_set()

    def close_writer(self) -> None:
        """Finish the commits in flight and stop the background writers (before the
        pool's descriptors close)."""
        if self._inflight:
            self.commit_end(self._inflight[-1])
        for writer in self._free_writers:
            writer.close()
        self._free_writers = []
        if self._signal is not None:
            os.close(self._signal)
            self._signal = None

    def commit_write(self, ticket: CommitTicket) -> None:
        """The I/O of a commit (thread-safe against the producer appending meanwhile, and
        against other commits' writes): the synced writes of the staged ranges.  A ticket
        a background writer is writing needs no call (this returns at once)."""
        if ticket.writer is not None:
            return
        try:
            self._write_ranges(ticket.runs)
        except BaseException as e:
            ticket.error = e
            raise
        finally:
            ticket.written.set()  # type: ignore[union-attr]

    def _staged(self) -> list[tuple[int, bytes]]:
        # the staged entries as (file offset, bytes) ranges, one per contiguous run
        return [(a, chunks[0] if len(chunks) == 1 else b"".join(chunks))
                for a, _n, chunks in self._runs]

    def _write_through(self, runs: list[tuple[int, bytes]], res: int) -> None:
        self._write_ranges(runs)
        self._publish_head(res)

    def _write_ranges(self, runs: list[tuple[int, bytes]]) -> None:
        # One synced write per range (O_DSYNC: only that range is written back, not what
        # the shadow wrote into the file meanwhile)
        dev = self.dev
        for a, data in runs:
            dev.write_sync(a, data)

    def _publish_head(self, res: int) -> None:
        # (disk pools) the head, written unsynced: it reaches the disk when the whole file
        # is next synced (after a power loss recovery reads on past it: recover_end)
        self.dev.write(self._head_at, res.to_bytes(8, "little"))

    def _wait_written(self, ticket: CommitTicket) -> None:
        # wait for one ticket's writes; its writer goes back to the free ones
        writer = ticket.writer
        if writer is not None:
            try:
                writer.finish()
            except OSError as e:
                ticket.error = e
            ticket.writer = None
            self._free_writers.append(writer)
        elif ticket.written is not None:
            ticket.written.wait()
        ticket.written = None  # (over: commit_written says True from now on)

    def commit_end(self, ticket: CommitTicket) -> None:
        """Wait for the writes of ``ticket`` and of every commit begun before it, publish
        the head (unsynced, as in :meth:`commit`) and record them (idempotent).  Raises a
        write's error: the entries are then not known to be durable (nothing may be
        acknowledged)."""
        inflight = self._inflight
        if ticket not in inflight:
            if ticket.error is not None:
                raise ticket.error
            return
        while True:
            first = inflight[0]
            self._wait_written(first)
            if first.error is not None:
                for later in inflight:  # (nothing after a failed write is durable either)
                    later.error = later.error or first.error
                raise first.error
            inflight.popleft()
            if first is ticket:
                break
        self._publish_head(ticket.res)
        self._committed = ticket.res

    # ------------------------------------------------------------------ consumer
    def read(self, pos: int) -> tuple[bytes | None, int] | None:
        """``(payload, next position)`` of the entry at ``pos``, or None at the head.

        A padding marker that ends exactly at the head (the writer wrapped, committed, and
        waits for the space its next entry needs, or gave up waiting) reads as
        ``(None, head)``: nothing to apply, and a consumer must move past it, or the space
        the writer waits for would never be freed."""
        head = self._head_seen
        if pos >= head:  # load the head only when what we saw of it is used up
            head = self._head_seen = _load64(self.dev.buf, self._head_at)
            if pos >= head:
                return None
        cap = self.capacity
        buf = self.dev.buf
        if _fast_read is not None and (r := _fast_read(buf, self._data, cap, pos)) is not None:
            return r
        off = pos % cap
        a = self._data + off
        ln, chk, epos = _ENT.unpack_from(buf, a)
        if ln == _PAD:
            pos += cap - off
            if pos >= head:
                head = self._head_seen = _load64(buf, self._head_at)
                if pos == head:
                    return None, pos
                if pos > head:
                    raise CorruptPoolError(
                        f"operation log padding at position {pos - cap + off} runs past the "
                        f"head ({head})")
            a = self._data
            ln, chk, epos = _ENT.unpack_from(buf, a)
        n = (16 + ln + 63) & ~63
        if epos & _POS_MASK != pos or n > cap:
            raise CorruptPoolError(f"operation log entry at position {pos} is damaged")
        payload = bytes(buf[a + 16 : a + 16 + ln])
        if xxh32_intdigest(payload, pos & 0xFFFFFFFF) != chk:
            raise CorruptPoolError(
                f"operation log entry at position {pos} fails its checksum"
            )
        return payload, pos + n

    def entries(self, start: int, end: int | None = None) -> Iterator[tuple[int, bytes]]:
        """``(position after the entry, payload)`` for each entry from ``start`` to ``end``."""
        if end is None:
            end = self.head
        pos = start
        while pos < end:
            r = self.read(pos)
            if r is None:
                return
            payload, pos = r
            if payload is not None:  # (None: a padding marker at the head)
                yield pos, payload

    def set_tail(self, pos: int) -> None:
        """Persist the tail: the space before ``pos`` may be reused."""
        if self._through:
            # after the PM copy's write-back that covers ``pos`` (persimmon.filedevice)
            self.dev.write_ordered(self._tail_at, pos.to_bytes(8, "little"))
            return
        _store64(self.dev.buf, self._tail_at, pos)
        self.dev.persist(self._tail_at, 8)

    def _valid_at(self, pos: int) -> int | None:
        # the position after a whole, valid entry (or padding marker) at ``pos``, else None
        cap = self.capacity
        buf = self.dev.buf
        off = pos % cap
        a = self._data + off
        ln, chk, epos = _ENT.unpack_from(buf, a)
        if epos != pos | self._tag:  # (an entry of another epoch: see begin_epoch)
            return None
        if ln == _PAD:
            return pos + cap - off if chk == 0 else None
        n = (16 + ln + 63) & ~63
        if off + n > cap or xxh32_intdigest(buf[a + 16 : a + 16 + ln], pos & 0xFFFFFFFF) != chk:
            return None
        return pos + n

    def recover_end(self, start: int = 0) -> int:
        """On a disk pool, after a crash: the head may lag the entries that were durable
        (see ``__init__``); read on from it over whole, valid entries, store the end found
        as the head, make it durable and return it.  An entry left torn by the crash was
        never acknowledged (its commit's sync had not returned) and ends the log.
        ``start``: the PM copy's position (the tail on the file may lag it)."""
        floor = max(self.tail, start)
        end = max(self.head, floor)
        while end - floor < self.capacity:
            nxt = self._valid_at(end)
            if nxt is None:
                break
            end = nxt
        if end != self.head:
            self._publish_head(end)
            self.dev.sync()
        self._res = self._committed = self._begun = self._head_seen = end
        return end

    # ------------------------------------------------------------------ waiting helpers
    def wait_for_entries(self, pos: int, timeout: float | None = None) -> bool:
        """Poll until :meth:`read` finds something at ``pos`` (an entry, or a padding
        marker at the head, read as ``(None, next position)``); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.00005
        while self.read(pos) is None:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.001)
        return True

    def wait_for_space(self, needed: int, timeout: float | None = None) -> bool:
        """Poll until ``needed`` bytes are free; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.00005
        while self.capacity - (self._res - self.tail) < needed:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.001)
        return True
