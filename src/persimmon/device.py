"""The PM device layer: a pool file mapped into memory, with persist primitives.

Two real paths share one interface (:class:`Device`):

* ``libpmem`` — PMDK's libpmem through ctypes: ``pmem_map_file``; when the mapping is real PM
  (or ``PMEM_IS_PMEM_FORCE=1`` makes libpmem treat it so) flushes are CPU cache flushes
  (``pmem_flush``) and the fence is ``pmem_drain``; otherwise libpmem's msync fallback
  (``pmem_msync``) syncs the touched pages;
* ``msync`` — Python's mmap, with ``msync`` of the touched pages only.

Files on tmpfs (``/dev/shm``, the default) are emulated PM and by default persist with no
flush at all (``flush_path == "none"``); see :func:`tmpfs_persist` for why and how to choose
cache flushes or msync there instead.

``open_device(..., mode="auto")`` takes libpmem when it is installed (Debian: libpmem1), msync
otherwise; ``PERSIMMON_DEVICE=libpmem|msync`` forces a path.  The crash-simulation device with
the same interface is in :mod:`persimmon.simdevice`.

The heap reads and writes ``dev.buf`` (a writable memoryview of the whole mapping) directly.
:meth:`Device.grow` replaces ``buf``: callers re-read it and must not keep views of the old
one.
"""

from __future__ import annotations

import ctypes
import mmap
import os
from collections.abc import Callable
from typing import Any

from . import libpmem
from .errors import PersimmonError, PoolExistsError

PAGE = mmap.PAGESIZE


class DeviceError(PersimmonError):
    """The device cannot be opened or mapped."""


class Device:
    """A mapped pool file (base class; see :func:`open_device`)."""

    kind = "none"
    is_pmem = False
    flush_path = "none"  # "cache-flush" or "msync": how persists reach the medium
    persists_nothing = False  # True when flush/drain/persist are no-ops (a tmpfs pool)
    in_ram = False  # the file is on tmpfs (emulated PM: its pages are RAM): see prefault()
    # The operation log writes through write()/sync() instead of storing into buf and
    # flushing (a pool on an ordinary file system: persimmon.filedevice)
    writes_through = False
    # Everything flushed since the last write-back reaches the medium at once or not at all
    # (the shadow's view of a disk pool: persimmon.filedevice.DeferredFileDevice).  drain()
    # orders nothing there, so the undo log does not flush and fence each entry before its
    # store: it sets flushed_late, which every write-back calls for the ranges to write
    # besides those flushed (the entries of the batch in progress: UndoLog.batch_ranges).
    atomic_writeback = False
    flushed_late: Callable[[], list[tuple[int, int]]] | None = None
    path: str | None = None
    size = 0
    buf: memoryview

    def flush(self, off: int, n: int) -> None:
        """Start writing back ``[off, off+n)``; ordered only by the next :meth:`drain`."""
        raise NotImplementedError

    def flush_ranges(self, ranges: list[tuple[int, int]]) -> None:
        """:meth:`flush` of each ``(offset, length)`` (one call for a commit's many)."""
        flush = self.flush
        for off, n in ranges:
            flush(off, n)

    def drain(self) -> None:
        """Fence: everything flushed before is durable when this returns."""
        raise NotImplementedError

    def persist(self, off: int, n: int) -> None:
        """Flush and drain ``[off, off+n)``."""
        self.flush(off, n)
        self.drain()

    def grow(self, new_size: int) -> None:
        """Extend the file (zero-filled) and remap it; ``buf`` is replaced."""
        raise NotImplementedError

    @property
    def survives(self) -> str:
        """What the pool survives: "process crashes" (a file on tmpfs: emulated PM, lost at
        a reboot) or "power loss" (real PM, or a file system the device syncs)."""
        return "process crashes" if self.in_ram else "power loss"

    def write(self, off: int, data: bytes | bytearray | memoryview) -> None:
        """Store ``data`` at ``off`` and flush it (durable at the next :meth:`sync`)."""
        self.buf[off : off + len(data)] = data
        self.flush(off, len(data))

    def sync(self) -> None:
        """Make everything flushed durable (the fence)."""
        self.drain()

    def write_sync(self, off: int, data: bytes | bytearray | memoryview) -> None:
        """:meth:`write` then :meth:`sync`: ``data`` is durable when this returns."""
        self.write(off, data)
        self.drain()

    def write_ordered(self, off: int, data: bytes) -> None:
        """Store and persist ``data`` once everything flushed before is durable."""
        self.drain()
        self.buf[off : off + len(data)] = data
        self.persist(off, len(data))

    def commit_point(self) -> None:
        """A commit record of the PM copy was just persisted (a disk device may write back
        then; see persimmon.filedevice)."""

    def hurry_writeback(self) -> None:
        """The log space the shadow has applied waits for a write-back: a device that paces
        its write-backs writes back at the next commit point (see persimmon.filedevice)."""

    def settle(self) -> None:
        """Make durable anything a device deferred (the shadow before it sleeps or exits)."""

    def recover_journal(self) -> int:
        """Finish a write-back a crash interrupted (disk devices); the number of ranges."""
        return 0

    def fileno(self) -> int | None:
        """The open file descriptor (the pool layer locks it), None without a file."""
        return None

    def prefault(self, off: int, n: int) -> bool:
        """Map the pages of ``[off, off+n)`` writable now, in one system call, instead of one
        page fault at the first store into each page (``MADV_POPULATE_WRITE``, Linux 5.14
        and later).  The bytes are not changed.  Returns False where the kernel or the
        device cannot (nothing happens then: the pages fault in on first use)."""
        return False

    def reader(self) -> PoolReader:
        """A read-only view of the whole pool for bulk reads (see :class:`PoolReader`)."""
        fd = self.fileno()
        if fd is None:
            return PoolReader(bytes(self.buf), None)
        # A second, read-only shared mapping of the same file: it sees every store made
        # through ``buf``, and slicing an mmap gives bytes at pool offsets without a copy.
        mm = mmap.mmap(fd, self.size, mmap.MAP_SHARED, mmap.PROT_READ)
        return PoolReader(mm, mm)

    def close(self) -> None:
        """Unmap and close.  Idempotent."""

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} kind={self.kind} is_pmem={self.is_pmem} "
                f"flush={self.flush_path} path={self.path!r} size={self.size}>")


