"""A crash-simulation device for tests.

It has the :class:`~persimmon.device.Device` interface over a bytearray and keeps, beside the
current contents, the image that is guaranteed durable.  ``flush`` snapshots the 64-byte
cache lines it covers; ``drain`` makes the snapshots durable.  A simulated power failure
(:meth:`SimDevice.crash_image`) starts from the durable image and, for every 8-byte word
whose current value differs (never flushed, or flushed but not yet drained), keeps the old or
the new value at random, so both orders of unflushed stores are exercised; the choice is made
by a seed, so a failing case replays.

A second model, ``model="line"``, treats each 64-byte cache line as written back in order: of
the words of a line that differ, a prefix (in address order, from none to all) has the new
value and the rest the old one.  It tests that nothing relies on one line being all-or-nothing
and covers the tear-at-a-word boundary that x86 can produce when a line is evicted part way
through a sequence of stores.  (The simulator does not record the order of plain stores, so
address order stands for store order.)
"""

from __future__ import annotations

import random
from collections.abc import Callable

from .device import Device

_CHUNK = 4096
CRASH_MODELS = ("word", "line")


class SimDevice(Device):
    """In-memory device that records what a power failure could leave."""

    kind = "sim"

    def __init__(self, size_or_image: int | bytes | bytearray, *,
                 on_fence: Callable[[SimDevice], None] | None = None) -> None:
        if isinstance(size_or_image, int):
            self._cur = bytearray(size_or_image)
        else:
            self._cur = bytearray(size_or_image)
        self._dur = bytearray(self._cur)
        self.size = len(self._cur)
        self.buf = memoryview(self._cur)
        self._pending: list[tuple[int, bytes]] = []
        self.fences = 0
        self.on_fence = on_fence
        self.path = None

    @classmethod
    def from_image(cls, image: bytes | bytearray) -> SimDevice:
        """A device whose current and durable contents are ``image``."""
        return cls(image)

    def flush(self, off: int, n: int) -> None:
        a = off & ~63
        b = (off + n + 63) & ~63
        if b > self.size:
            b = self.size
        self._pending.append((a, bytes(self._cur[a:b])))

    def drain(self) -> None:
        dur = self._dur
        for a, data in self._pending:
            dur[a : a + len(data)] = data
        self._pending.clear()
        self.fences += 1
        if self.on_fence is not None:
            self.on_fence(self)

    def grow(self, new_size: int) -> None:
        if new_size <= self.size:
            return
        extra = bytes(new_size - self.size)
        self.buf.release()
        self._cur.extend(extra)
        self._dur.extend(extra)
        self.size = new_size
        self.buf = memoryview(self._cur)

    def persisted_image(self) -> bytes:
        """Exactly what is guaranteed durable now."""
        return bytes(self._dur)

    def crash_image(self, seed: int, model: str = "word") -> bytes:
        """An image PM could hold if power failed now: ``model="word"`` keeps each unflushed
        8-byte word or not at random; ``model="line"`` keeps a random prefix of the changed
        words of each 64-byte line (see the module's doc)."""
        if model not in CRASH_MODELS:
            raise ValueError(f"unknown crash model {model!r} (one of {CRASH_MODELS})")
        rng = random.Random(seed)
        cur, dur = self._cur, self._dur
        img = bytearray(dur)
        line = model == "line"
        for p in range(0, self.size, _CHUNK):
            q = min(p + _CHUNK, self.size)
            if cur[p:q] == dur[p:q]:
                continue
            if line:
                for a in range(p, q, 64):
                    b = min(a + 64, q)
                    if cur[a:b] == dur[a:b]:
                        continue
                    changed = [w for w in range(a, b, 8) if cur[w : w + 8] != dur[w : w + 8]]
                    for w in changed[: rng.randrange(len(changed) + 1)]:
                        img[w : w + 8] = cur[w : w + 8]
                continue
            for w in range(p, q, 8):
                if cur[w : w + 8] != dur[w : w + 8] and rng.random() < 0.5:
                    img[w : w + 8] = cur[w : w + 8]
        return bytes(img)

    def crash(self, seed: int, model: str = "word") -> SimDevice:
        """A new device holding :meth:`crash_image` (a simulated restart after power loss)."""
        return SimDevice(self.crash_image(seed, model))

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------- the disk path
_SECTOR = 512


