"""HyperLogLog commands: PFADD, PFCOUNT, PFMERGE (the representation is in ``hll.py``).

PFCOUNT of one key stores the cardinality it computed in the header, as Redis does, so it
is a logged write (the PM copy caches the same bytes); PFCOUNT of several keys only reads.
``hll-sparse-max-bytes`` is read from the state (``state.hll_sparse_max_bytes``, a logged
setting, default 3000), never from the server's config, so both copies promote alike.
"""

from __future__ import annotations

from typing import Any

from .. import datasettings as datacfg
from .. import hll
from ..keyspace import Ctx, get_str, lookup, lookup_write, set_value
from ..registry import command
from ..replies import OK, WRONGTYPE, RError

E_NOTHLL = "WRONGTYPE Key is not a valid HyperLogLog string value."
E_INVALID = "INVALIDOBJ Corrupted HLL object detected"


def sparse_max(ctx: Ctx) -> int:
    """hll-sparse-max-bytes as the state machine knows it (a logged setting)."""
    return datacfg.get(ctx.state, b"hll-sparse-max-bytes")


def _hll_value(v: Any) -> bytes:
    if not isinstance(v, bytes):
        raise RError(WRONGTYPE)
    if not hll.check(v):
        raise RError(E_NOTHLL)
    return v


@command("pfadd", arity=-2, flags=("write", "denyoom", "fast"))
def cmd_pfadd(ctx: Ctx, a: list) -> Any:
    v = lookup_write(ctx, a[1])
    updated = 0
    if v is None:
        v = hll.empty()
        updated = 1
    else:
        _hll_value(v)
    h = hll.Hll(v)
    mx = sparse_max(ctx)
    try:
        for i, c in hll.pat_lens(a[2:]):
            if h.set(i, c, mx):
                updated += 1
    except hll.Invalid:
        raise RError(E_INVALID) from None
    if updated:
        h.invalidate()
        set_value(ctx, a[1], h.encode(), keep_ttl=True)
    return 1 if updated else 0


@command("pfcount", arity=-2, flags=("write", "may-replicate"), keys=(1, -1, 1))
def cmd_pfcount(ctx: Ctx, a: list) -> Any:
    if len(a) > 2:
        regs = bytearray(hll.REGISTERS)
        for k in a[1:]:
            v = lookup(ctx, k)
            if v is None:
                continue
            _hll_value(v)
            try:
                other = hll.registers(v)
            except hll.Invalid:
                raise RError(E_INVALID) from None
            regs = hll.maxed(regs, other)
        return hll.count(regs)
    v = lookup_write(ctx, a[1])
    if v is None:
        return 0
    _hll_value(v)
    card = hll.cached(v)
    if card is not None:
        return card
    try:
        card = hll.count(hll.registers(v))
    except hll.Invalid:
        raise RError(E_INVALID) from None
    set_value(ctx, a[1], hll.with_cache(v, card), keep_ttl=True)
    return card


@command("pfmerge", arity=-2, flags=("write", "denyoom"), keys=(1, -1, 1))
def cmd_pfmerge(ctx: Ctx, a: list) -> Any:
    regs = bytearray(hll.REGISTERS)
    dense = False
    for k in a[1:]:
        v = lookup_write(ctx, k)
        if v is None:
            continue
        _hll_value(v)
        if v[4] == hll.DENSE:
            dense = True
        try:
            regs = hll.maxed(regs, hll.registers(v))
        except hll.Invalid:
            raise RError(E_INVALID) from None
    v = get_str(ctx, a[1], write=True)
    h = hll.Hll(v if v is not None else hll.empty())
    mx = sparse_max(ctx)
    try:
        if dense and h.ops is not None:
            h.promote()
        if h.ops is None:
            cur = hll.dense_registers(bytes(h.regs))
            h.regs = hll.dense_from_registers(hll.maxed(cur, regs))
        else:
            for j, c in enumerate(regs):
                if c:
                    h.set(j, c, mx)
    except hll.Invalid:
        raise RError(E_INVALID) from None
    h.invalidate()
    set_value(ctx, a[1], h.encode(), keep_ttl=True)
    return OK