class PoolReader:
    """Read-only bytes-like view of a pool: ``data[a:b]`` is ``bytes`` at pool offsets.

    Used by bulk readers (materialize) that slice many objects out of the pool: slicing an
    mmap or a bytes object is one C call per object, where a memoryview slice would need a
    second copy.  ``populate(off, n)`` asks the kernel to map a range's pages in one go
    instead of one page fault at a time.  Close it (or use ``with``) when done.
    """

    __slots__ = ("data", "_mm")

    def __init__(self, data: bytes | mmap.mmap, mm: mmap.mmap | None) -> None:
        self.data = data
        self._mm = mm

    def populate(self, off: int, n: int) -> None:
        if self._mm is None or n <= 0:
            return
        start, length = _page_span(off, n, len(self._mm))
        try:
            self._mm.madvise(_MADV_POPULATE_READ, start, length)
        except (OSError, ValueError):  # kernels before 5.14: pages fault in on first use
            pass

    def close(self) -> None:
        mm, self._mm, self.data = self._mm, None, b""
        if mm is not None:
            try:
                mm.close()
            except BufferError:  # a view is still held (e.g. by a traceback): unmapped when freed
                pass

    def __enter__(self) -> PoolReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)
_MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)


def _page_span(off: int, n: int, size: int) -> tuple[int, int]:
    """``(start, length)`` of the whole pages covering ``[off, off+n)`` within ``size``."""
    start = off - off % PAGE
    return start, min(n + off - start, size - start)


_libc: Any = None


