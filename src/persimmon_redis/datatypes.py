"""The value types of the dataset: a database (``Db``) and a sorted set (``ZSet``).

Strings are ``bytes``, hashes ``dict``, lists ``deque``, sets ``set``; these two classes are
the rest.  Plain Python objects, so the same code runs on the DRAM copy and, in Persimmon's
shadow, on the PM copy through proxies (hence ``isinstance`` tests, never ``type(x) is``).
They are re-exported by ``state`` (pools made before this module existed name them
``persimmon_redis.state.Db`` / ``.ZSet``).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from typing import Any

from .replies import RError
from .stream import Stream

CHUNK = 128  # sorted-set chunk size


class Db:
    """One database: keys to values, and keys to absolute expiry deadlines (ms).

    ``raw``: the keys whose string Redis would hold ``raw``-encoded because APPEND,
    SETRANGE, SETBIT or BITFIELD changed it in place (Redis never converts such a string
    back; the next write of a whole value does).  A pool made before it existed has none
    (the class default) until the first such write."""

    raw: Any = None

    def __init__(self) -> None:
        self.data: dict = {}
        self.expires: dict = {}
        self.raw = set()


class ZSet:
    """A sorted set: member -> score, beside a chunked sorted list of (score, member).

    Chunks keep insertion and removal O(log n + CHUNK) on plain lists (the PM copy updates
    one small list, not one huge one).
    """

    def __init__(self) -> None:
        self.scores: dict = {}
        self.chunks: list = []
        self.maxes: list = []

    def __len__(self) -> int:
        return len(self.scores)

    def _locate(self, item: tuple) -> int:
        i = bisect_left(self.maxes, item)
        return min(i, len(self.chunks) - 1)

    def insert(self, score: float, member: bytes) -> None:
        item = (score, member)
        if not self.chunks:
            self.chunks.append([item])
            self.maxes.append(item)
            return
        ci = self._locate(item)
        chunk = self.chunks[ci]
        pos = bisect_left(chunk, item)
        chunk.insert(pos, item)
        if pos == len(chunk) - 1:
            self.maxes[ci] = item
        if len(chunk) > CHUNK:
            half = len(chunk) // 2
            right = chunk[half:]
            del chunk[half:]
            self.chunks.insert(ci + 1, right)
            self.maxes[ci] = chunk[-1]
            self.maxes.insert(ci + 1, right[-1])

    def remove(self, score: float, member: bytes) -> None:
        item = (score, member)
        ci = self._locate(item)
        chunk = self.chunks[ci]
        pos = bisect_left(chunk, item)
        del chunk[pos]
        if not chunk:
            del self.chunks[ci]
            del self.maxes[ci]
        elif pos == len(chunk):
            self.maxes[ci] = chunk[-1]

    def add(self, member: bytes, score: float) -> None:
        old = self.scores.get(member)
        if old is not None:
            if old == score:
                return
            self.remove(old, member)
        self.scores[member] = score
        self.insert(score, member)

    def discard(self, member: bytes) -> bool:
        old = self.scores.pop(member, None)
        if old is None:
            return False
        self.remove(old, member)
        return True

    def items(self) -> list:
        """All (score, member) in order."""
        out: list = []
        for c in self.chunks:
            out.extend(c)
        return out

    def rank(self, member: bytes) -> int | None:
        score = self.scores.get(member)
        if score is None:
            return None
        item = (score, member)
        ci = self._locate(item)
        before = sum(len(c) for c in self.chunks[:ci])
        return before + bisect_left(self.chunks[ci], item)

    def count_below(self, item: tuple, inclusive: bool) -> int:
        """Number of elements < item (<= item when inclusive)."""
        n = 0
        find = bisect_right if inclusive else bisect_left
        for c, m in zip(self.chunks, self.maxes, strict=True):
            if (m <= item) if inclusive else (m < item):
                n += len(c)
            else:
                return n + find(c, item)
        return n


def type_name(v: Any) -> bytes:
    if isinstance(v, bytes):
        return b"string"
    if isinstance(v, dict):
        return b"hash"
    if isinstance(v, deque | list):
        return b"list"
    if isinstance(v, set):
        return b"set"
    if isinstance(v, ZSet):
        return b"zset"
    if isinstance(v, Stream):
        return b"stream"
    raise RError("ERR unknown value type")
