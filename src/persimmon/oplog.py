"""The operation log: a circular buffer in a region of the pool file.

Layout of the region (each line 64 bytes, so head and tail never share a cache line)::

    line 0   magic "PSMOPLOG", u32 version, u32 0, u64 capacity, u64 checksum
    line 1   u64 head   (written by the producer: end of the last committed entry)
    line 2   u64 tail   (written by the consumer: end of what the PM copy has committed)
    data     capacity bytes of entries

Positions are logical byte counts that only grow; an entry at position ``p`` lives at
``p % capacity``.  An entry is 64-byte aligned: ``[u32 length][u32 checksum][u64 position]``
then the payload.  The checksum is xxh32 of the payload seeded with the position, so a stale
entry from an earlier lap never passes for a new one.  An entry that would not fit before the
end of the buffer leaves a padding marker (length ``0xFFFFFFFF``) and goes to the start.

The producer appends entries (flushing each) and commits a group with one fence and one
persist of the head; the log never overwrites bytes between the tail and the head.  The
consumer reads entries below the head and advances the tail once it has committed them.
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from xxhash import xxh3_64_intdigest, xxh32_intdigest

from .device import Device
from .errors import CorruptPoolError, LogFullError
from .native import FAST
from .opcodec import encode_group

MAGIC = b"PSMOPLOG"
VERSION = 1
_HDR = struct.Struct("<8sIIQ")  # magic, version, 0, capacity; checksum at +24
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
        if version != VERSION or chk != xxh3_64_intdigest(buf[base : base + 24]):
            raise CorruptPoolError("the operation log header is damaged or of another version")
        if capacity != (size - _DATA) // 64 * 64:
            raise CorruptPoolError("the operation log header does not match its region")
        self.capacity = capacity
        self._head_at = base + _HEAD
        self._tail_at = base + _TAIL
        self._data = base + _DATA
        # On a disk pool (dev.writes_through) the entries go to the file at the commit, with
        # one synced write, and the head is written after that, unsynced: it is made
        # durable by the next commit's sync, so after a power loss it may lag the durable
        # entries (recover_end finds them).  Nothing is stored into the mapping there.
        self._through = dev.writes_through
        self._runs: list[list] = []  # (disk pools) entries staged until the commit
        self._inflight: CommitTicket | None = None  # (disk pools) a commit being written
        self._writer: Any = None  # (disk pools) see background_commits()
        head = self.head
        if self.tail > head and not self._through:
            raise CorruptPoolError(f"operation log tail {self.tail} is beyond its head {head}")
        self._res = head  # end of appended (possibly uncommitted) entries
        self._committed = head  # the head as this process last wrote it (one producer)
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
            _ENT.pack_into(buf, a, ln, xxh32_intdigest(payload, pos & 0xFFFFFFFF), pos)
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
            _ENT.pack_into(dev.buf, a, _PAD, 0, pos)
            dev.flush(a, 16)
            pos += pad
            self._res = pos
            off = 0
        self._wait_free(n, wait)
        buf = dev.buf
        a = self._data + off
        _ENT.pack_into(buf, a, ln, xxh32_intdigest(payload, pos & 0xFFFFFFFF), pos)
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
            self._stage(self._data + off, _ENT.pack(_PAD, 0, pos))
            pos += pad
            self._res = pos
            off = 0
        if pos + n - self._tail_seen > cap:
            self._wait_free(n, wait)
        self._stage(self._data + off,
                    _ENT.pack(ln, xxh32_intdigest(payload, pos & 0xFFFFFFFF), pos) + payload
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
            if _put_group(self.dev.buf, a, pos, payloads, ln):
                if self._persists:
                    self.dev.flush(a, 16 + ln)
                self._res = pos = pos + n
                return pos
        return self.append(encode_group(payloads), wait=wait)

    def commit(self) -> int:
        """Make every appended entry durable and publish it: one fence, one head persist."""
        if self._inflight is not None:
            self.commit_end(self._inflight)
        res = self._res
        if res == self._committed:
            return res
        dev = self.dev
        if self._through:  # (no ticket: its Event cost more than the rest of a commit)
            runs = self._staged()
            self._runs = []
            self._write_through(runs, res)
            self._committed = res
            return res
        if self._persists:
            dev.drain()
        _store64(dev.buf, self._head_at, res)
        if self._persists:
            dev.persist(self._head_at, 8)
        self._committed = res
        return res

    # ---------------------------------------------------- overlapped commits (disk)
    # On a disk pool the commit is a synced write that takes the disk's time (about 0.1 ms
    # on an SSD); a server can overlap it with more requests: ``commit_begin`` (the
    # producer's thread) stages everything appended so far, ``commit_write`` (any thread:
    # I/O only) makes it durable and publishes the head, ``commit_end`` (the producer's
    # thread, after it: it waits) records it.  One is in flight at a time; ``commit``
    # finishes one in flight before it writes anything.

    def commit_begin(self) -> CommitTicket | None:
        """Stage every appended entry for :meth:`commit_write` (disk pools only); None when
        nothing was appended since the last commit."""
        if not self._through:
            raise ValueError("overlapped commits are for disk pools (writes_through)")
        if self._inflight is not None:
            self.commit_end(self._inflight)
        res = self._res
        if res == self._committed:
            return None
        writer = self._writer
        ticket = CommitTicket(self._staged(), res, writer)
        self._runs = []
        self._inflight = ticket
        if writer is not None:  # the same writes as _write_through, in its thread
            writer.submit(ticket.runs, self._head_at, res.to_bytes(8, "little"))
        return ticket

    def background_commits(self) -> int | None:
        """Have a thread that never takes the GIL write the commits :meth:`commit_begin`
        starts from now on (``persimmon._commitio``: on a disk pool, when it was built):
        returns a descriptor that becomes readable when the commit in flight is written
        (:meth:`commit_written`; then :meth:`commit_end` it), or None when there is no
        such thread (call :meth:`commit_write` from a thread of your own)."""
        if self._writer is None and self._through:
            make = getattr(self.dev, "background_writer", None)
            self._writer = make() if make is not None else None
        return self._writer.fileno() if self._writer is not None else None

    @property
    def background(self) -> bool:
        """True once :meth:`background_commits` has a thread writing the commits."""
        return self._writer is not None

    def commit_written(self, ticket: CommitTicket) -> bool:
        """True once ``ticket``'s writes are over (:meth:`commit_end` will not wait)."""
        if ticket.writer is not None:
            return ticket is not self._inflight or ticket.writer.done()
        return ticket.written.is_set()  # type: ignore[union-attr]

    def close_writer(self) -> None:
        """Finish the commit in flight and stop the background writer (before the pool's
        descriptors close)."""
        if self._inflight is not None:
            self.commit_end(self._inflight)
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def commit_write(self, ticket: CommitTicket) -> None:
        """The I/O of a commit (thread-safe against the producer appending meanwhile): the
        synced writes of the staged ranges, then the head (see ``_write_through``).  A
        ticket the background writer is writing needs no call (this returns at once)."""
        if ticket.writer is not None:
            return
        try:
            self._write_through(ticket.runs, ticket.res)
        except BaseException as e:
            ticket.error = e
            raise
        finally:
            ticket.written.set()

    def _staged(self) -> list[tuple[int, bytes]]:
        # the staged entries as (file offset, bytes) ranges, one per contiguous run
        return [(a, chunks[0] if len(chunks) == 1 else b"".join(chunks))
                for a, _n, chunks in self._runs]

    def _write_through(self, runs: list[tuple[int, bytes]], res: int) -> None:
        # One synced write per range (O_DSYNC: only that range is written back, not what
        # the shadow wrote into the file meanwhile), then the head, unsynced: made durable
        # by the next commit's sync (after a power loss recovery finds entries past it).
        dev = self.dev
        for a, data in runs:
            dev.write_sync(a, data)
        dev.write(self._head_at, res.to_bytes(8, "little"))

    def commit_end(self, ticket: CommitTicket) -> None:
        """Wait for ``ticket``'s write and record it (idempotent).  Raises the write's
        error: the entries are then not known to be durable (nothing may be acknowledged)."""
        if self._inflight is not ticket:
            if ticket.error is not None:
                raise ticket.error
            return
        if ticket.writer is not None:
            try:
                ticket.writer.finish()
            except OSError as e:
                ticket.error = e
        else:
            ticket.written.wait()  # type: ignore[union-attr]
        self._inflight = None
        if ticket.error is not None:
            raise ticket.error
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
        if epos != pos or n > cap:
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
        if epos != pos:
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
            self.dev.write(self._head_at, end.to_bytes(8, "little"))
            self.dev.sync()
        self._res = self._committed = self._head_seen = end
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