def _madvise(addr: int, length: int, advice: int) -> bool:
    """libc's madvise on a raw mapping (one libpmem made); False when it fails."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        _libc.madvise.restype = ctypes.c_int
    return bool(_libc.madvise(addr, length, advice) == 0)


class _PageRanges:
    """Pending write-back ranges, kept as page numbers (merged when synced)."""

    __slots__ = ("pages",)

    def __init__(self) -> None:
        self.pages: set[int] = set()

    def add(self, off: int, n: int) -> None:
        first = off // PAGE
        last = (off + max(n, 1) - 1) // PAGE
        if first == last:
            self.pages.add(first)
        else:
            self.pages.update(range(first, last + 1))

    def take(self) -> list[tuple[int, int]]:
        """Merged ``(offset, length)`` page-aligned ranges; clears the set."""
        if not self.pages:
            return []
        pages = sorted(self.pages)
        self.pages.clear()
        out = []
        start = prev = pages[0]
        for p in pages[1:]:
            if p != prev + 1:
                out.append((start * PAGE, (prev - start + 1) * PAGE))
                start = p
            prev = p
        out.append((start * PAGE, (prev - start + 1) * PAGE))
        return out


class MsyncDevice(Device):
    """mmap + msync of the touched pages."""

    kind = "msync"
    flush_path = "msync"

    def __init__(self, path: str, fd: int, tmpfs: str | None = None) -> None:
        self.path = path
        self._fd = fd
        self.size = os.fstat(fd).st_size
        if self.size == 0:
            raise DeviceError(f"{path} is empty: nothing to map")
        self._mm = mmap.mmap(fd, self.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.buf = memoryview(self._mm)
        self._pending = _PageRanges()
        if tmpfs == "none":
            _no_persist(self)

    def flush(self, off: int, n: int) -> None:
        self._pending.add(off, n)

    def prefault(self, off: int, n: int) -> bool:
        start, length = _page_span(off, n, self.size)
        if length <= 0:
            return False
        try:
            self._mm.madvise(_MADV_POPULATE_WRITE, start, length)
        except (OSError, ValueError):
            return False
        return True

    def drain(self) -> None:
        mm_flush = self._mm.flush
        for off, n in self._pending.take():
            if off + n > self.size:
                n = self.size - off
            if n > 0:
                mm_flush(off, n)

    def grow(self, new_size: int) -> None:
        if new_size <= self.size:
            return
        self.drain()
        self.buf.release()
        os.ftruncate(self._fd, new_size)
        self._mm.resize(new_size)
        self.size = new_size
        self.buf = memoryview(self._mm)

    def fileno(self) -> int | None:
        return self._fd

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            self.drain()
        finally:
            self.buf.release()
            self._mm.close()
            os.close(self._fd)
            self._fd = -1


def _no_persist(dev: Device) -> None:
    """Make ``dev``'s persist primitives no-ops (a tmpfs file; see :func:`tmpfs_persist`)."""
    dev.flush_path = "none"
    dev.persists_nothing = True
    dev.flush = _flush_nothing  # type: ignore[method-assign]
    dev.drain = _drain_nothing  # type: ignore[method-assign]
    dev.persist = _flush_nothing  # type: ignore[method-assign]


def _flush_nothing(off: int, n: int) -> None:
    return None


def _drain_nothing() -> None:
    return None


TMPFS_PERSIST = ("none", "cache-flush", "msync")


def tmpfs_persist() -> str:
    """How pools on tmpfs persist: ``PERSIMMON_TMPFS_PERSIST``, default ``"none"``.

    A tmpfs file is emulated PM: it survives a process crash and nothing survives a power
    loss or a kernel crash.  Against a process crash a store is durable the moment it is
    made (the page *is* the medium and the CPU caches are coherent), so neither a cache flush
    nor an msync adds anything; on this project's virtual machines a cache-line flush costs
    1-2 us, most of a committed operation's cost.  ``cache-flush`` keeps the cost real PM
    would have (for measurements), ``msync`` is libpmem's fallback.  Stores stay in program
    order for the shadow process reading them (x86-64 keeps stores in order).  The crash
    simulator (``SimDevice``) still checks every flush and fence the code issues.
    """
    v = os.environ.get("PERSIMMON_TMPFS_PERSIST", "")
    if not v and os.environ.get("PERSIMMON_TMPFS_MSYNC") == "1":  # older spelling
        v = "msync"
    v = v or "none"
    if v not in TMPFS_PERSIST:
        raise DeviceError(f"PERSIMMON_TMPFS_PERSIST={v!r}: expected one of "
                          f"{', '.join(TMPFS_PERSIST)}")
    return v


def on_tmpfs(path: str) -> bool:
    """True when ``path`` lives on a tmpfs (such as /dev/shm): emulated PM."""
    real = os.path.realpath(path)
    best, fstype = "", ""
    try:
        with open("/proc/self/mounts", encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mnt = parts[1].replace("\\040", " ")
                if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best):
                    best, fstype = mnt, parts[2]
    except OSError:
        return False
    return fstype == "tmpfs"


