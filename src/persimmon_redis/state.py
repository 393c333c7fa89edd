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

from collections import deque
from typing import Any

from .commands import execute_op
from .datatypes import Db, ZSet, type_name

__all__ = ["Db", "RedisState", "ZSet", "dump", "type_name"]


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

    # ``apply(op)``: run one logged write (or a whole MULTI/EXEC).  The function itself,
    # not a method that calls it: one Python call fewer per write, here and in the shadow.
    apply = execute_op


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
