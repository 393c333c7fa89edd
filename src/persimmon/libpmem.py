"""ctypes binding of the few PMDK libpmem functions Persimmon uses.

Loaded lazily; :func:`load` returns None when ``libpmem.so.1`` (Debian package libpmem1) is
not installed.  libpmem reads ``PMEM_IS_PMEM_FORCE`` when it is loaded, so set that variable
before the first call if you want tmpfs treated as PM.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from ctypes import POINTER, c_char_p, c_int, c_size_t, c_uint, c_void_p

PMEM_FILE_CREATE = 1 << 0
PMEM_FILE_EXCL = 1 << 1

_lib: ctypes.CDLL | None = None
_tried = False


def load() -> ctypes.CDLL | None:
    """The loaded library with argument types set, or None if it is not installed."""
    global _lib, _tried
    if _tried:
        return _lib
    _tried = True
    for name in ("libpmem.so.1", ctypes.util.find_library("pmem")):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError:
            continue
        lib.pmem_map_file.argtypes = [c_char_p, c_size_t, c_int, c_uint, POINTER(c_size_t),
                                      POINTER(c_int)]
        lib.pmem_map_file.restype = c_void_p
        lib.pmem_unmap.argtypes = [c_void_p, c_size_t]
        lib.pmem_unmap.restype = c_int
        lib.pmem_is_pmem.argtypes = [c_void_p, c_size_t]
        lib.pmem_is_pmem.restype = c_int
        lib.pmem_flush.argtypes = [c_void_p, c_size_t]
        lib.pmem_flush.restype = None
        lib.pmem_drain.argtypes = []
        lib.pmem_drain.restype = None
        lib.pmem_persist.argtypes = [c_void_p, c_size_t]
        lib.pmem_persist.restype = None
        lib.pmem_msync.argtypes = [c_void_p, c_size_t]
        lib.pmem_msync.restype = c_int
        lib.pmem_errormsg.argtypes = []
        lib.pmem_errormsg.restype = c_char_p
        _lib = lib
        break
    return _lib


def errormsg() -> str:
    lib = load()
    if lib is None:
        return "libpmem is not loaded"
    msg = lib.pmem_errormsg()
    return msg.decode("utf-8", "replace") if msg else "unknown libpmem error"
