"""The pool file: header, regions, commit records and the single-process lock.

A pool is one file.  Its first page is the header (magic, layout version, where each region
lives, a checksum) followed by two commit slots; then come the operation-log region (used by
the runtime), the undo-log region and the heap arena, which grows at the end of the file.

Commit records alternate between the two slots; each carries a sequence number and a
checksum, so a torn write of one slot leaves the other, older one in force.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time

from xxhash import xxh3_64_intdigest

from . import layout as L
from .device import Device, open_device
from .errors import (
    CorruptPoolError,
    LayoutVersionError,
    NotAPoolError,
    PoolExistsError,
    PoolInUseError,
)


def _round_up(n: int, to: int) -> int:
    return (n + to - 1) // to * to


class Pool:
    """An open pool file.  Use :meth:`create` or :meth:`open`."""

    def __init__(self, dev: Device) -> None:
        self.dev = dev
        self.oplog_off = self.oplog_size = 0
        self.undo_off = self.undo_size = 0
        self.arena_off = 0
        self.created_ns = 0
        self._locked = False

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(
        cls,
        target: str | Device,
        *,
        log_size: int = 0,
        undo_size: int = 1 << 20,
        arena_size: int = 1 << 20,
        mode: str = "auto",
    ) -> Pool:
        """Create a new pool file (or format a fresh device) and lock it.

        No commit record is written: the caller (the heap) writes its initial image and then
        its first commit.  A pool without any valid commit record is reported as an
        incomplete creation by :meth:`open`.
        """
        log_size = _round_up(log_size, L.PAGE)
        undo_size = _round_up(max(undo_size, 16 * L.PAGE), L.PAGE)
        arena_size = _round_up(max(arena_size, 16 * L.PAGE), L.PAGE)
        oplog_off = L.HEADER_SIZE
        undo_off = oplog_off + log_size
        arena_off = undo_off + undo_size
        total = arena_off + arena_size
        if isinstance(target, Device):
            dev = target
            if dev.size < total:
                dev.grow(total)
        else:
            dev = _create_file(target, total, mode)
        pool = cls(dev)
        if dev.fileno() is not None and not isinstance(target, Device):
            pool._lock()
        pool.oplog_off, pool.oplog_size = oplog_off, log_size
        pool.undo_off, pool.undo_size = undo_off, undo_size
        pool.arena_off = arena_off
        pool.created_ns = time.time_ns()
        buf = dev.buf
        buf[: L.HEADER_SIZE] = bytes(L.HEADER_SIZE)
        L.S_POOLHDR.pack_into(
            buf, 0, L.MAGIC, L.LAYOUT_VERSION, 0, oplog_off, log_size, undo_off, undo_size,
            arena_off, pool.created_ns,
        )
        L.S_Q.pack_into(buf, L.POOLHDR_CHECK, xxh3_64_intdigest(buf[: L.POOLHDR_CHECK]))
        dev.persist(0, L.HEADER_SIZE)
        return pool

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, target: str | Device, *, lock: bool = True, mode: str = "auto",
             lock_timeout: float = 0.0) -> Pool:
        """Open an existing pool, check its header, and (by default) lock it.

        ``lock_timeout`` seconds are spent retrying when another process holds the lock (a
        shadow process of a crashed server needs a moment to notice and exit).
        Raises :class:`NotAPoolError`, :class:`LayoutVersionError`,
        :class:`CorruptPoolError` or :class:`PoolInUseError` with a message naming the file.
        """
        if isinstance(target, Device):
            dev = target
            name = "<device>"
        else:
            name = str(target)
            if not os.path.exists(name):
                raise FileNotFoundError(errno.ENOENT, "no pool at this path", name)
            if os.path.isdir(name):
                raise NotAPoolError(f"{name} is a directory, not a Persimmon pool file")
            if os.path.getsize(name) < L.HEADER_SIZE:
                raise NotAPoolError(
                    f"{name} is not a Persimmon pool: {os.path.getsize(name)} bytes is shorter "
                    "than a pool header"
                )
            dev = open_device(name, mode=mode)
        pool = cls(dev)
        try:
            if lock and not isinstance(target, Device) and dev.fileno() is not None:
                pool._lock(lock_timeout)
                # a disk pool's write-back that a crash interrupted is finished first
                # (persimmon.filedevice); only the lock holder may write the pool
                dev.recover_journal()
            pool._read_header(name)
        except BaseException:
            pool.close()
            raise
        return pool

    def _read_header(self, name: str) -> None:
        buf = self.dev.buf
        if self.dev.size < L.HEADER_SIZE:
            raise NotAPoolError(f"{name} is not a Persimmon pool: too short for a header")
        (magic, version, _flags, oplog_off, oplog_size, undo_off, undo_size, arena_off,
         created) = L.S_POOLHDR.unpack_from(buf, 0)
        if magic != L.MAGIC:
            raise NotAPoolError(f"{name} is not a Persimmon pool (its first bytes are {magic!r})")
        if version != L.LAYOUT_VERSION:
            raise LayoutVersionError(
                f"{name} has pool layout version {version}; this Persimmon reads version "
                f"{L.LAYOUT_VERSION} only"
            )
        stored = L.S_Q.unpack_from(buf, L.POOLHDR_CHECK)[0]
        if stored != xxh3_64_intdigest(buf[: L.POOLHDR_CHECK]):
            raise CorruptPoolError(f"{name}: the pool header checksum does not match")
        if not (
            oplog_off == L.HEADER_SIZE
            and undo_off == oplog_off + oplog_size
            and arena_off == undo_off + undo_size
            and arena_off <= self.dev.size
        ):
            raise CorruptPoolError(
                f"{name}: the pool is truncated or its region table is inconsistent "
                f"(arena at {arena_off}, file is {self.dev.size} bytes)"
            )
        self.oplog_off, self.oplog_size = oplog_off, oplog_size
        self.undo_off, self.undo_size = undo_off, undo_size
        self.arena_off = arena_off
        self.created_ns = created

    # ------------------------------------------------------------------ commit records
    def read_commit(self) -> tuple[int, int, int] | None:
        """The newest valid commit record as ``(seq, position, heap_top)``, or None."""
        best = None
        buf = self.dev.buf
        for off in L.COMMIT_SLOTS:
            rec = L.S_COMMIT.unpack_from(buf, off)
            chk = L.S_Q.unpack_from(buf, off + 56)[0]
            if rec[0] == 0 or chk != xxh3_64_intdigest(buf[off : off + 56]):
                continue
            if best is None or rec[0] > best[0]:
                best = rec
        if best is None:
            return None
        return best[0], best[1], best[2]

    def clear_torn_record(self, seq: int) -> bool:
        """Zero slot ``seq % 2`` (durably) if it holds a torn record; True if it did.

        Called at open for the number the next commit record will carry.  A commit record
        torn by a crash is invalid, but its words stay in the slot; the next record of the
        same number goes into that slot, and a crash while it is written could combine the
        new words with the old ones into a record that validates: the abandoned batch's
        record resurrected (its position, its heap top) over a rolled-back state.  A slot
        holding a valid older record is left alone (a mix with it validates only as that
        older record, which the newer one in the other slot outranks).
        """
        off = L.COMMIT_SLOTS[seq & 1]
        buf = self.dev.buf
        if not any(buf[off : off + 64]):
            return False
        rec = L.S_COMMIT.unpack_from(buf, off)
        chk = L.S_Q.unpack_from(buf, off + 56)[0]
        if rec[0] != 0 and chk == xxh3_64_intdigest(buf[off : off + 56]) and rec[0] < seq:
            return False
        buf[off : off + 64] = bytes(64)
        self.dev.persist(off, 64)
        return True

    def write_commit(self, seq: int, position: int, top: int) -> None:
        """Write and persist commit record ``seq`` into slot ``seq % 2``."""
        off = L.COMMIT_SLOTS[seq & 1]
        buf = self.dev.buf
        L.S_COMMIT.pack_into(buf, off, seq, position, top, 0, 0, 0, 0)
        L.S_Q.pack_into(buf, off + 56, xxh3_64_intdigest(buf[off : off + 56]))
        self.dev.persist(off, 64)
        self.dev.commit_point()

    # ------------------------------------------------------------------ locking
    def _lock(self, timeout: float = 0.0) -> None:
        fd = self.dev.fileno()
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.01)
                    continue
            raise PoolInUseError(
                f"{self.dev.path} is in use by another process; only one process may open a "
                "pool (stop the other server, or use another pool path)"
            ) from None
        self._locked = True

    def close(self) -> None:
        """Unmap the pool and release the lock.  Idempotent."""
        dev = self.dev
        if dev is None:
            return
        self.dev = None  # type: ignore[assignment]
        dev.close()


def _create_file(path: str, size: int, mode: str) -> Device:
    path = str(path)
    if os.path.exists(path):
        raise PoolExistsError(f"a file already exists at {path}; refusing to overwrite it")
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    return open_device(path, size=size, create=True, mode=mode)
