"""Pools on ordinary file systems (ext4, xfs on an SSD or a disk): durable across power loss.

On a file system that is neither tmpfs nor DAX persistent memory, a store into a mapped page
reaches the medium only when the kernel writes the page back, at a moment nobody chooses.  Two
devices share such a pool file:

* :class:`FileDevice` (the foreground, and every process that is not a shadow): a shared
  mapping for reads and for the rare stores of pool creation and recovery, which ``drain``
  makes durable with ``fdatasync``; and :meth:`FileDevice.write` (``pwrite``) with
  :meth:`FileDevice.sync` (``fdatasync``) for the operation log, which on such a device never
  stores into the mapping (``writes_through``): on ext4 a store into a mapped page that was
  written back costs a journal commit at the next sync (measured on this project's virtual
  disk: a mapped store then ``fdatasync`` 420-430 us, ``pwrite`` then ``fdatasync`` 100-130
  us).  The pool file is zero-filled when it is created (written, not sparse: a first write
  into a hole allocates a block, and allocation is metadata each sync would have to commit),
  then synced, and its directory too.
* :class:`DeferredFileDevice` (the shadow process): a *private* (copy-on-write) mapping, so
  nothing the shadow stores reaches the file until the device writes it. ``flush`` only
  records the range; ``drain`` does nothing; a commit point of the PM copy
  (:meth:`DeferredFileDevice.commit_point`, called by the pool after it persisted a commit
  record) writes every range flushed since the last write-back *atomically*: first into a side
  journal (``<pool>-wb``: the ranges, their bytes and a checksum), ``fdatasync``, then in
  place, ``fdatasync``; ranges are taken as whole 64-byte lines, and those less than
  :data:`MERGE_GAP` apart as one (:func:`merge_ranges`). The file therefore only ever holds
  the state of some moment of the shadow's program order at which everything it flushed was
  written: stronger than what persistent memory promises (where any unflushed store may or may
  not have reached the medium). So the commit records work unchanged, and the undo log need
  not flush and fence each entry before its store (``atomic_writeback``): every write-back
  adds the entries of the batch in progress (``flushed_late``, which the undo log sets), so
  whatever stores of that batch it carries, their old contents go with them. Write-backs are
  paced: at most one per ``PERSIMMON_DISK_WRITEBACK_SECONDS`` (default 5 s) unless 32 MiB
  are waiting or the log space it frees is wanted (:meth:`hurry_writeback`), and one
  whenever the shadow goes idle (:meth:`settle`). A write that must
  follow the PM copy's durability (the log tail, which lets the foreground reuse log space)
  goes through :meth:`write_ordered` and waits for the write-back. Pages written back whose
  private copy equals the file are given back (``MADV_DONTNEED``), so the shadow does not keep
  a second copy of everything it touched, but not at each write-back: the pages written back
  gather until they come to ``PERSIMMON_DISK_RELEASE_MIB`` (64), or the shadow goes idle
  (:meth:`settle`), and are released then (:meth:`release`; at exit the unmapping gives them
  all back). A hot page (the undo log, the commit records, a busy bucket) is thus not copied
  again by a write fault after every write-back. Releasing never writes: what a write-back
  made durable does not depend on when, or whether, pages are released.

A journal left valid by a crash is copied in place by the next opener that holds the pool's
lock (:meth:`FileDevice.recover_journal`, from :meth:`persimmon.pool.Pool.open`) or by a
restarted shadow (its predecessor died, the foreground still holds the lock), and then
invalidated.  The crash-simulation twins of these devices, over a simulated file that keeps
what ``fdatasync`` made durable, are in :mod:`persimmon.simdevice`.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from typing import Any

from xxhash import xxh3_64_intdigest

from .device import PAGE, Device, DeviceError, PoolReader, _page_span
from .native import commit_writer_type, writeback_module

JOURNAL_SUFFIX = "-wb"
_JMAGIC = b"PSMWBJ01"
_JHDR = struct.Struct("<8sQQQQ")  # magic, sequence, ranges, data bytes, checksum
_JRANGE = struct.Struct("<QQ")
_LINE = 64
_ZERO_CHUNK = 1 << 20
# Flushed ranges closer than this are written back as one (the bytes between are the
# private copy's, the state at the same moment, so the write-back stays a state of one
# moment of the shadow's program order).  A pwrite into the page cache costs about 1.4 us
# whatever its size up to 1 KiB here, 512 more bytes about 0.1 us: docs/device.md.
MERGE_GAP = 512
WRITEBACK_BYTES = 32 << 20
WRITEBACK_SECONDS = 5.0  # (0.5 until 2026-12-07)
RELEASE_BYTES = 64 << 20  # pages written back and kept private until a release


def writeback_seconds() -> float:
    """Pacing of the shadow's write-backs: ``PERSIMMON_DISK_WRITEBACK_SECONDS`` (5 s;
    docs/device.md, "... and write-backs paced at 5 s")."""
    v = os.environ.get("PERSIMMON_DISK_WRITEBACK_SECONDS", "")
    try:
        return max(0.0, float(v)) if v else WRITEBACK_SECONDS
    except ValueError:
        raise DeviceError(f"PERSIMMON_DISK_WRITEBACK_SECONDS={v!r} is not a number") from None


def release_bytes_setting() -> int:
    """How many bytes of written-back pages the shadow keeps private before it gives them
    back: ``PERSIMMON_DISK_RELEASE_MIB`` (64).  More costs memory (up to that much of the
    pool copied in the shadow) and saves CPU (a page given back and stored into again
    takes a copy-on-write fault): docs/device.md, "Released later"."""
    v = os.environ.get("PERSIMMON_DISK_RELEASE_MIB", "")
    try:
        mib = float(v) if v else RELEASE_BYTES / (1 << 20)
    except ValueError:
        mib = -1.0
    if not mib >= 0 or mib == float("inf"):
        raise DeviceError(f"PERSIMMON_DISK_RELEASE_MIB={v!r} is not a number of MiB (>= 0)")
    return int(mib * (1 << 20))


class OsFile:
    """The few file operations the disk devices use, on a descriptor (and, for synced
    writes, a second descriptor of the same file opened with ``O_DSYNC``)."""

    __slots__ = ("fd", "path", "_dsync")

    def __init__(self, fd: int, path: str | None = None) -> None:
        self.fd = fd
        self.path = path
        self._dsync = -1

    def pwrite(self, data: bytes | bytearray | memoryview, off: int) -> None:
        _pwrite_all(self.fd, data, off)

    def pwrite_ranges(self, buf: bytes | bytearray | memoryview,
                      ranges: list[tuple[int, int]]) -> None:
        """Each ``(offset, length)`` range of ``buf`` written at the same offset."""
        pwrite_ranges(self.fd, buf, ranges)

    def sync_fd(self) -> int:
        """The descriptor opened with ``O_DSYNC`` (opened now if need be), or -1 when this
        file has no path to open it by."""
        if self._dsync < 0 and self.path is not None:
            self._dsync = os.open(self.path, os.O_RDWR | os.O_DSYNC)
        return self._dsync

    def pwrite_sync(self, data: bytes | bytearray | memoryview, off: int) -> None:
        """Write and make durable this range only (``O_DSYNC``: the kernel writes back
        the range and flushes the device's cache, not every dirty page of the file)."""
        fd = self._dsync if self._dsync >= 0 else self.sync_fd()
        if fd < 0:  # (no path to open it by)
            _pwrite_all(self.fd, data, off)
            os.fdatasync(self.fd)
            return
        _pwrite_all(fd, data, off)

    def close_sync(self) -> None:
        if self._dsync >= 0:
            os.close(self._dsync)
            self._dsync = -1

    def pread(self, n: int, off: int) -> bytes:
        return os.pread(self.fd, n, off)

    def sync(self) -> None:
        os.fdatasync(self.fd)

    def truncate(self, n: int) -> None:
        os.ftruncate(self.fd, n)

    def size(self) -> int:
        return os.fstat(self.fd).st_size


def _pwrite_all(fd: int, data: bytes | bytearray | memoryview, off: int) -> None:
    mv = memoryview(data)
    while len(mv):
        n = os.pwrite(fd, mv, off)
        mv = mv[n:]
        off += n


def fsync_dir(path: str) -> None:
    """fsync the directory holding ``path`` (a new file's name is durable only then)."""
    d = os.open(os.path.dirname(os.path.abspath(path)) or ".", os.O_RDONLY)
    try:
        os.fsync(d)
    finally:
        os.close(d)


def zero_fill(fd: int, size: int) -> None:
    """Write ``size`` zero bytes (blocks allocated now, not at the first sync), then sync."""
    z = bytes(min(size, _ZERO_CHUNK))
    f = OsFile(fd)
    for off in range(0, size, len(z) or 1):
        f.pwrite(z[: min(len(z), size - off)], off)
    os.fsync(fd)


def merge_ranges_python(ranges: list[tuple[int, int]],
                        gap: int = MERGE_GAP) -> list[tuple[int, int]]:
    """``(offset, length)`` ranges as whole 64-byte lines, sorted, overlapping ones merged and
    so are those less than ``gap`` bytes apart (one write of the bytes between costs less
    than a second system call).  (Sorts ``ranges`` in place.)"""
    if not ranges:
        return []
    ranges.sort()
    out = []
    mask = _LINE - 1
    start, end = ranges[0][0] & ~mask, 0
    for off, n in ranges:
        if off - end >= gap and end:
            out.append((start, end - start))
            start = off & ~mask
        e = (off + max(n, 1) + mask) & ~mask
        if e > end:
            end = e
    out.append((start, end - start))
    return out


def journal_image_python(buf: bytes | bytearray | memoryview, ranges: list[tuple[int, int]],
                         head: int) -> bytearray:
    """``head`` zero bytes, the table of ``ranges`` (u64 offset, u64 length each), then each
    range's bytes of ``buf``: a write-back journal before its header is packed."""
    mv = memoryview(buf)
    _check_ranges(ranges, len(mv))
    img = bytearray(head)
    img += b"".join([_JRANGE.pack(off, n) for off, n in ranges])
    img += b"".join([mv[off : off + n] for off, n in ranges])
    return img


def pwrite_ranges_python(fd: int, buf: bytes | bytearray | memoryview,
                         ranges: list[tuple[int, int]]) -> None:
    """Each range's bytes of ``buf`` written at the same offset of ``fd``, in order."""
    mv = memoryview(buf)
    _check_ranges(ranges, len(mv))
    for off, n in ranges:
        _pwrite_all(fd, mv[off : off + n], off)


def _check_ranges(ranges: list[tuple[int, int]], limit: int) -> None:
    for off, n in ranges:
        if off < 0 or n < 0 or off + n > limit:
            raise ValueError(f"range ({off}, {n}) outside the buffer")


# The compiled twins (_writeback.c), or these: tests/test_writeback_twins.py holds them to
# the same results
_compiled = writeback_module()
if _compiled is not None:
    _merge = _compiled.merge

    def merge_ranges(ranges: list[tuple[int, int]],
                     gap: int = MERGE_GAP) -> list[tuple[int, int]]:
        """:func:`merge_ranges_python`, compiled."""
        return _merge(ranges, gap, _LINE)

    journal_image = _compiled.journal_image
    pwrite_ranges = _compiled.pwrite_ranges
else:
    merge_ranges = merge_ranges_python
    journal_image = journal_image_python
    pwrite_ranges = pwrite_ranges_python


def read_journal(data: bytes, size_limit: int) -> list[tuple[int, bytes]] | None:
    """The ranges of a complete, valid journal image; None when it is empty, torn or stale."""
    if len(data) < _JHDR.size:
        return None
    magic, _seq, nranges, nbytes, chk = _JHDR.unpack_from(data, 0)
    if magic != _JMAGIC:
        return None
    end = _JHDR.size + nranges * _JRANGE.size + nbytes
    if nranges > len(data) or end > len(data):
        return None
    if xxh3_64_intdigest(data[_JHDR.size : end], _seq) != chk:
        return None
    out = []
    at = _JHDR.size + nranges * _JRANGE.size
    for i in range(nranges):
        off, n = _JRANGE.unpack_from(data, _JHDR.size + i * _JRANGE.size)
        if off + n > size_limit:
            return None
        out.append((off, data[at : at + n]))
        at += n
    return out


def build_journal(seq: int, buf: bytes | bytearray | memoryview,
                  ranges: list[tuple[int, int]]) -> bytearray:
    """The journal of a write-back of ``ranges`` of ``buf`` (read by :func:`read_journal`)."""
    img = journal_image(buf, ranges, _JHDR.size)
    with memoryview(img) as mv:
        body = mv[_JHDR.size :]
        chk = xxh3_64_intdigest(body, seq)
        body.release()
    _JHDR.pack_into(img, 0, _JMAGIC, seq, len(ranges),
                    len(img) - _JHDR.size - len(ranges) * _JRANGE.size, chk)
    return img


class FileDevice(Device):
    """A pool file on an ordinary file system, shared mapping (see the module docstring)."""

    kind = "file"
    flush_path = "fdatasync"
    writes_through = True
    deferred = False

    def __init__(self, path: str, fd: int, io: OsFile | None = None,
                 journal: OsFile | None = None) -> None:
        # (the shadow's settings, read here too so that a bad one stops the foreground
        # with a clear error before a shadow fails on it)
        writeback_seconds()
        release_bytes_setting()
        self.path = path
        self._fd = fd
        self.io = io if io is not None else OsFile(fd, path)
        self._journal = journal
        self.size = self.io.size()
        if self.size == 0:
            raise DeviceError(f"{path} is empty: nothing to map")
        self._dirty = False
        self._closed = False
        self._map()

    # ------------------------------------------------------------------ the mapping
    def _map(self) -> None:
        self._mm = mmap.mmap(self._fd, self.size, mmap.MAP_SHARED,
                             mmap.PROT_READ | mmap.PROT_WRITE)
        self.buf = memoryview(self._mm)

    def _remap(self, new_size: int) -> None:
        self.buf.release()
        self.io.truncate(new_size)
        self._mm.resize(new_size)
        self.size = new_size
        self.buf = memoryview(self._mm)

    def _unmap(self) -> None:
        self.buf.release()
        self._mm.close()

    # ------------------------------------------------------------------ persistence
    def flush(self, off: int, n: int) -> None:
        self._dirty = True

    def drain(self) -> None:
        if self._dirty:
            self._dirty = False
            self.io.sync()

    def persist(self, off: int, n: int) -> None:
        self.io.sync()
        self._dirty = False

    def write(self, off: int, data: bytes | bytearray | memoryview) -> None:
        """Write ``data`` at ``off`` through the file (visible to every mapping at once,
        durable at the next :meth:`sync`)."""
        self.io.pwrite(data, off)

    def sync(self) -> None:
        """Make every write and store so far durable (``fdatasync``)."""
        self._dirty = False
        self.io.sync()

    def write_sync(self, off: int, data: bytes | bytearray | memoryview) -> None:
        """Write ``data`` at ``off`` and make that range durable before returning."""
        self.io.pwrite_sync(data, off)

    def background_writer(self, efd: int = -1) -> Any:
        """A writer of :meth:`write_sync` ranges followed by one :meth:`write`, run by a
        thread that never takes the GIL (``native.commit_writer_type``; the op log's
        overlapped commits), or None: not built, pure Python asked for, or a file without
        a path.  ``efd``: an eventfd it signals when a commit is written (several writers
        share one; by default it makes its own).  The caller closes it."""
        writer = commit_writer_type()
        fd = self.io.sync_fd() if writer is not None and isinstance(self.io, OsFile) else -1
        return writer(fd, self.io.fd, efd) if fd >= 0 else None

    def write_ordered(self, off: int, data: bytes) -> None:
        """Write ``data`` once everything stored or flushed before is durable."""
        self.drain()
        self.io.pwrite(data, off)

    def grow(self, new_size: int) -> None:
        if new_size <= self.size:
            return
        self.drain()
        self._remap(new_size)
        self.io.sync()  # the new size is durable before anything is stored beyond the old

    def prefault(self, off: int, n: int) -> bool:
        return False  # (it would dirty every page for write-back)

    def fileno(self) -> int | None:
        return self._fd if self._fd >= 0 else None

    # ------------------------------------------------------------------ the journal
    def _journal_file(self, create: bool) -> OsFile | None:
        if self._journal is not None:
            return self._journal
        jpath = self.path + JOURNAL_SUFFIX
        if not create and not os.path.exists(jpath):
            return None
        fd = os.open(jpath, os.O_RDWR | os.O_CREAT, 0o600)
        self._journal = OsFile(fd)
        if create:
            fsync_dir(jpath)
        return self._journal

    def recover_journal(self) -> int:
        """Copy a valid write-back journal in place (the writer died between its two
        syncs, or after them), make that durable, then invalidate the journal.  Only a
        process that may write the pool calls this, with the pool locked or its shadow
        dead.  Returns the number of ranges copied."""
        j = self._journal_file(create=False)
        if j is None:
            return 0
        size = j.size()
        if size == 0:
            return 0
        ranges = read_journal(j.pread(size, 0), self.size)
        n = 0
        if ranges:
            for off, data in ranges:
                self.io.pwrite(data, off)
            self.io.sync()
            n = len(ranges)
        j.truncate(0)
        j.sync()
        return n

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.drain()
        finally:
            self._unmap()
            if isinstance(self.io, OsFile):
                self.io.close_sync()
            if self._fd >= 0:
                os.close(self._fd)
            if self._journal is not None and isinstance(self._journal, OsFile):
                os.close(self._journal.fd)
            self._journal = None
            self._fd = -1


class DeferredFileDevice(FileDevice):
    """The shadow's view of a pool file: stores stay private until a paced, journaled
    write-back (see the module docstring)."""

    deferred = True

    def __init__(self, path: str, fd: int, io: OsFile | None = None,
                 journal: OsFile | None = None, interval: float | None = None,
                 release_bytes: int | None = None) -> None:
        self._pending: list[tuple[int, int]] = []  # flushed since the last write-back
        self._pending_bytes = 0  # (their lengths added: overlaps counted twice)
        self._after: list[tuple[int, bytes]] = []
        self._last = 0.0
        self._hurry = False  # (the next commit point writes back, paced or not)
        self._seq = 0
        self._written: set[int] = set()  # pages written back since the last release
        self.interval = writeback_seconds() if interval is None else interval
        self.release_bytes = release_bytes_setting() if release_bytes is None else release_bytes
        self.writebacks = 0
        self.releases = 0  # release passes run (each over the pages gathered)
        self.dropped_pages = 0
        super().__init__(path, fd, io, journal)

    def _map(self) -> None:
        self._mm = mmap.mmap(self._fd, self.size, mmap.MAP_PRIVATE,
                             mmap.PROT_READ | mmap.PROT_WRITE)
        self.buf = memoryview(self._mm)

    atomic_writeback = True

    def flush(self, off: int, n: int) -> None:
        self._pending.append((off, n))
        self._pending_bytes += n

    def flush_ranges(self, ranges: list[tuple[int, int]]) -> None:
        if ranges:
            self._pending += ranges
            self._pending_bytes += sum([n for _, n in ranges])

    def drain(self) -> None:
        return None

    def persist(self, off: int, n: int) -> None:
        self.flush(off, n)

    def sync(self) -> None:
        self.writeback()
        self.io.sync()

    def write_ordered(self, off: int, data: bytes) -> None:
        if self._pending or self._after:
            self._after.append((off, bytes(data)))
        else:
            self.io.pwrite(data, off)

    def commit_point(self) -> None:
        """A commit record was persisted: write back now if the pacing allows (or the log
        space it would free is wanted: :meth:`hurry_writeback`)."""
        if (self._pending_bytes >= WRITEBACK_BYTES or self._hurry
                or time.monotonic() - self._last >= self.interval):
            self.writeback(committed=True)

    def hurry_writeback(self) -> None:
        self._hurry = True

    def settle(self) -> None:
        """Write back whatever waits, then release the pages written back (the shadow is
        about to sleep)."""
        if self._pending or self._after:
            self.writeback()
        self.release()

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    def writeback(self, committed: bool = False) -> None:
        """Write every flushed range atomically: journal, sync, in place, sync; then the
        ordered writes that waited for it.  ``committed``: called at a commit point, whose
        commit record goes with this write-back: the undo entries of the batch it
        committed (``flushed_late``) are then needed by no state the write-back can leave,
        and are not written."""
        late = self.flushed_late
        if late is not None and not committed:
            self._pending += late()
        ranges = merge_ranges(self._pending)
        self._pending = []
        self._pending_bytes = 0
        self._last = time.monotonic()
        self._hurry = False
        if ranges:
            buf = self.buf  # (read only here: no store can come between journal and place)
            j = self._journal_file(create=True)
            assert j is not None
            self._seq += 1
            j.pwrite(build_journal(self._seq, buf, ranges), 0)
            j.sync()
            self.io.pwrite_ranges(buf, ranges)
            self.io.sync()
            self.writebacks += 1
            written = self._written
            for off, n in ranges:
                written.update(range(off // PAGE, (off + n - 1) // PAGE + 1))
        after, self._after = self._after, []
        for off, data in after:
            self.io.pwrite(data, off)
        if len(self._written) * PAGE >= self.release_bytes:
            self.release()

    def release(self) -> int:
        """Give back the private copies of the pages written back since the last release
        whose contents are the file's (a page holding a store not written back keeps its
        copy).  Only memory changes: the file is not written.  Returns the pages given
        back."""
        if not self._written:
            return 0
        pages = sorted(self._written)
        self._written = set()
        self.releases += 1
        buf = self.buf
        dropped = 0
        i = 0
        while i < len(pages):  # runs of adjacent pages, read from the file in one call
            j = i + 1
            while j < len(pages) and pages[j] == pages[j - 1] + 1 and j - i < 256:
                j += 1
            start, length = _page_span(pages[i] * PAGE, (j - i) * PAGE, self.size)
            if length > 0:
                disk = self.io.pread(length, start)
                for k in range(i, j):
                    a = pages[k] * PAGE
                    if a >= start + length:
                        break
                    b = min(a + PAGE, start + length)
                    if buf[a:b].tobytes() == disk[a - start : b - start]:
                        if not self._discard(a, b - a):
                            self.dropped_pages += dropped
                            return dropped
                        dropped += 1
            i = j
        self.dropped_pages += dropped
        return dropped

    def _discard(self, off: int, n: int) -> bool:
        """Drop the private copy of this range; the mapping shows the file's pages again."""
        try:
            self._mm.madvise(mmap.MADV_DONTNEED, off, n)
        except (OSError, ValueError):
            return False
        return True

    def grow(self, new_size: int) -> None:
        if new_size <= self.size:
            return
        # An atomic write-back at any moment of the program order is a state persistent
        # memory could hold too (everything flushed is there); the growth itself is then
        # made durable by the next write-back's sync.
        self.writeback()
        self._remap(new_size)

    def reader(self) -> PoolReader:
        return PoolReader(bytes(self.buf), None)  # (the private view, not the file's)

    def close(self) -> None:
        if self._closed:
            return
        try:
            if self._pending or self._after:
                self.writeback()
            self._written = set()  # (the unmapping gives every page back)
        finally:
            self._dirty = False
            super().close()


def open_file_device(path: str, fd: int, created: bool) -> FileDevice:
    """The device for a pool file on an ordinary file system (see the module docstring);
    ``created``: the file was just created (it is zero-filled and synced, its directory
    too)."""
    if created:
        zero_fill(fd, os.fstat(fd).st_size)
        fsync_dir(path)
    if _defer:
        dev: FileDevice = DeferredFileDevice(path, fd)
        dev.recover_journal()  # (a shadow restarted after its predecessor died mid-way)
        return dev
    return FileDevice(path, fd)


_defer = False


def defer_writeback(on: bool = True) -> None:
    """Make this process open disk pools with :class:`DeferredFileDevice` (the shadow)."""
    global _defer
    _defer = on
