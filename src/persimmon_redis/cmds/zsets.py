"""Sorted-set commands (values are ``datatypes.ZSet``).
"""

from __future__ import annotations

import math
from typing import Any

from ..datatypes import ZSet
from ..encodings import encoding_of
from ..keyspace import (
    Ctx,
    delete,
    drop_if_empty,
    get_zset,
    index_range,
    lookup,
    lookup_write,
    parse_mpop,
    scan_args,
    scan_cursor,
    scan_slice,
    to_float,
    to_int,
)
from ..registry import command
from ..replies import (
    E_POSITIVE,
    E_SYNTAX,
    NULL_ARRAY,
    WRONGTYPE,
    RDouble,
    RError,
    RPairs,
    fmt_double,
)


@command("zadd", arity=-4, flags=("write", "denyoom", "fast"))
def cmd_zadd(ctx: Ctx, a: list) -> Any:
    flags = set()
    i = 2
    while i < len(a) and a[i].upper() in (b"NX", b"XX", b"GT", b"LT", b"CH", b"INCR"):
        flags.add(a[i].upper())
        i += 1
    pairs = a[i:]
    if not pairs or len(pairs) % 2:
        raise RError(E_SYNTAX)
    if b"NX" in flags and b"XX" in flags:
        raise RError("ERR XX and NX options at the same time are not compatible")
    if (b"GT" in flags and b"LT" in flags) or (b"NX" in flags and flags & {b"GT", b"LT"}):
        raise RError("ERR GT, LT, and/or NX options at the same time are not compatible")
    incr = b"INCR" in flags
    if incr and len(pairs) != 2:
        raise RError("ERR INCR option supports a single increment-element pair")
    scores = [to_float(pairs[j]) for j in range(0, len(pairs), 2)]
    z = get_zset(ctx, a[1], write=True)
    if z is None:
        if b"XX" in flags:
            return None if incr else 0
        z = get_zset(ctx, a[1], write=True, create=True)
    added = changed = 0
    result = None
    for sc, j in zip(scores, range(1, len(pairs), 2), strict=True):
        m = pairs[j]
        cur = z.scores.get(m)
        if cur is None:
            if b"XX" in flags:
                continue
            new = sc
            if incr and math.isnan(new):
                raise RError("ERR resulting score is not a number (NaN)")
            z.add(m, new)
            added += 1
            result = new
            continue
        if b"NX" in flags:
            continue
        new = cur + sc if incr else sc
        if math.isnan(new):
            raise RError("ERR resulting score is not a number (NaN)")
        if (b"GT" in flags and new <= cur) or (b"LT" in flags and new >= cur):
            continue
        if new != cur:
            z.add(m, new)
            changed += 1
        result = new
    drop_if_empty(ctx, a[1], z)
    if incr:
        return RDouble(result) if result is not None else None
    return added + changed if b"CH" in flags else added


@command("zincrby", arity=4, flags=("write", "denyoom", "fast"))
def cmd_zincrby(ctx: Ctx, a: list) -> Any:
    by = to_float(a[2])
    z = get_zset(ctx, a[1], write=True, create=True)
    new = z.scores.get(a[3], 0.0) + by
    if math.isnan(new):
        raise RError("ERR resulting score is not a number (NaN)")
    z.add(a[3], new)
    return RDouble(new)


@command("zrem", arity=-3, flags=("write", "fast"))
def cmd_zrem(ctx: Ctx, a: list) -> Any:
    z = get_zset(ctx, a[1], write=True)
    if z is None:
        return 0
    n = sum(1 for m in a[2:] if z.discard(m))
    drop_if_empty(ctx, a[1], z)
    return n


@command("zcard", arity=2, flags=("readonly", "fast"))
def cmd_zcard(ctx: Ctx, a: list) -> Any:
    z = get_zset(ctx, a[1])
    return len(z) if z is not None else 0


@command("zscore", arity=3, flags=("readonly", "fast"))
def cmd_zscore(ctx: Ctx, a: list) -> Any:
    z = get_zset(ctx, a[1])
    s = z.scores.get(a[2]) if z is not None else None
    return RDouble(s) if s is not None else None


@command("zmscore", arity=-3, flags=("readonly", "fast"))
def cmd_zmscore(ctx: Ctx, a: list) -> Any:
    z = get_zset(ctx, a[1])
    out = []
    for m in a[2:]:
        s = z.scores.get(m) if z is not None else None
        out.append(RDouble(s) if s is not None else None)
    return out


