"""Commands whose effect depends on chance or could block, in forms a state machine can run.

Outside a transaction the server resolves them itself: it picks SPOP's members (and logs
``\\x00spop`` with them), answers the random reads from the DRAM copy, and parks a blocking
pop until a key can serve it (then logs ``\\x00bpop``).  Inside MULTI/EXEC, where the whole
transaction must be one logged operation, they run inside it:

* ``(b"\\x00rand", seed, *argv)``: SPOP, SRANDMEMBER, ZRANDMEMBER, HRANDFIELD or RANDOMKEY
  with choices drawn from ``random.Random(seed)`` over an order both copies agree on (set
  members sorted; dicts, sorted-set items and the key space in their own, deterministic
  order), so the DRAM copy and the PM copy pick the same members;
* ``(b"\\x00bpop", *argv)``: a blocking pop that does not block (Redis inside MULTI): it pops
  from the first key that can serve it, or answers the null array.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any

from .datatypes import ZSet
from .keyspace import (
    I64_MAX,
    Ctx,
    get_hash,
    get_set,
    get_zset,
    live_keys,
    lookup,
    parse_mpop,
    to_int,
)
from .registry import COMMANDS, command
from .replies import E_SYNTAX, NULL_ARRAY, WRONGTYPE, RDouble, RError, RPairs


def resolve(ctx: Ctx, a: list, rng: random.Random, canonical: bool) -> tuple[Any, Any]:
    """``(reply, write)`` of a random command: ``write`` is the ``\\x00spop`` operation that
    removes SPOP's chosen members (its result is the reply), None for the reads.
    ``canonical``: order set members so that both copies see the same order (sorting costs
    O(n log n); the server's own choices outside a transaction need not)."""
    name = a[0].lower()
    if name == b"randomkey":
        keys = live_keys(ctx)
        return (rng.choice(keys) if keys else None), None
    if name == b"spop":
        st = get_set(ctx, a[1])
        count = None
        if len(a) == 3:
            count = to_int(a[2], "ERR value is out of range, must be positive")
            if count < 0:
                raise RError("ERR value is out of range, must be positive")
        elif len(a) > 3:
            raise RError(E_SYNTAX)
        if st is None:
            return (None if count is None else []), None
        members = sorted(st) if canonical else list(st)
        chosen = rng.sample(members, min(len(members), 1 if count is None else count))
        return None, (b"\x00spop", a[1], b"1" if count is None else b"0", *chosen)
    if name == b"srandmember":
        st = get_set(ctx, a[1])
        count = _count(a[2], False) if len(a) == 3 else None
        if len(a) > 3:
            raise RError(E_SYNTAX)
        members = (sorted(st) if canonical else list(st)) if st is not None else []
        return _pick(members, count, rng, lambda m: [m]), None
    if name == b"zrandmember":
        ws = len(a) == 4 and a[3].upper() == b"WITHSCORES"
        if len(a) > 4 or (len(a) == 4 and not ws):
            raise RError(E_SYNTAX)
        count = _count(a[2], ws) if len(a) >= 3 else None
        z = get_zset(ctx, a[1])
        items = z.items() if z is not None else []
        return _pairs(_pick(items, count, rng,
                            lambda it: [it[1], RDouble(it[0])] if ws else [it[1]], single=1),
                      ws), None
    # hrandfield
    ws = len(a) == 4 and a[3].upper() == b"WITHVALUES"
    if len(a) > 4 or (len(a) == 4 and not ws):
        raise RError(E_SYNTAX)
    count = _count(a[2], ws) if len(a) >= 3 else None
    h = get_hash(ctx, a[1])
    items = list(h.items()) if h is not None else []
    return _pairs(_pick(items, count, rng, lambda it: [it[0], it[1]] if ws else [it[0]],
                        single=0), ws), None


def _count(b: bytes, pairs: bool) -> int:
    """The count argument with Redis's range checks (pairs: half the range, as the reply
    has two entries per element)."""
    n = to_int(b)
    if n < -I64_MAX:
        raise RError(f"ERR value is out of range, value must between {-I64_MAX} and "
                     f"{I64_MAX}")
    if pairs and (n < -I64_MAX // 2 or n > I64_MAX // 2):
        raise RError("ERR value is out of range")
    return n


def _pairs(flat: Any, ws: bool) -> Any:
    """WITHSCORES / WITHVALUES replies: pairs (an array of pairs in RESP3)."""
    if not ws or not isinstance(flat, list):
        return flat
    return RPairs(zip(flat[::2], flat[1::2], strict=True))


def _pick(items: list, count: int | None, rng: random.Random, shape: Any,
          single: int | None = None) -> Any:
    """Redis's choice rules: no count -> one element (or nil); count >= 0 -> distinct
    elements; count < 0 -> -count elements with repetition.  ``shape(item)`` gives the
    reply fields of one item, ``single`` which field answers the count-less form."""
    if count is None:
        if not items:
            return None
        it = rng.choice(items)
        return it if single is None else it[single]
    if count >= 0:
        pick = rng.sample(items, min(count, len(items)))
    else:
        pick = [rng.choice(items) for _ in range(-count)] if items else []
    out: list = []
    for it in pick:
        out += shape(it)
    return out


@command("\x00rand", arity=-3, flags=("write", "internal"), keys=(0, 0, 0))
def rand_op(ctx: Ctx, a: list) -> Any:
    """``\\x00rand seed argv...``: a random command run inside a transaction."""
    reply, write = resolve(ctx, list(a[2:]), random.Random(int(a[1])), canonical=True)
    if write is not None:
        return COMMANDS[b"\x00spop"].fn(ctx, list(write))
    return reply


def bpop_keys(a: list) -> tuple[list, bytes]:
    """``(keys, timeout argument)`` of a blocking pop (raises RError on bad syntax)."""
    name = a[0].lower()
    if name in (b"blpop", b"brpop", b"bzpopmin", b"bzpopmax"):
        return list(a[1:-1]), a[-1]
    if name == b"brpoplpush":
        return [a[1]], a[3]
    if name == b"blmove":
        return [a[1]], a[5]
    kinds = (b"LEFT", b"RIGHT") if name == b"blmpop" else (b"MIN", b"MAX")
    keys, _, _ = parse_mpop(a, 2, kinds)
    return keys, a[1]


def timeout_arg(b: bytes) -> float:
    """A blocking command's timeout in seconds (Redis's errors for a bad one)."""
    try:
        t = float(b)
    except ValueError:
        raise RError("ERR timeout is not a float or out of range") from None
    if t < 0:
        raise RError("ERR timeout is negative")
    return t


def bpop_ready(ctx: Ctx, a: list) -> Any:
    """The first key a blocking pop can serve now, an RError (wrong type), or None."""
    want = ZSet if a[0].lower().startswith(b"bz") else deque
    for k in bpop_keys(a)[0]:
        v = lookup(ctx, k)
        if v is None:
            continue
        if not isinstance(v, want):
            return RError(WRONGTYPE)
        if len(v):
            return k
    return None


@command("\x00bpop", arity=-3, flags=("write", "internal"), keys=(0, 0, 0))
def bpop_op(ctx: Ctx, a: list) -> Any:
    """``\\x00bpop argv...``: pop as the blocking command would once ``bpop_ready``."""
    a = list(a[1:])
    timeout_arg(bpop_keys(a)[1])  # inside MULTI a bad timeout is this command's error
    k = bpop_ready(ctx, a)
    if k is None:
        return NULL_ARRAY
    if isinstance(k, RError):
        return k
    name = a[0].lower()
    run = _run_on(ctx)
    if name == b"blpop":
        return [k, run(b"lpop", k)]
    if name == b"brpop":
        return [k, run(b"rpop", k)]
    if name == b"brpoplpush":
        return run(b"rpoplpush", k, a[2])
    if name == b"blmove":
        return run(b"lmove", k, a[2], a[3], a[4])
    if name == b"blmpop":
        return run(b"lmpop", b"1", k, *a[3 + int(a[2]) :])
    if name in (b"bzpopmin", b"bzpopmax"):
        return [k, *run(b"zpopmax" if name == b"bzpopmax" else b"zpopmin", k)]
    return run(b"zmpop", b"1", k, *a[3 + int(a[2]) :])


def _run_on(ctx: Ctx) -> Any:
    def run(name: bytes, *args: bytes) -> Any:
        return COMMANDS[name].fn(ctx, [name, *args])

    return run
