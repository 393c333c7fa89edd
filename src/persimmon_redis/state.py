"""The Redis dataset as a deterministic state machine.

Everything is plain Python built from dict, list, set, deque, tuple and small classes, so
that the same code runs on the DRAM copy and, in Persimmon's shadow process, on the PM copy
through proxies (which is why containers are tested with ``isinstance`` and nothing here
depends on set order).

An operation is ``(db, now_ms, argv)``: a write command with the database it runs in and the
server's clock when it was issued, or ``(db, now_ms, (b"exec", argv1, argv2, ...))`` for a
transaction.  ``apply`` never reads the clock or a random number: time comes in the
operation (a key whose deadline has passed by ``now_ms`` is deleted, deterministically, on
both copies), and random choices (SPOP, SRANDMEMBER, ...) are made by the server before the
operation is built.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from typing import Any

from .replies import RError

CHUNK = 128  # sorted-set chunk size


class Db:
    """One database: keys to values, and keys to absolute expiry deadlines (ms)."""

    def __init__(self) -> None:
        self.data: dict = {}
        self.expires: dict = {}


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


class RedisState:
    """All databases; ``apply(op)`` executes one write operation (see the module doc).

    ``functions``: the libraries loaded with FUNCTION LOAD (library name -> code), part of
    the persistent state like Redis's RDB keeps them.  A pool made before scripting existed
    has no such attribute: the class default (None) reads as "no libraries", and the first
    FUNCTION LOAD sets it."""

    functions: Any = None

    def __init__(self, databases: int = 16) -> None:
        self.dbs = [Db() for _ in range(databases)]
        self.functions = {}

    def apply(self, op: Any) -> Any:
        return _execute(self, op)


def _execute(state: Any, op: Any) -> Any:
    # Bound to commands.execute_op on first use (commands imports this module).
    global _execute
    from . import scripting  # noqa: F401  (registers the script operations)
    from .commands import execute_op

    _execute = execute_op
    return execute_op(state, op)


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
    raise RError("ERR unknown value type")


def dump(state: RedisState) -> list:
    """A canonical plain structure of the whole dataset (for tests and comparisons)."""
    out = []
    for i, db in enumerate(state.dbs):
        keys = {}
        for k, v in db.data.items():
            if isinstance(v, bytes):
                pv: Any = v
            elif isinstance(v, dict):
                pv = sorted(v.items())
            elif isinstance(v, deque | list):
                pv = list(v)
            elif isinstance(v, set):
                pv = sorted(v)
            else:
                pv = v.items()
            keys[k] = (type_name(v), pv, db.expires.get(k))
        if keys:
            out.append((i, sorted(keys.items())))
    return out