def _score_bound(b: bytes) -> tuple[float, bool]:
    """(value, exclusive)"""
    if b.startswith(b"("):
        return to_float(b[1:], "ERR min or max is not a float"), True
    return to_float(b, "ERR min or max is not a float"), False


def _lex_bound(b: bytes) -> tuple[Any, bool]:
    if b == b"-":
        return _NEG, False
    if b == b"+":
        return _POS, False
    if b[:1] == b"(":
        return b[1:], True
    if b[:1] == b"[":
        return b[1:], False
    raise RError("ERR min or max not valid string range item")


class _Inf:
    def __init__(self, sign: int) -> None:
        self.sign = sign


_NEG, _POS = _Inf(-1), _Inf(1)


def _lex_ge(m: bytes, lo: Any, excl: bool) -> bool:
    if lo is _NEG:
        return True
    if lo is _POS:
        return False
    return m > lo if excl else m >= lo


def _lex_le(m: bytes, hi: Any, excl: bool) -> bool:
    if hi is _POS:
        return True
    if hi is _NEG:
        return False
    return m < hi if excl else m <= hi


def _in_score(s: float, lo: float, lox: bool, hi: float, hix: bool) -> bool:
    return (s > lo if lox else s >= lo) and (s < hi if hix else s <= hi)


@command("zcount", arity=4, flags=("readonly", "fast"))
def cmd_zcount(ctx: Ctx, a: list) -> Any:
    lo, lox = _score_bound(a[2])
    hi, hix = _score_bound(a[3])
    z = get_zset(ctx, a[1])
    if z is None:
        return 0
    return sum(1 for s, _ in z.items() if _in_score(s, lo, lox, hi, hix))


@command("zlexcount", arity=4, flags=("readonly", "fast"))
def cmd_zlexcount(ctx: Ctx, a: list) -> Any:
    lo, lox = _lex_bound(a[2])
    hi, hix = _lex_bound(a[3])
    z = get_zset(ctx, a[1])
    if z is None:
        return 0
    return sum(1 for _, m in z.items() if _lex_ge(m, lo, lox) and _lex_le(m, hi, hix))


@command("zrank", arity=-3, flags=("readonly", "fast"))
def cmd_zrank(ctx: Ctx, a: list, rev: bool = False) -> Any:
    withscore = False
    if len(a) == 4:
        if a[3].upper() != b"WITHSCORE":
            raise RError(E_SYNTAX)
        withscore = True
    elif len(a) > 4:
        raise RError(E_SYNTAX)
    z = get_zset(ctx, a[1])
    r = z.rank(a[2]) if z is not None else None
    if r is None:
        return None
    if rev:
        r = len(z) - 1 - r
    return [r, RDouble(z.scores[a[2]])] if withscore else r


@command("zrevrank", arity=-3, flags=("readonly", "fast"))
def cmd_zrevrank(ctx: Ctx, a: list) -> Any:
    return cmd_zrank(ctx, a, rev=True)


def _zrange_select(z: Any, a: list, start_i: int, by: bytes | None, rev: bool,
                   limit: tuple[int, int] | None) -> list:
    """The (score, member) items selected by a ZRANGE-family query."""
    items = z.items() if z is not None else []
    lo_b, hi_b = a[start_i], a[start_i + 1]
    if by is None:
        start, end = to_int(lo_b), to_int(hi_b)
        n = len(items)
        s, e = index_range(start, end, n)
        if s > e or s >= n:
            return []
        if rev:
            items = items[::-1]
        return items[s : e + 1]
    if by == b"SCORE":
        if rev:
            lo_b, hi_b = hi_b, lo_b
        lo, lox = _score_bound(lo_b)
        hi, hix = _score_bound(hi_b)
        sel = [it for it in items if _in_score(it[0], lo, lox, hi, hix)]
    else:
        if rev:
            lo_b, hi_b = hi_b, lo_b
        lo, lox = _lex_bound(lo_b)
        hi, hix = _lex_bound(hi_b)
        sel = [it for it in items if _lex_ge(it[1], lo, lox) and _lex_le(it[1], hi, hix)]
    if rev:
        sel = sel[::-1]
    if limit is not None:
        off, cnt = limit
        if off < 0:
            return []
        sel = sel[off:] if cnt < 0 else sel[off : off + cnt]
    return sel


