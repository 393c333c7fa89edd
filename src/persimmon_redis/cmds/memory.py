"""MEMORY USAGE / DOCTOR / STATS / PURGE / MALLOC-STATS / HELP."""

from __future__ import annotations

import sys
from collections import deque
from typing import Any

from ..datatypes import ZSet
from ..keyspace import Ctx, lookup, to_int
from ..registry import command
from ..replies import E_SYNTAX, OK, RError, RMap

_OVERHEAD = 56  # the key's entry in the dict and its expiry slot, roughly


def value_size(key: bytes, v: Any, samples: int = 5) -> int:
    """Bytes the key and its value take in this process (Python object sizes; for large
    containers an average over ``samples`` elements, as Redis samples; 0 = all)."""
    size = _OVERHEAD + sys.getsizeof(key) + sys.getsizeof(v)
    if isinstance(v, bytes):
        return size
    if isinstance(v, dict):
        items: Any = v.items()
        per = lambda it: sys.getsizeof(it[0]) + sys.getsizeof(it[1])  # noqa: E731
    elif isinstance(v, deque | set):
        items = v
        per = sys.getsizeof
    elif isinstance(v, ZSet):
        items = v.scores.items()
        per = lambda it: 2 * sys.getsizeof(it[0]) + 3 * sys.getsizeof(it[1])  # noqa: E731
    else:
        return size
    n = len(v)
    if n == 0:
        return size
    total = 0
    k = 0
    for it in items:
        total += per(it)
        k += 1
        if samples and k >= samples:
            break
    return size + total * n // k


@command("memory", arity=-2, flags=("readonly",), keys=(2, 2, 1))
def cmd_memory(ctx: Ctx, a: list) -> Any:
    sub = a[1].upper()
    if sub == b"USAGE" and len(a) >= 3:
        samples = 5
        i = 3
        while i < len(a):
            if a[i].upper() == b"SAMPLES" and i + 1 < len(a):
                samples = to_int(a[i + 1])
                if samples < 0:
                    raise RError(E_SYNTAX)
                i += 2
            else:
                raise RError(E_SYNTAX)
        v = lookup(ctx, a[2])
        return None if v is None else value_size(a[2], v, samples)
    if sub == b"DOCTOR" and len(a) == 2:
        return b"Hi Sam, I can't find any memory issue in your instance. I can only account " \
            b"for what occurs on this base."
    if sub == b"STATS" and len(a) == 2:
        keys = sum(len(db.data) for db in ctx.state.dbs)
        return RMap([(b"keys.count", keys), (b"dataset.percentage", b"100")])
    if sub in (b"PURGE", b"MALLOC-STATS") and len(a) == 2:
        return OK if sub == b"PURGE" else b"Stats not supported for the current allocator"
    if sub == b"HELP" and len(a) == 2:
        return [b"MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                b"DOCTOR", b"MALLOC-STATS", b"PURGE", b"STATS",
                b"USAGE <key> [SAMPLES <count>]", b"HELP"]
    if sub in (b"USAGE", b"DOCTOR", b"STATS", b"PURGE", b"MALLOC-STATS", b"HELP"):
        raise RError(f"ERR wrong number of arguments for 'memory|{sub.lower().decode()}' "
                     "command")
    raise RError(f"ERR unknown subcommand '{a[1].decode('utf-8', 'replace')}'. Try MEMORY "
                 "HELP.")
