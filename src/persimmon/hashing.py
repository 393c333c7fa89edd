"""Stable hashing of dict keys and set members.

Python's own ``hash()`` of ``str`` and ``bytes`` changes from process to process, so it can
never be stored in a pool.  :func:`phash` gives the same 64-bit value in every process and
respects Python's equality: values that compare equal hash equal (``1 == 1.0 == True``).
"""

from __future__ import annotations

import numbers

from xxhash import xxh3_64_intdigest

from .errors import UnpersistableError

MASK = (1 << 64) - 1
_NONE_HASH = 0x6E6F6E65  # stable constant for None
# Key types a table's DRAM index holds (immutable, and equal exactly when Python says so)
INDEX_KEY_TYPES = frozenset({str, bytes, int, float, bool, type(None)})


def _mix(h: int) -> int:
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & MASK
    h ^= h >> 33
    return h


def phash(key: object) -> int:
    """Stable 64-bit hash of a hashable key.

    Supported: str, bytes, int, float, bool, None, complex and other numbers, and tuples and
    frozensets of supported values.  Other types raise :class:`UnpersistableError`, because
    their hash is either per-process (identity, or derived from a str) or unknown.
    """
    t = type(key)
    if t is bytes:
        return xxh3_64_intdigest(key)
    if t is str:
        return xxh3_64_intdigest(key.encode("utf-8", "surrogatepass"), 1)
    if t is int or t is float or t is bool:
        return hash(key) & MASK
    if key is None:
        return _NONE_HASH
    if t is tuple:
        h = 0x345678 + len(key)
        for item in key:
            h = _mix((h * 1000003) ^ phash(item))
        return h
    if t is frozenset:
        acc = 0
        for item in key:
            acc = (acc + _mix(phash(item))) & MASK
        return _mix(acc ^ len(key))
    if isinstance(key, str):
        return xxh3_64_intdigest(str.encode(key, "utf-8", "surrogatepass"), 1)
    if isinstance(key, bytes):
        return xxh3_64_intdigest(bytes(key))
    if isinstance(key, numbers.Number):
        return hash(key) & MASK
    raise UnpersistableError(
        f"{t.__module__}.{t.__qualname__}", "",
        "it cannot be a key in persistent memory because its hash is not stable across "
        "processes (use str, bytes, numbers, None, or tuples of them)",
    )