class PmemDevice(Device):
    """PMDK libpmem: cache flushes on PM, libpmem's msync fallback elsewhere.

    ``tmpfs`` chooses how a file on tmpfs (emulated PM) persists: ``"none"`` (the default:
    see :func:`tmpfs_persist`), ``"cache-flush"`` (as ``PMEM_IS_PMEM_FORCE=1`` would: CPU
    cache flushes plus a fence, the cost real PM has) or ``"msync"`` (libpmem's fallback).
    """

    kind = "libpmem"

    def __init__(self, path: str, fd: int, lib: ctypes.CDLL, tmpfs: str | None = None) -> None:
        self.path = path
        self._fd = fd
        self._lib = lib
        self._tmpfs = tmpfs
        self.size = os.fstat(fd).st_size
        if self.size == 0:
            raise DeviceError(f"{path} is empty: nothing to map")
        self._map()

    def _map(self) -> None:
        lib = self._lib
        mapped = ctypes.c_size_t(0)
        is_pmem = ctypes.c_int(0)
        addr = lib.pmem_map_file(self.path.encode(), 0, 0, 0, ctypes.byref(mapped),
                                 ctypes.byref(is_pmem))
        if not addr:
            raise DeviceError(f"libpmem cannot map {self.path}: {libpmem.errormsg()}")
        self._addr = addr
        self._mapped = mapped.value
        self.size = mapped.value
        self.is_pmem = bool(is_pmem.value)
        self._arr = (ctypes.c_char * self._mapped).from_address(addr)
        self.buf = memoryview(self._arr).cast("B")
        tmpfs = None if self.is_pmem else self._tmpfs
        self.flush_path = "cache-flush" if self.is_pmem else (tmpfs or "msync")
        if tmpfs == "none":
            _no_persist(self)
        elif self.flush_path == "cache-flush":
            fl = lib.pmem_flush
            self.flush = lambda off, n, _a=addr, _f=fl: _f(_a + off, n)  # type: ignore[method-assign]
            self.drain = lib.pmem_drain  # type: ignore[method-assign]
        else:
            self._pending = _PageRanges()
            self.flush = self._pending.add  # type: ignore[method-assign]
            self.drain = self._msync_drain  # type: ignore[method-assign]

    def prefault(self, off: int, n: int) -> bool:
        start, length = _page_span(off, n, self.size)
        return length > 0 and _madvise(self._addr + start, length, _MADV_POPULATE_WRITE)

    def _msync_drain(self) -> None:
        ms = self._lib.pmem_msync
        a = self._addr
        for off, n in self._pending.take():
            if off + n > self.size:
                n = self.size - off
            if n > 0 and ms(a + off, n) != 0:
                raise DeviceError(f"pmem_msync failed on {self.path}: {libpmem.errormsg()}")

    def persist(self, off: int, n: int) -> None:
        if self.flush_path == "cache-flush":
            self._lib.pmem_persist(self._addr + off, n)
        elif self.flush_path == "none":
            return
        else:
            self.flush(off, n)
            self.drain()

    def _unmap(self) -> None:
        self.buf.release()
        del self._arr
        self._lib.pmem_unmap(self._addr, self._mapped)
        self._addr = 0

    def grow(self, new_size: int) -> None:
        if new_size <= self.size:
            return
        self.drain()
        self._unmap()
        os.ftruncate(self._fd, new_size)
        self._map()

    def fileno(self) -> int | None:
        return self._fd

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            self.drain()
            self._unmap()
        finally:
            os.close(self._fd)
            self._fd = -1


def open_device(path: str, *, size: int | None = None, create: bool = False,
                mode: str = "auto") -> Device:
    """Map the file at ``path``.

    ``create=True`` creates it (it must not exist) with ``size`` bytes and mode 0600.
    ``mode``: "auto" (libpmem when installed, else msync; ``PERSIMMON_DEVICE`` overrides),
    "libpmem" or "msync".  A file on tmpfs persists as :func:`tmpfs_persist` says (by
    default nothing to flush); a forced ``msync`` mode always msyncs.
    """
    path = os.fspath(path)
    forced = mode != "auto"
    if mode == "auto":
        mode = os.environ.get("PERSIMMON_DEVICE", "auto") or "auto"
        forced = mode != "auto"
    ram = on_tmpfs(path)
    tmpfs = tmpfs_persist() if ram else None
    if mode not in ("auto", "libpmem", "msync"):
        raise ValueError(f"unknown device mode {mode!r} (auto, libpmem or msync)")
    lib = None
    if mode in ("auto", "libpmem"):
        lib = libpmem.load()
        if lib is None and mode == "libpmem":
            raise DeviceError(
                "the libpmem device path needs PMDK's libpmem (Debian/Ubuntu package libpmem1)"
            )
    if create:
        if size is None or size <= 0:
            raise ValueError("creating a device needs a positive size")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise PoolExistsError(
                f"a file already exists at {path}; refusing to overwrite it"
            ) from None
        try:
            os.ftruncate(fd, size)
        except OSError:
            os.close(fd)
            os.unlink(path)
            raise
    else:
        fd = os.open(path, os.O_RDWR)
    try:
        dev: Device
        if not ram and not forced:
            # An ordinary file system, unless the mapping is real PM (a DAX file system, or
            # PMEM_IS_PMEM_FORCE): synced writes (persimmon.filedevice)
            if lib is not None:
                dev = PmemDevice(path, fd, lib, tmpfs=None)
                if dev.is_pmem:
                    return dev
                dev._unmap()
            from .filedevice import open_file_device

            return open_file_device(path, fd, created=create)
        if lib is not None:
            dev = PmemDevice(path, fd, lib, tmpfs=tmpfs)
        else:
            # the msync path asked for by name is the msync path, wherever the file is
            dev = MsyncDevice(path, fd, tmpfs=None if forced else tmpfs)
        dev.in_ram = ram
        return dev
    except BaseException:
        os.close(fd)
        raise