def _zrange_parse(a: list, first: int, allow_withscores: bool = True
                  ) -> tuple[bytes | None, bool, tuple | None, bool]:
    by = None
    rev = False
    limit = None
    withscores = False
    i = first
    while i < len(a):
        opt = a[i].upper()
        if opt == b"BYSCORE":
            by = b"SCORE"
        elif opt == b"BYLEX":
            by = b"LEX"
        elif opt == b"REV":
            rev = True
        elif opt == b"WITHSCORES" and allow_withscores:
            withscores = True
        elif opt == b"LIMIT" and i + 2 < len(a):
            limit = (to_int(a[i + 1]), to_int(a[i + 2]))
            i += 2
        else:
            raise RError(E_SYNTAX)
        i += 1
    if limit is not None and by is None:
        raise RError("ERR syntax error, LIMIT is only supported in combination with either "
                     "BYSCORE or BYLEX")
    if withscores and by == b"LEX":
        raise RError("ERR syntax error, WITHSCORES not supported in combination with BYLEX")
    return by, rev, limit, withscores


def _flat(sel: list, withscores: bool) -> list:
    if not withscores:
        return [m for _, m in sel]
    return RPairs([(m, RDouble(s)) for s, m in sel])


@command("zrange", arity=-4, flags=("readonly",))
def cmd_zrange(ctx: Ctx, a: list) -> Any:
    by, rev, limit, ws = _zrange_parse(a, 4)
    return _flat(_zrange_select(get_zset(ctx, a[1]), a, 2, by, rev, limit), ws)


def _legacy_range(ctx: Ctx, a: list, by: bytes | None, rev: bool) -> Any:
    ws = False
    limit = None
    i = 4
    while i < len(a):
        opt = a[i].upper()
        if opt == b"WITHSCORES" and by != b"LEX":
            ws = True
        elif opt == b"LIMIT" and by is not None and i + 2 < len(a):
            limit = (to_int(a[i + 1]), to_int(a[i + 2]))
            i += 2
        else:
            raise RError(E_SYNTAX)
        i += 1
    return _flat(_zrange_select(get_zset(ctx, a[1]), a, 2, by, rev, limit), ws)


@command("zrangebyscore", arity=-4, flags=("readonly",))
def cmd_zrangebyscore(ctx: Ctx, a: list) -> Any:
    return _legacy_range(ctx, a, b"SCORE", False)


@command("zrevrangebyscore", arity=-4, flags=("readonly",))
def cmd_zrevrangebyscore(ctx: Ctx, a: list) -> Any:
    return _legacy_range(ctx, a, b"SCORE", True)


@command("zrangebylex", arity=-4, flags=("readonly",))
def cmd_zrangebylex(ctx: Ctx, a: list) -> Any:
    return _legacy_range(ctx, a, b"LEX", False)


@command("zrevrangebylex", arity=-4, flags=("readonly",))
def cmd_zrevrangebylex(ctx: Ctx, a: list) -> Any:
    return _legacy_range(ctx, a, b"LEX", True)


@command("zrevrange", arity=-4, flags=("readonly",))
def cmd_zrevrange(ctx: Ctx, a: list) -> Any:
    return _legacy_range(ctx, a, None, True)


def _store_zset(ctx: Ctx, dst: bytes, items: list) -> int:
    delete(ctx, dst)
    if items:
        z = get_zset(ctx, dst, write=True, create=True)
        for s, m in items:
            z.add(m, s)
    return len(items)


@command("zrangestore", arity=-5, flags=("write", "denyoom"), keys=(1, 2, 1))
def cmd_zrangestore(ctx: Ctx, a: list) -> Any:
    by, rev, limit, _ = _zrange_parse(a, 5, allow_withscores=False)
    sel = _zrange_select(get_zset(ctx, a[2], write=True), a, 3, by, rev, limit)
    return _store_zset(ctx, a[1], sel)


def _zpop(ctx: Ctx, key: bytes, count: int, maxside: bool) -> list:
    z = get_zset(ctx, key, write=True)
    if z is None:
        return []
    items = z.items()
    sel = items[::-1][:count] if maxside else items[:count]
    for _, m in sel:
        z.discard(m)
    drop_if_empty(ctx, key, z)
    return sel


