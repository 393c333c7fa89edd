"""A copy-on-write view of a pool file, for checks that must not change it.

``persimmon check`` runs what a writable open runs (rollback of an uncommitted batch, the
walk that rebuilds reference counts and free lists) to find every damage an open would find.
Rollback writes into the pool, so the check runs it on a private mapping
(``MAP_PRIVATE``): the process sees its own writes, the file and every other process see
none of them, and only the pages written are copied.
"""

from __future__ import annotations

import mmap
import os

from .device import Device, DeviceError


class PrivateView(Device):
    """The pool file at ``path`` mapped copy-on-write: stores stay in this process."""

    kind = "private"
    persists_nothing = True

    def __init__(self, path: str) -> None:
        self.path = path
        fd = os.open(path, os.O_RDONLY)
        try:
            self.size = os.fstat(fd).st_size
            if self.size == 0:
                raise DeviceError(f"{path} is empty: nothing to map")
            self._mm = mmap.mmap(fd, self.size, mmap.MAP_PRIVATE,
                                 mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self.buf = memoryview(self._mm)

    def flush(self, off: int, n: int) -> None:
        return None

    def drain(self) -> None:
        return None

    def grow(self, new_size: int) -> None:
        raise DeviceError(f"{self.path}: a private view of a pool cannot grow")

    def close(self) -> None:
        if self._mm.closed:
            return
        self.buf.release()
        self._mm.close()