class SimFile:
    """A simulated file on a disk: ``cache`` is what the page cache holds (what reads and
    mappings see), ``dur`` what ``fdatasync`` made durable.  A simulated power loss
    (:meth:`crash_image`) keeps, for every 512-byte sector written since the last sync,
    the old or the new contents at random (sectors are the unit a disk writes whole), and
    the old or the new length.  ``on_sync(file, "before"|"after")`` is called around every
    sync (and ``"during"`` a synced write): the persist points of the disk path."""

    def __init__(self, size_or_image: int | bytes | bytearray = 0) -> None:
        self.cache = (bytearray(size_or_image) if isinstance(size_or_image, int)
                      else bytearray(size_or_image))
        self.dur = bytearray(self.cache)
        self.syncs = 0
        self.on_sync: Callable[[SimFile, str], None] | None = None

    def pwrite(self, data: bytes | bytearray | memoryview, off: int) -> None:
        end = off + len(data)
        if end > len(self.cache):
            self.cache.extend(bytes(end - len(self.cache)))
        self.cache[off:end] = data

    def pwrite_ranges(self, buf: bytes | bytearray | memoryview,
                      ranges: list[tuple[int, int]]) -> None:
        mv = memoryview(buf)
        for off, n in ranges:
            self.pwrite(mv[off : off + n], off)

    def pread(self, n: int, off: int) -> bytes:
        return bytes(self.cache[off : off + n])

    def sync(self) -> None:
        if self.on_sync is not None:
            self.on_sync(self, "before")
        self.dur = bytearray(self.cache)
        self.syncs += 1
        if self.on_sync is not None:
            self.on_sync(self, "after")

    def pwrite_sync(self, data: bytes | bytearray | memoryview, off: int) -> None:
        """A synced write (``O_DSYNC``): this range, and only it, is durable after it.
        A power loss may also come while it is under way (``on_sync(file, "during")``):
        the range is in the page cache then, and any of its sectors may be on the disk or
        not (a disk writes a range in no particular order)."""
        if self.on_sync is not None:
            self.on_sync(self, "before")
        self.pwrite(data, off)
        if self.on_sync is not None:
            self.on_sync(self, "during")
        end = off + len(data)
        if end > len(self.dur):
            self.dur.extend(bytes(end - len(self.dur)))
        self.dur[off:end] = self.cache[off:end]
        self.syncs += 1
        if self.on_sync is not None:
            self.on_sync(self, "after")

    def truncate(self, n: int) -> None:
        if n > len(self.cache):
            self.cache.extend(bytes(n - len(self.cache)))
        else:
            del self.cache[n:]

    def size(self) -> int:
        return len(self.cache)

    def crash_image(self, seed: int) -> bytes:
        rng = random.Random(seed)
        cur, dur = self.cache, self.dur
        n = len(cur) if rng.random() < 0.5 else len(dur)
        img = bytearray(dur[:n]) + bytes(max(0, n - len(dur)))
        for p in range(0, n, _SECTOR):
            q = min(p + _SECTOR, n)
            if cur[p:q] != img[p:q] and rng.random() < 0.5:
                img[p:q] = cur[p:q].ljust(q - p, b"\0")
        return bytes(img)


def _disk_classes() -> tuple[type, type]:
    from .filedevice import DeferredFileDevice, FileDevice

    class SimFileDevice(FileDevice):
        """:class:`~persimmon.filedevice.FileDevice` over a :class:`SimFile` (its mapping
        is the file's page cache itself)."""

        kind = "sim-file"

        def __init__(self, file: SimFile, journal: SimFile) -> None:
            super().__init__("<sim>", -1, file, journal)  # type: ignore[arg-type]

        def _map(self) -> None:
            self.buf = memoryview(self.io.cache)  # type: ignore[attr-defined]

        def _remap(self, new_size: int) -> None:
            self.buf.release()
            self.io.truncate(new_size)
            self.size = new_size
            self._map()

        def _unmap(self) -> None:
            self.buf.release()

    class SimDeferredDevice(DeferredFileDevice):
        """:class:`~persimmon.filedevice.DeferredFileDevice` over a :class:`SimFile`: its
        private mapping is a copy; :meth:`refresh` copies a range the process never stores
        into (the operation log) from the page cache, as an untouched private page sees
        the file."""

        kind = "sim-file-deferred"

        def __init__(self, file: SimFile, journal: SimFile, interval: float = 0.0,
                     release_bytes: int | None = None) -> None:
            super().__init__("<sim>", -1, file, journal, interval,  # type: ignore[arg-type]
                             **({} if release_bytes is None
                                else {"release_bytes": release_bytes}))

        def _map(self) -> None:
            self._priv = bytearray(self.io.cache)  # type: ignore[attr-defined]
            self.buf = memoryview(self._priv)

        def _remap(self, new_size: int) -> None:
            self.buf.release()
            self.io.truncate(new_size)
            self._priv.extend(self.io.cache[len(self._priv) : new_size])  # type: ignore
            self.size = new_size
            self.buf = memoryview(self._priv)

        def _unmap(self) -> None:
            self.buf.release()

        def _discard(self, off: int, n: int) -> bool:
            # MADV_DONTNEED on a private page: it shows the file's page cache again (a
            # release that dropped a page holding stores not written back loses them here)
            self._priv[off : off + n] = self.io.cache[off : off + n]  # type: ignore
            return True

        def refresh(self, off: int, n: int) -> None:
            self.buf[off : off + n] = self.io.cache[off : off + n]  # type: ignore

    return SimFileDevice, SimDeferredDevice


def sim_disk_devices() -> tuple[type, type]:
    """``(SimFileDevice, SimDeferredDevice)``: the disk path's devices over SimFiles."""
    return _disk_classes()