def _zpop_cmd(ctx: Ctx, a: list, maxside: bool) -> Any:
    count = 1
    if len(a) == 3:
        count = to_int(a[2], E_POSITIVE)
        if count < 0:
            raise RError(E_POSITIVE)
    elif len(a) > 3:
        raise RError(E_SYNTAX)
    sel = _zpop(ctx, a[1], count, maxside)
    if len(a) == 2:  # without COUNT: a flat [member, score] in both protocols
        return [sel[0][1], RDouble(sel[0][0])] if sel else []
    return _flat(sel, True)


@command("zpopmin", arity=-2, flags=("write", "fast"))
def cmd_zpopmin(ctx: Ctx, a: list) -> Any:
    return _zpop_cmd(ctx, a, False)


@command("zpopmax", arity=-2, flags=("write", "fast"))
def cmd_zpopmax(ctx: Ctx, a: list) -> Any:
    return _zpop_cmd(ctx, a, True)


@command("zmpop", arity=-4, flags=("write",), keys=(0, 0, 1))
def cmd_zmpop(ctx: Ctx, a: list) -> Any:
    keys, where, count = parse_mpop(a, 1, (b"MIN", b"MAX"))
    for k in keys:
        z = get_zset(ctx, k, write=True)
        if z:
            sel = _zpop(ctx, k, count, where == b"MAX")
            return [k, [[m, RDouble(s)] for s, m in sel]]
    return NULL_ARRAY


def _zrem_range(ctx: Ctx, a: list, by: bytes | None) -> Any:
    z = get_zset(ctx, a[1], write=True)
    sel = _zrange_select(z, a, 2, by, False, None)
    for _, m in sel:
        z.discard(m)
    drop_if_empty(ctx, a[1], z)
    return len(sel)


@command("zremrangebyrank", arity=4, flags=("write",))
def cmd_zremrangebyrank(ctx: Ctx, a: list) -> Any:
    return _zrem_range(ctx, a, None)


@command("zremrangebyscore", arity=4, flags=("write",))
def cmd_zremrangebyscore(ctx: Ctx, a: list) -> Any:
    return _zrem_range(ctx, a, b"SCORE")


@command("zremrangebylex", arity=4, flags=("write",))
def cmd_zremrangebylex(ctx: Ctx, a: list) -> Any:
    return _zrem_range(ctx, a, b"LEX")


def _zsetop(ctx: Ctx, a: list, first: int, op: bytes, store: bool) -> tuple[list, bool]:
    n = to_int(a[first])
    if n <= 0:
        raise RError(f"ERR at least 1 input key is needed for '{a[0].decode().lower()}' "
                     "command")
    keys = a[first + 1 : first + 1 + n]
    if len(keys) < n:
        raise RError(E_SYNTAX)
    weights = [1.0] * n
    agg = b"SUM"
    ws = False
    i = first + 1 + n
    while i < len(a):
        opt = a[i].upper()
        if opt == b"WEIGHTS" and op != b"DIFF" and i + n < len(a):
            weights = [to_float(w, "ERR weight value is not a float") for w in a[i + 1 :
                                                                                 i + 1 + n]]
            i += n
        elif opt == b"AGGREGATE" and op != b"DIFF" and i + 1 < len(a):
            agg = a[i + 1].upper()
            if agg not in (b"SUM", b"MIN", b"MAX"):
                raise RError(E_SYNTAX)
            i += 1
        elif opt == b"WITHSCORES" and not store:
            ws = True
        else:
            raise RError(E_SYNTAX)
        i += 1
    srcs = []
    for k in keys:
        v = lookup_write(ctx, k) if store else lookup(ctx, k)
        if v is None:
            srcs.append({})
        elif isinstance(v, ZSet):
            srcs.append(dict(v.scores.items()))
        elif isinstance(v, set):
            srcs.append(dict.fromkeys(v, 1.0))
        else:
            raise RError(WRONGTYPE)
    if op == b"DIFF":
        res = {m: s for m, s in srcs[0].items() if not any(m in o for o in srcs[1:])}
    else:
        res: dict = {}
        combine = {b"SUM": lambda x, y: x + y, b"MIN": min, b"MAX": max}[agg]
        if op == b"INTER":
            members = [m for m in srcs[0] if all(m in o for o in srcs[1:])]
        else:
            members = []
            seen: set = set()
            for o in srcs:
                for m in o:
                    if m not in seen:
                        seen.add(m)
                        members.append(m)
        for m in members:
            acc = None
            for o, w in zip(srcs, weights, strict=True):
                if m in o:
                    v = o[m] * w
                    if math.isnan(v):
                        v = 0.0
                    acc = v if acc is None else combine(acc, v)
                    if acc is not None and math.isnan(acc):
                        acc = 0.0
            res[m] = acc
    items = sorted((s, m) for m, s in res.items())
    return items, ws


