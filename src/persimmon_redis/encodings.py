"""What OBJECT ENCODING answers: the encoding Redis 7.0 would use for a value, given the
encoding thresholds of CONFIG (``hash-max-listpack-*``, ``set-max-intset-entries``,
``zset-max-listpack-*``).

persimmon-redis stores every value one way (bytes, dict, deque, set, ZSet); the answer is
derived from the value's contents and the thresholds now in force.  Redis converts a value
only when a write crosses a threshold and never converts back, so a value that grew past a
threshold and then shrank, or one made before the thresholds changed, can be reported
differently from Redis (see docs/redis.md).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from .datatypes import ZSet

# set by config.Config (the values of CONFIG); Redis 7.0's defaults
THRESHOLDS = {
    "hash-max-listpack-entries": 512, "hash-max-listpack-value": 64,
    "set-max-intset-entries": 512,
    "zset-max-listpack-entries": 128, "zset-max-listpack-value": 64,
}
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1


def is_int64(b: bytes) -> bool:
    """Redis's string2ll: a canonical decimal integer that fits in 64 bits."""
    n = len(b)
    if n == 0 or n > 20:
        return False
    if b[0] == 0x2D:  # '-'
        digits = b[1:]
        if not digits or digits == b"0":
            return False
    else:
        digits = b
    if not digits.isdigit() or (digits[0] == 0x30 and len(digits) > 1):
        return False
    return _I64_MIN <= int(b) <= _I64_MAX


def encoding_of(v: Any) -> bytes:
    t = THRESHOLDS
    if isinstance(v, bytes):
        if is_int64(v):
            return b"int"
        return b"embstr" if len(v) <= 44 else b"raw"
    if isinstance(v, dict):
        maxv = t["hash-max-listpack-value"]
        if len(v) <= t["hash-max-listpack-entries"] and all(
                len(f) <= maxv and len(x) <= maxv for f, x in v.items()):
            return b"listpack"
        return b"hashtable"
    if isinstance(v, deque):
        return b"quicklist"
    if isinstance(v, set):
        if len(v) <= t["set-max-intset-entries"] and all(is_int64(m) for m in v):
            return b"intset"
        return b"hashtable"
    if isinstance(v, ZSet):
        maxv = t["zset-max-listpack-value"]
        if len(v) <= t["zset-max-listpack-entries"] and all(
                len(m) <= maxv for m in v.scores):
            return b"listpack"
        return b"skiplist"
    return b"raw"