def _zop_cmd(ctx: Ctx, a: list, op: bytes) -> Any:
    items, ws = _zsetop(ctx, a, 1, op, False)
    return _flat(items, ws)


@command("zunion", arity=-3, flags=("readonly",), keys=(0, 0, 1))
def cmd_zunion(ctx: Ctx, a: list) -> Any:
    return _zop_cmd(ctx, a, b"UNION")


@command("zinter", arity=-3, flags=("readonly",), keys=(0, 0, 1))
def cmd_zinter(ctx: Ctx, a: list) -> Any:
    return _zop_cmd(ctx, a, b"INTER")


@command("zdiff", arity=-3, flags=("readonly",), keys=(0, 0, 1))
def cmd_zdiff(ctx: Ctx, a: list) -> Any:
    return _zop_cmd(ctx, a, b"DIFF")


def _zop_store(ctx: Ctx, a: list, op: bytes) -> Any:
    items, _ = _zsetop(ctx, a, 2, op, True)
    return _store_zset(ctx, a[1], items)


@command("zunionstore", arity=-4, flags=("write", "denyoom"))
def cmd_zunionstore(ctx: Ctx, a: list) -> Any:
    return _zop_store(ctx, a, b"UNION")


@command("zinterstore", arity=-4, flags=("write", "denyoom"))
def cmd_zinterstore(ctx: Ctx, a: list) -> Any:
    return _zop_store(ctx, a, b"INTER")


@command("zdiffstore", arity=-4, flags=("write", "denyoom"))
def cmd_zdiffstore(ctx: Ctx, a: list) -> Any:
    return _zop_store(ctx, a, b"DIFF")


@command("zintercard", arity=-3, flags=("readonly",), keys=(0, 0, 1))
def cmd_zintercard(ctx: Ctx, a: list) -> Any:
    n = to_int(a[1], "ERR numkeys should be greater than 0")
    if n <= 0:
        raise RError("ERR at least 1 input key is needed for 'zintercard' command")
    keys = a[2 : 2 + n]
    if len(keys) < n:
        raise RError("ERR Number of keys can't be greater than number of args")
    limit = 0
    rest = a[2 + n :]
    if rest:
        if len(rest) != 2 or rest[0].upper() != b"LIMIT":
            raise RError(E_SYNTAX)
        limit = to_int(rest[1], "ERR LIMIT can't be negative")
        if limit < 0:
            raise RError("ERR LIMIT can't be negative")
    items, _ = _zsetop(ctx, [a[0], b"%d" % n, *keys], 1, b"INTER", False)
    return min(len(items), limit) if limit else len(items)


@command("zscan", arity=-3, flags=("readonly",))
def cmd_zscan(ctx: Ctx, a: list) -> Any:
    cursor = scan_cursor(a[2])
    rx, count, _ = scan_args(a, 3)
    z = get_zset(ctx, a[1])
    items = z.items() if z is not None else []
    if z is not None and encoding_of(z) == b"listpack":
        nxt, chunk = 0, items  # (Redis: a small encoding is returned in one call)
    else:
        nxt, chunk = scan_slice(items, cursor, count, key=lambda it: it[1])
    out: list = []
    for s, m in chunk:
        if rx is None or rx.match(m):
            out += [m, fmt_double(s)]
    return [b"%d" % nxt, out]


@command("\x00zrem", arity=-2, flags=("write", "internal"))
def cmd_zrem_members(ctx: Ctx, a: list) -> Any:
    """Internal: ZPOP-like removal of explicit members (random choices resolved)."""
    z = get_zset(ctx, a[1], write=True)
    if z is None:
        return []
    out = []
    for m in a[2:]:
        s = z.scores.get(m)
        if s is not None:
            z.discard(m)
            out.append([m, RDouble(s)])
    drop_if_empty(ctx, a[1], z)
    return out
